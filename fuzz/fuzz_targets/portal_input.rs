//! What the portal reads from the network beyond forms: the device flow's JSON bodies, the
//! admin API's bodies and single sign-on callback queries. The first byte picks which.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => certgate_portal::fuzzing::device_flow(rest),
        1 => certgate_portal::fuzzing::admin_api(rest),
        _ => {
            if let Ok(query) = std::str::from_utf8(rest) {
                certgate_portal::fuzzing::sso_callback(query);
            }
        }
    }
});
