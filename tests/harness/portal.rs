//! A deployment with the portal's real peers (an SMTP server, an SMS receiver), accounts made
//! with the CLI, and a curl client with a cookie jar for the sign-in steps a test does not need
//! a browser for.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{certgate_ok, Deployment, MailSink, Org, Response, SmsReceiver};

/// The bearer token the SMS provider expects (from `sms.token_file`).
pub const SMS_TOKEN: &str = "sms-provider-token-0123456789";

/// The gateway with `orgs`, SMTP and SMS wired up, running.
pub struct PortalWorld {
    pub d: Deployment,
    pub mail: MailSink,
    pub sms: SmsReceiver,
}

/// An account to create.
pub struct NewUser<'a> {
    pub org: &'a str,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub mobile: Option<&'a str>,
    pub group: bool,
    pub roles: &'a [&'a str],
    pub password: &'a str,
}

impl<'a> NewUser<'a> {
    pub fn personal(org: &'a str, username: &'a str, password: &'a str) -> Self {
        NewUser {
            org,
            username,
            email: Some(username),
            mobile: None,
            group: false,
            roles: &[],
            password,
        }
    }
}

impl PortalWorld {
    /// Starts the deployment; `extra_sections` is appended to the config (`[database]`, …).
    pub fn start(orgs: &[Org], extra_sections: &str) -> PortalWorld {
        Self::start_with(orgs, extra_sections, |_| {})
    }

    /// Like [`PortalWorld::start`], with `prepare` run on the deployment before it starts
    /// (files a policy names, say).
    pub fn start_with(
        orgs: &[Org],
        extra_sections: &str,
        prepare: impl FnOnce(&Deployment),
    ) -> PortalWorld {
        let mail = MailSink::start();
        let mail_options = format!("smtp_url = \"{}\"\n", mail.url());
        Self::start_all(orgs, mail, &mail_options, &[], extra_sections, prepare)
    }

    /// With `mail` as the SMTP server, `mail_options` as the `[mail]` lines other than `from`
    /// (`smtp_url`, `starttls`), and `env` added to the gateway's environment.
    pub fn start_with_mail(
        orgs: &[Org],
        mail: MailSink,
        mail_options: &str,
        env: &[(&str, &str)],
    ) -> PortalWorld {
        Self::start_all(orgs, mail, mail_options, env, "", |_| {})
    }

    fn start_all(
        orgs: &[Org],
        mail: MailSink,
        mail_options: &str,
        env: &[(&str, &str)],
        extra_sections: &str,
        prepare: impl FnOnce(&Deployment),
    ) -> PortalWorld {
        let sms = SmsReceiver::start();
        let mut d = Deployment::new(orgs);
        std::fs::write(d.path("sms-token"), format!("{SMS_TOKEN}\n")).unwrap();
        d.extra_sections = format!(
            "[mail]\n{mail_options}from = \"certgate <no-reply@certgate.test>\"\n\n[sms]\nkind = \"webhook\"\nurl = \"{}\"\ntoken_file = \"sms-token\"\n\n{extra_sections}",
            sms.url(),
        );
        d.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        d.write_config();
        prepare(&d);
        d.start();
        PortalWorld { d, mail, sms }
    }

    /// `https://HOST:PORT/PATH` of the gateway.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.d.https)
    }

    /// Creates an account through the running instance and sets its password.
    pub fn add_user(&self, user: &NewUser<'_>) {
        let config = self.d.config();
        let mut args = vec![
            "user",
            "add",
            "--config",
            &config,
            "--org",
            user.org,
            "--username",
            user.username,
            "--name",
            user.username,
        ];
        if let Some(email) = user.email {
            args.extend(["--email", email]);
        }
        if let Some(mobile) = user.mobile {
            args.extend(["--mobile", mobile]);
        }
        if user.group {
            args.push("--group");
        }
        for role in user.roles {
            args.extend(["--role", role]);
        }
        certgate_ok(&args);
        self.set_password(user.org, user.username, user.password);
    }

    /// `certgate user set-password` through the running instance, the password on stdin.
    pub fn set_password(&self, org: &str, username: &str, password: &str) {
        let config = self.d.config();
        let mut child = Command::new(crate::certgate_bin())
            .args([
                "user",
                "set-password",
                "--config",
                &config,
                "--org",
                org,
                "--user",
                username,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "set-password failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The account's devices as `certgate device list --json` reports them.
    pub fn devices(&self, org: &str, user: &str) -> Vec<serde_json::Value> {
        let config = self.d.config();
        let out = certgate_ok(&[
            "device", "list", "--config", &config, "--org", org, "--user", user, "--json",
        ]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    }

    /// A curl client with its own cookie jar, connecting from `addr` (e.g. `127.0.0.2`).
    pub fn client(&self, host: &str, addr: &str) -> CurlClient<'_> {
        CurlClient {
            world: self,
            host: host.to_owned(),
            addr: addr.to_owned(),
            jar: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    /// The six-digit code in the next sign-in code mail to `to` (notices are skipped).
    pub fn mailed_code(&self, to: &str) -> String {
        loop {
            let mail = self.mail.wait_for(to, Duration::from_secs(10));
            if mail.subject.contains("code") {
                return six_digits(&mail.body_text)
                    .unwrap_or_else(|| panic!("no code in {:?}", mail.body_text));
            }
        }
    }

    /// The next mail to `to` whose subject contains `subject`.
    pub fn mail_about(&self, to: &str, subject: &str) -> crate::Mail {
        loop {
            let mail = self.mail.wait_for(to, Duration::from_secs(10));
            if mail.subject.contains(subject) {
                return mail;
            }
        }
    }
}

/// The first run of exactly six digits in `text`.
pub fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

/// The current TOTP code for a base32 `secret`, from oathtool (an independent implementation).
pub fn oathtool(secret: &str) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret])
        .output()
        .expect("oathtool (make test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The value of `name="csrf"` in a page.
pub fn csrf_of(page: &str) -> String {
    attribute_after(page, r#"name="csrf" value=""#).expect("a CSRF token in the page")
}

/// The text after `marker` up to the next `"`.
pub fn attribute_after(page: &str, marker: &str) -> Option<String> {
    let start = page.find(marker)? + marker.len();
    page[start..].split('"').next().map(str::to_owned)
}

/// curl with a cookie jar: the portal's forms without a browser.
pub struct CurlClient<'a> {
    world: &'a PortalWorld,
    host: String,
    addr: String,
    jar: tempfile::NamedTempFile,
}

impl CurlClient<'_> {
    fn jar(&self) -> String {
        self.jar.path().to_str().unwrap().to_owned()
    }

    /// The same browser (a copy of its cookies) on another network, at `addr`.
    pub fn same_browser_at(&self, addr: &str) -> Self {
        let jar = tempfile::NamedTempFile::new().unwrap();
        std::fs::copy(self.jar.path(), jar.path()).unwrap();
        CurlClient {
            world: self.world,
            host: self.host.clone(),
            addr: addr.to_owned(),
            jar,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        let jar = self.jar();
        self.world.d.curl(
            &self.host,
            "127.0.0.1",
            path,
            &[
                "--interface",
                &self.addr,
                "-c",
                &jar,
                "-b",
                &jar,
                "-H",
                "Accept: text/html",
            ],
        )
    }

    /// A request as a script would send it (no `Accept: text/html`): the app answers JSON,
    /// and certgate 401 rather than a redirect.
    pub fn api(&self, path: &str) -> Response {
        let jar = self.jar();
        self.world.d.curl(
            &self.host,
            "127.0.0.1",
            path,
            &["--interface", &self.addr, "-c", &jar, "-b", &jar],
        )
    }

    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.post_with(path, fields, &[])
    }

    /// Opens the sign-in page (with `return_to`) and posts the password; the answer to the post.
    pub fn sign_in(&self, return_to: &str, username: &str, password: &str) -> Response {
        let page = self.get(&format!("/.certgate/login?return_to={return_to}"));
        assert_eq!(page.status, 200, "{}", page.body);
        self.post(
            "/.certgate/login",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("username", username),
                ("password", password),
            ],
        )
    }

    /// Password, then a code from the authenticator app holding `secret` (oathtool); the answer
    /// to the code, normally a 303 to `return_to`.
    pub fn sign_in_with_authenticator(
        &self,
        return_to: &str,
        username: &str,
        password: &str,
        secret: &str,
    ) -> Response {
        let answer = self.sign_in(return_to, username, password);
        assert_eq!(answer.status, 303, "{}", answer.body);
        let page = self.get("/.certgate/mfa");
        assert!(
            page.body.contains("from your authenticator app"),
            "{}",
            page.body
        );
        self.post(
            "/.certgate/mfa/code",
            &[("csrf", &csrf_of(&page.body)), ("code", &oathtool(secret))],
        )
    }

    /// Downloads `path` into `to` (binary); the status.
    pub fn download(&self, path: &str, to: &std::path::Path) -> u16 {
        let jar = self.jar();
        let url = format!("https://{}:{}{path}", self.host, self.world.d.https);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.world.d.path("ca/root.pem"))
            .arg("--resolve")
            .arg(format!("{}:{}:127.0.0.1", self.host, self.world.d.https))
            .args(["--interface", &self.addr, "-c", &jar, "-b", &jar, "-o"])
            .arg(to)
            .args(["-w", "%{http_code}"])
            .arg(url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Signs `user` in with `password` and an e-mail code from the SMTP sink (choosing e-mail
    /// first if no method is stored); the answer to the code, normally a 303 to `return_to`.
    pub fn sign_in_by_email(&self, return_to: &str, user: &str, password: &str) -> Response {
        self.email_code_sign_in(return_to, user, password, &[])
    }

    /// Like [`CurlClient::post`], with `extra` curl arguments (`-A`, a User-Agent, say).
    pub fn post_with(&self, path: &str, fields: &[(&str, &str)], extra: &[&str]) -> Response {
        let jar = self.jar();
        let mut args: Vec<String> = vec![
            "--interface".into(),
            self.addr.clone(),
            "-c".into(),
            jar.clone(),
            "-b".into(),
            jar,
            "-H".into(),
            "Accept: text/html".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        for (name, value) in fields {
            args.push("--data-urlencode".into());
            args.push(format!("{name}={value}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.world.d.curl(&self.host, "127.0.0.1", path, &args)
    }

    /// Like [`CurlClient::sign_in_by_email`], with the credential issued to a browser sending
    /// `user_agent`.
    pub fn sign_in_by_email_as(&self, user: &str, password: &str, user_agent: &str) -> Response {
        self.email_code_sign_in("/", user, password, &["-A", user_agent])
    }

    /// Password, then an e-mail code (choosing e-mail first when the account has no method);
    /// the code is posted with `extra` curl arguments.
    fn email_code_sign_in(
        &self,
        return_to: &str,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> Response {
        let answer = self.sign_in(return_to, user, password);
        assert_eq!(answer.status, 303, "{}", answer.body);
        let mut page = self.get("/.certgate/mfa");
        if page.body.contains(r#"action="/.certgate/mfa/choose""#) {
            self.post(
                "/.certgate/mfa/choose",
                &[("csrf", &csrf_of(&page.body)), ("method", "email")],
            );
            page = self.get("/.certgate/mfa");
        }
        assert!(page.body.contains("A code was sent to"), "{}", page.body);
        let answer = self.post_with(
            "/.certgate/mfa/code",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("code", &self.world.mailed_code(user)),
            ],
            extra,
        );
        // A first factor ends on new recovery codes, with the credential already set: the
        // person keeps them and presses "Continue", a link to where the sign-in was going.
        // Reported as that redirect, as a sign-in of an account that had codes answers.
        if answer.status == 200 && answer.body.contains(r#"id="recovery-codes""#) {
            let next = answer
                .body
                .split(r#"<a class="button primary" href=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("the codes page's Continue link")
                .replace("&amp;", "&");
            return Response {
                status: 303,
                headers: format!("location: {next}\r\n"),
                ..answer
            };
        }
        answer
    }

    /// The value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.jar.path()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with("# ") && !l.trim().is_empty())
            .map(|l| l.trim_start_matches("#HttpOnly_"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                (fields.len() == 7 && fields[5] == name).then(|| fields[6].to_owned())
            })
            .next_back()
    }
}

/// A new, empty database on the PostgreSQL server `make test` started
/// (`CERTGATE_TEST_POSTGRES_URL`), for one test; its URL. Other databases are never touched.
pub fn throwaway_postgres_database() -> String {
    let base = std::env::var("CERTGATE_TEST_POSTGRES_URL").expect(
        "CERTGATE_TEST_POSTGRES_URL must name a scratch PostgreSQL database (make test sets it)",
    );
    let name = format!("certgate_e2e_{}_{}", std::process::id(), crate::free_port());
    let out = Command::new("psql")
        .arg(&base)
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql (make test installs postgresql)");
    assert!(
        out.status.success(),
        "creating {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    format!("{server}/{name}")
}

impl PortalWorld {
    /// A JSON POST to the device API (`/.certgate/api/v1/device/…`) on `host`, with extra curl
    /// arguments (a client certificate, a bearer token).
    pub fn device_api(
        &self,
        host: &str,
        call: &str,
        body: &serde_json::Value,
        args: &[&str],
    ) -> Response {
        let body = body.to_string();
        let mut all = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
        ];
        all.extend_from_slice(args);
        self.d.curl(
            host,
            "127.0.0.1",
            &format!("/.certgate/api/v1/device/{call}"),
            &all,
        )
    }
}

/// A new key and a CSR for it, made by openssl: `kind` is an `openssl req -newkey` argument
/// (`ec` with P-256 is used for "ec"). Returns (key path, CSR PEM).
pub fn openssl_csr(
    dir: &std::path::Path,
    name: &str,
    kind: &str,
    subject: &str,
) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut args: Vec<String> = vec!["req".into(), "-new".into(), "-nodes".into()];
    match kind {
        "ec" => args.extend([
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:P-256".into(),
        ]),
        other => args.extend(["-newkey".into(), other.into()]),
    }
    args.extend([
        "-keyout".into(),
        key.display().to_string(),
        "-out".into(),
        csr.display().to_string(),
        "-subj".into(),
        subject.into(),
    ]);
    let out = Command::new("openssl").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, std::fs::read_to_string(csr).unwrap())
}
