//! Personal certificates for apps and agents, through a device authorization flow in the shape of
//! OAuth 2.0 RFC 8628: the device asks, the user approves in a browser after signing in, the
//! device sends a CSR (its key never leaves it) and gets a certificate; later it renews over
//! mutual TLS, which the gateway vouches for.
//!
//! JSON API under `/.certgate/api/v1/device/`: `authorize`, `token`, `certificate`, `renew`.
//! Every error is `{"error": code, "error_description": text}` ([`DeviceApiError`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use certgate_certs::{CertificateRequest, DeviceId, DeviceSubject, MfaStatus};
use certgate_db::{Account, AccountKind, AuditEntry, Database, Device, DeviceKind, DeviceTrust};
use certgate_device_flow::{
    AuthorizeRequest, CsrRequest, DeviceAuthorization, EnrolmentToken, ErrorBody,
    IssuedCertificate, RenewalKind, Secret, TokenRequest,
};
use certgate_policies::Organisation;
use certgate_store::{RateLimit, Store};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::extract::{Back, Backends, InSession, PageError, Posted};
use crate::flow::{attempt_or_start, load_attempt, save};
use crate::i18n::fill;
use crate::pages::{self, ApprovePage, DeviceCodePage};
use crate::session;
use crate::signin::{LoginSession, SignedIn};
use crate::{PortalState, Visit};

/// The polling interval clients are told; faster polls get `slow_down`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long an approved device has to send its CSR.
pub const ENROLMENT_LIFETIME: Duration = Duration::from_secs(300);
/// Consonants only: no words, no 0/O or 1/I look-alikes.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Requests kept after they expire, to tell `expired_token` from an unknown code.
const TOMBSTONE: Duration = Duration::from_secs(600);
/// An approval leaves the device at least this long to collect it (a few polls), even when the
/// code expires sooner; after that the approval lapses like the code.
const PICKUP: Duration = Duration::from_secs(30);

/// A refusal of the device API.
pub(crate) struct DeviceApiError {
    status: StatusCode,
    /// The OAuth-style `error` code.
    error: &'static str,
    description: String,
}

impl IntoResponse for DeviceApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_owned(),
            error_description: self.description,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    }
}

impl DeviceApiError {
    fn new(status: StatusCode, error: &'static str, description: &str) -> Self {
        DeviceApiError {
            status,
            error,
            description: description.to_owned(),
        }
    }

    fn unavailable() -> Self {
        DeviceApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the portal cannot reach its store or database; try again shortly",
        )
    }
}

fn api_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    DeviceApiError::new(status, error, description).into_response()
}

fn api_ok(body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn unavailable() -> Response {
    DeviceApiError::unavailable().into_response()
}

/// Bidirectional overrides and zero-width characters, which could make a device name on the
/// approval page read as something else.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// 256 random bits, URL-safe.
pub(crate) fn random_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub(crate) fn hashed(secret: &str) -> String {
    hex::encode(digest(&SHA256, secret.as_bytes()).as_ref())
}

/// `ABCD-EFGH` from 8 random consonants (about 34 bits).
fn new_user_code() -> String {
    let chars: String = (0..8)
        .map(|_| char::from(USER_CODE_ALPHABET[rand::random_range(0..USER_CODE_ALPHABET.len())]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// A typed user code as stored: upper case, only the alphabet's letters.
fn normal_user_code(typed: &str) -> String {
    typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .take(16)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Pending,
    Approved,
    Denied,
}

/// A device request as kept in the store (under the hash of its device code).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceRequest {
    /// The organisations of the host it was made on (one approves it).
    orgs: Vec<String>,
    user_code: String,
    name: String,
    ip: String,
    requested_at: i64,
    expires_at: i64,
    trust_requested: bool,
    status: Status,
    org: Option<String>,
    account: Option<String>,
    trust: bool,
    /// When the approving user signed in (an account reset after it voids the approval).
    #[serde(default)]
    signed_in_at: i64,
}

impl DeviceRequest {
    fn expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// Records the decision of `signed_in`'s user; an approval leaves the device [`PICKUP`] to
    /// collect it.
    fn decide(&mut self, approve: bool, org: &str, signed_in: &SignedIn, trust: bool, now: i64) {
        self.status = if approve {
            Status::Approved
        } else {
            Status::Denied
        };
        self.org = Some(org.to_owned());
        self.account = Some(signed_in.account.clone());
        self.trust = approve && trust && signed_in.mfa == MfaStatus::Yes;
        self.signed_in_at = signed_in.at;
        if approve {
            self.expires_at = self.expires_at.max(now + PICKUP.as_secs() as i64);
        }
    }
}

/// What an approved device may enrol (under the hash of its enrolment token).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Enrolment {
    org: String,
    account: String,
    trust: bool,
    name: String,
    ip: String,
    signed_in_at: i64,
}

async fn put_request(store: &Store, key: &str, request: &DeviceRequest, now: i64) -> bool {
    let ttl = (request.expires_at - now).max(1) as u64 + TOMBSTONE.as_secs();
    match serde_json::to_vec(request) {
        Ok(bytes) => store
            .put_once("device-request", key, &bytes, Duration::from_secs(ttl))
            .await
            .is_ok(),
        Err(_) => false,
    }
}

async fn get_request(store: &Store, key: &str) -> Result<Option<DeviceRequest>, ()> {
    match store.peek_once("device-request", key).await {
        Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
        Ok(None) => Ok(None),
        Err(_) => Err(()),
    }
}

/// The organisations of this host that have the device flow on.
fn flow_orgs(visit: &Visit) -> Vec<Arc<Organisation>> {
    visit
        .orgs
        .iter()
        .filter(|o| o.mfa.device_flow)
        .cloned()
        .collect()
}

fn flow_off() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "device_flow_disabled",
        "this organisation does not enrol devices this way",
    )
}

/// `POST device/authorize`.
pub(crate) async fn authorize(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let orgs = flow_orgs(&visit);
    if orgs.is_empty() {
        return flow_off();
    }
    let Some(store) = state.backend.store() else {
        return unavailable();
    };
    let body: AuthorizeRequest = if body.is_empty() {
        AuthorizeRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(_) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body must be JSON: {\"name\": \"…\", \"trust\": true|false}",
                )
            }
        }
    };
    let limit = RateLimit {
        limit: 20,
        window: Duration::from_secs(15 * 60),
    };
    match store
        .hit(
            "device-authorize",
            &certgate_store::address_key(&visit.ip),
            limit,
        )
        .await
    {
        Ok(hit) if !hit.allowed => {
            state
                .metrics
                .rate_limited
                .with_label_values(&["device_authorize"])
                .inc();
            return api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many device requests from this address; wait a while",
            );
        }
        Ok(_) => {}
        Err(_) => return unavailable(),
    }
    let name: String = body
        .name
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .take(64)
        .collect();
    let now = state.now();
    let lifetime = state.limits.device_code_lifetime;
    let device_code = random_secret();
    let user_code = new_user_code();
    let request = DeviceRequest {
        orgs: orgs.iter().map(|o| o.id.clone()).collect(),
        user_code: user_code.clone(),
        name: if name.trim().is_empty() {
            "?".into()
        } else {
            name
        },
        ip: visit.ip.clone(),
        requested_at: now,
        expires_at: now + lifetime.as_secs() as i64,
        trust_requested: body.trust,
        status: Status::Pending,
        org: None,
        account: None,
        trust: false,
        signed_in_at: 0,
    };
    let key = hashed(&device_code);
    let by_user_code = store
        .put_once(
            "device-user-code",
            &normal_user_code(&user_code),
            key.as_bytes(),
            lifetime,
        )
        .await;
    if by_user_code.is_err() || !put_request(&store, &key, &request, now).await {
        return unavailable();
    }
    api_ok(DeviceAuthorization {
        device_code: Secret(device_code),
        user_code,
        verification_uri: format!("https://{}/.certgate/device", visit.host),
        expires_in: lifetime.as_secs(),
        interval: POLL_INTERVAL.as_secs(),
    })
}

/// `POST device/token`: the device polls.
pub(crate) async fn token(
    State(state): State<Arc<PortalState>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(TokenRequest {
        device_code: Secret(device_code),
    }) = serde_json::from_slice(&body)
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be JSON: {\"device_code\": \"…\"}",
        );
    };
    let Some(store) = state.backend.store() else {
        return unavailable();
    };
    if device_code.is_empty() || device_code.len() > 128 {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown device code",
        );
    }
    let key = hashed(&device_code);
    let poll = RateLimit {
        limit: 1,
        window: POLL_INTERVAL - Duration::from_millis(500),
    };
    match store.hit("device-poll", &key, poll).await {
        Ok(hit) if !hit.allowed => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "slow_down",
                "polling too fast; add 5 seconds to the interval",
            )
        }
        Ok(_) => {}
        Err(_) => return unavailable(),
    }
    let now = state.now();
    let request = match get_request(&store, &key).await {
        Ok(Some(request)) => request,
        Ok(None) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "unknown device code",
            )
        }
        Err(()) => return unavailable(),
    };
    match request.status {
        _ if request.expired(now) => api_error(
            StatusCode::BAD_REQUEST,
            "expired_token",
            "the code expired before it was approved and collected; start again",
        ),
        Status::Pending => api_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "waiting for the user to approve",
        ),
        Status::Denied => api_error(
            StatusCode::BAD_REQUEST,
            "access_denied",
            "the request was denied in the browser",
        ),
        Status::Approved => {
            // Taken, so an approval is used once.
            if !matches!(store.take_once("device-request", &key).await, Ok(Some(_))) {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown device code",
                );
            }
            let (Some(org), Some(account)) = (request.org, request.account) else {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown device code",
                );
            };
            let enrolment = Enrolment {
                org,
                account,
                trust: request.trust,
                name: request.name,
                ip: request.ip,
                signed_in_at: request.signed_in_at,
            };
            let token = random_secret();
            let stored = match serde_json::to_vec(&enrolment) {
                Ok(bytes) => store
                    .put_once(
                        "device-enrolment",
                        &hashed(&token),
                        &bytes,
                        ENROLMENT_LIFETIME,
                    )
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if !stored {
                return unavailable();
            }
            api_ok(EnrolmentToken {
                enrolment_token: Secret(token),
                expires_in: ENROLMENT_LIFETIME.as_secs(),
            })
        }
    }
}

pub(crate) fn parse_csr(body: &[u8]) -> Result<CertificateRequest, DeviceApiError> {
    let Ok(body) = serde_json::from_slice::<CsrRequest>(body) else {
        return Err(DeviceApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be JSON: {\"csr\": \"-----BEGIN CERTIFICATE REQUEST-----…\"}",
        ));
    };
    CertificateRequest::from_pem(&body.csr)
        .map_err(|e| DeviceApiError::new(StatusCode::BAD_REQUEST, "invalid_csr", &e.to_string()))
}

/// The lifetime rule of a certificate device: its trust class and how long it lives.
fn lifetime(org: &Organisation, account: &Account, trust: bool) -> (DeviceTrust, Duration) {
    if account.kind == AccountKind::Group {
        (DeviceTrust::Group, org.mfa.group_idle_timeout)
    } else if trust && !org.mfa.trust_device_for.is_zero() {
        (DeviceTrust::Trusted, org.mfa.trust_device_for)
    } else {
        (DeviceTrust::Session, org.mfa.session_lifetime)
    }
}

fn trust_label(trust: DeviceTrust) -> &'static str {
    match trust {
        DeviceTrust::Session => "personal",
        DeviceTrust::Trusted => "trusted",
        DeviceTrust::Group => "group",
    }
}

fn offset(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Signs the CSR's key for `account`'s device `device_id`, to end at `not_after`.
fn sign(
    state: &PortalState,
    org: &Organisation,
    account: &Account,
    device_id: &str,
    request: &CertificateRequest,
    not_after: i64,
    now: i64,
) -> Result<IssuedCertificate, DeviceApiError> {
    let subject = DeviceSubject {
        org: org.id.clone(),
        user: account.username.clone(),
        device_id: device_id.to_owned(),
    };
    // One reading of the CA for the certificate and its chain (a rollover may come between).
    let ca = state.ca.load();
    let issued = ca
        .issue_for_request(&subject, request, offset(not_after), offset(now))
        .map_err(|error| {
            tracing::error!(%error, org = %org.id, "a device certificate could not be issued");
            DeviceApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the certificate could not be issued",
            )
        })?;
    let leaf = issued
        .cert_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or_default();
    Ok(IssuedCertificate {
        certificate: leaf.to_owned(),
        chain: ca.chain_pem(),
        device_id: device_id.to_owned(),
        serial: issued.serial.to_string(),
        not_after: issued.not_after.unix_timestamp(),
        renewal: if account.kind == AccountKind::Group {
            RenewalKind::Group
        } else {
            RenewalKind::Personal
        },
    })
}

async fn account_of(db: &Database, org: &str, id: &str) -> Result<Account, DeviceApiError> {
    match db.account(org, id).await {
        Ok(Some(account)) if !account.disabled => Ok(account),
        Ok(_) => Err(DeviceApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "the account cannot sign in",
        )),
        Err(_) => Err(DeviceApiError::unavailable()),
    }
}

/// `POST device/certificate`: an approved device sends its CSR.
pub(crate) async fn certificate(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let (Some(store), Some(db)) = (state.backend.store(), state.backend.database()) else {
        return unavailable();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let invalid_token = || {
        api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "no approved enrolment for this token (it is used once and lives 5 minutes)",
        )
    };
    if token.is_empty() || token.len() > 128 {
        return invalid_token();
    }
    let key = hashed(token);
    if !matches!(store.peek_once("device-enrolment", &key).await, Ok(Some(_))) {
        return invalid_token();
    }
    // The CSR is checked before the token is spent, so a bad one can be sent again.
    let request = match parse_csr(&body) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let enrolment: Enrolment = match store.take_once("device-enrolment", &key).await {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(enrolment) => enrolment,
            Err(_) => return invalid_token(),
        },
        Ok(None) => return invalid_token(),
        Err(_) => return unavailable(),
    };
    let Some(org) = state.policies.load().organisation(&enrolment.org).cloned() else {
        return invalid_token();
    };
    let account = match account_of(&db, &org.id, &enrolment.account).await {
        Ok(account) => account,
        Err(refused) => return refused.into_response(),
    };
    if account.not_valid_before > enrolment.signed_in_at {
        return api_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "the account was reset after this device was approved; start again",
        );
    }
    let now = state.now();
    let (trust, life) = lifetime(&org, &account, enrolment.trust);
    let not_after = now.saturating_add(life.as_secs() as i64);
    let device_id = DeviceId::generate().into_string();
    let body = match sign(&state, &org, &account, &device_id, &request, not_after, now) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let device = Device {
        org: org.id.clone(),
        id: device_id.clone(),
        account_id: account.id.clone(),
        kind: DeviceKind::Certificate,
        trust,
        created_at: now,
        expires_at: not_after,
        last_seen: Some(now),
        revoked_at: None,
        ip: enrolment.ip.clone(),
        // The agent names its device itself; no browser issued this.
        browser: String::new(),
        system: String::new(),
    };
    if db.record_device(&device).await.is_err() {
        return unavailable();
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: org.id.clone(),
            at: now,
            actor: account.username.clone(),
            action: certgate_db::AuditAction::DeviceEnrolled.as_str().into(),
            subject: device_id.clone(),
            ip: visit.ip.clone(),
            detail: format!("name={} trust={}", enrolment.name, trust_label(trust)),
        })
        .await;
    state
        .metrics
        .credentials_issued
        .with_label_values(&[org.id.as_str(), "certificate", trust_label(trust)])
        .inc();
    tracing::info!(org = %org.id, account = %account.username, device = %device_id, "device certificate issued");
    if trust != DeviceTrust::Session {
        // The user hears of every device that can get in for days: a phished approval shows.
        let t = visit.texts;
        crate::issue::notify(
            &state,
            &visit,
            &org,
            &account,
            t.mail_trusted_subject,
            &fill(
                t.mail_trusted_body,
                &org.name,
                &format!("\u{201c}{}\u{201d} {}", enrolment.name, t.duration(life)),
                &enrolment.ip,
            ),
        );
    }
    api_ok(body)
}

/// The gateway's word on the presented certificate (`X-Certgate-Client-Cert`), believed because
/// the middleware checked the gateway secret.
struct Presented {
    status: String,
    org: String,
    device: String,
}

fn presented(headers: &HeaderMap) -> Option<Presented> {
    let value = headers.get("x-certgate-client-cert")?.to_str().ok()?;
    let field = |name: &str| {
        value
            .split(';')
            .filter_map(|part| part.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    Some(Presented {
        status: field("status")?,
        org: field("org")?,
        device: field("device")?,
    })
}

/// `POST device/renew` over mutual TLS: a new certificate for the same device (re-keyed).
/// Personal devices never go past their trust window; group devices renew while the gateway
/// sees them used.
pub(crate) async fn renew(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refused = |why: &str| api_error(StatusCode::FORBIDDEN, "renewal_refused", why);
    let Some(cert) = presented(&headers) else {
        return refused("present the device's current certificate (mutual TLS) to renew it");
    };
    match cert.status.as_str() {
        "valid" => {}
        "expired" => {
            return refused("the certificate has expired; sign in again with certgate login")
        }
        "revoked" => return refused("the certificate was revoked"),
        _ => return refused("the certificate was not issued by this certgate"),
    }
    let (Some(store), Some(db)) = (state.backend.store(), state.backend.database()) else {
        return unavailable();
    };
    let request = match parse_csr(&body) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let Some(org) = state.policies.load().organisation(&cert.org).cloned() else {
        return refused("the certificate's organisation is not served here");
    };
    let device = match db.device(&org.id, &cert.device).await {
        Ok(Some(device)) if device.kind == DeviceKind::Certificate => device,
        Ok(_) => return refused("no such device"),
        Err(_) => return unavailable(),
    };
    if device.revoked_at.is_some() {
        return refused("the device was revoked");
    }
    let account = match account_of(&db, &org.id, &device.account_id).await {
        Ok(account) => account,
        Err(refused) => return refused.into_response(),
    };
    if account.not_valid_before > device.created_at {
        return refused("the account's credentials were reset; sign in again with certgate login");
    }
    let now = state.now();
    let mut last_use = device.last_seen.unwrap_or(device.created_at);
    let not_after = if device.trust == DeviceTrust::Group {
        let idle = org.mfa.group_idle_timeout.as_secs() as i64;
        let seen = store
            .last_seen(&org.id, &device.id)
            .await
            .ok()
            .flatten()
            .into_iter()
            .chain(device.last_seen)
            .max()
            .unwrap_or(device.created_at);
        if now - seen >= idle {
            return refused(
                "the tablet was not used for longer than the idle timeout; sign in again",
            );
        }
        last_use = seen;
        // Idle counts from the last use, not from this renewal.
        seen.saturating_add(idle)
    } else {
        // A personal device's window never moves: re-keying only.
        if now >= device.expires_at {
            return refused("the trust window has ended; sign in again with certgate login");
        }
        device.expires_at
    };
    let body = match sign(&state, &org, &account, &device.id, &request, not_after, now) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    if db
        .set_device_expiry(&org.id, &device.id, not_after, last_use)
        .await
        .is_err()
    {
        return unavailable();
    }
    let _ = db
        .append_audit(&AuditEntry {
            org: org.id.clone(),
            at: now,
            actor: account.username.clone(),
            action: certgate_db::AuditAction::DeviceRenewed.as_str().into(),
            subject: device.id.clone(),
            ip: String::new(),
            detail: format!("not_after={not_after}"),
        })
        .await;
    api_ok(body)
}

// ---------------------------------------------------------------------------------------------
// The pages: enter the code, then approve or deny.

const ENTER: &str = "/.certgate/device";
const APPROVE: &str = "/.certgate/device/approve";
/// Approving needs a fresh sign-in, and comes back here.
const SIGN_IN_TO_APPROVE: &str = "/.certgate/login?return_to=%2F.certgate%2Fdevice%2Fapprove";

/// The forms of these pages, without their session, start again at the code.
pub(crate) struct ToEnter;

impl Back for ToEnter {
    const TO: &'static str = ENTER;
}

fn code_page(visit: &Visit, csrf: &str, error: Option<String>, status: StatusCode) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::html(status, &DeviceCodePage { c: &c, csrf, error })
}

fn not_here(visit: &Visit) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::notice(
        StatusCode::NOT_FOUND,
        &c,
        c.t.device_heading,
        c.t.device_flow_off,
        true,
        None,
    )
}

/// `GET /.certgate/device`: "enter the code shown on your device". Never pre-filled from the
/// URL: a link with the code in it is how device-code phishing works.
pub(crate) async fn enter_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    visit: Visit,
) -> Result<Response, PageError> {
    if flow_orgs(&visit).is_empty() {
        return Ok(not_here(&visit));
    }
    let Backends { visit, store, .. } = Backends::of(&state, visit)?;
    let attempt = attempt_or_start(&state, &visit, &store, &headers, "/".into()).await?;
    let mut response = code_page(&visit, attempt.session.csrf(), None, StatusCode::OK);
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        attempt.id.as_str(),
        None,
    );
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    user_code: String,
}

/// `POST /.certgate/device`: the code is looked up (guesses limited per address), kept in the
/// session, and the user signs in (again) before approving.
pub(crate) async fn enter_submit(
    State(state): State<Arc<PortalState>>,
    visit: Visit,
    posted: Result<Posted<InSession<ToEnter>, CodeForm>, PageError>,
) -> Result<Response, PageError> {
    // Off on this host: said so even while the store is down, before `posted` is looked at.
    if flow_orgs(&visit).is_empty() {
        return Ok(not_here(&visit));
    }
    let Posted {
        visit,
        store,
        it: InSession { mut attempt, .. },
        form,
        ..
    } = posted?;
    let guesses = RateLimit {
        limit: 10,
        window: Duration::from_secs(15 * 60),
    };
    match store
        .hit(
            "device-user-code-guess",
            &certgate_store::address_key(&visit.ip),
            guesses,
        )
        .await
    {
        Ok(hit) if !hit.allowed => {
            state
                .metrics
                .rate_limited
                .with_label_values(&["device_code"])
                .inc();
            let text = fill(
                visit.texts.too_many,
                "",
                &visit.texts.duration(hit.retry_after),
                "",
            );
            return Ok(code_page(
                &visit,
                attempt.session.csrf(),
                Some(text),
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
        Ok(_) => {}
        Err(_) => return Err(PageError::unavailable(&visit)),
    }
    let found = match store
        .peek_once("device-user-code", &normal_user_code(&form.user_code))
        .await
    {
        Ok(Some(key)) => String::from_utf8(key).ok(),
        Ok(None) => None,
        Err(_) => return Err(PageError::unavailable(&visit)),
    };
    let request = match &found {
        Some(key) => get_request(&store, key).await.ok().flatten(),
        None => None,
    };
    let now = state.now();
    let usable = request.as_ref().is_some_and(|r| {
        r.status == Status::Pending
            && !r.expired(now)
            && r.orgs.iter().any(|o| visit.org(o).is_some())
    });
    let (Some(key), true) = (found, usable) else {
        let text = visit.texts.device_code_unknown.to_owned();
        return Ok(code_page(
            &visit,
            attempt.session.csrf(),
            Some(text),
            StatusCode::BAD_REQUEST,
        ));
    };
    attempt.session.set_device_request(Some(key));
    save(&store, &attempt).await;
    Ok(Redirect::to(APPROVE).into_response())
}

/// The sign-in approving a device must be this fresh, in this session.
fn fresh_sign_in(session: &LoginSession, now: i64) -> Option<&SignedIn> {
    session.step().fresh_sign_in(now)
}

/// `GET /.certgate/device/approve`: who is asking, from where, since when; approve or deny.
pub(crate) async fn approve_page(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Backends { visit, store, .. }: Backends,
) -> Result<Response, PageError> {
    let Some(attempt) = load_attempt(&store, &headers).await else {
        return Err(PageError::redirect(ENTER));
    };
    let Some(key) = attempt.session.device_request().map(str::to_owned) else {
        return Err(PageError::redirect(ENTER));
    };
    let now = state.now();
    let Some(signed_in) = fresh_sign_in(&attempt.session, now).cloned() else {
        return Err(PageError::redirect(SIGN_IN_TO_APPROVE));
    };
    let request = match get_request(&store, &key).await {
        Ok(Some(r)) if r.status == Status::Pending && !r.expired(now) => r,
        _ => {
            let c = visit.chrome(visit.org(&signed_in.org).map(|o| o.as_ref()));
            return Ok(pages::notice(
                StatusCode::GONE,
                &c,
                c.t.device_heading,
                c.t.device_code_unknown,
                true,
                Some((ENTER, c.t.device_heading)),
            ));
        }
    };
    let Some(org) = visit.org(&signed_in.org).cloned() else {
        return Ok(not_here(&visit));
    };
    let c = visit.chrome(Some(&org));
    let is_group = match state.backend.database() {
        Some(db) => matches!(
            db.account(&signed_in.org, &signed_in.account).await,
            Ok(Some(a)) if a.kind == AccountKind::Group
        ),
        None => false,
    };
    // Days of trust need a second factor, as for a browser.
    let trust_label =
        if org.mfa.trust_device_for.is_zero() || is_group || signed_in.mfa != MfaStatus::Yes {
            String::new()
        } else {
            fill(
                c.t.trust_device,
                "",
                &c.t.duration(org.mfa.trust_device_for),
                "",
            )
        };
    Ok(pages::html(
        StatusCode::OK,
        &ApprovePage {
            c: &c,
            csrf: attempt.session.csrf(),
            code: &request.user_code,
            name: &request.name,
            ip: &request.ip,
            when: &pages::local_time(request.requested_at, &org.time_zone),
            other_ip: request.ip != visit.ip,
            trust_label,
            // On by default for an app, unless the request came from elsewhere.
            trust_checked: request.trust_requested && request.ip == visit.ip,
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct ApproveForm {
    /// The user code of the request the page showed.
    #[serde(default)]
    code: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    trust: Option<String>,
}

/// `POST /.certgate/device/approve`.
pub(crate) async fn approve_submit(
    State(state): State<Arc<PortalState>>,
    Posted {
        visit,
        store,
        it: InSession { mut attempt, .. },
        form,
        ..
    }: Posted<InSession<ToEnter>, ApproveForm>,
) -> Result<Response, PageError> {
    let now = state.now();
    let signed_in = fresh_sign_in(&attempt.session, now).cloned();
    let (Some(key), Some(signed_in)) = (
        attempt.session.device_request().map(str::to_owned),
        signed_in,
    ) else {
        return Err(PageError::redirect(ENTER));
    };
    let Some(org) = visit.org(&signed_in.org).cloned() else {
        return Ok(not_here(&visit));
    };
    let mut request = match get_request(&store, &key).await {
        Ok(Some(r))
            if r.status == Status::Pending
                && !r.expired(now)
                && r.orgs.contains(&org.id)
                && org.mfa.device_flow =>
        {
            r
        }
        _ => return Err(PageError::redirect(ENTER)),
    };
    // Another code entered since this page was shown (in another tab, say): show that one.
    if normal_user_code(&form.code) != normal_user_code(&request.user_code) {
        return Err(PageError::redirect(APPROVE));
    }
    let reset_since = match state.backend.database() {
        Some(db) => db
            .account(&org.id, &signed_in.account)
            .await
            .ok()
            .flatten()
            .is_none_or(|a| a.disabled || a.not_valid_before > signed_in.at),
        None => true,
    };
    if reset_since {
        return Err(PageError::redirect(SIGN_IN_TO_APPROVE));
    }
    // Taking the user code claims the decision: of two decisions sent at once (two tabs, two
    // people with the code), one is recorded and the other sees the code gone.
    match store
        .take_once("device-user-code", &normal_user_code(&request.user_code))
        .await
    {
        Ok(Some(claimed)) if claimed == key.as_bytes() => {}
        Ok(_) => return Err(PageError::redirect(ENTER)),
        Err(_) => return Err(PageError::unavailable(&visit)),
    }
    let approve = form.action == "approve";
    request.decide(approve, &org.id, &signed_in, form.trust.is_some(), now);
    if !put_request(&store, &key, &request, now).await {
        return Err(PageError::unavailable(&visit));
    }
    attempt.session.set_device_request(None);
    save(&store, &attempt).await;
    if let Some(db) = state.backend.database() {
        let _ = db
            .append_audit(&AuditEntry {
                org: org.id.clone(),
                at: now,
                actor: signed_in.account.clone(),
                action: if approve {
                    certgate_db::AuditAction::DeviceApproved
                } else {
                    certgate_db::AuditAction::DeviceDenied
                }
                .as_str()
                .into(),
                subject: request.name.clone(),
                ip: visit.ip.clone(),
                detail: format!("requested from {}", request.ip),
            })
            .await;
    }
    let c = visit.chrome(Some(&org));
    let message = if approve {
        c.t.device_approved
    } else {
        c.t.device_denied
    };
    Ok(pages::notice(
        StatusCode::OK,
        &c,
        c.t.device_heading,
        message,
        false,
        None,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn user_codes_are_easy_to_type_and_typos_of_case_and_dashes_do_not_matter() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(code
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| USER_CODE_ALPHABET.contains(&b)));
            assert_eq!(
                normal_user_code(&code.to_lowercase().replace('-', " ")),
                code.replace('-', "")
            );
        }
        assert_eq!(normal_user_code("<script>"), "SCRIPT");
    }

    fn pending(expires_at: i64) -> DeviceRequest {
        DeviceRequest {
            orgs: vec!["noord".into()],
            user_code: "BCDF-GHJK".into(),
            name: "laptop".into(),
            ip: "192.0.2.1".into(),
            requested_at: expires_at - 600,
            expires_at,
            trust_requested: true,
            status: Status::Pending,
            org: None,
            account: None,
            trust: false,
            signed_in_at: 0,
        }
    }

    #[test]
    fn an_approval_can_be_collected_for_a_few_polls_and_then_lapses() {
        let anna = SignedIn {
            org: "noord".into(),
            account: "anna".into(),
            at: 1_000,
            mfa: MfaStatus::Yes,
            recovered: false,
        };
        // Approved a second before the code expires: the device's next polls still collect it.
        let mut late = pending(2_000);
        late.decide(true, "noord", &anna, true, 1_999);
        assert!((late.status, late.trust) == (Status::Approved, true));
        assert!(!late.expired(2_000 + 2 * POLL_INTERVAL.as_secs() as i64));
        // Not for long: it lapses like the code would.
        assert!(late.expired(1_999 + PICKUP.as_secs() as i64));
        assert!(late.expired(2_000 + TOMBSTONE.as_secs() as i64 - 1));

        // Approved early: the code's own expiry stands, neither cut nor stretched.
        let mut early = pending(2_000);
        early.decide(true, "noord", &anna, false, 1_100);
        assert!(!early.trust);
        assert!(!early.expired(1_999));
        assert!(early.expired(2_000));

        // A denial gains nothing.
        let mut denied = pending(2_000);
        denied.decide(false, "noord", &anna, true, 1_999);
        assert!((denied.status, denied.trust) == (Status::Denied, false));
        assert!(denied.expired(2_000));
    }

    #[test]
    fn the_gateways_certificate_header_is_read_field_by_field() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-certgate-client-cert",
            "status=valid; serial=0a1b; org=noord; device=d-1; user=anna%40noord.test"
                .parse()
                .unwrap_or_else(|_| header::HeaderValue::from_static("")),
        );
        let p = presented(&headers).expect("parsed");
        assert_eq!(
            (p.status.as_str(), p.org.as_str(), p.device.as_str()),
            ("valid", "noord", "d-1")
        );
        let mut foreign = HeaderMap::new();
        foreign.insert(
            "x-certgate-client-cert",
            header::HeaderValue::from_static("status=foreign; serial=0a"),
        );
        assert!(presented(&foreign).is_none());
    }
}
