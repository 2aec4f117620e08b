//! The portal's pages (askama templates in `templates/`, escaped automatically) and how they are
//! answered: a strict Content-Security-Policy, no framing, and `no-store` on every page, since
//! each carries a CSRF token and some show a secret.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use certgate_policies::TimeZone;

use crate::i18n::Texts;

/// Scripts and styles from the portal itself only; no inline code, no framing, forms post to
/// the portal only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every page shows around its content.
pub struct Chrome {
    pub t: &'static Texts,
    pub org_name: String,
    pub logo: bool,
    /// The other language (code, its own name), offered by the switch on every page.
    pub other_language: (&'static str, &'static str),
    /// The switch: `/.certgate/language?to=…&back=<this page>`.
    pub language_href: String,
}

#[derive(Template)]
#[template(path = "notice.html")]
pub struct NoticePage<'a> {
    pub c: &'a Chrome,
    pub heading: &'a str,
    pub message: &'a str,
    pub error: bool,
    pub link_href: Option<&'a str>,
    pub link_text: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub c: &'a Chrome,
    /// "Forgot your password?", with the name typed so far.
    pub forgot_href: String,
    pub heading: String,
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub ask_org: bool,
    pub org: &'a str,
    pub remember_org: bool,
    pub username: &'a str,
    pub focus_username: bool,
    pub error: Option<String>,
    pub info: Option<String>,
    /// (href, label) of the organisation's SSO providers.
    pub sso: Vec<(String, String)>,
    /// The passkey ceremony's options (JSON), where a passkey alone may sign in here; empty
    /// otherwise.
    pub passkey_options: &'a str,
}

pub struct MethodOption {
    pub value: &'static str,
    pub label: String,
    pub enabled: bool,
    pub checked: bool,
    pub why_not: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "choose.html")]
pub struct ChoosePage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub options: Vec<MethodOption>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "enrol.html")]
pub struct EnrolPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    /// Made by the server from the otpauth URI; contains no user-controlled markup.
    pub qr_svg: String,
    /// The `otpauth://` URI: on a phone, the link that adds the account to its app.
    pub otpauth: String,
    /// Where to get an authenticator app on this device: (app, store, link).
    pub stores: Vec<(&'static str, &'static str, &'static str)>,
    pub secret: String,
    pub trust_label: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "code.html")]
pub struct CodePage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub heading: &'a str,
    pub lead: String,
    pub action: &'a str,
    pub code_label: &'a str,
    pub numeric: bool,
    pub trust_label: String,
    pub trust_checked: bool,
    pub can_resend: bool,
    pub show_recovery_link: bool,
    /// "Sign in another way": (method, what the button says) of each.
    pub alternatives: Vec<(&'static str, String)>,
    /// What "back" says: back to the account's own factor after another way.
    pub back_label: &'static str,
    pub error: Option<String>,
    pub info: Option<String>,
}

/// A step waiting for a passkey: making the first one, or using one.
#[derive(Template)]
#[template(path = "passkey.html")]
pub struct PasskeyPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub heading: &'static str,
    pub lead: String,
    /// `register` or `prove`, for the page's script.
    pub ceremony: &'static str,
    /// The ceremony's options (JSON) for the browser; empty when none could be made here.
    pub options: String,
    pub button: &'static str,
    pub trust_label: String,
    pub trust_checked: bool,
    pub show_recovery_link: bool,
    /// "Sign in another way": (method, what the button says) of each.
    pub alternatives: Vec<(&'static str, String)>,
    pub back_label: &'static str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub c: &'a Chrome,
    pub codes: &'a [String],
    pub next: &'a str,
    /// Shown at the end of setting up a factor: says the set-up is complete.
    pub set_up: bool,
}

/// After a recovery code: how many are left, and the way to set up a new factor at once.
#[derive(Template)]
#[template(path = "recovered.html")]
pub struct RecoveredPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub left: String,
    pub next: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub group: bool,
    /// A group tablet was just signed out and stays trusted: the page says what that means and
    /// offers to forget it.
    pub kept: bool,
}

#[derive(Template)]
#[template(path = "forgot.html")]
pub struct ForgotPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub ask_org: bool,
    pub org: &'a str,
    /// The name typed on the sign-in page, carried over.
    pub username: &'a str,
    pub info: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset.html")]
pub struct ResetPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub token: &'a str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "device_code.html")]
pub struct DeviceCodePage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "device_approve.html")]
pub struct ApprovePage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    /// The request's user code: the decision is for the request this page shows.
    pub code: &'a str,
    pub name: &'a str,
    pub ip: &'a str,
    pub when: &'a str,
    /// The request came from another address than this browser.
    pub other_ip: bool,
    pub trust_label: String,
    pub trust_checked: bool,
}

/// One of the user's devices, as the account page shows it.
pub struct DeviceRow {
    pub id: String,
    pub kind: &'static str,
    /// What the device is, in words its owner knows: "Chrome op Android", "Certificaat".
    pub label: String,
    pub trust: &'static str,
    pub created: String,
    pub expires: String,
    pub last_seen: String,
    pub ip: String,
    /// The device this page is open on.
    pub this: bool,
    /// "revoked", "ended", "expired" or empty (active), by the rule the gateway admits by.
    pub status: &'static str,
    /// Active: the gateway admits it until it expires, so ending it means something.
    pub can_revoke: bool,
    /// Refused by a revocation: its end date no longer says anything.
    pub refused: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub name: &'a str,
    /// The devices that can still be used, newest first.
    pub devices: Vec<DeviceRow>,
    /// Those revoked, ended or expired, apart so they do not read as "can use the application
    /// as you".
    pub ended: Vec<DeviceRow>,
    /// This person may have a certificate made (see `account::may_use_certificates`).
    pub certificates: bool,
    /// Signed in recently enough to download a certificate.
    pub fresh: bool,
    /// MFA is off for this user and the organisation lets users turn it on.
    pub can_turn_on_mfa: bool,
    /// The user has an authenticator, so recovery codes can be made anew.
    pub can_renew_codes: bool,
    /// The account's passkeys, oldest first.
    pub passkeys: Vec<PasskeyRow>,
    /// Passkeys are offered to this account here.
    pub passkeys_offered: bool,
    /// Signed in recently enough, with the second factor, to add or remove passkeys.
    pub may_change_passkeys: bool,
    /// Passkeys are offered here and the sign-in is fresh: the form to add one.
    pub may_add_passkey: bool,
    /// The ceremony's options (JSON) for adding one.
    pub passkey_options: &'a str,
    /// The name suggested for a new passkey (this device's).
    pub passkey_name: String,
    /// Adding one just failed.
    pub passkey_failed: bool,
}

/// A passkey on the account page.
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub added: String,
    pub used: String,
    /// Not the account's only factor, and the sign-in is fresh.
    pub removable: bool,
}

#[derive(Template)]
#[template(path = "certificate.html")]
pub struct CertificatePage<'a> {
    pub c: &'a Chrome,
    pub password: &'a str,
    pub download: &'a str,
    pub expires: &'a str,
    /// The Chrome/Edge `AutoSelectCertificateForUrls` policy line.
    pub policy: &'a str,
}

/// An account in the admins' list.
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub kind: &'static str,
    pub roles: String,
    pub mfa: &'static str,
    pub enrolled: bool,
    /// How many passkeys the account has.
    pub passkeys: usize,
    pub last_login: String,
    pub devices: usize,
    pub disabled: bool,
}

impl UserRow {
    /// The second factor as it is now: its method, or that there is none. After a reset the
    /// account keeps needing one ("enrolled"), so it is chosen at the next sign-in; `mfa` is
    /// `-` when the account has no method.
    pub fn second_factor(&self, t: &Texts) -> String {
        match (self.mfa, self.enrolled) {
            ("-" | "", true) if self.passkeys > 0 => {
                format!("{} ({})", t.method_passkey_plain, t.enrolled)
            }
            ("-" | "", true) => t.mfa_chosen_next.to_owned(),
            ("-" | "", false) => t.mfa_not_set.to_owned(),
            (method, true) => format!("{method} ({})", t.enrolled),
            (method, false) => method.to_owned(),
        }
    }
}

/// An audit entry as the admins' log shows it: in words, in the page's language.
pub struct AuditRow {
    pub at: String,
    /// The action as stored, for the export and a tooltip.
    pub action: String,
    /// "Anna reset the second factor of groep-zonnebloem".
    pub sentence: String,
    pub ip: String,
    pub detail: String,
}

/// The links around one page of a long admin list, its query kept.
pub struct Pager {
    pub previous: Option<String>,
    pub next: Option<String>,
    /// "Page 2".
    pub label: String,
}

#[derive(Template)]
#[template(path = "admin_accounts.html")]
pub struct AdminAccountsPage<'a> {
    pub c: &'a Chrome,
    pub q: &'a str,
    pub users: Vec<UserRow>,
    pub pager: Pager,
    /// What was just done ("The account was deleted.").
    pub notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "admin_account.html")]
pub struct AdminAccountPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub user: UserRow,
    pub email: &'a str,
    pub mobile: &'a str,
    pub devices: Vec<DeviceRow>,
    pub error: Option<String>,
    pub fresh: bool,
    /// What was just done ("The device was revoked.").
    pub notice: Option<&'static str>,
    /// A shared tablet: its password is set on this page.
    pub group: bool,
    /// "Blocked: … waits until 14:05 CET": signing in with the account's names waits after
    /// wrong guesses; `None` when it does not.
    pub blocked: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_new.html")]
pub struct AdminNewPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub username: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub mobile: &'a str,
    pub group: bool,
    pub roles: &'a str,
    pub error: Option<String>,
    pub fresh: bool,
}

#[derive(Template)]
#[template(path = "admin_confirm.html")]
pub struct AdminConfirmPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub action: &'a str,
    pub question: &'a str,
    pub consequences: &'a str,
    pub button: &'a str,
    pub back: &'a str,
    /// The device the action is about, posted along; empty for none.
    pub device: &'a str,
    /// The action cannot be undone: its button is red.
    pub danger: bool,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage<'a> {
    pub c: &'a Chrome,
    pub account: &'a str,
    /// The JSON-lines export of what is shown.
    pub export: String,
    pub days: i64,
    pub entries: Vec<AuditRow>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
pub struct AdminSettingsPage<'a> {
    pub c: &'a Chrome,
    pub facts: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "admin_allowlist.html")]
pub struct AdminAllowListPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub version: i64,
    pub text: &'a str,
    /// The policy files' entries: (network, source).
    pub files: Vec<(String, String)>,
    pub limits: String,
    /// Every bad line of a refused save.
    pub problems: Vec<String>,
    pub error: Option<String>,
    pub fresh: bool,
}

#[derive(Template)]
#[template(path = "admin_import.html")]
pub struct AdminImportPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub csv: &'a str,
    pub rows: Vec<certgate_accounts::ImportRow>,
    /// Every row is fine: the import button is shown.
    pub ready: bool,
    pub error: Option<String>,
    pub fresh: bool,
}

#[derive(Template)]
#[template(path = "admin_devices.html")]
pub struct AdminDevicesPage<'a> {
    pub c: &'a Chrome,
    /// Each device with its owner's (user name, account id).
    pub devices: Vec<(DeviceRow, (String, String))>,
    pub pager: Pager,
}

/// A time as every page shows it: local to the organisation's zone, with the zone
/// (`2026-12-06 21:07 CET`).
pub fn local_time(unix: i64, zone: &TimeZone) -> String {
    zone.readable(unix)
}

/// The security headers every portal response carries.
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Renders `page` as an HTML response with `status`.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response();
            secure_headers(&mut response);
            response
        }
        Err(error) => {
            tracing::error!(%error, "a portal page could not be rendered");
            let mut response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Something went wrong. / Er ging iets mis.",
            )
                .into_response();
            secure_headers(&mut response);
            response
        }
    }
}

/// A page with one message (and maybe one link onward).
pub fn notice(
    status: StatusCode,
    c: &Chrome,
    heading: &str,
    message: &str,
    error: bool,
    link: Option<(&str, &str)>,
) -> Response {
    html(
        status,
        &NoticePage {
            c,
            heading,
            message,
            error,
            link_href: link.map(|(href, _)| href),
            link_text: link.map_or("", |(_, text)| text),
        },
    )
}

/// The authenticator apps people know, in the store of the system their browser runs on
/// (`issue::browser_and_system`): Apple's App Store on an iPhone or iPad, Google Play on
/// Android, both elsewhere.
pub fn authenticator_stores(system: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    const APPLE: [(&str, &str, &str); 2] = [
        (
            "Microsoft Authenticator",
            "App Store",
            "https://apps.apple.com/app/microsoft-authenticator/id983156458",
        ),
        (
            "Google Authenticator",
            "App Store",
            "https://apps.apple.com/app/google-authenticator/id388497605",
        ),
    ];
    const GOOGLE: [(&str, &str, &str); 2] = [
        (
            "Microsoft Authenticator",
            "Google Play",
            "https://play.google.com/store/apps/details?id=com.azure.authenticator",
        ),
        (
            "Google Authenticator",
            "Google Play",
            "https://play.google.com/store/apps/details?id=com.google.android.apps.authenticator2",
        ),
    ];
    match system {
        "iPhone" | "iPad" => APPLE.to_vec(),
        "Android" => GOOGLE.to_vec(),
        _ => APPLE.into_iter().chain(GOOGLE).collect(),
    }
}

/// The QR code of `text` as an SVG element (black on white, with a quiet zone).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// Only `#rgb`, `#rrggbb` (and their alpha forms) reach the theme stylesheet.
pub fn safe_colour(colour: Option<&str>) -> Option<&str> {
    let colour = colour?;
    let hex = colour.strip_prefix('#')?;
    (matches!(hex.len(), 3 | 4 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(colour)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::i18n::{EN, NL};

    fn chrome(t: &'static Texts) -> Chrome {
        Chrome {
            t,
            org_name: "Zorggroep <Noord>".into(),
            logo: false,
            other_language: ("en", "English"),
            language_href: "/.certgate/language?to=en&back=%2F".into(),
        }
    }

    #[test]
    fn pages_escape_what_users_typed() {
        let c = chrome(&EN);
        let page = LoginPage {
            c: &c,
            forgot_href: "/.certgate/forgot".into(),
            heading: "Sign in".into(),
            csrf: "t0k3n",
            return_to: "/a?b=\"><script>",
            ask_org: true,
            org: "<b>",
            remember_org: false,
            username: "anna\"><img src=x>",
            focus_username: true,
            error: None,
            info: None,
            sso: vec![],
            passkey_options: "",
        }
        .render()
        .unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img src=x>"), "{page}");
        assert!(!page.contains("<Noord>"), "{page}");
        assert!(
            page.contains("Zorggroep &#60;Noord&#62;") || page.contains("Zorggroep &lt;Noord&gt;"),
            "{page}"
        );
        assert!(page.contains(r#"name="csrf" value="t0k3n""#), "{page}");
        assert!(page.contains(r#"<html lang="en">"#));
    }

    #[test]
    fn dutch_pages_speak_dutch() {
        let c = chrome(&NL);
        let page = LogoutPage {
            c: &c,
            csrf: "x",
            group: true,
            kept: false,
        }
        .render()
        .unwrap();
        assert!(page.contains(r#"<html lang="nl">"#));
        assert!(page.contains("Dit apparaat vergeten"), "{page}");
    }

    #[test]
    fn responses_carry_the_security_headers() {
        let c = chrome(&EN);
        let response = notice(StatusCode::OK, &c, "Hi", "there", false, None);
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn only_hex_colours_reach_the_theme() {
        assert_eq!(safe_colour(Some("#0b6e4f")), Some("#0b6e4f"));
        assert_eq!(safe_colour(Some("#abc")), Some("#abc"));
        assert_eq!(safe_colour(Some("red;}body{x")), None);
        assert_eq!(safe_colour(Some("#12345")), None);
        assert_eq!(safe_colour(None), None);
    }

    #[test]
    fn the_qr_code_is_an_svg() {
        let svg = qr_svg("otpauth://totp/Noord:anna?secret=ABC&issuer=Noord").unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
