//! The network admin's commands: `certgate check` accepts the shipped examples and reports every
//! error of a broken set with file:line; `certgate policy explain` names the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use certgate_e2e::{certgate, certgate_ok};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn check_accepts_the_example_configuration_once_its_files_are_in_place() {
    // The example, moved from /etc and /var/lib into a scratch directory.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let example = std::fs::read_to_string(repo().join("deploy/examples/certgate.toml")).unwrap();
    // Free ports, so that check's "can it listen there" finds nothing else on this machine.
    let ports: Vec<u16> = (0..4).map(|_| certgate_e2e::free_port()).collect();
    let text = example
        .replace("/etc/certgate", &root.join("etc").display().to_string())
        .replace("/var/lib/certgate", &root.join("var").display().to_string())
        .replace(":8443\"", &format!(":{}\"", ports[0]))
        .replace(":8080\"", &format!(":{}\"", ports[1]))
        .replace(":9100\"", &format!(":{}\"", ports[2]))
        .replace(":9090\"", &format!(":{}\"", ports[3]));
    let config = root.join("certgate.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir(root.join("policies")).unwrap();
    for entry in std::fs::read_dir(repo().join("deploy/examples/policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, root.join("policies").join(path.file_name().unwrap())).unwrap();
    }
    let config = config.to_str().unwrap();

    // Like `nginx -t`: what `serve` would read first is read now, and every missing file named.
    let out = certgate(&["check", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "ca.dir: ",
        // Where the entry is written, like every other configuration error.
        "certgate.toml:23: server.certificates[0]: ",
        "gateway.pem",
        "mail.password_file: ",
        "sms.token_file: ",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // Away from the server (a policy repository's CI), the files can be left out.
    let out = certgate_ok(&["check", "--config", config, "--no-files"]);
    assert!(out.starts_with("ok:"), "{out}");

    let ca = root.join("var/ca");
    certgate_ok(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    std::fs::create_dir_all(root.join("etc/tls")).unwrap();
    certgate_ok(&[
        "ca",
        "issue-server",
        "--dir",
        ca.to_str().unwrap(),
        "--dns",
        "noord.example.org",
        "--out",
        root.join("etc/tls/gateway").to_str().unwrap(),
    ]);
    std::fs::create_dir_all(root.join("etc/secrets")).unwrap();
    std::fs::write(root.join("etc/secrets/smtp-password"), "relay-password\n").unwrap();
    std::fs::write(root.join("etc/secrets/sms-token"), "sms-token\n").unwrap();
    let out = certgate_ok(&["check", "--config", config]);
    assert!(out.starts_with("ok:"), "{out}");
    assert!(out.contains("2 organisation policies"), "{out}");
    // One whole line: the shell prompt does not start after it.
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.ends_with('\n'), "{out:?}");

    // What would stop `serve` at start: a taken port, an admin socket in a directory that is
    // not there, a data directory that cannot be written.
    {
        let squatter = std::net::TcpListener::bind(("0.0.0.0", ports[0])).unwrap();
        let broken = std::fs::read_to_string(config)
            .unwrap()
            .replace(
                &root.join("var/admin.sock").display().to_string(),
                &root.join("nowhere/admin.sock").display().to_string(),
            )
            .replace(
                &format!("dir = \"{}\"", root.join("var").display()),
                "dir = \"/proc/certgate-data\"",
            );
        let broken_config = root.join("broken.toml");
        std::fs::write(&broken_config, broken).unwrap();
        let out = certgate(&["check", "--config", broken_config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "server.https_listen",
            "already in use",
            "server.admin_socket",
            "nowhere",
            "does not exist",
            "data.dir /proc/certgate-data",
        ] {
            assert!(
                stderr.contains(expected),
                "missing {expected:?} in:\n{stderr}"
            );
        }
        drop(squatter);
    }

    // A key that does not belong to its certificate is caught too.
    std::fs::remove_file(root.join("etc/tls/gateway.key")).unwrap();
    std::fs::copy(ca.join("issuing.key"), root.join("etc/tls/gateway.key")).unwrap();
    let out = certgate(&["check", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.certificates[0]: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(dir.path().join("certgate.toml"), "[server]\nhttps_listen = \"127.0.0.1:8443\"\n\n[[server.certificates]]\nhosts = [\"noord.test\"]\ncert = \"x.pem\"\nkey = \"x.key\"\n").unwrap();
    std::fs::write(
        policies.join("noord.toml"),
        "id = \"noord\"\nname = \"Noord\"\nhosts = [\"app.test\"]\nupstreams = [\"http://10.0.0.5:8080\"]\n\n[access]\nallow_ips = [\"192.0.2.10\", \"198.51.100.0/24\", \"10.0.0.300\"]\nallow_ips_files = [\"missing.allowlist\"]\nallow_ip = []\n\n[mfa]\nsession_lifetime = \"twelve hours\"\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("zuid.toml"),
        "id = \"noord\"\nname = \"Zuid\"\nhosts = [\"app.test\"]\nupstreams = [\"ftp://10.0.0.6\"]\n",
    )
    .unwrap();
    let out = certgate(&[
        "check",
        "--config",
        dir.path().join("certgate.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "noord.toml:7: access.allow_ips[2]: \"10.0.0.300\" is not an IP address or CIDR",
        "noord.toml:8: access.allow_ips_files[0]",
        "noord.toml:9: access.allow_ip",
        "noord.toml:12: mfa.session_lifetime",
        "zuid.toml:1: id",
        "zuid.toml:4: upstreams[0]",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn explain_names_the_matching_rule() {
    let config = repo().join("deploy/examples/certgate.toml");
    let config = config.to_str().unwrap();
    let admitted = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        config,
        "--host",
        "noord.example.org",
        "--ip",
        "198.51.100.7",
    ]);
    assert!(
        admitted.starts_with("admitted: allow_ips_files noord.allowlist:"),
        "{admitted}"
    );
    assert!(admitted.contains("198.51.100.0/24"), "{admitted}");
    let public = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        config,
        "--host",
        "noord.example.org",
        "--ip",
        "203.0.113.1",
        "--path",
        "/favicon.ico",
    ]);
    assert!(
        public.starts_with("admitted: public_paths /favicon.ico"),
        "{public}"
    );
    let redirected = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        config,
        "--host",
        "noord.example.org",
        "--ip",
        "203.0.113.1",
        "--path",
        "/rooster",
    ]);
    assert!(
        redirected.starts_with("redirected: 302 /.certgate/login?return_to=/rooster"),
        "{redirected}"
    );
    let unknown = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        config,
        "--host",
        "nowhere.example",
        "--ip",
        "203.0.113.1",
    ]);
    assert!(unknown.starts_with("unknown host"), "{unknown}");
}
