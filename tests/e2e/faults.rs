//! Faults an operator meets at start and in operation, with the real `certgate serve`: an
//! instance that cannot do its job must say so and stop, never report ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use certgate_e2e::{eventually, http_get, settles, Deployment, Org, Process};

const HOST: &str = "noord.test";

/// Starts `serve` on `d` and waits for it to end by itself; its exit status and log. `/readyz`
/// must never have said 200 meanwhile.
fn serve_until_it_gives_up(d: &Deployment) -> (std::process::ExitStatus, String) {
    let config = d.config();
    let mut gateway = Process::spawn(&["serve", "--config", &config], d.path("gateway.log"));
    let mut status = None;
    let ended = eventually(Duration::from_secs(20), || {
        assert!(
            !matches!(http_get(d.admin, "/readyz"), Some((200, _))),
            "ready while it cannot serve:\n{}",
            gateway.log_text()
        );
        status = gateway.exited();
        status.is_some()
    });
    assert!(ended, "still running:\n{}", gateway.log_text());
    (status.unwrap(), gateway.log_text())
}

/// The measured fault: Pingora retried the taken port for 30 s while `/readyz` said 200, then
/// its thread panicked and the process lived on, answering 200.
#[test]
fn a_taken_https_port_stops_serve_with_the_reason() {
    let d = Deployment::new(&[Org::new("noord", HOST)]);
    let _squatter = std::net::TcpListener::bind(("::", d.https)).unwrap();
    let (status, log) = serve_until_it_gives_up(&d);
    assert!(!status.success());
    assert!(log.contains("server.https_listen"), "{log}");
    assert!(log.contains("already in use"), "{log}");
}

#[test]
fn a_taken_admin_or_portal_port_stops_serve_with_the_reason() {
    let d = Deployment::new(&[Org::new("noord", HOST)]);
    {
        let _squatter = std::net::TcpListener::bind(("127.0.0.1", d.admin)).unwrap();
        let config = d.config();
        let mut gateway = Process::spawn(&["serve", "--config", &config], d.path("a.log"));
        assert!(eventually(Duration::from_secs(20), || gateway
            .exited()
            .is_some()));
        assert!(!gateway.exited().unwrap().success());
        let log = gateway.log_text();
        assert!(log.contains("server.admin_listen"), "{log}");
    }
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", d.portal)).unwrap();
    let (status, log) = serve_until_it_gives_up(&d);
    assert!(!status.success());
    assert!(log.contains("portal.listen"), "{log}");
}

/// Without its admin socket nobody can revoke during an incident: `serve` does not run.
#[test]
fn an_admin_socket_that_cannot_be_made_stops_serve_with_the_reason() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    std::fs::write(d.path("a-file"), "").unwrap();
    for (socket, reason) in [
        ("missing-dir/admin.sock", "does not exist"),
        ("a-file/admin.sock", "Not a directory"),
        // Nobody may create files here, not even root.
        ("/proc/certgate-admin.sock", ""),
    ] {
        d.extra_server_config = format!("admin_socket = \"{socket}\"");
        d.write_config();
        // The deployment's config names admin_socket itself; the later key must win, so
        // write it without the default line.
        let text = std::fs::read_to_string(d.path("certgate.toml"))
            .unwrap()
            .replace("admin_socket = \"data/admin.sock\"\n", "");
        std::fs::write(d.path("certgate.toml"), text).unwrap();
        let (status, log) = serve_until_it_gives_up(&d);
        assert!(!status.success(), "{socket}");
        assert!(log.contains("server.admin_socket"), "{socket}: {log}");
        assert!(log.contains(reason), "{socket}: {log}");
    }
}

/// The measured faults: the grace was one second short (`1s` cut requests at once), and an idle
/// instance still waited out the whole grace period after SIGTERM.
#[test]
fn sigterm_lets_requests_in_flight_finish_and_an_idle_instance_exits_at_once() {
    // An application that takes 1.5 s to answer, longer than the grace minus one second.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = certgate_e2e::StubServer::start({
        let received = std::sync::Arc::clone(&received);
        move |_| {
            received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1500));
            certgate_e2e::HttpReply::new(200, "slept")
        }
    });
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    noord.upstreams = vec![upstream.base_url()];
    // The deployment's shutdown_grace is 2s.
    let mut d = Deployment::new(&[noord]);
    assert!(std::fs::read_to_string(d.path("certgate.toml"))
        .unwrap()
        .contains("shutdown_grace = \"2s\""));
    d.start();

    std::thread::scope(|scope| {
        let request = scope.spawn(|| d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]));
        assert!(eventually(Duration::from_secs(10), || received
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1));
        d.gateway().signal(nix::sys::signal::Signal::SIGTERM);
        // The balancer hears it at once; new connections are not served.
        let admin = d.admin;
        assert!(settles(|| matches!(
            http_get(admin, "/readyz"),
            Some((503, _))
        )));
        let late = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]);
        assert_ne!(late.status, 200, "{late:?}");
        // The request in flight, longer than grace minus one second, gets its answer.
        let answer = request.join().unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, "slept");
    });
    assert!(d.stop_gateway(Duration::from_secs(5)));

    // Idle, with a long grace: it exits at once rather than waiting it out.
    let text = std::fs::read_to_string(d.path("certgate.toml"))
        .unwrap()
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"60s\"");
    std::fs::write(d.path("certgate.toml"), text).unwrap();
    d.start();
    let mut gateway = d.gateway.take().unwrap();
    gateway.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        eventually(Duration::from_secs(15), || gateway.exited().is_some()),
        "still running long after SIGTERM with nothing in flight"
    );
    assert!(gateway.exited().unwrap().success());
}

/// The measured faults: with PostgreSQL refusing, `/readyz` said `ready`, `device revoke` said
/// "internal error; see the server log" (not that nothing was revoked), and the start-up error
/// did not name the host and port.
#[test]
fn a_database_outage_is_visible_and_says_that_nothing_was_changed() {
    let url = certgate_e2e::throwaway_postgres_database();
    let (server, database) = url.rsplit_once('/').unwrap();
    let port: u16 = server.rsplit_once(':').unwrap().1.parse().unwrap();
    let relay = certgate_e2e::TcpRelay::start(port);
    let relayed = format!("postgres://postgres@127.0.0.1:{}/{database}", relay.port);
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    let mut d = Deployment::new(&[noord]);
    d.extra_sections = format!("[database]\nurl = \"{relayed}\"\n");
    d.write_config();
    d.start();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    assert!(matches!(http_get(d.admin, "/readyz"), Some((200, body)) if body == "ready\n"));

    relay.cut();
    let admin = d.admin;
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            http_get(admin, "/readyz"),
            Some((200, body)) if body.contains("degraded") && body.contains("database is unreachable")
        )),
        "{:?}",
        http_get(admin, "/readyz")
    );
    assert_eq!(d.metric("certgate_database_up"), 0.0);
    // Admission goes on.
    assert_eq!(d.status_with_cert(d.https, HOST, &anna), 200);
    let out = d.revoke_serial(&anna);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("database is unreachable") && said.contains("nothing was changed"),
        "{said}"
    );

    relay.restore();
    assert!(eventually(Duration::from_secs(10), || matches!(
        http_get(admin, "/readyz"),
        Some((200, body)) if body == "ready\n"
    )));
    assert_eq!(d.metric("certgate_database_up"), 1.0);
    assert_eq!(
        d.status_with_cert(d.https, HOST, &anna),
        200,
        "nothing was revoked"
    );
    assert!(d.stop_gateway(Duration::from_secs(5)));

    // At start, the error names where the database was expected, never its password.
    relay.cut();
    let secret = format!(
        "postgres://postgres:s3cret@127.0.0.1:{}/{database}",
        relay.port
    );
    d.extra_sections = format!("[database]\nurl = \"{secret}\"\n");
    d.write_config();
    let (status, log) = serve_until_it_gives_up(&d);
    assert!(!status.success());
    assert!(
        log.contains(&format!("127.0.0.1:{}/{database}", relay.port)),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "{log}");
}

/// A data directory that cannot be made or written stops `serve` and names `data.dir` (it said
/// "certificate authority: cannot create data/credential.tmp-…").
#[test]
fn a_data_directory_that_cannot_be_written_stops_serve_and_says_so() {
    let d = Deployment::new(&[Org::new("noord", HOST)]);
    // Nobody may create anything under /proc, not even root.
    d.write_config_for(
        "certgate.toml",
        d.https,
        d.admin,
        d.portal,
        "/proc/certgate-data",
    );
    let (status, log) = serve_until_it_gives_up(&d);
    assert!(!status.success());
    assert!(log.contains("data.dir /proc/certgate-data"), "{log}");
    assert!(!log.contains("tmp-"), "{log}");
}
