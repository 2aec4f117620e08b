//! The gateway's Prometheus metrics, registered once into a registry that is passed in.
//! Label values are known in advance (organisation ids, decision names), never request data.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub policy_last_reload: Gauge,
    pub revocations: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub ca_not_after: Gauge,
    /// 1 while the database answers its probe, 0 while it does not.
    pub database_up: Gauge,
    /// `kind`: which limit answered (the portal's limits and the admin listener's token).
    pub rate_limited: IntCounterVec,
    /// `reason`: which connection limit closed a connection (see `connection::Refusal`).
    pub connections_refused: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("certgate".into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let requests = counter(
            "requests_total",
            "Requests by organisation and admission decision.",
            &["org", "decision"],
        )?;
        let upstream_errors = counter(
            "upstream_errors_total",
            "Requests that failed to reach or read the upstream.",
            &["org"],
        )?;
        let tls_handshakes = counter(
            "tls_handshakes_total",
            "Completed TLS handshakes by client certificate: none, valid, expired, foreign.",
            &["client_certificate"],
        )?;
        let policy_reloads = counter(
            "policy_reloads_total",
            "Policy and certificate reloads by result.",
            &["result"],
        )?;
        let revocations = counter(
            "revocations_total",
            "Revocations recorded by organisation and reason.",
            &["org", "reason"],
        )?;
        let store_errors = counter(
            "store_errors_total",
            "Failed calls to the shared store.",
            &["backend"],
        )?;
        let rate_limited = counter(
            "rate_limited_total",
            "Requests answered by a rate limit, by limit.",
            &["kind"],
        )?;
        let connections_refused = counter(
            "connections_refused_total",
            "Connections closed by a limit: client_limit, head_timeout, head_too_large.",
            &["reason"],
        )?;
        for refusal in crate::connection::Refusal::ALL {
            connections_refused.with_label_values(&[refusal.as_str()]);
        }
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request to response, by organisation.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["org"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let policy_last_reload = gauge(
            "policy_last_reload_timestamp_seconds",
            "When the policies were last loaded successfully.",
        )?;
        let ca_not_after = gauge(
            "ca_not_after_timestamp_seconds",
            "When the issuing CA expires.",
        )?;
        let database_up = gauge(
            "database_up",
            "Whether the database answered its last probe (every 2 s): 1 or 0.",
        )?;
        database_up.set(1.0);
        for result in ["ok", "error"] {
            policy_reloads.with_label_values(&[result]);
        }
        for status in ["none", "valid", "expired", "foreign"] {
            tls_handshakes.with_label_values(&[status]);
        }
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_errors,
            tls_handshakes,
            policy_reloads,
            policy_last_reload,
            revocations,
            store_errors,
            rate_limited,
            connections_refused,
            ca_not_after,
            database_up,
        })
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
