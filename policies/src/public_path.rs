//! Public paths: the parts of an organisation's site served without any credential, and the
//! matching rule that decides whether a request path falls under one. The rule refuses rather
//! than guesses whenever the gateway and the upstream could read a path differently.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode_str;

use crate::error::ValueError;

/// A path prefix from `access.public_paths`, matched by whole segments: `/public` covers
/// `/public` and `/public/x`, not `/publicity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicPath(String);

impl PublicPath {
    /// Accepts a plain absolute path. A trailing `/` is dropped (`/public/` means `/public`).
    /// Refused: `/` itself (it would make the whole site public), `.`/`..` and empty segments,
    /// and `%`, `;`, `\`, `?`, `#`, whitespace or control characters, none of which a prefix
    /// meant literally needs.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        if !text.starts_with('/') {
            return Err(ValueError::PathNotAbsolute(text.to_owned()));
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        if trimmed.is_empty() {
            return Err(ValueError::WholeSitePublic(text.to_owned()));
        }
        if let Some(character) = trimmed.chars().find(|c| {
            matches!(c, '%' | ';' | '\\' | '?' | '#') || c.is_whitespace() || c.is_control()
        }) {
            return Err(ValueError::PathCharacter {
                path: text.to_owned(),
                character,
            });
        }
        if trimmed
            .split('/')
            .skip(1)
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(ValueError::PathSegment(text.to_owned()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn covers(&self, decoded_path: &[u8]) -> bool {
        let prefix = self.0.as_bytes();
        decoded_path.starts_with(prefix)
            && matches!(decoded_path.get(prefix.len()), None | Some(b'/'))
    }
}

impl fmt::Display for PublicPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest of `public_paths` covering the request target `raw_path` (as received, with
/// any `?query`, which is ignored).
///
/// A path never matches when it holds a `.` or `..` segment (also percent-encoded), a `;`
/// (path parameters), a backslash, an encoded `/` or `\`, or a `%` left over after decoding
/// (double encoding): upstreams normalise such paths in different ways, and a path the gateway
/// took for `/public/…` could reach the upstream as something else.
pub fn match_public_path<'a>(
    public_paths: &'a [PublicPath],
    raw_path: &str,
) -> Option<&'a PublicPath> {
    if public_paths.is_empty() {
        return None;
    }
    let path = raw_path.split('?').next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    if contains_ignoring_case(path.as_bytes(), b"%2f")
        || contains_ignoring_case(path.as_bytes(), b"%5c")
    {
        return None;
    }
    let decoded: Cow<'_, [u8]> = percent_decode_str(path).into();
    if decoded
        .iter()
        .any(|b| matches!(b, b';' | b'\\' | b'%' | b'#'))
    {
        return None;
    }
    // Overlong encodings (`%c0%ae`) are not UTF-8, and control characters (`..%00`, `..%09`)
    // are cut or trimmed by some servers.
    let Ok(decoded_text) = std::str::from_utf8(&decoded) else {
        return None;
    };
    if decoded_text.chars().any(char::is_control) {
        return None;
    }
    if decoded_text.split('/').any(looks_like_dots) {
        return None;
    }
    public_paths
        .iter()
        .filter(|public| public.covers(&decoded))
        .max_by_key(|public| public.0.len())
}

/// A segment some server could read as `.` or `..`: only dots (`...` too), also full-width
/// and other Unicode full stops that normalisation folds to `.`, with any white space.
fn looks_like_dots(segment: &str) -> bool {
    const DOTS: [char; 6] = [
        '.', '\u{FF0E}', '\u{2024}', '\u{FE52}', '\u{3002}', '\u{FF61}',
    ];
    let mut dots = 0;
    for c in segment.chars() {
        if DOTS.contains(&c) {
            dots += 1;
        } else if !c.is_whitespace() {
            return false;
        }
    }
    dots > 0
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn paths(list: &[&str]) -> Vec<PublicPath> {
        list.iter().map(|p| PublicPath::parse(p).unwrap()).collect()
    }

    fn public(list: &[PublicPath], raw: &str) -> Option<String> {
        match_public_path(list, raw).map(|p| p.to_string())
    }

    #[test]
    fn matches_whole_segments() {
        let list = paths(&["/public", "/favicon.ico"]);
        assert_eq!(public(&list, "/public").as_deref(), Some("/public"));
        assert_eq!(public(&list, "/public/").as_deref(), Some("/public"));
        assert_eq!(public(&list, "/public/app.css").as_deref(), Some("/public"));
        assert_eq!(
            public(&list, "/public/app.css?v=3").as_deref(),
            Some("/public")
        );
        assert_eq!(public(&list, "/public//x").as_deref(), Some("/public"));
        assert_eq!(
            public(&list, "/favicon.ico").as_deref(),
            Some("/favicon.ico")
        );
        assert_eq!(
            public(&list, "/favicon.ico?x=/public").as_deref(),
            Some("/favicon.ico")
        );
        assert_eq!(public(&list, "/publicity"), None);
        assert_eq!(public(&list, "/favicon.icon"), None);
        assert_eq!(public(&list, "/admin?next=/public"), None);
        assert_eq!(public(&list, "//public"), None);
        assert_eq!(public(&list, "/PUBLIC"), None);
        assert_eq!(public(&list, "public"), None);
        assert_eq!(public(&list, ""), None);
        assert_eq!(public(&list, "*"), None);
    }

    #[test]
    fn plain_percent_encoding_is_decoded() {
        let list = paths(&["/public"]);
        assert_eq!(public(&list, "/%70ublic/x").as_deref(), Some("/public"));
    }

    #[test]
    fn ambiguous_paths_never_match() {
        let list = paths(&["/public"]);
        for raw in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/.%2e/admin",
            "/public;x/admin",
            "/public/x;jsessionid=1",
            "/public/x%3b",
            "/public%2fadmin",
            "/public%2Fadmin",
            "/public/%2fadmin",
            "/public%5cadmin",
            "/public%5Cadmin",
            "/public\\..\\admin",
            "/public/%252e%252e/admin",
            "/public/x#frag",
        ] {
            assert_eq!(public(&list, raw), None, "{raw}");
        }
    }

    #[test]
    fn segments_some_server_reads_as_dots_never_match() {
        let list = paths(&["/public"]);
        for raw in [
            "/public/..%20/admin",
            "/public/..%09/admin",
            "/public/..%00/admin",
            "/public/%20../admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%e0%80%ae%e0%80%ae/admin",
            "/public/%ef%bc%8e%ef%bc%8e/admin",
            "/public/\u{FF0E}\u{FF0E}/admin",
            "/public/.../admin",
            "/public/%e2%80%a4%e2%80%a4/admin",
            "/public/%7f/x",
            "/public/%ff",
        ] {
            assert_eq!(public(&list, raw), None, "{raw}");
        }
        // Dots inside a name are ordinary.
        assert_eq!(
            public(&list, "/public/app.v2.css").as_deref(),
            Some("/public")
        );
        assert_eq!(
            public(&list, "/public/.well-known/x").as_deref(),
            Some("/public")
        );
        assert_eq!(
            public(&list, "/public/caf%c3%a9.png").as_deref(),
            Some("/public")
        );
    }

    #[test]
    fn longest_public_path_wins() {
        let list = paths(&["/a", "/a/b"]);
        assert_eq!(public(&list, "/a/b/c").as_deref(), Some("/a/b"));
        assert_eq!(public(&list, "/a/c").as_deref(), Some("/a"));
    }

    #[test]
    fn parse_refuses_unusable_paths() {
        assert_eq!(PublicPath::parse("/public/").unwrap().as_str(), "/public");
        let error = PublicPath::parse("public").unwrap_err();
        assert_eq!(error, ValueError::PathNotAbsolute("public".into()));
        assert_eq!(error.to_string(), "\"public\" must start with \"/\"");
        for bad in [
            "/", "/a/../b", "/a//b", "/a;b", "/a%2fb", "/a b", "/a\\b", "/a?x", "/./a",
        ] {
            assert!(PublicPath::parse(bad).is_err(), "{bad}");
        }
    }
}
