//! The one error type of this crate, with nested reasons so callers and tests can match the exact
//! cause. No message ever carries key material, a password or a token: only paths, field names
//! and public values (names, serials).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while creating, loading or using certgate's keys and certificates.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A file certgate would create is already there; nothing was overwritten.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },

    /// A file certgate needs is not there.
    #[error("{} does not exist", path.display())]
    MissingFile { path: PathBuf },

    /// Reading or writing a file failed for another reason.
    #[error("cannot {action} {}: {}", path.display(), io_reason(*kind, path))]
    Io {
        action: IoAction,
        path: PathBuf,
        kind: io::ErrorKind,
    },

    /// A file exists but does not hold what it should.
    #[error("{}: {problem}", path.display())]
    InvalidFile { path: PathBuf, problem: FileProblem },

    /// A name that would go into a certificate or token is not acceptable.
    #[error("invalid {0}")]
    InvalidSubject(#[from] SubjectError),

    /// A server certificate was requested for no name at all.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,

    /// A DNS name for a server certificate is not a plain ASCII host name.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName { name: String },

    /// The lifetime is zero or does not fit in a date.
    #[error("certificate lifetime must be positive and end before year 9999")]
    InvalidLifetime,

    /// The issuing CA has expired, so nothing it signs would verify.
    #[error("the issuing CA expired at {not_after}; roll it over before issuing certificates")]
    IssuerExpired { not_after: time::OffsetDateTime },

    /// The certificate library refused to build or sign a certificate.
    #[error("cannot generate certificate: {0}")]
    Generation(String),

    /// A certificate presented as a device certificate is not one certgate issued.
    #[error("not a certgate device certificate: {0}")]
    NotDeviceCertificate(DeviceCertificateProblem),

    /// A serial number could not be read.
    #[error("invalid serial number: {0}")]
    InvalidSerial(#[from] SerialError),

    /// Input to a PKCS#12 bundle was unusable.
    #[error("cannot build PKCS#12 bundle: {0}")]
    Pkcs12(Pkcs12Problem),

    /// A certificate signing request was refused.
    #[error(transparent)]
    Request(#[from] crate::csr::CertificateRequestError),

    /// A browser credential token could not be made or was refused.
    #[error(transparent)]
    Token(crate::token::TokenError),
}

/// What certgate was doing when an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    Create,
    Read,
    Write,
}

impl std::fmt::Display for IoAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Write => "write",
        })
    }
}

/// Why a key, certificate or credential-key file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FileProblem {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("not a valid PEM private key (PKCS#8 expected)")]
    InvalidPrivateKey,
    #[error("not a valid X.509 certificate")]
    InvalidCertificate,
    #[error("certificate is not a CA certificate")]
    NotCa,
    #[error("private key does not belong to the certificate")]
    KeyDoesNotMatchCertificate,
    #[error("issuing CA certificate is not signed by the root CA")]
    NotSignedByRoot,
    #[error("not a valid credential key file")]
    InvalidCredentialKey,
    #[error("not a valid secret-encryption key file")]
    InvalidSecretKeyring,
}

/// Which part of a device's identity a [`SubjectError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectField {
    Organisation,
    User,
    DeviceId,
}

impl std::fmt::Display for SubjectField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Organisation => "organisation id",
            Self::User => "user name",
            Self::DeviceId => "device id",
        })
    }
}

/// Why an organisation id, user name or device id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubjectError {
    #[error("{field}: must not be empty")]
    Empty { field: SubjectField },
    #[error("{field}: longer than {max} characters")]
    TooLong { field: SubjectField, max: usize },
    /// Organisation and device ids are limited to `a-z 0-9 - _ .` so the device URN has exactly
    /// one reading; user names only exclude control characters.
    #[error("{field}: contains a character that is not allowed")]
    InvalidCharacter { field: SubjectField },
}

/// Why a certificate is not a certgate device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeviceCertificateProblem {
    #[error("cannot parse the certificate")]
    Unparseable,
    #[error("the subject has no single common name (CN)")]
    CommonName,
    #[error("the subject has no single organisation (O)")]
    Organisation,
    #[error("no urn:certgate:<org>:<device> URI in the subject alternative names")]
    MissingDeviceUri,
    #[error("more than one urn:certgate: URI in the subject alternative names")]
    MultipleDeviceUris,
    #[error("the urn:certgate: URI is not of the form urn:certgate:<org>:<device>")]
    MalformedDeviceUri,
    #[error("the URI names organisation {uri_org:?} but the subject names {subject_org:?}")]
    OrganisationMismatch {
        subject_org: String,
        uri_org: String,
    },
    #[error("{0}")]
    Subject(SubjectError),
    #[error("{0}")]
    Serial(SerialError),
}

/// Why a serial number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SerialError {
    #[error("no hex digits")]
    Empty,
    #[error("only hex digits, optionally separated by ':' or spaces, are allowed")]
    InvalidCharacter,
    #[error("longer than 20 bytes")]
    TooLong,
}

/// Why a PKCS#12 bundle could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Pkcs12Problem {
    #[error("the private key is not a valid PEM PKCS#8 key")]
    InvalidPrivateKey,
    #[error("no certificate given")]
    NoCertificate,
    #[error("a certificate cannot be parsed")]
    InvalidCertificate,
    #[error("the private key does not belong to the first certificate")]
    KeyDoesNotMatchCertificate,
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("encoding failed")]
    Encoding,
}

impl CertificateError {
    pub(crate) fn io(action: IoAction, path: impl Into<PathBuf>, err: &io::Error) -> Self {
        let path = path.into();
        match err.kind() {
            io::ErrorKind::AlreadyExists => Self::AlreadyExists { path },
            io::ErrorKind::NotFound if action == IoAction::Read => Self::MissingFile { path },
            kind => Self::Io { action, path, kind },
        }
    }

    pub(crate) fn invalid_file(path: impl Into<PathBuf>, problem: FileProblem) -> Self {
        Self::InvalidFile {
            path: path.into(),
            problem,
        }
    }
}

impl CertificateError {
    /// The same failure, told of `path` (a file written aside under another name first).
    pub(crate) fn of_path(self, path: &std::path::Path) -> Self {
        match self {
            Self::Io { action, kind, .. } => Self::Io {
                action,
                path: path.to_owned(),
                kind,
            },
            other => other,
        }
    }
}

/// What an operator does about an I/O failure on `path`, in words ("entity not found" says
/// nothing about which directory is missing).
fn io_reason(kind: io::ErrorKind, path: &std::path::Path) -> String {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| ".".to_owned(), |p| p.display().to_string());
    match kind {
        io::ErrorKind::NotFound => format!("the directory {dir} does not exist"),
        io::ErrorKind::PermissionDenied => format!("permission denied (check who may write {dir})"),
        io::ErrorKind::ReadOnlyFilesystem => format!("{dir} is on a read-only file system"),
        io::ErrorKind::NotADirectory => format!("{dir} is not a directory"),
        io::ErrorKind::StorageFull => "the disk is full".to_owned(),
        other => other.to_string(),
    }
}

impl From<rcgen::Error> for CertificateError {
    fn from(err: rcgen::Error) -> Self {
        // rcgen's messages name the failing step, never key bytes.
        Self::Generation(err.to_string())
    }
}

impl From<DeviceCertificateProblem> for CertificateError {
    fn from(problem: DeviceCertificateProblem) -> Self {
        Self::NotDeviceCertificate(problem)
    }
}

impl From<Pkcs12Problem> for CertificateError {
    fn from(problem: Pkcs12Problem) -> Self {
        Self::Pkcs12(problem)
    }
}
