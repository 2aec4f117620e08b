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
    b.past_new_recovery_codes();
    assert!(
        b.current_url().ends_with("/.certgate/admin"),
        "{}",
        b.current_url()
    );
    shot(&b, "accounts");
    b.goto(&w.url(NOORD, "/.certgate/admin/devices"));
    assert!(
        b.execute(
            "return [...document.querySelectorAll('#org-devices tbody tr')].some(r => r.textContent.includes('lisa@noord.test'));"
        ) == true,
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
        b.page_text()
            .contains("beheer@noord.test reset the second factor of lisa@noord.test"),
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

// Issue 22: the admin pages use the width, page long lists, confirm and announce changes, set
// a group account's password, and speak the page's language throughout.

/// A browser speaking `language`, signed in as `user` with an e-mail code, on the admin home.
fn admin_browser(w: &PortalWorld, language: &str, user: &str) -> Browser {
    let (sign_in, continue_, verify, stored) = match language {
        "nl" => (
            "Inloggen",
            "Doorgaan",
            "Controleren",
            "Ik heb ze bewaard, doorgaan",
        ),
        _ => (
            "Sign in",
            "Continue",
            "Verify",
            "I have stored them, continue",
        ),
    };
    let b = Browser::start(language);
    b.goto(&w.url(NOORD, "/.certgate/admin"));
    b.fill("username", user);
    b.fill("password", PASSWORD);
    b.click_button(sign_in);
    // A first sign-in chooses the method; later ones are sent a code at once.
    if b.has("input[value=email]") {
        b.click("input[value=email]");
        b.click_button(continue_);
    }
    b.fill("code", &w.mailed_code(user));
    b.click_button(verify);
    // A first factor set up may show recovery codes first.
    if b.has("#recovery-codes") {
        b.click_link(stored);
    }
    assert!(
        b.current_url().ends_with("/.certgate/admin"),
        "{}",
        b.current_url()
    );
    b
}

/// A number the page's script computes.
fn number(b: &Browser, script: &str) -> f64 {
    let value = b.execute(script);
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{script} gave {value}"))
}

fn rows(b: &Browser, selector: &str) -> usize {
    number(
        b,
        &format!("return document.querySelectorAll({selector:?}).length;"),
    ) as usize
}

fn page_height(b: &Browser) -> f64 {
    number(b, "return document.documentElement.scrollHeight;")
}

fn page_width(b: &Browser) -> f64 {
    number(b, "return document.documentElement.scrollWidth;")
}

fn main_width(b: &Browser) -> f64 {
    number(
        b,
        "return document.querySelector('main').getBoundingClientRect().width;",
    )
}

/// The `href` of the link whose text is `text`, if the page has one.
fn link_to(b: &Browser, text: &str) -> Option<String> {
    let script = format!(
        "const a = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === {text:?}); \
         return a ? a.getAttribute('href') : null;"
    );
    b.execute(&script).as_str().map(str::to_owned)
}

#[test]
fn the_admin_pages_use_the_width_and_show_long_lists_fifty_at_a_time() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    let lisa = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &lisa, "lisa@noord.test");
    // 200 shared tablets in one import: 200 accounts and 200 audit entries.
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let mut csv = String::from("username,name,email,mobile,kind,roles\n");
    for i in 1..=200 {
        csv.push_str(&format!("groep-{i:03},Groep {i:03},,,group,\n"));
    }
    let page = an.get("/.certgate/admin/import");
    let imported = an.post(
        "/.certgate/admin/import",
        &[
            ("csrf", &csrf_of(&page.body)),
            ("csv", &csv),
            ("step", "import"),
        ],
    );
    assert_eq!(imported.status, 303, "{}", imported.body);

    let b = admin_browser(&w, "en", "an@noord.test");
    // Accounts: a table of 50 that uses the width; the next page keeps the search.
    b.goto(&w.url(NOORD, "/.certgate/admin?q=groep"));
    assert_eq!(rows(&b, "#accounts tbody tr"), 50, "{}", b.page_text());
    assert!(main_width(&b) >= 1000.0, "main is {} px", main_width(&b));
    let next = link_to(&b, "Next").expect("a link to the next page");
    assert!(
        next.contains("q=groep") && next.contains("page=2"),
        "{next}"
    );
    assert!(link_to(&b, "Previous").is_none(), "the first page");
    shot(&b, "accounts-table");
    b.click_link("Next");
    assert_eq!(rows(&b, "#accounts tbody tr"), 50);
    assert!(b.page_text().contains("groep-051"), "{}", b.page_text());
    assert!(link_to(&b, "Previous").is_some());
    b.goto(&w.url(NOORD, "/.certgate/admin?q=groep&page=4"));
    assert_eq!(rows(&b, "#accounts tbody tr"), 50);
    assert!(link_to(&b, "Next").is_none(), "the last page");
    assert!(b.page_text().contains("groep-200"));

    // The audit log: 50 entries a page at 1280 px, not thousands of pixels of one column.
    b.goto(&w.url(NOORD, "/.certgate/admin/audit"));
    assert_eq!(rows(&b, "#audit tbody tr"), 50, "{}", b.page_text());
    assert!(link_to(&b, "Next").is_some(), "{}", b.page_text());
    assert!(page_height(&b) < 3500.0, "{} px tall", page_height(&b));
    shot(&b, "audit-table");
    b.set_viewport_size(PHONE.0, PHONE.1);
    assert!(
        page_width(&b) <= f64::from(PHONE.0),
        "no sideways scrolling on a phone: {} px wide",
        page_width(&b)
    );
    b.set_viewport_size(DESKTOP.0, DESKTOP.1);
    b.click_link("Next");
    assert_eq!(rows(&b, "#audit tbody tr"), 50);
    assert!(link_to(&b, "Previous").is_some());

    // Devices: a table too.
    b.goto(&w.url(NOORD, "/.certgate/admin/devices"));
    assert!(rows(&b, "#org-devices tbody tr") >= 2, "{}", b.page_text());
    shot(&b, "devices-table");

    // Settings: readable on a phone, not one letter a line.
    b.goto(&w.url(NOORD, "/.certgate/admin/settings"));
    assert!(main_width(&b) >= 1000.0, "main is {} px", main_width(&b));
    b.set_viewport_size(PHONE.0, PHONE.1);
    let narrowest = number(
        &b,
        "return Math.min(...[...document.querySelectorAll('main dd')].map(d => d.getBoundingClientRect().width));",
    );
    assert!(narrowest >= 200.0, "a value is only {narrowest} px wide");
    assert!(page_height(&b) < 1600.0, "{} px tall", page_height(&b));
    assert!(page_width(&b) <= f64::from(PHONE.0));
    shot(&b, "settings-layout");
}

#[test]
fn revoking_and_deleting_are_confirmed_and_announced_and_an_admin_sets_a_group_password() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "anna@noord.test", PASSWORD)
    });
    let config = w.d.config();
    certgate_e2e::certgate_ok(&[
        "user",
        "edit",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "anna@noord.test",
        "--name",
        "Anna",
    ]);
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    w.add_user(&NewUser {
        email: None,
        group: true,
        ..NewUser::personal("noord", "groep-zonnebloem", PASSWORD)
    });
    let lisa = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &lisa, "lisa@noord.test");
    assert_eq!(lisa.api("/").status, 200);

    let b = admin_browser(&w, "nl", "anna@noord.test");
    b.goto(&w.url(NOORD, "/.certgate/admin?q=lisa"));
    b.click_link("lisa@noord.test");
    let lisas_page = b.current_url();

    // Revoking a device asks first, then says it is done.
    b.click_button("Intrekken");
    assert!(
        b.page_text()
            .contains("Dit apparaat van lisa@noord.test (lisa@noord.test) intrekken?"),
        "{}",
        b.page_text()
    );
    assert_eq!(lisa.api("/").status, 200, "not before confirming");
    shot(&b, "revoke-confirm");
    b.click_button("Apparaat intrekken");
    assert!(
        b.page_text().contains("Het apparaat is ingetrokken."),
        "{}",
        b.page_text()
    );
    assert!(settles(|| lisa.api("/").status == 401));
    shot(&b, "revoke-done");

    // Delete is set apart, in red.
    let colour = b.execute(
        "const d = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Account verwijderen'); \
         return d ? [getComputedStyle(d).backgroundColor, d.closest('.danger-zone') !== null] : null;",
    );
    assert_eq!(colour[0], "rgb(164, 0, 15)", "{colour}");
    assert_eq!(colour[1], true, "in a section of its own: {colour}");

    // A shared tablet has no e-mail: the admin sets its password, under the portal's rules.
    b.goto(&w.url(NOORD, "/.certgate/admin?q=zonnebloem"));
    b.click_link("groep-zonnebloem");
    let tablet = w.client(NOORD, "127.0.0.1");
    assert_eq!(
        tablet.sign_in("/", "groep-zonnebloem", PASSWORD).status,
        303
    );
    b.fill("password", "kort");
    b.fill("repeat", "kort");
    b.click_button("Wachtwoord instellen");
    assert!(b.has("p.error"), "{}", b.page_text());
    let new_password = "zonnebloem in de tuin";
    b.fill("password", new_password);
    b.fill("repeat", new_password);
    shot(&b, "group-password");
    b.click_button("Wachtwoord instellen");
    assert!(
        b.page_text()
            .contains("Het nieuwe wachtwoord is ingesteld."),
        "{}",
        b.page_text()
    );
    let fresh = w.client(NOORD, "127.0.0.1");
    assert_eq!(fresh.sign_in("/", "groep-zonnebloem", PASSWORD).status, 401);
    assert_eq!(
        fresh.sign_in("/", "groep-zonnebloem", new_password).status,
        303
    );
    // The sign-in begun with the old password is over.
    assert_ne!(tablet.get("/.certgate/mfa").status, 200);

    // Reset the tablet's second factor, then read the audit log in plain Dutch.
    b.click_button("Tweede factor opnieuw instellen");
    b.click_button("Tweede factor opnieuw instellen");
    b.goto(&w.url(NOORD, "/.certgate/admin/audit"));
    let text = b.page_text();
    for sentence in [
        "Anna heeft de tweede factor van groep-zonnebloem opnieuw ingesteld",
        "Anna heeft een nieuw wachtwoord ingesteld voor groep-zonnebloem",
        "Anna heeft een apparaat van lisa@noord.test ingetrokken",
        "Anna heeft ingelogd",
    ] {
        assert!(text.contains(sentence), "{sentence:?} in\n{text}");
    }
    assert!(!text.contains("admin.user"), "{text}");
    shot(&b, "audit-dutch");

    // Deleting asks first (the button there red too), then says it is done.
    b.goto(&lisas_page);
    b.click_button("Account verwijderen");
    let confirm = b.execute(
        "const d = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Account verwijderen'); \
         return d ? getComputedStyle(d).backgroundColor : null;",
    );
    assert_eq!(confirm, "rgb(164, 0, 15)");
    shot(&b, "delete-confirm");
    b.click_button("Account verwijderen");
    assert!(
        b.page_text().contains("Het account is verwijderd."),
        "{}",
        b.page_text()
    );
    assert!(!b.page_text().contains("lisa@noord.test"));
    shot(&b, "delete-done");
}

#[test]
fn the_admin_pages_speak_dutch_throughout_and_the_admin_home_answers_with_a_slash() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let slash = an.get("/.certgate/admin/");
    assert!(
        matches!(slash.status, 301 | 303 | 308),
        "{} {}",
        slash.status,
        slash.body
    );
    assert_eq!(
        slash.header("location").as_deref(),
        Some("/.certgate/admin")
    );

    let b = admin_browser(&w, "nl", "an@noord.test");
    b.goto(&w.url(NOORD, "/.certgate/admin/"));
    assert!(b.current_url().ends_with("/.certgate/admin"));
    assert!(b.page_text().contains("Nieuw account"), "{}", b.page_text());

    // Settings values in Dutch.
    b.goto(&w.url(NOORD, "/.certgate/admin/settings"));
    let text = b.page_text();
    assert!(
        text.contains("authenticator-app, e-mail") && text.contains("iedereen"),
        "{text}"
    );

    // Allow-list problems in Dutch.
    b.goto(&w.url(NOORD, "/.certgate/admin/allowlist"));
    b.fill("text", "127.0.0.8\n10.0.0.300\n0.0.0.0/0");
    b.click_button("Toegestane adressen opslaan");
    let text = b.page_text();
    assert!(
        text.contains("regel 2: \"10.0.0.300\": geen IP-adres of netwerk (CIDR)")
            && text.contains("regel 3: \"0.0.0.0/0\": te breed"),
        "{text}"
    );
    shot(&b, "allowlist-dutch");

    // The audit log's details in Dutch too.
    b.goto(&w.url(NOORD, "/.certgate/admin/audit"));
    let text = b.page_text();
    assert!(
        text.contains("methode: e-mail") && !text.contains("method=email"),
        "{text}"
    );
}

/// "Wacht 15 minuten" has a way forward: an organisation admin sees on the account page that
/// the person is blocked and until when, lifts it, sees it lifted, and the person's next attempt
/// is checked at once (audited). Without a block there is nothing to lift.
#[test]
fn an_admin_lifts_a_colleagues_sign_in_block() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    w.add_user(&NewUser {
        roles: &["parent"],
        ..NewUser::personal("noord", "fenna@noord.test", PASSWORD)
    });
    // Fenna signed in from this address before, so only the (name, address) limit holds her.
    let fenna = w.client(NOORD, "127.0.0.1");
    assert_eq!(fenna.sign_in("/", "fenna@noord.test", PASSWORD).status, 303);

    let b = admin_browser(&w, "en", "beheer@noord.test");
    b.fill("q", "fenna");
    b.click_button("Show");
    b.click_link("fenna@noord.test");
    let fennas_page = b.current_url();
    assert_eq!(
        sign_in_block(&b),
        "Not blocked: signing in with this name is not held up by wrong passwords or codes."
    );
    assert!(!b.has(UNBLOCK_FORM), "nothing to lift: {}", b.source());
    shot(&b, "account-not-blocked");

    let mut blocked = None;
    for i in 0..10 {
        let answer =
            w.client(NOORD, "127.0.0.1")
                .sign_in("/", "fenna@noord.test", &format!("wrong {i}"));
        if answer.status == 429 {
            blocked = Some(answer);
            break;
        }
        assert_eq!(answer.status, 401, "{}", answer.body);
    }
    let blocked = blocked.expect("the pair is blocked at its limit");
    assert!(
        blocked
            .body
            .contains("administrator can also lift the block"),
        "{}",
        blocked.body
    );
    assert_eq!(
        w.client(NOORD, "127.0.0.1")
            .sign_in("/", "fenna@noord.test", PASSWORD)
            .status,
        429,
        "even the right password waits"
    );

    // The page says she is blocked, until when in the organisation's time, and offers the lift.
    b.goto(&fennas_page);
    let said = sign_in_block(&b);
    assert!(
        said.starts_with(
            "Blocked: after too many wrong passwords or codes, signing in with this name waits until "
        ) && (said.ends_with("\u{a0}CET.") || said.ends_with("\u{a0}CEST.")),
        "{said}"
    );
    assert!(b.has(UNBLOCK_FORM), "{}", b.source());
    shot(&b, "account-unblock");
    b.click_button("Lift the sign-in block");
    assert!(
        b.page_text().contains("The block is lifted"),
        "{}",
        b.page_text()
    );
    assert!(
        sign_in_block(&b).starts_with("Not blocked"),
        "{}",
        b.page_text()
    );
    assert!(!b.has(UNBLOCK_FORM), "{}", b.source());
    shot(&b, "account-unblocked");
    assert_eq!(
        w.client(NOORD, "127.0.0.1")
            .sign_in("/", "fenna@noord.test", PASSWORD)
            .status,
        303,
        "her next attempt is checked at once"
    );
    b.goto(&w.url(NOORD, "/.certgate/admin/audit?account=fenna@noord.test"));
    assert!(
        b.page_text()
            .contains("beheer@noord.test lifted the sign-in block of fenna@noord.test"),
        "{}",
        b.page_text()
    );

    // In Dutch too.
    let nl = admin_browser(&w, "nl", "beheer@noord.test");
    nl.goto(&fennas_page);
    assert!(
        sign_in_block(&nl).starts_with("Niet geblokkeerd"),
        "{}",
        nl.page_text()
    );
}

/// The lift button's form on an admin account page.
const UNBLOCK_FORM: &str = "form[action$='/unblock']";

/// What an admin account page says of the account's sign-in block.
fn sign_in_block(b: &Browser) -> String {
    let said = b.execute("const p = document.getElementById('sign-in-block'); return p ? p.textContent.trim() : null;");
    said.as_str()
        .unwrap_or_else(|| panic!("no sign-in block line: {}", b.page_text()))
        .to_owned()
}

/// After an administrator resets a second factor, the Dutch pages say what happened in words:
/// the browser it signed out is "beëindigd", with no revoke button, on the admin's page and on
/// the person's own, and the second-factor line says none is set up (not "- (ingesteld)").
#[test]
fn after_a_reset_the_dutch_pages_show_the_device_ended_and_the_second_factor_in_words() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "beheer@noord.test", PASSWORD)
    });
    w.add_user(&NewUser::personal("noord", "lisa@noord.test", PASSWORD));
    let lisa = Browser::start("nl");
    sign_in_by_email_code(&w, &lisa, "lisa@noord.test");
    lisa.goto(&w.url(NOORD, "/.certgate/account"));
    let first = attribute_after(&lisa.source(), r#"id="device-"#).expect("her browser listed");

    let b = admin_browser(&w, "nl", "beheer@noord.test");
    b.goto(&w.url(NOORD, "/.certgate/admin?q=lisa"));
    b.click_link("lisa@noord.test");
    let lisas_page = b.current_url();
    assert_eq!(text_of(&b, "#mfa"), "E-mail (ingesteld)");
    assert_eq!(
        device_on(&b, &first).buttons,
        1,
        "an active device can be revoked"
    );
    b.click_button("Tweede factor opnieuw instellen");
    b.click_button("Tweede factor opnieuw instellen");
    b.goto(&lisas_page);
    let second_factor = text_of(&b, "#mfa");
    assert_eq!(
        second_factor,
        "niet ingesteld; wordt gekozen bij de volgende keer inloggen"
    );
    let ended = device_on(&b, &first);
    assert!(ended.class.contains("ended"), "{ended:?}");
    assert!(
        ended
            .text
            .contains("be\u{eb}indigd: afgemeld na een wijziging van het account"),
        "{ended:?}"
    );
    assert_eq!(ended.buttons, 0, "nothing to revoke: {ended:?}");
    shot(&b, "account-after-reset-nl");

    // Lisa is signed out; signed in again, her own page lists the old browser as ended.
    assert!(settles(|| {
        lisa.goto(&w.url(NOORD, "/"));
        lisa.current_url().contains("/.certgate/login")
    }));
    sign_in_by_email_code(&w, &lisa, "lisa@noord.test");
    lisa.goto(&w.url(NOORD, "/.certgate/account"));
    let own = device_on(&lisa, &first);
    assert!(own.in_ended_list, "{own:?}");
    assert!(
        own.text
            .contains("be\u{eb}indigd: afgemeld na een wijziging van het account"),
        "{own:?}"
    );
    assert_eq!(own.buttons, 0, "nothing to revoke: {own:?}");
    assert!(
        lisa.page_text().contains("Be\u{eb}indigd en verlopen"),
        "{}",
        lisa.page_text()
    );
    shot(&lisa, "own-devices-after-reset-nl");
    b.goto(&lisas_page);
    assert_eq!(text_of(&b, "#mfa"), "E-mail (ingesteld)");
}

/// Signs `user` in in `b` (in Dutch) with the password and an e-mail code, choosing e-mail
/// when the account has no method yet; ends in the application.
fn sign_in_by_email_code(w: &PortalWorld, b: &Browser, user: &str) {
    b.goto(&w.url(NOORD, "/"));
    b.fill("username", user);
    b.fill("password", PASSWORD);
    b.click_button("Inloggen");
    if b.has("input[value=email]") {
        b.click("input[value=email]");
        b.click_button("Doorgaan");
    }
    b.fill("code", &w.mailed_code(user));
    b.click_button("Controleren");
    if b.has("#recovery-codes") {
        b.click_link("Ik heb ze bewaard, doorgaan");
    }
    assert!(
        b.page_text().contains("The legacy app behind certgate"),
        "{}",
        b.page_text()
    );
}

/// The trimmed text of the element `selector` finds.
fn text_of(b: &Browser, selector: &str) -> String {
    let script = format!(
        "const e = document.querySelector({selector:?}); return e ? e.textContent.trim() : null;"
    );
    let text = b.execute(&script);
    text.as_str()
        .unwrap_or_else(|| panic!("no {selector}: {}", b.page_text()))
        .to_owned()
}

/// A device as a list of devices shows it.
#[derive(Debug)]
struct Listed {
    class: String,
    text: String,
    /// Buttons in its entry (a revoke button is one).
    buttons: u64,
    /// In the list of ended and expired devices of the person's own page.
    in_ended_list: bool,
}

fn device_on(b: &Browser, id: &str) -> Listed {
    let script = format!(
        "const li = document.getElementById('device-{id}'); \
         return li ? [li.className, li.textContent.replace(/\\s+/g, ' ').trim(), \
         li.querySelectorAll('button').length, li.closest('#ended-devices') !== null] : null;"
    );
    let found = b.execute(&script);
    let found = found
        .as_array()
        .unwrap_or_else(|| panic!("device {id} not listed: {}", b.page_text()));
    Listed {
        class: found[0].as_str().unwrap().to_owned(),
        text: found[1].as_str().unwrap().to_owned(),
        buttons: found[2].as_u64().unwrap(),
        in_ended_list: found[3].as_bool().unwrap(),
    }
}

/// An import file up to its limit reaches the check on the admin pages however much a form
/// encodes it (accented names triple in size), and one just over it gets the clear message.
#[test]
fn a_large_import_file_is_read_and_one_too_large_is_named_so() {
    let w = PortalWorld::start(&[org("noord", NOORD)], "");
    w.add_user(&NewUser {
        roles: &["admin"],
        ..NewUser::personal("noord", "an@noord.test", PASSWORD)
    });
    let an = w.client(NOORD, "127.0.0.1");
    sign_in_by_email(&w, &an, "an@noord.test");
    let csrf = csrf_of(&an.get("/.certgate/admin/import").body);
    let dir = tempfile::tempdir().unwrap();
    let import = |rows: usize, name: &str| {
        let mut csv = String::from("username,name,email,mobile,kind,roles\n");
        for i in 0..rows {
            csv.push_str(&format!("groep-{i:05},{name},,,group,\n"));
        }
        let file = dir.path().join(format!("{rows}.csv"));
        std::fs::write(&file, &csv).unwrap();
        let answer = an.post_with(
            "/.certgate/admin/import",
            &[("csrf", &csrf), ("step", "preview")],
            &["--data-urlencode", &format!("csv@{}", file.display())],
        );
        (csv.len(), answer)
    };
    // About 950 kB, 2.7 MB once percent-encoded: more than a form body may usually be.
    let (size, read) = import(4_300, &"é".repeat(100));
    assert!(size > 900_000 && size < 1_000_000, "{size}");
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("groep-04299"), "every row is shown");
    assert!(
        read.body.contains(r#"value="import""#),
        "and can be imported"
    );
    // Just over the limit: the page says so, nothing is made.
    let (size, too_large) = import(4_600, &"é".repeat(100));
    assert!(size > 1_000_000, "{size}");
    assert_eq!(too_large.status, 400, "{}", too_large.body);
    assert!(
        too_large.body.contains("larger than 1 MB"),
        "{}",
        too_large.body
    );
    assert!(!too_large.body.contains(r#"value="import""#));
}
