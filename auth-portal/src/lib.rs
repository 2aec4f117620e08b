//! certgate's portal, served under `/.certgate/` on each organisation's host behind the gateway:
//! sign in, second factor, the browser credential, sign out and forgotten passwords. The portal
//! believes the gateway's headers only with the per-process gateway secret; everything it shares
//! with the gateway (database, store, metrics, revocations) comes in through [`Backend`].

mod account;
pub mod admin;
mod admin_api;
pub mod codes;
mod device;
mod extract;
mod flow;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod i18n;
mod issue;
pub mod mail;
pub mod metrics;
pub mod pages;
mod passkey;
pub mod password;
pub mod recovery;
mod reset;
pub mod return_to;
pub mod session;
pub mod signin;
pub mod sms;
mod sso;
pub mod throttle;
pub mod totp;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use certgate_certs::{CaHandle, CredentialKey, CredentialVerifier, SealError, SecretKeyring};
use certgate_db::{Database, NewRevocation};
use certgate_policies::config::LimitsConfig;
use certgate_policies::{Language, Organisation, PolicyHandle};
use certgate_store::{Clock, Store};
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use crate::i18n::Texts;
use crate::mail::Mailer;
use crate::metrics::PortalMetrics;
use crate::pages::Chrome;
use crate::sms::SmsSender;

/// What the portal needs from the process it runs in.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The shared store, once it is open.
    fn store(&self) -> Option<Store>;
    /// The database, once it is open.
    fn database(&self) -> Option<Database>;
    /// An organisation's admin allow list, for its editing page.
    async fn allow_list(&self, org: &str) -> Result<AllowListForm, BackendError>;
    /// Saves an organisation's admin allow list (checked line by line, only if still at
    /// `version`), applied on every instance.
    async fn save_allow_list(
        &self,
        org: &str,
        version: i64,
        text: &str,
        actor: &str,
        ip: &str,
    ) -> Result<i64, AllowListProblem>;
    /// Records a revocation durably and makes every gateway refuse it at once; `reason` is the
    /// `revocations_total` label.
    async fn revoke(
        &self,
        revocation: &NewRevocation,
        reason: &'static str,
    ) -> Result<(), BackendError>;
}

/// Why the process the portal runs in did not do what the portal asked. The detail is for the
/// log; the pages only say "try again".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The admin allow list could not be read.
    #[error("{0}")]
    AllowListUnread(String),
    /// The revocation was not recorded, or not applied: nothing counts as revoked.
    #[error("{0}")]
    NotRevoked(String),
}

#[async_trait::async_trait]
impl certgate_accounts::Revoke for PortalState {
    async fn revoke(
        &self,
        revocation: &NewRevocation,
        label: &'static str,
    ) -> Result<(), certgate_accounts::AccountError> {
        self.backend
            .revoke(revocation, label)
            .await
            .map_err(|error| certgate_accounts::AccountError::NotRevoked(error.to_string()))
    }
}

impl certgate_accounts::AccountEvents for PortalState {
    fn changed(&self, account: &certgate_db::Account, event: certgate_accounts::AccountEvent) {
        let notice = match event {
            certgate_accounts::AccountEvent::Created => AccountNotice::Welcome,
            certgate_accounts::AccountEvent::MfaReset => AccountNotice::MfaReset,
            certgate_accounts::AccountEvent::PasswordChanged => AccountNotice::PasswordChanged,
        };
        self.account_notice(account, notice);
    }
}

impl PortalState {
    /// The account service, for one request.
    pub(crate) fn accounts<'a>(&'a self, db: &'a Database) -> certgate_accounts::Accounts<'a> {
        certgate_accounts::Accounts {
            db,
            revoke: self,
            events: Some(self),
            now: self.now(),
        }
    }
}

/// An admin allow list as its editing page shows it.
pub struct AllowListForm {
    pub version: i64,
    /// One `network  # note` a line: what the admin edits.
    pub text: String,
    /// The policy files' entries, read-only: (network, where it comes from).
    pub files: Vec<(String, String)>,
    /// The shortest prefixes accepted, IPv4 and IPv6.
    pub min_prefix: (u8, u8),
}

/// Why an allow list was not saved; every message may be shown to the admin.
pub enum AllowListProblem {
    /// Every bad line.
    Invalid(Vec<String>),
    /// Someone else saved meanwhile.
    Stale(String),
    Other(String),
}

/// Where mail goes.
pub enum MailSetup {
    /// No `[mail]` section: e-mail codes and notices cannot be sent.
    None,
    /// SMTP, with the password read from `password_file`.
    Smtp(certgate_policies::config::MailConfig, Option<String>),
    /// `make demo`: each mail is written to a file in this directory and its path logged.
    Outbox(PathBuf),
}

/// Everything the portal is built from.
pub struct PortalSetup {
    pub gateway_secret: String,
    pub policies: Arc<PolicyHandle>,
    pub backend: Arc<dyn Backend>,
    pub credential_key: CredentialKey,
    /// Signs device certificates for CSRs.
    /// The CA as last read; re-read by the gateway when its files change.
    pub ca: Arc<CaHandle>,
    /// Shared with the admin API, which rotates it.
    pub keyring: Arc<RwLock<SecretKeyring>>,
    /// Re-read when a secret names a key this process does not know (another instance rotated).
    pub keyring_path: PathBuf,
    pub mail: MailSetup,
    pub sms: Option<SmsSender>,
    pub limits: LimitsConfig,
    /// The portal's counters, registered where `/metrics` renders them.
    pub metrics: PortalMetrics,
    pub clock: Arc<dyn Clock>,
    /// Every failed attempt is answered this long after it arrived (default one second).
    pub failure_delay: Duration,
    /// Audit entries older than this are deleted.
    pub audit_retention: Duration,
    /// The port the gateway serves HTTPS on, for links in mail sent without a request to
    /// copy the address from (the welcome mail); left out of the link when it is 443.
    pub https_port: u16,
}

/// What the portal's handlers share.
pub struct PortalState {
    gateway_secret: String,
    policies: Arc<PolicyHandle>,
    backend: Arc<dyn Backend>,
    credential_key: CredentialKey,
    ca: Arc<CaHandle>,
    tokens: CredentialVerifier,
    keyring: Arc<RwLock<SecretKeyring>>,
    keyring_path: PathBuf,
    mailer: Option<Mailer>,
    sms: Option<SmsSender>,
    limits: LimitsConfig,
    metrics: PortalMetrics,
    sso: sso::Providers,
    clock: Arc<dyn Clock>,
    failure_delay: Duration,
    audit_retention: Duration,
    https_port: u16,
}

/// Why the portal could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("mail: {0}")]
    Mail(#[from] mail::MailError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl PortalState {
    /// Builds the state; starts the mail sender, so it must run inside the Tokio runtime.
    pub fn new(setup: PortalSetup) -> Result<Self, SetupError> {
        let mailer = match setup.mail {
            MailSetup::None => None,
            MailSetup::Smtp(config, password) => Some(Mailer::start(&config, password)?),
            MailSetup::Outbox(dir) => Some(Mailer::outbox(dir)?),
        };
        Ok(PortalState {
            gateway_secret: setup.gateway_secret,
            policies: setup.policies,
            backend: setup.backend,
            tokens: CredentialVerifier::from(&setup.credential_key),
            credential_key: setup.credential_key,
            ca: setup.ca,
            keyring: setup.keyring,
            keyring_path: setup.keyring_path,
            mailer,
            sms: setup.sms,
            limits: setup.limits,
            metrics: setup.metrics,
            sso: sso::Providers::default(),
            clock: setup.clock,
            failure_delay: setup.failure_delay,
            audit_retention: setup.audit_retention,
            https_port: setup.https_port,
        })
    }

    /// Whether the request came through this process's gateway.
    fn came_through_gateway(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get("x-certgate-gateway-secret")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        !self.gateway_secret.is_empty()
            && bool::from(presented.ct_eq(self.gateway_secret.as_bytes()))
    }

    fn now(&self) -> i64 {
        (self.clock.unix_millis() / 1000) as i64
    }

    /// Seals an authenticator secret for `account_id` with the newest key.
    fn seal_secret(&self, account_id: &str, secret: &[u8]) -> Result<String, SealError> {
        self.keyring.read().seal(account_id, secret)
    }

    /// Opens an authenticator secret; a key this process has not seen yet (rotated by another
    /// instance) is read from the data directory once.
    fn open_secret(&self, account_id: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let opened = self.keyring.read().open(account_id, sealed);
        match opened {
            Err(SealError::UnknownKey) => {
                match SecretKeyring::load(&self.keyring_path) {
                    Ok(fresh) => *self.keyring.write() = fresh,
                    Err(error) => {
                        tracing::error!(%error, "cannot re-read the secret-encryption keys")
                    }
                }
                self.keyring.read().open(account_id, sealed)
            }
            other => other,
        }
    }

    /// The address of the organisation's application: its first host, on the gateway's port.
    fn application_link(&self, org: &certgate_policies::Organisation) -> String {
        let host = org.hosts.first().map_or("", String::as_str);
        match self.https_port {
            443 => format!("https://{host}/"),
            port => format!("https://{host}:{port}/"),
        }
    }

    /// Tells a user about a change an administrator made (welcome, MFA reset, new password),
    /// in the organisation's language.
    pub fn account_notice(&self, account: &certgate_db::Account, notice: AccountNotice) {
        let policies = self.policies.load();
        let Some(org) = policies.organisation(&account.org) else {
            return;
        };
        let t = Texts::of(org.default_language);
        let (subject, body) = match notice {
            AccountNotice::Welcome => (
                t.mail_welcome_subject,
                i18n::fill(
                    t.mail_welcome_body,
                    &org.name,
                    &account.username,
                    &self.application_link(org),
                ),
            ),
            AccountNotice::MfaReset => (
                t.mail_mfa_reset_subject,
                i18n::fill(t.mail_mfa_reset_body, &org.name, "", ""),
            ),
            AccountNotice::PasswordChanged => (
                t.mail_password_changed_subject,
                i18n::fill(t.mail_password_changed_body, &org.name, "", ""),
            ),
        };
        issue::send_notice(self, t, org, account, subject, &body);
    }
}

/// A change an administrator made that the user is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountNotice {
    Welcome,
    MfaReset,
    PasswordChanged,
}

/// The language switch: remembers the choice for a year and goes back to the page.
async fn choose_language(RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let back =
        flow::raw_param(&query, "back").map_or_else(|| "/".into(), return_to::safe_return_to);
    let mut response = Redirect::to(&back).into_response();
    match flow::raw_param(&query, "to").and_then(i18n::language) {
        Some(language) => session::set_cookie(
            &mut response,
            session::LANG_COOKIE,
            language.as_str(),
            Some(Duration::from_secs(365 * 86_400)),
        ),
        None => session::clear_cookie(&mut response, session::LANG_COOKIE),
    }
    response
}

pub fn router(state: Arc<PortalState>) -> Router {
    Router::new()
        .route(
            "/.certgate/login",
            get(flow::login_page).post(flow::login_submit),
        )
        .route("/.certgate/mfa", get(flow::mfa_page))
        .route(
            "/.certgate/mfa/choose",
            axum::routing::post(flow::choose_submit),
        )
        .route(
            "/.certgate/mfa/enrol",
            axum::routing::post(flow::code_submit),
        )
        .route(
            "/.certgate/mfa/code",
            axum::routing::post(flow::code_submit),
        )
        .route(
            "/.certgate/mfa/resend",
            axum::routing::post(flow::resend_submit),
        )
        .route(
            "/.certgate/mfa/instead",
            axum::routing::post(flow::instead_submit),
        )
        .route(
            "/.certgate/mfa/replace",
            axum::routing::post(flow::replace_submit),
        )
        .route(
            "/.certgate/mfa/recovery",
            get(flow::recovery_page).post(flow::recovery_submit),
        )
        .route(
            "/.certgate/mfa/passkey",
            axum::routing::post(passkey::mfa_submit),
        )
        .route(
            "/.certgate/passkey",
            axum::routing::post(passkey::sign_in_submit),
        )
        .route(
            "/.certgate/account/passkeys",
            axum::routing::post(account::add_passkey),
        )
        .route(
            "/.certgate/account/passkeys/remove",
            axum::routing::post(account::remove_passkey),
        )
        .route(
            "/.certgate/mfa/back",
            axum::routing::post(flow::back_submit),
        )
        .route(
            "/.certgate/logout",
            get(flow::logout_page).post(flow::logout_submit),
        )
        .route(
            "/.certgate/forgot",
            get(reset::forgot_page).post(reset::forgot_submit),
        )
        .route(
            "/.certgate/reset",
            get(reset::reset_page).post(reset::reset_submit),
        )
        .route(
            "/.certgate/device",
            get(device::enter_page).post(device::enter_submit),
        )
        .route(
            "/.certgate/device/approve",
            get(device::approve_page).post(device::approve_submit),
        )
        .route(
            "/.certgate/api/v1/device/authorize",
            axum::routing::post(device::authorize),
        )
        .route(
            "/.certgate/api/v1/device/token",
            axum::routing::post(device::token),
        )
        .route(
            "/.certgate/api/v1/device/certificate",
            axum::routing::post(device::certificate),
        )
        .route(
            "/.certgate/api/v1/device/renew",
            axum::routing::post(device::renew),
        )
        .route("/.certgate/account", get(account::page))
        .route(
            "/.certgate/account/revoke",
            axum::routing::post(account::revoke),
        )
        .route(
            "/.certgate/account/mfa",
            axum::routing::post(account::turn_on_mfa),
        )
        .route(
            "/.certgate/account/recovery-codes",
            axum::routing::post(account::renew_recovery_codes),
        )
        .route(
            "/.certgate/account/certificate",
            get(account::download).post(account::certificate),
        )
        .route("/.certgate/sso/{provider}", get(sso::start))
        .route("/.certgate/sso/{provider}/callback", get(sso::callback))
        .route("/.certgate/admin", get(admin::accounts))
        .route("/.certgate/admin/", get(admin::home))
        .route(
            "/.certgate/admin/accounts/new",
            get(admin::new_page).post(admin::create),
        )
        .route("/.certgate/admin/accounts/{id}", get(admin::account))
        .route(
            "/.certgate/admin/accounts/{id}/edit",
            axum::routing::post(admin::edit),
        )
        .route(
            "/.certgate/admin/accounts/{id}/{action}",
            axum::routing::post(admin::act),
        )
        .route(
            "/.certgate/admin/allowlist",
            get(admin::allow_list).post(admin::save_allow_list),
        )
        .route(
            "/.certgate/admin/import",
            // A whole import file, percent-encoded, reaches the check that names its limit.
            get(admin::import_page).post(admin::import).layer(
                axum::extract::DefaultBodyLimit::max(certgate_accounts::IMPORT_BODY_LIMIT),
            ),
        )
        .route("/.certgate/admin/devices", get(admin::devices))
        .route("/.certgate/admin/audit", get(admin::audit_page))
        .route("/.certgate/admin/audit.jsonl", get(admin::audit_export))
        .route("/.certgate/admin/settings", get(admin::settings))
        .merge(admin_api::router())
        .route("/.certgate/language", get(choose_language))
        .route("/.certgate/static/portal.css", get(portal_css))
        .route("/.certgate/static/copy.js", get(copy_js))
        .route("/.certgate/static/passkey.js", get(passkey_js))
        .route("/.certgate/theme.css", get(theme_css))
        .route("/.certgate/logo", get(logo))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            only_through_gateway,
        ))
        .with_state(state)
}

/// Serves the portal on its internal listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<PortalState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::spawn(purge_audit(Arc::clone(&state)));
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Deletes audit entries past their retention: at start, then every so often (an hour, or half
/// the retention when that is shorter).
async fn purge_audit(state: Arc<PortalState>) {
    let every =
        (state.audit_retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        if let Some(db) = state.backend.database() {
            let before = state.now() - state.audit_retention.as_secs() as i64;
            match db.purge_audit(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "audit entries past their retention deleted"),
                Err(error) => tracing::warn!(%error, "old audit entries could not be deleted"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Refuses what did not come through the gateway, and runs the rest in a span carrying the
/// request id the gateway logs and sends on, so every portal line of the request shows it.
async fn only_through_gateway(
    State(state): State<Arc<PortalState>>,
    request: Request,
    next: Next,
) -> Response {
    if !state.came_through_gateway(request.headers()) {
        let mut response = (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The portal is reached through the gateway only.\n",
        )
            .into_response();
        pages::secure_headers(&mut response);
        return response;
    }
    let span = request_span(request.headers());
    tracing::Instrument::instrument(next.run(request), span).await
}

/// The span of one portal request, from the gateway (its secret checked): the gateway's
/// `X-Request-Id`, which it made or checked, or a new id if it sent none.
fn request_span(headers: &HeaderMap) -> tracing::Span {
    let sent = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty());
    let made;
    let request_id = match sent {
        Some(id) => id,
        None => {
            made = hex::encode(rand::random::<[u8; 16]>());
            made.as_str()
        }
    };
    // At ERROR so that it is on whenever any line of the portal is, whatever the filter.
    tracing::error_span!("request", request_id)
}

/// Who is asking, for which organisation(s), in which language.
pub(crate) struct Visit {
    /// The organisations served on the request's host.
    pub orgs: Vec<Arc<Organisation>>,
    pub host: String,
    pub texts: &'static Texts,
    pub ip: String,
    /// When the request came: every failure is answered `failure_delay` after it.
    pub arrived: Instant,
    /// The browser and system its User-Agent names ("Chrome", "Android"), for a credential
    /// issued now.
    pub agent: (&'static str, &'static str),
    /// Where the language switch returns to: this page.
    pub back: String,
}

impl Visit {
    pub(crate) fn new(state: &PortalState, headers: &HeaderMap) -> Visit {
        let arrived = Instant::now();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let orgs = state.policies.load().organisations_for_host(&host).to_vec();
        let default = orgs
            .first()
            .map_or(Language::default(), |o| o.default_language);
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let chosen = session::cookie(headers, session::LANG_COOKIE).and_then(i18n::language);
        let texts = Texts::of(chosen.unwrap_or_else(|| i18n::negotiate(accept, default)));
        let ip = headers
            .get("x-certgate-client-ip")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let agent = issue::browser_and_system(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        );
        Visit {
            orgs,
            host,
            texts,
            ip,
            arrived,
            agent,
            back: "/".into(),
        }
    }

    /// The visit of a page at `uri`, requested with `method`: the language switch comes back
    /// to it (a page drawn in answer to a form comes back to the page of its step).
    pub(crate) fn at(mut self, method: &axum::http::Method, uri: &axum::http::Uri) -> Visit {
        let path = uri.path();
        self.back = if method == axum::http::Method::GET {
            uri.path_and_query().map_or(path, |p| p.as_str()).to_owned()
        } else {
            // `/.certgate/mfa/enrol` → `/.certgate/mfa`: the page of the step, which GET draws.
            let mut segments = path.splitn(4, '/');
            match (segments.next(), segments.next(), segments.next()) {
                (Some(""), Some(prefix), Some(page)) => format!("/{prefix}/{page}"),
                _ => "/".into(),
            }
        };
        self
    }

    /// The organisation by id, if this host serves it.
    pub(crate) fn org(&self, id: &str) -> Option<&Arc<Organisation>> {
        self.orgs.iter().find(|o| o.id == id)
    }

    /// The only organisation of this host, when it serves one.
    pub(crate) fn single_org(&self) -> Option<&Arc<Organisation>> {
        match self.orgs.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The organisation a typed name means on this host: its id or its name, any case.
    pub(crate) fn org_named(&self, typed: &str) -> Option<&Arc<Organisation>> {
        let typed = typed.trim();
        self.orgs.iter().find(|o| {
            o.id.eq_ignore_ascii_case(typed) || o.name.to_lowercase() == typed.to_lowercase()
        })
    }

    pub(crate) fn chrome(&self, org: Option<&Organisation>) -> Chrome {
        let other = match self.texts.lang {
            "nl" => Language::En,
            _ => Language::Nl,
        };
        Chrome {
            t: self.texts,
            org_name: org.map_or_else(|| self.host_name(), |o| o.name.clone()),
            logo: org.is_some_and(|o| o.logo.is_some()),
            other_language: (other.as_str(), Texts::of(other).language_name),
            language_href: format!(
                "/.certgate/language?to={}&back={}",
                other.as_str(),
                percent_encoding::utf8_percent_encode(
                    &self.back,
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
        }
    }

    fn host_name(&self) -> String {
        self.host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(self.host.clone(), |(name, _)| name.to_owned())
    }
}

/// The organisation a page is about: the only one of the host, else the remembered one.
fn page_org(visit: &Visit, headers: &HeaderMap) -> Option<Arc<Organisation>> {
    visit.single_org().cloned().or_else(|| {
        session::cookie(headers, session::ORG_COOKIE).and_then(|id| visit.org(id).cloned())
    })
}

async fn portal_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../static/portal.css"),
    )
}

async fn passkey_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../static/passkey.js"),
    )
}

async fn copy_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../static/copy.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    pages::secure_headers(&mut response);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The organisation's colour as a stylesheet (so no inline style is needed).
async fn theme_css(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Response {
    let visit = Visit::new(&state, &headers);
    let org = page_org(&visit, &headers);
    let colour = pages::safe_colour(org.as_ref().and_then(|o| o.colour.as_deref()));
    let body = colour.map_or_else(String::new, |c| format!(":root {{ --brand: {c}; }}\n"));
    let mut response = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], body).into_response();
    pages::secure_headers(&mut response);
    response
}

/// The organisation's logo file, as named in its policy.
async fn logo(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Response {
    let visit = Visit::new(&state, &headers);
    let Some(path) = page_org(&visit, &headers).and_then(|o| o.logo.clone()) else {
        return not_found_for(&visit);
    };
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
            pages::secure_headers(&mut response);
            response
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "the organisation's logo cannot be read");
            not_found_for(&visit)
        }
    }
}

fn not_found_for(visit: &Visit) -> Response {
    let c = visit.chrome(visit.single_org().map(|o| o.as_ref()));
    pages::notice(
        StatusCode::NOT_FOUND,
        &c,
        c.t.not_found,
        c.t.not_found,
        true,
        Some(("/.certgate/login", c.t.sign_in)),
    )
}

async fn not_found(visit: Visit) -> Response {
    not_found_for(&visit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use axum::body::Body;
    use axum::http::Request;
    use certgate_store::{MemoryStore, SystemClock};
    use tower::ServiceExt;

    use super::*;

    pub(crate) const SECRET: &str = "s3cret-from-gateway";

    struct Local {
        store: Store,
        db: Database,
    }

    #[async_trait::async_trait]
    impl Backend for Local {
        fn store(&self) -> Option<Store> {
            Some(self.store.clone())
        }
        fn database(&self) -> Option<Database> {
            Some(self.db.clone())
        }
        async fn allow_list(&self, _org: &str) -> Result<AllowListForm, BackendError> {
            Err(BackendError::AllowListUnread("not in unit tests".into()))
        }
        async fn save_allow_list(
            &self,
            _org: &str,
            _version: i64,
            _text: &str,
            _actor: &str,
            _ip: &str,
        ) -> Result<i64, AllowListProblem> {
            Err(AllowListProblem::Other("not in unit tests".into()))
        }
        async fn revoke(
            &self,
            revocation: &NewRevocation,
            _reason: &'static str,
        ) -> Result<(), BackendError> {
            self.db
                .record_revocation(revocation)
                .await
                .map(|_| ())
                .map_err(|e| BackendError::NotRevoked(e.to_string()))
        }
    }

    /// A portal on a real in-memory store and a real SQLite file, for one organisation.
    pub(crate) async fn portal(dir: &std::path::Path) -> Arc<PortalState> {
        portal_with(dir, LimitsConfig::default(), "").await
    }

    /// `policy_extra` is appended to the organisation's policy file.
    async fn portal_with(
        dir: &std::path::Path,
        limits: LimitsConfig,
        policy_extra: &str,
    ) -> Arc<PortalState> {
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("sso-secret"), "not-a-real-secret\n").unwrap();
        std::fs::write(
            policies.join("noord.toml"),
            format!("id = \"noord\"\nname = \"Zorggroep Noord\"\nhosts = [\"noord.test\"]\nupstreams = [\"http://127.0.0.1:9\"]\n{policy_extra}"),
        )
        .unwrap();
        let store = Store::Memory(Arc::new(MemoryStore::new(Arc::new(SystemClock))));
        let db = Database::open("", dir).await.unwrap();
        let keyring_path = dir.join("secrets.key");
        let setup = PortalSetup {
            gateway_secret: SECRET.into(),
            policies: Arc::new(PolicyHandle::new(&policies).unwrap()),
            backend: Arc::new(Local { store, db }),
            credential_key: CredentialKey::generate(),
            ca: {
                certgate_certs::CertificateAuthority::init(
                    &dir.join("ca"),
                    time::OffsetDateTime::now_utc(),
                )
                .unwrap();
                Arc::new(CaHandle::open(&dir.join("ca")).unwrap())
            },
            keyring: Arc::new(RwLock::new(
                SecretKeyring::load_or_create(&keyring_path).unwrap(),
            )),
            keyring_path,
            mail: MailSetup::None,
            sms: None,
            limits,
            metrics: PortalMetrics::register(
                &prometheus::Registry::new(),
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new("rate_limited_total", "test"),
                    &["kind"],
                )
                .unwrap(),
            )
            .unwrap(),
            clock: Arc::new(SystemClock),
            failure_delay: Duration::from_millis(10),
            audit_retention: Duration::from_secs(86_400),
            https_port: 443,
        };
        Arc::new(PortalState::new(setup).unwrap())
    }

    fn get(path: &str, secret: Option<&str>) -> Request<Body> {
        let mut builder = Request::get(path).header("host", "noord.test");
        if let Some(secret) = secret {
            builder = builder.header("x-certgate-gateway-secret", secret);
        }
        builder.body(Body::empty()).unwrap()
    }

    /// The `name=value` of the cookie a response sets.
    pub(crate) fn session_cookie(response: &Response) -> String {
        response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// The CSRF token of the (first) form on a page.
    pub(crate) fn csrf_of(html: &str) -> String {
        html.split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn only_requests_through_the_gateway_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        for secret in [None, Some("guess"), Some("")] {
            let response = router(Arc::clone(&state))
                .oneshot(get("/.certgate/login", secret))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{secret:?}");
        }
        let ok = router(state)
            .oneshot(get("/.certgate/login?return_to=%2Frooster", Some(SECRET)))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_sign_in_page_is_dutch_by_default_and_carries_its_protections() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        let response = router(state)
            .oneshot(get("/.certgate/login", Some(SECRET)))
            .await
            .unwrap();
        let headers = response.headers().clone();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let cookie = headers[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.starts_with("__Host-certgate-session=")
                && cookie.contains("Secure")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let page = body(response).await;
        assert!(page.contains("Inloggen bij Zorggroep Noord"), "{page}");
        assert!(page.contains(r#"name="csrf" value=""#), "{page}");
    }

    #[tokio::test]
    async fn a_post_without_the_pages_token_signs_nobody_in() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        let post = Request::post("/.certgate/login")
            .header("host", "noord.test")
            .header("x-certgate-gateway-secret", SECRET)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(
                "csrf=forged&username=anna&password=whatever-long",
            ))
            .unwrap();
        let response = router(state).oneshot(post).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("__Host-certgate-device")));
        let page = body(response).await;
        assert!(page.contains("Deze pagina was verlopen"), "{page}");
    }

    #[tokio::test]
    async fn password_reset_requests_count_per_ipv6_network() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        let page = router(Arc::clone(&state))
            .oneshot(get("/.certgate/forgot", Some(SECRET)))
            .await
            .unwrap();
        let cookie = session_cookie(&page);
        let html = body(page).await;
        let csrf = csrf_of(&html);
        let ask = |ip: &str| {
            Request::post("/.certgate/forgot")
                .header("host", "noord.test")
                .header("x-certgate-gateway-secret", SECRET)
                .header("x-certgate-client-ip", ip)
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={csrf}&username=nobody")))
                .unwrap()
        };
        // Ten requests, each from another address of one /64 (one subscriber's network)...
        for n in 1..=10 {
            let answer = router(Arc::clone(&state))
                .oneshot(ask(&format!("2001:db8:7:8::{n:x}")))
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "request {n}");
        }
        // ...and the network waits; the next network does not.
        let waits = router(Arc::clone(&state))
            .oneshot(ask("2001:db8:7:8:ffff::1"))
            .await
            .unwrap();
        assert_eq!(waits.status(), StatusCode::TOO_MANY_REQUESTS);
        let next = router(state).oneshot(ask("2001:db8:7:9::1")).await.unwrap();
        assert_eq!(next.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn pages_send_visitors_without_a_session_where_they_belong() {
        let dir = tempfile::tempdir().unwrap();
        let state = portal(dir.path()).await;
        let post = |path: &str| {
            Request::post(path)
                .header("host", "noord.test")
                .header("x-certgate-gateway-secret", SECRET)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("csrf=forged"))
                .unwrap()
        };
        for (request, to) in [
            (
                get("/.certgate/admin", Some(SECRET)),
                "/.certgate/login?return_to=%2F%2Ecertgate%2Fadmin",
            ),
            (
                post("/.certgate/admin/accounts/new"),
                "/.certgate/login?return_to=%2F%2Ecertgate%2Fadmin",
            ),
            (
                get("/.certgate/account", Some(SECRET)),
                "/.certgate/login?return_to=%2F%2Ecertgate%2Faccount",
            ),
            (get("/.certgate/mfa", Some(SECRET)), "/.certgate/login"),
            (post("/.certgate/mfa/code"), "/.certgate/login"),
            (
                get("/.certgate/device/approve", Some(SECRET)),
                "/.certgate/device",
            ),
        ] {
            let path = request.uri().to_string();
            let response = router(Arc::clone(&state)).oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(response.headers()[header::LOCATION], to, "{path}");
        }
    }

    #[tokio::test]
    async fn visitors_without_a_session_start_only_so_many_from_one_network() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LimitsConfig {
            sign_in_starts_per_ip: certgate_policies::config::RateLimit {
                count: 3,
                window: Duration::from_secs(1200),
            },
            ..LimitsConfig::default()
        };
        // A single sign-on provider that cannot be reached: a start that is counted gets as far
        // as asking it (502), one that is not stops before (429).
        let sso = "[[sso]]\nid = \"idp\"\nkind = \"oidc\"\nlabel = \"IdP\"\nissuer = \"https://127.0.0.1:9\"\nclient_id = \"certgate\"\nclient_secret_file = \"sso-secret\"\n";
        let state = portal_with(dir.path(), limits, sso).await;
        let visit = |path: &str, ip: &str, cookie: Option<&str>| {
            let mut request = Request::get(path)
                .header("host", "noord.test")
                .header("accept-language", "en")
                .header("x-certgate-gateway-secret", SECRET)
                .header("x-certgate-client-ip", ip);
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            request.body(Body::empty()).unwrap()
        };
        // The account page sends a visitor without a session or credential to sign in, and
        // stores nothing for them.
        let account = router(Arc::clone(&state))
            .oneshot(visit("/.certgate/account", "2001:db8:7:8::1", None))
            .await
            .unwrap();
        assert_eq!(account.status(), StatusCode::SEE_OTHER);
        assert!(account.headers().get(header::SET_COOKIE).is_none());
        // Three first visits from addresses of one /64, each a new sign-in session...
        let mut first_cookie = String::new();
        for n in 1..=3 {
            let page = router(Arc::clone(&state))
                .oneshot(visit(
                    "/.certgate/login",
                    &format!("2001:db8:7:8::{n:x}"),
                    None,
                ))
                .await
                .unwrap();
            assert_eq!(page.status(), StatusCode::OK, "visit {n}");
            if n == 1 {
                first_cookie = session_cookie(&page);
            }
        }
        // ...and the network must wait before it starts another, on any page that would.
        for path in [
            "/.certgate/login",
            "/.certgate/forgot",
            "/.certgate/logout",
            "/.certgate/sso/idp",
        ] {
            let waits = router(Arc::clone(&state))
                .oneshot(visit(path, "2001:db8:7:8:ffff::1", None))
                .await
                .unwrap();
            assert_eq!(waits.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert!(waits.headers().get(header::SET_COOKIE).is_none(), "{path}");
            let wait: u64 = waits.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=1200).contains(&wait), "{wait}");
            let page = body(waits).await;
            assert!(page.contains("Too many attempts. Please wait"), "{page}");
        }
        assert_eq!(
            state
                .metrics
                .rate_limited
                .with_label_values(&["sign_in_start"])
                .get(),
            4
        );
        // A visitor who has a session goes on; so does another network.
        let again = router(Arc::clone(&state))
            .oneshot(visit(
                "/.certgate/login",
                "2001:db8:7:8::1",
                Some(&first_cookie),
            ))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let other = router(Arc::clone(&state))
            .oneshot(visit("/.certgate/login", "2001:db8:7:9::1", None))
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        // Single sign-on round trips count too: the other network's next two reach the
        // provider's address (unreachable here), the one after waits.
        for expected in [
            StatusCode::BAD_GATEWAY,
            StatusCode::BAD_GATEWAY,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let start = router(Arc::clone(&state))
                .oneshot(visit("/.certgate/sso/idp", "2001:db8:7:9::2", None))
                .await
                .unwrap();
            assert_eq!(start.status(), expected);
        }
    }
}
