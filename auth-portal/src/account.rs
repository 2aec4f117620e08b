//! The signed-in user's own page: their devices (kind, trust, created, expires, last seen,
//! address) with a button to revoke each, and a PKCS#12 certificate for this device after a
//! fresh sign-in — the one case where certgate makes the key, hands it over once and forgets it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_accounts::{Refusal, RevocationSet, Standing};
use certgate_certs::{
    generate_password, pkcs12_bundle_as, CredentialClass, DeviceId, DeviceSubject, Pkcs12Format,
};
use certgate_db::{
    Account, AccountKind, AuditEntry, Database, Device, DeviceKind, DeviceTrust, StoredPasskey,
};
use certgate_policies::{Organisation, TimeZone};
use certgate_store::Store;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::extract::{Backends, FromPage, Page, PageError, Posted, PostedIn};
use crate::flow::{create_attempt, load_attempt, Attempt};
use crate::pages::{self, AccountPage, CertificatePage, DeviceRow, PasskeyRow};
use crate::session;
use crate::signin::LoginSession;
use crate::{PortalState, Visit};

/// How long a PKCS#12 bundle waits for its one download.
const BUNDLE_LIFETIME: Duration = Duration::from_secs(300);
/// This page.
const ACCOUNT: &str = "/.certgate/account";

/// Who is looking at the page.
pub(crate) struct Me {
    pub org: Arc<Organisation>,
    pub account: Account,
    /// The device whose browser credential this request carried.
    pub this_device: Option<String>,
    /// The trust class of that credential, for the PKCS#12 lifetime.
    pub class: Option<CredentialClass>,
    pub attempt: Attempt,
    pub fresh: bool,
    /// A fresh sign-in that proved a second factor (not a password alone, an exempt role, or a
    /// provider that vouched without one).
    pub fresh_with_factor: bool,
}

fn to_login() -> PageError {
    PageError::sign_in_first(ACCOUNT)
}

/// A request for the signed-in user's own pages: the backends and who they are ([`me`]);
/// anyone else signs in first, and comes back to the account page.
pub(crate) type UserPage = Page<Me>;

impl FromPage for Me {
    async fn load(
        state: &PortalState,
        b: &Backends,
        headers: &HeaderMap,
    ) -> Result<Self, PageError> {
        me(state, &b.visit, &b.store, &b.db, headers).await
    }
}

/// A form of the user's own pages, its CSRF token checked against their session; a forged or
/// expired one goes back to the account page.
pub(crate) type UserForm<F> = Posted<Me, F>;

impl PostedIn for Me {
    fn session(&self) -> &LoginSession {
        &self.attempt.session
    }

    fn refused() -> PageError {
        PageError::redirect(ACCOUNT)
    }
}

/// The user, from this browser's credential (checked against the database) or a sign-in in
/// this session; else the sign-in page.
pub(crate) async fn me(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    headers: &HeaderMap,
) -> Result<Me, PageError> {
    let now = state.now();
    let claims = session::cookie(headers, session::DEVICE_COOKIE)
        .and_then(|token| state.tokens.verify(token, now).ok())
        .filter(|c| visit.org(&c.org).is_some());
    let attempt = match load_attempt(store, headers).await {
        Some(attempt) => attempt,
        // Without a session only this browser's credential can name the user; anyone else
        // goes to the sign-in page, which starts one.
        None if claims.is_some() => create_attempt(visit, store, "/".into()).await?,
        None => return Err(to_login()),
    };
    let signed_in = attempt.session.signed_in().cloned();
    let (org_id, by) = match (&claims, &signed_in) {
        (Some(c), _) => (c.org.clone(), Who::Name(c.account.clone())),
        (None, Some(s)) if visit.org(&s.org).is_some() => {
            (s.org.clone(), Who::Id(s.account.clone()))
        }
        _ => return Err(to_login()),
    };
    let org = visit.org(&org_id).cloned().ok_or_else(to_login)?;
    let account = match &by {
        Who::Name(name) => db.find_account(&org.id, name).await,
        Who::Id(id) => db.account(&org.id, id).await,
    };
    let account = match account {
        Ok(Some(account)) if !account.disabled => account,
        Ok(_) => return Err(to_login()),
        Err(_) => return Err(PageError::unavailable(visit)),
    };
    if let Some(c) = &claims {
        // The credential names this account by its user name (not an e-mail address), was
        // issued after the account's last reset (or creation: a new account of a deleted one's
        // name is not theirs), and its device is the account's and not revoked.
        let device = db.device(&org.id, &c.device_id).await.ok().flatten();
        let ours = device
            .as_ref()
            .is_some_and(|d| d.account_id == account.id && d.revoked_at.is_none());
        if account.username != c.account || c.issued_at < account.not_valid_before || !ours {
            return Err(to_login());
        }
    }
    // A sign-in from before an account reset (disable, MFA reset, new password) counts for
    // nothing here.
    let signed_in = signed_in.filter(|s| s.at >= account.not_valid_before);
    if claims.is_none() && signed_in.is_none() {
        return Err(to_login());
    }
    let fresh = signed_in
        .as_ref()
        .is_some_and(|s| s.account == account.id && s.fresh(now));
    let fresh_with_factor = fresh
        && signed_in
            .as_ref()
            .is_some_and(|s| s.mfa == certgate_certs::MfaStatus::Yes);
    Ok(Me {
        org,
        account,
        this_device: claims.as_ref().map(|c| c.device_id.clone()),
        class: claims.map(|c| c.class),
        attempt,
        fresh,
        fresh_with_factor,
    })
}

enum Who {
    Name(String),
    Id(String),
}

/// `unix` as the pages show a time, in the zone of organisation `org` (the default zone if this
/// host does not serve it).
pub(crate) fn org_time(visit: &Visit, org: &str, unix: i64) -> String {
    match visit.org(org) {
        Some(org) => pages::local_time(unix, &org.time_zone),
        None => pages::local_time(unix, &TimeZone::default()),
    }
}

/// Whether `account` may have a certificate made for a device. A certificate lets a device in
/// without signing in for as long as it is trusted, so it is for those whose sign-in proves a
/// second factor: not for the roles the organisation exempts from it (parents).
pub(crate) fn may_use_certificates(org: &Organisation, account: &Account) -> bool {
    !account
        .roles
        .iter()
        .any(|role| org.mfa.exempt_roles.contains(role))
}

fn trust_name(visit: &Visit, trust: DeviceTrust) -> &'static str {
    match trust {
        DeviceTrust::Session => visit.texts.device_trust_session,
        DeviceTrust::Trusted => visit.texts.device_trust_trusted,
        DeviceTrust::Group => visit.texts.trust_group,
    }
}

/// "Chrome op Android", "Browser op iPhone", "Certificaat": what was known of the device when
/// its credential was issued.
fn device_label(visit: &Visit, device: &Device) -> String {
    let t = visit.texts;
    let what = match (device.kind, device.browser.as_str()) {
        (DeviceKind::Browser, "") => t.kind_browser,
        (DeviceKind::Browser, browser) => browser,
        (DeviceKind::Certificate, _) => t.kind_certificate,
    };
    if device.system.is_empty() {
        what.to_owned()
    } else {
        crate::i18n::fill(t.device_on, "", what, &device.system)
    }
}

/// The organisation's revocations, read once for a page, as every gateway holds them. Should
/// they not be read: none (devices then stand by their expiry only), logged.
pub(crate) async fn revocations(state: &PortalState, org: &str, now: i64) -> RevocationSet {
    let read = match state.backend.database() {
        Some(db) => db.live_revocations_of(org, now).await,
        None => Ok(Vec::new()),
    };
    match read {
        Ok(records) => RevocationSet::from_records(&records),
        Err(error) => {
            tracing::error!(%error, "revocations unread: devices listed by their expiry only");
            RevocationSet::default()
        }
    }
}

/// How each of `devices` (all of one organisation) stands now, by the rule the gateway admits
/// by: the organisation's revocations read once, and the user names of only the accounts the
/// devices belong to.
async fn standings(state: &PortalState, devices: &[Device]) -> Vec<Standing> {
    let now = state.now();
    let Some(first) = devices.first() else {
        return Vec::new();
    };
    let set = revocations(state, &first.org, now).await;
    let mut ids: Vec<String> = devices.iter().map(|d| d.account_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let names = match state.backend.database() {
        Some(db) => db
            .usernames_of(&first.org, &ids)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "account names unread: their devices are listed as ended");
                HashMap::new()
            }),
        None => HashMap::new(),
    };
    set.standings(devices, |id| names.get(id).cloned(), now)
}

/// When each device was last used: the store's time (the gateway's, reported once a minute)
/// when it is newer than SQL's, read for the whole list in one round trip.
pub(crate) async fn last_seen_of(store: &Store, devices: &[Device]) -> Vec<Option<i64>> {
    let keys: Vec<(&str, &str)> = devices
        .iter()
        .map(|d| (d.org.as_str(), d.id.as_str()))
        .collect();
    let from_store = store.last_seen_many(&keys).await.unwrap_or_default();
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| from_store.get(i).copied().flatten().max(d.last_seen))
        .collect()
}

/// How many of `devices` (of the account named `username`) can still be used, by `set`.
pub(crate) fn active_devices(
    set: &RevocationSet,
    username: &str,
    devices: &[Device],
    now: i64,
) -> usize {
    devices
        .iter()
        .filter(|d| set.standing(username, d, now).is_active())
        .count()
}

/// The rows of a device list, newest first; `this_device` is marked.
pub(crate) async fn device_rows(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    this_device: Option<&str>,
    devices: &[Device],
) -> Vec<DeviceRow> {
    let seen_now = last_seen_of(store, devices).await;
    let standings = standings(state, devices).await;
    let mut rows = Vec::with_capacity(devices.len());
    for (i, (d, seen)) in devices.iter().zip(seen_now).enumerate().rev() {
        // (Every device has its standing; a missing one would not be offered for revoking.)
        let standing = standings.get(i).copied().unwrap_or(Standing::Expired);
        let time = |unix: i64| org_time(visit, &d.org, unix);
        rows.push(DeviceRow {
            id: d.id.clone(),
            kind: match d.kind {
                DeviceKind::Browser => visit.texts.kind_browser,
                DeviceKind::Certificate => visit.texts.kind_certificate,
            },
            label: device_label(visit, d),
            trust: trust_name(visit, d.trust),
            created: time(d.created_at),
            expires: time(d.expires_at),
            last_seen: seen.map_or_else(|| "-".into(), time),
            ip: d.ip.clone(),
            this: this_device == Some(d.id.as_str()),
            status: match standing {
                Standing::Active => "",
                Standing::Expired => visit.texts.status_expired,
                Standing::Refused(Refusal::Account) => visit.texts.status_ended,
                Standing::Refused(Refusal::Device | Refusal::Serial) => visit.texts.status_revoked,
            },
            can_revoke: standing.is_active(),
            refused: matches!(standing, Standing::Refused(_)),
        });
    }
    rows
}

/// Whether `query` has `name=value`.
fn query_says(query: Option<&str>, name: &str, value: &str) -> bool {
    query.and_then(|q| crate::flow::raw_param(q, name)) == Some(value)
}

/// Whether this account may have passkeys here.
fn may_have_passkeys(org: &Organisation, account: &Account) -> bool {
    crate::signin::allowed_methods(org, account).contains(&certgate_db::MfaChoice::Passkey)
}

/// Whether `passkey` may be removed: not while it is the only factor the account has (as the
/// sign-in counts them: an authenticator with its secret).
fn removable(account: &Account, passkeys: &[StoredPasskey]) -> bool {
    let method = match account.mfa_method {
        Some(certgate_db::MfaChoice::Authenticator) => account.totp_secret.is_some(),
        other => other.is_some(),
    };
    passkeys.len() > 1 || method
}

/// Whether this visit may add or remove passkeys: right after a sign-in that proved the second
/// factor (a password alone never changes one), or one with a password where the account has
/// no factor yet.
fn may_change_passkeys(me: &Me) -> bool {
    me.fresh_with_factor || (me.fresh && !me.account.mfa_enrolled)
}

/// `GET /.certgate/account`.
pub(crate) async fn page(
    State(state): State<Arc<PortalState>>,
    RawQuery(query): RawQuery,
    UserPage {
        visit,
        store,
        db,
        it: mut me,
    }: UserPage,
) -> Result<Response, PageError> {
    let passkeys = db
        .passkeys(&me.org.id, &me.account.id)
        .await
        .map_err(|_| PageError::unavailable(&visit))?;
    let may_add_passkey = may_change_passkeys(&me) && may_have_passkeys(&me.org, &me.account);
    // Adding one: its ceremony waits in the session, its options go on the page.
    if may_add_passkey {
        crate::passkey::ready_to_register(
            &visit,
            &me.org,
            &me.account,
            &passkeys,
            &mut me.attempt.session,
        );
        crate::flow::save(&store, &me.attempt).await;
    }
    let attempt_options = may_add_passkey
        .then(|| crate::passkey::register_options(&me.attempt.session, &me.account))
        .flatten();
    let can_remove = may_change_passkeys(&me) && removable(&me.account, &passkeys);
    let passkey_rows: Vec<PasskeyRow> = passkeys
        .iter()
        .map(|p| PasskeyRow {
            id: p.id.clone(),
            name: p.name.clone(),
            added: org_time(&visit, &p.org, p.created_at),
            used: p
                .last_used
                .map_or_else(|| "-".into(), |at| org_time(&visit, &p.org, at)),
            removable: can_remove,
        })
        .collect();
    let devices = db
        .devices(&me.org.id, &me.account.id)
        .await
        .map_err(|_| PageError::unavailable(&visit))?;
    let (rows, ended): (Vec<DeviceRow>, Vec<DeviceRow>) =
        device_rows(&state, &visit, &store, me.this_device.as_deref(), &devices)
            .await
            .into_iter()
            .partition(|row| row.can_revoke);
    let c = visit.chrome(Some(&me.org));
    let mut response = pages::html(
        StatusCode::OK,
        &AccountPage {
            c: &c,
            csrf: me.attempt.session.csrf(),
            name: &me.account.display_name,
            devices: rows,
            ended,
            certificates: may_use_certificates(&me.org, &me.account),
            fresh: me.fresh,
            can_turn_on_mfa: !me.account.mfa_enrolled
                && me.account.kind == AccountKind::Personal
                && me.org.mfa.required == certgate_policies::MfaRequirement::Enrolled,
            // Recovery codes for every method: a phone for texts can be lost too.
            can_renew_codes: me.account.mfa_enrolled
                && (me.account.mfa_method.is_some() || !passkeys.is_empty()),
            passkeys: passkey_rows,
            passkeys_offered: may_have_passkeys(&me.org, &me.account),
            may_change_passkeys: may_change_passkeys(&me),
            may_add_passkey,
            passkey_options: attempt_options.as_deref().unwrap_or(""),
            passkey_name: crate::passkey::device_name(&visit),
            passkey_failed: query_says(query.as_deref(), "passkey", "failed"),
        },
    );
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        me.attempt.id.as_str(),
        None,
    );
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    device: String,
}

/// `POST /.certgate/account/revoke`: one of the user's own devices, everywhere within a second.
pub(crate) async fn revoke(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit,
        db,
        it: me,
        form,
        ..
    }: UserForm<RevokeForm>,
) -> Result<Response, PageError> {
    let device = match db.device(&me.org.id, &form.device).await {
        Ok(Some(d)) if d.account_id == me.account.id => d,
        _ => return Err(PageError::redirect(ACCOUNT)),
    };
    let actor = certgate_accounts::Actor::User {
        account: &me.account,
        ip: &visit.ip,
    };
    let ended = state
        .accounts(&db)
        .revoke_device(actor, &me.org, &me.account, &device)
        .await;
    if let Err(error) = ended {
        tracing::error!(%error, "a device could not be revoked");
        return Err(PageError::unavailable(&visit));
    }
    Ok(Redirect::to(ACCOUNT).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CertificateForm {
    #[serde(default)]
    format: String,
}

/// `POST /.certgate/account/certificate`: a PKCS#12 bundle for this device, after a fresh
/// sign-in. The key is made here, handed over once, and never stored.
pub(crate) async fn certificate(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit,
        store,
        db,
        it: me,
        form,
    }: UserForm<CertificateForm>,
) -> Result<Response, PageError> {
    if !may_use_certificates(&me.org, &me.account) {
        return Err(PageError::redirect(ACCOUNT));
    }
    if !me.fresh {
        return Err(to_login());
    }
    let now = state.now();
    let (trust, lifetime) = if me.account.kind == AccountKind::Group {
        (DeviceTrust::Group, me.org.mfa.group_idle_timeout)
    } else if me.class == Some(CredentialClass::Trusted) {
        (DeviceTrust::Trusted, me.org.mfa.trust_device_for)
    } else {
        (DeviceTrust::Session, me.org.mfa.session_lifetime)
    };
    let device_id = DeviceId::generate().into_string();
    let subject = DeviceSubject {
        org: me.org.id.clone(),
        user: me.account.username.clone(),
        device_id: device_id.clone(),
    };
    let now_at = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // One reading of the CA for the certificate and its chain (a rollover may come between).
    let ca = state.ca.load();
    let issued = ca
        .issue_device_key_pair(&subject, lifetime, now_at)
        .map_err(|error| {
            tracing::error!(%error, "a PKCS#12 certificate could not be issued");
            PageError::unavailable(&visit)
        })?;
    let password = generate_password();
    let format = if form.format == "legacy" {
        Pkcs12Format::Legacy
    } else {
        Pkcs12Format::Modern
    };
    let friendly = format!("{} ({})", me.account.username, me.org.name);
    let bundle = pkcs12_bundle_as(
        &issued.key_pem,
        &issued.cert_pem,
        &ca.chain_pem(),
        &friendly,
        &password,
        format,
    )
    .map_err(|error| {
        tracing::error!(%error, "a PKCS#12 bundle could not be made");
        PageError::unavailable(&visit)
    })?;
    let download = hex::encode(rand::random::<[u8; 16]>());
    if store
        .put_once("pkcs12", &download, &bundle, BUNDLE_LIFETIME)
        .await
        .is_err()
    {
        return Err(PageError::unavailable(&visit));
    }
    let device = Device {
        org: me.org.id.clone(),
        id: device_id.clone(),
        account_id: me.account.id.clone(),
        kind: DeviceKind::Certificate,
        trust,
        created_at: now,
        expires_at: issued.not_after.unix_timestamp(),
        last_seen: None,
        revoked_at: None,
        ip: visit.ip.clone(),
        browser: visit.agent.0.to_owned(),
        system: visit.agent.1.to_owned(),
    };
    if db.record_device(&device).await.is_err() {
        return Err(PageError::unavailable(&visit));
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: me.org.id.clone(),
            at: now,
            actor: me.account.username.clone(),
            action: certgate_db::AuditAction::Pkcs12Issued.as_str().into(),
            subject: device_id,
            ip: visit.ip.clone(),
            detail: format!(
                "format={}",
                if format == Pkcs12Format::Legacy {
                    "legacy"
                } else {
                    "modern"
                }
            ),
        })
        .await;
    let trust_label = match trust {
        DeviceTrust::Session => "personal",
        DeviceTrust::Trusted => "trusted",
        DeviceTrust::Group => "group",
    };
    if trust != DeviceTrust::Session {
        let t = visit.texts;
        crate::issue::notify(
            &state,
            &visit,
            &me.org,
            &me.account,
            t.mail_trusted_subject,
            &crate::i18n::fill(
                t.mail_trusted_body,
                &me.org.name,
                &format!("(PKCS#12) {}", t.duration(lifetime)),
                &visit.ip,
            ),
        );
    }
    state
        .metrics
        .credentials_issued
        .with_label_values(&[me.org.id.as_str(), "pkcs12", trust_label])
        .inc();
    let host = visit
        .host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(visit.host.as_str(), |(h, _)| h);
    let policy = format!(
        r#"{{"pattern":"https://{host}","filter":{{"ISSUER":{{"CN":"certgate issuing CA"}}}}}}"#
    );
    let c = visit.chrome(Some(&me.org));
    Ok(pages::html(
        StatusCode::OK,
        &CertificatePage {
            c: &c,
            password: &password,
            // In the query, not the path: the access log records paths, and the link is the
            // bundle's only key.
            download: &format!("/.certgate/account/certificate?download={download}"),
            expires: &pages::local_time(issued.not_after.unix_timestamp(), &me.org.time_zone),
            policy: &policy,
        },
    ))
}

/// `GET /.certgate/account/certificate?download={id}`: the bundle, once.
pub(crate) async fn download(
    State(state): State<Arc<PortalState>>,
    visit: Visit,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let store = state
        .backend
        .store()
        .ok_or_else(|| PageError::unavailable(&visit))?;
    let id = query
        .as_deref()
        .and_then(|q| crate::flow::raw_param(q, "download"))
        .unwrap_or_default();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PageError::redirect(ACCOUNT));
    }
    let Ok(Some(bundle)) = store.take_once("pkcs12", id).await else {
        let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
        return Ok(pages::notice(
            StatusCode::GONE,
            &c,
            c.t.certificate_heading,
            c.t.certificate_gone,
            true,
            Some((ACCOUNT, c.t.account_heading)),
        ));
    };
    let mut response = (StatusCode::OK, bundle).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pkcs12"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"certgate-device.p12\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// A form that is only its button (and CSRF token).
#[derive(Deserialize)]
pub(crate) struct Button {}

/// `POST /.certgate/account/mfa`: where only enrolled users need a second factor, a user turns
/// it on (and cannot turn it off): the sign-in's own method choice and enrolment follow, and
/// a new credential with MFA comes at the end.
pub(crate) async fn turn_on_mfa(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit,
        store,
        db,
        it: me,
        ..
    }: UserForm<Button>,
) -> Result<Response, PageError> {
    let allowed = !me.account.mfa_enrolled
        && me.account.kind == AccountKind::Personal
        && me.org.mfa.required == certgate_policies::MfaRequirement::Enrolled;
    if !allowed {
        return Err(PageError::redirect(ACCOUNT));
    }
    // Only right after a password: a browser cookie alone must not choose the second factor.
    if !me.fresh {
        return Err(to_login());
    }
    let Me {
        mut attempt,
        org,
        account,
        ..
    } = me;
    // Back to the account page when done.
    attempt.session.set_return_to(ACCOUNT.into());
    let s = crate::flow::Signing::new(attempt, org, account);
    let event = crate::signin::Event::AddFactor;
    Ok(crate::flow::first_step_done(&state, &visit, &store, &db, s, event).await)
}

/// `POST /.certgate/account/recovery-codes`: ten new recovery codes (the old ones stop
/// working), after a fresh sign-in; shown once.
pub(crate) async fn renew_recovery_codes(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit, db, it: me, ..
    }: UserForm<Button>,
) -> Result<Response, PageError> {
    if !me.account.mfa_enrolled {
        return Err(PageError::redirect(ACCOUNT));
    }
    if !me.fresh {
        return Err(to_login());
    }
    let codes = crate::recovery::new_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| crate::recovery::hash(&me.account.id, c))
        .collect();
    if db
        .set_recovery_codes(&me.org.id, &me.account.id, &hashes)
        .await
        .is_err()
    {
        return Err(PageError::unavailable(&visit));
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: me.org.id.clone(),
            at: state.now(),
            actor: me.account.username.clone(),
            action: certgate_db::AuditAction::RecoveryCodesRenewed
                .as_str()
                .into(),
            subject: me.account.username.clone(),
            ip: visit.ip.clone(),
            detail: String::new(),
        })
        .await;
    let c = visit.chrome(Some(&me.org));
    Ok(pages::html(
        StatusCode::OK,
        &pages::RecoveryCodesPage {
            c: &c,
            codes: &codes,
            next: ACCOUNT,
            set_up: false,
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct AddPasskeyForm {
    #[serde(default)]
    credential: String,
    #[serde(default)]
    name: String,
}

/// `POST /.certgate/account/passkeys`: a passkey made on the account page, after a fresh
/// sign-in. Named as typed (or for the device); the first factor of an account without
/// recovery codes comes with ten, shown once.
pub(crate) async fn add_passkey(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit,
        store,
        db,
        it: mut me,
        form,
    }: UserForm<AddPasskeyForm>,
) -> Result<Response, PageError> {
    if !may_have_passkeys(&me.org, &me.account) {
        return Err(PageError::redirect(ACCOUNT));
    }
    if !may_change_passkeys(&me) {
        return Err(to_login());
    }
    // Taken whatever the answer: it counts once.
    let made = crate::passkey::finish_account_register(
        &visit,
        &me.org,
        &me.account,
        &mut me.attempt.session,
        &form.credential,
    );
    crate::flow::save(&store, &me.attempt).await;
    let failed = || Redirect::to("/.certgate/account?passkey=failed").into_response();
    let Some(made) = made else {
        return Ok(failed());
    };
    let now = state.now();
    let typed = certgate_db::passkey_name(&form.name);
    let name = if typed.is_empty() {
        crate::passkey::device_name(&visit)
    } else {
        typed
    };
    let Some(stored) = crate::passkey::stored(&me.org, &me.account, &made, &name, now) else {
        return Ok(failed());
    };
    let codes = me
        .account
        .recovery_codes
        .is_empty()
        .then(crate::recovery::new_codes);
    let hashes: Option<Vec<String>> = codes.as_ref().map(|codes| {
        codes
            .iter()
            .map(|c| crate::recovery::hash(&me.account.id, c))
            .collect()
    });
    match db.add_passkey(&stored, hashes.as_deref(), false).await {
        Ok(true) => {}
        Ok(false) => return Err(to_login()),
        Err(certgate_db::DbError::Conflict(_)) => return Ok(failed()),
        Err(error) => {
            tracing::error!(%error, "cannot store a passkey");
            return Err(PageError::unavailable(&visit));
        }
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: me.org.id.clone(),
            at: now,
            actor: me.account.username.clone(),
            action: certgate_db::AuditAction::MfaEnrolled.as_str().into(),
            subject: me.account.username.clone(),
            ip: visit.ip.clone(),
            detail: "passkey".into(),
        })
        .await;
    let t = visit.texts;
    let body = crate::i18n::fill(t.mail_factor_body, &me.org.name, t.method_passkey_plain, "");
    crate::issue::notify(
        &state,
        &visit,
        &me.org,
        &me.account,
        t.mail_factor_subject,
        &body,
    );
    match codes {
        Some(codes) => {
            let c = visit.chrome(Some(&me.org));
            Ok(pages::html(
                StatusCode::OK,
                &pages::RecoveryCodesPage {
                    c: &c,
                    codes: &codes,
                    next: ACCOUNT,
                    set_up: true,
                },
            ))
        }
        None => Ok(Redirect::to(ACCOUNT).into_response()),
    }
}

#[derive(Deserialize)]
pub(crate) struct RemovePasskeyForm {
    #[serde(default)]
    passkey: String,
}

/// `POST /.certgate/account/passkeys/remove`: one of the person's passkeys, after a fresh
/// sign-in; never the only factor the account has.
pub(crate) async fn remove_passkey(
    State(state): State<Arc<PortalState>>,
    UserForm {
        visit,
        db,
        it: me,
        form,
        ..
    }: UserForm<RemovePasskeyForm>,
) -> Result<Response, PageError> {
    if !may_change_passkeys(&me) {
        return Err(to_login());
    }
    let passkeys = db
        .passkeys(&me.org.id, &me.account.id)
        .await
        .map_err(|_| PageError::unavailable(&visit))?;
    let Some(passkey) = passkeys.iter().find(|p| p.id == form.passkey) else {
        return Err(PageError::redirect(ACCOUNT));
    };
    // Never the last factor: checked again where it is removed, so two removals at once
    // cannot leave none.
    match db
        .remove_passkey_keeping_a_factor(&me.org.id, &me.account.id, &passkey.id)
        .await
    {
        Ok(certgate_db::PasskeyRemoval::Removed) => {}
        Ok(_) => return Err(PageError::redirect(ACCOUNT)),
        Err(_) => return Err(PageError::unavailable(&visit)),
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: me.org.id.clone(),
            at: state.now(),
            actor: me.account.username.clone(),
            action: certgate_db::AuditAction::PasskeyRemoved.as_str().into(),
            subject: me.account.username.clone(),
            ip: visit.ip.clone(),
            detail: passkey.name.clone(),
        })
        .await;
    let t = visit.texts;
    let body = crate::i18n::fill(t.mail_passkey_removed_body, &me.org.name, &passkey.name, "");
    crate::issue::notify(
        &state,
        &visit,
        &me.org,
        &me.account,
        t.mail_passkey_removed_subject,
        &body,
    );
    Ok(Redirect::to(ACCOUNT).into_response())
}
