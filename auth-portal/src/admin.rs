//! The organisation admins' pages under `/.certgate/admin/`: accounts (search, create, edit,
//! disable, reset MFA, devices), the audit log (filter and JSON-lines export) and the
//! organisation's settings as the policy has them. Admins are accounts with the `admin` role;
//! they see only their own organisation, and every change needs a second factor passed in the
//! last 15 minutes in this browser.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_db::{
    Account, AccountInput, AccountKind, AuditEntry, Database, Given, InvalidAccount, NewAccount,
};
use certgate_store::Store;
use serde::Deserialize;

use crate::account::{date, me, Me};
use crate::extract::{Backends, FromPage, Page, PageError};
use crate::pages::{
    self, AdminAccountPage, AdminAccountsPage, AdminAuditPage, AdminConfirmPage, AdminNewPage,
    AdminSettingsPage, AuditRow, UserRow,
};
use crate::{BackendError, PortalState, Visit};
use certgate_accounts::{AccountError, Actor, Imported};

/// The role that opens these pages.
pub use certgate_db::ADMIN_ROLE;
/// A change needs a second factor passed this recently.
const FRESH_FOR_CHANGES: i64 = 15 * 60;
/// Audit entries shown on one page.
const AUDIT_PAGE: i64 = 200;

/// An admin looking at the pages.
pub(crate) struct Admin {
    pub(crate) me: Me,
    /// Passed a second factor in the last 15 minutes, in this browser.
    pub(crate) fresh: bool,
}

/// An admin page's request: the backends and the admin. Anyone not signed in signs in first
/// and comes back to the admin pages; anyone else signed in is refused (403).
pub(crate) type AdminPage = Page<Admin>;

impl FromPage for Admin {
    async fn load(
        state: &PortalState,
        b: &Backends,
        headers: &HeaderMap,
    ) -> Result<Self, PageError> {
        admin(state, &b.visit, &b.store, &b.db, headers).await
    }
}

async fn admin(
    state: &PortalState,
    visit: &Visit,
    store: &Store,
    db: &Database,
    headers: &HeaderMap,
) -> Result<Admin, PageError> {
    // Not signed in: to the sign-in page, and back to the admin pages afterwards.
    let me = me(state, visit, store, db, headers)
        .await
        .map_err(|_| PageError::sign_in_first("/.certgate/admin"))?;
    if !me.account.roles.iter().any(|r| r == ADMIN_ROLE) {
        return Err(PageError::Forbidden(visit.chrome(Some(&me.org))));
    }
    let now = state.now();
    let fresh = me.attempt.session.signed_in().is_some_and(|s| {
        s.account == me.account.id
            && s.mfa == certgate_certs::MfaStatus::Yes
            && now - s.at <= FRESH_FOR_CHANGES
    });
    Ok(Admin { me, fresh })
}

impl Admin {
    /// Whether the admin may make a change posted from the page `back`: with the page's CSRF
    /// token (else back to the page) and a fresh second factor (else sign in again, and back).
    fn may_change(&self, csrf: &str, back: &str) -> Result<(), PageError> {
        if !self.me.attempt.session.csrf_ok(csrf) {
            return Err(PageError::redirect(back));
        }
        if !self.fresh {
            return Err(PageError::sign_in_first(back));
        }
        Ok(())
    }
}

impl Page<Admin> {
    /// For a change to account `id`: the form's CSRF token and a fresh second factor
    /// ([`Admin::may_change`]), then the account.
    async fn changing(&self, id: &str, csrf: &str) -> Result<Account, PageError> {
        self.it.may_change(csrf, &account_page(id))?;
        self.their_account(id).await
    }

    /// An account of the admin's own organisation by id; anything else is "not found".
    async fn their_account(&self, id: &str) -> Result<Account, PageError> {
        let found = if id.len() > 64 {
            None
        } else {
            let org = &self.it.me.org.id;
            self.db.account(org, id).await.ok().flatten()
        };
        found.ok_or_else(|| self.not_found())
    }

    fn not_found(&self) -> PageError {
        PageError::NotFound(self.visit.chrome(Some(&self.it.me.org)))
    }
}

/// An account's page, where its changes are posted from.
fn account_page(id: &str) -> String {
    format!("/.certgate/admin/accounts/{id}")
}

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
}

/// `GET /.certgate/admin`: the organisation's accounts, searchable.
pub(crate) async fn accounts(
    State(state): State<Arc<PortalState>>,
    Query(search): Query<Search>,
    AdminPage {
        visit,
        db,
        it: admin,
        ..
    }: AdminPage,
) -> Result<Response, PageError> {
    let Ok(accounts) = db.accounts(&admin.me.org.id).await else {
        return Err(PageError::unavailable(&visit));
    };
    let q = search.q.trim().to_lowercase();
    let mut rows = Vec::new();
    for a in accounts.iter().filter(|a| {
        q.is_empty()
            || a.username.contains(&q)
            || a.display_name.to_lowercase().contains(&q)
            || a.email.as_deref().is_some_and(|e| e.contains(&q))
    }) {
        let devices = db
            .devices(&admin.me.org.id, &a.id)
            .await
            .map(|d| {
                d.iter()
                    .filter(|d| d.revoked_at.is_none() && d.expires_at > state.now())
                    .count()
            })
            .unwrap_or(0);
        rows.push(user_row(&visit, a, devices));
    }
    let c = visit.chrome(Some(&admin.me.org));
    Ok(pages::html(
        StatusCode::OK,
        &AdminAccountsPage {
            c: &c,
            q: &search.q,
            users: rows,
        },
    ))
}

fn user_row(visit: &Visit, a: &Account, devices: usize) -> UserRow {
    let t = visit.texts;
    UserRow {
        id: a.id.clone(),
        name: a.display_name.clone(),
        username: a.username.clone(),
        kind: match a.kind {
            AccountKind::Personal => t.kind_personal,
            AccountKind::Group => t.trust_group,
        },
        roles: a.roles.join(", "),
        mfa: a.mfa_method.map_or("-", |m| match m {
            certgate_db::MfaChoice::Authenticator => t.method_authenticator,
            certgate_db::MfaChoice::Sms => t.method_sms_plain,
            certgate_db::MfaChoice::Email => t.method_email_plain,
        }),
        enrolled: a.mfa_enrolled,
        last_login: a.last_login.map_or_else(|| "-".into(), date),
        devices,
        disabled: a.disabled,
    }
}

/// `GET /.certgate/admin/accounts/new`.
pub(crate) async fn new_page(
    AdminPage {
        visit, it: admin, ..
    }: AdminPage,
) -> Response {
    new_form(&visit, &admin, &NewForm::default(), None, StatusCode::OK)
}

#[derive(Deserialize, Default)]
pub(crate) struct NewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    mobile: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    roles: String,
}

fn new_form(
    visit: &Visit,
    admin: &Admin,
    form: &NewForm,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(Some(&admin.me.org));
    pages::html(
        status,
        &AdminNewPage {
            c: &c,
            csrf: admin.me.attempt.session.csrf(),
            username: &form.username,
            name: &form.name,
            email: &form.email,
            mobile: &form.mobile,
            group: form.kind == "group",
            roles: &form.roles,
            error,
            fresh: admin.fresh,
        },
    )
}

fn roles_of(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The account form's fields, as typed; the kind is a radio button, so anything but `group` is
/// a personal account.
fn typed<'a>(
    username: &'a str,
    name: &'a str,
    email: &'a str,
    mobile: &'a str,
    kind: &str,
    roles: &'a [String],
) -> AccountInput<'a> {
    AccountInput {
        username,
        display_name: name,
        email: Some(email),
        mobile: Some(mobile),
        kind: Some(if kind == "group" { "group" } else { "personal" }),
        roles,
    }
}

/// `POST /.certgate/admin/accounts/new`: a new account, and its welcome e-mail.
pub(crate) async fn create(
    State(state): State<Arc<PortalState>>,
    AdminPage {
        visit,
        db,
        it: admin,
        ..
    }: AdminPage,
    Form(form): Form<NewForm>,
) -> Result<Response, PageError> {
    admin.may_change(&form.csrf, "/.certgate/admin/accounts/new")?;
    let roles = roles_of(&form.roles);
    let new = NewAccount::checked(
        &admin.me.org.id,
        &typed(
            &form.username,
            &form.name,
            &form.email,
            &form.mobile,
            &form.kind,
            &roles,
        ),
        Given::Typed,
    );
    let new = match new {
        Ok(new) => new,
        Err(InvalidAccount(message)) => {
            let again = new_form(
                &visit,
                &admin,
                &form,
                Some(message),
                StatusCode::BAD_REQUEST,
            );
            return Ok(again);
        }
    };
    let actor = Actor::Admin {
        account: &admin.me.account,
        ip: &visit.ip,
    };
    let (message, status) = match state.accounts(&db).create(actor, &admin.me.org, &new).await {
        Ok(account) => return Ok(Redirect::to(&account_page(&account.id)).into_response()),
        Err(AccountError::Conflict(message)) => (message, StatusCode::CONFLICT),
        Err(AccountError::Invalid(message) | AccountError::NotAllowed(message)) => {
            (message, StatusCode::BAD_REQUEST)
        }
        Err(_) => return Err(PageError::unavailable(&visit)),
    };
    Ok(new_form(&visit, &admin, &form, Some(message), status))
}

/// `GET /.certgate/admin/accounts/{id}`.
pub(crate) async fn account(
    State(state): State<Arc<PortalState>>,
    Path(id): Path<String>,
    page: AdminPage,
) -> Result<Response, PageError> {
    let account = page.their_account(&id).await?;
    Ok(account_view(&state, &page, &account, None, StatusCode::OK).await)
}

async fn account_view(
    state: &PortalState,
    page: &AdminPage,
    account: &Account,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let AdminPage {
        visit,
        store,
        db,
        it: admin,
    } = page;
    let devices = db
        .devices(&admin.me.org.id, &account.id)
        .await
        .unwrap_or_default();
    let rows = crate::account::device_rows(state, visit, store, None, &devices).await;
    let c = visit.chrome(Some(&admin.me.org));
    pages::html(
        status,
        &AdminAccountPage {
            c: &c,
            csrf: admin.me.attempt.session.csrf(),
            user: user_row(visit, account, rows.iter().filter(|r| r.can_revoke).count()),
            email: account.email.as_deref().unwrap_or_default(),
            mobile: account.mobile.as_deref().unwrap_or_default(),
            devices: rows,
            error,
            fresh: admin.fresh,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    mobile: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    roles: String,
}

/// `POST /.certgate/admin/accounts/{id}/edit`.
pub(crate) async fn edit(
    State(state): State<Arc<PortalState>>,
    Path(id): Path<String>,
    page: AdminPage,
    Form(form): Form<EditForm>,
) -> Result<Response, PageError> {
    let account = page.changing(&id, &form.csrf).await?;
    let back = account_page(&id);
    let AdminPage {
        visit,
        db,
        it: admin,
        ..
    } = &page;
    let roles = roles_of(&form.roles);
    let checked = NewAccount::changed(
        &account,
        &typed(
            "",
            &form.name,
            &form.email,
            &form.mobile,
            &form.kind,
            &roles,
        ),
        Given::Typed,
    );
    let new = match checked {
        Ok(new) => new,
        Err(InvalidAccount(message)) => {
            let status = StatusCode::BAD_REQUEST;
            return Ok(account_view(&state, &page, &account, Some(message), status).await);
        }
    };
    let actor = Actor::Admin {
        account: &admin.me.account,
        ip: &visit.ip,
    };
    let edited = state
        .accounts(db)
        .edit(actor, &admin.me.org, &account, &new)
        .await;
    let (message, status) = match edited {
        Ok(_) => return Ok(Redirect::to(&back).into_response()),
        Err(AccountError::Conflict(message)) => (message, StatusCode::CONFLICT),
        Err(AccountError::Invalid(message) | AccountError::NotAllowed(message)) => {
            (message, StatusCode::BAD_REQUEST)
        }
        Err(AccountError::Gone) => return Err(page.not_found()),
        Err(_) => return Err(PageError::unavailable(visit)),
    };
    Ok(account_view(&state, &page, &account, Some(message), status).await)
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    confirm: String,
}

/// Every credential of `account` issued until now is refused, everywhere; counted in
/// `certgate_revocations_total` under `label`.
pub(crate) async fn revoke_account_counted(
    state: &PortalState,
    org: &certgate_policies::Organisation,
    account: &Account,
    now: i64,
    reason: &str,
    label: &'static str,
) -> Result<(), BackendError> {
    let revocation = certgate_accounts::account_revocation(&org.id, &account.username, reason, now);
    state.backend.revoke(&revocation, label).await
}

/// `POST /.certgate/admin/accounts/{id}/{action}`: disable, enable, reset-mfa (confirmed),
/// revoke-device, revoke-all.
pub(crate) async fn act(
    State(state): State<Arc<PortalState>>,
    Path((id, action)): Path<(String, String)>,
    page: AdminPage,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    let account = page.changing(&id, &form.csrf).await?;
    let back = account_page(&id);
    let AdminPage {
        visit,
        db,
        it: admin,
        ..
    } = &page;
    let org = Arc::clone(&admin.me.org);
    let t = visit.texts;
    let confirm = |path: &str, question: &str, consequences: &str, button: &str| {
        let c = visit.chrome(Some(&org));
        pages::html(
            StatusCode::OK,
            &AdminConfirmPage {
                c: &c,
                csrf: admin.me.attempt.session.csrf(),
                action: &format!("/.certgate/admin/accounts/{id}/{path}"),
                question: &crate::i18n::fill(
                    question,
                    &account.display_name,
                    &account.username,
                    "",
                ),
                consequences,
                button,
                back: &back,
            },
        )
    };
    let service = state.accounts(db);
    let actor = Actor::Admin {
        account: &admin.me.account,
        ip: &visit.ip,
    };
    let done = match action.as_str() {
        "disable" => service.disable(actor, &org, &account).await.map(|_| ()),
        "enable" => service.enable(actor, &org, &account).await.map(|_| ()),
        "reset-mfa" if form.confirm != "yes" => {
            return Ok(confirm(
                "reset-mfa",
                t.admin_reset_question,
                t.admin_reset_consequences,
                t.admin_reset_mfa,
            ))
        }
        "reset-mfa" => service.reset_mfa(actor, &org, &account).await.map(|_| ()),
        "delete" if form.confirm != "yes" => {
            return Ok(confirm(
                "delete",
                t.admin_delete_question,
                t.admin_delete_consequences,
                t.admin_delete,
            ))
        }
        "delete" => match service.delete(actor, &org, &account).await {
            Ok(()) => return Ok(Redirect::to("/.certgate/admin").into_response()),
            Err(_) => return Err(PageError::unavailable(visit)),
        },
        "revoke-device" => {
            let Some(device) = db
                .device(&org.id, &form.device)
                .await
                .ok()
                .flatten()
                .filter(|d| d.account_id == account.id)
            else {
                return Err(page.not_found());
            };
            service.revoke_device(actor, &org, &account, &device).await
        }
        "revoke-all" => service.revoke_all_devices(actor, &org, &account).await,
        _ => return Err(page.not_found()),
    };
    match done {
        Ok(()) => Ok(Redirect::to(&back).into_response()),
        Err(AccountError::Gone) => Err(page.not_found()),
        Err(_) => Err(PageError::unavailable(visit)),
    }
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    account: String,
    /// Days back to show (default 7).
    #[serde(default)]
    days: Option<i64>,
}

fn audit_window(state: &PortalState, query: &AuditQuery) -> i64 {
    state.now() - query.days.unwrap_or(7).clamp(1, 3660) * 86_400
}

async fn audit_entries(
    db: &Database,
    org: &str,
    query: &AuditQuery,
    since: i64,
    limit: i64,
) -> Vec<AuditEntry> {
    let who = Some(query.account.trim()).filter(|w| !w.is_empty());
    db.recent_audit(org, since, who, limit)
        .await
        .unwrap_or_default()
}

/// `GET /.certgate/admin/audit?account=&days=`.
pub(crate) async fn audit_page(
    State(state): State<Arc<PortalState>>,
    Query(query): Query<AuditQuery>,
    AdminPage {
        visit,
        db,
        it: admin,
        ..
    }: AdminPage,
) -> Response {
    let since = audit_window(&state, &query);
    let entries = audit_entries(&db, &admin.me.org.id, &query, since, AUDIT_PAGE).await;
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            at: date(e.at),
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            ip: e.ip,
            detail: e.detail,
        })
        .collect();
    let c = visit.chrome(Some(&admin.me.org));
    pages::html(
        StatusCode::OK,
        &AdminAuditPage {
            c: &c,
            account: &query.account,
            export: format!(
                "/.certgate/admin/audit.jsonl?account={}&days={}",
                percent_encoding::utf8_percent_encode(
                    &query.account,
                    percent_encoding::NON_ALPHANUMERIC
                ),
                query.days.unwrap_or(7)
            ),
            days: query.days.unwrap_or(7),
            entries: rows,
        },
    )
}

/// `GET /.certgate/admin/audit.jsonl`: the same entries as JSON lines.
pub(crate) async fn audit_export(
    State(state): State<Arc<PortalState>>,
    Query(query): Query<AuditQuery>,
    AdminPage { db, it: admin, .. }: AdminPage,
) -> Response {
    let since = audit_window(&state, &query);
    let mut body = String::new();
    // Oldest first in the file, of the newest 100 000.
    let mut entries = audit_entries(&db, &admin.me.org.id, &query, since, 100_000).await;
    entries.reverse();
    for e in entries {
        let line = serde_json::json!({
            "at": e.at, "org": e.org, "actor": e.actor, "action": e.action,
            "subject": e.subject, "ip": e.ip, "detail": e.detail,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"certgate-audit.jsonl\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /.certgate/admin/settings`: the organisation's policy, read-only, with its file.
pub(crate) async fn settings(
    AdminPage {
        visit, it: admin, ..
    }: AdminPage,
) -> Response {
    let org = &admin.me.org;
    let t = visit.texts;
    let m = &org.mfa;
    let facts: Vec<(&'static str, String)> = vec![
        (t.settings_file, org.source.display().to_string()),
        (
            t.settings_methods,
            m.methods
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            t.settings_required,
            match m.required {
                certgate_policies::MfaRequirement::All => "all",
                certgate_policies::MfaRequirement::Enrolled => "enrolled",
            }
            .to_owned(),
        ),
        (t.settings_exempt, m.exempt_roles.join(", ")),
        (t.settings_session, t.duration(m.session_lifetime)),
        (t.settings_trust, t.duration(m.trust_device_for)),
        (t.settings_group, t.duration(m.group_idle_timeout)),
        (
            t.settings_sso,
            org.sso
                .iter()
                .map(|p| format!("{} ({})", p.label, p.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (t.settings_allow, format!("{}", org.access.allow.len())),
    ];
    let c = visit.chrome(Some(org));
    let mut response = pages::html(StatusCode::OK, &AdminSettingsPage { c: &c, facts });
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /.certgate/admin/allowlist`: the admins' own addresses (editable) over the network
/// admins' files (read-only, with where each entry comes from).
pub(crate) async fn allow_list(
    State(state): State<Arc<PortalState>>,
    AdminPage {
        visit, it: admin, ..
    }: AdminPage,
) -> Result<Response, PageError> {
    let form = state
        .backend
        .allow_list(&admin.me.org.id)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the admin allow list cannot be read");
            PageError::unavailable(&visit)
        })?;
    Ok(allow_list_view(
        &visit,
        &admin,
        &form,
        &form.text,
        form.version,
        Vec::new(),
        None,
        StatusCode::OK,
    ))
}

#[allow(clippy::too_many_arguments)]
fn allow_list_view(
    visit: &Visit,
    admin: &Admin,
    form: &crate::AllowListForm,
    text: &str,
    version: i64,
    problems: Vec<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(Some(&admin.me.org));
    let limits = crate::i18n::fill(
        c.t.allow_limits,
        "",
        &form.min_prefix.0.to_string(),
        &form.min_prefix.1.to_string(),
    );
    pages::html(
        status,
        &pages::AdminAllowListPage {
            c: &c,
            csrf: admin.me.attempt.session.csrf(),
            version,
            text,
            files: form.files.clone(),
            limits,
            problems,
            error,
            fresh: admin.fresh,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct AllowListSave {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    text: String,
}

/// `POST /.certgate/admin/allowlist`: every bad line named and nothing saved; a save based on
/// an outdated view refused; otherwise applied on every instance.
pub(crate) async fn save_allow_list(
    State(state): State<Arc<PortalState>>,
    AdminPage {
        visit, it: admin, ..
    }: AdminPage,
    Form(form): Form<AllowListSave>,
) -> Result<Response, PageError> {
    admin.may_change(&form.csrf, "/.certgate/admin/allowlist")?;
    let org = admin.me.org.id.clone();
    let saved = state
        .backend
        .save_allow_list(
            &org,
            form.version,
            &form.text,
            &admin.me.account.username,
            &visit.ip,
        )
        .await;
    let (problems, error, status) = match saved {
        Ok(_) => return Ok(Redirect::to("/.certgate/admin/allowlist").into_response()),
        Err(crate::AllowListProblem::Invalid(lines)) => (
            lines,
            Some(visit.texts.allow_nothing_saved.to_owned()),
            StatusCode::BAD_REQUEST,
        ),
        Err(crate::AllowListProblem::Stale(message)) => {
            (Vec::new(), Some(message), StatusCode::CONFLICT)
        }
        Err(crate::AllowListProblem::Other(message)) => {
            (Vec::new(), Some(message), StatusCode::SERVICE_UNAVAILABLE)
        }
    };
    let Ok(current) = state.backend.allow_list(&org).await else {
        return Err(PageError::unavailable(&visit));
    };
    // The admin's text is shown again as typed, with the version it was based on.
    Ok(allow_list_view(
        &visit,
        &admin,
        &current,
        &form.text,
        form.version,
        problems,
        error,
        status,
    ))
}

#[derive(Deserialize, Default)]
pub(crate) struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
    /// `preview` or `import`.
    #[serde(default)]
    step: String,
}

/// The import page: the rows as checked, or why the CSV was refused as a whole.
fn import_view(
    visit: &Visit,
    admin: &Admin,
    csv: &str,
    checked: Result<Imported, AccountError>,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(Some(&admin.me.org));
    let ready = checked.as_ref().is_ok_and(Imported::ready);
    let (rows, error) = match checked {
        Ok(imported) => (imported.rows, None),
        Err(refused) => (Vec::new(), Some(refused.to_string())),
    };
    pages::html(
        status,
        &pages::AdminImportPage {
            c: &c,
            csrf: admin.me.attempt.session.csrf(),
            csv,
            rows,
            ready,
            error,
            fresh: admin.fresh,
        },
    )
}

/// `GET /.certgate/admin/import`.
pub(crate) async fn import_page(
    AdminPage {
        visit, it: admin, ..
    }: AdminPage,
) -> Response {
    let empty = Imported {
        rows: Vec::new(),
        created: 0,
    };
    let csv = "username,name,email,mobile,kind,roles\n";
    import_view(&visit, &admin, csv, Ok(empty), StatusCode::OK)
}

/// `POST /.certgate/admin/import`: a preview naming every bad row; the import writes all rows
/// or none.
pub(crate) async fn import(
    State(state): State<Arc<PortalState>>,
    AdminPage {
        visit,
        db,
        it: admin,
        ..
    }: AdminPage,
    Form(form): Form<ImportForm>,
) -> Result<Response, PageError> {
    admin.may_change(&form.csrf, "/.certgate/admin/import")?;
    let service = state.accounts(&db);
    let actor = Actor::Admin {
        account: &admin.me.account,
        ip: &visit.ip,
    };
    let checked = if form.step == "import" {
        service.import(actor, &admin.me.org, &form.csv).await
    } else {
        service.check_import(actor, &admin.me.org, &form.csv).await
    };
    let status = match &checked {
        Ok(imported) if imported.created > 0 => {
            return Ok(Redirect::to("/.certgate/admin").into_response())
        }
        Ok(imported) if imported.problems().is_empty() => StatusCode::OK,
        Ok(_) | Err(AccountError::Invalid(_)) => StatusCode::BAD_REQUEST,
        Err(_) => return Err(PageError::unavailable(&visit)),
    };
    Ok(import_view(&visit, &admin, &form.csv, checked, status))
}

/// `GET /.certgate/admin/devices`: every device of the organisation, newest first, with whose
/// it is; each revocable on its account's page.
pub(crate) async fn devices(
    State(state): State<Arc<PortalState>>,
    AdminPage {
        visit,
        store,
        db,
        it: admin,
    }: AdminPage,
) -> Result<Response, PageError> {
    let Ok(found) = db.org_devices(&admin.me.org.id, 1_000).await else {
        return Err(PageError::unavailable(&visit));
    };
    // `found` is newest first; device_rows lists what it is given last first (an account's own
    // devices come oldest first), so it gets them reversed.
    let owners: Vec<(String, String)> = found
        .iter()
        .map(|(username, device)| (username.clone(), device.account_id.clone()))
        .collect();
    let devices: Vec<_> = found.into_iter().rev().map(|(_, device)| device).collect();
    let rows = crate::account::device_rows(&state, &visit, &store, None, &devices).await;
    let c = visit.chrome(Some(&admin.me.org));
    Ok(pages::html(
        StatusCode::OK,
        &pages::AdminDevicesPage {
            c: &c,
            devices: rows.into_iter().zip(owners).collect(),
        },
    ))
}
