//! Policies and server certificates change without a restart: file edits are picked up within
//! two seconds, SIGHUP reloads, and a broken file keeps the previous set and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use certgate_e2e::{certgate_ok, served_certificate_serial, settles, Deployment, Org};

const HOST: &str = "noord.test";

fn deployment() -> Deployment {
    let mut noord = Org::new("noord", HOST);
    noord.allowlist_file = Some("noord.allowlist".into());
    let d = Deployment::new(&[noord]);
    std::fs::write(d.path("policies/noord.allowlist"), "# office\n127.0.0.2\n").unwrap();
    d
}

fn status_from(d: &Deployment, source: &str) -> u16 {
    d.curl(HOST, "127.0.0.1", "/", &["--interface", source])
        .status
}

#[test]
fn an_address_added_to_an_allow_list_file_is_admitted_within_two_seconds() {
    let mut d = deployment();
    d.start();
    assert_eq!(status_from(&d, "127.0.0.2"), 200);
    assert_eq!(status_from(&d, "127.0.0.3"), 401);

    std::fs::write(
        d.path("policies/noord.allowlist"),
        "# office\n127.0.0.2\n127.0.0.3  # new wing\n",
    )
    .unwrap();
    assert!(settles(|| status_from(&d, "127.0.0.3") == 200));
    let explain = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        &d.config(),
        "--host",
        HOST,
        "--ip",
        "127.0.0.3",
    ]);
    assert!(
        explain.contains("admitted: allow_ips_files noord.allowlist:3 127.0.0.3/32"),
        "{explain}"
    );

    // A broken file keeps the previous policies and counts the error.
    let errors_before = d.metric("certgate_policy_reloads_total{result=\"error\"}");
    std::fs::write(
        d.path("policies/noord.allowlist"),
        "127.0.0.2\n10.0.0.300\n",
    )
    .unwrap();
    assert!(settles(|| {
        d.metric("certgate_policy_reloads_total{result=\"error\"}") > errors_before
    }));
    assert_eq!(
        status_from(&d, "127.0.0.3"),
        200,
        "the previous policy stays in force"
    );
    assert!(
        d.gateway().log_text().contains("10.0.0.300"),
        "the log names the bad entry"
    );
    // What the "policy reload failing" alert watches, until a good file is back.
    assert_eq!(d.metric("certgate_policy_last_reload_success"), 0.0);
    std::fs::write(
        d.path("policies/noord.allowlist"),
        "127.0.0.2
",
    )
    .unwrap();
    assert!(settles(
        || d.metric("certgate_policy_last_reload_success") == 1.0
    ));
}

#[test]
fn sighup_reloads() {
    let mut d = deployment();
    d.start();
    let ok_before = d.metric("certgate_policy_reloads_total{result=\"ok\"}");
    d.gateway().signal(nix::sys::signal::Signal::SIGHUP);
    assert!(settles(|| {
        d.metric("certgate_policy_reloads_total{result=\"ok\"}") > ok_before
    }));
    assert_eq!(
        status_from(&d, "127.0.0.2"),
        200,
        "still serving after SIGHUP"
    );
}

#[test]
fn server_certificates_are_chosen_by_sni_and_replaced_without_a_restart() {
    let noord = Org::new("noord", HOST);
    let zuid = Org::new("zuid", "zuid.test");
    let mut d = Deployment::new(&[noord, zuid]);
    let ca = d.path("ca");
    let ca = ca.to_str().unwrap();
    let zuid_out = d.path("tls/zuid");
    certgate_ok(&[
        "ca",
        "issue-server",
        "--dir",
        ca,
        "--dns",
        "zuid.test",
        "--out",
        zuid_out.to_str().unwrap(),
    ]);
    d.extra_server_config = String::new();
    d.write_config();
    let config = std::fs::read_to_string(d.path("certgate.toml")).unwrap();
    std::fs::write(
        d.path("certgate.toml"),
        format!("{config}\n[[server.certificates]]\nhosts = [\"zuid.test\"]\ncert = \"tls/zuid.pem\"\nkey = \"tls/zuid.key\"\n"),
    )
    .unwrap();
    d.start();

    let noord_serial = served_certificate_serial(d.https, HOST);
    let zuid_serial = served_certificate_serial(d.https, "zuid.test");
    assert!(!noord_serial.is_empty() && !zuid_serial.is_empty());
    assert_ne!(
        noord_serial, zuid_serial,
        "each host gets its own certificate"
    );

    // Replace zuid's certificate on disk: new connections get the new one.
    let next = d.path("tls/zuid-next");
    let out = certgate_ok(&[
        "ca",
        "issue-server",
        "--dir",
        ca,
        "--dns",
        "zuid.test",
        "--out",
        next.to_str().unwrap(),
    ]);
    let new_serial = out
        .split("serial ")
        .nth(1)
        .unwrap()
        .trim_end_matches([')', '\n'])
        .to_owned();
    std::fs::rename(d.path("tls/zuid-next.key"), d.path("tls/zuid.key")).unwrap();
    std::fs::rename(d.path("tls/zuid-next.pem"), d.path("tls/zuid.pem")).unwrap();
    let normalise = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    assert!(
        settles(
            || normalise(&served_certificate_serial(d.https, "zuid.test"))
                == normalise(&new_serial)
        ),
        "the replaced certificate is served without a restart"
    );
    assert_eq!(served_certificate_serial(d.https, HOST), noord_serial);
}
