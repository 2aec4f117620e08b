//! The allow-list layer organisation admins edit, per organisation: its entries and a version
//! number. A save replaces the whole list in one transaction, only if the version is still the
//! one the editor read (optimistic concurrency), and writes its audit entry in the same
//! transaction, so no save goes unrecorded. Networks are stored as the caller's canonical text
//! (`192.0.2.0/24`); checking them is the policies crate's job.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{AuditEntry, Backend, Database, DbError};

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAllowRecord {
    pub network: String,
    pub note: String,
    /// Who first added this network (a note changed later keeps it).
    pub added_by: String,
    /// Unix seconds.
    pub added_at: i64,
}

/// An organisation's admin allow list as one consistent snapshot. An organisation that never
/// saved one has version 0 and no entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAllowList {
    pub org: String,
    pub version: i64,
    /// In the order the admin wrote them.
    pub entries: Vec<AdminAllowRecord>,
}

/// One entry of a list to save: a checked, canonical network and its note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdminAllowEntry {
    pub network: String,
    pub note: String,
}

/// Who saves, for `added_by` and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowListEditor {
    pub actor: String,
    /// The editor's address, when known (the portal); empty otherwise.
    pub ip: String,
}

/// What a save changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedAdminAllowList {
    /// The new version: the one that was expected, plus one.
    pub version: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Networks kept with a different note.
    pub renoted: Vec<String>,
}

/// The audit log's action for a save.
pub const ALLOW_LIST_AUDIT_ACTION: &str = "allowlist.save";

/// Rows per INSERT: 6 parameters a row stays far below SQLite's 999-parameter floor.
const INSERT_CHUNK: usize = 100;

impl Database {
    /// One organisation's list (version 0 and empty when it was never saved).
    pub async fn admin_allow_list(&self, org: &str) -> Result<AdminAllowList, DbError> {
        let mut lists = self.admin_allow_list_snapshot(Some(org)).await?;
        Ok(lists.pop().unwrap_or_else(|| AdminAllowList {
            org: org.to_owned(),
            version: 0,
            entries: Vec::new(),
        }))
    }

    /// Every organisation's list that was ever saved, ordered by organisation.
    pub async fn admin_allow_lists(&self) -> Result<Vec<AdminAllowList>, DbError> {
        self.admin_allow_list_snapshot(None).await
    }

    /// Replaces `org`'s whole list with `entries`, only if its version is still
    /// `expected_version` (0 for a list never saved); else [`DbError::StaleAllowList`] and
    /// nothing changes. Networks kept from the old list keep who added them and when. The audit
    /// entry (action [`ALLOW_LIST_AUDIT_ACTION`], naming what was added and removed) is written
    /// in the same transaction.
    pub async fn replace_admin_allow_list(
        &self,
        org: &str,
        expected_version: i64,
        entries: &[NewAdminAllowEntry],
        editor: &AllowListEditor,
        now: i64,
    ) -> Result<SavedAdminAllowList, DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO admin_allowlist_versions (org) VALUES ($1) ON CONFLICT (org) DO NOTHING",
        )
        .bind(org)
        .execute(&mut *tx)
        .await?;
        // The row lock taken here makes a concurrent save wait, then find the version moved.
        let bumped = sqlx::query(
            "UPDATE admin_allowlist_versions SET version = version + 1, updated_at = $3, updated_by = $4 \
             WHERE org = $1 AND version = $2",
        )
        .bind(org)
        .bind(expected_version)
        .bind(now)
        .bind(&editor.actor)
        .execute(&mut *tx)
        .await?;
        if bumped.rows_affected() != 1 {
            let current: i64 =
                sqlx::query("SELECT version FROM admin_allowlist_versions WHERE org = $1")
                    .bind(org)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("version")?;
            tx.rollback().await?;
            return Err(DbError::StaleAllowList {
                org: org.to_owned(),
                expected: expected_version,
                current,
            });
        }
        let version = expected_version + 1;

        let before: HashMap<String, AdminAllowRecord> = entries_of(&mut tx, Some(org))
            .await?
            .into_iter()
            .map(|(_, record)| (record.network.clone(), record))
            .collect();
        sqlx::query("DELETE FROM admin_allowlist_entries WHERE org = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?;

        let mut saved = SavedAdminAllowList {
            version,
            added: Vec::new(),
            removed: Vec::new(),
            renoted: Vec::new(),
        };
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            let record = match before.get(&entry.network) {
                Some(old) => {
                    if old.note != entry.note {
                        saved.renoted.push(entry.network.clone());
                    }
                    AdminAllowRecord {
                        note: entry.note.clone(),
                        ..old.clone()
                    }
                }
                None => {
                    saved.added.push(entry.network.clone());
                    AdminAllowRecord {
                        network: entry.network.clone(),
                        note: entry.note.clone(),
                        added_by: editor.actor.clone(),
                        added_at: now,
                    }
                }
            };
            rows.push(record);
        }
        let kept: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.network.as_str()).collect();
        let mut removed: Vec<&AdminAllowRecord> = before
            .values()
            .filter(|old| !kept.contains(old.network.as_str()))
            .collect();
        removed.sort_by_key(|old| (old.added_at, old.network.clone()));
        saved.removed = removed.iter().map(|old| old.network.clone()).collect();

        for (chunk_index, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 6;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO admin_allowlist_entries (org, network, note, added_by, added_at, position) VALUES {}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (i, row) in chunk.iter().enumerate() {
                let position = (chunk_index * INSERT_CHUNK + i) as i64;
                query = query
                    .bind(org)
                    .bind(&row.network)
                    .bind(&row.note)
                    .bind(&row.added_by)
                    .bind(row.added_at)
                    .bind(position);
            }
            query.execute(&mut *tx).await?;
        }

        let audit = AuditEntry {
            org: org.to_owned(),
            at: now,
            actor: editor.actor.clone(),
            action: ALLOW_LIST_AUDIT_ACTION.to_owned(),
            subject: format!("version {version}"),
            ip: editor.ip.clone(),
            detail: saved.describe(),
        };
        // The same statement as `append_audit`, inside this transaction.
        sqlx::query(
            "INSERT INTO audit_log (org, at, actor, action, subject, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&audit.org)
        .bind(audit.at)
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(&audit.subject)
        .bind(&audit.ip)
        .bind(&audit.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// Versions and entries read in one transaction, so a version never comes with another
    /// version's entries (PostgreSQL needs REPEATABLE READ for that; a SQLite read transaction
    /// is a snapshot already).
    async fn admin_allow_list_snapshot(
        &self,
        org: Option<&str>,
    ) -> Result<Vec<AdminAllowList>, DbError> {
        let mut tx = self.pool().begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let versions = match org {
            Some(org) => {
                sqlx::query("SELECT org, version FROM admin_allowlist_versions WHERE org = $1")
                    .bind(org)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query("SELECT org, version FROM admin_allowlist_versions ORDER BY org")
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let mut lists = Vec::with_capacity(versions.len());
        let mut index = HashMap::new();
        for row in &versions {
            let org: String = row.try_get("org")?;
            index.insert(org.clone(), lists.len());
            lists.push(AdminAllowList {
                org,
                version: row.try_get("version")?,
                entries: Vec::new(),
            });
        }
        for (org, record) in entries_of(&mut tx, org).await? {
            match index.get(&org).and_then(|i| lists.get_mut(*i)) {
                Some(list) => list.entries.push(record),
                None => {
                    return Err(DbError::Corrupt(format!(
                        "admin allow-list entries of {org:?} without a version"
                    )))
                }
            }
        }
        tx.commit().await?;
        Ok(lists)
    }
}

impl SavedAdminAllowList {
    /// The audit log's detail: `added 192.0.2.7/32, …; removed …; note changed …`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("note changed", &self.renoted),
        ]
        .into_iter()
        .filter(|(_, networks)| !networks.is_empty())
        .map(|(what, networks)| format!("{what} {}", networks.join(", ")))
        .collect();
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// Entries with their organisation, in each organisation's order.
async fn entries_of(
    tx: &mut Transaction<'_, Any>,
    org: Option<&str>,
) -> Result<Vec<(String, AdminAllowRecord)>, DbError> {
    const COLUMNS: &str = "org, network, note, added_by, added_at";
    let rows = match org {
        Some(org) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM admin_allowlist_entries WHERE org = $1 ORDER BY position"
            ))
            .bind(org)
            .fetch_all(&mut **tx)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM admin_allowlist_entries ORDER BY org, position"
            ))
            .fetch_all(&mut **tx)
            .await?
        }
    };
    rows.iter().map(record_from_row).collect()
}

fn record_from_row(row: &AnyRow) -> Result<(String, AdminAllowRecord), DbError> {
    Ok((
        row.try_get("org")?,
        AdminAllowRecord {
            network: row.try_get("network")?,
            note: row.try_get("note")?,
            added_by: row.try_get("added_by")?,
            added_at: row.try_get("added_at")?,
        },
    ))
}

#[cfg(test)]
mod tests;
