//! Host names and `http(s)://` URLs as policy and config files write them: the one parser for
//! both, so an upstream, an OIDC issuer and an SMS webhook are held to the same rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ValueError;

/// A parsed `scheme://host[:port]rest` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url<'a> {
    /// Lowercased.
    pub(crate) scheme: String,
    /// Lowercased; an IPv6 address without brackets.
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// Everything after the authority: path, query and fragment.
    pub(crate) rest: &'a str,
}

impl Url<'_> {
    pub(crate) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }
}

/// A URL as error messages show it, which go to the terminal and the journal: whatever stands
/// before its last `@` (user information, perhaps a password) is `***`, and a query (perhaps a
/// key) is cut off.
pub(crate) fn shown_url(text: &str) -> String {
    let (text, query) = match text.split_once('?') {
        Some((before, _)) => (before, "?…"),
        None => (text, ""),
    };
    let Some(at) = text.rfind('@') else {
        return format!("{text}{query}");
    };
    let after = &text[at..];
    match text.split_once("://") {
        Some((scheme, _)) if scheme.len() < at => format!("{scheme}://***{after}{query}"),
        _ => format!("***{after}{query}"),
    }
}

/// Splits a URL whose scheme is one of `schemes` (lowercase, without `://`). User information
/// (`user:pass@`) is refused: secrets belong in secret files, not in a URL that ends up in logs.
pub(crate) fn parse_url<'a>(
    text: &'a str,
    schemes: &'static [&'static str],
) -> Result<Url<'a>, ValueError> {
    let shown = shown_url(text);
    let not_a_url = || ValueError::NotAUrl {
        url: shown.clone(),
        schemes,
    };
    let (scheme, after_scheme) = text.split_once("://").ok_or_else(not_a_url)?;
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(not_a_url());
    }
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    if authority.contains('@') {
        return Err(ValueError::UserInformation(shown));
    }
    let (host, port) =
        split_host_port(authority).ok_or_else(|| ValueError::NotAHostAndPort(shown.clone()))?;
    Ok(Url {
        scheme,
        host,
        port,
        rest,
    })
}

/// An `http://` or `https://` URL; `true` for https.
pub(crate) fn parse_http_url(text: &str) -> Result<(bool, Url<'_>), ValueError> {
    let url = parse_url(text, &["http", "https"])?;
    Ok((url.scheme == "https", url))
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the host is checked and lowercased.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (v6.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (parse_host_name(host)?, port)
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok().filter(|port| *port != 0)?)
        }
    };
    Some((host, port))
}

/// A DNS name or an IPv4 address, lowercased, without a trailing dot.
///
/// Labels may hold letters, digits, `-` and `_` (internal names use underscores); no label
/// starts or ends with `-`.
pub(crate) fn parse_host_name(text: &str) -> Option<String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let valid = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // A name ending in a numeric label is an IPv4 address or a typo of one ("10.0.0.300").
    let numeric_tail = name
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    if numeric_tail && name.parse::<Ipv4Addr>().is_err() {
        return None;
    }
    valid.then(|| name.to_ascii_lowercase())
}

/// A host an organisation is served on: a DNS name or an IP address (IPv6 with or without
/// brackets), lowercased.
pub(crate) fn parse_served_host(text: &str) -> Option<String> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(v6) = unbracketed.parse::<Ipv6Addr>() {
        return Some(v6.to_string());
    }
    parse_host_name(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn splits_urls() {
        let (tls, url) = parse_http_url("HTTPS://Upstream.Example:8443/").unwrap();
        assert_eq!(
            (tls, url.host.as_str(), url.port, url.rest),
            (true, "upstream.example", Some(8443), "/")
        );
        let (tls, url) = parse_http_url("http://[2001:DB8::1]").unwrap();
        assert_eq!(
            (tls, url.host.as_str(), url.port),
            (false, "2001:db8::1", None)
        );
        assert!(parse_http_url("http://127.0.0.1:9/x")
            .unwrap()
            .1
            .is_loopback());
        assert!(parse_http_url("http://localhost").unwrap().1.is_loopback());
        assert!(!parse_http_url("http://10.0.0.1").unwrap().1.is_loopback());
        let url = parse_url("smtps://mail.example:465", &["smtp", "smtps"]).unwrap();
        assert_eq!((url.scheme.as_str(), url.port), ("smtps", Some(465)));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "ftp://x",
            "x",
            "http://",
            "http://a:b@host",
            "http://host:0",
            "http://host:70000",
            "http://host:",
            "http://ho st",
            "http://[::1",
            "http://[::1]x",
            "http://-a.example",
            "http://a..b",
            "http://10.0.0.300",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_served_hosts() {
        assert_eq!(
            parse_served_host("Noord.Example.org.").as_deref(),
            Some("noord.example.org")
        );
        assert_eq!(parse_served_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(parse_served_host("192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(parse_served_host("*.example.org"), None);
        assert_eq!(parse_served_host("host:8443"), None);
    }
}
