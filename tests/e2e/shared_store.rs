//! Several gateways sharing one Redis (and one SQLite file): a revocation reaches every one of
//! them within a second, a Redis outage does not stop admissions, and nothing is lost when Redis
//! comes back empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certgate_e2e::{
    certgate_ok, eventually, http_get, metric_at, settles, ClientCert, Deployment, Instance, Org,
    RedisServer,
};

const HOST: &str = "noord.test";

/// A deployment whose two instances share `redis` and one SQLite database file.
fn two_instances(redis: &RedisServer) -> (Deployment, Instance) {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    let db = d.path("shared.db");
    d.extra_sections = format!(
        "[store]\nredis_url = \"{}\"\nkey_prefix = \"e2e:\"\n\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
        redis.url(),
        db.display()
    );
    d.write_config();
    let mut second = d.add_instance("second");
    d.start();
    second.start();
    (d, second)
}

fn status(d: &Deployment, https: u16, cert: &ClientCert) -> u16 {
    d.status_with_cert(https, HOST, cert)
}

/// Waits until both instances refuse `cert`; returns how long that took.
fn until_both_refuse(
    d: &Deployment,
    second: &Instance,
    cert: &ClientCert,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    eventually(within, || {
        status(d, d.https, cert) == 401 && status(d, second.https, cert) == 401
    })
    .then(|| started.elapsed())
}

fn revoke_serial(config: &str, cert: &ClientCert) {
    certgate_ok(&[
        "device",
        "revoke",
        "--config",
        config,
        "--serial",
        &cert.serial,
    ]);
}

#[test]
fn a_revocation_at_one_instance_reaches_the_other() {
    let redis = RedisServer::start();
    let (d, second) = two_instances(&redis);
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    assert_eq!(status(&d, d.https, &anna), 200);
    assert_eq!(status(&d, second.https, &anna), 200);

    revoke_serial(&d.config(), &anna);
    let latency = until_both_refuse(&d, &second, &anna, certgate_e2e::SETTLE);
    println!("revocation seen by both instances after {latency:?}");
    assert!(latency.is_some(), "both instances refuse");
}

#[test]
fn a_redis_outage_keeps_admitting_and_nothing_is_lost_when_it_returns_empty() {
    let mut redis = RedisServer::start();
    let (d, second) = two_instances(&redis);
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let bob = d.issue_client("noord", "bob@noord.test", "1h");
    let carol = d.issue_client("noord", "carol@noord.test", "1h");
    revoke_serial(&d.config(), &bob);
    assert!(until_both_refuse(&d, &second, &bob, certgate_e2e::SETTLE).is_some());

    // Traffic flows while Redis dies: some before, twenty after.
    let sent = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let traffic = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let mut failed = 0;
            while !stop.load(Ordering::SeqCst) {
                for https in [d.https, second.https] {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if status(&d, https, &anna) != 200 {
                        failed += 1;
                    }
                }
            }
            (sent.load(Ordering::SeqCst), failed)
        });
        assert!(certgate_e2e::settles(|| sent.load(Ordering::SeqCst) >= 10));
        redis.kill();
        let at_kill = sent.load(Ordering::SeqCst);
        assert!(certgate_e2e::settles(
            || sent.load(Ordering::SeqCst) >= at_kill + 20
        ));
        stop.store(true, Ordering::SeqCst);
        worker.join().unwrap()
    });
    println!(
        "requests during the outage: {} sent, {} failed",
        traffic.0, traffic.1
    );
    assert!(traffic.0 > 10);
    assert_eq!(
        traffic.1, 0,
        "no admitted request fails while Redis is down"
    );

    for admin in [d.admin, second.admin] {
        assert!(
            eventually(
                certgate_e2e::SETTLE,
                || matches!(http_get(admin, "/readyz"), Some((200, body)) if body.contains("degraded"))
            ),
            "/readyz stays 200 and says degraded"
        );
        assert!(settles(|| metric_at(
            admin,
            "certgate_store_errors_total{backend=\"redis\"}"
        ) > 0.0));
    }
    assert_eq!(
        status(&d, second.https, &bob),
        401,
        "revocations stay in force"
    );

    // A revocation made while the store is down reaches the instance that made it at once,
    // and the other from SQL, which it reads every second while it has no feed (it used to
    // wait for the once-a-minute resync).
    revoke_serial(&d.config(), &carol);
    assert_eq!(status(&d, d.https, &carol), 401);
    assert!(
        until_both_refuse(&d, &second, &carol, certgate_e2e::SETTLE).is_some(),
        "the revocation made during the outage reaches the other instance without the feed"
    );
    // Nothing is lost when Redis comes back empty.
    redis.restart();
    let started = Instant::now();
    assert!(
        settles(|| status(&d, second.https, &carol) == 401),
        "the revocation made during the outage stays in force after the reconnect"
    );
    println!("reconnect and resync after {:?}", started.elapsed());
    assert_eq!(
        status(&d, second.https, &bob),
        401,
        "earlier revocations are still enforced"
    );
    assert_eq!(status(&d, second.https, &anna), 200);
    for admin in [d.admin, second.admin] {
        assert!(eventually(
            certgate_e2e::SETTLE,
            || matches!(http_get(admin, "/readyz"), Some((200, body)) if body.starts_with("ready"))
        ));
    }

    // And the feed works again.
    let dave = d.issue_client("noord", "dave@noord.test", "1h");
    assert_eq!(status(&d, second.https, &dave), 200);
    revoke_serial(&d.config(), &dave);
    assert!(until_both_refuse(&d, &second, &dave, certgate_e2e::SETTLE).is_some());
}
