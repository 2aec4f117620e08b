//! The organisations' upstreams: resolved when the policies load, chosen round-robin among
//! the healthy ones, and health-checked in the background by a TCP connect.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use certgate_policies::{PolicySet, Upstream};

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
}

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
                };
                (org.id.clone(), Arc::new(pool))
            })
            .collect();
        self.pools.store(Arc::new(pools));
    }

    pub fn pool(&self, org: &str) -> Option<Arc<UpstreamPool>> {
        self.pools.load().get(org).cloned()
    }

    /// One round of health checks: a backend is healthy when a TCP connect succeeds in time.
    pub async fn check_health(&self, timeout: Duration) {
        let pools = self.pools.load_full();
        for pool in pools.values() {
            for backend in &pool.backends {
                let healthy = match backend.resolve().await {
                    Some(addr) => matches!(
                        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                        Ok(Ok(_))
                    ),
                    None => false,
                };
                let was = backend.healthy.swap(healthy, Ordering::Relaxed);
                if was != healthy {
                    tracing::warn!(upstream = %backend.url, healthy, "upstream health changed");
                }
            }
        }
    }
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
        };
        let picks: Vec<usize> = (0..4).filter_map(|_| pool.choose()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        pool.backends()[0].mark_down();
        let picks: Vec<usize> = (0..4).filter_map(|_| pool.choose()).collect();
        assert_eq!(picks, [1, 1, 1, 1]);
    }
}
