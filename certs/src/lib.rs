//! certgate's certificate authority and credential tokens: creating and loading the CA, issuing
//! server and device certificates (also for signing requests), reading device claims back,
//! PKCS#12 bundles, and the signed cookie tokens that stand in for certificates in browsers.

pub mod authority;
pub mod ca_handle;
pub mod claims;
pub mod csr;
pub mod error;
pub mod files;
pub mod pkcs12;
pub mod secrets;
pub mod token;

pub use authority::{
    CertificateAuthority, DeviceSubject, IssuedCertificate, IssuedKeyPair, IssuingCa,
};
pub use ca_handle::CaHandle;
pub use claims::{DeviceClaims, DeviceId, Serial};
pub use csr::{CertificateRequest, CertificateRequestError, KeyType};
pub use error::CertificateError;
pub use pkcs12::{generate_password, pkcs12_bundle, pkcs12_bundle_as, Pkcs12Format};
pub use secrets::{SealError, SecretKeyring};
pub use token::{
    CredentialClaims, CredentialClass, CredentialKey, CredentialVerifier, MfaStatus, TokenError,
};
