//! The store on and off the request path: the revocation check every request makes (a memory
//! lookup), and the Redis round trips of one sign-in step (session read + rate-limit increment)
//! against the local redis-server that `make bench` starts (`CERTGATE_BENCH_REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use certgate_db::{Revocation, RevocationKind};
use certgate_gateway::revocation::RevocationSet;
use certgate_store::{RateLimit, Store, StoreSettings, SystemClock};
use criterion::{criterion_group, criterion_main, Criterion};

fn revocation_check(c: &mut Criterion) {
    let records: Vec<Revocation> = (0..10_000)
        .map(|i| Revocation {
            id: i,
            org: "noord".into(),
            kind: if i % 2 == 0 {
                RevocationKind::Serial
            } else {
                RevocationKind::Device
            },
            subject: format!("{i:032x}"),
            reason: String::new(),
            revoked_at: 0,
            drop_after: i64::MAX,
        })
        .collect();
    let set = RevocationSet::from_records(&records);
    let empty = RevocationSet::default();
    let mut group = c.benchmark_group("revocation_check");
    let serial = format!("{:032x}", 4_000);
    group.bench_function("10000_revoked_serial_hit", |b| {
        b.iter(|| set.is_revoked("noord", "anna", "tablet-1", Some(black_box(&serial)), 0))
    });
    group.bench_function("10000_not_revoked", |b| {
        b.iter(|| set.is_revoked("noord", "anna", "tablet-1", Some(black_box("ffff")), 0))
    });
    group.bench_function("empty_set", |b| {
        b.iter(|| empty.is_revoked("noord", "anna", "tablet-1", Some(black_box("ffff")), 0))
    });
    group.finish();
}

fn sign_in_step_round_trips(c: &mut Criterion) {
    let Ok(url) = std::env::var("CERTGATE_BENCH_REDIS_URL") else {
        eprintln!("CERTGATE_BENCH_REDIS_URL is not set (make bench sets it): skipping the Redis benchmark");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = StoreSettings {
        redis_url: url,
        key_prefix: "bench:".into(),
        sentinel_master: None,
        call_timeout: Duration::from_secs(2),
    };
    let store = runtime.block_on(async {
        let store = Store::open(&settings, Arc::new(SystemClock)).await.unwrap();
        for _ in 0..200 {
            if store.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store
    });
    let session = runtime
        .block_on(store.create_session(&[7u8; 256], Duration::from_secs(600)))
        .unwrap();
    let limit = RateLimit {
        limit: u32::MAX,
        window: Duration::from_secs(900),
    };
    let mut group = c.benchmark_group("redis_sign_in_step");
    group.bench_function("session_read", |b| {
        b.iter(|| runtime.block_on(store.session(&session)).unwrap())
    });
    group.bench_function("rate_limit_increment", |b| {
        b.iter(|| {
            runtime
                .block_on(store.hit("password", "anna|192.0.2.1", limit))
                .unwrap()
        })
    });
    group.bench_function("session_read_and_rate_limit", |b| {
        b.iter(|| {
            runtime.block_on(async {
                store.session(&session).await.unwrap();
                store
                    .hit("password", "anna|192.0.2.1", limit)
                    .await
                    .unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, revocation_check, sign_in_step_round_trips);
criterion_main!(benches);
