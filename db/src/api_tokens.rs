//! Organisation admins' API tokens: per organisation, each with a name, scopes from a fixed set,
//! an expiry and optional source networks. Only the SHA-256 of a token is stored; making the
//! token, showing it once and deciding whether a request may use it is the portal's job.
//! Networks are stored as the caller's canonical text (`192.0.2.0/24`).

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Database, DbError};

/// What a token may do. The set is fixed; a token carries a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiScope {
    AccountsRead,
    AccountsWrite,
    DevicesWrite,
    AllowlistRead,
    AllowlistWrite,
    AuditRead,
}

impl ApiScope {
    /// Every scope, in the order documentation lists them.
    pub const ALL: [ApiScope; 6] = [
        ApiScope::AccountsRead,
        ApiScope::AccountsWrite,
        ApiScope::DevicesWrite,
        ApiScope::AllowlistRead,
        ApiScope::AllowlistWrite,
        ApiScope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::AccountsRead => "accounts:read",
            ApiScope::AccountsWrite => "accounts:write",
            ApiScope::DevicesWrite => "devices:write",
            ApiScope::AllowlistRead => "allowlist:read",
            ApiScope::AllowlistWrite => "allowlist:write",
            ApiScope::AuditRead => "audit:read",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ApiScope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ApiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token to store: already checked by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub org: String,
    /// Public and random: names the token in URLs and lists.
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub scopes: Vec<ApiScope>,
    /// Canonical networks; empty: any source.
    pub sources: Vec<String>,
    /// The id of the admin account that made it.
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A token as stored. Its `Debug` leaves out the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub org: String,
    pub id: String,
    pub name: String,
    pub token_hash: String,
    /// Sorted, without duplicates.
    pub scopes: Vec<ApiScope>,
    pub sources: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Updated at most once a minute.
    pub last_used: Option<i64>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("org", &self.org)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("sources", &self.sources)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("org", &self.org)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// `last_used` is written at most this often (seconds), so busy scripts do not write on every
/// call.
const LAST_USED_EVERY: i64 = 60;

const COLUMNS: &str = "org, id, name, token_hash, scopes, sources, created_by, created_at, \
     expires_at, revoked_at, last_used";

impl Database {
    /// Stores a token; a name already used in the organisation (also by a revoked token) is
    /// [`DbError::Conflict`].
    pub async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken, DbError> {
        let mut scopes = new.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let result = sqlx::query(
            "INSERT INTO api_tokens (org, id, name, token_hash, scopes, sources, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&new.org)
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.token_hash)
        .bind(scopes.join(","))
        .bind(new.sources.join(","))
        .bind(&new.created_by)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(DbError::Conflict(format!(
                    "a token named {:?} exists already (revoked tokens keep their names)",
                    new.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.api_token(&new.org, &new.id)
            .await?
            .ok_or_else(|| DbError::Corrupt("token vanished after insert".into()))
    }

    /// The token whose hash is `token_hash`, of any organisation.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn api_token(&self, org: &str, id: &str) -> Result<Option<ApiToken>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE org = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// An organisation's tokens, oldest first, revoked and expired ones included.
    pub async fn api_tokens(&self, org: &str) -> Result<Vec<ApiToken>, DbError> {
        let sql =
            format!("SELECT {COLUMNS} FROM api_tokens WHERE org = $1 ORDER BY created_at, id");
        let rows = sqlx::query(&sql).bind(org).fetch_all(self.pool()).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// `false` when there is no such token or it was revoked already.
    pub async fn revoke_api_token(&self, org: &str, id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE org = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(org)
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that the token was used at `now`, unless that was noted less than a minute ago.
    pub async fn record_api_token_use(&self, org: &str, id: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used = $3 WHERE org = $1 AND id = $2 \
             AND (last_used IS NULL OR last_used <= $4)",
        )
        .bind(org)
        .bind(id)
        .bind(now)
        .bind(now - LAST_USED_EVERY)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken, DbError> {
    let scopes: String = row.try_get("scopes")?;
    let sources: String = row.try_get("sources")?;
    Ok(ApiToken {
        org: row.try_get("org")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        token_hash: row.try_get("token_hash")?,
        scopes: split_list(&scopes)
            .map(|s| {
                ApiScope::from_name(s).ok_or_else(|| DbError::Corrupt(format!("api scope {s:?}")))
            })
            .collect::<Result<_, _>>()?,
        sources: split_list(&sources).map(str::to_owned).collect(),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used: row.try_get("last_used")?,
    })
}

#[cfg(test)]
mod tests;
