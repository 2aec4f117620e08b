//! The secret-encryption key: seals secrets stored in SQL (authenticator secrets) with
//! AES-256-GCM, bound to the account they belong to and tagged with the key's id, so keys can
//! rotate (`certgate keys rotate`): the newest key seals, every listed key opens.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::error::{CertificateError, FileProblem};
use crate::files;

/// Why a sealed secret could not be opened. Never says more than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("the sealed secret is malformed")]
    Malformed,
    #[error("the sealed secret was made with a key this instance does not have")]
    UnknownKey,
    #[error("the sealed secret does not open (wrong account or tampered)")]
    Rejected,
    #[error("the secret could not be sealed")]
    Sealing,
}

struct SealingKey {
    id: u32,
    secret: [u8; 32],
    key: LessSafeKey,
}

impl SealingKey {
    fn new(id: u32, secret: [u8; 32]) -> Option<Self> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).ok()?);
        Some(SealingKey { id, secret, key })
    }

    fn generate() -> Option<Self> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self::new(rand::rng().next_u32(), secret)
    }
}

/// The keys, newest first.
pub struct SecretKeyring {
    keys: Vec<SealingKey>,
}

impl std::fmt::Debug for SecretKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| format!("{:08x}", k.id)).collect();
        f.debug_struct("SecretKeyring")
            .field("key_ids", &ids)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    key_id: String,
    secret: String,
}

/// What the sealed secret is bound to: opening it for another account fails.
fn aad(account_id: &str) -> Vec<u8> {
    format!("certgate-secret:{account_id}").into_bytes()
}

impl SecretKeyring {
    /// Loads the keyring at `path`, or creates one with a single new key (mode 0600). When
    /// several instances sharing the directory start at once, exactly one keyring is created
    /// and all of them load it.
    pub fn load_or_create(path: &Path) -> Result<Self, CertificateError> {
        match Self::load(path) {
            Err(CertificateError::MissingFile { .. }) => {}
            loaded => return loaded,
        }
        let keyring = SecretKeyring {
            keys: vec![Self::new_key(path)?],
        };
        if files::create_private_once(path, keyring.to_file().as_bytes())? {
            Ok(keyring)
        } else {
            Self::load(path)
        }
    }

    pub fn load(path: &Path) -> Result<Self, CertificateError> {
        let text = files::read_to_string(path)?;
        Self::from_file(&text)
            .ok_or_else(|| CertificateError::invalid_file(path, FileProblem::InvalidSecretKeyring))
    }

    fn new_key(path: &Path) -> Result<SealingKey, CertificateError> {
        SealingKey::generate()
            .ok_or_else(|| CertificateError::invalid_file(path, FileProblem::InvalidSecretKeyring))
    }

    /// Adds a new newest key and writes the keyring back (atomically); old keys stay so
    /// existing secrets open until they are sealed again. Keys another instance added to the
    /// file since this one read it are kept too.
    /// Nothing changes, in memory or on disk, when it fails: a key only this process held would
    /// seal secrets no other instance, nor this one after a restart, could open.
    pub fn rotate(&mut self, path: &Path) -> Result<(), CertificateError> {
        let mut keys = vec![Self::new_key(path)?];
        for key in &self.keys {
            keys.extend(SealingKey::new(key.id, key.secret));
        }
        match Self::load(path) {
            Ok(on_disk) => {
                for key in on_disk.keys {
                    if keys.iter().all(|k| k.id != key.id) {
                        keys.push(key);
                    }
                }
            }
            Err(CertificateError::MissingFile { .. }) => {}
            Err(error) => return Err(error),
        }
        let rotated = SecretKeyring { keys };
        files::replace_private(path, rotated.to_file().as_bytes())?;
        *self = rotated;
        Ok(())
    }

    /// Seals `plaintext` for `account_id` with the newest key.
    pub fn seal(&self, account_id: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError::Sealing)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(account_id)),
                &mut data,
            )
            .map_err(|_| SealError::Sealing)?;
        Ok(format!(
            "v1.{:08x}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(data)
        ))
    }

    /// Opens a secret sealed for `account_id` by any key of this keyring.
    pub fn open(&self, account_id: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let (id, nonce, mut data) = parse(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SealError::UnknownKey)?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(account_id)),
                &mut data,
            )
            .map_err(|_| SealError::Rejected)?;
        Ok(plain.to_vec())
    }

    /// Whether `sealed` was made with the newest key (else `keys rotate` seals it again).
    pub fn is_current(&self, sealed: &str) -> bool {
        matches!((parse(sealed), self.keys.first()), (Ok((id, _, _)), Some(key)) if id == key.id)
    }

    fn from_file(text: &str) -> Option<Self> {
        let file: KeyringFile = serde_json::from_str(text).ok()?;
        let keys = file
            .keys
            .into_iter()
            .map(|entry| {
                let id = u32::from_str_radix(&entry.key_id, 16).ok()?;
                let secret: [u8; 32] = STANDARD.decode(entry.secret).ok()?.try_into().ok()?;
                SealingKey::new(id, secret)
            })
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(SecretKeyring { keys })
    }

    fn to_file(&self) -> String {
        let file = KeyringFile {
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntry {
                    key_id: format!("{:08x}", k.id),
                    secret: STANDARD.encode(k.secret),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }
}

fn parse(sealed: &str) -> Result<(u32, [u8; NONCE_LEN], Vec<u8>), SealError> {
    let mut parts = sealed.split('.');
    let (Some("v1"), Some(id), Some(nonce), Some(data), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SealError::Malformed);
    };
    let id = u32::from_str_radix(id, 16).map_err(|_| SealError::Malformed)?;
    let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Malformed)?;
    let data = URL_SAFE_NO_PAD
        .decode(data)
        .map_err(|_| SealError::Malformed)?;
    Ok((id, nonce, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seals_bound_to_the_account_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let mut keyring = SecretKeyring::load_or_create(&path).unwrap();
        let sealed = keyring.seal("acc-1", b"JBSWY3DPEHPK3PXP").unwrap();
        assert!(!sealed.contains("JBSWY3DP"));
        assert_eq!(keyring.open("acc-1", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert_eq!(
            keyring.open("acc-2", &sealed),
            Err(SealError::Rejected),
            "bound to the account"
        );

        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keyring.open("acc-1", std::str::from_utf8(&tampered).unwrap()),
            Err(SealError::Rejected)
        );
        assert_eq!(keyring.open("acc-1", "garbage"), Err(SealError::Malformed));

        keyring.rotate(&path).unwrap();
        let reloaded = SecretKeyring::load(&path).unwrap();
        assert!(!reloaded.is_current(&sealed));
        assert_eq!(
            reloaded.open("acc-1", &sealed).unwrap(),
            b"JBSWY3DPEHPK3PXP",
            "old keys still open"
        );
        let resealed = reloaded.seal("acc-1", b"JBSWY3DPEHPK3PXP").unwrap();
        assert!(reloaded.is_current(&resealed));

        // Two instances rotate one after the other: neither loses the other's key.
        let mut other_instance = SecretKeyring::load(&path).unwrap();
        keyring.rotate(&path).unwrap();
        let sealed_by_first = keyring.seal("acc-1", b"first").unwrap();
        other_instance.rotate(&path).unwrap();
        let on_disk = SecretKeyring::load(&path).unwrap();
        assert_eq!(on_disk.keys.len(), 4, "{on_disk:?}");
        assert_eq!(on_disk.open("acc-1", &sealed_by_first).unwrap(), b"first");

        let fresh = SecretKeyring::load_or_create(&dir.path().join("other.key")).unwrap();
        assert_eq!(fresh.open("acc-1", &sealed), Err(SealError::UnknownKey));
        assert!(!format!("{reloaded:?}").contains(&STANDARD.encode(reloaded.keys[0].secret)));
    }

    #[test]
    fn a_rotation_that_cannot_be_written_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = SecretKeyring::load_or_create(&dir.path().join("secrets.key")).unwrap();
        let before = format!("{keyring:?}");
        // Nothing can be created under /proc, not even by root.
        let unwritable = Path::new("/proc/certgate-none/secrets.key");
        assert!(keyring.rotate(unwritable).is_err());
        assert_eq!(
            format!("{keyring:?}"),
            before,
            "the newest key is still the saved one"
        );
        let sealed = keyring.seal("acc-1", b"secret").unwrap();
        let saved = SecretKeyring::load(&dir.path().join("secrets.key")).unwrap();
        assert_eq!(saved.open("acc-1", &sealed).unwrap(), b"secret");
    }

    #[test]
    fn instances_sharing_a_directory_create_one_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let loaded: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| SecretKeyring::load_or_create(&path).unwrap()))
                .collect();
            starts
                .into_iter()
                .map(|start| format!("{:?}", start.join().unwrap()))
                .collect()
        });
        let on_disk = format!("{:?}", SecretKeyring::load(&path).unwrap());
        assert!(loaded.iter().all(|k| *k == on_disk), "{loaded:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing left aside");
    }
}
