//! The gateway's per-request work: allow-list lookups at several sizes, and the whole admission
//! decision for one request admitted by network, by certificate and by browser credential.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;

use certgate_benches::{allow_list, networks, policies_dir};
use certgate_certs::{
    CertificateAuthority, CredentialClaims, CredentialClass, CredentialKey, CredentialVerifier,
    DeviceClaims, DeviceSubject,
};
use certgate_gateway::admin_allowlist::AdminAllowLayers;
use certgate_gateway::admission::{decide, RequestFacts};
use certgate_gateway::revocation::RevocationSet;
use certgate_gateway::tls::{CertificateStatus, PresentedCertificate};
use certgate_policies::PolicySet;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn allow_list_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("allow_list_lookup");
    for n in [10usize, 10_000, 100_000] {
        let (v4, v6) = networks(n);
        let list4 = allow_list(&v4);
        let list6 = allow_list(&v6);
        let hit4: IpAddr = v4[n / 2].hosts().nth(7).unwrap();
        let hit6: IpAddr = v6[n / 2].hosts().nth(7).unwrap();
        let miss4: IpAddr = "203.0.113.9".parse().unwrap();
        group.bench_with_input(BenchmarkId::new("ipv4_hit", n), &hit4, |b, ip| {
            b.iter(|| list4.lookup(black_box(*ip)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("ipv4_miss", n), &miss4, |b, ip| {
            b.iter(|| list4.lookup(black_box(*ip)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("ipv6_hit", n), &hit6, |b, ip| {
            b.iter(|| list6.lookup(black_box(*ip)).is_some())
        });
    }
    group.finish();
}

fn admission_decision(c: &mut Criterion) {
    let dir = policies_dir(10_000);
    let policies = PolicySet::load(dir.path()).unwrap();
    let revocations = RevocationSet::default();
    let admin_allow = AdminAllowLayers::default();
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

    let key = CredentialKey::generate();
    let tokens = CredentialVerifier::new([&key]);
    let token = key
        .sign(&CredentialClaims {
            device_id: "browser-1".into(),
            org: "noord".into(),
            account: "anna@noord.example.org".into(),
            class: CredentialClass::Trusted,
            mfa: certgate_certs::MfaStatus::Yes,
            issued_at: now.unix_timestamp(),
            not_after: now.unix_timestamp() + 3600,
        })
        .unwrap();

    let (v4, _) = networks(10_000);
    let office: IpAddr = v4[5_000].hosts().nth(3).unwrap();
    let outside: IpAddr = "203.0.113.9".parse().unwrap();
    let facts = |ip, certificate, browser_token| RequestFacts {
        host: "noord.example.org",
        path: "/rooster?week=12",
        navigation: true,
        client_ip: ip,
        certificate,
        browser_token,
    };
    let t = now.unix_timestamp();
    let run = |facts: &RequestFacts<'_>| {
        decide(
            &policies,
            &admin_allow,
            &revocations,
            &tokens,
            black_box(facts),
            t,
        )
    };
    let mut group = c.benchmark_group("admission_decision");
    let by_ip = facts(office, None, None);
    group.bench_function("allowed_ip", |b| b.iter(|| run(&by_ip)));
    let by_cert = facts(outside, Some(&certificate), None);
    group.bench_function("allowed_certificate", |b| b.iter(|| run(&by_cert)));
    let by_cookie = facts(outside, None, Some(token.as_str()));
    group.bench_function("allowed_browser", |b| b.iter(|| run(&by_cookie)));
    let redirected = facts(outside, None, None);
    group.bench_function("redirected", |b| b.iter(|| run(&redirected)));
    group.finish();
}

criterion_group!(benches, allow_list_lookup, admission_decision);
criterion_main!(benches);
