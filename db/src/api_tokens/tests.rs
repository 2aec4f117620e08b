#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::NewAccount;

/// Organisation ids unique to this run, so a reused PostgreSQL database does not interfere.
fn org(name: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{:x}{:x}", std::process::id(), nanos)
}

fn token(org: &str, id: &str, name: &str, hash: &str) -> NewApiToken {
    NewApiToken {
        org: org.into(),
        id: id.into(),
        name: name.into(),
        token_hash: hash.into(),
        scopes: vec![
            ApiScope::AuditRead,
            ApiScope::AccountsRead,
            ApiScope::AuditRead,
        ],
        sources: vec!["192.0.2.0/24".into(), "2001:db8::/48".into()],
        created_by: format!("{org}-admin"),
        created_at: 1_000,
        expires_at: 5_000,
    }
}

/// The same behaviour must hold on both backends.
async fn exercise(db: &Database) {
    let noord = org("noord");
    let zuid = org("zuid");
    let hash = format!("{noord}-hash-1");
    let made = db
        .create_api_token(&token(&noord, "tok-1", "ci", &hash))
        .await
        .unwrap();
    assert_eq!(
        made.scopes,
        [ApiScope::AccountsRead, ApiScope::AuditRead],
        "sorted, without duplicates"
    );
    assert_eq!(made.sources, ["192.0.2.0/24", "2001:db8::/48"]);
    assert_eq!((made.revoked_at, made.last_used), (None, None));
    assert!(!format!("{made:?}").contains(&hash), "Debug hides the hash");

    // Found by its hash alone, whatever organisation asks.
    assert_eq!(
        db.api_token_by_hash(&hash).await.unwrap(),
        Some(made.clone())
    );
    assert_eq!(db.api_token_by_hash("other").await.unwrap(), None);
    assert_eq!(db.api_token(&zuid, "tok-1").await.unwrap(), None);

    // Names are unique per organisation; the same name elsewhere is fine.
    let taken = db
        .create_api_token(&token(&noord, "tok-2", "ci", &format!("{noord}-hash-2")))
        .await;
    assert!(matches!(taken, Err(DbError::Conflict(_))), "{taken:?}");
    db.create_api_token(&token(&zuid, "tok-1", "ci", &format!("{zuid}-hash-1")))
        .await
        .unwrap();
    // A hash is never stored twice.
    let twice = db
        .create_api_token(&token(&noord, "tok-3", "deploy", &hash))
        .await;
    assert!(matches!(twice, Err(DbError::Conflict(_))), "{twice:?}");

    // Use is noted at most once a minute.
    db.record_api_token_use(&noord, "tok-1", 2_000)
        .await
        .unwrap();
    db.record_api_token_use(&noord, "tok-1", 2_030)
        .await
        .unwrap();
    let used = db.api_token(&noord, "tok-1").await.unwrap().unwrap();
    assert_eq!(used.last_used, Some(2_000));
    db.record_api_token_use(&noord, "tok-1", 2_060)
        .await
        .unwrap();
    let used = db.api_token(&noord, "tok-1").await.unwrap().unwrap();
    assert_eq!(used.last_used, Some(2_060));

    // Revoking: once, and only in its own organisation.
    assert!(!db.revoke_api_token(&zuid, "tok-2", 3_000).await.unwrap());
    assert!(db.revoke_api_token(&noord, "tok-1", 3_000).await.unwrap());
    assert!(!db.revoke_api_token(&noord, "tok-1", 3_100).await.unwrap());
    let revoked = db.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(3_000));
    assert_eq!(
        db.api_token(&zuid, "tok-1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None,
        "the other organisation's token of the same id is untouched"
    );

    db.create_api_token(&NewApiToken {
        created_at: 1_500,
        sources: Vec::new(),
        ..token(&noord, "tok-4", "backup", &format!("{noord}-hash-4"))
    })
    .await
    .unwrap();
    let listed: Vec<(String, Vec<String>)> = db
        .api_tokens(&noord)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.sources))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "ci".to_owned(),
                vec!["192.0.2.0/24".to_owned(), "2001:db8::/48".to_owned()]
            ),
            ("backup".to_owned(), Vec::new()),
        ]
    );

    // An administrator who loses the role loses the tokens they made, for good: giving the role
    // back does not bring them back.
    let roles = ["Admin".to_owned()];
    let input = crate::AccountInput {
        username: "beheer",
        display_name: "Beheer",
        roles: &roles,
        ..Default::default()
    };
    let admin = NewAccount::checked(&noord, &input, crate::Given::Typed).unwrap();
    let admin_id = format!("{noord}-admin");
    db.create_account(&admin, &admin_id, 1_000).await.unwrap();
    let edited = |roles: &[&str]| NewAccount {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..admin.clone()
    };
    assert!(db
        .update_account(&noord, &admin_id, &edited(&["admin", "planner"]), 3_500)
        .await
        .unwrap());
    let kept = db.api_token(&noord, "tok-4").await.unwrap().unwrap();
    assert_eq!(kept.revoked_at, None, "still an admin");
    assert!(db
        .update_account(&noord, &admin_id, &edited(&["planner"]), 4_000)
        .await
        .unwrap());
    db.update_account(&noord, &admin_id, &edited(&["admin"]), 4_100)
        .await
        .unwrap();
    let ended = db.api_token(&noord, "tok-4").await.unwrap().unwrap();
    assert_eq!(ended.revoked_at, Some(4_000));
    let earlier = db.api_token(&noord, "tok-1").await.unwrap().unwrap();
    assert_eq!(
        earlier.revoked_at,
        Some(3_000),
        "an earlier revocation stands"
    );
    let other_org = db.api_token(&zuid, "tok-1").await.unwrap().unwrap();
    assert_eq!(other_org.revoked_at, None);
}

#[test]
fn scopes_have_one_name_each() {
    for scope in ApiScope::ALL {
        assert_eq!(ApiScope::from_name(scope.as_str()), Some(scope));
    }
    assert_eq!(ApiScope::from_name("accounts:*"), None);
    assert_eq!(ApiScope::from_name("Accounts:Read"), None);
}

#[tokio::test]
async fn sqlite_api_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open("", dir.path()).await.unwrap();
    exercise(&db).await;
}

/// `make test` passes the PostgreSQL URL; running without it is a setup error.
#[tokio::test]
async fn postgres_api_tokens() {
    let url = std::env::var("CERTGATE_TEST_POSTGRES_URL").expect(
        "CERTGATE_TEST_POSTGRES_URL must name a scratch PostgreSQL database (make test sets it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&url, dir.path()).await.unwrap();
    exercise(&db).await;
}
