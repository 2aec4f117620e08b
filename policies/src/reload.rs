//! The hot-reload handle: the gateway reads the current [`PolicySet`] through one atomic
//! pointer per request, and a reload swaps in a complete new set only when it loaded cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use crate::error::PolicyErrors;
use crate::policy::{load_recording_paths, PolicySet};

#[derive(Debug)]
pub struct PolicyHandle {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    /// Paths the last load read or tried to read; after a failed reload they include the file
    /// whose fix should trigger the next one.
    last_attempt: Mutex<Vec<PathBuf>>,
    /// Serialises reloads, so a slow one never swaps in a set older than a faster one's.
    reloading: Mutex<()>,
}

impl PolicyHandle {
    /// Loads the policies of `dir`; the gateway refuses to start on error.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, PolicyErrors> {
        let dir = dir.into();
        let (result, attempted) = load_recording_paths(&dir);
        let set = result?;
        Ok(Self {
            dir,
            current: ArcSwap::from_pointee(set),
            last_attempt: Mutex::new(attempted),
            reloading: Mutex::new(()),
        })
    }

    /// The current set, for the per-request path: lock-free, no reference-count traffic.
    pub fn load(&self) -> Guard<Arc<PolicySet>> {
        self.current.load()
    }

    /// The current set, as an owned pointer to keep across awaits.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Loads the directory again and swaps the new set in; on error the previous set stays
    /// and the errors are returned for the caller to log and count.
    pub fn reload(&self) -> Result<Arc<PolicySet>, PolicyErrors> {
        let _serialised = self.reloading.lock();
        let (result, attempted) = load_recording_paths(&self.dir);
        *self.last_attempt.lock() = attempted;
        let set = Arc::new(result?);
        self.current.store(Arc::clone(&set));
        Ok(set)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a [`crate::FileWatch`] should watch: the current set's files and those the last
    /// load attempt tried to read.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.current.load().watched_paths();
        for path in self.last_attempt.lock().iter() {
            if !paths.contains(path) {
                paths.push(path.clone());
            }
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = "id = \"noord\"\nname = \"Noord\"\nhosts = [\"noord.example.org\"]\n\
                        upstreams = [\"http://10.0.0.5:8080\"]\n";

    #[test]
    fn reload_swaps_on_success_and_keeps_the_old_set_on_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("noord.toml"), GOOD).unwrap();
        let handle = PolicyHandle::new(dir.path()).unwrap();
        assert_eq!(handle.load().organisation("noord").unwrap().name, "Noord");

        std::fs::write(
            dir.path().join("noord.toml"),
            GOOD.replace("\"Noord\"", "\"Noord 2\""),
        )
        .unwrap();
        let reloaded = handle.reload().unwrap();
        assert_eq!(reloaded.organisation("noord").unwrap().name, "Noord 2");
        assert_eq!(
            handle.current().organisation("noord").unwrap().name,
            "Noord 2"
        );

        std::fs::write(
            dir.path().join("noord.toml"),
            format!("{GOOD}[access]\nallow_ips_files = [\"missing.allowlist\"]\n"),
        )
        .unwrap();
        let errors = handle.reload().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(
            handle.current().organisation("noord").unwrap().name,
            "Noord 2"
        );
        let watched = handle.watched_paths();
        assert!(watched.contains(&dir.path().join("missing.allowlist")));
        assert!(watched.contains(&dir.path().join("noord.toml")));
        assert!(watched.contains(&dir.path().to_owned()));
    }

    #[test]
    fn new_fails_on_a_bad_directory() {
        let dir = tempfile::tempdir().unwrap();
        let errors = PolicyHandle::new(dir.path()).unwrap_err();
        assert_eq!(
            errors.to_string(),
            format!(
                "{}: no organisation policies found (expected *.toml files)",
                dir.path().display()
            )
        );
    }
}
