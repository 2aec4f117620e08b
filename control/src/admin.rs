//! The admin API: `/metrics`, `/healthz`, `/readyz` on the admin listener, and the JSON API the
//! CLI uses to change a running instance — over the Unix socket (mode 0600, peer
//! uid checked) or the admin listener with a bearer token read from a 0600 file.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use certgate_certs::Serial;
use certgate_db::{Database, NewRevocation, Revocation, RevocationKind};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::{UnixListener, UnixStream};

use certgate_accounts::{Actor, REVOCATION_RETENTION_SECS};
use certgate_gateway::admin_allowlist::AdminAllowLists;
use certgate_gateway::metrics::Metrics;
use certgate_gateway::revocation::Revocations;
use certgate_store::Clock;

/// What the admin handlers share.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    /// The organisation admins' allow-list layers in force on this instance.
    pub admin_allow: Arc<AdminAllowLists>,
    /// What an admin allow-list entry may be (`[limits]` of the config).
    pub allow_list_limits: certgate_policies::AdminAllowListLimits,
    /// Wrong bearer tokens from one address on the admin listener before it waits
    /// (`limits.password_failures_per_ip`).
    pub token_guesses: certgate_store::RateLimit,
    /// Set once the database opens; until then the API answers 503.
    pub database: tokio::sync::OnceCell<Database>,
    /// Whether the database answered its last probe (every 2 s).
    pub database_up: AtomicBool,
    /// The shared store, once opened; changes are published on it.
    pub store: Arc<tokio::sync::OnceCell<certgate_store::Store>>,
    /// False until the listeners are up and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
    /// To check that an organisation exists.
    pub policies: Arc<certgate_policies::PolicyHandle>,
    /// The secret-encryption keys (authenticator secrets), shared with the portal.
    pub keyring: Arc<parking_lot::RwLock<certgate_certs::SecretKeyring>>,
    pub keyring_path: std::path::PathBuf,
    /// Told about account changes (to send the user a notice); set when the portal starts.
    pub events: std::sync::OnceLock<Arc<dyn certgate_accounts::AccountEvents>>,
    /// Set by the portal beside the gateway once it listens (and `events` is set); `/readyz`
    /// says 503 until then.
    pub portal_serving: AtomicBool,
    pub clock: Arc<dyn Clock>,
}

impl AdminState {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix_secs()
    }

    pub(crate) fn database(&self) -> Result<&Database, AdminError> {
        self.database.get().ok_or(AdminError::Starting)
    }

    /// The database once it has opened.
    pub fn opened_database(&self) -> Option<&Database> {
        self.database.get()
    }

    /// Records a revocation durably, applies it here and publishes it to every instance;
    /// `reason_label` is the `revocations_total` label.
    pub async fn revoke(&self, new: &NewRevocation, reason_label: &str) -> Result<(), AdminError> {
        record_revocation(self, new, reason_label).await.map(drop)
    }
}

#[async_trait::async_trait]
impl certgate_accounts::Revoke for AdminState {
    async fn revoke(
        &self,
        revocation: &NewRevocation,
        label: &'static str,
    ) -> Result<(), certgate_accounts::AccountError> {
        AdminState::revoke(self, revocation, label)
            .await
            .map_err(|error| certgate_accounts::AccountError::NotRevoked(format!("{error:?}")))
    }
}

/// The API's one error type: logged in full, answered with a plain message.
#[derive(Debug)]
pub enum AdminError {
    BadRequest(String),
    /// Input with several problems, each named (every bad line of an allow list).
    Invalid {
        message: String,
        errors: Vec<String>,
    },
    NotFound(String),
    Conflict(String),
    Unauthorized,
    /// Too many wrong tokens from the caller's address: wait this long.
    TooManyGuesses(std::time::Duration),
    /// The database has not opened yet (the instance just started): worth retrying.
    Starting,
    /// The database does not answer: nothing was done.
    Unavailable,
    Internal(String),
}

impl From<certgate_db::DbError> for AdminError {
    fn from(error: certgate_db::DbError) -> Self {
        if error.is_unreachable() {
            tracing::error!(%error, "the database is unreachable");
            AdminError::Unavailable
        } else {
            AdminError::Internal(error.to_string())
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AdminError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            AdminError::Invalid { message, errors } => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({ "error": message, "errors": errors })),
                )
                    .into_response()
            }
            AdminError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            AdminError::Conflict(message) => (StatusCode::CONFLICT, message),
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token".to_owned(),
            ),
            AdminError::TooManyGuesses(wait) => {
                let seconds = wait.as_secs().max(1);
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, seconds.to_string())],
                    Json(serde_json::json!({
                        "error": format!("too many wrong admin tokens from this address; try again in {seconds} s")
                    })),
                )
                    .into_response();
            }
            AdminError::Starting => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "1")],
                    Json(serde_json::json!({
                        "error": "the instance is still opening its database; try again shortly"
                    })),
                )
                    .into_response();
            }
            AdminError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unreachable, so nothing was changed; try again once it is back \
                 (the server log names it)"
                    .to_owned(),
            ),
            AdminError::Internal(detail) => {
                tracing::error!(%detail, "admin request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// Routes served on the admin TCP listener. The API there needs the bearer token; serve it with
/// `ConnectInfo<SocketAddr>`, by which wrong tokens are counted.
pub fn listener_router(state: Arc<AdminState>, token: Option<Arc<String>>) -> Router {
    let guarded = Arc::clone(&state);
    let api = api_router(Arc::clone(&state)).route_layer(axum::middleware::from_fn(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
              headers: HeaderMap,
              request: axum::extract::Request,
              next: axum::middleware::Next| {
            let token = token.clone();
            let state = Arc::clone(&guarded);
            async move {
                let Some(token) = token else {
                    return Err(AdminError::Unauthorized);
                };
                // Counted before it is checked, so a burst stops at the limit. Without the
                // store (not open yet, or unreachable) the token is still checked: an operator
                // must be able to revoke during a store outage.
                let ip = peer.ip().to_string();
                let guess = match state.store.get() {
                    Some(store) => store.guess("admin-token", &ip, state.token_guesses).await,
                    None => Ok(None),
                }
                .map_err(|wait| {
                    state
                        .metrics
                        .rate_limited
                        .with_label_values(&["admin_token"])
                        .inc();
                    AdminError::TooManyGuesses(wait)
                })?;
                if !bearer_matches(&headers, &token) {
                    tracing::warn!(peer = %ip, "wrong admin token");
                    return Err(AdminError::Unauthorized);
                }
                if let Some(guess) = guess {
                    guess.was_right().await;
                }
                Ok(next.run(request).await)
            }
        },
    ));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(api)
}

/// Routes served on the Unix socket, where the peer check already authenticated the caller.
pub fn socket_router(state: Arc<AdminState>) -> Router {
    api_router(state)
}

fn api_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/v1/revocations", post(revoke).get(list_revocations))
        .route("/api/v1/keys/rotate", post(rotate_keys))
        .merge(crate::users::router())
        .merge(crate::allowlist::router())
        .with_state(state)
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !token.is_empty() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render_for(
            state
                .policies
                .load()
                .organisations()
                .map(|org| org.id.as_str()),
        ),
    )
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if !(state.ready.load(Ordering::Relaxed) && state.portal_serving.load(Ordering::Relaxed)) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned());
    }
    // An outage of what every instance shares must not drain every instance at once: admission
    // by network and credential goes on, so still ready, but say what does not work.
    let mut problems = Vec::new();
    if !state.database_up.load(Ordering::Relaxed) {
        problems.push("the database is unreachable; sign-ins and admin changes fail");
    }
    if state.store.get().is_some_and(|store| !store.is_connected()) {
        problems.push("the shared store is unreachable; admitting with the last known revocations");
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::OK,
            format!("degraded: {}\n", problems.join("; ")),
        )
    }
}

/// `POST /api/v1/revocations`: exactly one of `serial`, `device` (with `org`) or `user`
/// (with `org`: every credential of the account issued until now).
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RevocationView {
    pub org: String,
    pub kind: String,
    pub subject: String,
    pub reason: String,
    pub revoked_at: i64,
    pub drop_after: i64,
}

impl From<&NewRevocation> for RevocationView {
    fn from(r: &NewRevocation) -> Self {
        RevocationView {
            org: r.org.clone(),
            kind: r.kind.as_str().to_owned(),
            subject: r.subject.clone(),
            reason: r.reason.clone(),
            revoked_at: r.revoked_at,
            drop_after: r.drop_after,
        }
    }
}

impl From<&Revocation> for RevocationView {
    fn from(r: &Revocation) -> Self {
        RevocationView {
            org: r.org.clone(),
            kind: r.kind.as_str().to_owned(),
            subject: r.subject.clone(),
            reason: r.reason.clone(),
            revoked_at: r.revoked_at,
            drop_after: r.drop_after,
        }
    }
}

impl RevokeRequest {
    fn into_revocation(self, now: i64) -> Result<NewRevocation, AdminError> {
        let org = self.org.unwrap_or_default();
        let (kind, subject) = match (self.serial, self.device, self.user) {
            (Some(serial), None, None) => {
                let serial = Serial::from_str(&serial).map_err(|_| {
                    AdminError::BadRequest(format!("{serial:?} is not a certificate serial (hex)"))
                })?;
                (RevocationKind::Serial, serial.to_string())
            }
            (None, Some(device), None) if !org.is_empty() => {
                // Device ids are lower case: one pasted in capitals or with a space would be
                // revoked as typed and match nothing.
                let device = device.trim().to_ascii_lowercase();
                certgate_certs::claims::validate_device_id(&device).map_err(|error| {
                    AdminError::BadRequest(format!("{device:?} is not a device id: {error}"))
                })?;
                (RevocationKind::Device, device)
            }
            (None, None, Some(user)) if !org.is_empty() => {
                (RevocationKind::Account, user.trim().to_lowercase())
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(AdminError::BadRequest(
                    "a device or user revocation needs org".into(),
                ))
            }
            _ => {
                return Err(AdminError::BadRequest(
                    "give exactly one of serial, device or user".into(),
                ))
            }
        };
        if subject.is_empty() || subject.len() > 256 {
            return Err(AdminError::BadRequest("empty or overlong subject".into()));
        }
        let reason = self.reason.unwrap_or_else(|| "admin".into());
        if reason.len() > 200 {
            return Err(AdminError::BadRequest(
                "reason is longer than 200 characters".into(),
            ));
        }
        Ok(NewRevocation {
            org,
            kind,
            subject,
            reason,
            revoked_at: now,
            drop_after: now + REVOCATION_RETENTION_SECS,
        })
    }
}

/// Durable first, then live: the record is in SQL before any gateway refuses the credential.
///
/// A device or user with a record is revoked through the account service, as on the admin pages
/// (the portal refuses it too, the audit log says so, and a user named by e-mail address is
/// revoked under the user name its credentials carry). Names with no record are still revoked as
/// typed: `certgate ca issue-client` certificates carry any name and device id.
async fn revoke(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<RevokeRequest>,
) -> Result<Json<RevocationView>, AdminError> {
    let now = state.now();
    let new = request.into_revocation(now)?;
    let made = match new.kind {
        RevocationKind::Serial => None,
        RevocationKind::Device => revoke_known_device(&state, &new).await?,
        RevocationKind::Account => revoke_known_account(&state, &new).await?,
    };
    let view = match made {
        Some(made) => RevocationView::from(&made),
        None => RevocationView::from(&record_revocation(&state, &new, "admin").await?),
    };
    Ok(Json(view))
}

/// The device's revocation through the account service, when the device has a record.
async fn revoke_known_device(
    state: &AdminState,
    new: &NewRevocation,
) -> Result<Option<NewRevocation>, AdminError> {
    let org = crate::users::known_org(state, &new.org)?;
    let db = state.database()?;
    let Some(device) = db.device(&new.org, &new.subject).await? else {
        return Ok(None);
    };
    let Some(account) = db.account(&new.org, &device.account_id).await? else {
        return Ok(None);
    };
    let made = crate::users::service(state)?
        .revoke_device_because(Actor::Operator, &org, &account, &device, &new.reason)
        .await?;
    Ok(Some(made))
}

/// Every credential of the account through the account service, when the account has a record.
async fn revoke_known_account(
    state: &AdminState,
    new: &NewRevocation,
) -> Result<Option<NewRevocation>, AdminError> {
    let org = crate::users::known_org(state, &new.org)?;
    let Some(account) = state
        .database()?
        .find_account(&new.org, &new.subject)
        .await?
    else {
        return Ok(None);
    };
    if account.username != new.subject {
        // The name as typed too, which an operator's certificate may carry.
        record_revocation(state, new, "admin").await?;
    }
    let made = crate::users::service(state)?
        .revoke_all_devices_because(Actor::Operator, &org, &account, &new.reason)
        .await?;
    Ok(Some(made))
}

/// Records a revocation durably, applies it here and publishes it to every instance.
pub(crate) async fn record_revocation(
    state: &AdminState,
    new: &NewRevocation,
    reason_label: &str,
) -> Result<Revocation, AdminError> {
    let record = state
        .database()?
        .record_revocation(new)
        .await
        .map_err(AdminError::from)?;
    state.revocations.apply(&record);
    // Other instances learn it from the feed; if publishing fails they reload it from SQL when
    // their feed reconnects, and at the latest within a minute.
    if let Some(store) = state.store.get() {
        if let Err(error) = store.publish(&crate::feed::change_of(&record)).await {
            state
                .metrics
                .store_errors
                .with_label_values(&[store.backend_name()])
                .inc();
            tracing::warn!(%error, "revocation recorded, but not published to other instances yet");
        }
    }
    state
        .metrics
        .revocations
        .with_label_values(&[record.org.as_str(), reason_label])
        .inc();
    tracing::info!(org = %record.org, kind = record.kind.as_str(), subject = %record.subject, "credential revoked");
    Ok(record)
}

/// `POST /api/v1/keys/rotate`: a new secret-encryption key, and every authenticator secret
/// sealed again with it. Other instances pick the new key up from the data directory the first
/// time they meet a secret sealed with it.
async fn rotate_keys(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let db = state.database()?;
    {
        let mut keyring = state.keyring.write();
        keyring
            .rotate(&state.keyring_path)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
    }
    let accounts = db.accounts_with_totp().await.map_err(AdminError::from)?;
    let (mut resealed, mut failed) = (0u64, 0u64);
    for account in accounts {
        let Some(before) = account.totp_secret.as_deref() else {
            continue;
        };
        let after = {
            let keyring = state.keyring.read();
            if keyring.is_current(before) {
                continue;
            }
            keyring
                .open(&account.id, before)
                .and_then(|plain| keyring.seal(&account.id, &plain))
        };
        match after {
            Ok(after) => match db
                .replace_totp_secret(&account.org, &account.id, before, &after)
                .await
            {
                Ok(true) => resealed += 1,
                Ok(false) => {}
                Err(e) => return Err(AdminError::from(e)),
            },
            Err(error) => {
                failed += 1;
                tracing::error!(org = %account.org, account = %account.username, %error, "an authenticator secret cannot be opened; reset this user's MFA");
            }
        }
    }
    tracing::info!(resealed, failed, "secret-encryption key rotated");
    Ok(Json(
        serde_json::json!({ "resealed": resealed, "failed": failed }),
    ))
}

async fn list_revocations(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<RevocationView>>, AdminError> {
    let records = state
        .database()?
        .live_revocations(state.now())
        .await
        .map_err(AdminError::from)?;
    Ok(Json(records.iter().map(RevocationView::from).collect()))
}

/// Why the admin token file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: must be readable by its owner only (chmod 600)", path.display())]
    TooOpen { path: std::path::PathBuf },
    #[error("{}: token must be at least 16 characters", path.display())]
    TooShort { path: std::path::PathBuf },
}

/// Reads the admin token; the file must not be readable by group or others.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let unreadable = |source| TokenFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(TokenFileError::TooOpen {
            path: path.to_owned(),
        });
    }
    let token = std::fs::read_to_string(path).map_err(unreadable)?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(TokenFileError::TooShort {
            path: path.to_owned(),
        });
    }
    Ok(token)
}

/// A Unix socket listener that serves only processes of the same user (or root).
pub struct PeerCheckedListener {
    inner: UnixListener,
    uid: u32,
}

/// The admin socket, bound before the runtime starts so that a socket that cannot be made stops
/// `serve` with the reason instead of leaving an instance nobody can revoke on.
pub struct BoundSocket(std::os::unix::net::UnixListener);

impl BoundSocket {
    /// Binds `path` (replacing a stale socket) with mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            // A socket left by a previous run; a live instance would still answer on it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running instance", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let inner = std::os::unix::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        inner.set_nonblocking(true)?;
        Ok(BoundSocket(inner))
    }
}

impl PeerCheckedListener {
    /// The bound socket, served on the current runtime.
    pub fn serve(socket: BoundSocket) -> std::io::Result<Self> {
        Ok(PeerCheckedListener {
            inner: UnixListener::from_std(socket.0)?,
            uid: nix::unistd::geteuid().as_raw(),
        })
    }
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = UnixStream;
    type Addr = ();

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(cred) if cred.uid() == self.uid || cred.uid() == 0 => return (stream, ()),
                    Ok(cred) => tracing::warn!(
                        uid = cred.uid(),
                        "admin socket: refused a process of another user"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket: cannot read peer credentials")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(())
    }
}
