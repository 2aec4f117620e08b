//! Where to send a user after signing in: only a path on the same organisation host. Anything
//! that a browser could read as another host (`//x`, `/\x`, a scheme, encoded forms of those,
//! control characters) becomes `/`.

/// The safe form of a `return_to` query value as it arrived (percent-encoded, as a query
/// parameter is): the path it names, when that path is on this host.
pub fn safe_return_to(raw: &str) -> String {
    let Some(target) = decode_once(raw) else {
        return "/".into();
    };
    // Whatever the target still holds encoded must not turn into another host either.
    match percent_decode(&target) {
        Some(fully) if is_local_path(&target) && is_local_path(&fully) => {
            percent_encoding::utf8_percent_encode(&target, UNSAFE_IN_LOCATION).to_string()
        }
        _ => "/".into(),
    }
}

/// What may not appear as such in a `Location` header's path.
const UNSAFE_IN_LOCATION: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'\\');

fn is_local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && !path.contains("/.certgate/logout")
}

/// Percent-decodes repeatedly (a double-encoded `%252F%252F` must not get through either);
/// `None` for malformed escapes or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut current = text.to_owned();
    for _ in 0..4 {
        let next = decode_once(&current)?;
        if next == current {
            return Some(next);
        }
        current = next;
    }
    None
}

fn decode_once(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_host_survive() {
        for (given, expected) in [
            ("/rooster?week=12", "/rooster?week=12"),
            ("%2Frooster%3Fweek%3D12", "/rooster?week=12"),
            ("%2Fa%2Fb%2520c", "/a/b%20c"),
            ("/a/b%20c", "/a/b%20c"),
            ("/rooster%3Fweek%3D12", "/rooster?week=12"),
            ("/", "/"),
            ("https://evil.example/", "/"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("%2F%2Fevil.example", "/"),
            ("/%2F%2Fevil.example", "/"),
            ("/%5Cevil.example", "/"),
            ("%252F%252Fevil.example", "/"),
            ("/%0d%0aSet-Cookie:x", "/"),
            ("javascript:alert(1)", "/"),
            ("evil.example", "/"),
            ("", "/"),
            ("/%zz", "/"),
            ("/.certgate/logout", "/"),
        ] {
            assert_eq!(safe_return_to(given), expected, "{given}");
        }
    }
}
