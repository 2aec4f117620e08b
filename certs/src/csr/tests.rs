#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use rand::{Rng, RngCore};
use rcgen::{CertificateParams, KeyPair};

use super::*;

/// Has openssl write `<name>.key` and `<name>.csr` (PEM) in `dir`, with `args` choosing the key
/// (`-newkey …` or `-key …`) and anything else; returns the request's PEM.
pub(crate) fn openssl_request(dir: &Path, name: &str, args: &[&str]) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let subject: &[&str] = if args.contains(&"-subj") {
        &[]
    } else {
        &["-subj", "/CN=device"]
    };
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-keyout", &key, "-out", &csr])
        .args(subject)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl req {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

fn der_of(pem: &str) -> Vec<u8> {
    pem::parse(pem).unwrap().into_contents()
}

/// The SubjectPublicKeyInfo exactly as the request carries it.
fn requested_spki(der: &[u8]) -> Vec<u8> {
    let (_, csr) = X509CertificationRequest::from_der(der).unwrap();
    csr.certification_request_info.subject_pki.raw.to_vec()
}

#[test]
fn accepts_the_keys_certgate_certifies() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args, want) in [
        (
            "p256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            KeyType::EcdsaP256,
        ),
        // openssl signs with SHA-256 whatever the curve: the key, not the signature
        // algorithm, must decide the curve that ends up in the certificate.
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            KeyType::EcdsaP384,
        ),
        (
            "p384-sha384",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-sha384",
            ][..],
            KeyType::EcdsaP384,
        ),
        ("ed25519", &["-newkey", "ed25519"][..], KeyType::Ed25519),
        (
            "rsa2048",
            &["-newkey", "rsa:2048"][..],
            KeyType::Rsa { bits: 2048 },
        ),
        (
            "rsa3072-pss",
            &[
                "-newkey",
                "rsa:3072",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
                "-sha256",
            ][..],
            KeyType::Rsa { bits: 3072 },
        ),
    ] {
        let pem = openssl_request(dir.path(), name, args);
        let request =
            CertificateRequest::from_pem(&pem).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(request.key_type(), want, "{name}");
        let der = der_of(&pem);
        assert_eq!(
            CertificateRequest::from_der(&der),
            Ok(request.clone()),
            "{name}"
        );
        // What goes into the certificate is the requested key, byte for byte.
        assert_eq!(request.spki_der(), requested_spki(&der), "{name}");
    }
}

#[test]
fn key_types_are_shown_by_name() {
    assert_eq!(KeyType::EcdsaP256.to_string(), "ECDSA P-256");
    assert_eq!(KeyType::EcdsaP384.to_string(), "ECDSA P-384");
    assert_eq!(KeyType::Ed25519.to_string(), "Ed25519");
    assert_eq!(KeyType::Rsa { bits: 3072 }.to_string(), "RSA 3072");
}

#[test]
fn small_rsa_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_request(dir.path(), "rsa1024", &["-newkey", "rsa:1024"]);
    let err = CertificateRequest::from_pem(&pem).unwrap_err();
    assert_eq!(err, CertificateRequestError::RsaKeyTooSmall { bits: 1024 });
    assert_eq!(
        err.to_string(),
        "RSA keys must have at least 2048 bits (this one has 1024)"
    );
}

#[test]
fn other_key_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args(["genpkey", "-genparam", "-algorithm", "DSA"])
        .args([
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-out",
            "dsa-params.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (name, args, key_type) in [
        (
            "p521",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
            "ECDSA P-521",
        ),
        (
            "k256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"][..],
            "EC on curve 1.3.132.0.10",
        ),
        ("ed448", &["-newkey", "ed448"][..], "Ed448"),
        (
            "rsa-pss",
            &["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            "RSA-PSS",
        ),
        ("dsa", &["-newkey", "dsa:dsa-params.pem"][..], "DSA"),
    ] {
        let pem = openssl_request(dir.path(), name, args);
        let err = CertificateRequest::from_pem(&pem).unwrap_err();
        assert_eq!(
            err,
            CertificateRequestError::UnsupportedKeyType {
                key_type: key_type.to_owned()
            },
            "{name}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "key type {key_type} is not accepted: use ECDSA P-256 or P-384, Ed25519, \
                 or RSA of 2048 bits or more"
            )
        );
    }
}

#[test]
fn sha1_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    openssl_request(dir.path(), "rsa", &["-newkey", "rsa:2048"]);
    let pem = openssl_request(dir.path(), "sha1", &["-key", "rsa.key", "-sha1"]);
    let err = CertificateRequest::from_pem(&pem).unwrap_err();
    assert_eq!(
        err,
        CertificateRequestError::UnsupportedSignatureAlgorithm {
            algorithm: "sha1WithRSAEncryption".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "the certificate request is signed with sha1WithRSAEncryption, which is not accepted: \
         sign it with SHA-256 or SHA-384"
    );
    // The same key with SHA-256 is fine.
    let pem = openssl_request(dir.path(), "sha256", &["-key", "rsa.key", "-sha256"]);
    assert!(CertificateRequest::from_pem(&pem).is_ok());
}

#[test]
fn pss_signatures_ring_cannot_check_are_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    openssl_request(dir.path(), "rsa", &["-newkey", "rsa:2048"]);
    // OpenSSL's default PSS salt is as long as the key allows.
    let pem = openssl_request(
        dir.path(),
        "pss-max-salt",
        &[
            "-key",
            "rsa.key",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sha256",
        ],
    );
    let err = CertificateRequest::from_pem(&pem).unwrap_err();
    assert_eq!(err, CertificateRequestError::UnsupportedPssParameters);
    assert!(err.to_string().contains("rsa_pss_saltlen:digest"), "{err}");
    let pem = openssl_request(
        dir.path(),
        "pss-digest-salt",
        &[
            "-key",
            "rsa.key",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
            "-sha384",
        ],
    );
    assert_eq!(
        CertificateRequest::from_pem(&pem).map(|request| request.key_type()),
        Ok(KeyType::Rsa { bits: 2048 })
    );
}

/// The signature is checked: x509-parser's `verify_signature` (ring), through
/// [`CertificateRequest::from_der`]. A request whose signature or signed content changed after
/// signing is refused.
#[test]
fn altered_requests_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        (
            "p256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        ("ed25519", &["-newkey", "ed25519"][..]),
        ("rsa", &["-newkey", "rsa:2048"][..]),
    ] {
        let pem = openssl_request(
            dir.path(),
            name,
            &[args, &["-subj", "/CN=someone-else/O=other-org"]].concat(),
        );
        let der = der_of(&pem);
        assert!(CertificateRequest::from_der(&der).is_ok(), "{name}");

        // The signature BIT STRING ends the request, so its last byte is signature.
        let mut bad_signature = der.clone();
        *bad_signature.last_mut().unwrap() ^= 0x01;
        assert_eq!(
            CertificateRequest::from_der(&bad_signature),
            Err(CertificateRequestError::BadSignature),
            "{name}"
        );

        // Same length, different subject: the signed content no longer matches.
        let at = der
            .windows(b"someone-else".len())
            .position(|w| w == b"someone-else")
            .unwrap();
        let mut bad_content = der.clone();
        bad_content[at] = b'S';
        assert_eq!(
            CertificateRequest::from_der(&bad_content),
            Err(CertificateRequestError::BadSignature),
            "{name}"
        );
    }
    assert_eq!(
        CertificateRequestError::BadSignature.to_string(),
        "the certificate request's signature does not verify"
    );
}

#[test]
fn reads_requests_from_rcgen_and_windows_certreq_labels() {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(vec!["ignored.example.org".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let request = CertificateRequest::from_der(csr.der()).unwrap();
    assert_eq!(request.key_type(), KeyType::EcdsaP256);
    assert_eq!(request.spki_der(), key.subject_public_key_info());

    let pem = csr.pem().unwrap();
    assert_eq!(CertificateRequest::from_pem(&pem), Ok(request.clone()));
    let certreq = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(CertificateRequest::from_pem(&certreq), Ok(request.clone()));
    let crlf = pem.replace('\n', "\r\n");
    assert_eq!(CertificateRequest::from_pem(&crlf), Ok(request.clone()));
    // Other blocks around it are skipped.
    let bundle = format!("{}{pem}", key.serialize_pem());
    assert_eq!(CertificateRequest::from_pem(&bundle), Ok(request));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let key = KeyPair::generate().unwrap();
    let der = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();

    let malformed = Err(CertificateRequestError::Malformed);
    assert_eq!(CertificateRequest::from_der(b""), malformed);
    assert_eq!(CertificateRequest::from_pem(""), malformed);
    assert_eq!(CertificateRequest::from_pem("not pem at all"), malformed);
    assert_eq!(
        CertificateRequest::from_pem(
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n"
        ),
        malformed
    );
    assert_eq!(
        CertificateRequest::from_pem(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        ),
        malformed
    );
    assert_eq!(
        CertificateRequest::from_pem(&key.serialize_pem()),
        malformed
    );
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(CertificateRequest::from_der(&trailing), malformed);
    assert_eq!(
        CertificateRequestError::Malformed.to_string(),
        "the certificate request is not valid PEM/DER"
    );

    // Every truncation is refused.
    for len in 0..der.len() {
        assert!(CertificateRequest::from_der(&der[..len]).is_err(), "{len}");
    }
    // Flipping any one byte never panics, and never yields another key.
    for at in 0..der.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut altered = der.clone();
            altered[at] ^= flip;
            if let Ok(request) = CertificateRequest::from_der(&altered) {
                assert_eq!(request.spki_der(), key.subject_public_key_info(), "{at}");
            }
        }
    }
    // Random bytes, bare and behind a SEQUENCE header.
    let mut rng = rand::rng();
    for _ in 0..2000 {
        let mut bytes = vec![0u8; rng.random_range(0..600)];
        rng.fill_bytes(&mut bytes);
        assert!(CertificateRequest::from_der(&bytes).is_err());
        if bytes.len() > 2 {
            bytes[0] = 0x30;
            assert!(CertificateRequest::from_der(&bytes).is_err());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(CertificateRequest::from_pem(&format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{text}\n-----END CERTIFICATE REQUEST-----\n"
        ))
        .is_err());
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let big = vec![0x30; MAX_REQUEST_LEN + 1];
    assert_eq!(
        CertificateRequest::from_der(&big),
        Err(CertificateRequestError::TooLarge)
    );
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        "A".repeat(MAX_REQUEST_LEN)
    );
    assert_eq!(
        CertificateRequest::from_pem(&pem),
        Err(CertificateRequestError::TooLarge)
    );
    assert_eq!(
        CertificateRequestError::TooLarge.to_string(),
        "the certificate request is larger than 65536 bytes"
    );
}
