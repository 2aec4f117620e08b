//! What the ops team reads: every metric is exported from the first scrape, with each known
//! label combination at 0, beside process metrics, the build, the health of the store and the
//! database, the revocation feed's lag and the certificates' expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use certgate_e2e::{certgate_ok, http_get, metric_at, settles, Deployment, Org, RedisServer};

/// The metrics page of a fresh instance, before any request.
fn fresh_metrics(d: &Deployment) -> String {
    let (status, body) = http_get(d.admin, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    body
}

fn has_series(body: &str, series: &str) -> bool {
    body.lines()
        .any(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
}

#[test]
fn a_fresh_instance_exports_every_metric_at_zero_with_process_and_build_information() {
    let redis = RedisServer::start();
    let mut d = Deployment::new(&[
        Org::new("noord", "noord.test"),
        Org::new("zuid", "zuid.test"),
    ]);
    d.extra_sections = format!(
        "[store]\nredis_url = \"{}\"\nkey_prefix = \"e2e:\"\n",
        redis.url()
    );
    d.write_config();
    d.start();
    let body = fresh_metrics(&d);

    // Each organisation's combinations, before its first event.
    for org in ["noord", "zuid"] {
        for decision in [
            "allowed_ip",
            "allowed_certificate",
            "allowed_browser",
            "allowed_public",
            "portal",
            "redirected",
            "unauthorized",
            "denied_revoked",
            "denied_expired",
            "unknown_host",
            "bad_request",
        ] {
            let series =
                format!(r#"certgate_requests_total{{decision="{decision}",org="{org}"}} 0"#);
            assert!(body.lines().any(|l| l == series), "{series} missing");
        }
        for method in [
            "password",
            "authenticator",
            "sms",
            "email",
            "recovery",
            "sso",
            "passkey",
        ] {
            for result in ["success", "failure"] {
                let series = format!(
                    r#"certgate_logins_total{{method="{method}",org="{org}",result="{result}"}}"#
                );
                assert!(has_series(&body, &series), "{series} missing");
            }
        }
        for channel in ["sms", "email"] {
            let series =
                format!(r#"certgate_mfa_codes_sent_total{{channel="{channel}",org="{org}"}}"#);
            assert!(has_series(&body, &series), "{series} missing");
        }
        for trust in ["personal", "trusted", "group"] {
            let series = format!(
                r#"certgate_credentials_issued_total{{kind="browser",org="{org}",trust="{trust}"}}"#
            );
            assert!(has_series(&body, &series), "{series} missing");
        }
        for reason in [
            "admin",
            "disabled",
            "mfa_reset",
            "password_reset",
            "deleted",
            "user",
            "sign_out",
        ] {
            let series = format!(r#"certgate_revocations_total{{org="{org}",reason="{reason}"}}"#);
            assert!(has_series(&body, &series), "{series} missing");
        }
        let series = format!(r#"certgate_upstream_errors_total{{org="{org}"}}"#);
        assert!(has_series(&body, &series), "{series} missing");
        let series = format!(r#"certgate_request_duration_seconds_count{{org="{org}"}}"#);
        assert!(has_series(&body, &series), "{series} missing");
    }
    for kind in [
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
    ] {
        let series = format!(r#"certgate_rate_limited_total{{kind="{kind}"}}"#);
        assert!(has_series(&body, &series), "{series} missing");
    }
    assert!(has_series(
        &body,
        r#"certgate_store_errors_total{backend="redis"}"#
    ));
    // A revocation by serial names no organisation: counted without one, also from the start.
    assert!(has_series(
        &body,
        r#"certgate_revocations_total{org="",reason="admin"}"#
    ));

    // The process, under the names every Prometheus dashboard knows.
    // CPU seconds are whole seconds: a fresh process may show 0.
    assert!(has_series(&body, "process_cpu_seconds_total"));
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let value = metric_at(d.admin, name);
        assert!(value > 0.0, "{name} is {value}");
    }
    let build = body
        .lines()
        .find(|l| l.starts_with("certgate_build_info{"))
        .expect("build_info");
    assert!(
        build.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.ends_with(" 1"), "{build}");
    assert!(!build.contains(r#"commit="""#), "{build}");

    // Health of what the instance depends on, and when its certificates run out.
    assert!(settles(|| metric_at(d.admin, "certgate_store_up") == 1.0));
    assert_eq!(metric_at(d.admin, "certgate_database_up"), 1.0);
    assert!(settles(|| metric_at(
        d.admin,
        "certgate_store_ping_seconds"
    ) > 0.0));
    assert!(settles(|| metric_at(
        d.admin,
        "certgate_database_ping_seconds"
    ) > 0.0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let server = metric_at(
        d.admin,
        r#"certgate_server_certificate_not_after_timestamp_seconds{certificate="noord.test"}"#,
    );
    assert!(
        server > now,
        "the test server certificate expires in the future: {server}"
    );
    assert!(metric_at(d.admin, "certgate_ca_not_after_timestamp_seconds") > now);

    // A revocation comes back through the feed: its lag is measured, within a few seconds.
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    certgate_ok(&[
        "device",
        "revoke",
        "--config",
        &d.config(),
        "--serial",
        &anna.serial,
    ]);
    assert!(settles(|| {
        metric_at(d.admin, "certgate_revocation_feed_lag_seconds_count") >= 1.0
    }));
    assert!(
        metric_at(
            d.admin,
            r#"certgate_revocation_feed_lag_seconds_bucket{le="5"}"#
        ) >= 1.0,
        "arrived within 5 s"
    );

    // Redis gone: the store is down, and says so.
    drop(redis);
    assert!(settles(|| metric_at(d.admin, "certgate_store_up") == 0.0));
}

/// The Compose example's configuration is one `certgate check` accepts: Sentinel, PostgreSQL,
/// a shared data directory with an admin socket per container.
#[test]
fn the_compose_examples_configuration_checks() {
    let compose = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose");
    let config = compose.join("certgate.toml");
    let out = certgate_ok(&["check", "--no-files", "--config", config.to_str().unwrap()]);
    assert!(out.starts_with("ok: "), "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/"));
    let yaml = std::fs::read_to_string(compose.join("compose.yaml")).unwrap();
    for service in ["certgate-a:", "certgate-b:", "postgres:", "sentinel-3:"] {
        assert!(
            yaml.contains(service),
            "{service} missing from compose.yaml"
        );
    }
}
