//! Fixtures for the benchmarks: allow lists and policy sets of a chosen size, built the way the
//! gateway builds them at load time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use certgate_certs::{
    CertificateAuthority, CredentialClaims, CredentialClass, CredentialKey, CredentialVerifier,
    DeviceClaims, DeviceSubject, MfaStatus,
};
use certgate_gateway::admin_allowlist::AdminAllowLayers;
use certgate_gateway::admission::{decide, DecisionLabel, Outcome, RequestFacts};
use certgate_gateway::revocation::RevocationSet;
use certgate_gateway::tls::{CertificateStatus, PresentedCertificate};
use certgate_policies::{AllowEntry, EntrySource, IpAllowList, PolicySet};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;

/// `n` distinct IPv4 /24 networks (10.x.y.0/24, 11.x.y.0/24 …) and as many IPv6 /48s.
pub fn networks(n: usize) -> (Vec<IpNet>, Vec<IpNet>) {
    let v4 = (0..n)
        .map(|i| {
            let i = i as u32;
            let addr = Ipv4Addr::from((10 + (i >> 16)) << 24 | (i & 0xffff) << 8);
            IpNet::new(IpAddr::V4(addr), 24).unwrap()
        })
        .collect();
    let v6 = (0..n)
        .map(|i| {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, i as u16, (i >> 16) as u16, 0, 0, 0, 0);
            IpNet::new(IpAddr::V6(addr), 64).unwrap()
        })
        .collect();
    (v4, v6)
}

pub fn allow_list(nets: &[IpNet]) -> IpAllowList {
    IpAllowList::new(nets.iter().map(|net| AllowEntry {
        net: *net,
        source: EntrySource::Admin {
            note: "bench".into(),
        },
    }))
}

/// A policies directory with one organisation whose allow-list file has `n` networks.
pub fn policies_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (v4, _) = networks(n);
    let list: String = v4.iter().map(|net| format!("{net}\n")).collect();
    std::fs::write(dir.path().join("noord.allowlist"), list).unwrap();
    std::fs::write(
        dir.path().join("noord.toml"),
        "id = \"noord\"\nname = \"Noord\"\nhosts = [\"noord.example.org\"]\nupstreams = [\"http://127.0.0.1:8080\"]\n\n[access]\nallow_ips_files = [\"noord.allowlist\"]\npublic_paths = [\"/favicon.ico\"]\n",
    )
    .unwrap();
    dir
}

/// How a benchmarked request is admitted (or not).
#[derive(Clone, Copy, Debug)]
pub enum Admission {
    /// From a network on the organisation's 10 000-entry allow list.
    Ip,
    /// By a device certificate whose claims were parsed at the handshake.
    Certificate,
    /// By a browser credential cookie (an HMAC-SHA256 token).
    Browser,
    /// Not at all: a browser navigation redirected to the sign-in page.
    Redirected,
}

impl Admission {
    pub const ALL: [Admission; 4] = [
        Admission::Ip,
        Admission::Certificate,
        Admission::Browser,
        Admission::Redirected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Admission::Ip => "allowed_ip",
            Admission::Certificate => "allowed_certificate",
            Admission::Browser => "allowed_browser",
            Admission::Redirected => "redirected",
        }
    }

    /// The decision the gateway must reach.
    pub fn expected(self) -> DecisionLabel {
        match self {
            Admission::Ip => DecisionLabel::AllowedIp,
            Admission::Certificate => DecisionLabel::AllowedCertificate,
            Admission::Browser => DecisionLabel::AllowedBrowser,
            Admission::Redirected => DecisionLabel::Redirected,
        }
    }
}

/// Everything `admission::decide` reads, set up as the gateway has it for one organisation with
/// a 10 000-entry allow-list file, a device certificate from a fresh CA, and a browser credential.
pub struct AdmissionFixture {
    pub policies: PolicySet,
    pub revocations: RevocationSet,
    pub admin_allow: AdminAllowLayers,
    pub tokens: CredentialVerifier,
    /// What the handshake attached to the connection for the device certificate.
    pub certificate: PresentedCertificate,
    /// The certificate's chain as the client sends it (leaf, issuing CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// The CA's trust anchors (its honoured issuing CAs), as the gateway loads them.
    pub anchors: Vec<CertificateDer<'static>>,
    pub token: String,
    pub office: IpAddr,
    pub outside: IpAddr,
    pub now: i64,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl AdmissionFixture {
    pub fn new() -> Self {
        let dir = policies_dir(10_000);
        let policies = PolicySet::load(dir.path()).unwrap();
        let now = time::OffsetDateTime::now_utc();

        let ca_dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(&ca_dir.path().join("ca"), now).unwrap();
        let subject = DeviceSubject {
            org: "noord".into(),
            user: "anna@noord.example.org".into(),
            device_id: "tablet-1".into(),
        };
        let issued = ca
            .issue_device_key_pair(&subject, std::time::Duration::from_secs(3600), now)
            .unwrap();
        let claims = DeviceClaims::from_der(issued.cert_der.as_ref()).unwrap();
        let certificate = PresentedCertificate {
            status: CertificateStatus::Valid,
            serial_hex: claims.serial.to_string(),
            claims: Some(claims),
        };
        let chain = vec![issued.cert_der.clone(), ca.issuing_der().clone()];
        let anchors = ca.trust_anchor_ders().to_vec();

        let key = CredentialKey::generate();
        let tokens = CredentialVerifier::new([&key]);
        let token = key
            .sign(&CredentialClaims {
                device_id: "browser-1".into(),
                org: "noord".into(),
                account: "anna@noord.example.org".into(),
                class: CredentialClass::Trusted,
                mfa: MfaStatus::Yes,
                issued_at: now.unix_timestamp(),
                not_after: now.unix_timestamp() + 3600,
            })
            .unwrap();

        let (v4, _) = networks(10_000);
        AdmissionFixture {
            policies,
            revocations: RevocationSet::default(),
            admin_allow: AdminAllowLayers::default(),
            tokens,
            certificate,
            chain,
            anchors,
            token,
            office: v4[5_000].hosts().nth(3).unwrap(),
            outside: "203.0.113.9".parse().unwrap(),
            now: now.unix_timestamp(),
            _dirs: (dir, ca_dir),
        }
    }

    /// One request to the organisation's host, a browser navigation.
    pub fn facts(&self, admission: Admission) -> RequestFacts<'_> {
        let (client_ip, certificate, browser_token) = match admission {
            Admission::Ip => (self.office, None, None),
            Admission::Certificate => (self.outside, Some(&self.certificate), None),
            Admission::Browser => (self.outside, None, Some(self.token.as_str())),
            Admission::Redirected => (self.outside, None, None),
        };
        RequestFacts {
            host: "noord.example.org",
            path: "/rooster?week=12",
            navigation: true,
            client_ip,
            certificate,
            browser_token,
        }
    }

    pub fn decide(&self, facts: &RequestFacts<'_>) -> Outcome {
        decide(
            &self.policies,
            &self.admin_allow,
            &self.revocations,
            &self.tokens,
            facts,
            self.now,
        )
    }
}

impl Default for AdmissionFixture {
    fn default() -> Self {
        Self::new()
    }
}
