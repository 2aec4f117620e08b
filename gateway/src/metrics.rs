//! The gateway's Prometheus metrics, registered once into a registry that is passed in.
//! Label values are known in advance (organisation ids, decision names), never request data,
//! and every known combination is exported from the first scrape, at 0: a dashboard or an alert
//! on a counter sees it before its first event.

use crate::admission::DecisionLabel;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The label values of the counters, as the README lists them.
pub mod labels {
    /// `certgate_revocations_total{reason}`.
    pub const REVOCATION_REASONS: [&str; 7] = [
        "admin",
        "disabled",
        "mfa_reset",
        "password_reset",
        "deleted",
        "user",
        "sign_out",
    ];
    /// `certgate_rate_limited_total{kind}`.
    pub const RATE_LIMIT_KINDS: [&str; 10] = [
        "login_ip",
        "login_pair",
        "login_delay",
        "codes_sent",
        "password_reset",
        "device_authorize",
        "device_code",
        "api_token",
        "admin_token",
        "sign_in_start",
    ];
}

/// Touches one organisation's label combinations of counters registered elsewhere (the
/// portal's), so that they are exported at 0.
pub type OrganisationSeries = Box<dyn Fn(&str) + Send + Sync>;

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub policy_last_reload: Gauge,
    /// 1 when the last reload of policies and certificates succeeded, 0 when it failed (the
    /// previous ones are still in force).
    pub policy_reload_ok: Gauge,
    pub revocations: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub ca_not_after: Gauge,
    /// 1 while the database answers its probe, 0 while it does not.
    pub database_up: Gauge,
    /// `kind`: which limit answered (the portal's limits and the admin listener's token).
    pub rate_limited: IntCounterVec,
    /// `reason`: which connection limit closed a connection (see `connection::Refusal`).
    pub connections_refused: IntCounterVec,
    /// 1 while the shared store answers its probe (every second), 0 while it does not.
    pub store_up: Gauge,
    /// How long the last answered probe of the store and of the database took.
    pub store_ping: Gauge,
    pub database_ping: Gauge,
    /// Seconds from a revocation to its arrival here through the store's feed.
    pub revocation_feed_lag: Histogram,
    /// `certificate`: the first host name of a `[[server.certificates]]` entry.
    pub server_certificate_not_after: GaugeVec,
    /// The portal's counters, which [`OrganisationSeries`] hooks touch.
    organisation_series: parking_lot::RwLock<Vec<OrganisationSeries>>,
    /// `process_*`: CPU, resident memory, open file descriptors, start time (Linux).
    process: Registry,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("certgate".into()), None)?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "The running certgate: its version and the commit it was built from; always 1.",
            ),
            &["version", "commit"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), BUILD_COMMIT])
            .set(1);
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
        let policy_reload_ok = gauge(
            "policy_last_reload_success",
            "Whether the last reload of policies and certificates succeeded: 1 or 0.",
        )?;
        policy_reload_ok.set(1.0);
        let ca_not_after = gauge(
            "ca_not_after_timestamp_seconds",
            "When the issuing CA expires.",
        )?;
        let database_up = gauge(
            "database_up",
            "Whether the database answered its last probe (every 2 s): 1 or 0.",
        )?;
        database_up.set(1.0);
        let store_up = gauge(
            "store_up",
            "Whether the shared store answered its last probe (every second): 1 or 0.",
        )?;
        store_up.set(1.0);
        let store_ping = gauge(
            "store_ping_seconds",
            "Round-trip time of the last answered probe of the shared store.",
        )?;
        let database_ping = gauge(
            "database_ping_seconds",
            "Round-trip time of the last answered probe of the database.",
        )?;
        let revocation_feed_lag = Histogram::with_opts(
            HistogramOpts::new(
                "revocation_feed_lag_seconds",
                "Seconds between a revocation and its arrival at this instance through the feed.",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        registry.register(Box::new(revocation_feed_lag.clone()))?;
        let server_certificate_not_after = GaugeVec::new(
            Opts::new(
                "server_certificate_not_after_timestamp_seconds",
                "When each server certificate expires, by its first host name.",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(server_certificate_not_after.clone()))?;
        for kind in labels::RATE_LIMIT_KINDS {
            rate_limited.with_label_values(&[kind]);
        }
        // Requests no organisation was found for.
        for decision in [DecisionLabel::UnknownHost, DecisionLabel::BadRequest] {
            requests.with_label_values(&["", decision.as_str()]);
        }
        // A revocation by serial number names no organisation (a serial is all it has).
        revocations.with_label_values(&["", "admin"]);
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
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
            policy_reload_ok,
            revocations,
            store_errors,
            rate_limited,
            connections_refused,
            ca_not_after,
            database_up,
            store_up,
            store_ping,
            database_ping,
            revocation_feed_lag,
            server_certificate_not_after,
            organisation_series: parking_lot::RwLock::new(Vec::new()),
            process,
        })
    }

    /// Has `series` touch every organisation's combinations of counters registered elsewhere.
    pub fn add_organisation_series(&self, series: OrganisationSeries) {
        self.organisation_series.write().push(series);
    }

    /// Exports every label combination of `org` at 0 (a no-op for those that exist).
    pub fn know_organisation(&self, org: &str) {
        for decision in DecisionLabel::ALL {
            self.requests.with_label_values(&[org, decision.as_str()]);
        }
        self.request_duration.with_label_values(&[org]);
        self.upstream_errors.with_label_values(&[org]);
        for reason in labels::REVOCATION_REASONS {
            self.revocations.with_label_values(&[org, reason]);
        }
        for series in self.organisation_series.read().iter() {
            series(org);
        }
    }

    /// The shared store in use, so that its error counter is exported at 0.
    pub fn know_store(&self, backend: &str) {
        self.store_errors.with_label_values(&[backend]);
    }

    /// The text exposition format for `/metrics`, with every combination of `organisations`.
    pub fn render_for<'a>(&self, organisations: impl IntoIterator<Item = &'a str>) -> String {
        for org in organisations {
            self.know_organisation(org);
        }
        self.render()
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if TextEncoder::new().encode(&families, &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The commit certgate was built from (`CERTGATE_COMMIT` at build time, else what git says).
const BUILD_COMMIT: &str = env!("CERTGATE_COMMIT");
