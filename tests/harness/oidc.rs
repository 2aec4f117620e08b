//! OpenID Connect providers for the single sign-on tests, each a Node process on a free port:
//! `OidcProvider` is panva's certified `oidc-provider` (`tests/oidc/provider.mjs`), and
//! `ForgeProvider` (`tests/oidc/forge.mjs`) issues the malformed or misdirected ID tokens a test
//! asks for. Both re-read a JSON config on every request; the harness rewrites it as tests change
//! clients and accounts. `make test` installs the npm packages (`npm ci --prefix tests/oidc`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::{eventually, free_port, http_get};

/// oidc-provider at `http://127.0.0.1:<port>`: authorization code flow with PKCE (S256) required,
/// `client_secret_basic` and `client_secret_post`, scopes `openid email profile`, every claim in
/// the ID token. Its sign-in page (`/interaction/<uid>`) has a `login` field, a "Sign in" and a
/// "Cancel" button, and no password; there is no consent screen. Like a real provider it keeps a
/// session: a browser that signed in once is answered at once until `sign_out_everyone`.
/// Stopped when dropped.
pub struct OidcProvider {
    node: NodeProvider,
}

impl OidcProvider {
    /// Starts the provider with no clients and no accounts, and waits until discovery answers.
    pub fn start() -> OidcProvider {
        let packages = scripts_dir().join("node_modules/oidc-provider");
        assert!(
            packages.is_dir(),
            "{} is missing: run `npm ci --prefix tests/oidc` (make test does)",
            packages.display()
        );
        OidcProvider {
            node: NodeProvider::start("provider.mjs", json!({ "clients": [], "accounts": {} })),
        }
    }

    /// `http://127.0.0.1:<port>`, as in the discovery document and every ID token's `iss`.
    pub fn issuer(&self) -> String {
        self.node.issuer()
    }

    /// Registers a confidential client, or replaces the one with that id.
    pub fn add_client(&self, id: &str, secret: &str, redirect_uri: &str) {
        self.node.add_client(id, secret, redirect_uri);
    }

    /// Adds or replaces the account signed in by typing `login` on the sign-in page. `claims`
    /// is what its ID token carries — `sub` (default: `login`), `email`, `email_verified`,
    /// `name`, and any other claim such as `hd` or `oid` — except `amr`, a list the sign-in
    /// reports as the authentication methods, which oidc-provider puts into the ID token as given.
    pub fn set_account(&self, login: &str, claims: Value) {
        self.node
            .update(|config| config["accounts"][login] = claims);
    }

    /// Switches to a brand-new RS256 signing key and returns its `kid`. The JWKS then lists
    /// only the new key, and every ID token from now on is signed with it.
    pub fn rotate_keys(&self) -> String {
        let (status, body) = http_post(self.node.port, "/__test/rotate", "")
            .unwrap_or_else(|| panic!("rotate: no answer\n{}", self.log_text()));
        assert_eq!(status, 200, "rotate: {body}\n{}", self.log_text());
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["kid"].as_str().unwrap().to_owned()
    }

    /// Ends every session at the provider, so the next authorization request shows the sign-in
    /// page again instead of answering at once for whoever signed in last in that browser.
    pub fn sign_out_everyone(&self) {
        let (status, body) = http_post(self.node.port, "/__test/sign-out", "")
            .unwrap_or_else(|| panic!("sign-out: no answer\n{}", self.log_text()));
        assert_eq!(status, 204, "sign-out: {body}\n{}", self.log_text());
    }

    /// What the provider printed, including its errors (`grant.error: …`), for failure messages.
    pub fn log_text(&self) -> String {
        self.node.log_text()
    }
}

/// A provider that signs in nobody: its authorization endpoint redirects straight back with a
/// code, and its token endpoint — after checking the client secret, the redirect URI and the PKCE
/// verifier — returns an ID token signed with its own RS256 key (listed at its JWKS) whose claims
/// are `iss`, `sub`, `aud` (the client id), `exp` (now + 300 s), `iat`, the request's `nonce`,
/// `email` and `email_verified`, as overridden by `set_claims` and then by `next_token`.
/// Stopped when dropped.
pub struct ForgeProvider {
    node: NodeProvider,
}

impl ForgeProvider {
    /// Starts the forge with no clients, and waits until discovery answers.
    pub fn start() -> ForgeProvider {
        ForgeProvider {
            node: NodeProvider::start("forge.mjs", json!({ "clients": [], "claims": {} })),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        self.node.issuer()
    }

    /// Registers a confidential client, or replaces the one with that id.
    pub fn add_client(&self, id: &str, secret: &str, redirect_uri: &str) {
        self.node.add_client(id, secret, redirect_uri);
    }

    /// The claims of every token from now on, over the defaults (`sub` "forged-user", `email`
    /// "user@forge.example", `email_verified` true): the signed-in user, say.
    pub fn set_claims(&self, claims: Value) {
        self.node.update(|config| config["claims"] = claims);
    }

    /// Bends the next token issued, and only that one:
    /// `{"claims": {"aud": "someone-else", "exp": 1, "nonce": null, …}` (a `null` claim is left
    /// out), `"kid": "unknown-kid"` (the header's kid), `"sign_with_other_key": true` (a key the
    /// JWKS does not list), `"alg": "none"` (unsigned) or `"alg": "HS256"` (HMAC with the client
    /// secret)`}`. A token request that fails leaves the spec for the next one.
    pub fn next_token(&self, spec: Value) {
        let (status, body) = http_post(self.node.port, "/__test/next", &spec.to_string())
            .unwrap_or_else(|| panic!("next_token: no answer\n{}", self.log_text()));
        assert_eq!(status, 204, "next_token: {body}\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        self.node.log_text()
    }
}

/// `tests/oidc`: the providers' scripts and their `node_modules`.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `node <script> <config.json> <port>`, its config and its log.
struct NodeProvider {
    port: u16,
    dir: tempfile::TempDir,
    /// What the config file holds; every change rewrites the whole file.
    config: Mutex<Value>,
    child: Child,
}

impl NodeProvider {
    fn start(script: &str, config: Value) -> NodeProvider {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        write_config(dir.path(), &config);
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = Command::new("node")
            .arg(scripts_dir().join(script))
            .arg(dir.path().join("config.json"))
            .arg(port.to_string())
            // Held open until the child is dropped: the script exits when it closes, so a test
            // process that dies without running destructors leaves no provider behind.
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node (make test installs Node.js)");
        let mut node = NodeProvider {
            port,
            dir,
            config: Mutex::new(config),
            child,
        };
        // Loading oidc-provider's module graph took over 15 s once while five providers and
        // Chromium started at the same time on two cores: a bound, not a timing.
        let up = eventually(Duration::from_secs(60), || {
            matches!(node.child.try_wait(), Ok(None))
                && matches!(
                    http_get(port, "/.well-known/openid-configuration"),
                    Some((200, _))
                )
        });
        assert!(up, "{script} did not start:\n{}", node.log_text());
        node
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn add_client(&self, id: &str, secret: &str, redirect_uri: &str) {
        self.update(|config| {
            let clients = config["clients"].as_array_mut().unwrap();
            clients.retain(|client| client["client_id"] != id);
            clients.push(json!({
                "client_id": id,
                "client_secret": secret,
                "redirect_uris": [redirect_uri],
            }));
        });
    }

    fn update(&self, change: impl FnOnce(&mut Value)) {
        let mut config = self.config.lock();
        change(&mut config);
        write_config(self.dir.path(), &config);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Written beside and renamed into place, so the provider never reads half a file.
fn write_config(dir: &Path, config: &Value) {
    let partial = dir.join("config.json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    std::fs::rename(partial, dir.join("config.json")).unwrap();
}

/// A plain HTTP/1.0 POST of a JSON body; returns (status, body).
fn http_post(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
