//! `certgate.toml`, whatever an operator writes in it.
#![no_main]

use certgate_policies::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    if let Ok(text) = std::str::from_utf8(text) {
        if let Ok(config) = Config::parse(std::path::Path::new("/etc/certgate/certgate.toml"), text)
        {
            let _ = config.warnings();
        }
    }
});
