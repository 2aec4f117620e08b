//! Connections a credential upgraded (WebSockets and other `101 Switching Protocols`) outlive
//! the request that was checked: the gateway keeps what admitted each and closes it within a
//! moment of its credential being revoked or running out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;

use parking_lot::Mutex;

use crate::revocation::RevocationSet;

/// What admitted an upgraded connection.
#[derive(Debug, Clone)]
pub struct Validity {
    pub org: String,
    pub account: String,
    pub device: String,
    /// A device certificate's serial (lowercase hex); `None` for a browser credential.
    pub serial: Option<String>,
    pub issued_at: i64,
    pub not_after: i64,
}

impl Validity {
    /// Whether the credential still admits at `now`.
    pub fn holds(&self, revocations: &RevocationSet, now: i64) -> bool {
        now < self.not_after
            && !revocations.is_revoked(
                &self.org,
                &self.account,
                &self.device,
                self.serial.as_deref(),
                self.issued_at,
            )
    }
}

/// Tells a connection to close; the stream under it checks it on every read and write.
#[derive(Debug, Default)]
pub struct Cut {
    cut: AtomicBool,
    /// The task reading the connection, woken when it is cut.
    reader: Mutex<Option<Waker>>,
}

impl Cut {
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    /// Remembers the task to wake when the connection is cut.
    pub fn wake_on_cut(&self, waker: &Waker) {
        let mut reader = self.reader.lock();
        if !reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        if let Some(waker) = self.reader.lock().take() {
            waker.wake();
        }
    }
}

/// The upgraded connections open on this instance.
#[derive(Debug, Default)]
pub struct UpgradedConnections {
    open: Mutex<Vec<(Validity, Weak<Cut>)>>,
}

impl UpgradedConnections {
    /// Watches a connection that `validity` upgraded; the stream holds the returned signal.
    pub fn watch(&self, validity: Validity) -> Arc<Cut> {
        let cut = Arc::new(Cut::default());
        self.open.lock().push((validity, Arc::downgrade(&cut)));
        cut
    }

    /// Cuts the connections whose credential no longer holds, and forgets closed ones; how
    /// many were cut.
    pub fn sweep(&self, revocations: &RevocationSet, now: i64) -> usize {
        let mut cut = 0;
        self.open.lock().retain(|(validity, signal)| {
            let Some(signal) = signal.upgrade() else {
                return false;
            };
            if validity.holds(revocations, now) {
                return true;
            }
            signal.cut();
            cut += 1;
            false
        });
        cut
    }

    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_db::{Revocation, RevocationKind};

    fn validity(serial: Option<&str>) -> Validity {
        Validity {
            org: "noord".into(),
            account: "anna".into(),
            device: "dev-1".into(),
            serial: serial.map(str::to_owned),
            issued_at: 100,
            not_after: 1_000,
        }
    }

    fn revoked(kind: RevocationKind, subject: &str) -> RevocationSet {
        RevocationSet::from_records(&[Revocation {
            id: 1,
            org: "noord".into(),
            kind,
            subject: subject.into(),
            reason: String::new(),
            revoked_at: 200,
            drop_after: 10_000,
        }])
    }

    #[test]
    fn revoked_and_expired_connections_are_cut_and_others_kept() {
        let open = UpgradedConnections::default();
        let by_serial = open.watch(validity(Some("0a1b")));
        let by_browser = open.watch(validity(None));
        let none = RevocationSet::default();
        assert_eq!(open.sweep(&none, 500), 0);
        assert_eq!(open.sweep(&revoked(RevocationKind::Serial, "0a1b"), 500), 1);
        assert!(by_serial.is_cut() && !by_browser.is_cut());
        assert_eq!(open.sweep(&none, 1_000), 1, "the credential ran out");
        assert!(by_browser.is_cut());
        assert!(open.is_empty());

        let account = open.watch(validity(None));
        assert_eq!(
            open.sweep(&revoked(RevocationKind::Account, "anna"), 500),
            1
        );
        assert!(account.is_cut());

        let closed = open.watch(validity(None));
        drop(closed);
        assert_eq!(
            open.sweep(&revoked(RevocationKind::Device, "dev-1"), 500),
            0
        );
        assert!(open.is_empty(), "closed connections are forgotten");
    }
}
