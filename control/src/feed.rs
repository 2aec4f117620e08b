//! Keeps this instance's revocation set and the organisation admins' allow lists in step with
//! every other instance: changes arrive on the store's feed within a second (a revocation
//! itself; for an allow list, which organisation's to reload from SQL); after every (re)connect,
//! and once a minute as a safety net for a publish that failed, both are reloaded in full from
//! SQL (the durable record) and the revocations re-seeded into the store. While the store is
//! unreachable, recent revocations are read from SQL every second instead. A store outage never
//! touches the request path: the last known state stays in force.

use std::sync::Arc;
use std::time::Duration;

use certgate_db::{Database, Revocation, RevocationKind};
use certgate_store::{Change, FeedEvent, Store};
use tokio::sync::broadcast::error::RecvError;

use certgate_gateway::admin_allowlist::{self, AdminAllowLists};
use certgate_gateway::metrics::Metrics;
use certgate_gateway::revocation::{RevocationSet, Revocations};

use crate::admin::AdminState;

const RESYNC_EVERY: Duration = Duration::from_secs(60);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The feed message for a recorded revocation.
pub fn change_of(record: &Revocation) -> Change {
    Change::Revocation {
        org: record.org.clone(),
        kind: record.kind.as_str().to_owned(),
        subject: record.subject.clone(),
        revoked_at: record.revoked_at,
        drop_after: record.drop_after,
    }
}

fn revocation_of(change: &Change) -> Option<Revocation> {
    match change {
        Change::Revocation {
            org,
            kind,
            subject,
            revoked_at,
            drop_after,
        } => Some(Revocation {
            id: 0,
            org: org.clone(),
            kind: RevocationKind::from_name(kind)?,
            subject: subject.clone(),
            reason: String::new(),
            revoked_at: *revoked_at,
            drop_after: *drop_after,
        }),
        Change::AllowList { .. } => None,
    }
}

/// How long a reload from SQL may take before it is abandoned (the feed goes on meanwhile at
/// the next turn of the loop).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies the feed to `state`'s revocations and allow lists until the store's feed closes.
pub async fn follow(store: Store, database: Database, state: Arc<AdminState>) {
    let (revocations, allow_lists, metrics) = (
        &*state.revocations,
        Arc::clone(&state.admin_allow),
        &*state.metrics,
    );
    let mut feed = store.subscribe();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let backend = store.backend_name();
    let mut store_up = true;
    // A seed that failed (Redis still coming back) is retried once the store answers.
    let mut seed_pending = false;
    loop {
        tokio::select! {
            event = feed.recv() => match event {
                Ok(FeedEvent::Change(Change::AllowList { org })) => {
                    // Off the loop, so a slow database never holds up revocations; versions
                    // keep reloads that finish out of order from going backwards.
                    let (database, allow_lists) = (database.clone(), Arc::clone(&allow_lists));
                    tokio::spawn(async move {
                        let reload = admin_allowlist::reload_one(&database, &allow_lists, &org);
                        if tokio::time::timeout(RELOAD_TIMEOUT, reload).await.is_err() {
                            tracing::error!(%org, "reloading an admin allow list timed out; the next resync retries");
                        }
                    });
                }
                Ok(FeedEvent::Change(change)) => {
                    if let Some(record) = revocation_of(&change) {
                        revocations.apply(&record);
                        // `revoked_at` is whole seconds: the lag reads up to a second long.
                        let now = state.clock.unix_millis() as f64 / 1000.0;
                        metrics
                            .revocation_feed_lag
                            .observe((now - record.revoked_at as f64).max(0.0));
                    }
                }
                Ok(FeedEvent::Resync) | Err(RecvError::Lagged(_)) => {
                    seed_pending = !reload(&store, &database, revocations, metrics, state.now()).await;
                    reload_allow_lists(&database, &allow_lists).await;
                }
                Err(RecvError::Closed) => return,
            },
            _ = resync.tick() => {
                seed_pending = !reload(&store, &database, revocations, metrics, state.now()).await;
                reload_allow_lists(&database, &allow_lists).await;
            }
            _ = probe.tick() => {
                let started = std::time::Instant::now();
                let up = store.ping().await.is_ok();
                if up {
                    metrics.store_ping.set(started.elapsed().as_secs_f64());
                } else {
                    metrics.store_errors.with_label_values(&[backend]).inc();
                }
                metrics.store_up.set(if up { 1.0 } else { 0.0 });
                if up != store_up {
                    if up {
                        tracing::info!("shared store reachable again");
                    } else {
                        tracing::warn!("shared store unreachable; admitting with the last known revocations");
                    }
                    store_up = up;
                }
                if up && seed_pending {
                    seed_pending = !reload(&store, &database, revocations, metrics, state.now()).await;
                }
                if !up {
                    // No feed: what other instances revoke reaches this one from SQL, within
                    // the second the feed would have taken.
                    poll_recent(&database, revocations, state.now()).await;
                }
            }
        }
    }
}

/// How far back a poll of SQL looks: long enough for clocks of instances that differ a little
/// and for a poll that was late.
const POLL_WINDOW_SECS: i64 = 120;

/// Applies the revocations recorded lately that this instance does not have yet.
async fn poll_recent(database: &Database, revocations: &Revocations, now: i64) {
    let recent = database.recent_revocations(now - POLL_WINDOW_SECS, now);
    match tokio::time::timeout(PROBE_EVERY, recent).await {
        Ok(Ok(records)) => {
            let applied = revocations.apply_new(&records);
            if applied > 0 {
                tracing::info!(
                    applied,
                    "revocations read from the database while the shared store is unreachable"
                );
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot read recent revocations from the database")
        }
        Err(_) => tracing::warn!("reading recent revocations from the database timed out"),
    }
}

/// Installs every organisation's admin allow list from SQL (those not older than in force).
async fn reload_allow_lists(database: &Database, allow_lists: &AdminAllowLists) {
    match tokio::time::timeout(RELOAD_TIMEOUT, admin_allowlist::load_layers(database)).await {
        Ok(Ok(layers)) => allow_lists.install_all(layers),
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot reload the admin allow lists from the database; keeping the current ones");
        }
        Err(_) => tracing::error!(
            "reloading the admin allow lists from the database timed out; keeping the current ones"
        ),
    }
}

/// Replaces the revocation set with SQL's and re-seeds the store with it; false when the seed
/// (or the reload) did not happen.
async fn reload(
    store: &Store,
    database: &Database,
    revocations: &Revocations,
    metrics: &Metrics,
    now: i64,
) -> bool {
    let mark = revocations.reload_mark();
    let records = match tokio::time::timeout(RELOAD_TIMEOUT, database.live_revocations(now)).await {
        Ok(Ok(records)) => records,
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot reload revocations from the database; keeping the current set");
            return false;
        }
        Err(_) => {
            tracing::error!(
                "reloading revocations from the database timed out; keeping the current set"
            );
            return false;
        }
    };
    revocations.replace_since(RevocationSet::from_records(&records), mark);
    let changes: Vec<Change> = records.iter().map(change_of).collect();
    match store.seed(&changes).await {
        Ok(()) => true,
        Err(error) => {
            metrics
                .store_errors
                .with_label_values(&[store.backend_name()])
                .inc();
            tracing::warn!(%error, "cannot re-seed the shared store yet");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn changes_round_trip_revocations() {
        let record = Revocation {
            id: 0,
            org: "noord".into(),
            kind: RevocationKind::Account,
            subject: "anna".into(),
            reason: String::new(),
            revoked_at: 10,
            drop_after: 20,
        };
        assert_eq!(revocation_of(&change_of(&record)).unwrap(), record);
        assert!(revocation_of(&Change::AllowList {
            org: "noord".into()
        })
        .is_none());
    }
}
