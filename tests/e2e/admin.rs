//! The organisation admins' pages: resetting a user's second factor in Chromium, isolation
//! between organisations, 403 for everyone else, a fresh second factor for changes, and the
//! audit log with its JSON-lines export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use certgate_e2e::{
    attribute_after, csrf_of, settles, Browser, CurlClient, NewUser, Org, PortalWorld, DESKTOP,
    PHONE,
};

const NOORD: &str = "noord.test";
const ZUID: &str = "zuid.test";
const PASSWORD: &str = "correct horse battery";

fn org(id: &'static str, host: &str) -> Org {
    let mut org = Org::new(id, host);
    org.policy_extra =
        "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\nexempt_roles = [\"parent\"]\n".into();
    org
}

fn shot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join("admin");
    for (label, (w, h)) in [("phone", PHONE), ("desktop", DESKTOP)] {
        browser.set_viewport_size(w, h);
        browser.screenshot(&dir.join(format!("{name}-{label}.png")));
    }
}

/// Password and e-mail code with curl; the client then holds the credential.
fn sign_in_by_email(_w: &PortalWorld, client: &CurlClient<'_>, user: &str) {
    let done = client.sign_in_by_email("/", user, PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);
}

#[test]
fn an_admin_resets_a_users_second_factor_and_the_user_chooses_again() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    let lisa = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &lisa, "lisa@noord.test");
    assert_eq!(lisa.api("/").status, 200);

    let b = Browser::start("en");
    b.goto(&w.url(NOORD, "/.certgate/admin"));
    b.fill("username", "beheer@noord.test");
    b.fill("password", PASSWORD);
    b.click_button("Sign in");
    b.click("input[value=email]");
    b.click_button("Continue");
    b.fill("code", &w.mailed_code("beheer@noord.test"));
    b.click_button("Verify");
    assert!(
        b.current_url().ends_with("/.certgate/admin"),
        "{}",
        b.current_url()
    );
    shot(&b, "accounts");
    b.goto(&w.url(NOORD, "/.certgate/admin/devices"));
    assert!(
        b.page_text().contains("lisa@noord.test: Browser"),
        "{}",
        b.page_text()
    );
    shot(&b, "devices");
    b.goto(&w.url(NOORD, "/.certgate/admin"));
    b.fill("q", "lisa");
    b.click_button("Show");
    b.click_link("lisa@noord.test");
    assert!(
        b.page_text().contains("E-mail (enrolled)"),
        "{}",
        b.page_text()
    );
    shot(&b, "account");
    b.click_button("Reset second factor");
    assert!(
        b.page_text()
            .contains("every device they are signed in on is signed out"),
        "{}",
        b.page_text()
    );
    shot(&b, "reset-confirm");
    b.click_button("Reset second factor");
    assert!(
        b.page_text().contains("lisa@noord.test"),
        "{}",
        b.page_text()
    );
    assert!(settles(|| lisa.api("/").status == 401));
    assert!(w
        .mail_about("lisa@noord.test", "second factor")
        .body_text
        .contains("reset"));

    // Her next sign-in asks her to choose a method again.
    let again = w.client(NOORD, "127.0.0.1");
    assert_eq!(again.sign_in("/", "lisa@noord.test", PASSWORD).status, 303);
    assert!(again
        .get("/.certgate/mfa")
        .body
        .contains("How do you want to confirm it is you?"));

    // The audit log has it, and exports JSON lines.
    b.goto(&w.url(NOORD, "/.certgate/admin/audit?account=lisa@noord.test"));
    assert!(
        b.page_text().contains("admin.user.reset_mfa"),
        "{}",
        b.page_text()
    );
    shot(&b, "audit");
    b.goto(&w.url(NOORD, "/.certgate/admin/settings"));
    assert!(b.page_text().contains("noord.toml"), "{}", b.page_text());
    shot(&b, "settings");
}

#[test]
fn admins_see_only_their_organisation_others_get_403_and_changes_need_a_fresh_second_factor() {
    let w = PortalWorld::start(&[org("noord", NOORD), org("zuid", ZUID)], "");
    for (org, user, roles) in [
        ("noord", "an@noord.test", &["admin"][..]),
        ("noord", "bo@noord.test", &[][..]),
        ("noord", "cas@noord.test", &["admin", "parent"][..]),
        ("zuid", "dani@zuid.test", &["admin"][..]),
    ] {
        w.add_user(&NewUser {
            roles,
            ..NewUser::personal(org, user, PASSWORD)
        });
    }
    // Zuid's admin sees the id of a zuid account.
    let dani = w.client(ZUID, "127.0.0.1");
    sign_in_by_email(&w, &dani, "dani@zuid.test");
    let list = dani.get("/.certgate/admin");
    assert_eq!(list.status, 200, "{}", list.body);
    let zuid_id = attribute_after(&list.body, r#"<a href="/.certgate/admin/accounts/"#).unwrap();

    // Noord's admin cannot see it or change it, by guessing the id.
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let listed = an.get("/.certgate/admin");
    assert!(listed.body.contains("bo@noord.test") && !listed.body.contains("dani@zuid.test"));
    assert_eq!(
        an.get(&format!("/.certgate/admin/accounts/{zuid_id}"))
            .status,
        404
    );
    let page = an.get("/.certgate/admin/accounts/new");
    let changed = an.post(
        &format!("/.certgate/admin/accounts/{zuid_id}/disable"),
        &[("csrf", &csrf_of(&page.body))],
    );
    assert_eq!(changed.status, 404);
    assert_eq!(
        dani.get(&format!("/.certgate/admin/accounts/{zuid_id}"))
            .status,
        200,
        "untouched"
    );

    // Someone without the admin role: 403 on every admin page and change.
    let bo = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &bo, "bo@noord.test");
    for path in [
        "/.certgate/admin",
        "/.certgate/admin/audit",
        "/.certgate/admin/settings",
        "/.certgate/admin/audit.jsonl",
        "/.certgate/admin/accounts/new",
    ] {
        assert_eq!(bo.get(path).status, 403, "{path}");
    }
    let csrf = csrf_of(&bo.get("/.certgate/account").body);
    assert_eq!(
        bo.post(
            &format!("/.certgate/admin/accounts/{zuid_id}/reset-mfa"),
            &[("csrf", &csrf)]
        )
        .status,
        403
    );

    // An admin who signed in without a second factor is asked for one before any change.
    let cas = w.client(NOORD, "127.0.0.1");
    assert_eq!(cas.sign_in("/", "cas@noord.test", PASSWORD).status, 303);
    let page = cas.get("/.certgate/admin/accounts/new");
    assert!(
        page.body.contains("sign in again with your second factor"),
        "{}",
        page.body
    );
    let refused = cas.post(
        "/.certgate/admin/accounts/new",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "nieuw@noord.test"),
            ("name", "Nieuw"),
        ],
    );
    assert_eq!(refused.status, 303);
    assert!(refused
        .header("location")
        .unwrap()
        .starts_with("/.certgate/login?return_to="));

    // With a fresh second factor the admin creates an account, which gets its welcome mail; a
    // bad field is named and nothing is created.
    let page = an.get("/.certgate/admin/accounts/new");
    let bad = an.post(
        "/.certgate/admin/accounts/new",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "eva@noord.test"),
            ("name", "Eva"),
            ("mobile", "0612"),
        ],
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("not a mobile number in international form"),
        "{}",
        bad.body
    );
    let made = an.post(
        "/.certgate/admin/accounts/new",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "eva@noord.test"),
            ("name", "Eva"),
            ("email", "eva@noord.test"),
        ],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    assert!(w
        .mail_about("eva@noord.test", "Your account at Org noord")
        .body_text
        .contains("Forgot your password?"));

    // The export is JSON lines, one audit entry a line, this organisation's only.
    let file = w.d.path("audit.jsonl");
    assert_eq!(an.download("/.certgate/admin/audit.jsonl", &file), 200);
    let text = std::fs::read_to_string(&file).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries
        .iter()
        .any(|e| e["action"] == "admin.user.add" && e["subject"] == "eva@noord.test"));
    assert!(entries.iter().all(|e| e["org"] == "noord"));
    assert!(
        entries.iter().any(|e| e["action"] == "sign-in"),
        "sign-ins are audited"
    );
    // A failed sign-in is too.
    let wrong = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        wrong
            .sign_in("/", "bo@noord.test", "not the password")
            .status,
        401
    );
    assert_eq!(
        an.download("/.certgate/admin/audit.jsonl?account=bo@noord.test", &file),
        200
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"sign-in-failed\"")),
        "{text}"
    );
    // And a wrong recovery code after the right password.
    assert_eq!(wrong.sign_in("/", "bo@noord.test", PASSWORD).status, 303);
    let page = wrong.get("/.certgate/mfa");
    let guessed = wrong.post(
        "/.certgate/mfa/recovery",
        &[("csrf", &csrf_of(&page.body)), ("code", "abcd-efgh-ijkl")],
    );
    assert_eq!(guessed.status, 401, "{}", guessed.body);
    assert_eq!(
        an.download("/.certgate/admin/audit.jsonl?account=bo@noord.test", &file),
        200
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"sign-in-failed\"") && l.contains("\"recovery\"")),
        "{text}"
    );
    // A name nobody has is often a password typed in the wrong field: it is not kept.
    let typo = "Zomer2026!wachtwoord";
    assert_eq!(wrong.sign_in("/", typo, "anything").status, 401);
    assert_eq!(an.download("/.certgate/admin/audit.jsonl", &file), 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.to_lowercase().contains(&typo.to_lowercase()),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("\"sign-in-failed\"")
            && l.contains("(unknown name)")
            && l.contains("127.0.0.1")),
        "{text}"
    );
}

#[test]
fn audit_entries_past_their_retention_are_deleted() {
    let w = PortalWorld::start(
        &[org("noord", NOORD)],
        "[database]\naudit_retention = \"3s\"\n",
    );
    w.add_user(&NewUser {
        roles: &["admin", "parent"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "old@noord.test", PASSWORD)
    });
    let old = w.client(NOORD, "127.0.0.1");
    assert_eq!(old.sign_in("/", "old@noord.test", PASSWORD).status, 303);
    std::thread::sleep(Duration::from_secs(5));
    let an = w.client(NOORD, "127.0.0.1");
    assert_eq!(an.sign_in("/", "an@noord.test", PASSWORD).status, 303);
    let file = w.d.path("audit.jsonl");
    assert_eq!(an.download("/.certgate/admin/audit.jsonl", &file), 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("an@noord.test"),
        "the recent sign-in is kept: {text}"
    );
    assert!(
        !text.contains("old@noord.test"),
        "the old one is gone: {text}"
    );
}

#[test]
fn the_allow_list_page_names_bad_lines_refuses_stale_saves_and_admits_at_once() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let page = an.get("/.certgate/admin/allowlist");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let version = attribute_after(&page.body, r#"name="version" value=""#).unwrap();

    let bad = an.post(
        "/.certgate/admin/allowlist",
        &[
            ("csrf", &csrf),
            ("version", &version),
            ("text", "127.0.0.8\n10.0.0.300\n0.0.0.0/0  # everyone"),
        ],
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("line 2:") && bad.body.contains("line 3:"),
        "{}",
        bad.body
    );
    assert!(!bad.body.contains("line 1:"));
    assert!(
        bad.body.contains("0.0.0.0/0  # everyone"),
        "the text is kept for correcting"
    );
    let from_8 = || {
        w.d.curl(NOORD, "127.0.0.1", "/", &["--interface", "127.0.0.8"])
            .status
    };
    assert_eq!(from_8(), 401, "nothing was saved");

    let good = an.post(
        "/.certgate/admin/allowlist",
        &[
            ("csrf", &csrf),
            ("version", &version),
            ("text", "127.0.0.8  # front desk"),
        ],
    );
    assert_eq!(good.status, 303, "{}", good.body);
    assert!(settles(|| from_8() == 200));
    let admitted =
        w.d.curl(NOORD, "127.0.0.1", "/", &["--interface", "127.0.0.8"]);
    assert_eq!(
        admitted.upstream_header("x-certgate-auth").as_deref(),
        Some("ip")
    );

    // A save based on the old view is refused instead of overwriting.
    let stale = an.post(
        "/.certgate/admin/allowlist",
        &[("csrf", &csrf), ("version", &version), ("text", "")],
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body.contains("changed by someone else"),
        "{}",
        stale.body
    );
    assert_eq!(from_8(), 200, "still admitted");
}

#[test]
fn a_csv_import_with_a_bad_row_changes_nothing_a_good_one_creates_and_a_leaver_is_deleted() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "weg@noord.test", PASSWORD)
    });
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let config = w.d.config();
    let exists = |user: &str| {
        certgate_e2e::certgate(&[
            "user", "show", "--config", &config, "--org", "noord", "--user", user,
        ])
        .status
        .success()
    };
    let page = an.get("/.certgate/admin/import");
    let csrf = csrf_of(&page.body);
    let bad = "username,name,email,mobile,kind,roles\nnina@noord.test,Nina,nina@noord.test,+31612345678,personal,\nomar@noord.test,Omar,,0612,personal,\ngroep-ster,Groep Ster,,,group,\nnina@noord.test,Nina again,,,personal,\n";
    for step in ["preview", "import"] {
        let answer = an.post(
            "/.certgate/admin/import",
            &[("csrf", &csrf), ("csv", bad), ("step", step)],
        );
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(
            answer.body.contains("Line 3") && answer.body.contains("not a mobile number"),
            "{}",
            answer.body
        );
        assert!(
            answer.body.contains("Line 5") && answer.body.contains("in the file twice"),
            "{}",
            answer.body
        );
        assert!(
            !answer.body.contains(r#"value="import""#),
            "no import button while a row is wrong"
        );
    }
    assert!(!exists("nina@noord.test"), "nothing was written");
    let good = "username,name,email,mobile,kind,roles\nnina@noord.test,Nina,nina@noord.test,+31612345678,personal,\ngroep-ster,Groep Ster,,,group,\n";
    let preview = an.post(
        "/.certgate/admin/import",
        &[("csrf", &csrf), ("csv", good), ("step", "preview")],
    );
    assert_eq!(preview.status, 200);
    assert!(
        preview.body.contains(r#"value="import""#),
        "{}",
        preview.body
    );
    let imported = an.post(
        "/.certgate/admin/import",
        &[("csrf", &csrf), ("csv", good), ("step", "import")],
    );
    assert_eq!(imported.status, 303, "{}", imported.body);
    assert!(exists("nina@noord.test") && exists("groep-ster"));
    assert!(w
        .mail_about("nina@noord.test", "Your account")
        .body_text
        .contains("Forgot your password?"));

    // A leaver is deleted after a confirmation, and signed out everywhere.
    let leaver = w.client(NOORD, "127.0.0.1");
    assert_eq!(leaver.sign_in("/", "weg@noord.test", PASSWORD).status, 303);
    assert_eq!(leaver.api("/").status, 200);
    let list = an.get("/.certgate/admin?q=weg");
    let id = attribute_after(&list.body, r#"<a href="/.certgate/admin/accounts/"#).unwrap();
    let confirm = an.post(
        &format!("/.certgate/admin/accounts/{id}/delete"),
        &[("csrf", &csrf)],
    );
    assert!(
        confirm.body.contains("audit log keeps the entries"),
        "{}",
        confirm.body
    );
    assert!(exists("weg@noord.test"), "not before confirming");
    let deleted = an.post(
        &format!("/.certgate/admin/accounts/{id}/delete"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert_eq!(deleted.status, 303);
    assert!(!exists("weg@noord.test"));
    assert!(settles(|| leaver.api("/").status == 401));

    // Someone new with the leaver's name is not reachable with the leaver's old cookie.
    let page = an.get("/.certgate/admin/accounts/new");
    let made = an.post(
        "/.certgate/admin/accounts/new",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("username", "weg@noord.test"),
            ("name", "Weg (nieuw)"),
        ],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    let own_page = leaver.get("/.certgate/account");
    assert_eq!(own_page.status, 303, "{}", own_page.body);
    assert!(own_page
        .header("location")
        .unwrap()
        .starts_with("/.certgate/login"));
}
