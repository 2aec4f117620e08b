//! IP allow lists: the networks an organisation admits without a credential, where each entry
//! came from (for `certgate policy explain`), and the longest-prefix lookup the gateway runs on
//! every request.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::ops::{BitAnd, Shl};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};

use crate::error::PolicyError;

mod admin;

pub use admin::{
    parse_admin_allow_list, AdminAllowEntry, AdminAllowListLimits, ADMIN_ALLOW_LIST_MAX_ENTRIES,
};

/// One allowed network and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub net: IpNet,
    pub source: EntrySource,
}

/// Where an allow-list entry came from; displayed the way `policy explain` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntrySource {
    /// `allow_ips[index]` in a policy file: `allow_ips[2] noord.toml:9`.
    Inline {
        policy: PathBuf,
        index: usize,
        line: usize,
    },
    /// A line of an allow-list file: `allow_ips_files noord.allowlist:12`. `written` is the name
    /// as the policy wrote it, `path` where it was read from.
    File {
        written: String,
        path: PathBuf,
        line: usize,
    },
    /// Added by an organisation admin (portal or `certgate allowlist`), kept in SQL; `note` is
    /// the comment written after the entry.
    Admin { note: String },
}

impl fmt::Display for EntrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline {
                policy,
                index,
                line,
            } => {
                let name = policy.file_name().unwrap_or(policy.as_os_str());
                write!(f, "allow_ips[{index}] {}:{line}", Path::new(name).display())
            }
            Self::File { written, line, .. } => write!(f, "allow_ips_files {written}:{line}"),
            Self::Admin { note } if note.is_empty() => f.write_str("admin allow list"),
            Self::Admin { note } => write!(f, "admin allow list ({note})"),
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.source, self.net)
    }
}

/// Parses an address (`192.0.2.1`, `2001:db8::1`) or a CIDR (`198.51.100.0/24`).
///
/// A CIDR with host bits set (`10.0.0.7/24`) is accepted and normalised to its network
/// (`10.0.0.0/24`): firewall exports write interface addresses that way, and the intent —
/// "this network" — is unambiguous. An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) becomes
/// the IPv4 network, because mapped client addresses are looked up as IPv4.
pub fn parse_ip_or_cidr(text: &str) -> Option<IpNet> {
    let net = if text.contains('/') {
        text.parse::<IpNet>().ok()?
    } else {
        IpNet::from(text.parse::<IpAddr>().ok()?)
    };
    Some(normalise(net))
}

pub(crate) fn not_an_ip_message(text: &str) -> String {
    format!("{text:?} is not an IP address or CIDR")
}

fn normalise(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net.trunc()),
            None => net.trunc(),
        },
        _ => net.trunc(),
    }
}

/// One line of an allow list split into its entry and its comment (the text after the first
/// `#`), both trimmed; the comment is `None` without a `#`.
pub(crate) fn split_comment(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once('#') {
        Some((entry, comment)) => (entry.trim(), Some(comment.trim())),
        None => (raw.trim(), None),
    }
}

/// Reads an allow-list file: one address or CIDR a line, `#` starts a comment (also after an
/// entry), blank lines ignored. Bad lines are reported into `errors`, the good ones returned.
pub(crate) fn read_allow_list_file(
    path: &Path,
    written: &str,
    errors: &mut Vec<PolicyError>,
) -> std::io::Result<Vec<AllowEntry>> {
    let text = std::fs::read_to_string(path)?;
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let (entry, _) = split_comment(raw);
        if entry.is_empty() {
            continue;
        }
        match parse_ip_or_cidr(entry) {
            Some(net) => entries.push(AllowEntry {
                net,
                source: EntrySource::File {
                    written: written.to_owned(),
                    path: path.to_owned(),
                    line,
                },
            }),
            None => errors.push(PolicyError::new(
                path,
                Some(line),
                "",
                not_an_ip_message(entry),
            )),
        }
    }
    Ok(entries)
}

/// The networks one organisation admits, built once at load time.
///
/// Lookups go through one hash map per prefix length in use, longest first, so a lookup costs
/// at most one hash probe per distinct prefix length (33 for IPv4, 129 for IPv6 at worst) and
/// allocates nothing, however many entries the list holds.
#[derive(Debug, Clone, Default)]
pub struct IpAllowList {
    entries: Vec<AllowEntry>,
    v4: Vec<PrefixTable<u32>>,
    v6: Vec<PrefixTable<u128>>,
}

/// The networks of one prefix length, keyed by their masked address.
#[derive(Debug, Clone)]
struct PrefixTable<K> {
    prefix_len: u8,
    mask: K,
    /// Index into `entries`; the first entry wins when a network is listed twice.
    networks: HashMap<K, usize>,
}

impl IpAllowList {
    /// Builds the list; host bits are cleared as in [`parse_ip_or_cidr`].
    pub fn new(entries: impl IntoIterator<Item = AllowEntry>) -> Self {
        let entries: Vec<AllowEntry> = entries
            .into_iter()
            .map(|entry| AllowEntry {
                net: normalise(entry.net),
                source: entry.source,
            })
            .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match entry.net {
                IpNet::V4(net) => insert(
                    &mut v4,
                    32,
                    net.prefix_len(),
                    u32::from(net.network()),
                    index,
                ),
                IpNet::V6(net) => insert(
                    &mut v6,
                    128,
                    net.prefix_len(),
                    u128::from(net.network()),
                    index,
                ),
            }
        }
        v4.sort_by_key(|table| std::cmp::Reverse(table.prefix_len));
        v6.sort_by_key(|table| std::cmp::Reverse(table.prefix_len));
        Self { entries, v4, v6 }
    }

    /// The most specific (longest-prefix) entry containing `ip`. An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`) is looked up as the IPv4 address it carries.
    pub fn lookup(&self, ip: IpAddr) -> Option<&AllowEntry> {
        let index = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(v6)),
            },
        }?;
        self.entries.get(index)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lookup(ip).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry in the order given, duplicates included.
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }
}

impl FromIterator<AllowEntry> for IpAllowList {
    fn from_iter<T: IntoIterator<Item = AllowEntry>>(entries: T) -> Self {
        Self::new(entries)
    }
}

/// The integer form of an IPv4 or IPv6 address, for masking.
trait AddressBits: Copy + Eq + Hash + BitAnd<Output = Self> + Shl<u32, Output = Self> {
    const ZERO: Self;
    const ONES: Self;
}

impl AddressBits for u32 {
    const ZERO: Self = 0;
    const ONES: Self = u32::MAX;
}

impl AddressBits for u128 {
    const ZERO: Self = 0;
    const ONES: Self = u128::MAX;
}

/// `prefix_len` leading one bits in a `bits`-wide integer.
fn mask<K: AddressBits>(bits: u8, prefix_len: u8) -> K {
    if prefix_len == 0 {
        K::ZERO
    } else {
        K::ONES << u32::from(bits - prefix_len)
    }
}

fn insert<K: AddressBits>(
    tables: &mut Vec<PrefixTable<K>>,
    bits: u8,
    prefix_len: u8,
    network: K,
    index: usize,
) {
    let position = match tables.iter().position(|t| t.prefix_len == prefix_len) {
        Some(position) => position,
        None => {
            tables.push(PrefixTable {
                prefix_len,
                mask: mask(bits, prefix_len),
                networks: HashMap::new(),
            });
            tables.len() - 1
        }
    };
    if let Some(table) = tables.get_mut(position) {
        table.networks.entry(network).or_insert(index);
    }
}

fn find<K: AddressBits>(tables: &[PrefixTable<K>], address: K) -> Option<usize> {
    tables
        .iter()
        .find_map(|table| table.networks.get(&(address & table.mask)).copied())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn admin(net: &str) -> AllowEntry {
        AllowEntry {
            net: parse_ip_or_cidr(net).unwrap(),
            source: EntrySource::Admin { note: net.into() },
        }
    }

    fn list(nets: &[&str]) -> IpAllowList {
        nets.iter().map(|n| admin(n)).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn matched(list: &IpAllowList, address: &str) -> Option<String> {
        list.lookup(ip(address)).map(|e| e.net.to_string())
    }

    #[test]
    fn everything_v4_matches_every_v4_address_and_mapped_v6() {
        let all = list(&["0.0.0.0/0"]);
        assert!(all.contains(ip("1.2.3.4")));
        assert!(all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("::ffff:192.0.2.1")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn everything_v6_matches_every_v6_address() {
        let all = list(&["::/0"]);
        assert!(all.contains(ip("2001:db8::1")));
        assert!(all.contains(ip("::1")));
        assert!(!all.contains(ip("192.0.2.1")));
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(
            parse_ip_or_cidr("10.0.0.7/24"),
            Some("10.0.0.0/24".parse().unwrap())
        );
        let l: IpAllowList = [AllowEntry {
            net: "10.0.0.7/24".parse().unwrap(),
            source: EntrySource::Admin {
                note: String::new(),
            },
        }]
        .into_iter()
        .collect();
        assert_eq!(l.entries()[0].net.to_string(), "10.0.0.0/24");
        assert!(l.contains(ip("10.0.0.200")));
        assert!(!l.contains(ip("10.0.1.1")));
    }

    #[test]
    fn mapped_v6_is_looked_up_as_v4() {
        let l = list(&["192.0.2.0/24"]);
        assert!(l.contains(ip("::ffff:192.0.2.77")));
        assert!(!l.contains(ip("::ffff:192.0.3.1")));
        assert_eq!(
            parse_ip_or_cidr("::ffff:192.0.2.0/120"),
            Some("192.0.2.0/24".parse().unwrap())
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let l = list(&[
            "10.0.0.0/8",
            "10.1.2.0/24",
            "10.1.0.0/16",
            "0.0.0.0/0",
            "10.1.2.3",
        ]);
        assert_eq!(matched(&l, "10.1.2.3").as_deref(), Some("10.1.2.3/32"));
        assert_eq!(matched(&l, "10.1.2.4").as_deref(), Some("10.1.2.0/24"));
        assert_eq!(matched(&l, "10.1.3.4").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(matched(&l, "10.2.0.1").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(matched(&l, "11.0.0.1").as_deref(), Some("0.0.0.0/0"));
        let l6 = list(&["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5"]);
        assert_eq!(
            matched(&l6, "2001:db8:1::5").as_deref(),
            Some("2001:db8:1::5/128")
        );
        assert_eq!(
            matched(&l6, "2001:db8:1::6").as_deref(),
            Some("2001:db8:1::/48")
        );
        assert_eq!(
            matched(&l6, "2001:db8:2::6").as_deref(),
            Some("2001:db8::/32")
        );
    }

    #[test]
    fn non_matching_and_empty() {
        let l = list(&["192.0.2.0/24", "2001:db8::/48"]);
        assert!(!l.contains(ip("198.51.100.1")));
        assert!(!l.contains(ip("2001:db9::1")));
        let empty = IpAllowList::default();
        assert!(empty.is_empty());
        assert!(!empty.contains(ip("192.0.2.1")));
    }

    #[test]
    fn first_of_duplicate_networks_is_reported() {
        let l = IpAllowList::new([
            AllowEntry {
                net: "192.0.2.0/24".parse().unwrap(),
                source: EntrySource::Admin {
                    note: "first".into(),
                },
            },
            AllowEntry {
                net: "192.0.2.9/24".parse().unwrap(),
                source: EntrySource::Admin {
                    note: "second".into(),
                },
            },
        ]);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.lookup(ip("192.0.2.1")).unwrap().to_string(),
            "admin allow list (first) 192.0.2.0/24"
        );
    }

    #[test]
    fn hundred_thousand_entries() {
        let entries = (0u32..100_000).map(|i| AllowEntry {
            net: IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i * 4), 30).unwrap()),
            source: EntrySource::Admin {
                note: i.to_string(),
            },
        });
        let l = IpAllowList::new(entries);
        assert_eq!(l.len(), 100_000);
        for i in (0u32..100_000).step_by(997) {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 4 + 3));
            let entry = l.lookup(address).unwrap();
            assert_eq!(
                entry.source,
                EntrySource::Admin {
                    note: i.to_string()
                }
            );
        }
        assert!(!l.contains(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 400_000))));
    }

    #[test]
    fn parses_addresses_and_refuses_junk() {
        assert_eq!(
            parse_ip_or_cidr("192.0.2.10"),
            Some("192.0.2.10/32".parse().unwrap())
        );
        assert_eq!(
            parse_ip_or_cidr("2001:db8::1"),
            Some("2001:db8::1/128".parse().unwrap())
        );
        for bad in [
            "10.0.0.300",
            "300.1.1.1/8",
            "10.0.0.0/33",
            "",
            "x",
            "10.0.0.1/",
            "::1%eth0",
        ] {
            assert_eq!(parse_ip_or_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn sources_display_for_explain() {
        let inline = AllowEntry {
            net: "198.51.100.0/24".parse().unwrap(),
            source: EntrySource::Inline {
                policy: "policies/noord.toml".into(),
                index: 2,
                line: 9,
            },
        };
        assert_eq!(
            inline.to_string(),
            "allow_ips[2] noord.toml:9 198.51.100.0/24"
        );
        let file = AllowEntry {
            net: "198.51.100.0/24".parse().unwrap(),
            source: EntrySource::File {
                written: "noord.allowlist".into(),
                path: "policies/noord.allowlist".into(),
                line: 12,
            },
        };
        assert_eq!(
            file.to_string(),
            "allow_ips_files noord.allowlist:12 198.51.100.0/24"
        );
    }

    #[test]
    fn reads_allow_list_files_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.allowlist");
        std::fs::write(
            &path,
            "# office\n192.0.2.10  # front desk\n\n   198.51.100.0/24\n300.1.1.1/8\n2001:db8::/48\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        let entries = read_allow_list_file(&path, "x.allowlist", &mut errors).unwrap();
        let nets: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            nets,
            [
                "allow_ips_files x.allowlist:2 192.0.2.10/32",
                "allow_ips_files x.allowlist:4 198.51.100.0/24",
                "allow_ips_files x.allowlist:6 2001:db8::/48",
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            format!(
                "{}:5: \"300.1.1.1/8\" is not an IP address or CIDR",
                path.display()
            )
        );
    }
}
