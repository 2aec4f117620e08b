//! The claims read from a certificate a client presents in the TLS handshake.
#![no_main]

use certgate_certs::DeviceClaims;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let _ = DeviceClaims::from_der(der);
});
