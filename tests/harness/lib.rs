//! The end-to-end harness: builds a deployment in a temporary directory with the real
//! `certgate` binary (CA, certificates, config, policies), starts `certgate serve` and the demo
//! upstream as processes on free ports, drives them with curl, openssl and headless Chromium, and
//! stops them. The peers the portal talks to are real servers too: an SMTP server and an SMS
//! webhook receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod mail;
mod oidc;
mod portal;
mod relay;
mod sms;
mod stub_server;

pub use browser::{
    Browser, BrowserCookie, VirtualAuthenticator, VirtualCredential, DESKTOP, PHONE,
};
pub use mail::{Mail, MailSink, SinkTls};
pub use oidc::{ForgeProvider, OidcProvider};
pub use portal::{
    attribute_after, csrf_of, oathtool, openssl_csr, six_digits, throwaway_postgres_database,
    CurlClient, NewUser, PortalWorld, SMS_TOKEN,
};
pub use relay::TcpRelay;
pub use sms::{Sms, SmsReceiver};
pub use stub_server::{HttpReply, HttpRequest, StubServer};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `certgate` binary under test: `CERTGATE_BIN`, or the one built beside this test.
/// One call on an instance's admin socket, with curl: (status, JSON body).
pub fn admin_socket_call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        curl.args(["-H", "Content-Type: application/json", "--data", body]);
    }
    let out = curl
        .arg(format!("http://certgate-admin{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, status) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("no answer on {}: {text}", socket.display()));
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(json).unwrap(),
    )
}

pub fn certgate_bin() -> PathBuf {
    if let Ok(path) = std::env::var("CERTGATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/certgate
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("certgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (make test does)",
        bin.display()
    );
    bin
}

/// A port nothing listens on, for a server a test is about to start.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Ports come from below the kernel's ephemeral range (32768 and up), so no outgoing
    // connection of a parallel test can take one between this check and the server's bind, and
    // from a per-process counter, so two tests of one binary never get the same port. The start
    // depends on the process id, so consecutive test binaries use different stretches.
    const FIRST: u32 = 14_000;
    const COUNT: u32 = 18_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 397) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..COUNT {
        let port = FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT;
        let port = u16::try_from(port).expect("port in range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT);
}

/// Runs `certgate ARGS` to completion.
pub fn certgate(args: &[&str]) -> Output {
    Command::new(certgate_bin())
        .args(args)
        .output()
        .expect("run certgate")
}

/// Runs `certgate ARGS` and returns stdout, failing the test with stderr if it fails.
pub fn certgate_ok(args: &[&str]) -> String {
    let out = certgate(args);
    assert!(
        out.status.success(),
        "certgate {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(args: &[&str], log: PathBuf) -> Process {
        Self::spawn_with_env(args, log, &[])
    }

    /// Like [`Process::spawn`], with `env` added to the environment.
    pub fn spawn_with_env(args: &[&str], log: PathBuf, env: &[(String, String)]) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(certgate_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn certgate");
        Process { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status once the process has ended by itself, or `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM and wait; returns whether it exited within `within`.
    pub fn stop(&mut self, within: Duration) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// How long a test waits for something that happens in the background (a revocation reaching
/// the gateway, a reload, a process starting): generous, so that a loaded two-core machine does
/// not fail a test that is only slow. Tests poll for the condition; they do not time it.
pub const SETTLE: Duration = Duration::from_secs(15);

/// Waits until `f` returns true, polling every 50 ms, at most [`SETTLE`]; false if it never does.
pub fn settles(f: impl FnMut() -> bool) -> bool {
    eventually(SETTLE, f)
}

/// Waits until the wall clock's unix second has moved on: certgate keeps times in whole seconds,
/// and a credential issued in the second of an account reset counts as issued after it.
pub fn next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let now = second();
    while second() == now {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the wall clock has passed `unix` (seconds): for a lifetime to run out.
pub fn wait_until_unix(unix: i64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if now > unix as f64 {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(
            (unix as f64 - now).clamp(0.02, 1.0),
        ));
    }
}

/// Waits until `f` returns true, polling; false on timeout.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET to the admin listener; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A response as curl saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
    /// curl's exit code (0 when the transfer worked).
    pub exit: i32,
    pub stderr: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A request header as the demo upstream received it (first value).
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name]
            .get(0)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A client certificate written by `certgate ca issue-client`.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
    pub device: String,
}

/// One organisation's policy for a deployment.
pub struct Org {
    pub id: &'static str,
    pub hosts: Vec<String>,
    pub allow_ips: Vec<&'static str>,
    pub allowlist_file: Option<String>,
    pub public_paths: Vec<&'static str>,
    /// The upstreams (default: the deployment's demo app).
    pub upstreams: Vec<String>,
    /// Appended to the policy file: `[mfa]` settings, say.
    pub policy_extra: String,
}

impl Org {
    pub fn new(id: &'static str, host: &str) -> Org {
        Org {
            id,
            hosts: vec![host.to_owned()],
            allow_ips: Vec::new(),
            allowlist_file: None,
            public_paths: Vec::new(),
            upstreams: Vec::new(),
            policy_extra: String::new(),
        }
    }
}

/// A deployment in a temporary directory.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub https: u16,
    pub admin: u16,
    pub portal: u16,
    pub app_port: u16,
    pub extra_server_config: String,
    /// Appended to every config: `[store]`, `[database]` sections.
    pub extra_sections: String,
    /// Added to the gateway's environment (`SSL_CERT_FILE`, say).
    pub env: Vec<(String, String)>,
    pub gateway: Option<Process>,
    pub app: Option<Process>,
    pub hosts: Vec<String>,
}

impl Deployment {
    /// CA, a server certificate for every org host, config and policies; nothing running yet.
    pub fn new(orgs: &[Org]) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let d = Deployment {
            https: free_port(),
            admin: free_port(),
            portal: free_port(),
            app_port: free_port(),
            extra_server_config: String::new(),
            extra_sections: String::new(),
            env: Vec::new(),
            gateway: None,
            app: None,
            hosts: orgs.iter().flat_map(|o| o.hosts.clone()).collect(),
            dir,
        };
        certgate_ok(&["ca", "init", "--dir", d.path("ca").to_str().unwrap()]);
        std::fs::create_dir_all(d.path("policies")).unwrap();
        std::fs::create_dir_all(d.path("tls")).unwrap();
        std::fs::create_dir_all(d.path("clients")).unwrap();
        let mut dns_args = vec!["ca", "issue-server", "--dir"];
        let ca = d.path("ca").to_str().unwrap().to_owned();
        let out = d.path("tls/server").to_str().unwrap().to_owned();
        dns_args.push(&ca);
        for host in &d.hosts {
            dns_args.push("--dns");
            dns_args.push(host);
        }
        dns_args.extend(["--out", &out]);
        certgate_ok(&dns_args);
        for org in orgs {
            d.write_policy(org);
        }
        d.write_config();
        d
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The revocations in force, as the running instance's admin socket lists them.
    pub fn revocations(&self) -> Vec<serde_json::Value> {
        let socket = self.path("data/admin.sock");
        let (status, body) = admin_socket_call(&socket, "GET", "/api/v1/revocations", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.app_port)
    }

    pub fn policy_text(&self, org: &Org) -> String {
        let quote = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hosts: Vec<&str> = org.hosts.iter().map(String::as_str).collect();
        let files = org
            .allowlist_file
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let upstreams = if org.upstreams.is_empty() {
            vec![self.app_url()]
        } else {
            org.upstreams.clone()
        };
        let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
        format!(
            "id = {id:?}\nname = \"Org {id}\"\nhosts = [{hosts}]\nupstreams = [{upstream}]\ndefault_language = \"en\"\n\n[access]\nallow_ips = [{allow}]\nallow_ips_files = [{files}]\npublic_paths = [{public}]\n{extra}",
            extra = org.policy_extra,
            id = org.id,
            hosts = quote(&hosts),
            upstream = quote(&upstreams),
            allow = quote(&org.allow_ips),
            public = quote(&org.public_paths),
        )
    }

    pub fn write_policy(&self, org: &Org) {
        std::fs::write(
            self.path(&format!("policies/{}.toml", org.id)),
            self.policy_text(org),
        )
        .unwrap();
    }

    pub fn write_config(&self) {
        self.write_config_for("certgate.toml", self.https, self.admin, self.portal, "data");
    }

    /// Writes a config for one instance; several instances share the CA, certificates,
    /// policies and `extra_sections` (e.g. one Redis and one database).
    pub fn write_config_for(&self, file: &str, https: u16, admin: u16, portal: u16, data: &str) {
        let config = format!(
            r#"[server]
https_listen = "[::]:{https}"
admin_listen = "127.0.0.1:{admin}"
admin_socket = "{data}/admin.sock"
shutdown_grace = "2s"
upstream_connect_timeout = "1s"
{extra}

[[server.certificates]]
hosts = [{hosts}]
cert = "tls/server.pem"
key = "tls/server.key"

[policies]
dir = "policies"

[data]
dir = "{data}"

[ca]
dir = "ca"

[portal]
listen = "127.0.0.1:{portal}"

{sections}
"#,
            extra = self.extra_server_config,
            sections = self.extra_sections,
            hosts = self
                .hosts
                .iter()
                .map(|h| format!("{h:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        std::fs::write(self.path(file), config).unwrap();
    }

    /// A further `certgate serve` of this deployment with its own ports and data directory.
    pub fn add_instance(&self, name: &str) -> Instance {
        let instance = Instance {
            https: free_port(),
            admin: free_port(),
            config: self
                .path(&format!("{name}.toml"))
                .to_str()
                .unwrap()
                .to_owned(),
            log: self.path(&format!("{name}.log")),
            process: None,
        };
        let portal = free_port();
        self.write_config_for(
            &format!("{name}.toml"),
            instance.https,
            instance.admin,
            portal,
            &format!("data-{name}"),
        );
        instance
    }

    pub fn config(&self) -> String {
        self.path("certgate.toml").to_str().unwrap().to_owned()
    }

    /// Starts the demo upstream (once) and the gateway, and waits until both serve.
    pub fn start(&mut self) {
        if self.app.is_none() {
            let listen = format!("127.0.0.1:{}", self.app_port);
            self.app = Some(Process::spawn(
                &["demo-upstream", "--listen", &listen],
                self.path("app.log"),
            ));
            let port = self.app_port;
            assert!(
                eventually(Duration::from_secs(10), || TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "demo upstream did not start"
            );
        }
        let config = self.config();
        let log = self.path("gateway.log");
        let gateway = Process::spawn_with_env(&["serve", "--config", &config], log, &self.env);
        let (admin, https) = (self.admin, self.https);
        let up = eventually(Duration::from_secs(15), || {
            matches!(http_get(admin, "/readyz"), Some((200, _)))
                && TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
        assert!(up, "gateway did not become ready:\n{}", gateway.log_text());
        self.gateway = Some(gateway);
    }

    /// Stops the gateway (not the upstream); returns whether it exited within `within`.
    pub fn stop_gateway(&mut self, within: Duration) -> bool {
        self.gateway.take().is_none_or(|mut g| g.stop(within))
    }

    pub fn gateway(&self) -> &Process {
        self.gateway.as_ref().expect("gateway running")
    }

    /// `certgate device revoke --serial` of `cert` against the running gateway.
    pub fn revoke_serial(&self, cert: &ClientCert) -> Output {
        certgate(&[
            "device",
            "revoke",
            "--config",
            &self.config(),
            "--serial",
            &cert.serial,
        ])
    }

    /// Issues a client certificate for `org`/`user` with `certgate ca issue-client`.
    pub fn issue_client(&self, org: &str, user: &str, lifetime: &str) -> ClientCert {
        self.issue_client_from(&self.path("ca"), org, user, lifetime)
    }

    pub fn issue_client_from(
        &self,
        ca: &Path,
        org: &str,
        user: &str,
        lifetime: &str,
    ) -> ClientCert {
        let name = format!("{org}-{user}-{}", free_port());
        let prefix = self.path("clients").join(&name);
        let out = certgate_ok(&[
            "ca",
            "issue-client",
            "--dir",
            ca.to_str().unwrap(),
            "--org",
            org,
            "--user",
            user,
            "--lifetime",
            lifetime,
            "--out",
            prefix.to_str().unwrap(),
        ]);
        let serial = out
            .lines()
            .find_map(|l| l.strip_prefix("serial "))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_owned();
        let device = out
            .lines()
            .find_map(|l| l.strip_prefix("device "))
            .and_then(|l| l.split(' ').next())
            .unwrap()
            .to_owned();
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", prefix.display()));
        ClientCert {
            cert: with(".pem"),
            key: with(".key"),
            serial,
            device,
        }
    }

    /// curl to `https://HOST:PORT PATH` resolved to `addr`, with extra curl `args`.
    pub fn curl(&self, host: &str, addr: &str, path: &str, args: &[&str]) -> Response {
        self.curl_port(self.https, host, addr, path, args)
    }

    /// The status of `GET /` on `host` at the HTTPS port `https`, presenting `cert`.
    pub fn status_with_cert(&self, https: u16, host: &str, cert: &ClientCert) -> u16 {
        let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
        self.curl_port(https, host, "127.0.0.1", "/", &["--cert", c, "--key", k])
            .status
    }

    /// The same against the HTTPS port `https` (another instance).
    pub fn curl_port(
        &self,
        https: u16,
        host: &str,
        addr: &str,
        path: &str,
        args: &[&str],
    ) -> Response {
        let work = tempfile::tempdir().unwrap();
        let headers = work.path().join("h");
        let body = work.path().join("b");
        let resolve_addr = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_owned()
        };
        let url = format!("https://{host}:{https}{path}");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.path("ca/root.pem"))
            .arg("--resolve")
            .arg(format!("{host}:{https}:{resolve_addr}"))
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(url)
            .output()
            .expect("run curl");
        Response {
            status: String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            headers: std::fs::read_to_string(&headers).unwrap_or_default(),
            body: std::fs::read_to_string(&body).unwrap_or_default(),
            exit: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A metric line's value from `/metrics`, e.g. `certgate_requests_total{decision="allowed_ip",org="noord"}`.
    pub fn metric(&self, series: &str) -> f64 {
        metric_at(self.admin, series)
    }
}

/// A metric line's value from the admin listener on `admin`.
pub fn metric_at(admin: u16, series: &str) -> f64 {
    let (_, body) = http_get(admin, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The serial of the certificate a TLS server presents for `sni`, via `openssl s_client`.
pub fn served_certificate_serial(port: u16, sni: &str) -> String {
    served_certificate(port, sni, &["-serial"])
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// What `openssl x509 -noout FIELDS` (`-serial`, `-issuer`, `-enddate`…) prints of the
/// certificate a TLS server presents for `sni`, via `openssl s_client`; empty when none.
pub fn served_certificate(port: u16, sni: &str, fields: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            sni,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(fields)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&output.stdout)
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A TLS connection to the gateway from `source` (a loopback address), optionally sending
/// `preface` (a PROXY header) before TLS and presenting `client` = (certificate, key) — which
/// need not belong together, to test that the gateway checks possession of the key.
pub async fn tls_connect(
    d: &Deployment,
    host: &str,
    source: &str,
    preface: &[u8],
    client: Option<(&Path, &Path)>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(d.path("ca/root.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let signing = provider
                .key_provider
                .load_private_key(PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap();
            let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing));
            builder.with_client_cert_resolver(Arc::new(AlwaysPresent(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = socket
        .connect(format!("127.0.0.1:{}", d.https).parse().unwrap())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.write_all(preface)
        .await
        .map_err(|e| format!("preface: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from(host.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// GET `path` over an established connection with `Connection: close`; the whole response.
pub async fn http1_get(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    host: &str,
    path: &str,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Writes `request` as it is and reads until the gateway closes the connection or `within`
/// passes; what was read, which may be empty.
pub async fn http1_raw(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: &[u8],
    within: Duration,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(within, tls.read_to_end(&mut response)).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Presents the given certificate and key, whether or not they belong together.
#[derive(Debug)]
struct AlwaysPresent(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for AlwaysPresent {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(std::sync::Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A second (third…) gateway process of a deployment.
pub struct Instance {
    pub https: u16,
    pub admin: u16,
    pub config: String,
    pub log: PathBuf,
    pub process: Option<Process>,
}

impl Instance {
    pub fn start(&mut self) {
        let gateway = Process::spawn(&["serve", "--config", &self.config], self.log.clone());
        let (admin, https) = (self.admin, self.https);
        let up = eventually(Duration::from_secs(15), || {
            matches!(http_get(admin, "/readyz"), Some((200, _)))
                && TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
        assert!(up, "instance did not become ready:\n{}", gateway.log_text());
        self.process = Some(gateway);
    }
}

/// A scratch redis-server on a free port, never the machine's shared one. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (make test installs it)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server did not start"
        );
    }

    /// SIGKILL: no goodbye to the clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
