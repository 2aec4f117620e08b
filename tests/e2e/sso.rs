//! Single sign-on against real OpenID Connect providers: panva's `oidc-provider` driven through
//! headless Chromium, and a forging provider (tokens the test shapes itself) driven with curl.
//! Microsoft and Google entries reach `oidc-provider` through their documented overrides
//! (`authority`, `issuer`), which issues their claim shapes, so their claim rules are tested as
//! they run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use certgate_e2e::{
    certgate, Browser, CurlClient, ForgeProvider, NewUser, OidcProvider, Org, PortalWorld,
    Response, DESKTOP, PHONE,
};
use serde_json::json;

const NOORD: &str = "noord.test";
const PASSWORD: &str = "correct horse battery";
const SECRET: &str = "client-secret-0123456789";

/// An `[[sso]]` entry for `issuer`; the client secret comes from a file next to the policies.
fn sso_entry(id: &str, label: &str, issuer: &str, extra: &str) -> String {
    format!(
        "\n[[sso]]\nid = \"{id}\"\nkind = \"oidc\"\nlabel = \"{label}\"\nissuer = \"{issuer}\"\nclient_id = \"certgate-{id}\"\nclient_secret_file = \"sso-secret\"\n{extra}"
    )
}

fn org_with(sso: &str) -> Org {
    let mut org = Org::new("noord", NOORD);
    org.policy_extra = format!(
        "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\nexempt_roles = [\"parent\"]\n{sso}"
    );
    org
}

/// The deployment with the policy's secret file written before it starts.
fn world(orgs: &[Org]) -> PortalWorld {
    let w = PortalWorld::start_with(orgs, "", |d| {
        std::fs::write(d.path("policies/sso-secret"), format!("{SECRET}\n")).unwrap();
    });
    w
}

fn callback(w: &PortalWorld, id: &str) -> String {
    w.url(NOORD, &format!("/.certgate/sso/{id}/callback"))
}

fn shot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join("sso");
    for (label, (w, h)) in [("phone", PHONE), ("desktop", DESKTOP)] {
        browser.set_viewport_size(w, h);
        browser.screenshot(&dir.join(format!("{name}-{label}.png")));
    }
}

fn app_user(b: &Browser) -> (String, String) {
    let text = b.page_text();
    assert!(
        text.contains("The legacy app behind certgate"),
        "not the app: {text}"
    );
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    (value("x-certgate-user"), value("x-certgate-mfa"))
}

/// A `kind = "microsoft"` entry for `TENANT` at `authority` (the test provider standing in for
/// login.microsoftonline.com, which serves `<authority>/<tenant>/v2.0`).
fn microsoft_entry(id: &str, authority: &str, extra: &str) -> String {
    format!(
        "\n[[sso]]\nid = \"{id}\"\nkind = \"microsoft\"\ntenant = \"{TENANT}\"\nauthority = \"{authority}\"\nclient_id = \"certgate-{id}\"\nclient_secret_file = \"sso-secret\"\n{extra}"
    )
}

/// A `kind = "google"` entry whose `issuer` is the test provider standing in for Google.
fn google_entry(id: &str, issuer: &str, extra: &str) -> String {
    format!(
        "\n[[sso]]\nid = \"{id}\"\nkind = \"google\"\nissuer = \"{issuer}\"\nclient_id = \"certgate-{id}\"\nclient_secret_file = \"sso-secret\"\n{extra}"
    )
}

/// The organisation's Entra ID tenant, and someone else's.
const TENANT: &str = "0f2a6c1e-1234-4a5b-9c8d-00112233aabb";
const OTHER_TENANT: &str = "7d9e0b1c-5678-4c3d-8e9f-445566778899";

/// Opens the app, picks the provider's button, and signs in at the provider as `login`.
fn sign_in_at_provider(b: &Browser, w: &PortalWorld, button: &str, login: &str) {
    b.goto(&w.url(NOORD, "/rooster"));
    assert!(
        b.current_url().contains("/.certgate/login"),
        "{}",
        b.current_url()
    );
    b.click_link(button);
    b.fill("login", login);
    b.click_button("Sign in");
}

#[test]
fn provider_mfa_signs_in_without_a_certgate_code_and_a_required_amr_is_enforced() {
    let idp = OidcProvider::start();
    let entries = format!(
        "{}{}",
        sso_entry("care", "Care ID", &idp.issuer(), "mfa = \"provider\"\n"),
        sso_entry(
            "strict",
            "Care ID (strict)",
            &idp.issuer(),
            "mfa = \"provider\"\nrequire_provider_mfa = true\n"
        ),
    );
    let w = world(&[org_with(&entries)]);
    for id in ["care", "strict"] {
        idp.add_client(&format!("certgate-{id}"), SECRET, &callback(&w, id));
    }
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    idp.set_account(
        "anna",
        json!({"sub": "anna-1", "email": "anna@noord.test", "email_verified": true, "amr": ["pwd"]}),
    );

    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/rooster"));
    assert!(
        b.page_text().contains("Sign in with Care ID"),
        "{}",
        b.page_text()
    );
    shot(&b, "login-with-sso");
    sign_in_at_provider(&b, &w, "Sign in with Care ID", "anna");
    assert!(b.current_url().ends_with("/rooster"), "{}", b.current_url());
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));
    assert!(b.cookie("__Host-certgate-device").is_some());

    // Without amr=mfa the strict entry refuses, and says why.
    b.delete_cookies();
    idp.sign_out_everyone();
    sign_in_at_provider(&b, &w, "Sign in with Care ID (strict)", "anna");
    let text = b.page_text();
    assert!(
        text.contains("requires that you confirm your sign-in"),
        "{text}"
    );
    assert!(b.cookie("__Host-certgate-device").is_none());
    shot(&b, "sso-needs-mfa");

    // With it, in, and the application learns MFA was done.
    idp.set_account(
        "anna",
        json!({"sub": "anna-1", "email": "anna@noord.test", "email_verified": true, "amr": ["pwd", "mfa"]}),
    );
    b.delete_cookies();
    idp.sign_out_everyone();
    sign_in_at_provider(&b, &w, "Sign in with Care ID (strict)", "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "yes".into()));

    // Cancelling at the provider comes back as a readable page with a way back.
    b.delete_cookies();
    idp.sign_out_everyone();
    b.goto(&w.url(NOORD, "/rooster"));
    b.click_link("Sign in with Care ID");
    b.click_button("Cancel");
    assert!(
        b.page_text()
            .contains("You cancelled signing in at Care ID"),
        "{}",
        b.page_text()
    );
    shot(&b, "sso-cancelled");
    b.click_link("Sign in again");
    assert!(
        b.current_url().contains("/.certgate/login"),
        "{}",
        b.current_url()
    );
}

#[test]
fn certgate_mfa_follows_the_provider_sign_in_and_key_rotation_keeps_working() {
    let idp = OidcProvider::start();
    let w = world(&[org_with(&sso_entry(
        "care",
        "Care ID",
        &idp.issuer(),
        "mfa = \"certgate\"\n",
    ))]);
    idp.add_client("certgate-care", SECRET, &callback(&w, "care"));
    w.add_user(&NewUser::personal("noord", "bart@noord.test", PASSWORD));
    idp.set_account(
        "bart",
        json!({"sub": "bart-1", "email": "bart@noord.test", "email_verified": true}),
    );
    let b = Browser::start("en");
    sign_in_at_provider(&b, &w, "Sign in with Care ID", "bart");
    assert!(
        b.page_text()
            .contains("How do you want to confirm it is you?"),
        "{}",
        b.page_text()
    );
    b.click("input[value=email]");
    b.click_button("Continue");
    b.fill("code", &w.mailed_code("bart@noord.test"));
    b.click_button("Verify");
    // A first factor ends on recovery codes, set up for a lost phone or mailbox.
    assert!(
        b.page_text().contains("Set-up complete"),
        "{}",
        b.page_text()
    );
    b.click_link("I have stored them, continue");
    assert_eq!(app_user(&b), ("bart@noord.test".into(), "yes".into()));

    // The provider rotates its signing key: the next sign-in still works.
    idp.rotate_keys();
    idp.sign_out_everyone();
    b.delete_cookies();
    sign_in_at_provider(&b, &w, "Sign in with Care ID", "bart");
    assert!(
        b.page_text().contains("A code was sent to"),
        "{}",
        b.page_text()
    );
    b.fill("code", &w.mailed_code("bart@noord.test"));
    b.click_button("Verify");
    assert_eq!(app_user(&b), ("bart@noord.test".into(), "yes".into()));
}

/// A fresh browser session (no certgate cookies, no provider session) signs in at the provider
/// as `login`; the page it ends on.
fn sign_in_afresh(b: &Browser, w: &PortalWorld, idp: &OidcProvider, button: &str, login: &str) {
    b.delete_cookies();
    idp.sign_out_everyone();
    sign_in_at_provider(b, w, button, login);
}

/// Asserts the page says `says` and no credential was issued.
fn refused_in_browser(b: &Browser, says: &str) {
    let text = b.page_text();
    assert!(text.contains(says), "{says:?} not in: {text}");
    assert!(
        b.cookie("__Host-certgate-device").is_none(),
        "no credential: {text}"
    );
}

#[test]
fn microsoft_signs_in_by_oid_within_its_tenant_and_links_only_a_verified_member_address() {
    let idp = OidcProvider::start();
    let w = world(&[org_with(&microsoft_entry(
        "entra",
        &idp.issuer(),
        "mfa = \"provider\"\nallowed_email_domains = [\"noord.test\"]\n",
    ))]);
    idp.add_client("certgate-entra", SECRET, &callback(&w, "entra"));
    for user in ["anna@noord.test", "bart@noord.test", "cor@noord.test"] {
        w.add_user(&NewUser::personal("noord", user, PASSWORD));
    }
    const ANNA: &str = "3c8f1a2b-0000-4000-8000-0000000a0a0a";
    const BART: &str = "3c8f1a2b-0000-4000-8000-0000000b0b0b";
    const COR: &str = "3c8f1a2b-0000-4000-8000-0000000c0c0c";
    let b = Browser::start("en");
    let button = "Sign in with Microsoft";

    // A member whose address the tenant verified (xms_edov) is linked by it.
    idp.set_account(
        "anna",
        json!({"sub": "anna-for-this-app", "oid": ANNA, "tid": TENANT, "email": "anna@noord.test",
               "xms_edov": true, "name": "Anna de Vries"}),
    );
    sign_in_afresh(&b, &w, &idp, button, "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));
    assert!(b.cookie("__Host-certgate-device").is_some());

    // Entra's `sub` differs per application (a new app registration, say) and her address
    // changes to one nobody vouches for: the link is by oid, and holds.
    idp.set_account(
        "anna",
        json!({"sub": "anna-for-another-app", "oid": ANNA, "tid": TENANT,
               "email": "a.devries@elders.example", "xms_edov": false}),
    );
    sign_in_afresh(&b, &w, &idp, button, "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));

    // Someone else who now has Anna's first `sub` is not Anna; and `email_verified`, which any
    // Entra user administrator can make true, does not vouch for bart@noord.test.
    idp.set_account(
        "bart",
        json!({"sub": "anna-for-this-app", "oid": BART, "tid": TENANT, "email": "bart@noord.test",
               "email_verified": true}),
    );
    sign_in_afresh(&b, &w, &idp, button, "bart");
    refused_in_browser(&b, "cannot be used here");
    shot(&b, "microsoft-not-vouched");

    // A guest from another organisation (`idp` names their home) is not vouched for either,
    // whatever xms_edov says.
    idp.set_account(
        "cor",
        json!({"sub": "cor-guest", "oid": COR, "tid": TENANT, "email": "cor@noord.test",
               "xms_edov": true, "idp": format!("https://sts.windows.net/{OTHER_TENANT}/")}),
    );
    sign_in_afresh(&b, &w, &idp, button, "cor");
    refused_in_browser(&b, "cannot be used here");

    // Once the tenant verified Bart's address, he is linked, to his own account.
    idp.set_account(
        "bart",
        json!({"sub": "bart-for-this-app", "oid": BART, "tid": TENANT, "email": "bart@noord.test",
               "xms_edov": true}),
    );
    sign_in_afresh(&b, &w, &idp, button, "bart");
    assert_eq!(app_user(&b), ("bart@noord.test".into(), "none".into()));

    // A token from another tenant is refused, even for an oid linked here and a verified
    // address; so is one that does not say its tenant, or names no oid.
    for (login, claims) in [
        (
            "anna-elsewhere",
            json!({"sub": "anna-elsewhere", "oid": ANNA, "tid": OTHER_TENANT,
                   "email": "anna@noord.test", "xms_edov": true}),
        ),
        (
            "no-tenant",
            json!({"sub": "no-tenant", "oid": ANNA, "email": "anna@noord.test", "xms_edov": true}),
        ),
        (
            "no-oid",
            json!({"sub": "no-oid", "tid": TENANT, "email": "cor@noord.test", "xms_edov": true}),
        ),
    ] {
        idp.set_account(login, claims);
        sign_in_afresh(&b, &w, &idp, button, login);
        refused_in_browser(
            &b,
            "The answer from Microsoft could not be checked, so you are not signed in.",
        );
        if login == "anna-elsewhere" {
            shot(&b, "microsoft-other-tenant");
        }
    }
    // Refused, nothing was linked: Cor, whose address no refused token could vouch for, is
    // still unlinked, and Anna still signs in as herself.
    sign_in_afresh(&b, &w, &idp, button, "cor");
    refused_in_browser(&b, "cannot be used here");
    sign_in_afresh(&b, &w, &idp, button, "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));
}

#[test]
fn google_links_only_a_workspace_address_of_its_own_domain_and_then_by_sub() {
    let idp = OidcProvider::start();
    let w = world(&[org_with(&google_entry(
        "google",
        &idp.issuer(),
        "mfa = \"provider\"\n",
    ))]);
    idp.add_client("certgate-google", SECRET, &callback(&w, "google"));
    for user in ["anna@noord.test", "bart@noord.test", "cor@noord.test"] {
        w.add_user(&NewUser::personal("noord", user, PASSWORD));
    }
    let b = Browser::start("en");
    let button = "Sign in with Google";

    // A Workspace account of the address's own domain: hd vouches, linked.
    idp.set_account(
        "anna",
        json!({"sub": "111000000000000000001", "email": "anna@noord.test", "email_verified": true,
               "hd": "noord.test", "name": "Anna de Vries"}),
    );
    sign_in_afresh(&b, &w, &idp, button, "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));
    assert!(b.cookie("__Host-certgate-device").is_some());

    // A consumer Google account made with a work address (no hd) is not linked by it, however
    // verified the address.
    idp.set_account(
        "bart",
        json!({"sub": "111000000000000000002", "email": "bart@noord.test", "email_verified": true}),
    );
    sign_in_afresh(&b, &w, &idp, button, "bart");
    refused_in_browser(&b, "cannot be used here");
    shot(&b, "google-consumer-account");

    // Another Workspace's account, and an unverified address in the right Workspace: neither.
    for claims in [
        json!({"sub": "111000000000000000003", "email": "cor@noord.test", "email_verified": true,
               "hd": "elders.example"}),
        json!({"sub": "111000000000000000003", "email": "cor@noord.test", "email_verified": false,
               "hd": "noord.test"}),
    ] {
        idp.set_account("cor", claims);
        sign_in_afresh(&b, &w, &idp, button, "cor");
        refused_in_browser(&b, "cannot be used here");
    }

    // Linked by sub: Anna's account at Google now shows a private address, and she is still
    // Anna; the consumer account showing her work address is still nobody here.
    idp.set_account(
        "anna",
        json!({"sub": "111000000000000000001", "email": "anna.devries@gmail.example",
               "email_verified": true}),
    );
    sign_in_afresh(&b, &w, &idp, button, "anna");
    assert_eq!(app_user(&b), ("anna@noord.test".into(), "none".into()));
    idp.set_account(
        "bart",
        json!({"sub": "111000000000000000002", "email": "anna@noord.test", "email_verified": true}),
    );
    sign_in_afresh(&b, &w, &idp, button, "bart");
    refused_in_browser(&b, "cannot be used here");
}

/// Starts a sign-in at the forge from `client`: the provider's answer (the callback URL) is
/// returned, not yet visited.
fn forge_callback(client: &CurlClient<'_>, id: &str) -> String {
    let start = client.get(&format!("/.certgate/sso/{id}?org=noord"));
    assert_eq!(start.status, 303, "{}", start.body);
    let authorize = start.header("location").unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
            &authorize,
        ])
        .output()
        .unwrap();
    let to = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(to.contains("/.certgate/sso/"), "{to}");
    to
}

/// The path and query of a URL on the gateway.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_owned()
}

fn error_of(page: &Response) -> String {
    let start = page.body.find(r#"<p class="error""#).map_or(0, |i| i);
    let text = &page.body[start..];
    text[text.find('>').map_or(0, |i| i + 1)..text.find("</p>").unwrap_or(text.len())].to_owned()
}

fn refused(client: &CurlClient<'_>, page: &Response, contains: &str) {
    assert!(
        page.status == 400 || page.status == 403,
        "{}: {}",
        page.status,
        page.body
    );
    assert!(
        error_of(page).contains(contains),
        "{:?} does not say {contains:?}",
        error_of(page)
    );
    assert!(
        client.cookie("__Host-certgate-device").is_none(),
        "no credential"
    );
}

#[test]
fn forged_replayed_and_foreign_answers_each_get_a_clear_page_and_no_credential() {
    let forge = ForgeProvider::start();
    let w = world(&[org_with(&sso_entry(
        "forge",
        "Forge",
        &forge.issuer(),
        "mfa = \"provider\"\nallowed_email_domains = [\"noord.test\"]\n",
    ))]);
    forge.add_client("certgate-forge", SECRET, &callback(&w, "forge"));
    w.add_user(&NewUser::personal("noord", "cor@noord.test", PASSWORD));
    forge.set_claims(json!({"sub": "cor-1", "email": "cor@noord.test", "email_verified": true}));

    // The happy path first: the forge is a working provider.
    let ok = w.client(NOORD, "127.0.0.1");
    let back = ok.get(&path_of(&forge_callback(&ok, "forge")));
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(ok.cookie("__Host-certgate-device").is_some());

    // A tampered state, a replayed callback, a callback in another browser.
    let c = w.client(NOORD, "127.0.0.1");
    let url = forge_callback(&c, "forge");
    let tampered = url.replace("state=", "state=x");
    refused(
        &c,
        &c.get(&path_of(&tampered)),
        "already finished or took too long",
    );
    let c = w.client(NOORD, "127.0.0.1");
    let url = forge_callback(&c, "forge");
    assert_eq!(c.get(&path_of(&url)).status, 303);
    let replay = w.client(NOORD, "127.0.0.1");
    refused(&replay, &c.get(&path_of(&url)), "already finished");
    let starter = w.client(NOORD, "127.0.0.1");
    let url = forge_callback(&starter, "forge");
    let elsewhere = w.client(NOORD, "127.0.0.1");
    refused(
        &elsewhere,
        &elsewhere.get(&path_of(&url)),
        "started in another browser",
    );

    // ID tokens that must not pass.
    for (spec, what) in [
        (json!({"claims": {"nonce": "wrong"}}), "wrong nonce"),
        (
            json!({"claims": {"aud": "someone-else"}}),
            "another client's token",
        ),
        (json!({"claims": {"exp": 1}}), "expired"),
        (
            json!({"kid": "unknown-kid", "sign_with_other_key": true}),
            "unknown key",
        ),
        (json!({"alg": "none"}), "unsigned"),
    ] {
        let c = w.client(NOORD, "127.0.0.1");
        forge.next_token(spec);
        let page = c.get(&path_of(&forge_callback(&c, "forge")));
        assert!(page.status == 403, "{what}: {} {}", page.status, page.body);
        refused(&c, &page, "could not be checked");
    }

    // Addresses the provider does not vouch for, or outside the allowed domains, link nothing;
    // an unknown user without just-in-time accounts is sent to the administrator.
    for (claims, says) in [
        (
            json!({"sub": "x-1", "email": "cor@evil.example", "email_verified": true}),
            "cannot be used here",
        ),
        (
            json!({"sub": "x-2", "email": "cor@noord.test", "email_verified": false}),
            "cannot be used here",
        ),
        (
            json!({"sub": "x-3", "email": "nobody@noord.test", "email_verified": true}),
            "no account here for you",
        ),
    ] {
        forge.set_claims(claims);
        let c = w.client(NOORD, "127.0.0.1");
        let page = c.get(&path_of(&forge_callback(&c, "forge")));
        refused(&c, &page, says);
    }
    assert!(
        w.d.metric(r#"certgate_logins_total{method="sso",org="noord",result="failure"}"#) >= 8.0
    );
    // Each refusal is in the organisation's audit log, under the address the provider named.
    let admin = w.client(NOORD, "127.0.0.1");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    assert_eq!(
        admin
            .sign_in_by_email("/", "beheer@noord.test", PASSWORD)
            .status,
        303
    );
    let file = w.d.path("audit.jsonl");
    assert_eq!(admin.download("/.certgate/admin/audit.jsonl", &file), 200);
    let failures: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["action"] == "sign-in-failed")
        .collect();
    let has = |actor: &str, detail: &str| {
        failures
            .iter()
            .any(|e| e["actor"] == actor && e["detail"] == detail)
    };
    assert!(
        has("(unknown name)", "sso forge: the answer was refused"),
        "{failures:?}"
    );
    assert!(
        has("nobody@noord.test", "sso forge: no such account"),
        "{failures:?}"
    );
    assert!(
        has(
            "cor@evil.example",
            "sso forge: e-mail address not vouched for"
        ),
        "{failures:?}"
    );
    // An address the provider does not vouch for is anyone's to claim: not named.
    assert!(
        has(
            "(unknown name)",
            "sso forge: e-mail address not vouched for"
        ),
        "{failures:?}"
    );
    assert!(
        !failures.iter().any(|e| e["actor"] == "cor@noord.test"),
        "{failures:?}"
    );
}

#[test]
fn a_linked_subject_survives_an_e_mail_change_accounts_appear_just_in_time_and_tablets_stay_out() {
    let forge = ForgeProvider::start();
    let w = world(&[org_with(&sso_entry(
        "forge",
        "Forge",
        &forge.issuer(),
        "mfa = \"provider\"\ncreate_accounts = true\nallowed_email_domains = [\"noord.test\"]\n",
    ))]);
    forge.add_client("certgate-forge", SECRET, &callback(&w, "forge"));
    w.add_user(&NewUser::personal("noord", "dirk@noord.test", PASSWORD));
    let who = |c: &CurlClient<'_>| {
        c.api("/")
            .upstream_header("x-certgate-user")
            .unwrap_or_default()
    };

    forge.set_claims(json!({"sub": "dirk-1", "email": "dirk@noord.test", "email_verified": true}));
    let c = w.client(NOORD, "127.0.0.1");
    assert_eq!(c.get(&path_of(&forge_callback(&c, "forge"))).status, 303);
    assert_eq!(who(&c), "dirk@noord.test");
    // His address changes at the provider (even to one not vouched for): the link holds.
    forge.set_claims(
        json!({"sub": "dirk-1", "email": "d.jansen@elders.example", "email_verified": false}),
    );
    let c = w.client(NOORD, "127.0.0.1");
    assert_eq!(c.get(&path_of(&forge_callback(&c, "forge"))).status, 303);
    assert_eq!(who(&c), "dirk@noord.test");

    // A newcomer gets a personal account on the first sign-in.
    forge.set_claims(json!({"sub": "eva-1", "email": "eva@noord.test", "email_verified": true, "name": "Eva Smit"}));
    let c = w.client(NOORD, "127.0.0.1");
    assert_eq!(c.get(&path_of(&forge_callback(&c, "forge"))).status, 303);
    assert_eq!(who(&c), "eva@noord.test");
    let config = w.d.config();
    let show = |user: &str| {
        certgate(&[
            "user", "show", "--config", &config, "--org", "noord", "--user", user,
        ])
    };
    let shown = show("eva@noord.test");
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Eva Smit") && shown.contains("personal"),
        "{shown}"
    );
    // Only in the organisation's own domains: a stranger the provider vouches for gets nothing.
    forge.set_claims(
        json!({"sub": "mal-1", "email": "mallory@elders.example", "email_verified": true}),
    );
    let c = w.client(NOORD, "127.0.0.1");
    let page = c.get(&path_of(&forge_callback(&c, "forge")));
    refused(&c, &page, "cannot be used here");
    assert!(
        !show("mallory@elders.example").status.success(),
        "no account was made"
    );

    // A shared tablet account never signs in this way.
    w.add_user(&NewUser {
        email: Some("tablet@noord.test"),
        group: true,
        ..NewUser::personal("noord", "groep-zon", PASSWORD)
    });
    forge.set_claims(json!({"sub": "tab-1", "email": "tablet@noord.test", "email_verified": true}));
    let c = w.client(NOORD, "127.0.0.1");
    let page = c.get(&path_of(&forge_callback(&c, "forge")));
    refused(
        &c,
        &page,
        "Shared tablet accounts sign in with their username and password",
    );
}

#[test]
fn a_provider_that_is_down_shows_a_page_and_certgate_keeps_serving() {
    let port = certgate_e2e::free_port();
    let w = world(&[org_with(&sso_entry(
        "gone",
        "Gone ID",
        &format!("http://127.0.0.1:{port}"),
        "",
    ))]);
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "fay@noord.test", PASSWORD)
    });
    let c = w.client(NOORD, "127.0.0.1");
    let page = c.get("/.certgate/sso/gone?org=noord");
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        error_of(&page).contains("Gone ID cannot be reached right now"),
        "{}",
        page.body
    );
    // Password sign-in is unaffected.
    assert_eq!(c.sign_in("/", "fay@noord.test", PASSWORD).status, 303);
}
