//! Account administration for operators (`certgate user …`) on the admin API. The CLI hashes
//! passwords itself, so a password never crosses the socket; disabling an account or resetting
//! its MFA refuses every credential issued until then on every instance.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use certgate_accounts::{AccountError, Accounts, Actor, Toggle, IMPORT_BODY_LIMIT};
use certgate_db::{Account, AccountInput, Given, InvalidAccount, NewAccount};
use certgate_policies::Organisation;
use serde::{Deserialize, Serialize};

use crate::admin::{AdminError, AdminState};

pub use certgate_accounts::{new_account_id, AccountEvent, AccountEvents};

/// The account service, for this request.
pub(crate) fn service(state: &AdminState) -> Result<Accounts<'_>, AdminError> {
    Ok(Accounts {
        db: state.database()?,
        revoke: state,
        events: state
            .events
            .get()
            .map(|events| &**events as &dyn AccountEvents),
        now: state.now(),
    })
}

impl From<AccountError> for AdminError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid(message) => AdminError::BadRequest(message),
            AccountError::Conflict(message) | AccountError::NotAllowed(message) => {
                AdminError::Conflict(message)
            }
            AccountError::Gone => AdminError::NotFound("no such account".into()),
            AccountError::Unavailable => AdminError::Unavailable,
            AccountError::NotRevoked(message) => AdminError::Internal(message),
        }
    }
}

pub(crate) fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/users", post(add).get(list))
        .route(
            "/api/v1/users/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/api/v1/users/{org}/{login}",
            get(show).patch(edit).delete(remove),
        )
        .route("/api/v1/users/{org}/{login}/devices", get(devices))
        .route(
            "/api/v1/users/{org}/{login}/disable",
            toggled(Toggle::Disable),
        )
        .route(
            "/api/v1/users/{org}/{login}/enable",
            toggled(Toggle::Enable),
        )
        .route(
            "/api/v1/users/{org}/{login}/reset-mfa",
            toggled(Toggle::ResetMfa),
        )
        .route("/api/v1/users/{org}/{login}/password", put(set_password))
}

fn toggled(change: Toggle) -> axum::routing::MethodRouter<Arc<AdminState>> {
    post(
        move |State(state): State<Arc<AdminState>>, Path((org, login)): Path<(String, String)>| async move {
            toggle(&state, &org, &login, change).await
        },
    )
}

/// `POST /api/v1/users`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    pub org: String,
    pub username: String,
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    /// `personal` (default) or `group`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PUT …/password`: a PHC argon2id hash made by the caller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password_hash: String,
}

/// An account as the API shows it: no secrets.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub org: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub kind: String,
    pub roles: Vec<String>,
    pub mfa_method: Option<String>,
    pub mfa_enrolled: bool,
    /// How many passkeys the account has (shown by `show` and `list`).
    #[serde(default)]
    pub passkeys: usize,
    pub has_password: bool,
    pub last_login: Option<i64>,
    pub disabled: bool,
}

impl From<&Account> for UserView {
    fn from(a: &Account) -> Self {
        UserView {
            id: a.id.clone(),
            org: a.org.clone(),
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            email: a.email.clone(),
            mobile: a.mobile.clone(),
            kind: a.kind.as_str().to_owned(),
            roles: a.roles.clone(),
            mfa_method: a.mfa_method.map(|m| m.as_str().to_owned()),
            mfa_enrolled: a.mfa_enrolled,
            passkeys: 0,
            has_password: a.password_hash.is_some(),
            last_login: a.last_login,
            disabled: a.disabled,
        }
    }
}

#[derive(Debug, Deserialize)]
struct OrgQuery {
    org: String,
}

pub(crate) fn known_org(state: &AdminState, org: &str) -> Result<Arc<Organisation>, AdminError> {
    match state.policies.current().organisation(org) {
        Some(org) => Ok(Arc::clone(org)),
        None => Err(AdminError::NotFound(format!(
            "no organisation {org:?} in the policies"
        ))),
    }
}

impl AddUser {
    /// What an operator typed, checked as every new account is.
    pub fn checked(&self) -> Result<NewAccount, InvalidAccount> {
        let input = AccountInput {
            username: &self.username,
            display_name: &self.display_name,
            email: self.email.as_deref(),
            mobile: self.mobile.as_deref(),
            kind: self.kind.as_deref(),
            roles: &self.roles,
        };
        NewAccount::checked(&self.org, &input, Given::Typed)
    }
}

async fn add(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<AddUser>,
) -> Result<Json<UserView>, AdminError> {
    let org = known_org(&state, &request.org)?;
    let new = request.checked().map_err(AccountError::from)?;
    let account = service(&state)?.create(Actor::Operator, &org, &new).await?;
    Ok(Json(UserView::from(&account)))
}

/// `POST /api/v1/users/import?org=…`: a CSV file as the body; every account created, or none
/// with every bad row named.
async fn import(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<OrgQuery>,
    body: String,
) -> Result<Json<Imported>, AdminError> {
    let org = known_org(&state, &query.org)?;
    let imported = service(&state)?
        .import(Actor::Operator, &org, &body)
        .await?;
    let problems = imported.problems();
    if problems.is_empty() {
        Ok(Json(Imported {
            created: imported.created,
        }))
    } else {
        Err(AdminError::Invalid {
            message: format!(
                "nothing was created: {} row{} cannot be imported",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            errors: problems,
        })
    }
}

/// What `POST /api/v1/users/import` made.
#[derive(Debug, Serialize, Deserialize)]
pub struct Imported {
    pub created: usize,
}

/// A credential issued to one of an account's devices.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: String,
    pub kind: String,
    pub trust: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
    pub ip: String,
    /// `active`, `expired`, `revoked` or `ended` (with every credential of the account, by a
    /// disable, a second-factor reset or a new password): whether the gateway admits it now.
    #[serde(default)]
    pub state: String,
    /// The browser and system it was issued to ("Chrome", "Android"); empty when not known.
    #[serde(default)]
    pub browser: String,
    #[serde(default)]
    pub system: String,
    /// The organisation's time zone (`Europe/Amsterdam`), for showing the times.
    #[serde(default)]
    pub time_zone: String,
}

impl DeviceView {
    /// `device` as it stands at `now` by the gateway's live revocations.
    fn of(
        d: &certgate_db::Device,
        username: &str,
        revocations: &certgate_accounts::RevocationSet,
        time_zone: &certgate_policies::TimeZone,
        now: i64,
    ) -> Self {
        DeviceView {
            id: d.id.clone(),
            kind: match d.kind {
                certgate_db::DeviceKind::Browser => "browser",
                certgate_db::DeviceKind::Certificate => "certificate",
            }
            .to_owned(),
            trust: match d.trust {
                certgate_db::DeviceTrust::Session => "session",
                certgate_db::DeviceTrust::Trusted => "trusted",
                certgate_db::DeviceTrust::Group => "group",
            }
            .to_owned(),
            created_at: d.created_at,
            expires_at: d.expires_at,
            last_seen: d.last_seen,
            revoked_at: d.revoked_at,
            ip: d.ip.clone(),
            state: revocations.standing(username, d, now).as_str().to_owned(),
            browser: d.browser.clone(),
            system: d.system.clone(),
            time_zone: time_zone.name().to_owned(),
        }
    }
}

/// `GET /api/v1/users/{org}/{login}/devices`: the account's credentials, newest first. The
/// last-seen time is the store's (the gateway's registry) when it is newer than SQL's.
async fn devices(
    State(state): State<Arc<AdminState>>,
    Path((org, login)): Path<(String, String)>,
) -> Result<Json<Vec<DeviceView>>, AdminError> {
    let (organisation, account) = find(&state, &org, &login).await?;
    let mut devices = state
        .database()?
        .devices(&org, &account.id)
        .await
        .map_err(AdminError::from)?;
    if let Some(store) = state.store.get() {
        let keys: Vec<(&str, &str)> = devices
            .iter()
            .map(|d| (org.as_str(), d.id.as_str()))
            .collect();
        let seen = store.last_seen_many(&keys).await.unwrap_or_default();
        for (device, seen) in devices.iter_mut().zip(seen) {
            device.last_seen = device.last_seen.max(seen);
        }
    }
    devices.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    // The set the gateway admits by, as it is now on this instance.
    let revocations = state.revocations.load();
    let now = state.now();
    Ok(Json(
        devices
            .iter()
            .map(|d| {
                DeviceView::of(
                    d,
                    &account.username,
                    &revocations,
                    &organisation.time_zone,
                    now,
                )
            })
            .collect(),
    ))
}

async fn list(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<OrgQuery>,
) -> Result<Json<Vec<UserView>>, AdminError> {
    known_org(&state, &query.org)?;
    let db = state.database()?;
    let accounts = db.accounts(&query.org).await.map_err(AdminError::from)?;
    let passkeys = db
        .passkey_counts(&query.org)
        .await
        .map_err(AdminError::from)?;
    Ok(Json(
        accounts
            .iter()
            .map(|a| UserView {
                passkeys: passkeys.get(&a.id).copied().unwrap_or(0),
                ..UserView::from(a)
            })
            .collect(),
    ))
}

/// The organisation and the account named by its user name or e-mail address.
async fn find(
    state: &AdminState,
    org: &str,
    login: &str,
) -> Result<(Arc<Organisation>, Account), AdminError> {
    let organisation = known_org(state, org)?;
    let account = state
        .database()?
        .find_account(org, login)
        .await
        .map_err(AdminError::from)?
        .ok_or_else(|| AdminError::NotFound(format!("no account {login:?} in {org}")))?;
    Ok((organisation, account))
}

/// `PATCH /api/v1/users/{org}/{login}`: what an administrator may change; absent fields stay.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditUser {
    #[serde(default)]
    pub display_name: Option<String>,
    /// An empty string removes the address.
    #[serde(default)]
    pub email: Option<String>,
    /// An empty string removes the number.
    #[serde(default)]
    pub mobile: Option<String>,
    /// `personal` or `group`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

async fn edit(
    State(state): State<Arc<AdminState>>,
    Path((org, login)): Path<(String, String)>,
    Json(request): Json<EditUser>,
) -> Result<Json<UserView>, AdminError> {
    let (org, account) = find(&state, &org, &login).await?;
    let keep = |new: Option<String>, old: Option<String>| match new {
        Some(text) if text.trim().is_empty() => None,
        Some(text) => Some(text),
        None => old,
    };
    let email = keep(request.email, account.email.clone());
    let mobile = keep(request.mobile, account.mobile.clone());
    let input = AccountInput {
        username: &account.username,
        display_name: request
            .display_name
            .as_deref()
            .unwrap_or(&account.display_name),
        email: email.as_deref(),
        mobile: mobile.as_deref(),
        kind: Some(request.kind.as_deref().unwrap_or(account.kind.as_str())),
        roles: request.roles.as_deref().unwrap_or(&account.roles),
    };
    let changes =
        NewAccount::changed(&account, &input, Given::Typed).map_err(AccountError::from)?;
    let stored = service(&state)?
        .edit(Actor::Operator, &org, &account, &changes)
        .await?;
    Ok(Json(UserView::from(&stored)))
}

/// `DELETE /api/v1/users/{org}/{login}`: a leaver. Every credential is refused first; the
/// account, its devices and single sign-on links go; the audit log keeps its trail.
async fn remove(
    State(state): State<Arc<AdminState>>,
    Path((org, login)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    let (org, account) = find(&state, &org, &login).await?;
    service(&state)?
        .delete(Actor::Operator, &org, &account)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn show(
    State(state): State<Arc<AdminState>>,
    Path((org, login)): Path<(String, String)>,
) -> Result<Json<UserView>, AdminError> {
    let (_, account) = find(&state, &org, &login).await?;
    let passkeys = state
        .database()?
        .passkeys(&account.org, &account.id)
        .await
        .map_err(AdminError::from)?;
    Ok(Json(UserView {
        passkeys: passkeys.len(),
        ..UserView::from(&account)
    }))
}

/// `POST …/disable`, `…/enable`, `…/reset-mfa`.
async fn toggle(
    state: &AdminState,
    org: &str,
    login: &str,
    toggle: Toggle,
) -> Result<Json<UserView>, AdminError> {
    let (org, account) = find(state, org, login).await?;
    let stored = service(state)?
        .toggle(Actor::Operator, &org, &account, toggle)
        .await?;
    Ok(Json(UserView::from(&stored)))
}

async fn set_password(
    State(state): State<Arc<AdminState>>,
    Path((org, login)): Path<(String, String)>,
    Json(request): Json<SetPassword>,
) -> Result<Json<UserView>, AdminError> {
    let (org, account) = find(&state, &org, &login).await?;
    let stored = service(&state)?
        .set_password(Actor::Operator, &org, &account, &request.password_hash)
        .await?;
    Ok(Json(UserView::from(&stored)))
}
