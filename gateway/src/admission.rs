//! The admission decision: which organisation a request belongs to and whether it may reach the
//! upstream, in the order of ARCHITECTURE.md. A pure function of the request's facts, the
//! policies, the organisation admins' allow-list layers, the revocation set and the time, so
//! `policy explain`, tests and benchmarks use the very code the proxy runs.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use certgate_certs::{CredentialClaims, CredentialClass, CredentialVerifier};
use certgate_policies::{AllowEntry, Organisation, PolicySet};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::admin_allowlist::AdminAllowLayers;
use crate::revocation::RevocationSet;
use crate::tls::{CertificateStatus, PresentedCertificate};

/// Requests under this prefix belong to certgate's portal.
pub const PORTAL_PREFIX: &str = "/.certgate/";
/// The browser credential cookie.
pub const DEVICE_COOKIE: &str = "__Host-certgate-device";

/// What the gateway knows about a request when it decides.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub host: &'a str,
    /// Path and query as the client sent them.
    pub path: &'a str,
    /// A browser navigation (GET or HEAD accepting HTML) is redirected; anything else gets 401.
    pub navigation: bool,
    pub client_ip: IpAddr,
    pub certificate: Option<&'a PresentedCertificate>,
    /// The value of the device cookie, if sent.
    pub browser_token: Option<&'a str>,
}

/// The `decision` label of `certgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionLabel {
    AllowedIp,
    AllowedCertificate,
    AllowedBrowser,
    AllowedPublic,
    Portal,
    Redirected,
    Unauthorized,
    DeniedRevoked,
    DeniedExpired,
    UnknownHost,
    BadRequest,
}

impl DecisionLabel {
    pub const ALL: [DecisionLabel; 11] = [
        DecisionLabel::AllowedIp,
        DecisionLabel::AllowedCertificate,
        DecisionLabel::AllowedBrowser,
        DecisionLabel::AllowedPublic,
        DecisionLabel::Portal,
        DecisionLabel::Redirected,
        DecisionLabel::Unauthorized,
        DecisionLabel::DeniedRevoked,
        DecisionLabel::DeniedExpired,
        DecisionLabel::UnknownHost,
        DecisionLabel::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionLabel::AllowedIp => "allowed_ip",
            DecisionLabel::AllowedCertificate => "allowed_certificate",
            DecisionLabel::AllowedBrowser => "allowed_browser",
            DecisionLabel::AllowedPublic => "allowed_public",
            DecisionLabel::Portal => "portal",
            DecisionLabel::Redirected => "redirected",
            DecisionLabel::Unauthorized => "unauthorized",
            DecisionLabel::DeniedRevoked => "denied_revoked",
            DecisionLabel::DeniedExpired => "denied_expired",
            DecisionLabel::UnknownHost => "unknown_host",
            DecisionLabel::BadRequest => "bad_request",
        }
    }
}

/// How an admitted request was admitted: the value of `X-Certgate-Auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Ip,
    Certificate,
    Browser,
    Public,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Ip => "ip",
            AuthKind::Certificate => "certificate",
            AuthKind::Browser => "browser",
            AuthKind::Public => "public",
        }
    }
}

/// Who a credential names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub device: String,
    /// `X-Certgate-Mfa`: `yes`, `exempt` or `none`. Browser credentials carry how their holder
    /// signed in; device certificates do not (yet), so they say `none` rather than claim MFA.
    pub mfa: &'static str,
    /// When the credential was issued (the account-revocation cut-off compares this) and
    /// when it ends, unix seconds: a connection it upgraded is checked against them while
    /// open.
    pub issued_at: i64,
    pub not_after: i64,
}

/// Which allow list an entry is in: the policy files' or the organisation admins' layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowLayer {
    Policy,
    Admin,
}

/// The rule that admitted a request, for `policy explain` and the access log.
#[derive(Debug, Clone)]
pub enum Rule {
    PublicPath(String),
    /// The matching network; its source (file and line, or the admin's note) is in that layer.
    AllowList {
        net: ipnet::IpNet,
        layer: AllowLayer,
    },
    Certificate {
        serial: String,
    },
    Browser,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::PublicPath(path) => write!(f, "public_paths {path}"),
            Rule::AllowList {
                net,
                layer: AllowLayer::Policy,
            } => write!(f, "allow list {net}"),
            Rule::AllowList {
                net,
                layer: AllowLayer::Admin,
            } => write!(f, "admin allow list {net}"),
            Rule::Certificate { serial } => write!(f, "certificate serial {serial}"),
            Rule::Browser => f.write_str("browser credential"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission {
    pub org: Arc<Organisation>,
    pub auth: AuthKind,
    pub identity: Option<Identity>,
    pub rule: Rule,
    pub decision: DecisionLabel,
    /// A group (shared tablet) credential due for renewal: the claims of its fresh token,
    /// which the response carries as a new cookie.
    pub renew: Option<CredentialClaims>,
}

/// Group credentials are renewed once this much of their life is used (at most an hour, and a
/// quarter of the idle timeout), so they lapse `group_idle_timeout` after the last use, within
/// that margin.
pub fn renew_after(idle_timeout: std::time::Duration) -> i64 {
    (idle_timeout.as_secs() / 4).min(3600) as i64
}

/// The fresh claims of a group credential in use that is due for renewal. The sign-in time
/// (`issued_at`) is kept, so an account revocation ("not valid before") still refuses it; only
/// `not_after` moves.
fn renewal(
    claims: &CredentialClaims,
    idle_timeout: std::time::Duration,
    now: i64,
) -> Option<CredentialClaims> {
    let idle = i64::try_from(idle_timeout.as_secs()).unwrap_or(i64::MAX);
    let renewed_at = claims.not_after.saturating_sub(idle);
    (claims.class == CredentialClass::Group && now - renewed_at >= renew_after(idle_timeout)).then(
        || CredentialClaims {
            not_after: now.saturating_add(idle),
            ..claims.clone()
        },
    )
}

/// The outcome for one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// No organisation serves this host: a 421 page.
    UnknownHost,
    /// Refused before any decision (a header an application server could be misled by): 400.
    BadRequest(&'static str),
    /// `/.certgate/…`: forwarded to the portal. `org` is the organisation when the host has one.
    Portal {
        org: Arc<Organisation>,
    },
    Admit(Admission),
    /// Sign in first: 302 to the login page for a navigation, else 401.
    Login {
        org: Arc<Organisation>,
        redirect: bool,
        decision: DecisionLabel,
        /// Why a presented credential did not count, for the log.
        refused_credential: Option<&'static str>,
    },
}

impl Outcome {
    pub fn decision(&self) -> DecisionLabel {
        match self {
            Outcome::UnknownHost => DecisionLabel::UnknownHost,
            Outcome::BadRequest(_) => DecisionLabel::BadRequest,
            Outcome::Portal { .. } => DecisionLabel::Portal,
            Outcome::Admit(a) => a.decision,
            Outcome::Login { decision, .. } => *decision,
        }
    }

    pub fn org(&self) -> Option<&Arc<Organisation>> {
        match self {
            Outcome::UnknownHost | Outcome::BadRequest(_) => None,
            Outcome::Portal { org } | Outcome::Login { org, .. } => Some(org),
            Outcome::Admit(a) => Some(&a.org),
        }
    }
}

/// Why a presented credential did not admit; it still decides the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Revoked,
    Expired,
    Other(&'static str),
}

impl Refusal {
    fn label(self) -> Option<DecisionLabel> {
        match self {
            Refusal::Revoked => Some(DecisionLabel::DeniedRevoked),
            Refusal::Expired => Some(DecisionLabel::DeniedExpired),
            Refusal::Other(_) => None,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::Other(why) => why,
        }
    }
}

/// Decides one request. `now` is unix seconds.
pub fn decide(
    policies: &PolicySet,
    admin_allow: &AdminAllowLayers,
    revocations: &RevocationSet,
    tokens: &CredentialVerifier,
    request: &RequestFacts<'_>,
    now: i64,
) -> Outcome {
    let orgs = policies.organisations_for_host(request.host);
    let Some(first) = orgs.first() else {
        return Outcome::UnknownHost;
    };
    if request.path.starts_with(PORTAL_PREFIX) {
        return Outcome::Portal {
            org: Arc::clone(first),
        };
    }
    for org in orgs {
        if let Some(public) = org.access.public_path(request.path) {
            return Outcome::Admit(Admission {
                org: Arc::clone(org),
                auth: AuthKind::Public,
                identity: None,
                rule: Rule::PublicPath(public.to_string()),
                decision: DecisionLabel::AllowedPublic,
                renew: None,
            });
        }
    }

    let mut refusal = None;
    if let Some(certificate) = request.certificate {
        match admit_certificate(orgs, revocations, certificate, now) {
            Ok(admission) => return Outcome::Admit(admission),
            Err(why) => refusal = Some(why),
        }
    }
    if let Some(token) = request.browser_token {
        match admit_browser(orgs, revocations, tokens, token, now) {
            Ok(admission) => return Outcome::Admit(admission),
            // A revocation counts whichever credential it hit; otherwise a certificate's refusal
            // is the more telling one.
            Err(why) => {
                refusal = match refusal {
                    Some(first) if first == Refusal::Revoked || why != Refusal::Revoked => {
                        Some(first)
                    }
                    _ => Some(why),
                }
            }
        }
    }

    if let Some((org, entry, layer)) =
        most_specific_allow_entry(orgs, admin_allow, request.client_ip)
    {
        return Outcome::Admit(Admission {
            org: Arc::clone(org),
            auth: AuthKind::Ip,
            identity: None,
            rule: Rule::AllowList {
                net: entry.net,
                layer,
            },
            // A revoked credential counts as denied_revoked whatever the response; an expired
            // one on the office network is no denial.
            decision: if refusal == Some(Refusal::Revoked) {
                DecisionLabel::DeniedRevoked
            } else {
                DecisionLabel::AllowedIp
            },
            renew: None,
        });
    }
    let fallback = if request.navigation {
        DecisionLabel::Redirected
    } else {
        DecisionLabel::Unauthorized
    };
    Outcome::Login {
        org: Arc::clone(first),
        redirect: request.navigation,
        decision: refusal.and_then(Refusal::label).unwrap_or(fallback),
        refused_credential: refusal.map(Refusal::reason),
    }
}

fn admit_certificate(
    orgs: &[Arc<Organisation>],
    revocations: &RevocationSet,
    certificate: &PresentedCertificate,
    now: i64,
) -> Result<Admission, Refusal> {
    let claims = match (&certificate.status, &certificate.claims) {
        (CertificateStatus::Valid, Some(claims)) => claims,
        (CertificateStatus::Expired, _) => return Err(Refusal::Expired),
        _ => {
            return Err(Refusal::Other(
                "certificate not issued by this gateway's CA",
            ))
        }
    };
    // Checked per request too: a resumed TLS session skips the handshake's checks.
    if now >= claims.not_after.unix_timestamp() || now < claims.not_before.unix_timestamp() {
        return Err(Refusal::Expired);
    }
    let org = orgs
        .iter()
        .find(|org| org.id == claims.org)
        .ok_or(Refusal::Other("certificate of another organisation"))?;
    let issued_at = crate::tls::issued_at(claims);
    if revocations.is_revoked(
        &claims.org,
        &claims.user,
        &claims.device_id,
        Some(&certificate.serial_hex),
        issued_at,
    ) {
        return Err(Refusal::Revoked);
    }
    Ok(Admission {
        org: Arc::clone(org),
        auth: AuthKind::Certificate,
        identity: Some(Identity {
            user: claims.user.clone(),
            device: claims.device_id.clone(),
            mfa: "none",
            issued_at,
            not_after: claims.not_after.unix_timestamp(),
        }),
        rule: Rule::Certificate {
            serial: certificate.serial_hex.clone(),
        },
        decision: DecisionLabel::AllowedCertificate,
        renew: None,
    })
}

fn admit_browser(
    orgs: &[Arc<Organisation>],
    revocations: &RevocationSet,
    tokens: &CredentialVerifier,
    token: &str,
    now: i64,
) -> Result<Admission, Refusal> {
    let claims: CredentialClaims = tokens.verify(token, now).map_err(|e| match e {
        certgate_certs::TokenError::Expired => Refusal::Expired,
        _ => Refusal::Other("browser credential not valid"),
    })?;
    let org = orgs
        .iter()
        .find(|org| org.id == claims.org && org.access.browser_credentials)
        .ok_or(Refusal::Other("browser credential of another organisation"))?;
    if revocations.is_revoked(
        &claims.org,
        &claims.account,
        &claims.device_id,
        None,
        claims.issued_at,
    ) {
        return Err(Refusal::Revoked);
    }
    Ok(Admission {
        org: Arc::clone(org),
        auth: AuthKind::Browser,
        identity: Some(Identity {
            user: claims.account.clone(),
            device: claims.device_id.clone(),
            mfa: claims.mfa.as_str(),
            issued_at: claims.issued_at,
            not_after: claims.not_after,
        }),
        rule: Rule::Browser,
        decision: DecisionLabel::AllowedBrowser,
        renew: renewal(&claims, org.mfa.group_idle_timeout, now),
    })
}

/// Each organisation's allow list is its policy files' entries merged with its admins' layer.
/// On a host shared by several organisations the most specific matching entry names the
/// organisation; of equally specific ones a policy file's (the network admins' word) beats an
/// admin's, and otherwise the last organisation's wins.
fn most_specific_allow_entry<'a>(
    orgs: &'a [Arc<Organisation>],
    admin_allow: &'a AdminAllowLayers,
    ip: IpAddr,
) -> Option<(&'a Arc<Organisation>, &'a AllowEntry, AllowLayer)> {
    let ip = crate::client_ip::canonical(ip);
    let rank = |entry: &AllowEntry, layer| (entry.net.prefix_len(), layer == AllowLayer::Policy);
    let mut best: Option<(&Arc<Organisation>, &AllowEntry, AllowLayer)> = None;
    for org in orgs {
        let candidates = [
            org.access.allow.lookup(ip).map(|e| (e, AllowLayer::Policy)),
            admin_allow
                .lookup(&org.id, ip)
                .map(|e| (e, AllowLayer::Admin)),
        ];
        for (entry, layer) in candidates.into_iter().flatten() {
            if best.is_none_or(|(_, b, b_layer)| rank(entry, layer) >= rank(b, b_layer)) {
                best = Some((org, entry, layer));
            }
        }
    }
    best
}

/// Characters escaped in the `return_to` query value.
const RETURN_TO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'=')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `/.certgate/login?return_to=<path and query>`.
pub fn login_url(path_and_query: &str) -> String {
    format!(
        "{PORTAL_PREFIX}login?return_to={}",
        utf8_percent_encode(path_and_query, RETURN_TO)
    )
}

/// `certgate policy explain`: which organisation and rule would admit or redirect a request
/// from `ip` that presents no credential; `admin_allow` holds the admins' layers as far as they
/// could be read.
pub fn explain(
    policies: &PolicySet,
    admin_allow: &AdminAllowLayers,
    host: &str,
    ip: IpAddr,
    path: &str,
) -> String {
    let request = RequestFacts {
        host,
        path,
        navigation: true,
        client_ip: ip,
        certificate: None,
        browser_token: None,
    };
    let outcome = decide(
        policies,
        admin_allow,
        &RevocationSet::default(),
        &CredentialVerifier::new([]),
        &request,
        0,
    );
    match outcome {
        Outcome::UnknownHost => format!("unknown host: no organisation serves {host:?} (421)"),
        Outcome::BadRequest(why) => format!("refused: {why} (400)"),
        Outcome::Portal { org } => format!("portal: {path} is served by certgate's portal\norganisation: {}", org.id),
        Outcome::Admit(a) => {
            // The decision keeps only the network; its source is looked up for the answer.
            let ip = crate::client_ip::canonical(ip);
            let entry = match &a.rule {
                Rule::AllowList {
                    layer: AllowLayer::Policy,
                    ..
                } => a.org.access.allow.lookup(ip),
                Rule::AllowList {
                    layer: AllowLayer::Admin,
                    ..
                } => admin_allow.lookup(&a.org.id, ip),
                _ => None,
            };
            let rule = entry.map_or_else(|| a.rule.to_string(), ToString::to_string);
            format!("admitted: {rule}\norganisation: {} ({})", a.org.id, a.org.name)
        }
        Outcome::Login { org, .. } => format!(
            "redirected: 302 {}\norganisation: {} ({})\nno allow-list entry matches {ip} and no credential was presented",
            login_url(path),
            org.id,
            org.name
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn policies(files: &[(&str, &str)]) -> (tempfile::TempDir, PolicySet) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let set = PolicySet::load(dir.path()).unwrap();
        (dir, set)
    }

    fn org(id: &str, allow: &str) -> String {
        format!(
            "id = \"{id}\"\nname = \"{id}\"\nhosts = [\"app.test\"]\nupstreams = [\"http://127.0.0.1:9\"]\n\n[access]\nallow_ips = [\"{allow}\"]\npublic_paths = [\"/public\"]\n"
        )
    }

    fn request(ip: &str, path: &'static str, navigation: bool) -> RequestFacts<'static> {
        RequestFacts {
            host: "APP.test:8443",
            path,
            navigation,
            client_ip: ip.parse().unwrap(),
            certificate: None,
            browser_token: None,
        }
    }

    fn decide_plain(set: &PolicySet, facts: &RequestFacts<'_>) -> Outcome {
        decide(
            set,
            &AdminAllowLayers::default(),
            &RevocationSet::default(),
            &CredentialVerifier::new([]),
            facts,
            0,
        )
    }

    #[test]
    fn on_a_shared_host_the_most_specific_entry_names_the_organisation() {
        let (_dir, set) = policies(&[
            ("a.toml", &org("a", "10.0.0.0/8")),
            ("b.toml", &org("b", "10.1.0.0/16")),
        ]);
        for (ip, expected) in [
            ("10.1.2.3", "b"),
            ("10.2.0.1", "a"),
            ("::ffff:10.1.0.9", "b"),
        ] {
            match decide_plain(&set, &request(ip, "/", true)) {
                Outcome::Admit(a) => {
                    assert_eq!(a.org.id, expected, "{ip}");
                    assert_eq!(a.auth, AuthKind::Ip);
                }
                other => panic!("{ip}: {other:?}"),
            }
        }
        let outside = decide_plain(&set, &request("192.0.2.1", "/x", true));
        assert!(matches!(
            outside,
            Outcome::Login {
                redirect: true,
                decision: DecisionLabel::Redirected,
                ..
            }
        ));
        let api = decide_plain(&set, &request("192.0.2.1", "/x", false));
        assert!(matches!(
            api,
            Outcome::Login {
                redirect: false,
                decision: DecisionLabel::Unauthorized,
                ..
            }
        ));
    }

    #[test]
    fn the_admins_layer_is_merged_with_the_policy_files() {
        let (_dir, set) = policies(&[
            ("a.toml", &org("a", "10.0.0.0/8")),
            ("b.toml", &org("b", "10.1.0.0/16")),
        ]);
        let layers = AdminAllowLayers::from_lists(&[
            certgate_db::AdminAllowList {
                org: "a".into(),
                version: 2,
                entries: vec![record("10.1.2.0/24", "front desk"), record("192.0.2.7", "")],
            },
            certgate_db::AdminAllowList {
                org: "b".into(),
                version: 1,
                // As specific as a's policy entry: the policy file's entry wins the tie,
                // though b comes later.
                entries: vec![record("10.0.0.0/8", "")],
            },
        ]);
        let admitted = |ip: &str| match decide(
            &set,
            &layers,
            &RevocationSet::default(),
            &CredentialVerifier::new([]),
            &request(ip, "/", true),
            0,
        ) {
            Outcome::Admit(a) => Some((a.org.id.clone(), a.rule.to_string())),
            _ => None,
        };
        assert_eq!(
            admitted("10.1.2.3"),
            Some(("a".into(), "admin allow list 10.1.2.0/24".into()))
        );
        assert_eq!(
            admitted("10.1.3.3"),
            Some(("b".into(), "allow list 10.1.0.0/16".into()))
        );
        assert_eq!(
            admitted("10.9.0.1"),
            Some(("a".into(), "allow list 10.0.0.0/8".into()))
        );
        assert_eq!(
            admitted("::ffff:192.0.2.7"),
            Some(("a".into(), "admin allow list 192.0.2.7/32".into()))
        );
        assert_eq!(admitted("192.0.2.8"), None);
        assert_eq!(
            explain(&set, &layers, "app.test", "10.1.2.3".parse().unwrap(), "/"),
            "admitted: admin allow list (front desk) 10.1.2.0/24\norganisation: a (a)"
        );
        assert!(explain(
            &set,
            &AdminAllowLayers::default(),
            "app.test",
            "192.0.2.7".parse().unwrap(),
            "/"
        )
        .starts_with("redirected"));
    }

    fn record(network: &str, note: &str) -> certgate_db::AdminAllowRecord {
        certgate_db::AdminAllowRecord {
            network: network.into(),
            note: note.into(),
            added_by: "anna".into(),
            added_at: 0,
        }
    }

    #[test]
    fn portal_public_and_unknown_hosts() {
        let (_dir, set) = policies(&[("a.toml", &org("a", "10.0.0.0/8"))]);
        assert!(matches!(
            decide_plain(&set, &request("192.0.2.1", "/.certgate/login", true)),
            Outcome::Portal { .. }
        ));
        let public = decide_plain(&set, &request("192.0.2.1", "/public/a.css", true));
        assert_eq!(public.decision(), DecisionLabel::AllowedPublic);
        let unknown = RequestFacts {
            host: "other.test",
            ..request("10.0.0.1", "/", true)
        };
        assert!(matches!(decide_plain(&set, &unknown), Outcome::UnknownHost));
    }

    #[test]
    fn a_browser_credential_admits_and_its_revocation_is_counted() {
        let (_dir, set) = policies(&[("a.toml", &org("a", "10.0.0.0/8"))]);
        let key = certgate_certs::CredentialKey::generate();
        let tokens = CredentialVerifier::new([&key]);
        let claims = CredentialClaims {
            device_id: "dev-1".into(),
            org: "a".into(),
            account: "anna".into(),
            class: certgate_certs::CredentialClass::Trusted,
            mfa: certgate_certs::MfaStatus::Yes,
            issued_at: 1_000,
            not_after: 2_000,
        };
        let token = key.sign(&claims).unwrap();
        let facts = RequestFacts {
            browser_token: Some(&token),
            ..request("192.0.2.1", "/", true)
        };
        let admitted = decide(
            &set,
            &AdminAllowLayers::default(),
            &RevocationSet::default(),
            &tokens,
            &facts,
            1_500,
        );
        assert_eq!(admitted.decision(), DecisionLabel::AllowedBrowser);
        match &admitted {
            Outcome::Admit(a) => {
                assert_eq!(a.identity.as_ref().map(|i| i.mfa), Some("yes"));
                assert_eq!(a.renew, None, "only group credentials are renewed");
            }
            other => panic!("{other:?}"),
        }

        let expired = decide(
            &set,
            &AdminAllowLayers::default(),
            &RevocationSet::default(),
            &tokens,
            &facts,
            2_000,
        );
        assert_eq!(expired.decision(), DecisionLabel::DeniedExpired);

        let revoked = RevocationSet::from_records(&[certgate_db::Revocation {
            id: 1,
            org: "a".into(),
            kind: certgate_db::RevocationKind::Device,
            subject: "dev-1".into(),
            reason: "lost".into(),
            revoked_at: 1_200,
            drop_after: 9_999,
        }]);
        assert_eq!(
            decide(
                &set,
                &AdminAllowLayers::default(),
                &revoked,
                &tokens,
                &facts,
                1_500
            )
            .decision(),
            DecisionLabel::DeniedRevoked
        );
        // From the office network the request still gets in, but it is counted as revoked.
        let office = RequestFacts {
            browser_token: Some(&token),
            ..request("10.0.0.1", "/", true)
        };
        match decide(
            &set,
            &AdminAllowLayers::default(),
            &revoked,
            &tokens,
            &office,
            1_500,
        ) {
            Outcome::Admit(a) => {
                assert_eq!(a.auth, AuthKind::Ip);
                assert_eq!(a.decision, DecisionLabel::DeniedRevoked);
            }
            other => panic!("{other:?}"),
        }
        // An expired credential on the office network is an ordinary admission by address.
        match decide(
            &set,
            &AdminAllowLayers::default(),
            &RevocationSet::default(),
            &tokens,
            &office,
            2_000,
        ) {
            Outcome::Admit(a) => {
                assert_eq!(a.auth, AuthKind::Ip);
                assert_eq!(a.decision, DecisionLabel::AllowedIp);
            }
            other => panic!("{other:?}"),
        }
        // A revoked credential is counted as revoked even beside a certificate refused for
        // another reason (an expired one, from the same laptop).
        let expired_certificate = crate::tls::PresentedCertificate {
            status: crate::tls::CertificateStatus::Expired,
            claims: None,
            serial_hex: "0a".into(),
        };
        let both = RequestFacts {
            certificate: Some(&expired_certificate),
            browser_token: Some(&token),
            ..request("192.0.2.1", "/", true)
        };
        let counted = decide(
            &set,
            &AdminAllowLayers::default(),
            &revoked,
            &tokens,
            &both,
            1_500,
        );
        assert_eq!(counted.decision(), DecisionLabel::DeniedRevoked);
    }

    #[test]
    fn group_credentials_are_renewed_on_use_once_an_hour_old() {
        let (_dir, set) = policies(&[("a.toml", &org("a", "10.0.0.0/8"))]);
        let key = certgate_certs::CredentialKey::generate();
        let tokens = CredentialVerifier::new([&key]);
        let sixty_days = 60 * 86_400;
        let claims = CredentialClaims {
            device_id: "tablet-1".into(),
            org: "a".into(),
            account: "groep-zon".into(),
            class: CredentialClass::Group,
            mfa: certgate_certs::MfaStatus::Yes,
            issued_at: 1_000,
            not_after: 1_000 + sixty_days,
        };
        let token = key.sign(&claims).unwrap();
        let facts = RequestFacts {
            browser_token: Some(&token),
            ..request("192.0.2.1", "/", true)
        };
        let renew_at = |now| match decide(
            &set,
            &AdminAllowLayers::default(),
            &RevocationSet::default(),
            &tokens,
            &facts,
            now,
        ) {
            Outcome::Admit(a) => a.renew,
            other => panic!("{other:?}"),
        };
        assert_eq!(renew_at(1_000 + 1_800), None, "fresh enough");
        let renewed = renew_at(1_000 + 3_600).expect("renewed after an hour");
        assert_eq!(
            renewed.issued_at, 1_000,
            "the sign-in time stays, for revocations"
        );
        assert_eq!(renewed.not_after, 4_600 + sixty_days);
        // The renewed token is due again an hour after its renewal, not at once.
        assert_eq!(
            renewal(
                &renewed,
                std::time::Duration::from_secs(sixty_days as u64),
                4_700
            ),
            None
        );
        assert!(renewal(
            &renewed,
            std::time::Duration::from_secs(sixty_days as u64),
            8_200
        )
        .is_some());
        assert_eq!(
            (renewed.device_id.as_str(), renewed.class),
            ("tablet-1", CredentialClass::Group)
        );
        assert_eq!(
            renew_after(std::time::Duration::from_secs(40)),
            10,
            "short timeouts in tests"
        );
    }

    #[test]
    fn login_url_keeps_the_path_and_query() {
        assert_eq!(
            login_url("/rooster?week=12&x=a b"),
            "/.certgate/login?return_to=/rooster%3Fweek%3D12%26x%3Da%20b"
        );
    }
}
