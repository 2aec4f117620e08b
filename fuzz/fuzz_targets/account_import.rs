//! An account import file (CSV), as an admin uploads it or passes it to the CLI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(lines) = certgate_db::read_import("noord", text) {
        assert!(lines.len() <= certgate_db::IMPORT_MAX_ROWS);
        let mut names = std::collections::HashSet::new();
        for account in lines.iter().filter_map(|l| l.account.as_ref().ok()) {
            let name = account.username.to_lowercase();
            assert!(names.insert(name), "{:?} twice", account.username);
            assert_eq!(account.org, "noord");
        }
    }
});
