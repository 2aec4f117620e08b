//! The allow-list layer organisation admins edit (portal page, `certgate allowlist set`): the
//! text they submit checked as a whole, so a save either takes every line or none, and every bad
//! line is named at once. The same line syntax as allow-list files, plus limits the files do not
//! have: no network broader than the configured prefix, no duplicates, a bounded count.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;

use super::{parse_ip_or_cidr, split_comment, AllowEntry, EntrySource};

/// The most entries one organisation's admin layer may hold.
pub const ADMIN_ALLOW_LIST_MAX_ENTRIES: usize = 10_000;

/// Notes are shown in lists and the audit log; longer text belongs elsewhere.
const MAX_NOTE_CHARS: usize = 200;

/// What an admin-layer entry may be: `[limits] admin_allowlist_min_prefix_v4/_v6` of the
/// config, and the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminAllowListLimits {
    /// IPv4 networks need at least this prefix length (default 16).
    pub min_prefix_v4: u8,
    /// IPv6 networks need at least this prefix length (default 48).
    pub min_prefix_v6: u8,
    pub max_entries: usize,
}

impl Default for AdminAllowListLimits {
    fn default() -> Self {
        AdminAllowListLimits {
            min_prefix_v4: 16,
            min_prefix_v6: 48,
            max_entries: ADMIN_ALLOW_LIST_MAX_ENTRIES,
        }
    }
}

/// One checked entry of an admin's list: a network (host bits cleared, IPv4-mapped IPv6 written
/// as IPv4) and the comment written after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAllowEntry {
    pub net: IpNet,
    pub note: String,
}

impl AdminAllowEntry {
    /// The entry as the gateway looks it up.
    pub fn to_allow_entry(&self) -> AllowEntry {
        AllowEntry {
            net: self.net,
            source: EntrySource::Admin {
                note: self.note.clone(),
            },
        }
    }
}

/// One line of the list's text form, `network  # note`: what [`parse_admin_allow_list`] reads
/// back, so a shown list can be edited and saved again.
impl fmt::Display for AdminAllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.note.is_empty() {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}  # {}", self.net, self.note)
        }
    }
}

/// Problems named one by one; past this many they are counted.
const MAX_REPORTED_PROBLEMS: usize = 100;

/// Checks an admin's allow list: one address or CIDR a line, `#` starts a comment that becomes
/// the entry's note, blank and comment-only lines are ignored, host bits are cleared as in
/// allow-list files. Either every entry, in order, or every problem as `line N: "text": why`
/// (the first hundred, then a count; a list longer than the limit adds one message without a
/// line).
pub fn parse_admin_allow_list(
    text: &str,
    limits: &AdminAllowListLimits,
) -> Result<Vec<AdminAllowEntry>, Vec<String>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut unreported = 0usize;
    // Network → the line that first listed it.
    let mut seen: HashMap<IpNet, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let (written, comment) = split_comment(raw);
        if written.is_empty() {
            continue;
        }
        let mut problem = |why: String| {
            // A pasted file of garbage would otherwise come back as megabytes of messages.
            if errors.len() < MAX_REPORTED_PROBLEMS {
                errors.push(format!("line {line}: {written:?}: {why}"));
            } else {
                unreported += 1;
            }
        };
        let Some(net) = parse_ip_or_cidr(written) else {
            problem("not an IP address or CIDR".to_owned());
            continue;
        };
        let (family, min_prefix) = match net {
            IpNet::V4(_) => ("IPv4", limits.min_prefix_v4),
            IpNet::V6(_) => ("IPv6", limits.min_prefix_v6),
        };
        if net.prefix_len() < min_prefix {
            problem(format!(
                "broader than allowed: {family} networks need a prefix of /{min_prefix} or longer \
                 (ask the network admins to add wider networks to the policy files)"
            ));
            continue;
        }
        let note = comment.unwrap_or("");
        if note.chars().any(|c| c.is_control() && c != '\t') {
            problem("the note after # contains control characters".to_owned());
            continue;
        }
        if note.chars().count() > MAX_NOTE_CHARS {
            problem(format!(
                "the note after # is longer than {MAX_NOTE_CHARS} characters"
            ));
            continue;
        }
        if let Some(first) = seen.get(&net) {
            problem(format!("{net} is already listed on line {first}"));
            continue;
        }
        seen.insert(net, line);
        entries.push(AdminAllowEntry {
            net,
            note: note.replace('\t', " "),
        });
    }
    if unreported > 0 {
        errors.push(format!(
            "and {unreported} more line{} with problems",
            if unreported == 1 { "" } else { "s" }
        ));
    }
    if entries.len() > limits.max_entries {
        errors.push(format!(
            "{} entries are more than the {} allowed; use wider networks or ask the network \
             admins to put them in the policy files",
            entries.len(),
            limits.max_entries
        ));
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, Vec<String>> {
        parse_admin_allow_list(text, &AdminAllowListLimits::default())
            .map(|entries| entries.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn reads_entries_with_notes_and_skips_blank_and_comment_lines() {
        let text = "# office networks\n\n192.0.2.10   # front desk\n198.51.100.7/24\n\
                    2001:db8:5::/48 #  branch  \n::ffff:203.0.113.9\n10.20.0.0/16#\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                "192.0.2.10/32  # front desk",
                "198.51.100.0/24",
                "2001:db8:5::/48  # branch",
                "203.0.113.9/32",
                "10.20.0.0/16",
            ]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("# nothing yet\n\n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn every_bad_line_is_named_at_once() {
        let text = "192.0.2.10\n10.0.0.300\n0.0.0.0/0\n\n::/0\n2001:db8::/32\n10.0.0.0/8 # all\n\
                    192.0.2.10/32 # again\nnot an address\n";
        assert_eq!(
            parse(text).unwrap_err(),
            [
                "line 2: \"10.0.0.300\": not an IP address or CIDR",
                "line 3: \"0.0.0.0/0\": broader than allowed: IPv4 networks need a prefix of /16 \
                 or longer (ask the network admins to add wider networks to the policy files)",
                "line 5: \"::/0\": broader than allowed: IPv6 networks need a prefix of /48 or \
                 longer (ask the network admins to add wider networks to the policy files)",
                "line 6: \"2001:db8::/32\": broader than allowed: IPv6 networks need a prefix of \
                 /48 or longer (ask the network admins to add wider networks to the policy files)",
                "line 7: \"10.0.0.0/8\": broader than allowed: IPv4 networks need a prefix of /16 \
                 or longer (ask the network admins to add wider networks to the policy files)",
                "line 8: \"192.0.2.10/32\": 192.0.2.10/32 is already listed on line 1",
                "line 9: \"not an address\": not an IP address or CIDR",
            ]
        );
    }

    #[test]
    fn a_pasted_file_of_garbage_gets_a_hundred_messages_and_a_count() {
        let errors = parse(&"x\n".repeat(100_000)).unwrap_err();
        assert_eq!(errors.len(), 101);
        assert_eq!(errors[99], "line 100: \"x\": not an IP address or CIDR");
        assert_eq!(errors[100], "and 99900 more lines with problems");
    }

    #[test]
    fn duplicates_are_found_after_normalising() {
        let errors = parse("10.1.2.3/16\n10.1.0.0/16\n::ffff:10.1.0.0/112\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "line 2: \"10.1.0.0/16\": 10.1.0.0/16 is already listed on line 1",
                "line 3: \"::ffff:10.1.0.0/112\": 10.1.0.0/16 is already listed on line 1",
            ]
        );
    }

    #[test]
    fn the_limits_are_the_configured_ones() {
        let strict = AdminAllowListLimits {
            min_prefix_v4: 24,
            min_prefix_v6: 64,
            max_entries: 2,
        };
        assert!(parse_admin_allow_list("10.1.0.0/16\n", &strict).is_err());
        assert!(parse_admin_allow_list("10.1.2.0/24\n2001:db8:1:2::/64\n", &strict).is_ok());
        assert_eq!(
            parse_admin_allow_list("10.0.0.1\n10.0.0.2\n10.0.0.3\n", &strict).unwrap_err(),
            [
                "3 entries are more than the 2 allowed; use wider networks or ask the network \
              admins to put them in the policy files"
            ]
        );
        // Exactly the limit is fine.
        assert!(parse("10.1.0.0/16\n2001:db8:1::/48\n").is_ok());
    }

    #[test]
    fn notes_are_bounded_and_printable() {
        let long = format!("10.0.0.1 # {}\n", "x".repeat(201));
        assert_eq!(
            parse(&long).unwrap_err(),
            ["line 1: \"10.0.0.1\": the note after # is longer than 200 characters"]
        );
        assert_eq!(
            parse("10.0.0.1 # bell\u{7}\n").unwrap_err(),
            ["line 1: \"10.0.0.1\": the note after # contains control characters"]
        );
        assert_eq!(parse("10.0.0.1 #a\tb\r\n").unwrap(), ["10.0.0.1/32  # a b"]);
    }

    #[test]
    fn the_text_form_reads_back_and_feeds_the_lookup() {
        let entries = parse_admin_allow_list(
            "192.0.2.0/24 # office\n2001:db8:1::/48\n",
            &AdminAllowListLimits::default(),
        )
        .unwrap();
        let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
        assert_eq!(
            parse_admin_allow_list(&text, &AdminAllowListLimits::default()).unwrap(),
            entries
        );
        let list: crate::IpAllowList = entries.iter().map(|e| e.to_allow_entry()).collect();
        let hit = list.lookup("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(hit.to_string(), "admin allow list (office) 192.0.2.0/24");
    }
}
