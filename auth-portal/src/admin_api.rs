//! The organisation admins' JSON API under `/.certgate/api/v1/admin/`: accounts, devices and the
//! audit log for scripts holding an organisation's bearer token (made and revoked by a signed-in
//! admin, see [`tokens`]), and the OpenAPI document describing it at
//! `/.certgate/api/v1/openapi.json`. A token acts for its own organisation only: an id of
//! another organisation answers 404, as one that does not exist. Every error is
//! `{"error": code, "error_description": text}`, made in one place ([`ApiError`]).

pub(crate) mod tokens;

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use certgate_db::{
    Account, AccountInput, ApiScope, ApiToken, Database, Device, Given, InvalidAccount, NewAccount,
};
use certgate_policies::Organisation;
use certgate_store::Store;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::admin::ADMIN_ROLE;
use crate::{PortalState, Visit};
use certgate_accounts::{AccountError, Actor, Standing, Toggle};

/// The OpenAPI document, written by hand beside this file.
const OPENAPI: &str = include_str!("admin_api/openapi.json");
/// Request bodies are small JSON objects.
const BODY_LIMIT: usize = 64 * 1024;
/// Audit entries in one answer, at most and by default.
const AUDIT_LIMIT_MAX: i64 = 10_000;
const AUDIT_LIMIT_DEFAULT: i64 = 1_000;
/// Without `since`, the audit log of the last week.
const AUDIT_DEFAULT_WINDOW: i64 = 7 * 86_400;
/// Ids in paths longer than this are no id of ours.
const MAX_ID_LEN: usize = 64;

/// The API's routes, merged into the portal's router (so the gateway-secret check covers them).
pub(crate) fn router() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/.certgate/api/v1/openapi.json", get(openapi))
        .route(
            "/.certgate/api/v1/admin/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/.certgate/api/v1/admin/tokens/{id}/revoke",
            post(tokens::revoke),
        )
        .route(
            "/.certgate/api/v1/admin/accounts",
            get(list_accounts).post(create_account),
        )
        .route("/.certgate/api/v1/admin/accounts/{id}", get(show_account))
        .route(
            "/.certgate/api/v1/admin/accounts/{id}/disable",
            change_account(Toggle::Disable),
        )
        .route(
            "/.certgate/api/v1/admin/accounts/{id}/enable",
            change_account(Toggle::Enable),
        )
        .route(
            "/.certgate/api/v1/admin/accounts/{id}/reset-mfa",
            change_account(Toggle::ResetMfa),
        )
        .route(
            "/.certgate/api/v1/admin/accounts/{id}/devices",
            get(account_devices),
        )
        .route(
            "/.certgate/api/v1/admin/devices/{id}/revoke",
            post(revoke_device),
        )
        .route("/.certgate/api/v1/admin/audit", get(audit_log))
        .route("/.certgate/api/v1/admin/{*rest}", any(unknown))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Why a request was not served; the one place API errors become responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// Malformed: the message says what is wrong.
    BadRequest(String),
    /// No bearer token, or one that is unknown, expired, revoked or no longer backed by an admin.
    InvalidToken(&'static str),
    /// The token lacks this scope.
    InsufficientScope(ApiScope),
    /// The token is used from outside its source networks.
    SourceNotAllowed,
    /// The session endpoints: nobody is signed in.
    LoginRequired,
    /// The session endpoints: signed in, but not an admin.
    AdminOnly,
    /// The session endpoints: a change without a second factor in the last 15 minutes.
    FreshSecondFactorRequired,
    /// The session endpoints: a change without the session's CSRF token.
    BadCsrfToken,
    NotFound,
    Conflict(String),
    TooLarge,
    /// Too many unknown tokens from the caller's address: wait this long.
    TooManyGuesses(Duration),
    /// The store or the database cannot be reached.
    Unavailable,
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid(message) => ApiError::BadRequest(message),
            AccountError::Conflict(message) | AccountError::NotAllowed(message) => {
                ApiError::Conflict(message)
            }
            AccountError::Gone => ApiError::NotFound,
            AccountError::Unavailable | AccountError::NotRevoked(_) => ApiError::Unavailable,
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", why.clone()),
            ApiError::InvalidToken(why) => {
                (StatusCode::UNAUTHORIZED, "invalid_token", (*why).to_owned())
            }
            ApiError::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this token does not have the scope {scope}"),
            ),
            ApiError::SourceNotAllowed => (
                StatusCode::FORBIDDEN,
                "source_not_allowed",
                "this token is accepted only from its source networks".to_owned(),
            ),
            ApiError::LoginRequired => (
                StatusCode::UNAUTHORIZED,
                "login_required",
                "sign in to the portal as an administrator first".to_owned(),
            ),
            ApiError::AdminOnly => (
                StatusCode::FORBIDDEN,
                "admin_only",
                "only administrators of the organisation may do this".to_owned(),
            ),
            ApiError::FreshSecondFactorRequired => (
                StatusCode::FORBIDDEN,
                "fresh_second_factor_required",
                "sign in again with your second factor (changes need one in the last 15 minutes)"
                    .to_owned(),
            ),
            ApiError::BadCsrfToken => (
                StatusCode::FORBIDDEN,
                "invalid_csrf_token",
                "send the session's CSRF token (from GET tokens) in the X-CSRF-Token header"
                    .to_owned(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource in this organisation".to_owned(),
            ),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, "conflict", why.clone()),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("request bodies are at most {BODY_LIMIT} bytes"),
            ),
            ApiError::TooManyGuesses(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                format!(
                    "too many unknown tokens from this address; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the portal cannot reach its store or database; try again shortly".to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, description) = self.parts();
        let mut response = json_response(
            status,
            &json!({ "error": error, "error_description": description }),
        );
        // RFC 6750 §3: what a bearer client is told about its token.
        let challenge = match &self {
            ApiError::InvalidToken(_) => Some(format!(
                "Bearer realm=\"certgate\", error=\"invalid_token\", error_description=\"{description}\""
            )),
            ApiError::InsufficientScope(scope) => Some(format!(
                "Bearer realm=\"certgate\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let ApiError::TooManyGuesses(wait) = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A JSON answer that no cache keeps.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    crate::pages::secure_headers(&mut response);
    response
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// The id in a path, when it can be one of ours; anything else is "not found".
struct PathId(String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if !id.is_empty() && id.len() <= MAX_ID_LEN => Ok(PathId(id)),
            _ => Err(ApiError::NotFound),
        }
    }
}

/// A JSON body as `T` (at most [`BODY_LIMIT`] bytes); an empty or malformed one is a 400
/// naming the problem.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        json_body(Bytes::from_request(request, state).await).map(JsonBody)
    }
}

fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not the expected JSON: {e}")))
}

/// The scope an endpoint needs, named by a type so that its handler's signature says it:
/// `Caller<scope::AuditRead>`.
trait Scope {
    const SCOPE: ApiScope;
}

mod scope {
    use super::{ApiScope, Scope};

    macro_rules! scopes {
        ($($name:ident),*) => {$(
            pub(super) struct $name;
            impl Scope for $name {
                const SCOPE: ApiScope = ApiScope::$name;
            }
        )*};
    }

    scopes!(AccountsRead, AccountsWrite, DevicesWrite, AuditRead);
}

/// A request made with a valid token of an organisation this host serves, from one of the
/// token's source networks, with the scope `S` the endpoint needs ([`caller`]); any other is
/// refused with the API's error before the handler runs.
struct Caller<S> {
    org: Arc<Organisation>,
    token: ApiToken,
    ip: String,
    db: Database,
    store: Option<Store>,
    scope: PhantomData<S>,
}

impl<S: Scope> FromRequestParts<Arc<PortalState>> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, ApiError> {
        caller(state, &parts.headers).await
    }
}

/// Checks the bearer token of a request for the scope `S`: known, of an organisation of this
/// host, not revoked or expired, its admin still an active admin, the source allowed, the scope
/// granted — in that order, so a stolen token used from elsewhere learns nothing about its
/// scopes.
async fn caller<S: Scope>(state: &PortalState, headers: &HeaderMap) -> Result<Caller<S>, ApiError> {
    let scope = S::SCOPE;
    let visit = Visit::new(state, headers);
    let db = state.backend.database().ok_or(ApiError::Unavailable)?;
    let presented = bearer(headers).ok_or(ApiError::InvalidToken("send a bearer token"))?;
    // A token is counted before it is looked up, and handed back once it is known (even if
    // revoked or expired): only guesses add up. Without the store it is still checked.
    let store = state.backend.store();
    let limit = crate::throttle::limit(state.limits.password_failures_per_ip);
    let guess = match &store {
        Some(store) => store.guess("api-token", &visit.ip, limit).await,
        None => Ok(None),
    }
    .map_err(|wait| {
        state
            .metrics
            .rate_limited
            .with_label_values(&["api_token"])
            .inc();
        ApiError::TooManyGuesses(wait)
    })?;
    if !tokens::well_formed(presented) {
        return Err(ApiError::InvalidToken("not a certgate API token"));
    }
    let hash = tokens::token_hash(presented);
    let token = db
        .api_token_by_hash(&hash)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "API token lookup failed");
            ApiError::Unavailable
        })?
        .filter(|t| bool::from(t.token_hash.as_bytes().ct_eq(hash.as_bytes())))
        .ok_or(ApiError::InvalidToken("unknown token"))?;
    if let Some(guess) = guess {
        guess.was_right().await;
    }
    // A real token refused is the clearest sign of a stolen or forgotten one: logged (with its
    // name, never the token), for whoever watches the logs.
    let refused = |why: &str, error: ApiError| {
        tracing::warn!(org = %token.org, token = %token.name, ip = %visit.ip, why, "API token refused");
        error
    };
    // A token of another organisation, even one served elsewhere by this gateway, is unknown here.
    let Some(org) = visit.org(&token.org).cloned() else {
        return Err(refused(
            "used on another organisation's host",
            ApiError::InvalidToken("unknown token"),
        ));
    };
    let now = state.now();
    if token.revoked_at.is_some() {
        let why = "the token was revoked";
        return Err(refused(why, ApiError::InvalidToken(why)));
    }
    if token.expires_at <= now {
        let why = "the token has expired";
        return Err(refused(why, ApiError::InvalidToken(why)));
    }
    let admin = db
        .account(&org.id, &token.created_by)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    // A disable, MFA reset or password reset of the admin since the token was made ends it too.
    if !admin.is_some_and(|a| {
        !a.disabled
            && a.roles.iter().any(|r| r == ADMIN_ROLE)
            && token.created_at >= a.not_valid_before
    }) {
        let why = "the administrator who made the token no longer is one";
        return Err(refused(why, ApiError::InvalidToken(why)));
    }
    if !tokens::source_allowed(&token.sources, &visit.ip) {
        return Err(refused(
            "used from outside its source networks",
            ApiError::SourceNotAllowed,
        ));
    }
    if !token.scopes.contains(&scope) {
        let why = format!("without the scope {}", scope.as_str());
        return Err(refused(&why, ApiError::InsufficientScope(scope)));
    }
    if let Err(error) = db.record_api_token_use(&org.id, &token.id, now).await {
        tracing::warn!(%error, "API token use not recorded");
    }
    Ok(Caller {
        org,
        token,
        ip: visit.ip,
        db,
        store,
        scope: PhantomData,
    })
}

/// The token of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S> Caller<S> {
    /// The token, as the account service knows its callers.
    fn actor(&self) -> Actor<'_> {
        Actor::Token {
            name: &self.token.name,
            created_by: &self.token.created_by,
            ip: &self.ip,
        }
    }

    /// How many passkeys `account` has.
    async fn passkeys(&self, account: &Account) -> Result<usize, ApiError> {
        self.db
            .passkeys(&self.org.id, &account.id)
            .await
            .map(|p| p.len())
            .map_err(|_| ApiError::Unavailable)
    }

    /// An account of the token's organisation; anything else is "not found".
    async fn account(&self, id: &str) -> Result<Account, ApiError> {
        self.db
            .account(&self.org.id, id)
            .await
            .map_err(|_| ApiError::Unavailable)?
            .ok_or(ApiError::NotFound)
    }

    /// A device of the token's organisation; anything else is "not found".
    async fn device(&self, id: &str) -> Result<Device, ApiError> {
        self.db
            .device(&self.org.id, id)
            .await
            .map_err(|_| ApiError::Unavailable)?
            .ok_or(ApiError::NotFound)
    }
}

/// An account as the API shows it, with how many passkeys it has.
fn account_json(a: &Account, passkeys: usize) -> Value {
    json!({
        "id": a.id,
        "username": a.username,
        "display_name": a.display_name,
        "email": a.email,
        "mobile": a.mobile,
        "kind": a.kind.as_str(),
        "roles": a.roles,
        "mfa_method": a.mfa_method.map(|m| m.as_str()),
        "mfa_enrolled": a.mfa_enrolled,
        "passkeys": passkeys,
        "disabled": a.disabled,
        "last_login": a.last_login,
        "created_at": a.created_at,
    })
}

/// A device as the API shows it; `standing` is the gateway's rule for it
/// (`certgate_accounts::device_standings`), the same the pages and `certgate device list` use.
fn device_json(d: &Device, last_seen: Option<i64>, standing: Standing) -> Value {
    json!({
        "id": d.id,
        "account_id": d.account_id,
        "kind": match d.kind {
            certgate_db::DeviceKind::Browser => "browser",
            certgate_db::DeviceKind::Certificate => "certificate",
        },
        "trust": match d.trust {
            certgate_db::DeviceTrust::Session => "session",
            certgate_db::DeviceTrust::Trusted => "trusted",
            certgate_db::DeviceTrust::Group => "group",
        },
        "created_at": d.created_at,
        "expires_at": d.expires_at,
        "last_seen": last_seen,
        "revoked_at": d.revoked_at,
        "ip": d.ip,
        "state": standing.as_str(),
    })
}

async fn openapi() -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response();
    crate::pages::secure_headers(&mut response);
    response
}

/// Anything else under the prefix: a JSON 404 rather than the portal's page.
async fn unknown() -> Response {
    ApiError::NotFound.into_response()
}

/// `GET accounts` (`accounts:read`).
async fn list_accounts(caller: Caller<scope::AccountsRead>) -> Response {
    let read = async {
        let accounts = caller.db.accounts(&caller.org.id).await?;
        let passkeys = caller.db.passkey_counts(&caller.org.id).await?;
        Ok::<_, certgate_db::DbError>((accounts, passkeys))
    };
    match read.await {
        Ok((accounts, passkeys)) => ok(&json!({
            "accounts": accounts
                .iter()
                .map(|a| account_json(a, passkeys.get(&a.id).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
        })),
        Err(_) => ApiError::Unavailable.into_response(),
    }
}

/// `GET accounts/{id}` (`accounts:read`).
async fn show_account(
    caller: Caller<scope::AccountsRead>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let account = caller.account(&id).await?;
    let passkeys = caller.passkeys(&account).await?;
    Ok(ok(&account_json(&account, passkeys)))
}

/// What `POST accounts` takes. Stricter than the admin pages' form (ASCII user names, no
/// surrounding spaces), so the OpenAPI document can say exactly what is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccountBody {
    username: String,
    display_name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    mobile: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl NewAccountBody {
    /// The account to create, checked as every new account is ([`NewAccount::checked`]),
    /// exactly as sent: the OpenAPI document states the same rules.
    pub(crate) fn checked(&self, org: &str) -> Result<NewAccount, InvalidAccount> {
        let input = AccountInput {
            username: &self.username,
            display_name: &self.display_name,
            email: self.email.as_deref(),
            mobile: self.mobile.as_deref(),
            kind: self.kind.as_deref(),
            roles: &self.roles,
        };
        NewAccount::checked(org, &input, Given::Exact)
    }
}

/// `POST accounts` (`accounts:write`): a new account, and its welcome e-mail.
async fn create_account(
    State(state): State<Arc<PortalState>>,
    caller: Caller<scope::AccountsWrite>,
    JsonBody(body): JsonBody<NewAccountBody>,
) -> Result<Response, ApiError> {
    let new = body
        .checked(&caller.org.id)
        .map_err(|InvalidAccount(message)| ApiError::BadRequest(message))?;
    let account = state
        .accounts(&caller.db)
        .create(caller.actor(), &caller.org, &new)
        .await
        .map_err(|error| match error {
            // What a token may not grant is a bad request, as the document says.
            AccountError::NotAllowed(message) => ApiError::BadRequest(message),
            error => ApiError::from(error),
        })?;
    Ok(json_response(
        StatusCode::CREATED,
        &account_json(&account, 0),
    ))
}

/// `POST accounts/{id}/disable|enable|reset-mfa` (`accounts:write`): the same steps as the admin
/// pages take; the account as it is afterwards.
fn change_account(change: Toggle) -> MethodRouter<Arc<PortalState>> {
    post(
        move |State(state): State<Arc<PortalState>>,
              caller: Caller<scope::AccountsWrite>,
              PathId(id): PathId| async move {
            let account = caller.account(&id).await?;
            let after = state
                .accounts(&caller.db)
                .toggle(caller.actor(), &caller.org, &account, change)
                .await?;
            let passkeys = caller.passkeys(&after).await?;
            Ok::<_, ApiError>(ok(&account_json(&after, passkeys)))
        },
    )
}

/// `GET accounts/{id}/devices` (`accounts:read`): the account's devices, oldest first.
async fn account_devices(
    State(state): State<Arc<PortalState>>,
    caller: Caller<scope::AccountsRead>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let account = caller.account(&id).await?;
    let devices = caller
        .db
        .devices(&caller.org.id, &account.id)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let now = state.now();
    let seen = match &caller.store {
        Some(store) => crate::account::last_seen_of(store, &devices).await,
        None => devices.iter().map(|d| d.last_seen).collect(),
    };
    let username = account.username.clone();
    let standings = certgate_accounts::device_standings(
        &caller.db,
        &caller.org.id,
        &devices,
        |_| Some(username.clone()),
        now,
    )
    .await
    .map_err(|_| ApiError::Unavailable)?;
    let listed: Vec<Value> = devices
        .iter()
        .zip(seen)
        .zip(standings)
        .map(|((d, seen), standing)| device_json(d, seen, standing))
        .collect();
    Ok(ok(&json!({ "devices": listed })))
}

/// `POST devices/{id}/revoke` (`devices:write`): refused on every instance at once.
async fn revoke_device(
    State(state): State<Arc<PortalState>>,
    caller: Caller<scope::DevicesWrite>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let device = caller.device(&id).await?;
    if device.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "the device is revoked already".to_owned(),
        ));
    }
    let owner = caller.account(&device.account_id).await?;
    state
        .accounts(&caller.db)
        .revoke_device(caller.actor(), &caller.org, &owner, &device)
        .await
        .map_err(|error| match error {
            // As for their accounts: a token could otherwise lock every administrator out.
            AccountError::NotAllowed(_) => ApiError::Conflict(
                "administrators' devices are revoked on the admin pages, not with a token"
                    .to_owned(),
            ),
            error => ApiError::from(error),
        })?;
    let now = state.now();
    let after = caller.device(&id).await?;
    let username = owner.username.clone();
    let standing = certgate_accounts::device_standings(
        &caller.db,
        &caller.org.id,
        std::slice::from_ref(&after),
        |_| Some(username.clone()),
        now,
    )
    .await
    .map_err(|_| ApiError::Unavailable)?
    .pop()
    .unwrap_or(Standing::Expired);
    Ok(ok(&device_json(&after, after.last_seen, standing)))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    /// Unix seconds; default a week ago.
    since: Option<i64>,
    limit: Option<i64>,
}

/// `GET audit?since=&limit=` (`audit:read`): the organisation's audit entries from `since` on,
/// oldest first.
async fn audit_log(
    State(state): State<Arc<PortalState>>,
    caller: Caller<scope::AuditRead>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let since = query
        .since
        .unwrap_or_else(|| state.now() - AUDIT_DEFAULT_WINDOW);
    if since < 0 {
        return Err(ApiError::BadRequest(
            "since must be unix seconds, 0 or more".to_owned(),
        ));
    }
    let limit = query.limit.unwrap_or(AUDIT_LIMIT_DEFAULT);
    if !(1..=AUDIT_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {AUDIT_LIMIT_MAX}"
        )));
    }
    let entries = caller
        .db
        .audit_entries(&caller.org.id, since, limit)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "at": e.at, "org": e.org, "actor": e.actor, "action": e.action,
                "subject": e.subject, "ip": e.ip, "detail": e.detail,
            })
        })
        .collect();
    Ok(ok(&json!({ "entries": entries })))
}

/// The client's address as the gateway saw it, IPv4-mapped IPv6 as IPv4.
fn client_ip(text: &str) -> Option<IpAddr> {
    let ip: IpAddr = text.trim().parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests;
