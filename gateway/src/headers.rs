//! What crosses the gateway in headers and cookies. Client-sent identity headers and certgate
//! cookies never reach the upstream; the upstream cannot set certgate cookies.

use std::io::{Cursor, Write};
use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, SET_COOKIE};

/// Headers a client must not be able to send to the upstream (the gateway sets its own, or
/// keeps a trusted proxy's `X-Request-Id`).
const STRIPPED: [&str; 6] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
];

/// Names of the `X-Certgate-*` headers and the stripped proxy headers present in `headers`,
/// also spelled with underscores: CGI, PHP, Rack and WSGI read `X_Certgate_User` as
/// `X-Certgate-User`.
pub fn spoofable_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .keys()
        .filter(|name| is_spoofable(name.as_str()))
        .cloned()
        .collect()
}

/// `name` (lower case, as a `HeaderName` holds it) is one a client must not send upstream.
fn is_spoofable(name: &str) -> bool {
    let name = name.as_bytes();
    name.get(..PREFIX.len())
        .is_some_and(|head| same_but_underscores(head, PREFIX.as_bytes()))
        || STRIPPED
            .iter()
            .any(|s| same_but_underscores(name, s.as_bytes()))
}

const PREFIX: &str = "x-certgate-";

/// Headers that frame a message or manage its connection. An application server that reads
/// `_` as `-` (the Mongrel family, CGI) would frame a body by `Transfer_Encoding` while the
/// gateway frames it by `Content-Length`: a second, smuggled request.
const FRAMING: [&str; 9] = [
    "transfer-encoding",
    "content-length",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "host",
];

/// Connection options a client may nominate (RFC 9110 §7.6.1); anything else would make the
/// gateway drop a header the client sent, and some of those frame the body or name the client.
const NOMINABLE: [&str; 7] = [
    "close",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "http2-settings",
    "proxy-connection",
];

/// Why a request's headers are refused with 400 before anything else reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRefusal {
    /// A framing or hop-by-hop header spelled with underscores (`Transfer_Encoding`).
    DisguisedFraming,
    /// `Connection` names a header that is not a connection option (`Connection: Content-Length`).
    NominatedHeader,
}

impl HeaderRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderRefusal::DisguisedFraming => "framing header spelled with underscores",
            HeaderRefusal::NominatedHeader => "Connection names a header",
        }
    }
}

/// The first reason to refuse `headers`, if any: see [`HeaderRefusal`].
pub fn refused(headers: &HeaderMap) -> Option<HeaderRefusal> {
    let disguised = headers.keys().any(|name| {
        let name = name.as_str().as_bytes();
        name.contains(&b'_')
            && FRAMING
                .iter()
                .any(|framing| same_but_underscores(name, framing.as_bytes()))
    });
    if disguised {
        return Some(HeaderRefusal::DisguisedFraming);
    }
    let nominates_header = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|option| !option.is_empty())
        .any(|option| {
            !NOMINABLE
                .iter()
                .any(|allowed| option.eq_ignore_ascii_case(allowed.as_bytes()))
        });
    nominates_header.then_some(HeaderRefusal::NominatedHeader)
}

/// `a` equals `b` when every `_` in `a` is read as `-`.
fn same_but_underscores(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// An address as a header value, formatted on the stack rather than through a `String`.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // The longest text form of an address: IPv6 with an embedded IPv4 address, 45 characters.
    let mut buf = [0u8; 45];
    let mut cursor = Cursor::new(&mut buf[..]);
    let len = match write!(cursor, "{ip}") {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    // Digits, dots, colons and hex letters are always a valid header value.
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Cookies named `certgate…`, `__Host-certgate…` or `__Secure-certgate…` belong to certgate.
pub fn is_certgate_cookie(name: &str) -> bool {
    let name = name.trim();
    let name = strip_prefix_ignore_case(name, "__host-")
        .or_else(|| strip_prefix_ignore_case(name, "__secure-"))
        .unwrap_or(name);
    name.len() >= 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"certgate")
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// The `Cookie` header without certgate's cookies, as one line, or `None` when nothing
/// changes. Several lines (HTTP/2 clients send one per cookie) are joined with `"; "` (RFC 9113
/// §8.2.3), since an HTTP/1.1 application may read only the first.
pub fn cookies_without_certgate(headers: &HeaderMap) -> Option<Vec<HeaderValue>> {
    let lines = headers.get_all(COOKIE);
    let several = lines.iter().nth(1).is_some();
    let touched = several
        || lines.iter().any(|v| {
            v.to_str().map_or(true, |line| {
                line.split(';')
                    .any(|pair| is_certgate_cookie(pair.split('=').next().unwrap_or("")))
            })
        });
    if !touched {
        return None;
    }
    let kept: Vec<&str> = lines
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter(|pair| {
            !pair.trim().is_empty() && !is_certgate_cookie(pair.split('=').next().unwrap_or(""))
        })
        .map(str::trim)
        .collect();
    if kept.is_empty() {
        return Some(Vec::new());
    }
    Some(
        HeaderValue::from_str(&kept.join("; "))
            .into_iter()
            .collect(),
    )
}

/// The upstream's `Set-Cookie` lines without those for certgate cookies, or `None` when
/// nothing changes.
pub fn set_cookies_without_certgate(headers: &HeaderMap) -> Option<Vec<HeaderValue>> {
    let sets_certgate = |v: &HeaderValue| {
        v.to_str().map_or(true, |s| {
            is_certgate_cookie(s.split('=').next().unwrap_or(""))
        })
    };
    let lines = headers.get_all(SET_COOKIE);
    if !lines.iter().any(sets_certgate) {
        return None;
    }
    Some(
        lines
            .iter()
            .filter(|v| !sets_certgate(v))
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn addresses_as_header_values() {
        for text in [
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:192.0.2.7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(
                ip_value(ip),
                HeaderValue::from_str(&ip.to_string()).unwrap()
            );
        }
    }

    #[test]
    fn certgate_cookie_names() {
        assert!(is_certgate_cookie("__Host-certgate-device"));
        assert!(is_certgate_cookie(" certgate_session"));
        assert!(is_certgate_cookie("__Secure-CertGate-x"));
        assert!(!is_certgate_cookie("session"));
        assert!(!is_certgate_cookie("mycertgate"));
    }

    #[test]
    fn strips_certgate_cookies_and_keeps_the_rest() {
        let h = headers(&[
            ("cookie", "a=1; __Host-certgate-device=tok; b=2"),
            ("cookie", "certgate-x=y"),
        ]);
        let kept = cookies_without_certgate(&h).unwrap();
        assert_eq!(kept, vec![HeaderValue::from_static("a=1; b=2")]);
        assert!(cookies_without_certgate(&headers(&[("cookie", "a=1")])).is_none());
        // HTTP/2 sends one line per cookie; the application gets them as one.
        let h2 = headers(&[("cookie", "a=1"), ("cookie", "b=2")]);
        assert_eq!(
            cookies_without_certgate(&h2).unwrap(),
            vec![HeaderValue::from_static("a=1; b=2")]
        );
        assert_eq!(cookie(&h, "__Host-certgate-device"), Some("tok"));
    }

    #[test]
    fn drops_upstream_set_cookie_for_certgate() {
        let h = headers(&[
            ("set-cookie", "app=1; Path=/"),
            ("set-cookie", "__Host-certgate-device=evil; Path=/"),
        ]);
        assert_eq!(
            set_cookies_without_certgate(&h).unwrap(),
            vec![HeaderValue::from_static("app=1; Path=/")]
        );
    }

    #[test]
    fn framing_headers_spelled_with_underscores_are_refused() {
        for (name, refusal) in [
            ("transfer_encoding", Some(HeaderRefusal::DisguisedFraming)),
            ("Content_Length", Some(HeaderRefusal::DisguisedFraming)),
            ("transfer-encoding_", None),
            ("proxy_connection", Some(HeaderRefusal::DisguisedFraming)),
            ("keep_alive", Some(HeaderRefusal::DisguisedFraming)),
            ("proxy-connection", None),
            ("x_custom_app", None),
        ] {
            let mut h = headers(&[("content-length", "5")]);
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("chunked"),
            );
            assert_eq!(refused(&h), refusal, "{name}");
        }
        assert_eq!(
            refused(&headers(&[
                ("transfer-encoding", "chunked"),
                ("x_custom", "1")
            ])),
            None,
            "the real spellings and other underscores pass"
        );
    }

    #[test]
    fn connection_may_name_only_connection_options() {
        for fine in [
            "keep-alive",
            "close",
            "Upgrade, HTTP2-Settings",
            "TE, close",
            "",
        ] {
            assert_eq!(refused(&headers(&[("connection", fine)])), None, "{fine}");
        }
        for nominating in [
            "X-Forwarded-For",
            "keep-alive, Content-Length",
            "close, x-certgate-user",
            "Transfer-Encoding",
            "cookie",
            "\"close\"",
        ] {
            let mut h = HeaderMap::new();
            h.append("connection", HeaderValue::from_str(nominating).unwrap());
            assert_eq!(
                refused(&h),
                Some(HeaderRefusal::NominatedHeader),
                "{nominating}"
            );
        }
    }

    #[test]
    fn finds_spoofable_headers() {
        let h = headers(&[
            ("x-certgate-user", "boss"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "*/*"),
            ("x_certgate_user", "boss"),
            ("x-certgate_mfa", "yes"),
            ("x_forwarded_for", "192.0.2.1"),
            ("x_real_ip", "192.0.2.1"),
            ("x-certgatex", "not ours"),
            ("accept_language", "nl"),
            ("x-forwarded-fo", "too short"),
        ]);
        let names: Vec<_> = spoofable_headers(&h)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "x-certgate-user",
                "forwarded",
                "x_certgate_user",
                "x-certgate_mfa",
                "x_forwarded_for",
                "x_real_ip"
            ]
        );
    }
}
