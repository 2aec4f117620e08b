//! The cookies the portal sets: the sign-in session's (its contents are `signin::LoginSession`,
//! in the shared store under a random id), the browser credential's and the others.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The sign-in session cookie.
pub const SESSION_COOKIE: &str = "__Host-certgate-session";
/// The browser credential (ARCHITECTURE.md).
pub const DEVICE_COOKIE: &str = "__Host-certgate-device";
/// "Remember my organisation" on hosts that serve several.
pub const ORG_COOKIE: &str = "__Host-certgate-org";
/// A random id per browser, set at its first right password: where a person signed in before,
/// guessing at their name from elsewhere does not hold them (see `throttle`).
pub const BROWSER_COOKIE: &str = "__Host-certgate-browser";
/// The language a person chose with the switch on every page (`nl` or `en`); it wins over the
/// browser's `Accept-Language`.
pub const LANG_COOKIE: &str = "__Host-certgate-lang";
/// A sign-in has this long between pages.
pub const SESSION_TTL: Duration = Duration::from_secs(20 * 60);

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Adds a `Set-Cookie` for a `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, and
/// `Max-Age` when given (zero deletes it).
pub fn set_cookie(response: &mut Response, name: &str, value: &str, max_age: Option<Duration>) {
    let mut line = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        line.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if let Ok(value) = HeaderValue::from_str(&line) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Deletes a cookie.
pub fn clear_cookie(response: &mut Response, name: &str) {
    set_cookie(response, name, "", Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; __Host-certgate-session=abc".parse().unwrap(),
        );
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, DEVICE_COOKIE), None);
    }

    #[test]
    fn set_cookies_are_host_only_secure_and_http_only() {
        let mut response = ().into_response();
        set_cookie(
            &mut response,
            DEVICE_COOKIE,
            "tok",
            Some(Duration::from_secs(60)),
        );
        clear_cookie(&mut response, SESSION_COOKIE);
        let lines: Vec<_> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            lines[0],
            "__Host-certgate-device=tok; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(
            lines[1].starts_with("__Host-certgate-session=;") && lines[1].ends_with("Max-Age=0")
        );
    }
}
