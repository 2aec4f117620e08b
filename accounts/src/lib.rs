//! The one account service. Every change to an account, whoever makes it, goes through here: an
//! operator (`certgate user …` through the admin socket or listener), an organisation admin on
//! the admin pages, or an admin API token. Each operation checks the same things, writes the
//! same audit action ([`AuditAction`]), refuses credentials by the same rule
//! ([`account_revocation`]) and tells the user the same way ([`AccountEvent`]).
//!
//! What a caller may do differs only by [`Actor`], and only here: a token neither makes
//! administrators or exempt roles nor changes an administrator's account, nor disables the
//! administrator who made it; a person changes only their own account (a new password after
//! "forgot", ending one of their devices); a single sign-on provider only creates accounts.

use certgate_db::{
    Account, AccountKind, AuditAction, AuditEntry, Database, DbError, Device, DeviceTrust,
    NewAccount, NewRevocation, RevocationKind, ADMIN_ROLE, IMPORT_MAX_BYTES,
};
use certgate_policies::{Organisation, MAX_CREDENTIAL_LIFETIME};

mod revocation;
#[cfg(test)]
mod tests;

pub use revocation::{device_standings, refusing_record, Refusal, RevocationSet, Standing};

/// How long a revocation is kept: as long as any credential could live. An operator's
/// certificate (`ca issue-client`) can outlive every portal-issued credential.
pub const REVOCATION_RETENTION_SECS: i64 = MAX_CREDENTIAL_LIFETIME.as_secs() as i64;

/// Who makes a change, for the rules and the audit log.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// An operator, through the admin socket or listener (or the CLI before the first start).
    Operator,
    /// An organisation admin on the admin pages, from `ip`.
    Admin { account: &'a Account, ip: &'a str },
    /// An admin API token, made by the account `created_by` (its id), used from `ip`.
    Token {
        name: &'a str,
        created_by: &'a str,
        ip: &'a str,
    },
    /// The person themselves, signed in (or holding a reset link) as `account`, from `ip`.
    User { account: &'a Account, ip: &'a str },
    /// A single sign-on provider (its name in the policy) that creates the accounts of the
    /// people it vouches for.
    Provider { name: &'a str, ip: &'a str },
}

impl Actor<'_> {
    /// The audit log's `actor`.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Operator => "operator (admin API)".to_owned(),
            Actor::Admin { account, .. } | Actor::User { account, .. } => account.username.clone(),
            Actor::Token { name, .. } => format!("token:{name}"),
            Actor::Provider { name, .. } => format!("sso:{name}"),
        }
    }

    fn ip(&self) -> &str {
        match self {
            Actor::Operator => "",
            Actor::Admin { ip, .. }
            | Actor::Token { ip, .. }
            | Actor::User { ip, .. }
            | Actor::Provider { ip, .. } => ip,
        }
    }
}

/// An account change the user hears about by e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEvent {
    /// A welcome e-mail (no activation link: the user sets a password through "forgot").
    Created,
    MfaReset,
    PasswordChanged,
}

/// Sends the notices (the portal, which has the mail settings and the words).
pub trait AccountEvents: Send + Sync {
    fn changed(&self, account: &Account, event: AccountEvent);
}

/// Makes every gateway refuse what a revocation names.
#[async_trait::async_trait]
pub trait Revoke: Send + Sync {
    /// Records `revocation` durably, then applies it on every instance; `label` is the
    /// `certgate_revocations_total` reason. Fails with [`AccountError::NotRevoked`].
    async fn revoke(
        &self,
        revocation: &NewRevocation,
        label: &'static str,
    ) -> Result<(), AccountError>;
}

/// Revokes by recording only, for changes made while no instance runs (`certgate user …
/// --offline`): every instance reads the live revocations from the database when it starts.
pub struct RecordOnly<'a>(pub &'a Database);

#[async_trait::async_trait]
impl Revoke for RecordOnly<'_> {
    async fn revoke(
        &self,
        revocation: &NewRevocation,
        _label: &'static str,
    ) -> Result<(), AccountError> {
        self.0
            .record_revocation(revocation)
            .await
            .map(|_| ())
            .map_err(|error| AccountError::NotRevoked(error.to_string()))
    }
}

/// Why an account change was not made. Nothing was changed, except where said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// What the caller gave is not valid; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken, or the change conflicts with the account's state.
    #[error("{0}")]
    Conflict(String),
    /// This caller may not make this change.
    #[error("{0}")]
    NotAllowed(String),
    /// The account is gone.
    #[error("no such account")]
    Gone,
    /// The database does not answer.
    #[error("the database is unavailable")]
    Unavailable,
    /// The change is stored but its revocation could not be made (the store and the database
    /// refused it); retrying makes it.
    #[error("the change is saved but its credentials could not be refused: {0}")]
    NotRevoked(String),
}

impl From<DbError> for AccountError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Conflict(message) => AccountError::Conflict(message),
            error => {
                tracing::error!(%error, "account change failed in the database");
                AccountError::Unavailable
            }
        }
    }
}

impl From<certgate_db::InvalidAccount> for AccountError {
    fn from(certgate_db::InvalidAccount(message): certgate_db::InvalidAccount) -> Self {
        AccountError::Invalid(message)
    }
}

/// The revocation that refuses every credential of `username` issued until `now`.
pub fn account_revocation(org: &str, username: &str, reason: &str, now: i64) -> NewRevocation {
    NewRevocation {
        org: org.to_owned(),
        kind: RevocationKind::Account,
        subject: username.to_owned(),
        reason: reason.to_owned(),
        revoked_at: now,
        drop_after: now.saturating_add(REVOCATION_RETENTION_SECS),
    }
}

/// The revocation of one device: kept until its longest credential could have expired (a group
/// tablet's is renewed on use, so: the idle timeout from now), plus five minutes of clock skew.
pub fn device_revocation(
    org: &Organisation,
    device: &Device,
    reason: &str,
    now: i64,
) -> NewRevocation {
    let idle = i64::try_from(org.mfa.group_idle_timeout.as_secs()).unwrap_or(i64::MAX);
    let until = match device.trust {
        DeviceTrust::Group => now.saturating_add(idle),
        _ => device.expires_at.max(now),
    };
    NewRevocation {
        org: org.id.clone(),
        kind: RevocationKind::Device,
        subject: device.id.clone(),
        reason: reason.to_owned(),
        revoked_at: now,
        drop_after: until.saturating_add(300),
    }
}

/// A new account id: 128 random bits.
pub fn new_account_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// An argon2id PHC string, the only password hash certgate stores.
pub fn is_password_hash(text: &str) -> bool {
    text.starts_with("$argon2id$v=19$") && text.len() <= 256
}

/// The most bytes of an account import a transport accepts: the file's limit
/// ([`IMPORT_MAX_BYTES`]) and room for a form's percent-encoding of it, so that a file just too
/// large still reaches [`Accounts::check_import`] and gets its clear message.
pub const IMPORT_BODY_LIMIT: usize = 3 * IMPORT_MAX_BYTES + 4_096;

/// One row of an account import, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The line of the file (the header is line 1).
    pub line: usize,
    pub username: String,
    pub name: String,
    pub kind: AccountKind,
    /// Why this row cannot be created; `None` when it can.
    pub problem: Option<String>,
    account: Option<NewAccount>,
}

/// What an import did: every row as checked, and how many accounts it created (none unless
/// every row was right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub rows: Vec<ImportRow>,
    pub created: usize,
}

impl Imported {
    /// Every row is right (and there is one).
    pub fn ready(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.problem.is_none())
    }

    /// `line N: why` for every refused row.
    pub fn problems(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| r.problem.as_ref().map(|p| format!("line {}: {p}", r.line)))
            .collect()
    }
}

/// A change that needs nothing but the account: what the admin API's and the admin socket's
/// action endpoints name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    Disable,
    Enable,
    ResetMfa,
}

/// The service, for one request: the database, how to revoke, who hears about changes, and the
/// time.
pub struct Accounts<'a> {
    pub db: &'a Database,
    pub revoke: &'a dyn Revoke,
    pub events: Option<&'a dyn AccountEvents>,
    /// Unix seconds.
    pub now: i64,
}

impl Accounts<'_> {
    /// A new account in `org`, and its welcome e-mail.
    pub async fn create(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        new: &NewAccount,
    ) -> Result<Account, AccountError> {
        same_org(org, &new.org)?;
        if matches!(actor, Actor::User { .. }) {
            return Err(not_administering());
        }
        roles_allowed(actor, org, &new.roles)?;
        let account = self
            .db
            .create_account(new, &new_account_id(), self.now)
            .await?;
        self.audit(actor, &account, AuditAction::AccountCreated, String::new())
            .await;
        self.tell(&account, AccountEvent::Created);
        Ok(account)
    }

    /// New details for `account` (its user name stays); the audit entry holds old and new, so
    /// a changed address (a way into "forgot password") is on the record.
    pub async fn edit(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        changes: &NewAccount,
    ) -> Result<Account, AccountError> {
        same_org(org, &account.org)?;
        same_org(org, &changes.org)?;
        may_change(actor, account, false)?;
        let granted: Vec<String> = changes
            .roles
            .iter()
            .filter(|r| !account.roles.contains(r))
            .cloned()
            .collect();
        roles_allowed(actor, org, &granted)?;
        if !self
            .db
            .update_account(&org.id, &account.id, changes, self.now)
            .await?
        {
            return Err(AccountError::Gone);
        }
        let detail = format!(
            "name {:?} -> {:?}; email {:?} -> {:?}; mobile {:?} -> {:?}; roles {} -> {}; kind {} -> {}",
            account.display_name,
            changes.display_name,
            account.email.as_deref().unwrap_or(""),
            changes.email.as_deref().unwrap_or(""),
            account.mobile.as_deref().unwrap_or(""),
            changes.mobile.as_deref().unwrap_or(""),
            account.roles.join(","),
            changes.roles.join(","),
            account.kind.as_str(),
            changes.kind.as_str()
        );
        self.audit(actor, account, AuditAction::AccountEdited, detail)
            .await;
        self.reread(account).await
    }

    /// Carries out `toggle` ([`Accounts::disable`], [`Accounts::enable`] or
    /// [`Accounts::reset_mfa`]).
    pub async fn toggle(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        toggle: Toggle,
    ) -> Result<Account, AccountError> {
        match toggle {
            Toggle::Disable => self.disable(actor, org, account).await,
            Toggle::Enable => self.enable(actor, org, account).await,
            Toggle::ResetMfa => self.reset_mfa(actor, org, account).await,
        }
    }

    /// Disabled, and every credential issued until now refused.
    pub async fn disable(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
    ) -> Result<Account, AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, true)?;
        self.changed(
            self.db
                .set_disabled(&org.id, &account.id, true, self.now)
                .await?,
        )?;
        self.audit(actor, account, AuditAction::AccountDisabled, String::new())
            .await;
        self.refuse(account, "disabled").await?;
        self.reread(account).await
    }

    pub async fn enable(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
    ) -> Result<Account, AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, false)?;
        self.changed(
            self.db
                .set_disabled(&org.id, &account.id, false, self.now)
                .await?,
        )?;
        self.audit(actor, account, AuditAction::AccountEnabled, String::new())
            .await;
        self.reread(account).await
    }

    /// A lost phone: the second factor and recovery codes are gone, every credential issued
    /// until now is refused, and the user chooses a factor again at the next sign-in.
    pub async fn reset_mfa(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
    ) -> Result<Account, AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, false)?;
        self.changed(self.db.reset_mfa(&org.id, &account.id, self.now).await?)?;
        self.audit(actor, account, AuditAction::MfaReset, String::new())
            .await;
        self.tell(account, AccountEvent::MfaReset);
        self.refuse(account, "mfa_reset").await?;
        self.reread(account).await
    }

    /// A new password (hashed by the caller: a password never crosses the admin socket). One
    /// that replaces another signs the account out everywhere; the first has nothing to end.
    pub async fn set_password(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        hash: &str,
    ) -> Result<Account, AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, false)?;
        if !is_password_hash(hash) {
            return Err(AccountError::Invalid(
                "password_hash must be an argon2id PHC string".into(),
            ));
        }
        self.changed(
            self.db
                .set_password_hash(&org.id, &account.id, hash, self.now)
                .await?,
        )?;
        let action = match actor {
            Actor::User { .. } => AuditAction::PasswordReset,
            _ => AuditAction::PasswordSet,
        };
        self.audit(actor, account, action, String::new()).await;
        self.tell(account, AccountEvent::PasswordChanged);
        if account.password_hash.is_some() {
            self.refuse(account, "password_reset").await?;
        }
        self.reread(account).await
    }

    /// A leaver: every credential refused first, then the account, its devices and single
    /// sign-on links go; the audit log keeps the trail.
    pub async fn delete(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
    ) -> Result<(), AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, true)?;
        self.refuse(account, "deleted").await?;
        self.changed(self.db.delete_account(&org.id, &account.id).await?)?;
        self.audit(actor, account, AuditAction::AccountDeleted, String::new())
            .await;
        Ok(())
    }

    /// One device of `account` ended, everywhere, with the revocation's reason saying who.
    pub async fn revoke_device(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        device: &Device,
    ) -> Result<(), AccountError> {
        let reason = match actor {
            Actor::Operator => "revoked by an operator",
            Actor::Admin { .. } => "revoked by an administrator",
            Actor::Token { .. } => "revoked with an API token",
            Actor::User { .. } | Actor::Provider { .. } => "revoked by the user",
        };
        self.revoke_device_because(actor, org, account, device, reason)
            .await
            .map(drop)
    }

    /// [`Accounts::revoke_device`] with the reason an operator typed; the revocation made.
    pub async fn revoke_device_because(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        device: &Device,
        reason: &str,
    ) -> Result<NewRevocation, AccountError> {
        same_org(org, &account.org)?;
        if device.account_id != account.id || device.org != org.id {
            return Err(AccountError::Gone);
        }
        may_change(actor, account, false)?;
        // A person ending their own device is counted apart from administration.
        let (label, action) = match actor {
            Actor::User { .. } => ("user", AuditAction::DeviceEnded),
            _ => ("admin", AuditAction::DeviceRevoked),
        };
        let revocation = device_revocation(org, device, reason, self.now);
        self.revoke.revoke(&revocation, label).await?;
        self.db.revoke_device(&org.id, &device.id, self.now).await?;
        self.audit(actor, account, action, format!("device={}", device.id))
            .await;
        Ok(revocation)
    }

    /// Every device of `account` ended, everywhere, and every credential and portal session
    /// issued until now refused.
    pub async fn revoke_all_devices(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
    ) -> Result<(), AccountError> {
        self.revoke_all_devices_because(actor, org, account, "admin")
            .await
            .map(drop)
    }

    /// [`Accounts::revoke_all_devices`] with the reason an operator typed; the revocation made.
    pub async fn revoke_all_devices_because(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        account: &Account,
        reason: &str,
    ) -> Result<NewRevocation, AccountError> {
        same_org(org, &account.org)?;
        may_change(actor, account, false)?;
        let revocation = account_revocation(&account.org, &account.username, reason, self.now);
        self.revoke.revoke(&revocation, "admin").await?;
        self.changed(
            self.db
                .refuse_credentials(&org.id, &account.id, self.now)
                .await?,
        )?;
        for device in self.db.devices(&org.id, &account.id).await? {
            if device.revoked_at.is_none() {
                self.db.revoke_device(&org.id, &device.id, self.now).await?;
            }
        }
        self.audit(
            actor,
            account,
            AuditAction::AllDevicesRevoked,
            String::new(),
        )
        .await;
        Ok(revocation)
    }

    /// Reads an account import (CSV, see [`certgate_db::read_import`]) and checks every row as
    /// [`Accounts::create`] would, and whether its name is taken; writes nothing. A file that
    /// cannot be read as a whole is [`AccountError::Invalid`].
    pub async fn check_import(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        text: &str,
    ) -> Result<Imported, AccountError> {
        if matches!(actor, Actor::User { .. } | Actor::Provider { .. }) {
            return Err(not_administering());
        }
        let lines = certgate_db::read_import(&org.id, text)
            .map_err(|error| AccountError::Invalid(error.to_string()))?;
        let mut rows = Vec::with_capacity(lines.len());
        for line in lines {
            let kind = line
                .account
                .as_ref()
                .map_or(AccountKind::Personal, |new| new.kind);
            let problem = match &line.account {
                Err(message) => Some(message.to_string()),
                Ok(new) => match roles_allowed(actor, org, &new.roles) {
                    Err(refused) => Some(refused.to_string()),
                    // Sign-in takes a user name or an e-mail address: either may be taken.
                    Ok(()) => self
                        .db
                        .find_account(&org.id, &new.username)
                        .await?
                        .map(|_| "an account with this user name exists already".into()),
                },
            };
            rows.push(ImportRow {
                line: line.line,
                username: line.username,
                name: line.name,
                kind,
                account: line.account.ok().filter(|_| problem.is_none()),
                problem,
            });
        }
        Ok(Imported { rows, created: 0 })
    }

    /// Creates every account of an import, or none when any row is wrong (the rows say why).
    /// One that fails while they are made (a name taken meanwhile) is logged and left out; the
    /// count says how many were made.
    pub async fn import(
        &self,
        actor: Actor<'_>,
        org: &Organisation,
        text: &str,
    ) -> Result<Imported, AccountError> {
        let mut imported = self.check_import(actor, org, text).await?;
        if !imported.ready() {
            return Ok(imported);
        }
        for row in &imported.rows {
            let Some(new) = &row.account else { continue };
            match self.create(actor, org, new).await {
                Ok(_) => imported.created += 1,
                Err(error) => {
                    tracing::warn!(%error, username = %new.username, "an imported account was not created")
                }
            }
        }
        self.write_audit(
            actor,
            &org.id,
            "",
            AuditAction::AccountsImported,
            format!("{} accounts", imported.created),
        )
        .await;
        Ok(imported)
    }

    /// Refuses every credential of `account` issued until now, on every instance; `reason` is
    /// the revocation's and its metric label.
    async fn refuse(&self, account: &Account, reason: &'static str) -> Result<(), AccountError> {
        let revocation = account_revocation(&account.org, &account.username, reason, self.now);
        self.revoke.revoke(&revocation, reason).await
    }

    fn changed(&self, found: bool) -> Result<(), AccountError> {
        if found {
            Ok(())
        } else {
            Err(AccountError::Gone)
        }
    }

    async fn reread(&self, account: &Account) -> Result<Account, AccountError> {
        self.db
            .account(&account.org, &account.id)
            .await?
            .ok_or(AccountError::Gone)
    }

    fn tell(&self, account: &Account, event: AccountEvent) {
        if let Some(events) = self.events {
            events.changed(account, event);
        }
    }

    async fn audit(
        &self,
        actor: Actor<'_>,
        account: &Account,
        action: AuditAction,
        detail: String,
    ) {
        self.write_audit(actor, &account.org, &account.username, action, detail)
            .await;
    }

    async fn write_audit(
        &self,
        actor: Actor<'_>,
        org: &str,
        subject: &str,
        action: AuditAction,
        detail: String,
    ) {
        let entry = AuditEntry {
            org: org.to_owned(),
            at: self.now,
            actor: actor.audit_name(),
            action: action.as_str().to_owned(),
            subject: subject.to_owned(),
            ip: actor.ip().to_owned(),
            detail,
        };
        if let Err(error) = self.db.append_audit(&entry).await {
            tracing::error!(%error, action = action.as_str(), "audit entry not written");
        }
    }
}

fn same_org(org: &Organisation, named: &str) -> Result<(), AccountError> {
    if org.id == named {
        Ok(())
    } else {
        Err(AccountError::Gone)
    }
}

fn not_administering() -> AccountError {
    AccountError::NotAllowed("only an administrator or the account's own person changes it".into())
}

/// A token does not make administrators, or accounts exempt from the second factor.
fn roles_allowed(
    actor: Actor<'_>,
    org: &Organisation,
    roles: &[String],
) -> Result<(), AccountError> {
    match actor {
        Actor::Operator | Actor::Admin { .. } => return Ok(()),
        Actor::User { .. } | Actor::Provider { .. } if !roles.is_empty() => {
            return Err(AccountError::NotAllowed(
                "roles are given by an administrator".to_owned(),
            ))
        }
        Actor::User { .. } | Actor::Provider { .. } => return Ok(()),
        Actor::Token { .. } => {}
    }
    match roles
        .iter()
        .find(|r| r.as_str() == ADMIN_ROLE || org.mfa.exempt_roles.contains(r))
    {
        Some(role) => Err(AccountError::NotAllowed(format!(
            "role {role:?} is given on the admin pages, not with a token"
        ))),
        None => Ok(()),
    }
}

/// A token leaves administrators' accounts to the admin pages, and does not disable (or delete)
/// the administrator who made it: that would lock them out, and with them every token they made.
fn may_change(actor: Actor<'_>, account: &Account, ends_access: bool) -> Result<(), AccountError> {
    let created_by = match actor {
        Actor::Operator | Actor::Admin { .. } => return Ok(()),
        Actor::User { account: me, .. } if me.id == account.id && me.org == account.org => {
            return Ok(())
        }
        Actor::User { .. } | Actor::Provider { .. } => return Err(not_administering()),
        Actor::Token { created_by, .. } => created_by,
    };
    if account.roles.iter().any(|r| r == ADMIN_ROLE) {
        return Err(AccountError::NotAllowed(
            "administrators' accounts are changed on the admin pages, not with a token".to_owned(),
        ));
    }
    if ends_access && account.id == created_by {
        return Err(AccountError::NotAllowed(
            "a token cannot disable the administrator who made it; use the admin pages or \
             another administrator's token"
                .to_owned(),
        ));
    }
    Ok(())
}
