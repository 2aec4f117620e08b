//! Upgrades: the current `certgate serve` on a database as the first release (ac4d7ed) left it,
//! on SQLite and on PostgreSQL. The fixture in tests/fixtures/first-release/ (made by make.py
//! there) holds that release's schema as sqlx recorded it and rows as its code wrote them, with
//! the data directory's secret-encryption key; the test checks as an operator and the users
//! would that accounts, factors, devices and revocations survived the migrations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certgate_e2e::{
    certgate_ok, csrf_of, free_port, throwaway_postgres_database, ClientCert, Deployment, Org,
    PortalWorld,
};

const NOORD: &str = "noord.test";

// What make.py wrote into the fixture.
const PASSWORD: &str = "Vuurtoren-Zeilboot-1923";
const ANNA_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// The first of the tablet's recovery codes, as shown at its enrolment.
const TABLET_RECOVERY_CODE: &str = "qajs5-5sbsd";
const ANNA_TRUSTED: &str = "860b139d8e2c873e94e7d6dc4670e555";
const ANNA_SIGNED_OUT: &str = "c0a210ef417997345dc3ea7ba2f95903";
const ANNA_LOST: &str = "fe77a6f8861495087ac5a938bd886d5c";
const BOB_SESSION: &str = "fc99cd898ed3a188df22d261cadb7416";
const TABLET_GROUP: &str = "2ef7417d2b508173f459c7158ca37f0f";
const PIET_TRUSTED: &str = "f2aa710753a205c6908835266cfd0dff";
const LOST_SERIAL: &str = "4f1c2a9e7b3d5e6f0a1b2c3d4e5f6071";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/first-release")
        .join(name)
}

fn noord() -> Org {
    let mut org = Org::new("noord", NOORD);
    org.policy_extra = "\n[mfa]\nmethods = [\"authenticator\", \"sms\", \"email\"]\n".into();
    org
}

/// The data directory's keyring that sealed the authenticator secrets, as the release left it.
fn copy_keyring(d: &Deployment) {
    std::fs::create_dir_all(d.path("data")).unwrap();
    let key = d.path("data/secrets.key");
    std::fs::copy(fixture("secrets.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SQLite dump loaded into `data/certgate.db`, where `serve` opens it by default (with
/// Python's sqlite3, which `make test` installs, rather than a sqlite3 program it does not).
fn load_sqlite(d: &Deployment) {
    copy_keyring(d);
    run(Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             db.executescript(open(sys.argv[2]).read())\n\
             db.close()",
        ])
        .arg(d.path("data/certgate.db"))
        .arg(fixture("sqlite.sql")));
}

fn load_postgres(d: &Deployment, url: &str) {
    copy_keyring(d);
    run(Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
        .arg(fixture("postgres.sql")));
}

/// The accounts, each with its second factor, as the operator lists them.
fn accounts_survived(w: &PortalWorld) {
    let config = w.d.config();
    let list = certgate_ok(&["user", "list", "--config", &config, "--org", "noord"]);
    for line in [
        "anna@noord.test\tAnna de Vries\tpersonal\tadmin\tmfa=authenticator\tpasskeys=0\tactive",
        "bob@noord.test\tBob Jansen\tpersonal\t\tmfa=email\tpasskeys=0\tactive",
        "tablet-3\tTablet afdeling 3\tgroup\t\tmfa=authenticator\tpasskeys=0\tactive",
        "piet@noord.test\tPiet Bakker\tpersonal\t\tmfa=sms\tpasskeys=0\tdisabled",
        "nieuw@noord.test\tNieuwe Collega\tpersonal\t\tmfa=-\tpasskeys=0\tactive",
    ] {
        assert!(list.lines().any(|l| l == line), "{line:?} in\n{list}");
    }
    let anna = certgate_ok(&[
        "user",
        "show",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "anna@noord.test",
    ]);
    assert!(
        anna.contains("e-mail: anna@noord.test; mobile: +31612345678"),
        "{anna}"
    );
    assert!(
        anna.contains("second factor: authenticator (enrolled)"),
        "{anna}"
    );
    let nieuw = certgate_ok(&[
        "user",
        "show",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "nieuw@noord.test",
    ]);
    assert!(nieuw.contains("second factor: not chosen"), "{nieuw}");
}

/// Each device's standing by the revocations that came with the database.
fn devices_survived(w: &PortalWorld) {
    let standing = |user: &str| -> Vec<(String, String, String)> {
        let mut found: Vec<_> = w
            .devices("noord", user)
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_owned(),
                    d["trust"].as_str().unwrap().to_owned(),
                    d["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let owned = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = rows
            .iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        standing("anna@noord.test"),
        owned(&[
            (ANNA_TRUSTED, "trusted", "active"),
            (ANNA_SIGNED_OUT, "session", "revoked"),
            (ANNA_LOST, "trusted", "revoked"),
        ])
    );
    assert_eq!(
        standing("bob@noord.test"),
        owned(&[(BOB_SESSION, "session", "expired")])
    );
    assert_eq!(
        standing("tablet-3"),
        owned(&[(TABLET_GROUP, "group", "active")])
    );
    assert_eq!(
        standing("piet@noord.test"),
        owned(&[(PIET_TRUSTED, "trusted", "ended")]),
        "issued before the account was disabled"
    );
}

/// The revocations in force, as listed, and as the gateway applies them: a certificate made
/// now for the stolen device is refused, one for a device nobody revoked admitted.
fn revocations_survived(w: &PortalWorld) {
    let config = w.d.config();
    let list = certgate_ok(&["device", "revocations", "--config", &config]);
    for line in [
        format!("device\tnoord\t{ANNA_SIGNED_OUT}\t1795450800\tsigned out"),
        format!("serial\t\t{LOST_SERIAL}\t1795453600\tlost laptop"),
        format!("device\tnoord\t{ANNA_LOST}\t1795454600\tstolen phone"),
        "account\tnoord\tpiet@noord.test\t1795456800\tdisabled".to_owned(),
    ] {
        assert!(list.lines().any(|l| l == line), "{line:?} in\n{list}");
    }
    let certificate = |device: &str| -> ClientCert {
        let prefix = w.d.path(&format!("clients/anna-{device}-{}", free_port()));
        let out = certgate_ok(&[
            "ca",
            "issue-client",
            "--dir",
            w.d.path("ca").to_str().unwrap(),
            "--org",
            "noord",
            "--user",
            "anna@noord.test",
            "--device",
            device,
            "--lifetime",
            "1h",
            "--out",
            prefix.to_str().unwrap(),
        ]);
        let serial = out
            .lines()
            .find_map(|l| l.strip_prefix("serial "))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_owned();
        ClientCert {
            cert: PathBuf::from(format!("{}.pem", prefix.display())),
            key: PathBuf::from(format!("{}.key", prefix.display())),
            serial,
            device: device.to_owned(),
        }
    };
    let stolen = certificate(ANNA_LOST);
    assert_eq!(w.d.status_with_cert(w.d.https, NOORD, &stolen), 401);
    let trusted = certificate(ANNA_TRUSTED);
    assert_eq!(w.d.status_with_cert(w.d.https, NOORD, &trusted), 200);
}

/// The users sign in with what they had: a password and an authenticator code whose secret
/// the old key sealed, a password and a recovery code, a password and an e-mail code.
fn factors_survived(w: &PortalWorld) {
    let anna = w.client(NOORD, "127.0.0.1");
    let signed_in = anna.sign_in_with_authenticator("/", "anna@noord.test", PASSWORD, ANNA_TOTP);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let app = anna.api("/");
    assert_eq!(app.status, 200, "{}", app.body);
    assert_eq!(
        app.upstream_header("x-certgate-user").as_deref(),
        Some("anna@noord.test")
    );
    assert_eq!(
        w.devices("noord", "anna@noord.test").len(),
        4,
        "the new browser is recorded beside the old devices"
    );

    let tablet = w.client(NOORD, "127.0.0.1");
    assert_eq!(tablet.sign_in("/", "tablet-3", PASSWORD).status, 303);
    let page = tablet.get("/.certgate/mfa");
    let recovered = tablet.post(
        "/.certgate/mfa/recovery",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("code", TABLET_RECOVERY_CODE),
        ],
    );
    assert_eq!(recovered.status, 200, "{}", recovered.body);
    assert!(
        recovered.body.contains("You have 9 left"),
        "{}",
        recovered.body
    );

    let bob = w.client(NOORD, "127.0.0.1");
    let signed_in = bob.sign_in_by_email("/", "bob@noord.test", PASSWORD);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
}

fn everything_survived(w: &mut PortalWorld) {
    accounts_survived(w);
    devices_survived(w);
    revocations_survived(w);
    factors_survived(w);
    // Started again on the migrated database: nothing left to migrate, nothing lost.
    assert!(w.d.stop_gateway(Duration::from_secs(5)));
    w.d.start();
    accounts_survived(w);
    revocations_survived(w);
}

#[test]
fn a_first_release_sqlite_database_keeps_accounts_factors_devices_and_revocations() {
    let mut w = PortalWorld::start_with(&[noord()], "", load_sqlite);
    everything_survived(&mut w);
}

#[test]
fn a_first_release_postgres_database_keeps_accounts_factors_devices_and_revocations() {
    let url = throwaway_postgres_database();
    let mut w =
        PortalWorld::start_with(&[noord()], &format!("[database]\nurl = \"{url}\"\n"), |d| {
            load_postgres(d, &url)
        });
    everything_survived(&mut w);
}
