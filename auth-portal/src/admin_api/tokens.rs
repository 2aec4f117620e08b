//! API tokens: made, listed and revoked by a signed-in admin of the organisation in the browser
//! (session cookie; for changes also the session's CSRF token in `X-CSRF-Token` and a second
//! factor passed in the last 15 minutes). A token is `cgt_` and 256 random bits in base64url,
//! shown once; only its SHA-256 is stored.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use certgate_db::{ApiScope, ApiToken, AuditEntry, Database, NewApiToken};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{client_ip, json_response, ok, ApiError, JsonBody, PathId};
use crate::admin::{Admin, AdminPage};
use crate::extract::PageError;
use crate::session;
use crate::{PortalState, Visit};

/// What every token starts with, so it is recognisable in a leaked file or a secret scanner.
pub(super) const PREFIX: &str = "cgt_";
/// Base64url of 32 bytes, without padding.
const SECRET_LEN: usize = 43;
/// The longest lifetime a token may have: a year.
const MAX_LIFETIME: i64 = 365 * 86_400;
/// Source networks one token may have.
const MAX_SOURCES: usize = 20;
/// Where the session's CSRF token travels (the gateway strips `X-Certgate-*` request headers).
const CSRF_HEADER: &str = "x-csrf-token";

/// A new token.
fn new_token() -> String {
    format!("{PREFIX}{}", crate::device::random_secret())
}

/// The stored form of a token: its SHA-256, hex.
pub(super) fn token_hash(token: &str) -> String {
    crate::device::hashed(token)
}

/// Whether `presented` has the shape of a token, so junk is refused without a query.
pub(super) fn well_formed(presented: &str) -> bool {
    presented.strip_prefix(PREFIX).is_some_and(|secret| {
        secret.len() == SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether a request from `ip` may use a token limited to `sources` (none: any). An address
/// that cannot be read is allowed nowhere a limit is set.
pub(super) fn source_allowed(sources: &[String], ip: &str) -> bool {
    if sources.is_empty() {
        return true;
    }
    let Some(ip) = client_ip(ip) else {
        return false;
    };
    sources
        .iter()
        .filter_map(|s| certgate_policies::parse_ip_or_cidr(s))
        .any(|net| net.contains(&ip))
}

/// An admin of the organisation signed in to this browser, as the admin pages find one; the
/// refusal is answered as JSON.
pub(super) struct SessionAdmin(AdminPage);

impl FromRequestParts<Arc<PortalState>> for SessionAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, ApiError> {
        AdminPage::from_request_parts(parts, state)
            .await
            .map(SessionAdmin)
            .map_err(|refused| match refused {
                PageError::Forbidden(_) => ApiError::AdminOnly,
                PageError::SignInFirst(_) | PageError::Redirect(_) => ApiError::LoginRequired,
                _ => ApiError::Unavailable,
            })
    }
}

/// A [`SessionAdmin`] making a change: with the session's CSRF token in `X-CSRF-Token`, and a
/// second factor passed in the last 15 minutes.
pub(super) struct ChangingAdmin(AdminPage);

impl FromRequestParts<Arc<PortalState>> for ChangingAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, ApiError> {
        let SessionAdmin(page) = SessionAdmin::from_request_parts(parts, state).await?;
        let csrf = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !page.it.me.attempt.session.csrf_ok(csrf) {
            return Err(ApiError::BadCsrfToken);
        }
        if !page.it.fresh {
            return Err(ApiError::FreshSecondFactorRequired);
        }
        Ok(ChangingAdmin(page))
    }
}

fn token_json(t: &ApiToken, created_by: &str, now: i64) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "scopes": t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "sources": t.sources,
        "created_by": created_by,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "last_used": t.last_used,
        "state": if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at <= now {
            "expired"
        } else {
            "active"
        },
    })
}

/// The user name of the admin who made a token (the id when the account is gone).
async fn maker(db: &Database, token: &ApiToken) -> String {
    db.account(&token.org, &token.created_by)
        .await
        .ok()
        .flatten()
        .map_or_else(|| token.created_by.clone(), |a| a.username)
}

async fn audit(db: &Database, admin: &Admin, visit: &Visit, now: i64, action: &str, t: &ApiToken) {
    let entry = AuditEntry {
        org: admin.me.org.id.clone(),
        at: now,
        actor: admin.me.account.username.clone(),
        action: action.to_owned(),
        subject: format!("token:{}", t.name),
        ip: visit.ip.clone(),
        detail: format!(
            "id={} scopes={} sources={} expires_at={}",
            t.id,
            t.scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            if t.sources.is_empty() {
                "any".to_owned()
            } else {
                t.sources.join(",")
            },
            t.expires_at
        ),
    };
    if let Err(error) = db.append_audit(&entry).await {
        tracing::warn!(%error, "token audit entry not written");
    }
}

/// `GET /.certgate/api/v1/admin/tokens`: the organisation's tokens (never the tokens
/// themselves), and the session's CSRF token that changes need.
pub(super) async fn list(
    State(state): State<Arc<PortalState>>,
    SessionAdmin(AdminPage { db, it: admin, .. }): SessionAdmin,
) -> Result<Response, ApiError> {
    let tokens = db
        .api_tokens(&admin.me.org.id)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let now = state.now();
    let mut listed = Vec::with_capacity(tokens.len());
    for t in &tokens {
        listed.push(token_json(t, &maker(&db, t).await, now));
    }
    let mut response = ok(&json!({
        "csrf": admin.me.attempt.session.csrf(),
        "tokens": listed,
    }));
    session::set_cookie(
        &mut response,
        session::SESSION_COOKIE,
        admin.me.attempt.id.as_str(),
        None,
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenBody {
    name: String,
    scopes: Vec<String>,
    /// Seconds from now: a whole number, which JSON may write as `3600.0`.
    expires_in: serde_json::Number,
    #[serde(default)]
    sources: Vec<String>,
}

/// A token's request, checked: its scopes and canonical source networks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CheckedToken {
    scopes: Vec<ApiScope>,
    sources: Vec<String>,
    /// Seconds.
    expires_in: i64,
}

/// What is wrong with a token request; the text is the API's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadTokenRequest {
    #[error("name must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")]
    Name,
    #[error("a token needs at least one scope")]
    NoScope,
    #[error("scope {0:?} is not one of {all}", all = ApiScope::ALL.map(ApiScope::as_str).join(", "))]
    UnknownScope(String),
    #[error("expires_in must be 1 to {MAX_LIFETIME} seconds (a year)")]
    Lifetime,
    #[error("at most {MAX_SOURCES} source networks")]
    TooManySources,
    #[error("{0:?} is not an IP address or CIDR")]
    Source(String),
}

impl NewTokenBody {
    pub(crate) fn checked(&self) -> Result<CheckedToken, BadTokenRequest> {
        let mut name = self.name.bytes();
        if self.name.len() > 64
            || !name.next().is_some_and(|b| b.is_ascii_alphanumeric())
            || !name.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(BadTokenRequest::Name);
        }
        if self.scopes.is_empty() {
            return Err(BadTokenRequest::NoScope);
        }
        let scopes = self
            .scopes
            .iter()
            .map(|s| ApiScope::from_name(s).ok_or_else(|| BadTokenRequest::UnknownScope(s.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let expires_in = whole_number(&self.expires_in)
            .filter(|n| (1..=MAX_LIFETIME).contains(n))
            .ok_or(BadTokenRequest::Lifetime)?;
        if self.sources.len() > MAX_SOURCES {
            return Err(BadTokenRequest::TooManySources);
        }
        let sources = self
            .sources
            .iter()
            .map(|s| {
                certgate_policies::parse_ip_or_cidr(s.trim())
                    .map(|net| net.to_string())
                    .ok_or_else(|| BadTokenRequest::Source(s.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CheckedToken {
            scopes,
            sources,
            expires_in,
        })
    }
}

/// A JSON number without a fraction (`3600` or `3600.0`), if it fits.
fn whole_number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// `POST /.certgate/api/v1/admin/tokens`: a new token, shown this once.
pub(super) async fn create(
    State(state): State<Arc<PortalState>>,
    ChangingAdmin(AdminPage {
        visit,
        db,
        it: admin,
        ..
    }): ChangingAdmin,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> Result<Response, ApiError> {
    let checked = body
        .checked()
        .map_err(|refused| ApiError::BadRequest(refused.to_string()))?;
    let now = state.now();
    let secret = new_token();
    let new = NewApiToken {
        org: admin.me.org.id.clone(),
        id: hex::encode(rand::random::<[u8; 8]>()),
        name: body.name.clone(),
        token_hash: token_hash(&secret),
        scopes: checked.scopes,
        sources: checked.sources,
        created_by: admin.me.account.id.clone(),
        created_at: now,
        expires_at: now + checked.expires_in,
    };
    let token = match db.create_api_token(&new).await {
        Ok(token) => token,
        Err(certgate_db::DbError::Conflict(message)) => return Err(ApiError::Conflict(message)),
        Err(_) => return Err(ApiError::Unavailable),
    };
    audit(
        &db,
        &admin,
        &visit,
        now,
        certgate_db::AuditAction::TokenCreated.as_str(),
        &token,
    )
    .await;
    let mut shown = token_json(&token, &admin.me.account.username, now);
    shown["token"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &shown))
}

/// `POST /.certgate/api/v1/admin/tokens/{id}/revoke`: refused from the next request on.
pub(super) async fn revoke(
    State(state): State<Arc<PortalState>>,
    ChangingAdmin(AdminPage {
        visit,
        db,
        it: admin,
        ..
    }): ChangingAdmin,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let org = &admin.me.org.id;
    let now = state.now();
    let revoked = db
        .revoke_api_token(org, &id, now)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let token = db
        .api_token(org, &id)
        .await
        .map_err(|_| ApiError::Unavailable)?
        .ok_or(ApiError::NotFound)?;
    if !revoked {
        return Err(ApiError::Conflict(
            "the token is revoked already".to_owned(),
        ));
    }
    audit(
        &db,
        &admin,
        &visit,
        now,
        certgate_db::AuditAction::TokenRevoked.as_str(),
        &token,
    )
    .await;
    Ok(ok(&token_json(&token, &maker(&db, &token).await, now)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_recognisable() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("cgt_") && a.len() == 4 + 43, "{a}");
        assert!(well_formed(&a) && well_formed(&b));
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        for junk in [
            "",
            "cgt_",
            "cgt_short",
            &a[1..],
            &format!("{a}x"),
            &a.replace("cgt_", "cgx_"),
        ] {
            assert!(!well_formed(junk), "{junk}");
        }
        assert!(!well_formed(&format!("cgt_{}", "+".repeat(43))));
    }

    #[test]
    fn sources_limit_where_a_token_is_accepted() {
        assert!(source_allowed(&[], ""), "no limit");
        let only = vec!["127.0.0.9/32".to_owned(), "2001:db8::/48".to_owned()];
        assert!(source_allowed(&only, "127.0.0.9"));
        assert!(source_allowed(&only, "::ffff:127.0.0.9"), "IPv4-mapped");
        assert!(source_allowed(&only, "2001:db8:0:1::5"));
        assert!(!source_allowed(&only, "127.0.0.1"));
        assert!(!source_allowed(&only, ""), "an unknown address is nowhere");
        assert!(!source_allowed(&only, "not an address"));
    }

    fn body(name: &str, scopes: &[&str], expires_in: i64, sources: &[&str]) -> NewTokenBody {
        NewTokenBody {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_in: expires_in.into(),
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn token_requests_are_checked_as_a_whole() {
        assert_eq!(
            body(
                "ci-1",
                &["accounts:read", "audit:read"],
                3600,
                &["192.0.2.7/24", "127.0.0.9"]
            )
            .checked(),
            Ok(CheckedToken {
                scopes: vec![ApiScope::AccountsRead, ApiScope::AuditRead],
                sources: vec!["192.0.2.0/24".into(), "127.0.0.9/32".into()],
                expires_in: 3600,
            })
        );
        // JSON Schema's integers include 3600.0; fractions are no integers.
        let written: NewTokenBody = serde_json::from_str(
            r#"{"name": "ci", "scopes": ["audit:read"], "expires_in": 3600.0}"#,
        )
        .unwrap();
        assert_eq!(written.checked().unwrap().expires_in, 3600);
        let fraction: NewTokenBody = serde_json::from_str(
            r#"{"name": "ci", "scopes": ["audit:read"], "expires_in": 3600.5}"#,
        )
        .unwrap();
        assert_eq!(fraction.checked(), Err(BadTokenRequest::Lifetime));
        let twenty_one: Vec<String> = (0..=20).map(|n| format!("10.0.0.{n}")).collect();
        let twenty_one: Vec<&str> = twenty_one.iter().map(String::as_str).collect();
        for (bad, refused, why) in [
            (
                body("", &["audit:read"], 60, &[]),
                BadTokenRequest::Name,
                "name",
            ),
            (
                body("-x", &["audit:read"], 60, &[]),
                BadTokenRequest::Name,
                "name",
            ),
            (
                body("a b", &["audit:read"], 60, &[]),
                BadTokenRequest::Name,
                "name",
            ),
            (
                body(&"a".repeat(65), &["audit:read"], 60, &[]),
                BadTokenRequest::Name,
                "name",
            ),
            (body("ci", &[], 60, &[]), BadTokenRequest::NoScope, "scope"),
            (
                body("ci", &["accounts:*"], 60, &[]),
                BadTokenRequest::UnknownScope("accounts:*".into()),
                "scope \"accounts:*\" is not one of accounts:read",
            ),
            (
                body("ci", &["audit:read"], 0, &[]),
                BadTokenRequest::Lifetime,
                "expires_in",
            ),
            (
                body("ci", &["audit:read"], MAX_LIFETIME + 1, &[]),
                BadTokenRequest::Lifetime,
                "expires_in",
            ),
            (
                body("ci", &["audit:read"], 60, &twenty_one),
                BadTokenRequest::TooManySources,
                "at most 20",
            ),
            (
                body("ci", &["audit:read"], 60, &["10.0.0.300"]),
                BadTokenRequest::Source("10.0.0.300".into()),
                "\"10.0.0.300\" is not an IP address or CIDR",
            ),
        ] {
            assert_eq!(bad.checked(), Err(refused.clone()), "{why}");
            let message = refused.to_string();
            assert!(message.contains(why), "{why}: {message}");
        }
    }
}
