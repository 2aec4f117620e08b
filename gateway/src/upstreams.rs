//! The organisations' upstreams: resolved when the policies load, chosen round-robin among
//! the healthy ones, and health-checked in the background: by a TCP connect every 5 s, or by
//! the organisation's `[health_check]` HTTP request, which also finds an application that
//! accepts connections but no longer answers.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use certgate_policies::{HealthCheck, PolicySet, Upstream};

/// One upstream server.
#[derive(Debug)]
pub struct Backend {
    pub url: String,
    /// Resolved at load time and again by every health check, never on the request path.
    addr: ArcSwapOption<SocketAddr>,
    port: u16,
    pub tls: bool,
    pub sni: String,
    healthy: AtomicBool,
}

impl Backend {
    fn new(upstream: &Upstream) -> Self {
        // Resolution happens here, at load time, never on the request path.
        let addr = (upstream.host.as_str(), upstream.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        Backend {
            url: upstream.url.clone(),
            addr: ArcSwapOption::from(addr.map(Arc::new)),
            port: upstream.port,
            tls: upstream.tls,
            sni: upstream.host.clone(),
            healthy: AtomicBool::new(addr.is_some()),
        }
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.load().as_deref().copied()
    }

    /// Looks the host name up again (a no-op for an address), so a backend whose name did not
    /// resolve at load time, or moved, is found by the next health check.
    async fn resolve(&self) -> Option<SocketAddr> {
        if let Ok(ip) = self
            .sni
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
        {
            return Some(SocketAddr::new(ip, self.port));
        }
        let lookup = tokio::net::lookup_host((self.sni.as_str(), self.port));
        match tokio::time::timeout(Duration::from_secs(2), lookup)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "DNS lookup timed out",
                ))
            }) {
            Ok(mut addrs) => {
                let found = addrs.next();
                if found.is_some() {
                    self.addr.store(found.map(Arc::new));
                }
                found.or_else(|| self.addr())
            }
            Err(error) => {
                tracing::warn!(upstream = %self.url, %error, "cannot resolve upstream host");
                self.addr()
            }
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A failed connect marks the backend down until the next health check finds it up.
    pub fn mark_down(&self) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.url, "upstream connect failed; marked down");
        }
    }
}

/// The backends of one organisation.
#[derive(Debug)]
pub struct UpstreamPool {
    backends: Vec<Backend>,
    next: AtomicUsize,
    check: Option<HealthCheck>,
    /// When the next health check of this pool is due.
    due: parking_lot::Mutex<Instant>,
    /// A check of this pool is running (a slow one may outlast the interval).
    checking: AtomicBool,
}

/// Without a `[health_check]`: a TCP connect, this often.
const TCP_CHECK_EVERY: Duration = Duration::from_secs(5);
const TCP_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl UpstreamPool {
    /// The index of the next healthy backend; when none is healthy, the next one anyway (the health check
    /// may be behind, and a failed connect gives the clear 502 page).
    pub fn choose(&self) -> Option<usize> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.backends[i].is_healthy())
            .or(Some(start % n))
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// Pools by organisation id, rebuilt whenever the policies reload.
#[derive(Debug, Default)]
pub struct Upstreams {
    pools: ArcSwap<HashMap<String, Arc<UpstreamPool>>>,
}

impl Upstreams {
    pub fn new(policies: &PolicySet) -> Self {
        let upstreams = Upstreams::default();
        upstreams.rebuild(policies);
        upstreams
    }

    pub fn rebuild(&self, policies: &PolicySet) {
        let previous = self.pools.load_full();
        let pools = policies
            .organisations()
            .map(|org| {
                let before = previous.get(&org.id);
                let backends = org
                    .upstreams
                    .iter()
                    .map(|upstream| {
                        let backend = Backend::new(upstream);
                        // A backend known to be down stays down until a health check says
                        // otherwise, reload or not.
                        let known =
                            before.and_then(|p| p.backends.iter().find(|b| b.url == backend.url));
                        if let Some(known) = known {
                            backend.healthy.store(known.is_healthy(), Ordering::Relaxed);
                        }
                        backend
                    })
                    .collect();
                let pool = UpstreamPool {
                    backends,
                    next: AtomicUsize::new(0),
                    check: org.health_check.clone(),
                    due: parking_lot::Mutex::new(Instant::now()),
                    checking: AtomicBool::new(false),
                };
                (org.id.clone(), Arc::new(pool))
            })
            .collect();
        self.pools.store(Arc::new(pools));
    }

    pub fn pool(&self, org: &str) -> Option<Arc<UpstreamPool>> {
        self.pools.load().get(org).cloned()
    }

    /// Starts the checks of the pools that are due at `now`, each pool on its own task so a
    /// slow application holds up no other; call it every second or so.
    pub fn check_due(&self, now: Instant) {
        let pools = self.pools.load_full();
        for pool in pools.values() {
            {
                let mut due = pool.due.lock();
                if *due > now || pool.checking.swap(true, Ordering::Relaxed) {
                    continue;
                }
                let every = pool.check.as_ref().map_or(TCP_CHECK_EVERY, |c| c.interval);
                *due = now + every;
            }
            let pool = Arc::clone(pool);
            tokio::spawn(async move {
                pool.check_backends().await;
                pool.checking.store(false, Ordering::Relaxed);
            });
        }
    }
}

impl UpstreamPool {
    async fn check_backends(&self) {
        for backend in &self.backends {
            let healthy = match backend.resolve().await {
                Some(addr) => match &self.check {
                    Some(check) => http_check(backend, addr, check).await,
                    None => matches!(
                        tokio::time::timeout(
                            TCP_CHECK_TIMEOUT,
                            tokio::net::TcpStream::connect(addr)
                        )
                        .await,
                        Ok(Ok(_))
                    ),
                },
                None => false,
            };
            let was = backend.healthy.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                tracing::warn!(upstream = %backend.url, healthy, "upstream health changed");
            }
        }
    }
}

/// `GET check.path` on `backend` answered `check.expect_status` within `check.timeout`.
async fn http_check(backend: &Backend, addr: SocketAddr, check: &HealthCheck) -> bool {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        if backend.tls {
            let name = rustls_pki_types::ServerName::try_from(backend.sni.clone())
                .map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(health_tls())
                .connect(name, tcp)
                .await?;
            status_of(tls, backend, check).await
        } else {
            status_of(tcp, backend, check).await
        }
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(Ok(status)) if status == check.expect_status => true,
        Ok(Ok(status)) => {
            tracing::debug!(upstream = %backend.url, status, "health check answered another status");
            false
        }
        Ok(Err(error)) => {
            tracing::debug!(upstream = %backend.url, %error, "health check failed");
            false
        }
        Err(_) => false,
    }
}

/// Sends the check's request and reads the status of the answer's first line.
async fn status_of(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    backend: &Backend,
    check: &HealthCheck,
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = if backend.sni.contains(':') {
        format!("[{}]", backend.sni)
    } else {
        backend.sni.clone()
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: certgate-health-check\r\nConnection: close\r\n\r\n",
        check.path
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 256 {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&head)
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP status line"))
}

/// The TLS client of health checks: the system's CAs.
fn health_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "a system CA certificate could not be read");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!("no system CA certificates: https upstreams fail their health check");
        }
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn host_names_are_resolved_again_by_the_health_check() {
        let backend = Backend::new(&Upstream::parse("http://localhost:9").unwrap());
        let resolved = backend.resolve().await.unwrap();
        assert!(resolved.ip().is_loopback());
        assert_eq!(resolved.port(), 9);
        let literal = Backend::new(&Upstream::parse("https://[::1]:8443").unwrap());
        assert_eq!(literal.resolve().await, Some("[::1]:8443".parse().unwrap()));
    }

    #[test]
    fn round_robin_skips_backends_marked_down() {
        let pool = UpstreamPool {
            backends: vec![
                Backend::new(&Upstream::parse("http://127.0.0.1:1").unwrap()),
                Backend::new(&Upstream::parse("http://127.0.0.1:2").unwrap()),
            ],
            next: AtomicUsize::new(0),
            check: None,
            due: parking_lot::Mutex::new(Instant::now()),
            checking: AtomicBool::new(false),
        };
        let picks: Vec<usize> = (0..4).filter_map(|_| pool.choose()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        pool.backends()[0].mark_down();
        let picks: Vec<usize> = (0..4).filter_map(|_| pool.choose()).collect();
        assert_eq!(picks, [1, 1, 1, 1]);
    }
}
