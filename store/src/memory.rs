//! The in-memory twin of the Redis backend, for a single instance (and `make demo`): the same
//! operations with the same semantics, TTLs measured on the injected clock, and the change feed
//! inside the process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::{Change, Clock, FeedEvent, StoreError};

/// How long a last-seen time is kept: longer than the longest idle timeout.
const SEEN_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// Expired entries are swept when the map grows past this many since the last sweep.
const SWEEP_EVERY: usize = 4096;

/// TTLs longer than this are treated as this (SystemTime arithmetic must not overflow).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn expiry(now: SystemTime, ttl: Duration) -> SystemTime {
    now + ttl.min(MAX_TTL)
}

struct Entry {
    value: Vec<u8>,
    expires: SystemTime,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    inserts_since_sweep: usize,
}

impl Entries {
    fn live(&mut self, key: &str, now: SystemTime) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| e.expires <= now) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, expires: SystemTime, now: SystemTime) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= SWEEP_EVERY {
            self.map.retain(|_, e| e.expires > now);
            self.inserts_since_sweep = 0;
        }
        self.map.insert(key.to_owned(), Entry { value, expires });
    }
}

pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
    seeded: Mutex<Vec<Change>>,
    feed: broadcast::Sender<FeedEvent>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let (feed, _) = broadcast::channel(1024);
        MemoryStore {
            clock,
            entries: Mutex::new(Entries::default()),
            seeded: Mutex::new(Vec::new()),
            feed,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How many entries the store holds now, expired ones included until they are swept.
    pub fn entry_count(&self) -> usize {
        self.entries.lock().map.len()
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.entries
            .lock()
            .insert(key, value.to_vec(), expiry(now, ttl), now);
        Ok(())
    }

    /// Like [`MemoryStore::put`], unless a live value is there already; whether it was stored.
    pub async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        if entries.live(key, now).is_some() {
            return Ok(false);
        }
        entries.insert(key, value.to_vec(), expiry(now, ttl), now);
        Ok(true)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        Ok(self.entries.lock().live(key, now).map(|e| e.value.clone()))
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        Ok(keys
            .iter()
            .map(|key| entries.live(key, now).map(|e| e.value.clone()))
            .collect())
    }

    pub async fn replace(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        match entries.live(key, now) {
            Some(entry) => {
                entry.value = value.to_vec();
                entry.expires = expiry(now, ttl);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn rename(&self, from: &str, to: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        if entries.live(from, now).is_none() {
            return Ok(false);
        }
        let Some(entry) = entries.map.remove(from) else {
            return Ok(false);
        };
        entries.insert(to, entry.value, expiry(now, ttl), now);
        Ok(true)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.lock().map.remove(key);
        Ok(())
    }

    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        entries.live(key, now);
        Ok(entries.map.remove(key).map(|e| e.value))
    }

    pub async fn increment(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(u64, Duration), StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.live(key, now) {
            let count = parse_count(&entry.value)? + 1;
            entry.value = count.to_string().into_bytes();
            let remaining = entry.expires.duration_since(now).unwrap_or_default();
            return Ok((count, remaining));
        }
        entries.insert(key, b"1".to_vec(), expiry(now, window), now);
        Ok((1, window))
    }

    pub async fn decrement(&self, key: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.live(key, now) {
            let count = parse_count(&entry.value)?.saturating_sub(1);
            entry.value = count.to_string().into_bytes();
        }
        Ok(())
    }

    pub async fn touch(
        &self,
        guard_key: &str,
        seen_key: &str,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock();
        if entries.live(guard_key, now).is_some() {
            return Ok(false);
        }
        entries.insert(guard_key, Vec::new(), expiry(now, interval), now);
        let seconds = self.clock.unix_millis() / 1000;
        entries.insert(
            seen_key,
            seconds.to_string().into_bytes(),
            expiry(now, SEEN_TTL),
            now,
        );
        Ok(true)
    }

    pub async fn publish(&self, change: &Change) -> Result<(), StoreError> {
        // No receiver is not an error: nobody in this process listens yet.
        let _ = self.feed.send(FeedEvent::Change(change.clone()));
        Ok(())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }

    pub async fn seed(&self, changes: &[Change]) -> Result<(), StoreError> {
        *self.seeded.lock() = changes.to_vec();
        Ok(())
    }

    pub async fn seeded(&self) -> Result<Vec<Change>, StoreError> {
        Ok(self.seeded.lock().clone())
    }

    /// The in-process store is always there.
    pub fn is_connected(&self) -> bool {
        true
    }
}

fn parse_count(bytes: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("rate-limit counter".into()))
}
