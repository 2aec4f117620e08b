//! Saving the allow-list layer organisation admins edit, shared by the admin API and the portal:
//! checked as a whole, recorded in SQL with a version check and an audit entry, applied to this
//! instance's live lists, then published to every instance.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use certgate_db::{AllowListEditor, DbError, NewAdminAllowEntry, SavedAdminAllowList};
use certgate_policies::parse_admin_allow_list;
use certgate_store::Change;
use serde::{Deserialize, Serialize};

use crate::admin::{AdminError, AdminState};

/// `GET /api/v1/allowlist/{org}`: the admin layer with its version, and the policy files'
/// entries (read-only) with where they are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllowListView {
    pub org: String,
    /// Send it back with a save; a save based on an older version is refused.
    pub version: i64,
    pub entries: Vec<AdminEntryView>,
    pub files: Vec<FileEntryView>,
    pub limits: LimitsView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEntryView {
    pub network: String,
    pub note: String,
    pub added_by: String,
    /// Unix seconds.
    pub added_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntryView {
    pub network: String,
    /// As `certgate policy explain` prints it: `allow_ips_files noord.allowlist:3`.
    pub source: String,
}

/// What an entry may be, for the editing page's hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    pub max_entries: usize,
}

/// `PUT /api/v1/allowlist/{org}`: the whole list as text (one address or CIDR a line, `#`
/// starts the entry's note), and the version it was based on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveAllowList {
    pub version: i64,
    pub text: String,
    /// Who saves, for the audit log; default `operator (admin API)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// The answer to a successful save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedView {
    pub version: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Why a save did not happen; nothing was written in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowListSaveError {
    UnknownOrganisation(String),
    /// Every bad line, as `line N: "text": why`.
    Invalid(Vec<String>),
    /// Someone else saved since `expected` was read; the list is at `current`.
    Stale {
        org: String,
        expected: i64,
        current: i64,
    },
    /// The actor is empty, too long or not printable.
    BadActor,
    /// The database has not opened yet.
    Unavailable,
    /// The database does not answer: nothing was saved.
    Unreachable,
    /// Logged; not for the user's eyes.
    Internal(String),
}

impl std::fmt::Display for AllowListSaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownOrganisation(org) => write!(f, "no organisation {org:?} in the policies"),
            Self::Invalid(errors) => {
                let count = errors.len();
                write!(
                    f,
                    "nothing was saved: {count} problem{} in the allow list",
                    if count == 1 { "" } else { "s" }
                )?;
                for error in errors {
                    write!(f, "\n{error}")?;
                }
                Ok(())
            }
            Self::Stale {
                org,
                expected,
                current,
            } => write!(
                f,
                "{}",
                DbError::StaleAllowList {
                    org: org.clone(),
                    expected: *expected,
                    current: *current
                }
            ),
            Self::BadActor => f.write_str("actor must be 1 to 200 printable characters"),
            Self::Unavailable => {
                f.write_str("the instance is still opening its database; try again shortly")
            }
            Self::Unreachable => f.write_str(
                "the database is unreachable, so nothing was changed; try again once it is back",
            ),
            Self::Internal(_) => f.write_str("internal error; see the server log"),
        }
    }
}

impl From<DbError> for AllowListSaveError {
    fn from(error: DbError) -> Self {
        if error.is_unreachable() {
            tracing::error!(%error, "the database is unreachable");
            AllowListSaveError::Unreachable
        } else {
            AllowListSaveError::Internal(error.to_string())
        }
    }
}

impl From<AllowListSaveError> for AdminError {
    fn from(error: AllowListSaveError) -> Self {
        match error {
            AllowListSaveError::UnknownOrganisation(_) => AdminError::NotFound(error.to_string()),
            AllowListSaveError::Invalid(ref errors) => AdminError::Invalid {
                message: error.to_string(),
                errors: errors.clone(),
            },
            AllowListSaveError::Stale { .. } => AdminError::Conflict(error.to_string()),
            AllowListSaveError::BadActor => AdminError::BadRequest(error.to_string()),
            AllowListSaveError::Unavailable => AdminError::Starting,
            AllowListSaveError::Unreachable => AdminError::Unavailable,
            AllowListSaveError::Internal(detail) => AdminError::Internal(detail),
        }
    }
}

impl AdminState {
    /// An organisation's admin allow list (from SQL, with its version) and its policy files'
    /// entries.
    pub async fn admin_allow_list(&self, org: &str) -> Result<AllowListView, AllowListSaveError> {
        let policies = self.policies.current();
        let organisation = policies
            .organisation(org)
            .ok_or_else(|| AllowListSaveError::UnknownOrganisation(org.to_owned()))?;
        let database = self.database.get().ok_or(AllowListSaveError::Unavailable)?;
        let list = database
            .admin_allow_list(org)
            .await
            .map_err(AllowListSaveError::from)?;
        let limits = self.allow_list_limits;
        Ok(AllowListView {
            org: org.to_owned(),
            version: list.version,
            entries: list
                .entries
                .into_iter()
                .map(|record| AdminEntryView {
                    network: record.network,
                    note: record.note,
                    added_by: record.added_by,
                    added_at: record.added_at,
                })
                .collect(),
            files: organisation
                .access
                .allow
                .entries()
                .iter()
                .map(|entry| FileEntryView {
                    network: entry.net.to_string(),
                    source: entry.source.to_string(),
                })
                .collect(),
            limits: LimitsView {
                min_prefix_v4: limits.min_prefix_v4,
                min_prefix_v6: limits.min_prefix_v6,
                max_entries: limits.max_entries,
            },
        })
    }

    /// Saves `org`'s whole admin allow list from `text` if it is still at `expected_version`:
    /// every line is checked first (nothing is saved if one is bad), then the list is recorded
    /// in SQL with its audit entry, applied on this instance and published to the others.
    pub async fn save_admin_allow_list(
        &self,
        org: &str,
        expected_version: i64,
        text: &str,
        editor: &AllowListEditor,
    ) -> Result<SavedAdminAllowList, AllowListSaveError> {
        if self.policies.current().organisation(org).is_none() {
            return Err(AllowListSaveError::UnknownOrganisation(org.to_owned()));
        }
        let actor = editor.actor.trim();
        if actor.is_empty() || actor.chars().count() > 200 || actor.chars().any(char::is_control) {
            return Err(AllowListSaveError::BadActor);
        }
        let entries = parse_admin_allow_list(text, &self.allow_list_limits)
            .map_err(AllowListSaveError::Invalid)?;
        let database = self.database.get().ok_or(AllowListSaveError::Unavailable)?;
        let rows: Vec<NewAdminAllowEntry> = entries
            .iter()
            .map(|entry| NewAdminAllowEntry {
                network: entry.net.to_string(),
                note: entry.note.clone(),
            })
            .collect();
        let editor = AllowListEditor {
            actor: actor.to_owned(),
            ip: editor.ip.clone(),
        };
        // Durable first: the list is in SQL (with its audit entry) before any gateway uses it.
        let saved = database
            .replace_admin_allow_list(org, expected_version, &rows, &editor, self.now())
            .await
            .map_err(|error| match error {
                DbError::StaleAllowList {
                    org,
                    expected,
                    current,
                } => AllowListSaveError::Stale {
                    org,
                    expected,
                    current,
                },
                other => AllowListSaveError::from(other),
            })?;
        self.admin_allow.install(
            org,
            saved.version,
            entries.iter().map(|e| e.to_allow_entry()).collect(),
        );
        // Other instances reload it from SQL when told; if publishing fails, their next resync
        // (on reconnect, at the latest within a minute) picks it up.
        if let Some(store) = self.store.get() {
            if let Err(error) = store
                .publish(&Change::AllowList {
                    org: org.to_owned(),
                })
                .await
            {
                self.metrics
                    .store_errors
                    .with_label_values(&[store.backend_name()])
                    .inc();
                tracing::warn!(%error, %org, "allow list saved, but not announced to other instances yet");
            }
        }
        tracing::info!(
            %org,
            version = saved.version,
            actor = %editor.actor,
            added = saved.added.len(),
            removed = saved.removed.len(),
            "admin allow list saved"
        );
        Ok(saved)
    }
}

/// A list at its limits (10 000 entries with long notes) is larger than axum's default 2 MB.
const MAX_BODY: usize = 4 << 20;

pub(crate) fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/allowlist/{org}", get(show).put(save))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn show(
    State(state): State<Arc<AdminState>>,
    Path(org): Path<String>,
) -> Result<Json<AllowListView>, AdminError> {
    Ok(Json(state.admin_allow_list(&org).await?))
}

async fn save(
    State(state): State<Arc<AdminState>>,
    Path(org): Path<String>,
    Json(request): Json<SaveAllowList>,
) -> Result<Json<SavedView>, AdminError> {
    let editor = AllowListEditor {
        actor: request
            .actor
            .unwrap_or_else(|| "operator (admin API)".to_owned()),
        ip: String::new(),
    };
    let saved = state
        .save_admin_allow_list(&org, request.version, &request.text, &editor)
        .await?;
    Ok(Json(SavedView {
        version: saved.version,
        added: saved.added,
        removed: saved.removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_errors_read_well() {
        let invalid = AllowListSaveError::Invalid(vec![
            "line 2: \"0.0.0.0/0\": broader than allowed".into(),
            "line 5: \"x\": not an IP address or CIDR".into(),
        ]);
        assert_eq!(
            invalid.to_string(),
            "nothing was saved: 2 problems in the allow list\n\
             line 2: \"0.0.0.0/0\": broader than allowed\n\
             line 5: \"x\": not an IP address or CIDR"
        );
        let stale = AllowListSaveError::Stale {
            org: "noord".into(),
            expected: 3,
            current: 4,
        };
        assert!(stale
            .to_string()
            .contains("you edited version 3, it is now at version 4"));
        assert!(matches!(AdminError::from(stale), AdminError::Conflict(_)));
    }
}
