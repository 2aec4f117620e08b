//! The sign-in pages: password, choice of second factor, authenticator enrolment, code entry,
//! recovery codes, and sign-out. Each POST checks the session's CSRF token; each failure is
//! answered with the same words after the same delay.
// Handlers answer early with a page; a `Response` as the error is the axum way.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Form, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_certs::{CredentialClass, MfaStatus};
use certgate_db::{Account, Database, MfaChoice, NewRevocation, RevocationKind};
use certgate_policies::Organisation;
use certgate_store::{RateLimit, SessionId, Store};
use serde::Deserialize;

use crate::codes::{self, CodeCheck};
use crate::i18n::fill;
use crate::issue::{self, allowed_methods, mfa_need, Need, Proof, Then};
use crate::mail::Mail;
use crate::pages::{
    self, ChoosePage, CodePage, EnrolPage, LoginPage, LogoutPage, MethodOption, RecoveryCodesPage,
};
use crate::return_to::safe_return_to;
use crate::session::{self, LoginSession, SESSION_TTL};
use crate::throttle::{self, Blocked, Counted, Source, Throttle};
use crate::{password, recovery, totp, PortalState, Visit};

/// The actor and subject of a failed sign-in with a name no account has.
pub(crate) const UNKNOWN_NAME: &str = "(unknown name)";

/// A sign-in in progress, as loaded for a request.
pub(crate) struct Attempt {
    pub id: SessionId,
    pub session: LoginSession,
}

pub(crate) async fn load_attempt(store: &Store, headers: &HeaderMap) -> Option<Attempt> {
    let id = SessionId::parse(session::cookie(headers, session::SESSION_COOKIE)?)?;
    let data = store.session(&id).await.ok()??;
    let session = serde_json::from_slice(&data).ok()?;
    Some(Attempt { id, session })
}

pub(crate) async fn save(store: &Store, attempt: &Attempt) -> bool {
    match serde_json::to_vec(&attempt.session) {
        Ok(data) => store
            .update_session(&attempt.id, &data, SESSION_TTL)
            .await
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A new sign-in session, counted against the visitor's address; `Err(page)`: past
/// `limits.sign_in_starts_per_ip` (429), or the store cannot take it.
pub(crate) async fn start_attempt(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    return_to: String,
) -> Result<Attempt, Response> {
    count_start(state, visit, store).await?;
    create_attempt(visit, store, return_to).await
}

/// A new sign-in session, not counted: for a visitor the portal already knows (by a browser
/// credential, or back from a single sign-on round trip that was counted when it started).
pub(crate) async fn create_attempt(
    visit: &Visit,
    store: &Store,
    return_to: String,
) -> Result<Attempt, Response> {
    let session = LoginSession::new(return_to);
    let created = match serde_json::to_vec(&session) {
        Ok(data) => store.create_session(&data, SESSION_TTL).await.ok(),
        Err(_) => None,
    };
    match created {
        Some(id) => Ok(Attempt { id, session }),
        None => Err(unavailable(visit)),
    }
}

/// Counts one thing a visitor without a session makes the store keep (a sign-in session, a
/// single sign-on round trip) against `limits.sign_in_starts_per_ip`, so that requests which
/// never sign in cannot fill the store; `Err(page)` when the address must wait or the store
/// cannot count.
pub(crate) async fn count_start(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
) -> Result<(), Response> {
    let limit = crate::throttle::limit(state.limits.sign_in_starts_per_ip);
    match store
        .hit(
            "sign-in-start",
            &certgate_store::address_key(&visit.ip),
            limit,
        )
        .await
    {
        Ok(hit) if hit.allowed => Ok(()),
        Ok(hit) => {
            state
                .metrics
                .rate_limited
                .with_label_values(&["sign_in_start"])
                .inc();
            let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
            let text = fill(
                visit.texts.too_many,
                "",
                &visit.texts.duration(hit.retry_after),
                "",
            );
            let mut page = pages::notice(
                StatusCode::TOO_MANY_REQUESTS,
                &c,
                c.t.sign_in,
                &text,
                true,
                None,
            );
            page.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(hit.retry_after.as_secs().max(1)),
            );
            Err(page)
        }
        Err(error) => {
            tracing::error!(%error, "the store cannot count new sign-in sessions");
            Err(unavailable(visit))
        }
    }
}

/// The store and database, or the "try again" page while either is not open.
pub(crate) fn backends(state: &PortalState, visit: &Visit) -> Result<(Store, Database), Response> {
    match (state.backend.store(), state.backend.database()) {
        (Some(store), Some(db)) => Ok((store, db)),
        _ => Err(unavailable(visit)),
    }
}

pub(crate) fn unavailable_page(visit: &Visit) -> Response {
    unavailable(visit)
}

fn unavailable(visit: &Visit) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::notice(
        StatusCode::SERVICE_UNAVAILABLE,
        &c,
        c.t.sign_in,
        c.t.trouble,
        true,
        Some(("/.certgate/login", c.t.sign_in)),
    )
}

/// Waits until `start + failure_delay`, so every failure takes as long.
pub(crate) async fn pace(state: &PortalState, start: Instant) {
    tokio::time::sleep_until((start + state.failure_delay).into()).await;
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The value of `name` in a raw query string, as sent (not percent-decoded).
pub(crate) fn raw_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

// ---------------------------------------------------------------------------------------------
// Sign in

struct LoginView<'a> {
    attempt: &'a Attempt,
    org: Option<&'a Organisation>,
    typed_org: &'a str,
    remember_org: bool,
    username: &'a str,
    error: Option<String>,
    info: Option<String>,
}

fn login_view(visit: &Visit, status: StatusCode, view: LoginView<'_>) -> Response {
    let c = visit.chrome(view.org);
    let ask_org = visit.orgs.len() > 1;
    let heading = match view.org {
        Some(org) => fill(c.t.sign_in_to, &org.name, "", ""),
        None => c.t.sign_in.to_owned(),
    };
    let sso = view
        .org
        .map(|org| {
            org.sso
                .iter()
                .map(|p| {
                    (
                        format!("/.certgate/sso/{}?org={}", p.id, org.id),
                        fill(c.t.sign_in_with, &p.label, "", ""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut response = pages::html(
        status,
        &LoginPage {
            c: &c,
            heading,
            csrf: &view.attempt.session.csrf,
            return_to: &view.attempt.session.return_to,
            ask_org,
            org: view.typed_org,
            remember_org: view.remember_org,
            username: view.username,
            focus_username: view.username.is_empty(),
            error: view.error,
            info: view.info,
            sso,
        },
    );
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        view.attempt.id.as_str(),
        None,
    );
    response
}

pub(crate) async fn login_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, _) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let return_to =
        safe_return_to(raw_param(query.as_deref().unwrap_or_default(), "return_to").unwrap_or("/"));
    let attempt = match load_attempt(&store, &headers).await {
        Some(mut attempt) => {
            attempt.session.restart();
            attempt.session.return_to = return_to;
            save(&store, &attempt).await;
            attempt
        }
        None => match start_attempt(&state, &visit, &store, return_to).await {
            Ok(attempt) => attempt,
            Err(page) => return page,
        },
    };
    let remembered = session::cookie(&headers, session::ORG_COOKIE)
        .and_then(|id| visit.org(id))
        .cloned();
    let org = visit.single_org().cloned().or(remembered.clone());
    let typed_org = remembered.as_ref().map_or("", |o| o.id.as_str());
    login_view(
        &visit,
        StatusCode::OK,
        LoginView {
            attempt: &attempt,
            org: org.as_deref(),
            typed_org,
            remember_org: remembered.is_some(),
            username: "",
            error: None,
            info: None,
        },
    )
}

/// What the user typed, shown again with an error.
struct Echo<'a> {
    typed_org: &'a str,
    remember_org: bool,
    username: &'a str,
}

fn login_again(
    visit: &Visit,
    attempt: &Attempt,
    org: Option<&Organisation>,
    echo: &Echo<'_>,
    error: String,
    status: StatusCode,
) -> Response {
    login_view(
        visit,
        status,
        LoginView {
            attempt,
            org,
            typed_org: echo.typed_org,
            remember_org: echo.remember_org,
            username: echo.username,
            error: Some(error),
            info: None,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    remember_org: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn login_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let start = Instant::now();
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let username: String = form.username.trim().chars().take(256).collect();
    let typed_org: String = form.org.trim().chars().take(64).collect();
    let remember_org = form.remember_org.is_some();
    let mut attempt = match load_attempt(&store, &headers).await {
        Some(attempt) if attempt.session.csrf_ok(&form.csrf) => attempt,
        _ => {
            // An expired page (or a forged post): a fresh form, nothing else happens.
            let fresh = match start_attempt(&state, &visit, &store, safe_return_to(&form.return_to))
                .await
            {
                Ok(fresh) => fresh,
                Err(page) => return page,
            };
            let echo = Echo {
                typed_org: &typed_org,
                remember_org,
                username: &username,
            };
            return login_again(
                &visit,
                &fresh,
                visit.single_org().map(|o| o.as_ref()),
                &echo,
                visit.texts.session_expired.to_owned(),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let org = match visit.single_org() {
        Some(org) => Arc::clone(org),
        None => match visit.org_named(&typed_org) {
            Some(org) => Arc::clone(org),
            None => {
                let echo = Echo {
                    typed_org: &typed_org,
                    remember_org,
                    username: &username,
                };
                return login_again(
                    &visit,
                    &attempt,
                    None,
                    &echo,
                    visit.texts.unknown_organisation.to_owned(),
                    StatusCode::BAD_REQUEST,
                );
            }
        },
    };
    let echo = Echo {
        typed_org: &typed_org,
        remember_org,
        username: &username,
    };
    let again = |error: &str, status: StatusCode| {
        login_again(
            &visit,
            &attempt,
            Some(&org),
            &echo,
            error.to_owned(),
            status,
        )
    };

    let throttle = guess_throttle(&state, &store);
    // This browser's id, or a new one it gets once the password is right.
    let sent_browser = throttle::browser_id(session::cookie(&headers, session::BROWSER_COOKIE));
    let browser = sent_browser.map_or_else(throttle::new_browser_id, str::to_owned);
    let source = Source {
        ip: &visit.ip,
        browser: Some(&browser),
    };
    let counted = match throttle.begin(&org.id, &username, source).await {
        Ok(Ok(counted)) => counted,
        Ok(Err(blocked)) => {
            return again(
                &too_many(&state, &visit, blocked),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(error) => {
            tracing::error!(%error, "the store cannot check sign-in limits");
            return unavailable(&visit);
        }
    };

    let account = match db.find_account(&org.id, &username).await {
        Ok(account) => account,
        Err(error) => {
            tracing::error!(%error, "cannot look up an account");
            return unavailable(&visit);
        }
    };
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let typed = form.password;
    let matches = tokio::task::spawn_blocking(move || password::verify(&typed, stored.as_deref()))
        .await
        .unwrap_or(false);
    let account = match account {
        Some(account) if matches && !account.disabled && !username.is_empty() => account,
        failed => {
            state
                .metrics
                .logins
                .with_label_values(&[org.id.as_str(), "password", "failure"])
                .inc();
            // Every sign-in outcome is in the audit log: under the account's name, or, for a
            // name nobody has, not as typed: that is often a password in the wrong field.
            let (name, detail) = match &failed {
                Some(account) => (account.username.clone(), "password"),
                None => (
                    UNKNOWN_NAME.to_owned(),
                    "password; no account has the name typed",
                ),
            };
            audit_failed_sign_in(&state, &db, &org.id, &name, &visit.ip, detail).await;
            pace(&state, start).await;
            return again(visit.texts.bad_login, StatusCode::UNAUTHORIZED);
        }
    };
    if let Err(error) = throttle.succeeded(counted).await {
        tracing::warn!(%error, "a good sign-in could not be taken off the counters");
    }
    state
        .metrics
        .logins
        .with_label_values(&[org.id.as_str(), "password", "success"])
        .inc();

    attempt.session.restart();
    attempt.session.proven(&org.id, &account.id, state.now());
    let mut response = match mfa_need(&org, &account) {
        Need::Exempt | Need::NotRequired => {
            let mfa = if mfa_need(&org, &account) == Need::Exempt {
                MfaStatus::Exempt
            } else {
                MfaStatus::None
            };
            let proof = Proof {
                method: "password",
                mfa,
                trust: false,
            };
            issue::finish(
                &state,
                &visit,
                &store,
                &db,
                &attempt.id,
                attempt.session,
                &org,
                &account,
                proof,
                Then::Return,
            )
            .await
        }
        Need::Required => to_second_factor(&state, &visit, &store, attempt, &org, account).await,
    };
    if sent_browser.is_none() {
        session::set_cookie(
            &mut response,
            session::BROWSER_COOKIE,
            &browser,
            Some(throttle::KNOWN_BROWSER),
        );
    }
    if visit.orgs.len() > 1 {
        if remember_org {
            session::set_cookie(
                &mut response,
                session::ORG_COOKIE,
                &org.id,
                Some(std::time::Duration::from_secs(365 * 86_400)),
            );
        } else {
            session::clear_cookie(&mut response, session::ORG_COOKIE);
        }
    }
    response
}

/// The "wait and try again" sentence for a block, counted in `rate_limited_total`.
pub(crate) fn too_many(state: &PortalState, visit: &Visit, blocked: Blocked) -> String {
    state
        .metrics
        .rate_limited
        .with_label_values(&[blocked.kind()])
        .inc();
    fill(
        visit.texts.too_many,
        "",
        &visit.texts.duration(blocked.wait()),
        "",
    )
}

// ---------------------------------------------------------------------------------------------
// Second factor

/// A sign-in past its password: the session, organisation and account.
pub(crate) struct Signing {
    pub attempt: Attempt,
    pub org: Arc<Organisation>,
    pub account: Account,
}

/// Loads the sign-in in progress; without one (expired, or never signed in) the user is sent
/// back to the sign-in page.
async fn signing(
    visit: &Visit,
    store: &Store,
    db: &Database,
    headers: &HeaderMap,
) -> Result<Signing, Response> {
    let back = || see_other("/.certgate/login");
    let attempt = load_attempt(store, headers).await.ok_or_else(back)?;
    let (Some(org_id), Some(account_id)) = (&attempt.session.org, &attempt.session.account) else {
        return Err(back());
    };
    let org = visit.org(org_id).cloned().ok_or_else(back)?;
    // Disabled, or reset (a new password, say) since the password was checked.
    let account = match db.account(org_id, account_id).await {
        Ok(Some(account))
            if !account.disabled && attempt.session.proven_at >= account.not_valid_before =>
        {
            account
        }
        Ok(_) => return Err(back()),
        Err(error) => {
            tracing::error!(%error, "cannot load the account signing in");
            return Err(unavailable(visit));
        }
    };
    Ok(Signing {
        attempt,
        org,
        account,
    })
}

/// Like [`signing`], for a POST: the CSRF token must match too.
async fn signing_post(
    visit: &Visit,
    store: &Store,
    db: &Database,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Signing, Response> {
    let signing = signing(visit, store, db, headers).await?;
    if !signing.attempt.session.csrf_ok(csrf) {
        return Err(see_other("/.certgate/login"));
    }
    Ok(signing)
}

/// Where the user is in the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Choose,
    Enrol,
    App,
    Code(MfaChoice),
}

/// A factor the organisation (or the account's kind) no longer offers is still asked for once,
/// before another is chosen: a password alone never puts a new factor in its place.
fn old_factor_step(s: &Signing, allowed: &[MfaChoice]) -> Option<Step> {
    let old = s.account.mfa_method.filter(|_| s.account.mfa_enrolled)?;
    if allowed.contains(&old) || s.attempt.session.old_factor_proven {
        return None;
    }
    match old {
        MfaChoice::Authenticator if s.account.totp_secret.is_some() => Some(Step::App),
        MfaChoice::Authenticator => None,
        channel => Some(Step::Code(channel)),
    }
}

fn step(s: &Signing) -> Step {
    let allowed = allowed_methods(&s.org, &s.account);
    if let Some(old) = old_factor_step(s, &allowed) {
        return old;
    }
    let stored = s
        .account
        .mfa_method
        .filter(|m| s.account.mfa_enrolled && allowed.contains(m));
    let chosen = s
        .attempt
        .session
        .method
        .as_deref()
        .and_then(MfaChoice::from_name)
        .filter(|m| allowed.contains(m));
    match stored.or(chosen) {
        Some(MfaChoice::Authenticator) if s.account.totp_secret.is_some() && stored.is_some() => {
            Step::App
        }
        Some(MfaChoice::Authenticator) => Step::Enrol,
        Some(channel) => Step::Code(channel),
        None if allowed == [MfaChoice::Authenticator] => Step::Enrol,
        None => Step::Choose,
    }
}

fn trust_label(visit: &Visit, org: &Organisation, account: &Account) -> String {
    if org.mfa.trust_device_for.is_zero() || account.kind == certgate_db::AccountKind::Group {
        return String::new();
    }
    fill(
        visit.texts.trust_device,
        "",
        &visit.texts.duration(org.mfa.trust_device_for),
        "",
    )
}

fn masked_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}\u{2022}\u{2022}\u{2022}@{domain}")
        }
        None => "\u{2022}\u{2022}\u{2022}".into(),
    }
}

fn destination(account: &Account, channel: MfaChoice) -> String {
    match channel {
        MfaChoice::Sms => account
            .mobile
            .as_deref()
            .map(crate::sms::masked)
            .unwrap_or_default(),
        _ => account
            .email
            .as_deref()
            .map(masked_email)
            .unwrap_or_default(),
    }
}

/// Messages shown on a step's page.
#[derive(Default)]
struct Notes {
    error: Option<String>,
    info: Option<String>,
    trust: bool,
}

fn step_page(
    visit: &Visit,
    state: &PortalState,
    s: &Signing,
    step: Step,
    notes: Notes,
) -> Response {
    let c = visit.chrome(Some(&s.org));
    let csrf = s.attempt.session.csrf.as_str();
    match step {
        Step::Choose => {
            // A channel the deployment has no sender for is not offered at all.
            let allowed: Vec<MfaChoice> = allowed_methods(&s.org, &s.account)
                .into_iter()
                .filter(|m| match m {
                    MfaChoice::Sms => state.sms.is_some(),
                    MfaChoice::Email => state.mailer.is_some(),
                    MfaChoice::Authenticator => true,
                })
                .collect();
            let mut options: Vec<MethodOption> = allowed
                .iter()
                .map(|m| {
                    let (label, why_not) = match m {
                        MfaChoice::Authenticator => (c.t.method_authenticator.to_owned(), None),
                        MfaChoice::Sms => (
                            fill(c.t.method_sms, "", "", &destination(&s.account, *m)),
                            s.account.mobile.is_none().then_some(c.t.no_mobile),
                        ),
                        MfaChoice::Email => (
                            fill(c.t.method_email, "", "", &destination(&s.account, *m)),
                            s.account.email.is_none().then_some(c.t.no_email),
                        ),
                    };
                    MethodOption {
                        value: m.as_str(),
                        label: match (why_not, m) {
                            (None, _) => label,
                            (Some(_), MfaChoice::Sms) => c.t.method_sms_plain.to_owned(),
                            (Some(_), _) => c.t.method_email_plain.to_owned(),
                        },
                        enabled: why_not.is_none(),
                        checked: false,
                        why_not,
                    }
                })
                .collect();
            if let Some(first) = options.iter_mut().find(|o| o.enabled) {
                first.checked = true;
            }
            pages::html(
                StatusCode::OK,
                &ChoosePage {
                    c: &c,
                    csrf,
                    options,
                    error: notes.error,
                },
            )
        }
        Step::Enrol => {
            let secret = s
                .attempt
                .session
                .enrol_secret
                .as_deref()
                .and_then(|sealed| state.open_secret(&s.account.id, sealed).ok());
            let Some(secret) = secret else {
                return see_other("/.certgate/mfa");
            };
            let uri = totp::provisioning_uri(&secret, &s.org.name, &s.account.username);
            let Some(qr_svg) = uri.ok().and_then(|uri| pages::qr_svg(&uri)) else {
                return issue::trouble(visit, &s.org);
            };
            pages::html(
                StatusCode::OK,
                &EnrolPage {
                    c: &c,
                    csrf,
                    qr_svg,
                    secret: totp::secret_text(&secret),
                    trust_label: trust_label(visit, &s.org, &s.account),
                    error: notes.error,
                },
            )
        }
        Step::App | Step::Code(_) => {
            let lead = match step {
                Step::Code(channel) => {
                    fill(c.t.code_sent_to, "", "", &destination(&s.account, channel))
                }
                _ => c.t.code_from_app.to_owned(),
            };
            pages::html(
                StatusCode::OK,
                &CodePage {
                    c: &c,
                    csrf,
                    heading: c.t.code_heading,
                    lead,
                    action: "/.certgate/mfa/code",
                    code_label: c.t.code,
                    numeric: true,
                    trust_label: trust_label(visit, &s.org, &s.account),
                    trust_checked: notes.trust,
                    can_resend: matches!(step, Step::Code(_)),
                    show_recovery_link: !s.account.recovery_codes.is_empty(),
                    error: notes.error,
                    info: notes.info,
                },
            )
        }
    }
}

/// Why a code could not be sent.
enum SendError {
    Limited(Blocked),
    Failed,
}

async fn send_code(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &Signing,
    channel: MfaChoice,
) -> Result<(), SendError> {
    let limit = state.limits.codes_sent_per_account;
    let sent = store
        .hit(
            "codes-sent",
            &format!("{}:{}", s.org.id, s.account.id),
            RateLimit {
                limit: limit.count,
                window: limit.window,
            },
        )
        .await
        .map_err(|_| SendError::Failed)?;
    if !sent.allowed {
        return Err(SendError::Limited(Blocked::Account(sent.retry_after)));
    }
    let code = codes::new_code();
    codes::remember(store, &code_key(s, channel), &code, state.now() as u64)
        .await
        .map_err(|_| SendError::Failed)?;
    let t = visit.texts;
    match channel {
        MfaChoice::Sms => {
            let (Some(sender), Some(number)) = (&state.sms, &s.account.mobile) else {
                return Err(SendError::Failed);
            };
            if let Err(error) = sender
                .send(number, &fill(t.sms_code, &s.org.name, &code, ""))
                .await
            {
                tracing::warn!(%error, org = %s.org.id, "sign-in code not sent by SMS");
                return Err(SendError::Failed);
            }
        }
        _ => {
            let (Some(mailer), Some(to)) = (&state.mailer, &s.account.email) else {
                return Err(SendError::Failed);
            };
            let mail = Mail {
                to: to.clone(),
                subject: fill(t.mail_code_subject, &s.org.name, "", ""),
                body: format!(
                    "{}{}",
                    fill(t.mail_code_body, &s.org.name, &code, ""),
                    fill(t.mail_signature, &s.org.name, "", "")
                ),
            };
            if let Err(error) = mailer.send(mail) {
                tracing::warn!(%error, org = %s.org.id, "sign-in code not queued");
                return Err(SendError::Failed);
            }
        }
    }
    state
        .metrics
        .codes_sent
        .with_label_values(&[s.org.id.as_str(), channel.as_str()])
        .inc();
    Ok(())
}

/// The first step (password or single sign-on) is done and a second factor is needed: a new
/// session id (an id planted before is worthless), the code of a stored channel sent from this
/// request (never from a page load), and on to the second-factor page.
pub(crate) async fn to_second_factor(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    mut attempt: Attempt,
    org: &Arc<Organisation>,
    account: Account,
) -> Response {
    let Ok(Some(next)) = store.rotate_session(&attempt.id, SESSION_TTL).await else {
        return unavailable(visit);
    };
    attempt.id = next;
    let mut s = Signing {
        attempt,
        org: Arc::clone(org),
        account,
    };
    send_stored_channel_code(state, visit, store, &mut s).await;
    if !save(store, &s.attempt).await {
        return unavailable(visit);
    }
    let mut response = see_other("/.certgate/mfa");
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        s.attempt.id.as_str(),
        None,
    );
    response
}

/// When the account's stored method is a channel, sends its code now (from the request that
/// completed the first step, never from a page load).
pub(crate) async fn send_stored_channel_code(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &mut Signing,
) {
    if let Step::Code(channel) = step(s) {
        send_and_note(state, visit, store, s, channel).await;
    }
}

/// Sends this sign-in's code; what went wrong is kept for the next page.
async fn send_and_note(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &mut Signing,
    channel: MfaChoice,
) {
    match send_code(state, visit, store, s, channel).await {
        Ok(()) => {
            s.attempt.session.code_sent = true;
            s.attempt.session.flash = None;
        }
        Err(error) => s.attempt.session.flash = Some(send_error_text(state, visit, error)),
    }
}

fn send_error_text(state: &PortalState, visit: &Visit, error: SendError) -> String {
    match error {
        SendError::Limited(blocked) => {
            state
                .metrics
                .rate_limited
                .with_label_values(&["codes_sent"])
                .inc();
            fill(
                visit.texts.too_many,
                "",
                &visit.texts.duration(blocked.wait()),
                "",
            )
        }
        SendError::Failed => visit.texts.send_failed.to_owned(),
    }
}

pub(crate) async fn mfa_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let mut s = match signing(&visit, &store, &db, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let step = step(&s);
    let mut notes = Notes::default();
    match step {
        Step::Enrol if s.attempt.session.enrol_secret.is_none() => {
            let secret = totp::new_secret();
            match state.seal_secret(&s.account.id, &secret) {
                Ok(sealed) => s.attempt.session.enrol_secret = Some(sealed),
                Err(error) => {
                    tracing::error!(%error, "cannot seal a new authenticator secret");
                    return issue::trouble(&visit, &s.org);
                }
            }
            if !save(&store, &s.attempt).await {
                return unavailable(&visit);
            }
        }
        _ => {}
    }
    if let Some(flash) = s.attempt.session.flash.take() {
        notes.error = Some(flash);
        save(&store, &s.attempt).await;
    }
    step_page(&visit, &state, &s, step, notes)
}

#[derive(Deserialize)]
pub(crate) struct ChooseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    method: String,
}

pub(crate) async fn choose_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<ChooseForm>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let mut s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let allowed = allowed_methods(&s.org, &s.account);
    if old_factor_step(&s, &allowed).is_some() {
        return see_other("/.certgate/mfa");
    }
    let usable = MfaChoice::from_name(&form.method).filter(|m| {
        allowed.contains(m)
            && match m {
                MfaChoice::Authenticator => true,
                MfaChoice::Sms => s.account.mobile.is_some() && state.sms.is_some(),
                MfaChoice::Email => s.account.email.is_some() && state.mailer.is_some(),
            }
    });
    let Some(method) = usable else {
        let notes = Notes {
            error: Some(visit.texts.choose_one.to_owned()),
            ..Notes::default()
        };
        return step_page(&visit, &state, &s, Step::Choose, notes);
    };
    s.attempt.session.method = Some(method.as_str().to_owned());
    s.attempt.session.enrol_secret = None;
    s.attempt.session.code_sent = false;
    if method != MfaChoice::Authenticator {
        send_and_note(&state, &visit, &store, &mut s, method).await;
    }
    if !save(&store, &s.attempt).await {
        return unavailable(&visit);
    }
    see_other("/.certgate/mfa")
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    trust: Option<String>,
}

/// The limits on guesses: passwords, and codes per account (the same numbers).
fn guess_throttle<'a>(state: &PortalState, store: &'a Store) -> Throttle<'a> {
    Throttle {
        store,
        per_pair: state.limits.password_failures_per_pair,
        per_ip: state.limits.password_failures_per_ip,
    }
}

/// The name second-factor guesses are counted under.
fn mfa_key(s: &Signing) -> String {
    format!("mfa:{}", s.account.id)
}

/// A wrong code: counted already; paced, and answered with the step's page again.
#[allow(clippy::too_many_arguments)]
async fn wrong_code(
    state: &PortalState,
    visit: &Visit,
    s: &Signing,
    step: Step,
    method: &'static str,
    start: Instant,
    message: &str,
    trust: bool,
) -> Response {
    state
        .metrics
        .logins
        .with_label_values(&[s.org.id.as_str(), method, "failure"])
        .inc();
    if let Some(db) = state.backend.database() {
        audit(state, &db, visit, s, "sign-in-failed", method).await;
    }
    pace(state, start).await;
    let notes = Notes {
        error: Some(message.to_owned()),
        info: None,
        trust,
    };
    let mut response = step_page(visit, state, s, step, notes);
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

/// Counts a second-factor guess before it is checked; the page to show instead when the user
/// must wait.
async fn begin_guess(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &Signing,
    headers: &HeaderMap,
    blocked_page: impl FnOnce(String) -> Response,
) -> Result<Counted, Response> {
    let source = Source {
        ip: &visit.ip,
        browser: session::cookie(headers, session::BROWSER_COOKIE),
    };
    match guess_throttle(state, store)
        .begin(&s.org.id, &mfa_key(s), source)
        .await
    {
        Ok(Ok(counted)) => Ok(counted),
        Ok(Err(blocked)) => {
            let mut response = blocked_page(too_many(state, visit, blocked));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            Err(response)
        }
        Err(_) => Err(unavailable(visit)),
    }
}

async fn guess_was_right(state: &PortalState, store: &Store, counted: Counted) {
    if let Err(error) = guess_throttle(state, store).succeeded(counted).await {
        tracing::warn!(%error, "a good code could not be taken off the counters");
    }
}

/// Where the e-mail or SMS code of this sign-in is kept: bound to the session, the account and
/// the channel, so no other code counts for it.
fn code_key(s: &Signing, channel: MfaChoice) -> String {
    format!(
        "{}:{}:{}",
        s.attempt.id.as_str(),
        s.account.id,
        channel.as_str()
    )
}

pub(crate) async fn enrol_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let start = Instant::now();
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    if step(&s) != Step::Enrol {
        return see_other("/.certgate/mfa");
    }
    let Some(sealed) = s.attempt.session.enrol_secret.clone() else {
        return see_other("/.certgate/mfa");
    };
    let Ok(secret) = state.open_secret(&s.account.id, &sealed) else {
        return see_other("/.certgate/mfa");
    };
    let counted = match begin_guess(&state, &visit, &store, &s, &headers, |text| {
        let notes = Notes {
            error: Some(text),
            ..Notes::default()
        };
        step_page(&visit, &state, &s, Step::Enrol, notes)
    })
    .await
    {
        Ok(counted) => counted,
        Err(page) => return page,
    };
    let accepted = totp::accept(
        &store,
        &s.account.id,
        &secret,
        &form.code,
        state.now() as u64,
    )
    .await;
    match accepted {
        Ok(true) => {}
        Ok(false) => {
            return wrong_code(
                &state,
                &visit,
                &s,
                Step::Enrol,
                "authenticator",
                start,
                visit.texts.wrong_code,
                false,
            )
            .await
        }
        Err(error) => {
            tracing::error!(%error, "cannot check an authenticator code");
            return unavailable(&visit);
        }
    }
    guess_was_right(&state, &store, counted).await;
    let codes = recovery::new_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| recovery::hash(&s.account.id, c))
        .collect();
    match db
        .set_mfa(
            &s.org.id,
            &s.account.id,
            MfaChoice::Authenticator,
            Some(&sealed),
            Some(&hashes),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return see_other("/.certgate/login"),
        Err(error) => {
            tracing::error!(%error, "cannot store an enrolment");
            return unavailable(&visit);
        }
    }
    audit(&state, &db, &visit, &s, "mfa-enrolled", "authenticator").await;
    issue::notify(
        &state,
        &visit,
        &s.org,
        &s.account,
        visit.texts.mail_factor_subject,
        &fill(
            visit.texts.mail_factor_body,
            &s.org.name,
            visit.texts.method_authenticator,
            "",
        ),
    );
    state
        .metrics
        .logins
        .with_label_values(&[s.org.id.as_str(), "authenticator", "success"])
        .inc();
    let chrome = visit.chrome(Some(&s.org));
    let proof = Proof {
        method: "authenticator",
        mfa: MfaStatus::Yes,
        trust: form.trust.is_some(),
    };
    let show_codes = Then::Page(Box::new(move |next: &str| {
        pages::html(
            StatusCode::OK,
            &RecoveryCodesPage {
                c: &chrome,
                codes: &codes,
                next,
            },
        )
    }));
    issue::finish(
        &state,
        &visit,
        &store,
        &db,
        &s.attempt.id,
        s.attempt.session.clone(),
        &s.org,
        &s.account,
        proof,
        show_codes,
    )
    .await
}

/// Every sign-in outcome is in the audit log, failures too: under the account's user name, or
/// [`UNKNOWN_NAME`] when no account is known.
pub(crate) async fn audit_failed_sign_in(
    state: &PortalState,
    db: &Database,
    org: &str,
    name: &str,
    ip: &str,
    detail: &str,
) {
    let entry = certgate_db::AuditEntry {
        org: org.to_owned(),
        at: state.now(),
        actor: name.to_owned(),
        action: "sign-in-failed".into(),
        subject: name.to_owned(),
        ip: ip.to_owned(),
        detail: detail.to_owned(),
    };
    if let Err(error) = db.append_audit(&entry).await {
        tracing::warn!(%error, "audit entry not written");
    }
}

async fn audit(
    state: &PortalState,
    db: &Database,
    visit: &Visit,
    s: &Signing,
    action: &str,
    detail: &str,
) {
    let entry = certgate_db::AuditEntry {
        org: s.org.id.clone(),
        at: state.now(),
        actor: s.account.username.clone(),
        action: action.to_owned(),
        subject: s.account.username.clone(),
        ip: visit.ip.clone(),
        detail: detail.to_owned(),
    };
    if let Err(error) = db.append_audit(&entry).await {
        tracing::warn!(%error, "audit entry not written");
    }
}

pub(crate) async fn code_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let start = Instant::now();
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let step = step(&s);
    let trust = form.trust.is_some();
    let method = match step {
        Step::App => MfaChoice::Authenticator,
        Step::Code(channel) => channel,
        _ => return see_other("/.certgate/mfa"),
    };
    if matches!(step, Step::Code(_)) && !s.attempt.session.code_sent {
        // No code went out on this sign-in: nothing can match.
        return see_other("/.certgate/mfa");
    }
    let counted = match begin_guess(&state, &visit, &store, &s, &headers, |text| {
        let notes = Notes {
            error: Some(text),
            trust,
            ..Notes::default()
        };
        step_page(&visit, &state, &s, step, notes)
    })
    .await
    {
        Ok(counted) => counted,
        Err(page) => return page,
    };
    let now = state.now() as u64;
    let ok = match method {
        MfaChoice::Authenticator => {
            let secret = s
                .account
                .totp_secret
                .as_deref()
                .and_then(|sealed| state.open_secret(&s.account.id, sealed).ok());
            let Some(secret) = secret else {
                tracing::error!(org = %s.org.id, account = %s.account.username, "the authenticator secret cannot be opened");
                return issue::trouble(&visit, &s.org);
            };
            match totp::accept(&store, &s.account.id, &secret, &form.code, now).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(visit.texts.wrong_code),
                Err(_) => return unavailable(&visit),
            }
        }
        _ => {
            let check = codes::check(
                &store,
                &code_key(&s, method),
                &form.code,
                state.limits.code_failures_per_code,
                now,
            )
            .await;
            match check {
                Ok(CodeCheck::Accepted) => Ok(()),
                Ok(CodeCheck::Wrong { tries_left }) if tries_left > 0 => {
                    Err(visit.texts.wrong_code)
                }
                Ok(_) => Err(visit.texts.no_code),
                Err(_) => return unavailable(&visit),
            }
        }
    };
    if let Err(message) = ok {
        return wrong_code(
            &state,
            &visit,
            &s,
            step,
            method.as_str(),
            start,
            message,
            trust,
        )
        .await;
    }
    guess_was_right(&state, &store, counted).await;
    if !allowed_methods(&s.org, &s.account).contains(&method) {
        // The old factor is proven; now one the organisation offers.
        let mut attempt = s.attempt;
        attempt.session.old_factor_proven = true;
        attempt.session.method = None;
        attempt.session.code_sent = false;
        if !save(&store, &attempt).await {
            return unavailable(&visit);
        }
        return see_other("/.certgate/mfa");
    }
    if method != MfaChoice::Authenticator
        && (!s.account.mfa_enrolled || s.account.mfa_method != Some(method))
    {
        // The first code by this channel: the choice is stored, and the user told.
        if let Err(error) = db
            .set_mfa(&s.org.id, &s.account.id, method, None, None)
            .await
        {
            tracing::error!(%error, "cannot store the chosen method");
            return unavailable(&visit);
        }
        audit(&state, &db, &visit, &s, "mfa-enrolled", method.as_str()).await;
        let name = match method {
            MfaChoice::Sms => visit.texts.method_sms_plain,
            _ => visit.texts.method_email_plain,
        };
        issue::notify(
            &state,
            &visit,
            &s.org,
            &s.account,
            visit.texts.mail_factor_subject,
            &fill(visit.texts.mail_factor_body, &s.org.name, name, ""),
        );
    }
    state
        .metrics
        .logins
        .with_label_values(&[s.org.id.as_str(), method.as_str(), "success"])
        .inc();
    let proof = Proof {
        method: method.as_str(),
        mfa: MfaStatus::Yes,
        trust,
    };
    issue::finish(
        &state,
        &visit,
        &store,
        &db,
        &s.attempt.id,
        s.attempt.session.clone(),
        &s.org,
        &s.account,
        proof,
        Then::Return,
    )
    .await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn resend_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let mut s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let step = step(&s);
    let Step::Code(channel) = step else {
        return see_other("/.certgate/mfa");
    };
    let mut notes = Notes::default();
    match send_code(&state, &visit, &store, &s, channel).await {
        Ok(()) => {
            s.attempt.session.code_sent = true;
            save(&store, &s.attempt).await;
            notes.info = Some(visit.texts.resent.to_owned());
        }
        Err(error) => notes.error = Some(send_error_text(&state, &visit, error)),
    }
    step_page(&visit, &state, &s, step, notes)
}

fn recovery_page_for(
    visit: &Visit,
    s: &Signing,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(Some(&s.org));
    pages::html(
        status,
        &CodePage {
            c: &c,
            csrf: &s.attempt.session.csrf,
            heading: c.t.recovery_heading,
            lead: String::new(),
            action: "/.certgate/mfa/recovery",
            code_label: c.t.recovery_code,
            numeric: false,
            trust_label: String::new(),
            trust_checked: false,
            can_resend: false,
            show_recovery_link: false,
            error,
            info: None,
        },
    )
}

pub(crate) async fn recovery_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    match signing(&visit, &store, &db, &headers).await {
        Ok(s) if !s.account.recovery_codes.is_empty() => {
            recovery_page_for(&visit, &s, None, StatusCode::OK)
        }
        Ok(_) => see_other("/.certgate/mfa"),
        Err(page) => page,
    }
}

pub(crate) async fn recovery_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let start = Instant::now();
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let counted = match begin_guess(&state, &visit, &store, &s, &headers, |text| {
        recovery_page_for(&visit, &s, Some(text), StatusCode::TOO_MANY_REQUESTS)
    })
    .await
    {
        Ok(counted) => counted,
        Err(page) => return page,
    };
    let stored = &s.account.recovery_codes;
    let used = recovery::find(&s.account.id, stored, &form.code);
    let won = match used {
        Some(index) => db
            .use_recovery_code(&s.org.id, &s.account.id, stored, index)
            .await
            .unwrap_or(false),
        None => false,
    };
    if !won {
        state
            .metrics
            .logins
            .with_label_values(&[s.org.id.as_str(), "recovery", "failure"])
            .inc();
        audit(&state, &db, &visit, &s, "sign-in-failed", "recovery").await;
        pace(&state, start).await;
        return recovery_page_for(
            &visit,
            &s,
            Some(visit.texts.wrong_code.to_owned()),
            StatusCode::UNAUTHORIZED,
        );
    }
    guess_was_right(&state, &store, counted).await;
    audit(&state, &db, &visit, &s, "recovery-code-used", "").await;
    state
        .metrics
        .logins
        .with_label_values(&[s.org.id.as_str(), "recovery", "success"])
        .inc();
    let left = stored.len() - 1;
    let chrome = visit.chrome(Some(&s.org));
    let message = fill(chrome.t.recovery_left, "", &left.to_string(), "");
    let then = Then::Page(Box::new(move |next: &str| {
        pages::notice(
            StatusCode::OK,
            &chrome,
            chrome.t.recovery_heading,
            &message,
            false,
            Some((next, chrome.t.continue_)),
        )
    }));
    let proof = Proof {
        method: "recovery",
        mfa: MfaStatus::Yes,
        trust: false,
    };
    issue::finish(
        &state,
        &visit,
        &store,
        &db,
        &s.attempt.id,
        s.attempt.session.clone(),
        &s.org,
        &s.account,
        proof,
        then,
    )
    .await
}

pub(crate) async fn back_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let mut s = match signing_post(&visit, &store, &db, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let stored = s.account.mfa_enrolled && s.account.mfa_method.is_some();
    let to = if s.attempt.session.method.is_some() && !stored {
        // Back from a method not yet confirmed: choose again.
        s.attempt.session.method = None;
        s.attempt.session.enrol_secret = None;
        s.attempt.session.code_sent = false;
        "/.certgate/mfa".to_owned()
    } else {
        s.attempt.session.restart();
        format!(
            "/.certgate/login?return_to={}",
            percent_encoding::utf8_percent_encode(
                &s.attempt.session.return_to,
                percent_encoding::NON_ALPHANUMERIC
            )
        )
    };
    save(&store, &s.attempt).await;
    see_other(&to)
}

// ---------------------------------------------------------------------------------------------
// Sign out

pub(crate) async fn logout_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, _) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let attempt = match load_attempt(&store, &headers).await {
        Some(attempt) => attempt,
        None => match start_attempt(&state, &visit, &store, "/".into()).await {
            Ok(attempt) => attempt,
            Err(page) => return page,
        },
    };
    let claims = session::cookie(&headers, session::DEVICE_COOKIE)
        .and_then(|token| state.tokens.verify(token, state.now()).ok());
    let org = claims
        .as_ref()
        .and_then(|c| visit.org(&c.org).cloned())
        .or_else(|| visit.single_org().cloned());
    let c = visit.chrome(org.as_deref());
    let mut response = pages::html(
        StatusCode::OK,
        &LogoutPage {
            c: &c,
            csrf: &attempt.session.csrf,
            group: claims.is_some_and(|c| c.class == CredentialClass::Group),
        },
    );
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        attempt.id.as_str(),
        None,
    );
    response
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

pub(crate) async fn logout_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (store, db) = match backends(&state, &visit) {
        Ok(b) => b,
        Err(page) => return page,
    };
    let attempt = match load_attempt(&store, &headers).await {
        Some(attempt) if attempt.session.csrf_ok(&form.csrf) => attempt,
        _ => return see_other("/.certgate/logout"),
    };
    let now = state.now();
    let claims = session::cookie(&headers, session::DEVICE_COOKIE)
        .and_then(|token| state.tokens.verify(token, now).ok());
    let org = claims
        .as_ref()
        .and_then(|c| visit.org(&c.org).cloned())
        .or_else(|| visit.single_org().cloned());
    let c = visit.chrome(org.as_deref());
    let keep_device = form.action == "sign-out"
        && claims
            .as_ref()
            .is_some_and(|c| c.class == CredentialClass::Group);
    let _ = store.delete_session(&attempt.id).await;
    if keep_device {
        let mut response = pages::notice(
            StatusCode::OK,
            &c,
            c.t.logout_heading,
            c.t.signed_out_kept,
            false,
            Some(("/", c.t.continue_)),
        );
        session::clear_cookie(&mut response, session::SESSION_COOKIE);
        return response;
    }
    if let (Some(claims), Some(org)) = (&claims, &org) {
        let revocation = NewRevocation {
            org: claims.org.clone(),
            kind: RevocationKind::Device,
            subject: claims.device_id.clone(),
            reason: "signed out".into(),
            revoked_at: now,
            drop_after: issue::keep_revocation_for(org, claims, now),
        };
        if let Err(error) = state.backend.revoke(&revocation, "sign_out").await {
            tracing::error!(%error, "cannot revoke a signed-out device");
            return issue::trouble(&visit, org);
        }
        let _ = db.revoke_device(&claims.org, &claims.device_id, now).await;
        let _ = db
            .append_audit(&certgate_db::AuditEntry {
                org: claims.org.clone(),
                at: now,
                actor: claims.account.clone(),
                action: "sign-out".into(),
                subject: claims.device_id.clone(),
                ip: visit.ip.clone(),
                detail: String::new(),
            })
            .await;
        tracing::info!(org = %claims.org, account = %claims.account, device = %claims.device_id, "signed out");
    }
    let mut response = pages::notice(
        StatusCode::OK,
        &c,
        c.t.logout_heading,
        c.t.logged_out,
        false,
        Some(("/.certgate/login", c.t.sign_in_again)),
    );
    session::clear_cookie(&mut response, session::DEVICE_COOKIE);
    session::clear_cookie(&mut response, session::SESSION_COOKIE);
    response
}
