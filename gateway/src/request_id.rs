//! The request id that ties one request's access-log line, the portal's log lines and the
//! upstream's own logs together (`X-Request-Id`). A trusted proxy's id is kept when it is sane;
//! any other is replaced, so a client cannot write what it likes into the logs.

use http::header::HeaderValue;

/// The header the id travels in, to the upstream and to the portal.
pub const HEADER: &str = "x-request-id";

/// The longest id kept from a trusted proxy.
const MAX_LEN: usize = 128;

/// A request's id: sane by construction (1–128 visible ASCII characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// Made here: 128 random bits as 32 hex digits, kept on the stack.
    Made([u8; 32]),
    /// Sent by a trusted proxy.
    Kept(HeaderValue),
}

impl RequestId {
    /// The id of a request that carried `sent` (its first `X-Request-Id`), from a peer that is
    /// (`trusted`) or is not a trusted proxy.
    pub fn of(trusted: bool, sent: Option<&HeaderValue>) -> RequestId {
        match sent {
            Some(value) if trusted && is_sane(value.as_bytes()) => RequestId::Kept(value.clone()),
            _ => RequestId::made(),
        }
    }

    /// A fresh id.
    pub fn made() -> RequestId {
        let random: [u8; 16] = rand::random();
        let mut hex = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the input.
        let _ = hex::encode_to_slice(random, &mut hex);
        RequestId::Made(hex)
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Hex digits and visible ASCII are always UTF-8.
            RequestId::Made(hex) => std::str::from_utf8(hex).unwrap_or(""),
            RequestId::Kept(value) => value.to_str().unwrap_or(""),
        }
    }

    /// The id as a header value for the request passed on.
    pub fn header_value(&self) -> HeaderValue {
        match self {
            RequestId::Made(hex) => {
                HeaderValue::from_bytes(hex).unwrap_or_else(|_| HeaderValue::from_static(""))
            }
            RequestId::Kept(value) => value.clone(),
        }
    }
}

/// Whether `value` may be kept as a request id: 1–128 visible ASCII characters (no spaces, no
/// control characters), so it cannot break a log line or a header.
pub fn is_sane(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sane_ids_are_short_visible_ascii() {
        for sane in [
            "a",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "Root=1-67891233-abcdef012345678912345678",
            "req_42/edge:7",
            &"x".repeat(128),
        ] {
            assert!(is_sane(sane.as_bytes()), "{sane:?}");
        }
        for insane in [
            "",
            &"x".repeat(129),
            "two words",
            "tab\there",
            "line\nbreak",
            "nul\0",
            "del\x7f",
            "caf\u{e9}",
        ] {
            assert!(!is_sane(insane.as_bytes()), "{insane:?}");
        }
    }

    #[test]
    fn a_trusted_proxys_sane_id_is_kept_and_everything_else_replaced() {
        let sent = HeaderValue::from_static("edge-7f3a");
        assert_eq!(RequestId::of(true, Some(&sent)).as_str(), "edge-7f3a");
        for (trusted, sent) in [
            (false, Some(HeaderValue::from_static("edge-7f3a"))),
            (true, Some(HeaderValue::from_static("has a space"))),
            (true, Some(HeaderValue::from_static(""))),
            (true, None),
            (false, None),
        ] {
            let id = RequestId::of(trusted, sent.as_ref());
            assert!(matches!(id, RequestId::Made(_)), "{trusted} {sent:?}");
            assert_eq!(id.as_str().len(), 32);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(id.header_value().as_bytes(), id.as_str().as_bytes());
        }
    }

    #[test]
    fn made_ids_differ() {
        assert_ne!(RequestId::made(), RequestId::made());
    }
}
