//! Throttling of guesses (passwords, authenticator and recovery codes). Every attempt is counted
//! *before* it is checked, and taken back only when it succeeds, so a burst of parallel guesses
//! is stopped at the limit rather than after it:
//!
//! - per (login name, address) pair and per address (`[limits]`); past either limit that pair or
//!   address waits out the window;
//! - per login name a growing delay: after a few failures from anywhere, one attempt per 2, 4,
//!   8 … seconds, at most one a minute. It holds only sources this name has never signed in
//!   from: an address that signed in as this name in the last 30 days, or a browser that did
//!   (its random `__Host-certgate-browser` cookie) in the last year, goes straight to the
//!   password check, so guessing from elsewhere cannot lock the person out. An attempt the
//!   delay holds still counts against its address, so hammering the delay is not free.
//!
//! Counters are keyed by the name as typed, whether or not such an account exists, so the answers
//! reveal nothing; IPv6 addresses count per /64, which one subscriber usually has. A name that
//! was refused is marked held until its wait ends, so an organisation admin can see it
//! ([`Throttle::held_until`]) and lift it.

use std::time::Duration;

use certgate_policies::config::RateLimit as Limit;
use certgate_store::{address_key, RateLimit, Store, StoreError};

/// Failures per login name before the delay starts.
const FREE_FAILURES: u32 = 3;
/// The longest delay per login name.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How long attempts per login name are remembered.
const NAME_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an address that signed in as a name is known for it.
const KNOWN_ADDRESS: Duration = Duration::from_secs(30 * 86_400);
/// How long a browser that signed in as a name is known for it (its cookie lives as long).
pub const KNOWN_BROWSER: Duration = Duration::from_secs(365 * 86_400);

/// Where a guess comes from: the address, and the browser's random id when it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub ip: &'a str,
    pub browser: Option<&'a str>,
}

/// A well-formed browser id: 32 hex digits, as [`new_browser_id`] makes them.
pub fn browser_id(cookie: Option<&str>) -> Option<&str> {
    cookie.filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn new_browser_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

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
    browser: Option<String>,
}

pub struct Throttle<'a> {
    pub store: &'a Store,
    pub per_pair: Limit,
    pub per_ip: Limit,
    /// Unix seconds: when a name told to wait may try again is counted from here.
    pub now: i64,
}

/// A `[limits]` value as the store counts it.
pub(crate) fn limit(l: Limit) -> RateLimit {
    RateLimit {
        limit: l.count,
        window: l.window,
    }
}

impl Throttle<'_> {
    /// Counts an attempt for `login` (in `org`) from `source`; `Err(blocked)` when it must not
    /// be checked at all.
    pub async fn begin(
        &self,
        org: &str,
        login: &str,
        source: Source<'_>,
    ) -> Result<Result<Counted, Blocked>, StoreError> {
        let name = name_key(org, login);
        let ip = address_key(source.ip);
        let browser = browser_id(source.browser).map(str::to_owned);
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
            if self.lifted(&name).await? {
                // An administrator lifted the block: this attempt counts as the first.
                self.store.clear_hits("guess-pair", &pair).await?;
                self.store
                    .hit("guess-pair", &pair, limit(self.per_pair))
                    .await?;
                self.store.clear_hits("guess-name", &name).await?;
            } else {
                self.store.unhit("guess-ip", &ip).await?;
                let blocked = Blocked::Pair(by_pair.retry_after);
                self.hold(&name, blocked).await?;
                return Ok(Err(blocked));
            }
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
        if by_name.count > FREE_FAILURES && !self.known(&name, &ip, browser.as_deref()).await? {
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
            let lifted = !gate.allowed && self.lifted(&name).await?;
            if lifted {
                self.store.clear_hits("guess-name", &name).await?;
            }
            if !gate.allowed && !lifted {
                // Not checked, so not a failure of this pair or name; but the address pays,
                // or hammering the delay would cost nothing.
                self.store.unhit("guess-pair", &pair).await?;
                self.store.unhit("guess-name", &name).await?;
                let blocked = Blocked::Account(gate.retry_after);
                self.hold(&name, blocked).await?;
                return Ok(Err(blocked));
            }
        }
        Ok(Ok(Counted {
            pair,
            ip,
            name,
            browser,
        }))
    }

    /// The attempt was right: it does not count against anyone, and its address and browser
    /// are known for the name from now on.
    pub async fn succeeded(&self, counted: Counted) -> Result<(), StoreError> {
        self.store.unhit("guess-pair", &counted.pair).await?;
        self.store.unhit("guess-ip", &counted.ip).await?;
        self.store.unhit("guess-name", &counted.name).await?;
        // Whoever was held, this person got in: nobody needs to lift anything for them.
        self.store.take_once(HELD, &counted.name).await?;
        self.store
            .put_once(
                KNOWN,
                &known_address(&counted.name, &counted.ip),
                b"1",
                KNOWN_ADDRESS,
            )
            .await?;
        if let Some(browser) = &counted.browser {
            self.store
                .put_once(
                    KNOWN,
                    &known_browser(&counted.name, browser),
                    b"1",
                    KNOWN_BROWSER,
                )
                .await?;
        }
        Ok(())
    }

    /// An organisation admin lifts the block on `login` (a colleague told "too many attempts"
    /// who cannot wait): the next attempt for that name, from any address, is checked and
    /// counts as a first one. A block of a whole address stays: it is not this person's.
    pub async fn lift(&self, org: &str, login: &str) -> Result<(), StoreError> {
        let name = name_key(org, login);
        let window = self.per_pair.window.max(NAME_WINDOW);
        self.store.put_once(LIFTED, &name, b"1", window).await?;
        self.store.take_once(HELD, &name).await?;
        Ok(())
    }

    /// Until when (unix seconds) an attempt with `login` (in `org`) was last told to wait, if
    /// that wait has not ended by `now` and nobody lifted it or signed in with the name since.
    /// A wait of a whole address is not the name's, so it does not count.
    pub async fn held_until(&self, org: &str, login: &str) -> Result<Option<i64>, StoreError> {
        let name = name_key(org, login);
        let until = self.store.peek_once(HELD, &name).await?;
        Ok(until
            .as_deref()
            .and_then(held_end)
            .filter(|end| *end > self.now))
    }

    /// Marks `name` held until `blocked`'s wait ends (from `now`); a longer hold already
    /// marked stays.
    async fn hold(&self, name: &str, blocked: Blocked) -> Result<(), StoreError> {
        let wait = blocked.wait().max(Duration::from_secs(1));
        // In whole seconds, rounded up: the page never says a wait ended before it did.
        let seconds = wait.as_millis().div_ceil(1000);
        let end = self
            .now
            .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
        let marked = self
            .store
            .peek_once(HELD, name)
            .await?
            .as_deref()
            .and_then(held_end);
        if marked.is_some_and(|marked| marked >= end) {
            return Ok(());
        }
        let end_text = end.to_string();
        self.store
            .put_once(HELD, name, end_text.as_bytes(), wait)
            .await
    }

    /// Whether a lift waits for `name`; it is used up by this attempt.
    async fn lifted(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.store.take_once(LIFTED, name).await?.is_some())
    }

    /// Whether `name` signed in from this address or browser before.
    async fn known(&self, name: &str, ip: &str, browser: Option<&str>) -> Result<bool, StoreError> {
        if self
            .store
            .peek_once(KNOWN, &known_address(name, ip))
            .await?
            .is_some()
        {
            return Ok(true);
        }
        match browser {
            Some(browser) => Ok(self
                .store
                .peek_once(KNOWN, &known_browser(name, browser))
                .await?
                .is_some()),
            None => Ok(false),
        }
    }
}

/// The store's purpose for known sources.
const KNOWN: &str = "known-source";
/// The store's purpose for a block an administrator lifted.
const LIFTED: &str = "guess-lifted";
/// The store's purpose for a name that was told to wait: until when, in unix seconds.
const HELD: &str = "guess-held";

/// The end of a hold as [`Throttle::hold`] stores it.
fn held_end(stored: &[u8]) -> Option<i64> {
    std::str::from_utf8(stored).ok()?.parse().ok()
}

#[cfg(test)]
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The counters' key of a name typed at sign-in: the organisation and the name as typed,
/// without surrounding spaces, in lower case.
fn name_key(org: &str, login: &str) -> String {
    format!("{org}:{}", login.trim().to_lowercase())
}

fn known_address(name: &str, ip: &str) -> String {
    format!("{name}|{ip}")
}

fn known_browser(name: &str, browser: &str) -> String {
    format!("{name}|browser:{browser}")
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
            now: unix_now(),
        }
    }

    fn from(ip: &str) -> Source<'_> {
        Source { ip, browser: None }
    }

    /// An organisation admin lifts the block on a name: the next attempt, from wherever, is
    /// checked; one attempt later the limits hold again.
    #[tokio::test]
    async fn an_admin_lifts_the_block_on_a_name() {
        let store = store();
        let t = Throttle {
            per_ip: Limit {
                count: 100,
                window: Duration::from_secs(900),
            },
            ..throttle(&store)
        };
        // Fenna signed in from here before, so only the pair's limit holds her.
        for name in ["fenna", "gerrit"] {
            let right = t.begin("noord", name, from("192.0.2.7")).await.unwrap();
            t.succeeded(right.unwrap()).await.unwrap();
        }
        for _ in 0..5 {
            fail(&t, "noord", "fenna", "192.0.2.7").await.unwrap();
        }
        assert!(matches!(
            fail(&t, "noord", "fenna", "192.0.2.7").await,
            Err(Blocked::Pair(_))
        ));
        t.lift("noord", "Fenna").await.unwrap();
        let counted = t.begin("noord", "fenna", from("192.0.2.7")).await.unwrap();
        assert!(counted.is_ok(), "the lift lets the next attempt through");
        // A lift is used once: four more wrong tries are allowed, then the block is back.
        for _ in 0..4 {
            fail(&t, "noord", "fenna", "192.0.2.7").await.unwrap();
        }
        assert!(fail(&t, "noord", "fenna", "192.0.2.7").await.is_err());
        // Another name of the organisation is not lifted by it.
        for _ in 0..5 {
            fail(&t, "noord", "gerrit", "192.0.2.7").await.unwrap();
        }
        t.lift("zuid", "gerrit").await.unwrap();
        assert!(fail(&t, "noord", "gerrit", "192.0.2.7").await.is_err());
    }

    /// The account page's question "is this person held?": yes once an attempt with the name
    /// was refused, until the wait ends, the block is lifted or the person signs in; a whole
    /// address's block is not the name's.
    #[tokio::test]
    async fn a_name_told_to_wait_reads_as_held_until_lifted_or_signed_in() {
        let store = store();
        let t = throttle(&store);
        let now = t.now;
        // Fenna signed in from here before, so only the pair's limit holds her.
        let right = t.begin("noord", "fenna", from("192.0.2.7")).await.unwrap();
        t.succeeded(right.unwrap()).await.unwrap();
        for _ in 0..5 {
            fail(&t, "noord", "fenna", "192.0.2.7").await.unwrap();
        }
        assert_eq!(t.held_until("noord", "fenna").await.unwrap(), None);
        let _ = fail(&t, "noord", "fenna", "192.0.2.7").await;
        let until = t.held_until("noord", "Fenna ").await.unwrap();
        assert!(
            until.is_some_and(|end| end > now && end <= now + 901),
            "{until:?}"
        );
        assert_eq!(t.held_until("zuid", "fenna").await.unwrap(), None);
        assert_eq!(
            Throttle {
                now: now + 901,
                ..throttle(&store)
            }
            .held_until("noord", "fenna")
            .await
            .unwrap(),
            None,
            "a wait that ended holds nobody"
        );
        t.lift("noord", "fenna").await.unwrap();
        assert_eq!(t.held_until("noord", "fenna").await.unwrap(), None);

        // Held again, then she signs in from where she is known: not held any more.
        let right = t.begin("noord", "gerrit", from("192.0.2.8")).await.unwrap();
        t.succeeded(right.unwrap()).await.unwrap();
        for _ in 0..6 {
            let _ = fail(&t, "noord", "gerrit", "192.0.2.9").await;
        }
        assert!(t.held_until("noord", "gerrit").await.unwrap().is_some());
        let right = t.begin("noord", "gerrit", from("192.0.2.8")).await.unwrap();
        t.succeeded(right.unwrap()).await.unwrap();
        assert_eq!(t.held_until("noord", "gerrit").await.unwrap(), None);

        // An address blocked for guessing many names holds none of them.
        for i in 0..8 {
            fail(&t, "noord", &format!("user{i}"), "192.0.2.10")
                .await
                .unwrap();
        }
        assert!(fail(&t, "noord", "hanna", "192.0.2.10").await.is_err());
        assert_eq!(t.held_until("noord", "hanna").await.unwrap(), None);
    }

    /// A failed attempt: counted, never handed back.
    async fn fail(t: &Throttle<'_>, org: &str, login: &str, ip: &str) -> Result<(), Blocked> {
        t.begin(org, login, from(ip)).await.unwrap().map(drop)
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
                .begin("noord", "anna", from("192.0.2.1"))
                .await
                .unwrap()
                .unwrap();
            t.succeeded(counted).await.unwrap();
        }
        fail(&t, "noord", "anna", "192.0.2.1").await.unwrap();
    }

    /// The measured attack: four addresses guessing kept Anna out, right password and all,
    /// for over a minute.
    #[tokio::test]
    async fn guessing_from_elsewhere_does_not_hold_where_the_person_signed_in_before() {
        let store = store();
        let t = Throttle {
            per_ip: Limit {
                count: 30,
                window: Duration::from_secs(900),
            },
            ..throttle(&store)
        };
        let browser = new_browser_id();
        let home = Source {
            ip: "2001:db8:aa:1::5",
            browser: Some(&browser),
        };
        let counted = t.begin("noord", "anna", home).await.unwrap().unwrap();
        t.succeeded(counted).await.unwrap();

        let attackers = [
            "2001:db8:66:1::1",
            "2001:db8:66:2::1",
            "2001:db8:66:3::1",
            "198.51.100.9",
        ];
        for _ in 0..10 {
            for attacker in attackers {
                let _ = fail(&t, "noord", "anna", attacker).await;
            }
        }
        // The name is under its longest delays now; an address never used by Anna waits.
        assert!(matches!(
            fail(&t, "noord", "anna", "203.0.113.50").await,
            Err(Blocked::Account(_))
        ));
        for _ in 0..15 {
            let counted = t.begin("noord", "anna", home).await.unwrap();
            let counted = counted.unwrap_or_else(|b| panic!("Anna at home was held: {b:?}"));
            t.succeeded(counted).await.unwrap();
        }
        // Her browser, on a network she never used, is known too; its id is what counts.
        let away = Source {
            ip: "203.0.113.77",
            browser: Some(&browser),
        };
        assert!(t.begin("noord", "anna", away).await.unwrap().is_ok());
        let stranger = new_browser_id();
        let guessed = Source {
            ip: "203.0.113.78",
            browser: Some(&stranger),
        };
        assert!(t.begin("noord", "anna", guessed).await.unwrap().is_err());
        // Held guesses are not refunded: an attacker hammering the delay runs into its
        // address's limit.
        let mut blocked_by_address = false;
        for _ in 0..40 {
            if let Err(Blocked::Ip(_)) = fail(&t, "noord", "anna", attackers[0]).await {
                blocked_by_address = true;
                break;
            }
        }
        assert!(blocked_by_address);
    }

    #[test]
    fn only_well_formed_browser_ids_count() {
        let id = new_browser_id();
        assert_eq!(browser_id(Some(&id)), Some(id.as_str()));
        assert_eq!(browser_id(Some("short")), None);
        assert_eq!(browser_id(Some(&"z".repeat(32))), None);
        assert_eq!(browser_id(None), None);
    }
}
