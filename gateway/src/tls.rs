//! TLS for the HTTPS listener: server certificates chosen by SNI and reloaded without a restart,
//! and client certificates asked for but not required. Chain and time failures do not abort
//! the handshake (a user cannot read a TLS alert); they are marked on the connection so the
//! request lands on the portal. The handshake signature is always checked by rustls.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use certgate_certs::DeviceClaims;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::metrics::Metrics;

/// What a client certificate turned out to be, as `X-Certgate-Client-Cert` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    Valid,
    Expired,
    Foreign,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Valid => "valid",
            CertificateStatus::Expired => "expired",
            CertificateStatus::Foreign => "foreign",
        }
    }
}

/// The client certificate of a connection, examined once at the end of the handshake.
#[derive(Debug, Clone)]
pub struct PresentedCertificate {
    pub status: CertificateStatus,
    /// certgate's claims; `None` for a certificate that does not carry them.
    pub claims: Option<DeviceClaims>,
    /// Lowercase hex, as revocations are recorded.
    pub serial_hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("client CA: {0}")]
    ClientCa(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// One `[[server.certificates]]` entry.
#[derive(Debug, Clone)]
pub struct ServerCertificateSource {
    pub hosts: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The loaded server certificates, by host name.
#[derive(Debug)]
struct ServerCertificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.org` stored as `example.org`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// Each entry's first host name and when its certificate expires (Unix seconds).
    expiries: Vec<(String, i64)>,
}

impl ServerCertificates {
    fn load(sources: &[ServerCertificateSource]) -> Result<Self, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        let mut expiries = Vec::with_capacity(sources.len());
        for source in sources {
            let certs = read_certificates(&source.cert)?;
            let not_after = certs
                .first()
                .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
                .map(|(_, parsed)| parsed.validity().not_after.timestamp())
                .ok_or_else(|| file_error(&source.cert, "not a readable X.509 certificate"))?;
            let name = source.hosts.first().cloned().unwrap_or_default();
            expiries.push((name, not_after));
            let key = read_private_key(&source.key)?;
            let signing_key = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| file_error(&source.key, format!("unusable private key: {e}")))?;
            let certified = Arc::new(CertifiedKey::new(certs, signing_key));
            certified.keys_match().map_err(|_| {
                file_error(
                    &source.key,
                    format!("does not match {}", source.cert.display()),
                )
            })?;
            for host in &source.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_owned(), Arc::clone(&certified)),
                    None => exact.insert(host, Arc::clone(&certified)),
                };
            }
            default.get_or_insert(certified);
        }
        let default = default.ok_or_else(|| TlsError::File {
            path: PathBuf::from("certgate.toml"),
            message: "no [[server.certificates]]".into(),
        })?;
        Ok(ServerCertificates {
            exact,
            wildcard,
            default,
            expiries,
        })
    }

    fn choose(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return Arc::clone(&self.default);
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Arc::clone(key);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return Arc::clone(key);
            }
        }
        Arc::clone(&self.default)
    }
}

/// Chooses the server certificate by SNI; `reload` swaps in a new set atomically.
#[derive(Debug)]
pub struct CertificateResolver {
    sources: Vec<ServerCertificateSource>,
    current: ArcSwap<ServerCertificates>,
}

impl CertificateResolver {
    pub fn new(sources: Vec<ServerCertificateSource>) -> Result<Self, TlsError> {
        let current = ArcSwap::from_pointee(ServerCertificates::load(&sources)?);
        Ok(CertificateResolver { sources, current })
    }

    /// Re-reads every certificate and key; on error the previous set stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(Arc::new(ServerCertificates::load(&self.sources)?));
        Ok(())
    }

    /// Each `[[server.certificates]]` entry's first host name and its certificate's expiry, as
    /// served now (Unix seconds).
    pub fn expiries(&self) -> Vec<(String, i64)> {
        self.current.load().expiries.clone()
    }

    /// Sets `certgate_server_certificate_not_after_timestamp_seconds` to what is served now.
    pub fn export_expiries(&self, metrics: &Metrics) {
        for (name, not_after) in self.expiries() {
            metrics
                .server_certificate_not_after
                .with_label_values(&[name.as_str()])
                .set(not_after as f64);
        }
    }

    pub fn watched_paths(&self) -> Vec<PathBuf> {
        self.sources
            .iter()
            .flat_map(|s| [s.cert.clone(), s.key.clone()])
            .collect()
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().choose(client_hello.server_name()))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| file_error(path, "is not a PEM certificate file"))?;
    if certs.is_empty() {
        return Err(file_error(path, "contains no certificate"));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|_| file_error(path, "is not a PEM private key file"))?
        .ok_or_else(|| file_error(path, "contains no private key"))
}

/// Builds the verifier for certgate's client certificates from the CA's trust anchors (DER).
pub fn client_verifier(
    anchors: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in anchors {
        roots
            .add(der.clone())
            .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    Ok(verifier)
}

/// The verifier of device certificates, replaced when the CA's honoured issuing CAs change (a
/// rollover or a retirement), so the next handshake is judged by the new set.
pub struct ClientTrust {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl ClientTrust {
    pub fn new(anchors: &[CertificateDer<'static>]) -> Result<Self, TlsError> {
        Ok(ClientTrust {
            current: ArcSwap::from_pointee(client_verifier(anchors)?),
        })
    }

    /// Trusts `anchors` from now on; on error the previous ones stay.
    pub fn replace(&self, anchors: &[CertificateDer<'static>]) -> Result<(), TlsError> {
        self.current.store(Arc::new(client_verifier(anchors)?));
        Ok(())
    }

    /// The verifier in force.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.load())
    }
}

/// Asks for a client certificate, lets chain and time failures through (they are judged per
/// request), and leaves the proof of key possession to rustls.
#[derive(Debug)]
pub struct LenientClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl LenientClientVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        LenientClientVerifier { inner }
    }
}

impl ClientCertVerifier for LenientClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is verified once, after the handshake, by `ClientCertificateInspector`,
        // which classifies the outcome (valid, expired, foreign) for the request to judge.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Runs at the end of every handshake: classifies the client certificate and parses its claims
/// once, attaching them to the connection for every request on it.
pub struct ClientCertificateInspector {
    trust: Arc<ClientTrust>,
    metrics: Arc<Metrics>,
    /// Whether a certificate is valid or expired is decided at this clock's time, as admission.
    clock: Arc<dyn certgate_store::Clock>,
}

impl ClientCertificateInspector {
    pub fn new(
        trust: Arc<ClientTrust>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn certgate_store::Clock>,
    ) -> Self {
        ClientCertificateInspector {
            trust,
            metrics,
            clock,
        }
    }

    /// Classifies a client's certificate chain and parses its claims: the per-connection work
    /// (public for the benchmarks).
    pub fn inspect(&self, chain: &[CertificateDer<'static>]) -> Option<PresentedCertificate> {
        let (leaf, intermediates) = chain.split_first()?;
        let claims = DeviceClaims::from_der(leaf.as_ref()).ok();
        let now =
            UnixTime::since_unix_epoch(std::time::Duration::from_millis(self.clock.unix_millis()));
        let status = match self.verify_at(leaf, intermediates, now) {
            Ok(()) => CertificateStatus::Valid,
            // webpki checks validity times before the issuer, so "expired" alone does not mean
            // our CA signed it: check the chain again at a moment inside the validity period.
            Err(TimeProblem::Yes) => match &claims {
                Some(c)
                    if self
                        .verify_at(leaf, intermediates, moment_within(c))
                        .is_ok() =>
                {
                    CertificateStatus::Expired
                }
                _ => CertificateStatus::Foreign,
            },
            Err(TimeProblem::No) => CertificateStatus::Foreign,
        };
        let serial_hex = match &claims {
            Some(claims) => claims.serial.to_string(),
            None => serial_of(leaf.as_ref()).unwrap_or_default(),
        };
        Some(PresentedCertificate {
            status,
            // Claims of a certificate our CA did not sign are whatever its maker wrote.
            claims: claims.filter(|_| status != CertificateStatus::Foreign),
            serial_hex,
        })
    }

    fn verify_at(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        at: UnixTime,
    ) -> Result<(), TimeProblem> {
        match self
            .trust
            .current
            .load()
            .verify_client_cert(leaf, intermediates, at)
        {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }
                | rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. },
            )) => Err(TimeProblem::Yes),
            Err(_) => Err(TimeProblem::No),
        }
    }
}

/// Whether a failed verification was about time.
enum TimeProblem {
    Yes,
    No,
}

/// A second inside the certificate's validity period.
fn moment_within(claims: &DeviceClaims) -> UnixTime {
    let middle = claims.not_before.unix_timestamp() / 2 + claims.not_after.unix_timestamp() / 2;
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(middle.max(0).unsigned_abs()))
}

/// When a device certificate was issued: `notBefore` is backdated for clock skew.
pub fn issued_at(claims: &DeviceClaims) -> i64 {
    (claims.not_before + certgate_certs::authority::CLOCK_SKEW_ALLOWANCE).unix_timestamp()
}

fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let bytes = cert.raw_serial();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    Some(hex::encode(&bytes[start..]))
}

#[async_trait]
impl TlsAccept for ClientCertificateInspector {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let presented = tls
            .peer_cert_chain_der()
            .and_then(|chain| self.inspect(chain));
        let label = presented.as_ref().map_or("none", |p| p.status.as_str());
        self.metrics
            .tls_handshakes
            .with_label_values(&[label])
            .inc();
        presented.map(|p| Arc::new(p) as Arc<dyn Any + Send + Sync>)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use certgate_certs::{CertificateAuthority, DeviceSubject};

    fn inspector(ca: &CertificateAuthority) -> ClientCertificateInspector {
        ClientCertificateInspector::new(
            Arc::new(ClientTrust::new(ca.trust_anchor_ders()).unwrap()),
            Arc::new(Metrics::new().unwrap()),
            Arc::new(certgate_store::SystemClock),
        )
    }

    fn subject() -> DeviceSubject {
        DeviceSubject {
            org: "noord".into(),
            user: "anna".into(),
            device_id: "tablet-1".into(),
        }
    }

    #[test]
    fn classifies_valid_expired_and_forged_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let ca = CertificateAuthority::init(&dir.path().join("ca"), now - time::Duration::days(2))
            .unwrap();
        let inspector = inspector(&ca);
        let hour = std::time::Duration::from_secs(3600);

        let valid = ca.issue_device_key_pair(&subject(), hour, now).unwrap();
        let seen = inspector
            .inspect(std::slice::from_ref(&valid.cert_der))
            .unwrap();
        assert_eq!(seen.status, CertificateStatus::Valid);
        assert_eq!(seen.claims.unwrap().user, "anna");

        let expired = ca
            .issue_device_key_pair(&subject(), hour, now - time::Duration::hours(3))
            .unwrap();
        let seen = inspector
            .inspect(std::slice::from_ref(&expired.cert_der))
            .unwrap();
        assert_eq!(seen.status, CertificateStatus::Expired);
        assert!(
            seen.claims.is_some(),
            "our CA signed it, so its claims are known"
        );

        // Someone else's expired certificate with certgate's claims in it: webpki reports the
        // time first, but it is foreign and its claims are not believed.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "anna");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "noord");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "urn:certgate:noord:tablet-1".try_into().unwrap(),
        )];
        params.not_before = now - time::Duration::days(2);
        params.not_after = now - time::Duration::days(1);
        let forged = params.self_signed(&key).unwrap();
        let seen = inspector.inspect(&[forged.der().clone()]).unwrap();
        assert_eq!(seen.status, CertificateStatus::Foreign);
        assert!(seen.claims.is_none());
    }
}
