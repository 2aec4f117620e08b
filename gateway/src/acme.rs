//! Server certificates from an ACME CA (`[server.acme]`): one certificate for the configured
//! hosts, obtained with HTTP-01 challenges that the plain-HTTP listener answers, kept in
//! `<data dir>/acme/`, renewed `renew_before` its expiry and picked up by the certificate
//! resolver's file watch, without a restart. Until the first arrives, a certificate from
//! certgate's own CA stands in, so the listener starts at once.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certgate_certs::CaHandle;
use certgate_policies::config::AcmeConfig;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use parking_lot::RwLock;
use pingora::server::ShutdownWatch;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::tls::ServerCertificateSource;

/// Why a certificate was not obtained (or a stand-in not made).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("a stand-in certificate: {0}")]
    StandIn(#[from] certgate_certs::CertificateError),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACME client: {0}")]
    Client(#[source] instant_acme::Error),
    #[error("new ACME account at {directory}: {source}")]
    NewAccount {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("the ACME account could not be stored: {0}")]
    StoredAccount(#[source] serde_json::Error),
    #[error("the CA no longer knows the account: {0}")]
    AccountForgotten(instant_acme::Problem),
    /// A step of the order failed: `step` names it.
    #[error("{step}: {source}")]
    Order {
        step: &'static str,
        source: instant_acme::Error,
    },
    #[error("an authorization is {0:?}")]
    Authorization(AuthorizationStatus),
    #[error("the CA offers no HTTP-01 challenge")]
    NoHttp01,
    #[error(
        "the CA did not validate the challenges (order {0:?}); it must reach \
         http://HOST{CHALLENGE_PATH} on server.http_listen"
    )]
    NotValidated(OrderStatus),
    #[error("the CA sent no readable certificate")]
    NoCertificate,
    #[error("the CA did not finish the order in 5 minutes")]
    TimedOut,
}

/// An order step's error, named.
fn step(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Order { step, source }
}

/// The path of an HTTP-01 challenge request, before its token.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// How long a failed order waits before the next try, at first; it doubles up to an hour.
const FIRST_RETRY: Duration = Duration::from_secs(30);
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// An order the CA has not finished by then is given up and tried again later.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// The stand-in's lifetime: long enough to make the CA reachable again, and past the 14 days
/// at which the expiry alert fires, so a fresh start does not page anyone.
const STAND_IN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// The key authorizations of the challenges in progress, by token: what the plain-HTTP
/// listener answers at `/.well-known/acme-challenge/<token>`.
#[derive(Default)]
pub struct AcmeChallenges {
    tokens: RwLock<HashMap<String, String>>,
}

impl AcmeChallenges {
    pub fn answer(&self, token: &str) -> Option<String> {
        self.tokens.read().get(token).cloned()
    }

    fn publish(&self, token: &str, key_authorization: &str) {
        self.tokens
            .write()
            .insert(token.to_owned(), key_authorization.to_owned());
    }
}

/// The tokens one order published, withdrawn when the order ends however it ends (done,
/// failed, timed out or dropped at shutdown).
struct Published<'a> {
    challenges: &'a AcmeChallenges,
    tokens: Vec<String>,
}

impl Published<'_> {
    fn publish(&mut self, token: &str, key_authorization: &str) {
        self.challenges.publish(token, key_authorization);
        self.tokens.push(token.to_owned());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        let mut map = self.challenges.tokens.write();
        for token in &self.tokens {
            map.remove(token);
        }
    }
}

/// The certificate file: the chain, then its key, replaced whole (so a reader never sees a new
/// key beside an old certificate). Mode 0600.
pub fn certificate_file(data_dir: &Path) -> PathBuf {
    data_dir.join("acme").join("certificate.pem")
}

fn account_file(data_dir: &Path) -> PathBuf {
    data_dir.join("acme").join("account.json")
}

/// The resolver's entry for the ACME certificate.
pub fn source(config: &AcmeConfig, data_dir: &Path) -> ServerCertificateSource {
    let file = certificate_file(data_dir);
    ServerCertificateSource {
        hosts: config.hosts.clone(),
        cert: file.clone(),
        key: file,
    }
}

/// Writes a stand-in from certgate's own CA when there is no certificate yet.
pub fn ensure_stand_in(
    config: &AcmeConfig,
    data_dir: &Path,
    ca: &CaHandle,
) -> Result<(), AcmeError> {
    let file = certificate_file(data_dir);
    if file.exists() {
        return Ok(());
    }
    let issued = ca.load().issue_server_certificate(
        &config.hosts,
        &[],
        STAND_IN_LIFETIME,
        time::OffsetDateTime::now_utc(),
    )?;
    write_private(&file, &format!("{}{}", issued.cert_pem, issued.key_pem))
}

/// Creates `path` (and its directory, 0700) with mode 0600 through a file beside it renamed
/// over it.
fn write_private(path: &Path, contents: &str) -> Result<(), AcmeError> {
    write_private_io(path, contents).map_err(|source| AcmeError::File {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private_io(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let aside = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&aside, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&aside);
    }
    written
}

/// The first certificate of a PEM text: the leaf of a chain.
fn first_certificate(pem: &[u8]) -> Option<rustls_pki_types::CertificateDer<'static>> {
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
}

/// The account as stored: which directory it belongs to, so a changed directory makes a new one.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Obtains and renews the certificate.
pub struct AcmeManager {
    config: AcmeConfig,
    data_dir: PathBuf,
    challenges: Arc<AcmeChallenges>,
    ca: Arc<CaHandle>,
}

impl AcmeManager {
    pub fn new(
        config: AcmeConfig,
        data_dir: PathBuf,
        challenges: Arc<AcmeChallenges>,
        ca: Arc<CaHandle>,
    ) -> Self {
        AcmeManager {
            config,
            data_dir,
            challenges,
            ca,
        }
    }

    /// Until shutdown: sleeps until the certificate is due (re-checking at least hourly), then
    /// orders a new one; a failure is retried after 30 s, doubling up to an hour.
    pub async fn run(self, mut shutdown: ShutdownWatch) {
        let mut retry = FIRST_RETRY;
        loop {
            let wait = self.due_in();
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(LONGEST_WAIT)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let ordered = tokio::select! {
                ordered = tokio::time::timeout(ORDER_TIMEOUT, self.order()) => {
                    ordered.unwrap_or(Err(AcmeError::TimedOut))
                }
                _ = shutdown.changed() => return,
            };
            match ordered {
                // Its lifetime is no longer than renew_before: ordering again at once would go
                // on for ever, so it waits as after a failure.
                Ok(not_after) if self.due_in().is_zero() => tracing::warn!(
                    hosts = ?self.config.hosts,
                    %not_after,
                    retry_in_seconds = retry.as_secs(),
                    "ACME certificate obtained, but due for renewal at once: make \
                     server.acme.renew_before shorter than its lifetime"
                ),
                Ok(not_after) => {
                    retry = FIRST_RETRY;
                    tracing::info!(
                        hosts = ?self.config.hosts,
                        %not_after,
                        "ACME certificate obtained"
                    );
                    continue;
                }
                Err(error) => tracing::error!(
                    %error,
                    hosts = ?self.config.hosts,
                    retry_in_seconds = retry.as_secs(),
                    "ACME certificate not obtained; the current certificate stays"
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => return,
            }
            retry = (retry * 2).min(LONGEST_WAIT);
        }
    }

    /// How long until the certificate should be replaced: at once when it is the stand-in,
    /// names other hosts or cannot be read; else when `renew_before` of it is left.
    fn due_in(&self) -> Duration {
        let Ok(pem) = std::fs::read(certificate_file(&self.data_dir)) else {
            return Duration::ZERO;
        };
        let Some(leaf) = first_certificate(&pem) else {
            return Duration::ZERO;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&leaf) else {
            return Duration::ZERO;
        };
        let ours = self.ca.load().trust_anchor_ders().iter().any(|issuing| {
            x509_parser::parse_x509_certificate(issuing)
                .is_ok_and(|(_, issuing)| issuing.subject().as_raw() == cert.issuer().as_raw())
        });
        let mut names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            Some(dns.to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut wanted = self.config.hosts.clone();
        names.sort();
        wanted.sort();
        if ours || names != wanted {
            return Duration::ZERO;
        }
        let renew_at = cert.validity().not_after.timestamp()
            - i64::try_from(self.config.renew_before.as_secs()).unwrap_or(i64::MAX);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Duration::from_secs(u64::try_from(renew_at - now).unwrap_or(0))
    }

    /// One order, start to finish; the new certificate's expiry.
    async fn order(&self) -> Result<time::OffsetDateTime, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .hosts
            .iter()
            .map(|host| Identifier::Dns(host.clone()))
            .collect();
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            Ok(order) => order,
            Err(instant_acme::Error::Api(problem))
                if problem.r#type.as_deref()
                    == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
            {
                // The CA forgot the account (deactivated, or a private CA reset): the next
                // try registers a new one.
                let _ = std::fs::remove_file(account_file(&self.data_dir));
                return Err(AcmeError::AccountForgotten(problem));
            }
            Err(error) => return Err(step("new order")(error)),
        };
        let mut published = Published {
            challenges: &self.challenges,
            tokens: Vec::new(),
        };
        let outcome = async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.map_err(step("authorization"))?;
                match authorization.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    status => return Err(AcmeError::Authorization(status)),
                }
                let mut challenge = authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or(AcmeError::NoHttp01)?;
                let token = challenge.token.clone();
                published.publish(&token, challenge.key_authorization().as_str());
                challenge.set_ready().await.map_err(step("challenge"))?;
            }
            let status = order
                .poll_ready(&RetryPolicy::default())
                .await
                .map_err(step("waiting for validation"))?;
            if status != OrderStatus::Ready {
                return Err(AcmeError::NotValidated(status));
            }
            let key_pem = order.finalize().await.map_err(step("finalize"))?;
            let chain_pem = order
                .poll_certificate(&RetryPolicy::default())
                .await
                .map_err(step("certificate"))?;
            Ok((chain_pem, key_pem))
        }
        .await;
        drop(published);
        let (chain_pem, key_pem) = outcome?;
        let not_after = first_certificate(chain_pem.as_bytes())
            .and_then(|leaf| {
                x509_parser::parse_x509_certificate(&leaf)
                    .ok()
                    .map(|(_, cert)| cert.validity().not_after.to_datetime())
            })
            .ok_or(AcmeError::NoCertificate)?;
        let file = certificate_file(&self.data_dir);
        write_private(&file, &format!("{chain_pem}{key_pem}"))?;
        Ok(not_after)
    }

    /// The stored account for this directory, or a new one (stored 0600).
    async fn account(&self) -> Result<Account, AcmeError> {
        let file = account_file(&self.data_dir);
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(stored) = serde_json::from_str::<StoredAccount>(&text) {
                if stored.directory == self.config.directory {
                    return self
                        .builder()?
                        .from_credentials(stored.credentials)
                        .await
                        .map_err(step("ACME account"));
                }
            }
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                None,
            )
            .await
            .map_err(|source| AcmeError::NewAccount {
                directory: self.config.directory.clone(),
                source,
            })?;
        let stored = StoredAccount {
            directory: self.config.directory.clone(),
            credentials,
        };
        let text = serde_json::to_string(&stored).map_err(AcmeError::StoredAccount)?;
        write_private(&file, &text)?;
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, AcmeError> {
        match &self.config.ca_file {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        }
        .map_err(AcmeError::Client)
    }
}
