//! Backup and restore end to end: a backup taken while certgate serves and writes, restored
//! into a fresh directory, where the device certificates and browser credentials issued before
//! are admitted, the revoked one stays refused and the accounts sign in; and what a backup and
//! a restore refuse, changing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use certgate_e2e::{
    attribute_after, certgate, certgate_ok, csrf_of, eventually, oathtool, settles,
    throwaway_postgres_database, CurlClient, Deployment, NewUser, Org, PortalWorld,
};

const NOORD: &str = "noord.test";
const PASSWORD: &str = "correct horse battery";

fn org() -> Org {
    let mut org = Org::new("noord", NOORD);
    org.policy_extra =
        "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\nexempt_roles = [\"parent\"]\n".into();
    org
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A group account's first sign-in with curl: password, then the authenticator enrolled with
/// oathtool; the app's secret and the code used.
fn enrol_authenticator(client: &CurlClient<'_>, user: &str) -> (String, String) {
    assert_eq!(client.sign_in("/", user, PASSWORD).status, 303);
    let page = client.get("/.certgate/mfa");
    let secret = attribute_after(&page.body, r#"id="secret" class="secret">"#)
        .and_then(|s| s.split('<').next().map(str::to_owned))
        .unwrap()
        .replace(' ', "");
    let code = oathtool(&secret);
    let done = client.post(
        "/.certgate/mfa/enrol",
        &[("csrf", &csrf_of(&page.body)), ("code", &code)],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    (secret, code)
}

/// `GET /` on the deployment with the browser credential `token`.
fn with_credential(d: &Deployment, token: &str) -> certgate_e2e::Response {
    d.curl(
        NOORD,
        "127.0.0.1",
        "/",
        &["-H", &format!("Cookie: __Host-certgate-device={token}")],
    )
}

/// The account names `certgate user list` prints for noord.
fn accounts(config: &str) -> String {
    certgate_ok(&["user", "list", "--config", config, "--org", "noord"])
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_fresh_directory_where_credentials_still_work() {
    let w = PortalWorld::start(&[org()], "");
    let config = w.d.config();
    // A device certificate, and one that is revoked.
    let laptop = w.d.issue_client("noord", "anna@noord.test", "12h");
    let stolen = w.d.issue_client("noord", "anna@noord.test", "12h");
    assert_eq!(w.d.status_with_cert(w.d.https, NOORD, &laptop), 200);
    assert!(w.d.revoke_serial(&stolen).status.success());
    assert!(settles(
        || w.d.status_with_cert(w.d.https, NOORD, &stolen) == 401
    ));
    // A browser credential from a password sign-in (an exempt role: no second factor).
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "anna@noord.test", PASSWORD)
    });
    let browser = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        browser.sign_in("/", "anna@noord.test", PASSWORD).status,
        303
    );
    let credential = browser.cookie("__Host-certgate-device").unwrap();
    let admitted = with_credential(&w.d, &credential);
    assert_eq!(admitted.status, 200);
    assert_eq!(
        admitted.upstream_header("x-certgate-user").as_deref(),
        Some("anna@noord.test")
    );
    // A group tablet with an authenticator app, whose secret is sealed with secrets.key.
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-ster", PASSWORD)
    });
    let (secret, enrolled_with) = enrol_authenticator(&w.client(NOORD, "127.0.0.1"), "groep-ster");

    // The backup, while accounts are being added through the running instance.
    let archive = w.d.path("backup.tar.gz");
    let archive_arg = archive.to_str().unwrap();
    let writing = AtomicBool::new(true);
    let added = AtomicUsize::new(0);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while writing.load(Ordering::Relaxed) {
                let n = added.load(Ordering::Relaxed);
                let name = format!("temp{n}@noord.test");
                certgate_ok(&[
                    "user",
                    "add",
                    "--config",
                    &config,
                    "--org",
                    "noord",
                    "--username",
                    &name,
                    "--name",
                    "Temp",
                ]);
                added.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(settles(|| added.load(Ordering::Relaxed) > 0));
        let out = certgate(&["backup", "--config", &config, "--out", archive_arg]);
        // One more write after the copy, which the backup cannot hold.
        let after = added.load(Ordering::Relaxed) + 1;
        assert!(settles(|| added.load(Ordering::Relaxed) > after));
        writing.store(false, Ordering::Relaxed);
        out
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for part in [
        "ca/root.pem",
        "ca/root.key",
        "ca/issuing.pem",
        "ca/issuing.key",
        "data/credential.key",
        "data/secrets.key",
        "database/certgate.db",
    ] {
        assert!(printed.contains(part), "{part}: {printed}");
    }
    assert_eq!(mode(&archive), 0o600);
    let accounts_then = accounts(&config);

    // Never over an existing file, unless --force; nothing is left aside either way.
    let taken = std::fs::read(&archive).unwrap();
    let again = certgate(&["backup", "--config", &config, "--out", archive_arg]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("exists") && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&archive).unwrap(), taken);
    let replaced = w.d.path("replaced.tar.gz");
    std::fs::write(&replaced, "an older backup").unwrap();
    std::fs::set_permissions(&replaced, std::fs::Permissions::from_mode(0o644)).unwrap();
    let replaced_arg = replaced.to_str().unwrap();
    certgate_ok(&[
        "backup",
        "--config",
        &config,
        "--out",
        replaced_arg,
        "--force",
    ]);
    assert_eq!(mode(&replaced), 0o600);
    assert_ne!(std::fs::read(&replaced).unwrap(), b"an older backup");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(w.d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".certgate-backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A restore refuses while certgate runs on the configuration.
    let running = certgate(&[
        "restore",
        "--config",
        &config,
        "--from",
        archive_arg,
        "--force",
    ]);
    assert!(!running.status.success());
    assert!(stderr(&running).contains("stop it"), "{}", stderr(&running));

    let mut old = w;
    assert!(old.d.stop_gateway(Duration::from_secs(10)));

    // A fresh deployment: its own CA, ports, mail and SMS peers.
    let fresh = PortalWorld::start_with(&[org()], "", |d| {
        let fresh_config = d.config();
        // It holds a CA already: refused, and nothing changes.
        let root = std::fs::read(d.path("ca/root.pem")).unwrap();
        let refused = certgate(&["restore", "--config", &fresh_config, "--from", archive_arg]);
        assert!(!refused.status.success());
        let why = stderr(&refused);
        assert!(
            why.contains("already hold a CA")
                && why.contains("--force")
                && why.contains("nothing was changed"),
            "{why}"
        );
        assert_eq!(std::fs::read(d.path("ca/root.pem")).unwrap(), root);
        assert!(!d.path("data").exists());
        // The server certificate is the operator's file, not in a backup: bring it along.
        for file in ["tls/server.pem", "tls/server.key"] {
            std::fs::copy(old.d.path(file), d.path(file)).unwrap();
        }
        let out = certgate_ok(&[
            "restore",
            "--config",
            &fresh_config,
            "--from",
            archive_arg,
            "--force",
        ]);
        assert!(out.contains("restored the backup"), "{out}");
        assert_eq!(
            std::fs::read(d.path("ca/root.pem")).unwrap(),
            std::fs::read(old.d.path("ca/root.pem")).unwrap()
        );
        assert_eq!(mode(&d.path("data")), 0o700);
        for private in [
            "data/credential.key",
            "data/secrets.key",
            "data/certgate.db",
            "ca/issuing.key",
            "ca/root.key",
        ] {
            assert_eq!(mode(&d.path(private)), 0o600, "{private}");
        }
        assert_eq!(mode(&d.path("ca/issuing.pem")), 0o644);
    });
    let d = &fresh.d;
    // The device certificate is admitted, the revoked one still refused.
    assert_eq!(d.status_with_cert(d.https, NOORD, &laptop), 200);
    assert_eq!(d.status_with_cert(d.https, NOORD, &stolen), 401);
    // The browser credential is admitted as the same person.
    let admitted = with_credential(d, &credential);
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(
        admitted.upstream_header("x-certgate-user").as_deref(),
        Some("anna@noord.test")
    );
    // The accounts sign in: the password, and the authenticator app whose secret only the
    // restored secrets.key opens.
    let anna = fresh.client(NOORD, "127.0.0.1");
    assert_eq!(anna.sign_in("/", "anna@noord.test", PASSWORD).status, 303);
    assert_eq!(anna.api("/").status, 200);
    assert!(eventually(Duration::from_secs(35), || oathtool(&secret)
        != enrolled_with));
    let tablet = fresh.client(NOORD, "127.0.0.1");
    let signed_in = tablet.sign_in_with_authenticator("/", "groep-ster", PASSWORD, &secret);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // The database is the snapshot: every account the copy saw, in order, none after it.
    let restored = accounts(&d.config());
    let temps = |list: &str| -> Vec<String> {
        list.lines()
            .filter(|l| l.contains("temp"))
            .map(str::to_owned)
            .collect()
    };
    let (then, now) = (temps(&accounts_then), temps(&restored));
    assert!(
        !now.is_empty() && now.len() < then.len(),
        "{now:?} {then:?}"
    );
    for n in 0..now.len() {
        assert!(
            restored.contains(&format!("temp{n}@noord.test")),
            "temp{n}: {restored}"
        );
    }
}

/// A config whose CA and data directories do not exist yet, next to `d`'s files.
fn empty_target(d: &Deployment, name: &str, sections: &str) -> String {
    let path = d.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\nadmin_listen = \"\"\n\n[[server.certificates]]\nhosts = [\"{NOORD}\"]\n\
             cert = \"tls/server.pem\"\nkey = \"tls/server.key\"\n\n[data]\ndir = \"{name}/data\"\n\n\
             [ca]\ndir = \"{name}/ca\"\n\n{sections}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn tar(dir: &Path, args: &[&str]) {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", stderr(&out));
}

#[test]
fn a_damaged_or_foreign_archive_is_refused_with_the_reason_and_changes_nothing() {
    let mut d = Deployment::new(&[org()]);
    d.start();
    let archive = d.path("backup.tar.gz");
    certgate_ok(&[
        "backup",
        "--config",
        &d.config(),
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(d.stop_gateway(Duration::from_secs(10)));
    let target = empty_target(&d, "fresh", "");

    // The genuine archive, unpacked, to make bad ones from.
    let parts = [
        "manifest.json",
        "ca/root.pem",
        "ca/root.key",
        "ca/issuing.pem",
        "ca/issuing.key",
        "data/credential.key",
        "data/secrets.key",
        "database/certgate.db",
    ];
    let unpacked = d.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tar(&unpacked, &["-xzf", archive.to_str().unwrap()]);
    let mut listed: Vec<String> = String::from_utf8(
        Command::new("tar")
            .args(["-tzf", archive.to_str().unwrap()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        listed.remove(0),
        "manifest.json",
        "the manifest comes first"
    );
    listed.sort();
    let mut expected: Vec<String> = parts[1..].iter().map(|p| (*p).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let pack = |name: &str, entries: &[&str], extra: &[&str]| -> String {
        let file = d.path(name).to_str().unwrap().to_owned();
        let mut args = vec!["-czf", file.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(entries);
        tar(&unpacked, &args);
        file
    };

    let garbage = d.path("garbage.tar.gz");
    std::fs::write(&garbage, b"\x1f\x8b not really a gzip stream at all").unwrap();
    let truncated = d.path("truncated.tar.gz");
    let whole = std::fs::read(&archive).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let plain_text = d.path("notes.txt");
    std::fs::write(&plain_text, "not an archive\n").unwrap();
    let no_manifest_first = pack(
        "reordered.tar.gz",
        &[&parts[1..], &parts[..1]].concat(),
        &[],
    );
    let unknown = {
        std::fs::create_dir_all(unpacked.join("policies")).unwrap();
        std::fs::write(unpacked.join("policies/evil.toml"), "id = \"evil\"\n").unwrap();
        pack(
            "unknown.tar.gz",
            &[&parts[..], &["policies/evil.toml"][..]].concat(),
            &[],
        )
    };
    let outside = {
        std::fs::write(d.path("evil"), "x").unwrap();
        pack(
            "outside.tar.gz",
            &[&parts[..], &["../evil"][..]].concat(),
            &["-P"],
        )
    };
    let absolute = {
        let evil = d.path("evil");
        let evil = evil.to_str().unwrap().to_owned();
        pack(
            "absolute.tar.gz",
            &[&parts[..], &[evil.as_str()][..]].concat(),
            &["-P"],
        )
    };
    let tampered = {
        let key = unpacked.join("data/secrets.key");
        let mut text = std::fs::read(&key).unwrap();
        text[0] ^= 1;
        std::fs::write(&key, text).unwrap();
        pack("tampered.tar.gz", &parts, &[])
    };
    let cases: [(String, &str); 8] = [
        (garbage.to_str().unwrap().into(), "cannot read it"),
        (
            truncated.to_str().unwrap().into(),
            "not a usable certgate backup",
        ),
        (
            plain_text.to_str().unwrap().into(),
            "not a usable certgate backup",
        ),
        (no_manifest_first, "does not start with manifest.json"),
        (
            unknown,
            "\"policies/evil.toml\" is not a file a certgate backup holds",
        ),
        (outside, "\"../evil\" points outside the directory"),
        (absolute, "is an absolute path"),
        (
            tampered,
            "data/secrets.key does not match its manifest: it was changed or damaged",
        ),
    ];
    for (file, why) in cases {
        let out = certgate(&["restore", "--config", &target, "--from", &file]);
        let message = stderr(&out);
        assert!(!out.status.success(), "{file}");
        assert!(
            message.contains(why) && message.contains("nothing was changed"),
            "{file}: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert!(!d.path("fresh").exists(), "{file} wrote something");
    }
    // A file that does not exist says so.
    let missing = certgate(&[
        "restore",
        "--config",
        &target,
        "--from",
        "no-such-file.tar.gz",
    ]);
    assert!(stderr(&missing).contains("no-such-file.tar.gz"));

    // The genuine archive restores into the empty directories (no --force needed), and then
    // not again over what it put there.
    let genuine = archive.to_str().unwrap();
    let out = certgate_ok(&["restore", "--config", &target, "--from", genuine]);
    assert!(out.contains("data/secrets.key"), "{out}");
    assert_eq!(mode(&d.path("fresh/ca")), 0o700);
    assert_eq!(
        std::fs::read(d.path("fresh/data/secrets.key")).unwrap(),
        std::fs::read(d.path("data/secrets.key")).unwrap()
    );
    let before = std::fs::read(d.path("fresh/data/certgate.db")).unwrap();
    let again = certgate(&["restore", "--config", &target, "--from", genuine]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already hold"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(d.path("fresh/data/certgate.db")).unwrap(),
        before
    );
    // A backup holding SQLite does not go where the configuration names PostgreSQL.
    let postgres = empty_target(
        &d,
        "pg",
        "[database]\nurl = \"postgres://certgate@127.0.0.1:1/certgate\"\n",
    );
    let out = certgate(&["restore", "--config", &postgres, "--from", genuine]);
    assert!(
        stderr(&out).contains("holds a SQLite database, but"),
        "{}",
        stderr(&out)
    );
    assert!(!d.path("pg").exists());
}

#[test]
fn with_postgresql_the_backup_says_how_to_pg_dump_and_never_prints_the_password() {
    let url = throwaway_postgres_database();
    // A password in the URL: the test server trusts local connections and ignores it.
    const PASSWORD_IN_URL: &str = "Geheim-Wachtwoord-4711";
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap_or(("postgres", rest));
    let with_password = format!("{scheme}://{user}:{PASSWORD_IN_URL}@{host}");
    let mut d = Deployment::new(&[org()]);
    d.extra_sections = format!("[database]\nurl = \"{with_password}\"\n");
    d.write_config();
    d.start();
    let archive = d.path("backup.tar.gz");
    let out = certgate(&[
        "backup",
        "--config",
        &d.config(),
        "--out",
        archive.to_str().unwrap(),
    ]);
    let (printed, errors) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{errors}");
    assert!(
        printed.contains("pg_dump --format=custom")
            && printed.contains(&format!("{scheme}://{user}@{host}")),
        "{printed}"
    );
    assert!(!printed.contains("database/certgate.db"), "{printed}");
    assert!(printed.contains("data/secrets.key"), "{printed}");
    assert!(
        !printed.contains(PASSWORD_IN_URL) && !errors.contains(PASSWORD_IN_URL),
        "{printed}{errors}"
    );
    assert!(!d.path("data/certgate.db").exists());
    assert!(d.stop_gateway(Duration::from_secs(10)));

    // Restored where the configuration names PostgreSQL too: the keys and CA, and how to
    // restore the database; never into a SQLite configuration.
    let sqlite = empty_target(&d, "lite", "");
    let refused = certgate(&[
        "restore",
        "--config",
        &sqlite,
        "--from",
        archive.to_str().unwrap(),
    ]);
    assert!(
        stderr(&refused).contains("taken with PostgreSQL"),
        "{}",
        stderr(&refused)
    );
    let target = empty_target(
        &d,
        "fresh",
        &format!("[database]\nurl = \"{with_password}\"\n"),
    );
    let restored = certgate(&[
        "restore",
        "--config",
        &target,
        "--from",
        archive.to_str().unwrap(),
    ]);
    let (printed, errors) = (String::from_utf8_lossy(&restored.stdout), stderr(&restored));
    assert!(restored.status.success(), "{errors}");
    assert!(printed.contains("pg_restore"), "{printed}");
    assert!(
        !printed.contains(PASSWORD_IN_URL) && !errors.contains(PASSWORD_IN_URL),
        "{printed}"
    );
    assert_eq!(
        std::fs::read(d.path("fresh/data/credential.key")).unwrap(),
        std::fs::read(d.path("data/credential.key")).unwrap()
    );
}
