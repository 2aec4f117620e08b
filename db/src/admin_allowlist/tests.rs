#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn entry(network: &str, note: &str) -> NewAdminAllowEntry {
    NewAdminAllowEntry {
        network: network.into(),
        note: note.into(),
    }
}

fn editor(actor: &str) -> AllowListEditor {
    AllowListEditor {
        actor: actor.into(),
        ip: "192.0.2.1".into(),
    }
}

fn networks(list: &AdminAllowList) -> Vec<&str> {
    list.entries.iter().map(|e| e.network.as_str()).collect()
}

/// Organisation ids unique to this run, so a reused PostgreSQL database does not interfere.
fn org(name: &str) -> String {
    format!("{name}-{}", hex_suffix())
}

fn hex_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// The same behaviour must hold on both backends.
async fn exercise(db: &Database) {
    let noord = org("noord");
    let zuid = org("zuid");
    let fresh = db.admin_allow_list(&noord).await.unwrap();
    assert_eq!((fresh.version, fresh.entries.len()), (0, 0));

    let first = db
        .replace_admin_allow_list(
            &noord,
            0,
            &[entry("192.0.2.0/24", "office"), entry("10.1.0.0/16", "")],
            &editor("anna"),
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.added, ["192.0.2.0/24", "10.1.0.0/16"]);
    assert!(first.removed.is_empty());

    // A save based on the version before is refused and changes nothing.
    let stale = db
        .replace_admin_allow_list(&noord, 0, &[], &editor("bob"), 1_001)
        .await
        .unwrap_err();
    match &stale {
        DbError::StaleAllowList {
            org,
            expected,
            current,
        } => assert_eq!((org.as_str(), *expected, *current), (noord.as_str(), 0, 1)),
        other => panic!("{other:?}"),
    }
    assert!(stale.to_string().contains("changed by someone else"));
    let list = db.admin_allow_list(&noord).await.unwrap();
    assert_eq!(list.version, 1);
    assert_eq!(networks(&list), ["192.0.2.0/24", "10.1.0.0/16"]);

    // Keep one (with a new note), drop one, add one: who added a kept network stays.
    let second = db
        .replace_admin_allow_list(
            &noord,
            1,
            &[
                entry("2001:db8:1::/48", "branch"),
                entry("192.0.2.0/24", "main office"),
            ],
            &editor("bob"),
            2_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (second.version, second.added, second.removed, second.renoted),
        (
            2,
            vec!["2001:db8:1::/48".to_owned()],
            vec!["10.1.0.0/16".to_owned()],
            vec!["192.0.2.0/24".to_owned()]
        )
    );
    let list = db.admin_allow_list(&noord).await.unwrap();
    assert_eq!(list.version, 2);
    assert_eq!(
        list.entries,
        [
            AdminAllowRecord {
                network: "2001:db8:1::/48".into(),
                note: "branch".into(),
                added_by: "bob".into(),
                added_at: 2_000,
            },
            AdminAllowRecord {
                network: "192.0.2.0/24".into(),
                note: "main office".into(),
                added_by: "anna".into(),
                added_at: 1_000,
            },
        ]
    );

    // Every save is audited with what it changed, in the same transaction.
    let audit: Vec<(String, String, String, String)> = db
        .audit_entries(&noord, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.subject, e.detail))
        .collect();
    assert_eq!(
        audit,
        [
            (
                "anna".to_owned(),
                ALLOW_LIST_AUDIT_ACTION.to_owned(),
                "version 1".to_owned(),
                "added 192.0.2.0/24, 10.1.0.0/16".to_owned()
            ),
            (
                "bob".to_owned(),
                ALLOW_LIST_AUDIT_ACTION.to_owned(),
                "version 2".to_owned(),
                "added 2001:db8:1::/48; removed 10.1.0.0/16; note changed 192.0.2.0/24".to_owned()
            ),
        ]
    );

    // Large lists go in several statements and keep their order.
    let many: Vec<NewAdminAllowEntry> = (0..250)
        .map(|i| {
            entry(
                &format!("10.{}.{}.0/24", i / 256, i % 256),
                &format!("#{i}"),
            )
        })
        .collect();
    db.replace_admin_allow_list(&zuid, 0, &many, &editor("carol"), 3_000)
        .await
        .unwrap();
    let list = db.admin_allow_list(&zuid).await.unwrap();
    assert_eq!(list.entries.len(), 250);
    assert_eq!(list.entries[249].network, "10.0.249.0/24");
    assert_eq!(list.entries[249].note, "#249");

    // Emptying a list keeps its version going.
    let emptied = db
        .replace_admin_allow_list(&zuid, 1, &[], &editor("carol"), 3_001)
        .await
        .unwrap();
    assert_eq!(emptied.version, 2);
    assert_eq!(emptied.removed.len(), 250);
    assert!(db.admin_allow_list(&zuid).await.unwrap().entries.is_empty());

    let all = db.admin_allow_lists().await.unwrap();
    let mine: Vec<(&str, i64, usize)> = all
        .iter()
        .filter(|l| l.org == noord || l.org == zuid)
        .map(|l| (l.org.as_str(), l.version, l.entries.len()))
        .collect();
    assert_eq!(mine, [(noord.as_str(), 2, 2), (zuid.as_str(), 2, 0)]);
}

/// Of several saves based on the same version, exactly one wins.
async fn racing_saves(db: &Database) {
    let org = org("race");
    let saves = (0..4).map(|i| {
        let db = db.clone();
        let org = org.clone();
        tokio::spawn(async move {
            db.replace_admin_allow_list(
                &org,
                0,
                &[entry(&format!("192.0.2.{i}/32"), "")],
                &editor(&format!("admin-{i}")),
                4_000,
            )
            .await
        })
    });
    let mut won = 0;
    for save in saves.collect::<Vec<_>>() {
        match save.await.unwrap() {
            Ok(saved) => {
                assert_eq!(saved.version, 1);
                won += 1;
            }
            Err(DbError::StaleAllowList { current: 1, .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    let list = db.admin_allow_list(&org).await.unwrap();
    assert_eq!((list.version, list.entries.len()), (1, 1));
}

#[tokio::test]
async fn sqlite_admin_allow_lists() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open("", dir.path()).await.unwrap();
    exercise(&db).await;
    racing_saves(&db).await;
}

/// `make test` passes the PostgreSQL URL; running without it is a setup error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_admin_allow_lists() {
    let url = std::env::var("CERTGATE_TEST_POSTGRES_URL").expect(
        "CERTGATE_TEST_POSTGRES_URL must name a scratch PostgreSQL database (make test sets it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&url, dir.path()).await.unwrap();
    exercise(&db).await;
    racing_saves(&db).await;
}
