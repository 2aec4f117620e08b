//! Server certificates from ACME (`[server.acme]`), against Pebble, the ACME test server
//! (Debian package `pebble`), with its DNS answered by `pebble-challtestsrv` (every name is
//! 127.0.0.1) and its HTTP-01 challenges answered by certgate's plain-HTTP listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certgate_e2e::{
    certgate_ok, eventually, free_port, http_get, metric_at, served_certificate, Deployment, Org,
};

const ACME_HOST: &str = "acme.noord.test";
/// Pebble's certificates live this long; certgate renews them with 45 s left.
const PEBBLE_VALIDITY_SECS: u64 = 60;

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pebble and its DNS, with an HTTPS certificate from a CA made here (`ca_dir/root.pem`).
struct Pebble {
    directory: String,
    root: String,
    _dns: Killed,
    _pebble: Option<Killed>,
    config: std::path::PathBuf,
    dns_port: u16,
    log: std::path::PathBuf,
}

impl Pebble {
    /// Made ready to start: its DNS runs, Pebble itself not yet.
    fn prepare(dir: &std::path::Path, http_port: u16) -> Pebble {
        let ca = dir.join("pebble-ca");
        certgate_ok(&["ca", "init", "--dir", ca.to_str().unwrap()]);
        let tls = dir.join("pebble-tls");
        std::fs::create_dir_all(&tls).unwrap();
        certgate_ok(&[
            "ca",
            "issue-server",
            "--dir",
            ca.to_str().unwrap(),
            "--ip",
            "127.0.0.1",
            "--out",
            tls.join("pebble").to_str().unwrap(),
        ]);
        let (dns_port, acme_port) = (free_port(), free_port());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (make test installs pebble)");
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({
                "pebble": {
                    "listenAddress": format!("127.0.0.1:{acme_port}"),
                    "managementListenAddress": format!("127.0.0.1:{}", free_port()),
                    "certificate": tls.join("pebble.pem"),
                    "privateKey": tls.join("pebble.key"),
                    "httpPort": http_port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": false,
                    "certificateValidityPeriod": PEBBLE_VALIDITY_SECS,
                }
            })
            .to_string(),
        )
        .unwrap();
        Pebble {
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            root: ca.join("root.pem").to_str().unwrap().to_owned(),
            _dns: Killed(dns),
            _pebble: None,
            config,
            dns_port,
            log: dir.join("pebble.log"),
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&self.config)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (make test installs it)");
        self._pebble = Some(Killed(pebble));
    }
}

/// The issuer and serial of what the gateway serves for the ACME host.
fn served(d: &Deployment) -> (String, String) {
    let text = served_certificate(d.https, ACME_HOST, &["-issuer", "-serial"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    (field("issuer="), field("serial="))
}

#[test]
fn a_certificate_from_pebble_is_obtained_renewed_and_swapped_in_without_a_restart() {
    let mut d = Deployment::new(&[Org::new("noord", "noord.test")]);
    let http = free_port();
    let mut pebble = Pebble::prepare(d.dir.path(), http);
    d.extra_server_config = format!("http_listen = \"127.0.0.1:{http}\"");
    d.extra_sections = format!(
        "[server.acme]\ndirectory = \"{}\"\nhosts = [\"{ACME_HOST}\"]\ncontact = [\"mailto:ops@noord.test\"]\nrenew_before = \"45s\"\nca_file = \"{}\"\n",
        pebble.directory, pebble.root
    );
    d.write_config();

    // The CA is not reachable yet: the listener starts anyway, with a stand-in from
    // certgate's own CA, and says why it has no ACME certificate.
    d.start();
    let (issuer, _) = served(&d);
    assert!(issuer.contains("certgate issuing CA"), "{issuer}");
    assert!(eventually(Duration::from_secs(10), || d
        .gateway()
        .log_text()
        .contains("ACME certificate not obtained")));
    let pid = d.gateway().pid();

    // Once Pebble answers, the retry gets one: its HTTP-01 challenge was answered on
    // http_listen, and the new certificate is served without a restart.
    pebble.start();
    assert!(
        eventually(Duration::from_secs(90), || served(&d).0.contains("Pebble")),
        "no Pebble certificate served:\n{}\n{}",
        d.gateway().log_text(),
        std::fs::read_to_string(&pebble.log).unwrap_or_default()
    );
    let (_, first) = served(&d);
    let file = d.path("data/acme/certificate.pem");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the file holds the key");
    assert_eq!(mode(&d.path("data/acme/account.json")), 0o600);
    let account = std::fs::read(d.path("data/acme/account.json")).unwrap();

    // Its expiry is exported, as for every server certificate.
    let expiry = format!(
        r#"certgate_server_certificate_not_after_timestamp_seconds{{certificate="{ACME_HOST}"}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        eventually(Duration::from_secs(5), || {
            let at = metric_at(d.admin, &expiry);
            at > now && at <= now + PEBBLE_VALIDITY_SECS as f64 + 5.0
        }),
        "{}",
        metric_at(d.admin, &expiry)
    );

    // With 45 s left it is renewed, by the same account, and swapped in: same process.
    assert!(
        eventually(Duration::from_secs(90), || {
            let (issuer, serial) = served(&d);
            issuer.contains("Pebble") && !serial.is_empty() && serial != first
        }),
        "not renewed:\n{}",
        d.gateway().log_text()
    );
    assert_eq!(d.gateway().pid(), pid);
    assert_eq!(
        std::fs::read(d.path("data/acme/account.json")).unwrap(),
        account
    );

    // Plain HTTP answers only challenges it has: an unknown token is not found, the rest
    // still redirects to HTTPS.
    let (status, _) = http_get(http, "/.well-known/acme-challenge/not-a-token").unwrap();
    assert_eq!(status, 404);
    let redirect = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: noord.test",
        ])
        .arg(format!("http://127.0.0.1:{http}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&redirect.stdout), "308");
}

#[test]
fn a_certificate_due_again_as_soon_as_it_arrives_is_not_ordered_again_and_again() {
    let mut d = Deployment::new(&[Org::new("noord", "noord.test")]);
    let http = free_port();
    let mut pebble = Pebble::prepare(d.dir.path(), http);
    pebble.start();
    d.extra_server_config = format!("http_listen = \"127.0.0.1:{http}\"");
    // Pebble's certificates live 60 s: every one is due as soon as it arrives.
    d.extra_sections = format!(
        "[server.acme]\ndirectory = \"{}\"\nhosts = [\"{ACME_HOST}\"]\nrenew_before = \"2m\"\nca_file = \"{}\"\n",
        pebble.directory, pebble.root
    );
    d.write_config();
    d.start();
    assert!(
        eventually(Duration::from_secs(90), || d
            .gateway()
            .log_text()
            .contains("due for renewal at once")),
        "{}",
        d.gateway().log_text()
    );
    assert!(
        eventually(Duration::from_secs(5), || served(&d).0.contains("Pebble")),
        "the certificate is used"
    );
    std::thread::sleep(Duration::from_secs(5));
    let log = d.gateway().log_text();
    assert_eq!(
        log.matches("ACME certificate obtained").count(),
        1,
        "one order, then a wait:\n{log}"
    );
}
