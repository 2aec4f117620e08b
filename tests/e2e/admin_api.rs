//! The organisation admin JSON API through the real gateway: an admin makes a token in the
//! browser session, scripts use it (scopes, expiry, revocation, source networks, one
//! organisation only), every change is audited under the token's name, and schemathesis checks
//! the server against its own OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use certgate_e2e::{settles, CurlClient, NewUser, Org, PortalWorld, Response};
use serde_json::{json, Value};

const NOORD: &str = "noord.test";
const ZUID: &str = "zuid.test";
const PASSWORD: &str = "correct horse battery";
const SESSION_COOKIE: &str = "__Host-certgate-session";
const DEVICE_COOKIE: &str = "__Host-certgate-device";

fn org(id: &'static str, host: &str) -> Org {
    let mut org = Org::new(id, host);
    org.policy_extra =
        "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\nexempt_roles = [\"ouder\"]\n".into();
    org
}

/// Password and e-mail code: the client then holds a fresh sign-in.
fn signed_in(client: &CurlClient<'_>, user: &str) {
    let done = client.sign_in_by_email("/", user, PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);
}

/// An admin signed in with a second factor on `host`.
fn admin_session<'w>(w: &'w PortalWorld, org: &str, host: &str, user: &str) -> CurlClient<'w> {
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal(org, user, PASSWORD)
    });
    let client = w.client(host, "127.0.0.1");
    signed_in(&client, user);
    client
}

/// A call of the admin API on `host` from the address `from`, with the browser's cookies, a
/// bearer token, the CSRF header and a JSON body as given.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    from: &'a str,
    token: Option<&'a str>,
    cookies: Option<&'a CurlClient<'a>>,
    csrf: Option<&'a str>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, path: &'a str) -> Self {
        Call {
            method,
            path,
            from: "127.0.0.1",
            token: None,
            cookies: None,
            csrf: None,
            body: None,
        }
    }

    fn send(&self, w: &PortalWorld, host: &str) -> Response {
        let mut args: Vec<String> = vec![
            "--interface".into(),
            self.from.into(),
            "-X".into(),
            self.method.into(),
        ];
        if let Some(token) = self.token {
            args.extend(["-H".into(), format!("Authorization: Bearer {token}")]);
        }
        if let Some(client) = self.cookies {
            let cookies: Vec<String> = [SESSION_COOKIE, DEVICE_COOKIE]
                .iter()
                .filter_map(|name| client.cookie(name).map(|v| format!("{name}={v}")))
                .collect();
            args.extend(["-H".into(), format!("Cookie: {}", cookies.join("; "))]);
        }
        if let Some(csrf) = self.csrf {
            args.extend(["-H".into(), format!("X-CSRF-Token: {csrf}")]);
        }
        if let Some(body) = &self.body {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data".into(),
                body.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.d.curl(
            host,
            "127.0.0.1",
            &format!("/.certgate/api/v1/admin/{}", self.path),
            &args,
        )
    }
}

fn with_token<'a>(method: &'a str, path: &'a str, token: &'a str) -> Call<'a> {
    Call {
        token: Some(token),
        ..Call::new(method, path)
    }
}

/// The error code of a JSON error answer, after checking its shape.
fn error_of(response: &Response) -> String {
    let body = response.json();
    assert!(
        body["error_description"].is_string(),
        "{}: {}",
        response.status,
        response.body
    );
    body["error"].as_str().unwrap().to_owned()
}

/// Makes a token as the signed-in `admin`; (its id, the token).
fn make_token(
    w: &PortalWorld,
    admin: &CurlClient<'_>,
    host: &str,
    body: Value,
) -> (String, String) {
    let made = session_change(w, admin, host, "tokens", body);
    assert_eq!(made.status, 201, "{}", made.body);
    let made = made.json();
    (
        made["id"].as_str().unwrap().to_owned(),
        made["token"].as_str().unwrap().to_owned(),
    )
}

/// A POST of the token endpoints with the session's cookies and CSRF token.
fn session_change(
    w: &PortalWorld,
    admin: &CurlClient<'_>,
    host: &str,
    path: &str,
    body: Value,
) -> Response {
    let listed = Call {
        cookies: Some(admin),
        ..Call::new("GET", "tokens")
    }
    .send(w, host);
    assert_eq!(listed.status, 200, "{}", listed.body);
    let csrf = listed.json()["csrf"].as_str().unwrap().to_owned();
    Call {
        cookies: Some(admin),
        csrf: Some(&csrf),
        body: Some(body),
        ..Call::new("POST", path)
    }
    .send(w, host)
}

fn id_of(w: &PortalWorld, host: &str, token: &str, username: &str) -> String {
    let list = with_token("GET", "accounts", token).send(w, host);
    assert_eq!(list.status, 200, "{}", list.body);
    list.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == username)
        .unwrap_or_else(|| panic!("{username} in {}", list.body))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_token_is_made_in_the_browser_used_by_a_script_audited_by_name_and_revoked() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    let beheer = admin_session(&w, "noord", NOORD, "beheer@noord.test");
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));

    // The token endpoints: someone signed in, an admin, with the session's CSRF token.
    let anonymous = Call::new("GET", "tokens").send(&w, NOORD);
    assert_eq!(
        (anonymous.status, error_of(&anonymous)),
        (401, "login_required".into())
    );
    let lisa = w.client(NOORD, "127.0.0.1");
    signed_in(&lisa, "lisa@noord.test");
    let not_admin = Call {
        cookies: Some(&lisa),
        ..Call::new("GET", "tokens")
    }
    .send(&w, NOORD);
    assert_eq!(
        (not_admin.status, error_of(&not_admin)),
        (403, "admin_only".into())
    );
    let forged = Call {
        cookies: Some(&beheer),
        csrf: Some("forged"),
        body: Some(json!({"name": "ci", "scopes": ["audit:read"], "expires_in": 3600})),
        ..Call::new("POST", "tokens")
    }
    .send(&w, NOORD);
    assert_eq!(
        (forged.status, error_of(&forged)),
        (403, "invalid_csrf_token".into())
    );
    let too_long = session_change(
        &w,
        &beheer,
        NOORD,
        "tokens",
        json!({"name": "ci", "scopes": ["audit:read"], "expires_in": 400 * 86_400}),
    );
    assert_eq!(
        (too_long.status, error_of(&too_long)),
        (400, "invalid_request".into())
    );

    let every_scope = json!([
        "accounts:read",
        "accounts:write",
        "devices:write",
        "audit:read"
    ]);
    let (token_id, token) = make_token(
        &w,
        &beheer,
        NOORD,
        json!({"name": "ci", "scopes": every_scope, "expires_in": 3600}),
    );
    assert!(token.starts_with("cgt_") && token.len() == 47, "{token}");
    let again = session_change(
        &w,
        &beheer,
        NOORD,
        "tokens",
        json!({"name": "ci", "scopes": ["audit:read"], "expires_in": 60}),
    );
    assert_eq!((again.status, error_of(&again)), (409, "conflict".into()));
    // The list never shows the token itself, and the database holds only its hash.
    let listed = Call {
        cookies: Some(&beheer),
        ..Call::new("GET", "tokens")
    }
    .send(&w, NOORD);
    assert!(!listed.body.contains(&token), "{}", listed.body);
    assert_eq!(
        listed.json()["tokens"][0]["created_by"],
        "beheer@noord.test"
    );
    let stored: Vec<u8> = ["certgate.db", "certgate.db-wal", "certgate.db-journal"]
        .iter()
        .filter_map(|f| std::fs::read(w.d.path("data").join(f)).ok())
        .flatten()
        .collect();
    let hash: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let holds = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds(&hash) && !holds(&token), "only the hash is stored");

    // A script: list, create (with its welcome mail), conflicts and bad input named.
    let lisa_id = id_of(&w, NOORD, &token, "lisa@noord.test");
    let one = with_token("GET", &format!("accounts/{lisa_id}"), &token).send(&w, NOORD);
    assert_eq!(one.json()["mfa_method"], "email", "{}", one.body);
    assert_eq!(one.json()["passkeys"], 0, "{}", one.body);
    let eva =
        json!({"username": "eva@noord.test", "display_name": "Eva", "email": "eva@noord.test"});
    let made = Call {
        body: Some(eva.clone()),
        ..with_token("POST", "accounts", &token)
    }
    .send(&w, NOORD);
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["kind"], "personal");
    assert!(w
        .mail_about("eva@noord.test", "Your account at Org noord")
        .body_text
        .contains("Forgot your password?"));
    let taken = Call {
        body: Some(eva),
        ..with_token("POST", "accounts", &token)
    }
    .send(&w, NOORD);
    assert_eq!((taken.status, error_of(&taken)), (409, "conflict".into()));
    let bad = Call {
        body: Some(json!({"username": "bo", "display_name": "Bo", "mobile": "0612"})),
        ..with_token("POST", "accounts", &token)
    }
    .send(&w, NOORD);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("international form"));
    // A token does not make administrators, or accounts exempt from the second factor, however
    // the role is written (roles are stored in lower case); nothing is created.
    for roles in [
        json!(["Admin"]),
        json!(["planner", "ADMIN"]),
        json!(["Ouder"]),
    ] {
        let refused = Call {
            body: Some(json!({"username": "mallory", "display_name": "M",
                "email": "mallory@evil.test", "roles": roles})),
            ..with_token("POST", "accounts", &token)
        }
        .send(&w, NOORD);
        assert_eq!(
            (refused.status, error_of(&refused)),
            (400, "invalid_request".into()),
            "{roles}: {}",
            refused.body
        );
        assert!(refused.body.contains("admin pages"), "{}", refused.body);
    }
    let accounts = with_token("GET", "accounts", &token).send(&w, NOORD);
    assert!(!accounts.body.contains("mallory"), "{}", accounts.body);

    // Resetting her second factor signs her out everywhere at once and tells her.
    assert_eq!(lisa.api("/").status, 200);
    let reset =
        with_token("POST", &format!("accounts/{lisa_id}/reset-mfa"), &token).send(&w, NOORD);
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.json()["mfa_method"], Value::Null);
    assert!(settles(|| lisa.api("/").status == 401));
    assert!(w
        .mail_about("lisa@noord.test", "second factor")
        .body_text
        .contains("reset"));

    // Her devices, and revoking one (once).
    let devices = with_token("GET", &format!("accounts/{lisa_id}/devices"), &token).send(&w, NOORD);
    assert_eq!(devices.status, 200, "{}", devices.body);
    // Ended by the reset, by the gateway's own rule: not "active".
    assert_eq!(
        devices.json()["devices"][0]["state"],
        "ended",
        "{}",
        devices.body
    );
    let device = devices.json()["devices"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = with_token("POST", &format!("devices/{device}/revoke"), &token).send(&w, NOORD);
    assert_eq!(revoked.json()["state"], "revoked", "{}", revoked.body);
    let twice = with_token("POST", &format!("devices/{device}/revoke"), &token).send(&w, NOORD);
    assert_eq!((twice.status, error_of(&twice)), (409, "conflict".into()));

    // A certificate an operator issued her for 200 days stays refused as long as it lives.
    // (After the second of her MFA reset, which refused what was issued until then.)
    certgate_e2e::next_second();
    let operators = w.d.issue_client("noord", "lisa@noord.test", "200d");
    assert_eq!(w.d.status_with_cert(w.d.https, NOORD, &operators), 200);
    let disabled =
        with_token("POST", &format!("accounts/{lisa_id}/disable"), &token).send(&w, NOORD);
    assert_eq!(disabled.json()["disabled"], true, "{}", disabled.body);
    assert!(settles(|| w
        .d
        .status_with_cert(w.d.https, NOORD, &operators)
        == 401));
    let kept =
        w.d.revocations()
            .into_iter()
            .filter(|r| r["subject"] == "lisa@noord.test" && r["reason"] == "disabled")
            .map(|r| r["drop_after"].as_i64().unwrap() - r["revoked_at"].as_i64().unwrap())
            .max();
    assert!(kept >= Some(200 * 86_400), "{kept:?}");
    let enabled = with_token("POST", &format!("accounts/{lisa_id}/enable"), &token).send(&w, NOORD);
    assert_eq!(enabled.json()["disabled"], false, "{}", enabled.body);
    // A token does not lock out the administrator it acts for.
    let beheer_id = id_of(&w, NOORD, &token, "beheer@noord.test");
    let itself =
        with_token("POST", &format!("accounts/{beheer_id}/disable"), &token).send(&w, NOORD);
    assert_eq!((itself.status, error_of(&itself)), (409, "conflict".into()));
    // Nor any administrator, by revoking their devices.
    let theirs =
        with_token("GET", &format!("accounts/{beheer_id}/devices"), &token).send(&w, NOORD);
    let admins_device = theirs.json()["devices"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused =
        with_token("POST", &format!("devices/{admins_device}/revoke"), &token).send(&w, NOORD);
    assert_eq!(
        (refused.status, error_of(&refused)),
        (409, "conflict".into())
    );
    assert_eq!(
        beheer.api("/").status,
        200,
        "the administrator is still let in"
    );
    let missing = with_token("POST", "accounts/nobody/disable", &token).send(&w, NOORD);
    assert_eq!(
        (missing.status, error_of(&missing)),
        (404, "not_found".into())
    );

    // Every change names the token; making it names the admin.
    let audit = with_token("GET", "audit?since=0", &token).send(&w, NOORD);
    assert_eq!(audit.status, 200, "{}", audit.body);
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    let by_token: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["actor"] == "token:ci")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_token,
        [
            ("admin.user.add", "eva@noord.test"),
            ("admin.user.reset_mfa", "lisa@noord.test"),
            ("admin.device.revoke", "lisa@noord.test"),
            ("admin.user.disable", "lisa@noord.test"),
            ("admin.user.enable", "lisa@noord.test"),
        ]
    );
    assert!(entries.iter().any(|e| e["action"] == "admin.token.create"
        && e["actor"] == "beheer@noord.test"
        && e["subject"] == "token:ci"));

    // Revoked: refused from the next call on.
    let revoke = session_change(
        &w,
        &beheer,
        NOORD,
        &format!("tokens/{token_id}/revoke"),
        json!({}),
    );
    assert_eq!(revoke.json()["state"], "revoked", "{}", revoke.body);
    let refused = with_token("GET", "accounts", &token).send(&w, NOORD);
    assert_eq!(
        (refused.status, error_of(&refused)),
        (401, "invalid_token".into())
    );
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    let twice = session_change(
        &w,
        &beheer,
        NOORD,
        &format!("tokens/{token_id}/revoke"),
        json!({}),
    );
    assert_eq!(twice.status, 409, "{}", twice.body);
}

#[test]
fn tokens_expire_keep_to_their_scopes_and_to_their_source_networks() {
    let w = PortalWorld::start(
        &[org("noord", NOORD)],
        "[limits]\npassword_failures_per_ip = \"4/15m\"\n",
    );
    let beheer = admin_session(&w, "noord", NOORD, "beheer@noord.test");

    let (_, brief) = make_token(
        &w,
        &beheer,
        NOORD,
        json!({"name": "brief", "scopes": ["accounts:read"], "expires_in": 3}),
    );
    assert_eq!(
        with_token("GET", "accounts", &brief).send(&w, NOORD).status,
        200
    );

    let (_, reader) = make_token(
        &w,
        &beheer,
        NOORD,
        json!({"name": "reader", "scopes": ["accounts:read"], "expires_in": 3600}),
    );
    let write = Call {
        body: Some(json!({"username": "eva", "display_name": "Eva"})),
        ..with_token("POST", "accounts", &reader)
    }
    .send(&w, NOORD);
    assert_eq!(
        (write.status, error_of(&write)),
        (403, "insufficient_scope".into())
    );
    assert!(write
        .header("www-authenticate")
        .unwrap()
        .contains("scope=\"accounts:write\""));
    let audit = with_token("GET", "audit", &reader).send(&w, NOORD);
    assert_eq!(
        (audit.status, error_of(&audit)),
        (403, "insufficient_scope".into())
    );

    let (_, pinned) = make_token(
        &w,
        &beheer,
        NOORD,
        json!({"name": "pinned", "scopes": ["accounts:read"], "expires_in": 3600,
               "sources": ["127.0.0.9/32"]}),
    );
    let elsewhere = with_token("GET", "accounts", &pinned).send(&w, NOORD);
    assert_eq!(
        (elsewhere.status, error_of(&elsewhere)),
        (403, "source_not_allowed".into())
    );
    // A real token refused is logged by name, for whoever watches for stolen ones; the token
    // itself never is.
    let log = w.d.gateway().log_text();
    let line = log
        .lines()
        .find(|l| l.contains("API token refused") && l.contains("pinned"))
        .unwrap_or_else(|| panic!("no log line in:\n{log}"));
    assert!(
        line.contains("outside its source networks") && line.contains("127.0.0.1"),
        "{line}"
    );
    assert!(!log.contains(&pinned), "the token is in the log");
    let from_its_network = Call {
        from: "127.0.0.9",
        ..with_token("GET", "accounts", &pinned)
    }
    .send(&w, NOORD);
    assert_eq!(from_its_network.status, 200, "{}", from_its_network.body);

    for (token, why) in [
        (None, "no token"),
        (Some("cgt_guessed"), "malformed"),
        (Some(&*format!("cgt_{}", "A".repeat(43))), "unknown"),
    ] {
        let refused = Call {
            token,
            ..Call::new("GET", "accounts")
        }
        .send(&w, NOORD);
        assert_eq!(
            (refused.status, error_of(&refused)),
            (401, "invalid_token".into()),
            "{why}"
        );
    }

    std::thread::sleep(Duration::from_secs(4));
    let expired = with_token("GET", "accounts", &brief).send(&w, NOORD);
    assert_eq!(
        (expired.status, error_of(&expired)),
        (401, "invalid_token".into())
    );
    assert!(expired.body.contains("expired"), "{}", expired.body);

    // A new password for the administrator ends the tokens they made and their sign-in.
    assert_eq!(beheer.get("/.certgate/account").status, 200);
    w.set_password("noord", "beheer@noord.test", "a brand new passphrase");
    let after = with_token("GET", "accounts", &reader).send(&w, NOORD);
    assert_eq!(
        (after.status, error_of(&after)),
        (401, "invalid_token".into())
    );
    let page = beheer.get("/.certgate/account");
    assert_eq!(page.status, 303, "signed out of the portal: {}", page.body);
    assert!(settles(|| beheer.api("/").status == 401));

    // Guesses add up per address: two above and two here (a known token, even one no longer
    // valid, never counts); then that address waits, and another does not.
    for guess in ["cgt_guessed", &format!("cgt_{}", "B".repeat(43))] {
        let refused = with_token("GET", "accounts", guess).send(&w, NOORD);
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    let waits = with_token("GET", "accounts", &reader).send(&w, NOORD);
    assert_eq!(
        (waits.status, error_of(&waits)),
        (429, "slow_down".into()),
        "{}",
        waits.body
    );
    let retry_after: u64 = waits.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let elsewhere = Call {
        from: "127.0.0.9",
        ..with_token("GET", "accounts", &pinned)
    }
    .send(&w, NOORD);
    assert_eq!(
        (elsewhere.status, error_of(&elsewhere)),
        (401, "invalid_token".into()),
        "not held up: {}",
        elsewhere.body
    );
}

#[test]
fn a_token_acts_for_its_own_organisation_only() {
    let w = PortalWorld::start(&[org("noord", NOORD), org("zuid", ZUID)], "");
    let an = admin_session(&w, "noord", NOORD, "an@noord.test");
    let dani = admin_session(&w, "zuid", ZUID, "dani@zuid.test");
    let all = json!([
        "accounts:read",
        "accounts:write",
        "devices:write",
        "audit:read"
    ]);
    let (_, noord) = make_token(
        &w,
        &an,
        NOORD,
        json!({"name": "sync", "scopes": all, "expires_in": 3600}),
    );
    let (_, zuid) = make_token(
        &w,
        &dani,
        ZUID,
        json!({"name": "sync", "scopes": all, "expires_in": 3600}),
    );
    let dani_id = id_of(&w, ZUID, &zuid, "dani@zuid.test");
    let dani_devices =
        with_token("GET", &format!("accounts/{dani_id}/devices"), &zuid).send(&w, ZUID);
    let dani_device = dani_devices.json()["devices"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Noord's token knows nothing of zuid's ids.
    let listed = with_token("GET", "accounts", &noord).send(&w, NOORD);
    assert!(!listed.body.contains("dani@zuid.test"), "{}", listed.body);
    for (method, path) in [
        ("GET", format!("accounts/{dani_id}")),
        ("GET", format!("accounts/{dani_id}/devices")),
        ("POST", format!("accounts/{dani_id}/disable")),
        ("POST", format!("accounts/{dani_id}/reset-mfa")),
        ("POST", format!("devices/{dani_device}/revoke")),
    ] {
        let answer = with_token(method, &path, &noord).send(&w, NOORD);
        assert_eq!(
            (answer.status, error_of(&answer)),
            (404, "not_found".into()),
            "{path}"
        );
    }
    // On zuid's host it is no token at all.
    let there = with_token("GET", "accounts", &noord).send(&w, ZUID);
    assert_eq!(
        (there.status, error_of(&there)),
        (401, "invalid_token".into())
    );
    // And nothing changed for dani; zuid's audit log has no trace of noord's token.
    let dani_now = with_token("GET", &format!("accounts/{dani_id}"), &zuid).send(&w, ZUID);
    assert_eq!(dani_now.json()["disabled"], false);
    assert_eq!(dani_now.json()["mfa_method"], "email");
    let audit = with_token("GET", "audit?since=0", &zuid).send(&w, ZUID);
    assert!(audit.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["org"] == "zuid" && e["actor"] != "token:sync"));
}

/// schemathesis (`make test` installs it) generates requests from the OpenAPI document, valid
/// and invalid, and checks every answer against it: no server errors, documented status codes,
/// content types and schemas, invalid input refused, auth not ignored. Bounded to a few examples
/// an operation so it stays quick.
#[test]
fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    // `localhost`, so schemathesis reaches the gateway by name and checks its certificate
    // against the deployment's CA without any host mapping.
    let w = PortalWorld::start(&[org("noord", "localhost")], "");
    let beheer = admin_session(&w, "noord", "localhost", "beheer@noord.test");
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    // She signs in, so she has a device for schemathesis to find and revoke.
    signed_in(&w.client("localhost", "127.0.0.1"), "lisa@noord.test");
    let (_, token) = make_token(
        &w,
        &beheer,
        "localhost",
        json!({"name": "schemathesis", "scopes": ["accounts:read", "accounts:write",
               "devices:write", "audit:read"], "expires_in": 3600}),
    );
    let document = w.url("localhost", "/.certgate/api/v1/openapi.json");
    let work = tempfile::tempdir().unwrap();
    // `st run`, through the interpreter pip installed it for (another `st` may be on PATH).
    let out = Command::new("python3")
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .args(["-m", "schemathesis.cli", "run", &document, "--tls-verify"])
        .arg(w.d.path("ca/root.pem"))
        .args([
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--checks",
            "all",
            "--max-examples",
            "5",
            "--seed",
            "7",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .output()
        .expect("python3 with schemathesis (make test installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
}
