//! Accounts, the credentials issued to their devices, and the audit log: the durable records the
//! portal and the administration work on. User names and e-mail addresses are stored lower-case
//! so sign-in by either is case-insensitive.

use std::fmt;

use sqlx::Row;

use crate::{Database, DbError};

/// `personal` (one person) or `group` (a shared tablet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Personal,
    Group,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Personal => "personal",
            AccountKind::Group => "group",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "personal" => Some(AccountKind::Personal),
            "group" => Some(AccountKind::Group),
            _ => None,
        }
    }
}

/// The second factor an account chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaChoice {
    Authenticator,
    Sms,
    Email,
    /// The account's passkeys. Never the stored `mfa_method`: passkeys are their own table, and
    /// an account may have them next to a method.
    Passkey,
}

impl MfaChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            MfaChoice::Authenticator => "authenticator",
            MfaChoice::Sms => "sms",
            MfaChoice::Email => "email",
            MfaChoice::Passkey => "passkey",
        }
    }

    /// A code sent by SMS or e-mail.
    pub fn is_channel(self) -> bool {
        matches!(self, MfaChoice::Sms | MfaChoice::Email)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "authenticator" => Some(MfaChoice::Authenticator),
            "sms" => Some(MfaChoice::Sms),
            "email" => Some(MfaChoice::Email),
            "passkey" => Some(MfaChoice::Passkey),
            _ => None,
        }
    }
}

/// The role of an organisation's administrators (admin pages, API tokens).
pub const ADMIN_ROLE: &str = "admin";

/// What an administrator gives to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub org: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub kind: AccountKind,
    pub roles: Vec<String>,
}

/// The most roles one account holds.
pub const MAX_ROLES: usize = 20;

/// An account's fields as a person or a program gave them, before they are checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountInput<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub mobile: Option<&'a str>,
    /// `personal` (when not given) or `group`.
    pub kind: Option<&'a str>,
    pub roles: &'a [String],
}

/// How the fields came: typed by a person (the admin pages, a CSV file, the CLI), where spaces
/// around a field are dropped and an empty e-mail or mobile means none; or sent exactly by a
/// program (the admin API), whose schema refuses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    Typed,
    Exact,
}

/// Why account fields were refused; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAccount(pub String);

impl NewAccount {
    /// A new account, checked by the one rule every way of making one shares:
    ///
    /// - user name: 1–64 of `A-Z a-z 0-9 . _ @ + -` (it becomes a certificate's common name and
    ///   the `X-Certgate-User` header the application reads);
    /// - display name: 1–100 characters, none that rewrites a screen (control characters, bidi
    ///   overrides, zero-width ones): names are shown on admin pages and printed by the CLI;
    /// - e-mail: printable ASCII, one `@`, a domain with a dot; mobile: `+` and 8–15 digits;
    /// - kind `personal` or `group`; at most [`MAX_ROLES`] roles of 1–64 letters, digits, `-`, `_`.
    pub fn checked(
        org: &str,
        input: &AccountInput<'_>,
        given: Given,
    ) -> Result<NewAccount, InvalidAccount> {
        let username = field(input.username, given, "user name")?;
        if !valid_username(username) {
            return Err(InvalidAccount(
                "the user name must be 1 to 64 of the characters A-Z a-z 0-9 . _ @ + -".into(),
            ));
        }
        Self::fields(org, username, input, given)
    }

    /// New details for `account`, checked as [`NewAccount::checked`] checks them; the user name
    /// is the account's and is not checked again (older accounts may predate today's rule).
    pub fn changed(
        account: &Account,
        input: &AccountInput<'_>,
        given: Given,
    ) -> Result<NewAccount, InvalidAccount> {
        Self::fields(&account.org, &account.username, input, given)
    }

    fn fields(
        org: &str,
        username: &str,
        input: &AccountInput<'_>,
        given: Given,
    ) -> Result<NewAccount, InvalidAccount> {
        let display_name = field(input.display_name, given, "display name")?;
        if display_name.is_empty()
            || display_name.chars().count() > 100
            || display_name.chars().any(is_control_or_format)
        {
            return Err(InvalidAccount(
                "the display name must be 1 to 100 characters, without control characters".into(),
            ));
        }
        let email = optional(input.email, given, "e-mail address")?;
        if let Some(email) = email {
            if !valid_email(email) {
                return Err(InvalidAccount(format!(
                    "{email:?} is not an e-mail address"
                )));
            }
        }
        let mobile = optional(input.mobile, given, "mobile number")?;
        if let Some(mobile) = mobile {
            if !valid_mobile(mobile) {
                return Err(InvalidAccount(format!(
                    "{mobile:?} is not a mobile number in international form (+31612345678)"
                )));
            }
        }
        let kind = match input.kind {
            None => AccountKind::Personal,
            Some(kind) => AccountKind::from_name(field(kind, given, "kind")?)
                .ok_or_else(|| InvalidAccount(format!("kind {kind:?} is not personal or group")))?,
        };
        if input.roles.len() > MAX_ROLES {
            return Err(InvalidAccount(format!("at most {MAX_ROLES} roles")));
        }
        if let Some(role) = input.roles.iter().find(|r| !valid_role(r)) {
            return Err(InvalidAccount(format!(
                "role {role:?} must be 1 to 64 letters, digits, - and _"
            )));
        }
        Ok(NewAccount {
            org: org.to_owned(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            email: email.map(str::to_owned),
            mobile: mobile.map(str::to_owned),
            kind,
            // As stored: whoever checks the roles of a new account (a token may not make
            // administrators) sees what the account will hold.
            roles: normalised_roles(input.roles),
        })
    }
}

/// A field as given: typed ones lose surrounding spaces, exact ones may not have them.
fn field<'a>(text: &'a str, given: Given, name: &str) -> Result<&'a str, InvalidAccount> {
    let trimmed = text.trim();
    if given == Given::Exact && trimmed.len() != text.len() {
        return Err(InvalidAccount(format!(
            "the {name} may not begin or end with spaces"
        )));
    }
    Ok(trimmed)
}

/// An optional field: typed empty means none; sent exactly, it must be left out instead.
fn optional<'a>(
    text: Option<&'a str>,
    given: Given,
    name: &str,
) -> Result<Option<&'a str>, InvalidAccount> {
    match text {
        None => Ok(None),
        Some(text) => {
            let text = field(text, given, name)?;
            if text.is_empty() && given == Given::Typed {
                Ok(None)
            } else {
                Ok(Some(text))
            }
        }
    }
}

fn valid_username(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

/// Printable ASCII without spaces, one `@`, and a domain with a dot that does not start with one.
fn valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && text.bytes().all(|b| b.is_ascii_graphic())
        && !local.is_empty()
        && !domain.contains('@')
        && domain.get(1..).is_some_and(|rest| rest.contains('.'))
        && !domain.starts_with('.')
}

fn valid_mobile(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn valid_role(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where the fields stand in an account import file (CSV, as `certgate user import` and the
/// admin pages take it), read from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportColumns {
    pub username: usize,
    pub name: usize,
    pub email: Option<usize>,
    pub mobile: Option<usize>,
    pub kind: Option<usize>,
    pub roles: Option<usize>,
}

impl ImportColumns {
    pub const NAMES: [&'static str; 6] = ["username", "name", "email", "mobile", "kind", "roles"];

    /// The columns named in `header` (in any case and order). `username` and `name` are
    /// required; a name that is none of [`Self::NAMES`], or one given twice, is refused rather
    /// than its column quietly left out of every account. Unnamed columns are left alone.
    pub fn from_header<'a>(header: impl IntoIterator<Item = &'a str>) -> Result<Self, DbError> {
        let mut found: [Option<usize>; 6] = [None; 6];
        for (index, name) in header.into_iter().enumerate() {
            // Spreadsheets export empty columns past the last one used.
            if name.trim().is_empty() {
                continue;
            }
            let known = Self::NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name.trim()));
            match known.map(|k| &mut found[k]) {
                Some(slot @ None) => *slot = Some(index),
                Some(Some(_)) => return Err(DbError::ImportColumnTwice(name.to_owned())),
                None => return Err(DbError::ImportColumnUnknown(name.to_owned())),
            }
        }
        let [Some(username), Some(name), email, mobile, kind, roles] = found else {
            return Err(DbError::ImportColumnsMissing);
        };
        Ok(ImportColumns {
            username,
            name,
            email,
            mobile,
            kind,
            roles,
        })
    }
}

/// The largest account import file, and the most rows it may hold, everywhere it is taken.
pub const IMPORT_MAX_BYTES: usize = 1_000_000;
pub const IMPORT_MAX_ROWS: usize = 5_000;

/// One row of an account import, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// The line of the file (the header is line 1).
    pub line: usize,
    /// As written, lower-cased (what the account would be called).
    pub username: String,
    pub name: String,
    /// The account to create, or why the row cannot be one.
    pub account: Result<NewAccount, InvalidAccount>,
}

/// Reads an account import (CSV whose first line names the columns, see [`ImportColumns`];
/// roles separated by `;`): every row checked as every new account is, and a user name that
/// is in the file twice refused. Whether the accounts exist already is for the caller, who
/// writes nothing unless every row is right. `Err` when the file as a whole cannot be read.
pub fn read_import(org: &str, text: &str) -> Result<Vec<ImportLine>, DbError> {
    if text.len() > IMPORT_MAX_BYTES {
        return Err(DbError::ImportTooLarge);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| DbError::ImportUnreadable(e.to_string()))?
        .clone();
    let columns = ImportColumns::from_header(&headers)?;
    let mut lines = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, record) in reader.records().enumerate() {
        if index >= IMPORT_MAX_ROWS {
            return Err(DbError::ImportTooManyRows);
        }
        let line = index + 2;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                lines.push(ImportLine {
                    line,
                    username: String::new(),
                    name: String::new(),
                    account: Err(InvalidAccount(e.to_string())),
                });
                continue;
            }
        };
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or_default();
        let optional = |col: Option<usize>| Some(field(col)).filter(|v| !v.is_empty());
        let roles: Vec<String> = field(columns.roles)
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        let username = field(Some(columns.username)).to_lowercase();
        let input = AccountInput {
            username: field(Some(columns.username)),
            display_name: field(Some(columns.name)),
            email: optional(columns.email),
            mobile: optional(columns.mobile),
            kind: optional(columns.kind),
            roles: &roles,
        };
        let account = NewAccount::checked(org, &input, Given::Typed).and_then(|account| {
            // Sign-in takes user names in any case: two spellings are one account.
            if seen.insert(account.username.to_lowercase()) {
                Ok(account)
            } else {
                Err(InvalidAccount(
                    "this user name is in the file twice".to_owned(),
                ))
            }
        });
        lines.push(ImportLine {
            line,
            username,
            name: field(Some(columns.name)).to_owned(),
            account,
        });
    }
    Ok(lines)
}

/// An account as stored. Its `Debug` leaves out every secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub org: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub kind: AccountKind,
    pub roles: Vec<String>,
    pub password_hash: Option<String>,
    pub mfa_method: Option<MfaChoice>,
    /// Encrypted by the portal (AEAD bound to the account id); opaque here.
    pub totp_secret: Option<String>,
    /// Hashes of the unused recovery codes.
    pub recovery_codes: Vec<String>,
    pub mfa_enrolled: bool,
    pub last_login: Option<i64>,
    pub disabled: bool,
    /// Credentials issued before this (unix seconds) are refused.
    pub not_valid_before: i64,
    pub created_at: i64,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("username", &self.username)
            .field("kind", &self.kind)
            .field("roles", &self.roles)
            .field("mfa_method", &self.mfa_method)
            .field("mfa_enrolled", &self.mfa_enrolled)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// How a device holds its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Browser,
    Certificate,
}

/// The trust class of a credential: its lifetime rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTrust {
    /// `session_lifetime`.
    Session,
    /// "Trust this device": `trust_device_for`.
    Trusted,
    /// A shared tablet: renewed on use until `group_idle_timeout` without use.
    Group,
}

/// A credential issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub org: String,
    pub id: String,
    pub account_id: String,
    pub kind: DeviceKind,
    pub trust: DeviceTrust,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
    pub ip: String,
    /// The browser its credential was issued to ("Chrome"), from its User-Agent; empty when
    /// not known.
    pub browser: String,
    /// The system that browser ran on ("Android", "iPhone"); empty when not known.
    pub system: String,
}

/// One line of the audit log: who did what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub org: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub ip: String,
    pub detail: String,
}

fn normalise(text: &str) -> String {
    text.trim().to_lowercase()
}

/// Roles as stored: lower case, sorted, each once.
fn normalised_roles(roles: &[String]) -> Vec<String> {
    let mut roles: Vec<String> = roles.iter().map(|r| normalise(r)).collect();
    roles.sort();
    roles.dedup();
    roles
}

pub(crate) fn is_control_or_format(c: char) -> bool {
    // Cc, and the format characters that reorder or hide text (Cf: bidi controls, zero-width).
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

const ACCOUNT_COLUMNS: &str = "id, org, username, display_name, email, mobile, kind, roles, \
     password_hash, mfa_method, totp_secret, recovery_codes, mfa_enrolled, last_login, disabled, \
     not_valid_before, created_at";

impl Database {
    /// Creates an account; a user name already taken in the organisation is
    /// [`DbError::Conflict`].
    pub async fn create_account(
        &self,
        new: &NewAccount,
        id: &str,
        now: i64,
    ) -> Result<Account, DbError> {
        let roles = normalised_roles(&new.roles);
        self.refuse_look_alike(&new.org, None, Some(&new.username), new.email.as_deref())
            .await?;
        let result = sqlx::query(
            "INSERT INTO accounts (id, org, username, display_name, email, mobile, kind, roles, created_at, not_valid_before) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(id)
        .bind(&new.org)
        .bind(normalise(&new.username))
        .bind(new.display_name.trim())
        .bind(new.email.as_deref().map(normalise))
        .bind(new.mobile.as_deref().map(str::trim))
        .bind(new.kind.as_str())
        .bind(roles.join(","))
        .bind(now)
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(DbError::Conflict(format!(
                    "user name {:?} is taken",
                    normalise(&new.username)
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.account(&new.org, id)
            .await?
            .ok_or_else(|| DbError::Corrupt("account vanished after insert".into()))
    }

    /// Signing in, and "forgot your password", take a user name or an e-mail address, and a
    /// user name wins: a user name that is another account's e-mail address (or the reverse)
    /// would take over that account's sign-in by e-mail. [`DbError::Conflict`] names it.
    async fn refuse_look_alike(
        &self,
        org: &str,
        id: Option<&str>,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), DbError> {
        let id = id.unwrap_or("");
        if let Some(username) = username.map(normalise) {
            let taken = sqlx::query(
                "SELECT 1 AS one FROM accounts WHERE org = $1 AND email = $2 AND id <> $3 LIMIT 1",
            )
            .bind(org)
            .bind(&username)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
            if taken.is_some() {
                return Err(DbError::Conflict(format!(
                    "user name {username:?} is another account's e-mail address"
                )));
            }
        }
        if let Some(email) = email.map(normalise).filter(|e| !e.is_empty()) {
            let taken = sqlx::query(
                "SELECT 1 AS one FROM accounts WHERE org = $1 AND username = $2 AND id <> $3 LIMIT 1",
            )
            .bind(org)
            .bind(&email)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
            if taken.is_some() && Some(email.as_str()) != username.map(normalise).as_deref() {
                return Err(DbError::Conflict(format!(
                    "e-mail address {email:?} is another account's user name"
                )));
            }
        }
        Ok(())
    }

    pub async fn account(&self, org: &str, id: &str) -> Result<Option<Account>, DbError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE org = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// The account whose user name or e-mail address is `login` (any case). A user name wins
    /// over another account's e-mail address.
    pub async fn find_account(&self, org: &str, login: &str) -> Result<Option<Account>, DbError> {
        let login = normalise(login);
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE org = $1 AND (username = $2 OR email = $2) \
             ORDER BY CASE WHEN username = $2 THEN 0 ELSE 1 END, created_at, id LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(org)
            .bind(&login)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// The one account whose e-mail address is `email`; `None` when there is none or several.
    pub async fn account_by_email(
        &self,
        org: &str,
        email: &str,
    ) -> Result<Option<Account>, DbError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE org = $1 AND email = $2 ORDER BY created_at LIMIT 2"
        );
        let rows = sqlx::query(&sql)
            .bind(org)
            .bind(normalise(email))
            .fetch_all(self.pool())
            .await?;
        match rows.as_slice() {
            [only] => Ok(Some(account_from_row(only)?)),
            _ => Ok(None),
        }
    }

    /// Whether the account is linked to some subject of `issuer` already.
    pub async fn has_sso_link(
        &self,
        org: &str,
        issuer: &str,
        account_id: &str,
    ) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM sso_links WHERE org = $1 AND issuer = $2 AND account_id = $3",
        )
        .bind(org)
        .bind(issuer)
        .bind(account_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    pub async fn accounts(&self, org: &str) -> Result<Vec<Account>, DbError> {
        let sql =
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE org = $1 ORDER BY username");
        let rows = sqlx::query(&sql).bind(org).fetch_all(self.pool()).await?;
        rows.iter().map(account_from_row).collect()
    }

    /// A page of an organisation's accounts by user name: those whose user name, name or
    /// e-mail address contains `search` (any case; ASCII case only on SQLite), at most `limit`
    /// after the first `offset`. An empty `search` finds every account.
    pub async fn accounts_page(
        &self,
        org: &str,
        search: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Account>, DbError> {
        let search = normalise(search);
        // `!` escapes LIKE's wildcards, so what was typed is looked for as typed.
        let mut pattern = String::with_capacity(search.len() + 2);
        pattern.push('%');
        for c in search.chars() {
            if matches!(c, '%' | '_' | '!') {
                pattern.push('!');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE org = $1 AND ($2 = '' \
             OR lower(username) LIKE $3 ESCAPE '!' OR lower(display_name) LIKE $3 ESCAPE '!' \
             OR lower(coalesce(email, '')) LIKE $3 ESCAPE '!') \
             ORDER BY username LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(&sql)
            .bind(org)
            .bind(&search)
            .bind(&pattern)
            .bind(limit)
            .bind(offset.max(0))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// The display names of the accounts of `org` among `usernames` (user name → name), for
    /// pages that name people; names of no account are left out.
    /// The user names of the accounts `ids` of `org` (those that exist), by id: what a page of
    /// devices needs to be judged by the revocations, which name accounts by user name.
    pub async fn usernames_of(
        &self,
        org: &str,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, DbError> {
        let mut names = std::collections::HashMap::new();
        for chunk in ids.chunks(100) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, username FROM accounts WHERE org = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(org);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.pool()).await? {
                names.insert(row.try_get("id")?, row.try_get("username")?);
            }
        }
        Ok(names)
    }

    pub async fn display_names(
        &self,
        org: &str,
        usernames: &[String],
    ) -> Result<std::collections::HashMap<String, String>, DbError> {
        let mut names = std::collections::HashMap::new();
        // One query a chunk: a bounded number of placeholders on both backends.
        for chunk in usernames.chunks(100) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT username, display_name FROM accounts WHERE org = $1 AND username IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(org);
            for username in chunk {
                query = query.bind(normalise(username));
            }
            for row in query.fetch_all(self.pool()).await? {
                names.insert(row.try_get("username")?, row.try_get("display_name")?);
            }
        }
        Ok(names)
    }

    /// Changes what an administrator may edit (name, e-mail, mobile, kind, roles: the user name
    /// stays); `false` when there is no such account. An account that no longer holds the role
    /// [`ADMIN_ROLE`] loses the API tokens it made, revoked at `now`: they would otherwise work
    /// again the day the role came back.
    pub async fn update_account(
        &self,
        org: &str,
        id: &str,
        changes: &NewAccount,
        now: i64,
    ) -> Result<bool, DbError> {
        let roles = normalised_roles(&changes.roles);
        self.refuse_look_alike(org, Some(id), None, changes.email.as_deref())
            .await?;
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE accounts SET display_name = $3, email = $4, mobile = $5, kind = $6, roles = $7 \
             WHERE org = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(changes.display_name.trim())
        .bind(changes.email.as_deref().map(normalise))
        .bind(changes.mobile.as_deref().map(str::trim))
        .bind(changes.kind.as_str())
        .bind(roles.join(","))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 && !roles.iter().any(|r| r == ADMIN_ROLE) {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $3 \
                 WHERE org = $1 AND created_by = $2 AND revoked_at IS NULL",
            )
            .bind(org)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// `false` when there is no such account. A password that replaces another also refuses
    /// every credential issued until `now`: whoever knew the old one is signed out. The first
    /// password of an account leaves its credentials alone.
    pub async fn set_password_hash(
        &self,
        org: &str,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        // SET reads the row as it was, so `password_hash` here is the old one.
        let done = sqlx::query(
            "UPDATE accounts SET password_hash = $3, \
             not_valid_before = CASE WHEN password_hash IS NOT NULL AND $4 > not_valid_before \
             THEN $4 ELSE not_valid_before END \
             WHERE org = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disabling also refuses every credential issued until now.
    pub async fn set_disabled(
        &self,
        org: &str,
        id: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        if disabled {
            return self.update_refusing(org, id, now, "disabled = 1, ").await;
        }
        let done = sqlx::query("UPDATE accounts SET disabled = 0 WHERE org = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `UPDATE accounts SET {set}` (a constant list of assignments, each followed by a comma)
    /// that also moves the account's cut-off to `now` unless it is later already; `false` when
    /// there is no such account.
    async fn update_refusing(
        &self,
        org: &str,
        id: &str,
        now: i64,
        set: &'static str,
    ) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE accounts SET {set} \
             not_valid_before = CASE WHEN $3 > not_valid_before THEN $3 ELSE not_valid_before END \
             WHERE org = $1 AND id = $2"
        );
        let done = sqlx::query(&sql)
            .bind(org)
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Refuses every credential of the account issued until `now` (its portal sessions, browser
    /// credentials and API tokens too), and nothing else.
    pub async fn refuse_credentials(&self, org: &str, id: &str, now: i64) -> Result<bool, DbError> {
        self.update_refusing(org, id, now, "").await
    }

    /// Clears method, authenticator secret, passkeys and recovery codes, and refuses every
    /// credential issued until now; the user enrols again at the next sign-in. "Enrolled" stays
    /// set: MFA stays required for someone who had it, also where only enrolled users need it.
    pub async fn reset_mfa(&self, org: &str, id: &str, now: i64) -> Result<bool, DbError> {
        // The passkeys first: should the reset fail after, they stay gone, which refuses more.
        sqlx::query("DELETE FROM passkeys WHERE org = $1 AND account_id = $2")
            .bind(org)
            .bind(id)
            .execute(self.pool())
            .await?;
        let set = "mfa_method = NULL, totp_secret = NULL, recovery_codes = '', ";
        self.update_refusing(org, id, now, set).await
    }

    /// Records a completed enrolment: the method, and for the authenticator its (encrypted)
    /// secret and the recovery code hashes. From now on MFA stays required for the account.
    pub async fn set_mfa(
        &self,
        org: &str,
        id: &str,
        method: MfaChoice,
        totp_secret: Option<&str>,
        recovery_codes: Option<&[String]>,
    ) -> Result<bool, DbError> {
        if method == MfaChoice::Passkey {
            return Err(DbError::Corrupt(
                "a passkey is stored with add_passkey, not as the method".into(),
            ));
        }
        let done = sqlx::query(
            "UPDATE accounts SET mfa_method = $3, \
             totp_secret = COALESCE(CAST($4 AS TEXT), totp_secret), \
             recovery_codes = COALESCE(CAST($5 AS TEXT), recovery_codes), \
             mfa_enrolled = 1 WHERE org = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(method.as_str())
        .bind(totp_secret)
        .bind(recovery_codes.map(|codes| codes.join("\n")))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the authenticator secret: a lost phone's app, replaced by another method, must
    /// not come back to life should the account choose the app again.
    pub async fn clear_totp_secret(&self, org: &str, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE accounts SET totp_secret = NULL WHERE org = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes one recovery code hash, only if the stored list is still `before`: of two
    /// racing uses of the same code, one wins.
    pub async fn use_recovery_code(
        &self,
        org: &str,
        id: &str,
        before: &[String],
        used: usize,
    ) -> Result<bool, DbError> {
        let after: Vec<&str> = before
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != used)
            .map(|(_, code)| code.as_str())
            .collect();
        let done = sqlx::query(
            "UPDATE accounts SET recovery_codes = $4 WHERE org = $1 AND id = $2 AND recovery_codes = $3",
        )
        .bind(org)
        .bind(id)
        .bind(before.join("\n"))
        .bind(after.join("\n"))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Re-encrypts an authenticator secret (key rotation), only if it is still `before`.
    pub async fn replace_totp_secret(
        &self,
        org: &str,
        id: &str,
        before: &str,
        after: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE accounts SET totp_secret = $4 WHERE org = $1 AND id = $2 AND totp_secret = $3",
        )
        .bind(org)
        .bind(id)
        .bind(before)
        .bind(after)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every account of every organisation with an authenticator secret, for key rotation.
    pub async fn accounts_with_totp(&self) -> Result<Vec<Account>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE totp_secret IS NOT NULL ORDER BY org, username"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// The account linked to a provider's subject, if any.
    pub async fn sso_link(
        &self,
        org: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, DbError> {
        let row = sqlx::query(
            "SELECT account_id FROM sso_links WHERE org = $1 AND issuer = $2 AND subject = $3",
        )
        .bind(org)
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("account_id")).transpose()?)
    }

    /// Links a provider's subject to an account; a subject already linked is
    /// [`DbError::Conflict`].
    pub async fn link_sso(
        &self,
        org: &str,
        issuer: &str,
        subject: &str,
        account_id: &str,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO sso_links (org, issuer, subject, account_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org)
        .bind(issuer)
        .bind(subject)
        .bind(account_id)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DbError::Conflict(format!("{issuer} subject {subject} is already linked"))
            }
            other => other.into(),
        })?;
        Ok(())
    }

    pub async fn record_login(&self, org: &str, id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE accounts SET last_login = $3 WHERE org = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_device(&self, device: &Device) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO devices (org, id, account_id, kind, trust, created_at, expires_at, last_seen, revoked_at, ip, browser, system) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&device.org)
        .bind(&device.id)
        .bind(&device.account_id)
        .bind(match device.kind {
            DeviceKind::Browser => "browser",
            DeviceKind::Certificate => "certificate",
        })
        .bind(match device.trust {
            DeviceTrust::Session => "session",
            DeviceTrust::Trusted => "trusted",
            DeviceTrust::Group => "group",
        })
        .bind(device.created_at)
        .bind(device.expires_at)
        .bind(device.last_seen)
        .bind(device.revoked_at)
        .bind(&device.ip)
        .bind(&device.browser)
        .bind(&device.system)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn devices(&self, org: &str, account_id: &str) -> Result<Vec<Device>, DbError> {
        let rows = sqlx::query(
            "SELECT org, id, account_id, kind, trust, created_at, expires_at, last_seen, revoked_at, ip, browser, system \
             FROM devices WHERE org = $1 AND account_id = $2 ORDER BY created_at, id",
        )
        .bind(org)
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// `false` when there is no such device or it was already revoked.
    pub async fn device(&self, org: &str, id: &str) -> Result<Option<Device>, DbError> {
        let row = sqlx::query(
            "SELECT org, id, account_id, kind, trust, created_at, expires_at, last_seen, revoked_at, ip, browser, system \
             FROM devices WHERE org = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// A renewed certificate: the device's credential now ends at `expires_at`.
    pub async fn set_device_expiry(
        &self,
        org: &str,
        id: &str,
        expires_at: i64,
        seen: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE devices SET expires_at = $3, last_seen = $4 WHERE org = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(org)
        .bind(id)
        .bind(expires_at)
        .bind(seen)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every device of the organisation with its account's user name, newest first, at most
    /// `limit`.
    pub async fn org_devices(
        &self,
        org: &str,
        limit: i64,
    ) -> Result<Vec<(String, Device)>, DbError> {
        self.org_devices_page(org, 0, limit).await
    }

    /// A page of [`Database::org_devices`]: at most `limit`, after the newest `offset`.
    pub async fn org_devices_page(
        &self,
        org: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(String, Device)>, DbError> {
        let rows = sqlx::query(
            "SELECT d.org, d.id, d.account_id, d.kind, d.trust, d.created_at, d.expires_at, \
             d.last_seen, d.revoked_at, d.ip, d.browser, d.system, a.username FROM devices d \
             JOIN accounts a ON a.id = d.account_id AND a.org = d.org \
             WHERE d.org = $1 ORDER BY d.created_at DESC, d.id LIMIT $2 OFFSET $3",
        )
        .bind(org)
        .bind(limit)
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("username")?, device_from_row(row)?)))
            .collect()
    }

    pub async fn revoke_device(&self, org: &str, id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $3 WHERE org = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(org)
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit_log (org, at, actor, action, subject, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&entry.org)
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.subject)
        .bind(&entry.ip)
        .bind(&entry.detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An organisation's audit entries from `since` on, oldest first, at most `limit`.
    /// Deletes an account (a leaver): its devices and single sign-on links go with it; the audit
    /// log keeps what names it until its retention. `false` when there is no such account.
    pub async fn delete_account(&self, org: &str, id: &str) -> Result<bool, DbError> {
        // Explicitly, also where the database does not enforce the foreign keys' cascade.
        for table in ["devices", "sso_links", "passkeys"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE org = $1 AND account_id = $2"
            ))
            .bind(org)
            .bind(id)
            .execute(self.pool())
            .await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE org = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The newest `limit` audit entries since `since`, newest first; with `who`, only those it
    /// did or that concern it.
    pub async fn recent_audit(
        &self,
        org: &str,
        since: i64,
        who: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        self.audit_page(org, since, who, 0, limit).await
    }

    /// A page of [`Database::recent_audit`]: at most `limit`, after the newest `offset`.
    pub async fn audit_page(
        &self,
        org: &str,
        since: i64,
        who: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT org, at, actor, action, subject, ip, detail FROM audit_log \
             WHERE org = $1 AND at >= $2 AND ($3 = '' OR lower(actor) = $3 OR lower(subject) = $3) \
             ORDER BY at DESC, id DESC LIMIT $4 OFFSET $5",
        )
        .bind(org)
        .bind(since)
        .bind(who.map(normalise).unwrap_or_default())
        .bind(limit)
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    org: row.try_get("org")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    ip: row.try_get("ip")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Deletes audit entries from before `before` (unix seconds); how many went.
    pub async fn purge_audit(&self, before: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn audit_entries(
        &self,
        org: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT org, at, actor, action, subject, ip, detail FROM audit_log \
             WHERE org = $1 AND at >= $2 ORDER BY at, id LIMIT $3",
        )
        .bind(org)
        .bind(since)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    org: row.try_get("org")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    ip: row.try_get("ip")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

fn split_list(text: &str, separator: char) -> Vec<String> {
    text.split(separator)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<Account, DbError> {
    let kind: String = row.try_get("kind")?;
    let method: Option<String> = row.try_get("mfa_method")?;
    let roles: String = row.try_get("roles")?;
    let recovery: String = row.try_get("recovery_codes")?;
    Ok(Account {
        id: row.try_get("id")?,
        org: row.try_get("org")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        mobile: row.try_get("mobile")?,
        kind: AccountKind::from_name(&kind)
            .ok_or_else(|| DbError::Corrupt(format!("account kind {kind:?}")))?,
        roles: split_list(&roles, ','),
        password_hash: row.try_get("password_hash")?,
        mfa_method: method
            .map(|m| {
                MfaChoice::from_name(&m)
                    .filter(|m| *m != MfaChoice::Passkey)
                    .ok_or_else(|| DbError::Corrupt(format!("mfa method {m:?}")))
            })
            .transpose()?,
        totp_secret: row.try_get("totp_secret")?,
        recovery_codes: split_list(&recovery, '\n'),
        mfa_enrolled: row.try_get::<i64, _>("mfa_enrolled")? != 0,
        last_login: row.try_get("last_login")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        not_valid_before: row.try_get("not_valid_before")?,
        created_at: row.try_get("created_at")?,
    })
}

fn device_from_row(row: &sqlx::any::AnyRow) -> Result<Device, DbError> {
    let kind: String = row.try_get("kind")?;
    let trust: String = row.try_get("trust")?;
    Ok(Device {
        org: row.try_get("org")?,
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        kind: match kind.as_str() {
            "browser" => DeviceKind::Browser,
            "certificate" => DeviceKind::Certificate,
            other => return Err(DbError::Corrupt(format!("device kind {other:?}"))),
        },
        trust: match trust.as_str() {
            "session" => DeviceTrust::Session,
            "trusted" => DeviceTrust::Trusted,
            "group" => DeviceTrust::Group,
            other => return Err(DbError::Corrupt(format!("device trust {other:?}"))),
        },
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_seen: row.try_get("last_seen")?,
        revoked_at: row.try_get("revoked_at")?,
        ip: row.try_get("ip")?,
        browser: row.try_get("browser")?,
        system: row.try_get("system")?,
    })
}
