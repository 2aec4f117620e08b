//! Operators' account administration: the first account offline before the first start, then
//! everything through the running instance; disabling an account refuses its credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use certgate_e2e::{
    certgate, certgate_bin, certgate_ok, settles, throwaway_postgres_database, Deployment, Org,
};

const HOST: &str = "noord.test";

fn set_password(config: &str, user: &str, password: &str, offline: bool) -> std::process::Output {
    let mut args = vec![
        "user",
        "set-password",
        "--config",
        config,
        "--org",
        "noord",
        "--user",
        user,
    ];
    if offline {
        args.push("--offline");
    }
    let mut child = Command::new(certgate_bin())
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn accounts_are_administered_through_the_running_instance() {
    administer_accounts("");
}

#[test]
fn accounts_are_administered_the_same_on_postgresql() {
    let url = throwaway_postgres_database();
    administer_accounts(&format!("[database]\nurl = \"{url}\"\n"));
}

/// The accounts suite; `sections` chooses the database.
fn administer_accounts(sections: &str) {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    d.extra_sections = sections.to_owned();
    d.write_config();
    let config = d.config();
    let add = |username: &str, offline: bool| {
        let mut args = vec![
            "user",
            "add",
            "--config",
            &config,
            "--org",
            "noord",
            "--username",
            username,
            "--name",
            "Test User",
            "--role",
            "admin",
        ];
        if offline {
            args.push("--offline");
        }
        certgate(&args)
    };

    // The first account, before the first start.
    let first = add("Anna@Noord.Test", true);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("anna@noord.test (Test User) in noord"));
    // NIST SP 800-63B: long enough, not a common or breached password, not the username.
    for (weak, why) in [
        ("short", "at least 8 characters"),
        ("1234567890", "one of the most used passwords"),
        ("anna-2024-zomerfeest", "contains the username"),
        ("aaaaaaaaaaaa", "easy to guess"),
    ] {
        let refused = set_password(&config, "anna@noord.test", weak, true);
        assert!(!refused.status.success(), "{weak}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(why), "{weak}: {stderr}");
    }
    let set = set_password(&config, "ANNA@noord.test", "correct horse battery", true);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    d.start();
    let refused = add("late@noord.test", true);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("an instance is running"));

    assert!(add("bob", false).status.success());
    let taken = add("BOB", false);
    assert!(!taken.status.success());
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("taken"),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let unknown_org = certgate(&["user", "list", "--config", &config, "--org", "elsewhere"]);
    assert!(String::from_utf8_lossy(&unknown_org.stderr).contains("no organisation"));

    let list = certgate_ok(&["user", "list", "--config", &config, "--org", "noord"]);
    assert!(
        list.contains("anna@noord.test") && list.contains("bob"),
        "{list}"
    );
    assert!(
        set_password(&config, "bob", "another good passphrase", false)
            .status
            .success()
    );

    // Disabling refuses the account's credentials at once; enabling does not bring them back.
    let bob = d.issue_client("noord", "bob", "1h");
    let status = |cert: &certgate_e2e::ClientCert| d.status_with_cert(d.https, HOST, cert);
    assert_eq!(status(&bob), 200);
    let disabled = certgate_ok(&[
        "user", "disable", "--config", &config, "--org", "noord", "--user", "bob",
    ]);
    assert!(disabled.contains("DISABLED"), "{disabled}");
    assert!(settles(|| status(&bob) == 401));
    certgate_ok(&[
        "user", "enable", "--config", &config, "--org", "noord", "--user", "bob",
    ]);
    assert_eq!(
        status(&bob),
        401,
        "credentials issued before the disable stay refused"
    );
    certgate_e2e::next_second();
    let bob_again = d.issue_client("noord", "bob", "1h");
    assert_eq!(
        status(&bob_again),
        200,
        "a credential issued afterwards works"
    );

    let reset = certgate_ok(&[
        "user",
        "reset-mfa",
        "--config",
        &config,
        "--org",
        "noord",
        "--user",
        "anna@noord.test",
    ]);
    assert!(reset.contains("second factor: not chosen"), "{reset}");
    let missing = certgate(&[
        "user", "show", "--config", &config, "--org", "noord", "--user", "nobody",
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));
}

#[test]
fn accounts_are_edited_imported_and_deleted_from_the_command_line() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    d.start();
    let config = d.config();
    let user = |args: &[&str]| {
        let mut all = vec!["user"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config, "--org", "noord"]);
        certgate(&all)
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // An import with a bad row creates nothing and names the rows.
    let csv = d.path("people.csv");
    std::fs::write(
        &csv,
        "username,name,email,mobile,kind,roles\nria@noord.test,Ria,ria@noord.test,,personal,admin;parent\nsem@noord.test,Sem,,0612,personal,\nria@noord.test,Ria again,,,,\n",
    )
    .unwrap();
    let bad = user(&["import", "--file", csv.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let said = text(&bad);
    assert!(
        said.contains("line 3:") && said.contains("line 4:") && !said.contains("line 2:"),
        "{said}"
    );
    assert!(
        !user(&["show", "--user", "ria@noord.test"]).status.success(),
        "nothing created"
    );
    // A misspelt column is refused, not left out of every account.
    std::fs::write(
        &csv,
        "username,name,e-mail\nria@noord.test,Ria,ria@noord.test\n",
    )
    .unwrap();
    let misspelt = user(&["import", "--file", csv.to_str().unwrap()]);
    assert_eq!(misspelt.status.code(), Some(1));
    assert!(
        text(&misspelt).contains("\"e-mail\""),
        "{}",
        text(&misspelt)
    );
    assert!(!user(&["show", "--user", "ria@noord.test"]).status.success());
    std::fs::write(
        &csv,
        "username,name,email,mobile,kind,roles\nria@noord.test,Ria,ria@noord.test,,personal,admin;parent\ngroep-zon,Groep Zon,,,group,\n",
    )
    .unwrap();
    let good = user(&["import", "--file", csv.to_str().unwrap()]);
    assert!(good.status.success(), "{}", text(&good));
    let shown = text(&user(&["show", "--user", "groep-zon"]));
    assert!(shown.contains("kind: group"), "{shown}");

    // Edit: only what is given changes.
    let edited = user(&[
        "edit",
        "--user",
        "ria@noord.test",
        "--mobile",
        "+31611112222",
        "--role",
        "admin",
    ]);
    let shown = text(&edited);
    assert!(edited.status.success(), "{shown}");
    assert!(
        shown.contains("mobile: +31611112222")
            && shown.contains("roles: admin")
            && shown.contains("e-mail: ria@noord.test"),
        "{shown}"
    );
    let refused = user(&["edit", "--user", "ria@noord.test", "--mobile", "0612"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("international form"));

    // Delete: gone, and said so.
    let deleted = user(&["delete", "--user", "ria@noord.test"]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    let gone = user(&["show", "--user", "ria@noord.test"]);
    assert!(text(&gone).contains("no account"), "{}", text(&gone));
}
