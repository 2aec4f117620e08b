//! "Forgot your password?": an e-mail with a single-use link valid for one hour. The answer is
//! the same, after the same time, whether or not the account exists; the link's token is kept
//! only as a hash.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use certgate_store::{RateLimit, Store};
use ring::digest::{digest, SHA256};
use serde::Deserialize;

use crate::extract::{Backends, PageError};
use crate::flow::{attempt_or_start, pace, Attempt};
use crate::i18n::{fill, Texts};
use crate::mail::Mail;
use crate::pages::{self, ForgotPage, ResetPage};
use crate::session;
use crate::{password, PortalState, Visit};

/// How long a reset link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(3600);
/// Reset requests per address.
const PER_IP: RateLimit = RateLimit {
    limit: 10,
    window: Duration::from_secs(15 * 60),
};
/// Reset mails per account (more requests are answered the same, and send nothing).
const PER_ACCOUNT: RateLimit = RateLimit {
    limit: 3,
    window: Duration::from_secs(3600),
};

fn token_key(token: &str) -> String {
    hex::encode(digest(&SHA256, token.as_bytes()).as_ref())
}

/// What the forgot page shows in its fields: the name and organisation carried over from the
/// sign-in page, or what was typed.
#[derive(Default)]
struct Typed {
    org: String,
    username: String,
}

fn forgot_view(
    visit: &Visit,
    attempt: &Attempt,
    status: StatusCode,
    typed: &Typed,
    (info, error): (Option<String>, Option<String>),
) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    let mut response = pages::html(
        status,
        &ForgotPage {
            c: &c,
            csrf: attempt.session.csrf(),
            ask_org: visit.orgs.len() > 1,
            org: &typed.org,
            username: &typed.username,
            info,
            error,
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

pub(crate) async fn forgot_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Backends { visit, store, .. }: Backends,
) -> Result<Response, PageError> {
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
    let query = query.unwrap_or_default();
    let carried = |name: &str, longest: usize| -> String {
        crate::flow::raw_param(&query, name)
            .map(|raw| {
                percent_encoding::percent_decode_str(&raw.replace('+', " "))
                    .decode_utf8_lossy()
                    .trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(longest)
                    .collect()
            })
            .unwrap_or_default()
    };
    let typed = Typed {
        org: carried("org", 64),
        username: carried("username", 256),
    };
    Ok(forgot_view(
        &visit,
        &attempt,
        StatusCode::OK,
        &typed,
        (None, None),
    ))
}

fn trouble(visit: &Visit) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::notice(
        StatusCode::SERVICE_UNAVAILABLE,
        &c,
        c.t.forgot_heading,
        c.t.trouble,
        true,
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    username: String,
}

pub(crate) async fn forgot_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Backends { visit, store, db }: Backends,
    Form(form): Form<ForgotForm>,
) -> Result<Response, PageError> {
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
    let typed = Typed {
        org: form.org.trim().chars().take(64).collect(),
        username: form.username.trim().chars().take(256).collect(),
    };
    if !attempt.session.csrf_ok(&form.csrf) {
        let expired = visit.texts.session_expired.to_owned();
        return Ok(forgot_view(
            &visit,
            &attempt,
            StatusCode::BAD_REQUEST,
            &typed,
            (None, Some(expired)),
        ));
    }
    match store
        .hit("forgot-ip", &certgate_store::address_key(&visit.ip), PER_IP)
        .await
    {
        Ok(hit) if !hit.allowed => {
            state
                .metrics
                .rate_limited
                .with_label_values(&["password_reset"])
                .inc();
            let text = fill(
                visit.texts.too_many,
                "",
                &visit.texts.duration(hit.retry_after),
                "",
            );
            return Ok(forgot_view(
                &visit,
                &attempt,
                StatusCode::TOO_MANY_REQUESTS,
                &typed,
                (None, Some(text)),
            ));
        }
        Ok(_) => {}
        Err(_) => return Ok(trouble(&visit)),
    }
    let org = match visit.single_org() {
        Some(org) => Some(Arc::clone(org)),
        None => visit.org_named(&typed.org).cloned(),
    };
    if let Some(org) = org {
        send_link(&state, &visit, &store, &db, &org, &typed.username).await;
    }
    pace(&state, visit.arrived).await;
    let sent = visit.texts.forgot_sent.to_owned();
    Ok(forgot_view(
        &visit,
        &attempt,
        StatusCode::OK,
        &Typed::default(),
        (Some(sent), None),
    ))
}

/// Sends the link when the account exists, may sign in and has an address; otherwise nothing.
async fn send_link(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &certgate_db::Database,
    org: &certgate_policies::Organisation,
    login: &str,
) {
    let account = match db.find_account(&org.id, login).await {
        Ok(Some(account)) if !account.disabled => account,
        Ok(_) => return,
        Err(error) => {
            tracing::error!(%error, "cannot look up an account for a password reset");
            return;
        }
    };
    let (Some(to), Some(mailer)) = (&account.email, &state.mailer) else {
        return;
    };
    let key = format!("{}:{}", org.id, account.id);
    if !store
        .hit("forgot-account", &key, PER_ACCOUNT)
        .await
        .is_ok_and(|hit| hit.allowed)
    {
        return;
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let value = format!("{}\n{}", org.id, account.id);
    if store
        .put_once("reset", &token_key(&token), value.as_bytes(), LINK_LIFETIME)
        .await
        .is_err()
    {
        return;
    }
    let link = format!(
        "https://{}/.certgate/reset?token={token}",
        link_host(&visit.host, org)
    );
    let t = visit.texts;
    let mail = Mail {
        to: to.clone(),
        subject: fill(t.mail_reset_subject, &org.name, "", ""),
        body: format!(
            "{}{}",
            fill(t.mail_reset_body, &org.name, "", &link),
            fill(t.mail_signature, &org.name, "", "")
        ),
    };
    if let Err(error) = mailer.send(mail) {
        tracing::warn!(%error, org = %org.id, "password reset mail not queued");
    }
}

/// The host a mailed link names: the request's, when it is one of the organisation's own
/// (with its port, digits only), else the organisation's first host. Never anything a client
/// made up.
fn link_host(requested: &str, org: &certgate_policies::Organisation) -> String {
    let (name, port) = match requested.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (requested, None),
    };
    match org.hosts.iter().find(|h| h.eq_ignore_ascii_case(name)) {
        Some(host) => port.map_or_else(|| host.clone(), |port| format!("{host}:{port}")),
        None => org.hosts.first().cloned().unwrap_or_default(),
    }
}

/// What the page says of a password that may not be chosen, and how to choose a better one.
pub(crate) fn password_problem(t: &Texts, problem: &password::PasswordError) -> &'static str {
    match problem {
        password::PasswordError::TooShort => t.password_too_short,
        password::PasswordError::TooLong => t.password_too_long,
        password::PasswordError::Common => t.password_common,
        password::PasswordError::ContainsUsername => t.password_has_username,
        password::PasswordError::Guessable => t.password_guessable,
        _ => t.trouble,
    }
}

fn invalid_link(visit: &Visit) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::notice(
        StatusCode::NOT_FOUND,
        &c,
        c.t.reset_heading,
        c.t.reset_invalid,
        true,
        Some(("/.certgate/forgot", c.t.forgot_heading)),
    )
}

fn valid_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) async fn reset_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Backends { visit, store, .. }: Backends,
) -> Result<Response, PageError> {
    let token = query
        .as_deref()
        .and_then(|q| crate::flow::raw_param(q, "token"))
        .unwrap_or_default()
        .to_owned();
    let live = valid_token(&token)
        && matches!(
            store.peek_once("reset", &token_key(&token)).await,
            Ok(Some(_))
        );
    if !live {
        return Ok(invalid_link(&visit));
    }
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
    Ok(reset_view(&visit, &attempt, &token, None, StatusCode::OK))
}

fn reset_view(
    visit: &Visit,
    attempt: &Attempt,
    token: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    let mut response = pages::html(
        status,
        &ResetPage {
            c: &c,
            csrf: attempt.session.csrf(),
            token,
            error,
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
pub(crate) struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

pub(crate) async fn reset_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Backends { visit, store, db }: Backends,
    Form(form): Form<ResetForm>,
) -> Result<Response, PageError> {
    if !valid_token(&form.token) {
        return Ok(invalid_link(&visit));
    }
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
    let t = visit.texts;
    let refuse = |problem: &str| {
        reset_view(
            &visit,
            &attempt,
            &form.token,
            Some(problem.to_owned()),
            StatusCode::BAD_REQUEST,
        )
    };
    if !attempt.session.csrf_ok(&form.csrf) {
        return Ok(refuse(t.session_expired));
    }
    if form.password != form.repeat {
        return Ok(refuse(t.password_mismatch));
    }
    // Whose link it is, without using it up: a refused password leaves the link working.
    let Ok(Some(value)) = store.peek_once("reset", &token_key(&form.token)).await else {
        return Ok(invalid_link(&visit));
    };
    let value = String::from_utf8_lossy(&value).into_owned();
    let Some((org_id, account_id)) = value.split_once('\n') else {
        return Ok(invalid_link(&visit));
    };
    // Only on a host of the link's organisation, which the mail names: elsewhere the account's
    // old credentials could not be revoked nor the user told.
    let Some(org) = visit.org(org_id).cloned() else {
        return Ok(invalid_link(&visit));
    };
    let account = match db.account(org_id, account_id).await {
        Ok(Some(account)) => account,
        _ => return Ok(invalid_link(&visit)),
    };
    // Guessing how guessable it is takes a few milliseconds: off the async threads.
    let (typed, username, org_name) = (
        form.password.clone(),
        account.username.clone(),
        org.name.clone(),
    );
    let checked =
        tokio::task::spawn_blocking(move || password::check_new(&typed, &username, &[&org_name]))
            .await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(weak)) => return Ok(refuse(password_problem(t, &weak))),
        Err(_) => return Ok(trouble(&visit)),
    }
    // Taken before the password is written: a link works once, even when two tabs race.
    match store.take_once("reset", &token_key(&form.token)).await {
        Ok(Some(taken)) if taken == value.as_bytes() => {}
        _ => return Ok(invalid_link(&visit)),
    }
    let typed = form.password;
    let hashed = tokio::task::spawn_blocking(move || password::hash(&typed)).await;
    let Ok(Ok(hash)) = hashed else {
        return Ok(trouble(&visit));
    };
    // Through the account service, as an administrator's new password: a password that
    // replaces another signs the account out everywhere (whoever knew the old one is out too).
    // The notice goes out below, in the language of this visit.
    let service = certgate_accounts::Accounts {
        events: None,
        ..state.accounts(&db)
    };
    let actor = certgate_accounts::Actor::User {
        account: &account,
        ip: &visit.ip,
    };
    match service.set_password(actor, &org, &account, &hash).await {
        Ok(_) => {}
        Err(certgate_accounts::AccountError::NotRevoked(error)) => {
            tracing::error!(%error, "the old credentials of a reset account could not be revoked");
        }
        Err(_) => return Ok(trouble(&visit)),
    }
    crate::issue::notify(
        &state,
        &visit,
        &org,
        &account,
        t.mail_password_changed_subject,
        &fill(t.mail_password_changed_body, &org.name, "", ""),
    );
    let c = visit.chrome(Some(&org));
    Ok(pages::notice(
        StatusCode::OK,
        &c,
        c.t.reset_heading,
        c.t.reset_done,
        false,
        Some(("/.certgate/login", c.t.sign_in)),
    ))
}
