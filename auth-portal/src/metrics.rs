//! The portal's counters of the metrics contract, registered into the gateway's registry so
//! they appear on the admin listener's `/metrics`. Label values are known in advance.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct PortalMetrics {
    /// `org`, `method` (password, authenticator, sms, email, recovery), `result`.
    pub logins: IntCounterVec,
    /// `org`, `channel` (sms, email).
    pub codes_sent: IntCounterVec,
    /// `org`, `kind` (browser), `trust` (personal, trusted, group).
    pub credentials_issued: IntCounterVec,
    /// `kind`: which limit answered.
    pub rate_limited: IntCounterVec,
}

impl PortalMetrics {
    /// `rate_limited` is the gateway's counter, which the admin listener counts in too.
    pub fn register(
        registry: &Registry,
        rate_limited: IntCounterVec,
    ) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        Ok(PortalMetrics {
            logins: counter(
                "logins_total",
                "Sign-in steps by organisation, method and result (success, failure).",
                &["org", "method", "result"],
            )?,
            codes_sent: counter(
                "mfa_codes_sent_total",
                "Sign-in codes sent by organisation and channel.",
                &["org", "channel"],
            )?,
            credentials_issued: counter(
                "credentials_issued_total",
                "Credentials issued by organisation, kind and trust class.",
                &["org", "kind", "trust"],
            )?,
            rate_limited,
        })
    }

    /// Exports every combination of `org` at 0 (a no-op for those that exist).
    pub fn know_organisation(&self, org: &str) {
        for method in LOGIN_METHODS {
            for result in ["success", "failure"] {
                self.logins.with_label_values(&[org, method, result]);
            }
        }
        for channel in ["sms", "email"] {
            self.codes_sent.with_label_values(&[org, channel]);
        }
        for kind in ["browser", "pkcs12", "certificate"] {
            for trust in ["personal", "trusted", "group"] {
                self.credentials_issued
                    .with_label_values(&[org, kind, trust]);
            }
        }
    }
}

/// `certgate_logins_total{method}`.
pub const LOGIN_METHODS: [&str; 7] = [
    "password",
    "authenticator",
    "sms",
    "email",
    "recovery",
    "sso",
    "passkey",
];
