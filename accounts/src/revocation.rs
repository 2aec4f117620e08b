//! The one rule for whether a credential is still good: the gateway admits by it
//! ([`RevocationSet::is_revoked`], per request, from memory), and every list of credentials (the
//! account page, the admin pages, `certgate device list`) shows each one's [`Standing`] by it, so
//! a credential the gateway refuses never looks active anywhere.

use std::collections::{HashMap, HashSet};

use certgate_db::{Database, DbError, Device, Revocation, RevocationKind};

/// Revoked serials, devices and per-account "not valid before" times.
/// Keyed by organisation first so a lookup borrows the request's strings and allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct RevocationSet {
    serials: HashSet<String>,
    devices: HashMap<String, HashSet<String>>,
    accounts: HashMap<String, HashMap<String, i64>>,
}

/// Which revocation refuses a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its certificate's serial (`certgate device revoke --serial`).
    Serial,
    /// Its device: revoked by the user, an administrator or an operator.
    Device,
    /// Every credential of its account issued until then: a disable, a second-factor reset, a
    /// new password, "revoke all", a deletion.
    Account,
}

/// How a device's credential stands now, as every list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The gateway admits it until it expires.
    Active,
    /// Past its end.
    Expired,
    /// The gateway refuses it; [`Refusal`] says by which revocation.
    Refused(Refusal),
}

impl Standing {
    /// It can still be used, so ending it (a revoke button) means something.
    pub fn is_active(self) -> bool {
        self == Standing::Active
    }

    /// `active`, `expired`, `revoked` (this device, or its serial) or `ended` (with every
    /// credential of the account): the CLI's and the JSON APIs' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Expired => "expired",
            Standing::Refused(Refusal::Serial | Refusal::Device) => "revoked",
            Standing::Refused(Refusal::Account) => "ended",
        }
    }
}

impl RevocationSet {
    pub fn from_records(records: &[Revocation]) -> Self {
        let mut set = RevocationSet::default();
        for record in records {
            set.apply(record);
        }
        set
    }

    pub fn apply(&mut self, record: &Revocation) {
        match record.kind {
            RevocationKind::Serial => {
                self.serials.insert(record.subject.clone());
            }
            RevocationKind::Device => {
                self.devices
                    .entry(record.org.clone())
                    .or_default()
                    .insert(record.subject.clone());
            }
            RevocationKind::Account => {
                let nvb = self
                    .accounts
                    .entry(record.org.clone())
                    .or_default()
                    .entry(record.subject.clone())
                    .or_insert(record.revoked_at);
                *nvb = (*nvb).max(record.revoked_at);
            }
        }
    }

    /// Whether `record` is in force here already (applying it would change nothing).
    pub fn covers(&self, record: &Revocation) -> bool {
        match record.kind {
            RevocationKind::Serial => self.serials.contains(&record.subject),
            RevocationKind::Device => self
                .devices
                .get(&record.org)
                .is_some_and(|d| d.contains(&record.subject)),
            RevocationKind::Account => self
                .accounts
                .get(&record.org)
                .and_then(|accounts| accounts.get(&record.subject))
                .is_some_and(|nvb| *nvb >= record.revoked_at),
        }
    }

    /// Whether a credential with these facts is revoked. `serial` is lowercase hex without
    /// colons; `issued_at` is unix seconds.
    pub fn is_revoked(
        &self,
        org: &str,
        account: &str,
        device_id: &str,
        serial: Option<&str>,
        issued_at: i64,
    ) -> bool {
        self.refusal(org, account, device_id, serial, issued_at)
            .is_some()
    }

    /// Which revocation refuses a credential with these facts, if any (see
    /// [`RevocationSet::is_revoked`]).
    pub fn refusal(
        &self,
        org: &str,
        account: &str,
        device_id: &str,
        serial: Option<&str>,
        issued_at: i64,
    ) -> Option<Refusal> {
        if serial.is_some_and(|s| self.serials.contains(s)) {
            return Some(Refusal::Serial);
        }
        if self.devices.get(org).is_some_and(|d| d.contains(device_id)) {
            return Some(Refusal::Device);
        }
        self.accounts
            .get(org)
            .and_then(|accounts| accounts.get(account))
            // Whole seconds: a credential issued in the second of the revocation is covered.
            .is_some_and(|revoked_at| issued_at <= *revoked_at)
            .then_some(Refusal::Account)
    }

    /// How the credential of `device` (of the account named `username`) stands at `now`: the
    /// credential was issued when the device was recorded (a group tablet's renewals keep
    /// that time, and a certificate is not renewed past its account's reset).
    pub fn standing(&self, username: &str, device: &Device, now: i64) -> Standing {
        match self.refusal(&device.org, username, &device.id, None, device.created_at) {
            Some(refusal) => Standing::Refused(refusal),
            None if device.expires_at <= now => Standing::Expired,
            None => Standing::Active,
        }
    }

    /// The standing of each of `devices` at `now`; `username_of` names each device's account by
    /// its id (an account gone while its devices were listed: nothing of it is admitted).
    pub fn standings(
        &self,
        devices: &[Device],
        username_of: impl Fn(&str) -> Option<String>,
        now: i64,
    ) -> Vec<Standing> {
        devices
            .iter()
            .map(|device| match username_of(&device.account_id) {
                Some(username) => self.standing(&username, device, now),
                None => Standing::Refused(Refusal::Account),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.serials.len()
            + self.devices.values().map(HashSet::len).sum::<usize>()
            + self.accounts.values().map(HashMap::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The standing of each of `devices` (all of organisation `org`) at `now`, by the revocations
/// recorded for the organisation: what every gateway refuses once it has them (within a
/// second of the change). `username_of` names each device's account by its id.
pub async fn device_standings(
    db: &Database,
    org: &str,
    devices: &[Device],
    username_of: impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<Vec<Standing>, DbError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let set = RevocationSet::from_records(&db.live_revocations_of(org, now).await?);
    Ok(set.standings(devices, username_of, now))
}

/// The recorded revocation behind `refusal` (as [`RevocationSet::refusal`] found it) of a
/// credential of `account` on `device_id` in `org`, the latest when several are: what it says
/// (its reason).
pub fn refusing_record<'a>(
    records: &'a [Revocation],
    refusal: Refusal,
    org: &str,
    account: &str,
    device_id: &str,
) -> Option<&'a Revocation> {
    records
        .iter()
        .filter(|r| match (refusal, r.kind) {
            (Refusal::Account, RevocationKind::Account) => r.org == org && r.subject == account,
            (Refusal::Device, RevocationKind::Device) => r.org == org && r.subject == device_id,
            _ => false,
        })
        .max_by_key(|r| r.revoked_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgate_db::DeviceKind;

    fn record(kind: RevocationKind, org: &str, subject: &str, at: i64) -> Revocation {
        Revocation {
            id: 1,
            org: org.into(),
            kind,
            subject: subject.into(),
            reason: "test".into(),
            revoked_at: at,
            drop_after: at + crate::REVOCATION_RETENTION_SECS,
        }
    }

    #[test]
    fn serial_device_and_account_revocations() {
        let set = RevocationSet::from_records(&[
            record(RevocationKind::Serial, "", "0a1b", 10),
            record(RevocationKind::Device, "noord", "dev-1", 10),
            record(RevocationKind::Account, "noord", "anna", 100),
        ]);
        assert!(set.is_revoked("zuid", "x", "y", Some("0a1b"), 0));
        assert!(set.is_revoked("noord", "bob", "dev-1", None, 0));
        assert!(
            !set.is_revoked("zuid", "bob", "dev-1", None, 0),
            "device ids are per organisation"
        );
        assert!(set.is_revoked("noord", "anna", "dev-2", None, 99));
        assert!(
            set.is_revoked("noord", "anna", "dev-2", None, 100),
            "issued in the second of the reset"
        );
        assert!(
            !set.is_revoked("noord", "anna", "dev-2", None, 101),
            "issued after the reset"
        );
        assert!(!set.is_revoked("noord", "bob", "dev-2", Some("ffff"), 0));
    }

    fn device(id: &str, created_at: i64, expires_at: i64) -> Device {
        Device {
            org: "noord".into(),
            id: id.into(),
            account_id: "a1".into(),
            kind: DeviceKind::Browser,
            trust: certgate_db::DeviceTrust::Session,
            created_at,
            expires_at,
            last_seen: None,
            revoked_at: None,
            ip: String::new(),
            browser: String::new(),
            system: String::new(),
        }
    }

    #[test]
    fn a_list_shows_what_the_gateway_refuses_as_ended() {
        let set = RevocationSet::from_records(&[
            record(RevocationKind::Device, "noord", "tablet", 50),
            record(RevocationKind::Account, "noord", "anna", 100),
        ]);
        let now = 200;
        // Before the reset (a disable, a new password, a second-factor reset): ended, though
        // its own end is a day away and its row was never revoked.
        let before = device("phone", 90, 86_400);
        assert_eq!(
            set.standing("anna", &before, now),
            Standing::Refused(Refusal::Account)
        );
        assert_eq!(set.standing("anna", &before, now).as_str(), "ended");
        assert!(set.is_revoked("noord", "anna", "phone", None, before.created_at));
        // In the second of the reset too, as the gateway counts it.
        assert!(!set
            .standing("anna", &device("same", 100, 86_400), now)
            .is_active());
        // After it: active, until it expires.
        assert_eq!(
            set.standing("anna", &device("new", 101, 86_400), now),
            Standing::Active
        );
        assert_eq!(
            set.standing("anna", &device("old", 101, 150), now),
            Standing::Expired
        );
        // Someone else's reset does not touch it; its own revocation does.
        assert_eq!(
            set.standing("bob", &device("phone", 90, 86_400), now),
            Standing::Active
        );
        assert_eq!(
            set.standing("bob", &device("tablet", 90, 86_400), now)
                .as_str(),
            "revoked"
        );
    }
}
