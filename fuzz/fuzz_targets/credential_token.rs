//! The browser credential cookie: any value a client sends, and any payload under a valid
//! signature (what a stolen key, or a bug in signing, would let through to the parser).
#![no_main]

use std::sync::OnceLock;

use certgate_certs::{CredentialKey, CredentialVerifier};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn keys() -> &'static (CredentialKey, CredentialVerifier) {
    static KEYS: OnceLock<(CredentialKey, CredentialVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = CredentialKey::generate();
        let verifier = CredentialVerifier::new([&key]);
        (key, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, verifier) = keys();
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // As sent: nothing forged verifies.
        if let Ok(token) = std::str::from_utf8(rest) {
            assert!(verifier.verify(token, NOW).is_err(), "{token:?}");
        }
        return;
    }
    let token = key.sign_payload(rest);
    if let Ok(claims) = verifier.verify(&token, NOW) {
        // What verifies signs again to the same claims.
        let again = key.sign(&claims).expect("verified claims sign");
        assert_eq!(verifier.verify(&again, NOW).ok(), Some(claims));
    }
});
