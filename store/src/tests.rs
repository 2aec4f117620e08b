//! One behavioural suite, run against the in-memory backend and against a real redis-server
//! (`make test` starts one on a free port and names it in `CERTGATE_TEST_REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::*;

/// A clock the memory tests move by hand.
struct ManualClock(Mutex<SystemTime>);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock()
    }
}

/// A store under test and a way to let time pass for it.
struct Harness {
    store: Store,
    manual: Option<Arc<ManualClock>>,
}

impl Harness {
    async fn pass(&self, d: Duration) {
        match &self.manual {
            Some(clock) => *clock.0.lock() += d,
            // Redis measures TTLs on its own clock.
            None => tokio::time::sleep(d).await,
        }
    }
}

fn memory() -> Harness {
    let clock = Arc::new(ManualClock(Mutex::new(SystemTime::now())));
    Harness {
        store: Store::Memory(Arc::new(MemoryStore::new(clock.clone()))),
        manual: Some(clock),
    }
}

fn redis_url() -> String {
    std::env::var("CERTGATE_TEST_REDIS_URL")
        .expect("CERTGATE_TEST_REDIS_URL must name a scratch redis-server (make test starts one)")
}

async fn redis_with_prefix(prefix: &str) -> Store {
    let settings = StoreSettings {
        redis_url: redis_url(),
        key_prefix: prefix.to_owned(),
        sentinel_master: None,
        call_timeout: Duration::from_secs(2),
    };
    let store = Store::open(&settings, Arc::new(SystemClock)).await.unwrap();
    // The connection is made in the background; wait until it answers.
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis at {} did not answer", redis_url());
}

async fn redis() -> Harness {
    // A prefix per test keeps tests apart on the one server.
    let prefix = format!("test-{}:", SessionId::generate().as_str());
    Harness {
        store: redis_with_prefix(&prefix).await,
        manual: None,
    }
}

async fn sessions_rotate_expire_and_delete(h: Harness) {
    let s = &h.store;
    let ttl = Duration::from_millis(400);
    let id = s.create_session(b"step=password", ttl).await.unwrap();
    assert_eq!(
        s.session(&id).await.unwrap().as_deref(),
        Some(&b"step=password"[..])
    );
    assert!(s.update_session(&id, b"step=code", ttl).await.unwrap());

    let rotated = s.rotate_session(&id, ttl).await.unwrap().expect("rotated");
    assert_ne!(rotated, id);
    assert_eq!(s.session(&id).await.unwrap(), None, "the old id is gone");
    assert_eq!(
        s.session(&rotated).await.unwrap().as_deref(),
        Some(&b"step=code"[..])
    );
    assert_eq!(
        s.rotate_session(&id, ttl).await.unwrap(),
        None,
        "an old id cannot be rotated again"
    );
    assert!(!s.update_session(&id, b"x", ttl).await.unwrap());

    h.pass(Duration::from_millis(600)).await;
    assert_eq!(s.session(&rotated).await.unwrap(), None, "expired");

    let other = s.create_session(b"x", ttl).await.unwrap();
    s.delete_session(&other).await.unwrap();
    assert_eq!(s.session(&other).await.unwrap(), None);
}

async fn one_time_values_are_taken_exactly_once(h: Harness) {
    let s = h.store.clone();
    s.put_once("email-code", "anna", b"482913", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        s.peek_once("email-code", "anna").await.unwrap().as_deref(),
        Some(&b"482913"[..]),
        "peeking leaves the value in place"
    );
    let takers: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_once("email-code", "anna").await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for taker in takers {
        if let Some(value) = taker.await.unwrap() {
            assert_eq!(value, b"482913");
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one of 50 racing takers gets the code");

    s.put_once("oidc-state", "abc", b"nonce", Duration::from_millis(300))
        .await
        .unwrap();
    h.pass(Duration::from_millis(500)).await;
    assert_eq!(
        s.take_once("oidc-state", "abc").await.unwrap(),
        None,
        "expired values are gone"
    );

    // A code taken for checking and put back after a wrong guess does not replace one sent
    // meanwhile; with nothing there it is put back.
    let ttl = Duration::from_secs(30);
    s.put_once("code", "bob", b"111111", ttl).await.unwrap();
    let taken = s.take_once("code", "bob").await.unwrap().unwrap();
    s.put_once("code", "bob", b"222222", ttl).await.unwrap();
    assert!(!s.put_once_back("code", "bob", &taken, ttl).await.unwrap());
    assert_eq!(
        s.peek_once("code", "bob").await.unwrap().as_deref(),
        Some(&b"222222"[..])
    );
    let taken = s.take_once("code", "bob").await.unwrap().unwrap();
    assert!(s.put_once_back("code", "bob", &taken, ttl).await.unwrap());
    assert_eq!(
        s.peek_once("code", "bob").await.unwrap().as_deref(),
        Some(&b"222222"[..])
    );
}

async fn rate_limits_count_in_a_window(h: Harness) {
    let s = &h.store;
    let limit = RateLimit {
        limit: 3,
        window: Duration::from_millis(800),
    };
    for n in 1..=3 {
        let d = s.hit("password", "anna|192.0.2.1", limit).await.unwrap();
        assert!(d.allowed, "attempt {n}");
        assert_eq!(d.count, n);
    }
    let refused = s.hit("password", "anna|192.0.2.1", limit).await.unwrap();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after <= limit.window && refused.retry_after > Duration::ZERO,
        "{refused:?}"
    );
    // Another subject has its own counter.
    assert!(
        s.hit("password", "anna|192.0.2.2", limit)
            .await
            .unwrap()
            .allowed
    );

    h.pass(Duration::from_millis(1000)).await;
    let fresh = s.hit("password", "anna|192.0.2.1", limit).await.unwrap();
    assert!(fresh.allowed);
    assert_eq!(fresh.count, 1, "a new window starts");

    // An attempt that turned out fine is taken back; the counter never goes below zero.
    s.unhit("password", "anna|192.0.2.1").await.unwrap();
    s.unhit("password", "anna|192.0.2.1").await.unwrap();
    s.unhit("password", "nobody").await.unwrap();
    let after = s.hit("password", "anna|192.0.2.1", limit).await.unwrap();
    assert_eq!(after.count, 1, "{after:?}");
}

async fn guesses_count_per_address_and_right_ones_are_handed_back(h: Harness) {
    let s = &h.store;
    let limit = RateLimit {
        limit: 2,
        window: Duration::from_secs(60),
    };
    // Right guesses never add up.
    for _ in 0..5 {
        counted(s.guess("token", "192.0.2.1", limit).await)
            .was_right()
            .await;
    }
    // Two wrong ones from one /64; the third, from another address of it, waits.
    for ip in ["2001:db8:1:2::1", "2001:db8:1:2:aaaa::9"] {
        drop(counted(s.guess("token", ip, limit).await));
    }
    let wait = s
        .guess("token", "2001:db8:1:2:ffff::", limit)
        .await
        .err()
        .unwrap();
    assert!(wait > Duration::ZERO && wait <= limit.window, "{wait:?}");
    // The next /64, an IPv4 address and another purpose are counted apart.
    drop(counted(s.guess("token", "2001:db8:1:3::1", limit).await));
    drop(counted(s.guess("token", "192.0.2.1", limit).await));
    drop(counted(s.guess("other", "2001:db8:1:2::1", limit).await));
}

#[test]
fn addresses_count_by_their_subscriber() {
    use crate::address_key;
    assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
    assert_eq!(address_key("2001:db8:a:b:c:d:e:f"), "2001:db8:a:b::/64");
    assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
    assert_eq!(address_key("not an address"), "not an address");
}

/// A guess the store counted and let through.
fn counted(answer: Result<Option<crate::Guess<'_>>, Duration>) -> crate::Guess<'_> {
    match answer {
        Ok(Some(guess)) => guess,
        Ok(None) => panic!("not counted"),
        Err(wait) => panic!("refused for {wait:?}"),
    }
}

async fn last_seen_is_written_at_most_once_a_minute(h: Harness) {
    let s = &h.store;
    assert_eq!(s.last_seen("noord", "tablet-1").await.unwrap(), None);
    assert!(s.touch_device("noord", "tablet-1").await.unwrap());
    for _ in 0..20 {
        assert!(!s.touch_device("noord", "tablet-1").await.unwrap());
    }
    let seen = s
        .last_seen("noord", "tablet-1")
        .await
        .unwrap()
        .expect("written");
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((seen - now).abs() < 5, "{seen} vs {now}");
    assert!(
        s.touch_device("noord", "tablet-2").await.unwrap(),
        "per device"
    );
    assert!(
        s.touch_device("zuid", "tablet-1").await.unwrap(),
        "per organisation"
    );
    // A device list reads them all at once, in the order asked.
    let many = s
        .last_seen_many(&[
            ("noord", "tablet-2"),
            ("noord", "never-seen"),
            ("noord", "tablet-1"),
            ("zuid", "tablet-1"),
        ])
        .await
        .unwrap();
    assert_eq!(many.len(), 4);
    assert_eq!(many[1], None);
    assert_eq!(many[2], Some(seen));
    assert!(many[0].is_some() && many[3].is_some(), "{many:?}");
    assert_eq!(s.last_seen_many(&[]).await.unwrap(), Vec::new());
}

async fn the_change_feed_reaches_subscribers(h: Harness) {
    let s = &h.store;
    let mut feed = s.subscribe();
    if h.manual.is_none() {
        // Redis: the first event says the feed is connected.
        let first = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, FeedEvent::Resync);
    }
    let change = Change::Revocation {
        org: "noord".into(),
        kind: "device".into(),
        subject: "tablet-1".into(),
        revoked_at: 100,
        drop_after: 200,
    };
    s.publish(&change).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, FeedEvent::Change(change.clone()));

    s.seed(&[
        change.clone(),
        Change::AllowList {
            org: "noord".into(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(s.seeded().await.unwrap().len(), 2);
    s.seed(std::slice::from_ref(&change)).await.unwrap();
    assert_eq!(s.seeded().await.unwrap(), vec![change]);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::redis().await).await;
                }
            )*
        }
    };
}

suite!(
    sessions_rotate_expire_and_delete,
    one_time_values_are_taken_exactly_once,
    rate_limits_count_in_a_window,
    guesses_count_per_address_and_right_ones_are_handed_back,
    last_seen_is_written_at_most_once_a_minute,
    the_change_feed_reaches_subscribers,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_with_different_prefixes_do_not_see_each_other() {
    let a = redis_with_prefix(&format!("iso-a-{}:", SessionId::generate().as_str())).await;
    let b = redis_with_prefix(&format!("iso-b-{}:", SessionId::generate().as_str())).await;
    a.put_once("code", "anna", b"1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.take_once("code", "anna").await.unwrap(), None);
    assert!(a.take_once("code", "anna").await.unwrap().is_some());

    let mut feed_b = b.subscribe();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), feed_b.recv())
            .await
            .unwrap()
            .unwrap(),
        FeedEvent::Resync
    );
    a.publish(&Change::AllowList {
        org: "noord".into(),
    })
    .await
    .unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), feed_b.recv()).await;
    assert!(
        nothing.is_err(),
        "b must not receive a's change: {nothing:?}"
    );
}

#[test]
fn session_ids_are_random_and_strictly_shaped() {
    let a = SessionId::generate();
    assert_ne!(a, SessionId::generate());
    assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
    assert_eq!(SessionId::parse("../../etc"), None);
    assert_eq!(SessionId::parse(&a.as_str().to_uppercase()), None);
    assert!(
        !format!("{a:?}").contains(a.as_str()),
        "debug output hides the id"
    );
}

/// A redis-server (or sentinel) process of one test, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_redis(args: &[&str]) -> Server {
    let child = std::process::Command::new("redis-server")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (make test installs it)");
    Server(child)
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

async fn open_and_wait(settings: StoreSettings) -> Store {
    let store = Store::open(&settings, Arc::new(SystemClock)).await.unwrap();
    for _ in 0..150 {
        if store.ping().await.is_ok() {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store did not connect: {:?}", store.ping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_url_finds_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let (master_port, sentinel_port) = (free_port(), free_port());
    let _master = spawn_redis(&[
        "--port",
        &master_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    wait_for_port(master_port).await;
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!("port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor certgate 127.0.0.1 {master_port} 1\n"),
    )
    .unwrap();
    let _sentinel = spawn_redis(&[conf.to_str().unwrap(), "--sentinel"]);
    wait_for_port(sentinel_port).await;

    let store = open_and_wait(StoreSettings {
        redis_url: format!("redis+sentinel://127.0.0.1:{sentinel_port}/"),
        key_prefix: "sentinel-test:".into(),
        sentinel_master: Some("certgate".into()),
        call_timeout: Duration::from_secs(2),
    })
    .await;
    store
        .put_once("code", "anna", b"1", Duration::from_secs(30))
        .await
        .unwrap();
    // The value is on the master the sentinel named.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &master_port.to_string(),
            "EXISTS",
            "sentinel-test:once:code:anna",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(
        store.take_once("code", "anna").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_over_tls_to_a_server_the_system_trusts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca.key"),
        path("ca.pem"),
        path("srv.key"),
        path("srv.csr"),
        path("srv.pem"),
        path("ext"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=test redis CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    let port = free_port();
    let _server = spawn_redis(&[
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--save",
        "",
    ]);
    wait_for_port(port).await;
    // Operators trust a private CA the usual way; rustls-native-certs reads SSL_CERT_FILE.
    // No other test in this binary uses TLS or reads this variable.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let store = open_and_wait(StoreSettings {
        redis_url: format!("rediss://localhost:{port}/0"),
        key_prefix: "tls-test:".into(),
        sentinel_master: None,
        call_timeout: Duration::from_secs(2),
    })
    .await;
    let id = store
        .create_session(b"over tls", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        store.session(&id).await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
}
