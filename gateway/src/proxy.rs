//! The Pingora phases. `request_filter` decides (see `admission`) and answers what it can
//! itself; `upstream_peer` picks the portal or one of the organisation's upstreams;
//! `upstream_request_filter` and `upstream_response_filter` enforce the header contract;
//! `logging` counts and logs every request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use certgate_certs::{CredentialKey, CredentialVerifier};
use certgate_policies::PolicyHandle;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST, LOCATION, SET_COOKIE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::SslDigest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::admin_allowlist::AdminAllowLists;
use crate::admission::{self, Admission, Outcome, RequestFacts, Rule, DEVICE_COOKIE};
use crate::client_ip::{self, TrustedProxies};
use crate::connection::GuardedStream;
use crate::drain::{Drain, InFlight};
use crate::headers;
use crate::metrics::Metrics;
use crate::pages;
use crate::request_id::{self, RequestId};
use crate::revocation::{RevocationSet, Revocations};
use crate::seen::RecentlySeen;
use crate::tls::{CertificateStatus, PresentedCertificate};
use crate::upgraded::{UpgradedConnections, Validity};
use crate::upstreams::{UpstreamPool, Upstreams};

/// Everything the proxy phases read; built once, shared by every request.
pub struct GatewayState {
    /// HTTP-01 challenges of `[server.acme]` in progress, answered on plain HTTP.
    pub acme_challenges: Arc<crate::acme::AcmeChallenges>,
    /// The time, as a value: admission, renewal and the sweep of upgraded connections read it
    /// here.
    pub clock: Arc<dyn certgate_store::Clock>,
    pub policies: Arc<PolicyHandle>,
    /// The organisation admins' allow-list layers, merged with the policies' lists.
    pub admin_allow: Arc<AdminAllowLists>,
    pub revocations: Arc<Revocations>,
    pub tokens: Arc<CredentialVerifier>,
    /// Signs renewed group credentials.
    pub credential_key: CredentialKey,
    pub upstreams: Arc<Upstreams>,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: TrustedProxies,
    pub portal_addr: SocketAddr,
    /// Random per process; proves to the portal that a request came through the gateway.
    pub gateway_secret: String,
    pub https_port: u16,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub access_log: bool,
    /// The shared store, once the admin task has opened it (device last-seen times).
    pub store: Arc<tokio::sync::OnceCell<certgate_store::Store>>,
    /// The devices whose last-seen time this instance wrote lately.
    pub seen: RecentlySeen,
    /// Requests in flight, and whether SIGTERM has begun the drain.
    pub drain: Arc<Drain>,
    /// Connections credentials upgraded, closed when the credential ends.
    pub upgraded: Arc<UpgradedConnections>,
}

impl GatewayState {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix_secs()
    }
}

pub struct Gateway {
    pub state: Arc<GatewayState>,
}

/// Per-request state carried between phases.
pub struct RequestContext {
    started: Instant,
    outcome: Option<Outcome>,
    client_ip: IpAddr,
    /// Set first thing in `request_filter`: in the access log and sent on as `X-Request-Id`.
    request_id: Option<RequestId>,
    /// The connection's TLS digest, which carries the client certificate's examination.
    ssl: Option<Arc<SslDigest>>,
    /// The backend of the current attempt, so a failed connect can mark it down and retry.
    backend: Option<(Arc<UpstreamPool>, usize)>,
    attempts: usize,
    /// Counts the request as in flight until it is logged and dropped.
    _in_flight: InFlight,
}

impl RequestContext {
    /// Where the request went, for the access log.
    fn upstream(&self) -> &str {
        match (&self.outcome, &self.backend) {
            (Some(Outcome::Portal { .. }), _) => "portal",
            (_, Some((pool, index))) => pool.backends().get(*index).map_or("", |b| b.url.as_str()),
            _ => "",
        }
    }

    fn presented_certificate(&self) -> Option<&PresentedCertificate> {
        self.ssl.as_ref()?.extension.get::<PresentedCertificate>()
    }
}

impl Gateway {
    fn host_of(request: &RequestHeader) -> &str {
        request
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| request.headers.get(HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("")
    }

    async fn respond(
        session: &mut Session,
        status: u16,
        headers: &[(http::HeaderName, &str)],
        body: Bytes,
    ) -> Result<()> {
        let mut response = ResponseHeader::build(status, Some(headers.len() + 3))?;
        for (name, value) in headers {
            response.insert_header(name.clone(), *value)?;
        }
        response.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }

    /// A credential upgraded this connection (a WebSocket): it stays open past this request's
    /// check, so it is watched and closed when the credential is revoked or runs out.
    fn watch_upgrade(&self, session: &Session, ctx: &RequestContext) {
        let Some(Outcome::Admit(Admission {
            identity: Some(identity),
            org,
            rule,
            ..
        })) = &ctx.outcome
        else {
            return;
        };
        let Some(guard) = session.stream().and_then(GuardedStream::of) else {
            return;
        };
        let validity = Validity {
            org: org.id.clone(),
            account: identity.user.clone(),
            device: identity.device.clone(),
            serial: match rule {
                Rule::Certificate { serial } => Some(serial.clone()),
                _ => None,
            },
            issued_at: identity.issued_at,
            not_after: identity.not_after,
        };
        guard.close_on(self.state.upgraded.watch(validity));
    }

    /// One of the gateway's own pages (`pages`), as HTML.
    async fn respond_page(session: &mut Session, status: u16, page: &'static str) -> Result<()> {
        Self::respond(
            session,
            status,
            &[(CONTENT_TYPE, "text/html; charset=utf-8")],
            Bytes::from_static(page.as_bytes()),
        )
        .await
    }

    /// Plain HTTP only redirects to HTTPS, and only to a host certgate serves: a redirect to
    /// whatever `Host` said would send people (and cache poisoning) anywhere.
    async fn redirect_to_https(&self, session: &mut Session) -> Result<()> {
        let request = session.req_header();
        let host = Self::host_of(request);
        if self
            .state
            .policies
            .load()
            .organisations_for_host(host)
            .is_empty()
        {
            return Self::respond_page(session, 421, pages::UNKNOWN_HOST).await;
        }
        let host = strip_port(host).to_ascii_lowercase();
        let path = request.uri.path_and_query().map_or("/", |p| p.as_str());
        let location = if self.state.https_port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{}{path}", self.state.https_port)
        };
        Self::respond(session, 308, &[(LOCATION, &location)], Bytes::new()).await
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    /// Pingora adds a response-compression module, switched off, to every request by default;
    /// certgate compresses nothing, so no module runs at all.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Self::CTX {
        RequestContext {
            started: Instant::now(),
            outcome: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            request_id: None,
            ssl: None,
            backend: None,
            attempts: 0,
            _in_flight: self.state.drain.request(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if self.state.drain.is_draining() {
            // Served, but the connection closes after it: the instance is going away.
            session.set_keepalive(None);
        }
        ctx.ssl = session.digest().and_then(|d| d.ssl_digest.clone());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let request = session.req_header();
        // Believed from the same peers as `X-Forwarded-For`.
        ctx.request_id = Some(RequestId::of(
            self.state
                .trusted_proxies
                .contains(client_ip::canonical(peer)),
            request.headers.get(request_id::HEADER),
        ));
        ctx.client_ip = self.state.trusted_proxies.client_ip(
            peer,
            request
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
        );
        if ctx.ssl.is_none() {
            let challenge = request
                .uri
                .path()
                .strip_prefix(crate::acme::CHALLENGE_PATH)
                .map(|token| self.state.acme_challenges.answer(token));
            match challenge {
                // The ACME CA checks a token on plain HTTP; nothing else is served there.
                Some(Some(key_authorization)) => {
                    Self::respond(session, 200, &[], Bytes::from(key_authorization)).await?
                }
                Some(None) => Self::respond(session, 404, &[], Bytes::new()).await?,
                None => self.redirect_to_https(session).await?,
            }
            return Ok(true);
        }
        if let Some(refusal) = headers::refused(&request.headers) {
            ctx.outcome = Some(Outcome::BadRequest(refusal.as_str()));
            // The connection may hold more of what the client framed differently.
            session.set_keepalive(None);
            Self::respond_page(session, 400, pages::BAD_REQUEST).await?;
            return Ok(true);
        }

        let path = request.uri.path_and_query().map_or("/", |p| p.as_str());
        let navigation = matches!(request.method, http::Method::GET | http::Method::HEAD)
            && request
                .headers
                .get(ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
        let facts = RequestFacts {
            host: Self::host_of(request),
            path,
            navigation,
            client_ip: ctx.client_ip,
            certificate: ctx.presented_certificate(),
            browser_token: headers::cookie(&request.headers, DEVICE_COOKIE),
        };
        let policies = self.state.policies.load();
        let admin_allow = self.state.admin_allow.load();
        let revocations = self.state.revocations.load();
        let outcome = admission::decide(
            &policies,
            &admin_allow,
            &revocations,
            &self.state.tokens,
            &facts,
            self.state.now(),
        );
        let login = match &outcome {
            Outcome::Login { redirect, .. } => Some((*redirect, admission::login_url(path))),
            _ => None,
        };
        let unknown_host = matches!(outcome, Outcome::UnknownHost);
        ctx.outcome = Some(outcome);

        if unknown_host {
            Self::respond_page(session, 421, pages::UNKNOWN_HOST).await?;
            return Ok(true);
        }
        if let Some((redirect, url)) = login {
            if redirect {
                Self::respond(session, 302, &[(LOCATION, &url)], Bytes::new()).await?;
            } else {
                let body = pages::unauthorized_json(&url);
                Self::respond(
                    session,
                    401,
                    &[
                        (CONTENT_TYPE, "application/json"),
                        (http::header::WWW_AUTHENTICATE, "certgate"),
                    ],
                    Bytes::from(body),
                )
                .await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = match &ctx.outcome {
            Some(Outcome::Portal { .. }) => {
                HttpPeer::new(self.state.portal_addr, false, String::new())
            }
            Some(Outcome::Admit(admission)) => {
                let Some(pool) = self.state.upstreams.pool(&admission.org.id) else {
                    return Err(Error::explain(
                        ErrorType::ConnectNoRoute,
                        "no upstream pool",
                    ));
                };
                ctx.attempts += 1;
                let Some(index) = pool.choose() else {
                    return Err(Error::explain(ErrorType::ConnectNoRoute, "no upstream").into_up());
                };
                let backend = &pool.backends()[index];
                let Some(addr) = backend.addr() else {
                    return Err(Error::explain(
                        ErrorType::ConnectNoRoute,
                        "upstream address not resolved",
                    )
                    .into_up());
                };
                let peer = HttpPeer::new(addr, backend.tls, backend.sni.clone());
                ctx.backend = Some((pool, index));
                peer
            }
            _ => {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no admission decision",
                ))
            }
        };
        peer.options.connection_timeout = Some(self.state.connect_timeout);
        peer.options.total_connection_timeout = Some(self.state.connect_timeout);
        peer.options.read_timeout = Some(self.state.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        for name in headers::spoofable_headers(&upstream_request.headers) {
            upstream_request.remove_header(&name);
        }
        // Fixed values are static and the address is formatted on the stack: a header value made
        // from a `&str` is copied into an allocation of its own, and `to_string()` is another.
        upstream_request.insert_header("x-forwarded-for", headers::ip_value(ctx.client_ip))?;
        upstream_request.insert_header("x-forwarded-proto", HeaderValue::from_static("https"))?;
        if let Some(id) = &ctx.request_id {
            upstream_request.insert_header(request_id::HEADER, id.header_value())?;
        }
        match &ctx.outcome {
            Some(Outcome::Portal { .. }) => {
                // The portal keeps its own cookies; it learns what only the gateway knows.
                upstream_request
                    .insert_header("x-certgate-client-ip", headers::ip_value(ctx.client_ip))?;
                upstream_request
                    .insert_header("x-certgate-gateway-secret", &self.state.gateway_secret)?;
                if let Some(cert) = ctx.presented_certificate() {
                    let revocations = self.state.revocations.load();
                    let value = client_cert_header(&revocations, cert, self.state.now());
                    upstream_request.insert_header("x-certgate-client-cert", value)?;
                }
            }
            Some(Outcome::Admit(admission)) => {
                if let Some(cookies) = headers::cookies_without_certgate(&upstream_request.headers)
                {
                    upstream_request.remove_header(&http::header::COOKIE);
                    for line in cookies {
                        upstream_request.append_header(http::header::COOKIE, line)?;
                    }
                }
                upstream_request.insert_header(
                    "x-certgate-auth",
                    HeaderValue::from_static(admission.auth.as_str()),
                )?;
                upstream_request.insert_header("x-certgate-org", admission.org.id.as_str())?;
                match &admission.identity {
                    Some(identity) => {
                        upstream_request
                            .insert_header("x-certgate-user", identity.user.as_str())?;
                        upstream_request
                            .insert_header("x-certgate-device", identity.device.as_str())?;
                        upstream_request.insert_header(
                            "x-certgate-mfa",
                            HeaderValue::from_static(identity.mfa),
                        )?;
                    }
                    None => {
                        upstream_request
                            .insert_header("x-certgate-mfa", HeaderValue::from_static("none"))?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if matches!(ctx.outcome, Some(Outcome::Portal { .. })) {
            return Ok(());
        }
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            self.watch_upgrade(session, ctx);
        }
        if let Some(kept) = headers::set_cookies_without_certgate(&upstream_response.headers) {
            upstream_response.remove_header(&SET_COOKIE);
            for line in kept {
                upstream_response.append_header(SET_COOKIE, line)?;
            }
        }
        if let Some(Outcome::Admit(Admission {
            renew: Some(claims),
            org,
            ..
        })) = &ctx.outcome
        {
            // A shared tablet in use: a fresh credential, so it lapses only after the idle
            // timeout without use.
            match self.state.credential_key.sign(claims) {
                Ok(token) => {
                    upstream_response.append_header(
                        SET_COOKIE,
                        format!(
                            "{}={token}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
                            DEVICE_COOKIE,
                            org.mfa.group_idle_timeout.as_secs()
                        ),
                    )?;
                }
                Err(error) => tracing::warn!(%error, "a group credential could not be renewed"),
            }
        }
        Ok(())
    }

    /// What Pingora logs about a failed request: never the query string, which may hold codes.
    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        let request = session.req_header();
        format!("{} {}", request.method, request.uri.path())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((pool, index)) = &ctx.backend {
            pool.backends()[*index].mark_down();
            // Try each other backend once before answering 502.
            if ctx.attempts < pool.len() {
                e.set_retry(true);
            }
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            // Connected, but the application did not answer in time: a gateway timeout, not
            // an unreachable application.
            (
                ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                pingora::ErrorSource::Upstream,
            ) => 504,
            (_, pingora::ErrorSource::Upstream) => 502,
            (_, pingora::ErrorSource::Downstream) => 0,
            _ => 500,
        };
        if code == 502 || code == 504 {
            if let Some(org) = ctx.outcome.as_ref().and_then(Outcome::org) {
                self.state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[org.id.as_str()])
                    .inc();
            }
        }
        // Once the upstream's response has started, an error page would corrupt it.
        if session.response_written().is_some() {
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        if code == 502 || code == 504 {
            let page = if code == 504 {
                pages::UPSTREAM_TIMEOUT
            } else {
                pages::UPSTREAM_DOWN
            };
            let _ = Self::respond_page(session, code, page).await;
        } else if code > 0 {
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Self::CTX) {
        // Whatever the connection reads next is a new request head, under the head limits.
        if let Some(guard) = session.stream().and_then(GuardedStream::of) {
            guard.next_request();
        }
        let Some(outcome) = &ctx.outcome else {
            return;
        };
        let org = outcome.org().map_or("", |o| o.id.as_str());
        let decision = outcome.decision().as_str();
        if let (Outcome::Admit(admission), Some(store)) = (outcome, self.state.store.get()) {
            if let Some(identity) = admission.identity.as_ref().filter(|identity| {
                self.state
                    .seen
                    .due(&admission.org.id, &identity.device, self.state.now())
            }) {
                // Off the request path; the store writes it at most once a minute per device.
                let (store, device, metrics) = (
                    store.clone(),
                    identity.device.clone(),
                    Arc::clone(&self.state.metrics),
                );
                let org_id = admission.org.id.clone();
                tokio::spawn(async move {
                    if store.touch_device(&org_id, &device).await.is_err() {
                        metrics
                            .store_errors
                            .with_label_values(&[store.backend_name()])
                            .inc();
                    }
                });
            }
        }
        self.state
            .metrics
            .requests
            .with_label_values(&[org, decision])
            .inc();
        let elapsed = ctx.started.elapsed();
        self.state
            .metrics
            .request_duration
            .with_label_values(&[org])
            .observe(elapsed.as_secs_f64());
        if self.state.access_log {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let request = session.req_header();
            let path = request.uri.path();
            let user = match outcome {
                Outcome::Admit(a) => a.identity.as_ref().map_or("", |i| i.user.as_str()),
                _ => "",
            };
            tracing::info!(
                target: "access",
                client_ip = %ctx.client_ip,
                host = Self::host_of(request),
                method = request.method.as_str(),
                path,
                status,
                org,
                decision,
                user,
                upstream = ctx.upstream(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                error = error.map(|e| e.etype().as_str()).unwrap_or(""),
                request_id = ctx.request_id.as_ref().map_or("", RequestId::as_str),
            );
        }
    }
}

/// What the portal learns of the connection's certificate: its status now (a connection kept
/// open outlives the handshake's checks, so expiry and revocation are looked at again).
fn client_cert_header(
    revocations: &RevocationSet,
    cert: &PresentedCertificate,
    now: i64,
) -> String {
    let status = match &cert.claims {
        Some(c)
            if revocations.is_revoked(
                &c.org,
                &c.user,
                &c.device_id,
                Some(&cert.serial_hex),
                crate::tls::issued_at(c),
            ) =>
        {
            "revoked"
        }
        Some(c)
            if cert.status == CertificateStatus::Valid
                && (now >= c.not_after.unix_timestamp() || now < c.not_before.unix_timestamp()) =>
        {
            CertificateStatus::Expired.as_str()
        }
        _ => cert.status.as_str(),
    };
    // Status first; the user name is percent-encoded so no value can forge another field.
    match &cert.claims {
        Some(c) => format!(
            "status={status}; serial={}; org={}; device={}; user={}",
            cert.serial_hex,
            c.org,
            c.device_id,
            percent_encoding::utf8_percent_encode(&c.user, HEADER_VALUE)
        ),
        None => format!("status={status}; serial={}", cert.serial_hex),
    }
}

/// Characters escaped in a value of `X-Certgate-Client-Cert`.
const HEADER_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b',')
    .add(b';')
    .add(b'=');

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::str::FromStr;

    use certgate_certs::{DeviceClaims, Serial};
    use time::OffsetDateTime;

    use super::*;

    fn presented(not_before: i64, not_after: i64) -> PresentedCertificate {
        PresentedCertificate {
            status: CertificateStatus::Valid,
            claims: Some(DeviceClaims {
                org: "noord".into(),
                user: "anna; org=zuid".into(),
                device_id: "dev-1".into(),
                serial: Serial::from_str("0a1b").unwrap(),
                not_before: OffsetDateTime::from_unix_timestamp(not_before).unwrap(),
                not_after: OffsetDateTime::from_unix_timestamp(not_after).unwrap(),
            }),
            serial_hex: "0a1b".into(),
        }
    }

    #[test]
    fn the_portal_hears_the_certificates_status_at_the_time_of_the_request() {
        let cert = presented(1_000, 2_000);
        let none = RevocationSet::default();
        assert_eq!(
            client_cert_header(&none, &cert, 1_500),
            "status=valid; serial=0a1b; org=noord; device=dev-1; user=anna%3B%20org%3Dzuid"
        );
        // The connection outlived the certificate: the handshake's "valid" no longer holds.
        assert!(client_cert_header(&none, &cert, 2_000).starts_with("status=expired; "));
        assert!(client_cert_header(&none, &cert, 999).starts_with("status=expired; "));
        let revoked = RevocationSet::from_records(&[certgate_db::Revocation {
            id: 1,
            org: "noord".into(),
            kind: certgate_db::RevocationKind::Device,
            subject: "dev-1".into(),
            reason: "lost".into(),
            revoked_at: 1_200,
            drop_after: 9_999,
        }]);
        assert!(client_cert_header(&revoked, &cert, 1_500).starts_with("status=revoked; "));
    }
}
