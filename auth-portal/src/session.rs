//! The sign-in session (in the shared store, named by a random id in a `__Host-` cookie) and the
//! cookies the portal sets.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The sign-in session cookie.
pub const SESSION_COOKIE: &str = "__Host-certgate-session";
/// The browser credential (ARCHITECTURE.md).
pub const DEVICE_COOKIE: &str = "__Host-certgate-device";
/// "Remember my organisation" on hosts that serve several.
pub const ORG_COOKIE: &str = "__Host-certgate-org";
/// A random id per browser, set at its first right password: where a person signed in before,
/// guessing at their name from elsewhere does not hold them (see `throttle`).
pub const BROWSER_COOKIE: &str = "__Host-certgate-browser";
/// A sign-in has this long between pages.
pub const SESSION_TTL: Duration = Duration::from_secs(20 * 60);

/// What the portal remembers between the pages of one sign-in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginSession {
    /// Every form carries it back.
    pub csrf: String,
    /// Where to go when done (already made safe).
    pub return_to: String,
    /// The organisation signing in to.
    pub org: Option<String>,
    /// The account whose password was checked; set only after that.
    pub account: Option<String>,
    /// When its password (or identity provider) vouched for it, unix seconds: an account reset
    /// since (new password, disable, MFA reset) voids the sign-in half way through.
    #[serde(default)]
    pub proven_at: i64,
    /// The method chosen on this visit (before it is confirmed and stored).
    pub method: Option<String>,
    /// The account's enrolled factor, one the organisation no longer offers, was proven on this
    /// sign-in: the user may now choose one it offers.
    #[serde(default)]
    pub old_factor_proven: bool,
    /// A new authenticator secret waiting for its first code, sealed for the account.
    pub enrol_secret: Option<String>,
    /// A code went out on this visit (so reloading the page does not send another).
    pub code_sent: bool,
    /// Signed in: the device id of the credential issued (for sign-out).
    pub device: Option<String>,
    /// A message for the next page (a code that could not be sent).
    pub flash: Option<String>,
    /// A completed sign-in in this session (for approving a device and downloading a
    /// certificate, which need a fresh one).
    pub signed_in: Option<SignedIn>,
    /// The device-flow request this browser is approving (hash of its device code); kept
    /// across the sign-in it needs.
    pub device_request: Option<String>,
}

/// Who signed in, when, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub org: String,
    pub account: String,
    /// Unix seconds.
    pub at: i64,
    /// `yes`, `exempt` or `none`.
    pub mfa: String,
}

impl LoginSession {
    pub fn new(return_to: String) -> Self {
        LoginSession {
            csrf: new_csrf(),
            return_to,
            ..LoginSession::default()
        }
    }

    /// A new form token: one read from a page before sign-in is worth nothing after it.
    pub fn renew_csrf(&mut self) {
        self.csrf = new_csrf();
    }

    /// Whether a form's token is this session's, compared in constant time.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The password (or identity provider) vouched for `account` of `org` at `at`: on to the
    /// second factor.
    pub fn proven(&mut self, org: &str, account: &str, at: i64) {
        self.org = Some(org.to_owned());
        self.account = Some(account.to_owned());
        self.proven_at = at;
    }

    /// Back to the start of a sign-in (after "back" on the code page, say), keeping the
    /// token, the destination and the organisation.
    pub fn restart(&mut self) {
        self.account = None;
        self.proven_at = 0;
        self.method = None;
        self.old_factor_proven = false;
        self.enrol_secret = None;
        self.code_sent = false;
        self.device = None;
        self.flash = None;
        self.signed_in = None;
    }
}

fn new_csrf() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

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

    #[test]
    fn csrf_tokens_must_match() {
        let session = LoginSession::new("/".into());
        assert!(session.csrf_ok(&session.csrf.clone()));
        assert!(!session.csrf_ok(""));
        assert!(!session.csrf_ok("guess"));
    }
}
