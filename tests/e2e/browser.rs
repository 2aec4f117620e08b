//! The harness's real peers for the portal's tests: headless Chromium against the real gateway,
//! the SMTP sink and the SMS receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use certgate_e2e::{
    Browser, Deployment, HttpReply, MailSink, Org, SmsReceiver, StubServer, DESKTOP, PHONE,
};

const WAIT: Duration = Duration::from_secs(10);

/// Where a test's screenshots go: `target/tmp/screenshots/<test>`.
fn screenshots(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(test);
    println!("screenshots in {}", dir.display());
    dir
}

#[test]
fn a_browser_on_an_allow_listed_network_sees_the_app_and_others_reach_sign_in() {
    // Chromium connects from 127.0.0.1: noord lists it, zuid does not.
    let mut noord = Org::new("noord", "noord.test");
    noord.allow_ips = vec!["127.0.0.1"];
    let mut zuid = Org::new("zuid", "zuid.test");
    zuid.allow_ips = vec!["127.0.0.5"];
    let mut d = Deployment::new(&[noord, zuid]);
    d.start();
    let browser = Browser::start("en");
    let shots = screenshots("allow_listed");

    browser.goto(&format!("https://noord.test:{}/rooster", d.https));
    browser.wait_for_text("The legacy app behind certgate", WAIT);
    assert_eq!(browser.title(), "Demo app");
    let text = browser.page_text();
    assert!(text.contains("x-certgate-auth ip"), "{text}");
    assert!(text.contains("x-certgate-org noord"), "{text}");
    assert_eq!(browser.viewport(), DESKTOP);
    browser.screenshot(&shots.join("app-desktop.png"));
    browser.set_viewport_size(PHONE.0, PHONE.1);
    assert_eq!(browser.viewport(), PHONE);
    browser.screenshot(&shots.join("app-phone.png"));
    browser.set_viewport_size(DESKTOP.0, DESKTOP.1);

    browser.goto(&format!("https://zuid.test:{}/rooster?week=12", d.https));
    assert_eq!(
        browser.current_url(),
        format!(
            "https://zuid.test:{}/.certgate/login?return_to=/rooster%3Fweek%3D12",
            d.https
        )
    );
    browser.screenshot(&shots.join("login-desktop.png"));
    browser.set_viewport_size(PHONE.0, PHONE.1);
    browser.screenshot(&shots.join("login-phone.png"));
    for shot in [
        "app-desktop.png",
        "app-phone.png",
        "login-desktop.png",
        "login-phone.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{shot} is a PNG");
    }
}

/// The portal keeps its session and device in `__Host-` cookies. Those need a secure origin;
/// this checks that Chromium counts the gateway as one although it only accepts the test CA's
/// certificate because of `--ignore-certificate-errors`.
#[test]
fn secure_host_prefixed_cookies_are_stored_and_sent_back_and_the_language_is_the_callers() {
    let app = StubServer::start(|request| {
        let reply = HttpReply::new(200, "<!doctype html><title>cookies</title><p>ok</p>")
            .with_header("Content-Type", "text/html");
        if request.path == "/set" {
            reply
                .with_header(
                    "Set-Cookie",
                    "__Host-app-session=s1; Path=/; Secure; HttpOnly; SameSite=Lax",
                )
                .with_header(
                    "Set-Cookie",
                    "__Host-app-device=d1; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600",
                )
        } else {
            reply
        }
    });
    let mut noord = Org::new("noord", "noord.test");
    noord.allow_ips = vec!["127.0.0.1"];
    noord.upstreams = vec![app.base_url()];
    let mut d = Deployment::new(&[noord]);
    d.start();
    let site = format!("https://noord.test:{}", d.https);

    let dutch = Browser::start("nl");
    dutch.goto(&format!("{site}/set"));
    dutch.goto(&format!("{site}/next"));
    let next = app
        .requests()
        .into_iter()
        .find(|r| r.path == "/next")
        .expect("the second page reached the app");
    let pair = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    assert_eq!(
        next.cookies(),
        vec![
            pair("__Host-app-session", "s1"),
            pair("__Host-app-device", "d1")
        ],
        "{next:?}"
    );
    assert_eq!(next.header("accept-language"), Some("nl"));
    assert_eq!(dutch.execute("return navigator.language;"), "nl");
    // What the browser makes of the certificate it was told to accept: still a secure origin.
    assert_eq!(dutch.execute("return window.isSecureContext;"), true);

    let session = dutch.cookie("__Host-app-session").unwrap();
    assert!(session.secure && session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"));
    assert_eq!(session.path.as_deref(), Some("/"));
    assert_eq!(session.expires, None);
    let device = dutch.cookie("__Host-app-device").unwrap();
    assert!(device.secure && device.http_only, "{device:?}");
    assert_eq!(device.same_site.as_deref(), Some("Strict"));
    assert!(device.expires.is_some(), "{device:?}");

    dutch.delete_cookies();
    assert_eq!(dutch.cookies(), Vec::new());

    let english = Browser::start("en");
    english.goto(&format!("{site}/english"));
    let request = app
        .requests()
        .into_iter()
        .find(|r| r.path == "/english")
        .unwrap();
    assert_eq!(request.header("accept-language"), Some("en"));
    assert_eq!(request.cookies(), Vec::new());
}

#[test]
fn the_browser_fills_forms_like_a_user() {
    // A sign-in form in miniature: a wrong address shows the form again at the same URL.
    let app = StubServer::start(|request| {
        let form = |error: &str| {
            format!(
                "<!doctype html><title>form</title>{error}<form method=post action=/form>\
                 <input name=email><input type=checkbox name=remember value=yes>\
                 <select name=channel><option value=mail>Mail<option value=sms>SMS</select>\
                 <button type=submit><span>Code’s</span> versturen</button></form>"
            )
        };
        let page = match request.method.as_str() {
            "POST" if request.body_text().starts_with("email=wrong") => {
                form("<p>Onbekend adres</p>")
            }
            "POST" => format!(
                "<!doctype html><title>sent</title><p>got {}</p><a href=/form>Terug</a>",
                request.body_text()
            ),
            _ => form(""),
        };
        HttpReply::new(200, page).with_header("Content-Type", "text/html; charset=utf-8")
    });
    let mut noord = Org::new("noord", "noord.test");
    noord.allow_ips = vec!["127.0.0.1"];
    noord.upstreams = vec![app.base_url()];
    let mut d = Deployment::new(&[noord]);
    d.start();
    let form = format!("https://noord.test:{}/form", d.https);

    let browser = Browser::start("nl");
    browser.goto(&form);
    assert!(browser.has("input[name=email]"));
    assert!(!browser.has("input[name=code]"));
    browser.fill("email", "wrong");
    browser.click_button("Code’s versturen");
    assert_eq!(browser.current_url(), form);
    assert!(browser.page_text().starts_with("Onbekend adres"));

    browser.fill("email", "typo");
    browser.fill("email", "anna@noord.test");
    browser.check("remember");
    browser.check("remember");
    browser.select("channel", "sms");
    browser.click_button("Code’s versturen");
    assert_eq!(browser.title(), "sent");
    assert_eq!(
        browser.page_text(),
        "got email=anna%40noord.test&remember=yes&channel=sms\nTerug"
    );
    assert!(browser.source().contains("<p>got email="));

    browser.click_link("Terug");
    assert_eq!(browser.title(), "form");
    let posts = app.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2);
}

#[test]
fn the_mail_sink_receives_and_decodes_real_smtp() {
    let sink = MailSink::start();
    // Two messages to one address, the second base64 with an encoded subject, and one to
    // someone else in between: `wait_for` hands them out in order, one at a time.
    let script = r#"
import smtplib, sys
from email.message import EmailMessage
def send(to, subject, body, cte):
    m = EmailMessage()
    m["From"] = "certgate <no-reply@noord.test>"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body, cte=cte)
    m.add_alternative("<p>" + body + "</p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
        s.send_message(m)
send("anna@noord.test", "Uw inlogcode", "Uw code is 482913 — geldig tot 12:00", "quoted-printable")
send("bob@noord.test", "Voor Bob", "Hallo Bob", "7bit")
send("Anna@Noord.test", "Nieuwe code – één keer", "Uw code is 731205 — geldig tot 12:05", "base64")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &sink.port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let first = sink.wait_for("anna@noord.test", WAIT);
    assert_eq!(first.from, "certgate <no-reply@noord.test>");
    assert_eq!(first.to, "anna@noord.test");
    assert_eq!(first.recipients, vec!["anna@noord.test".to_owned()]);
    assert_eq!(first.subject, "Uw inlogcode");
    assert_eq!(
        first.body_text.trim_end(),
        "Uw code is 482913 — geldig tot 12:00"
    );
    assert!(first.raw.contains("quoted-printable"), "{}", first.raw);
    assert_eq!(
        first.body_html.as_deref().map(str::trim_end),
        Some("<p>Uw code is 482913 — geldig tot 12:00</p>")
    );
    let second = sink.wait_for("anna@noord.test", WAIT);
    assert_eq!(second.subject, "Nieuwe code – één keer");
    assert_eq!(
        second.body_text.trim_end(),
        "Uw code is 731205 — geldig tot 12:05"
    );
    assert!(second.raw.contains("base64"), "{}", second.raw);
    assert_eq!(second.header("subject"), Some("Nieuwe code – één keer"));
    assert_eq!(
        sink.wait_for("bob@noord.test", WAIT).body_text,
        "Hallo Bob\n"
    );
    assert_eq!(sink.all().len(), 3);
    assert_eq!(sink.url(), format!("smtp://127.0.0.1:{}", sink.port));
}

#[test]
fn the_sms_receiver_records_webhook_posts_and_can_fail() {
    let sms = SmsReceiver::start();
    let post = |to: &str, text: &str| -> String {
        let body = serde_json::json!({ "to": to, "text": text }).to_string();
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", "Authorization: Bearer sms-token"])
            .args(["--data-binary", &body])
            .arg(sms.url())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    assert_eq!(post("+31612345678", "Uw code is 482913"), "200");
    let message = sms.wait_for("+31612345678", WAIT);
    assert_eq!(message.text, "Uw code is 482913");
    assert_eq!(message.authorization.as_deref(), Some("Bearer sms-token"));

    sms.answer_with(500);
    assert_eq!(post("+31687654321", "Uw code is 731205"), "500");
    // Refused, but recorded: the portal did try.
    let failed = sms.wait_for("+31687654321", WAIT);
    assert_eq!(failed.text, "Uw code is 731205");
    let requests = sms.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[1].path, "/sms");
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(sms.all().len(), 2);
}
