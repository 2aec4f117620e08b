//! Notices changes to policy files by polling: a fingerprint of each watched path every
//! interval. Polling survives what breaks inotify watches — editors that write a new file and
//! rename it over the old one, and Kubernetes ConfigMaps that swap a symlinked directory.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// A polling watcher on its own thread; stops when dropped.
#[derive(Debug)]
pub struct FileWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileWatch {
    /// Every `interval`, fingerprints the paths `paths` returns and calls `on_change` when any
    /// differs from the last time. `paths` is asked again each round, so after a reload the
    /// watcher follows the files the new policies name.
    ///
    /// A file's fingerprint is its size, modification time and inode (following symlinks), or
    /// its absence, so a file appearing or disappearing counts as a change. A directory's
    /// adds the names in it and each entry's fingerprint.
    pub fn start<P, C>(interval: Duration, paths: P, mut on_change: C) -> std::io::Result<Self>
    where
        P: Fn() -> Vec<PathBuf> + Send + 'static,
        C: FnMut() + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let mut last = fingerprints(&paths());
        let thread = thread::Builder::new()
            .name("certgate-file-watch".to_owned())
            .spawn(move || loop {
                let deadline = Instant::now() + interval;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    if stop_flag.load(Ordering::Acquire) || left.is_zero() {
                        break;
                    }
                    thread::park_timeout(left);
                }
                if stop_flag.load(Ordering::Acquire) {
                    return;
                }
                let now = fingerprints(&paths());
                if now == last {
                    continue;
                }
                tracing::debug!("watched files changed");
                on_change();
                // Paths the change made us watch are taken as they are now; the others keep
                // the state seen before `on_change`, so an edit made while it ran is still
                // noticed next round.
                let watched = paths();
                let mut next = now;
                next.retain(|path, _| watched.contains(path));
                for path in watched {
                    next.entry(path)
                        .or_insert_with_key(|path| fingerprint(path));
                }
                last = next;
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // Dropped from inside `on_change`: the thread ends by itself on its next check.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn fingerprints(paths: &[PathBuf]) -> BTreeMap<PathBuf, u64> {
    paths
        .iter()
        .map(|path| (path.clone(), fingerprint(path)))
        .collect()
}

fn fingerprint(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    hash_entry(path, &mut hasher);
    if std::fs::metadata(path).is_ok_and(|meta| meta.is_dir()) {
        if let Ok(listing) = std::fs::read_dir(path) {
            let mut names: Vec<_> = listing
                .filter_map(|entry| entry.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for name in names {
                name.hash(&mut hasher);
                hash_entry(&path.join(&name), &mut hasher);
            }
        }
    }
    hasher.finish()
}

fn hash_entry(path: &Path, hasher: &mut DefaultHasher) {
    match std::fs::metadata(path) {
        Ok(meta) => {
            true.hash(hasher);
            meta.len().hash(hasher);
            meta.modified()
                .ok()
                .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                .hash(hasher);
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()).hash(hasher);
            }
        }
        Err(error) => {
            false.hash(hasher);
            error.kind().hash(hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(2);

    fn watch(paths: Vec<PathBuf>) -> (FileWatch, mpsc::Receiver<()>) {
        let (sender, receiver) = mpsc::channel();
        let watch = FileWatch::start(
            Duration::from_millis(50),
            move || paths.clone(),
            move || {
                let _ = sender.send(());
            },
        )
        .unwrap();
        (watch, receiver)
    }

    #[test]
    fn notices_modification_and_rename_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("noord.toml");
        std::fs::write(&file, "a").unwrap();
        let (_watch, changes) = watch(vec![file.clone()]);
        assert!(changes.recv_timeout(Duration::from_millis(300)).is_err());

        std::fs::write(&file, "ab").unwrap();
        changes.recv_timeout(WAIT).expect("modification noticed");

        let replacement = dir.path().join("noord.toml.tmp");
        std::fs::write(&replacement, "xy").unwrap();
        std::fs::rename(&replacement, &file).unwrap();
        changes.recv_timeout(WAIT).expect("rename-over noticed");
    }

    #[test]
    fn notices_files_appearing_and_disappearing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("later.allowlist");
        let (_watch, changes) = watch(vec![missing.clone()]);
        std::fs::write(&missing, "192.0.2.1\n").unwrap();
        changes.recv_timeout(WAIT).expect("appearance noticed");
        std::fs::remove_file(&missing).unwrap();
        changes.recv_timeout(WAIT).expect("removal noticed");
    }

    #[test]
    fn notices_a_new_file_in_a_watched_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_watch, changes) = watch(vec![dir.path().to_owned()]);
        std::fs::write(dir.path().join("zuid.toml"), "").unwrap();
        changes.recv_timeout(WAIT).expect("new file noticed");
    }

    #[test]
    fn stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let (watch, changes) = watch(vec![file.clone()]);
        drop(watch);
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            changes.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
