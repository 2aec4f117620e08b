//! The SQL layer: durable records that must survive restarts and be shared by every instance.
//! SQLite in the data directory by default, PostgreSQL when `[database] url` says so; the same
//! queries serve both, migrations are embedded and applied at open.

mod accounts;
mod admin_allowlist;
mod api_tokens;
mod audit;
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
pub use passkeys::{passkey_name, PasskeyRemoval, StoredPasskey, PASSKEY_NAME_MAX};
pub use revocations::{NewRevocation, Revocation, RevocationKind};

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

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

#[cfg(test)]
mod tests;
