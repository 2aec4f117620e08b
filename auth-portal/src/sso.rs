//! Single sign-on: OpenID Connect authorization code flow with PKCE (the `openidconnect` crate)
//! for each `[[sso]]` entry of an organisation: Microsoft (one tenant per entry, the tenant's own
//! issuer and `tid`), Google, or any issuer. `state` and `nonce` are single-use, live 10 minutes
//! in the store, and are bound to this browser by a short pre-login cookie. Accounts are linked
//! by (issuer, subject) — `oid` for Microsoft — and only the first sign-in may link by e-mail,
//! when the provider vouches for the address.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use certgate_db::{Account, AccountKind, Database, NewAccount};
use certgate_policies::{ClientSecret, Organisation, SsoKind, SsoMfa, SsoProvider};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::flow::{create_attempt, load_attempt};
use crate::i18n::fill;
use crate::pages;
use crate::session;
use crate::signin::{Event, ProviderMfa};
use crate::{PortalState, Visit};

/// How long a started sign-in at a provider may take.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// The pre-login cookie binding `state` to this browser.
const SSO_COOKIE: &str = "__Host-certgate-sso";
/// A provider that failed discovery is tried again after this long.
const RETRY_DISCOVERY: Duration = Duration::from_secs(10);
/// An unknown key id refetches the provider's keys at most this often.
const REFETCH_KEYS: Duration = Duration::from_secs(10);
/// Allowed clock difference for `iat`.
const SKEW: i64 = 120;

/// The issuer a provider entry stands for: the tenant's own for Microsoft
/// (`{authority}/{tenant}/v2.0`), Google's unless the policy names a stand-in, and an OIDC
/// entry's as written (issuers are compared as strings, trailing slash and all: Auth0 has one).
pub fn issuer_of(provider: &SsoProvider) -> String {
    provider.kind.issuer()
}

/// What discovery found for one provider, and when its keys were last fetched.
struct Discovered {
    metadata: CoreProviderMetadata,
    /// The last time an unknown key id made us fetch the keys again.
    keys_refetched: Option<Instant>,
}

/// One provider's cached discovery.
#[derive(Default)]
struct ProviderCache {
    discovered: tokio::sync::RwLock<Option<Discovered>>,
    last_failure: parking_lot::Mutex<Option<Instant>>,
}

/// Every provider the portal has talked to, by issuer; discovery happens on first use, so a
/// provider that is down at start does not stop anything.
#[derive(Default)]
pub struct Providers {
    caches: parking_lot::Mutex<HashMap<String, Arc<ProviderCache>>>,
}

/// Why a provider's answer was not taken: for the log (the page says only that it failed).
#[derive(Debug, thiserror::Error)]
enum SsoError {
    #[error("HTTP client: {0}")]
    Client(#[source] openidconnect::reqwest::Error),
    #[error("discovery failed moments ago")]
    DiscoveryFailedRecently,
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("token request: {0}")]
    TokenRequest(String),
    #[error("no ID token in the answer")]
    NoIdToken,
    #[error("no key matches the ID token")]
    NoMatchingKey,
    #[error("ID token: {0}")]
    IdToken(#[source] openidconnect::ClaimsVerificationError),
    #[error("the ID token was issued to another client (azp)")]
    OtherClient,
    #[error("the ID token is another tenant's (tid {0})")]
    OtherTenant(String),
    #[error("no {0} claim from Microsoft")]
    MissingClaim(&'static str),
}

fn http_client() -> Result<openidconnect::reqwest::Client, SsoError> {
    openidconnect::reqwest::ClientBuilder::new()
        // No redirects: an SSRF trick, and never needed by a well-behaved provider.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(SsoError::Client)
}

impl Providers {
    fn cache(&self, issuer: &str) -> Arc<ProviderCache> {
        Arc::clone(self.caches.lock().entry(issuer.to_owned()).or_default())
    }

    /// The provider's metadata (with its keys), discovering it when needed.
    async fn metadata(&self, issuer: &str) -> Result<CoreProviderMetadata, SsoError> {
        let cache = self.cache(issuer);
        if let Some(found) = cache.discovered.read().await.as_ref() {
            return Ok(found.metadata.clone());
        }
        if cache
            .last_failure
            .lock()
            .is_some_and(|at| at.elapsed() < RETRY_DISCOVERY)
        {
            return Err(SsoError::DiscoveryFailedRecently);
        }
        let http = http_client()?;
        let url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| SsoError::Discovery(e.to_string()))?;
        match CoreProviderMetadata::discover_async(url, &http).await {
            Ok(metadata) => {
                *cache.discovered.write().await = Some(Discovered {
                    metadata: metadata.clone(),
                    keys_refetched: None,
                });
                Ok(metadata)
            }
            Err(error) => {
                *cache.last_failure.lock() = Some(Instant::now());
                tracing::warn!(%issuer, error = %error, "single sign-on discovery failed");
                Err(SsoError::Discovery(error.to_string()))
            }
        }
    }

    /// Fetches the provider's keys again (a key id we did not know), at most every few seconds;
    /// within that time the keys as they are now (maybe just fetched by another sign-in).
    async fn refetch_keys(&self, issuer: &str) -> Option<CoreProviderMetadata> {
        let cache = self.cache(issuer);
        let jwks_uri = {
            let mut guard = cache.discovered.write().await;
            let found = guard.as_mut()?;
            if found
                .keys_refetched
                .is_some_and(|at| at.elapsed() < REFETCH_KEYS)
            {
                return Some(found.metadata.clone());
            }
            found.keys_refetched = Some(Instant::now());
            found.metadata.jwks_uri().clone()
        };
        // Fetched without holding the lock, so other sign-ins are not held up.
        let http = http_client().ok()?;
        match CoreJsonWebKeySet::fetch_async(&jwks_uri, &http).await {
            Ok(keys) => {
                let mut guard = cache.discovered.write().await;
                let found = guard.as_mut()?;
                found.metadata = found.metadata.clone().set_jwks(keys);
                tracing::info!(%issuer, "single sign-on keys refetched");
                Some(found.metadata.clone())
            }
            Err(error) => {
                tracing::warn!(%issuer, error = %error, "single sign-on keys could not be refetched");
                None
            }
        }
    }
}

/// A sign-in at a provider in progress, kept in the store under its `state`.
#[derive(Serialize, Deserialize)]
struct Pending {
    org: String,
    provider: String,
    nonce: String,
    pkce_verifier: String,
    /// SHA-256 of the pre-login cookie.
    binding: String,
    return_to: String,
}

fn digest_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

fn client_secret(provider: &SsoProvider) -> Option<openidconnect::ClientSecret> {
    let secret = match provider.client_secret.as_ref()? {
        ClientSecret::File(path) => std::fs::read_to_string(path)
            .map_err(|e| tracing::error!(path = %path.display(), error = %e, "cannot read a client secret"))
            .ok()?,
        ClientSecret::Env(name) => std::env::var(name)
            .map_err(|_| tracing::error!(variable = %name, "the client secret variable is not set"))
            .ok()?,
    };
    Some(openidconnect::ClientSecret::new(secret.trim().to_owned()))
}

/// The page for anything that went wrong, with a way back; never the error itself.
fn problem(
    visit: &Visit,
    org: Option<&Organisation>,
    message: &str,
    status: StatusCode,
) -> Response {
    let c = visit.chrome(org);
    let mut response = pages::notice(
        status,
        &c,
        c.t.sso_heading,
        message,
        true,
        Some(("/.certgate/login", c.t.sign_in_again)),
    );
    session::clear_cookie(&mut response, SSO_COOKIE);
    response
}

fn find<'a>(
    visit: &'a Visit,
    org: Option<&str>,
    id: &str,
) -> Option<(&'a Arc<Organisation>, &'a SsoProvider)> {
    let org = match org {
        Some(org) => visit.org(org)?,
        None => visit.single_org()?,
    };
    let provider = org.sso.iter().find(|p| p.id == id)?;
    Some((org, provider))
}

fn redirect_uri(visit: &Visit, provider: &SsoProvider) -> Option<RedirectUrl> {
    RedirectUrl::new(format!(
        "https://{}/.certgate/sso/{}/callback",
        visit.host, provider.id
    ))
    .ok()
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    org: Option<String>,
}

/// `GET /.certgate/sso/{provider}?org=ORG`: off to the provider.
pub(crate) async fn start(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<StartQuery>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let t = visit.texts;
    let Some((org, provider)) = find(&visit, query.org.as_deref(), &id) else {
        return problem(
            &visit,
            visit.single_org().map(|o| o.as_ref()),
            t.sso_unknown,
            StatusCode::NOT_FOUND,
        );
    };
    let Some(store) = state.backend.store() else {
        return problem(
            &visit,
            Some(org),
            t.trouble,
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    // The round trip's state waits in the store until the provider sends the user back.
    if let Err(refused) = crate::flow::count_visitor(&state, &visit, &store).await {
        return refused.into_response();
    }
    let issuer = issuer_of(provider);
    let metadata = match state.sso.metadata(&issuer).await {
        Ok(metadata) => metadata,
        Err(_) => {
            let text = fill(t.sso_unreachable, &provider.label, "", "");
            return problem(&visit, Some(org), &text, StatusCode::BAD_GATEWAY);
        }
    };
    let Some(redirect) = redirect_uri(&visit, provider) else {
        return problem(&visit, Some(org), t.trouble, StatusCode::BAD_REQUEST);
    };
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        client_secret(provider),
    )
    .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let return_to = match load_attempt(&store, &headers).await {
        Some(attempt) => attempt.session.return_to().to_owned(),
        None => "/".into(),
    };
    let binding = hex::encode(rand::random::<[u8; 24]>());
    let pending = Pending {
        org: org.id.clone(),
        provider: provider.id.clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        binding: digest_hex(&binding),
        return_to,
    };
    let stored = match serde_json::to_vec(&pending) {
        Ok(bytes) => store
            .put_once(
                "sso-state",
                &digest_hex(csrf.secret()),
                &bytes,
                PENDING_LIFETIME,
            )
            .await
            .is_ok(),
        Err(_) => false,
    };
    if !stored {
        return problem(
            &visit,
            Some(org),
            t.trouble,
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    session::set_cookie(&mut response, SSO_COOKIE, &binding, Some(PENDING_LIFETIME));
    response
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// What the ID token says, once verified.
struct Identity {
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    hd: Option<String>,
    microsoft_verified: bool,
    provider_mfa: bool,
}

/// Exchanges the code and verifies the ID token fully: signature (refetching keys once for an
/// unknown key id), `iss`, `aud`, `azp`, `exp`, `iat` with small skew, and `nonce`.
async fn identity(
    state: &PortalState,
    provider: &SsoProvider,
    redirect: RedirectUrl,
    pending: &Pending,
    code: String,
) -> Result<Identity, SsoError> {
    let issuer = issuer_of(provider);
    let metadata = state.sso.metadata(&issuer).await?;
    let http = http_client()?;
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(provider.client_id.clone()),
        client_secret(provider),
    )
    .set_redirect_uri(redirect);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| SsoError::TokenRequest(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| SsoError::TokenRequest(e.to_string()))?;
    let _ = tokens.access_token();
    let id_token = tokens.id_token().ok_or(SsoError::NoIdToken)?;
    let nonce = Nonce::new(pending.nonce.clone());
    let now = state.now();
    let verify = |client: &CoreClient<_, _, _, _, _, _>| {
        let verifier = client
            .id_token_verifier()
            // Asymmetric signatures only: never an HMAC keyed with our own client secret.
            .set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha384,
                CoreJwsSigningAlgorithm::RsaSsaPssSha512,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ])
            .set_issue_time_verifier_fn(move |iat| {
                let iat = iat.timestamp();
                if iat > now + SKEW {
                    Err(format!("issued {}s in the future", iat - now))
                } else if iat < now - 600 - SKEW {
                    Err("issued too long ago".into())
                } else {
                    Ok(())
                }
            });
        id_token.claims(&verifier, &nonce).cloned()
    };
    let claims = match verify(&client) {
        Ok(claims) => claims,
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey,
        )) => {
            // The provider may have rotated its keys.
            let fresh = state
                .sso
                .refetch_keys(&issuer)
                .await
                .ok_or(SsoError::NoMatchingKey)?;
            let client = CoreClient::from_provider_metadata(
                fresh,
                ClientId::new(provider.client_id.clone()),
                client_secret(provider),
            );
            verify(&client).map_err(SsoError::IdToken)?
        }
        Err(e) => return Err(SsoError::IdToken(e)),
    };
    // Claims beyond the standard ones, from the token just verified.
    let extra: serde_json::Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default();
    let text = |name: &str| extra.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(azp) = claims.authorized_party() {
        if azp.as_str() != provider.client_id {
            return Err(SsoError::OtherClient);
        }
    }
    let subject = match &provider.kind {
        SsoKind::Microsoft { tenant, .. } => {
            // The issuer names the tenant, but Entra signs every tenant's tokens with the same
            // keys: the token must also say, in `tid`, that it is this tenant's.
            match text("tid") {
                Some(tid) if tid.eq_ignore_ascii_case(tenant) => {}
                Some(tid) => return Err(SsoError::OtherTenant(tid)),
                None => return Err(SsoError::MissingClaim("tid")),
            }
            // Entra ID's `sub` differs per application; `oid` is the user in the tenant.
            text("oid")
                .filter(|oid| !oid.is_empty())
                .ok_or(SsoError::MissingClaim("oid"))?
        }
        _ => claims.subject().as_str().to_owned(),
    };
    Ok(Identity {
        issuer,
        subject,
        email: claims.email().map(|e| e.as_str().trim().to_lowercase()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        hd: text("hd"),
        // Entra: an address the tenant verified (optional claim xms_edov), of a member, not a
        // guest from elsewhere (who carries `idp`).
        microsoft_verified: extra.get("xms_edov").and_then(serde_json::Value::as_bool)
            == Some(true)
            && extra.get("idp").is_none(),
        provider_mfa: claims
            .auth_method_refs()
            .is_some_and(|amr| amr.iter().any(|m| m.as_str() == "mfa")),
    })
}

/// Whether the provider vouches for the e-mail address (so an existing account may be linked
/// by it), and the domain is allowed.
fn vouched_email(provider: &SsoProvider, id: &Identity) -> Option<String> {
    let email = provider_vouches(provider, id)?;
    let domain = email.rsplit_once('@')?.1;
    let allowed = provider.allowed_email_domains.is_empty()
        || provider.allowed_email_domains.iter().any(|d| d == domain);
    allowed.then(|| email.to_owned())
}

/// The identity's `email` if the provider vouches that it belongs to the user, whatever its
/// domain.
fn provider_vouches<'a>(provider: &SsoProvider, id: &'a Identity) -> Option<&'a str> {
    let email = id.email.as_deref()?;
    let domain = email.rsplit_once('@')?.1;
    let vouched = match provider.kind {
        // Entra's `email` is an attribute any user administrator can set: only a verified one
        // (xms_edov), of a member, in a domain the policy names.
        SsoKind::Microsoft { .. } => {
            id.microsoft_verified && !provider.allowed_email_domains.is_empty()
        }
        // A Workspace account names its domain in `hd`; a consumer account is not vouched for.
        SsoKind::Google { .. } => id.email_verified && id.hd.as_deref() == Some(domain),
        SsoKind::Oidc { .. } => id.email_verified,
    };
    vouched.then_some(email)
}

enum Refusal {
    Unknown,
    NotVouched,
    Disabled,
    Group,
}

/// The account this identity signs in as: linked by subject, or linked now by a vouched e-mail
/// address, or created just in time.
async fn account_for(
    state: &PortalState,
    db: &Database,
    org: &Organisation,
    provider: &SsoProvider,
    id: &Identity,
    ip: &str,
) -> Result<Account, Refusal> {
    let now = state.now();
    let linked = db
        .sso_link(&org.id, &id.issuer, &id.subject)
        .await
        .map_err(|_| Refusal::Unknown)?;
    let account = match linked {
        Some(account_id) => db.account(&org.id, &account_id).await.ok().flatten(),
        None => {
            let email = vouched_email(provider, id).ok_or(Refusal::NotVouched)?;
            // By the e-mail column only, and only when exactly one account has the address.
            let existing = db
                .account_by_email(&org.id, &email)
                .await
                .map_err(|_| Refusal::Unknown)?;
            let account = match existing {
                Some(account) => account,
                None if provider.create_accounts => {
                    let input = certgate_db::AccountInput {
                        username: &email,
                        display_name: id.name.as_deref().unwrap_or(&email),
                        email: Some(&email),
                        ..Default::default()
                    };
                    let new = NewAccount::checked(&org.id, &input, certgate_db::Given::Typed)
                        .map_err(|_| Refusal::Unknown)?;
                    let actor = certgate_accounts::Actor::Provider {
                        name: &provider.id,
                        ip,
                    };
                    // No welcome e-mail: the person is signing in right now.
                    let service = certgate_accounts::Accounts {
                        events: None,
                        ..state.accounts(db)
                    };
                    service
                        .create(actor, org, &new)
                        .await
                        .map_err(|_| Refusal::Unknown)?
                }
                None => return Err(Refusal::Unknown),
            };
            if account.kind == AccountKind::Group {
                return Err(Refusal::Group);
            }
            if account.disabled {
                return Err(Refusal::Disabled);
            }
            // An account linked to someone at this provider is never linked to a second person.
            if db
                .has_sso_link(&org.id, &id.issuer, &account.id)
                .await
                .map_err(|_| Refusal::Unknown)?
            {
                return Err(Refusal::Unknown);
            }
            db.link_sso(&org.id, &id.issuer, &id.subject, &account.id, now)
                .await
                .map_err(|_| Refusal::Unknown)?;
            Some(account)
        }
    };
    match account {
        Some(a) if a.kind == AccountKind::Group => Err(Refusal::Group),
        Some(a) if a.disabled => Err(Refusal::Disabled),
        Some(a) => Ok(a),
        None => Err(Refusal::Unknown),
    }
}

/// `GET /.certgate/sso/{provider}/callback`.
pub(crate) async fn callback(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let visit = Visit::new(&state, &headers);
    let t = visit.texts;
    let fallback_org = visit.single_org().cloned();
    let (Some(store), Some(db)) = (state.backend.store(), state.backend.database()) else {
        return problem(
            &visit,
            fallback_org.as_deref(),
            t.trouble,
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    // The state is taken, so a replayed callback finds nothing.
    let pending: Option<Pending> = match query.state.as_deref() {
        Some(s) if !s.is_empty() && s.len() <= 256 => store
            .take_once("sso-state", &digest_hex(s))
            .await
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
        _ => None,
    };
    let Some(pending) = pending else {
        return problem(
            &visit,
            fallback_org.as_deref(),
            t.sso_expired,
            StatusCode::BAD_REQUEST,
        );
    };
    let cookie = session::cookie(&headers, SSO_COOKIE).unwrap_or_default();
    if !bool::from(
        digest_hex(cookie)
            .as_bytes()
            .ct_eq(pending.binding.as_bytes()),
    ) || cookie.is_empty()
    {
        return problem(
            &visit,
            fallback_org.as_deref(),
            t.sso_other_browser,
            StatusCode::BAD_REQUEST,
        );
    }
    let Some((org, provider)) = find(&visit, Some(&pending.org), &pending.provider)
        .filter(|(_, p)| p.id == id)
        .map(|(o, p)| (Arc::clone(o), p.clone()))
    else {
        return problem(
            &visit,
            fallback_org.as_deref(),
            t.sso_unknown,
            StatusCode::BAD_REQUEST,
        );
    };
    // Counted, audited (as the e-mail address, when the provider vouched for one) and
    // told.
    let fail = async |message: &str, who: Option<&str>, why: &str| {
        state
            .metrics
            .logins
            .with_label_values(&[org.id.as_str(), "sso", "failure"])
            .inc();
        let detail = format!("sso {}: {why}", provider.id);
        let who = who.unwrap_or(crate::flow::UNKNOWN_NAME);
        crate::flow::audit_failed_sign_in(&state, &db, &org.id, who, &visit.ip, &detail).await;
        problem(&visit, Some(&org), message, StatusCode::FORBIDDEN)
    };
    if let Some(error) = query.error.as_deref() {
        let text = if error == "access_denied" {
            fill(t.sso_cancelled, &provider.label, "", "")
        } else {
            fill(t.sso_provider_error, &provider.label, "", "")
        };
        let why = if error == "access_denied" {
            "cancelled at the provider"
        } else {
            "the provider answered with an error"
        };
        return fail(&text, None, why).await;
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return fail(t.sso_expired, None, "no code in the answer").await;
    };
    let Some(redirect) = redirect_uri(&visit, &provider) else {
        return fail(t.trouble, None, "no address to return to").await;
    };
    let identity = match identity(&state, &provider, redirect, &pending, code).await {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(org = %org.id, provider = %provider.id, %error, "single sign-on refused");
            let text = fill(t.sso_failed, &provider.label, "", "");
            return fail(&text, None, "the answer was refused").await;
        }
    };
    // Refused before anything is linked or created.
    // The audit names the address only when the provider vouches for it: anyone may claim any
    // address at a provider that lets people register.
    let named = provider_vouches(&provider, &identity);
    if provider.mfa == SsoMfa::Provider && provider.require_provider_mfa && !identity.provider_mfa {
        let text = fill(t.sso_needs_mfa, &provider.label, "", "");
        return fail(&text, named, "no second factor at the provider").await;
    }
    let account = match account_for(&state, &db, &org, &provider, &identity, &visit.ip).await {
        Ok(account) => account,
        Err(Refusal::Group) => return fail(t.sso_group, named, "a group account").await,
        Err(Refusal::NotVouched) => {
            return fail(t.sso_not_vouched, named, "e-mail address not vouched for").await
        }
        Err(Refusal::Unknown) => return fail(t.sso_no_account, named, "no such account").await,
        Err(Refusal::Disabled) => return fail(t.sso_no_account, named, "account disabled").await,
    };
    let mut attempt = match load_attempt(&store, &headers).await {
        Some(attempt) => attempt,
        // Not counted again: the round trip was counted when it started.
        None => match create_attempt(&visit, &store, pending.return_to.clone()).await {
            Ok(attempt) => attempt,
            Err(_) => return fail(t.trouble, named, "the store is unavailable").await,
        },
    };
    attempt.session.begin(pending.return_to.clone());
    let mfa = match provider.mfa {
        SsoMfa::Certgate => ProviderMfa::Certgate,
        SsoMfa::Provider => ProviderMfa::Provider {
            vouched: identity.provider_mfa,
        },
    };
    let s = crate::flow::Signing::new(attempt, org, account);
    let event = Event::ProviderVouched(mfa);
    let mut response = crate::flow::first_step_done(&state, &visit, &store, &db, s, event).await;
    session::clear_cookie(&mut response, SSO_COOKIE);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_policies::SsoKind;

    fn provider(kind: SsoKind, domains: &[&str]) -> SsoProvider {
        SsoProvider {
            id: "p".into(),
            kind,
            label: "P".into(),
            client_id: "c".into(),
            client_secret: None,
            mfa: SsoMfa::Certgate,
            require_provider_mfa: false,
            create_accounts: false,
            allowed_email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn identity(email: &str, verified: bool, hd: Option<&str>) -> Identity {
        Identity {
            issuer: "i".into(),
            subject: "s".into(),
            email: Some(email.into()),
            email_verified: verified,
            name: None,
            hd: hd.map(str::to_owned),
            microsoft_verified: false,
            provider_mfa: false,
        }
    }

    fn microsoft(tenant: &str, domains: &[&str]) -> SsoProvider {
        provider(
            SsoKind::Microsoft {
                tenant: tenant.into(),
                authority: SsoKind::MICROSOFT_AUTHORITY.into(),
            },
            domains,
        )
    }

    fn google() -> SsoProvider {
        provider(
            SsoKind::Google {
                issuer: SsoKind::GOOGLE_ISSUER.into(),
            },
            &[],
        )
    }

    #[test]
    fn microsoft_is_pinned_to_its_tenant_and_google_to_accounts_google_com() {
        assert_eq!(
            issuer_of(&microsoft("0000-1111", &[])),
            "https://login.microsoftonline.com/0000-1111/v2.0"
        );
        let us = provider(
            SsoKind::Microsoft {
                tenant: "0000-1111".into(),
                authority: "https://login.microsoftonline.us".into(),
            },
            &[],
        );
        assert_eq!(
            issuer_of(&us),
            "https://login.microsoftonline.us/0000-1111/v2.0",
            "a national cloud: still the tenant's own issuer"
        );
        assert_eq!(issuer_of(&google()), "https://accounts.google.com");
        let oidc = provider(
            SsoKind::Oidc {
                issuer: "https://tenant.auth0.example/".into(),
            },
            &[],
        );
        assert_eq!(
            issuer_of(&oidc),
            "https://tenant.auth0.example/",
            "as written"
        );
    }

    #[test]
    fn only_a_vouched_address_in_an_allowed_domain_links_an_account() {
        let oidc = provider(
            SsoKind::Oidc {
                issuer: "https://idp".into(),
            },
            &["noord.example"],
        );
        assert_eq!(
            vouched_email(&oidc, &identity("anna@noord.example", true, None)).as_deref(),
            Some("anna@noord.example")
        );
        assert_eq!(
            vouched_email(&oidc, &identity("anna@noord.example", false, None)),
            None
        );
        assert_eq!(
            vouched_email(&oidc, &identity("anna@evil.example", true, None)),
            None
        );
        let ms = microsoft("t", &["noord.example"]);
        let mut member = identity("anna@noord.example", false, None);
        assert_eq!(
            vouched_email(&ms, &member),
            None,
            "an unverified Entra address"
        );
        member.microsoft_verified = true;
        assert!(vouched_email(&ms, &member).is_some());
        let open_ms = microsoft("t", &[]);
        assert_eq!(
            vouched_email(&open_ms, &member),
            None,
            "Entra needs allowed domains"
        );
        let google = google();
        assert_eq!(
            vouched_email(&google, &identity("anna@gmail.com", true, None)),
            None
        );
        assert!(vouched_email(
            &google,
            &identity("anna@noord.example", true, Some("noord.example"))
        )
        .is_some());
    }
}
