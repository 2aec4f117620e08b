//! An organisation policy and its allow-list file, as a network admin might write them (or
//! break them). Input: the policy, a NUL byte, the allow-list file.
#![no_main]

use std::sync::OnceLock;

use certgate_policies::{parse_admin_allow_list, AdminAllowListLimits, PolicySet};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch directory"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let (policy, allow_list) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let _ = std::fs::write(dir().join("fuzz.toml"), policy);
    let _ = std::fs::write(dir().join("fuzz.allowlist"), allow_list);
    let _ = PolicySet::load(dir());
    if let Ok(text) = std::str::from_utf8(allow_list) {
        let _ = parse_admin_allow_list(text, &AdminAllowListLimits::default());
    }
});
