//! The Redis backend: shared state for several gateway instances.
//!
//! Opening never waits for Redis: a background "link" task makes the connection (asking the
//! Sentinels for the master first, with `redis+sentinel://`), watches it with a ping and rebuilds
//! it when it stays broken or the master moves. Calls made while no connection exists fail at
//! once with [`StoreError::Unavailable`]. A second background task keeps the change feed
//! subscribed and announces every (re)subscription with [`FeedEvent::Resync`]. Both tasks end
//! when the [`RedisStore`] is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    Client, ConnectionAddr, ErrorKind, RedisConnectionInfo, RedisError, Script, ServerErrorKind,
};
use tokio::sync::{broadcast, Notify};
use tokio::task::AbortHandle;

use crate::{Change, Clock, FeedEvent, StoreError, StoreSettings};

/// How long a device's last-seen time is kept: longer than the longest idle timeout.
const SEEN_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// The in-process touch debounce is pruned when it grows past this many devices.
const DEBOUNCE_CAP: usize = 100_000;
/// How many feed events a slow subscriber may fall behind before it sees `Lagged`.
const FEED_CAPACITY: usize = 1024;
/// How often the link task pings the connection.
const LINK_PING_EVERY: Duration = Duration::from_secs(1);
/// After this many failed pings in a row the connection is thrown away and made anew.
const LINK_MAX_FAILURES: u32 = 3;
/// With Sentinel, the master's address is checked at least this often (in pings).
const SENTINEL_RECHECK_TICKS: u64 = 30;
/// How often the feed connection is pinged, to notice a dead connection that never closed.
const FEED_PING_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// Longest TTL handed to Redis (100 years), so `PX` never overflows the server's clock.
const MAX_TTL_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// `from` moves to `to` with a fresh TTL; 1 when it existed.
const RENAME_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if KEYS[1] == KEYS[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
redis.call('SET', KEYS[2], v, 'PX', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// GET and DEL in one step (GETDEL itself needs Redis 6.2).
const TAKE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
";

/// Takes one back from a counter (never below zero), keeping its window.
const DECREMENT_LUA: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n and n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
";

/// A fixed-window counter: `{count, remaining ms}`. A counter that somehow lost its TTL gets
/// the window again instead of counting forever.
const INCREMENT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local t = redis.call('PTTL', KEYS[1])
if t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  t = tonumber(ARGV[1])
end
return {n, t}
";

/// Writes the last-seen time only when the guard was free; 1 when it wrote.
const TOUCH_LUA: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Where the store lives: one fixed address, or whatever master the Sentinels name.
enum Target {
    Direct(Client),
    Sentinel {
        sentinel: tokio::sync::Mutex<Sentinel>,
        master: String,
        node: SentinelNodeConnectionInfo,
        /// The master's database number (`node` holds it too, but does not tell it).
        db: i64,
    },
}

impl Target {
    fn is_sentinel(&self) -> bool {
        matches!(self, Target::Sentinel { .. })
    }

    /// A client for the current master.
    async fn resolve(&self) -> Result<Client, RedisError> {
        match self {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel {
                sentinel,
                master,
                node,
                ..
            } => {
                sentinel
                    .lock()
                    .await
                    .async_master_for(master, Some(node))
                    .await
            }
        }
    }
}

/// What the background tasks and the calls share.
struct Shared {
    target: Target,
    call_timeout: Duration,
    connect_timeout: Duration,
    /// Passwords from the URL, cut out of every message.
    secrets: Vec<String>,
    /// The live connection; `None` until the link task has made one.
    manager: RwLock<Option<ConnectionManager>>,
    calls_up: AtomicBool,
    /// Why the last connection attempt failed (already redacted), for "not connected" errors.
    last_connect_error: Mutex<Option<ConnectFailure>>,
    feed_up: AtomicBool,
    /// Held while `feed_up` changes together with a `Resync`, so a new subscriber sees exactly
    /// one `Resync`.
    feed_gate: Mutex<()>,
    feed: broadcast::Sender<FeedEvent>,
    /// Wakes the link task early (a READONLY answer: the master may have moved).
    kick: Notify,
}

impl Shared {
    fn redact(&self, text: &str) -> String {
        redact_secrets(text, &self.secrets)
    }

    fn short_error(&self, e: &RedisError) -> String {
        let mut text = self.redact(&e.to_string());
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout))
            .set_number_of_retries(1)
            .set_min_delay(BACKOFF_MIN)
            .set_max_delay(BACKOFF_MAX)
    }
}

/// Exponential backoff from 100 ms to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        now
    }
}

pub struct RedisStore {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    prefix: String,
    channel: String,
    rename_script: Script,
    take_script: Script,
    increment_script: Script,
    decrement_script: Script,
    touch_script: Script,
    /// Devices this instance touched recently: key → until when no Redis call is needed.
    recent_touches: Mutex<HashMap<String, Instant>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Parses the URL and starts the background connection; fails only on a malformed URL.
    pub async fn open(
        settings: &StoreSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisStore, StoreError> {
        let parsed = parse_url(&settings.redis_url, settings.sentinel_master.as_deref())?;
        let call_timeout = settings.call_timeout;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let shared = Arc::new(Shared {
            target: parsed.target,
            call_timeout,
            connect_timeout: (call_timeout * 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(10)),
            secrets: parsed.secrets,
            manager: RwLock::new(None),
            calls_up: AtomicBool::new(false),
            last_connect_error: Mutex::new(None),
            feed_up: AtomicBool::new(false),
            feed_gate: Mutex::new(()),
            feed,
            kick: Notify::new(),
        });
        let prefix = settings.key_prefix.clone();
        // Pub/sub ignores database numbers: name the database (and Sentinel master) in the
        // channel so deployments on other databases of one Redis never hear each other.
        let channel = format!("{prefix}changes:{}", channel_scope(&shared.target));
        tracing::info!(url = %parsed.display, "using Redis for the shared store");
        let link = tokio::spawn(link_task(shared.clone())).abort_handle();
        let feed = tokio::spawn(feed_task(shared.clone(), channel.clone())).abort_handle();
        Ok(RedisStore {
            shared,
            clock,
            prefix,
            channel,
            rename_script: Script::new(RENAME_LUA),
            take_script: Script::new(TAKE_LUA),
            increment_script: Script::new(INCREMENT_LUA),
            decrement_script: Script::new(DECREMENT_LUA),
            touch_script: Script::new(TOUCH_LUA),
            recent_touches: Mutex::new(HashMap::new()),
            tasks: vec![link, feed],
        })
    }

    /// Whether Redis answers both the calls and the change feed right now.
    pub fn is_connected(&self) -> bool {
        self.shared.manager.read().is_some()
            && self.shared.calls_up.load(Ordering::Relaxed)
            && self.shared.feed_up.load(Ordering::Relaxed)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: String = self
            .finish(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl));
        let _: redis::Value = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(())
    }

    /// SET NX: stored only when no value is there; whether it was.
    pub async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl))
            .arg("NX");
        let set: Option<String> = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(set.is_some())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.finish(cmd.query_async(&mut conn)).await
    }

    /// Several keys in one round trip (`MGET`), in the order asked.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        self.finish(cmd.query_async(&mut conn)).await
    }

    /// Overwrites a live key; `false` when there was none.
    pub async fn replace(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("XX")
            .arg("PX")
            .arg(ttl_millis(ttl));
        let answer: redis::Value = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(!matches!(answer, redis::Value::Nil))
    }

    /// Atomically moves a live key to a new name with a fresh TTL; `false` when it was gone.
    pub async fn rename(&self, from: &str, to: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut call = self.rename_script.key(self.key(from));
        call.key(self.key(to)).arg(ttl_millis(ttl));
        let moved: i64 = self.finish(call.invoke_async(&mut conn)).await?;
        Ok(moved == 1)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        let _: i64 = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(())
    }

    /// Of any number of racing takers, exactly one gets the value (a script runs atomically).
    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn()?;
        let call = self.take_script.key(self.key(key));
        self.finish(call.invoke_async(&mut conn)).await
    }

    /// Counts one event in a fixed window: the count so far and the time left in the window.
    pub async fn increment(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(u64, Duration), StoreError> {
        let mut conn = self.conn()?;
        let mut call = self.increment_script.key(self.key(key));
        call.arg(ttl_millis(window));
        let (count, remaining): (i64, i64) = self.finish(call.invoke_async(&mut conn)).await?;
        let count = u64::try_from(count).map_err(|_| StoreError::Corrupt("rate counter".into()))?;
        let remaining = u64::try_from(remaining).map_or(window, Duration::from_millis);
        Ok((count, remaining))
    }

    pub async fn decrement(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let call = self.decrement_script.key(self.key(key));
        let _: i64 = self.finish(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Writes the last-seen time when the guard is free (across instances), and skips Redis
    /// entirely for a device this instance touched less than `interval` ago.
    pub async fn touch(
        &self,
        guard_key: &str,
        seen_key: &str,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        if !self.claim_touch(guard_key, interval) {
            return Ok(false);
        }
        let result = async {
            let mut conn = self.conn()?;
            let seconds = self.clock.unix_millis() / 1000;
            let mut call = self.touch_script.key(self.key(guard_key));
            call.key(self.key(seen_key))
                .arg(ttl_millis(interval))
                .arg(seconds)
                .arg(ttl_millis(SEEN_TTL));
            let wrote: i64 = self.finish(call.invoke_async(&mut conn)).await?;
            Ok(wrote == 1)
        }
        .await;
        if result.is_err() {
            // Nothing was recorded: let the next request try again.
            self.recent_touches.lock().remove(guard_key);
        }
        result
    }

    pub async fn publish(&self, change: &Change) -> Result<(), StoreError> {
        let payload =
            serde_json::to_string(change).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(payload);
        let _: i64 = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(())
    }

    /// The change feed. When the feed is already subscribed, a [`FeedEvent::Resync`] is sent
    /// right away (to every subscriber), so a new subscriber always learns that it may reload.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        let _gate = self.shared.feed_gate.lock();
        let receiver = self.shared.feed.subscribe();
        if self.shared.feed_up.load(Ordering::Relaxed) {
            let _ = self.shared.feed.send(FeedEvent::Resync);
        }
        receiver
    }

    /// Replaces the seeded list atomically.
    pub async fn seed(&self, changes: &[Change]) -> Result<(), StoreError> {
        let entries = changes
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = self.key("seeded");
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key).ignore();
        if !entries.is_empty() {
            pipe.cmd("RPUSH").arg(&key).arg(entries).ignore();
        }
        let mut conn = self.conn()?;
        let () = self.finish(pipe.query_async(&mut conn)).await?;
        Ok(())
    }

    /// The seeded list; entries this version cannot read are skipped with a warning.
    pub async fn seeded(&self) -> Result<Vec<Change>, StoreError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(self.key("seeded")).arg(0).arg(-1);
        let raw: Vec<Vec<u8>> = self.finish(cmd.query_async(&mut conn)).await?;
        Ok(raw
            .iter()
            .filter_map(|entry| match serde_json::from_slice(entry) {
                Ok(change) => Some(change),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a seeded change this version cannot read");
                    None
                }
            })
            .collect())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The connection, or an immediate error while there is none.
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        match self.shared.manager.read().as_ref() {
            Some(manager) => Ok(manager.clone()),
            None => {
                self.shared.calls_up.store(false, Ordering::Relaxed);
                let message = match self.shared.last_connect_error.lock().as_ref() {
                    Some(reason) => format!("not connected to Redis ({reason})"),
                    None => "not connected to Redis yet".to_owned(),
                };
                Err(StoreError::Unavailable(message))
            }
        }
    }

    /// Runs one call under the call timeout and maps its errors.
    async fn finish<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.shared.call_timeout, call).await {
            Err(_) => {
                self.shared.calls_up.store(false, Ordering::Relaxed);
                Err(StoreError::Timeout(self.shared.call_timeout))
            }
            Ok(Ok(value)) => {
                self.shared.calls_up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => Err(self.map_error(&e)),
        }
    }

    fn map_error(&self, e: &RedisError) -> StoreError {
        let message = self.shared.short_error(e);
        match e.kind() {
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => {
                return StoreError::Corrupt(message)
            }
            ErrorKind::Server(ServerErrorKind::ReadOnly) => {
                // Talking to a replica: the master has moved.
                self.shared.calls_up.store(false, Ordering::Relaxed);
                self.shared.kick.notify_one();
            }
            ErrorKind::Server(_) | ErrorKind::Extension if message.contains("WRONGTYPE") => {
                return StoreError::Corrupt(message);
            }
            ErrorKind::Server(_) | ErrorKind::Extension => {}
            _ => self.shared.calls_up.store(false, Ordering::Relaxed),
        }
        StoreError::Unavailable(message)
    }

    /// Whether this instance should ask Redis about this device now; records the claim.
    fn claim_touch(&self, guard_key: &str, interval: Duration) -> bool {
        let now = Instant::now();
        let mut recent = self.recent_touches.lock();
        if recent.get(guard_key).is_some_and(|until| *until > now) {
            return false;
        }
        if recent.len() >= DEBOUNCE_CAP {
            recent.retain(|_, until| *until > now);
            if recent.len() >= DEBOUNCE_CAP {
                recent.clear();
            }
        }
        recent.insert(guard_key.to_owned(), now + interval);
        true
    }
}

/// Milliseconds for `PX`/`PEXPIRE`: at least 1, at most [`MAX_TTL_MILLIS`].
fn ttl_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MILLIS)
}

/// Aborts a task when dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why there is no connection to Redis, as the log and "not connected" errors say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ConnectFailure {
    /// The redis crate's error, already redacted and shortened.
    #[error("{0}")]
    Redis(String),
    #[error("the connection attempt failed unexpectedly (with TLS: is a rustls crypto provider installed?)")]
    Panicked,
    #[error("the connection attempt was cancelled")]
    Cancelled,
    #[error("timed out")]
    TimedOut,
    #[error("Redis stopped answering")]
    StoppedAnswering,
}

/// Runs one connection attempt in its own task, so that a panic inside the redis crate (such
/// as rustls finding no crypto provider) fails the attempt instead of ending the background
/// task; bounded by twice the connect timeout.
async fn attempt<T, F>(shared: &Shared, work: F) -> Result<T, ConnectFailure>
where
    T: Send + 'static,
    F: Future<Output = Result<T, RedisError>> + Send + 'static,
{
    let task = tokio::spawn(work);
    let _guard = AbortOnDrop(task.abort_handle());
    match tokio::time::timeout(shared.connect_timeout * 2, task).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(ConnectFailure::Redis(shared.short_error(&e))),
        Ok(Err(join)) if join.is_panic() => Err(ConnectFailure::Panicked),
        Ok(Err(_)) => Err(ConnectFailure::Cancelled),
        Err(_) => Err(ConnectFailure::TimedOut),
    }
}

/// Makes and keeps the call connection.
async fn link_task(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    let mut logged_down = false;
    loop {
        let made = attempt(&shared, {
            let shared = shared.clone();
            async move {
                let client = shared.target.resolve().await?;
                let addr = client.get_connection_info().addr().clone();
                let manager =
                    ConnectionManager::new_with_config(client, shared.manager_config()).await?;
                Ok((manager, addr))
            }
        })
        .await;
        let (manager, addr) = match made {
            Ok(made) => made,
            Err(reason) => {
                if logged_down {
                    tracing::debug!(%reason, "still cannot connect to Redis");
                } else {
                    tracing::warn!(%reason, "cannot connect to Redis; retrying");
                    logged_down = true;
                }
                shared.calls_up.store(false, Ordering::Relaxed);
                *shared.last_connect_error.lock() = Some(reason);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        tracing::info!(%addr, "connected to Redis");
        *shared.last_connect_error.lock() = None;
        *shared.manager.write() = Some(manager.clone());
        shared.calls_up.store(true, Ordering::Relaxed);
        backoff.reset();
        logged_down = false;

        let mut failures = 0u32;
        let mut ticks = 0u64;
        loop {
            let kicked = tokio::select! {
                () = tokio::time::sleep(LINK_PING_EVERY) => false,
                () = shared.kick.notified() => true,
            };
            ticks += 1;
            let mut conn = manager.clone();
            let ping = tokio::time::timeout(
                shared.call_timeout,
                redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await;
            if matches!(ping, Ok(Ok(_))) {
                failures = 0;
                shared.calls_up.store(true, Ordering::Relaxed);
            } else {
                failures += 1;
                shared.calls_up.store(false, Ordering::Relaxed);
            }
            if failures >= LINK_MAX_FAILURES {
                tracing::warn!("Redis stopped answering; reconnecting");
                *shared.manager.write() = None;
                *shared.last_connect_error.lock() = Some(ConnectFailure::StoppedAnswering);
                logged_down = true;
                break;
            }
            if shared.target.is_sentinel()
                && (kicked || failures > 0 || ticks.is_multiple_of(SENTINEL_RECHECK_TICKS))
            {
                let current = attempt(&shared, {
                    let shared = shared.clone();
                    async move { shared.target.resolve().await }
                })
                .await;
                if let Ok(client) = current {
                    if *client.get_connection_info().addr() != addr {
                        tracing::warn!(old = %addr, new = %client.get_connection_info().addr(), "the Redis master moved; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// Keeps the change feed subscribed and forwards its messages.
async fn feed_task(shared: Arc<Shared>, channel: String) {
    let mut backoff = Backoff::new();
    loop {
        let made = attempt(&shared, {
            let shared = shared.clone();
            let channel = channel.clone();
            async move {
                let client = shared.target.resolve().await?;
                let addr = client.get_connection_info().addr().clone();
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok((pubsub, addr))
            }
        })
        .await;
        let (pubsub, subscribed_at) = match made {
            Ok(made) => made,
            Err(reason) => {
                tracing::warn!(%reason, "cannot subscribe to the Redis change feed; retrying");
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        {
            let _gate = shared.feed_gate.lock();
            shared.feed_up.store(true, Ordering::Relaxed);
            let _ = shared.feed.send(FeedEvent::Resync);
        }
        backoff.reset();
        tracing::info!("subscribed to the Redis change feed");

        let (mut sink, mut stream) = pubsub.split();
        let mut ping_every = tokio::time::interval(FEED_PING_EVERY);
        ping_every.tick().await;
        let reason = loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        break "the connection closed".to_owned();
                    };
                    match serde_json::from_slice::<Change>(message.get_payload_bytes()) {
                        Ok(change) => {
                            let _ = shared.feed.send(FeedEvent::Change(change));
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed message on the change feed"),
                    }
                }
                _ = ping_every.tick() => {
                    match tokio::time::timeout(shared.connect_timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break shared.short_error(&e),
                        Err(_) => break "ping timed out".to_owned(),
                    }
                    // Publishes go to the current master: follow it when Sentinel moves it,
                    // even if the old one still answers.
                    if shared.target.is_sentinel() {
                        let current = attempt(&shared, {
                            let shared = shared.clone();
                            async move { shared.target.resolve().await }
                        })
                        .await;
                        if let Ok(client) = current {
                            if *client.get_connection_info().addr() != subscribed_at {
                                break "the Redis master moved".to_owned();
                            }
                        }
                    }
                }
            }
        };
        shared.feed_up.store(false, Ordering::Relaxed);
        tracing::warn!(%reason, "lost the Redis change feed; resubscribing");
        tokio::time::sleep(backoff.next()).await;
    }
}

/// The outcome of reading a store URL.
struct ParsedUrl {
    target: Target,
    /// The URL with its password replaced, for logs.
    display: String,
    secrets: Vec<String>,
}

fn parse_url(url: &str, sentinel_master: Option<&str>) -> Result<ParsedUrl, StoreError> {
    let display = redact_url(url);
    let bad = |why: &str| StoreError::BadUrl(format!("{display}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected scheme://host"))?;
    let secrets = url_secrets(rest);
    let scheme = scheme.to_ascii_lowercase();
    let target = match scheme.as_str() {
        "redis" | "rediss" => {
            let client = Client::open(url).map_err(|e| {
                let why = redact_secrets(&e.to_string(), &secrets);
                bad(&why)
            })?;
            Target::Direct(client)
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let master = sentinel_master
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| bad("a Sentinel URL needs the Sentinel master name"))?;
            let spec = parse_sentinel(rest).map_err(|why| bad(&why.to_string()))?;
            let tls = scheme == "rediss+sentinel";
            let node_urls: Vec<String> = spec
                .nodes
                .iter()
                .map(|(host, port)| {
                    let host = if host.contains(':') {
                        format!("[{host}]")
                    } else {
                        host.clone()
                    };
                    format!("{}://{host}:{port}", if tls { "rediss" } else { "redis" })
                })
                .collect();
            let sentinel = Sentinel::build(node_urls)
                .map_err(|e| bad(&redact_secrets(&e.to_string(), &secrets)))?;
            let mut redis_info = RedisConnectionInfo::default().set_db(spec.db);
            if let Some(user) = spec.username.as_deref().filter(|u| !u.is_empty()) {
                redis_info = redis_info.set_username(user);
            }
            if let Some(password) = spec.password.as_deref().filter(|p| !p.is_empty()) {
                redis_info = redis_info.set_password(password);
            }
            let mut node =
                SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info);
            if tls {
                node = node.set_tls_mode(redis::TlsMode::Secure);
            }
            Target::Sentinel {
                sentinel: tokio::sync::Mutex::new(sentinel),
                master: master.to_owned(),
                node,
                db: spec.db,
            }
        }
        _ => {
            return Err(bad(
                "the scheme must be redis://, rediss:// or redis+sentinel://",
            ))
        }
    };
    if let Target::Direct(client) = &target {
        if matches!(client.get_connection_info().addr(), ConnectionAddr::Unix(_)) {
            return Err(bad("unix sockets are not supported"));
        }
    }
    Ok(ParsedUrl {
        target,
        display,
        secrets,
    })
}

/// The parts of `redis+sentinel://[user:password@]host[:port][,host[:port]…][/db]`.
#[derive(Debug, PartialEq, Eq)]
struct SentinelSpec {
    nodes: Vec<(String, u16)>,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

/// Why a `redis+sentinel://` URL cannot be used; the message follows the redacted URL in
/// [`StoreError::BadUrl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SentinelUrlProblem {
    #[error("query strings and fragments are not supported in Sentinel URLs")]
    QueryOrFragment,
    #[error("an IPv6 address misses its ']'")]
    UnclosedBracket,
    #[error("expected ':' after ']'")]
    AfterBracket,
    #[error("a host is missing")]
    MissingHost,
    #[error("bad port {0:?}")]
    BadPort(String),
    #[error("the database must be a number")]
    BadDatabase,
    #[error("a bad %-escape")]
    BadEscape,
    #[error("credentials are not UTF-8")]
    NotUtf8,
}

/// `rest` is the URL after `scheme://`. Credentials and the database number are for the
/// master; the Sentinels themselves are asked without credentials.
fn parse_sentinel(rest: &str) -> Result<SentinelSpec, SentinelUrlProblem> {
    if rest.contains(['?', '#']) {
        return Err(SentinelUrlProblem::QueryOrFragment);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, password)) => {
                (Some(percent_decode(user)?), Some(percent_decode(password)?))
            }
            None => (Some(percent_decode(info)?), None),
        },
    };
    let nodes = hosts
        .split(',')
        .map(|node| parse_host_port(node, DEFAULT_SENTINEL_PORT))
        .collect::<Result<Vec<_>, _>>()?;
    let path = path.trim_end_matches('/');
    let db = if path.is_empty() {
        0
    } else {
        path.parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or(SentinelUrlProblem::BadDatabase)?
    };
    Ok(SentinelSpec {
        nodes,
        username,
        password,
        db,
    })
}

fn parse_host_port(node: &str, default_port: u16) -> Result<(String, u16), SentinelUrlProblem> {
    let (host, port) = if let Some(bracketed) = node.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(SentinelUrlProblem::UnclosedBracket)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or(SentinelUrlProblem::AfterBracket)?,
                ),
            ),
        }
    } else {
        match node.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (node, None),
        }
    };
    if host.is_empty() {
        return Err(SentinelUrlProblem::MissingHost);
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| SentinelUrlProblem::BadPort(port.to_owned()))?,
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> Result<String, SentinelUrlProblem> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(SentinelUrlProblem::BadEscape)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SentinelUrlProblem::NotUtf8)
}

/// The userinfo of `rest` (after `scheme://`), if any. Everything up to the last `@` counts,
/// so an unescaped `/` or `@` in a password can never leave part of it visible.
fn userinfo(rest: &str) -> Option<&str> {
    rest.rfind('@').map(|i| &rest[..i])
}

/// The database (and Sentinel master) a store talks to, for the feed's channel name.
fn channel_scope(target: &Target) -> String {
    match target {
        Target::Direct(client) => {
            format!("db{}", client.get_connection_info().redis_settings().db())
        }
        Target::Sentinel { master, db, .. } => format!("{master}/db{db}"),
    }
}

/// The password of the URL, as written and decoded, to cut out of messages.
fn url_secrets(rest: &str) -> Vec<String> {
    let Some(info) = userinfo(rest) else {
        return Vec::new();
    };
    // `redis://password@host` is read by some clients as a bare password: hide it too.
    let raw = info.split_once(':').map_or(info, |(_, password)| password);
    let mut secrets = vec![raw.to_owned()];
    if let Ok(decoded) = percent_decode(raw) {
        secrets.push(decoded);
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// The URL with any password replaced by `***`, for logs and errors.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: it might be a bare secret, so show nothing of it.
        return "(unparseable URL)".into();
    };
    let Some(info) = userinfo(rest) else {
        return url.to_owned();
    };
    let after = &rest[info.len()..];
    let shown = match info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{shown}{after}")
}

fn redact_secrets(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "***")
    })
}

#[cfg(test)]
mod unit_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::SystemClock;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://alice:s3cret@cache:6379/2"),
            "redis://alice:***@cache:6379/2"
        );
        assert_eq!(redact_url("rediss://:s3cret@cache"), "rediss://:***@cache");
        assert_eq!(redact_url("redis://s3cret@cache"), "redis://***@cache");
        assert_eq!(redact_url("redis://cache:6379/0"), "redis://cache:6379/0");
        assert_eq!(redact_url("redis://u:p%40ss@a,b/1"), "redis://u:***@a,b/1");
        assert_eq!(redact_url("s3cret"), "(unparseable URL)");
    }

    #[test]
    fn secrets_are_cut_out_of_messages() {
        let secrets = url_secrets("u:p%40ss@host/0");
        assert!(secrets.contains(&"p%40ss".to_owned()) && secrets.contains(&"p@ss".to_owned()));
        assert_eq!(
            redact_secrets("auth p@ss failed for p%40ss", &secrets),
            "auth *** failed for ***"
        );
        assert!(url_secrets("host:6379/0").is_empty());
    }

    #[test]
    fn sentinel_urls_name_nodes_credentials_and_database() {
        let spec = parse_sentinel("user:pa%3Ass@s1:26380,s2,[::1]:26381/3").unwrap();
        assert_eq!(
            spec,
            SentinelSpec {
                nodes: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("::1".into(), 26381)
                ],
                username: Some("user".into()),
                password: Some("pa:ss".into()),
                db: 3,
            }
        );
        let plain = parse_sentinel("s1:26379/").unwrap();
        assert_eq!(plain.db, 0);
        assert_eq!(plain.username, None);
        assert_eq!(
            parse_sentinel("s1:notaport/"),
            Err(SentinelUrlProblem::BadPort("notaport".into()))
        );
        assert_eq!(parse_sentinel(",s2/"), Err(SentinelUrlProblem::MissingHost));
        assert_eq!(parse_sentinel("s1/x"), Err(SentinelUrlProblem::BadDatabase));
        assert_eq!(
            parse_sentinel("s1/?x=1"),
            Err(SentinelUrlProblem::QueryOrFragment)
        );
        assert_eq!(
            parse_sentinel("[::1/"),
            Err(SentinelUrlProblem::UnclosedBracket)
        );
        assert_eq!(
            parse_sentinel("[::1]x/"),
            Err(SentinelUrlProblem::AfterBracket)
        );
        assert_eq!(
            parse_sentinel("u:p%zz@s1/"),
            Err(SentinelUrlProblem::BadEscape)
        );
        assert_eq!(
            parse_sentinel("u:%ff@s1/"),
            Err(SentinelUrlProblem::NotUtf8)
        );
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MILLIS);
    }

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let mut b = Backoff::new();
        let steps: Vec<_> = (0..7).map(|_| b.next().as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), BACKOFF_MIN);
    }

    fn settings(url: &str, master: Option<&str>) -> StoreSettings {
        StoreSettings {
            redis_url: url.into(),
            sentinel_master: master.map(Into::into),
            ..StoreSettings::default()
        }
    }

    async fn open_error(url: &str, master: Option<&str>) -> String {
        match RedisStore::open(&settings(url, master), Arc::new(SystemClock)).await {
            Err(StoreError::BadUrl(message)) => message,
            Err(other) => panic!("{url}: expected BadUrl, got {other:?}"),
            Ok(_) => panic!("{url}: expected BadUrl"),
        }
    }

    #[tokio::test]
    async fn malformed_urls_fail_without_showing_the_password() {
        for (url, master) in [
            ("http://u:hunter22@host/", None),
            ("redis://u:hunter22@host/notadb", None),
            ("redis://u:hunter22@:6379/", None),
            ("hunter22", None),
            ("redis+sentinel://u:hunter22@s1:26379/", None),
            ("redis+sentinel://u:hunter22@s1:badport/", Some("mymaster")),
            ("redis+sentinel://u:hunter22@s1/", Some(" ")),
        ] {
            let message = open_error(url, master).await;
            assert!(!message.contains("hunter22"), "{message}");
        }
        open_error("unix:///tmp/redis.sock", None).await;
        open_error("redis+unix:///tmp/redis.sock", None).await;
    }

    #[test]
    fn tls_and_acl_urls_parse() {
        for url in [
            "rediss://cache.example:6380",
            "rediss://alice:pw@cache.example/2",
            "redis://:pw@[::1]:6379/15",
        ] {
            let parsed = parse_url(url, None).unwrap();
            assert!(!parsed.display.contains("pw@"), "{}", parsed.display);
            assert!(matches!(parsed.target, Target::Direct(_)));
        }
        let parsed = parse_url("rediss+sentinel://u:pw@s1,s2:26380/1", Some("mymaster")).unwrap();
        assert!(parsed.target.is_sentinel());
        assert_eq!(parsed.secrets, vec!["pw".to_owned()]);
    }

    #[test]
    fn deployments_on_other_databases_of_one_redis_hear_separate_feeds() {
        let scope = |url: &str, master: Option<&str>| {
            channel_scope(&parse_url(url, master).unwrap().target)
        };
        assert_ne!(
            scope("redis://cache/0", None),
            scope("redis://cache/1", None)
        );
        let staging = scope("redis+sentinel://s1,s2/1", Some("mymaster"));
        let production = scope("redis+sentinel://s1,s2/0", Some("mymaster"));
        assert_ne!(staging, production);
        assert_ne!(production, scope("redis+sentinel://s1,s2/0", Some("other")));
    }

    #[tokio::test]
    async fn opening_succeeds_while_redis_is_unreachable() {
        for (url, master) in [
            ("redis://u:hunter22@127.0.0.1:1/0", None),
            (
                "redis+sentinel://127.0.0.1:1,127.0.0.1:2/",
                Some("mymaster"),
            ),
        ] {
            let store = RedisStore::open(&settings(url, master), Arc::new(SystemClock))
                .await
                .unwrap();
            assert!(!store.is_connected());
            match store.ping().await {
                Err(StoreError::Unavailable(message)) => assert!(!message.contains("hunter22")),
                other => panic!("{url}: expected Unavailable, got {other:?}"),
            }
            assert!(matches!(
                store.get("k").await,
                Err(StoreError::Unavailable(_))
            ));
            let _feed = store.subscribe();
        }
    }

    #[test]
    fn touches_are_debounced_per_device() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime
            .block_on(RedisStore::open(
                &settings("redis://127.0.0.1:1", None),
                Arc::new(SystemClock),
            ))
            .unwrap();
        let minute = Duration::from_secs(60);
        assert!(store.claim_touch("seen-guard:a", minute));
        assert!(!store.claim_touch("seen-guard:a", minute));
        assert!(store.claim_touch("seen-guard:b", minute));
        assert!(store.claim_touch("seen-guard:c", Duration::ZERO));
        assert!(store.claim_touch("seen-guard:c", Duration::ZERO));
    }
}
