//! Throttling of guesses. Password failures are counted per (login name, IP) pair and per IP;
//! either limit blocks that pair or address for the rest of its window. Per login name there is
//! only a growing delay (so nobody can lock a colleague out at the start of a shift): after a few
//! failures from anywhere, the next try must wait 2, 4, 8 … seconds, at most a minute. Counters
//! are keyed by the name as typed, whether or not such an account exists, so the answers reveal
//! nothing.

use std::time::Duration;

use certgate_policies::config::RateLimit as Limit;
use certgate_store::{RateLimit, Store, StoreError};

/// Failures per login name before the delay starts.
const FREE_FAILURES: u32 = 3;
/// The longest delay per login name.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How long failures per login name are remembered.
const NAME_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Which limit stopped an attempt (the `rate_limited_total` label).
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

pub struct Throttle<'a> {
    pub store: &'a Store,
    pub per_pair: Limit,
    pub per_ip: Limit,
    pub now: i64,
}

impl Throttle<'_> {
    fn name_key(org: &str, login: &str) -> String {
        format!("{org}:{}", login.trim().to_lowercase())
    }

    /// Whether an attempt for `login` from `ip` must wait, and how long.
    pub async fn blocked(
        &self,
        org: &str,
        login: &str,
        ip: &str,
    ) -> Result<Option<Blocked>, StoreError> {
        let name = Self::name_key(org, login);
        let checks = [
            (format!("ip:{ip}"), Blocked::Ip as fn(Duration) -> Blocked),
            (format!("pair:{name}:{ip}"), Blocked::Pair),
            (format!("name:{name}"), Blocked::Account),
        ];
        let mut longest: Option<Blocked> = None;
        for (key, make) in checks {
            if let Some(until) = self.store.peek_once("login-block", &key).await? {
                let until: i64 = String::from_utf8_lossy(&until).parse().unwrap_or(0);
                if until > self.now {
                    let wait = make(Duration::from_secs((until - self.now) as u64));
                    if longest.is_none_or(|l| wait.wait() > l.wait()) {
                        longest = Some(wait);
                    }
                }
            }
        }
        Ok(longest)
    }

    /// Counts a failed attempt and sets whatever blocks it earns.
    pub async fn failed(&self, org: &str, login: &str, ip: &str) -> Result<(), StoreError> {
        let name = Self::name_key(org, login);
        let pair = self
            .store
            .hit(
                "login-fail-pair",
                &format!("{name}:{ip}"),
                limit(self.per_pair),
            )
            .await?;
        if !pair.allowed || pair.count >= self.per_pair.count {
            self.block(&format!("pair:{name}:{ip}"), pair.retry_after)
                .await?;
        }
        let by_ip = self
            .store
            .hit("login-fail-ip", ip, limit(self.per_ip))
            .await?;
        if !by_ip.allowed || by_ip.count >= self.per_ip.count {
            self.block(&format!("ip:{ip}"), by_ip.retry_after).await?;
        }
        let by_name = self
            .store
            .hit(
                "login-fail-name",
                &name,
                RateLimit {
                    limit: u32::MAX,
                    window: NAME_WINDOW,
                },
            )
            .await?;
        if by_name.count > FREE_FAILURES {
            let exponent = (by_name.count - FREE_FAILURES).min(16);
            let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
            self.block(&format!("name:{name}"), delay).await?;
        }
        Ok(())
    }

    async fn block(&self, key: &str, for_: Duration) -> Result<(), StoreError> {
        let for_ = for_.max(Duration::from_secs(1));
        let until = self.now + for_.as_secs() as i64;
        self.store
            .put_once("login-block", key, until.to_string().as_bytes(), for_)
            .await
    }
}

fn limit(l: Limit) -> RateLimit {
    RateLimit {
        limit: l.count,
        window: l.window,
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
            now: 1_000,
        }
    }

    #[tokio::test]
    async fn a_pair_is_blocked_after_its_limit_and_others_only_wait() {
        let store = store();
        let t = throttle(&store);
        for _ in 0..4 {
            t.failed("noord", "Anna", "192.0.2.1").await.unwrap();
        }
        // Four failures: the name now has a short delay, from any address.
        let elsewhere = t.blocked("noord", "anna", "192.0.2.99").await.unwrap();
        assert_eq!(elsewhere, Some(Blocked::Account(Duration::from_secs(2))));
        t.failed("noord", "anna", "192.0.2.1").await.unwrap();
        let here = t
            .blocked("noord", "anna", "192.0.2.1")
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(here, Blocked::Pair(d) if d > Duration::from_secs(800)),
            "{here:?}"
        );
        // The colleague at another address waits seconds, never the pair's quarter hour.
        let colleague = t
            .blocked("noord", "anna", "192.0.2.2")
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(colleague, Blocked::Account(d) if d <= MAX_DELAY),
            "{colleague:?}"
        );
        // Another organisation's "anna" is someone else.
        assert_eq!(t.blocked("zuid", "anna", "192.0.2.2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_address_guessing_many_names_is_blocked() {
        let store = store();
        let t = throttle(&store);
        for i in 0..8 {
            t.failed("noord", &format!("user{i}"), "198.51.100.7")
                .await
                .unwrap();
        }
        let blocked = t.blocked("noord", "fresh", "198.51.100.7").await.unwrap();
        assert!(matches!(blocked, Some(Blocked::Ip(_))), "{blocked:?}");
        assert_eq!(
            t.blocked("noord", "fresh", "198.51.100.8").await.unwrap(),
            None
        );
    }
}
