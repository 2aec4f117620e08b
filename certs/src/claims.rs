//! What a device certificate says about its holder: organisation, user, device id, serial and
//! validity, and the rules for those names. The gateway calls [`DeviceClaims::from_der`] once per
//! TLS connection, after rustls has checked the chain, so it only reads; it never verifies.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use crate::error::{
    CertificateError, DeviceCertificateProblem, SerialError, SubjectError, SubjectField,
};

/// X.520 upper bound for a common name and an organisation name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Prefix of the SAN URI that names a device: `urn:certgate:<org>:<device-id>`.
pub const DEVICE_URN_PREFIX: &str = "urn:certgate:";

/// The identity a device certificate carries, read from the certificate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaims {
    pub org: String,
    pub user: String,
    pub device_id: String,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl DeviceClaims {
    /// Reads the claims of a DER certificate. Fails for any certificate that does not carry
    /// exactly one CN, one O and one `urn:certgate:` URI naming that same organisation.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| DeviceCertificateProblem::Unparseable)?;
        if !rest.is_empty() {
            return Err(DeviceCertificateProblem::Unparseable.into());
        }
        let subject = cert.subject();
        let user =
            single_str(subject.iter_common_name()).ok_or(DeviceCertificateProblem::CommonName)?;
        let org = single_str(subject.iter_organization())
            .ok_or(DeviceCertificateProblem::Organisation)?;
        validate_user(user).map_err(DeviceCertificateProblem::Subject)?;
        validate_org(org).map_err(DeviceCertificateProblem::Subject)?;

        let (uri_org, device_id) = device_uri(&cert)?;
        if uri_org != org {
            return Err(DeviceCertificateProblem::OrganisationMismatch {
                subject_org: org.to_owned(),
                uri_org: uri_org.to_owned(),
            }
            .into());
        }
        let serial =
            Serial::from_bytes(cert.raw_serial()).map_err(DeviceCertificateProblem::Serial)?;
        let validity = cert.validity();
        Ok(Self {
            org: org.to_owned(),
            user: user.to_owned(),
            device_id: device_id.to_owned(),
            serial,
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
        })
    }
}

/// The one value of an attribute that must occur exactly once.
fn single_str<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<&'a str> {
    let first = values.next()?.as_str().ok()?;
    values.next().is_none().then_some(first)
}

/// The `(org, device id)` of the certificate's single `urn:certgate:` URI.
fn device_uri<'a>(
    cert: &'a x509_parser::certificate::X509Certificate<'a>,
) -> Result<(&'a str, &'a str), DeviceCertificateProblem> {
    let sans = cert
        .subject_alternative_name()
        .map_err(|_| DeviceCertificateProblem::Unparseable)?
        .ok_or(DeviceCertificateProblem::MissingDeviceUri)?;
    let mut found = None;
    for name in &sans.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        // URN scheme and NID are case-insensitive (RFC 8141); the rest is ours and exact.
        let Some(rest) = uri
            .get(..DEVICE_URN_PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(DEVICE_URN_PREFIX))
            .and_then(|_| uri.get(DEVICE_URN_PREFIX.len()..))
        else {
            continue;
        };
        if found.is_some() {
            return Err(DeviceCertificateProblem::MultipleDeviceUris);
        }
        found = Some(rest);
    }
    let rest = found.ok_or(DeviceCertificateProblem::MissingDeviceUri)?;
    let (org, device_id) = rest
        .split_once(':')
        .ok_or(DeviceCertificateProblem::MalformedDeviceUri)?;
    validate_org(org).map_err(|_| DeviceCertificateProblem::MalformedDeviceUri)?;
    validate_device_id(device_id).map_err(|_| DeviceCertificateProblem::MalformedDeviceUri)?;
    Ok((org, device_id))
}

/// The stable identifier of a device; it survives certificate renewal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    /// A new random id: 128 bits as 32 lowercase hex digits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for DeviceId {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        validate_device_id(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

/// Organisation ids: 1 to 64 of `a-z 0-9 - _ .`.
pub fn validate_org(org: &str) -> Result<(), SubjectError> {
    validate_token(org, SubjectField::Organisation)
}

/// Device ids: 1 to 64 of `a-z 0-9 - _ .`.
pub fn validate_device_id(device_id: &str) -> Result<(), SubjectError> {
    validate_token(device_id, SubjectField::DeviceId)
}

/// User names become the CN: 1 to 64 characters, none of them control characters (they end up
/// in headers and logs).
pub fn validate_user(user: &str) -> Result<(), SubjectError> {
    let field = SubjectField::User;
    if user.is_empty() {
        return Err(SubjectError::Empty { field });
    }
    if user.chars().count() > MAX_NAME_CHARS {
        return Err(SubjectError::TooLong {
            field,
            max: MAX_NAME_CHARS,
        });
    }
    if user.chars().any(char::is_control) {
        return Err(SubjectError::InvalidCharacter { field });
    }
    Ok(())
}

fn validate_token(value: &str, field: SubjectField) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(SubjectError::Empty { field });
    }
    if value.len() > MAX_NAME_CHARS {
        return Err(SubjectError::TooLong {
            field,
            max: MAX_NAME_CHARS,
        });
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if !value.bytes().all(allowed) {
        return Err(SubjectError::InvalidCharacter { field });
    }
    Ok(())
}

/// A certificate serial number as an unsigned big-endian integer, without leading zero bytes.
/// Fixed-size so the gateway can key revocation lookups on it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serial {
    // Left-aligned; bytes past `len` are always zero so the derived Eq/Hash are correct.
    bytes: [u8; Serial::MAX_LEN],
    len: u8,
}

impl Serial {
    /// RFC 5280 allows at most 20 octets.
    pub const MAX_LEN: usize = 20;

    /// From the big-endian bytes of a serial, as DER stores them (a leading sign byte is fine).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SerialError> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = &bytes[start..];
        if significant.len() > Self::MAX_LEN {
            return Err(SerialError::TooLong);
        }
        let mut serial = Self {
            bytes: [0; Self::MAX_LEN],
            len: 0,
        };
        serial.bytes[..significant.len()].copy_from_slice(significant);
        serial.len = significant.len() as u8;
        Ok(serial)
    }

    /// Big-endian bytes without leading zeros; empty for the serial 0.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Accepts hex as openssl and browsers print it: any case, with or without `:` or space
/// separators, with or without leading zeros. An odd number of digits reads as if it had one
/// more leading zero.
impl FromStr for Serial {
    type Err = SerialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nibbles = [0u8; 2 * Self::MAX_LEN];
        let mut count = 0;
        let mut any_digit = false;
        for c in s.trim().chars() {
            if c == ':' || c == ' ' {
                continue;
            }
            let nibble = c.to_digit(16).ok_or(SerialError::InvalidCharacter)? as u8;
            any_digit = true;
            if count == 0 && nibble == 0 {
                continue;
            }
            let slot = nibbles.get_mut(count).ok_or(SerialError::TooLong)?;
            *slot = nibble;
            count += 1;
        }
        if !any_digit {
            return Err(SerialError::Empty);
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        let len = count.div_ceil(2);
        // Right-align the digits so an odd count gets its implicit leading zero.
        let offset = 2 * len - count;
        for (i, &nibble) in nibbles[..count].iter().enumerate() {
            let pos = i + offset;
            bytes[pos / 2] |= if pos % 2 == 0 { nibble << 4 } else { nibble };
        }
        Self::from_bytes(&bytes[..len])
    }
}

/// Lowercase hex without separators; `00` for the serial 0.
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("00");
        }
        self.as_bytes()
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn serial(s: &str) -> Result<String, SerialError> {
        s.parse::<Serial>().map(|serial| serial.to_string())
    }

    #[test]
    fn serial_accepts_what_openssl_and_browsers_print() {
        let want = Ok("0a1bff".to_owned());
        assert_eq!(serial("0A:1B:FF"), want);
        assert_eq!(serial("0a:1b:ff"), want);
        assert_eq!(serial("0a1bff"), want);
        assert_eq!(serial("A1BFF"), want);
        assert_eq!(serial("00:0A:1B:FF"), want);
        assert_eq!(serial("0A 1B FF"), want);
        assert_eq!(serial("  0a1bff\n"), want);
        assert_eq!(serial("a1b2"), Ok("a1b2".to_owned()));
        assert_eq!(serial("ABC"), Ok("0abc".to_owned()));
        assert_eq!(serial("0"), Ok("00".to_owned()));
        assert_eq!(serial("00:00"), Ok("00".to_owned()));
    }

    #[test]
    fn serial_refuses_garbage() {
        assert_eq!(serial(""), Err(SerialError::Empty));
        assert_eq!(serial(" : "), Err(SerialError::Empty));
        assert_eq!(serial("xyz"), Err(SerialError::InvalidCharacter));
        assert_eq!(serial("0x1f"), Err(SerialError::InvalidCharacter));
        assert_eq!(serial("1f-2e"), Err(SerialError::InvalidCharacter));
        assert_eq!(serial("é"), Err(SerialError::InvalidCharacter));
        assert_eq!(serial(&"ab".repeat(21)), Err(SerialError::TooLong));
        assert_eq!(serial(&"1".repeat(41)), Err(SerialError::TooLong));
        // Leading zeros do not count towards the 20 bytes.
        assert_eq!(
            serial(&format!("00:{}", "ab:".repeat(20))),
            Ok("ab".repeat(20))
        );
    }

    #[test]
    fn serial_bytes_strip_the_sign_byte() {
        let s = Serial::from_bytes(&[0x00, 0x80, 0x01]).unwrap();
        assert_eq!(s.as_bytes(), &[0x80, 0x01]);
        assert_eq!(s, "80:01".parse().unwrap());
        assert_eq!(Serial::from_bytes(&[1; 21]), Err(SerialError::TooLong));
        let mut long = vec![0u8; 5];
        long.extend([7u8; 20]);
        assert_eq!(Serial::from_bytes(&long).unwrap().as_bytes(), &[7u8; 20]);
    }

    #[test]
    fn names_follow_the_urn_rules() {
        assert_eq!(validate_org("acme-care.nl_2"), Ok(()));
        assert_eq!(
            validate_org(""),
            Err(SubjectError::Empty {
                field: SubjectField::Organisation
            })
        );
        assert_eq!(
            validate_org("Acme"),
            Err(SubjectError::InvalidCharacter {
                field: SubjectField::Organisation
            })
        );
        assert_eq!(
            validate_device_id("a:b"),
            Err(SubjectError::InvalidCharacter {
                field: SubjectField::DeviceId
            })
        );
        assert_eq!(validate_user("Zoë de Vries"), Ok(()));
        assert_eq!(validate_user(&"é".repeat(64)), Ok(()));
        assert_eq!(
            validate_user(&"é".repeat(65)),
            Err(SubjectError::TooLong {
                field: SubjectField::User,
                max: 64
            })
        );
        assert_eq!(
            validate_user("a\nb"),
            Err(SubjectError::InvalidCharacter {
                field: SubjectField::User
            })
        );
    }

    #[test]
    fn device_ids_are_random_and_valid() {
        let a = DeviceId::generate();
        let b = DeviceId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(a.as_str().parse::<DeviceId>(), Ok(a.clone()));
        assert!("Upper".parse::<DeviceId>().is_err());
    }

    #[test]
    fn garbage_is_not_a_device_certificate() {
        assert_eq!(
            DeviceClaims::from_der(b"not a certificate"),
            Err(CertificateError::NotDeviceCertificate(
                DeviceCertificateProblem::Unparseable
            ))
        );
        assert_eq!(
            DeviceClaims::from_der(&[]),
            Err(CertificateError::NotDeviceCertificate(
                DeviceCertificateProblem::Unparseable
            ))
        );
    }
}
