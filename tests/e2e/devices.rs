//! Personal certificates for apps and agents: the device authorization flow, CSR checks,
//! renewal over mutual TLS, PKCS#12 downloads and revocation, against the real `certgate serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use certgate_e2e::{
    attribute_after, certgate_ok, csrf_of, oathtool, openssl_csr, settles, CurlClient, NewUser,
    Org, PortalWorld, Response,
};
use serde_json::json;

const NOORD: &str = "noord.test";
const ZUID: &str = "zuid.test";
const PASSWORD: &str = "correct horse battery";

fn org(id: &'static str, host: &str, mfa: &str) -> Org {
    let mut org = Org::new(id, host);
    org.policy_extra = format!(
        "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\nexempt_roles = [\"parent\"]\ndevice_flow = true\n{mfa}"
    );
    org
}

fn parent(w: &PortalWorld, user: &str) {
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", user, PASSWORD)
    });
}

/// `POST device/authorize`: (device code, user code).
fn start(w: &PortalWorld, host: &str, name: &str, trust: bool) -> (String, String) {
    let answer = w.device_api(
        host,
        "authorize",
        &json!({ "name": name, "trust": trust }),
        &[],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["interval"], 5);
    assert_eq!(
        body["verification_uri"].as_str().unwrap(),
        format!("https://{host}:{}/.certgate/device", w.d.https)
    );
    (
        body["device_code"].as_str().unwrap().to_owned(),
        body["user_code"].as_str().unwrap().to_owned(),
    )
}

fn poll(w: &PortalWorld, device_code: &str) -> Response {
    w.device_api(NOORD, "token", &json!({ "device_code": device_code }), &[])
}

/// Polls like a well-behaved client until the answer is not `authorization_pending`.
fn poll_until_decided(w: &PortalWorld, device_code: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = poll(w, device_code);
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if error != "authorization_pending" && error != "slow_down" {
            return answer;
        }
        assert!(Instant::now() < deadline, "never decided");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Opens the approval page for `user_code` in `client` and signs in as an exempt user when
/// asked; returns the approval page.
fn open_approval(client: &CurlClient<'_>, user_code: &str, user: &str) -> Response {
    let page = client.get("/.certgate/device");
    assert_eq!(page.status, 200, "{}", page.body);
    let entered = client.post(
        "/.certgate/device",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("user_code", &user_code.to_lowercase()),
        ],
    );
    assert_eq!(entered.status, 303, "{}", entered.body);
    let approval = client.get("/.certgate/device/approve");
    if approval.status == 303 {
        let signed_in = client.sign_in("%2F.certgate%2Fdevice%2Fapprove", user, PASSWORD);
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        return client.get("/.certgate/device/approve");
    }
    approval
}

/// Like [`open_approval`] for a user with e-mail codes: password, then the code from the mail.
fn open_approval_with_code(
    _w: &PortalWorld,
    client: &CurlClient<'_>,
    user_code: &str,
    user: &str,
) -> Response {
    let page = client.get("/.certgate/device");
    client.post(
        "/.certgate/device",
        &[("csrf", &csrf_of(&page.body)), ("user_code", user_code)],
    );
    let done = client.sign_in_by_email("%2F.certgate%2Fdevice%2Fapprove", user, PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);
    client.get("/.certgate/device/approve")
}

fn decide(client: &CurlClient<'_>, page: &Response, action: &str, trust: bool) -> Response {
    let code = attribute_after(&page.body, r#"name="code" value=""#).unwrap_or_default();
    let mut fields = vec![
        ("csrf", csrf_of(&page.body)),
        ("code", code),
        ("action", action.to_owned()),
    ];
    if trust {
        fields.push(("trust", "1".to_owned()));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.post("/.certgate/device/approve", &fields)
}

/// Sends `csr` with the enrolment token.
fn enrol(w: &PortalWorld, token: &str, csr: &str) -> Response {
    w.device_api(
        NOORD,
        "certificate",
        &json!({ "csr": csr }),
        &["-H", &format!("Authorization: Bearer {token}")],
    )
}

/// The whole flow for an exempt `user`: a certificate for a new P-256 key, written next to it.
/// Returns (key path, cert path, response body).
fn enrolled(
    w: &PortalWorld,
    user: &str,
    name: &str,
    trust: bool,
) -> (String, String, serde_json::Value) {
    let (device_code, user_code) = start(w, NOORD, name, trust);
    let client = w.client(NOORD, "127.0.0.1");
    let page = open_approval(&client, &user_code, user);
    assert!(decide(&client, &page, "approve", trust)
        .body
        .contains("The device is allowed"));
    let granted = poll_until_decided(w, &device_code);
    assert_eq!(granted.status, 200, "{}", granted.body);
    let token = granted.json()["enrolment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (key, csr) = openssl_csr(
        w.d.dir.path(),
        &format!("{name}-{}", certgate_e2e::free_port()),
        "ec",
        "/CN=ignored",
    );
    let issued = enrol(w, &token, &csr);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let body = issued.json();
    let cert = key.with_extension("pem");
    std::fs::write(
        &cert,
        format!(
            "{}{}",
            body["certificate"].as_str().unwrap(),
            body["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    (key.display().to_string(), cert.display().to_string(), body)
}

fn with_cert(w: &PortalWorld, host: &str, key: &str, cert: &str) -> Response {
    w.d.curl(host, "127.0.0.1", "/", &["--cert", cert, "--key", key])
}

fn subject_of(cert_pem: &str, dir: &std::path::Path) -> String {
    let path = dir.join(format!("subject-{}.pem", certgate_e2e::free_port()));
    std::fs::write(&path, cert_pem).unwrap();
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(&path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace(" = ", "=")
}

#[test]
fn a_device_enrols_after_approval_and_its_certificate_is_admitted_on_its_own_organisation_only() {
    let w = PortalWorld::start(&[org("noord", NOORD, ""), org("zuid", ZUID, "")], "");
    w.add_user(&NewUser::personal("noord", "ria@noord.test", PASSWORD));
    let (device_code, user_code) = start(&w, NOORD, "Ria's tablet\u{202e}gnp.exe", true);
    assert!(
        user_code.len() == 9 && user_code.as_bytes()[4] == b'-',
        "{user_code}"
    );
    assert_eq!(
        poll(&w, &device_code).json()["error"],
        "authorization_pending"
    );
    assert_eq!(
        poll(&w, &device_code).json()["error"],
        "slow_down",
        "polled at once again"
    );

    let client = w.client(NOORD, "127.0.0.1");
    let page = open_approval_with_code(&w, &client, &user_code, "ria@noord.test");
    assert!(
        page.body.contains("Ria&#39;s tabletgnp.exe") || page.body.contains("Ria's tabletgnp.exe"),
        "the name without its direction override: {}",
        page.body
    );
    assert!(page.body.contains("127.0.0.1"));
    assert!(page
        .body
        .contains("Only allow this if you started this yourself"));
    assert!(
        page.body.contains(r#"name="trust" value="1" checked"#),
        "trusted by default from the same address"
    );
    decide(&client, &page, "approve", true);

    std::thread::sleep(Duration::from_secs(5));
    let granted = poll(&w, &device_code);
    assert_eq!(granted.status, 200, "{}", granted.body);
    let token = granted.json()["enrolment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        poll(&w, &device_code).json()["error"],
        "invalid_grant",
        "an approval is used once"
    );

    // The CSR asks for someone else; the certificate names Ria and her device only.
    let (key, csr) = openssl_csr(w.d.dir.path(), "ria", "ec", "/CN=mallory@zuid.test/O=zuid");
    let issued = enrol(&w, &token, &csr);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let body = issued.json();
    let device = body["device_id"].as_str().unwrap().to_owned();
    let subject = subject_of(body["certificate"].as_str().unwrap(), w.d.dir.path());
    assert!(
        subject.contains("CN=ria@noord.test") && subject.contains("O=noord"),
        "{subject}"
    );
    assert!(
        subject.contains(&format!("urn:certgate:noord:{device}")),
        "{subject}"
    );
    assert!(!subject.contains("mallory"));
    let lifetime = body["not_after"].as_i64().unwrap() - unix_now();
    assert!(
        (7 * 86_400 - 60..=7 * 86_400).contains(&lifetime),
        "trusted: 7 days ({lifetime})"
    );
    assert_eq!(enrol(&w, &token, &csr).status, 401, "the token works once");

    let cert = w.d.path("ria.pem");
    std::fs::write(
        &cert,
        format!(
            "{}{}",
            body["certificate"].as_str().unwrap(),
            body["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    let (key, cert) = (key.display().to_string(), cert.display().to_string());
    let admitted = with_cert(&w, NOORD, &key, &cert);
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(
        admitted.upstream_header("x-certgate-auth").as_deref(),
        Some("certificate")
    );
    assert_eq!(
        admitted.upstream_header("x-certgate-user").as_deref(),
        Some("ria@noord.test")
    );
    assert_eq!(
        admitted.upstream_header("x-certgate-device").as_deref(),
        Some(device.as_str())
    );
    // openssl as the TLS client too.
    let mut s_client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", w.d.https),
            "-servername",
            NOORD,
        ])
        .args(["-cert", &cert, "-key", &key, "-CAfile"])
        .arg(w.d.path("ca/root.pem"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    s_client
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {NOORD}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let out = s_client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("ria@noord.test"), "{text}");
    // Another organisation's host does not take it.
    assert_eq!(with_cert(&w, ZUID, &key, &cert).status, 401);
    let devices = w.devices("noord", "ria@noord.test");
    let row = devices.iter().find(|d| d["id"] == device.as_str()).unwrap();
    assert_eq!(
        (row["kind"].as_str(), row["trust"].as_str()),
        (Some("certificate"), Some("trusted"))
    );
}

#[test]
fn certificate_requests_are_checked_and_a_bad_one_does_not_spend_the_approval() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    parent(&w, "sem@noord.test");
    let (device_code, user_code) = start(&w, NOORD, "laptop", false);
    let client = w.client(NOORD, "127.0.0.1");
    let page = open_approval(&client, &user_code, "sem@noord.test");
    decide(&client, &page, "approve", false);
    let token = poll_until_decided(&w, &device_code).json()["enrolment_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_, weak) = openssl_csr(w.d.dir.path(), "weak", "rsa:1024", "/CN=x");
    let refused = enrol(&w, &token, &weak);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_csr");
    assert!(
        refused.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("2048"),
        "{}",
        refused.body
    );

    // A request whose signature does not match its key.
    let (_, good) = openssl_csr(w.d.dir.path(), "good", "ec", "/CN=x");
    let der = pem_body(&good);
    let mut tampered = der.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 0x55;
    let forged = pem("CERTIFICATE REQUEST", &tampered);
    let refused = enrol(&w, &token, &forged);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.json()["error"], "invalid_csr");
    assert_eq!(
        enrol(&w, &token, "not a CSR").json()["error"],
        "invalid_csr"
    );

    let (_, rsa) = openssl_csr(w.d.dir.path(), "rsa", "rsa:2048", "/CN=x");
    let issued = enrol(&w, &token, &rsa);
    assert_eq!(
        issued.status, 200,
        "an RSA-2048 key is fine: {}",
        issued.body
    );
    let lifetime = issued.json()["not_after"].as_i64().unwrap() - unix_now();
    assert!(
        (12 * 3600 - 60..=12 * 3600).contains(&lifetime),
        "not trusted: the session lifetime"
    );
}

fn pem_body(pem: &str) -> Vec<u8> {
    use std::io::Read;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b64.as_bytes())
            .unwrap();
    }
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.wait().unwrap();
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w64")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(der).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        String::from_utf8_lossy(&out.stdout)
    )
}

fn renew(w: &PortalWorld, key: &str, cert: &str, name: &str) -> (Response, String) {
    let (new_key, csr) = openssl_csr(
        w.d.dir.path(),
        &format!("{name}-{}", certgate_e2e::free_port()),
        "ec",
        "/CN=x",
    );
    let answer = w.device_api(
        NOORD,
        "renew",
        &json!({ "csr": csr }),
        &["--cert", cert, "--key", key],
    );
    (answer, new_key.display().to_string())
}

#[test]
fn personal_renewal_rekeys_inside_the_window_and_never_past_it() {
    let w = PortalWorld::start(&[org("noord", NOORD, "session_lifetime = \"10s\"\n")], "");
    parent(&w, "tom@noord.test");
    let (key, cert, body) = enrolled(&w, "tom@noord.test", "phone", false);
    let window_end = body["not_after"].as_i64().unwrap();
    let (renewed, new_key) = renew(&w, &key, &cert, "phone");
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let again = renewed.json();
    assert_eq!(
        again["device_id"], body["device_id"],
        "the device keeps its id"
    );
    assert_eq!(
        again["not_after"].as_i64().unwrap(),
        window_end,
        "never past the window"
    );
    assert_ne!(again["serial"], body["serial"]);
    let new_cert = w.d.path("phone-renewed.pem");
    std::fs::write(
        &new_cert,
        format!(
            "{}{}",
            again["certificate"].as_str().unwrap(),
            again["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    assert_eq!(
        with_cert(&w, NOORD, &new_key, new_cert.to_str().unwrap()).status,
        200
    );

    // Past the window: the certificate is expired, renewal is refused, and a browser lands on
    // the portal.
    certgate_e2e::wait_until_unix(window_end + 1);
    let (refused, _) = renew(&w, &new_key, new_cert.to_str().unwrap(), "phone");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"], "renewal_refused");
    let browser = w.d.curl(
        NOORD,
        "127.0.0.1",
        "/",
        &[
            "--cert",
            new_cert.to_str().unwrap(),
            "--key",
            &new_key,
            "-H",
            "Accept: text/html",
        ],
    );
    assert_eq!(browser.status, 302);
    assert!(browser
        .header("location")
        .unwrap()
        .contains("/.certgate/login"));
}

/// A group account's tablet through the flow, with the authenticator enrolled by oathtool.
fn enrolled_group(w: &PortalWorld, user: &str, name: &str) -> (String, String) {
    let (device_code, user_code) = start(w, NOORD, name, false);
    let client = w.client(NOORD, "127.0.0.1");
    let page = client.get("/.certgate/device");
    client.post(
        "/.certgate/device",
        &[("csrf", &csrf_of(&page.body)), ("user_code", &user_code)],
    );
    assert_eq!(
        client
            .sign_in("%2F.certgate%2Fdevice%2Fapprove", user, PASSWORD)
            .status,
        303
    );
    let mfa = client.get("/.certgate/mfa");
    let secret = attribute_after(&mfa.body, r#"id="secret" class="secret">"#)
        .and_then(|s| s.split('<').next().map(str::to_owned))
        .unwrap()
        .replace(' ', "");
    let done = client.post(
        "/.certgate/mfa/enrol",
        &[("csrf", &csrf_of(&mfa.body)), ("code", &oathtool(&secret))],
    );
    assert_eq!(done.status, 200);
    let approval = client.get("/.certgate/device/approve");
    assert!(
        !approval.body.contains(r#"name="trust""#),
        "no trust choice for a shared tablet"
    );
    decide(&client, &approval, "approve", false);
    let granted = poll_until_decided(w, &device_code);
    let token = granted.json()["enrolment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (key, csr) = openssl_csr(w.d.dir.path(), name, "ec", "/CN=x");
    let issued = enrol(w, &token, &csr);
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!(issued.json()["renewal"], "group");
    let cert = key.with_extension("pem");
    let body = issued.json();
    std::fs::write(
        &cert,
        format!(
            "{}{}",
            body["certificate"].as_str().unwrap(),
            body["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    (key.display().to_string(), cert.display().to_string())
}

#[test]
fn a_group_tablet_renews_while_it_is_used_and_not_once_it_has_been_idle() {
    let w = PortalWorld::start(&[org("noord", NOORD, "group_idle_timeout = \"20s\"\n")], "");
    for user in ["groep-zon", "groep-maan"] {
        w.add_user(&NewUser {
            email: None,
            group: true,
            ..NewUser::personal("noord", user, PASSWORD)
        });
    }
    let used = enrolled_group(&w, "groep-zon", "used-tablet");
    let idle = enrolled_group(&w, "groep-maan", "idle-tablet");
    // The team uses one tablet a while after both were enrolled: its idle time runs from then.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        with_cert(&w, NOORD, &used.0, &used.1).status,
        200,
        "the team uses one tablet"
    );
    let (first_used, used_key) = renew(&w, &used.0, &used.1, "used");
    let (first_idle, idle_key) = renew(&w, &idle.0, &idle.1, "idle");
    assert_eq!(
        (first_used.status, first_idle.status),
        (200, 200),
        "both still within the idle time"
    );
    let used_until = first_used.json()["not_after"].as_i64().unwrap();
    let idle_until = first_idle.json()["not_after"].as_i64().unwrap();
    assert!(
        used_until >= idle_until + 5,
        "the used tablet lives 20 s from its use, the idle one from its enrolment: {used_until} {idle_until}"
    );
    let write = |name: &str, r: &Response| {
        let path = w.d.path(name);
        let body = r.json();
        std::fs::write(
            &path,
            format!(
                "{}{}",
                body["certificate"].as_str().unwrap(),
                body["chain"].as_str().unwrap()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let used_cert = write("used-1.pem", &first_used);
    let idle_cert = write("idle-1.pem", &first_idle);

    // Once the idle tablet's time is up, the used one still renews and the idle one does not.
    certgate_e2e::wait_until_unix(idle_until + 1);
    let (second_used, _) = renew(&w, &used_key, &used_cert, "used");
    assert_eq!(
        second_used.status, 200,
        "used within the idle time: {}",
        second_used.body
    );
    let (second_idle, _) = renew(&w, &idle_key, &idle_cert, "idle");
    assert_eq!(
        second_idle.status, 403,
        "not used for the idle time: {}",
        second_idle.body
    );
    assert_eq!(second_idle.json()["error"], "renewal_refused");
}

#[test]
fn pkcs12_bundles_open_with_openssl_and_admit_curl() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    // Staff (a parent is not offered certificates: see the devices page test below).
    w.add_user(&NewUser::personal("noord", "uma@noord.test", PASSWORD));
    let client = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        client
            .sign_in_by_email("/", "uma@noord.test", PASSWORD)
            .status,
        303
    );
    for (format, legacy) in [("modern", false), ("legacy", true)] {
        let account = client.get("/.certgate/account");
        assert_eq!(account.status, 200, "{}", account.body);
        assert!(
            account.body.contains("Make the certificate"),
            "{}",
            account.body
        );
        let mut fields = vec![("csrf", csrf_of(&account.body))];
        if legacy {
            fields.push(("format", "legacy".to_owned()));
        }
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = client.post("/.certgate/account/certificate", &fields);
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
        let password = attribute_after(&page.body, r#"id="pkcs12-password" class="secret">"#)
            .and_then(|s| s.split('<').next().map(str::to_owned))
            .unwrap();
        let link = attribute_after(&page.body, r#"<a class="button primary" href=""#).unwrap();
        let file = w.d.path(&format!("{format}.p12"));
        assert_eq!(client.download(&link, &file), 200);
        assert_eq!(
            client.download(&link, &w.d.path("again.p12")),
            410,
            "downloaded once"
        );
        // The link is the bundle's only key: the access log, which records paths, must not hold it.
        let id = link.rsplit_once("download=").map(|(_, id)| id).unwrap();
        assert_eq!(id.len(), 32, "{link}");
        let log = w.d.gateway().log_text();
        assert!(
            log.contains(r#""path":"/.certgate/account/certificate""#),
            "the downloads are in the access log"
        );
        assert!(!log.contains(id), "the download id is not logged");
        let open = |extra: &[&str]| {
            Command::new("openssl")
                .args(["pkcs12", "-noout", "-in"])
                .arg(&file)
                .arg("-passin")
                .arg(format!("pass:{password}"))
                .args(extra)
                .output()
                .unwrap()
                .status
                .success()
        };
        if legacy {
            assert!(open(&["-legacy"]), "the legacy bundle opens with -legacy");
        } else {
            assert!(open(&[]), "the modern bundle opens with OpenSSL 3 as is");
        }
        let admitted = w.d.curl(
            NOORD,
            "127.0.0.1",
            "/",
            &[
                "--cert-type",
                "P12",
                "--cert",
                &format!("{}:{password}", file.display()),
            ],
        );
        if !legacy {
            assert_eq!(admitted.status, 200, "{}", admitted.stderr);
            assert_eq!(
                admitted.upstream_header("x-certgate-auth").as_deref(),
                Some("certificate")
            );
            assert_eq!(
                admitted.upstream_header("x-certgate-user").as_deref(),
                Some("uma@noord.test")
            );
        }
    }
}

#[test]
fn a_revoked_device_is_refused_within_a_second_and_cannot_renew() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    parent(&w, "vera@noord.test");
    let first = enrolled(&w, "vera@noord.test", "first", false);
    let second = enrolled(&w, "vera@noord.test", "second", false);
    assert_eq!(with_cert(&w, NOORD, &first.0, &first.1).status, 200);

    // From her own device list.
    let client = w.client(NOORD, "127.0.0.1");
    assert_eq!(client.sign_in("/", "vera@noord.test", PASSWORD).status, 303);
    let account = client.get("/.certgate/account");
    let first_id = first.2["device_id"].as_str().unwrap();
    assert!(
        account.body.contains(&format!("device-{first_id}")),
        "{}",
        account.body
    );
    let revoked = client.post(
        "/.certgate/account/revoke",
        &[("csrf", &csrf_of(&account.body)), ("device", first_id)],
    );
    assert_eq!(revoked.status, 303);
    assert!(settles(
        || with_cert(&w, NOORD, &first.0, &first.1).status == 401
    ));
    assert_eq!(renew(&w, &first.0, &first.1, "first").0.status, 403);

    // With the CLI.
    let config = w.d.config();
    let second_id = second.2["device_id"].as_str().unwrap();
    certgate_ok(&[
        "device", "revoke", "--config", &config, "--org", "noord", "--device", second_id,
    ]);
    assert!(settles(|| with_cert(&w, NOORD, &second.0, &second.1)
        .status
        == 401));
    assert_eq!(renew(&w, &second.0, &second.1, "second").0.status, 403);
}

/// The id of the device a browser signed in as, from its account page.
fn this_browser(client: &CurlClient<'_>) -> String {
    let account = client.get("/.certgate/account");
    assert_eq!(account.status, 200, "{}", account.body);
    attribute_after(&account.body, r#"id="device-"#).unwrap()
}

#[test]
fn an_operators_revocation_reaches_the_portal_and_finds_the_account_by_e_mail() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        email: Some("j.devries@noord.test"),
        ..NewUser::personal("noord", "jdevries", PASSWORD)
    });
    let config = w.d.config();
    let revoke = |args: &[&str]| {
        let mut all = vec!["device", "revoke", "--config", &config];
        all.extend_from_slice(args);
        certgate_e2e::certgate(&all)
    };

    // One browser, revoked by its device id: the gateway and the portal both refuse it.
    let browser = w.client(NOORD, "127.0.0.1");
    assert_eq!(browser.sign_in("/", "jdevries", PASSWORD).status, 303);
    let browser_id = this_browser(&browser);
    // Not a device id: an error, not a revocation that matches nothing.
    let bad = revoke(&["--org", "noord", "--device", "tablet 1"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a device id"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // Pasted in capitals with a space: still this browser.
    let done = revoke(&[
        "--org",
        "noord",
        "--device",
        &format!("{} ", browser_id.to_uppercase()),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(settles(|| browser.get("/").status == 302));

    // A mistyped organisation is an error, not a revocation of nothing.
    let typo = revoke(&["--org", "nord", "--user", "jdevries"]);
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("no organisation"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );

    // Named by e-mail address: the account's certificate, browser and sign-ins all end.
    let laptop = enrolled(&w, "j.devries@noord.test", "laptop", false);
    assert_eq!(with_cert(&w, NOORD, &laptop.0, &laptop.1).status, 200);
    let second = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        second.sign_in("/", "j.devries@noord.test", PASSWORD).status,
        303
    );
    // Her device list shows the first browser ended.
    let account = second.get("/.certgate/account");
    assert!(
        account
            .body
            .contains(&format!(r#"class="device ended" id="device-{browser_id}""#)),
        "{}",
        account.body
    );
    // (Times are whole seconds: a sign-in in the revocation's own second counts as after it.)
    certgate_e2e::next_second();
    let done = revoke(&["--org", "noord", "--user", "J.deVries@noord.test"]);
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("revoked account jdevries of noord"), "{said}");
    assert!(settles(|| with_cert(&w, NOORD, &laptop.0, &laptop.1)
        .status
        == 401));
    assert_eq!(second.get("/.certgate/account").status, 303);
    assert_eq!(second.get("/").status, 302);
    // Signing in again works: the revocation covers what was issued until then.
    certgate_e2e::next_second();
    let third = w.client(NOORD, "127.0.0.1");
    assert_eq!(third.sign_in("/", "jdevries", PASSWORD).status, 303);
    assert_eq!(third.get("/.certgate/account").status, 200);
}

#[test]
fn device_flow_abuse_gets_clear_answers() {
    let mut off = Org::new("zuid", ZUID);
    off.policy_extra = "\n[mfa]\ndevice_flow = false\n".into();
    let w = PortalWorld::start(
        &[org("noord", NOORD, ""), off],
        "[limits]\ndevice_code_lifetime = \"3s\"\n",
    );
    // Off for an organisation: the API and the page say so.
    let disabled = w.device_api(ZUID, "authorize", &json!({}), &[]);
    assert_eq!(disabled.status, 404);
    assert_eq!(disabled.json()["error"], "device_flow_disabled");
    assert_eq!(
        w.client(ZUID, "127.0.0.1").get("/.certgate/device").status,
        404
    );

    assert_eq!(poll(&w, "no-such-code").json()["error"], "invalid_grant");
    let (device_code, _) = start(&w, NOORD, "slow", false);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(poll(&w, &device_code).json()["error"], "expired_token");

    // Guessing user codes is limited per address.
    let guesser = w.client(NOORD, "127.0.0.3");
    let page = guesser.get("/.certgate/device");
    let csrf = csrf_of(&page.body);
    for _ in 0..10 {
        let r = guesser.post(
            "/.certgate/device",
            &[("csrf", &csrf), ("user_code", "BCDF-GHJK")],
        );
        assert_eq!(r.status, 400);
        assert!(r.body.contains("not known or no longer valid"));
    }
    let stopped = guesser.post(
        "/.certgate/device",
        &[("csrf", &csrf), ("user_code", "BCDF-GHJK")],
    );
    assert_eq!(stopped.status, 429);
    assert!(w.d.metric(r#"certgate_rate_limited_total{kind="device_code"}"#) >= 1.0);
}

#[test]
fn an_approval_decides_the_request_its_page_showed() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    parent(&w, "pia@noord.test");
    let (first_device, first_code) = start(&w, NOORD, "first-tablet", false);
    let (second_device, second_code) = start(&w, NOORD, "second-tablet", false);
    let client = w.client(NOORD, "127.0.0.1");
    let before_sign_in = csrf_of(&client.get("/.certgate/device").body);
    let first_page = open_approval(&client, &first_code, "pia@noord.test");
    assert!(
        first_page.body.contains("first-tablet"),
        "{}",
        first_page.body
    );
    // A form token from before the sign-in is worth nothing after it.
    let old_token = client.post(
        "/.certgate/device",
        &[("csrf", &before_sign_in), ("user_code", &second_code)],
    );
    assert_eq!(
        (old_token.status, old_token.header("location").as_deref()),
        (303, Some("/.certgate/device")),
        "back to the form, nothing taken"
    );
    // Another code entered in the same browser (another tab) before the first page is decided.
    let page = client.get("/.certgate/device");
    let entered = client.post(
        "/.certgate/device",
        &[("csrf", &csrf_of(&page.body)), ("user_code", &second_code)],
    );
    assert_eq!(entered.status, 303, "{}", entered.body);
    let stale = decide(&client, &first_page, "approve", false);
    assert_eq!(stale.status, 303, "{}", stale.body);
    assert_eq!(
        stale.header("location").as_deref(),
        Some("/.certgate/device/approve")
    );
    for device_code in [&first_device, &second_device] {
        assert_eq!(
            poll(&w, device_code).json()["error"],
            "authorization_pending"
        );
    }
    // The page now shows the second request, and deciding there decides that one.
    let second_page = client.get("/.certgate/device/approve");
    assert!(
        second_page.body.contains("second-tablet"),
        "{}",
        second_page.body
    );
    assert_eq!(decide(&client, &second_page, "approve", false).status, 200);
    let granted = poll_until_decided(&w, &second_device);
    assert!(
        granted.json()["enrolment_token"].is_string(),
        "{}",
        granted.body
    );
}

#[test]
fn of_decisions_sent_at_once_one_is_recorded_and_the_others_told() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    parent(&w, "pia@noord.test");
    parent(&w, "piet@noord.test");
    // Pia and Piet both have the code on screen, each in three tabs; she allows it as he denies
    // it, all at the same moment.
    let (device_code, user_code) = start(&w, NOORD, "tablet", false);
    let tabs: Vec<(CurlClient<'_>, Response, &str)> = (0..6)
        .map(|i| {
            let (user, action) = if i % 2 == 0 {
                ("pia@noord.test", "approve")
            } else {
                ("piet@noord.test", "deny")
            };
            let client = w.client(NOORD, "127.0.0.1");
            let page = open_approval(&client, &user_code, user);
            assert_eq!(page.status, 200, "{}", page.body);
            (client, page, action)
        })
        .collect();
    let ready = std::sync::Barrier::new(tabs.len());
    let answers: Vec<(Response, &str)> = std::thread::scope(|s| {
        let sent: Vec<_> = tabs
            .iter()
            .map(|(client, page, action)| {
                let ready = &ready;
                s.spawn(move || {
                    ready.wait();
                    (decide(client, page, action, false), *action)
                })
            })
            .collect();
        sent.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let recorded: Vec<&str> = answers
        .iter()
        .filter(|(r, _)| r.status == 200)
        .map(|(_, action)| *action)
        .collect();
    assert_eq!(recorded.len(), 1, "one decision counts: {recorded:?}");
    for (r, _) in answers.iter().filter(|(r, _)| r.status != 200) {
        assert_eq!(
            (r.status, r.header("location").as_deref()),
            (303, Some("/.certgate/device")),
            "the others start again: {}",
            r.body
        );
    }
    let answer = poll_until_decided(&w, &device_code);
    if recorded[0] == "approve" {
        assert!(
            answer.json()["enrolment_token"].is_string(),
            "{}",
            answer.body
        );
    } else {
        assert_eq!(answer.json()["error"], "access_denied", "{}", answer.body);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Screenshots of the page at phone and desktop width: `target/tmp/screenshots/devices/`.
fn shot(browser: &certgate_e2e::Browser, name: &str) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join("devices");
    for (label, (w, h)) in [
        ("phone", certgate_e2e::PHONE),
        ("desktop", certgate_e2e::DESKTOP),
    ] {
        browser.set_viewport_size(w, h);
        browser.screenshot(&dir.join(format!("{name}-{label}.png")));
    }
}

/// `certgate login` or `renew` for the deployment's host, trusting its CA.
fn agent(w: &PortalWorld, args: &[&str]) -> Command {
    let mut command = Command::new(certgate_e2e::certgate_bin());
    command
        .args(args)
        .args(["--resolve", &format!("{NOORD}:{}:127.0.0.1", w.d.https)])
        .env("SSL_CERT_FILE", w.d.path("ca/root.pem"));
    command
}

#[test]
fn the_agent_signs_in_through_a_browser_approval_with_an_e_mail_code_and_renews() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let w = PortalWorld::start(&[org("noord", NOORD, ""), org("zuid", ZUID, "")], "");
    w.add_user(&NewUser::personal("noord", "wim@noord.test", PASSWORD));
    let out = w.d.path("agent");
    let mut login = agent(
        &w,
        &[
            "login",
            "--url",
            &format!("https://{NOORD}:{}", w.d.https),
            "--trust-device",
            "--name",
            "Kiosk 3",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let (lines, printed) = std::sync::mpsc::channel::<String>();
    let stdout = login.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut shown = Vec::new();
    let code = loop {
        let line = printed
            .recv_timeout(Duration::from_secs(15))
            .expect("the agent prints a code");
        shown.push(line.clone());
        let t = line.trim();
        if t.len() == 9
            && t.as_bytes()[4] == b'-'
            && t.bytes()
                .filter(|b| *b != b'-')
                .all(|b| b.is_ascii_uppercase())
        {
            break t.to_owned();
        }
    };
    let url = w.url(NOORD, "/.certgate/device");
    assert!(
        shown.iter().any(|l| l.trim() == url),
        "the address is printed: {shown:?}"
    );

    let b = certgate_e2e::Browser::start("en");
    b.goto(&url);
    shot(&b, "device-enter-code");
    b.fill("user_code", &code.to_lowercase());
    b.click_button("Continue");
    assert!(
        b.current_url().contains("/.certgate/login"),
        "sign in first: {}",
        b.current_url()
    );
    b.fill("username", "wim@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Sign in");
    b.click("input[value=email]");
    b.click_button("Continue");
    b.fill("code", &w.mailed_code("wim@noord.test"));
    b.click_button("Verify");
    b.past_new_recovery_codes();
    let approval = b.page_text();
    assert!(
        approval.contains("Allow this device?") && approval.contains("Kiosk 3"),
        "{approval}"
    );
    assert!(approval.contains("127.0.0.1"), "{approval}");
    shot(&b, "device-approve");
    b.click_button("Allow");
    assert!(
        b.page_text().contains("The device is allowed"),
        "{}",
        b.page_text()
    );
    shot(&b, "device-approved");

    let finished = login.wait_with_output().unwrap();
    // Every line the agent printed, once the reader has passed on the last (its standard
    // output closed when it exited).
    reader.join().unwrap();
    let rest: Vec<String> = printed.try_iter().collect();
    assert!(
        finished.status.success(),
        "{rest:?}\n{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let password = rest
        .iter()
        .find_map(|l| l.split("shown only now: ").nth(1))
        .expect("the PKCS#12 password is printed")
        .trim()
        .to_owned();
    let key = out.join("key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (key, cert) = (
        key.display().to_string(),
        out.join("cert.pem").display().to_string(),
    );
    let admitted = with_cert(&w, NOORD, &key, &cert);
    assert_eq!(admitted.status, 200, "{}", admitted.stderr);
    assert_eq!(
        admitted.upstream_header("x-certgate-user").as_deref(),
        Some("wim@noord.test")
    );
    assert_eq!(
        admitted.upstream_header("x-certgate-auth").as_deref(),
        Some("certificate")
    );
    assert_eq!(
        with_cert(&w, ZUID, &key, &cert).status,
        401,
        "not another organisation's"
    );
    let p12 = Command::new("openssl")
        .args(["pkcs12", "-noout", "-in"])
        .arg(out.join("device.p12"))
        .arg("-passin")
        .arg(format!("pass:{password}"))
        .status()
        .unwrap();
    assert!(p12.success());
    let row = w.devices("noord", "wim@noord.test");
    let cert_row = row.iter().find(|d| d["kind"] == "certificate").unwrap();
    assert_eq!(
        cert_row["trust"], "trusted",
        "asked for and ticked by default from the same address"
    );

    // The agent renews: a new key, the same window.
    let before = std::fs::read_to_string(&key).unwrap();
    let renewed = agent(&w, &["renew", "--dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        renewed.status.success(),
        "{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    assert_ne!(std::fs::read_to_string(&key).unwrap(), before, "re-keyed");
    assert_eq!(with_cert(&w, NOORD, &key, &cert).status, 200);

    // The user's own device page lists it; a certificate for the browser after a fresh sign-in.
    b.goto(&w.url(NOORD, "/.certgate/account"));
    let text = b.page_text();
    assert!(
        text.contains("Certificate") && text.contains("trusted device"),
        "{text}"
    );
    shot(&b, "account");
    b.click_button("Make the certificate");
    assert!(
        b.page_text().contains("shown only now"),
        "{}",
        b.page_text()
    );
    shot(&b, "pkcs12");
}

#[test]
fn the_agent_says_clearly_what_went_wrong() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    let dir = w.d.path("nothing");
    let plain = agent(
        &w,
        &[
            "login",
            "--url",
            "http://noord.test",
            "--out",
            dir.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("https"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // An address that is not a certgate portal: the demo app on plain HTTP behind TLS is not
    // reachable this way, so use the admin listener's port through TLS (not TLS at all).
    let wrong = agent(
        &w,
        &[
            "login",
            "--url",
            &format!("https://{NOORD}:{}", w.d.admin),
            "--out",
            dir.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&wrong.stderr).trim().is_empty());
    assert!(!dir.join("key.pem").exists(), "nothing written");
}

// Issue 22: a credential the gateway refuses never looks active on any list; times are local to
// the organisation's zone; each device is named by its browser and system; certificates are
// offered in plain words, and only to people who may have them.

/// A phone's Chrome, as it introduces itself.
const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";

/// Writes `time_zone = ZONE` into organisation noord's policy before the gateway starts.
fn in_zone(zone: &'static str) -> impl FnOnce(&certgate_e2e::Deployment) {
    move |d| {
        let path = d.path("policies/noord.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let line = "default_language = \"en\"\n";
        assert!(text.contains(line), "{text}");
        std::fs::write(
            &path,
            text.replacen(line, &format!("{line}time_zone = \"{zone}\"\n"), 1),
        )
        .unwrap();
    }
}

/// The state `certgate device list --json` gives the device `id` of `user`.
fn state_of(w: &PortalWorld, user: &str, id: &str) -> String {
    let devices = w.devices("noord", user);
    let device = devices
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {devices:?}"));
    device["state"].as_str().unwrap_or_default().to_owned()
}

/// The id of the account an admin page links to just before `name`.
fn account_id_on(page: &str, name: &str) -> String {
    let at = page
        .find(name)
        .unwrap_or_else(|| panic!("{name} not on {page}"));
    let link = "/.certgate/admin/accounts/";
    let start = page[..at].rfind(link).expect("a link to the account") + link.len();
    page[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// The `<dd id="mfa">` of an admin account page.
fn second_factor_on(page: &str) -> String {
    let start = page
        .find(r#"<dd id="mfa">"#)
        .expect("the second-factor line")
        + 13;
    page[start..].split("</dd>").next().unwrap().to_owned()
}

#[test]
fn ended_credentials_read_as_ended_on_every_list_by_the_gateways_rule() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    let config = w.d.config();
    let lisa = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        lisa.sign_in_by_email("/", "lisa@noord.test", PASSWORD)
            .status,
        303
    );
    let first = this_browser(&lisa);

    // Her administrator resets her second factor: the gateway refuses the credential…
    certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "lisa@noord.test",
    ]);
    assert!(settles(|| lisa.api("/").status == 401));
    // …and every list says it ended: the admin pages, with no revoke button and no end date
    // for it…
    let admin = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        admin
            .sign_in_by_email("/", "beheer@noord.test", PASSWORD)
            .status,
        303
    );
    let accounts = admin.get("/.certgate/admin");
    let lisa_id = account_id_on(&accounts.body, "lisa@noord.test");
    let page = admin.get(&format!("/.certgate/admin/accounts/{lisa_id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!(r#"class="device ended" id="device-{first}""#)),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("ended: signed out after a change to the account"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&format!(r#"value="{first}""#)),
        "no revoke button: {}",
        page.body
    );
    // …which tells the truth about her second factor…
    assert_eq!(
        second_factor_on(&page.body),
        "not set up; chosen at the next sign-in"
    );
    // …and its times are local, with their zone.
    assert!(
        page.body.contains("\u{a0}CET</dd>") || page.body.contains("\u{a0}CEST</dd>"),
        "{}",
        page.body
    );
    let devices = admin.get("/.certgate/admin/devices");
    assert!(
        devices.body.contains("ended: signed out after a change"),
        "{}",
        devices.body
    );

    // …the CLI…
    assert_eq!(state_of(&w, "lisa@noord.test", &first), "ended");
    let listed = certgate_ok(&[
        "device",
        "list",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "lisa@noord.test",
    ]);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&first))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("  ended  "), "{line}");
    // (in ISO 8601, in the organisation's time zone: Europe/Amsterdam unless it says otherwise)
    assert!(
        line.contains("+01:00  expires") || line.contains("+02:00  expires"),
        "{line}"
    );
    assert!(!line.contains("+00:00:00"), "{line}");

    // Her own page lists it apart, as ended, without a revoke button.
    certgate_e2e::next_second();
    let again = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        again
            .sign_in_by_email("/", "lisa@noord.test", PASSWORD)
            .status,
        303
    );
    let second = this_browser(&again);
    let account = again.get("/.certgate/account");
    let (active, ended) = account.body.split_once(r#"id="ended-devices""#).unwrap();
    assert!(
        active.contains(&format!("device-{second}")),
        "{}",
        account.body
    );
    assert!(
        ended.contains(&format!("device-{first}")),
        "{}",
        account.body
    );
    assert!(!account.body.contains(&format!(r#"value="{first}""#)));
    let page = admin.get(&format!("/.certgate/admin/accounts/{lisa_id}"));
    assert_eq!(
        second_factor_on(&page.body),
        "E-mail (enrolled)",
        "{}",
        page.body
    );

    // A new password ends it the same way…
    w.set_password("noord", "lisa@noord.test", "another horse battery");
    assert!(settles(|| again.api("/").status == 401));
    assert_eq!(state_of(&w, "lisa@noord.test", &second), "ended");

    // …and so does disabling her account.
    certgate_e2e::next_second();
    let third_client = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        third_client
            .sign_in_by_email("/", "lisa@noord.test", "another horse battery")
            .status,
        303
    );
    let third = this_browser(&third_client);
    assert_eq!(state_of(&w, "lisa@noord.test", &third), "active");
    certgate_ok(&[
        "user",
        "disable",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "lisa@noord.test",
    ]);
    assert!(settles(|| third_client.api("/").status == 401));
    assert_eq!(state_of(&w, "lisa@noord.test", &third), "ended");
}

#[test]
fn the_devices_page_names_each_device_marks_this_one_and_offers_certificates_only_to_staff() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    parent(&w, "ouder@noord.test");
    // Her phone signed in earlier.
    let phone = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        phone
            .sign_in_by_email_as("anna@noord.test", PASSWORD, ANDROID_CHROME)
            .status,
        303
    );
    let on_phone = phone.get("/.certgate/account");
    assert!(
        on_phone.body.contains("Chrome on Android")
            && on_phone.body.contains("you are using this one now"),
        "{}",
        on_phone.body
    );

    // Now at the office computer, in Dutch.
    let b = certgate_e2e::Browser::start("nl");
    b.goto(&w.url(NOORD, "/.certgate/account"));
    b.fill("username", "anna@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Inloggen");
    if b.has("input[value=email]") {
        b.click("input[value=email]");
        b.click_button("Doorgaan");
    }
    b.fill("code", &w.mailed_code("anna@noord.test"));
    b.click_button("Controleren");
    b.past_new_recovery_codes();
    assert!(
        b.current_url().ends_with("/.certgate/account"),
        "{}",
        b.current_url()
    );
    let text = b.page_text();
    assert!(text.contains("Chrome op Android"), "{text}");
    assert!(
        text.contains("Chrome op Linux (deze gebruikt u nu)"),
        "{text}"
    );
    assert!(!text.contains("deze sessie"), "{text}");
    // Local time, with its zone (Europe/Amsterdam unless the policy says otherwise).
    assert!(
        ["\u{a0}CET", " CET", "\u{a0}CEST", " CEST"]
            .iter()
            .any(|zone| text.contains(zone)),
        "{text}"
    );
    // Certificates in plain words.
    assert!(text.contains("Een certificaat voor dit apparaat"), "{text}");
    for jargon in ["sleutelhanger", "geheime sleutel", "privésleutel"] {
        assert!(!text.contains(jargon), "{jargon}: {text}");
    }
    shot(&b, "account-devices");

    // A parent sees no certificate section, and cannot have one made.
    b.delete_cookies();
    b.goto(&w.url(NOORD, "/.certgate/account"));
    b.fill("username", "ouder@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Inloggen");
    assert!(
        b.current_url().ends_with("/.certgate/account"),
        "{}",
        b.current_url()
    );
    let text = b.page_text();
    assert!(
        !text.contains("Een certificaat voor dit apparaat"),
        "{text}"
    );
    shot(&b, "account-parent");
    let ouder = w.client(NOORD, "127.0.0.1");
    assert_eq!(ouder.sign_in("/", "ouder@noord.test", PASSWORD).status, 303);
    let page = ouder.get("/.certgate/account");
    assert!(!page.body.contains("/.certgate/account/certificate"));
    let refused = ouder.post(
        "/.certgate/account/certificate",
        &[("csrf", &csrf_of(&page.body))],
    );
    assert_ne!(refused.status, 200, "{}", refused.body);
    assert!(w
        .devices("noord", "ouder@noord.test")
        .iter()
        .all(|d| d["kind"] != "certificate"));
}

#[test]
fn an_organisations_time_zone_sets_every_time_shown_and_an_unknown_one_is_refused() {
    let w = PortalWorld::start_with(&[org("noord", NOORD, "")], "", in_zone("America/Curacao"));
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    let config = w.d.config();
    let lisa = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        lisa.sign_in_by_email("/", "lisa@noord.test", PASSWORD)
            .status,
        303
    );
    let account = lisa.get("/.certgate/account");
    assert!(account.body.contains("\u{a0}AST</dd>"), "{}", account.body);
    let listed = certgate_ok(&[
        "device",
        "list",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "lisa@noord.test",
    ]);
    assert!(listed.contains("-04:00  expires"), "{listed}");
    assert_eq!(
        w.devices("noord", "lisa@noord.test")[0]["time_zone"],
        "America/Curacao"
    );

    // An unknown time zone is refused by `certgate check`, with its file and line.
    let path = w.d.path("policies/noord.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("America/Curacao", "Europe/Amsterdan")).unwrap();
    let checked = certgate_e2e::certgate(&["check", "--config", &config, "--no-files"]);
    let said = String::from_utf8_lossy(&checked.stderr).into_owned()
        + &String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success(), "{said}");
    assert!(
        said.contains("noord.toml:6: time_zone: \"Europe/Amsterdan\" is not a time zone"),
        "{said}"
    );
    std::fs::write(&path, text).unwrap();
}

/// The first certificate of a PEM text.
fn first_certificate(pem: &str) -> String {
    pem.split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_issuing_ca_rollover_admits_old_and_new_certificates_until_the_old_one_is_retired() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    parent(&w, "fenna@noord.test");
    // A second instance reading the same CA directory.
    let mut b = w.d.add_instance("b");
    b.start();
    let at_b = |key: &str, cert: &str| {
        w.d.curl_port(
            b.https,
            NOORD,
            "127.0.0.1",
            "/",
            &["--cert", cert, "--key", key],
        )
        .status
    };
    let ca = w.d.path("ca");
    let ca = ca.to_str().unwrap();
    let (old_key, old_cert, old) = enrolled(&w, "fenna@noord.test", "laptop", true);
    // A client that sends its leaf alone is known too.
    let old_leaf = w.d.path("laptop-leaf.pem");
    std::fs::write(&old_leaf, old["certificate"].as_str().unwrap()).unwrap();
    let old_leaf = old_leaf.to_str().unwrap();
    assert_eq!(with_cert(&w, NOORD, &old_key, &old_cert).status, 200);
    assert_eq!(with_cert(&w, NOORD, &old_key, old_leaf).status, 200);

    let out = certgate_ok(&["ca", "rotate-issuing", "--dir", ca]);
    assert!(out.contains("made a new issuing CA"), "{out}");
    assert!(out.contains("still honoured"), "{out}");
    let issuing = std::fs::read_to_string(w.d.path("ca/issuing.pem")).unwrap();
    let new_issuing = first_certificate(&issuing);
    assert!(
        issuing.ends_with(&first_certificate(old["chain"].as_str().unwrap())),
        "the previous issuing CA is still listed"
    );

    // The running instance signs with the new issuing CA, without a restart.
    assert!(settles(|| w
        .d
        .gateway()
        .log_text()
        .contains("issuing CAs reloaded")));
    let (new_key, new_cert, new) = enrolled(&w, "fenna@noord.test", "tablet", true);
    assert_eq!(
        first_certificate(new["chain"].as_str().unwrap()),
        new_issuing,
        "issued by the new issuing CA"
    );
    let root = std::fs::read_to_string(w.d.path("ca/root.pem")).unwrap();
    assert!(new["chain"].as_str().unwrap().ends_with(&root), "same root");

    // During the overlap both are admitted, the old one also as a bare leaf.
    assert_eq!(with_cert(&w, NOORD, &new_key, &new_cert).status, 200);
    assert_eq!(with_cert(&w, NOORD, &old_key, &old_cert).status, 200);
    assert_eq!(with_cert(&w, NOORD, &old_key, old_leaf).status, 200);
    assert_eq!(at_b(&old_key, &old_cert), 200);
    assert_eq!(at_b(&new_key, &new_cert), 200);

    // Retired: the old one is refused within a second, chain or not; the new one goes on.
    let out = certgate_ok(&["ca", "retire-issuing", "--dir", ca]);
    assert!(out.contains("retired the issuing CA with serial"), "{out}");
    assert!(settles(
        || with_cert(&w, NOORD, &old_key, &old_cert).status == 401
    ));
    assert_eq!(with_cert(&w, NOORD, &old_key, old_leaf).status, 401);
    assert_eq!(with_cert(&w, NOORD, &new_key, &new_cert).status, 200);
    assert!(settles(|| at_b(&old_key, &old_cert) == 401));
    assert_eq!(at_b(&new_key, &new_cert), 200);
    let out = certgate_ok(&["ca", "retire-issuing", "--dir", ca]);
    assert!(out.contains("nothing to retire"), "{out}");
}

#[test]
fn rotating_without_the_root_key_says_where_it_is_needed_and_changes_nothing() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    let root_key = w.d.path("ca/root.key");
    std::fs::rename(&root_key, w.d.path("root.key.offline")).unwrap();
    let before = std::fs::read(w.d.path("ca/issuing.pem")).unwrap();
    let out = certgate_e2e::certgate(&[
        "ca",
        "rotate-issuing",
        "--dir",
        w.d.path("ca").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("root.key does not exist"), "{stderr}");
    assert!(stderr.contains("offline"), "{stderr}");
    assert_eq!(std::fs::read(w.d.path("ca/issuing.pem")).unwrap(), before);
}
