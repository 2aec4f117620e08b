//! `certgate demo`: everything local on embedded defaults. Creates (or reuses) a directory with
//! a dev CA, a server certificate for localhost, a demo organisation and a client certificate
//! for a demo user, then runs the gateway, the portal and the demo app in one process.

use std::net::SocketAddr;
use std::path::Path;

use certgate_accounts::Actor;
use certgate_certs::{files, CertificateAuthority, DeviceSubject};
use time::OffsetDateTime;

const HTTPS: &str = "127.0.0.1:8443";
const ADMIN: &str = "127.0.0.1:9100";
const PORTAL: &str = "127.0.0.1:9090";
const APP: &str = "127.0.0.1:9080";

pub fn run(dir: &Path) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    for sub in ["policies", "tls", "clients", "data"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
    }
    let ca_dir = dir.join("ca");
    let ca = if ca_dir.join("issuing.pem").exists() {
        CertificateAuthority::open(&ca_dir).map_err(|e| e.to_string())?
    } else {
        CertificateAuthority::init(&ca_dir, now).map_err(|e| e.to_string())?
    };

    let server_cert = dir.join("tls/localhost.pem");
    let server_key = dir.join("tls/localhost.key");
    if !server_cert.exists() {
        let _ = std::fs::remove_file(&server_key);
        let issued = ca
            .issue_server_certificate(
                &["localhost".to_owned()],
                &["127.0.0.1".parse().map_err(|_| "address")?],
                std::time::Duration::from_secs(90 * 24 * 3600),
                now,
            )
            .map_err(|e| e.to_string())?;
        files::write_private(&server_key, issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
        files::write_public(&server_cert, issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    }

    // A fresh 12-hour certificate for the demo user on every start.
    let client_cert = dir.join("clients/anna.pem");
    let client_key = dir.join("clients/anna.key");
    for stale in [&client_cert, &client_key] {
        let _ = std::fs::remove_file(stale);
    }
    let subject = DeviceSubject {
        org: "demo".into(),
        user: "anna@demo.example".into(),
        device_id: "demo-laptop".into(),
    };
    let issued = ca
        .issue_device_key_pair(&subject, std::time::Duration::from_secs(12 * 3600), now)
        .map_err(|e| e.to_string())?;
    files::write_private(&client_key, issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    files::write_public(&client_cert, issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?;

    write_if_missing(&dir.join("policies/demo.toml"), &demo_policy())?;
    write_if_missing(
        &dir.join("policies/demo.allowlist"),
        "# One address or network a line, as exported from a firewall.\n127.0.0.2   # the demo's \"office network\"\n",
    )?;
    write_if_missing(&dir.join("certgate.toml"), &demo_config())?;

    let config = certgate_policies::config::Config::load(&dir.join("certgate.toml"))
        .map_err(|e| e.to_string())?;
    ensure_demo_accounts(&config)?;
    let app: SocketAddr = APP.parse().map_err(|_| "address")?;
    print_instructions(dir);
    crate::start(&config, Some(app), Some(config.data.dir.join("outbox")))
}

/// One of the demo's accounts.
struct DemoAccount {
    username: &'static str,
    name: &'static str,
    email: Option<&'static str>,
    mobile: Option<&'static str>,
    kind: certgate_db::AccountKind,
    roles: &'static [&'static str],
    password: &'static str,
}

/// A personal account with both channels, a shared tablet, and a parent exempt from MFA.
const DEMO_ACCOUNTS: [DemoAccount; 3] = [
    DemoAccount {
        username: "anna@demo.example",
        name: "Anna de Vries",
        email: Some("anna@demo.example"),
        mobile: Some("+31612345678"),
        kind: certgate_db::AccountKind::Personal,
        roles: &["admin"],
        password: "welkom-anna",
    },
    DemoAccount {
        username: "groep-zonnebloem",
        name: "Groep Zonnebloem (tablet)",
        email: None,
        mobile: None,
        kind: certgate_db::AccountKind::Group,
        roles: &[],
        password: "welkom-zonnebloem",
    },
    DemoAccount {
        username: "ouder@demo.example",
        name: "Sam Jansen (ouder)",
        email: Some("ouder@demo.example"),
        mobile: None,
        kind: certgate_db::AccountKind::Personal,
        roles: &["parent"],
        password: "welkom-ouder",
    },
];

/// Creates the demo accounts that do not exist yet, with their passwords, through the account
/// service as an operator would (`certgate user add --offline`).
fn ensure_demo_accounts(config: &certgate_policies::config::Config) -> Result<(), String> {
    crate::user::with_database(config, "demo", async |db, org| {
        for demo in &DEMO_ACCOUNTS {
            if db
                .find_account(&org.id, demo.username)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                continue;
            }
            let roles: Vec<String> = demo.roles.iter().map(|r| (*r).to_owned()).collect();
            let input = certgate_db::AccountInput {
                username: demo.username,
                display_name: demo.name,
                email: demo.email,
                mobile: demo.mobile,
                kind: Some(demo.kind.as_str()),
                roles: &roles,
            };
            let new = certgate_db::NewAccount::checked(&org.id, &input, certgate_db::Given::Typed)
                .map_err(|e| e.to_string())?;
            let hash = certgate_portal::password::hash(demo.password).map_err(|e| e.to_string())?;
            crate::user::offline(&db, async |service| {
                let account = service.create(Actor::Operator, &org, &new).await?;
                service
                    .set_password(Actor::Operator, &org, &account, &hash)
                    .await
            })
            .await?;
        }
        Ok(())
    })
}

fn write_if_missing(path: &Path, contents: &str) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn demo_policy() -> String {
    format!(
        r##"# The demo organisation. Edit this file while the demo runs: it reloads within a second.
id = "demo"
name = "Demo Care"
hosts = ["localhost", "127.0.0.1"]
upstreams = ["http://{APP}"]
colour = "#0b6e4f"

[access]
allow_ips = []
allow_ips_files = ["demo.allowlist"]
public_paths = ["/favicon.ico"]
browser_credentials = true

[mfa]
methods = ["passkey", "authenticator", "sms", "email"]
passwordless = true
group_passkeys = true
required = "all"
exempt_roles = ["parent"]
trust_device_for = "7d"
session_lifetime = "12h"
group_idle_timeout = "60d"
device_flow = true
"##
    )
}

fn demo_config() -> String {
    format!(
        r#"# certgate demo configuration (development only; listeners on loopback).
[server]
https_listen = "{HTTPS}"
admin_listen = "{ADMIN}"
admin_socket = "data/admin.sock"
shutdown_grace = "2s"

[[server.certificates]]
hosts = ["localhost", "127.0.0.1"]
cert = "tls/localhost.pem"
key = "tls/localhost.key"

[policies]
dir = "policies"

[data]
dir = "data"

[ca]
dir = "ca"

[portal]
listen = "{PORTAL}"

# SMS codes are written to the log (development only).
[sms]
kind = "log"

[development]
enabled = true
"#
    )
}

fn print_instructions(dir: &Path) {
    let d = dir.display();
    println!(
        r#"
certgate demo is running on https://localhost:8443/ (stop it with Ctrl-C).
Everything it uses is in {d}/.

1. Admitted by the demo user's device certificate (the app shows X-Certgate-Auth: certificate):
   curl --cacert {d}/ca/root.pem --cert {d}/clients/anna.pem --key {d}/clients/anna.key https://localhost:8443/

2. Admitted from the allow-listed "office network" 127.0.0.2 (X-Certgate-Auth: ip):
   curl --cacert {d}/ca/root.pem --interface 127.0.0.2 https://localhost:8443/

3. Anyone else is sent to sign in (302 to /.certgate/login):
   curl --cacert {d}/ca/root.pem -i -H 'Accept: text/html' https://localhost:8443/some/page

In a browser, open https://localhost:8443/ (trust {d}/ca/root.pem, or accept the warning): you are
sent to the sign-in page. Demo accounts (organisation "Demo Care"):
   anna@demo.example    password welkom-anna         personal and admin; a passkey, or codes by authenticator app, SMS or e-mail
   groep-zonnebloem     password welkom-zonnebloem   shared group tablet; authenticator app or the tablet's passkey
   ouder@demo.example   password welkom-ouder        parent: exempt from the second factor
E-mails (codes, password links) are written to {d}/data/outbox/ instead of being sent;
SMS codes appear in this terminal's log.
Passkeys (fingerprint, face or screen lock): open https://localhost:8443/ (not 127.0.0.1) in Chrome
with {d}/ca/root.pem trusted (browsers refuse passkeys on a page accepted past a certificate
warning). At anna's first sign-in choose "Sign in with your fingerprint or face". Without a sensor:
DevTools > More tools > WebAuthn > "Enable virtual authenticator environment", add one (ctap2,
internal, resident key and user verification ticked). Next time the user-name field offers the
passkey, or press "Sign in with a passkey": no password needed.
Sign out: https://localhost:8443/.certgate/logout      Your devices: https://localhost:8443/.certgate/account
Administration (as anna): https://localhost:8443/.certgate/admin
An app or agent: certgate login --url https://localhost:8443 --out demo-device   (with SSL_CERT_FILE={d}/ca/root.pem)
Try it yourself: add 127.0.0.1 to {d}/policies/demo.allowlist and reload the browser.
Explain a decision: certgate policy explain --config {d}/certgate.toml --host localhost --ip 127.0.0.2
Metrics: http://127.0.0.1:9100/metrics
"#
    );
}
