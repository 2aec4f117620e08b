//! The end of a sign-in: the browser credential with its lifetime, the device row, the audit
//! entry, and the mails that tell the user.

use std::time::Duration;

use crate::extract::PageError;
use certgate_certs::{CredentialClaims, CredentialClass, MfaStatus};
use certgate_db::{Account, AccountKind, AuditEntry, Database, Device, DeviceKind, DeviceTrust};
use certgate_policies::Organisation;

use crate::i18n::{fill, Texts};
use crate::mail::Mail;
use crate::signin::Proof;
use crate::{PortalState, Visit};

/// The credential a sign-in earned, for its cookie.
pub struct Issued {
    pub token: String,
    pub lifetime: Duration,
}

/// Issues the browser credential of a completed sign-in: its class and lifetime, the device
/// row, the audit entry, the last login and, for a trusted device, the mail that tells the
/// user. `Err`: the "try again" page under the organisation (nothing was issued).
pub async fn credential(
    state: &PortalState,
    visit: &Visit,
    db: &Database,
    org: &Organisation,
    account: &Account,
    proof: Proof,
) -> Result<Issued, PageError> {
    let now = state.now();
    let (class, lifetime, trust) = if account.kind == AccountKind::Group {
        (
            CredentialClass::Group,
            org.mfa.group_idle_timeout,
            DeviceTrust::Group,
        )
    } else if proof.trust && !org.mfa.trust_device_for.is_zero() && proof.mfa == MfaStatus::Yes {
        (
            CredentialClass::Trusted,
            org.mfa.trust_device_for,
            DeviceTrust::Trusted,
        )
    } else {
        (
            CredentialClass::Personal,
            org.mfa.session_lifetime,
            DeviceTrust::Session,
        )
    };
    let device_id = hex::encode(rand::random::<[u8; 16]>());
    let not_after = now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    let claims = CredentialClaims {
        device_id: device_id.clone(),
        org: org.id.clone(),
        account: account.username.clone(),
        class,
        mfa: proof.mfa,
        issued_at: now,
        not_after,
    };
    let token = match state.credential_key.sign(&claims) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "cannot sign a credential");
            return Err(PageError::unavailable_in(visit, org));
        }
    };
    let device = Device {
        org: org.id.clone(),
        id: device_id.clone(),
        account_id: account.id.clone(),
        kind: DeviceKind::Browser,
        trust,
        created_at: now,
        expires_at: not_after,
        last_seen: Some(now),
        revoked_at: None,
        ip: visit.ip.clone(),
        browser: visit.agent.0.to_owned(),
        system: visit.agent.1.to_owned(),
    };
    if let Err(error) = db.record_device(&device).await {
        tracing::error!(%error, "cannot record the new device");
        return Err(PageError::unavailable_in(visit, org));
    }
    let _ = db.record_login(&org.id, &account.id, now).await;
    let _ = db
        .append_audit(&AuditEntry {
            org: org.id.clone(),
            at: now,
            actor: account.username.clone(),
            action: certgate_db::AuditAction::SignIn.as_str().into(),
            subject: device_id.clone(),
            ip: visit.ip.clone(),
            detail: format!("method={} trust={}", proof.method.as_str(), class.as_str()),
        })
        .await;
    state
        .metrics
        .credentials_issued
        .with_label_values(&[org.id.as_str(), "browser", class.as_str()])
        .inc();
    tracing::info!(org = %org.id, account = %account.username, device = %device_id, trust = class.as_str(), "signed in");
    if class == CredentialClass::Trusted {
        notify(
            state,
            visit,
            org,
            account,
            visit.texts.mail_trusted_subject,
            &fill(
                visit.texts.mail_trusted_body,
                &org.name,
                &visit.texts.duration(lifetime),
                &visit.ip,
            ),
        );
    }
    Ok(Issued { token, lifetime })
}

/// Queues a security notice to the account's e-mail address, if it has one.
pub fn notify(
    state: &PortalState,
    visit: &Visit,
    org: &Organisation,
    account: &Account,
    subject: &str,
    body: &str,
) {
    send_notice(state, visit.texts, org, account, subject, body);
}

pub fn send_notice(
    state: &PortalState,
    t: &Texts,
    org: &Organisation,
    account: &Account,
    subject: &str,
    body: &str,
) {
    let (Some(mailer), Some(to)) = (&state.mailer, &account.email) else {
        return;
    };
    let mail = Mail {
        to: to.clone(),
        subject: fill(subject, &org.name, "", ""),
        body: format!("{body}{}", fill(t.mail_signature, &org.name, "", "")),
    };
    if let Err(error) = mailer.send(mail) {
        tracing::warn!(%error, org = %org.id, "security notice not sent");
    }
}

/// How long a device revocation must be kept: until the longest credential of that device
/// could have expired (group credentials are renewed on use, so: from now, the idle timeout).
pub fn keep_revocation_for(org: &Organisation, claims: &CredentialClaims, now: i64) -> i64 {
    let renewed = i64::try_from(org.mfa.group_idle_timeout.as_secs()).unwrap_or(i64::MAX);
    let skew = Duration::from_secs(300).as_secs() as i64;
    match claims.class {
        CredentialClass::Group => now.saturating_add(renewed).saturating_add(skew),
        _ => claims.not_after.max(now).saturating_add(skew),
    }
}

/// The browser and the system a User-Agent names, in the words people know them by ("Chrome",
/// "Android"), or empty where it names none certgate recognises. Only these fixed names are
/// stored with a credential, never what the client sent.
pub(crate) fn browser_and_system(user_agent: &str) -> (&'static str, &'static str) {
    let has = |token: &str| user_agent.contains(token);
    // Most specific first: Edge, Opera and Samsung Internet also say "Chrome" and "Safari";
    // Chrome says "Safari" too.
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser/") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        "Chrome"
    } else if has("Safari/") && has("Version/") {
        "Safari"
    } else {
        ""
    };
    // iPhone and iPad before Android and Mac ("like Mac OS X"); Android before Linux.
    let system = if has("iPhone") || has("iPod") {
        "iPhone"
    } else if has("iPad") {
        "iPad"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Macintosh") || has("Mac OS X") {
        "macOS"
    } else if has("Linux") {
        "Linux"
    } else {
        ""
    };
    (browser, system)
}

#[cfg(test)]
mod tests {
    use super::browser_and_system;

    #[test]
    fn user_agents_are_named_by_browser_and_system() {
        for (agent, named) in [
            (
                "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Mobile Safari/537.36",
                ("Chrome", "Android"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                ("Safari", "iPhone"),
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
                ("Chrome", "iPad"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                ("Edge", "Windows"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 \
                 Firefox/128.0",
                ("Firefox", "macOS"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-T220) AppleWebKit/537.36 (KHTML, like \
                 Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
                ("Samsung Internet", "Android"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "ChromeOS"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/131.0.0.0 Safari/537.36",
                ("Chrome", "Linux"),
            ),
            ("curl/8.5.0", ("", "")),
            ("", ("", "")),
            ("<script>alert(1)</script>", ("", "")),
        ] {
            assert_eq!(browser_and_system(agent), named, "{agent}");
        }
    }
}
