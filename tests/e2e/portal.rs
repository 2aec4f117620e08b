//! The portal end to end: headless Chromium (and curl where no page is involved) against the
//! real `certgate serve`, with a real SMTP server, a local SMS receiver and oathtool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certgate_e2e::{
    attribute_after, eventually, oathtool, Browser, NewUser, Org, PortalWorld, DESKTOP, PHONE,
};

const NOORD: &str = "noord.test";
#[allow(dead_code)]
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
    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/rooster?week=12"));
    shot(&b, "login");
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
    b.fill("code", &code);
    b.click_button("Verify");
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
        .contains("e-mail"));

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
    let code = certgate_e2e::six_digits(&sms.text).unwrap();
    assert!(sms.text.contains("Org noord"), "{}", sms.text);
    b.fill("code", &code);
    b.click_button("Controleren");
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
    let secret = shown_secret(&b);
    assert!(secret.len() >= 32, "{secret}");
    b.fill("code", &oathtool(&secret));
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
    b.fill("code", &fresh);
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
    b.fill("code", &codes[3].to_uppercase());
    b.click_button("Verify");
    assert!(
        b.page_text().contains("You have 9 left"),
        "{}",
        b.page_text()
    );
    b.click_link("Continue");
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
}

#[test]
fn trusting_the_device_gives_the_longer_lifetime_and_both_expire() {
    let mfa = "session_lifetime = \"6s\"\ntrust_device_for = \"14s\"\n";
    let w = PortalWorld::start(&[org("noord", NOORD, mfa)], "");
    w.add_user(&NewUser::personal("noord", "eva@noord.test", PASSWORD));
    let untrusted = Browser::start("en");
    let trusted = Browser::start("en");
    let mut signed_in = Vec::new();
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
        assert_eq!(header(&app_headers(b), "x-certgate-user"), "eva@noord.test");
        signed_in.push(Instant::now());
        let cookie = b.cookie("__Host-certgate-device").unwrap();
        let lifetime = cookie.expires.unwrap() - unix_now();
        let expected = if tick { 14 } else { 6 };
        assert!(
            (expected - 2..=expected).contains(&lifetime),
            "{lifetime} s left of {expected}"
        );
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

    // After the session lifetime only the trusted browser still gets in.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(signed_in[0].elapsed()));
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
    std::thread::sleep(Duration::from_secs(15).saturating_sub(signed_in[1].elapsed()));
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
