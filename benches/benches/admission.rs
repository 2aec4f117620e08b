//! The gateway's work per connection and per request: allow-list lookups at several sizes, the
//! client certificate's check and claims at the handshake, browser-credential verification, and
//! the whole admission decision for one request admitted by network, by certificate and by
//! browser credential. `benches/bin/admission_instructions.rs` counts the decision's instructions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use certgate_benches::{allow_list, networks, Admission, AdmissionFixture};
use certgate_certs::DeviceClaims;
use certgate_gateway::metrics::Metrics;
use certgate_gateway::tls::{ClientCertificateInspector, ClientTrust};
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
        let miss6: IpAddr = "2001:db8:ffff:ffff::9".parse().unwrap();
        group.bench_with_input(BenchmarkId::new("ipv4_hit", n), &hit4, |b, ip| {
            b.iter(|| list4.lookup(black_box(*ip)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("ipv4_miss", n), &miss4, |b, ip| {
            b.iter(|| list4.lookup(black_box(*ip)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("ipv6_hit", n), &hit6, |b, ip| {
            b.iter(|| list6.lookup(black_box(*ip)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("ipv6_miss", n), &miss6, |b, ip| {
            b.iter(|| list6.lookup(black_box(*ip)).is_some())
        });
    }
    group.finish();
}

fn per_connection(c: &mut Criterion) {
    let fixture = AdmissionFixture::new();
    let inspector = ClientCertificateInspector::new(
        Arc::new(ClientTrust::new(&fixture.anchors).unwrap()),
        Arc::new(Metrics::new().unwrap()),
        Arc::new(certgate_store::SystemClock),
    );
    let leaf = fixture.chain[0].clone();
    assert!(inspector.inspect(&fixture.chain).is_some());
    let mut group = c.benchmark_group("per_connection");
    group.bench_function("certificate_claims", |b| {
        b.iter(|| DeviceClaims::from_der(black_box(leaf.as_ref())).is_ok())
    });
    group.bench_function("certificate_chain_and_claims", |b| {
        b.iter(|| inspector.inspect(black_box(&fixture.chain)).is_some())
    });
    group.finish();
}

fn browser_credential(c: &mut Criterion) {
    let fixture = AdmissionFixture::new();
    assert!(fixture.tokens.verify(&fixture.token, fixture.now).is_ok());
    c.bench_function("browser_credential_verify", |b| {
        b.iter(|| {
            fixture
                .tokens
                .verify(black_box(&fixture.token), fixture.now)
                .is_ok()
        })
    });
}

fn admission_decision(c: &mut Criterion) {
    let fixture = AdmissionFixture::new();
    let mut group = c.benchmark_group("admission_decision");
    for admission in Admission::ALL {
        let facts = fixture.facts(admission);
        group.bench_function(admission.name(), |b| {
            b.iter(|| fixture.decide(black_box(&facts)))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    allow_list_lookup,
    per_connection,
    browser_credential,
    admission_decision
);
criterion_main!(benches);
