//! Headless Chromium driven through WebDriver: a `chromedriver` child process on a free port, one
//! fantoccini session, and the few actions a sign-in test needs — open a page, fill a form, read
//! what the user sees, look at the cookies, take a screenshot, and sign in with a passkey on a
//! virtual authenticator.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{eventually, free_port};

/// Debian's `chromium` package (`make test` installs it with `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// The viewport a browser starts with, in CSS pixels; `Browser::set_viewport_size` changes it.
pub const DESKTOP: (u32, u32) = (1280, 800);
/// An ordinary phone's viewport in CSS pixels (iPhone 12 to 15).
pub const PHONE: (u32, u32) = (390, 844);

/// How long one WebDriver command may take before the test fails instead of hanging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `fill`, `click_button` and the like wait for their element to appear.
const ELEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `click_button` and `click_link` wait for the page they lead to.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Flags for every session. The gateway's certificate comes from the deployment's own CA, which
/// Chromium does not know: `--ignore-certificate-errors` (with WebDriver's `acceptInsecureCerts`)
/// accepts it, and the origin still counts as secure, so `Secure` and `__Host-` cookies are stored
/// and sent back (the `browser` tests check this). The resolver rule sends every `*.test` host to
/// loopback, so tests use the organisations' real host names.
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
    "--ignore-certificate-errors",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
];

/// A cookie of the current page as WebDriver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`.
    pub same_site: Option<String>,
    /// Unix seconds; `None` for a cookie that ends with the session.
    pub expires: Option<i64>,
}

/// A virtual authenticator in the browser (WebDriver's WebAuthn extension, W3C WebAuthn §11): a
/// passkey device that pages reach through `navigator.credentials` as they would a real one.
/// `Browser::add_virtual_authenticator` makes one; it lasts until removed or the browser stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAuthenticator {
    /// WebDriver's authenticator id.
    pub id: String,
}

/// A passkey (WebAuthn credential) stored in a virtual authenticator, as WebDriver reports it.
/// Ids, handles and keys are base64url, as WebDriver writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualCredential {
    /// The credential id a page sees as `PublicKeyCredential.id`.
    pub credential_id: String,
    /// A discoverable credential (resident key): the authenticator offers it without the site
    /// naming it first, as a passkey sign-in without a user name needs.
    pub is_resident: bool,
    /// The site (relying party) it belongs to, e.g. `noord.test`.
    pub rp_id: String,
    /// The site's `user.id` for the account; WebDriver gives it for discoverable credentials.
    pub user_handle: Option<String>,
    /// The private key, PKCS #8 DER.
    pub private_key: String,
    /// The signature counter: how many signatures the authenticator has made with it.
    pub sign_count: u64,
}

/// A headless Chromium with its own profile and its own chromedriver; both stop when dropped.
///
/// The methods are synchronous although fantoccini is async: the rest of the harness is
/// synchronous (processes, curl, the mail and SMS waits block), and a test reads best as one
/// script — open the page, fill in the address, wait for the mail, type the code — without
/// `.await` on every line. So the browser owns a single-threaded tokio runtime and runs each
/// command to completion on it. Use it from `#[test]`, not from inside `#[tokio::test]` (tokio
/// refuses to block inside a runtime). Every method panics with what went wrong, as the rest of
/// the harness does.
pub struct Browser {
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    driver: Child,
    /// chromedriver's port, and the WebDriver session on it, for the commands fantoccini lacks.
    driver_port: u16,
    session: String,
    /// The Chromium profile (`--user-data-dir`) and the chromedriver log.
    dir: tempfile::TempDir,
}

impl Browser {
    /// A browser whose `Accept-Language` is `language` (`"nl"`, `"en"`, or a list such as
    /// `"nl,en"`) and whose interface speaks its first entry, at `DESKTOP` size.
    pub fn start(language: &str) -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so dropping the browser can stop Chromium's processes too.
            .process_group(0)
            .spawn()
            .expect("chromedriver (make test installs chromium-driver)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut browser = Browser {
            client: None,
            runtime,
            driver,
            driver_port: port,
            session: String::new(),
            dir,
        };
        let ready = eventually(Duration::from_secs(10), || driver_ready(port));
        assert!(
            ready,
            "chromedriver did not start:\n{}",
            browser.driver_log()
        );

        let capabilities = browser.capabilities(language);
        let connected = browser.runtime.block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .await
        });
        match connected {
            Ok(Ok(client)) => browser.client = Some(client),
            Ok(Err(e)) => panic!("no Chromium session: {e}\n{}", browser.driver_log()),
            Err(_) => panic!("no Chromium session within {COMMAND_TIMEOUT:?}"),
        }
        browser.session = browser
            .run(
                "read the session id",
                |c| async move { c.session_id().await },
            )
            .expect("a WebDriver session id");
        browser.set_viewport_size(DESKTOP.0, DESKTOP.1);
        browser
    }

    fn capabilities(&self, language: &str) -> serde_json::Map<String, serde_json::Value> {
        let primary = language.split(',').next().unwrap_or(language).trim();
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        args.push(format!("--lang={primary}"));
        args.push(format!(
            "--user-data-dir={}",
            self.dir.path().join("profile").display()
        ));
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": { "pageLoad": 20_000, "script": 10_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": { "intl.accept_languages": language },
            },
        });
        match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object"),
        }
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn goto(&self, url: &str) {
        self.run(&format!("open {url}"), |c| async move { c.goto(url).await });
    }

    pub fn current_url(&self) -> String {
        self.run("read the URL", |c| async move { c.current_url().await })
            .to_string()
    }

    pub fn title(&self) -> String {
        self.run("read the title", |c| async move { c.title().await })
    }

    /// The text a user sees on the page (WebDriver's rendered text of `<body>`).
    pub fn page_text(&self) -> String {
        // A page a script is replacing (a form it sends) may go away between finding `<body>`
        // and reading it: read the next one.
        for _ in 0..40 {
            let client = self.client.as_ref().expect("a browser session");
            let read = self.runtime.block_on(async {
                tokio::time::timeout(COMMAND_TIMEOUT, async {
                    client.find(Locator::Css("body")).await?.text().await
                })
                .await
            });
            match read {
                Ok(Ok(text)) => return text,
                Ok(Err(e))
                    if e.to_string().contains("stale element")
                        || e.to_string().contains("no such element") =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Err(e)) => panic!(
                    "browser: could not read the page text on {}: {e}",
                    self.location()
                ),
                Err(_) => {
                    panic!("browser: could not read the page text within {COMMAND_TIMEOUT:?}")
                }
            }
        }
        panic!(
            "browser: the page kept changing while its text was read: {}",
            self.location()
        );
    }

    /// The current document as HTML.
    pub fn source(&self) -> String {
        self.run("read the page source", |c| async move { c.source().await })
    }

    /// Whether an element matches the CSS `selector` now (no waiting).
    pub fn has(&self, selector: &str) -> bool {
        !self
            .run(&format!("look for {selector}"), |c| async move {
                c.find_all(Locator::Css(selector)).await
            })
            .is_empty()
    }

    /// Types `value` into the field named `name`, replacing what it held.
    pub fn fill(&self, name: &str, value: &str) {
        let selector = by_name(name);
        self.run(&format!("fill {name:?}"), |c| async move {
            let field = wait_for(c, Locator::Css(&selector)).await?;
            field.clear().await?;
            field.send_keys(value).await
        });
    }

    /// Whether the first element matching the CSS `selector` is drawn on the page now (it
    /// exists, and neither it nor a parent is `display: none`).
    pub fn visible(&self, selector: &str) -> bool {
        let script = format!(
            "const e = document.querySelector({selector:?}); \
             return !!e && e.getClientRects().length > 0;"
        );
        self.execute(&script) == serde_json::Value::Bool(true)
    }

    /// What the field named `name` holds now, as the person sees it.
    pub fn value_of(&self, name: &str) -> String {
        let script = format!(
            "const f = document.querySelector({:?}); return f ? f.value : null;",
            by_name(name)
        );
        match self.execute(&script) {
            serde_json::Value::String(value) => value,
            other => panic!("no field named {name:?} on {}: {other}", self.current_url()),
        }
    }

    /// Ticks the checkbox named `name` (leaves it ticked if it is).
    pub fn check(&self, name: &str) {
        let selector = by_name(name);
        self.run(&format!("tick {name:?}"), |c| async move {
            let checkbox = wait_for(c, Locator::Css(&selector)).await?;
            if !checkbox.is_selected().await? {
                checkbox.click().await?;
            }
            Ok(())
        });
    }

    /// Chooses the option with value `value` in the `<select>` named `name`.
    pub fn select(&self, name: &str, value: &str) {
        let selector = by_name(name);
        self.run(&format!("select {value:?} in {name:?}"), |c| async move {
            let select = wait_for(c, Locator::Css(&selector)).await?;
            select.select_by_value(value).await
        });
    }

    /// Clicks the button whose visible text (or, for `<input type=submit>`, value) is `label`,
    /// as a user would, and waits until the page it leads to has loaded — also when that is the
    /// same URL again, such as a form shown anew with an error. For a button that stays on the
    /// page, use `click`.
    pub fn click_button(&self, label: &str) {
        let literal = xpath_literal(label);
        let xpath = format!(
            "//button[normalize-space(.)={literal}] | //input[(@type='submit' or @type='button') and @value={literal}]"
        );
        self.run(
            &format!("click the button {label:?} and load the next page"),
            |c| async move { click_and_wait_for_page(c, Locator::XPath(&xpath)).await },
        );
    }

    /// Follows the link whose text is `text` and waits until that page has loaded.
    pub fn click_link(&self, text: &str) {
        self.run(
            &format!("follow the link {text:?} and load its page"),
            |c| async move { click_and_wait_for_page(c, Locator::LinkText(text)).await },
        );
    }

    /// On the page of new recovery codes a first second factor ends on, keeps them and goes on
    /// where the sign-in was going; elsewhere does nothing.
    pub fn past_new_recovery_codes(&self) {
        if self.has("#recovery-codes") {
            self.run("continue past the new recovery codes", |c| async move {
                click_and_wait_for_page(c, Locator::Css("a.button.primary")).await
            });
        }
    }

    /// Clicks the first element matching the CSS `selector`, without waiting for anything after.
    pub fn click(&self, selector: &str) {
        self.run(&format!("click {selector}"), |c| async move {
            wait_for(c, Locator::Css(selector)).await?.click().await
        });
    }

    /// Waits until the page text contains `text`; panics with the page text after `within`.
    pub fn wait_for_text(&self, text: &str, within: Duration) {
        let found = eventually(within, || self.page_text().contains(text));
        assert!(
            found,
            "{text:?} did not appear on {} within {within:?}:\n{}",
            self.current_url(),
            self.page_text()
        );
    }

    /// Makes the page's viewport `width`×`height` CSS pixels, e.g. `PHONE` or `DESKTOP`: what CSS
    /// media queries and screenshots see. WebDriver sizes the window, and headless Chromium
    /// counts a browser frame around the page (143 pixels of height in Chromium 156), so this
    /// measures the frame and sizes the window again.
    pub fn set_viewport_size(&self, width: u32, height: u32) {
        let mut window = (i64::from(width), i64::from(height));
        let mut seen = (0, 0);
        for _ in 0..6 {
            let w = u32::try_from(window.0.max(100)).unwrap_or(width);
            let h = u32::try_from(window.1.max(100)).unwrap_or(height);
            self.set_window_size(w, h);
            // The new size reaches the page a moment later (longer on a loaded machine): read
            // it until two readings agree.
            seen = self.viewport();
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(50));
                let now = self.viewport();
                if now == seen {
                    break;
                }
                seen = now;
            }
            if seen == (width, height) {
                return;
            }
            // Grow the window by what the frame takes.
            window.0 += i64::from(width) - i64::from(seen.0);
            window.1 += i64::from(height) - i64::from(seen.1);
        }
        panic!("Chromium would not make the viewport {width}x{height}: it is {seen:?}");
    }

    fn set_window_size(&self, width: u32, height: u32) {
        self.run(&format!("resize to {width}x{height}"), |c| async move {
            c.set_window_size(width, height).await
        });
    }

    /// The viewport's size in CSS pixels, as the page sees it.
    pub fn viewport(&self) -> (u32, u32) {
        let size = self.execute("return [window.innerWidth, window.innerHeight];");
        let pixels =
            |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        (pixels(&size[0]), pixels(&size[1]))
    }

    /// Saves what the viewport shows as a PNG at `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) {
        let png = self.run("take a screenshot", |c| async move { c.screenshot().await });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// The cookies the browser would send to the current page, `HttpOnly` ones included.
    pub fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self.run(
            "read the cookies",
            |c| async move { c.get_all_cookies().await },
        );
        cookies
            .iter()
            .map(|cookie| BrowserCookie {
                name: cookie.name().to_owned(),
                value: cookie.value().to_owned(),
                domain: cookie.domain().map(str::to_owned),
                path: cookie.path().map(str::to_owned),
                secure: cookie.secure().unwrap_or(false),
                http_only: cookie.http_only().unwrap_or(false),
                same_site: cookie.same_site().map(|s| s.to_string()),
                expires: cookie.expires_datetime().map(|at| at.unix_timestamp()),
            })
            .collect()
    }

    /// The cookie `name` of the current page, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    /// Forgets the current site's cookies, as a user clearing them would.
    pub fn delete_cookies(&self) {
        self.run("delete the cookies", |c| async move {
            c.delete_all_cookies().await
        });
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn execute(&self, script: &str) -> serde_json::Value {
        self.run("run a script", |c| async move {
            c.execute(script, Vec::new()).await
        })
    }

    /// Plugs in a virtual passkey device like a phone's or laptop's built-in fingerprint or face
    /// sensor: a CTAP2 platform authenticator (`internal` transport) that stores discoverable
    /// credentials, verifies the user — always successfully, until `set_user_verified` says
    /// otherwise — and confirms presence without anyone touching it. Pages' `create` and `get`
    /// calls go to it from now on.
    pub fn add_virtual_authenticator(&self) -> VirtualAuthenticator {
        let options = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        let id = self.session_command(
            "add a virtual authenticator",
            "POST",
            "webauthn/authenticator",
            Some(&options),
        );
        match id {
            serde_json::Value::String(id) => VirtualAuthenticator { id },
            other => panic!("browser: chromedriver gave no authenticator id but {other}"),
        }
    }

    /// Unplugs `authenticator`, with the passkeys it holds.
    pub fn remove_virtual_authenticator(&self, authenticator: &VirtualAuthenticator) {
        self.session_command(
            "remove the virtual authenticator",
            "DELETE",
            &format!("webauthn/authenticator/{}", authenticator.id),
            None,
        );
    }

    /// The passkeys `authenticator` holds, with their signature counters.
    pub fn webauthn_credentials(
        &self,
        authenticator: &VirtualAuthenticator,
    ) -> Vec<VirtualCredential> {
        let credentials = self.session_command(
            "list the passkeys",
            "GET",
            &format!("webauthn/authenticator/{}/credentials", authenticator.id),
            None,
        );
        let Some(credentials) = credentials.as_array() else {
            panic!("browser: chromedriver listed no passkeys but {credentials}");
        };
        credentials.iter().map(virtual_credential).collect()
    }

    /// Stores `credential` in `authenticator` as if it had made it: to give a user a passkey
    /// without a registration, or a clone of one with a lower signature counter, as a copied
    /// authenticator would have.
    pub fn add_webauthn_credential(
        &self,
        authenticator: &VirtualAuthenticator,
        credential: &VirtualCredential,
    ) {
        let mut fields = serde_json::json!({
            "credentialId": credential.credential_id,
            "isResidentCredential": credential.is_resident,
            "rpId": credential.rp_id,
            "privateKey": credential.private_key,
            "signCount": credential.sign_count,
        });
        if let Some(handle) = &credential.user_handle {
            fields["userHandle"] = serde_json::Value::String(handle.clone());
        }
        self.session_command(
            "add a passkey",
            "POST",
            &format!("webauthn/authenticator/{}/credential", authenticator.id),
            Some(&fields),
        );
    }

    /// Deletes the passkey whose id is `credential_id` (base64url) from `authenticator`.
    pub fn remove_webauthn_credential(
        &self,
        authenticator: &VirtualAuthenticator,
        credential_id: &str,
    ) {
        self.session_command(
            &format!("remove the passkey {credential_id}"),
            "DELETE",
            &format!(
                "webauthn/authenticator/{}/credentials/{credential_id}",
                authenticator.id
            ),
            None,
        );
    }

    /// Deletes every passkey `authenticator` holds.
    pub fn remove_all_webauthn_credentials(&self, authenticator: &VirtualAuthenticator) {
        self.session_command(
            "remove all passkeys",
            "DELETE",
            &format!("webauthn/authenticator/{}/credentials", authenticator.id),
            None,
        );
    }

    /// Whether `authenticator`'s fingerprint or face check succeeds from now on: `false` is a
    /// finger or face it does not know, and a page that requires user verification then fails.
    pub fn set_user_verified(&self, authenticator: &VirtualAuthenticator, verified: bool) {
        self.session_command(
            &format!(
                "make user verification {}",
                if verified { "succeed" } else { "fail" }
            ),
            "POST",
            &format!("webauthn/authenticator/{}/uv", authenticator.id),
            Some(&serde_json::json!({ "isUserVerified": verified })),
        );
    }

    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Runs one WebDriver exchange to completion, failing the test with `what` if it fails or
    /// takes longer than `COMMAND_TIMEOUT`.
    fn run<'a, T, F>(&'a self, what: &str, command: impl FnOnce(&'a Client) -> F) -> T
    where
        F: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let client = self.client.as_ref().expect("a browser session");
        match self
            .runtime
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, command(client)).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => panic!("browser: could not {what} on {}: {e}", self.location()),
            Err(_) => panic!("browser: could not {what} within {COMMAND_TIMEOUT:?}"),
        }
    }

    /// Runs one WebDriver command that fantoccini has no method for (the WebAuthn extension):
    /// `method` on the session's `path` with the JSON `body`, giving the answer's `value`, and
    /// failing the test with `what` as `run` does. fantoccini's `issue_cmd` would carry such a
    /// command, but its command trait is written in the `url` and `http` crates' types, which
    /// this crate does not depend on; WebDriver's HTTP is simple enough to speak here.
    fn session_command(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let path = format!("/session/{}/{path}", self.session);
        match driver_request(self.driver_port, method, &path, body) {
            Ok((200..=299, mut answer)) => answer["value"].take(),
            Ok((status, answer)) => panic!(
                "browser: could not {what} on {}: chromedriver answered {status}: {}: {}",
                self.location(),
                answer["value"]["error"].as_str().unwrap_or("?"),
                answer["value"]["message"].as_str().unwrap_or("?"),
            ),
            Err(e) => panic!("browser: could not {what}: {e}"),
        }
    }

    /// The current URL for a failure message, without failing again.
    fn location(&self) -> String {
        let Some(client) = self.client.as_ref() else {
            return "no page".into();
        };
        let url = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), client.current_url()).await
        });
        match url {
            Ok(Ok(url)) => url.to_string(),
            _ => "an unknown page".into(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver stop Chromium and remove its temporary files;
        // the process group catches whatever is left if that fails.
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.close()).await
            });
        }
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let exited = eventually(Duration::from_secs(2), || {
            matches!(self.driver.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// Whether chromedriver on `port` answers `/status` with `"ready": true`. It refuses HTTP/1.0
/// (so not `http_get`) and keeps the connection open, so this reads only until it knows.
fn driver_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let (mut response, mut buffer) = (Vec::new(), [0; 1024]);
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        if text.contains("\"ready\":true") {
            return text.starts_with("HTTP/1.1 200");
        }
    }
}

/// One HTTP/1.1 exchange with chromedriver on `port`: `method` on `path` with a JSON `body`,
/// giving the status and the JSON answer. chromedriver keeps the connection open, so the answer
/// is read by its `Content-Length`.
fn driver_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let failed = |e: std::io::Error| format!("{method} {path} to chromedriver: {e}");
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(failed)?;
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .map_err(failed)?;
    stream
        .set_write_timeout(Some(COMMAND_TIMEOUT))
        .map_err(failed)?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    (&stream).write_all(request.as_bytes()).map_err(failed)?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(failed)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: chromedriver answered {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(failed)? == 0 {
            break;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut answer = Vec::new();
    match length {
        Some(length) => {
            answer.resize(length, 0);
            reader.read_exact(&mut answer).map_err(failed)?;
        }
        None => {
            reader.read_to_end(&mut answer).map_err(failed)?;
        }
    }
    let answer = serde_json::from_slice(&answer).map_err(|e| {
        format!(
            "{method} {path}: chromedriver answered {status} with no JSON ({e}): {}",
            String::from_utf8_lossy(&answer)
        )
    })?;
    Ok((status, answer))
}

/// A credential as WebDriver's WebAuthn extension writes it (`credentialId`, `rpId`, …).
fn virtual_credential(fields: &serde_json::Value) -> VirtualCredential {
    let text = |name: &str| match &fields[name] {
        serde_json::Value::String(value) => value.clone(),
        _ => panic!("browser: a passkey without {name}: {fields}"),
    };
    VirtualCredential {
        credential_id: text("credentialId"),
        is_resident: fields["isResidentCredential"].as_bool().unwrap_or(false),
        rp_id: text("rpId"),
        user_handle: fields["userHandle"].as_str().map(str::to_owned),
        private_key: text("privateKey"),
        sign_count: fields["signCount"].as_u64().unwrap_or(0),
    }
}

/// Clicks the element for `locator` and waits until another document has loaded. chromedriver
/// waits only for navigations that have started when its next command arrives, and a form's
/// submission may start later, so the old document is marked and the wait lasts until a
/// complete document without the mark is there.
async fn click_and_wait_for_page(
    client: &Client,
    locator: Locator<'_>,
) -> Result<(), fantoccini::error::CmdError> {
    let element = wait_for(client, locator).await?;
    client
        .execute("window.__certgateHarnessOldPage = true;", Vec::new())
        .await?;
    element.click().await?;
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    let new_page =
        "return window.__certgateHarnessOldPage !== true && document.readyState === 'complete';";
    loop {
        // While the old document unloads, scripts may fail; that only means "not yet".
        let loaded = client.execute(new_page, Vec::new()).await;
        if matches!(loaded, Ok(serde_json::Value::Bool(true))) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fantoccini::error::CmdError::WaitTimeout);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The first element for `locator`, waiting up to `ELEMENT_TIMEOUT` for it to appear.
async fn wait_for(
    client: &Client,
    locator: Locator<'_>,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    client
        .wait()
        .at_most(ELEMENT_TIMEOUT)
        .every(Duration::from_millis(50))
        .for_element(locator)
        .await
}

/// A CSS selector for the element named `name`.
fn by_name(name: &str) -> String {
    format!(
        "[name=\"{}\"]",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// `text` as an XPath string literal; XPath has no escapes, so a text with both kinds of quote
/// becomes a `concat()`.
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|part| format!("'{part}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpath_literals_survive_quotes() {
        assert_eq!(xpath_literal("Doorgaan"), "'Doorgaan'");
        assert_eq!(xpath_literal("Code's"), "\"Code's\"");
        assert_eq!(xpath_literal("a'b\"c"), "concat('a', \"'\", 'b\"c')");
    }

    #[test]
    fn names_are_quoted_in_selectors() {
        assert_eq!(by_name("email"), "[name=\"email\"]");
        assert_eq!(by_name("a\"b"), "[name=\"a\\\"b\"]");
    }

    /// A passkey ceremony against a real HTTPS site: registration and sign-in on a virtual
    /// authenticator, the passkey it then holds, a planted clone, a failed fingerprint check.
    #[test]
    fn passkeys_work_on_a_virtual_authenticator() {
        let site = PasskeySite::start();
        let browser = Browser::start("en");
        let authenticator = browser.add_virtual_authenticator();

        browser.goto(&site.url("/"));
        let outcome = passkey_outcome(&browser);
        let credentials = browser.webauthn_credentials(&authenticator);
        assert_eq!(credentials.len(), 1, "{credentials:?}");
        let passkey = credentials[0].clone();
        let id = passkey.credential_id.trim_end_matches('=').to_owned();
        assert_eq!(outcome, format!("registered {id}, signed in {id}"));
        assert!(passkey.is_resident, "{passkey:?}");
        assert_eq!(passkey.rp_id, "noord.test");
        // base64url of the page's user.id, "user-1".
        assert_eq!(passkey.user_handle.as_deref(), Some("dXNlci0x"));
        assert!(passkey.sign_count >= 1, "{passkey:?}");
        assert!(!passkey.private_key.is_empty());

        browser.remove_webauthn_credential(&authenticator, &passkey.credential_id);
        assert_eq!(browser.webauthn_credentials(&authenticator), Vec::new());

        // A clone from before the sign-in: the site sees the same passkey with a lower counter.
        let clone = VirtualCredential {
            sign_count: 0,
            ..passkey.clone()
        };
        browser.add_webauthn_credential(&authenticator, &clone);
        assert_eq!(browser.webauthn_credentials(&authenticator), vec![clone]);
        browser.goto(&site.url("/sign-in"));
        assert_eq!(passkey_outcome(&browser), format!("signed in {id}"));
        let counted = browser.webauthn_credentials(&authenticator);
        assert_eq!(counted.len(), 1, "{counted:?}");
        assert!(counted[0].sign_count >= 1, "{counted:?}");

        browser.set_user_verified(&authenticator, false);
        browser.goto(&site.url("/sign-in"));
        assert_eq!(passkey_outcome(&browser), "failed: NotAllowedError");
        browser.set_user_verified(&authenticator, true);
        browser.goto(&site.url("/sign-in"));
        assert_eq!(passkey_outcome(&browser), format!("signed in {id}"));

        browser.remove_all_webauthn_credentials(&authenticator);
        assert_eq!(browser.webauthn_credentials(&authenticator), Vec::new());
        browser.remove_virtual_authenticator(&authenticator);
    }

    /// What the passkey page reports once its ceremony has ended.
    fn passkey_outcome(browser: &Browser) -> String {
        let ended = eventually(Duration::from_secs(15), || {
            !browser.page_text().contains("pending")
        });
        assert!(
            ended,
            "the passkey page did not finish: {}",
            browser.page_text()
        );
        browser.page_text().trim().to_owned()
    }

    /// The page both paths serve; the script must be a file of its own, not inline.
    const PASSKEY_PAGE: &str = "<!doctype html><title>Passkey</title>\
        <p id=outcome>pending</p><script src=/passkey.js></script>";

    /// On `/` it registers a discoverable passkey, then signs in with whichever passkey the
    /// authenticator offers (no `allowCredentials`); on `/sign-in` it only signs in. Both
    /// require user verification.
    const PASSKEY_SCRIPT: &str = r#"
const outcome = document.getElementById('outcome');
const challenge = () => crypto.getRandomValues(new Uint8Array(32));
(async () => {
  let report = '';
  if (location.pathname === '/') {
    const created = await navigator.credentials.create({ publicKey: {
      rp: { id: 'noord.test', name: 'Noord' },
      user: { id: new TextEncoder().encode('user-1'), name: 'anna@noord.test', displayName: 'Anna' },
      challenge: challenge(),
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      timeout: 10000,
    } });
    report = 'registered ' + created.id + ', ';
  }
  const used = await navigator.credentials.get({ publicKey: {
    rpId: 'noord.test', challenge: challenge(), userVerification: 'required', timeout: 10000,
  } });
  outcome.textContent = report + 'signed in ' + used.id;
})().catch((e) => { outcome.textContent = 'failed: ' + e.name; });
"#;

    /// `https://noord.test:PORT` (the browser maps `*.test` to loopback) serving the passkey
    /// page, with a self-signed certificate from `openssl`, until dropped.
    struct PasskeySite {
        port: u16,
        stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
        acceptor: Option<std::thread::JoinHandle<()>>,
    }

    impl PasskeySite {
        fn start() -> PasskeySite {
            use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
            use std::sync::{atomic::AtomicBool, atomic::Ordering, Arc};

            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let made = Command::new("openssl")
                .args(["req", "-x509", "-nodes", "-days", "1", "-newkey", "ec"])
                .args([
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-subj",
                    "/CN=noord.test",
                ])
                .args(["-addext", "subjectAltName=DNS:noord.test", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl");
            assert!(made.status.success(), "openssl: {made:?}");
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&key).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
            let config = Arc::new(config);

            let port = free_port();
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let stopping = Arc::new(AtomicBool::new(false));
            let stop = Arc::clone(&stopping);
            let acceptor = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let config = Arc::clone(&config);
                        std::thread::spawn(move || serve_page(stream, config));
                    }
                }
            });
            PasskeySite {
                port,
                stopping,
                acceptor: Some(acceptor),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("https://noord.test:{}{path}", self.port)
        }
    }

    impl Drop for PasskeySite {
        fn drop(&mut self) {
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // The acceptor blocks in accept(): a connection wakes it up to see the flag.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }

    /// Answers one request on one TLS connection, then closes it.
    fn serve_page(stream: TcpStream, config: std::sync::Arc<rustls::ServerConfig>) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Ok(connection) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tls = BufReader::new(rustls::StreamOwned::new(connection, stream));
        let mut request_line = String::new();
        if tls.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            match tls.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) if header.trim().is_empty() => break,
                Ok(_) => {}
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (status, content_type, body) = match path {
            "/" | "/sign-in" => ("200 OK", "text/html; charset=utf-8", PASSKEY_PAGE),
            "/passkey.js" => ("200 OK", "text/javascript; charset=utf-8", PASSKEY_SCRIPT),
            _ => ("404 Not Found", "text/plain", "not found"),
        };
        let tls = tls.get_mut();
        let _ = write!(
            tls,
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}
