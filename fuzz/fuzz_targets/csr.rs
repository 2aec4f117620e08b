//! Certificate requests from the device flow: PEM text and the DER inside it.
#![no_main]

use certgate_certs::CertificateRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = CertificateRequest::from_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CertificateRequest::from_pem(text);
    }
});
