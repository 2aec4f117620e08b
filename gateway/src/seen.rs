//! Which devices this instance reported to the store as seen, and when: a device making many
//! requests costs the store one write per [`LAST_SEEN_INTERVAL`], and the request path no task,
//! copy or store call for the others. The store still keeps the interval across instances.

use std::collections::HashMap;
use std::hash::BuildHasher;

use certgate_store::LAST_SEEN_INTERVAL;
use parking_lot::Mutex;

/// Above this many devices the stale entries are dropped; a busy gateway sees far fewer devices
/// within one interval.
const MAX_DEVICES: usize = 100_000;

pub struct RecentlySeen {
    /// Keyed by a keyed hash of (organisation, device): no copies of the strings. A collision
    /// only delays one device's last-seen time by an interval.
    reported: Mutex<HashMap<u64, i64>>,
    hasher: std::collections::hash_map::RandomState,
    interval: i64,
}

impl Default for RecentlySeen {
    fn default() -> Self {
        RecentlySeen {
            reported: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
            interval: LAST_SEEN_INTERVAL.as_secs().try_into().unwrap_or(i64::MAX),
        }
    }
}

impl RecentlySeen {
    /// Whether the device is due to be reported at `now` (unix seconds); if so it counts as
    /// reported from now on.
    pub fn due(&self, org: &str, device: &str, now: i64) -> bool {
        let key = self.hasher.hash_one((org, device));
        let mut reported = self.reported.lock();
        if reported
            .get(&key)
            .is_some_and(|at| now.saturating_sub(*at) < self.interval)
        {
            return false;
        }
        if reported.len() >= MAX_DEVICES {
            reported.retain(|_, at| now.saturating_sub(*at) < self.interval);
            if reported.len() >= MAX_DEVICES {
                reported.clear();
            }
        }
        reported.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_due_once_per_interval_and_devices_apart() {
        let seen = RecentlySeen::default();
        let t = 1_700_000_000;
        assert!(seen.due("noord", "tablet-1", t));
        assert!(!seen.due("noord", "tablet-1", t + 1));
        assert!(!seen.due("noord", "tablet-1", t + 59));
        assert!(seen.due("noord", "tablet-2", t + 1));
        assert!(seen.due("zuid", "tablet-1", t + 1));
        assert!(seen.due("noord", "tablet-1", t + 60));
        assert!(!seen.due("noord", "tablet-1", t + 61));
    }

    #[test]
    fn many_devices_do_not_grow_the_table_without_bound() {
        let seen = RecentlySeen::default();
        let t = 1_700_000_000;
        for i in 0..MAX_DEVICES + 10 {
            assert!(seen.due(
                "noord",
                &format!("d{i}"),
                t + 120 * (i / MAX_DEVICES) as i64
            ));
        }
        assert!(seen.reported.lock().len() <= MAX_DEVICES);
        // The one reported last is still remembered.
        assert!(!seen.due("noord", &format!("d{}", MAX_DEVICES + 9), t + 121));
    }
}
