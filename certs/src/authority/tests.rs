#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rcgen::KeyPair;
use time::macros::datetime;

use super::*;
use crate::claims::DeviceClaims;
use crate::csr::tests::openssl_request;
use crate::error::{DeviceCertificateProblem, SubjectError, SubjectField};

const HOUR: Duration = Duration::from_secs(3600);

/// Runs openssl in `dir`; returns whether it succeeded and everything it printed.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(&dir.path().join("ca"), OffsetDateTime::now_utc()).unwrap();
    (dir, ca)
}

fn subject() -> DeviceSubject {
    DeviceSubject {
        org: "acme-care".to_owned(),
        user: "Zoë de Vries".to_owned(),
        device_id: claims::DeviceId::generate().into_string(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_four_files_with_private_keys() {
    let (tmp, ca) = new_ca();
    let dir = tmp.path().join("ca");
    assert_eq!(mode(&dir.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(ISSUING_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(ROOT_CERT_FILE)) & !0o644, 0);
    assert_eq!(mode(&dir.join(ISSUING_CERT_FILE)) & !0o644, 0);
    assert_eq!(
        fs::read_to_string(dir.join(ROOT_CERT_FILE)).unwrap(),
        ca.root_pem()
    );
    assert_eq!(
        fs::read_to_string(dir.join(ISSUING_CERT_FILE)).unwrap(),
        ca.issuing_pem()
    );
    assert!(fs::read_to_string(dir.join(ROOT_KEY_FILE))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn second_init_refuses_and_changes_nothing() {
    let (tmp, _ca) = new_ca();
    let dir = tmp.path().join("ca");
    let before: Vec<_> = CaPaths::new(&dir)
        .all()
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    let err = CertificateAuthority::init(&dir, OffsetDateTime::now_utc()).unwrap_err();
    assert_eq!(
        err,
        CertificateError::AlreadyExists {
            path: dir.join(ROOT_CERT_FILE)
        }
    );
    assert!(err.to_string().contains("root.pem"), "{err}");
    let after: Vec<_> = CaPaths::new(&dir)
        .all()
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after);

    // Any one of the files is enough to refuse.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join(ISSUING_KEY_FILE), "x").unwrap();
    assert_eq!(
        CertificateAuthority::init(&other, OffsetDateTime::now_utc()).unwrap_err(),
        CertificateError::AlreadyExists {
            path: other.join(ISSUING_KEY_FILE)
        }
    );
    assert!(!other.join(ROOT_CERT_FILE).exists());
}

#[test]
fn open_round_trips_without_the_root_key() {
    let (tmp, ca) = new_ca();
    let dir = tmp.path().join("ca");
    // The root key may be moved offline after init.
    fs::remove_file(dir.join(ROOT_KEY_FILE)).unwrap();
    let opened = CertificateAuthority::open(&dir).unwrap();
    assert_eq!(opened.root_der(), ca.root_der());
    assert_eq!(opened.issuing_der(), ca.issuing_der());
    assert_eq!(opened.root_pem(), ca.root_pem());
    assert_eq!(opened.issuing_pem(), ca.issuing_pem());
    assert_eq!(opened.chain_pem(), ca.chain_pem());
    assert_eq!(opened.issuing_not_after(), ca.issuing_not_after());
    assert_eq!(
        opened.trust_anchor_ders(),
        std::slice::from_ref(ca.issuing_der())
    );

    // A certificate from the reopened CA chains like one from the original.
    let issued = opened
        .issue_device_key_pair(&subject(), HOUR, OffsetDateTime::now_utc())
        .unwrap();
    fs::write(tmp.path().join("dev.pem"), &issued.cert_pem).unwrap();
    let (ok, out) = openssl(
        tmp.path(),
        &[
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/issuing.pem",
            "dev.pem",
        ],
    );
    assert!(ok, "{out}");
}

#[test]
fn ca_certificates_have_the_right_shape() {
    let now = datetime!(2025-03-01 12:00:00.123 UTC);
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::init(dir.path(), now).unwrap();
    assert_eq!(
        ca.issuing_not_after(),
        datetime!(2025-03-01 12:00:00 UTC) + ISSUING_LIFETIME
    );
    let (ok, root) = openssl(dir.path(), &["x509", "-in", "root.pem", "-noout", "-text"]);
    assert!(ok, "{root}");
    assert!(root.contains("Subject: CN = certgate root CA"), "{root}");
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    assert!(root.contains("ASN1 OID: prime256v1"), "{root}");
    assert!(
        root.contains("Not After : Feb 24 12:00:00 2045 GMT"),
        "{root}"
    );
    let (ok, issuing) = openssl(
        dir.path(),
        &["x509", "-in", "issuing.pem", "-noout", "-text"],
    );
    assert!(ok, "{issuing}");
    assert!(
        issuing.contains("Issuer: CN = certgate root CA"),
        "{issuing}"
    );
    assert!(
        issuing.contains("Subject: CN = certgate issuing CA"),
        "{issuing}"
    );
    assert!(issuing.contains("CA:TRUE, pathlen:0"), "{issuing}");
    assert!(issuing.contains("Certificate Sign, CRL Sign"), "{issuing}");
    assert!(
        issuing.contains("Not Before: Mar  1 11:55:00 2025 GMT"),
        "{issuing}"
    );
}

#[test]
fn device_certificate_verifies_and_reads_back() {
    let (tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    let subject = subject();
    let issued = ca.issue_device_key_pair(&subject, 12 * HOUR, now).unwrap();
    fs::write(tmp.path().join("dev.pem"), &issued.cert_pem).unwrap();
    fs::write(tmp.path().join("dev.key"), &issued.key_pem).unwrap();

    let (ok, out) = openssl(
        tmp.path(),
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/issuing.pem",
            "dev.pem",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("dev.pem: OK"), "{out}");

    let (ok, text) = openssl(tmp.path(), &["x509", "-in", "dev.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("Subject: CN = Zo"), "{text}");
    assert!(text.contains("O = acme-care"), "{text}");
    assert!(text.contains("Issuer: CN = certgate issuing CA"), "{text}");
    let urn = format!("URI:urn:certgate:acme-care:{}", subject.device_id);
    assert!(text.contains(&urn), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");

    // notBefore is five minutes before issue.
    let (ok, dates) = openssl(
        tmp.path(),
        &[
            "x509",
            "-in",
            "dev.pem",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ],
    );
    assert!(ok, "{dates}");
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let start = dates
        .lines()
        .find_map(|l| l.strip_prefix("notBefore="))
        .unwrap();
    let start = time::PrimitiveDateTime::parse(start, &format)
        .unwrap()
        .assume_utc();
    let now_s = whole_seconds_utc(now);
    assert_eq!(start, now_s - time::Duration::minutes(5));
    let end = dates
        .lines()
        .find_map(|l| l.strip_prefix("notAfter="))
        .unwrap();
    let end = time::PrimitiveDateTime::parse(end, &format)
        .unwrap()
        .assume_utc();
    assert_eq!(end, now_s + time::Duration::hours(12));

    // The key is the certificate's.
    let (ok, out) = openssl(tmp.path(), &["x509", "-in", "dev.pem", "-noout", "-pubkey"]);
    assert!(ok, "{out}");
    let (ok, from_key) = openssl(tmp.path(), &["pkey", "-in", "dev.key", "-pubout"]);
    assert!(ok, "{from_key}");
    assert_eq!(out, from_key);

    let claims = DeviceClaims::from_der(&issued.cert_der).unwrap();
    assert_eq!(
        claims,
        DeviceClaims {
            org: subject.org.clone(),
            user: subject.user.clone(),
            device_id: subject.device_id.clone(),
            serial: issued.serial,
            not_before: issued.not_before,
            not_after: issued.not_after,
        }
    );
    assert_eq!(claims.not_before, start);
    assert_eq!(claims.not_after, end);

    // The serial we report is the one openssl prints.
    let (ok, serial) = openssl(tmp.path(), &["x509", "-in", "dev.pem", "-noout", "-serial"]);
    assert!(ok, "{serial}");
    let printed: Serial = serial.trim().trim_start_matches("serial=").parse().unwrap();
    assert_eq!(printed, issued.serial);
    assert!(issued.serial.as_bytes().len() >= 14);
}

#[test]
fn device_certificate_for_a_key_held_elsewhere() {
    let (_tmp, ca) = new_ca();
    let key = KeyPair::generate().unwrap();
    let subject = subject();
    let issued = ca
        .issue_device_certificate(&subject, &key, HOUR, OffsetDateTime::now_utc())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.as_ref(),
        key.der_bytes()
    );
    assert_eq!(
        DeviceClaims::from_der(&issued.cert_der).unwrap().device_id,
        subject.device_id
    );
    assert!(issued.cert_pem.ends_with(ca.issuing_pem()));
}

#[test]
fn serials_are_random() {
    let (_tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    let a = ca.issue_device_key_pair(&subject(), HOUR, now).unwrap();
    let b = ca.issue_device_key_pair(&subject(), HOUR, now).unwrap();
    assert_ne!(a.serial, b.serial);
}

#[test]
fn bad_subjects_are_refused() {
    let (_tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    let issue = |org: &str, user: &str, device_id: &str| {
        let subject = DeviceSubject {
            org: org.to_owned(),
            user: user.to_owned(),
            device_id: device_id.to_owned(),
        };
        ca.issue_device_key_pair(&subject, HOUR, now).map(|_| ())
    };
    assert_eq!(issue("acme", &"x".repeat(64), "d1"), Ok(()));
    assert_eq!(
        issue("acme", &"x".repeat(65), "d1"),
        Err(CertificateError::InvalidSubject(SubjectError::TooLong {
            field: SubjectField::User,
            max: 64
        }))
    );
    assert_eq!(
        issue("", "anna", "d1"),
        Err(CertificateError::InvalidSubject(SubjectError::Empty {
            field: SubjectField::Organisation
        }))
    );
    assert_eq!(
        issue("acme", "", "d1"),
        Err(CertificateError::InvalidSubject(SubjectError::Empty {
            field: SubjectField::User
        }))
    );
    assert_eq!(
        issue("acme:evil", "anna", "d1"),
        Err(CertificateError::InvalidSubject(
            SubjectError::InvalidCharacter {
                field: SubjectField::Organisation
            }
        ))
    );
    assert_eq!(
        issue("acme", "anna", "d:1"),
        Err(CertificateError::InvalidSubject(
            SubjectError::InvalidCharacter {
                field: SubjectField::DeviceId
            }
        ))
    );
}

#[test]
fn lifetimes_are_checked_and_capped_at_the_issuer() {
    let (_tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        ca.issue_device_key_pair(&subject(), Duration::ZERO, now)
            .unwrap_err(),
        CertificateError::InvalidLifetime
    );
    assert_eq!(
        ca.issue_device_key_pair(&subject(), Duration::MAX, now)
            .unwrap_err(),
        CertificateError::InvalidLifetime
    );
    // Longer than revocations are kept: refused, not shortened without a word.
    assert_eq!(
        ca.issue_device_key_pair(&subject(), Duration::from_secs(10 * 365 * 86400), now)
            .unwrap_err(),
        CertificateError::InvalidLifetime
    );
    let near_end = ca.issuing_not_after() - time::Duration::days(10);
    let long = ca
        .issue_device_key_pair(&subject(), Duration::from_secs(30 * 86400), near_end)
        .unwrap();
    assert_eq!(long.not_after, ca.issuing_not_after());
    assert_eq!(
        DeviceClaims::from_der(&long.cert_der).unwrap().not_after,
        ca.issuing_not_after()
    );
    let late = ca.issuing_not_after() + time::Duration::seconds(1);
    assert_eq!(
        ca.issue_device_key_pair(&subject(), HOUR, late)
            .unwrap_err(),
        CertificateError::IssuerExpired {
            not_after: ca.issuing_not_after()
        }
    );
}

#[test]
fn foreign_certificates_have_no_device_claims() {
    // Self-signed, with a DNS SAN only.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    let foreign = params.self_signed(&key).unwrap();
    let err = DeviceClaims::from_der(foreign.der()).unwrap_err();
    assert_eq!(
        err,
        CertificateError::NotDeviceCertificate(DeviceCertificateProblem::MissingDeviceUri)
    );
    assert!(err.to_string().contains("urn:certgate:"), "{err}");

    // A URN naming another organisation than the subject.
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    params.subject_alt_names = vec![SanType::URI("urn:certgate:other:d1".try_into().unwrap())];
    let mismatched = params.self_signed(&key).unwrap();
    assert_eq!(
        DeviceClaims::from_der(mismatched.der()).unwrap_err(),
        CertificateError::NotDeviceCertificate(DeviceCertificateProblem::OrganisationMismatch {
            subject_org: "acme".to_owned(),
            uri_org: "other".to_owned()
        })
    );

    // No organisation at all.
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI("urn:certgate:acme:d1".try_into().unwrap())];
    let no_org = params.self_signed(&key).unwrap();
    assert_eq!(
        DeviceClaims::from_der(no_org.der()).unwrap_err(),
        CertificateError::NotDeviceCertificate(DeviceCertificateProblem::Organisation)
    );

    // A URN with an extra colon is ambiguous and refused.
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    params.subject_alt_names = vec![SanType::URI("urn:certgate:acme:d:1".try_into().unwrap())];
    let ambiguous = params.self_signed(&key).unwrap();
    assert_eq!(
        DeviceClaims::from_der(ambiguous.der()).unwrap_err(),
        CertificateError::NotDeviceCertificate(DeviceCertificateProblem::MalformedDeviceUri)
    );
}

#[test]
fn server_certificate_verifies_for_its_names() {
    let (tmp, ca) = new_ca();
    let names = vec!["app.example.org".to_owned(), "www.example.org".to_owned()];
    let ips = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let issued = ca
        .issue_server_certificate(&names, &ips, 24 * HOUR, OffsetDateTime::now_utc())
        .unwrap();
    fs::write(tmp.path().join("srv.pem"), &issued.cert_pem).unwrap();
    for check in [
        ["-verify_hostname", "app.example.org"],
        ["-verify_hostname", "www.example.org"],
        ["-verify_ip", "127.0.0.1"],
    ] {
        let (ok, out) = openssl(
            tmp.path(),
            &[
                "verify",
                "-purpose",
                "sslserver",
                check[0],
                check[1],
                "-CAfile",
                "ca/root.pem",
                "-untrusted",
                "ca/issuing.pem",
                "srv.pem",
            ],
        );
        assert!(ok, "{check:?}: {out}");
    }
    let (ok, _) = openssl(
        tmp.path(),
        &[
            "verify",
            "-verify_hostname",
            "evil.example.org",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/issuing.pem",
            "srv.pem",
        ],
    );
    assert!(!ok);
    let (ok, text) = openssl(tmp.path(), &["x509", "-in", "srv.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("Subject: CN = app.example.org"), "{text}");
    assert!(
        text.contains("DNS:app.example.org, DNS:www.example.org, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");

    assert_eq!(
        ca.issue_server_certificate(&[], &[], HOUR, OffsetDateTime::now_utc())
            .unwrap_err(),
        CertificateError::NoServerNames
    );
    assert_eq!(
        ca.issue_server_certificate(
            &["bad name".to_owned()],
            &[],
            HOUR,
            OffsetDateTime::now_utc()
        )
        .unwrap_err(),
        CertificateError::InvalidDnsName {
            name: "bad name".to_owned()
        }
    );
}

#[test]
fn open_explains_missing_and_garbled_files() {
    let (tmp, _ca) = new_ca();
    let dir = tmp.path().join("ca");
    let key_path = dir.join(ISSUING_KEY_FILE);
    let key = fs::read_to_string(&key_path).unwrap();

    fs::write(
        &key_path,
        key.replace('A', "B").replace("PRIVATE", "PUBLIC"),
    )
    .unwrap();
    let err = CertificateAuthority::open(&dir).unwrap_err();
    assert_eq!(
        err,
        CertificateError::InvalidFile {
            path: key_path.clone(),
            problem: FileProblem::InvalidPrivateKey
        }
    );
    // The message names the file, never what is in it.
    let body: String = key.lines().nth(1).unwrap().to_owned();
    assert!(!err.to_string().contains(&body[..16]), "{err}");
    assert!(!format!("{err:?}").contains(&body[..16]), "{err:?}");

    // The root key is a valid key, but not the issuing CA's.
    fs::remove_file(&key_path).unwrap();
    fs::copy(dir.join(ROOT_KEY_FILE), &key_path).unwrap();
    assert_eq!(
        CertificateAuthority::open(&dir).unwrap_err(),
        CertificateError::InvalidFile {
            path: key_path.clone(),
            problem: FileProblem::KeyDoesNotMatchCertificate
        }
    );

    fs::remove_file(&key_path).unwrap();
    assert_eq!(
        CertificateAuthority::open(&dir).unwrap_err(),
        CertificateError::MissingFile { path: key_path }
    );

    let root_path = dir.join(ROOT_CERT_FILE);
    fs::write(&root_path, "garbage").unwrap();
    assert_eq!(
        CertificateAuthority::open(&dir).unwrap_err(),
        CertificateError::InvalidFile {
            path: root_path,
            problem: FileProblem::NoCertificate
        }
    );
}

#[test]
fn open_refuses_an_issuing_ca_from_another_root() {
    let (tmp, _ca) = new_ca();
    let dir = tmp.path().join("ca");
    let other = tmp.path().join("other");
    CertificateAuthority::init(&other, OffsetDateTime::now_utc()).unwrap();
    fs::remove_file(dir.join(ROOT_CERT_FILE)).unwrap();
    fs::copy(other.join(ROOT_CERT_FILE), dir.join(ROOT_CERT_FILE)).unwrap();
    assert_eq!(
        CertificateAuthority::open(&dir).unwrap_err(),
        CertificateError::InvalidFile {
            path: dir.join(ISSUING_CERT_FILE),
            problem: FileProblem::NotSignedByRoot
        }
    );
}

fn p256_request() -> CertificateRequest {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    CertificateRequest::from_der(csr.der()).unwrap()
}

#[test]
fn certificates_for_requests_name_our_subject_only() {
    let (tmp, ca) = new_ca();
    let dir = tmp.path();
    let now = OffsetDateTime::now_utc();
    let not_after = now + time::Duration::hours(12);
    // Whatever the request asks for: another name, other SANs, a CA certificate, serverAuth.
    let asks_for_more = [
        "-subj",
        "/CN=someone-else/O=other-org",
        "-addext",
        "subjectAltName=DNS:evil.example.org,URI:urn:certgate:other-org:stolen",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ];
    for (name, key_args) in [
        (
            "p256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
        ("ed25519", &["-newkey", "ed25519"][..]),
        ("rsa2048", &["-newkey", "rsa:2048"][..]),
    ] {
        let pem = openssl_request(dir, name, &[key_args, &asks_for_more[..]].concat());
        let request = CertificateRequest::from_pem(&pem).unwrap();
        let subject = subject();
        let issued = ca
            .issue_for_request(&subject, &request, not_after, now)
            .unwrap();
        let cert = format!("{name}.pem");
        fs::write(dir.join(&cert), &issued.cert_pem).unwrap();

        // The P-256 issuing CA signs every accepted key type, and the chain verifies.
        let (ok, out) = openssl(
            dir,
            &[
                "verify",
                "-purpose",
                "sslclient",
                "-CAfile",
                "ca/root.pem",
                "-untrusted",
                "ca/issuing.pem",
                &cert,
            ],
        );
        assert!(ok, "{name}: {out}");

        assert_eq!(
            DeviceClaims::from_der(&issued.cert_der).unwrap(),
            DeviceClaims {
                org: subject.org.clone(),
                user: subject.user.clone(),
                device_id: subject.device_id.clone(),
                serial: issued.serial,
                not_before: whole_seconds_utc(now) - CLOCK_SKEW_ALLOWANCE,
                not_after: whole_seconds_utc(not_after),
            },
            "{name}"
        );
        let (ok, text) = openssl(dir, &["x509", "-in", &cert, "-noout", "-text"]);
        assert!(ok, "{text}");
        assert!(text.contains("Subject: CN = Zo"), "{name}: {text}");
        assert!(text.contains("O = acme-care"), "{name}: {text}");
        let urn = format!("URI:urn:certgate:acme-care:{}", subject.device_id);
        assert!(text.contains(&urn), "{name}: {text}");
        for asked in ["someone-else", "other-org", "evil.example.org", "stolen"] {
            assert!(!text.contains(asked), "{name}: {asked}: {text}");
        }
        assert!(text.contains("CA:FALSE"), "{name}: {text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(!text.contains("TLS Web Server Authentication"), "{text}");

        // The certificate carries the requester's key.
        let (ok, from_cert) = openssl(dir, &["x509", "-in", &cert, "-noout", "-pubkey"]);
        assert!(ok, "{from_cert}");
        let (ok, from_key) = openssl(dir, &["pkey", "-in", &format!("{name}.key"), "-pubout"]);
        assert!(ok, "{from_key}");
        assert_eq!(from_cert, from_key, "{name}");
        let (_, parsed) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
        assert_eq!(parsed.public_key().raw, request.spki_der(), "{name}");
        assert!(issued.cert_pem.ends_with(ca.issuing_pem()));
    }
}

#[test]
fn requests_get_the_end_they_are_given_never_more() {
    let (_tmp, ca) = new_ca();
    let request = p256_request();
    let start = whole_seconds_utc(OffsetDateTime::now_utc());
    let now = start + time::Duration::milliseconds(250);

    // Fractions of a second are dropped, never rounded up.
    let asked = start + time::Duration::hours(1) + time::Duration::milliseconds(900);
    let issued = ca
        .issue_for_request(&subject(), &request, asked, now)
        .unwrap();
    assert_eq!(issued.not_after, start + time::Duration::hours(1));
    assert_eq!(issued.not_before, start - CLOCK_SKEW_ALLOWANCE);
    assert_eq!(
        DeviceClaims::from_der(&issued.cert_der).unwrap().not_after,
        issued.not_after
    );

    // An end in another time zone is the same instant.
    let offset = time::UtcOffset::from_hms(2, 0, 0).unwrap();
    let issued = ca
        .issue_for_request(
            &subject(),
            &request,
            (start + time::Duration::hours(3)).to_offset(offset),
            now,
        )
        .unwrap();
    assert_eq!(issued.not_after, start + time::Duration::hours(3));

    // Capped at the issuing CA's end.
    let near_end = ca.issuing_not_after() - time::Duration::days(10);
    let issued = ca
        .issue_for_request(
            &subject(),
            &request,
            near_end + time::Duration::days(365),
            near_end,
        )
        .unwrap();
    assert_eq!(issued.not_after, ca.issuing_not_after());

    // No further away than revocations are kept.
    let longest = start + certgate_policies::MAX_CREDENTIAL_LIFETIME;
    let issued = ca
        .issue_for_request(&subject(), &request, longest, now)
        .unwrap();
    assert_eq!(issued.not_after, longest);
    assert_eq!(
        ca.issue_for_request(
            &subject(),
            &request,
            longest + time::Duration::seconds(1),
            now
        ),
        Err(CertificateError::InvalidLifetime)
    );

    // An end that is not after now is refused.
    for end in [
        now,
        start,
        start + time::Duration::milliseconds(999),
        now - time::Duration::seconds(1),
    ] {
        assert_eq!(
            ca.issue_for_request(&subject(), &request, end, now),
            Err(CertificateError::InvalidLifetime),
            "{end}"
        );
    }
    let late = ca.issuing_not_after();
    assert_eq!(
        ca.issue_for_request(&subject(), &request, late + HOUR, late),
        Err(CertificateError::IssuerExpired {
            not_after: ca.issuing_not_after()
        })
    );

    let bad = DeviceSubject {
        device_id: "Not:Valid".to_owned(),
        ..subject()
    };
    assert_eq!(
        ca.issue_for_request(&bad, &request, now + HOUR, now),
        Err(CertificateError::InvalidSubject(
            SubjectError::InvalidCharacter {
                field: SubjectField::DeviceId
            }
        ))
    );
}

#[test]
fn a_rotated_issuing_ca_signs_while_the_previous_is_honoured_until_retired() {
    let (tmp, old) = new_ca();
    let dir = tmp.path().join("ca");
    let now = OffsetDateTime::now_utc();
    let rotated = CertificateAuthority::rotate_issuing(&dir, now).unwrap();
    assert_eq!(rotated.root_der(), old.root_der(), "the same root");
    assert_ne!(rotated.issuing_der(), old.issuing_der());
    assert_eq!(
        rotated.trust_anchor_ders(),
        [rotated.issuing_der().clone(), old.issuing_der().clone()]
    );
    let mode = |file: &str| fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode(ISSUING_KEY_FILE), mode(ISSUING_CERT_FILE)),
        (0o600, 0o644)
    );

    // New certificates come from the new issuing CA and chain to the same root in openssl.
    let issued = rotated
        .issue_device_key_pair(&subject(), HOUR, now)
        .unwrap();
    assert!(issued.cert_pem.ends_with(rotated.issuing_pem()));
    fs::write(tmp.path().join("new.pem"), &issued.cert_pem).unwrap();
    fs::write(tmp.path().join("issuing-new.pem"), rotated.issuing_pem()).unwrap();
    let (ok, out) = openssl(
        tmp.path(),
        &[
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "issuing-new.pem",
            "new.pem",
        ],
    );
    assert!(ok, "{out}");

    let retired = CertificateAuthority::retire_previous_issuing(&dir).unwrap();
    assert_eq!(retired.len(), 1);
    let reopened = CertificateAuthority::open(&dir).unwrap();
    assert_eq!(
        reopened.trust_anchor_ders(),
        std::slice::from_ref(rotated.issuing_der())
    );
    assert!(CertificateAuthority::retire_previous_issuing(&dir)
        .unwrap()
        .is_empty());
}

#[test]
fn rotating_needs_the_root_key_and_changes_nothing_without_it() {
    let (tmp, _) = new_ca();
    let dir = tmp.path().join("ca");
    fs::remove_file(dir.join(ROOT_KEY_FILE)).unwrap();
    let before = fs::read(dir.join(ISSUING_CERT_FILE)).unwrap();
    let key_before = fs::read(dir.join(ISSUING_KEY_FILE)).unwrap();
    assert_eq!(
        CertificateAuthority::rotate_issuing(&dir, OffsetDateTime::now_utc()).unwrap_err(),
        CertificateError::MissingFile {
            path: dir.join(ROOT_KEY_FILE)
        }
    );
    assert_eq!(fs::read(dir.join(ISSUING_CERT_FILE)).unwrap(), before);
    assert_eq!(fs::read(dir.join(ISSUING_KEY_FILE)).unwrap(), key_before);
}

#[test]
fn halfway_through_a_rollover_the_new_ca_is_honoured_and_the_old_one_still_signs() {
    let (tmp, old) = new_ca();
    let dir = tmp.path().join("ca");
    let old_key = fs::read(dir.join(ISSUING_KEY_FILE)).unwrap();
    let rotated = CertificateAuthority::rotate_issuing(&dir, OffsetDateTime::now_utc()).unwrap();
    // As a reader finds it between the renames, or a crash leaves it: new list, old key.
    fs::remove_file(dir.join(ISSUING_KEY_FILE)).unwrap();
    fs::write(dir.join(ISSUING_KEY_FILE), old_key).unwrap();
    let halfway = CertificateAuthority::open(&dir).unwrap();
    assert_eq!(halfway.issuing_der(), old.issuing_der());
    assert_eq!(halfway.trust_anchor_ders(), rotated.trust_anchor_ders());
    // Retiring then keeps the one that signs.
    let retired = CertificateAuthority::retire_previous_issuing(&dir).unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(
        CertificateAuthority::open(&dir)
            .unwrap()
            .trust_anchor_ders(),
        std::slice::from_ref(old.issuing_der())
    );
}
