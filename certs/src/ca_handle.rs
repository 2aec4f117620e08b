//! The CA as a running instance uses it, re-read when its files change: an issuing-CA rollover
//! (`certgate ca rotate-issuing`, `retire-issuing`) reaches the portal and the gateway of every
//! instance that reads the directory, without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::authority::{CertificateAuthority, ISSUING_CERT_FILE, ISSUING_KEY_FILE, ROOT_CERT_FILE};
use crate::error::CertificateError;

pub struct CaHandle {
    dir: PathBuf,
    current: ArcSwap<CertificateAuthority>,
}

impl CaHandle {
    pub fn open(dir: &Path) -> Result<Self, CertificateError> {
        Ok(CaHandle {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(CertificateAuthority::open(dir)?),
        })
    }

    /// The CA as last read.
    pub fn load(&self) -> Arc<CertificateAuthority> {
        self.current.load_full()
    }

    /// Reads the directory again: the CA it holds now when what that signs with or honours
    /// differs from the CA as last read, `None` when nothing changed. Nothing is kept until
    /// [`CaHandle::store`], so what depends on the CA can be made from it first.
    pub fn changed(&self) -> Result<Option<CertificateAuthority>, CertificateError> {
        let fresh = CertificateAuthority::open(&self.dir)?;
        let current = self.current.load();
        let changed = fresh.issuing_der() != current.issuing_der()
            || fresh.trust_anchor_ders() != current.trust_anchor_ders()
            || fresh.root_pem() != current.root_pem();
        Ok(changed.then_some(fresh))
    }

    /// Makes `ca` the CA as last read.
    pub fn store(&self, ca: CertificateAuthority) {
        self.current.store(Arc::new(ca));
    }

    /// The files [`CaHandle::reload`] reads.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        [ROOT_CERT_FILE, ISSUING_CERT_FILE, ISSUING_KEY_FILE]
            .iter()
            .map(|file| self.dir.join(file))
            .collect()
    }
}

impl std::fmt::Debug for CaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaHandle").field("dir", &self.dir).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// What the gateway's reloader does with nothing depending on the CA: `true` when it
    /// changed.
    fn reload(handle: &CaHandle) -> bool {
        match handle.changed().unwrap() {
            Some(fresh) => {
                handle.store(fresh);
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_key_that_arrives_after_its_certificate_is_picked_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = time::OffsetDateTime::now_utc();
        let old = CertificateAuthority::init(&dir, now).unwrap();
        let handle = CaHandle::open(&dir).unwrap();
        let old_key = std::fs::read(dir.join(ISSUING_KEY_FILE)).unwrap();
        let rotated = CertificateAuthority::rotate_issuing(&dir, now).unwrap();
        let new_key = std::fs::read(dir.join(ISSUING_KEY_FILE)).unwrap();

        // Read between the renames: the new list, the old key.
        std::fs::remove_file(dir.join(ISSUING_KEY_FILE)).unwrap();
        std::fs::write(dir.join(ISSUING_KEY_FILE), &old_key).unwrap();
        assert!(reload(&handle));
        assert_eq!(handle.load().issuing_der(), old.issuing_der());

        // The key arrives: the new CA signs, though the list is unchanged.
        std::fs::remove_file(dir.join(ISSUING_KEY_FILE)).unwrap();
        std::fs::write(dir.join(ISSUING_KEY_FILE), &new_key).unwrap();
        assert!(reload(&handle));
        assert_eq!(handle.load().issuing_der(), rotated.issuing_der());
        assert!(!reload(&handle), "nothing changed since");
    }

    #[test]
    fn a_changed_ca_not_stored_keeps_the_ca_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = time::OffsetDateTime::now_utc();
        let old = CertificateAuthority::init(&dir, now).unwrap();
        let handle = CaHandle::open(&dir).unwrap();
        CertificateAuthority::rotate_issuing(&dir, now).unwrap();
        // Read, but what depends on it could not be made: not stored.
        assert!(handle.changed().unwrap().is_some());
        assert_eq!(handle.load().issuing_der(), old.issuing_der());
        assert_eq!(handle.load().trust_anchor_ders().len(), 1);
    }
}
