//! The account service against a real SQLite database; revocations are recorded in it
//! ([`RecordOnly`]), as the gateway records them first.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use certgate_db::{AccountKind, DeviceKind, Revocation};
use certgate_policies::{Access, Language, MfaPolicy};

use super::*;

const NOW: i64 = 1_800_000_000;

#[derive(Default)]
struct Told(Mutex<Vec<(String, AccountEvent)>>);

impl AccountEvents for Told {
    fn changed(&self, account: &Account, event: AccountEvent) {
        self.0
            .lock()
            .unwrap()
            .push((account.username.clone(), event));
    }
}

fn org() -> Organisation {
    Organisation {
        id: "noord".into(),
        name: "Zorggroep Noord".into(),
        hosts: vec!["noord.test".into()],
        upstreams: Vec::new(),
        logo: None,
        colour: None,
        default_language: Language::Nl,
        time_zone: Default::default(),
        access: Access::default(),
        mfa: MfaPolicy {
            exempt_roles: vec!["ouder".into()],
            ..MfaPolicy::default()
        },
        sso: Vec::new(),
        health_check: None,
        source: "noord.toml".into(),
    }
}

fn new(username: &str, roles: &[&str]) -> NewAccount {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let email = format!("{username}@noord.test");
    let input = certgate_db::AccountInput {
        username,
        display_name: "Hanna de Vries",
        email: Some(&email),
        roles: &roles,
        ..Default::default()
    };
    NewAccount::checked("noord", &input, certgate_db::Given::Typed).unwrap()
}

async fn database(dir: &std::path::Path) -> Database {
    Database::open("", dir).await.unwrap()
}

async fn actions(db: &Database) -> Vec<(String, String, String)> {
    db.audit_entries("noord", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.subject))
        .collect()
}

/// The reasons of the live account revocations.
async fn reasons(db: &Database) -> Vec<String> {
    live(db)
        .await
        .into_iter()
        .filter(|r| r.kind == RevocationKind::Account)
        .map(|r| r.reason)
        .collect()
}

async fn live(db: &Database) -> Vec<Revocation> {
    db.live_revocations(NOW).await.unwrap()
}

#[tokio::test]
async fn every_caller_gets_the_same_checks_audit_actions_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let told = Told::default();
    let sql = RecordOnly(&db);
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: Some(&told),
        now: NOW,
    };
    let org = org();
    let admin = service
        .create(Actor::Operator, &org, &new("lisa", &["admin"]))
        .await
        .unwrap();
    let hanna = service
        .create(
            Actor::Admin {
                account: &admin,
                ip: "192.0.2.7",
            },
            &org,
            &new("hanna", &[]),
        )
        .await
        .unwrap();
    let token = Actor::Token {
        name: "hr-sync",
        created_by: &admin.id,
        ip: "192.0.2.8",
    };
    let disabled = service.disable(token, &org, &hanna).await.unwrap();
    assert!(disabled.disabled);
    assert_eq!(reasons(&db).await, ["disabled"]);
    let enabled = service.enable(Actor::Operator, &org, &hanna).await.unwrap();
    assert!(!enabled.disabled);
    assert_eq!(
        reasons(&db).await,
        ["disabled"],
        "enabling refuses nothing more"
    );
    service.reset_mfa(token, &org, &hanna).await.unwrap();

    assert_eq!(
        actions(&db).await,
        vec![
            (
                "operator (admin API)".into(),
                "admin.user.add".into(),
                "lisa".into()
            ),
            ("lisa".into(), "admin.user.add".into(), "hanna".into()),
            (
                "token:hr-sync".into(),
                "admin.user.disable".into(),
                "hanna".into()
            ),
            (
                "operator (admin API)".into(),
                "admin.user.enable".into(),
                "hanna".into()
            ),
            (
                "token:hr-sync".into(),
                "admin.user.reset_mfa".into(),
                "hanna".into()
            ),
        ]
    );
    // Resetting refuses what was issued until then too (one record an account, moved on),
    // kept as long as any credential can live.
    assert_eq!(reasons(&db).await, ["mfa_reset"]);
    for r in live(&db).await {
        assert_eq!(r.kind, RevocationKind::Account);
        assert_eq!(r.subject, "hanna");
        assert_eq!(r.drop_after, NOW + REVOCATION_RETENTION_SECS);
    }
    assert_eq!(
        told.0.lock().unwrap().as_slice(),
        [
            ("lisa".to_owned(), AccountEvent::Created),
            ("hanna".to_owned(), AccountEvent::Created),
            ("hanna".to_owned(), AccountEvent::MfaReset),
        ]
    );
}

#[tokio::test]
async fn a_token_makes_no_administrators_and_leaves_their_accounts_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let sql = RecordOnly(&db);
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: None,
        now: NOW,
    };
    let org = org();
    let lisa = service
        .create(Actor::Operator, &org, &new("lisa", &["admin"]))
        .await
        .unwrap();
    let hanna = service
        .create(Actor::Operator, &org, &new("hanna", &[]))
        .await
        .unwrap();
    let token = Actor::Token {
        name: "hr-sync",
        created_by: &lisa.id,
        ip: "192.0.2.8",
    };
    for roles in [&["admin"][..], &["ouder"], &["team", "admin"]] {
        let refused = service.create(token, &org, &new("eva", roles)).await;
        assert!(
            matches!(refused, Err(AccountError::NotAllowed(_))),
            "{roles:?}: {refused:?}"
        );
        let changes = new("hanna", roles);
        let refused = service.edit(token, &org, &hanna, &changes).await;
        assert!(
            matches!(refused, Err(AccountError::NotAllowed(_))),
            "{roles:?}: {refused:?}"
        );
    }
    for result in [
        service.disable(token, &org, &lisa).await.map(|_| ()),
        service.reset_mfa(token, &org, &lisa).await.map(|_| ()),
        service.delete(token, &org, &lisa).await,
    ] {
        assert!(
            matches!(result, Err(AccountError::NotAllowed(_))),
            "{result:?}"
        );
    }
    // Nothing of it was written.
    assert!(db.find_account("noord", "eva").await.unwrap().is_none());
    let lisa_now = db.account("noord", &lisa.id).await.unwrap().unwrap();
    assert!(!lisa_now.disabled);
    assert!(live(&db).await.is_empty());
    assert_eq!(actions(&db).await.len(), 2, "only the two creations");
    // The admin pages may.
    let admin = Actor::Admin {
        account: &lisa,
        ip: "192.0.2.7",
    };
    service
        .create(admin, &org, &new("eva", &["admin"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn another_organisations_account_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let sql = RecordOnly(&db);
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: None,
        now: NOW,
    };
    let hanna = service
        .create(Actor::Operator, &org(), &new("hanna", &[]))
        .await
        .unwrap();
    let zuid = Organisation {
        id: "zuid".into(),
        ..org()
    };
    assert_eq!(
        service.disable(Actor::Operator, &zuid, &hanna).await,
        Err(AccountError::Gone)
    );
    assert_eq!(
        service
            .create(Actor::Operator, &zuid, &new("eva", &[]))
            .await,
        Err(AccountError::Gone)
    );
    assert!(live(&db).await.is_empty());
}

#[tokio::test]
async fn a_second_password_signs_out_everywhere_and_a_leaver_is_refused_before_going() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let told = Told::default();
    let sql = RecordOnly(&db);
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: Some(&told),
        now: NOW,
    };
    let org = org();
    let hanna = service
        .create(Actor::Operator, &org, &new("hanna", &[]))
        .await
        .unwrap();
    assert!(matches!(
        service
            .set_password(Actor::Operator, &org, &hanna, "hunter2")
            .await,
        Err(AccountError::Invalid(_))
    ));
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let first = service
        .set_password(Actor::Operator, &org, &hanna, hash)
        .await
        .unwrap();
    assert!(live(&db).await.is_empty(), "a first password ends nothing");
    service
        .set_password(Actor::Operator, &org, &first, hash)
        .await
        .unwrap();
    assert_eq!(
        reasons(&db).await,
        ["password_reset"],
        "a replaced password signs out"
    );

    let device = Device {
        org: "noord".into(),
        id: "d1".into(),
        account_id: hanna.id.clone(),
        kind: DeviceKind::Browser,
        trust: DeviceTrust::Group,
        created_at: NOW,
        expires_at: NOW + 60,
        last_seen: None,
        revoked_at: None,
        ip: "192.0.2.9".into(),
        browser: String::new(),
        system: String::new(),
    };
    db.record_device(&device).await.unwrap();
    service
        .revoke_device(Actor::Operator, &org, &hanna, &device)
        .await
        .unwrap();
    let ended = live(&db).await;
    let by_device = ended
        .iter()
        .find(|r| r.kind == RevocationKind::Device)
        .unwrap();
    let idle = org.mfa.group_idle_timeout.as_secs() as i64;
    assert_eq!(by_device.drop_after, NOW + idle + 300, "a group tablet's");

    service.delete(Actor::Operator, &org, &first).await.unwrap();
    assert!(db.account("noord", &hanna.id).await.unwrap().is_none());
    assert_eq!(reasons(&db).await, ["deleted"]);
    let last = actions(&db).await.pop().unwrap();
    assert_eq!(last.1, AuditAction::AccountDeleted.as_str());
    assert_eq!(
        service.delete(Actor::Operator, &org, &first).await,
        Err(AccountError::Gone)
    );
    assert_eq!(AccountKind::Personal, first.kind);
}

#[tokio::test]
async fn an_import_creates_every_account_or_none_and_a_token_imports_no_administrators() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let sql = RecordOnly(&db);
    let told = Told::default();
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: Some(&told),
        now: NOW,
    };
    let org = org();
    let admin = service
        .create(Actor::Operator, &org, &new("lisa", &["admin"]))
        .await
        .unwrap();
    let token = Actor::Token {
        name: "hr-sync",
        created_by: &admin.id,
        ip: "192.0.2.8",
    };
    let file = "username,name,kind,roles\n\
                ria,Ria,personal,\n\
                LISA,Lisa again,,\n\
                sem,Sem,robot,\n\
                boss,Boss,,admin\n";
    let checked = service.import(token, &org, file).await.unwrap();
    assert_eq!(checked.created, 0);
    assert!(!checked.ready());
    let problems = checked.problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("line 3: ") && problems[0].contains("exists already"));
    assert!(problems[1].starts_with("line 4: ") && problems[1].contains("robot"));
    assert!(problems[2].starts_with("line 5: ") && problems[2].contains("not with a token"));
    assert!(db.find_account("noord", "ria").await.unwrap().is_none());

    let good = "username,name,kind\nria,Ria,personal\ngroep-zon,Groep Zon,group\n";
    let preview = service.check_import(token, &org, good).await.unwrap();
    assert!(preview.ready());
    assert!(db.find_account("noord", "ria").await.unwrap().is_none());
    let imported = service.import(token, &org, good).await.unwrap();
    assert_eq!(imported.created, 2);
    let zon = db
        .find_account("noord", "groep-zon")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zon.kind, AccountKind::Group);
    let audit = actions(&db).await;
    assert_eq!(
        audit.last().unwrap(),
        &(
            "token:hr-sync".to_owned(),
            "admin.user.import".to_owned(),
            String::new()
        )
    );
    // A file as a whole unreadable, or too large, is said so and changes nothing.
    let huge = format!("username,name\n{}", "a,b\n".repeat(300_000));
    assert!(matches!(
        service.import(token, &org, &huge).await,
        Err(AccountError::Invalid(message)) if message.contains("larger than")
    ));
}

fn device(id: &str, account: &Account) -> Device {
    Device {
        org: "noord".into(),
        id: id.into(),
        account_id: account.id.clone(),
        kind: DeviceKind::Browser,
        trust: DeviceTrust::Session,
        created_at: NOW,
        expires_at: NOW + 3_600,
        last_seen: None,
        revoked_at: None,
        ip: "192.0.2.9".into(),
        browser: String::new(),
        system: String::new(),
    }
}

#[tokio::test]
async fn a_person_changes_only_their_own_account_and_a_provider_only_creates() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let sql = RecordOnly(&db);
    let service = Accounts {
        db: &db,
        revoke: &sql,
        events: None,
        now: NOW,
    };
    let org = org();
    let hanna = service
        .create(Actor::Operator, &org, &new("hanna", &[]))
        .await
        .unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let hanna = service
        .set_password(Actor::Operator, &org, &hanna, hash)
        .await
        .unwrap();
    let piet = service
        .create(Actor::Operator, &org, &new("piet", &[]))
        .await
        .unwrap();
    let me = Actor::User {
        account: &hanna,
        ip: "192.0.2.7",
    };

    // Her own new password ("forgot password"): audited as hers, and it signs her out
    // everywhere under the one reason every new password has.
    service.set_password(me, &org, &hanna, hash).await.unwrap();
    let last = actions(&db).await.pop().unwrap();
    assert_eq!(
        last,
        (
            "hanna".to_owned(),
            AuditAction::PasswordReset.as_str().to_owned(),
            "hanna".to_owned()
        )
    );
    assert_eq!(reasons(&db).await, ["password_reset"]);

    // Her own device: counted and audited as hers, not as administration.
    let own = device("d-own", &hanna);
    db.record_device(&own).await.unwrap();
    service.revoke_device(me, &org, &hanna, &own).await.unwrap();
    let last = actions(&db).await.pop().unwrap();
    assert_eq!(last.1, AuditAction::DeviceEnded.as_str());
    let ended = live(&db).await;
    assert!(ended
        .iter()
        .any(|r| r.kind == RevocationKind::Device && r.reason == "revoked by the user"));

    // Someone else's account, or anything an administrator does, is refused and changes nothing.
    let before = actions(&db).await.len();
    assert!(matches!(
        service.set_password(me, &org, &piet, hash).await,
        Err(AccountError::NotAllowed(_))
    ));
    assert!(matches!(
        service.disable(me, &org, &piet).await,
        Err(AccountError::NotAllowed(_))
    ));
    assert!(matches!(
        service.create(me, &org, &new("nieuw", &[])).await,
        Err(AccountError::NotAllowed(_))
    ));
    let piets = device("d-piet", &piet);
    db.record_device(&piets).await.unwrap();
    assert!(matches!(
        service.revoke_device(me, &org, &piet, &piets).await,
        Err(AccountError::NotAllowed(_))
    ));
    assert_eq!(actions(&db).await.len(), before);

    // A single sign-on provider creates the people it vouches for, with no roles, and changes
    // no account.
    let provider = Actor::Provider {
        name: "entra",
        ip: "192.0.2.8",
    };
    let made = service
        .create(provider, &org, &new("joke", &[]))
        .await
        .unwrap();
    let last = actions(&db).await.pop().unwrap();
    assert_eq!(last.0, "sso:entra");
    assert_eq!(last.1, AuditAction::AccountCreated.as_str());
    assert!(matches!(
        service
            .create(provider, &org, &new("baas", &["admin"]))
            .await,
        Err(AccountError::NotAllowed(_))
    ));
    assert!(matches!(
        service.reset_mfa(provider, &org, &made).await,
        Err(AccountError::NotAllowed(_))
    ));
}

#[tokio::test]
async fn revoking_every_device_also_ends_the_portal_sessions_issued_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).await;
    let sql = RecordOnly(&db);
    let org = org();
    let early = Accounts {
        db: &db,
        revoke: &sql,
        events: None,
        now: NOW,
    };
    let hanna = early
        .create(Actor::Operator, &org, &new("hanna", &[]))
        .await
        .unwrap();
    db.record_device(&device("d1", &hanna)).await.unwrap();
    let later = Accounts {
        now: NOW + 60,
        ..early
    };
    let made = later
        .revoke_all_devices_because(Actor::Operator, &org, &hanna, "laptop stolen")
        .await
        .unwrap();
    assert_eq!(made.reason, "laptop stolen");
    let hanna = db.account("noord", &hanna.id).await.unwrap().unwrap();
    assert_eq!(
        hanna.not_valid_before,
        NOW + 60,
        "the portal refuses sessions and tokens from before"
    );
    assert!(db.devices("noord", &hanna.id).await.unwrap()[0]
        .revoked_at
        .is_some());
    let last = actions(&db).await.pop().unwrap();
    assert_eq!(last.1, AuditAction::AllDevicesRevoked.as_str());
}
