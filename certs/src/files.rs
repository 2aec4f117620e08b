//! Writing and reading the files that hold keys and certificates. Files are created, never
//! replaced, and private files get mode 0600 at creation so a key is never readable by others,
//! not even for an instant.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{CertificateError, IoAction};

/// Creates `path` with mode 0600 and writes `bytes`; fails if the file already exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertificateError> {
    write_new(path, bytes, 0o600)
}

/// Creates `path` with mode 0644 and writes `bytes`; fails if the file already exists.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertificateError> {
    write_new(path, bytes, 0o644)
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, CertificateError> {
    fs::read_to_string(path).map_err(|err| CertificateError::io(IoAction::Read, path, &err))
}

/// Creates the private file `path` whole, or leaves it alone if it exists: written aside and
/// linked into place, so instances starting at once never read a half-written file and exactly
/// one of them creates it. `false` when the file was there already.
pub(crate) fn create_private_once(path: &Path, bytes: &[u8]) -> Result<bool, CertificateError> {
    let temp = aside(path);
    write_private(&temp, bytes).map_err(|e| e.of_path(path))?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(CertificateError::io(IoAction::Create, path, &err)),
    }
}

/// Replaces the private file `path` whole (written aside, then renamed over it); on failure
/// `path` is as it was and nothing is left aside.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), CertificateError> {
    replace_with(path, bytes, 0o600)
}

/// Replaces the public file `path` (mode 0644) whole, like [`replace_private`].
pub(crate) fn replace_public(path: &Path, bytes: &[u8]) -> Result<(), CertificateError> {
    replace_with(path, bytes, 0o644)
}

fn replace_with(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertificateError> {
    let temp = aside(path);
    write_new(&temp, bytes, mode).map_err(|e| e.of_path(path))?;
    fs::rename(&temp, path).map_err(|err| {
        let _ = fs::remove_file(&temp);
        CertificateError::io(IoAction::Create, path, &err)
    })
}

fn aside(path: &Path) -> std::path::PathBuf {
    path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertificateError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|err| CertificateError::io(IoAction::Create, path, &err))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(err) = written {
        // A half-written key or certificate would be mistaken for a good one on the next start.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(CertificateError::io(IoAction::Write, path, &err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn failures_name_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nodir/x.key");
        let error = write_private(&missing, b"k").unwrap_err().to_string();
        assert!(error.contains("nodir/x.key"), "{error}");
        assert!(error.contains("nodir does not exist"), "{error}");
        // Written aside first, but the message names the file meant.
        let error = create_private_once(&missing, b"k").unwrap_err().to_string();
        assert!(!error.contains("tmp-"), "{error}");
        assert!(error.contains("x.key"), "{error}");
        // Under /proc nobody may create files, root included.
        let error = create_private_once(Path::new("/proc/certgate-test/credential.key"), b"k")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("credential.key") && !error.contains("tmp-"),
            "{error}"
        );
    }

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_private(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            write_private(&path, b"two"),
            Err(CertificateError::AlreadyExists { path: path.clone() })
        );
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn public_files_are_at_most_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        write_public(&path, b"cert").unwrap();
        assert_eq!(mode(&path) & !0o644, 0);
        assert!(matches!(
            write_public(&path, b"x"),
            Err(CertificateError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.pem");
        assert_eq!(
            read_to_string(&path),
            Err(CertificateError::MissingFile { path })
        );
    }
}
