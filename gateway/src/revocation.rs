//! The in-memory revocation set every request consults. It is rebuilt from the durable SQL
//! record at start and replaced atomically on each change, so lookups take no lock. The rule it
//! admits by is `certgate_accounts`' [`RevocationSet`], which the lists of credentials share.

use std::sync::Arc;

use arc_swap::ArcSwap;
use certgate_db::Revocation;
use parking_lot::Mutex;

pub use certgate_accounts::{Refusal, RevocationSet, Standing, REVOCATION_RETENTION_SECS};

/// The live set, shared by the proxy, the admin API and the feed.
///
/// A reload from SQL reads a snapshot and then replaces the set; a revocation applied while the
/// snapshot was being read must survive the replacement. Every apply is therefore numbered and
/// kept until a reload that started after it has replaced the set.
#[derive(Debug, Default)]
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    /// Applies not yet covered by a completed reload, with their sequence numbers.
    recent: Mutex<(u64, Vec<(u64, Revocation)>)>,
}

/// Where a reload started: applies after this are re-applied onto its snapshot.
#[derive(Debug, Clone, Copy)]
pub struct ReloadMark(u64);

impl Revocations {
    pub fn new(set: RevocationSet) -> Self {
        Revocations {
            current: ArcSwap::from_pointee(set),
            recent: Mutex::new((0, Vec::new())),
        }
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<RevocationSet>> {
        self.current.load()
    }

    /// Adds one record (after it is in SQL); writers are rare, so copy-on-write is fine.
    pub fn apply(&self, record: &Revocation) {
        let mut recent = self.recent.lock();
        recent.0 += 1;
        let sequence = recent.0;
        recent.1.push((sequence, record.clone()));
        self.current.rcu(|set| {
            let mut next = RevocationSet::clone(set);
            next.apply(record);
            next
        });
    }

    /// Applies those of `records` not yet in force; how many that was.
    pub fn apply_new(&self, records: &[Revocation]) -> usize {
        let current = self.load();
        let new: Vec<&Revocation> = records.iter().filter(|r| !current.covers(r)).collect();
        drop(current);
        for record in &new {
            self.apply(record);
        }
        new.len()
    }

    /// Call before reading the SQL snapshot for [`Revocations::replace_since`].
    pub fn reload_mark(&self) -> ReloadMark {
        ReloadMark(self.recent.lock().0)
    }

    /// Replaces the set with a snapshot read after `mark`, keeping what was applied since.
    pub fn replace_since(&self, mut set: RevocationSet, mark: ReloadMark) {
        let mut recent = self.recent.lock();
        // Applied before the mark means written to SQL before the snapshot was read.
        recent.1.retain(|(sequence, _)| *sequence > mark.0);
        for (_, record) in &recent.1 {
            set.apply(record);
        }
        self.current.store(Arc::new(set));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_db::RevocationKind;

    #[test]
    fn a_revocation_applied_during_a_reload_survives_it() {
        let live = Revocations::default();
        let mark = live.reload_mark();
        // The snapshot is read here, before the new revocation reached SQL…
        let snapshot = RevocationSet::default();
        live.apply(&record(RevocationKind::Serial, "", "0a1b", 10));
        // …and replacing the set with it must not bring the credential back.
        live.replace_since(snapshot, mark);
        assert!(live
            .load()
            .is_revoked("noord", "anna", "d", Some("0a1b"), 0));

        // A later reload whose snapshot includes it lets the log go.
        let mark = live.reload_mark();
        let snapshot =
            RevocationSet::from_records(&[record(RevocationKind::Serial, "", "0a1b", 10)]);
        live.replace_since(snapshot, mark);
        assert!(live.recent.lock().1.is_empty());
        assert!(live
            .load()
            .is_revoked("noord", "anna", "d", Some("0a1b"), 0));
    }

    #[test]
    fn only_new_revocations_are_applied_again() {
        let live = Revocations::default();
        let records = [
            record(RevocationKind::Serial, "", "0a1b", 10),
            record(RevocationKind::Device, "noord", "dev-1", 10),
            record(RevocationKind::Account, "noord", "anna", 100),
        ];
        assert_eq!(live.apply_new(&records), 3);
        assert_eq!(live.apply_new(&records), 0, "already in force");
        let later = record(RevocationKind::Account, "noord", "anna", 200);
        assert_eq!(
            live.apply_new(&[later]),
            1,
            "a later reset of the same account"
        );
        assert!(live.load().is_revoked("noord", "anna", "d", None, 150));
    }

    fn record(kind: RevocationKind, org: &str, subject: &str, at: i64) -> Revocation {
        Revocation {
            id: 1,
            org: org.into(),
            kind,
            subject: subject.into(),
            reason: "test".into(),
            revoked_at: at,
            drop_after: at + REVOCATION_RETENTION_SECS,
        }
    }
}
