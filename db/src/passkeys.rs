//! Passkeys: an account's WebAuthn credentials. The portal verifies the ceremonies; this keeps
//! what it needs afterwards: the public key (opaque JSON), the authenticator's signature
//! counter, which only a conditional update may raise (of two uses of one assertion, or of a
//! key and its copy, one wins), and a name the person recognises.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Database, DbError};

/// A passkey as stored. Its `Debug` leaves out the key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub org: String,
    /// Ours, for the pages' buttons.
    pub id: String,
    pub account_id: String,
    /// The authenticator's id for the credential, base64url.
    pub credential_id: String,
    /// The random id the authenticator keeps for the account, base64url.
    pub user_handle: String,
    pub name: String,
    /// The public key and its settings as the WebAuthn library stores them.
    pub passkey: String,
    pub sign_count: i64,
    pub created_at: i64,
    pub last_used: Option<i64>,
}

impl std::fmt::Debug for StoredPasskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPasskey")
            .field("org", &self.org)
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("sign_count", &self.sign_count)
            .finish_non_exhaustive()
    }
}

/// What [`Database::remove_passkey_keeping_a_factor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyRemoval {
    Removed,
    /// It is the account's last factor: kept.
    LastFactor,
    /// The account has no such passkey.
    NotFound,
}

/// The longest passkey name kept, in characters.
pub const PASSKEY_NAME_MAX: usize = 60;

const COLUMNS: &str = "org, id, account_id, credential_id, user_handle, name, passkey, \
     sign_count, created_at, last_used";

fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredPasskey, DbError> {
    Ok(StoredPasskey {
        org: row.try_get("org")?,
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        credential_id: row.try_get("credential_id")?,
        user_handle: row.try_get("user_handle")?,
        name: row.try_get("name")?,
        passkey: row.try_get("passkey")?,
        sign_count: row.try_get("sign_count")?,
        created_at: row.try_get("created_at")?,
        last_used: row.try_get("last_used")?,
    })
}

/// A name as kept: one line, without control characters or characters that reorder or hide
/// text, at most [`PASSKEY_NAME_MAX`] characters, trimmed.
pub fn passkey_name(typed: &str) -> String {
    let line: String = typed
        .chars()
        .map(|c| {
            if crate::accounts::is_control_or_format(c) {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(PASSKEY_NAME_MAX)
        .collect();
    line.trim_end().to_owned()
}

impl Database {
    /// Stores a new passkey for its account and marks the account enrolled (a second factor
    /// stays required for it from now on), in one transaction. With `recovery_codes`, they
    /// replace the account's. With `replacing`, the factors before go first (the account's
    /// method, authenticator secret and other passkeys): set up after a recovery code, in place
    /// of what was lost. A credential id already stored (for any account) is
    /// [`DbError::Conflict`]; `Ok(false)` when the account is gone.
    pub async fn add_passkey(
        &self,
        passkey: &StoredPasskey,
        recovery_codes: Option<&[String]>,
        replacing: bool,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let account = sqlx::query(
            "UPDATE accounts SET mfa_enrolled = 1, \
             recovery_codes = COALESCE(CAST($3 AS TEXT), recovery_codes) \
             WHERE org = $1 AND id = $2",
        )
        .bind(&passkey.org)
        .bind(&passkey.account_id)
        .bind(recovery_codes.map(|codes| codes.join("\n")))
        .execute(&mut *tx)
        .await?;
        if account.rows_affected() != 1 {
            return Ok(false);
        }
        if replacing {
            sqlx::query(
                "UPDATE accounts SET mfa_method = NULL, totp_secret = NULL \
                 WHERE org = $1 AND id = $2",
            )
            .bind(&passkey.org)
            .bind(&passkey.account_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM passkeys WHERE org = $1 AND account_id = $2")
                .bind(&passkey.org)
                .bind(&passkey.account_id)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO passkeys (org, id, account_id, credential_id, user_handle, name, passkey, \
             sign_count, created_at, last_used) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&passkey.org)
        .bind(&passkey.id)
        .bind(&passkey.account_id)
        .bind(&passkey.credential_id)
        .bind(&passkey.user_handle)
        .bind(passkey_name(&passkey.name))
        .bind(&passkey.passkey)
        .bind(passkey.sign_count)
        .bind(passkey.created_at)
        .bind(passkey.last_used)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(DbError::Conflict(
                    "this passkey is already registered".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The account's passkeys, oldest first.
    pub async fn passkeys(
        &self,
        org: &str,
        account_id: &str,
    ) -> Result<Vec<StoredPasskey>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM passkeys WHERE org = $1 AND account_id = $2 \
             ORDER BY created_at, id"
        ))
        .bind(org)
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The passkey with this credential id, of whichever organisation and account.
    pub async fn passkey_by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<StoredPasskey>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM passkeys WHERE credential_id = $1"
        ))
        .bind(credential_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records a use: the new counter and key data, only if the counter stored is still the
    /// one read, and the new one is higher (or both are zero: an authenticator that does not
    /// count). `Ok(false)`: another
    /// use got there first, or the passkey was removed meanwhile; the use is refused.
    pub async fn use_passkey(
        &self,
        passkey: &StoredPasskey,
        sign_count: i64,
        data: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = $4, passkey = $5, last_used = $6 \
             WHERE org = $1 AND id = $2 AND sign_count = $3 AND ($4 > $3 OR ($4 = 0 AND $3 = 0))",
        )
        .bind(&passkey.org)
        .bind(&passkey.id)
        .bind(passkey.sign_count)
        .bind(sign_count)
        .bind(data)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes one of the account's passkeys; `Ok(false)` when it has no such passkey.
    pub async fn remove_passkey(
        &self,
        org: &str,
        account_id: &str,
        id: &str,
    ) -> Result<bool, DbError> {
        let done =
            sqlx::query("DELETE FROM passkeys WHERE org = $1 AND account_id = $2 AND id = $3")
                .bind(org)
                .bind(account_id)
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes one of the account's passkeys unless it is the last factor the account has (no
    /// other passkey, no method: an authenticator counts with its secret only). Checked and
    /// removed under the account row's lock, so two removals at once cannot leave none.
    pub async fn remove_passkey_keeping_a_factor(
        &self,
        org: &str,
        account_id: &str,
        id: &str,
    ) -> Result<PasskeyRemoval, DbError> {
        let mut tx = self.pool().begin().await?;
        // A write to the row first: PostgreSQL locks it until the commit (SQLite takes the
        // database's write lock).
        let locked = sqlx::query(
            "UPDATE accounts SET mfa_enrolled = mfa_enrolled WHERE org = $1 AND id = $2",
        )
        .bind(org)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        if locked.rows_affected() != 1 {
            return Ok(PasskeyRemoval::NotFound);
        }
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM passkeys WHERE org = $1 AND account_id = $2) AS keys, \
             (SELECT COUNT(*) FROM passkeys WHERE org = $1 AND account_id = $2 AND id = $3) AS this, \
             (SELECT COUNT(*) FROM accounts WHERE org = $1 AND id = $2 AND mfa_method IS NOT NULL \
              AND (mfa_method <> 'authenticator' OR totp_secret IS NOT NULL)) AS method",
        )
        .bind(org)
        .bind(account_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let (keys, this, method): (i64, i64, i64) = (
            row.try_get("keys")?,
            row.try_get("this")?,
            row.try_get("method")?,
        );
        if this == 0 {
            return Ok(PasskeyRemoval::NotFound);
        }
        if keys <= 1 && method == 0 {
            return Ok(PasskeyRemoval::LastFactor);
        }
        sqlx::query("DELETE FROM passkeys WHERE org = $1 AND account_id = $2 AND id = $3")
            .bind(org)
            .bind(account_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PasskeyRemoval::Removed)
    }

    /// Removes every passkey of the account (a factor set up after a recovery code replaces
    /// them); how many there were.
    pub async fn remove_passkeys(&self, org: &str, account_id: &str) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE org = $1 AND account_id = $2")
            .bind(org)
            .bind(account_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Replaces the account's recovery codes (their hashes), whatever its factor.
    pub async fn set_recovery_codes(
        &self,
        org: &str,
        account_id: &str,
        hashes: &[String],
    ) -> Result<bool, DbError> {
        let done =
            sqlx::query("UPDATE accounts SET recovery_codes = $3 WHERE org = $1 AND id = $2")
                .bind(org)
                .bind(account_id)
                .bind(hashes.join("\n"))
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many passkeys each account of the organisation has (accounts without are left out).
    pub async fn passkey_counts(&self, org: &str) -> Result<HashMap<String, usize>, DbError> {
        let rows = sqlx::query(
            "SELECT account_id, COUNT(*) AS n FROM passkeys WHERE org = $1 GROUP BY account_id",
        )
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok((row.try_get("account_id")?, usize::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}
