//! Passkeys end to end: headless Chromium with a virtual authenticator (a phone's fingerprint
//! sensor that always recognises its owner, through WebDriver's WebAuthn extension) doing real
//! WebAuthn ceremonies against the real `certgate serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use std::time::Duration;

use certgate_e2e::{
    certgate_ok, eventually, Browser, NewUser, Org, PortalWorld, VirtualAuthenticator, DESKTOP,
    PHONE,
};

const NOORD: &str = "noord.test";
const PASSWORD: &str = "correct horse battery";

fn org(id: &'static str, host: &str, mfa: &str) -> Org {
    let mut org = Org::new(id, host);
    org.policy_extra = format!("\n[mfa]\n{mfa}\n");
    org
}

/// Screenshots of the page at phone and desktop width: `target/tmp/screenshots/passkeys/`.
fn shot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join("passkeys");
    for (label, (w, h)) in [("phone", PHONE), ("desktop", DESKTOP)] {
        browser.set_viewport_size(w, h);
        browser.screenshot(&dir.join(format!("{name}-{label}.png")));
    }
    browser.set_viewport_size(DESKTOP.0, DESKTOP.1);
}

/// Opens `path` and signs in with the password.
fn sign_in(b: &Browser, w: &PortalWorld, host: &str, user: &str) {
    b.goto(&w.url(host, "/"));
    assert!(
        b.current_url().contains("/.certgate/login"),
        "{}",
        b.current_url()
    );
    b.fill("username", user);
    b.fill("password", PASSWORD);
    let dutch = b.source().contains(r#"<html lang="nl">"#);
    b.click_button(if dutch { "Inloggen" } else { "Sign in" });
}

/// The audit log's (action, detail) pairs of `org`, oldest first, as the database holds them.
fn audit(w: &PortalWorld) -> Vec<(String, String)> {
    let db = w.d.path("data/certgate.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys\nfor a,d in sqlite3.connect(sys.argv[1]).execute('SELECT action, detail FROM audit_log ORDER BY id'): print(a+'\\t'+d)",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, d)| (a.to_owned(), d.to_owned()))
        .collect()
}

/// The names of the passkeys the account page lists.
fn passkeys_listed(b: &Browser) -> Vec<String> {
    let names = b.execute(
        "return [...document.querySelectorAll('#passkeys .device-title')].map(p => p.textContent.trim());",
    );
    serde_json::from_value(names).unwrap()
}

/// Forgets the cookies of every host, as a browser whose user cleared them.
fn forget(b: &Browser, w: &PortalWorld, hosts: &[&str]) {
    for host in hosts {
        b.goto(&w.url(host, "/.certgate/static/portal.css"));
        b.delete_cookies();
    }
}

/// Signs in with the password on a host whose sign-in page also offers passkeys in the
/// user-name field: the authenticator does not recognise its user while the page loads, so the
/// autofill cannot sign in first.
fn sign_in_with_password(
    b: &Browser,
    w: &PortalWorld,
    authenticator: &VirtualAuthenticator,
    host: &str,
    user: &str,
) {
    b.set_user_verified(authenticator, false);
    b.goto(&w.url(host, "/.certgate/login"));
    b.set_user_verified(authenticator, true);
    b.fill("username", user);
    b.fill("password", PASSWORD);
    b.click_button("Sign in");
}

/// Whether the page is the application behind the gateway.
fn at_the_app(b: &Browser) -> bool {
    b.page_text().contains("The legacy app behind certgate")
}

#[test]
fn a_passkey_made_at_the_first_sign_in_signs_in_again_and_more_are_added_and_removed() {
    let w = PortalWorld::start(
        &[org(
            "noord",
            NOORD,
            "methods = [\"passkey\", \"authenticator\", \"email\"]",
        )],
        "",
    );
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    let b = Browser::start("en");
    let phone = b.add_virtual_authenticator();
    sign_in(&b, &w, NOORD, "anna@noord.test");
    // The choice: the passkey first and chosen, on a device with a fingerprint sensor.
    let text = b.page_text();
    assert!(
        text.contains("Sign in with your fingerprint or face (passkey)"),
        "{text}"
    );
    assert!(b.visible("[data-passkey-option]"));
    let checked = b.execute("return document.querySelector('input[name=method]:checked').value;");
    assert_eq!(checked, "passkey");
    shot(&b, "choose");
    b.click_button("Continue");
    let text = b.page_text();
    assert!(
        text.contains("Sign in with your fingerprint or face"),
        "{text}"
    );
    shot(&b, "enrol");
    b.click_button("Set up a passkey");
    // The first factor comes with recovery codes.
    let text = b.page_text();
    assert!(text.contains("recovery"), "{text}");
    let made = b.webauthn_credentials(&phone);
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].is_resident && made[0].rp_id == NOORD, "{made:?}");
    b.click_link("I have stored them, continue");
    assert!(at_the_app(&b), "{}", b.page_text());

    // Next time: the passkey, no code.
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "anna@noord.test");
    let text = b.page_text();
    assert!(text.contains("Confirm that it is you"), "{text}");
    shot(&b, "prove");
    b.click_button("Continue with passkey");
    assert!(at_the_app(&b), "{}", b.page_text());
    assert_eq!(
        w.d.metric(r#"certgate_logins_total{method="passkey",org="noord",result="success"}"#),
        2.0
    );
    // Two passwords, each counted once.
    assert_eq!(
        w.d.metric(r#"certgate_logins_total{method="password",org="noord",result="success"}"#),
        2.0
    );
    let log = audit(&w);
    assert!(
        log.contains(&("mfa-enrolled".into(), "passkey".into())),
        "{log:?}"
    );

    // The account page, right after signing in: the passkey, not removable while it is the
    // only factor.
    b.goto(&w.url(NOORD, "/.certgate/account"));
    let text = b.page_text();
    assert_eq!(passkeys_listed(&b), ["Chrome on Linux"], "{text}");
    assert!(
        text.contains("add another passkey before you remove this one"),
        "{text}"
    );
    assert!(!b.has("form[action='/.certgate/account/passkeys/remove']"));
    // A second one, on the laptop (another authenticator; the phone is put away).
    let on_phone = b.webauthn_credentials(&phone);
    b.remove_virtual_authenticator(&phone);
    let laptop = b.add_virtual_authenticator();
    b.fill("name", "Laptop at the office");
    b.click_button("Add a passkey");
    let text = b.page_text();
    assert!(
        b.current_url().ends_with("/.certgate/account"),
        "{}",
        b.current_url()
    );
    assert!(text.contains("Laptop at the office"), "{text}");
    assert_eq!(b.webauthn_credentials(&laptop).len(), 1);
    b.execute("document.getElementById('passkeys').scrollIntoView();");
    shot(&b, "account");
    assert!(w
        .mail_about("anna@noord.test", "new sign-in method")
        .body_text
        .contains("a passkey"));
    // The phone's is removed; the laptop's stays and signs in.
    let phone_row = b.execute(
        "return [...document.querySelectorAll('#passkeys li')].find(li => !li.textContent.includes('Laptop')).id;",
    );
    let phone_row = phone_row.as_str().unwrap().to_owned();
    b.click(&format!("#{phone_row} button"));
    eventually(Duration::from_secs(5), || !b.has(&format!("#{phone_row}")));
    let listed = passkeys_listed(&b);
    assert_eq!(listed, ["Laptop at the office"], "{}", b.page_text());
    assert!(w
        .mail_about("anna@noord.test", "A passkey was removed")
        .body_text
        .contains("Chrome on Linux"));
    assert!(audit(&w).contains(&("passkey-removed".into(), "Chrome on Linux".into())));
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "anna@noord.test");
    b.click_button("Continue with passkey");
    assert!(at_the_app(&b), "{}", b.page_text());
    // The removed one no longer proves the account: the phone comes back with it, alone.
    b.remove_virtual_authenticator(&laptop);
    let phone = b.add_virtual_authenticator();
    b.add_webauthn_credential(&phone, &on_phone[0]);
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "anna@noord.test");
    b.click("form[data-passkey] button");
    assert!(
        eventually(Duration::from_secs(10), || b
            .visible("[data-passkey-error]")),
        "{}",
        b.page_text()
    );
    assert!(
        b.current_url().contains("/.certgate/mfa"),
        "{}",
        b.current_url()
    );
}

/// Captures the browser's answer to the page's passkey ceremony instead of sending it.
fn capture_answer(b: &Browser) -> String {
    b.execute(
        "const f = document.querySelector('form[data-passkey]'); \
         f.submit = function () { window.__answer = f.elements.credential.value; }; \
         f.requestSubmit();",
    );
    let mut answer = String::new();
    let got = eventually(Duration::from_secs(10), || {
        match b.execute("return window.__answer || null;") {
            serde_json::Value::String(a) => {
                answer = a;
                true
            }
            _ => false,
        }
    });
    assert!(got, "no answer from the authenticator: {}", b.page_text());
    answer
}

/// Sends `answer` as the page's passkey form's answer, as a browser would, and waits for the
/// page it leads to.
fn send_answer(b: &Browser, answer: &str) {
    b.execute(&format!(
        "const f = document.querySelector('form[data-passkey]'); \
         f.elements.credential.value = {}; window.__sent = true; \
         HTMLFormElement.prototype.submit.call(f);",
        serde_json::Value::String(answer.to_owned())
    ));
    let loaded = eventually(Duration::from_secs(10), || {
        b.execute("return window.__sent === undefined && document.readyState === 'complete';")
            == serde_json::Value::Bool(true)
    });
    assert!(loaded, "the answer was not sent: {}", b.current_url());
}

/// Makes a passkey for `user` at its first sign-in on `host` (the choice, then the passkey),
/// past the recovery codes to the application.
fn first_passkey(b: &Browser, w: &PortalWorld, host: &str, user: &str) {
    sign_in(b, w, host, user);
    if b.has("input[name=method]") {
        b.click_button("Continue");
    }
    b.click_button("Set up a passkey");
    if b.page_text().contains("I have stored them, continue") {
        b.click_link("I have stored them, continue");
    }
    assert!(at_the_app(b), "{}", b.page_text());
}

#[test]
fn a_passkey_alone_signs_in_where_the_organisation_allows_it_and_nowhere_else() {
    const ZUID: &str = "zuid.test";
    let w = PortalWorld::start(
        &[
            org(
                "noord",
                NOORD,
                "methods = [\"passkey\", \"email\"]\npasswordless = true",
            ),
            org("zuid", ZUID, "methods = [\"passkey\", \"email\"]"),
        ],
        "",
    );
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    w.add_user(&NewUser::personal("zuid", "anna@zuid.test", PASSWORD));
    let b = Browser::start("en");
    let phone = b.add_virtual_authenticator();
    first_passkey(&b, &w, NOORD, "anna@noord.test");
    first_passkey(&b, &w, ZUID, "anna@zuid.test");
    assert_eq!(b.webauthn_credentials(&phone).len(), 2);
    let passkey_sign_ins = || {
        w.d.metric(r#"certgate_logins_total{method="passkey",org="noord",result="success"}"#)
    };
    assert_eq!(passkey_sign_ins(), 1.0);

    // Noord: the user-name field offers the passkey as the page opens (the browser's autofill;
    // this authenticator takes the offer at once), and it signs in, no name typed.
    forget(&b, &w, &[NOORD, ZUID]);
    b.goto(&w.url(NOORD, "/"));
    assert!(
        eventually(Duration::from_secs(10), || at_the_app(&b)),
        "{}",
        b.page_text()
    );
    assert_eq!(passkey_sign_ins(), 2.0);
    // "Sign in with a passkey" where the autofill did not.
    forget(&b, &w, &[NOORD]);
    b.set_user_verified(&phone, false);
    b.goto(&w.url(NOORD, "/"));
    assert!(
        b.visible("form[data-passkey=discover]"),
        "{}",
        b.page_text()
    );
    let autocomplete = b.execute("return document.getElementById('username').autocomplete;");
    assert_eq!(autocomplete, "username webauthn");
    shot(&b, "sign-in");
    b.set_user_verified(&phone, true);
    b.click_button("Sign in with a passkey");
    assert!(at_the_app(&b), "{}", b.page_text());
    assert_eq!(passkey_sign_ins(), 3.0);

    // Zuid does not allow it: no button, no passkeys in the field, and an answer sent anyway is
    // refused (there is no ceremony to answer).
    b.goto(&w.url(ZUID, "/.certgate/login"));
    assert!(!b.has("form[data-passkey=discover]"));
    let autocomplete = b.execute("return document.getElementById('username').autocomplete;");
    assert_eq!(autocomplete, "username");
    b.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/.certgate/passkey'; \
         for (const [k, v] of [['csrf', document.querySelector('[name=csrf]').value], ['credential', '{}']]) { \
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); } \
         document.body.appendChild(f); f.submit();",
    );
    assert!(
        eventually(Duration::from_secs(10), || b
            .page_text()
            .contains("That passkey did not sign you in")),
        "{}",
        b.page_text()
    );

    // A credential of Noord answering Zuid's second-factor ceremony is refused: its signature
    // is for noord.test and for another challenge.
    forget(&b, &w, &[NOORD, ZUID]);
    sign_in_with_password(&b, &w, &phone, NOORD, "anna@noord.test");
    assert!(
        b.page_text().contains("Confirm that it is you"),
        "{}",
        b.page_text()
    );
    let noord_answer = capture_answer(&b);
    sign_in(&b, &w, ZUID, "anna@zuid.test");
    assert!(
        b.page_text().contains("Confirm that it is you"),
        "{}",
        b.page_text()
    );
    send_answer(&b, &noord_answer);
    assert!(
        b.page_text().contains("That did not work"),
        "{}",
        b.page_text()
    );
    assert!(!at_the_app(&b));
    assert!(audit(&w).contains(&("sign-in-failed".into(), "passkey".into())));

    // After an MFA reset the passkey signs in no more: the autofill's answer is refused.
    let config = w.d.config();
    certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "anna@noord.test",
    ]);
    forget(&b, &w, &[NOORD]);
    b.goto(&w.url(NOORD, "/"));
    assert!(
        eventually(Duration::from_secs(10), || b
            .page_text()
            .contains("That passkey did not sign you in")),
        "{}",
        b.page_text()
    );
    assert!(!at_the_app(&b));
    assert_eq!(passkey_sign_ins(), 3.0);
}

#[test]
fn reset_mfa_ends_the_passkeys_and_replayed_or_cloned_answers_are_refused_and_audited() {
    let w = PortalWorld::start(
        &[org(
            "noord",
            NOORD,
            "methods = [\"passkey\", \"authenticator\"]",
        )],
        "",
    );
    w.add_user(&NewUser::personal("noord", "bram@noord.test", PASSWORD));
    let b = Browser::start("en");
    let phone = b.add_virtual_authenticator();
    first_passkey(&b, &w, NOORD, "bram@noord.test");

    // A replay: an answer that signed in once signs in no more.
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "bram@noord.test");
    let answer = capture_answer(&b);
    send_answer(&b, &answer);
    assert!(at_the_app(&b), "{}", b.page_text());
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "bram@noord.test");
    send_answer(&b, &answer);
    assert!(
        b.page_text().contains("That did not work"),
        "{}",
        b.page_text()
    );

    // A copy of the key, whose counter is behind the real one's: refused, and audited.
    let real = b.webauthn_credentials(&phone).remove(0);
    assert!(real.sign_count >= 2, "{real:?}");
    b.remove_webauthn_credential(&phone, &real.credential_id);
    let copy = certgate_e2e::VirtualCredential {
        sign_count: 0,
        ..real.clone()
    };
    b.add_webauthn_credential(&phone, &copy);
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "bram@noord.test");
    b.click_button("Continue with passkey");
    assert!(
        b.page_text().contains("That did not work"),
        "{}",
        b.page_text()
    );
    assert!(
        audit(&w).iter().any(|(a, _)| a == "passkey-cloned"),
        "{:?}",
        audit(&w)
    );
    // The real one (its counter ahead) still signs in.
    b.remove_webauthn_credential(&phone, &copy.credential_id);
    b.add_webauthn_credential(&phone, &real);
    b.click_button("Continue with passkey");
    assert!(at_the_app(&b), "{}", b.page_text());

    // The phone is lost: the administrator resets the second factor. The passkey no longer
    // proves the account; the password leads to a new factor.
    let config = w.d.config();
    certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "bram@noord.test",
    ]);
    let shown = certgate_ok(&[
        "user",
        "show",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "bram@noord.test",
    ]);
    assert!(shown.contains("passkeys: 0"), "{shown}");
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "bram@noord.test");
    assert!(
        b.has("input[name=method]"),
        "a new factor is chosen: {}",
        b.page_text()
    );
}

#[test]
fn the_pages_speak_dutch_and_a_group_tablet_may_use_its_own_passkey() {
    let w = PortalWorld::start(
        &[org(
            "noord",
            NOORD,
            "methods = [\"passkey\", \"authenticator\"]\ngroup_passkeys = true",
        )],
        "",
    );
    w.add_user(&NewUser {
        group: true,
        email: None,
        ..NewUser::personal("noord", "groep-zon", PASSWORD)
    });
    let b = Browser::start("nl");
    let tablet = b.add_virtual_authenticator();
    sign_in(&b, &w, NOORD, "groep-zon");
    let text = b.page_text();
    assert!(
        text.contains("Inloggen met uw vingerafdruk of gezicht (passkey)"),
        "{text}"
    );
    shot(&b, "choose-nl");
    b.click_button("Doorgaan");
    assert!(b
        .page_text()
        .contains("Inloggen met uw vingerafdruk of gezicht"));
    shot(&b, "enrol-nl");
    b.click_button("Passkey instellen");
    b.click_link("Ik heb ze bewaard, doorgaan");
    assert!(at_the_app(&b), "{}", b.page_text());
    assert_eq!(b.webauthn_credentials(&tablet).len(), 1);
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "groep-zon");
    assert!(
        b.page_text().contains("Bevestig dat u het bent"),
        "{}",
        b.page_text()
    );
    shot(&b, "prove-nl");
    b.click_button("Doorgaan met passkey");
    assert!(at_the_app(&b), "{}", b.page_text());
    b.goto(&w.url(NOORD, "/.certgate/account"));
    assert_eq!(passkeys_listed(&b).len(), 1, "{}", b.page_text());
    b.execute("document.getElementById('passkeys').scrollIntoView();");
    shot(&b, "account-nl");
}

/// A passkey is a factor: adding or removing one takes a sign-in that proved one. A parent (a
/// role exempt from the second factor) adds a first passkey after the password; signed in by
/// the password alone again, the account page no longer lets that session change them.
#[test]
fn only_a_sign_in_with_the_second_factor_changes_an_accounts_passkeys() {
    let w = PortalWorld::start(
        &[org(
            "noord",
            NOORD,
            "methods = [\"passkey\", \"email\"]\nexempt_roles = [\"parent\"]",
        )],
        "",
    );
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "ouder@noord.test", PASSWORD)
    });
    let b = Browser::start("en");
    let phone = b.add_virtual_authenticator();
    sign_in(&b, &w, NOORD, "ouder@noord.test");
    assert!(at_the_app(&b), "{}", b.page_text());
    // No factor yet: the password is enough to add the first.
    b.goto(&w.url(NOORD, "/.certgate/account"));
    b.click_button("Add a passkey");
    b.click_link("I have stored them, continue");
    b.goto(&w.url(NOORD, "/.certgate/account"));
    assert_eq!(passkeys_listed(&b).len(), 1, "{}", b.page_text());
    assert_eq!(b.webauthn_credentials(&phone).len(), 1);
    // Now the account has one: a password-only sign-in may not add or remove.
    b.delete_cookies();
    sign_in(&b, &w, NOORD, "ouder@noord.test");
    assert!(at_the_app(&b), "{}", b.page_text());
    b.goto(&w.url(NOORD, "/.certgate/account"));
    let text = b.page_text();
    assert!(text.contains("with your second factor"), "{text}");
    assert!(!b.has("form[action='/.certgate/account/passkeys']"));
    let csrf = b.execute("return document.querySelector('[name=csrf]').value;");
    let id = b.execute("return document.querySelector('#passkeys li').id.replace('passkey-', '');");
    b.execute(&format!(
        "const f = document.createElement('form'); f.method = 'post'; \
         f.action = '/.certgate/account/passkeys/remove'; \
         for (const [k, v] of [['csrf', {csrf}], ['passkey', {id}]]) {{ \
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; \
           f.appendChild(i); }} \
         document.body.appendChild(f); f.submit();"
    ));
    assert!(
        eventually(Duration::from_secs(10), || b
            .current_url()
            .contains("/.certgate/login")),
        "{}",
        b.current_url()
    );
    b.goto(&w.url(NOORD, "/.certgate/account"));
    assert_eq!(passkeys_listed(&b).len(), 1, "{}", b.page_text());
}
