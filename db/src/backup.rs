//! What a backup needs from the database: where the configured one keeps its records, a
//! consistent copy of a SQLite file taken while certgate writes to it, and the check a copy
//! passes before it is restored. PostgreSQL is backed up with its own tool, `pg_dump`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::DbError;

/// Where the configured database keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file: `certgate.db` in the data directory, or the path of a `sqlite:` URL
    /// (relative to the working directory, as `serve` reads it).
    Sqlite(PathBuf),
    /// `sqlite::memory:`: nothing outlives the process, so there is nothing to back up.
    SqliteInMemory,
    /// A PostgreSQL server; backed up with `pg_dump`, never by certgate.
    Postgres(PgDump),
}

impl DatabaseLocation {
    /// The location `Database::open` would use for `url` (empty: SQLite in `data_dir`).
    pub fn of(url: &str, data_dir: &Path) -> Result<Self, DbError> {
        if url.is_empty() {
            return Ok(DatabaseLocation::Sqlite(data_dir.join("certgate.db")));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseLocation::Postgres(PgDump::of(url)));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(DbError::UnsupportedUrl);
        };
        let location = rest.split('?').next().unwrap_or_default();
        let path = location.strip_prefix("//").unwrap_or(location);
        if path.is_empty() || path == ":memory:" {
            return Ok(DatabaseLocation::SqliteInMemory);
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(path)))
    }
}

/// How to back up a PostgreSQL database with `pg_dump`, without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgDump {
    /// `postgres://user@host:port/name`, with only the query parameters that choose TLS.
    target: String,
}

impl std::fmt::Debug for PgDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDump")
            .field("target", &self.target)
            .finish()
    }
}

impl PgDump {
    /// Keeps the user, host, port and database of `url`; drops the password and every query
    /// parameter but the TLS ones (a `password=` parameter is a password too).
    fn of(url: &str) -> Self {
        let (location, query) = url.split_once('?').unwrap_or((url, ""));
        let (scheme, rest) = location.split_once("://").unwrap_or(("postgres", location));
        let rest = match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                if user.is_empty() {
                    host.to_owned()
                } else {
                    format!("{user}@{host}")
                }
            }
            None => rest.to_owned(),
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| {
                let name = p.split('=').next().unwrap_or_default();
                matches!(name, "sslmode" | "sslrootcert")
            })
            .collect();
        let mut target = format!("{scheme}://{rest}");
        if !kept.is_empty() {
            target.push('?');
            target.push_str(&kept.join("&"));
        }
        PgDump { target }
    }

    /// The database as it may be shown: no password, no secret parameters.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A `pg_dump` command line that writes the database to `file` in the custom format
    /// (`pg_restore` reads it); it asks for the password or reads `PGPASSWORD` or `~/.pgpass`.
    pub fn command(&self, file: &str) -> String {
        format!(
            "pg_dump --format=custom --file={} {}",
            shell_quoted(file),
            shell_quoted(&self.target)
        )
    }

    /// The `pg_restore` command line that reads such a file back into the (empty) database.
    pub fn restore_command(&self, file: &str) -> String {
        format!(
            "pg_restore --no-owner --dbname={} {}",
            shell_quoted(&self.target),
            shell_quoted(file)
        )
    }
}

/// `text` as one POSIX shell word.
fn shell_quoted(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@,=+".contains(c))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Opens the SQLite file `file` read-only, without creating it or changing its journal mode.
async fn open_read_only(file: &Path) -> Result<SqliteConnection, DbError> {
    SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .create_if_missing(false)
        // The running instance's writes are short; wait for them rather than fail.
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| DbError::Open {
            target: file.display().to_string(),
            source,
        })
}

/// Copies the SQLite database `file` to `to` (which must not exist) as one consistent
/// snapshot, while other processes go on writing to it: `VACUUM INTO` reads the whole database
/// in one read transaction and writes a compact, self-contained file (no journal beside it).
pub async fn copy_sqlite(file: &Path, to: &Path) -> Result<(), DbError> {
    let target = to.to_str().ok_or_else(|| {
        DbError::Query(sqlx::Error::Configuration(
            format!("{} is not a UTF-8 path", to.display()).into(),
        ))
    })?;
    let mut connection = open_read_only(file).await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    copied?;
    Ok(())
}

/// Checks that the SQLite file `file` is whole and is certgate's, from this version or an
/// earlier one (whose migrations `Database::open` applies): what a restore checks before it
/// puts a database in place.
pub async fn check_sqlite_copy(file: &Path) -> Result<(), DbError> {
    let mut connection = open_read_only(file).await?;
    let checked = check_open_copy(&mut connection).await;
    let _ = connection.close().await;
    checked
}

async fn check_open_copy(connection: &mut SqliteConnection) -> Result<(), DbError> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *connection)
        .await?;
    if problems != ["ok"] {
        return Err(DbError::Corrupt(format!(
            "the SQLite integrity check failed: {}",
            problems.join("; ")
        )));
    }
    let has_migrations: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *connection)
    .await?;
    if has_migrations == 0 {
        return Err(DbError::Corrupt(
            "not a certgate database (it has no record of migrations)".into(),
        ));
    }
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *connection)
            .await?;
    let known = super::SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    match applied {
        Some(applied) if applied > known => Err(DbError::Corrupt(format!(
            "the database was made by a newer certgate (schema {applied}; this one knows up to \
             {known}): restore it with that version"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Database;

    #[test]
    fn the_location_follows_the_url_as_open_reads_it() {
        let data = Path::new("/srv/data");
        assert_eq!(
            DatabaseLocation::of("", data).unwrap(),
            DatabaseLocation::Sqlite(data.join("certgate.db"))
        );
        for (url, path) in [
            ("sqlite:///var/lib/certgate/a.db", "/var/lib/certgate/a.db"),
            ("sqlite://data/a.db?mode=rw", "data/a.db"),
            ("sqlite:data/a.db", "data/a.db"),
        ] {
            assert_eq!(
                DatabaseLocation::of(url, data).unwrap(),
                DatabaseLocation::Sqlite(PathBuf::from(path)),
                "{url}"
            );
        }
        assert_eq!(
            DatabaseLocation::of("sqlite::memory:", data).unwrap(),
            DatabaseLocation::SqliteInMemory
        );
        assert!(matches!(
            DatabaseLocation::of("mysql://x", data),
            Err(DbError::UnsupportedUrl)
        ));
    }

    #[test]
    fn the_pg_dump_advice_never_carries_a_password() {
        let DatabaseLocation::Postgres(dump) = DatabaseLocation::of(
            "postgres://certgate:s3cr%40t@db.example:5432/certgate?sslmode=require&password=x2",
            Path::new("data"),
        )
        .unwrap() else {
            panic!("not PostgreSQL");
        };
        assert_eq!(
            dump.target(),
            "postgres://certgate@db.example:5432/certgate?sslmode=require"
        );
        let command = dump.command("certgate db.dump");
        assert_eq!(
            command,
            "pg_dump --format=custom --file='certgate db.dump' \
             'postgres://certgate@db.example:5432/certgate?sslmode=require'"
        );
        assert!(!command.contains("s3cr") && !command.contains("x2"));
        assert!(!format!("{dump:?}").contains("s3cr"));
        let DatabaseLocation::Postgres(bare) =
            DatabaseLocation::of("postgresql://:pw@[::1]/c", Path::new("d")).unwrap()
        else {
            panic!("not PostgreSQL");
        };
        assert_eq!(bare.target(), "postgresql://[::1]/c");
    }

    #[tokio::test]
    async fn a_copy_taken_while_another_connection_writes_is_whole_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open("", dir.path()).await.unwrap();
        sqlx::query("CREATE TABLE filler (n INTEGER)")
            .execute(db.pool())
            .await
            .unwrap();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..200 {
                    sqlx::query("INSERT INTO filler (n) VALUES (?)")
                        .bind(n)
                        .execute(db.pool())
                        .await
                        .unwrap();
                }
            })
        };
        let copy = dir.path().join("copy.db");
        copy_sqlite(&dir.path().join("certgate.db"), &copy)
            .await
            .unwrap();
        writer.await.unwrap();
        check_sqlite_copy(&copy).await.unwrap();
        // The copy is a database of its own that opens like the original.
        let reopened = Database::open(&format!("sqlite://{}", copy.display()), dir.path())
            .await
            .unwrap();
        reopened.ping().await.unwrap();
        // A copy never overwrites: VACUUM INTO refuses a file that exists and is not empty.
        assert!(copy_sqlite(&dir.path().join("certgate.db"), &copy)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_certgate_database_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        assert!(check_sqlite_copy(&garbage).await.is_err());
        let other = dir.path().join("other.db");
        let mut connection = SqliteConnectOptions::new()
            .filename(&other)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        let error = check_sqlite_copy(&other).await.unwrap_err();
        assert!(
            error.to_string().contains("not a certgate database"),
            "{error}"
        );
        assert!(check_sqlite_copy(&dir.path().join("missing.db"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_database_from_a_newer_certgate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open("", dir.path()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99999999999999, 'future', TRUE, X'00', 0)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        db.close().await;
        let error = check_sqlite_copy(&dir.path().join("certgate.db"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("newer certgate"), "{error}");
    }
}
