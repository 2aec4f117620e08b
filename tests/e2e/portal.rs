//! The portal end to end: headless Chromium (and curl where no page is involved) against the
//! real `certgate serve`, with a real SMTP server, a local SMS receiver and oathtool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certgate_e2e::throwaway_postgres_database;
use certgate_e2e::{
    attribute_after, certgate_ok, csrf_of, eventually, oathtool, settles, Browser, CurlClient,
    MailSink, NewUser, Org, PortalWorld, Response, SinkTls, DESKTOP, PHONE, SETTLE,
};

const NOORD: &str = "noord.test";
const ZUID: &str = "zuid.test";
const PASSWORD: &str = "correct horse battery";

fn org(id: &'static str, host: &str, mfa: &str) -> Org {
    let mut org = Org::new(id, host);
    org.policy_extra = format!("\n[mfa]\nmethods = [\"authenticator\", \"sms\", \"email\"]\nexempt_roles = [\"parent\"]\n{mfa}");
    org
}

/// Screenshots of the page at phone and desktop width: `target/tmp/screenshots/portal/`.
fn shot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join("portal");
    for (label, (w, h)) in [("phone", PHONE), ("desktop", DESKTOP)] {
        browser.set_viewport_size(w, h);
        browser.screenshot(&dir.join(format!("{name}-{label}.png")));
    }
}

/// The identity headers the demo app saw, from the page it shows ("name value" lines).
fn app_headers(browser: &Browser) -> std::collections::HashMap<String, String> {
    let text = browser.page_text();
    assert!(
        text.contains("The legacy app behind certgate"),
        "not the app: {text}"
    );
    text.lines()
        .filter(|l| l.starts_with("x-"))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn header(headers: &std::collections::HashMap<String, String>, name: &str) -> String {
    headers.get(name).cloned().unwrap_or_default()
}

/// Opens `path`, lands on the sign-in page, and signs in (the button in the browser's language).
fn sign_in(browser: &Browser, w: &PortalWorld, host: &str, path: &str, user: &str, password: &str) {
    browser.goto(&w.url(host, path));
    assert!(
        browser
            .current_url()
            .contains("/.certgate/login?return_to="),
        "{}",
        browser.current_url()
    );
    browser.fill("username", user);
    browser.fill("password", password);
    let dutch = browser.source().contains(r#"<html lang="nl">"#);
    browser.click_button(if dutch { "Inloggen" } else { "Sign in" });
}

#[test]
fn a_first_sign_in_by_e_mail_code_reaches_the_app_and_the_next_goes_straight_to_e_mail() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        mobile: Some("+31612345678"),
        ..NewUser::personal("noord", "anna@noord.test", PASSWORD)
    });
    let welcome = w.mail_about("anna@noord.test", "Your account at Org noord");
    // A declared character set, so a mail reader shows the quotes instead of garbage: the
    // harness decodes the message with Python's standard `email` parser.
    assert_eq!(welcome.header("MIME-Version"), Some("1.0"));
    // As Python's parser reads it back (it quotes the parameter).
    assert_eq!(
        welcome.header("Content-Type"),
        Some("text/plain; charset=\"utf-8\""),
        "{}",
        welcome.raw
    );
    assert!(
        welcome
            .body_text
            .contains("choose \u{201c}Forgot your password?\u{201d}"),
        "{}",
        welcome.body_text
    );
    // The way to the application, which the person does not know yet.
    assert!(
        welcome.body_text.contains(&w.url(NOORD, "/")),
        "{}",
        welcome.body_text
    );
    assert!(
        !welcome.body_text.contains("/.certgate/reset"),
        "no activation link"
    );
    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/rooster?week=12"));
    shot(&b, "login");
    // An empty form is not a wrong password: it says what is missing.
    b.click_button("Sign in");
    assert!(
        b.page_text()
            .contains("Fill in both your username and your password."),
        "{}",
        b.page_text()
    );
    b.fill("username", "anna@noord.test");
    b.fill("password", "not her password");
    b.click_button("Sign in");
    let failed = b.page_text();
    assert!(
        failed.contains("The username or password is not correct.")
            && !failed.contains("cannot sign in"),
        "{failed}"
    );
    shot(&b, "login-failed");
    // "Forgot your password?" carries the name over.
    b.click_link("Forgot your password?");
    assert_eq!(b.value_of("username"), "anna@noord.test");
    b.goto(&w.url(NOORD, "/rooster?week=12"));
    sign_in(
        &b,
        &w,
        NOORD,
        "/rooster?week=12",
        "Anna@Noord.test",
        PASSWORD,
    );
    assert!(
        b.page_text()
            .contains("How do you want to confirm it is you?"),
        "{}",
        b.page_text()
    );
    shot(&b, "choose-method");
    // "Back" returns to the password, keeping where the user was going.
    b.click_button("Back");
    assert!(
        b.page_text().contains("Sign in to Org noord"),
        "{}",
        b.page_text()
    );
    assert!(
        b.current_url().contains("return_to=%2Frooster%3Fweek%3D12"),
        "{}",
        b.current_url()
    );
    b.fill("username", "anna@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Sign in");
    b.click("input[value=email]");
    b.click_button("Continue");
    let code = w.mailed_code("anna@noord.test");
    assert!(
        b.page_text()
            .contains("A code was sent to a\u{2022}\u{2022}\u{2022}@noord.test"),
        "{}",
        b.page_text()
    );
    shot(&b, "code-email");
    // Typed as a person reads it out, with a space in the middle.
    b.fill("code", &format!("{} {}", &code[..3], &code[3..]));
    b.click_button("Verify");
    // A first factor ends on recovery codes, then goes where the sign-in was going.
    assert!(
        b.page_text().contains("Set-up complete"),
        "{}",
        b.page_text()
    );
    b.click_link("I have stored them, continue");
    assert!(
        b.current_url().ends_with("/rooster?week=12"),
        "{}",
        b.current_url()
    );
    let headers = app_headers(&b);
    assert_eq!(header(&headers, "x-certgate-auth"), "browser");
    assert_eq!(header(&headers, "x-certgate-org"), "noord");
    assert_eq!(header(&headers, "x-certgate-user"), "anna@noord.test");
    assert_eq!(header(&headers, "x-certgate-mfa"), "yes");
    let cookie = b
        .cookie("__Host-certgate-device")
        .expect("the credential cookie");
    assert!(cookie.secure && cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Lax"));
    assert_eq!(
        header(&headers, "x-certgate-device"),
        w.devices("noord", "anna@noord.test")[0]["id"]
            .as_str()
            .unwrap()
    );
    assert!(w
        .mail_about("anna@noord.test", "new sign-in method")
        .body_text
        .contains("E-mail"));

    // The next sign-in, on a fresh browser, goes straight to the e-mail code.
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "/", "anna@noord.test", PASSWORD);
    assert!(
        b.page_text().contains("A code was sent to"),
        "{}",
        b.page_text()
    );
    let code = w.mailed_code("anna@noord.test");
    b.fill("code", &code);
    b.click_button("Verify");
    assert_eq!(header(&app_headers(&b), "x-certgate-mfa"), "yes");
    assert_eq!(w.devices("noord", "anna@noord.test").len(), 2);
    assert_eq!(
        w.d.metric(r#"certgate_logins_total{method="email",org="noord",result="success"}"#),
        2.0
    );
    assert_eq!(
        w.d.metric(r#"certgate_mfa_codes_sent_total{channel="email",org="noord"}"#),
        2.0
    );
}

#[test]
fn mail_goes_out_over_starttls_and_smtps_and_never_to_a_server_it_cannot_verify() {
    for (tls, scheme, starttls) in [
        (SinkTls::StartTls, "smtp", "starttls = true\n"),
        (SinkTls::Smtps, "smtps", ""),
    ] {
        // Each sink has a certificate authority of its own; the gateway trusts the first
        // sink's (SSL_CERT_FILE, as for the system's roots), not the second's.
        let trusted = MailSink::start_tls(tls);
        let stranger = MailSink::start_tls(tls);
        let roots = trusted.root_pem().display().to_string();
        let env = [("SSL_CERT_FILE", roots.as_str())];
        let start = |sink: MailSink| {
            let options = format!(
                "smtp_url = \"{scheme}://localhost:{}\"\n{starttls}",
                sink.port
            );
            PortalWorld::start_with_mail(&[org("noord", NOORD, "")], sink, &options, &env)
        };

        let w = start(trusted);
        // Created the moment /readyz says ready: the welcome mail must not be lost to a portal
        // still starting.
        w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
        let welcome = w.mail_about("anna@noord.test", "Your account at Org noord");
        assert!(
            welcome.body_text.contains("Forgot your password?"),
            "{tls:?}: {}",
            welcome.body_text
        );

        let w = start(stranger);
        w.add_user(&NewUser::personal("noord", "bert@noord.test", PASSWORD));
        let gateway = w.d.gateway();
        assert!(
            eventually(Duration::from_secs(10), || gateway
                .log_text()
                .contains("sending mail failed")),
            "{tls:?}: {}",
            gateway.log_text()
        );
        let log = gateway.log_text();
        let failure = log
            .lines()
            .find(|l| l.contains("sending mail failed"))
            .unwrap();
        assert!(
            failure.to_lowercase().contains("certificate"),
            "{tls:?}: the log says why: {failure}"
        );
        assert!(w.mail.all().is_empty(), "{tls:?}: nothing was delivered");
    }
}

#[test]
fn sms_codes_arrive_and_sms_is_disabled_without_a_number() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        mobile: Some("+31612345678"),
        ..NewUser::personal("noord", "bram@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "carla@noord.test", PASSWORD));
    let b = Browser::start("nl");

    // Without a mobile number SMS is shown, disabled, with the reason.
    sign_in(&b, &w, NOORD, "/", "carla@noord.test", PASSWORD);
    assert!(b.has("input[value=sms][disabled]"), "{}", b.source());
    assert!(
        b.page_text().contains("er is geen mobiel nummer bekend"),
        "{}",
        b.page_text()
    );
    shot(&b, "choose-method-no-mobile-nl");
    // The QR code is named in the page's language for a screen reader.
    b.click("input[value=authenticator]");
    b.click_button("Doorgaan");
    assert!(
        b.has(r#"figure.qr[aria-label="QR-code om te scannen met uw authenticator-app"]"#),
        "{}",
        b.source()
    );

    b.delete_cookies();
    b.goto(&w.url(NOORD, "/"));
    b.fill("username", "bram@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Inloggen");
    b.click("input[value=sms]");
    b.click_button("Doorgaan");
    let sms = w.sms.wait_for("+31612345678", Duration::from_secs(10));
    assert!(
        b.page_text()
            .contains("\u{2022}\u{2022}\u{2022}\u{2022} 5678"),
        "{}",
        b.page_text()
    );
    shot(&b, "code-sms-nl");
    assert_eq!(
        sms.authorization,
        Some(format!("Bearer {}", certgate_e2e::SMS_TOKEN)),
        "the provider's token from sms.token_file"
    );
    assert!(sms.text.contains("Org noord"), "{}", sms.text);
    // "Send a new code": a second text; the newest code signs in.
    b.click_button("Stuur een nieuwe code");
    assert!(
        b.page_text().contains("Er is een nieuwe code verstuurd"),
        "{}",
        b.page_text()
    );
    let resent = w.sms.wait_for("+31612345678", Duration::from_secs(10));
    let code = certgate_e2e::six_digits(&resent.text).unwrap();
    b.fill("code", &code);
    b.click_button("Controleren");
    assert!(
        b.page_text().contains("Het instellen is klaar"),
        "{}",
        b.page_text()
    );
    b.click_link("Ik heb ze bewaard, doorgaan");
    assert_eq!(
        header(&app_headers(&b), "x-certgate-user"),
        "bram@noord.test"
    );

    // When the provider fails, the page says so plainly.
    w.sms.answer_with(500);
    b.delete_cookies();
    b.goto(&w.url(NOORD, "/"));
    b.fill("username", "bram@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Inloggen");
    assert!(
        b.page_text()
            .contains("De code kon nu niet worden verstuurd"),
        "{}",
        b.page_text()
    );
}

/// The authenticator key shown on the enrolment page.
fn shown_secret(b: &Browser) -> String {
    attribute_after(&b.source(), r#"id="secret" class="secret">"#)
        .map(|s| s.split('<').next().unwrap_or_default().to_owned())
        .expect("the key on the page")
        .replace(' ', "")
}

/// The recovery codes shown once after enrolment.
fn shown_recovery_codes(b: &Browser) -> Vec<String> {
    let source = b.source();
    source
        .split("<li><code>")
        .skip(1)
        .filter_map(|part| part.split('<').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_authenticator_is_enrolled_with_oathtool_steps_are_single_use_and_recovery_codes_work_once() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "dirk@noord.test", PASSWORD));
    let b = Browser::start("en");
    sign_in(&b, &w, NOORD, "/", "dirk@noord.test", PASSWORD);
    b.click("input[value=authenticator]");
    b.click_button("Continue");
    assert!(b.has(".qr svg"), "a QR code: {}", b.source());
    shot(&b, "enrol-authenticator");
    // A QR code cannot be scanned by the phone that shows it: there, a link opens the app, with
    // where to get one; on a desktop the QR code comes first and the link is not drawn.
    b.set_viewport_size(PHONE.0, PHONE.1);
    assert!(b.visible("#open-app") && b.visible(".qr svg"));
    let link_above_qr = b.execute(
        "return document.querySelector('#open-app').getBoundingClientRect().top \
         < document.querySelector('.qr').getBoundingClientRect().top;",
    );
    assert_eq!(link_above_qr, serde_json::Value::Bool(true));
    let href = b.execute("return document.querySelector('#open-app').href;");
    assert!(
        href.as_str()
            .is_some_and(|h| h.starts_with("otpauth://totp/") && h.contains("secret=")),
        "{href}"
    );
    assert!(b.page_text().contains("Microsoft Authenticator"));
    b.set_viewport_size(DESKTOP.0, DESKTOP.1);
    assert!(!b.visible("#open-app") && b.visible(".qr svg"));
    // The key in groups of four, to copy by eye.
    let grouped = attribute_after(&b.source(), r#"id="secret" class="secret">"#)
        .and_then(|s| s.split('<').next().map(str::to_owned))
        .unwrap();
    assert!(
        grouped.split(' ').all(|group| group.len() <= 4) && grouped.split(' ').count() >= 8,
        "{grouped}"
    );
    let secret = shown_secret(&b);
    assert!(secret.len() >= 32, "{secret}");
    // As the app shows it: "123 456".
    let code = oathtool(&secret);
    b.fill("code", &format!("{} {}", &code[..3], &code[3..]));
    b.click_button("Confirm");
    assert!(
        b.page_text().contains("Your recovery codes"),
        "{}",
        b.page_text()
    );
    let codes = shown_recovery_codes(&b);
    assert_eq!(codes.len(), 10, "{codes:?}");
    shot(&b, "recovery-codes");
    b.click_link("I have stored them, continue");
    assert_eq!(header(&app_headers(&b), "x-certgate-mfa"), "yes");
    // The account page says in a plain sentence what new recovery codes do.
    b.goto(&w.url(NOORD, "/.certgate/account"));
    let text = b.page_text();
    assert!(
        text.contains("Making new recovery codes stops the old ones from working.")
            && !text.contains("Made new recovery codes"),
        "{text}"
    );
    shot(&b, "account-recovery-codes");

    // The next sign-in asks for the app's code; one code (one time step) works once.
    let reuse = || {
        b.delete_cookies();
        sign_in(&b, &w, NOORD, "/", "dirk@noord.test", PASSWORD);
        assert!(
            b.page_text()
                .contains("Enter the 6-digit code from your authenticator app."),
            "{}",
            b.page_text()
        );
    };
    // Wait for a step the enrolment did not use, so the first use below is that step's first.
    let enrolled_with = oathtool(&secret);
    assert!(eventually(Duration::from_secs(35), || oathtool(&secret)
        != enrolled_with));
    let fresh = oathtool(&secret);
    reuse();
    shot(&b, "code-authenticator");
    b.fill("code", &format!("{}-{}", &fresh[..3], &fresh[3..]));
    b.click_button("Verify");
    assert_eq!(
        header(&app_headers(&b), "x-certgate-user"),
        "dirk@noord.test"
    );
    reuse();
    b.fill("code", &fresh);
    b.click_button("Verify");
    assert!(
        b.page_text().contains("The code is not correct"),
        "a step already used is refused: {}",
        b.page_text()
    );

    // A recovery code signs in once and says how many are left.
    b.click_link("Use a recovery code");
    shot(&b, "recovery-code-entry");
    // It says what to type, and draws no empty paragraph.
    assert!(
        b.page_text()
            .contains("Enter one of the recovery codes you stored"),
        "{}",
        b.page_text()
    );
    assert!(!b.source().contains("<p></p>"), "{}", b.source());
    b.fill("code", &codes[3].to_uppercase());
    b.click_button("Verify");
    assert!(
        b.page_text().contains("You have 9 left"),
        "{}",
        b.page_text()
    );
    shot(&b, "recovery-code-used");
    b.click_link("Not now, continue");
    assert_eq!(
        header(&app_headers(&b), "x-certgate-user"),
        "dirk@noord.test"
    );
    reuse();
    b.click_link("Use a recovery code");
    b.fill("code", &codes[3]);
    b.click_button("Verify");
    assert!(
        b.page_text().contains("The code is not correct"),
        "a used recovery code is refused: {}",
        b.page_text()
    );

    // The phone is at home: "sign in another way" sends a code to the address the organisation
    // knows; it signs this sign-in in, and the app stays the account's factor.
    reuse();
    assert!(
        b.page_text()
            .contains("Phone not at hand? Sign in another way"),
        "{}",
        b.page_text()
    );
    shot(&b, "code-authenticator-another-way");
    b.click_button("Send a code by e-mail to d\u{2022}\u{2022}\u{2022}@noord.test");
    assert!(
        b.page_text().contains("A code was sent to"),
        "{}",
        b.page_text()
    );
    b.fill("code", &w.mailed_code("dirk@noord.test"));
    b.click_button("Verify");
    assert_eq!(
        header(&app_headers(&b), "x-certgate-user"),
        "dirk@noord.test"
    );
    reuse();

    // The phone is lost for good: after a recovery code Dirk sets up a new method himself, no
    // administrator needed; the app stops working, he gets new recovery codes and a mail.
    b.click_link("Use a recovery code");
    b.fill("code", &codes[4]);
    b.click_button("Verify");
    assert!(
        b.page_text().contains("Lost your phone?"),
        "{}",
        b.page_text()
    );
    b.click_button("Set up a new method now");
    b.click("input[value=email]");
    b.click_button("Continue");
    b.fill("code", &w.mailed_code("dirk@noord.test"));
    b.click_button("Verify");
    let done = b.page_text();
    assert!(
        done.contains("Set-up complete") && done.contains("Your recovery codes"),
        "{done}"
    );
    shot(&b, "recovery-codes-after-replacing");
    let new_codes = shown_recovery_codes(&b);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !codes.contains(c)));
    // Copy, download and print, with the codes as the file's lines.
    for button in ["Copy", "Download", "Print"] {
        assert!(
            b.page_text().contains(button),
            "{button}: {}",
            b.page_text()
        );
    }
    assert!(w
        .mail_about("dirk@noord.test", "new sign-in method")
        .body_text
        .contains("E-mail"));
    b.click_link("I have stored them, continue");
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "/", "dirk@noord.test", PASSWORD);
    assert!(
        b.page_text().contains("A code was sent to"),
        "e-mail is the factor now: {}",
        b.page_text()
    );
    b.click_link("Use a recovery code");
    b.fill("code", &codes[5]);
    b.click_button("Verify");
    assert!(
        b.page_text().contains("The code is not correct"),
        "the old recovery codes went with the old factor: {}",
        b.page_text()
    );
}

#[test]
fn trusting_the_device_gives_the_longer_lifetime_and_both_expire() {
    let mfa = "session_lifetime = \"6s\"\ntrust_device_for = \"14s\"\n";
    let w = PortalWorld::start(&[org("noord", NOORD, mfa)], "");
    w.add_user(&NewUser::personal("noord", "eva@noord.test", PASSWORD));
    let untrusted = Browser::start("en");
    let trusted = Browser::start("en");
    let mut cookie_expiry = Vec::new();
    for (b, tick) in [(&untrusted, false), (&trusted, true)] {
        sign_in(b, &w, NOORD, "/", "eva@noord.test", PASSWORD);
        if b.page_text().contains("How do you want") {
            b.click("input[value=email]");
            b.click_button("Continue");
        }
        b.fill("code", &w.mailed_code("eva@noord.test"));
        assert!(
            b.page_text().contains("Trust this device for 14 seconds"),
            "{}",
            b.page_text()
        );
        if tick {
            b.check("trust");
        }
        b.click_button("Verify");
        b.past_new_recovery_codes();
        assert_eq!(header(&app_headers(b), "x-certgate-user"), "eva@noord.test");
        let cookie = b.cookie("__Host-certgate-device").unwrap();
        cookie_expiry.push(cookie.expires.unwrap());
    }
    let devices = w.devices("noord", "eva@noord.test");
    let trusts: Vec<&str> = devices
        .iter()
        .map(|d| d["trust"].as_str().unwrap())
        .collect();
    assert_eq!(trusts, ["trusted", "session"], "newest first");
    for d in &devices {
        let life = d["expires_at"].as_i64().unwrap() - d["created_at"].as_i64().unwrap();
        assert_eq!(life, if d["trust"] == "trusted" { 14 } else { 6 });
    }
    // Each browser keeps its cookie as long as its credential lives, counted from when it got
    // the cookie (a moment after the credential was made): not shorter, and not the other
    // lifetime, 8 seconds apart.
    let expires_at = |trust: &str| {
        let device = devices.iter().find(|d| d["trust"] == trust).unwrap();
        device["expires_at"].as_i64().unwrap()
    };
    for (cookie, trust) in cookie_expiry.iter().zip(["session", "trusted"]) {
        let credential = expires_at(trust);
        assert!(
            (credential..credential + 8).contains(cookie),
            "{trust}: the cookie until {cookie}, the credential until {credential}"
        );
    }

    // After the session lifetime only the trusted browser still gets in.
    certgate_e2e::wait_until_unix(expires_at("session") + 1);
    untrusted.goto(&w.url(NOORD, "/"));
    assert!(
        untrusted.current_url().contains("/.certgate/login"),
        "{}",
        untrusted.current_url()
    );
    trusted.goto(&w.url(NOORD, "/"));
    assert_eq!(
        header(&app_headers(&trusted), "x-certgate-user"),
        "eva@noord.test"
    );
    certgate_e2e::wait_until_unix(expires_at("trusted") + 1);
    trusted.goto(&w.url(NOORD, "/"));
    assert!(
        trusted.current_url().contains("/.certgate/login"),
        "{}",
        trusted.current_url()
    );
    assert!(w
        .mail_about("eva@noord.test", "trusted")
        .body_text
        .contains("14 seconds"));
}

/// The error line of a portal page.
fn error_text(page: &str) -> String {
    attribute_after(page, r#"<p class="error" role="alert""#)
        .map(|_| {
            let start = page.find(r#"<p class="error""#).unwrap();
            let rest = &page[start..];
            let text = &rest[rest.find('>').unwrap() + 1..];
            text[..text.find("</p>").unwrap()].to_owned()
        })
        .unwrap_or_default()
}

fn location(response: &Response) -> String {
    response.header("location").unwrap_or_default()
}

/// Repeats `attempt` while it is answered with a wait of seconds (the growing delay per name),
/// waiting that long in between.
fn past_short_delays(mut attempt: impl FnMut() -> Response) -> Response {
    loop {
        let answer = attempt();
        let text = error_text(&answer.body);
        if answer.status != 429 || !text.contains("second") {
            return answer;
        }
        let secs: u64 = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| !run.is_empty())
            .and_then(|run| run.parse().ok())
            .unwrap_or(1);
        assert!(secs <= 60, "{text}");
        std::thread::sleep(Duration::from_millis(secs * 1000 + 200));
    }
}

/// Posts a password from `client`; the answer.
fn password_attempt(client: &CurlClient<'_>, user: &str, password: &str) -> Response {
    let page = client.get("/.certgate/login");
    let csrf = csrf_of(&page.body);
    client.post(
        "/.certgate/login",
        &[("csrf", &csrf), ("username", user), ("password", password)],
    )
}

/// The portal answers a failed sign-in, and a "forgot password" request, no sooner than this
/// after it arrived (`failure_delay`), whatever name was typed.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The answer to what `send` sends, checked to be held back: nothing arrives before
/// [`FAILURE_DELAY`] has passed since it was sent. A loaded machine only makes an answer later,
/// so this does not measure the machine; an answer given as soon as the work is done (for a
/// name nobody has, say, which needs no password check) fails it.
fn held_back(send: impl FnOnce() -> Response + Send) -> Response {
    let (answered, answer) = std::sync::mpsc::channel();
    let sent = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(move || answered.send(send()));
        let floor = (sent + FAILURE_DELAY).saturating_duration_since(Instant::now());
        assert_eq!(
            answer.recv_timeout(floor).err(),
            Some(std::sync::mpsc::RecvTimeoutError::Timeout),
            "answered before the failure delay"
        );
        answer.recv_timeout(SETTLE).expect("an answer")
    })
}

#[test]
fn wrong_passwords_are_throttled_alike_for_unknown_users_and_a_colleague_elsewhere_is_not_locked_out(
) {
    let w = PortalWorld::start(
        &[org("noord", NOORD, "")],
        "[limits]\npassword_failures_per_ip = \"8/15m\"\n",
    );
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "fenna@noord.test", PASSWORD)
    });
    let attacker = w.client(NOORD, "127.0.0.1");

    // An existing and an unknown account: the same words, both held back to the same floor
    // after they arrived, so neither the words nor the time tell them apart.
    let known = held_back(|| password_attempt(&attacker, "fenna@noord.test", "wrong password 1"));
    let unknown =
        held_back(|| password_attempt(&attacker, "nobody@noord.test", "wrong password 1"));
    assert_eq!((known.status, unknown.status), (401, 401));
    assert!(!error_text(&known.body).is_empty(), "{}", known.body);
    assert_eq!(error_text(&known.body), error_text(&unknown.body));

    // Five failures for one name from one address: that pair waits, even with the password.
    for i in 2..=5 {
        let r = past_short_delays(|| {
            password_attempt(
                &attacker,
                "fenna@noord.test",
                &format!("wrong password {i}"),
            )
        });
        assert_eq!(r.status, 401);
    }
    let blocked = password_attempt(&attacker, "fenna@noord.test", PASSWORD);
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    // How long, and the ways forward: a new password, or the administrator.
    let said = error_text(&blocked.body);
    assert!(
        said.starts_with("Too many attempts to sign in with this name. Please wait 15 minutes")
            && said.contains("choose \u{201c}Forgot your password?\u{201d}")
            && said.contains("administrator can also lift the block"),
        "{said}"
    );
    assert!(
        blocked
            .body
            .contains(r#"href="/.certgate/forgot?username=fenna%40noord%2Etest""#),
        "{}",
        blocked.body
    );
    assert!(blocked
        .header("set-cookie")
        .is_none_or(|c| !c.contains("certgate-device")));

    // Fenna herself, at another address, waits seconds at most (the delay per name), then
    // gets in.
    let fenna = w.client(NOORD, "127.0.0.2");
    let signed_in = past_short_delays(|| password_attempt(&fenna, "fenna@noord.test", PASSWORD));
    assert_eq!(
        signed_in.status,
        303,
        "only a short delay per name: {}",
        error_text(&signed_in.body)
    );
    assert!(fenna.cookie("__Host-certgate-device").is_some());

    // An address guessing many names is stopped after `password_failures_per_ip`.
    let sprayer = w.client(NOORD, "127.0.0.3");
    for i in 0..8 {
        let r = password_attempt(&sprayer, &format!("user{i}@noord.test"), "Welkom01!");
        assert_eq!(r.status, 401);
    }
    let stopped = password_attempt(&sprayer, "someone@noord.test", "Welkom01!");
    assert_eq!(stopped.status, 429);
    assert!(w.d.metric(r#"certgate_rate_limited_total{kind="login_pair"}"#) >= 1.0);
    assert!(w.d.metric(r#"certgate_rate_limited_total{kind="login_ip"}"#) >= 1.0);
}

/// The measured attack: four addresses guessing at a name kept its owner out (right password,
/// own address) for over a minute. Where she signed in before (her address, her browser),
/// guessing from elsewhere holds nobody; the guesses the delay holds count against the
/// guessers' addresses.
#[test]
fn guessing_from_several_addresses_does_not_lock_the_person_out() {
    let w = PortalWorld::start(
        &[org("noord", NOORD, "")],
        "[limits]\npassword_failures_per_ip = \"20/15m\"\npassword_failures_per_pair = \"50/15m\"\n",
    );
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "hanna@noord.test", PASSWORD)
    });
    let hanna = w.client(NOORD, "127.0.0.2");
    let first = password_attempt(&hanna, "hanna@noord.test", PASSWORD);
    assert_eq!(first.status, 303, "{}", first.body);
    assert!(hanna.cookie("__Host-certgate-browser").is_some());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|scope| {
        for attacker in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
            let (w, stop) = (&w, std::sync::Arc::clone(&stop));
            scope.spawn(move || {
                let client = w.client(NOORD, attacker);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200 {
                    i += 1;
                    password_attempt(&client, "hanna@noord.test", &format!("guess {i}"));
                }
            });
        }
        // Wait until the guessing holds the name: a try from a browser and an address Hanna
        // never used must wait.
        let mut probe = 100;
        assert!(
            eventually(Duration::from_secs(60), || {
                probe += 1;
                let stranger = w.client(NOORD, &format!("127.0.0.{probe}"));
                password_attempt(&stranger, "hanna@noord.test", "a guess").status == 429
            }),
            "the guesses never brought the name under its delay"
        );
        // Fifteen sign-ins from her own address in a new browser, and her browser on a new
        // network: every one gets in.
        for i in 0..15 {
            let client = if i % 2 == 0 {
                w.client(NOORD, "127.0.0.2")
            } else {
                hanna.same_browser_at(&format!("127.0.0.{}", 20 + i))
            };
            let answer = password_attempt(&client, "hanna@noord.test", PASSWORD);
            assert_eq!(
                answer.status,
                303,
                "attempt {i}: {}",
                error_text(&answer.body)
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(w.d.metric(r#"certgate_rate_limited_total{kind="login_delay"}"#) >= 1.0);
    // Held guesses were not refunded: the guessers ran into their addresses' limit.
    assert!(w.d.metric(r#"certgate_rate_limited_total{kind="login_ip"}"#) >= 1.0);
}

/// Password and e-mail code with curl; the client then holds the credential.
fn sign_in_by_email(_w: &PortalWorld, client: &CurlClient<'_>, user: &str) {
    let done = client.sign_in_by_email("/", user, PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);
}

#[test]
fn wrong_codes_kill_the_code_and_the_page_says_how_to_go_on() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "gert@noord.test", PASSWORD));
    let client = w.client(NOORD, "127.0.0.1");
    let answer = client.sign_in("/", "gert@noord.test", PASSWORD);
    assert_eq!(answer.status, 303);
    let choose = client.get("/.certgate/mfa");
    client.post(
        "/.certgate/mfa/choose",
        &[("csrf", &csrf_of(&choose.body)), ("method", "email")],
    );
    let page = client.get("/.certgate/mfa");
    let csrf = csrf_of(&page.body);
    let code = w.mailed_code("gert@noord.test");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let guess = |code: &str| {
        past_short_delays(|| client.post("/.certgate/mfa/code", &[("csrf", &csrf), ("code", code)]))
    };
    for _ in 0..4 {
        let r = guess(wrong);
        assert_eq!(r.status, 401);
        assert_eq!(
            error_text(&r.body),
            "The code is not correct. Check it and try again."
        );
    }
    let fifth = guess(wrong);
    assert!(
        error_text(&fifth.body).contains("no longer valid"),
        "{}",
        fifth.body
    );
    let right = guess(&code);
    assert_ne!(
        right.status, 303,
        "a dead code never signs in: {}",
        right.body
    );
    assert!(client.cookie("__Host-certgate-device").is_none());
}

#[test]
fn only_paths_on_the_same_host_are_returned_to_and_bad_or_foreign_credentials_are_redirected() {
    let w = PortalWorld::start(
        &[
            org("noord", NOORD, "session_lifetime = \"4s\"\n"),
            org("zuid", ZUID, ""),
        ],
        "",
    );
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "hans@noord.test", PASSWORD)
    });
    for evil in [
        "https://evil.example/",
        "https%3A%2F%2Fevil.example%2F",
        "//evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "%2F%5Cevil.example",
        "%252F%252Fevil.example",
        "/%2F%2Fevil.example",
    ] {
        let client = w.client(NOORD, "127.0.0.1");
        let answer = client.sign_in(evil, "hans@noord.test", PASSWORD);
        assert_eq!(answer.status, 303, "{evil}: {}", answer.body);
        assert_eq!(location(&answer), "/", "{evil}");
    }
    let client = w.client(NOORD, "127.0.0.1");
    let answer = client.sign_in("%2Frooster%3Fweek%3D3", "hans@noord.test", PASSWORD);
    assert_eq!(location(&answer), "/rooster?week=3");
    let app = client.api("/rooster?week=3");
    assert_eq!(app.status, 200);
    assert_eq!(
        app.upstream_header("x-certgate-mfa").as_deref(),
        Some("exempt")
    );
    let token = client.cookie("__Host-certgate-device").unwrap();

    let with_cookie = |host: &str, value: &str| {
        w.d.curl(
            host,
            "127.0.0.1",
            "/",
            &[
                "-H",
                "Accept: text/html",
                "-H",
                &format!("Cookie: __Host-certgate-device={value}"),
            ],
        )
    };
    // A forged token (someone else's signature) and garbage are sent to sign in.
    let (payload, _) = token.split_once('.').unwrap();
    for forged in [
        format!("{payload}.AAAA"),
        "garbage".to_owned(),
        String::new(),
    ] {
        let r = with_cookie(NOORD, &forged);
        assert_eq!(r.status, 302, "{forged}");
        assert!(location(&r).contains("/.certgate/login"));
    }
    // Organisation noord's credential does not open zuid.
    let foreign = with_cookie(ZUID, &token);
    assert_eq!(foreign.status, 302);
    assert!(
        location(&foreign).starts_with(&format!("https://{ZUID}:"))
            || location(&foreign).starts_with("/.certgate/login")
    );
    assert_eq!(with_cookie(NOORD, &token).status, 200);
    // Once its session lifetime has passed, it is refused too.
    assert!(eventually(Duration::from_secs(8), || with_cookie(
        NOORD, &token
    )
    .status
        == 302));
    assert!(w.d.metric(r#"certgate_requests_total{decision="denied_expired",org="noord"}"#) >= 1.0);
}

#[test]
fn reset_mfa_refuses_the_old_credential_at_once_and_the_next_sign_in_enrols_again() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "ilse@noord.test", PASSWORD));
    let client = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &client, "ilse@noord.test");
    assert_eq!(client.api("/").status, 200);

    let config = w.d.config();
    certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "ilse@noord.test",
    ]);
    assert!(settles(|| client.api("/").status == 401));
    // The sign-in page says why, to the browser whose credential the reset ended.
    let login = client.get("/.certgate/login");
    assert!(
        login
            .body
            .contains("Your administrator has reset your second factor"),
        "{}",
        login.body
    );
    assert!(
        !w.client(NOORD, "127.0.0.1")
            .get("/.certgate/login")
            .body
            .contains("administrator"),
        "a browser without that credential is told nothing"
    );
    assert!(w
        .mail_about("ilse@noord.test", "second factor")
        .body_text
        .contains("reset"));

    let answer = client.sign_in("/", "ilse@noord.test", PASSWORD);
    assert_eq!(answer.status, 303);
    let page = client.get("/.certgate/mfa");
    assert!(
        page.body.contains("How do you want to confirm it is you?"),
        "the user chooses again: {}",
        page.body
    );

    // A reset while a sign-in waits at its second factor voids it: whoever typed the password
    // cannot go on to enrol a factor of their own.
    certgate_e2e::next_second();
    for action in ["disable", "enable"] {
        certgate_ok(&[
            "user",
            action,
            "--config",
            &config,
            "--org",
            "noord",
            "--user",
            "ilse@noord.test",
        ]);
    }
    let chose = client.post(
        "/.certgate/mfa/choose",
        &[("csrf", &csrf_of(&page.body)), ("method", "email")],
    );
    assert_eq!(location(&chose), "/.certgate/login", "{}", chose.body);
    assert_eq!(location(&client.get("/.certgate/mfa")), "/.certgate/login");
    // Signing in again goes on as before.
    assert_eq!(client.sign_in("/", "ilse@noord.test", PASSWORD).status, 303);
    assert_eq!(client.get("/.certgate/mfa").status, 200);
}

/// Signs a group account in with curl: password, then the authenticator enrolment with oathtool.
fn enrol_group(client: &CurlClient<'_>, user: &str) {
    let answer = client.sign_in("/", user, PASSWORD);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = client.get("/.certgate/mfa");
    assert!(
        page.body.contains("Set up your authenticator app"),
        "{}",
        page.body
    );
    let secret = attribute_after(&page.body, r#"id="secret" class="secret">"#)
        .and_then(|s| s.split('<').next().map(str::to_owned))
        .unwrap()
        .replace(' ', "");
    let done = client.post(
        "/.certgate/mfa/enrol",
        &[("csrf", &csrf_of(&page.body)), ("code", &oathtool(&secret))],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your recovery codes"));
}

#[test]
fn an_exempt_role_skips_mfa_and_a_group_credential_is_renewed_on_use_and_lapses_when_idle() {
    let w = PortalWorld::start(&[org("noord", NOORD, "group_idle_timeout = \"12s\"\n")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "ouder@noord.test", PASSWORD)
    });
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-zon", PASSWORD)
    });

    let parent = w.client(NOORD, "127.0.0.1");
    let answer = parent.sign_in("/", "ouder@noord.test", PASSWORD);
    assert_eq!((answer.status, location(&answer).as_str()), (303, "/"));
    let app = parent.api("/");
    assert_eq!(
        app.upstream_header("x-certgate-mfa").as_deref(),
        Some("exempt")
    );
    assert_eq!(
        w.devices("noord", "ouder@noord.test")[0]["trust"],
        "session"
    );

    let tablet = w.client(NOORD, "127.0.0.1");
    enrol_group(&tablet, "groep-zon");
    let first = tablet.cookie("__Host-certgate-device").unwrap();
    assert_eq!(w.devices("noord", "groep-zon")[0]["trust"], "group");
    // Used every 4 s, five times, for longer than the idle timeout: each use past 3 s renews it.
    for round in 1..=5 {
        std::thread::sleep(Duration::from_secs(4));
        let app = tablet.api("/");
        assert_eq!(app.status, 200, "in use, still trusted in round {round}");
        assert_eq!(
            app.upstream_header("x-certgate-mfa").as_deref(),
            Some("yes")
        );
        assert!(
            app.header("set-cookie")
                .is_some_and(|c| c.starts_with("__Host-certgate-device=")),
            "renewed in round {round}"
        );
    }
    assert_ne!(tablet.cookie("__Host-certgate-device").unwrap(), first);
    // Left alone for longer than the idle timeout, it lapses.
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(tablet.api("/").status, 401);
}

#[test]
fn signing_out_revokes_the_credential_and_a_group_tablet_can_stay_or_be_forgotten() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "kees@noord.test", PASSWORD)
    });
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-maan", PASSWORD)
    });
    let b = Browser::start("en");
    sign_in(&b, &w, NOORD, "/", "kees@noord.test", PASSWORD);
    assert_eq!(header(&app_headers(&b), "x-certgate-mfa"), "exempt");
    let token = b.cookie("__Host-certgate-device").unwrap().value;
    b.goto(&w.url(NOORD, "/.certgate/logout"));
    shot(&b, "logout");
    b.click_button("Sign out");
    assert!(
        b.page_text().contains("You are signed out on this device."),
        "{}",
        b.page_text()
    );
    shot(&b, "signed-out");
    assert!(b.cookie("__Host-certgate-device").is_none());
    let old = w.d.curl(
        NOORD,
        "127.0.0.1",
        "/",
        &["-H", &format!("Cookie: __Host-certgate-device={token}")],
    );
    assert_eq!(old.status, 401, "the signed-out credential is revoked");
    assert!(w.devices("noord", "kees@noord.test")[0]["revoked_at"].is_i64());

    // A group tablet: "sign out" keeps it trusted, "forget this device" does not.
    b.goto(&w.url(NOORD, "/"));
    b.fill("username", "groep-maan");
    b.fill("password", PASSWORD);
    b.click_button("Sign in");
    let secret = shown_secret(&b);
    b.fill("code", &oathtool(&secret));
    b.click_button("Confirm");
    b.click_link("I have stored them, continue");
    assert_eq!(header(&app_headers(&b), "x-certgate-user"), "groep-maan");
    b.goto(&w.url(NOORD, "/.certgate/logout"));
    assert!(
        b.page_text().contains("Forget this device"),
        "{}",
        b.page_text()
    );
    shot(&b, "logout-group");
    b.click_button("Sign out, keep the tablet for the team");
    // It says what staying trusted means, and "forget this device" is right there; nothing
    // reads as if the tablet were signed out of the application.
    let kept = b.page_text();
    assert!(
        kept.contains("this tablet is still trusted for the team")
            && kept.contains("goes on as the group account, without signing in"),
        "{kept}"
    );
    assert!(!kept.contains("Continue"), "{kept}");
    shot(&b, "signed-out-group-kept");
    b.click_link("Back to the application");
    assert_eq!(header(&app_headers(&b), "x-certgate-user"), "groep-maan");
    b.goto(&w.url(NOORD, "/.certgate/logout"));
    b.click_button("Sign out, keep the tablet for the team");
    b.click_button("Forget this device");
    b.goto(&w.url(NOORD, "/"));
    assert!(
        b.current_url().contains("/.certgate/login"),
        "{}",
        b.current_url()
    );
}

#[test]
fn a_forgotten_password_is_replaced_through_a_single_use_link_and_unknown_names_look_the_same() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "lotte@noord.test", PASSWORD)
    });
    let earlier = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        earlier.sign_in("/", "lotte@noord.test", PASSWORD).status,
        303
    );
    assert_eq!(earlier.api("/").status, 200);
    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/"));
    b.click_link("Forgot your password?");
    shot(&b, "forgot-password");
    b.fill("username", "Lotte@noord.test");
    b.click_button("Send the link");
    let sent = b.page_text();
    assert!(
        sent.contains("If an account with this name exists"),
        "{sent}"
    );
    shot(&b, "forgot-password-sent");
    let mail = w.mail_about("lotte@noord.test", "new password");
    let link = mail
        .body_text
        .split_whitespace()
        .find(|word| word.contains("/.certgate/reset?token="))
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&w.url(NOORD, "/.certgate/reset?token=")),
        "{link}"
    );
    b.goto(&link);
    shot(&b, "reset-password");
    // NIST SP 800-63B: the most used passwords and the username are refused with the reason,
    // and the link keeps working.
    for (weak, why) in [
        ("1234567890", "one of the most used passwords"),
        ("Lotte-loves-summer", "must not contain your username"),
        ("welkom2024", "easy to guess"),
    ] {
        b.fill("password", weak);
        b.fill("repeat", weak);
        b.click_button("Save password");
        assert!(b.page_text().contains(why), "{weak}: {}", b.page_text());
    }
    shot(&b, "reset-password-refused");
    b.fill("password", "a brand new passphrase");
    b.fill("repeat", "a brand new passphrasf");
    b.click_button("Save password");
    assert!(
        b.page_text().contains("The two passwords are not the same"),
        "{}",
        b.page_text()
    );
    b.fill("password", "a brand new passphrase");
    b.fill("repeat", "a brand new passphrase");
    b.click_button("Save password");
    assert!(
        b.page_text().contains("Your password has been changed"),
        "{}",
        b.page_text()
    );
    shot(&b, "reset-password-done");
    assert!(w
        .mail_about("lotte@noord.test", "was changed")
        .body_text
        .contains("changed"));
    b.goto(&link);
    assert!(
        b.page_text().contains("no longer valid"),
        "the link works once"
    );
    // A new password signs the account out everywhere: the app and the portal's own pages.
    assert!(settles(|| earlier.api("/").status == 401));
    let account = earlier.get("/.certgate/account");
    assert_eq!(account.status, 303, "{}", account.body);
    assert!(
        account
            .header("location")
            .is_some_and(|l| l.starts_with("/.certgate/login")),
        "{:?}",
        account.header("location")
    );

    let client = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        client.sign_in("/", "lotte@noord.test", PASSWORD).status,
        401
    );
    assert_eq!(
        client
            .sign_in("/", "lotte@noord.test", "a brand new passphrase")
            .status,
        303
    );

    // The same answer for a name nobody has, both held back to the same floor after they
    // arrived (sending the mail is not on the caller's time).
    let ask = |name: &str| {
        let c = w.client(NOORD, "127.0.0.4");
        let page = c.get("/.certgate/forgot");
        let csrf = csrf_of(&page.body);
        held_back(|| c.post("/.certgate/forgot", &[("csrf", &csrf), ("username", name)]))
    };
    let known = ask("lotte@noord.test");
    let unknown = ask("nobody@noord.test");
    assert_eq!((known.status, unknown.status), (200, 200));
    let info =
        |page: &str| attribute_after(page, r#"<p class="info" role="status">"#).unwrap_or_default();
    assert_eq!(info(&known.body), info(&unknown.body));
}

#[test]
fn a_reset_link_works_only_on_its_organisations_host() {
    let w = PortalWorld::start(&[org("noord", NOORD, ""), org("zuid", ZUID, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "mila@noord.test", PASSWORD)
    });
    let c = w.client(NOORD, "127.0.0.1");
    let page = c.get("/.certgate/forgot");
    c.post(
        "/.certgate/forgot",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "mila@noord.test"),
        ],
    );
    let mail = w.mail_about("mila@noord.test", "new password");
    let token = mail
        .body_text
        .split_whitespace()
        .find_map(|word| word.split_once("/.certgate/reset?token="))
        .unwrap()
        .1
        .to_owned();
    // Taken to another organisation's host, the link changes nothing.
    let elsewhere = w.client(ZUID, "127.0.0.1");
    let form = elsewhere.get(&format!("/.certgate/reset?token={token}"));
    let answer = elsewhere.post(
        "/.certgate/reset",
        &[
            ("csrf", &csrf_of(&form.body)),
            ("token", &token),
            ("password", "a brand new passphrase"),
            ("repeat", "a brand new passphrase"),
        ],
    );
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.body.contains("no longer valid"), "{}", answer.body);
    let mila = w.client(NOORD, "127.0.0.1");
    assert_eq!(mila.sign_in("/", "mila@noord.test", PASSWORD).status, 303);
}

#[test]
fn a_full_browser_sign_in_works_on_postgresql() {
    let url = throwaway_postgres_database();
    let w = PortalWorld::start(
        &[org("noord", NOORD, "")],
        &format!("[database]\nurl = \"{url}\"\n"),
    );
    w.add_user(&NewUser::personal("noord", "maria@noord.test", PASSWORD));
    let b = Browser::start("nl");
    sign_in(&b, &w, NOORD, "/rooster", "maria@noord.test", PASSWORD);
    assert!(
        b.page_text().contains("Hoe wilt u bevestigen"),
        "{}",
        b.page_text()
    );
    b.click("input[value=email]");
    b.click_button("Doorgaan");
    b.fill("code", &w.mailed_code("maria@noord.test"));
    b.check("trust");
    b.click_button("Controleren");
    b.past_new_recovery_codes();
    assert!(b.current_url().ends_with("/rooster"), "{}", b.current_url());
    assert_eq!(header(&app_headers(&b), "x-certgate-mfa"), "yes");
    let devices = w.devices("noord", "maria@noord.test");
    assert_eq!(devices[0]["trust"], "trusted");
    assert_eq!(
        devices[0]["expires_at"].as_i64().unwrap() - devices[0]["created_at"].as_i64().unwrap(),
        7 * 86_400
    );
}

#[test]
fn a_host_of_several_organisations_asks_which_and_can_remember_it() {
    const SHARED: &str = "samen.test";
    let w = PortalWorld::start(&[org("noord", SHARED, ""), org("zuid", SHARED, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("zuid", "nina@zuid.test", PASSWORD)
    });
    let client = w.client(SHARED, "127.0.0.1");
    let page = client.get("/.certgate/login");
    assert!(
        page.body.contains(r#"name="org""#),
        "an organisation field: {}",
        page.body
    );
    let post = |org: &str, remember: bool| {
        let page = client.get("/.certgate/login");
        let mut fields = vec![
            ("csrf", csrf_of(&page.body)),
            ("org", org.to_owned()),
            ("username", "nina@zuid.test".to_owned()),
            ("password", PASSWORD.to_owned()),
        ];
        if remember {
            fields.push(("remember_org", "1".to_owned()));
        }
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        client.post("/.certgate/login", &fields)
    };
    let unknown = post("elders", false);
    assert_eq!(unknown.status, 400);
    assert!(error_text(&unknown.body).contains("We do not know this organisation"));
    // Nina is not an account of noord: the usual failure.
    assert_eq!(post("noord", false).status, 401);
    let answer = post("Org zuid", true);
    assert_eq!(
        answer.status, 303,
        "the name works as well as the id: {}",
        answer.body
    );
    assert_eq!(
        client.cookie("__Host-certgate-org").as_deref(),
        Some("zuid")
    );
    assert_eq!(
        client.api("/").upstream_header("x-certgate-org").as_deref(),
        Some("zuid")
    );
    let again = client.get("/.certgate/login");
    assert!(
        again
            .body
            .contains(r#"name="org" type="text" value="zuid""#),
        "{}",
        again.body
    );
    assert!(again.body.contains("Sign in to Org zuid"));
}

#[test]
fn rotating_the_secret_key_keeps_authenticators_working() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-ster", PASSWORD)
    });
    let client = w.client(NOORD, "127.0.0.1");
    let answer = client.sign_in("/", "groep-ster", PASSWORD);
    assert_eq!(answer.status, 303);
    let page = client.get("/.certgate/mfa");
    let secret = attribute_after(&page.body, r#"id="secret" class="secret">"#)
        .and_then(|s| s.split('<').next().map(str::to_owned))
        .unwrap()
        .replace(' ', "");
    let enrolled_with = oathtool(&secret);
    let done = client.post(
        "/.certgate/mfa/enrol",
        &[("csrf", &csrf_of(&page.body)), ("code", &enrolled_with)],
    );
    assert_eq!(done.status, 200);
    // New recovery codes, shown once, replace the first ones.
    let codes = |page: &str| -> Vec<String> {
        page.split("<li><code>")
            .skip(1)
            .filter_map(|p| p.split('<').next().map(str::to_owned))
            .collect()
    };
    let first = codes(&done.body);
    let account = client.get("/.certgate/account");
    let renewed = client.post(
        "/.certgate/account/recovery-codes",
        &[("csrf", &csrf_of(&account.body))],
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_eq!(renewed.header("cache-control").as_deref(), Some("no-store"));
    let second = codes(&renewed.body);
    assert_eq!((first.len(), second.len()), (10, 10));
    assert!(first.iter().all(|c| !second.contains(c)));

    let keys_before = std::fs::read_to_string(w.d.path("data/secrets.key")).unwrap();
    let config = w.d.config();
    let out = certgate_ok(&["keys", "rotate", "--config", &config]);
    assert!(
        out.contains("1 authenticator secrets encrypted again"),
        "{out}"
    );
    let keys_after = std::fs::read_to_string(w.d.path("data/secrets.key")).unwrap();
    assert_ne!(keys_before, keys_after);

    // The next sign-in opens the re-encrypted secret: a fresh code from the same app works.
    assert!(eventually(Duration::from_secs(35), || oathtool(&secret)
        != enrolled_with));
    let fresh = w.client(NOORD, "127.0.0.1");
    let signed_in = fresh.sign_in_with_authenticator("/", "groep-ster", PASSWORD, &secret);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
}

#[test]
fn a_code_sent_to_one_account_never_signs_in_another() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    for user in ["bob@noord.test", "anna@noord.test"] {
        w.add_user(&NewUser::personal("noord", user, PASSWORD));
        // Both have used e-mail codes before, so the next sign-in sends one at once.
        sign_in_by_email(&w, &w.client(NOORD, "127.0.0.1"), user);
    }
    // Bob starts his own sign-in and receives a code, which he keeps.
    let bob = w.client(NOORD, "127.0.0.1");
    assert_eq!(bob.sign_in("/", "bob@noord.test", PASSWORD).status, 303);
    let bobs_code = w.mailed_code("bob@noord.test");
    let before = bob.cookie("__Host-certgate-session").unwrap();
    // In the same browser he signs in with Anna's password and offers his own code.
    let page = bob.get("/.certgate/login");
    let answer = bob.post(
        "/.certgate/login",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "anna@noord.test"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(answer.status, 303);
    assert_ne!(
        bob.cookie("__Host-certgate-session").unwrap(),
        before,
        "a new session id after the password"
    );
    let code_page = bob.get("/.certgate/mfa");
    let refused = bob.post(
        "/.certgate/mfa/code",
        &[("csrf", &csrf_of(&code_page.body)), ("code", &bobs_code)],
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(bob.cookie("__Host-certgate-device").is_none());
}

#[test]
fn a_factor_no_longer_offered_is_proven_once_before_another_is_chosen() {
    let mut noord = org("noord", NOORD, "");
    let w = PortalWorld::start(std::slice::from_ref(&noord), "");
    w.add_user(&NewUser::personal("noord", "rosa@noord.test", PASSWORD));
    sign_in_by_email(&w, &w.client(NOORD, "127.0.0.1"), "rosa@noord.test");

    // The organisation stops offering e-mail codes.
    let reloads = || w.d.metric(r#"certgate_policy_reloads_total{result="ok"}"#);
    let before = reloads();
    noord.policy_extra = noord.policy_extra.replace(r#", "email"]"#, "]");
    w.d.write_policy(&noord);
    assert!(settles(|| reloads() > before));

    // Her password alone does not let her choose another factor: the e-mail code comes first.
    let rosa = w.client(NOORD, "127.0.0.1");
    assert_eq!(rosa.sign_in("/", "rosa@noord.test", PASSWORD).status, 303);
    let page = rosa.get("/.certgate/mfa");
    assert!(page.body.contains("A code was sent to"), "{}", page.body);
    let skipped = rosa.post(
        "/.certgate/mfa/choose",
        &[("csrf", &csrf_of(&page.body)), ("method", "authenticator")],
    );
    assert_eq!(location(&skipped), "/.certgate/mfa");
    let page = rosa.get("/.certgate/mfa");
    assert!(page.body.contains("A code was sent to"), "{}", page.body);
    let proven = rosa.post(
        "/.certgate/mfa/code",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("code", &w.mailed_code("rosa@noord.test")),
        ],
    );
    assert_eq!(location(&proven), "/.certgate/mfa", "{}", proven.body);
    assert!(
        rosa.cookie("__Host-certgate-device").is_none(),
        "not signed in yet"
    );
    // Then she chooses among what is offered now.
    let choose = rosa.get("/.certgate/mfa");
    assert!(
        choose
            .body
            .contains("How do you want to confirm it is you?"),
        "{}",
        choose.body
    );
    assert!(
        choose.body.contains(r#"value="authenticator""#),
        "{}",
        choose.body
    );
    assert!(!choose.body.contains(r#"value="email""#), "{}", choose.body);
}

#[test]
fn with_mfa_for_the_enrolled_only_newcomers_sign_in_by_password_and_the_enrolled_stay_bound() {
    let mut noord = org("noord", NOORD, "");
    let w = PortalWorld::start(std::slice::from_ref(&noord), "");
    w.add_user(&NewUser::personal("noord", "olga@noord.test", PASSWORD));
    w.add_user(&NewUser::personal("noord", "piet@noord.test", PASSWORD));
    // Olga enrols while everyone must.
    sign_in_by_email(&w, &w.client(NOORD, "127.0.0.1"), "olga@noord.test");

    noord.policy_extra = noord
        .policy_extra
        .replace("[mfa]\n", "[mfa]\nrequired = \"enrolled\"\n");
    w.d.write_policy(&noord);
    let piet = w.client(NOORD, "127.0.0.1");
    assert!(settles(|| {
        let answer = piet.sign_in("/", "piet@noord.test", PASSWORD);
        answer.status == 303 && location(&answer) == "/"
    }));
    assert_eq!(
        piet.api("/").upstream_header("x-certgate-mfa").as_deref(),
        Some("none")
    );

    let olga = w.client(NOORD, "127.0.0.1");
    let answer = olga.sign_in("/", "olga@noord.test", PASSWORD);
    assert!(
        location(&answer).ends_with("/.certgate/mfa"),
        "still asked for her code"
    );

    // Piet turns the second factor on from his account page (and cannot turn it off).
    let account = piet.get("/.certgate/account");
    assert!(
        account.body.contains("Turn on the second factor"),
        "{}",
        account.body
    );
    let on = piet.post(
        "/.certgate/account/mfa",
        &[("csrf", &csrf_of(&account.body))],
    );
    assert!(location(&on).ends_with("/.certgate/mfa"), "{}", on.headers);
    let choose = piet.get("/.certgate/mfa");
    piet.post(
        "/.certgate/mfa/choose",
        &[("csrf", &csrf_of(&choose.body)), ("method", "email")],
    );
    let code_page = piet.get("/.certgate/mfa");
    let done = piet.post(
        "/.certgate/mfa/code",
        &[
            ("csrf", &csrf_of(&code_page.body)),
            ("code", &w.mailed_code("piet@noord.test")),
        ],
    );
    // Its first factor: new recovery codes, then back to the account page.
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Set-up complete"), "{}", done.body);
    assert!(
        done.body
            .contains(r#"<a class="button primary" href="/.certgate/account">"#),
        "{}",
        done.body
    );
    assert_eq!(
        piet.api("/").upstream_header("x-certgate-mfa").as_deref(),
        Some("yes")
    );
    assert!(!piet
        .get("/.certgate/account")
        .body
        .contains("Turn on the second factor"));
    let again = w.client(NOORD, "127.0.0.1");
    let answer = again.sign_in("/", "piet@noord.test", PASSWORD);
    assert!(
        location(&answer).ends_with("/.certgate/mfa"),
        "now required for him"
    );
}

#[test]
fn the_organisation_logo_and_colour_brand_the_pages() {
    let noord = org("noord", NOORD, "");
    let w = PortalWorld::start(std::slice::from_ref(&noord), "");
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="#0b6e4f"/></svg>"##;
    std::fs::write(w.d.path("policies/noord.svg"), svg).unwrap();
    let branded = w.d.policy_text(&noord).replacen(
        "default_language",
        "logo = \"noord.svg\"\ncolour = \"#0b6e4f\"\ndefault_language",
        1,
    );
    std::fs::write(w.d.path("policies/noord.toml"), branded).unwrap();
    let client = w.client(NOORD, "127.0.0.1");
    assert!(settles(|| client
        .get("/.certgate/login")
        .body
        .contains(r#"<img src="/.certgate/logo""#)));
    let logo = client.get("/.certgate/logo");
    assert_eq!(logo.status, 200);
    assert_eq!(
        logo.header("content-type").as_deref(),
        Some("image/svg+xml")
    );
    assert_eq!(logo.body, svg);
    let theme = client.get("/.certgate/theme.css");
    assert!(theme.body.contains("--brand: #0b6e4f"), "{}", theme.body);
}

/// "Nederlands / English" on every page: the choice wins over the browser's language, is
/// remembered in a cookie, and comes back to the page it was made on.
#[test]
fn the_language_switch_on_every_page_is_remembered() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/rooster?week=12"));
    assert!(b.source().contains(r#"<html lang="en">"#));
    shot(&b, "language-switch-en");
    b.click_link("Nederlands");
    assert!(b.source().contains(r#"<html lang="nl">"#), "{}", b.source());
    assert!(b.page_text().contains("Inloggen"), "{}", b.page_text());
    // Back on the same page: the sign-in still returns to where the person was going.
    assert!(
        b.current_url()
            .contains("/.certgate/login?return_to=/rooster"),
        "{}",
        b.current_url()
    );
    shot(&b, "language-switch-nl");
    let cookie = b
        .cookie("__Host-certgate-lang")
        .expect("the choice is remembered");
    assert_eq!(cookie.value, "nl");
    assert!(cookie.secure && cookie.http_only, "{cookie:?}");
    assert!(
        cookie.expires.is_some(),
        "kept beyond this visit: {cookie:?}"
    );
    // Every page follows it, though the browser still asks for English.
    b.click_link("Wachtwoord vergeten?");
    assert!(b.source().contains(r#"<html lang="nl">"#));
    b.click_link("English");
    assert!(b.source().contains(r#"<html lang="en">"#));
    assert!(
        b.current_url().ends_with("/.certgate/forgot"),
        "{}",
        b.current_url()
    );

    // The switch goes back only to a page of this host.
    let client = w.client(NOORD, "127.0.0.1");
    for elsewhere in ["%2F%2Fevil.example%2F", "https%3A%2F%2Fevil.example%2F"] {
        let answer = client.get(&format!("/.certgate/language?to=nl&back={elsewhere}"));
        assert_eq!(answer.status, 303);
        assert_eq!(
            answer.header("location").as_deref(),
            Some("/"),
            "{elsewhere}"
        );
    }
}

/// After an administrator resets the second factor, the browser that was signed in lands on the
/// sign-in page with the reason, in its language, instead of without a word.
#[test]
fn the_sign_in_page_says_why_a_credential_ended() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "nina@noord.test", PASSWORD));
    let b = Browser::start("nl");
    sign_in(&b, &w, NOORD, "/", "nina@noord.test", PASSWORD);
    b.click("input[value=email]");
    b.click_button("Doorgaan");
    b.fill("code", &w.mailed_code("nina@noord.test"));
    b.click_button("Controleren");
    b.past_new_recovery_codes();
    assert_eq!(
        header(&app_headers(&b), "x-certgate-user"),
        "nina@noord.test"
    );
    certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &w.d.config(),
        "--org",
        "noord",
        "--user",
        "nina@noord.test",
    ]);
    assert!(eventually(Duration::from_secs(5), || {
        b.goto(&w.url(NOORD, "/rooster"));
        b.current_url().contains("/.certgate/login")
    }));
    assert!(
        b.page_text()
            .contains("Uw beheerder heeft uw tweede factor opnieuw ingesteld"),
        "{}",
        b.page_text()
    );
    shot(&b, "signed-out-by-reset-nl");
}

/// A name blocked after too many wrong passwords is told, in its language, how long to wait and
/// where to go on: "Forgot your password?", which carries the name typed to its form.
#[test]
fn a_blocked_sign_in_says_how_long_and_leads_to_a_new_password() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "fenna@noord.test", PASSWORD)
    });
    // Fenna signed in from this address before, so only the (name, address) limit holds her.
    let earlier = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        earlier.sign_in("/", "fenna@noord.test", PASSWORD).status,
        303
    );
    let b = Browser::start("en");
    for i in 1..=5 {
        sign_in(
            &b,
            &w,
            NOORD,
            "/",
            "fenna@noord.test",
            &format!("wrong {i}"),
        );
        assert!(
            b.page_text()
                .contains("The username or password is not correct."),
            "attempt {i}: {}",
            b.page_text()
        );
    }
    // Now even the right password waits.
    sign_in(&b, &w, NOORD, "/", "fenna@noord.test", PASSWORD);
    let said = b.page_text();
    assert!(
        said.contains("Too many attempts to sign in with this name. Please wait 15 minutes")
            && said.contains("choose \u{201c}Forgot your password?\u{201d} below")
            && said.contains("your administrator can also lift the block"),
        "{said}"
    );
    shot(&b, "sign-in-blocked");
    b.click_link("Forgot your password?");
    assert!(
        b.current_url().contains("/.certgate/forgot"),
        "{}",
        b.current_url()
    );
    assert_eq!(b.value_of("username"), "fenna@noord.test");

    let nl = Browser::start("nl");
    sign_in(&nl, &w, NOORD, "/", "fenna@noord.test", PASSWORD);
    let said = nl.page_text();
    assert!(
        said.contains("Te veel pogingen om met deze naam in te loggen. Wacht 15 minuten")
            && said.contains("kies dan hieronder \u{201c}Wachtwoord vergeten?\u{201d}"),
        "{said}"
    );
    shot(&nl, "sign-in-blocked-nl");
    nl.click_link("Wachtwoord vergeten?");
    assert_eq!(nl.value_of("username"), "fenna@noord.test");
}

/// An organisation admin's action on `user`'s account page, posted (and confirmed) by `admin`,
/// who signed in with a second factor.
fn admin_act(admin: &CurlClient<'_>, user: &str, action: &str, fields: &[(&str, &str)]) {
    let list = admin.get(&format!("/.certgate/admin?q={user}"));
    let at = list
        .body
        .find(&format!(">{user}<"))
        .unwrap_or_else(|| panic!("{user} not listed: {}", list.body));
    let link = "/.certgate/admin/accounts/";
    let start = list.body[..at].rfind(link).expect("a link to the account") + link.len();
    let id: String = list.body[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let page = admin.get(&format!("{link}{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let mut form = vec![("csrf", csrf.as_str()), ("confirm", "yes")];
    form.extend_from_slice(fields);
    let done = admin.post(&format!("{link}{id}/{action}"), &form);
    assert_eq!(done.status, 303, "{action}: {}", done.body);
}

/// Opens the application in `b` until the gateway sends it to the sign-in page; that page's
/// text.
fn signed_out(b: &Browser, w: &PortalWorld) -> String {
    assert!(settles(|| {
        b.goto(&w.url(NOORD, "/rooster"));
        b.current_url().contains("/.certgate/login")
    }));
    b.page_text()
}

/// Whoever ended a browser's credential, the sign-in page it lands on says why: a new password
/// set by the administrator (a shared tablet, set up in Dutch), a new password the person chose
/// with "Forgot your password?" in another browser, and a device the administrator revoked.
#[test]
fn the_sign_in_page_says_why_after_a_new_password_or_a_revoked_device() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "lotte@noord.test", PASSWORD));
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-zonnebloem", PASSWORD)
    });
    let admin = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &admin, "beheer@noord.test");

    // The shared tablet sets up its authenticator app, in Dutch.
    let tablet = Browser::start("nl");
    sign_in(&tablet, &w, NOORD, "/", "groep-zonnebloem", PASSWORD);
    assert!(
        tablet.has(".qr svg") && tablet.page_text().contains("authenticator-app"),
        "{}",
        tablet.page_text()
    );
    shot(&tablet, "enrol-authenticator-nl");
    tablet.fill("code", &oathtool(&shown_secret(&tablet)));
    tablet.click_button("Bevestigen");
    assert!(
        tablet.page_text().contains("Uw herstelcodes"),
        "{}",
        tablet.page_text()
    );
    tablet.click_link("Ik heb ze bewaard, doorgaan");
    assert_eq!(
        header(&app_headers(&tablet), "x-certgate-user"),
        "groep-zonnebloem"
    );
    // Its administrator sets a new password: the tablet is told why it must sign in again.
    let new_password = "zonnebloem in de tuin";
    admin_act(
        &admin,
        "groep-zonnebloem",
        "set-password",
        &[("password", new_password), ("repeat", new_password)],
    );
    let said = signed_out(&tablet, &w);
    assert!(
        said.contains("Uw wachtwoord is gewijzigd, daarom bent u op elk apparaat uitgelogd."),
        "{said}"
    );
    shot(&tablet, "signed-out-by-new-password-nl");

    // Lotte chooses a new password on another browser: her phone is told why.
    let phone = Browser::start("en");
    sign_in(&phone, &w, NOORD, "/", "lotte@noord.test", PASSWORD);
    phone.click("input[value=email]");
    phone.click_button("Continue");
    phone.fill("code", &w.mailed_code("lotte@noord.test"));
    phone.click_button("Verify");
    // A first factor set up may show recovery codes first.
    if phone.has("#recovery-codes") {
        phone.click_link("I have stored them, continue");
    }
    assert_eq!(
        header(&app_headers(&phone), "x-certgate-user"),
        "lotte@noord.test"
    );
    let elsewhere = w.client(NOORD, "127.0.0.2");
    let forgot = elsewhere.get("/.certgate/forgot");
    elsewhere.post(
        "/.certgate/forgot",
        &[
            ("csrf", &csrf_of(&forgot.body)),
            ("username", "lotte@noord.test"),
        ],
    );
    let mail = w.mail_about("lotte@noord.test", "new password");
    let token = mail
        .body_text
        .split_whitespace()
        .find_map(|word| word.split_once("/.certgate/reset?token="))
        .unwrap()
        .1
        .to_owned();
    let form = elsewhere.get(&format!("/.certgate/reset?token={token}"));
    let reset = elsewhere.post(
        "/.certgate/reset",
        &[
            ("csrf", &csrf_of(&form.body)),
            ("token", &token),
            ("password", "a brand new passphrase"),
            ("repeat", "a brand new passphrase"),
        ],
    );
    assert!(
        reset.body.contains("Your password has been changed"),
        "{}",
        reset.body
    );
    let said = signed_out(&phone, &w);
    assert!(
        said.contains("Your password was changed, so you were signed out on every device."),
        "{said}"
    );
    shot(&phone, "signed-out-by-own-new-password");

    // Signed in again, her phone is revoked by the administrator: it is told so.
    certgate_e2e::next_second();
    phone.fill("username", "lotte@noord.test");
    phone.fill("password", "a brand new passphrase");
    phone.click_button("Sign in");
    phone.fill("code", &w.mailed_code("lotte@noord.test"));
    phone.click_button("Verify");
    assert_eq!(
        header(&app_headers(&phone), "x-certgate-user"),
        "lotte@noord.test"
    );
    let active: Vec<String> = w
        .devices("noord", "lotte@noord.test")
        .iter()
        .filter(|d| d["state"] == "active")
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(active.len(), 1, "{active:?}");
    admin_act(
        &admin,
        "lotte@noord.test",
        "revoke-device",
        &[("device", &active[0])],
    );
    let said = signed_out(&phone, &w);
    assert!(
        said.contains("Your administrator has signed you out on this device."),
        "{said}"
    );
    assert!(!said.contains("Your password was changed"), "{said}");
    shot(&phone, "signed-out-by-admin");
}

/// An e-mail code as the first second factor gives recovery codes, as an authenticator app
/// does: the first sign-in ends on them, with set-up complete and ways to keep them, and one of
/// them signs in later when the mail is out of reach.
#[test]
fn a_first_sign_in_by_e_mail_code_ends_on_recovery_codes_that_work_later() {
    let w = PortalWorld::start(&[org("noord", NOORD, "")], "");
    w.add_user(&NewUser::personal("noord", "sanne@noord.test", PASSWORD));
    let b = Browser::start("en");
    sign_in(&b, &w, NOORD, "/rooster", "sanne@noord.test", PASSWORD);
    b.click("input[value=email]");
    b.click_button("Continue");
    b.fill("code", &w.mailed_code("sanne@noord.test"));
    b.click_button("Verify");
    let text = b.page_text();
    assert!(
        text.contains("Your recovery codes") && text.contains("Set-up complete"),
        "{text}"
    );
    let codes = shown_recovery_codes(&b);
    assert_eq!(codes.len(), 10, "{codes:?}");
    for keep in ["button.copy", "button[data-download]", "button[data-print]"] {
        assert!(b.visible(keep), "{keep}: {}", b.source());
    }
    shot(&b, "recovery-codes-email");
    b.click_link("I have stored them, continue");
    assert!(b.current_url().ends_with("/rooster"), "{}", b.current_url());
    assert_eq!(header(&app_headers(&b), "x-certgate-mfa"), "yes");

    // Later, on another browser, the mail is out of reach: a recovery code signs her in.
    let later = Browser::start("en");
    sign_in(&later, &w, NOORD, "/", "sanne@noord.test", PASSWORD);
    later.click_link("Use a recovery code");
    later.fill("code", &codes[3]);
    later.click_button("Verify");
    assert!(
        later
            .page_text()
            .contains("You used a recovery code. You have 9 left."),
        "{}",
        later.page_text()
    );
    later.click_link("Not now, continue");
    assert_eq!(
        header(&app_headers(&later), "x-certgate-user"),
        "sanne@noord.test"
    );
    assert_eq!(header(&app_headers(&later), "x-certgate-mfa"), "yes");
}
