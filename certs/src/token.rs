//! Browser credential tokens: the cookie value that stands in for a device certificate where a
//! browser cannot install one. Owns the credential-signing key (separate from the CA), the token
//! format, and its verification, which the gateway runs on every request without I/O.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, no padding. The
//! payload (version 1) is: version `u8`, key id `u32`, class `u8`, MFA status `u8`, issued-at
//! `i64`, not-after `i64` (big-endian unix seconds), then device id, organisation and account, each a `u8` length
//! and UTF-8 bytes. The key id lets several keys verify side by side while the signing key rotates.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::error::{CertificateError, FileProblem};
use crate::files;

const VERSION: u8 = 1;
const SECRET_LEN: usize = 32;
const MAC_LEN: usize = 32;
/// Longest device id, organisation or account a token can carry, in bytes.
pub const MAX_CLAIM_LEN: usize = u8::MAX as usize;
/// version, key id, class, MFA status, issued-at, not-after.
const FIXED_LEN: usize = 1 + 4 + 1 + 1 + 8 + 8;
const MAX_PAYLOAD_LEN: usize = FIXED_LEN + 3 * (1 + MAX_CLAIM_LEN);

const fn encoded_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// No valid token is longer; anything longer is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = encoded_len(MAX_PAYLOAD_LEN) + 1 + encoded_len(MAC_LEN);

/// Why a token was refused (or, for [`TokenError::ClaimTooLong`], could not be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("credential token is malformed")]
    Malformed,
    #[error("credential token was signed with an unknown key")]
    UnknownKey,
    #[error("credential token signature is invalid")]
    BadSignature,
    #[error("credential token has expired")]
    Expired,
    #[error("a credential claim is longer than {MAX_CLAIM_LEN} bytes")]
    ClaimTooLong,
}

/// Which lifetime rule a credential was issued under; the gateway renews `Group` credentials on
/// use, and metrics label issued credentials by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialClass {
    /// A personal account without "trust this device": lives for the session lifetime.
    Personal,
    /// A personal account with "trust this device" ticked: lives for `trust_device_for`.
    Trusted,
    /// A group account on a shared device: renewed on use, ends after the idle timeout.
    Group,
}

impl CredentialClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::Trusted => "trusted",
            Self::Group => "group",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Personal => 1,
            Self::Trusted => 2,
            Self::Group => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Personal),
            2 => Some(Self::Trusted),
            3 => Some(Self::Group),
            _ => None,
        }
    }
}

/// How the holder of a credential signed in, as the upstream learns it from `X-Certgate-Mfa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaStatus {
    /// A second factor was passed.
    Yes,
    /// The account's role is exempt from MFA.
    Exempt,
    /// No second factor (MFA not required for this account).
    None,
}

impl MfaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::Exempt => "exempt",
            Self::None => "none",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Yes => 1,
            Self::Exempt => 2,
            Self::None => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Yes),
            2 => Some(Self::Exempt),
            3 => Some(Self::None),
            _ => None,
        }
    }
}

/// What a browser credential says: the same facts as a device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialClaims {
    pub device_id: String,
    pub org: String,
    pub account: String,
    pub class: CredentialClass,
    pub mfa: MfaStatus,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the token is refused from this second on.
    pub not_after: i64,
}

/// The secret that signs browser credentials. Shared by every instance through the data
/// directory; never the CA key.
#[derive(Clone)]
pub struct CredentialKey {
    id: u32,
    secret: [u8; SECRET_LEN],
    key: hmac::Key,
}

/// The key file: JSON so a later version can add fields without guessing.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    secret: String,
}

impl CredentialKey {
    /// A new random 256-bit key with a random id.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut secret = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        Self::from_parts(rng.next_u32(), secret)
    }

    fn from_parts(id: u32, secret: [u8; SECRET_LEN]) -> Self {
        Self {
            id,
            secret,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// Loads the key at `path`, or creates it (mode 0600) if there is none. When several
    /// instances start at once, exactly one key is created and all of them load it.
    pub fn load_or_create(path: &Path) -> Result<Self, CertificateError> {
        match Self::load(path) {
            Err(CertificateError::MissingFile { .. }) => {}
            loaded => return loaded,
        }
        let key = Self::generate();
        if files::create_private_once(path, key.to_file().as_bytes())? {
            Ok(key)
        } else {
            Self::load(path)
        }
    }

    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<Self, CertificateError> {
        let text = files::read_to_string(path)?;
        Self::from_file(&text)
            .ok_or_else(|| CertificateError::invalid_file(path, FileProblem::InvalidCredentialKey))
    }

    fn from_file(text: &str) -> Option<Self> {
        let file: KeyFile = serde_json::from_str(text).ok()?;
        if file.key_id.len() != 8 {
            return None;
        }
        let id = u32::from_str_radix(&file.key_id, 16).ok()?;
        let secret = STANDARD.decode(file.secret).ok()?.try_into().ok()?;
        Some(Self::from_parts(id, secret))
    }

    fn to_file(&self) -> String {
        let file = KeyFile {
            key_id: format!("{:08x}", self.id),
            secret: STANDARD.encode(self.secret),
        };
        // Serialising two strings cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// The id written into every token this key signs.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A token carrying `claims`, signed with this key.
    pub fn sign(&self, claims: &CredentialClaims) -> Result<String, TokenError> {
        let strings = [&claims.device_id, &claims.org, &claims.account];
        let mut payload = Vec::with_capacity(MAX_PAYLOAD_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&self.id.to_be_bytes());
        payload.push(claims.class.code());
        payload.push(claims.mfa.code());
        payload.extend_from_slice(&claims.issued_at.to_be_bytes());
        payload.extend_from_slice(&claims.not_after.to_be_bytes());
        for value in strings {
            let len = u8::try_from(value.len()).map_err(|_| TokenError::ClaimTooLong)?;
            payload.push(len);
            payload.extend_from_slice(value.as_bytes());
        }
        let mac = hmac::sign(&self.key, &payload);
        let mut token = String::with_capacity(MAX_TOKEN_LEN);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.as_ref(), &mut token);
        Ok(token)
    }
}

#[cfg(fuzzing)]
impl CredentialKey {
    /// A token of any payload, signed: lets the fuzz target reach what `verify` reads after
    /// the signature check.
    pub fn sign_payload(&self, payload: &[u8]) -> String {
        let mac = hmac::sign(&self.key, payload);
        let mut token = URL_SAFE_NO_PAD.encode(payload);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(mac.as_ref()));
        token
    }
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKey")
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

/// Checks tokens against every key that may have signed them: the current one and, during a
/// rotation, the previous ones.
#[derive(Clone)]
pub struct CredentialVerifier {
    keys: Vec<(u32, hmac::Key)>,
}

impl CredentialVerifier {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a CredentialKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|key| (key.id, key.key.clone()))
                .collect(),
        }
    }

    /// The claims of `token` if one of our keys signed it and it has not expired at `now_unix`.
    /// Decodes into stack buffers; only the returned claims allocate.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<CredentialClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload_b64, mac_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let mut payload_buf = [0u8; MAX_PAYLOAD_LEN + 3];
        let payload_len = URL_SAFE_NO_PAD
            .decode_slice(payload_b64, &mut payload_buf)
            .map_err(|_| TokenError::Malformed)?;
        let payload = &payload_buf[..payload_len];
        let mut reader = Reader(payload);
        if reader.u8()? != VERSION {
            return Err(TokenError::Malformed);
        }
        let key_id = u32::from_be_bytes(reader.array()?);
        let key = self
            .keys
            .iter()
            .find(|(id, _)| *id == key_id)
            .map(|(_, key)| key)
            .ok_or(TokenError::UnknownKey)?;
        let mut mac_buf = [0u8; MAC_LEN + 3];
        let mac_len = URL_SAFE_NO_PAD
            .decode_slice(mac_b64, &mut mac_buf)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(key, payload, &mac_buf[..mac_len]).map_err(|_| TokenError::BadSignature)?;

        let class = CredentialClass::from_code(reader.u8()?).ok_or(TokenError::Malformed)?;
        let mfa = MfaStatus::from_code(reader.u8()?).ok_or(TokenError::Malformed)?;
        let issued_at = i64::from_be_bytes(reader.array()?);
        let not_after = i64::from_be_bytes(reader.array()?);
        let device_id = reader.string()?;
        let org = reader.string()?;
        let account = reader.string()?;
        if !reader.0.is_empty() {
            return Err(TokenError::Malformed);
        }
        if now_unix >= not_after {
            return Err(TokenError::Expired);
        }
        Ok(CredentialClaims {
            device_id: device_id.to_owned(),
            org: org.to_owned(),
            account: account.to_owned(),
            class,
            mfa,
            issued_at,
            not_after,
        })
    }
}

impl From<&CredentialKey> for CredentialVerifier {
    fn from(key: &CredentialKey) -> Self {
        Self::new([key])
    }
}

impl fmt::Debug for CredentialVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self
            .keys
            .iter()
            .map(|(id, _)| format!("{id:08x}"))
            .collect();
        f.debug_struct("CredentialVerifier")
            .field("key_ids", &ids)
            .finish()
    }
}

/// Reads the payload front to back; running out of bytes means the token is malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        self.take(N)?.try_into().map_err(|_| TokenError::Malformed)
    }

    fn string(&mut self) -> Result<&'a str, TokenError> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| TokenError::Malformed)
    }
}

impl From<TokenError> for CertificateError {
    fn from(err: TokenError) -> Self {
        Self::Token(err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn claims() -> CredentialClaims {
        CredentialClaims {
            device_id: "3f2a9c1b0d4e5f60718293a4b5c6d7e8".to_owned(),
            org: "acme-care".to_owned(),
            account: "zoë@acme.example".to_owned(),
            class: CredentialClass::Trusted,
            mfa: MfaStatus::Yes,
            issued_at: NOW,
            not_after: NOW + 7 * 86400,
        }
    }

    #[test]
    fn signed_claims_verify() {
        let key = CredentialKey::generate();
        let token = key.sign(&claims()).unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        let verifier = CredentialVerifier::from(&key);
        assert_eq!(verifier.verify(&token, NOW), Ok(claims()));
        assert_eq!(verifier.verify(&token, NOW + 7 * 86400 - 1), Ok(claims()));
        for (class, mfa) in [
            (CredentialClass::Personal, MfaStatus::Exempt),
            (CredentialClass::Group, MfaStatus::None),
        ] {
            let claims = CredentialClaims {
                class,
                mfa,
                ..claims()
            };
            let token = key.sign(&claims).unwrap();
            assert_eq!(verifier.verify(&token, NOW), Ok(claims));
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let key = CredentialKey::generate();
        let token = key.sign(&claims()).unwrap();
        assert_eq!(
            CredentialVerifier::from(&key).verify(&token, NOW + 7 * 86400),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let key = CredentialKey::generate();
        let token = key.sign(&claims()).unwrap();
        let (payload, mac) = token.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        // Push not_after later.
        bytes[FIXED_LEN - 3] ^= 0x01;
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(&bytes));
        let verifier = CredentialVerifier::from(&key);
        assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));

        let other_mac = URL_SAFE_NO_PAD.encode([0u8; MAC_LEN]);
        assert_eq!(
            verifier.verify(&format!("{payload}.{other_mac}"), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verifier.verify(&format!("{payload}."), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn other_keys_are_unknown_or_wrong() {
        let key = CredentialKey::from_parts(7, [1; SECRET_LEN]);
        let token = key.sign(&claims()).unwrap();
        let other_id = CredentialKey::from_parts(8, [1; SECRET_LEN]);
        assert_eq!(
            CredentialVerifier::from(&other_id).verify(&token, NOW),
            Err(TokenError::UnknownKey)
        );
        let same_id = CredentialKey::from_parts(7, [2; SECRET_LEN]);
        assert_eq!(
            CredentialVerifier::from(&same_id).verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
        // During a rotation both keys verify.
        let both = CredentialVerifier::new([&other_id, &key]);
        assert_eq!(both.verify(&token, NOW), Ok(claims()));
        assert_eq!(
            both.verify(&other_id.sign(&claims()).unwrap(), NOW),
            Ok(claims())
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let key = CredentialKey::generate();
        let verifier = CredentialVerifier::from(&key);
        let token = key.sign(&claims()).unwrap();
        let (payload, mac) = token.split_once('.').unwrap();
        for garbage in [
            "",
            ".",
            "abc",
            "not.a.token",
            "!!!.???",
            "AQ.AQ",
            &format!("{payload}={mac}"),
            &format!("{payload}.{mac}="),
            &format!("{payload}==.{mac}"),
            &format!("{}.{mac}", "A".repeat(MAX_TOKEN_LEN)),
            &"a".repeat(100_000),
        ] {
            assert_eq!(
                verifier.verify(garbage, NOW),
                Err(TokenError::Malformed),
                "{garbage:.60}"
            );
        }
        // A payload that is only a header cannot be parsed even with a valid MAC.
        let header = [&[VERSION][..], &key.id.to_be_bytes()].concat();
        let mac = hmac::sign(&key.key, &header);
        let short = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(mac)
        );
        assert_eq!(verifier.verify(&short, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn longest_claims_fit_and_longer_ones_are_refused() {
        let key = CredentialKey::generate();
        let long = CredentialClaims {
            device_id: "d".repeat(MAX_CLAIM_LEN),
            org: "o".repeat(MAX_CLAIM_LEN),
            account: "a".repeat(MAX_CLAIM_LEN),
            ..claims()
        };
        let token = key.sign(&long).unwrap();
        assert_eq!(token.len(), MAX_TOKEN_LEN);
        assert_eq!(CredentialVerifier::from(&key).verify(&token, NOW), Ok(long));
        let too_long = CredentialClaims {
            account: "a".repeat(MAX_CLAIM_LEN + 1),
            ..claims()
        };
        assert_eq!(key.sign(&too_long), Err(TokenError::ClaimTooLong));
    }

    #[test]
    fn key_file_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credential.key");
        let created = CredentialKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = CredentialKey::load_or_create(&path).unwrap();
        assert_eq!(loaded.id, created.id);
        assert_eq!(loaded.secret, created.secret);
        let token = created.sign(&claims()).unwrap();
        assert_eq!(
            CredentialVerifier::from(&loaded).verify(&token, NOW),
            Ok(claims())
        );
        // Only the key file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!format!("{loaded:?}").contains(&STANDARD.encode(loaded.secret)));

        fs::write(&path, text.replace("key_id", "kid")).unwrap();
        let err = CredentialKey::load_or_create(&path).unwrap_err();
        assert_eq!(
            err,
            CertificateError::InvalidFile {
                path: path.clone(),
                problem: FileProblem::InvalidCredentialKey
            }
        );
        assert!(!err.to_string().contains(&STANDARD.encode(loaded.secret)));
    }
}
