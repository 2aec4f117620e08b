//! The organisation admins' pages under `/.certgate/admin/`: accounts (search, create, edit,
//! disable, reset MFA, devices), the audit log (filter and JSON-lines export) and the
//! organisation's settings as the policy has them. Admins are accounts with the `admin` role;
//! they see only their own organisation, and every change needs a second factor passed in the
//! last 15 minutes in this browser. Long lists (accounts, devices, audit) are read a page at a
//! time by the query; every change that cannot be undone is confirmed first, and every change
//! is announced on the page it leads back to.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_db::{
    Account, AccountInput, AccountKind, AuditEntry, Database, Given, InvalidAccount, NewAccount,
};
use certgate_store::Store;
use serde::Deserialize;

use crate::account::{me, org_time, Me};
use crate::extract::{Backends, FromPage, Page, PageError};
use crate::i18n::Texts;
use crate::pages::{
    self, AdminAccountPage, AdminAccountsPage, AdminAuditPage, AdminConfirmPage, AdminNewPage,
    AdminSettingsPage, AuditRow, Pager, UserRow,
};
use crate::{PortalState, Visit};
use certgate_accounts::{AccountError, Actor, Imported};

/// The role that opens these pages.
pub use certgate_db::ADMIN_ROLE;
/// A change needs a second factor passed this recently.
const FRESH_FOR_CHANGES: i64 = 15 * 60;
/// Rows on one page of the accounts, devices and audit lists.
const PAGE_SIZE: i64 = 50;
/// Pages further than this are not asked for (the offset stays far from overflowing).
const LAST_PAGE: i64 = 100_000;

mod words;

/// Which page of a list `?page=` asks for, from 1; anything else is the first.
fn page_number(raw: &str) -> i64 {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .map_or(1, |n| n.min(LAST_PAGE))
}

/// The rows to skip for `page`.
fn offset(page: i64) -> i64 {
    (page - 1) * PAGE_SIZE
}

/// One page of rows read with [`PAGE_SIZE`]` + 1` as the limit: the rows to show, and whether
/// there is a next page.
fn one_page<T>(mut rows: Vec<T>) -> (Vec<T>, bool) {
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    (rows, more)
}

impl Pager {
    /// The links around `page` of the list at `path`, with `params` (empty ones left out).
    fn around(t: &Texts, path: &str, params: &[(&str, &str)], page: i64, more: bool) -> Pager {
        let link = |to: i64| {
            let mut query: Vec<String> = params
                .iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| {
                    let value = percent_encoding::utf8_percent_encode(
                        value,
                        percent_encoding::NON_ALPHANUMERIC,
                    );
                    format!("{name}={value}")
                })
                .collect();
            if to > 1 {
                query.push(format!("page={to}"));
            }
            if query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", query.join("&"))
            }
        };
        Pager {
            previous: (page > 1).then(|| link(page - 1)),
            next: (more && page < LAST_PAGE).then(|| link(page + 1)),
            label: crate::i18n::fill(t.admin_page, "", &page.to_string(), ""),
        }
    }
}

/// A change just made, announced on the page it leads back to (`?done=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Saved,
    Disabled,
    Enabled,
    MfaReset,
    Revoked,
    RevokedAll,
    PasswordSet,
    Unblocked,
    Deleted,
}

impl Done {
    const ALL: [Done; 9] = [
        Done::Saved,
        Done::Disabled,
        Done::Enabled,
        Done::MfaReset,
        Done::Revoked,
        Done::RevokedAll,
        Done::PasswordSet,
        Done::Unblocked,
        Done::Deleted,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Done::Saved => "saved",
            Done::Disabled => "disabled",
            Done::Enabled => "enabled",
            Done::MfaReset => "reset-mfa",
            Done::Revoked => "revoked",
            Done::RevokedAll => "revoked-all",
            Done::PasswordSet => "password",
            Done::Unblocked => "unblocked",
            Done::Deleted => "deleted",
        }
    }

    /// What `?done=` names; anything else announces nothing.
    fn from_query(raw: &str) -> Option<Done> {
        Done::ALL.into_iter().find(|done| done.as_str() == raw)
    }

    fn text(self, t: &Texts) -> &'static str {
        match self {
            Done::Saved => t.admin_done_saved,
            Done::Disabled => t.admin_done_disabled,
            Done::Enabled => t.admin_done_enabled,
            Done::MfaReset => t.admin_done_reset_mfa,
            Done::Revoked => t.admin_done_revoked,
            Done::RevokedAll => t.admin_done_revoked_all,
            Done::PasswordSet => t.admin_done_password,
            Done::Unblocked => t.admin_done_unblocked,
            Done::Deleted => t.admin_done_deleted,
        }
    }

    /// Back to `page`, announcing this.
    fn back_to(self, page: &str) -> Response {
        Redirect::to(&format!("{page}?done={}", self.as_str())).into_response()
    }
}

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
    #[serde(default)]
    page: String,
    #[serde(default)]
    done: String,
}

/// `GET /.certgate/admin/`: the admin home is `/.certgate/admin`.
pub(crate) async fn home() -> Redirect {
    Redirect::permanent("/.certgate/admin")
}

/// `GET /.certgate/admin`: the organisation's accounts, searchable, a page at a time.
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
    let q: String = search.q.trim().chars().take(200).collect();
    let page = page_number(&search.page);
    let found = db
        .accounts_page(&admin.me.org.id, &q, offset(page), PAGE_SIZE + 1)
        .await;
    let Ok(found) = found else {
        return Err(PageError::unavailable(&visit));
    };
    let (accounts, more) = one_page(found);
    let now = state.now();
    let revocations = crate::account::revocations(&state, &admin.me.org.id, now).await;
    let passkeys = db
        .passkey_counts(&admin.me.org.id)
        .await
        .unwrap_or_default();
    let mut rows = Vec::with_capacity(accounts.len());
    for a in &accounts {
        let devices = match db.devices(&admin.me.org.id, &a.id).await {
            Ok(devices) => crate::account::active_devices(&revocations, &a.username, &devices, now),
            Err(_) => 0,
        };
        let passkeys = passkeys.get(&a.id).copied().unwrap_or(0);
        rows.push(user_row(&visit, a, devices, passkeys));
    }
    let c = visit.chrome(Some(&admin.me.org));
    Ok(pages::html(
        StatusCode::OK,
        &AdminAccountsPage {
            c: &c,
            q: &search.q,
            users: rows,
            pager: Pager::around(visit.texts, "/.certgate/admin", &[("q", &q)], page, more),
            notice: Done::from_query(&search.done).map(|done| done.text(visit.texts)),
        },
    ))
}

fn user_row(visit: &Visit, a: &Account, devices: usize, passkeys: usize) -> UserRow {
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
            certgate_db::MfaChoice::Passkey => t.method_passkey_plain,
        }),
        enrolled: a.mfa_enrolled,
        passkeys,
        last_login: a
            .last_login
            .map_or_else(|| "-".into(), |at| org_time(visit, &a.org, at)),
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

#[derive(Deserialize)]
pub(crate) struct Announced {
    #[serde(default)]
    done: String,
}

/// `GET /.certgate/admin/accounts/{id}`.
pub(crate) async fn account(
    State(state): State<Arc<PortalState>>,
    Path(id): Path<String>,
    Query(announced): Query<Announced>,
    page: AdminPage,
) -> Result<Response, PageError> {
    let account = page.their_account(&id).await?;
    let done = Done::from_query(&announced.done);
    let status = StatusCode::OK;
    Ok(account_view(&state, &page, &account, (None, done), status).await)
}

/// An account's page, with an error from what was just tried or a notice of what was done.
async fn account_view(
    state: &PortalState,
    page: &AdminPage,
    account: &Account,
    (error, done): (Option<String>, Option<Done>),
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
    let passkeys = db
        .passkeys(&admin.me.org.id, &account.id)
        .await
        .map_or(0, |p| p.len());
    let blocked = held_until(state, store, account).await.map(|until| {
        let until = org_time(visit, &account.org, until);
        crate::i18n::fill(visit.texts.admin_blocked_until, "", "", &until)
    });
    let c = visit.chrome(Some(&admin.me.org));
    pages::html(
        status,
        &AdminAccountPage {
            c: &c,
            csrf: admin.me.attempt.session.csrf(),
            user: user_row(
                visit,
                account,
                rows.iter().filter(|r| r.can_revoke).count(),
                passkeys,
            ),
            email: account.email.as_deref().unwrap_or_default(),
            mobile: account.mobile.as_deref().unwrap_or_default(),
            devices: rows,
            error,
            fresh: admin.fresh,
            notice: done.map(|done| done.text(visit.texts)),
            group: account.kind == AccountKind::Group,
            blocked,
        },
    )
}

/// Until when the guess throttle holds the names the account signs in with (its user name and
/// its e-mail address), the later of the two; `None` when neither is held, or the store cannot
/// say (logged: the page still shows the account).
async fn held_until(state: &PortalState, store: &Store, account: &Account) -> Option<i64> {
    let throttle = crate::flow::guess_throttle(state, store);
    let mut latest = None;
    for name in sign_in_names(account) {
        match throttle.held_until(&account.org, name).await {
            Ok(until) => latest = latest.max(until),
            Err(error) => {
                tracing::warn!(%error, "cannot read whether a sign-in is blocked");
                return None;
            }
        }
    }
    latest
}

/// The names an account signs in with: its user name and its e-mail address.
fn sign_in_names(account: &Account) -> impl Iterator<Item = &str> {
    std::iter::once(account.username.as_str()).chain(account.email.as_deref())
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
            let shown = (Some(message), None);
            return Ok(account_view(&state, &page, &account, shown, status).await);
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
        Ok(_) => return Ok(Done::Saved.back_to(&back)),
        Err(AccountError::Conflict(message)) => (message, StatusCode::CONFLICT),
        Err(AccountError::Invalid(message) | AccountError::NotAllowed(message)) => {
            (message, StatusCode::BAD_REQUEST)
        }
        Err(AccountError::Gone) => return Err(page.not_found()),
        Err(_) => return Err(PageError::unavailable(visit)),
    };
    let shown = (Some(message), None);
    Ok(account_view(&state, &page, &account, shown, status).await)
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    confirm: String,
    /// `set-password`: the new password, twice.
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

/// What a confirmation page asks: its question (`{org}` the name, `{n}` the user name), what
/// happens, the button, and whether that cannot be undone.
struct Question {
    question: &'static str,
    consequences: &'static str,
    button: &'static str,
    danger: bool,
}

/// The confirmation an action needs before it is carried out, if it needs one.
fn question(t: &Texts, action: &str) -> Option<Question> {
    let (question, consequences, button, danger) = match action {
        "reset-mfa" => (
            t.admin_reset_question,
            t.admin_reset_consequences,
            t.admin_reset_mfa,
            false,
        ),
        "revoke-device" => (
            t.admin_revoke_question,
            t.admin_revoke_consequences,
            t.admin_revoke_device,
            false,
        ),
        "revoke-all" => (
            t.admin_revoke_all_question,
            t.admin_revoke_all_consequences,
            t.admin_revoke_all,
            false,
        ),
        "delete" => (
            t.admin_delete_question,
            t.admin_delete_consequences,
            t.admin_delete,
            true,
        ),
        _ => return None,
    };
    Some(Question {
        question,
        consequences,
        button,
        danger,
    })
}

/// Why a new password is refused, in the page's words.
fn password_problem(t: &Texts, problem: &crate::password::PasswordError) -> &'static str {
    use crate::password::PasswordError;
    match problem {
        PasswordError::TooShort => t.password_too_short,
        PasswordError::TooLong => t.password_too_long,
        PasswordError::Common => t.password_common,
        PasswordError::ContainsUsername => t.password_has_username,
        PasswordError::Guessable => t.password_guessable,
        PasswordError::Hashing => t.trouble,
    }
}

/// `POST /.certgate/admin/accounts/{id}/{action}`: disable, enable, set-password (a shared
/// tablet's), and — after a confirmation page — reset-mfa, revoke-device, revoke-all, delete.
/// Each leads back with a notice of what was done.
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
    // A device to revoke is the account's own, or "not found".
    let device = if action == "revoke-device" {
        let found = db.device(&org.id, &form.device).await.ok().flatten();
        match found.filter(|d| d.account_id == account.id) {
            Some(device) => Some(device),
            None => return Err(page.not_found()),
        }
    } else {
        None
    };
    if form.confirm != "yes" {
        if let Some(asked) = question(t, &action) {
            let c = visit.chrome(Some(&org));
            let question =
                crate::i18n::fill(asked.question, &account.display_name, &account.username, "");
            return Ok(pages::html(
                StatusCode::OK,
                &AdminConfirmPage {
                    c: &c,
                    csrf: admin.me.attempt.session.csrf(),
                    action: &format!("/.certgate/admin/accounts/{id}/{action}"),
                    question: &question,
                    consequences: asked.consequences,
                    button: asked.button,
                    back: &back,
                    device: device.as_ref().map_or("", |d| d.id.as_str()),
                    danger: asked.danger,
                },
            ));
        }
    }
    let service = state.accounts(db);
    let actor = Actor::Admin {
        account: &admin.me.account,
        ip: &visit.ip,
    };
    let (done, announced) = match action.as_str() {
        "disable" => (
            service.disable(actor, &org, &account).await.map(|_| ()),
            Done::Disabled,
        ),
        "enable" => (
            service.enable(actor, &org, &account).await.map(|_| ()),
            Done::Enabled,
        ),
        "reset-mfa" => (
            service.reset_mfa(actor, &org, &account).await.map(|_| ()),
            Done::MfaReset,
        ),
        "delete" => match service.delete(actor, &org, &account).await {
            Ok(()) => return Ok(Done::Deleted.back_to("/.certgate/admin")),
            Err(AccountError::Gone) => return Err(page.not_found()),
            Err(_) => return Err(PageError::unavailable(visit)),
        },
        "revoke-device" => match &device {
            Some(device) => (
                service.revoke_device(actor, &org, &account, device).await,
                Done::Revoked,
            ),
            None => return Err(page.not_found()),
        },
        "revoke-all" => (
            service.revoke_all_devices(actor, &org, &account).await,
            Done::RevokedAll,
        ),
        "unblock" => {
            lift_block(&state, &page, &account).await?;
            (Ok(()), Done::Unblocked)
        }
        // People choose their own password through "forgot password"; a shared tablet has no
        // e-mail address for that, so its admin sets one.
        "set-password" if account.kind != AccountKind::Group => {
            let refused = (Some(t.admin_password_group_only.to_owned()), None);
            let status = StatusCode::BAD_REQUEST;
            return Ok(account_view(&state, &page, &account, refused, status).await);
        }
        "set-password" => {
            let hashed = if form.password != form.repeat {
                Err(t.password_mismatch)
            } else {
                // The portal's own rules for a new password, as on the reset page; hashing
                // is slow on purpose, so off the async threads.
                let typed = form.password.clone();
                let username = account.username.clone();
                let org_name = org.name.clone();
                let hashed = tokio::task::spawn_blocking(move || {
                    crate::password::check_new(&typed, &username, &[&org_name])?;
                    crate::password::hash(&typed)
                })
                .await;
                match hashed {
                    Ok(Ok(hash)) => Ok(hash),
                    Ok(Err(problem)) => Err(password_problem(t, &problem)),
                    Err(_) => Err(t.trouble),
                }
            };
            match hashed {
                Ok(hash) => (
                    service
                        .set_password(actor, &org, &account, &hash)
                        .await
                        .map(|_| ()),
                    Done::PasswordSet,
                ),
                Err(problem) => {
                    let refused = (Some(problem.to_owned()), None);
                    let status = StatusCode::BAD_REQUEST;
                    return Ok(account_view(&state, &page, &account, refused, status).await);
                }
            }
        }
        _ => return Err(page.not_found()),
    };
    match done {
        Ok(()) => Ok(announced.back_to(&back)),
        Err(AccountError::Gone) => Err(page.not_found()),
        Err(_) => Err(PageError::unavailable(visit)),
    }
}

/// Lifts the guess throttle's block on the names the account signs in with (its user name and
/// its e-mail address), and writes it to the audit log.
async fn lift_block(
    state: &PortalState,
    page: &AdminPage,
    account: &Account,
) -> Result<(), PageError> {
    let AdminPage {
        visit,
        store,
        db,
        it: admin,
    } = page;
    let throttle = crate::flow::guess_throttle(state, store);
    for name in sign_in_names(account) {
        if let Err(error) = throttle.lift(&account.org, name).await {
            tracing::error!(%error, "cannot lift a sign-in block");
            return Err(PageError::unavailable(visit));
        }
    }
    let entry = AuditEntry {
        org: account.org.clone(),
        at: state.now(),
        actor: admin.me.account.username.clone(),
        action: certgate_db::AuditAction::SignInUnblocked.as_str().into(),
        subject: account.username.clone(),
        ip: visit.ip.clone(),
        detail: String::new(),
    };
    if let Err(error) = db.append_audit(&entry).await {
        tracing::warn!(%error, "audit entry not written");
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    account: String,
    /// Days back to show (default 7).
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    page: String,
}

fn audit_window(state: &PortalState, query: &AuditQuery) -> i64 {
    state.now() - query.days.unwrap_or(7).clamp(1, 3660) * 86_400
}

async fn audit_entries(
    db: &Database,
    org: &str,
    query: &AuditQuery,
    since: i64,
    (offset, limit): (i64, i64),
) -> Vec<AuditEntry> {
    let who = Some(query.account.trim()).filter(|w| !w.is_empty());
    db.audit_page(org, since, who, offset, limit)
        .await
        .unwrap_or_default()
}

/// `GET /.certgate/admin/audit?account=&days=&page=`: the entries as sentences in the page's
/// language, newest first, a page at a time.
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
    let page = page_number(&query.page);
    let org = &admin.me.org.id;
    let found = audit_entries(&db, org, &query, since, (offset(page), PAGE_SIZE + 1)).await;
    let (entries, more) = one_page(found);
    // The people the entries name, by their names, in one query.
    let mut actors: Vec<String> = entries.iter().map(|e| e.actor.to_lowercase()).collect();
    actors.sort();
    actors.dedup();
    let names = db
        .display_names(org, &actors)
        .await
        .unwrap_or_else(|_| HashMap::new());
    let t = visit.texts;
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            at: org_time(&visit, org, e.at),
            sentence: words::audit_sentence(t, &e, &names),
            detail: words::audit_detail(t, &e.detail),
            action: e.action,
            ip: e.ip,
        })
        .collect();
    let days = query.days.unwrap_or(7).to_string();
    let c = visit.chrome(Some(&admin.me.org));
    pages::html(
        StatusCode::OK,
        &AdminAuditPage {
            c: &c,
            account: &query.account,
            export: format!(
                "/.certgate/admin/audit.jsonl?account={}&days={days}",
                percent_encoding::utf8_percent_encode(
                    &query.account,
                    percent_encoding::NON_ALPHANUMERIC
                ),
            ),
            days: query.days.unwrap_or(7),
            entries: rows,
            pager: Pager::around(
                t,
                "/.certgate/admin/audit",
                &[("account", query.account.trim()), ("days", &days)],
                page,
                more,
            ),
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
    let mut entries = audit_entries(&db, &admin.me.org.id, &query, since, (0, 100_000)).await;
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
    // A list in words; an empty one says so.
    let listed = |items: Vec<String>| {
        if items.is_empty() {
            t.value_none.to_owned()
        } else {
            items.join(", ")
        }
    };
    let facts: Vec<(&'static str, String)> = vec![
        (t.settings_file, org.source.display().to_string()),
        (
            t.settings_methods,
            listed(
                m.methods
                    .iter()
                    .map(|method| {
                        match method {
                            certgate_policies::MfaMethod::Authenticator => t.value_authenticator,
                            certgate_policies::MfaMethod::Sms => t.value_sms,
                            certgate_policies::MfaMethod::Email => t.value_email,
                            certgate_policies::MfaMethod::Passkey => t.value_passkey,
                        }
                        .to_owned()
                    })
                    .collect(),
            ),
        ),
        (
            t.settings_required,
            match m.required {
                certgate_policies::MfaRequirement::All => t.value_everyone,
                certgate_policies::MfaRequirement::Enrolled => t.value_enrolled,
            }
            .to_owned(),
        ),
        (t.settings_exempt, listed(m.exempt_roles.clone())),
        (t.settings_session, t.duration(m.session_lifetime)),
        (t.settings_trust, t.duration(m.trust_device_for)),
        (t.settings_group, t.duration(m.group_idle_timeout)),
        (
            t.settings_sso,
            listed(
                org.sso
                    .iter()
                    .map(|p| format!("{} ({})", p.label, p.kind.as_str()))
                    .collect(),
            ),
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
            lines
                .iter()
                .map(|line| words::allow_problem(visit.texts, line))
                .collect(),
            Some(visit.texts.allow_nothing_saved.to_owned()),
            StatusCode::BAD_REQUEST,
        ),
        // Said in the page's words; the message names versions the admin never saw.
        Err(crate::AllowListProblem::Stale(_)) => (
            Vec::new(),
            Some(visit.texts.allow_stale.to_owned()),
            StatusCode::CONFLICT,
        ),
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

#[derive(Deserialize)]
pub(crate) struct DevicesQuery {
    #[serde(default)]
    page: String,
}

/// `GET /.certgate/admin/devices?page=`: every device of the organisation, newest first, with
/// whose it is, a page at a time; each revocable on its account's page.
pub(crate) async fn devices(
    State(state): State<Arc<PortalState>>,
    Query(query): Query<DevicesQuery>,
    AdminPage {
        visit,
        store,
        db,
        it: admin,
    }: AdminPage,
) -> Result<Response, PageError> {
    let page = page_number(&query.page);
    let found = db
        .org_devices_page(&admin.me.org.id, offset(page), PAGE_SIZE + 1)
        .await;
    let Ok(found) = found else {
        return Err(PageError::unavailable(&visit));
    };
    let (found, more) = one_page(found);
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
            pager: Pager::around(visit.texts, "/.certgate/admin/devices", &[], page, more),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{EN, NL};

    #[test]
    fn long_lists_link_to_their_neighbours_with_the_query_kept() {
        assert_eq!(page_number(""), 1);
        assert_eq!(page_number("3"), 3);
        assert_eq!(page_number("0"), 1);
        assert_eq!(page_number("-2"), 1);
        assert_eq!(page_number("x"), 1);
        assert_eq!(page_number("99999999999999999999"), 1);
        assert_eq!(page_number("9999999"), LAST_PAGE);
        assert_eq!(offset(3), 100);

        let first = Pager::around(&EN, "/.certgate/admin", &[("q", "an na&")], 1, true);
        assert_eq!(first.previous, None);
        assert_eq!(
            first.next.as_deref(),
            Some("/.certgate/admin?q=an%20na%26&page=2")
        );
        assert_eq!(first.label, "Page 1");
        let second = Pager::around(&NL, "/.certgate/admin", &[("q", "")], 2, false);
        assert_eq!(second.previous.as_deref(), Some("/.certgate/admin"));
        assert_eq!(second.next, None);
        assert_eq!(second.label, "Pagina 2");

        let (rows, more) = one_page((0..51).collect::<Vec<_>>());
        assert_eq!((rows.len(), more), (50, true));
        let (rows, more) = one_page((0..50).collect::<Vec<_>>());
        assert_eq!((rows.len(), more), (50, false));
    }

    #[test]
    fn every_announcement_reads_back_from_its_link() {
        for done in Done::ALL {
            assert_eq!(Done::from_query(done.as_str()), Some(done));
            assert!(!done.text(&NL).is_empty() && !done.text(&EN).is_empty());
        }
        assert_eq!(Done::from_query("<script>"), None);
    }

    #[test]
    fn what_cannot_be_undone_is_asked_first_and_delete_is_red() {
        for action in ["reset-mfa", "revoke-device", "revoke-all", "delete"] {
            assert!(question(&NL, action).is_some(), "{action}");
        }
        for action in ["disable", "enable", "set-password", "nonsense"] {
            assert!(question(&NL, action).is_none(), "{action}");
        }
        assert!(question(&EN, "delete").is_some_and(|q| q.danger));
        assert!(question(&EN, "revoke-device").is_some_and(|q| !q.danger));
    }
}
