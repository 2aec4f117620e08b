//! Fixtures for the benchmarks: allow lists and policy sets of a chosen size, built the way the
//! gateway builds them at load time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use certgate_policies::{AllowEntry, EntrySource, IpAllowList};
use ipnet::IpNet;

/// `n` distinct IPv4 /24 networks (10.x.y.0/24, 11.x.y.0/24 …) and as many IPv6 /48s.
pub fn networks(n: usize) -> (Vec<IpNet>, Vec<IpNet>) {
    let v4 = (0..n)
        .map(|i| {
            let i = i as u32;
            let addr = Ipv4Addr::from((10 + (i >> 16)) << 24 | (i & 0xffff) << 8);
            IpNet::new(IpAddr::V4(addr), 24).unwrap()
        })
        .collect();
    let v6 = (0..n)
        .map(|i| {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, i as u16, (i >> 16) as u16, 0, 0, 0, 0);
            IpNet::new(IpAddr::V6(addr), 64).unwrap()
        })
        .collect();
    (v4, v6)
}

pub fn allow_list(nets: &[IpNet]) -> IpAllowList {
    IpAllowList::new(nets.iter().map(|net| AllowEntry {
        net: *net,
        source: EntrySource::Admin {
            note: "bench".into(),
        },
    }))
}

/// A policies directory with one organisation whose allow-list file has `n` networks.
pub fn policies_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (v4, _) = networks(n);
    let list: String = v4.iter().map(|net| format!("{net}\n")).collect();
    std::fs::write(dir.path().join("noord.allowlist"), list).unwrap();
    std::fs::write(
        dir.path().join("noord.toml"),
        "id = \"noord\"\nname = \"Noord\"\nhosts = [\"noord.example.org\"]\nupstreams = [\"http://127.0.0.1:8080\"]\n\n[access]\nallow_ips_files = [\"noord.allowlist\"]\npublic_paths = [\"/favicon.ico\"]\n",
    )
    .unwrap();
    dir
}
