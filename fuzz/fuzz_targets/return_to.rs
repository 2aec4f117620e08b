//! `return_to`: wherever a client asks to be sent after signing in, the answer stays on this
//! site.
#![no_main]

use certgate_portal::return_to::safe_return_to;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let target = safe_return_to(raw);
    assert!(target.starts_with('/'), "{raw:?} -> {target:?}");
    // Never protocol-relative (`//evil`, `/\evil`), never a control character a browser drops.
    let second = target.as_bytes().get(1).copied();
    assert!(
        !matches!(second, Some(b'/' | b'\\')),
        "{raw:?} -> {target:?}"
    );
    assert!(
        !target.chars().any(char::is_control),
        "{raw:?} -> {target:?}"
    );
});
