//! The shared short-lived state of certgate: login sessions, one-time values, rate limits, the
//! device registry and the change feed. The only code that talks to Redis; with no Redis URL an
//! in-memory twin with the same semantics serves a single instance.

mod memory;
mod redis_backend;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
pub use redis_backend::RedisStore;

/// What can go wrong with the store. Messages never contain the URL's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store URL is not valid: {0}")]
    BadUrl(String),
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    #[error("unexpected data in the store: {0}")]
    Corrupt(String),
}

/// The time, passed in so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    fn unix_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Unix seconds, as the database and credentials count time.
    fn unix_secs(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Empty: in-process memory. Otherwise `redis://`, `rediss://` or `redis+sentinel://`.
    pub redis_url: String,
    /// Put before every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    /// The Sentinel master name, with `redis+sentinel://` URLs.
    pub sentinel_master: Option<String>,
    /// The longest any call may take before it fails with [`StoreError::Timeout`].
    pub call_timeout: Duration,
}

impl StoreSettings {
    /// `memory` or `redis`: what [`Store::open`] makes of these settings.
    pub fn backend_name(&self) -> &'static str {
        if self.redis_url.is_empty() {
            "memory"
        } else {
            "redis"
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            redis_url: String::new(),
            key_prefix: "certgate:".into(),
            sentinel_master: None,
            call_timeout: Duration::from_millis(500),
        }
    }
}

/// A login session id: 128 random bits as 32 lowercase hex characters, never derived from user
/// data.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        SessionId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Accepts only the shape [`SessionId::generate`] makes, so a cookie cannot name another key.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| SessionId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionId {
    /// Session ids are bearer secrets: logs see only a prefix.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..6])
    }
}

/// At most `limit` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

/// The answer to one rate-limited attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Attempts in the current window, this one included.
    pub count: u32,
    /// How long until the window ends ("try again in 4 minutes").
    pub retry_after: Duration,
}

/// One change every instance applies to its memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A revocation as recorded in SQL (`kind`: serial, device or account).
    Revocation {
        org: String,
        kind: String,
        subject: String,
        revoked_at: i64,
        drop_after: i64,
    },
    /// An organisation's admin allow-list entries changed; reload them from SQL.
    AllowList { org: String },
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    Change(Change),
    /// The feed was (re)connected: changes may have been missed, so reload the full set from
    /// SQL and re-seed the store.
    Resync,
}

/// The store, whichever backend serves it. Cheap to clone.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

/// How long a device's last-seen time is left alone after it was written.
pub const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(60);

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call,
            Store::Redis($store) => $call,
        }
    };
}

impl Store {
    /// Memory when `settings.redis_url` is empty, else Redis (which reconnects by itself; this
    /// fails only on a malformed URL).
    pub async fn open(
        settings: &StoreSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        if settings.redis_url.is_empty() {
            return Ok(Store::Memory(Arc::new(MemoryStore::new(clock))));
        }
        Ok(Store::Redis(Arc::new(
            RedisStore::open(settings, clock).await?,
        )))
    }

    /// `memory` or `redis`: the `backend` label of `certgate_store_errors_total`
    /// ([`StoreSettings::backend_name`] before it opens).
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    /// Whether the backend is reachable as far as this process last saw.
    pub fn is_connected(&self) -> bool {
        dispatch!(self, s => s.is_connected())
    }

    /// A new session holding `data`, expiring after `ttl`.
    pub async fn create_session(
        &self,
        data: &[u8],
        ttl: Duration,
    ) -> Result<SessionId, StoreError> {
        let id = SessionId::generate();
        dispatch!(self, s => s.put(&session_key(&id), data, ttl).await)?;
        Ok(id)
    }

    pub async fn session(&self, id: &SessionId) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.get(&session_key(id)).await)
    }

    /// Replaces a live session's data; `false` when it has expired or never existed.
    pub async fn update_session(
        &self,
        id: &SessionId,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.replace(&session_key(id), data, ttl).await)
    }

    /// Moves a session to a new id (after each sign-in step, against fixation); the old id is
    /// gone. `None` when the session has expired or was rotated by someone else first.
    pub async fn rotate_session(
        &self,
        id: &SessionId,
        ttl: Duration,
    ) -> Result<Option<SessionId>, StoreError> {
        let next = SessionId::generate();
        let moved =
            dispatch!(self, s => s.rename(&session_key(id), &session_key(&next), ttl).await)?;
        Ok(moved.then_some(next))
    }

    pub async fn delete_session(&self, id: &SessionId) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete(&session_key(id)).await)
    }

    /// Stores a one-time value (a code, OIDC state, a reset token) under `purpose`/`key`.
    pub async fn put_once(
        &self,
        purpose: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put(&once_key(purpose, key), value, ttl).await)
    }

    /// Puts a one-time value back after a wrong guess, unless a new one has taken its place
    /// meanwhile; whether it was put back.
    pub async fn put_once_back(
        &self,
        purpose: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.put_new(&once_key(purpose, key), value, ttl).await)
    }

    /// Reads a one-time value without taking it (a block's end time, say).
    pub async fn peek_once(&self, purpose: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.get(&once_key(purpose, key)).await)
    }

    /// Takes a one-time value: of any number of racing takers, exactly one gets it.
    pub async fn take_once(&self, purpose: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.take(&once_key(purpose, key)).await)
    }

    /// Counts one attempt for `purpose` by `subject` (an account+IP pair, an IP, an account)
    /// in a fixed window, atomically in the store.
    pub async fn hit(
        &self,
        purpose: &str,
        subject: &str,
        limit: RateLimit,
    ) -> Result<RateDecision, StoreError> {
        let (count, remaining) =
            dispatch!(self, s => s.increment(&rate_key(purpose, subject), limit.window).await)?;
        Ok(RateDecision {
            allowed: count <= u64::from(limit.limit),
            count: u32::try_from(count).unwrap_or(u32::MAX),
            retry_after: remaining,
        })
    }

    /// Takes back one event counted by [`Store::hit`] (an attempt that turned out fine),
    /// within the same window.
    pub async fn unhit(&self, purpose: &str, subject: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.decrement(&rate_key(purpose, subject)).await)
    }

    /// Forgets every hit of `subject` for `purpose`: its next hit is the first of a window.
    pub async fn clear_hits(&self, purpose: &str, subject: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete(&rate_key(purpose, subject)).await)
    }

    /// Counts one guess at a secret (a bearer token) from address `ip`, before it is checked,
    /// so that a burst of parallel guesses stops at the limit; hand a right guess back with
    /// [`Guess::was_right`]. `Err(wait)` when the address must not be checked at all, and
    /// `Ok(None)` when the store cannot count (logged): the secret is then checked uncounted,
    /// so that an outage of the store locks out nobody who holds the right one.
    pub async fn guess(
        &self,
        purpose: &'static str,
        ip: &str,
        limit: RateLimit,
    ) -> Result<Option<Guess<'_>>, Duration> {
        let key = address_key(ip);
        match self.hit(purpose, &key, limit).await {
            Ok(hit) if hit.allowed => Ok(Some(Guess {
                store: self,
                purpose,
                key,
            })),
            Ok(hit) => Err(hit.retry_after),
            Err(error) => {
                tracing::warn!(%error, purpose, "a guess cannot be counted; checking it uncounted");
                Ok(None)
            }
        }
    }

    /// Records that a device was seen now, at most once per [`LAST_SEEN_INTERVAL`] per device
    /// across all instances; `true` when this call wrote it.
    pub async fn touch_device(&self, org: &str, device_id: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.touch(&seen_guard_key(org, device_id), &seen_key(org, device_id), LAST_SEEN_INTERVAL).await)
    }

    /// When a device was last seen, in unix seconds.
    pub async fn last_seen(&self, org: &str, device_id: &str) -> Result<Option<i64>, StoreError> {
        let raw = dispatch!(self, s => s.get(&seen_key(org, device_id)).await)?;
        raw.map(|bytes| seen_time(&bytes)).transpose()
    }

    /// When each of `devices` (organisation, device id) was last seen, in one round trip and in
    /// the order given; a corrupt entry reads as never seen.
    pub async fn last_seen_many(
        &self,
        devices: &[(&str, &str)],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let keys: Vec<String> = devices.iter().map(|(org, id)| seen_key(org, id)).collect();
        let raw = dispatch!(self, s => s.get_many(&keys).await)?;
        Ok(raw
            .into_iter()
            .map(|bytes| bytes.and_then(|b| seen_time(&b).ok()))
            .collect())
    }

    /// Sends a change to every instance (this one included).
    pub async fn publish(&self, change: &Change) -> Result<(), StoreError> {
        dispatch!(self, s => s.publish(change).await)
    }

    /// The change feed of this process. Redis subscribers get [`FeedEvent::Resync`] after every
    /// (re)connect.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedEvent> {
        dispatch!(self, s => s.subscribe())
    }

    /// Replaces the seeded copy of the live changes (the SQL set) in the store.
    pub async fn seed(&self, changes: &[Change]) -> Result<(), StoreError> {
        dispatch!(self, s => s.seed(changes).await)
    }

    /// The seeded copy, for instances that start while SQL is unreachable and for tests.
    pub async fn seeded(&self) -> Result<Vec<Change>, StoreError> {
        dispatch!(self, s => s.seeded().await)
    }
}

/// A guess counted by [`Store::guess`]; a wrong one simply stays counted.
#[must_use]
pub struct Guess<'s> {
    store: &'s Store,
    purpose: &'static str,
    key: String,
}

impl Guess<'_> {
    /// The guess was right: it does not count against the address.
    pub async fn was_right(self) {
        if let Err(error) = self.store.unhit(self.purpose, &self.key).await {
            tracing::warn!(%error, purpose = self.purpose, "a right guess stays counted");
        }
    }
}

/// The address as guesses from it are counted: IPv4 as is, IPv6 by its /64, which one
/// subscriber usually has (an IPv4-mapped address as its IPv4 address).
pub fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => ip.to_owned(),
    }
}

fn session_key(id: &SessionId) -> String {
    format!("session:{}", id.as_str())
}

fn once_key(purpose: &str, key: &str) -> String {
    format!("once:{purpose}:{key}")
}

fn rate_key(purpose: &str, subject: &str) -> String {
    format!("rate:{purpose}:{subject}")
}

/// A last-seen time as stored: unix seconds in decimal.
fn seen_time(bytes: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("last-seen time".into()))
}

/// Device ids are per organisation, like their revocations.
fn seen_key(org: &str, device_id: &str) -> String {
    format!("seen:{org}:{device_id}")
}

fn seen_guard_key(org: &str, device_id: &str) -> String {
    format!("seen-guard:{org}:{device_id}")
}

#[cfg(test)]
mod tests;
