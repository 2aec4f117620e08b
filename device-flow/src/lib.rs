//! The device flow's messages (RFC 8628 in shape), as the portal serves them under
//! `/.certgate/api/v1/device/` and the agent (`certgate login`, `certgate renew`) sends and
//! reads them: one definition for both ends, so neither can drift from the other.
//!
//! Requests take missing fields as empty, so the portal answers a body without them with its
//! own clear error rather than a parse failure.

use serde::{Deserialize, Serialize};

/// A device code or enrolment token: shown as `Secret(…)` in debug output and logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `POST device/authorize`: a device asks to be signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct AuthorizeRequest {
    /// How the device is listed in the portal.
    #[serde(default)]
    pub name: String,
    /// "Trust this device": a credential that lasts days instead of one working session.
    #[serde(default)]
    pub trust: bool,
}

/// The answer to `device/authorize`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    /// What the user types on the portal's page.
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: u64,
    /// Seconds between polls of `device/token`.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

/// RFC 8628 §3.2: the interval a client uses when the server names none.
pub const DEFAULT_POLL_INTERVAL: u64 = 5;

fn default_interval() -> u64 {
    DEFAULT_POLL_INTERVAL
}

/// `POST device/token`: the device polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenRequest {
    #[serde(default)]
    pub device_code: Secret,
}

/// The answer to `device/token` once the user has approved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnrolmentToken {
    pub enrolment_token: Secret,
    pub expires_in: u64,
}

/// `POST device/certificate` (with the enrolment token) and `device/renew` (over mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CsrRequest {
    /// A PEM certificate signing request.
    #[serde(default)]
    pub csr: String,
}

/// How the portal renews a device's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RenewalKind {
    /// Until the credential's end; then the user signs in again.
    Personal,
    /// A shared tablet: renewed while it is used.
    Group,
}

/// The answer to `device/certificate` and `device/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IssuedCertificate {
    /// PEM.
    pub certificate: String,
    /// PEM, the issuing CA first.
    pub chain: String,
    pub device_id: String,
    /// The certificate's serial, in hex (what `certgate revoke --serial` takes).
    #[serde(default)]
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    pub renewal: RenewalKind,
}

/// The error body of every answer that is not a success (RFC 6749 §5.2 in shape).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorBody {
    /// A code such as `authorization_pending`, `slow_down`, `expired_token`, `access_denied`.
    pub error: String,
    /// For a person.
    #[serde(default)]
    pub error_description: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output_and_requests_take_missing_fields_as_empty() {
        let authorization: DeviceAuthorization = serde_json::from_str(
            r#"{"device_code":"dc-1","user_code":"ABCD-EFGH","verification_uri":"https://x/","expires_in":600}"#,
        )
        .unwrap();
        assert_eq!(authorization.interval, DEFAULT_POLL_INTERVAL);
        assert!(!format!("{authorization:?}").contains("dc-1"));
        let empty: AuthorizeRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, AuthorizeRequest::default());
        let renewal: IssuedCertificate = serde_json::from_str(
            r#"{"certificate":"c","chain":"ch","device_id":"d","not_after":1,"renewal":"group"}"#,
        )
        .unwrap();
        assert_eq!(renewal.renewal, RenewalKind::Group);
    }
}
