//! The PROXY protocol v1/v2 header a load balancer sends before TLS.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &[u8]| {
    let _ = certgate_gateway::proxy_protocol::source_address(header);
});
