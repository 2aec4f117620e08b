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

    /// Reads the directory again; on error the CA as last read stays. `true` when what it
    /// signs with or honours changed.
    pub fn reload(&self) -> Result<bool, CertificateError> {
        let fresh = CertificateAuthority::open(&self.dir)?;
        let current = self.current.load();
        let changed = fresh.trust_anchor_ders() != current.trust_anchor_ders()
            || fresh.root_pem() != current.root_pem();
        if changed {
            self.current.store(Arc::new(fresh));
        }
        Ok(changed)
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
