//! The portal's pages (askama templates in `templates/`, escaped automatically) and how they are
//! answered: a strict Content-Security-Policy, no framing, and `no-store` on every page, since
//! each carries a CSRF token and some show a secret.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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
    pub error: Option<String>,
    pub info: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub c: &'a Chrome,
    pub codes: &'a [String],
    pub next: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub group: bool,
}

#[derive(Template)]
#[template(path = "forgot.html")]
pub struct ForgotPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub ask_org: bool,
    pub org: &'a str,
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
    pub trust: &'static str,
    pub created: String,
    pub expires: String,
    pub last_seen: String,
    pub ip: String,
    /// The device this page is open on.
    pub this: bool,
    /// "revoked", "expired" or empty.
    pub status: &'static str,
    pub can_revoke: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub c: &'a Chrome,
    pub csrf: &'a str,
    pub name: &'a str,
    pub devices: Vec<DeviceRow>,
    /// Signed in recently enough to download a certificate.
    pub fresh: bool,
    /// MFA is off for this user and the organisation lets users turn it on.
    pub can_turn_on_mfa: bool,
    /// The user has an authenticator, so recovery codes can be made anew.
    pub can_renew_codes: bool,
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
    pub last_login: String,
    pub devices: usize,
    pub disabled: bool,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "admin_accounts.html")]
pub struct AdminAccountsPage<'a> {
    pub c: &'a Chrome,
    pub q: &'a str,
    pub users: Vec<UserRow>,
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
        }
    }

    #[test]
    fn pages_escape_what_users_typed() {
        let c = chrome(&EN);
        let page = LoginPage {
            c: &c,
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
