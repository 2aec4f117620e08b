//! Certificate signing requests (PKCS#10) from devices that keep their own key: parsing, the
//! proof that the requester holds the key, and which keys certgate will certify. Only the public
//! key is taken from a request; subject, names and extensions are certgate's to set.

use std::fmt;

use rcgen::{PublicKeyData, SignatureAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384,
    OID_NIST_EC_P521, OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA,
    OID_SIG_ED25519, OID_SIG_ED448,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// The largest request accepted, PEM or DER, checked before any parsing. A request for the
/// largest accepted key (RSA 8192) is under 3 KiB in PEM; the rest is room for attributes and
/// names that certgate ignores anyway.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits: the most the signature check (ring) supports.
pub const MAX_RSA_BITS: usize = 8192;

/// id-mgf1 (RFC 8017), the only mask generation function there is.
const OID_MGF1: &str = "1.2.840.113549.1.1.8";

/// PEM labels of a PKCS#10 request: the standard one and the older one RFC 7468 (section 7)
/// still lists, which Windows `certreq` writes.
const PEM_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// A certificate signing request whose signature verified and whose key certgate accepts.
/// Holds only the public key: nothing else in a request ends up in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    key_type: KeyType,
    /// The contents of the subjectPublicKey BIT STRING.
    public_key: Vec<u8>,
    /// SubjectPublicKeyInfo as it will appear in the certificate.
    spki: Vec<u8>,
}

/// The kinds of key certgate certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// RSA (rsaEncryption) with a modulus of `bits` bits, from [`MIN_RSA_BITS`] to
    /// [`MAX_RSA_BITS`].
    Rsa {
        bits: usize,
    },
}

/// Why a certificate signing request was refused. The messages are meant for the client that
/// sent the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateRequestError {
    #[error("the certificate request is larger than {max} bytes", max = MAX_REQUEST_LEN)]
    TooLarge,
    #[error("the certificate request is not valid PEM/DER")]
    Malformed,
    #[error("the certificate request's signature does not verify")]
    BadSignature,
    #[error(
        "the certificate request is signed with {algorithm}, which is not accepted: \
         sign it with SHA-256 or SHA-384"
    )]
    UnsupportedSignatureAlgorithm { algorithm: String },
    #[error(
        "RSA-PSS signatures must use MGF1 with the signature's hash and a salt as long as that \
         hash (openssl: -sigopt rsa_pss_saltlen:digest)"
    )]
    UnsupportedPssParameters,
    #[error("RSA keys must have at least {min} bits (this one has {bits})", min = MIN_RSA_BITS)]
    RsaKeyTooSmall { bits: usize },
    #[error("RSA keys must have at most {max} bits (this one has {bits})", max = MAX_RSA_BITS)]
    RsaKeyTooLarge { bits: usize },
    #[error(
        "key type {key_type} is not accepted: use ECDSA P-256 or P-384, Ed25519, \
         or RSA of 2048 bits or more"
    )]
    UnsupportedKeyType { key_type: String },
}

impl CertificateRequest {
    /// Reads the first `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) block of `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, CertificateRequestError> {
        if pem.len() > MAX_REQUEST_LEN {
            return Err(CertificateRequestError::TooLarge);
        }
        let blocks = pem::parse_many(pem).map_err(|_| CertificateRequestError::Malformed)?;
        let block = blocks
            .iter()
            .find(|block| PEM_LABELS.contains(&block.tag()))
            .ok_or(CertificateRequestError::Malformed)?;
        Self::from_der(block.contents())
    }

    /// Reads a DER request; nothing may follow it.
    // Not rcgen's `CertificateSigningRequestParams`: it verifies through the same x509-parser
    // call, but takes the key type from the signature algorithm (a P-384 key signed with
    // SHA-256 would go into the certificate as a P-256 key) and refuses any extension it does
    // not know, though certgate ignores them all.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateRequestError> {
        if der.len() > MAX_REQUEST_LEN {
            return Err(CertificateRequestError::TooLarge);
        }
        let (rest, request) = X509CertificationRequest::from_der(der)
            .map_err(|_| CertificateRequestError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertificateRequestError::Malformed);
        }
        let info = &request.certification_request_info;
        // The key is judged first so a refused key gets its own reason, not a failed signature
        // (ring cannot even check a signature by a 1024-bit RSA key).
        let key_type = key_type(&info.subject_pki)?;
        let algorithm = &request.signature_algorithm.algorithm;
        if *algorithm == OID_PKCS1_SHA1WITHRSA || *algorithm == OID_SHA1_WITH_RSA {
            return Err(CertificateRequestError::UnsupportedSignatureAlgorithm {
                algorithm: oid_name(algorithm),
            });
        }
        if *algorithm == OID_PKCS1_RSASSAPSS {
            check_pss_parameters(&request.signature_algorithm)?;
        }
        // The proof that the requester holds the private key.
        request.verify_signature().map_err(|err| match err {
            X509Error::SignatureUnsupportedAlgorithm => {
                CertificateRequestError::UnsupportedSignatureAlgorithm {
                    algorithm: oid_name(algorithm),
                }
            }
            _ => CertificateRequestError::BadSignature,
        })?;

        let mut request = Self {
            key_type,
            public_key: info.subject_pki.subject_public_key.data.to_vec(),
            spki: Vec::new(),
        };
        request.spki = PublicKeyData::subject_public_key_info(&request);
        Ok(request)
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo, exactly as a certificate for this request will carry it;
    /// e.g. to fingerprint the key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }
}

/// What rcgen needs to put the requested key into a certificate: the key bits and an algorithm
/// whose SubjectPublicKeyInfo identifier matches the key. The certificate itself is signed with
/// the CA's key, so the algorithm only names the key type.
impl PublicKeyData for CertificateRequest {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
        }
    }
}

/// Classifies the requested key, refusing every type and size certgate does not certify.
fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, CertificateRequestError> {
    // rcgen writes the key bits back as whole bytes; a key that is not a whole number of bytes
    // is not one of ours anyway.
    if spki.subject_public_key.unused_bits != 0 {
        return Err(CertificateRequestError::Malformed);
    }
    let unsupported = |key_type: String| CertificateRequestError::UnsupportedKeyType { key_type };
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|params| params.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 => Ok(KeyType::EcdsaP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(KeyType::EcdsaP384),
            Some(curve) if curve == OID_NIST_EC_P521 => Err(unsupported("ECDSA P-521".to_owned())),
            Some(curve) => Err(unsupported(format!("EC on curve {}", oid_name(&curve)))),
            None => Err(unsupported("EC with explicit curve parameters".to_owned())),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        // RFC 8410: no parameters.
        if spki.algorithm.parameters.is_some() {
            return Err(CertificateRequestError::Malformed);
        }
        return Ok(KeyType::Ed25519);
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(key)) = spki.parsed() else {
            return Err(CertificateRequestError::Malformed);
        };
        let bits = bit_length(key.modulus);
        if bits < MIN_RSA_BITS {
            return Err(CertificateRequestError::RsaKeyTooSmall { bits });
        }
        if bits > MAX_RSA_BITS {
            return Err(CertificateRequestError::RsaKeyTooLarge { bits });
        }
        return Ok(KeyType::Rsa { bits });
    }
    let name = if *algorithm == OID_PKCS1_RSASSAPSS {
        "RSA-PSS".to_owned()
    } else if *algorithm == OID_SIG_ED448 {
        "Ed448".to_owned()
    } else if *algorithm == OID_KEY_TYPE_DSA {
        "DSA".to_owned()
    } else {
        oid_name(algorithm)
    };
    Err(unsupported(name))
}

/// ring checks RSA-PSS signatures only with MGF1 over the message hash and a salt as long as
/// that hash (as TLS 1.3 does). Other parameters are refused here, so a client using them is told
/// so instead of reading that its signature is forged.
fn check_pss_parameters(
    algorithm: &AlgorithmIdentifier<'_>,
) -> Result<(), CertificateRequestError> {
    let params = algorithm
        .parameters
        .as_ref()
        .and_then(|params| RsaSsaPssParams::try_from(params).ok())
        .ok_or(CertificateRequestError::Malformed)?;
    let hash = params.hash_algorithm_oid();
    let hash_len = if *hash == OID_NIST_HASH_SHA256 {
        32
    } else if *hash == OID_NIST_HASH_SHA384 {
        48
    } else if *hash == OID_NIST_HASH_SHA512 {
        64
    } else {
        return Err(CertificateRequestError::UnsupportedSignatureAlgorithm {
            algorithm: format!("RSA-PSS with {}", oid_name(hash)),
        });
    };
    let mgf1_with_same_hash = params
        .mask_gen_algorithm()
        .is_ok_and(|mgf| mgf.mgf.to_id_string() == OID_MGF1 && mgf.hash == *hash);
    if !mgf1_with_same_hash || params.salt_length() != hash_len || params.trailer_field() != 1 {
        return Err(CertificateRequestError::UnsupportedPssParameters);
    }
    Ok(())
}

/// Bits of a big-endian unsigned integer, ignoring leading zeros.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(first) => (be.len() - first) * 8 - be[first].leading_zeros() as usize,
        None => 0,
    }
}

/// The registered short name of an OID, or its dotted form.
fn oid_name(oid: &Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

#[cfg(test)]
pub(crate) mod tests;
