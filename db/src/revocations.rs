//! The durable revocation record. A revocation is written here before any gateway applies it,
//! so a restart (or a Redis outage, later) can never bring a revoked credential back.

use sqlx::Row;

use crate::{Database, DbError};

/// What a revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// One certificate, by serial (lowercase hex, no colons).
    Serial,
    /// Every credential of one device id.
    Device,
    /// Every credential of an account issued before `revoked_at` ("not valid before").
    Account,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Serial => "serial",
            RevocationKind::Device => "device",
            RevocationKind::Account => "account",
        }
    }

    /// The kind named by [`RevocationKind::as_str`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "serial" => Some(RevocationKind::Serial),
            "device" => Some(RevocationKind::Device),
            "account" => Some(RevocationKind::Account),
            _ => None,
        }
    }

    fn parse(s: &str) -> Result<Self, DbError> {
        Self::from_name(s).ok_or_else(|| DbError::Corrupt(format!("revocation kind {s:?}")))
    }
}

/// A revocation to record. `org` is empty for a serial revoked without knowing its organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    pub org: String,
    pub kind: RevocationKind,
    pub subject: String,
    pub reason: String,
    /// Unix seconds. For [`RevocationKind::Account`] this is the "not valid before" time.
    pub revoked_at: i64,
    /// Unix seconds after which no credential it could cover is still valid.
    pub drop_after: i64,
}

/// A recorded revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: i64,
    pub org: String,
    pub kind: RevocationKind,
    pub subject: String,
    pub reason: String,
    pub revoked_at: i64,
    pub drop_after: i64,
}

impl Database {
    /// Records a revocation. Revoking the same thing again keeps the earliest record for a
    /// serial or device, and moves an account's "not valid before" forward.
    pub async fn record_revocation(&self, new: &NewRevocation) -> Result<Revocation, DbError> {
        let sql = match new.kind {
            RevocationKind::Account => {
                "INSERT INTO revocations (org, kind, subject, reason, revoked_at, drop_after) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org, kind, subject) DO UPDATE SET \
                 reason = excluded.reason, \
                 revoked_at = CASE WHEN excluded.revoked_at > revocations.revoked_at \
                 THEN excluded.revoked_at ELSE revocations.revoked_at END, \
                 drop_after = CASE WHEN excluded.drop_after > revocations.drop_after \
                 THEN excluded.drop_after ELSE revocations.drop_after END \
                 RETURNING id, org, kind, subject, reason, revoked_at, drop_after"
            }
            RevocationKind::Serial | RevocationKind::Device => {
                "INSERT INTO revocations (org, kind, subject, reason, revoked_at, drop_after) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org, kind, subject) DO UPDATE SET \
                 drop_after = CASE WHEN excluded.drop_after > revocations.drop_after \
                 THEN excluded.drop_after ELSE revocations.drop_after END \
                 RETURNING id, org, kind, subject, reason, revoked_at, drop_after"
            }
        };
        let row = sqlx::query(sql)
            .bind(&new.org)
            .bind(new.kind.as_str())
            .bind(&new.subject)
            .bind(&new.reason)
            .bind(new.revoked_at)
            .bind(new.drop_after)
            .fetch_one(self.pool())
            .await?;
        revocation_from_row(&row)
    }

    /// The live revocations recorded at or after `since` (unix seconds): what other instances
    /// may have added lately, for when the shared store's feed is not there to say so.
    pub async fn recent_revocations(
        &self,
        since: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, DbError> {
        let rows = sqlx::query(
            "SELECT id, org, kind, subject, reason, revoked_at, drop_after \
             FROM revocations WHERE revoked_at >= $1 AND drop_after > $2 ORDER BY id",
        )
        .bind(since)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    /// Every revocation that can still cover a valid credential at `now`.
    pub async fn live_revocations(&self, now: i64) -> Result<Vec<Revocation>, DbError> {
        let rows = sqlx::query(
            "SELECT id, org, kind, subject, reason, revoked_at, drop_after \
             FROM revocations WHERE drop_after > $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    /// The live revocations of one organisation (and every serial revocation, which names no
    /// organisation): what decides how its credentials stand.
    pub async fn live_revocations_of(
        &self,
        org: &str,
        now: i64,
    ) -> Result<Vec<Revocation>, DbError> {
        let rows = sqlx::query(
            "SELECT id, org, kind, subject, reason, revoked_at, drop_after \
             FROM revocations WHERE (org = $1 OR kind = 'serial') AND drop_after > $2 ORDER BY id",
        )
        .bind(org)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    /// Deletes revocations whose every covered credential has expired; returns how many.
    pub async fn purge_revocations(&self, now: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM revocations WHERE drop_after <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

fn revocation_from_row(row: &sqlx::any::AnyRow) -> Result<Revocation, DbError> {
    let kind: String = row.try_get("kind")?;
    Ok(Revocation {
        id: row.try_get("id")?,
        org: row.try_get("org")?,
        kind: RevocationKind::parse(&kind)?,
        subject: row.try_get("subject")?,
        reason: row.try_get("reason")?,
        revoked_at: row.try_get("revoked_at")?,
        drop_after: row.try_get("drop_after")?,
    })
}
