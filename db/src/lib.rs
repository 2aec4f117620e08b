//! The SQL layer: durable records that must survive restarts and be shared by every instance.
//! SQLite in the data directory by default, PostgreSQL when `[database] url` says so; the same
//! queries serve both, migrations are embedded and applied at open.

mod accounts;
mod admin_allowlist;
mod api_tokens;
mod audit;
mod backup;
mod passkeys;
mod revocations;

pub use accounts::{
    read_import, Account, AccountInput, AccountKind, AuditEntry, Device, DeviceKind, DeviceTrust,
    Given, ImportColumns, ImportLine, InvalidAccount, MfaChoice, NewAccount, ADMIN_ROLE,
    IMPORT_MAX_BYTES, IMPORT_MAX_ROWS, MAX_ROLES,
};
pub use admin_allowlist::{
    AdminAllowList, AdminAllowRecord, AllowListEditor, NewAdminAllowEntry, SavedAdminAllowList,
    ALLOW_LIST_AUDIT_ACTION,
};
pub use api_tokens::{ApiScope, ApiToken, NewApiToken};
pub use audit::AuditAction;
pub use backup::{check_sqlite_copy, copy_sqlite, DatabaseLocation, PgDump};
pub use passkeys::{passkey_name, PasskeyRemoval, StoredPasskey, PASSKEY_NAME_MAX};
pub use revocations::{NewRevocation, Revocation, RevocationKind};

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::AnyPool;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The SHA-384 of `0003_sso_links.sql` (the same bytes in both dialects) as it was edited after
/// its release, to make the account index unique. A released migration is never edited: 0003 is
/// back to what was released and 0008 makes the index unique. Databases made while the edited
/// file was embedded recorded this checksum, which the migrator would refuse as a mismatch, so
/// [`Database::open`] records the released file's checksum for them instead; their 0008 only
/// renames the unique index they already have.
const EDITED_SSO_LINKS_CHECKSUM: [u8; 48] = [
    0x25, 0x73, 0x20, 0x69, 0x54, 0x0e, 0x27, 0x02, 0xc3, 0xe7, 0x19, 0x93, 0xd5, 0x93, 0x0c, 0x71,
    0x4d, 0x2d, 0x2f, 0x85, 0x6e, 0x80, 0xc7, 0x6f, 0xce, 0x06, 0xef, 0x80, 0x89, 0x2a, 0x49, 0x90,
    0x48, 0x42, 0x38, 0x12, 0x6e, 0x6e, 0x72, 0xcd, 0xe4, 0xfe, 0xb4, 0x0e, 0xca, 0x3f, 0x82, 0x5d,
];
const SSO_LINKS_VERSION: i64 = 3;

/// What can go wrong talking to the database. Messages name the operation, never a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("database url is not supported (use postgres://… or leave it empty for SQLite)")]
    UnsupportedUrl,
    /// `target` names the database without credentials: `postgres://db.example:5432/certgate`
    /// or the SQLite file.
    #[error("cannot open the database {target}: {source}")]
    Open {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
    /// An account import file as a whole cannot be read (its rows are checked one by one).
    #[error("the file is larger than {} MB", IMPORT_MAX_BYTES / 1_000_000)]
    ImportTooLarge,
    #[error("at most {IMPORT_MAX_ROWS} accounts a file; split it")]
    ImportTooManyRows,
    #[error("the first line: {0}")]
    ImportUnreadable(String),
    /// The first line of an import names a column that is none of [`ImportColumns::NAMES`].
    #[error(
        "the first line names a column {0:?}; the columns are {names}",
        names = ImportColumns::NAMES.join(",")
    )]
    ImportColumnUnknown(String),
    #[error("the column {0:?} is named twice")]
    ImportColumnTwice(String),
    #[error(
        "the first line must name the columns {names} (username and name at least)",
        names = ImportColumns::NAMES.join(",")
    )]
    ImportColumnsMissing,
    #[error("{0}")]
    Conflict(String),
    /// An admin allow-list save based on version `expected` while the list is at `current`:
    /// someone else saved meanwhile.
    #[error(
        "the allow list of {org} was changed by someone else meanwhile (you edited version \
         {expected}, it is now at version {current}); nothing was saved: load it again and \
         redo your change"
    )]
    StaleAllowList {
        org: String,
        expected: i64,
        current: i64,
    },
}

impl DbError {
    /// The database could not be reached (down, refusing, or every connection busy past the
    /// timeout), as opposed to a query it refused: nothing was read or written.
    pub fn is_unreachable(&self) -> bool {
        let error = match self {
            DbError::Open { .. } => return true,
            DbError::Query(error) => error,
            _ => return false,
        };
        matches!(
            error,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        )
    }
}

/// A database URL as it may be shown: scheme, host, port and database, never a user, password
/// or query parameters.
fn shown_url(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => without_query.to_owned(),
    }
}

/// A SQLite URL that creates its file (and the file's directory) when they do not exist yet,
/// as the empty URL does: `sqlite:///var/lib/certgate/accounts.db`, `sqlite://data/accounts.db`
/// or `sqlite:data/accounts.db` (relative to the working directory), `sqlite::memory:`. An
/// explicit `mode=` is kept (`mode=ro`, `mode=rw` to refuse a missing file).
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let (location, query) = url.split_once('?').unwrap_or((url, ""));
    let path = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p.starts_with("mode=")) {
        return Ok(url.to_owned());
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Open {
            target: shown_url(url),
            source: sqlx::Error::Io(e),
        })?;
    }
    let separator = if query.is_empty() { '?' } else { '&' };
    Ok(format!("{url}{separator}mode=rwc"))
}

/// Which SQL dialect the pool speaks; only migrations differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool with migrations applied.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Opens `url`, or the SQLite file `certgate.db` in `data_dir` when `url` is empty, and
    /// applies the embedded migrations.
    pub async fn open(url: &str, data_dir: &Path) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if url.is_empty() {
            let file = data_dir.join("certgate.db");
            (
                format!("sqlite://{}?mode=rwc", file.display()),
                Backend::Sqlite,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            (sqlite_url(url)?, Backend::Sqlite)
        } else {
            return Err(DbError::UnsupportedUrl);
        };
        let target = shown_url(&url);
        let open = |source| DbError::Open {
            target: target.clone(),
            source,
        };
        let options = AnyConnectOptions::from_str(&url).map_err(open)?;
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one connection avoids "database is locked".
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(open)?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        accept_edited_sso_links(&pool, migrator)
            .await
            .map_err(DbError::Migrate)?;
        migrator.run(&pool).await.map_err(DbError::Migrate)?;
        Ok(Database { pool, backend })
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Records the released 0003's checksum where the edited one was recorded (see
/// [`EDITED_SSO_LINKS_CHECKSUM`]), under the migrator's lock, as the migrator itself would write.
async fn accept_edited_sso_links(pool: &AnyPool, migrator: &Migrator) -> Result<(), MigrateError> {
    let Some(released) = migrator.iter().find(|m| m.version == SSO_LINKS_VERSION) else {
        return Ok(());
    };
    let mut conn = pool.acquire().await?;
    let done = async {
        conn.lock().await?;
        conn.ensure_migrations_table().await?;
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3",
        )
        .bind(released.checksum.to_vec())
        .bind(SSO_LINKS_VERSION)
        .bind(EDITED_SSO_LINKS_CHECKSUM.to_vec())
        .execute(&mut *conn)
        .await?;
        conn.unlock().await
    }
    .await;
    if done.is_err() {
        // Ending the session releases a PostgreSQL advisory lock it may still hold, which would
        // otherwise keep the migrator waiting on another connection.
        conn.close_on_drop();
    }
    done
}

#[cfg(test)]
mod tests;
