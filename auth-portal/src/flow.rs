//! The sign-in pages: password, choice of second factor, authenticator enrolment, code entry,
//! recovery codes, and sign-out. Each POST checks the session's CSRF token; each failure is
//! answered with the same words after the same delay.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_accounts::RevocationSet;
use certgate_certs::CredentialClass;
use certgate_db::{Account, Database, MfaChoice, NewRevocation, RevocationKind, StoredPasskey};
use certgate_policies::Organisation;
use certgate_store::{RateLimit, SessionId, Store};
use serde::Deserialize;

use crate::codes::{self, CodeCheck};
use crate::extract::{Backends, FromPage, Page, PageError};
use crate::i18n::fill;
use crate::issue::{self, Issued};
use crate::mail::Mail;
use crate::pages::{
    self, ChoosePage, CodePage, EnrolPage, LoginPage, LogoutPage, MethodOption, RecoveredPage,
    RecoveryCodesPage,
};
use crate::return_to::safe_return_to;
use crate::session::{self, SESSION_TTL};
use crate::signin::{
    self, Audit, Awaiting, Ctx, Effect, Event, Finish, LoginSession, Message, SendProblem, Senders,
    Step, View,
};
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

/// A new sign-in session, counted against the visitor's address; refused past
/// `limits.sign_in_starts_per_ip` (429), or when the store cannot take it.
pub(crate) async fn start_attempt(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    return_to: String,
) -> Result<Attempt, PageError> {
    count_visitor(state, visit, store).await?;
    create_attempt(visit, store, return_to).await
}

/// The sign-in session of this browser, or a new one (counted, as [`start_attempt`]).
pub(crate) async fn attempt_or_start(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    headers: &HeaderMap,
    return_to: String,
) -> Result<Attempt, PageError> {
    match load_attempt(store, headers).await {
        Some(attempt) => Ok(attempt),
        None => start_attempt(state, visit, store, return_to).await,
    }
}

/// A new sign-in session, not counted: for a visitor the portal already knows (by a browser
/// credential, or back from a single sign-on round trip that was counted when it started).
pub(crate) async fn create_attempt(
    visit: &Visit,
    store: &Store,
    return_to: String,
) -> Result<Attempt, PageError> {
    let session = LoginSession::new(return_to);
    let created = match serde_json::to_vec(&session) {
        Ok(data) => store.create_session(&data, SESSION_TTL).await.ok(),
        Err(_) => None,
    };
    match created {
        Some(id) => Ok(Attempt { id, session }),
        None => Err(PageError::unavailable(visit)),
    }
}

/// Counts one thing a visitor without a session makes the store keep (a sign-in session, a
/// single sign-on round trip) against `limits.sign_in_starts_per_ip`, so that requests which
/// never sign in cannot fill the store; refused when the address must wait or the store cannot
/// count.
pub(crate) async fn count_visitor(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
) -> Result<(), PageError> {
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
            Err(PageError::TooManyStarts {
                chrome: visit.chrome(visit.single_org().map(|o| o.as_ref())),
                wait: hit.retry_after,
            })
        }
        Err(error) => {
            tracing::error!(%error, "the store cannot count new sign-in sessions");
            Err(PageError::unavailable(visit))
        }
    }
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
    // "Forgot your password?" carries the name (and organisation) typed, so it is not asked
    // twice.
    let mut forgot_href = String::from("/.certgate/forgot");
    for (key, value) in [("username", view.username), ("org", view.typed_org)] {
        if !value.is_empty() {
            forgot_href.push(if forgot_href.contains('?') { '&' } else { '?' });
            forgot_href.push_str(key);
            forgot_href.push('=');
            forgot_href.extend(percent_encoding::utf8_percent_encode(
                value,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
    }
    let mut response = pages::html(
        status,
        &LoginPage {
            c: &c,
            forgot_href,
            heading,
            csrf: view.attempt.session.csrf(),
            return_to: view.attempt.session.return_to(),
            ask_org,
            org: view.typed_org,
            remember_org: view.remember_org,
            username: view.username,
            focus_username: view.username.is_empty(),
            error: view.error,
            info: view.info,
            sso,
            passkey_options: crate::passkey::discover_options(&view.attempt.session).unwrap_or(""),
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

/// Why this browser's credential stopped admitting it, when someone else ended it (an
/// administrator, or a new password): the sign-in page says so instead of starting over without
/// a word. Only for a credential this deployment signed, of an organisation of this host.
async fn why_signed_out(
    state: &PortalState,
    visit: &Visit,
    db: &Database,
    headers: &HeaderMap,
) -> Option<&'static str> {
    let now = state.now();
    let claims = session::cookie(headers, session::DEVICE_COOKIE)
        .and_then(|token| state.tokens.verify(token, now).ok())
        .filter(|c| visit.org(&c.org).is_some())?;
    let records = db.live_revocations_of(&claims.org, now).await.ok()?;
    // Refused by the gateway's own rule; the record behind it says why.
    let refusal = RevocationSet::from_records(&records).refusal(
        &claims.org,
        &claims.account,
        &claims.device_id,
        None,
        claims.issued_at,
    )?;
    let ended = certgate_accounts::refusing_record(
        &records,
        refusal,
        &claims.org,
        &claims.account,
        &claims.device_id,
    )?;
    let t = visit.texts;
    match ended.reason.as_str() {
        "mfa_reset" => Some(t.signed_out_mfa_reset),
        "password_reset" | "password reset" => Some(t.signed_out_password),
        // The person's own doing ("signed out", "revoked by the user") needs no word.
        "signed out" | "revoked by the user" => None,
        _ => Some(t.signed_out_by_admin),
    }
}

pub(crate) async fn login_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Backends { visit, store, db }: Backends,
) -> Result<Response, PageError> {
    let return_to =
        safe_return_to(raw_param(query.as_deref().unwrap_or_default(), "return_to").unwrap_or("/"));
    let mut attempt = match load_attempt(&store, &headers).await {
        Some(mut attempt) => {
            attempt.session.begin(return_to);
            attempt
        }
        None => start_attempt(&state, &visit, &store, return_to).await?,
    };
    crate::passkey::ready_to_discover(&visit, &mut attempt.session);
    save(&store, &attempt).await;
    let remembered = session::cookie(&headers, session::ORG_COOKIE)
        .and_then(|id| visit.org(id))
        .cloned();
    let org = visit.single_org().cloned().or(remembered.clone());
    let typed_org = remembered.as_ref().map_or("", |o| o.id.as_str());
    let info = why_signed_out(&state, &visit, &db, &headers).await;
    Ok(login_view(
        &visit,
        StatusCode::OK,
        LoginView {
            attempt: &attempt,
            org: org.as_deref(),
            typed_org,
            remember_org: remembered.is_some(),
            username: "",
            error: None,
            info: info.map(str::to_owned),
        },
    ))
}

/// The sign-in page again after a refused passkey: `error` under the host's organisation.
pub(crate) fn login_refused(
    visit: &Visit,
    attempt: &Attempt,
    error: String,
    status: StatusCode,
) -> Response {
    let echo = Echo {
        typed_org: "",
        remember_org: false,
        username: "",
    };
    let org = visit.single_org().map(|o| o.as_ref());
    login_again(visit, attempt, org, &echo, error, status)
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
    Backends { visit, store, db }: Backends,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let username: String = form.username.trim().chars().take(256).collect();
    let typed_org: String = form.org.trim().chars().take(64).collect();
    let remember_org = form.remember_org.is_some();
    let attempt = match load_attempt(&store, &headers).await {
        Some(attempt) if attempt.session.csrf_ok(&form.csrf) => attempt,
        _ => {
            // An expired page (or a forged post): a fresh form, nothing else happens.
            let return_to = safe_return_to(&form.return_to);
            let fresh = start_attempt(&state, &visit, &store, return_to).await?;
            let echo = Echo {
                typed_org: &typed_org,
                remember_org,
                username: &username,
            };
            return Ok(login_again(
                &visit,
                &fresh,
                visit.single_org().map(|o| o.as_ref()),
                &echo,
                visit.texts.session_expired.to_owned(),
                StatusCode::BAD_REQUEST,
            ));
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
                return Ok(login_again(
                    &visit,
                    &attempt,
                    None,
                    &echo,
                    visit.texts.unknown_organisation.to_owned(),
                    StatusCode::BAD_REQUEST,
                ));
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

    // A form sent half-filled is not a guess: say what is missing, count nothing.
    if username.is_empty() || form.password.is_empty() {
        return Ok(again(visit.texts.login_incomplete, StatusCode::BAD_REQUEST));
    }

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
            count_block(&state, blocked);
            let wait = visit.texts.duration(blocked.wait());
            let text = fill(visit.texts.login_blocked, "", &wait, "");
            return Ok(again(&text, StatusCode::TOO_MANY_REQUESTS));
        }
        Err(error) => {
            tracing::error!(%error, "the store cannot check sign-in limits");
            return Err(PageError::unavailable(&visit));
        }
    };

    let account = db.find_account(&org.id, &username).await.map_err(|error| {
        tracing::error!(%error, "cannot look up an account");
        PageError::unavailable(&visit)
    })?;
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let typed = form.password;
    let matches = tokio::task::spawn_blocking(move || password::verify(&typed, stored.as_deref()))
        .await
        .unwrap_or(false);
    let account = match account {
        Some(account) if matches && !account.disabled => account,
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
            pace(&state, visit.arrived).await;
            return Ok(again(visit.texts.bad_login, StatusCode::UNAUTHORIZED));
        }
    };
    if let Err(error) = throttle.succeeded(counted).await {
        tracing::warn!(%error, "a good sign-in could not be taken off the counters");
    }

    // Counted by the machine (`Effect::CountLogin`), as every success is; a wrong password
    // never reaches it, so its failure is counted above.
    let s = Signing::new(attempt, Arc::clone(&org), account);
    let mut response = first_step_done(&state, &visit, &store, &db, s, Event::PasswordOk).await;
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
    Ok(response)
}

/// A block, counted in `rate_limited_total`.
fn count_block(state: &PortalState, blocked: Blocked) {
    state
        .metrics
        .rate_limited
        .with_label_values(&[blocked.kind()])
        .inc();
}

/// The "wait and try again" sentence for a block, counted in `rate_limited_total`.
pub(crate) fn too_many(state: &PortalState, visit: &Visit, blocked: Blocked) -> String {
    count_block(state, blocked);
    fill(
        visit.texts.too_many,
        "",
        &visit.texts.duration(blocked.wait()),
        "",
    )
}

// ---------------------------------------------------------------------------------------------
// Second factor: each handler loads the sign-in, checks what only it can (the form's token, a
// code against the store), tells the machine (`signin.rs`) what happened, carries out what it
// answers and renders it.

/// A sign-in past its first step: the session (its step settled for the account and policy as
/// they are now), organisation and account.
pub(crate) struct Signing {
    pub attempt: Attempt,
    pub org: Arc<Organisation>,
    pub account: Account,
    /// The account's passkeys ([`Signing::load_passkeys`]).
    pub passkeys: Vec<StoredPasskey>,
}

impl Signing {
    /// A sign-in whose first step proved `account` on this request.
    pub fn new(attempt: Attempt, org: Arc<Organisation>, account: Account) -> Self {
        Signing {
            attempt,
            org,
            account,
            passkeys: Vec::new(),
        }
    }

    /// Reads the account's passkeys, which the machine settles the step by.
    pub async fn load_passkeys(&mut self, visit: &Visit, db: &Database) -> Result<(), PageError> {
        self.passkeys = db
            .passkeys(&self.org.id, &self.account.id)
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot read an account's passkeys");
                PageError::unavailable(visit)
            })?;
        Ok(())
    }

    pub(crate) fn step(&self) -> &Step {
        self.attempt.session.step()
    }

    /// What the machine decides on, for this sign-in now.
    pub(crate) fn ctx(&self, state: &PortalState) -> Ctx<'_> {
        Ctx {
            org: &self.org,
            account: &self.account,
            senders: senders(state),
            passkeys: self.passkeys.len(),
            now: state.now(),
        }
    }
}

fn senders(state: &PortalState) -> Senders {
    Senders {
        sms: state.sms.is_some(),
        email: state.mailer.is_some(),
    }
}

/// Loads the sign-in in progress; without one (expired, never signed in, or void since) the
/// user is sent back to the sign-in page.
async fn signing(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    headers: &HeaderMap,
) -> Result<Signing, PageError> {
    let back = || PageError::redirect("/.certgate/login");
    let attempt = load_attempt(store, headers).await.ok_or_else(back)?;
    let proven = attempt.session.proven().cloned().ok_or_else(back)?;
    let org = visit.org(&proven.org).cloned().ok_or_else(back)?;
    let account = match db.account(&proven.org, &proven.account).await {
        Ok(Some(account)) => account,
        Ok(None) => return Err(back()),
        Err(error) => {
            tracing::error!(%error, "cannot load the account signing in");
            return Err(PageError::unavailable(visit));
        }
    };
    let mut s = Signing::new(attempt, org, account);
    s.load_passkeys(visit, db).await?;
    let step = signin::current(s.step(), &s.ctx(state)).ok_or_else(back)?;
    s.attempt.session.enter(step);
    Ok(s)
}

/// The second-factor pages' request: the backends and the sign-in in progress, as
/// [`signing`] loads it.
pub(crate) type SigningIn = Page<Signing>;

impl FromPage for Signing {
    async fn load(
        state: &PortalState,
        b: &Backends,
        headers: &HeaderMap,
    ) -> Result<Self, PageError> {
        signing(state, &b.visit, &b.store, &b.db, headers).await
    }
}

impl Page<Signing> {
    /// For a POST: the form's CSRF token must be the session's, else back to the sign-in page.
    pub(crate) fn posted(self, csrf: &str) -> Result<Self, PageError> {
        if !self.it.attempt.session.csrf_ok(csrf) {
            return Err(PageError::redirect("/.certgate/login"));
        }
        Ok(self)
    }

    /// Tells the machine `event` and answers on `screen`.
    pub(crate) async fn tell(
        self,
        state: &PortalState,
        event: Event<'_>,
        screen: Screen,
    ) -> Result<Response, PageError> {
        let SigningIn {
            visit,
            store,
            db,
            it: mut s,
        } = self;
        let driven = drive(state, &visit, &store, &db, &mut s, event).await?;
        Ok(answer(state, &visit, &s, driven, screen, visit.arrived).await)
    }
}

/// What carrying out a transition left for the page.
struct Driven {
    view: View,
    /// New recovery codes, shown once.
    codes: Vec<String>,
    issued: Option<Issued>,
    /// The session got a new id: the cookie must follow.
    rotated: bool,
}

/// Tells the machine `event`, carries out the effects it answers (feeding the answers of those
/// that have one back to it), and saves the session. `Err`: nothing of the transition is
/// saved.
async fn drive(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    s: &mut Signing,
    event: Event<'_>,
) -> Result<Driven, PageError> {
    let mut next = signin::transition(s.step(), event, &s.ctx(state));
    let mut driven = Driven {
        view: next.view.take().unwrap_or(View::ToMfa),
        codes: Vec::new(),
        issued: None,
        rotated: false,
    };
    loop {
        s.attempt.session.enter(next.step);
        let mut answer = None;
        for effect in next.effects {
            if let Some(event) = carry_out(state, visit, store, db, s, effect, &mut driven).await? {
                answer = Some(event);
            }
        }
        let Some(event) = answer else { break };
        next = signin::transition(s.step(), event, &s.ctx(state));
        if let Some(view) = next.view.take() {
            driven.view = view;
        }
    }
    // A step waiting for a passkey: its ceremony, for the page.
    crate::passkey::ready(visit, s);
    if !save(store, &s.attempt).await && driven.issued.is_none() {
        return Err(PageError::unavailable(visit));
    }
    Ok(driven)
}

/// One effect; the event that answers it, for those that have one.
async fn carry_out(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    s: &mut Signing,
    effect: Effect,
    driven: &mut Driven,
) -> Result<Option<Event<'static>>, PageError> {
    match effect {
        Effect::RotateSession => {
            let Ok(Some(id)) = store.rotate_session(&s.attempt.id, SESSION_TTL).await else {
                return Err(PageError::unavailable(visit));
            };
            s.attempt.id = id;
            driven.rotated = true;
        }
        Effect::SealNewSecret => match state.seal_secret(&s.account.id, &totp::new_secret()) {
            Ok(sealed) => return Ok(Some(Event::SecretSealed(sealed))),
            Err(error) => {
                tracing::error!(%error, "cannot seal a new authenticator secret");
                return Err(PageError::unavailable_in(visit, &s.org));
            }
        },
        Effect::SendCode { channel, again } => {
            return Ok(Some(
                match send_code(state, visit, store, s, channel).await {
                    Ok(()) => Event::CodeSent { again },
                    Err(problem) => Event::CodeNotSent { again, problem },
                },
            ))
        }
        Effect::StoreFactor {
            factor,
            secret,
            recovery_codes,
            replacing,
        } => {
            let hashes: Option<Vec<String>> = recovery_codes.then(|| {
                driven.codes = recovery::new_codes();
                driven
                    .codes
                    .iter()
                    .map(|c| recovery::hash(&s.account.id, c))
                    .collect()
            });
            let stored = db
                .set_mfa(
                    &s.org.id,
                    &s.account.id,
                    factor,
                    secret.as_deref(),
                    hashes.as_deref(),
                )
                .await;
            // A channel in place of a lost factor: the lost app's secret goes.
            let stored = match stored {
                Ok(true) if replacing && factor != MfaChoice::Authenticator => {
                    db.clear_totp_secret(&s.org.id, &s.account.id).await
                }
                other => other,
            };
            match stored {
                Ok(true) => {}
                // Deleted meanwhile.
                Ok(false) => return Err(PageError::redirect("/.certgate/login")),
                Err(error) => {
                    tracing::error!(%error, "cannot store a second factor");
                    return Err(PageError::unavailable(visit));
                }
            }
        }
        Effect::RemovePasskeys => {
            if let Err(error) = db.remove_passkeys(&s.org.id, &s.account.id).await {
                tracing::error!(%error, "cannot remove an account's passkeys");
                return Err(PageError::unavailable(visit));
            }
            s.passkeys.clear();
        }
        Effect::StorePasskey {
            passkey,
            recovery_codes,
            replacing,
        } => {
            let codes = recovery_codes.then(recovery::new_codes);
            let hashes: Option<Vec<String>> = codes.as_ref().map(|codes| {
                codes
                    .iter()
                    .map(|c| recovery::hash(&s.account.id, c))
                    .collect()
            });
            let name = crate::passkey::device_name(visit);
            let stored = crate::passkey::stored(&s.org, &s.account, &passkey, &name, state.now())
                .ok_or_else(|| PageError::unavailable_in(visit, &s.org))?;
            match db.add_passkey(&stored, hashes.as_deref(), replacing).await {
                Ok(true) => {}
                Ok(false) => return Err(PageError::redirect("/.certgate/login")),
                Err(error) => {
                    tracing::error!(%error, "cannot store a passkey");
                    return Err(PageError::unavailable(visit));
                }
            }
            if replacing {
                s.passkeys.clear();
            }
            s.passkeys.push(stored);
            if let Some(codes) = codes {
                driven.codes = codes;
            }
        }
        Effect::Audit(entry) => {
            let (action, detail) = match entry {
                Audit::Failed(method) => (certgate_db::AuditAction::SignInFailed, method.as_str()),
                Audit::FactorEnrolled(factor) => {
                    (certgate_db::AuditAction::MfaEnrolled, factor.as_str())
                }
                Audit::FactorReplaced(factor) => {
                    (certgate_db::AuditAction::MfaReplaced, factor.as_str())
                }
                Audit::RecoveryCodeUsed => (certgate_db::AuditAction::RecoveryCodeUsed, ""),
                Audit::PasskeyCloned => (certgate_db::AuditAction::PasskeyCloned, ""),
            };
            audit(state, db, visit, s, action, detail).await;
        }
        Effect::NotifyFactorAdded(factor) => {
            let t = visit.texts;
            let name = match factor {
                MfaChoice::Authenticator => t.method_authenticator,
                MfaChoice::Sms => t.method_sms_plain,
                MfaChoice::Email => t.method_email_plain,
                MfaChoice::Passkey => t.method_passkey_plain,
            };
            let body = fill(t.mail_factor_body, &s.org.name, name, "");
            issue::notify(
                state,
                visit,
                &s.org,
                &s.account,
                t.mail_factor_subject,
                &body,
            );
        }
        Effect::CountLogin { method, success } => {
            let outcome = if success { "success" } else { "failure" };
            state
                .metrics
                .logins
                .with_label_values(&[s.org.id.as_str(), method.as_str(), outcome])
                .inc();
        }
        Effect::Issue(proof) => {
            let issued = issue::credential(state, visit, db, &s.org, &s.account, proof).await?;
            driven.issued = Some(issued);
            // A new session id: whatever an attacker planted before sign-in is worth nothing now.
            if let Ok(Some(id)) = store.rotate_session(&s.attempt.id, SESSION_TTL).await {
                s.attempt.id = id;
                driven.rotated = true;
            }
        }
    }
    Ok(None)
}

/// Which page a handler shows its step on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Screen {
    /// The step's own page (choice, enrolment, code).
    Step,
    /// The recovery-code page.
    Recovery,
}

/// Renders what the machine answered, with the cookies it needs. `start`: when the request
/// came, for the failure delay.
async fn answer(
    state: &PortalState,
    visit: &Visit,
    s: &Signing,
    driven: Driven,
    screen: Screen,
    start: Instant,
) -> Response {
    let return_to = s.attempt.session.return_to();
    let mut response = match driven.view {
        View::ToLogin => see_other("/.certgate/login"),
        View::ToMfa => see_other("/.certgate/mfa"),
        View::Restart => see_other(&format!(
            "/.certgate/login?return_to={}",
            percent_encoding::utf8_percent_encode(return_to, percent_encoding::NON_ALPHANUMERIC)
        )),
        View::Page { message, trust } => {
            let notes = notes(state, visit, message, trust);
            screen_page(visit, state, s, screen, notes, StatusCode::OK)
        }
        View::Refused { message, trust } => {
            pace(state, start).await;
            let notes = notes(state, visit, Some(message), trust);
            screen_page(visit, state, s, screen, notes, StatusCode::UNAUTHORIZED)
        }
        View::Done(Finish::Return) => Redirect::to(return_to).into_response(),
        View::Done(Finish::RecoveryCodes) => pages::html(
            StatusCode::OK,
            &RecoveryCodesPage {
                c: &visit.chrome(Some(&s.org)),
                codes: &driven.codes,
                next: return_to,
                set_up: true,
            },
        ),
        View::Done(Finish::RecoveryLeft(left)) => {
            let c = visit.chrome(Some(&s.org));
            pages::html(
                StatusCode::OK,
                &RecoveredPage {
                    c: &c,
                    csrf: s.attempt.session.csrf(),
                    left: fill(c.t.recovery_left, "", &left.to_string(), ""),
                    next: return_to,
                },
            )
        }
    };
    if driven.rotated {
        session::set_cookie(
            &mut response,
            session::SESSION_COOKIE,
            s.attempt.id.as_str(),
            None,
        );
    }
    if let Some(issued) = &driven.issued {
        session::set_cookie(
            &mut response,
            session::DEVICE_COOKIE,
            &issued.token,
            Some(issued.lifetime),
        );
    }
    response
}

/// The words of a machine's message.
fn notes(state: &PortalState, visit: &Visit, message: Option<Message>, trust: bool) -> Notes {
    let t = visit.texts;
    let (error, info) = match message {
        None => (None, None),
        Some(Message::Resent) => (None, Some(t.resent.to_owned())),
        Some(Message::WrongCode) => (Some(t.wrong_code.to_owned()), None),
        Some(Message::NoCode) => (Some(t.no_code.to_owned()), None),
        Some(Message::ChooseOne) => (Some(t.choose_one.to_owned()), None),
        Some(Message::PasskeyFailed) => (Some(t.passkey_failed.to_owned()), None),
        Some(Message::NotSent(SendProblem::Failed)) => (Some(t.send_failed.to_owned()), None),
        Some(Message::NotSent(SendProblem::Limited { until })) => {
            let wait =
                std::time::Duration::from_secs(until.saturating_sub(state.now()).max(1) as u64);
            (Some(fill(t.too_many, "", &t.duration(wait), "")), None)
        }
    };
    Notes { error, info, trust }
}

fn screen_page(
    visit: &Visit,
    state: &PortalState,
    s: &Signing,
    screen: Screen,
    notes: Notes,
    status: StatusCode,
) -> Response {
    let mut response = match screen {
        Screen::Step => step_page(visit, state, s, notes),
        Screen::Recovery => recovery_page_for(visit, s, notes.error),
    };
    *response.status_mut() = status;
    response
}

pub(crate) fn trust_label(visit: &Visit, org: &Organisation, account: &Account) -> String {
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
pub(crate) struct Notes {
    pub error: Option<String>,
    pub info: Option<String>,
    pub trust: bool,
}

/// The page of the sign-in's current step.
fn step_page(visit: &Visit, state: &PortalState, s: &Signing, notes: Notes) -> Response {
    let c = visit.chrome(Some(&s.org));
    let csrf = s.attempt.session.csrf();
    match s.step() {
        Step::Choosing { .. } => {
            let mut offered = signin::offered_methods(&s.ctx(state));
            // A passkey first (the page's script moves it down where the device has none).
            offered.sort_by_key(|m| *m != MfaChoice::Passkey);
            let mut options: Vec<MethodOption> = offered
                .iter()
                .map(|m| {
                    let reachable = signin::reachable(&s.account, *m);
                    let (label, plain, why_not) = match m {
                        MfaChoice::Authenticator => (c.t.method_authenticator.to_owned(), "", None),
                        MfaChoice::Passkey => (c.t.method_passkey.to_owned(), "", None),
                        MfaChoice::Sms => (
                            fill(c.t.method_sms, "", "", &destination(&s.account, *m)),
                            c.t.method_sms_plain,
                            (!reachable).then_some(c.t.no_mobile),
                        ),
                        MfaChoice::Email => (
                            fill(c.t.method_email, "", "", &destination(&s.account, *m)),
                            c.t.method_email_plain,
                            (!reachable).then_some(c.t.no_email),
                        ),
                    };
                    MethodOption {
                        value: m.as_str(),
                        label: if reachable { label } else { plain.to_owned() },
                        enabled: reachable,
                        checked: false,
                        why_not,
                    }
                })
                .collect();
            // Checked: the first that shows without the page's script (which may check the
            // passkey instead).
            let first = options
                .iter()
                .position(|o| o.enabled && o.value != "passkey")
                .or_else(|| options.iter().position(|o| o.enabled));
            if let Some(first) = first.and_then(|i| options.get_mut(i)) {
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
        Step::Enrolling { secret, .. } => {
            let secret = secret
                .as_deref()
                .and_then(|sealed| state.open_secret(&s.account.id, sealed).ok());
            let Some(secret) = secret else {
                return see_other("/.certgate/mfa");
            };
            let uri = totp::provisioning_uri(&secret, &s.org.name, &s.account.username).ok();
            let Some((uri, qr_svg)) = uri.and_then(|uri| pages::qr_svg(&uri).map(|svg| (uri, svg)))
            else {
                return PageError::unavailable_in(visit, &s.org).into_response();
            };
            pages::html(
                StatusCode::OK,
                &EnrolPage {
                    c: &c,
                    csrf,
                    qr_svg,
                    otpauth: uri,
                    stores: pages::authenticator_stores(visit.agent.1),
                    secret: totp::secret_text(&secret),
                    trust_label: trust_label(visit, &s.org, &s.account),
                    error: notes.error,
                },
            )
        }
        Step::EnrollingPasskey { .. } | Step::AwaitingPasskey { .. } => {
            crate::passkey::step_page(visit, state, s, notes)
        }
        Step::Reproving {
            factor: MfaChoice::Passkey,
            ..
        } => crate::passkey::step_page(visit, state, s, notes),
        Step::AwaitingApp { .. } | Step::AwaitingCode { .. } | Step::Reproving { .. } => {
            let channel = s.step().channel();
            let lead = match channel {
                Some(channel) => fill(c.t.code_sent_to, "", "", &destination(&s.account, channel)),
                None => c.t.code_from_app.to_owned(),
            };
            let alternatives = other_ways(visit, state, s);
            let instead = matches!(
                s.step(),
                Step::AwaitingCode { instead: true, .. } | Step::AwaitingApp { instead: true, .. }
            );
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
                    can_resend: channel.is_some(),
                    show_recovery_link: !s.account.recovery_codes.is_empty(),
                    alternatives,
                    back_label: if instead { c.t.instead_back } else { c.t.back },
                    error: notes.error,
                    info: notes.info,
                },
            )
        }
        Step::Started | Step::SignedIn(_) => see_other("/.certgate/login"),
    }
}

/// "Sign in another way": (method, what its button says) for each other way the step offers.
pub(crate) fn other_ways(
    visit: &Visit,
    state: &PortalState,
    s: &Signing,
) -> Vec<(&'static str, String)> {
    let t = visit.texts;
    signin::alternatives(s.step(), &s.ctx(state))
        .into_iter()
        .map(|m| {
            let text = match m {
                MfaChoice::Sms => fill(t.instead_sms, "", "", &destination(&s.account, m)),
                MfaChoice::Email => fill(t.instead_email, "", "", &destination(&s.account, m)),
                MfaChoice::Authenticator => t.instead_app.to_owned(),
                MfaChoice::Passkey => t.instead_passkey.to_owned(),
            };
            (m.as_str(), text)
        })
        .collect()
}

/// Sends this sign-in's code by `channel`, within the account's limit.
async fn send_code(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &Signing,
    channel: MfaChoice,
) -> Result<(), SendProblem> {
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
        .map_err(|_| SendProblem::Failed)?;
    if !sent.allowed {
        state
            .metrics
            .rate_limited
            .with_label_values(&["codes_sent"])
            .inc();
        let wait = i64::try_from(sent.retry_after.as_secs()).unwrap_or(i64::MAX);
        return Err(SendProblem::Limited {
            until: state.now().saturating_add(wait),
        });
    }
    let code = codes::new_code();
    codes::remember(store, &code_key(s, channel), &code, state.now() as u64)
        .await
        .map_err(|_| SendProblem::Failed)?;
    let t = visit.texts;
    match channel {
        MfaChoice::Sms => {
            let (Some(sender), Some(number)) = (&state.sms, &s.account.mobile) else {
                return Err(SendProblem::Failed);
            };
            if let Err(error) = sender
                .send(number, &fill(t.sms_code, &s.org.name, &code, ""))
                .await
            {
                tracing::warn!(%error, org = %s.org.id, "sign-in code not sent by SMS");
                return Err(SendProblem::Failed);
            }
        }
        _ => {
            let (Some(mailer), Some(to)) = (&state.mailer, &s.account.email) else {
                return Err(SendProblem::Failed);
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
                return Err(SendProblem::Failed);
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

/// The first step (a password, a provider, or a fresh sign-in adding a factor) is done for
/// `account`: on to what the machine says, a credential or the second factor.
pub(crate) async fn first_step_done(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    mut s: Signing,
    event: Event<'_>,
) -> Response {
    let start = Instant::now();
    if let Err(refused) = s.load_passkeys(visit, db).await {
        return refused.into_response();
    }
    match drive(state, visit, store, db, &mut s, event).await {
        Ok(driven) => answer(state, visit, &s, driven, Screen::Step, start).await,
        Err(refused) => refused.into_response(),
    }
}

pub(crate) async fn mfa_page(
    State(state): State<Arc<PortalState>>,
    signing: SigningIn,
) -> Result<Response, PageError> {
    signing.tell(&state, Event::Show, Screen::Step).await
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
    signing: SigningIn,
    Form(form): Form<ChooseForm>,
) -> Result<Response, PageError> {
    let event = Event::Chose(&form.method);
    signing
        .posted(&form.csrf)?
        .tell(&state, event, Screen::Step)
        .await
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /.certgate/mfa/replace`: right after signing in with a recovery code, the person sets
/// up a new factor in place of the one lost (the machine checks it was a recovery code, and
/// fresh).
pub(crate) async fn replace_submit(
    State(state): State<Arc<PortalState>>,
    crate::account::UserPage {
        visit,
        store,
        db,
        it: me,
    }: crate::account::UserPage,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !me.attempt.session.csrf_ok(&form.csrf) {
        return Err(PageError::redirect("/.certgate/account"));
    }
    let s = Signing::new(me.attempt, me.org, me.account);
    Ok(first_step_done(&state, &visit, &store, &db, s, Event::ReplaceFactor).await)
}

pub(crate) async fn instead_submit(
    State(state): State<Arc<PortalState>>,
    signing: SigningIn,
    Form(form): Form<ChooseForm>,
) -> Result<Response, PageError> {
    let event = Event::Instead(&form.method);
    signing
        .posted(&form.csrf)?
        .tell(&state, event, Screen::Step)
        .await
}

pub(crate) async fn resend_submit(
    State(state): State<Arc<PortalState>>,
    signing: SigningIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    signing
        .posted(&form.csrf)?
        .tell(&state, Event::Resend, Screen::Step)
        .await
}

pub(crate) async fn back_submit(
    State(state): State<Arc<PortalState>>,
    signing: SigningIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    signing
        .posted(&form.csrf)?
        .tell(&state, Event::Back, Screen::Step)
        .await
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
pub(crate) fn guess_throttle<'a>(state: &PortalState, store: &'a Store) -> Throttle<'a> {
    Throttle {
        store,
        per_pair: state.limits.password_failures_per_pair,
        per_ip: state.limits.password_failures_per_ip,
        now: state.now(),
    }
}

/// Counts a second-factor guess before it is checked (under `mfa:<account id>`); `Ok(Err(_))`
/// when the user must wait ([`wait_page`]).
pub(crate) async fn begin_guess(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    s: &Signing,
    headers: &HeaderMap,
) -> Result<Result<Counted, Blocked>, PageError> {
    let source = Source {
        ip: &visit.ip,
        browser: session::cookie(headers, session::BROWSER_COOKIE),
    };
    let name = format!("mfa:{}", s.account.id);
    guess_throttle(state, store)
        .begin(&s.org.id, &name, source)
        .await
        .map_err(|_| PageError::unavailable(visit))
}

/// The page of a guess that must wait: `screen` again, saying how long.
pub(crate) fn wait_page(
    state: &PortalState,
    visit: &Visit,
    s: &Signing,
    screen: Screen,
    trust: bool,
    blocked: Blocked,
) -> Response {
    let notes = Notes {
        error: Some(too_many(state, visit, blocked)),
        info: None,
        trust,
    };
    screen_page(
        visit,
        state,
        s,
        screen,
        notes,
        StatusCode::TOO_MANY_REQUESTS,
    )
}

pub(crate) async fn guess_was_right(state: &PortalState, store: &Store, counted: Counted) {
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

/// `POST /.certgate/mfa/code` and `/.certgate/mfa/enrol`: the code the step awaits.
pub(crate) async fn code_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    signing: SigningIn,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let signing = signing.posted(&form.csrf)?;
    let SigningIn {
        visit,
        store,
        it: s,
        ..
    } = &signing;
    let trust = form.trust.is_some();
    // No code awaited (none went out on this sign-in, say, or the step waits for a passkey):
    // nothing can match, and nothing is counted.
    let awaiting = match s.step().awaiting() {
        None | Some(Awaiting::Passkey | Awaiting::NewPasskey) => {
            return Ok(see_other("/.certgate/mfa"))
        }
        Some(awaiting) => awaiting,
    };
    let counted = match begin_guess(&state, visit, store, s, &headers).await? {
        Ok(counted) => counted,
        Err(blocked) => return Ok(wait_page(&state, visit, s, Screen::Step, trust, blocked)),
    };
    let now = state.now() as u64;
    let right = match awaiting {
        Awaiting::Passkey | Awaiting::NewPasskey => return Ok(see_other("/.certgate/mfa")),
        Awaiting::App | Awaiting::Enrolment { .. } => {
            let sealed = match awaiting {
                Awaiting::Enrolment { secret } => Some(secret),
                _ => s.account.totp_secret.as_deref(),
            };
            let Some(secret) =
                sealed.and_then(|sealed| state.open_secret(&s.account.id, sealed).ok())
            else {
                tracing::error!(org = %s.org.id, account = %s.account.username, "the authenticator secret cannot be opened");
                return Err(PageError::unavailable_in(visit, &s.org));
            };
            match totp::accept(store, &s.account.id, &secret, &form.code, now).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(false),
                Err(error) => {
                    tracing::error!(%error, "cannot check an authenticator code");
                    return Err(PageError::unavailable(visit));
                }
            }
        }
        Awaiting::Code(channel) => {
            let key = code_key(s, channel);
            let limit = state.limits.code_failures_per_code;
            match codes::check(store, &key, &form.code, limit, now).await {
                Ok(CodeCheck::Accepted) => Ok(()),
                Ok(CodeCheck::Wrong { tries_left }) if tries_left > 0 => Err(false),
                Ok(_) => Err(true),
                Err(_) => return Err(PageError::unavailable(visit)),
            }
        }
    };
    let event = match right {
        Ok(()) => {
            guess_was_right(&state, store, counted).await;
            Event::CodeRight { trust }
        }
        Err(gone) => Event::CodeWrong { trust, gone },
    };
    signing.tell(&state, event, Screen::Step).await
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
    let failed = certgate_db::AuditAction::SignInFailed;
    audit_as(state, db, org, name, ip, failed, detail).await;
}

/// An audit entry of something `name` did (or that happened to it) without a sign-in under way.
pub(crate) async fn audit_as(
    state: &PortalState,
    db: &Database,
    org: &str,
    name: &str,
    ip: &str,
    action: certgate_db::AuditAction,
    detail: &str,
) {
    let entry = certgate_db::AuditEntry {
        org: org.to_owned(),
        at: state.now(),
        actor: name.to_owned(),
        action: action.as_str().into(),
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
    action: certgate_db::AuditAction,
    detail: &str,
) {
    let entry = certgate_db::AuditEntry {
        org: s.org.id.clone(),
        at: state.now(),
        actor: s.account.username.clone(),
        action: action.as_str().to_owned(),
        subject: s.account.username.clone(),
        ip: visit.ip.clone(),
        detail: detail.to_owned(),
    };
    if let Err(error) = db.append_audit(&entry).await {
        tracing::warn!(%error, "audit entry not written");
    }
}

fn recovery_page_for(visit: &Visit, s: &Signing, error: Option<String>) -> Response {
    let c = visit.chrome(Some(&s.org));
    pages::html(
        StatusCode::OK,
        &CodePage {
            c: &c,
            csrf: s.attempt.session.csrf(),
            heading: c.t.recovery_heading,
            lead: c.t.recovery_lead.to_owned(),
            action: "/.certgate/mfa/recovery",
            code_label: c.t.recovery_code,
            numeric: false,
            trust_label: String::new(),
            trust_checked: false,
            can_resend: false,
            show_recovery_link: false,
            alternatives: Vec::new(),
            back_label: c.t.back,
            error,
            info: None,
        },
    )
}

pub(crate) async fn recovery_page(signing: SigningIn) -> Response {
    let SigningIn { visit, it: s, .. } = signing;
    if s.account.recovery_codes.is_empty() {
        return see_other("/.certgate/mfa");
    }
    recovery_page_for(&visit, &s, None)
}

pub(crate) async fn recovery_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    signing: SigningIn,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let signing = signing.posted(&form.csrf)?;
    let SigningIn {
        visit,
        store,
        db,
        it: s,
    } = &signing;
    let counted = match begin_guess(&state, visit, store, s, &headers).await? {
        Ok(counted) => counted,
        Err(blocked) => {
            return Ok(wait_page(
                &state,
                visit,
                s,
                Screen::Recovery,
                false,
                blocked,
            ))
        }
    };
    let stored = &s.account.recovery_codes;
    let won = match recovery::find(&s.account.id, stored, &form.code) {
        Some(index) => db
            .use_recovery_code(&s.org.id, &s.account.id, stored, index)
            .await
            .unwrap_or(false),
        None => false,
    };
    let event = if won {
        guess_was_right(&state, store, counted).await;
        Event::RecoveryRight {
            left: stored.len() - 1,
        }
    } else {
        Event::RecoveryWrong
    };
    signing.tell(&state, event, Screen::Recovery).await
}

// ---------------------------------------------------------------------------------------------
// Sign out

pub(crate) async fn logout_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Backends { visit, store, .. }: Backends,
) -> Result<Response, PageError> {
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
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
            csrf: attempt.session.csrf(),
            group: claims.is_some_and(|c| c.class == CredentialClass::Group),
            kept: false,
        },
    );
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        attempt.id.as_str(),
        None,
    );
    Ok(response)
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
    Backends { visit, store, db }: Backends,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    let attempt = match load_attempt(&store, &headers).await {
        Some(attempt) if attempt.session.csrf_ok(&form.csrf) => attempt,
        _ => return Err(PageError::redirect("/.certgate/logout")),
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
        // The tablet still opens the application as the group: say so, and keep "forget this
        // device" at hand (with a fresh session for its form).
        let fresh = start_attempt(&state, &visit, &store, "/".into()).await?;
        let mut response = pages::html(
            StatusCode::OK,
            &LogoutPage {
                c: &c,
                csrf: fresh.session.csrf(),
                group: true,
                kept: true,
            },
        );
        session::set_cookie(
            &mut response,
            session::SESSION_COOKIE,
            fresh.id.as_str(),
            None,
        );
        return Ok(response);
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
            return Err(PageError::unavailable_in(&visit, org));
        }
        let _ = db.revoke_device(&claims.org, &claims.device_id, now).await;
        let _ = db
            .append_audit(&certgate_db::AuditEntry {
                org: claims.org.clone(),
                at: now,
                actor: claims.account.clone(),
                action: certgate_db::AuditAction::SignOut.as_str().into(),
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
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use axum::http::{header, Request};
    use certgate_db::{AccountKind, NewAccount};
    use tower::ServiceExt;

    use super::*;
    use crate::tests::{body, portal, session_cookie, SECRET};

    const PASSWORD: &str = "correct horse battery staple";

    /// `certgate_logins_total{org="noord", method="password", result}`.
    fn password_logins(state: &PortalState, result: &str) -> u64 {
        state
            .metrics
            .logins
            .with_label_values(&["noord", "password", result])
            .get()
    }

    /// The sign-in page's form posted with `password`: its status and where it sends the user.
    async fn sign_in(state: &Arc<PortalState>, password: &str) -> (StatusCode, String) {
        let page = crate::router(Arc::clone(state))
            .oneshot(
                Request::get("/.certgate/login")
                    .header("host", "noord.test")
                    .header("x-certgate-gateway-secret", SECRET)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let cookie = session_cookie(&page);
        let html = body(page).await;
        let csrf = crate::tests::csrf_of(&html);
        let form = format!(
            "csrf={csrf}&username=hanna&password={}",
            password.replace(' ', "+")
        );
        let answer = crate::router(Arc::clone(state))
            .oneshot(
                Request::post("/.certgate/login")
                    .header("host", "noord.test")
                    .header("x-certgate-gateway-secret", SECRET)
                    .header("cookie", cookie)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await
            .unwrap();
        let location = answer
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (answer.status(), location)
    }

    /// A regression: the password handler counted each success, and so did the machine's
    /// `Effect::CountLogin`. One sign-in is one success; one wrong password one failure.
    #[tokio::test]
    async fn a_password_sign_in_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        let db = state.backend.database().unwrap();
        let now = state.now();
        let new = NewAccount {
            org: "noord".into(),
            username: "hanna".into(),
            display_name: "Hanna".into(),
            email: None,
            mobile: None,
            kind: AccountKind::Personal,
            roles: Vec::new(),
        };
        db.create_account(&new, "a1", now).await.unwrap();
        let hash = password::hash(PASSWORD).unwrap();
        assert!(db
            .set_password_hash("noord", "a1", &hash, now)
            .await
            .unwrap());

        let (status, to) = sign_in(&state, PASSWORD).await;
        assert_eq!(
            (status, to.as_str()),
            (StatusCode::SEE_OTHER, "/.certgate/mfa")
        );
        assert_eq!(password_logins(&state, "success"), 1);
        assert_eq!(password_logins(&state, "failure"), 0);

        let (status, _) = sign_in(&state, "not the password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(password_logins(&state, "success"), 1);
        assert_eq!(password_logins(&state, "failure"), 1);
    }
}
