//! Public paths: a request target matches a public path only when no server could read it as
//! something else.
#![no_main]

use std::sync::OnceLock;

use certgate_policies::{match_public_path, PublicPath};
use libfuzzer_sys::fuzz_target;

fn public() -> &'static [PublicPath] {
    static LIST: OnceLock<Vec<PublicPath>> = OnceLock::new();
    LIST.get_or_init(|| {
        ["/public", "/favicon.ico", "/assets/app"]
            .iter()
            .filter_map(|p| PublicPath::parse(p).ok())
            .collect()
    })
}

fuzz_target!(|raw: &[u8]| {
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let _ = PublicPath::parse(raw);
    if match_public_path(public(), raw).is_none() {
        return;
    }
    // What was admitted as public is plain: no encoded separators, no path parameters, no
    // segment of dots, nothing a server would trim or normalise.
    let path = raw.split('?').next().unwrap_or("").to_ascii_lowercase();
    assert!(!path.contains("%2f") && !path.contains("%5c"), "{raw:?}");
    let decoded = percent_encoding::percent_decode_str(&path).decode_utf8();
    let Ok(decoded) = decoded else {
        panic!("{raw:?} is not UTF-8 once decoded");
    };
    assert!(!decoded.contains([';', '\\', '%']), "{raw:?}");
    assert!(!decoded.chars().any(char::is_control), "{raw:?}");
    for segment in decoded.split('/') {
        let only_dots = segment.chars().any(|c| c == '.')
            && segment.chars().all(|c| c == '.' || c.is_whitespace());
        assert!(!only_dots, "{raw:?}");
    }
});
