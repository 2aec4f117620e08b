//! certgate's own certificate authority: a root CA that only signs the issuing CA, and the
//! issuing CA that signs server and device certificates. Owns the CA directory layout
//! (`root.pem`, `root.key`, `issuing.pem`, `issuing.key`) and the content of every certificate.

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certgate_policies::MAX_CREDENTIAL_LIFETIME;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{OffsetDateTime, UtcOffset};

use crate::claims::{self, Serial, DEVICE_URN_PREFIX};
use crate::csr::CertificateRequest;
use crate::error::{CertificateError, FileProblem, IoAction};
use crate::files;

pub const ROOT_CERT_FILE: &str = "root.pem";
pub const ROOT_KEY_FILE: &str = "root.key";
pub const ISSUING_CERT_FILE: &str = "issuing.pem";
pub const ISSUING_KEY_FILE: &str = "issuing.key";

const ROOT_COMMON_NAME: &str = "certgate root CA";
const ISSUING_COMMON_NAME: &str = "certgate issuing CA";
const ROOT_LIFETIME: time::Duration = time::Duration::days(20 * 365);
const ISSUING_LIFETIME: time::Duration = time::Duration::days(5 * 365);

/// How far `notBefore` lies before the moment of issue, so a device whose clock runs a little
/// behind accepts a certificate it has just received.
pub const CLOCK_SKEW_ALLOWANCE: time::Duration = time::Duration::minutes(5);

/// certgate's CA, loaded from its directory. Holds the issuing key only: the root key is needed
/// once, by [`CertificateAuthority::init`], and may then be moved offline.
pub struct CertificateAuthority {
    /// Every root in `root.pem`; the first is the current one. Several roots may be listed
    /// while a root rollover is under way, and all of them stay trusted.
    roots: Vec<CertificateDer<'static>>,
    root_pem: String,
    issuing: CertificateDer<'static>,
    issuing_pem: String,
    /// Every issuing CA in `issuing.pem`: the current one first, then those of earlier
    /// rollovers whose certificates are still honoured until `certgate ca retire-issuing`.
    honoured: Vec<CertificateDer<'static>>,
    issuing_not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// Who a device certificate is for. Checked when a certificate is issued: organisation and
/// device id are limited to `a-z 0-9 - _ .`, the user name to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSubject {
    pub org: String,
    pub user: String,
    pub device_id: String,
}

/// A certificate certgate signed for a key held elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The new certificate followed by the issuing CA: what a TLS peer presents.
    pub cert_pem: String,
    /// The new certificate alone.
    pub cert_der: CertificateDer<'static>,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A certificate together with the private key certgate generated for it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedKeyPair {
    /// The new certificate followed by the issuing CA: what a TLS peer presents.
    pub cert_pem: String,
    /// PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The new certificate alone.
    pub cert_der: CertificateDer<'static>,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for IssuedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKeyPair")
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new root and issuing CA in `dir` (created if needed) and writes the four files.
    /// Refuses, changing nothing, if any of them already exists.
    pub fn init(dir: &Path, now: OffsetDateTime) -> Result<Self, CertificateError> {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|err| CertificateError::io(IoAction::Create, dir, &err))?;
        }
        let paths = CaPaths::new(dir);
        for path in paths.all() {
            if path.exists() {
                return Err(CertificateError::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
        }

        let now = whole_seconds_utc(now);
        let root_key = KeyPair::generate()?;
        let mut root_params = ca_params(ROOT_COMMON_NAME, now, ROOT_LIFETIME)?;
        // The root signs exactly one level of CA below it.
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let issuing_key = KeyPair::generate()?;
        let mut issuing_params = ca_params(ISSUING_COMMON_NAME, now, ISSUING_LIFETIME)?;
        issuing_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        issuing_params.use_authority_key_identifier_extension = true;
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root_issuer)?;

        write_all_new(&[
            (&paths.root_key, root_issuer.key().serialize_pem(), true),
            (&paths.issuing_key, issuing_key.serialize_pem(), true),
            (&paths.root_cert, root_cert.pem(), false),
            (&paths.issuing_cert, issuing_cert.pem(), false),
        ])?;
        Self::open(dir)
    }

    /// Loads the CA from `dir`. Reads `root.pem`, `issuing.pem` and `issuing.key`; checks that
    /// the key belongs to the issuing certificate and that a root signed it.
    pub fn open(dir: &Path) -> Result<Self, CertificateError> {
        let paths = CaPaths::new(dir);
        let root_pem = files::read_to_string(&paths.root_cert)?;
        let roots = pem_certificates(&root_pem, &paths.root_cert)?;
        let issuing_file = files::read_to_string(&paths.issuing_cert)?;
        // Only the first certificate of issuing.pem is ours to sign with; after a rollover the
        // previous issuing CAs follow it, still honoured, under the same root.
        let honoured = pem_certificates(&issuing_file, &paths.issuing_cert)?;
        let key_pem = files::read_to_string(&paths.issuing_key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| {
            CertificateError::invalid_file(&paths.issuing_key, FileProblem::InvalidPrivateKey)
        })?;

        let invalid_issuing =
            |problem| CertificateError::invalid_file(&paths.issuing_cert, problem);
        for der in &honoured {
            let (_, parsed) = x509_parser::parse_x509_certificate(der)
                .map_err(|_| invalid_issuing(FileProblem::InvalidCertificate))?;
            if !parsed.is_ca() {
                return Err(invalid_issuing(FileProblem::NotCa));
            }
            let signed_by_a_root = roots.iter().any(|root| {
                x509_parser::parse_x509_certificate(root)
                    .is_ok_and(|(_, root)| parsed.verify_signature(Some(root.public_key())).is_ok())
            });
            if !signed_by_a_root {
                return Err(invalid_issuing(FileProblem::NotSignedByRoot));
            }
        }
        // The one `issuing.key` belongs to signs: the first, except halfway through a rollover,
        // when the new certificate is listed and its key not yet in place.
        let issuing = honoured
            .iter()
            .find(|der| public_key_of(der).is_some_and(|public| public == key.der_bytes()))
            .cloned()
            .ok_or_else(|| {
                CertificateError::invalid_file(
                    &paths.issuing_key,
                    FileProblem::KeyDoesNotMatchCertificate,
                )
            })?;
        let issuing_not_after = IssuingCa::of(&issuing)
            .ok_or_else(|| invalid_issuing(FileProblem::InvalidCertificate))?
            .not_after;

        let issuer = Issuer::from_ca_cert_der(&issuing, key)
            .map_err(|_| invalid_issuing(FileProblem::InvalidCertificate))?;
        Ok(Self {
            roots,
            root_pem,
            issuing_pem: pem_of(&issuing),
            issuing,
            honoured,
            issuing_not_after,
            issuer,
        })
    }

    /// A TLS server certificate for `dns_names` and `ips` (EKU serverAuth), with a new P-256
    /// key. The common name is the first DNS name, or the first address if there is none.
    /// Like every certificate it issues, it starts five minutes before `now` and ends no later
    /// than the issuing CA.
    pub fn issue_server_certificate(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedKeyPair, CertificateError> {
        let common_name = match (dns_names.first(), ips.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return Err(CertificateError::NoServerNames),
        };
        let mut params = self.leaf_params(lifetime, now)?;
        // Clients match on the SANs; a CN past the X.520 bound would only make strict parsers
        // reject the certificate, so a very long first name goes without one.
        if common_name.chars().count() <= claims::MAX_NAME_CHARS {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
        }
        for name in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns_name(name)?));
        }
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_with_new_key(&params)
    }

    /// A device certificate for a key held elsewhere (the key of a CSR).
    pub fn issue_device_certificate(
        &self,
        subject: &DeviceSubject,
        public_key: &impl PublicKeyData,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CertificateError> {
        let params = self.device_params(subject, lifetime, now)?;
        self.sign(&params, public_key)
    }

    /// A device certificate for the key of a verified signing request, valid until `not_after`
    /// (cut off at the issuing CA's end). The end is explicit so a renewal can keep the end of
    /// the trust window it renews instead of extending it. Subject, names and extensions are
    /// those of [`Self::issue_device_certificate`]; nothing the request asked for is copied.
    pub fn issue_for_request(
        &self,
        subject: &DeviceSubject,
        request: &CertificateRequest,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CertificateError> {
        validate_subject(subject)?;
        let mut params = self.leaf_params_until(not_after, now)?;
        add_device_identity(&mut params, subject)?;
        self.sign(&params, request)
    }

    /// A device certificate with a new P-256 key generated here, e.g. for a PKCS#12 bundle.
    pub fn issue_device_key_pair(
        &self,
        subject: &DeviceSubject,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedKeyPair, CertificateError> {
        let params = self.device_params(subject, lifetime, now)?;
        self.sign_with_new_key(&params)
    }

    /// The current root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The current root certificate, DER.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        // `open` refuses a root.pem without certificates.
        &self.roots[0]
    }

    /// The issuing CA certificate that signs new certificates, PEM.
    pub fn issuing_pem(&self) -> &str {
        &self.issuing_pem
    }

    /// The issuing CA certificate that signs new certificates, DER.
    pub fn issuing_der(&self) -> &CertificateDer<'static> {
        &self.issuing
    }

    /// Issuing CA followed by the root(s): what a client needs to verify certgate's certificates.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.issuing_pem, self.root_pem)
    }

    /// When the issuing CA expires; nothing it signs is valid past this moment.
    pub fn issuing_not_after(&self) -> OffsetDateTime {
        self.issuing_not_after
    }

    /// The certificates a verifier of device certificates should trust: every issuing CA in
    /// `issuing.pem`, the current one and those of earlier rollovers not yet retired. Not the
    /// root: a certificate from a retired issuing CA chains to it, and must be refused.
    pub fn trust_anchor_ders(&self) -> &[CertificateDer<'static>] {
        &self.honoured
    }

    /// The honoured issuing CAs as `issuing.pem` lists them, the newest first.
    pub fn issuing_cas(&self) -> Vec<IssuingCa> {
        self.honoured.iter().filter_map(IssuingCa::of).collect()
    }

    /// Makes a new issuing CA under the current root, which signs from now on: writes its key
    /// to `issuing.key` and puts it first in `issuing.pem`, followed by the issuing CAs there
    /// that have not expired, so certificates they signed stay valid until they expire or
    /// [`CertificateAuthority::retire_previous_issuing`] is run. Needs `root.key`. Each file is
    /// written aside and renamed into place, `issuing.pem` first: read between the two renames
    /// (or left so by a crash), the directory lists the new CA and still signs with the old.
    pub fn rotate_issuing(dir: &Path, now: OffsetDateTime) -> Result<Self, CertificateError> {
        let paths = CaPaths::new(dir);
        let current = Self::open(dir)?;
        let root_key_pem = files::read_to_string(&paths.root_key)?;
        let root_key = KeyPair::from_pem(&root_key_pem).map_err(|_| {
            CertificateError::invalid_file(&paths.root_key, FileProblem::InvalidPrivateKey)
        })?;
        if root_key.der_bytes() != public_key_of(current.root_der()).unwrap_or_default() {
            return Err(CertificateError::invalid_file(
                &paths.root_key,
                FileProblem::KeyDoesNotMatchCertificate,
            ));
        }
        let root_issuer = Issuer::from_ca_cert_der(current.root_der(), root_key).map_err(|_| {
            CertificateError::invalid_file(&paths.root_cert, FileProblem::InvalidCertificate)
        })?;
        let now = whole_seconds_utc(now);
        let issuing_key = KeyPair::generate()?;
        let mut params = ca_params(ISSUING_COMMON_NAME, now, ISSUING_LIFETIME)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let issuing_cert = params.signed_by(&issuing_key, &root_issuer)?;
        let mut issuing_file = issuing_cert.pem();
        for der in &current.honoured {
            if IssuingCa::of(der).is_some_and(|ca| ca.not_after > now) {
                issuing_file.push_str(&pem_of(der));
            }
        }
        files::replace_public(&paths.issuing_cert, issuing_file.as_bytes())?;
        files::replace_private(&paths.issuing_key, issuing_key.serialize_pem().as_bytes())?;
        Self::open(dir)
    }

    /// Stops honouring every issuing CA but the one that signs: certificates they signed are
    /// refused from now on. Returns those retired (none when there were none).
    pub fn retire_previous_issuing(dir: &Path) -> Result<Vec<IssuingCa>, CertificateError> {
        let current = Self::open(dir)?;
        let retired: Vec<IssuingCa> = current
            .honoured
            .iter()
            .filter(|der| *der != &current.issuing)
            .filter_map(IssuingCa::of)
            .collect();
        if !retired.is_empty() {
            let paths = CaPaths::new(dir);
            files::replace_public(&paths.issuing_cert, current.issuing_pem.as_bytes())?;
        }
        Ok(retired)
    }

    fn device_params(
        &self,
        subject: &DeviceSubject,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<CertificateParams, CertificateError> {
        validate_subject(subject)?;
        let mut params = self.leaf_params(lifetime, now)?;
        add_device_identity(&mut params, subject)?;
        Ok(params)
    }

    /// [`Self::leaf_params_until`] for a certificate that lives `lifetime` from `now`.
    fn leaf_params(
        &self,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<CertificateParams, CertificateError> {
        let now = self.issuing_time(now)?;
        let lifetime =
            time::Duration::try_from(lifetime).map_err(|_| CertificateError::InvalidLifetime)?;
        if lifetime.is_zero() {
            return Err(CertificateError::InvalidLifetime);
        }
        let not_after = now
            .checked_add(lifetime)
            .filter(|t| t.year() <= 9999)
            .ok_or(CertificateError::InvalidLifetime)?;
        self.leaf_params_until(not_after, now)
    }

    /// What every end-entity certificate shares: random serial, backdated start, an end cut off
    /// at the issuing CA's end, digitalSignature, and the issuer's key identifier. Refuses an
    /// end that is not after `now`, or further away than [`MAX_CREDENTIAL_LIFETIME`] (a
    /// revocation would lapse before the certificate).
    fn leaf_params_until(
        &self,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<CertificateParams, CertificateError> {
        let now = self.issuing_time(now)?;
        // A certificate outliving its issuer would fail verification at the issuer's end
        // anyway; stopping there keeps `not_after` truthful. Rounding down to whole seconds
        // (what the certificate holds) never moves the end later than asked.
        let not_after = whole_seconds_utc(not_after).min(self.issuing_not_after);
        if not_after <= now || not_after - now > MAX_CREDENTIAL_LIFETIME {
            return Err(CertificateError::InvalidLifetime);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.serial_number = Some(random_serial());
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// `now` in whole seconds, UTC, if the issuing CA is still valid then.
    fn issuing_time(&self, now: OffsetDateTime) -> Result<OffsetDateTime, CertificateError> {
        let now = whole_seconds_utc(now);
        if now >= self.issuing_not_after {
            return Err(CertificateError::IssuerExpired {
                not_after: self.issuing_not_after,
            });
        }
        Ok(now)
    }

    fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> Result<IssuedCertificate, CertificateError> {
        let cert = params.signed_by(public_key, &self.issuer)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|serial| Serial::from_bytes(serial.as_ref()))
            .transpose()?
            .ok_or_else(|| CertificateError::Generation("no serial number".to_owned()))?;
        Ok(IssuedCertificate {
            cert_pem: format!("{}{}", cert.pem(), self.issuing_pem),
            cert_der: cert.der().clone(),
            serial,
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }

    fn sign_with_new_key(
        &self,
        params: &CertificateParams,
    ) -> Result<IssuedKeyPair, CertificateError> {
        let key = KeyPair::generate()?;
        let issued = self.sign(params, &key)?;
        Ok(IssuedKeyPair {
            cert_pem: issued.cert_pem,
            key_pem: key.serialize_pem(),
            cert_der: issued.cert_der,
            serial: issued.serial,
            not_before: issued.not_before,
            not_after: issued.not_after,
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("roots", &self.roots.len())
            .field("issuing_not_after", &self.issuing_not_after)
            .finish_non_exhaustive()
    }
}

/// An issuing CA as `certgate ca` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuingCa {
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl IssuingCa {
    fn of(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(IssuingCa {
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }
}

fn public_key_of(der: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.public_key().subject_public_key.as_ref().to_vec())
}

struct CaPaths {
    root_cert: PathBuf,
    root_key: PathBuf,
    issuing_cert: PathBuf,
    issuing_key: PathBuf,
}

impl CaPaths {
    fn new(dir: &Path) -> Self {
        Self {
            root_cert: dir.join(ROOT_CERT_FILE),
            root_key: dir.join(ROOT_KEY_FILE),
            issuing_cert: dir.join(ISSUING_CERT_FILE),
            issuing_key: dir.join(ISSUING_KEY_FILE),
        }
    }

    fn all(&self) -> [&Path; 4] {
        [
            &self.root_cert,
            &self.root_key,
            &self.issuing_cert,
            &self.issuing_key,
        ]
    }
}

/// Writes every file or, if one fails, removes those this call created, so a failed `init` can
/// simply be run again.
fn write_all_new(files: &[(&Path, String, bool)]) -> Result<(), CertificateError> {
    for (done, (path, contents, private)) in files.iter().enumerate() {
        let written = if *private {
            files::write_private(path, contents.as_bytes())
        } else {
            files::write_public(path, contents.as_bytes())
        };
        if let Err(err) = written {
            for (created, _, _) in &files[..done] {
                let _ = std::fs::remove_file(created);
            }
            return Err(err);
        }
    }
    Ok(())
}

fn ca_params(
    common_name: &str,
    now: OffsetDateTime,
    lifetime: time::Duration,
) -> Result<CertificateParams, CertificateError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.serial_number = Some(random_serial());
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = now
        .checked_add(lifetime)
        .ok_or(CertificateError::InvalidLifetime)?;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn validate_subject(subject: &DeviceSubject) -> Result<(), CertificateError> {
    claims::validate_org(&subject.org)?;
    claims::validate_user(&subject.user)?;
    claims::validate_device_id(&subject.device_id)?;
    Ok(())
}

/// What makes leaf parameters a device certificate's: CN and O, the device URN, clientAuth.
/// `subject` must have passed [`validate_subject`].
fn add_device_identity(
    params: &mut CertificateParams,
    subject: &DeviceSubject,
) -> Result<(), CertificateError> {
    params
        .distinguished_name
        .push(DnType::CommonName, subject.user.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, subject.org.as_str());
    let urn = format!("{DEVICE_URN_PREFIX}{}:{}", subject.org, subject.device_id);
    params.subject_alt_names = vec![SanType::URI(urn.try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(())
}

/// 128 random bits; DER adds a zero byte when the top bit is set, so it stays positive.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SerialNumber::from_slice(&bytes)
}

/// Certificates store whole seconds in UTC; dropping the rest here makes the times we report
/// equal the times in the certificate.
fn whole_seconds_utc(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(0).unwrap_or(t)
}

fn dns_name(name: &str) -> Result<rcgen::string::Ia5String, CertificateError> {
    let plausible = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b));
    plausible
        .then(|| rcgen::string::Ia5String::try_from(name).ok())
        .flatten()
        .ok_or_else(|| CertificateError::InvalidDnsName {
            name: name.to_owned(),
        })
}

fn pem_certificates(
    pem: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertificateError::invalid_file(path, FileProblem::InvalidCertificate))?;
    if certs.is_empty() {
        return Err(CertificateError::invalid_file(
            path,
            FileProblem::NoCertificate,
        ));
    }
    Ok(certs)
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests;
