//! The device agent: `certgate login` signs a device in through the portal's device flow (RFC 8628
//! in shape, its messages in `certgate-device-flow`) and stores its own key and certificate;
//! `certgate renew` re-keys it over mutual TLS. `cli` parses the arguments into [`Login`] and
//! [`Renew`].
//! Every function that talks to the portal takes the portal's URL and an HTTP client, so tests can
//! point it anywhere; what the answers mean is decided by pure functions beside them.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use certgate_certs::{files, generate_password, pkcs12_bundle, CertificateError};
pub use certgate_device_flow::{
    AuthorizeRequest, CsrRequest, DeviceAuthorization, EnrolmentToken, ErrorBody,
    IssuedCertificate, RenewalKind, Secret, TokenRequest, DEFAULT_POLL_INTERVAL,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use reqwest::{Client, StatusCode, Url};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Where the portal's JSON API lives on every organisation host.
const API_PATH: &str = ".certgate/api/v1/";
/// The portal keeps device names to this many characters, as it does a certificate's CN.
const MAX_NAME_CHARS: usize = 64;
/// Beyond this, TLS and the certificates' validity periods would fail in confusing ways.
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// RFC 8628 §3.5: every `slow_down` adds five seconds to the polling interval, for good.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Polling backs off exponentially while the portal cannot be reached, up to this.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// A group tablet whose renewal did not extend it tries again after at most this long.
const GROUP_RETRY_SECS: i64 = 24 * 3600;
/// No sign-in request is waited on for longer than this, whatever the portal says.
const MAX_APPROVAL_WAIT: u64 = 3600;
/// The daemon retries a failed renewal after this, doubling each time up to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Long sleeps are cut into steps and measured against the wall clock, because the monotonic
/// clock stops while a laptop is suspended and the certificate's expiry does not.
const WALL_CLOCK_STEP: Duration = Duration::from_secs(60);
/// Certgate's answers are small; anything bigger is not certgate.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// The portal's error descriptions are shown to the user; they are kept short and printable.
const MAX_DESCRIPTION_CHARS: usize = 300;

const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
const CHAIN_FILE: &str = "chain.pem";
const P12_FILE: &str = "device.p12";
const STATE_FILE: &str = "state.json";
const DEVICE_FILES: [&str; 5] = [KEY_FILE, CERT_FILE, CHAIN_FILE, P12_FILE, STATE_FILE];
const STATE_VERSION: u32 = 1;

/// What `certgate login` was asked for.
#[derive(Debug, Clone)]
pub struct Login {
    /// The organisation's address, e.g. `https://noord.example.org`.
    pub url: String,
    /// A credential that lasts days ("trust this device") instead of one working session.
    pub trust_device: bool,
    /// The device directory, created with mode 0700; it must not hold a device's files yet.
    pub out: PathBuf,
    /// How this device is listed in the portal; this computer's host name when `None`.
    pub name: Option<String>,
    /// Where to connect instead of asking DNS (tests).
    pub resolve: Vec<ResolveOverride>,
}

/// What `certgate renew` was asked for.
#[derive(Debug, Clone)]
pub struct Renew {
    /// The directory `certgate login` wrote.
    pub dir: PathBuf,
    /// Keep running and renew at about two thirds of each lifetime.
    pub daemon: bool,
    pub resolve: Vec<ResolveOverride>,
}

/// Everything the agent can fail with. Messages name URLs, paths and the portal's own
/// descriptions, never a device code, token, key or password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("{given:?} is not a portal address; expected https://HOST")]
    InvalidUrl { given: String },
    #[error("{url} is not an https:// address; certgate signs devices in only over https")]
    NotHttps { url: String },
    #[error("invalid device name: {0}")]
    InvalidName(NameProblem),
    #[error("{url} does not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot make a secure connection to {url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url} does not look like a certgate portal")]
    NotPortal { url: String },
    #[error("{url} is unavailable (HTTP {status}); try again later")]
    Unavailable { url: String, status: u16 },
    #[error("device sign-in is turned off for this organisation; ask its administrator")]
    DeviceFlowDisabled,
    #[error("the portal is refusing requests from this address for a while; wait a few minutes and try again")]
    RateLimited,
    #[error("the request to sign this device in was denied")]
    Denied,
    #[error("the code expired before the sign-in was approved; run `certgate login` again")]
    Expired,
    #[error("the portal no longer knows this sign-in request; run `certgate login` again")]
    UnknownRequest,
    #[error("this computer's clock is {minutes} minutes off; correct it and try again")]
    ClockSkew { minutes: i64 },
    #[error("the portal refused to renew this certificate: {reason}")]
    RenewalRefused { reason: String },
    #[error("the portal refused the request ({code}): {description}")]
    Refused { code: String, description: String },
    #[error("the portal sent a certificate that {0}")]
    BadCertificate(CertificateProblem),
    #[error("the certificate expired at {not_after} before it could be renewed (last error: {last_error}); run `certgate login` again")]
    CertificateExpired {
        not_after: String,
        last_error: String,
    },
    #[error("the certificate expired at {not_after}, the end of this device's trust period; run `certgate login` again")]
    TrustPeriodOver { not_after: String },
    #[error("{} already holds a device's files; renew them with `certgate renew --dir {}`, or choose another --out", dir.display(), dir.display())]
    AlreadyEnrolled { dir: PathBuf },
    #[error("{} is not a certgate device directory: {problem}", dir.display())]
    NotDeviceDir {
        dir: PathBuf,
        problem: DeviceDirProblem,
    },
    #[error("cannot {action} {}: {kind}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
    },
    #[error("SSL_CERT_FILE names {}, which cannot be read", path.display())]
    CaFile { path: PathBuf },
    #[error(transparent)]
    Files(#[from] CertificateError),
    #[error("cannot generate a key or certificate request: {0}")]
    Key(String),
    #[error("cannot start: {0}")]
    Startup(String),
}

/// Why a device name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than 64 characters")]
    TooLong,
    #[error("it contains control characters")]
    ControlCharacter,
}

/// Why a directory given to `renew` holds no usable device.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeviceDirProblem {
    #[error("{file} is missing (run `certgate login --out {}` first)", dir.display())]
    Missing { file: &'static str, dir: PathBuf },
    /// The JSON parser's description of what is wrong.
    #[error("{state} is not valid: {0}", state = STATE_FILE)]
    StateUnreadable(String),
    #[error(
        "{state} has version {0}, this certgate reads version {current}",
        state = STATE_FILE,
        current = STATE_VERSION
    )]
    StateVersion(u32),
    #[error("{state} names no https portal", state = STATE_FILE)]
    NoPortal,
    #[error("{key} and {cert} cannot be used for TLS", key = KEY_FILE, cert = CERT_FILE)]
    NoTlsIdentity,
}

/// Why a certificate from the portal was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    #[error("is not a PEM certificate")]
    NotPem,
    #[error("is not for this device's key")]
    WrongKey,
    #[error("comes without its issuing CA")]
    NoChain,
}

impl AgentError {
    /// Errors worth retrying later: the portal or the network, not the request or this device.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Tls { .. }
                | Self::NotPortal { .. }
                | Self::Unavailable { .. }
                | Self::RateLimited
        )
    }
}

/// A portal's address: always https, always just scheme, host and port, so the API path can be
/// put under it whatever page of the portal the user copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalUrl(Url);

impl PortalUrl {
    pub fn parse(given: &str) -> Result<Self, AgentError> {
        let invalid = || AgentError::InvalidUrl {
            given: printable(given, 100),
        };
        let url = Url::parse(given.trim()).map_err(|_| invalid())?;
        let origin = url.origin();
        if !origin.is_tuple() {
            return Err(invalid());
        }
        if url.scheme() != "https" {
            // The origin, not what was typed: that could carry a password.
            return Err(AgentError::NotHttps {
                url: format!("{}/", origin.ascii_serialization()),
            });
        }
        let base =
            Url::parse(&format!("{}/", origin.ascii_serialization())).map_err(|_| invalid())?;
        Ok(Self(base))
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        url.set_path(&format!("/{API_PATH}{path}"));
        url
    }

    fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

impl std::fmt::Display for PortalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// `--resolve HOST:PORT:ADDR`, as curl spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    host: String,
    addr: SocketAddr,
}

impl FromStr for ResolveOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wrong = || format!("{s:?} is not HOST:PORT:ADDR");
        let mut parts = s.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(wrong());
        };
        let port: u16 = port.parse().map_err(|_| wrong())?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr.parse().map_err(|_| wrong())?;
        if host.is_empty() {
            return Err(wrong());
        }
        Ok(Self {
            host: host.to_owned(),
            addr: SocketAddr::new(addr, port),
        })
    }
}

/// A value the portal gave that lets its holder act for this device; kept out of `Debug`.
/// One poll of `device/token` that did not end the flow with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPoll {
    Pending,
    SlowDown,
    Approved(EnrolmentToken),
}

/// An HTTP answer as read off the wire, before it is given a meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: StatusCode,
    /// The `Date` header, to compare clocks.
    date: Option<String>,
    body: Vec<u8>,
}

/// A decoded answer and when the portal says it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated<T> {
    pub value: T,
    pub date: Option<String>,
}

/// What `renew` needs to know about a device, in `state.json` beside its key and certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    pub version: u32,
    /// The portal, as `PortalUrl` prints it.
    pub url: String,
    pub name: String,
    pub trust: bool,
    pub device_id: String,
    pub renewal: RenewalKind,
    /// When this computer received the current certificate (unix seconds).
    pub issued_at: i64,
    /// When the current certificate expires (unix seconds).
    pub not_after: i64,
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `certgate login`: runs the device flow and writes the device directory.
pub fn login(args: Login) -> Result<(), AgentError> {
    let portal = PortalUrl::parse(&args.url)?;
    let name = match args.name {
        Some(name) => device_name(&name)?,
        None => default_device_name(),
    };
    let created = prepare_device_dir(&args.out)?;
    let result = runtime().and_then(|runtime| {
        runtime.block_on(async {
            let client = http_client(&args.resolve, None)?;
            enrol(&client, &portal, &name, args.trust_device, &args.out).await
        })
    });
    if result.is_err() && created {
        // Only an empty directory goes; remove_dir refuses anything else.
        let _ = fs::remove_dir(&args.out);
    }
    result
}

/// `certgate renew`: once, or for as long as the certificate can be kept valid.
pub fn renew(args: Renew) -> Result<(), AgentError> {
    let runtime = runtime()?;
    if args.daemon {
        runtime.block_on(renew_forever(&args.dir, &args.resolve))
    } else {
        runtime
            .block_on(renew_once(&args.dir, &args.resolve))
            .map(|renewed| println!("{}", renewed_message(&renewed)))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AgentError::Startup(e.to_string()))
}

async fn enrol(
    client: &Client,
    portal: &PortalUrl,
    name: &str,
    trust: bool,
    dir: &Path,
) -> Result<(), AgentError> {
    let authorization = authorize(client, portal, name, trust).await?;
    check_clock(authorization.date.as_deref(), OffsetDateTime::now_utc())?;
    let authorization = authorization.value;
    println!("{}", verification_prompt(&authorization));
    let token = wait_for_approval(client, portal, &authorization).await?;

    let key = new_key()?;
    let csr = certificate_request(&key, name)?;
    let issued = collect_certificate(client, portal, &token.enrolment_token, &csr).await?;
    let issued = issued.value;
    check_issued(&issued, &key)?;

    let key_pem = key.serialize_pem();
    let password = generate_password();
    let bundle = pkcs12_bundle(
        &key_pem,
        &issued.certificate,
        &issued.chain,
        &format!("certgate {}", portal.host()),
        &password,
    )?;
    let state = DeviceState {
        version: STATE_VERSION,
        url: portal.to_string(),
        name: name.to_owned(),
        trust,
        device_id: issued.device_id.clone(),
        renewal: issued.renewal,
        issued_at: OffsetDateTime::now_utc().unix_timestamp(),
        not_after: issued.not_after,
    };
    files::write_private(&dir.join(KEY_FILE), key_pem.as_bytes())?;
    files::write_public(&dir.join(CERT_FILE), issued.certificate.as_bytes())?;
    files::write_public(&dir.join(CHAIN_FILE), issued.chain.as_bytes())?;
    files::write_private(&dir.join(P12_FILE), &bundle)?;
    files::write_public(&dir.join(STATE_FILE), &state_json(&state)?)?;

    println!("{}", enrolled_summary(dir, &state, &password));
    Ok(())
}

/// Polls `device/token` until the user approves, denies, or the code expires.
async fn wait_for_approval(
    client: &Client,
    portal: &PortalUrl,
    authorization: &DeviceAuthorization,
) -> Result<EnrolmentToken, AgentError> {
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(authorization.expires_in.min(MAX_APPROVAL_WAIT));
    // The portal's interval is obeyed, but no wait is longer than the whole wait may be.
    let mut interval = Duration::from_secs(authorization.interval.clamp(1, MAX_APPROVAL_WAIT));
    loop {
        let next = tokio::time::Instant::now()
            .checked_add(interval)
            .map_or(deadline, |at| at.min(deadline));
        tokio::time::sleep_until(next).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(AgentError::Expired);
        }
        let step = match poll_token(client, portal, &authorization.device_code).await {
            Ok(TokenPoll::Approved(token)) => return Ok(token),
            Ok(poll) => PollStep::Answered(poll),
            // A sign-in is not lost to a moment without network.
            Err(e) if e.is_transient() => PollStep::Failed,
            Err(e) => return Err(e),
        };
        interval = next_poll_interval(interval, &step);
    }
}

async fn renew_once(dir: &Path, resolve: &[ResolveOverride]) -> Result<Renewed, AgentError> {
    let device = DeviceFiles::load(dir)?;
    let portal = PortalUrl::parse(&device.state.url).map_err(|_| AgentError::NotDeviceDir {
        dir: dir.to_owned(),
        problem: DeviceDirProblem::NoPortal,
    })?;
    let identity = reqwest::Identity::from_pem(device.identity_pem().as_bytes()).map_err(|_| {
        AgentError::NotDeviceDir {
            dir: dir.to_owned(),
            problem: DeviceDirProblem::NoTlsIdentity,
        }
    })?;
    let client = http_client(resolve, Some(identity))?;

    let key = new_key()?;
    let csr = certificate_request(&key, &device.state.name)?;
    let issued = request_renewal(&client, &portal, &csr).await?;
    if let Err(skew) = check_clock(issued.date.as_deref(), OffsetDateTime::now_utc()) {
        eprintln!("warning: {skew}");
    }
    let issued = issued.value;
    check_issued(&issued, &key)?;

    let previous_not_after = device.state.not_after;
    let state = DeviceState {
        device_id: issued.device_id.clone(),
        renewal: issued.renewal,
        issued_at: OffsetDateTime::now_utc().unix_timestamp(),
        not_after: issued.not_after,
        ..device.state
    };
    // Everything is written and synced before anything is replaced, so a crash can split the key
    // from its certificate only between two renames.
    let staged = [
        StagedFile::write(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?,
        StagedFile::write(&dir.join(CERT_FILE), issued.certificate.as_bytes(), 0o644)?,
        StagedFile::write(&dir.join(CHAIN_FILE), issued.chain.as_bytes(), 0o644)?,
        StagedFile::write(&dir.join(STATE_FILE), &state_json(&state)?, 0o644)?,
    ];
    for file in staged {
        file.commit()?;
    }
    sync_dir(dir)?;
    Ok(Renewed {
        previous_not_after,
        state,
    })
}

async fn renew_forever(dir: &Path, resolve: &[ResolveOverride]) -> Result<(), AgentError> {
    let state = DeviceFiles::load(dir)?.state;
    let mut not_after = state.not_after;
    let mut due = renewal_due(state.issued_at, state.not_after, jitter());
    loop {
        println!(
            "certificate valid until {}; next renewal at {}",
            when(not_after),
            due.format(&Rfc3339).unwrap_or_default()
        );
        sleep_until_wall(due).await;
        let renewed = renew_with_retries(dir, resolve, not_after).await?;
        println!("{}", renewed_message(&renewed));
        match next_step(
            &renewed,
            jitter(),
            OffsetDateTime::now_utc().unix_timestamp(),
        ) {
            DaemonStep::RenewAt(at) => {
                not_after = renewed.state.not_after;
                due = at;
            }
            DaemonStep::WaitForEnd(end) => {
                // Renewing again would only re-key, ever more often as the end nears.
                sleep_until_wall(unix_time(end)).await;
                return Err(AgentError::TrustPeriodOver {
                    not_after: when(end),
                });
            }
        }
    }
}

/// Renews, retrying what may pass (the network, the portal) with backoff until `not_after`.
async fn renew_with_retries(
    dir: &Path,
    resolve: &[ResolveOverride],
    not_after: i64,
) -> Result<Renewed, AgentError> {
    let mut retry = FIRST_RETRY;
    loop {
        match renew_once(dir, resolve).await {
            Ok(renewed) => return Ok(renewed),
            Err(e) if e.is_transient() => {
                let left = not_after - OffsetDateTime::now_utc().unix_timestamp();
                if left <= 0 {
                    return Err(AgentError::CertificateExpired {
                        not_after: when(not_after),
                        last_error: e.to_string(),
                    });
                }
                let wait = retry.min(Duration::from_secs(left.unsigned_abs()));
                eprintln!("renewal failed: {e}; retrying in {}s", wait.as_secs());
                sleep_until_wall(OffsetDateTime::now_utc() + wait).await;
                retry = next_retry(retry);
            }
            Err(e) => return Err(e),
        }
    }
}

fn jitter() -> f64 {
    rand::Rng::random_range(&mut rand::rng(), -0.1..=0.1)
}

async fn sleep_until_wall(due: OffsetDateTime) {
    loop {
        let left = due - OffsetDateTime::now_utc();
        if left <= time::Duration::ZERO {
            return;
        }
        let left = Duration::try_from(left).unwrap_or(WALL_CLOCK_STEP);
        tokio::time::sleep(left.min(WALL_CLOCK_STEP)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The portal's API

/// `POST device/authorize`: asks the portal for a user code for this device.
pub async fn authorize(
    client: &Client,
    portal: &PortalUrl,
    name: &str,
    trust: bool,
) -> Result<Dated<DeviceAuthorization>, AgentError> {
    let reply = post(
        client,
        portal,
        "device/authorize",
        None,
        &AuthorizeRequest {
            name: name.to_owned(),
            trust,
        },
    )
    .await?;
    authorization_answer(portal, reply)
}

/// `POST device/token`: has the user approved yet?
pub async fn poll_token(
    client: &Client,
    portal: &PortalUrl,
    device_code: &Secret,
) -> Result<TokenPoll, AgentError> {
    let reply = post(
        client,
        portal,
        "device/token",
        None,
        &TokenRequest {
            device_code: device_code.clone(),
        },
    )
    .await?;
    token_answer(portal, reply)
}

/// `POST device/certificate`: exchanges the enrolment token and a CSR for a certificate.
pub async fn collect_certificate(
    client: &Client,
    portal: &PortalUrl,
    enrolment_token: &Secret,
    csr: &str,
) -> Result<Dated<IssuedCertificate>, AgentError> {
    let reply = post(
        client,
        portal,
        "device/certificate",
        Some(enrolment_token),
        &CsrRequest {
            csr: csr.to_owned(),
        },
    )
    .await?;
    certificate_answer(portal, reply)
}

/// `POST device/renew`: `client` must present the current certificate and key.
pub async fn request_renewal(
    client: &Client,
    portal: &PortalUrl,
    csr: &str,
) -> Result<Dated<IssuedCertificate>, AgentError> {
    let request = CsrRequest {
        csr: csr.to_owned(),
    };
    let reply = post(client, portal, "device/renew", None, &request).await?;
    certificate_answer(portal, reply)
}

/// An HTTPS client for the portal: no redirects (a redirect is not an API answer), bounded
/// waits, the roots from the system or `SSL_CERT_FILE`, and optionally a client certificate.
pub fn http_client(
    resolve: &[ResolveOverride],
    identity: Option<reqwest::Identity>,
) -> Result<Client, AgentError> {
    // rustls-native-certs reads SSL_CERT_FILE instead of the system store; a wrong path would
    // otherwise surface as every certificate being untrusted.
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let path = PathBuf::from(path);
        if fs::metadata(&path).is_err() {
            return Err(AgentError::CaFile { path });
        }
    }
    let mut builder = Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("certgate-agent/", env!("CARGO_PKG_VERSION")));
    for entry in resolve {
        builder = builder.resolve(&entry.host, entry.addr);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| AgentError::Startup(format!("cannot set up HTTPS: {}", innermost(&e))))
}

async fn post(
    client: &Client,
    portal: &PortalUrl,
    endpoint: &str,
    bearer: Option<&Secret>,
    body: &impl Serialize,
) -> Result<Reply, AgentError> {
    let mut request = client.post(portal.endpoint(endpoint)).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(&token.0);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(portal, &e))?;
    let status = response.status();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(portal, &e))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AgentError::NotPortal {
                url: portal.to_string(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply { status, date, body })
}

/// A success body of type `T`, or certgate's error body; anything else is not certgate.
fn decode<T: serde::de::DeserializeOwned>(
    portal: &PortalUrl,
    reply: &Reply,
) -> Result<Result<T, ErrorBody>, AgentError> {
    if reply.status.is_success() {
        return serde_json::from_slice(&reply.body)
            .map(Ok)
            .map_err(|_| AgentError::NotPortal {
                url: portal.to_string(),
            });
    }
    match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(error) => Ok(Err(error)),
        // A proxy's error page while the portal is down is not a wrong address.
        Err(_) if reply.status.is_server_error() => Err(AgentError::Unavailable {
            url: portal.to_string(),
            status: reply.status.as_u16(),
        }),
        Err(_) => Err(AgentError::NotPortal {
            url: portal.to_string(),
        }),
    }
}

fn authorization_answer(
    portal: &PortalUrl,
    reply: Reply,
) -> Result<Dated<DeviceAuthorization>, AgentError> {
    match decode::<DeviceAuthorization>(portal, &reply)? {
        Ok(authorization) => {
            // The user is sent to this address; it must at least be a web address.
            match Url::parse(&authorization.verification_uri) {
                Ok(uri) if uri.scheme() == "https" => Ok(Dated {
                    value: authorization,
                    date: reply.date,
                }),
                _ => Err(AgentError::NotPortal {
                    url: portal.to_string(),
                }),
            }
        }
        Err(error) => Err(match error.error.as_str() {
            "device_flow_disabled" => AgentError::DeviceFlowDisabled,
            "slow_down" => AgentError::RateLimited,
            _ => refused(portal, &reply, error),
        }),
    }
}

fn token_answer(portal: &PortalUrl, reply: Reply) -> Result<TokenPoll, AgentError> {
    match decode::<EnrolmentToken>(portal, &reply)? {
        Ok(token) => Ok(TokenPoll::Approved(token)),
        Err(error) => match error.error.as_str() {
            "authorization_pending" => Ok(TokenPoll::Pending),
            "slow_down" => Ok(TokenPoll::SlowDown),
            "access_denied" => Err(AgentError::Denied),
            "expired_token" => Err(AgentError::Expired),
            "invalid_grant" => Err(AgentError::UnknownRequest),
            "device_flow_disabled" => Err(AgentError::DeviceFlowDisabled),
            _ => Err(refused(portal, &reply, error)),
        },
    }
}

fn certificate_answer(
    portal: &PortalUrl,
    reply: Reply,
) -> Result<Dated<IssuedCertificate>, AgentError> {
    match decode::<IssuedCertificate>(portal, &reply)? {
        Ok(issued) => Ok(Dated {
            value: issued,
            date: reply.date,
        }),
        Err(error) => Err(match error.error.as_str() {
            "renewal_refused" => AgentError::RenewalRefused {
                reason: printable(&error.error_description, MAX_DESCRIPTION_CHARS),
            },
            "slow_down" => AgentError::RateLimited,
            _ => refused(portal, &reply, error),
        }),
    }
}

/// An error code this agent has no special words for.
fn refused(portal: &PortalUrl, reply: &Reply, error: ErrorBody) -> AgentError {
    if reply.status.is_server_error() {
        return AgentError::Unavailable {
            url: portal.to_string(),
            status: reply.status.as_u16(),
        };
    }
    AgentError::Refused {
        code: printable(&error.error, 64),
        description: printable(&error.error_description, MAX_DESCRIPTION_CHARS),
    }
}

/// Says what went wrong on the way to the portal, from the deepest cause reqwest keeps.
fn transport_error(portal: &PortalUrl, error: &reqwest::Error) -> AgentError {
    let url = portal.to_string();
    if let Some(tls) = rustls_cause(error) {
        let mut reason = tls.to_string();
        if let rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired
            | rustls::CertificateError::ExpiredContext { .. }
            | rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. },
        ) = tls
        {
            reason.push_str(" (is this computer's clock right?)");
        }
        if let rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) = tls {
            reason.push_str(
                " (the portal's certificate is not from an authority this computer trusts)",
            );
        }
        return AgentError::Tls { url, reason };
    }
    let reason = if error.is_timeout() {
        "no answer in time".to_owned()
    } else {
        innermost(error)
    };
    AgentError::Unreachable { url, reason }
}

fn rustls_cause(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error keeps the error it wraps (often another io::Error) out of `source()`.
        cause = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    printable(&last.to_string(), MAX_DESCRIPTION_CHARS)
}

// ---------------------------------------------------------------------------------------------
// Pure decisions

/// What one poll of `device/token` came to, for the choice of the next interval.
#[derive(Debug)]
enum PollStep {
    Answered(TokenPoll),
    Failed,
}

/// RFC 8628 §3.5: `slow_down` adds five seconds for the rest of the flow; an unreachable portal
/// doubles the wait, up to a minute.
fn next_poll_interval(current: Duration, step: &PollStep) -> Duration {
    match step {
        PollStep::Answered(TokenPoll::SlowDown) => current.saturating_add(SLOW_DOWN_STEP),
        PollStep::Answered(_) => current,
        PollStep::Failed => current
            .saturating_mul(2)
            .min(MAX_POLL_INTERVAL)
            .max(current),
    }
}

/// A renewal done, and when the certificate it replaced would have ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Renewed {
    previous_not_after: i64,
    state: DeviceState,
}

impl Renewed {
    /// A personal device's trust period does not move: its renewals only re-key.
    fn extended(&self) -> bool {
        self.state.not_after > self.previous_not_after
    }
}

/// What the daemon does after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaemonStep {
    RenewAt(OffsetDateTime),
    /// The certificate cannot be extended; nothing is left to do before it ends.
    WaitForEnd(i64),
}

fn next_step(renewed: &Renewed, jitter: f64, now: i64) -> DaemonStep {
    let not_after = renewed.state.not_after;
    if renewed.extended() {
        return DaemonStep::RenewAt(renewal_due(renewed.state.issued_at, not_after, jitter));
    }
    match renewed.state.renewal {
        // A personal device's trust period ends where the user chose.
        RenewalKind::Personal => DaemonStep::WaitForEnd(not_after),
        // A group tablet not used since the last renewal is extended again once it is used
        // (after a holiday, say): try again, at most a day later and before it ends.
        RenewalKind::Group => {
            let left = not_after.saturating_sub(now);
            let wait = (left / 2).min(GROUP_RETRY_SECS);
            if wait < 60 {
                DaemonStep::WaitForEnd(not_after)
            } else {
                DaemonStep::RenewAt(unix_time(now.saturating_add(wait)))
            }
        }
    }
}

fn renewed_message(renewed: &Renewed) -> String {
    let until = when(renewed.state.not_after);
    if renewed.extended() {
        format!("renewed: the new certificate is valid until {until}")
    } else if renewed.state.renewal == RenewalKind::Group {
        format!(
            "renewed with a new key; the certificate still ends at {until}, as the tablet has not \
             been used since the last renewal; it is renewed again once it is"
        )
    } else {
        format!(
            "renewed with a new key; the certificate still ends at {until}, the end of this \
             device's trust period: run `certgate login` again before then"
        )
    }
}

/// Backoff between failed renewals.
fn next_retry(current: Duration) -> Duration {
    (current * 2).min(MAX_RETRY)
}

/// Refuses a local clock more than five minutes from the portal's `Date`. A missing or
/// unreadable header proves nothing, so it passes.
pub fn check_clock(server_date: Option<&str>, now: OffsetDateTime) -> Result<(), AgentError> {
    let Some(server) = server_date.and_then(parse_http_date) else {
        return Ok(());
    };
    let offset = (now - server).abs();
    if offset > MAX_CLOCK_SKEW {
        let minutes = (offset.whole_seconds() + 30) / 60;
        return Err(AgentError::ClockSkew { minutes });
    }
    Ok(())
}

/// RFC 9110 §5.6.7 IMF-fixdate, the only form a current server sends.
fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(value.trim(), format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// When to renew: about two thirds into the certificate's life, moved by `jitter` (a fraction
/// of that, clamped to ±10%) so that devices issued together do not renew together.
pub fn renewal_due(issued_at: i64, not_after: i64, jitter: f64) -> OffsetDateTime {
    let lifetime = (not_after - issued_at).max(0);
    let factor = 2.0 / 3.0 * (1.0 + jitter.clamp(-0.1, 0.1));
    // Lifetimes are at most years in seconds: exact in an f64.
    let offset = (lifetime as f64 * factor) as i64;
    unix_time(issued_at.saturating_add(offset))
}

fn unix_time(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What the user sees while the flow waits: where to go, the code, and a QR code of the address
/// alone. A QR code with the user code filled in would let anyone who sends such a code to a
/// victim have them approve the sender's device with one scan.
pub fn verification_prompt(authorization: &DeviceAuthorization) -> String {
    let uri = printable(&authorization.verification_uri, 500);
    let code = printable(&authorization.user_code, 32);
    let minutes = authorization.expires_in.div_ceil(60);
    format!(
        "To sign this device in, open this address on a phone or computer:\n\n    {uri}\n\n\
         sign in, and enter the code\n\n    {code}\n\n{qr}\n\
         The code is valid for {minutes} minute{s}. Waiting for approval…",
        qr = qr_code(&authorization.verification_uri),
        s = if minutes == 1 { "" } else { "s" },
    )
}

/// The address as a QR code in Unicode half blocks, light modules drawn, for dark terminals.
fn qr_code(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        // Only an address too long for any QR code; the text above still says it.
        Err(_) => String::new(),
    }
}

fn enrolled_summary(dir: &Path, state: &DeviceState, password: &str) -> String {
    let d = dir.display();
    format!(
        "Signed in. This device's certificate is valid until {until}.\n\
         \n    {d}/{KEY_FILE}     private key (mode 0600; never share it)\
         \n    {d}/{CERT_FILE}    certificate\
         \n    {d}/{CHAIN_FILE}   issuing CA and root\
         \n    {d}/{P12_FILE}  key and certificates for importing into a browser or the system\
         \n\nPassword of {P12_FILE}, shown only now: {password}\n\
         \nKeep the certificate renewed with: certgate renew --dir {d} --daemon",
        until = when(state.not_after),
    )
}

fn when(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// A device name as given with `--name`.
fn device_name(given: &str) -> Result<String, AgentError> {
    let name = given.trim();
    if name.is_empty() {
        return Err(AgentError::InvalidName(NameProblem::Empty));
    }
    if name.chars().any(char::is_control) {
        return Err(AgentError::InvalidName(NameProblem::ControlCharacter));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AgentError::InvalidName(NameProblem::TooLong));
    }
    Ok(name.to_owned())
}

/// The host name, cut to what the portal keeps; a fixed name where there is none.
fn default_device_name() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if host.is_empty() {
        "certgate device".to_owned()
    } else {
        host
    }
}

/// Text from elsewhere made safe for a terminal: no control characters, bounded length.
fn printable(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if text.chars().filter(|c| !c.is_control()).count() > max_chars {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Keys and files

fn new_key() -> Result<KeyPair, AgentError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Key(e.to_string()))
}

/// A PKCS#10 request for `key`. The portal decides the certificate's subject; the CN only
/// helps someone reading the request.
fn certificate_request(key: &KeyPair, name: &str) -> Result<String, AgentError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| AgentError::Key(e.to_string()))
}

/// A certificate is stored only if it is for the key just made and comes with its chain.
fn check_issued(issued: &IssuedCertificate, key: &KeyPair) -> Result<(), AgentError> {
    let leaf = CertificateDer::pem_slice_iter(issued.certificate.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or(AgentError::BadCertificate(CertificateProblem::NotPem))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|_| AgentError::BadCertificate(CertificateProblem::NotPem))?;
    if parsed.public_key().subject_public_key.as_ref() != key.der_bytes() {
        return Err(AgentError::BadCertificate(CertificateProblem::WrongKey));
    }
    let chain_ok = CertificateDer::pem_slice_iter(issued.chain.as_bytes())
        .next()
        .is_some_and(|c| c.is_ok());
    if !chain_ok {
        return Err(AgentError::BadCertificate(CertificateProblem::NoChain));
    }
    Ok(())
}

/// Makes `dir` (mode 0700) unless it exists; an existing one must not hold a device's files.
/// Returns whether it was made here.
fn prepare_device_dir(dir: &Path) -> Result<bool, AgentError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if DEVICE_FILES.iter().any(|f| dir.join(f).exists()) {
                return Err(AgentError::AlreadyEnrolled {
                    dir: dir.to_owned(),
                });
            }
            Ok(false)
        }
        Ok(_) => Err(AgentError::Io {
            action: "use",
            path: dir.to_owned(),
            kind: io::ErrorKind::NotADirectory,
        }),
        Err(_) => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AgentError::Io {
                    action: "create",
                    path: dir.to_owned(),
                    kind: e.kind(),
                })?;
            Ok(true)
        }
    }
}

/// What `renew` reads from a device directory.
struct DeviceFiles {
    state: DeviceState,
    key_pem: String,
    cert_pem: String,
    chain_pem: String,
}

impl DeviceFiles {
    fn load(dir: &Path) -> Result<Self, AgentError> {
        let read = |file: &'static str| {
            let path = dir.join(file);
            fs::read_to_string(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => AgentError::NotDeviceDir {
                    dir: dir.to_owned(),
                    problem: DeviceDirProblem::Missing {
                        file,
                        dir: dir.to_owned(),
                    },
                },
                kind => AgentError::Io {
                    action: "read",
                    path,
                    kind,
                },
            })
        };
        let state =
            parse_state(&read(STATE_FILE)?).map_err(|problem| AgentError::NotDeviceDir {
                dir: dir.to_owned(),
                problem,
            })?;
        Ok(Self {
            state,
            key_pem: read(KEY_FILE)?,
            cert_pem: read(CERT_FILE)?,
            // The chain helps the gateway build the path; without it the leaf may still do.
            chain_pem: read(CHAIN_FILE).unwrap_or_default(),
        })
    }

    /// Leaf, issuing CA and key, as reqwest takes a client identity.
    fn identity_pem(&self) -> String {
        format!("{}\n{}\n{}", self.cert_pem, self.chain_pem, self.key_pem)
    }
}

fn parse_state(text: &str) -> Result<DeviceState, DeviceDirProblem> {
    let state: DeviceState =
        serde_json::from_str(text).map_err(|e| DeviceDirProblem::StateUnreadable(e.to_string()))?;
    if state.version != STATE_VERSION {
        return Err(DeviceDirProblem::StateVersion(state.version));
    }
    Ok(state)
}

fn state_json(state: &DeviceState) -> Result<Vec<u8>, AgentError> {
    let mut json =
        serde_json::to_vec_pretty(state).map_err(|e| AgentError::Startup(e.to_string()))?;
    json.push(b'\n');
    Ok(json)
}

/// The new content of a file, written beside it with its final mode from the start and synced;
/// [`StagedFile::commit`] renames it over the old file, so a reader sees the old content or the
/// new, never half. Dropped uncommitted, it is removed.
struct StagedFile {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl StagedFile {
    fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<Self, AgentError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, &e))?;
        // From here on, dropping `staged` cleans up.
        let staged = Self {
            temp,
            path: path.to_owned(),
            committed: false,
        };
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("write", &staged.temp, &e))?;
        Ok(staged)
    }

    fn commit(mut self) -> Result<(), AgentError> {
        fs::rename(&self.temp, &self.path).map_err(|e| io_error("replace", &self.path, &e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn io_error(action: &'static str, path: &Path, error: &io::Error) -> AgentError {
    AgentError::Io {
        action,
        path: path.to_owned(),
        kind: error.kind(),
    }
}

/// Makes the renames durable.
fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::Io {
            action: "sync",
            path: dir.to_owned(),
            kind: e.kind(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use time::macros::datetime;

    use super::*;

    fn portal() -> PortalUrl {
        PortalUrl::parse("https://noord.test:8443").unwrap()
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            date: Some("Tue, 14 Jan 2025 10:00:00 GMT".to_owned()),
            body: body.as_bytes().to_vec(),
        }
    }

    fn error_reply(status: u16, code: &str) -> Reply {
        reply(
            status,
            &format!(r#"{{"error":"{code}","error_description":"because"}}"#),
        )
    }

    fn authorization() -> DeviceAuthorization {
        DeviceAuthorization {
            device_code: Secret("dc-secret".to_owned()),
            user_code: "ABCD-EFGH".to_owned(),
            verification_uri: "https://noord.test/.certgate/device".to_owned(),
            expires_in: 600,
            interval: 5,
        }
    }

    #[test]
    fn only_https_portals_are_accepted() {
        assert_eq!(
            PortalUrl::parse("http://noord.test"),
            Err(AgentError::NotHttps {
                url: "http://noord.test/".to_owned()
            })
        );
        // The message names the origin only, never credentials typed into the URL.
        let err = PortalUrl::parse("http://user:hunter2@noord.test/x").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(matches!(
            PortalUrl::parse("noord.test"),
            Err(AgentError::InvalidUrl { .. })
        ));
        assert!(matches!(
            PortalUrl::parse("ftp://noord.test"),
            Err(AgentError::NotHttps { .. })
        ));
    }

    #[test]
    fn the_api_lives_under_the_origin_whatever_page_was_given() {
        let portal = PortalUrl::parse("https://Noord.test:8443/.certgate/login?x=1#y").unwrap();
        assert_eq!(portal.to_string(), "https://noord.test:8443/");
        assert_eq!(
            portal.endpoint("device/token").as_str(),
            "https://noord.test:8443/.certgate/api/v1/device/token"
        );
        let default_port = PortalUrl::parse("https://noord.test:443").unwrap();
        assert_eq!(default_port.to_string(), "https://noord.test/");
    }

    #[test]
    fn the_prompt_shows_address_and_code_and_a_qr_code_of_the_address_alone() {
        let prompt = verification_prompt(&authorization());
        assert!(prompt.contains("\n    https://noord.test/.certgate/device\n"));
        assert!(prompt.contains("\n    ABCD-EFGH\n"));
        assert!(prompt.contains("valid for 10 minutes"));
        assert!(prompt.contains(&qr_code("https://noord.test/.certgate/device")));
        assert!(!qr_code("https://noord.test/.certgate/device").is_empty());
        assert!(!prompt.contains("dc-secret"));
        // Nothing in it pairs the address with the code.
        assert!(!prompt.contains("device?"));
        for url_with_code in [
            "https://noord.test/.certgate/device?user_code=ABCD-EFGH",
            "https://noord.test/.certgate/device?code=ABCD-EFGH",
        ] {
            assert!(!prompt.contains(&qr_code(url_with_code)));
        }
    }

    #[test]
    fn the_prompt_cannot_carry_terminal_escapes() {
        let mut a = authorization();
        a.user_code = "AB\u{1b}[2JCD".to_owned();
        assert!(!verification_prompt(&a).contains('\u{1b}'));
    }

    #[test]
    fn slow_down_adds_five_seconds_for_good_and_pending_keeps_the_pace() {
        let five = Duration::from_secs(5);
        let slowed = next_poll_interval(five, &PollStep::Answered(TokenPoll::SlowDown));
        assert_eq!(slowed, Duration::from_secs(10));
        assert_eq!(
            next_poll_interval(slowed, &PollStep::Answered(TokenPoll::Pending)),
            Duration::from_secs(10)
        );
        assert_eq!(
            next_poll_interval(slowed, &PollStep::Answered(TokenPoll::SlowDown)),
            Duration::from_secs(15)
        );
        assert_eq!(
            next_poll_interval(five, &PollStep::Failed),
            Duration::from_secs(10)
        );
        assert_eq!(
            next_poll_interval(Duration::from_secs(50), &PollStep::Failed),
            MAX_POLL_INTERVAL
        );
        // A portal that asked for more than the cap is still obeyed.
        assert_eq!(
            next_poll_interval(Duration::from_secs(90), &PollStep::Failed),
            Duration::from_secs(90)
        );
        // And one that asked for forever does not make the agent panic.
        for step in [PollStep::Answered(TokenPoll::SlowDown), PollStep::Failed] {
            assert_eq!(next_poll_interval(Duration::MAX, &step), Duration::MAX);
        }
    }

    #[test]
    fn token_answers_mean_what_rfc_8628_says() {
        let p = portal();
        assert_eq!(
            token_answer(&p, error_reply(400, "authorization_pending")),
            Ok(TokenPoll::Pending)
        );
        assert_eq!(
            token_answer(&p, error_reply(400, "slow_down")),
            Ok(TokenPoll::SlowDown)
        );
        assert_eq!(
            token_answer(&p, error_reply(429, "slow_down")),
            Ok(TokenPoll::SlowDown)
        );
        assert_eq!(
            token_answer(&p, error_reply(400, "access_denied")),
            Err(AgentError::Denied)
        );
        assert_eq!(
            token_answer(&p, error_reply(400, "expired_token")),
            Err(AgentError::Expired)
        );
        assert_eq!(
            token_answer(&p, error_reply(400, "invalid_grant")),
            Err(AgentError::UnknownRequest)
        );
        let approved = token_answer(
            &p,
            reply(200, r#"{"enrolment_token":"t0k","expires_in":300}"#),
        )
        .unwrap();
        assert_eq!(
            approved,
            TokenPoll::Approved(EnrolmentToken {
                enrolment_token: Secret("t0k".to_owned()),
                expires_in: 300
            })
        );
        assert!(!format!("{approved:?}").contains("t0k"));
    }

    #[test]
    fn answers_that_are_not_certgate_json_are_named_as_such() {
        let p = portal();
        let html = reply(404, "<html><body>Not Found</body></html>");
        assert_eq!(
            authorization_answer(&p, html).unwrap_err().to_string(),
            "https://noord.test:8443/ does not look like a certgate portal"
        );
        assert_eq!(
            authorization_answer(&p, reply(200, "<html></html>")),
            Err(AgentError::NotPortal { url: p.to_string() })
        );
        assert_eq!(
            authorization_answer(&p, reply(502, "Bad Gateway")),
            Err(AgentError::Unavailable {
                url: p.to_string(),
                status: 502
            })
        );
        let not_https = reply(
            200,
            r#"{"device_code":"d","user_code":"A","verification_uri":"javascript:x","expires_in":600,"interval":5}"#,
        );
        assert!(matches!(
            authorization_answer(&p, not_https),
            Err(AgentError::NotPortal { .. })
        ));
    }

    #[test]
    fn authorize_answers() {
        let p = portal();
        assert_eq!(
            authorization_answer(&p, error_reply(404, "device_flow_disabled")),
            Err(AgentError::DeviceFlowDisabled)
        );
        assert_eq!(
            authorization_answer(&p, error_reply(429, "slow_down")),
            Err(AgentError::RateLimited)
        );
        let ok = authorization_answer(
            &p,
            reply(
                200,
                r#"{"device_code":"dc-secret","user_code":"ABCD-EFGH","verification_uri":"https://noord.test/.certgate/device","expires_in":600}"#,
            ),
        )
        .unwrap();
        assert_eq!(ok.value.interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(ok.date.as_deref(), Some("Tue, 14 Jan 2025 10:00:00 GMT"));
    }

    #[test]
    fn certificate_answers() {
        let p = portal();
        assert_eq!(
            certificate_answer(
                &p,
                reply(
                    403,
                    r#"{"error":"renewal_refused","error_description":"the device was revoked\u001b[0m"}"#
                )
            ),
            Err(AgentError::RenewalRefused {
                reason: "the device was revoked[0m".to_owned()
            })
        );
        assert_eq!(
            certificate_answer(&p, error_reply(400, "invalid_csr")),
            Err(AgentError::Refused {
                code: "invalid_csr".to_owned(),
                description: "because".to_owned()
            })
        );
        let issued = certificate_answer(
            &p,
            reply(
                200,
                r#"{"certificate":"c","chain":"ch","device_id":"d1","not_after":1736900000,"renewal":"group"}"#,
            ),
        )
        .unwrap();
        assert_eq!(issued.value.renewal, RenewalKind::Group);
        assert_eq!(issued.value.not_after, 1_736_900_000);
    }

    #[test]
    fn a_clock_more_than_five_minutes_off_is_refused() {
        let server = "Tue, 14 Jan 2025 10:00:00 GMT";
        assert_eq!(
            check_clock(Some(server), datetime!(2025-01-14 10:04:59 UTC)),
            Ok(())
        );
        assert_eq!(
            check_clock(Some(server), datetime!(2025-01-14 09:55:00 UTC)),
            Ok(())
        );
        assert_eq!(
            check_clock(Some(server), datetime!(2025-01-14 10:12:10 UTC)),
            Err(AgentError::ClockSkew { minutes: 12 })
        );
        let behind = check_clock(Some(server), datetime!(2025-01-14 07:00:00 UTC)).unwrap_err();
        assert_eq!(
            behind.to_string(),
            "this computer's clock is 180 minutes off; correct it and try again"
        );
        // No header, or one that cannot be read, proves nothing.
        assert_eq!(check_clock(None, datetime!(2000-01-01 0:00 UTC)), Ok(()));
        assert_eq!(
            check_clock(Some("yesterday"), datetime!(2000-01-01 0:00 UTC)),
            Ok(())
        );
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime_give_or_take_ten_percent() {
        let issued = 1_700_000_000;
        let twelve_hours = 12 * 3600;
        let at =
            |jitter| renewal_due(issued, issued + twelve_hours, jitter).unix_timestamp() - issued;
        assert_eq!(at(0.0), 8 * 3600);
        assert_eq!(at(0.1), 8 * 3600 + 48 * 60);
        assert_eq!(at(-0.1), 8 * 3600 - 48 * 60);
        assert_eq!(at(5.0), at(0.1));
        // A certificate already past its end is due at once.
        assert_eq!(
            renewal_due(issued, issued - 10, 0.0).unix_timestamp(),
            issued
        );
        assert_eq!(next_retry(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(next_retry(Duration::from_secs(200)), MAX_RETRY);
    }

    #[test]
    fn the_daemon_stops_renewing_a_personal_certificate_that_cannot_be_extended() {
        let state = DeviceState {
            version: STATE_VERSION,
            url: "https://noord.test/".to_owned(),
            name: "laptop".to_owned(),
            trust: true,
            device_id: "dev-1".to_owned(),
            renewal: RenewalKind::Personal,
            issued_at: 1_700_000_000,
            not_after: 1_700_000_000 + 3 * 3600,
        };
        let extended = Renewed {
            previous_not_after: 1_700_000_000 + 3600,
            state: state.clone(),
        };
        assert_eq!(
            next_step(&extended, 0.0, 1_700_000_000),
            DaemonStep::RenewAt(unix_time(1_700_000_000 + 2 * 3600))
        );
        assert!(
            renewed_message(&extended).starts_with("renewed: the new certificate is valid until")
        );
        let rekeyed_only = Renewed {
            previous_not_after: state.not_after,
            state,
        };
        assert_eq!(
            next_step(&rekeyed_only, 0.0, 1_700_000_000),
            DaemonStep::WaitForEnd(1_700_000_000 + 3 * 3600)
        );
        assert!(renewed_message(&rekeyed_only).contains("run `certgate login` again"));
    }

    #[test]
    fn a_group_tablet_unused_over_a_holiday_keeps_trying_to_renew() {
        let day = 86_400;
        let start = 1_700_000_000;
        // Renewed on day 77 without use since day 35: still ends on day 95.
        let unused = Renewed {
            previous_not_after: start + 95 * day,
            state: DeviceState {
                version: STATE_VERSION,
                url: "https://noord.test/".to_owned(),
                name: "tablet-groep-3".to_owned(),
                trust: true,
                device_id: "dev-1".to_owned(),
                renewal: RenewalKind::Group,
                issued_at: start + 77 * day,
                not_after: start + 95 * day,
            },
        };
        let now = start + 77 * day;
        assert_eq!(
            next_step(&unused, 0.0, now),
            DaemonStep::RenewAt(unix_time(now + day)),
            "tried again the next day, so use on day 80 extends it"
        );
        assert!(!renewed_message(&unused).contains("certgate login"));
        // Near its end, more often; at its very end, nothing is left to do.
        let near = start + 95 * day - 2 * 3600;
        assert_eq!(
            next_step(&unused, 0.0, near),
            DaemonStep::RenewAt(unix_time(near + 3600))
        );
        assert_eq!(
            next_step(&unused, 0.0, start + 95 * day - 30),
            DaemonStep::WaitForEnd(start + 95 * day)
        );
    }

    #[test]
    fn state_json_round_trips_and_rejects_strangers() {
        let state = DeviceState {
            version: STATE_VERSION,
            url: "https://noord.test:8443/".to_owned(),
            name: "tablet-3".to_owned(),
            trust: true,
            device_id: "dev-1".to_owned(),
            renewal: RenewalKind::Personal,
            issued_at: 1_700_000_000,
            not_after: 1_700_604_800,
        };
        let json = String::from_utf8(state_json(&state).unwrap()).unwrap();
        assert!(json.contains(r#""renewal": "personal""#), "{json}");
        assert_eq!(parse_state(&json), Ok(state.clone()));
        let unknown = json.replacen('{', r#"{"extra": 1,"#, 1);
        assert!(matches!(
            parse_state(&unknown),
            Err(DeviceDirProblem::StateUnreadable(_))
        ));
        let future = json.replace(r#""version": 1"#, r#""version": 2"#);
        let too_new = parse_state(&future).unwrap_err();
        assert_eq!(too_new, DeviceDirProblem::StateVersion(2));
        assert_eq!(
            too_new.to_string(),
            "state.json has version 2, this certgate reads version 1"
        );
    }

    #[test]
    fn resolve_is_parsed_like_curl() {
        assert_eq!(
            "noord.test:8443:127.0.0.1".parse(),
            Ok(ResolveOverride {
                host: "noord.test".to_owned(),
                addr: "127.0.0.1:8443".parse().unwrap()
            })
        );
        assert_eq!(
            "noord.test:8443:[::1]"
                .parse::<ResolveOverride>()
                .unwrap()
                .addr,
            "[::1]:8443".parse().unwrap()
        );
        assert_eq!(
            "noord.test:8443:::1"
                .parse::<ResolveOverride>()
                .unwrap()
                .addr,
            "[::1]:8443".parse().unwrap()
        );
        assert!("noord.test:127.0.0.1".parse::<ResolveOverride>().is_err());
        assert!(":1:127.0.0.1".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn device_names_are_checked() {
        assert_eq!(device_name("  tablet 3 "), Ok("tablet 3".to_owned()));
        assert_eq!(
            device_name(" "),
            Err(AgentError::InvalidName(NameProblem::Empty))
        );
        assert_eq!(
            device_name(&"é".repeat(65)),
            Err(AgentError::InvalidName(NameProblem::TooLong))
        );
        assert!(device_name(&"é".repeat(64)).is_ok());
        assert_eq!(
            device_name("a\nb"),
            Err(AgentError::InvalidName(NameProblem::ControlCharacter))
        );
        let default = default_device_name();
        assert!(device_name(&default).is_ok(), "{default:?}");
    }

    #[test]
    fn an_existing_device_directory_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/device");
        assert_eq!(prepare_device_dir(&new), Ok(true));
        assert_eq!(
            fs::metadata(&new).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(prepare_device_dir(&new), Ok(false));
        fs::write(new.join(KEY_FILE), "x").unwrap();
        assert_eq!(
            prepare_device_dir(&new),
            Err(AgentError::AlreadyEnrolled { dir: new.clone() })
        );
    }

    #[test]
    fn replaced_files_keep_their_mode_and_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join(KEY_FILE);
        fs::write(&key, "old").unwrap();
        let staged = StagedFile::write(&key, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&key).unwrap(), "old");
        staged.commit().unwrap();
        assert_eq!(fs::read_to_string(&key).unwrap(), "new");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        // Abandoned, a staged file leaves nothing behind.
        drop(StagedFile::write(&key, b"newer", 0o600).unwrap());
        assert_eq!(fs::read_to_string(&key).unwrap(), "new");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_certificate_must_be_for_the_new_key() {
        let key = new_key().unwrap();
        let csr = certificate_request(&key, "tablet").unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let self_signed = CertificateParams::default()
            .self_signed(&key)
            .unwrap()
            .pem();
        let issued = IssuedCertificate {
            certificate: self_signed.clone(),
            chain: self_signed.clone(),
            device_id: "d".to_owned(),
            serial: String::new(),
            not_after: 0,
            renewal: RenewalKind::Personal,
        };
        assert_eq!(check_issued(&issued, &key), Ok(()));
        let other = new_key().unwrap();
        assert_eq!(
            check_issued(&issued, &other),
            Err(AgentError::BadCertificate(CertificateProblem::WrongKey))
        );
        let no_chain = IssuedCertificate {
            chain: String::new(),
            ..issued.clone()
        };
        assert_eq!(
            check_issued(&no_chain, &key),
            Err(AgentError::BadCertificate(CertificateProblem::NoChain))
        );
        let garbage = IssuedCertificate {
            certificate: "nope".to_owned(),
            ..issued
        };
        assert_eq!(
            check_issued(&garbage, &key),
            Err(AgentError::BadCertificate(CertificateProblem::NotPem))
        );
        // And what login writes can be turned into a TLS identity for renewal.
        let files = DeviceFiles {
            state: DeviceState {
                version: STATE_VERSION,
                url: String::new(),
                name: String::new(),
                trust: false,
                device_id: String::new(),
                renewal: RenewalKind::Personal,
                issued_at: 0,
                not_after: 0,
            },
            key_pem: key.serialize_pem(),
            cert_pem: self_signed.clone(),
            chain_pem: self_signed,
        };
        assert!(reqwest::Identity::from_pem(files.identity_pem().as_bytes()).is_ok());
    }
}
