//! The end of a sign-in: which second factor applies, the browser credential with its lifetime,
//! the device row, the audit entry, and the mails that tell the user.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use certgate_certs::{CredentialClaims, CredentialClass, MfaStatus};
use certgate_db::{
    Account, AccountKind, AuditEntry, Database, Device, DeviceKind, DeviceTrust, MfaChoice,
};
use certgate_policies::{MfaMethod, MfaRequirement, Organisation};
use certgate_store::{SessionId, Store};

use crate::i18n::{fill, Texts};
use crate::mail::Mail;
use crate::session::{self, LoginSession, SESSION_TTL};
use crate::{PortalState, Visit};

/// Whether an account needs a second factor at this organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A role in `exempt_roles`: password only, `X-Certgate-Mfa: exempt`.
    Exempt,
    /// `required = "enrolled"` and the user has not enrolled.
    NotRequired,
    Required,
}

pub fn mfa_need(org: &Organisation, account: &Account) -> Need {
    if account.kind == AccountKind::Group {
        return Need::Required;
    }
    if account
        .roles
        .iter()
        .any(|role| org.mfa.exempt_roles.iter().any(|e| e == role))
    {
        return Need::Exempt;
    }
    match org.mfa.required {
        MfaRequirement::All => Need::Required,
        MfaRequirement::Enrolled if account.mfa_enrolled => Need::Required,
        MfaRequirement::Enrolled => Need::NotRequired,
    }
}

/// The methods this account may use here: group accounts use one authenticator.
pub fn allowed_methods(org: &Organisation, account: &Account) -> Vec<MfaChoice> {
    if account.kind == AccountKind::Group {
        return vec![MfaChoice::Authenticator];
    }
    org.mfa
        .methods
        .iter()
        .map(|m| match m {
            MfaMethod::Authenticator => MfaChoice::Authenticator,
            MfaMethod::Sms => MfaChoice::Sms,
            MfaMethod::Email => MfaChoice::Email,
        })
        .collect()
}

/// How the user proved who they are, for the audit log and the metric.
pub struct Proof {
    pub method: &'static str,
    pub mfa: MfaStatus,
    /// "Trust this device" was ticked (ignored for group accounts and when hidden).
    pub trust: bool,
}

/// What the caller shows once the credential is set: go to `return_to`, or a page first (the
/// recovery codes; how many recovery codes are left).
pub enum Then {
    Return,
    Page(Box<dyn FnOnce(&str) -> Response + Send>),
}

/// Issues the credential and ends the sign-in: the session id is rotated, the cookie set, the
/// device row, audit entry and last login written.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    session_id: &SessionId,
    mut session: LoginSession,
    org: &Organisation,
    account: &Account,
    proof: Proof,
    then: Then,
) -> Response {
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
            return trouble(visit, org);
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
    };
    if let Err(error) = db.record_device(&device).await {
        tracing::error!(%error, "cannot record the new device");
        return trouble(visit, org);
    }
    let _ = db.record_login(&org.id, &account.id, now).await;
    let _ = db
        .append_audit(&AuditEntry {
            org: org.id.clone(),
            at: now,
            actor: account.username.clone(),
            action: "sign-in".into(),
            subject: device_id.clone(),
            ip: visit.ip.clone(),
            detail: format!("method={} trust={}", proof.method, class.as_str()),
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

    // A new session id: whatever an attacker planted before sign-in is worth nothing now.
    let rotated = store
        .rotate_session(session_id, SESSION_TTL)
        .await
        .ok()
        .flatten();
    let return_to = session.return_to.clone();
    session.restart();
    session.renew_csrf();
    session.device = Some(device_id);
    session.signed_in = Some(session::SignedIn {
        org: org.id.clone(),
        account: account.id.clone(),
        at: now,
        mfa: proof.mfa.as_str().to_owned(),
    });
    let mut response = match then {
        Then::Return => Redirect::to(&return_to).into_response(),
        Then::Page(page) => page(&return_to),
    };
    if let Some(next) = rotated {
        if let Ok(data) = serde_json::to_vec(&session) {
            let _ = store.update_session(&next, &data, SESSION_TTL).await;
        }
        session::set_cookie(&mut response, session::SESSION_COOKIE, next.as_str(), None);
    }
    session::set_cookie(
        &mut response,
        session::DEVICE_COOKIE,
        &token,
        Some(lifetime),
    );
    response
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

/// The page for a failure on our side; never the error itself.
pub fn trouble(visit: &Visit, org: &Organisation) -> Response {
    let c = visit.chrome(Some(org));
    crate::pages::notice(
        StatusCode::SERVICE_UNAVAILABLE,
        &c,
        c.t.sign_in,
        c.t.trouble,
        true,
        Some(("/.certgate/login", c.t.sign_in)),
    )
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
