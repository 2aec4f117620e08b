//! Throttling of guesses (passwords, authenticator and recovery codes). Every attempt is counted
//! *before* it is checked, and taken back only when it succeeds, so a burst of parallel guesses
//! is stopped at the limit rather than after it:
//!
//! - per (login name, address) pair and per address (`[limits]`); past either limit that pair or
//!   address waits out the window;
//! - per login name only a growing delay (so nobody can lock a colleague out at the start of a
//!   shift): after a few failures from anywhere, one attempt per 2, 4, 8 … seconds, at most one a
//!   minute.
//!
//! Counters are keyed by the name as typed, whether or not such an account exists, so the answers
//! reveal nothing; IPv6 addresses count per /64, which one subscriber usually has.

use std::time::Duration;

use certgate_policies::config::RateLimit as Limit;
use certgate_store::{address_key, RateLimit, Store, StoreError};

/// Failures per login name before the delay starts.
const FREE_FAILURES: u32 = 3;
/// The longest delay per login name.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How long attempts per login name are remembered.
const NAME_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Which limit stopped an attempt (the `rate_limited_total` label), and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Ip(Duration),
    Pair(Duration),
    Account(Duration),
}

impl Blocked {
    pub fn kind(self) -> &'static str {
        match self {
            Blocked::Ip(_) => "login_ip",
            Blocked::Pair(_) => "login_pair",
            Blocked::Account(_) => "login_delay",
        }
    }

    pub fn wait(self) -> Duration {
        match self {
            Blocked::Ip(d) | Blocked::Pair(d) | Blocked::Account(d) => d,
        }
    }
}

/// An attempt that was counted and may go ahead; hand it back with [`Throttle::succeeded`].
#[must_use]
pub struct Counted {
    pair: String,
    ip: String,
    name: String,
}

pub struct Throttle<'a> {
    pub store: &'a Store,
    pub per_pair: Limit,
    pub per_ip: Limit,
}

/// A `[limits]` value as the store counts it.
pub(crate) fn limit(l: Limit) -> RateLimit {
    RateLimit {
        limit: l.count,
        window: l.window,
    }
}

impl Throttle<'_> {
    /// Counts an attempt for `login` (in `org`) from `ip`; `Err(blocked)` when it must not be
    /// checked at all.
    pub async fn begin(
        &self,
        org: &str,
        login: &str,
        ip: &str,
    ) -> Result<Result<Counted, Blocked>, StoreError> {
        let name = format!("{org}:{}", login.trim().to_lowercase());
        let ip = address_key(ip);
        let pair = format!("{name}|{ip}");
        // The address first: a blocked address leaves no counter per name it tries behind, so
        // it cannot fill the store with them.
        let by_ip = self.store.hit("guess-ip", &ip, limit(self.per_ip)).await?;
        if !by_ip.allowed {
            return Ok(Err(Blocked::Ip(by_ip.retry_after)));
        }
        let by_pair = self
            .store
            .hit("guess-pair", &pair, limit(self.per_pair))
            .await?;
        if !by_pair.allowed {
            self.store.unhit("guess-ip", &ip).await?;
            return Ok(Err(Blocked::Pair(by_pair.retry_after)));
        }
        let by_name = self
            .store
            .hit(
                "guess-name",
                &name,
                RateLimit {
                    limit: u32::MAX,
                    window: NAME_WINDOW,
                },
            )
            .await?;
        if by_name.count > FREE_FAILURES {
            // One attempt per delay window: of a burst, one goes ahead.
            let exponent = (by_name.count - FREE_FAILURES).min(16);
            let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
            let gate = self
                .store
                .hit(
                    "guess-gate",
                    &name,
                    RateLimit {
                        limit: 1,
                        window: delay,
                    },
                )
                .await?;
            if !gate.allowed {
                self.store.unhit("guess-pair", &pair).await?;
                self.store.unhit("guess-ip", &ip).await?;
                self.store.unhit("guess-name", &name).await?;
                return Ok(Err(Blocked::Account(gate.retry_after)));
            }
        }
        Ok(Ok(Counted { pair, ip, name }))
    }

    /// The attempt was right: it does not count against anyone.
    pub async fn succeeded(&self, counted: Counted) -> Result<(), StoreError> {
        self.store.unhit("guess-pair", &counted.pair).await?;
        self.store.unhit("guess-ip", &counted.ip).await?;
        self.store.unhit("guess-name", &counted.name).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use certgate_store::{MemoryStore, SystemClock};

    use super::*;

    fn store() -> Store {
        Store::Memory(Arc::new(MemoryStore::new(Arc::new(SystemClock))))
    }

    fn throttle(store: &Store) -> Throttle<'_> {
        Throttle {
            store,
            per_pair: Limit {
                count: 5,
                window: Duration::from_secs(900),
            },
            per_ip: Limit {
                count: 8,
                window: Duration::from_secs(900),
            },
        }
    }

    /// A failed attempt: counted, never handed back.
    async fn fail(t: &Throttle<'_>, org: &str, login: &str, ip: &str) -> Result<(), Blocked> {
        t.begin(org, login, ip).await.unwrap().map(drop)
    }

    #[tokio::test]
    async fn a_pair_is_blocked_after_its_limit_and_others_only_wait() {
        let store = store();
        let t = throttle(&store);
        for _ in 0..3 {
            fail(&t, "noord", "Anna", "192.0.2.1").await.unwrap();
        }
        fail(&t, "noord", "anna", "192.0.2.1").await.unwrap();
        // Four failures: the name now allows one attempt per 2 s, from any address.
        let elsewhere = fail(&t, "noord", "anna", "192.0.2.99").await;
        assert!(
            matches!(elsewhere, Err(Blocked::Account(d)) if d <= Duration::from_secs(2)),
            "{elsewhere:?}"
        );
        // Another organisation's "anna" is someone else.
        fail(&t, "zuid", "anna", "192.0.2.2").await.unwrap();
    }

    #[tokio::test]
    async fn a_blocked_address_leaves_no_counter_per_name_behind() {
        let memory = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
        let store = Store::Memory(Arc::clone(&memory));
        let t = throttle(&store);
        for i in 0..8 {
            fail(&t, "noord", &format!("user{i}"), "192.0.2.7")
                .await
                .unwrap();
        }
        let kept = memory.entry_count();
        for i in 0..100 {
            let refused = fail(&t, "noord", &format!("mallory{i}"), "192.0.2.7").await;
            assert!(matches!(refused, Err(Blocked::Ip(_))), "{refused:?}");
        }
        assert_eq!(
            memory.entry_count(),
            kept,
            "a hundred names tried, nothing kept"
        );
    }

    #[tokio::test]
    async fn a_burst_of_parallel_guesses_stops_at_the_limit() {
        let store = store();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let t = throttle(&store);
                fail(&t, "noord", "anna", "2001:db8:1:2::7").await.is_ok()
            }));
        }
        let mut through = 0;
        for task in tasks {
            through += usize::from(task.await.unwrap());
        }
        // Three free guesses, then one per delay window.
        assert_eq!(through, 4, "{through} of 50 parallel guesses were checked");
    }

    #[tokio::test]
    async fn an_address_guessing_many_names_is_blocked_per_ipv6_network() {
        let store = store();
        let t = throttle(&store);
        for i in 0..8 {
            fail(
                &t,
                "noord",
                &format!("user{i}"),
                &format!("2001:db8:0:1::{i}"),
            )
            .await
            .unwrap();
        }
        let blocked = fail(&t, "noord", "fresh", "2001:db8:0:1::ffff").await;
        assert!(matches!(blocked, Err(Blocked::Ip(_))), "{blocked:?}");
        fail(&t, "noord", "fresh", "2001:db8:0:2::1").await.unwrap();
        fail(&t, "noord", "fresh2", "198.51.100.8").await.unwrap();
    }

    #[tokio::test]
    async fn a_right_answer_costs_nothing() {
        let store = store();
        let t = throttle(&store);
        for _ in 0..20 {
            let counted = t
                .begin("noord", "anna", "192.0.2.1")
                .await
                .unwrap()
                .unwrap();
            t.succeeded(counted).await.unwrap();
        }
        fail(&t, "noord", "anna", "192.0.2.1").await.unwrap();
    }
}
