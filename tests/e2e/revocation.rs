//! Revocation through the CLI against a running instance: refused within a second, and still
//! refused after a restart, because the record is in SQL before it takes effect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use certgate_e2e::{certgate, certgate_ok, settles, Deployment, Org};

const HOST: &str = "noord.test";

#[test]
fn a_revoked_certificate_is_refused_at_once_and_after_a_restart() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    d.start();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let bob = d.issue_client("noord", "bob@noord.test", "1h");
    let status =
        |d: &Deployment, c: &certgate_e2e::ClientCert| d.status_with_cert(d.https, HOST, c);
    assert_eq!(status(&d, &anna), 200);

    // The serial as openssl prints it: upper case with colons.
    let even = if anna.serial.len() % 2 == 1 {
        format!("0{}", anna.serial)
    } else {
        anna.serial.clone()
    };
    let pretty = even
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let out = certgate_ok(&[
        "device",
        "revoke",
        "--config",
        &d.config(),
        "--serial",
        &pretty,
        "--reason",
        "lost laptop",
    ]);
    assert!(out.contains("revoked serial"), "{out}");
    assert!(settles(|| status(&d, &anna) == 401));
    assert_eq!(status(&d, &bob), 200, "other devices are unaffected");

    // A whole account: every credential issued until now.
    certgate_ok(&[
        "device",
        "revoke",
        "--config",
        &d.config(),
        "--org",
        "noord",
        "--user",
        "bob@noord.test",
    ]);
    assert!(settles(|| status(&d, &bob) == 401));

    // Bad input is refused with a clear message and changes nothing.
    let bad = certgate(&[
        "device",
        "revoke",
        "--config",
        &d.config(),
        "--serial",
        "not-hex",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a certificate serial"));

    // A restart (how SIGTERM drains is tested in faults.rs) brings nothing back.
    assert!(d.stop_gateway(Duration::from_secs(5)), "stops on SIGTERM");
    d.start();
    assert_eq!(status(&d, &anna), 401, "still revoked after a restart");
    assert_eq!(status(&d, &bob), 401, "still revoked after a restart");
    let list = certgate_ok(&["device", "revocations", "--config", &d.config()]);
    assert!(
        list.contains("lost laptop") && list.contains("bob@noord.test"),
        "{list}"
    );
}

#[test]
fn the_admin_listener_takes_revocations_only_with_the_token_and_throttles_wrong_ones() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    let token = "a-long-random-admin-token-for-tests";
    let token_file = d.path("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    d.extra_server_config = "admin_token_file = \"admin-token\"".into();
    d.extra_sections = "[limits]\npassword_failures_per_ip = \"4/15m\"\n".into();
    d.write_config();
    d.start();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let body = format!("{{\"serial\": \"{}\", \"reason\": \"api\"}}", anna.serial);
    // "STATUS RETRY-AFTER" of a call from address `from`, with a JSON body or without (a GET).
    let call = |auth: Option<&str>, from: &str, body: Option<&str>| {
        let url = format!("http://127.0.0.1:{}/api/v1/revocations", d.admin);
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--interface",
            from,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{retry-after}",
        ]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        if let Some(auth) = auth {
            cmd.args(["-H", &format!("Authorization: Bearer {auth}")]);
        }
        let out = cmd.arg(url).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let post = |auth: Option<&str>| call(auth, "127.0.0.1", Some(&body));
    let cert = |d: &Deployment| d.status_with_cert(d.https, HOST, &anna);
    assert_eq!(post(None), "401");
    assert_eq!(post(Some("a-long-random-admin-token-but-wrong")), "401");
    assert_eq!(cert(&d), 200, "nothing changed");
    assert_eq!(post(Some(token)), "200");
    assert_eq!(cert(&d), 401);

    // Four wrong tokens from one address (the right one did not count); the fifth call waits,
    // even with the right token, and another address is not held up.
    assert_eq!(post(Some("guess-number-three-of-them")), "401");
    assert_eq!(post(Some("guess-number-four-of-them")), "401");
    let waits = call(Some(token), "127.0.0.1", None);
    let (status, retry_after) = waits.split_once(' ').unwrap_or((&waits, ""));
    assert_eq!(status, "429", "{waits}");
    let retry_after: u64 = retry_after.parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{waits}");
    assert_eq!(call(Some(token), "127.0.0.2", None), "200");
    assert_eq!(
        d.metric("certgate_rate_limited_total{kind=\"admin_token\"}"),
        1.0
    );
}

#[test]
fn the_cli_says_clearly_when_no_instance_is_running() {
    let d = Deployment::new(&[Org::new("noord", HOST)]);
    let out = certgate(&[
        "device",
        "revoke",
        "--config",
        &d.config(),
        "--serial",
        "0a1b",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the running instance"));
}
