//! PKCS#12 bundles: a device's key, certificate and chain in one password-protected file for
//! browsers and operating systems that import certificates by hand, and the passwords for them.

use rand::Rng;
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{CertificateError, Pkcs12Problem};

/// Letters and digits without look-alikes (0/O, 1/l/I), so a password read aloud or copied by
/// hand from a screen comes out right.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 20 characters from 55: about 115 bits.
const PASSWORD_LEN: usize = 20;
const KDF_ITERATIONS: u32 = 10_000;
/// What OpenSSL 1.x wrote, so the keychains that only read such files get what they were tested
/// with. The random password, not the iteration count, is what protects the bundle.
const LEGACY_KDF_ITERATIONS: u32 = 2048;

/// How a PKCS#12 bundle is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pkcs12Format {
    /// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) with an HMAC-SHA256 MAC, as OpenSSL 3 writes by
    /// default.
    #[default]
    Modern,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates with an HMAC-SHA1 MAC: what
    /// OpenSSL 1.x wrote, except that it used 40-bit RC2 for the certificates. For keychains
    /// that cannot read [`Self::Modern`]: older macOS, Android before 10, Windows 7.
    Legacy,
}

/// [`pkcs12_bundle_as`] in the [`Pkcs12Format::Modern`] format.
pub fn pkcs12_bundle(
    key_pem: &str,
    cert_pem: &str,
    chain_pem: &str,
    friendly_name: &str,
    password: &str,
) -> Result<Vec<u8>, CertificateError> {
    pkcs12_bundle_as(
        key_pem,
        cert_pem,
        chain_pem,
        friendly_name,
        password,
        Pkcs12Format::Modern,
    )
}

/// A PKCS#12 file holding `key_pem`, the certificates of `cert_pem` (the leaf first) and then
/// those of `chain_pem` that are not already in it, encrypted and MACed as `format` says.
pub fn pkcs12_bundle_as(
    key_pem: &str,
    cert_pem: &str,
    chain_pem: &str,
    friendly_name: &str,
    password: &str,
    format: Pkcs12Format,
) -> Result<Vec<u8>, CertificateError> {
    if password.is_empty() {
        return Err(Pkcs12Problem::EmptyPassword.into());
    }
    let key = KeyPair::from_pem(key_pem).map_err(|_| Pkcs12Problem::InvalidPrivateKey)?;
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    for pem in [cert_pem, chain_pem] {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|_| Pkcs12Problem::InvalidCertificate)?;
            if !certs.contains(&cert) {
                certs.push(cert);
            }
        }
    }
    let leaf = certs.first().ok_or(Pkcs12Problem::NoCertificate)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| Pkcs12Problem::InvalidCertificate)?;
    if parsed.public_key().subject_public_key.as_ref() != key.der_bytes() {
        return Err(Pkcs12Problem::KeyDoesNotMatchCertificate.into());
    }
    // The same digest of the leaf ties key and certificate together, as openssl's localKeyID.
    let local_key_id = ring::digest::digest(&ring::digest::SHA256, leaf)
        .as_ref()
        .to_vec();

    let chain = certs
        .iter()
        .map(|cert| p12_keystore::Certificate::from_der(cert))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Pkcs12Problem::InvalidCertificate)?;
    let private_key = p12_keystore::PrivateKey::from_der(key.serialized_der())
        .map_err(|_| Pkcs12Problem::InvalidPrivateKey)?;
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        friendly_name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            local_key_id,
            private_key,
            chain,
        )),
    );
    let (encryption, mac, iterations) = match format {
        Pkcs12Format::Modern => (
            p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            p12_keystore::MacAlgorithm::HmacSha256,
            KDF_ITERATIONS,
        ),
        Pkcs12Format::Legacy => (
            p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            p12_keystore::MacAlgorithm::HmacSha1,
            LEGACY_KDF_ITERATIONS,
        ),
    };
    let bundle = store
        .writer(password)
        .encryption_algorithm(encryption)
        .encryption_iterations(iterations)
        .mac_algorithm(mac)
        .mac_iterations(iterations)
        .write()
        .map_err(|_| Pkcs12Problem::Encoding)?;
    Ok(bundle)
}

/// A random password for a PKCS#12 bundle, shown to the user once.
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::process::Command;
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::authority::{CertificateAuthority, DeviceSubject};

    fn openssl_pkcs12(path: &std::path::Path, password: &str, extra: &[&str]) -> (bool, String) {
        let out = Command::new("openssl")
            .arg("pkcs12")
            .arg("-in")
            .arg(path)
            .arg("-passin")
            .arg(format!("pass:{password}"))
            .args(extra)
            .output()
            .expect("openssl is installed");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    #[test]
    fn openssl_reads_the_bundle_with_the_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::init(&dir.path().join("ca"), now).unwrap();
        let subject = DeviceSubject {
            org: "acme".to_owned(),
            user: "anna".to_owned(),
            device_id: "d1".to_owned(),
        };
        let issued = ca
            .issue_device_key_pair(&subject, Duration::from_secs(3600), now)
            .unwrap();
        let password = generate_password();
        let bundle = pkcs12_bundle(
            &issued.key_pem,
            &issued.cert_pem,
            &ca.chain_pem(),
            "certgate anna",
            &password,
        )
        .unwrap();
        let path = dir.path().join("anna.p12");
        std::fs::write(&path, bundle).unwrap();

        let (ok, out) = openssl_pkcs12(&path, &password, &["-nodes"]);
        assert!(ok, "{out}");
        assert!(out.contains("-----BEGIN PRIVATE KEY-----"), "{out}");
        assert!(out.contains("friendlyName: certgate anna"), "{out}");
        assert!(out.contains("subject=CN = anna, O = acme"), "{out}");
        assert!(out.contains("subject=CN = certgate issuing CA"), "{out}");
        assert!(out.contains("subject=CN = certgate root CA"), "{out}");
        // Leaf, issuing and root once each: the issuing CA in both inputs is not repeated.
        assert_eq!(
            out.matches("-----BEGIN CERTIFICATE-----").count(),
            3,
            "{out}"
        );

        let (ok, info) = openssl_pkcs12(&path, &password, &["-info", "-noout"]);
        assert!(ok, "{info}");
        assert!(info.contains("MAC: sha256"), "{info}");
        assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");

        let (ok, out) = openssl_pkcs12(&path, "wrong-password", &["-nodes"]);
        assert!(!ok, "{out}");
        assert!(!out.contains("PRIVATE KEY-----"), "{out}");

        // Another key does not match the certificate.
        let other = ca
            .issue_device_key_pair(&subject, Duration::from_secs(3600), now)
            .unwrap();
        assert_eq!(
            pkcs12_bundle(&other.key_pem, &issued.cert_pem, "", "x", &password),
            Err(CertificateError::Pkcs12(
                Pkcs12Problem::KeyDoesNotMatchCertificate
            ))
        );
        assert_eq!(
            pkcs12_bundle(&issued.key_pem, &issued.cert_pem, "", "x", ""),
            Err(CertificateError::Pkcs12(Pkcs12Problem::EmptyPassword))
        );
        assert_eq!(
            pkcs12_bundle(&issued.key_pem, "", "", "x", &password),
            Err(CertificateError::Pkcs12(Pkcs12Problem::NoCertificate))
        );
        assert_eq!(
            pkcs12_bundle("garbage", &issued.cert_pem, "", "x", &password),
            Err(CertificateError::Pkcs12(Pkcs12Problem::InvalidPrivateKey))
        );
    }

    /// OpenSSL 3 reads both formats, with or without `-legacy`: 3DES (unlike the RC2-40 that
    /// OpenSSL 1.x used for certificates) is in OpenSSL 3's default provider.
    #[test]
    fn legacy_bundles_use_3des_and_sha1_and_hold_the_same_key_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::init(&dir.path().join("ca"), now).unwrap();
        let subject = DeviceSubject {
            org: "acme".to_owned(),
            user: "anna".to_owned(),
            device_id: "d1".to_owned(),
        };
        let issued = ca
            .issue_device_key_pair(&subject, Duration::from_secs(3600), now)
            .unwrap();
        let password = generate_password();
        let bundle = |format| {
            pkcs12_bundle_as(
                &issued.key_pem,
                &issued.cert_pem,
                &ca.chain_pem(),
                "certgate anna",
                &password,
                format,
            )
            .unwrap()
        };
        let modern = dir.path().join("modern.p12");
        let legacy = dir.path().join("legacy.p12");
        std::fs::write(&modern, bundle(Pkcs12Format::Modern)).unwrap();
        std::fs::write(&legacy, bundle(Pkcs12Format::Legacy)).unwrap();

        let (ok, info) = openssl_pkcs12(&modern, &password, &["-nokeys", "-info"]);
        assert!(ok, "{info}");
        assert!(info.contains("MAC: sha256, Iteration 10000"), "{info}");
        assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
        assert!(!info.contains("TripleDES"), "{info}");

        let (ok, info) = openssl_pkcs12(&legacy, &password, &["-legacy", "-nokeys", "-info"]);
        assert!(ok, "{info}");
        assert!(info.contains("MAC: sha1, Iteration 2048"), "{info}");
        assert!(
            info.contains("PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"),
            "{info}"
        );
        assert!(
            info.contains("Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"),
            "{info}"
        );
        assert!(!info.contains("PBES2"), "{info}");
        assert!(!info.contains("RC2"), "{info}");
        let (ok, info) = openssl_pkcs12(&legacy, &password, &["-nokeys", "-info"]);
        assert!(ok, "OpenSSL 3 reads 3DES without -legacy: {info}");
        let (ok, info) = openssl_pkcs12(&modern, &password, &["-legacy", "-nokeys", "-info"]);
        assert!(ok, "{info}");
        let (ok, out) = openssl_pkcs12(&legacy, "wrong-password", &["-legacy", "-nodes"]);
        assert!(!ok, "{out}");

        // Both hold the same key and the same certificates, in the same order, with the same
        // attributes.
        let (ok, from_modern) = openssl_pkcs12(&modern, &password, &["-nodes"]);
        assert!(ok, "{from_modern}");
        let (ok, from_legacy) = openssl_pkcs12(&legacy, &password, &["-legacy", "-nodes"]);
        assert!(ok, "{from_legacy}");
        assert_eq!(from_legacy, from_modern);
        assert_eq!(
            from_legacy.matches("-----BEGIN CERTIFICATE-----").count(),
            3,
            "{from_legacy}"
        );

        // The key inside is the one given, and the first certificate is the leaf it belongs to.
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            out.stdout
        };
        std::fs::write(dir.path().join("given.key"), &issued.key_pem).unwrap();
        std::fs::write(dir.path().join("unpacked.pem"), &from_legacy).unwrap();
        let given = openssl(&["pkey", "-in", "given.key", "-pubout"]);
        assert_eq!(openssl(&["pkey", "-in", "unpacked.pem", "-pubout"]), given);
        let leaf = ["x509", "-in", "unpacked.pem"];
        assert_eq!(
            openssl(&[&leaf[..], &["-noout", "-pubkey"]].concat()),
            given
        );
        assert_eq!(
            openssl(&[&leaf[..], &["-outform", "DER"]].concat()),
            issued.cert_der.as_ref()
        );

        // The same refusals as the modern format.
        assert_eq!(
            pkcs12_bundle_as(
                &issued.key_pem,
                &issued.cert_pem,
                "",
                "x",
                "",
                Pkcs12Format::Legacy
            ),
            Err(CertificateError::Pkcs12(Pkcs12Problem::EmptyPassword))
        );
    }

    #[test]
    fn passwords_are_random_and_unambiguous() {
        let a = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(a, generate_password());
    }
}
