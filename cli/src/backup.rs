//! `certgate backup` and `certgate restore`: the CA, the data directory's keys and a consistent
//! copy of the SQLite database as one tar.gz with a manifest of names, sizes and SHA-256 sums.
//! A PostgreSQL database is left to `pg_dump`; configuration, policies and server certificates
//! are the operator's files and are not in a backup.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certgate_certs::authority::{
    ISSUING_CERT_FILE, ISSUING_KEY_FILE, ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use certgate_certs::CertificateAuthority;
use certgate_db::DatabaseLocation;
use certgate_policies::config::Config;
use clap::Args;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    config: crate::ConfigArg,
    /// The file to write: a tar.gz, mode 0600, written aside and renamed into place. An
    /// existing file is never replaced without --force.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    config: crate::ConfigArg,
    /// The file `certgate backup` wrote.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace the CA, keys and database the configured directories already hold (they
    /// become exactly the backup's).
    #[arg(long)]
    force: bool,
}

const FORMAT: &str = "certgate-backup";
const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
/// Far more than any manifest (a few hundred bytes); read whole, so bounded.
const MANIFEST_MAX_BYTES: u64 = 64 * 1024;
/// Far more than any key or certificate certgate writes; they are read whole, so bounded.
const KEY_MAX_BYTES: u64 = 1024 * 1024;

/// One file a backup may hold: the only names a restore accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    RootCert,
    RootKey,
    IssuingCert,
    IssuingKey,
    CredentialKey,
    SecretsKey,
    Database,
}

impl Part {
    const ALL: [Part; 7] = [
        Part::RootCert,
        Part::RootKey,
        Part::IssuingCert,
        Part::IssuingKey,
        Part::CredentialKey,
        Part::SecretsKey,
        Part::Database,
    ];

    /// Its name in the archive.
    fn name(self) -> String {
        match self {
            Part::RootCert => format!("ca/{ROOT_CERT_FILE}"),
            Part::RootKey => format!("ca/{ROOT_KEY_FILE}"),
            Part::IssuingCert => format!("ca/{ISSUING_CERT_FILE}"),
            Part::IssuingKey => format!("ca/{ISSUING_KEY_FILE}"),
            Part::CredentialKey => "data/credential.key".into(),
            Part::SecretsKey => "data/secrets.key".into(),
            Part::Database => "database/certgate.db".into(),
        }
    }

    fn named(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|part| part.name() == name)
    }

    /// Whether a backup of a deployment on `database` must hold it. The root key may be kept
    /// offline once the issuing CA is made (`ca init` advises it), so a backup may lack it.
    fn required(self, database: DatabaseKind) -> bool {
        match self {
            Part::RootKey => false,
            Part::Database => database == DatabaseKind::Sqlite,
            _ => true,
        }
    }

    /// Certificates are public; keys and the database (password hashes, personal data) are
    /// for certgate's user alone.
    fn mode(self) -> u32 {
        match self {
            Part::RootCert | Part::IssuingCert => 0o644,
            _ => 0o600,
        }
    }

    /// Where it lives in the deployment `config` describes; `database` is the SQLite file.
    fn path(self, config: &Config, database: Option<&Path>) -> Option<PathBuf> {
        Some(match self {
            Part::RootCert => config.ca.dir.join(ROOT_CERT_FILE),
            Part::RootKey => config.ca.dir.join(ROOT_KEY_FILE),
            Part::IssuingCert => config.ca.dir.join(ISSUING_CERT_FILE),
            Part::IssuingKey => config.ca.dir.join(ISSUING_KEY_FILE),
            Part::CredentialKey => config.data.dir.join("credential.key"),
            Part::SecretsKey => config.data.dir.join("secrets.key"),
            Part::Database => database?.to_path_buf(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DatabaseKind {
    Sqlite,
    Postgresql,
}

/// `manifest.json`, the archive's first entry, as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    format_version: u32,
    certgate_version: String,
    /// RFC 3339, UTC.
    created_at: String,
    database: DatabaseKind,
    files: Vec<FileRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord {
    name: String,
    bytes: u64,
    /// Lower-case hex.
    sha256: String,
}

/// A manifest that passed every check: known parts, each once, with what they must hash to.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    certgate_version: String,
    created_at: OffsetDateTime,
    database: DatabaseKind,
    files: BTreeMap<Part, Digest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest {
    bytes: u64,
    sha256: [u8; 32],
}

impl Contents {
    fn from_manifest(manifest: Manifest) -> Result<Contents, String> {
        if manifest.format != FORMAT {
            return Err(format!("its manifest says format {:?}", manifest.format));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(format!(
                "it is of format version {}, and this certgate reads version {FORMAT_VERSION}",
                manifest.format_version
            ));
        }
        let version_ok = !manifest.certgate_version.is_empty()
            && manifest.certgate_version.len() <= 64
            && manifest
                .certgate_version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c));
        if !version_ok {
            return Err("its manifest names no certgate version".into());
        }
        let created_at = OffsetDateTime::parse(&manifest.created_at, &Rfc3339)
            .map_err(|_| "its manifest has no valid creation time".to_owned())?;
        let mut files = BTreeMap::new();
        for record in manifest.files {
            let part = part_named(&record.name)?;
            let sha256 = hex::decode(&record.sha256)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| format!("its manifest has no SHA-256 for {}", record.name))?;
            let digest = Digest {
                bytes: record.bytes,
                sha256,
            };
            if files.insert(part, digest).is_some() {
                return Err(format!("its manifest lists {} twice", record.name));
            }
        }
        for part in Part::ALL {
            if part.required(manifest.database) && !files.contains_key(&part) {
                return Err(format!("its manifest lacks {}", part.name()));
            }
        }
        if manifest.database == DatabaseKind::Postgresql && files.contains_key(&Part::Database) {
            return Err("it was taken with PostgreSQL but holds a SQLite database".into());
        }
        Ok(Contents {
            certgate_version: manifest.certgate_version,
            created_at,
            database: manifest.database,
            files,
        })
    }
}

/// The part an archive entry or manifest line names; absolute paths, `..` and every name
/// certgate does not write are refused, each with its own reason.
fn part_named(name: &str) -> Result<Part, String> {
    if name.starts_with('/') {
        return Err(format!("{name:?} is an absolute path"));
    }
    if name.split('/').any(|component| component == "..") {
        return Err(format!("{name:?} points outside the directory (..)"));
    }
    Part::named(name).ok_or_else(|| format!("{name:?} is not a file a certgate backup holds"))
}

/// Reads through `inner`, counting and hashing what passes.
struct Hashing<R> {
    inner: R,
    context: ring::digest::Context,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            context: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    /// Reads what is left and returns the digest of everything read.
    fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(self.context.finish().as_ref());
        Ok(Digest {
            bytes: self.bytes,
            sha256,
        })
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.context.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What a backup copies from, in the order it is written.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Source {
    fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Source::Bytes(bytes) => Box::new(bytes.as_slice()),
            Source::File(path) => Box::new(BufReader::new(File::open(path)?)),
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn database_location(config: &Config) -> Result<DatabaseLocation, String> {
    DatabaseLocation::of(
        config.database.url.as_deref().unwrap_or_default(),
        &config.data.dir,
    )
    .map_err(|e| format!("database.url: {e}"))
}

/// `certgate backup`.
pub fn backup(args: BackupArgs) -> Result<(), String> {
    let config = crate::load_config(&args.config.config)?;
    let out = &args.out;
    if !args.force && fs::symlink_metadata(out).is_ok() {
        return Err(format!(
            "{} exists; a backup never replaces a file: choose another name, or add --force",
            out.display()
        ));
    }
    let location = database_location(&config)?;
    let out_dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Beside FILE, so the database copy and the archive are on its file system, not in /tmp;
    // made 0700, so nobody else can read them while they are written.
    let work = tempfile::Builder::new()
        .prefix(".certgate-backup-")
        .tempdir_in(out_dir)
        .map_err(|e| format!("cannot write in {}: {e}", out_dir.display()))?;

    let mut sources: Vec<(Part, Source)> = Vec::new();
    // The database before the keys: `keys rotate` only ever adds a key to secrets.key, so keys
    // read after the copy can open every secret in it.
    let database =
        match &location {
            DatabaseLocation::Sqlite(file) => {
                if !file.exists() {
                    return Err(format!(
                        "there is no database at {}: has certgate been started with this \
                     configuration?",
                        file.display()
                    ));
                }
                let copy = work.path().join("certgate.db");
                runtime()?
                    .block_on(certgate_db::copy_sqlite(file, &copy))
                    .map_err(|e| format!("cannot copy the database {}: {e}", file.display()))?;
                sources.push((Part::Database, Source::File(copy)));
                DatabaseKind::Sqlite
            }
            DatabaseLocation::SqliteInMemory => return Err(
                "database.url is an in-memory SQLite database: nothing in it outlives certgate, \
                 so there is nothing to back up"
                    .into(),
            ),
            DatabaseLocation::Postgres(_) => DatabaseKind::Postgresql,
        };
    let mut keys = read_keys(&config, database)?;
    // The CA's files are read one after another: a `ca rotate-issuing` in between could pair
    // a list of issuing CAs with a key none of them holds. Read again until they open together.
    let mut attempt = 1;
    while let Err(error) = ca_opens(&keys, &work.path().join("ca-check")) {
        if attempt == 3 {
            return Err(format!(
                "the CA in {} does not open: {error}",
                config.ca.dir.display()
            ));
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
        keys = read_keys(&config, database)?;
    }
    sources.extend(keys);
    sources.sort_by_key(|(part, _)| *part);

    let now = OffsetDateTime::now_utc();
    let mut files = Vec::new();
    for (part, source) in &sources {
        let digest = source
            .reader()
            .and_then(|reader| Hashing::new(reader).finish())
            .map_err(|e| format!("cannot read {}: {e}", part.name()))?;
        files.push(FileRecord {
            name: part.name(),
            bytes: digest.bytes,
            sha256: hex::encode(digest.sha256),
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        certgate_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&Rfc3339)
            .map_err(|e| e.to_string())?,
        database,
        files,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;

    let written = tempfile::Builder::new()
        .prefix(".certgate-backup-")
        .tempfile_in(out_dir)
        .map_err(|e| format!("cannot write in {}: {e}", out_dir.display()))?;
    write_archive(
        written.as_file(),
        &manifest_json,
        &sources,
        now.unix_timestamp(),
    )
    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let size = written.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    // tempfile made it 0600; renamed into place (or linked, refusing an existing name) whole.
    if args.force {
        written
            .persist(out)
            .map_err(|e| format!("cannot write {}: {}", out.display(), e.error))?;
    } else {
        written.persist_noclobber(out).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                format!(
                    "{} appeared while the backup was written; it was left alone",
                    out.display()
                )
            } else {
                format!("cannot write {}: {}", out.display(), e.error)
            }
        })?;
    }
    sync_dir(out_dir);

    println!("wrote {} ({size} bytes, mode 0600):", out.display());
    for (part, _) in &sources {
        println!("  {}", part.name());
    }
    if let DatabaseLocation::Sqlite(file) = &location {
        println!(
            "database/certgate.db is a consistent copy of {}, taken while certgate may run.",
            file.display()
        );
    }
    println!(
        "It holds the CA's and certgate's private keys unencrypted: keep it where only you can \
         read it. The configuration, policies and server certificates are not in it."
    );
    if let DatabaseLocation::Postgres(dump) = &location {
        println!(
            "The database is PostgreSQL ({}), which certgate does not copy: back it up with \
             pg_dump at the same time, for example\n  {}\n(pg_dump asks for the password, or \
             reads PGPASSWORD or ~/.pgpass).",
            dump.target(),
            dump.command("certgate-db.dump")
        );
    }
    Ok(())
}

/// The CA's and the data directory's files, as they are now.
fn read_keys(config: &Config, database: DatabaseKind) -> Result<Vec<(Part, Source)>, String> {
    let mut keys = Vec::new();
    for part in Part::ALL {
        let Some(path) = part.path(config, None) else {
            continue;
        };
        match read_small(&path) {
            Ok(bytes) => keys.push((part, Source::Bytes(bytes))),
            Err(error) if error.kind() == io::ErrorKind::NotFound && !part.required(database) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "{} is missing: {}",
                    path.display(),
                    if part == Part::CredentialKey || part == Part::SecretsKey {
                        "certgate makes it at its first start; back up after that"
                    } else {
                        "is ca.dir the directory `certgate ca init` made?"
                    }
                ))
            }
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
    }
    Ok(keys)
}

/// Whether the CA files among `keys` open as a CA, written into `dir` (inside the backup's
/// 0700 work directory) to be read the way `serve` reads them.
fn ca_opens(keys: &[(Part, Source)], dir: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir(dir).map_err(|e| e.to_string())?;
    for (part, source) in keys {
        let file = match part {
            Part::RootCert => ROOT_CERT_FILE,
            Part::IssuingCert => ISSUING_CERT_FILE,
            Part::IssuingKey => ISSUING_KEY_FILE,
            _ => continue,
        };
        if let Source::Bytes(bytes) = source {
            fs::write(dir.join(file), bytes).map_err(|e| e.to_string())?;
        }
    }
    let opened = CertificateAuthority::open(dir)
        .map(drop)
        .map_err(|e| e.to_string());
    let _ = fs::remove_dir_all(dir);
    opened
}
/// The whole file, refusing one larger than any key certgate writes.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(KEY_MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > KEY_MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than any key or certificate certgate writes",
        ));
    }
    Ok(bytes)
}

fn write_archive(
    file: &File,
    manifest: &[u8],
    sources: &[(Part, Source)],
    mtime: i64,
) -> io::Result<()> {
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    let mtime = u64::try_from(mtime).unwrap_or(0);
    let header = |name: &str, size: u64, mode: u32| -> io::Result<tar::Header> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name)?;
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        Ok(header)
    };
    tar.append(&header(MANIFEST, manifest.len() as u64, 0o600)?, manifest)?;
    for (part, source) in sources {
        let size = match source {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::File(path) => fs::metadata(path)?.len(),
        };
        tar.append(&header(&part.name(), size, part.mode())?, source.reader()?)?;
    }
    let mut gzip = tar.into_inner()?;
    gzip.flush()?;
    gzip.finish()?.sync_all()
}

/// Makes a rename in `dir` durable; a failure only risks the rename, not the data.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// `certgate restore`.
pub fn restore(args: RestoreArgs) -> Result<(), String> {
    let config = crate::load_config(&args.config.config)?;
    let from = &args.from;
    let unchanged = |why: String| format!("{why}; nothing was changed");
    if std::os::unix::net::UnixStream::connect(&config.server.admin_socket).is_ok() {
        return Err(unchanged(format!(
            "certgate is running with {} (its admin socket answers): stop it before restoring",
            args.config.config.display()
        )));
    }
    // Every check of the archive before anything is written.
    let contents = walk(from, |_, _| Ok(())).map_err(unchanged)?;
    let location = database_location(&config)?;
    let database = match (contents.database, &location) {
        (DatabaseKind::Sqlite, DatabaseLocation::Sqlite(file)) => Some(file.clone()),
        (DatabaseKind::Sqlite, DatabaseLocation::SqliteInMemory) => {
            return Err(unchanged(
                "database.url is an in-memory SQLite database, where the backup's database \
                 cannot go"
                    .into(),
            ))
        }
        (DatabaseKind::Sqlite, DatabaseLocation::Postgres(_)) => {
            return Err(unchanged(format!(
                "the backup holds a SQLite database, but {} uses PostgreSQL",
                args.config.config.display()
            )))
        }
        (DatabaseKind::Postgresql, DatabaseLocation::Postgres(_)) => None,
        (DatabaseKind::Postgresql, _) => {
            return Err(unchanged(format!(
                "the backup was taken with PostgreSQL (its database is in a pg_dump file), but \
                 {} uses SQLite: set database.url to the PostgreSQL database",
                args.config.config.display()
            )))
        }
    };
    let targets: Vec<(Part, PathBuf)> = Part::ALL
        .into_iter()
        .filter_map(|part| Some((part, part.path(&config, database.as_deref())?)))
        .collect();
    let present: Vec<String> = targets
        .iter()
        .filter(|(_, path)| fs::symlink_metadata(path).is_ok())
        .map(|(_, path)| path.display().to_string())
        .collect();
    if !present.is_empty() && !args.force {
        return Err(unchanged(format!(
            "the configured directories already hold a CA, keys or a database ({}): restore into \
             a deployment that has none, or add --force to replace them with the backup's",
            present.join(", ")
        )));
    }

    for (_, path) in &targets {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| unchanged(format!("cannot make {}: {e}", dir.display())))?;
            }
        }
    }
    // Each part is written aside in its own directory (so the rename below cannot cross file
    // systems) and checked against the manifest again; on any failure the files aside are
    // removed when dropped.
    let mut staged: BTreeMap<Part, tempfile::NamedTempFile> = BTreeMap::new();
    let again = walk(from, |part, reader| {
        let Some((_, path)) = targets.iter().find(|(p, _)| *p == part) else {
            return Err(format!("nowhere to put {}", part.name()));
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut file = tempfile::Builder::new()
            .prefix(".certgate-restore-")
            .tempfile_in(dir)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        io::copy(reader, file.as_file_mut())
            .and_then(|_| {
                file.as_file()
                    .set_permissions(fs::Permissions::from_mode(part.mode()))
            })
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        staged.insert(part, file);
        Ok(())
    })
    .map_err(unchanged)?;
    if again != contents {
        return Err(unchanged(format!(
            "{} changed while it was read",
            from.display()
        )));
    }
    if let Some(copy) = staged.get(&Part::Database) {
        runtime()?
            .block_on(certgate_db::check_sqlite_copy(copy.path()))
            .map_err(|e| unchanged(format!("the backup's database cannot be used: {e}")))?;
    }

    // Into place. A journal beside a replaced database would be played back into the
    // restored one on its next open, so it goes first; a known file the backup lacks (a root
    // key kept offline) belongs to the CA being replaced and goes too.
    if let Some(file) = &database {
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut sidecar = file.clone().into_os_string();
            sidecar.push(suffix);
            remove_if_present(Path::new(&sidecar)).map_err(unchanged)?;
        }
    }
    for (part, path) in &targets {
        match staged.remove(part) {
            Some(file) => {
                file.persist(path).map_err(|e| {
                    format!("cannot write {}: {}{PART_WAY}", path.display(), e.error)
                })?;
            }
            None => remove_if_present(path).map_err(|e| format!("{e}{PART_WAY}"))?,
        }
    }
    for dir in [&config.ca.dir, &config.data.dir] {
        sync_dir(dir);
    }

    let created = contents
        .created_at
        .format(&Rfc3339)
        .unwrap_or_else(|_| contents.created_at.unix_timestamp().to_string());
    println!(
        "restored the backup of {created} (certgate {}):",
        contents.certgate_version
    );
    for (part, path) in &targets {
        if contents.files.contains_key(part) {
            println!("  {} -> {}", part.name(), path.display());
        }
    }
    println!(
        "Start certgate: credentials issued before the backup are admitted again and the \
         revocations recorded before it still hold; revoke again what was revoked after it."
    );
    if let DatabaseLocation::Postgres(dump) = &location {
        println!(
            "The database is PostgreSQL ({}): restore it from the pg_dump file taken with this \
             backup, into an empty database, for example\n  {}",
            dump.target(),
            dump.restore_command("certgate-db.dump")
        );
    }
    Ok(())
}

/// Said when putting files into place fails after some were.
const PART_WAY: &str = "; the restore stopped part-way: fix that and restore again with --force";

fn remove_if_present(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("cannot remove {}: {error}", path.display())),
    }
}

/// Reads the backup `path` from start to end: the manifest first, then every part, which
/// must be a plain file of a known name, listed in the manifest, there once, with the size and
/// SHA-256 it lists; and every part the manifest lists must be there. `each` is given each
/// part's content as it is read (it may leave some unread; the rest is hashed too).
fn walk(
    path: &Path,
    mut each: impl FnMut(Part, &mut dyn Read) -> Result<(), String>,
) -> Result<Contents, String> {
    let bad = |why: String| format!("{} is not a usable certgate backup: {why}", path.display());
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut entries = archive
        .entries()
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let unreadable = |e: io::Error| bad(format!("cannot read it ({e})"));

    let mut first = entries
        .next()
        .ok_or_else(|| bad("it is empty".into()))?
        .map_err(unreadable)?;
    let first_name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if first_name != MANIFEST || !first.header().entry_type().is_file() {
        return Err(bad(format!(
            "it does not start with {MANIFEST} (but with {first_name:?})"
        )));
    }
    if first.size() > MANIFEST_MAX_BYTES {
        return Err(bad(format!("its {MANIFEST} is too large")));
    }
    let mut text = Vec::new();
    first
        .by_ref()
        .take(MANIFEST_MAX_BYTES)
        .read_to_end(&mut text)
        .map_err(unreadable)?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("its {MANIFEST} cannot be read: {e}")))?;
    let contents = Contents::from_manifest(manifest).map_err(bad)?;

    let mut seen = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(unreadable)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let part = part_named(&name).map_err(|why| bad(format!("the entry {why}")))?;
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("the entry {name:?} is not a plain file")));
        }
        let Some(expected) = contents.files.get(&part) else {
            return Err(bad(format!("the entry {name:?} is not in its manifest")));
        };
        if seen.contains(&part) {
            return Err(bad(format!("the entry {name:?} is there twice")));
        }
        seen.push(part);
        if entry.size() != expected.bytes {
            return Err(bad(format!(
                "{name} has {} bytes, and its manifest says {}",
                entry.size(),
                expected.bytes
            )));
        }
        let mut hashing = Hashing::new(&mut entry);
        each(part, &mut hashing)?;
        let digest = hashing.finish().map_err(unreadable)?;
        if digest != *expected {
            return Err(bad(format!(
                "{name} does not match its manifest: it was changed or damaged after the backup \
                 was made"
            )));
        }
    }
    if let Some(missing) = contents.files.keys().find(|part| !seen.contains(part)) {
        return Err(bad(format!(
            "{} is in its manifest but not in the archive (cut short?)",
            missing.name()
        )));
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_ca_read_across_a_rotation_does_not_open_and_a_whole_one_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = OffsetDateTime::now_utc();
        CertificateAuthority::init(&dir, now).unwrap();
        let read = |file: &str| Source::Bytes(fs::read(dir.join(file)).unwrap());
        let before = vec![
            (Part::RootCert, read(ROOT_CERT_FILE)),
            (Part::IssuingCert, read(ISSUING_CERT_FILE)),
            (Part::IssuingKey, read(ISSUING_KEY_FILE)),
        ];
        let check = tmp.path().join("check");
        assert_eq!(ca_opens(&before, &check), Ok(()));
        CertificateAuthority::rotate_issuing(&dir, now).unwrap();
        // The list read before the rotation, the key after it.
        let mut torn = before;
        torn[2] = (Part::IssuingKey, read(ISSUING_KEY_FILE));
        let error = ca_opens(&torn, &check).unwrap_err();
        assert!(error.contains("does not belong"), "{error}");
        assert!(!check.exists(), "the copy of the key is removed");
    }

    #[test]
    fn only_the_names_a_backup_writes_are_parts() {
        for part in Part::ALL {
            assert_eq!(part_named(&part.name()), Ok(part));
        }
        for (name, why) in [
            ("/etc/passwd", "absolute"),
            ("ca/../../etc/cron.d/x", "outside"),
            ("..", "outside"),
            ("data/admin.sock", "not a file a certgate backup holds"),
            ("data/certgate.db", "not a file a certgate backup holds"),
            ("ca/root.pem/", "not a file a certgate backup holds"),
        ] {
            let error = part_named(name).unwrap_err();
            assert!(error.contains(why), "{name}: {error}");
        }
    }

    fn manifest(database: DatabaseKind, names: &[&str]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            certgate_version: "0.1.0".into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            database,
            files: names
                .iter()
                .map(|name| FileRecord {
                    name: (*name).into(),
                    bytes: 1,
                    sha256: "00".repeat(32),
                })
                .collect(),
        }
    }

    const SQLITE_PARTS: [&str; 6] = [
        "ca/root.pem",
        "ca/issuing.pem",
        "ca/issuing.key",
        "data/credential.key",
        "data/secrets.key",
        "database/certgate.db",
    ];

    #[test]
    fn a_manifest_must_list_every_required_part_once() {
        let contents =
            Contents::from_manifest(manifest(DatabaseKind::Sqlite, &SQLITE_PARTS)).unwrap();
        assert_eq!(contents.files.len(), 6);
        assert!(!contents.files.contains_key(&Part::RootKey));
        // PostgreSQL: no database file, and one is refused.
        Contents::from_manifest(manifest(DatabaseKind::Postgresql, &SQLITE_PARTS[..5])).unwrap();
        let cases: [(Manifest, &str); 5] = [
            (
                manifest(DatabaseKind::Sqlite, &SQLITE_PARTS[..5]),
                "lacks database/certgate.db",
            ),
            (
                manifest(DatabaseKind::Postgresql, &SQLITE_PARTS),
                "holds a SQLite database",
            ),
            (
                manifest(
                    DatabaseKind::Sqlite,
                    &[&SQLITE_PARTS[..], &["ca/root.pem"]].concat(),
                ),
                "twice",
            ),
            (
                Manifest {
                    format_version: 2,
                    ..manifest(DatabaseKind::Sqlite, &SQLITE_PARTS)
                },
                "format version 2",
            ),
            (
                Manifest {
                    certgate_version: "1.0\u{1b}[2J".into(),
                    ..manifest(DatabaseKind::Sqlite, &SQLITE_PARTS)
                },
                "no certgate version",
            ),
        ];
        for (manifest, why) in cases {
            let error = Contents::from_manifest(manifest).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
    }

    #[test]
    fn unknown_manifest_fields_are_refused() {
        let text = r#"{"format":"certgate-backup","format_version":1,"certgate_version":"0.1.0",
            "created_at":"2026-01-02T03:04:05Z","database":"sqlite","files":[],"extra":1}"#;
        assert!(serde_json::from_str::<Manifest>(text).is_err());
    }
}
