//! The headers of a request: which are refused (smuggling) and which are stripped (spoofing).
//! Input: lines of `name: value`.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = certgate_gateway::headers::refused(&headers);
    for name in certgate_gateway::headers::spoofable_headers(&headers) {
        let folded = name.as_str().replace('_', "-");
        assert!(
            folded.starts_with("x-certgate-")
                || [
                    "forwarded",
                    "x-real-ip",
                    "x-forwarded-host",
                    "x-forwarded-for",
                    "x-forwarded-proto"
                ]
                .contains(&folded.as_str()),
            "{name}"
        );
    }
    let _ = certgate_gateway::headers::cookies_without_certgate(&headers);
    let _ = certgate_gateway::headers::set_cookies_without_certgate(&headers);
});
