//! The Grafana dashboard and the alert rules, tested by what they ask: a real Prometheus scrapes
//! a real certgate that has seen traffic of every kind, and every panel's query, every template
//! variable and every alert expression runs through Prometheus's HTTP API. Each must parse and
//! return data: a renamed metric or label, or a query over a series certgate never exports,
//! fails here instead of showing an empty panel or an alert that can never fire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certgate_e2e::{
    csrf_of, eventually, free_port, settles, NewUser, Org, PortalWorld, RedisServer,
};
use serde_json::Value;

const NOORD: &str = "noord.test";
const ZUID: &str = "zuid.test";
const PASSWORD: &str = "correct horse battery";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// A Prometheus (the Debian package) scraping one admin listener every second, with the alert
/// rules loaded. Killed on drop.
struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(admin: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: certgate\n    static_configs:\n      - targets: [\"127.0.0.1:{admin}\"]\n",
                rules = deploy("prometheus/certgate-alerts.yml").canonicalize().unwrap(),
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("prometheus (make test installs it)");
        let prometheus = Prometheus {
            port,
            child,
            _dir: dir,
        };
        assert!(
            eventually(Duration::from_secs(30), || prometheus
                .get("/-/ready")
                .is_some_and(|body| body.contains("Ready"))),
            "prometheus did not start:\n{}",
            prometheus.log()
        );
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<String> {
        TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A call of the HTTP API with URL-encoded `params`; its JSON answer, which must say success.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "10", "-G"]);
        for (name, value) in params {
            command
                .arg("--data-urlencode")
                .arg(format!("{name}={value}"));
        }
        let out = command
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{path} {params:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(answer["status"], "success", "{path} {params:?}: {answer}");
        answer["data"].clone()
    }

    /// An instant query's samples: (labels, value).
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let data = self.api("/api/v1/query", &[("query", expr)]);
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| {
                let value = sample["value"][1].as_str().unwrap();
                (sample["metric"].clone(), value.parse().unwrap_or(f64::NAN))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A panel query as Grafana sends it: every instance and organisation chosen, the rate window
/// five minutes (Prometheus scrapes every second here; the window holds the zeros of the first
/// scrape and all of the test's traffic, however slowly the machine drives it).
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
        .replace("$org", ".*")
}

/// `expr` with `bool` after every comparison outside label matchers and strings: the same
/// expression, answering 0 or 1 for every series it compares instead of only those that fire.
fn with_bool_comparisons(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    let (mut braces, mut quoted) = (0usize, false);
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => braces += 1,
            '}' if !quoted => braces = braces.saturating_sub(1),
            '=' | '!' | '>' | '<' if !quoted && braces == 0 => {
                let second = chars.next_if_eq(&'=');
                if let Some(second) = second {
                    out.push(second);
                }
                // `=` alone is not a comparison (`==` is); `!` alone does not occur.
                if matches!(c, '>' | '<') || second.is_some() {
                    out.push_str(" bool");
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn bool_comparisons_leave_label_matchers_alone() {
    assert_eq!(
        with_bool_comparisons(r#"up{job="certgate",x!="a>b"} == 0"#),
        r#"up{job="certgate",x!="a>b"} == bool 0"#
    );
    assert_eq!(
        with_bool_comparisons(r#"a{d=~"x.*"} >= 0.9 * b and c < 1"#),
        r#"a{d=~"x.*"} >= bool 0.9 * b and c < bool 1"#
    );
}

/// Traffic of every kind: admitted by network, certificate and browser credential, sent to the
/// portal, an unknown host, an application that is down, sign-ins that work and fail until a
/// limit answers, codes by e-mail, a revocation through Redis, and a policy reload.
fn drive_traffic(w: &PortalWorld) {
    let d = &w.d;
    let from = |addr: &str, host: &str, args: &[&str]| {
        d.curl(
            host,
            "127.0.0.1",
            "/",
            &[&["--interface", addr][..], args].concat(),
        )
        .status
    };
    assert_eq!(from("127.0.0.2", NOORD, &[]), 200, "allowed by network");
    let html = ["-H", "Accept: text/html"];
    assert_eq!(from("127.0.0.3", NOORD, &html), 302, "sent to the portal");
    assert_eq!(
        from("127.0.0.3", NOORD, &[]),
        401,
        "an API client without a credential"
    );
    assert_eq!(
        from("127.0.0.3", "elsewhere.test", &["-k"]),
        421,
        "unknown host"
    );
    assert_eq!(from("127.0.0.2", ZUID, &[]), 502, "the application is down");

    let anna = w.client(NOORD, "127.0.0.3");
    assert_eq!(
        anna.sign_in_by_email("/", "anna@noord.test", PASSWORD)
            .status,
        303
    );
    assert_eq!(anna.get("/").status, 200, "allowed by browser credential");

    let guesser = w.client(NOORD, "127.0.0.5");
    let mut limited = false;
    for attempt in 0..4 {
        let page = guesser.get("/.certgate/login");
        let answer = guesser.post(
            "/.certgate/login",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("username", "anna@noord.test"),
                ("password", &format!("guess {attempt}")),
            ],
        );
        assert!(matches!(answer.status, 401 | 429), "{answer:?}");
        limited |= answer.status == 429;
    }
    assert!(limited, "the per-address limit answered");

    let device = d.issue_client("noord", "bram@noord.test", "1h");
    assert_eq!(d.status_with_cert(d.https, NOORD, &device), 200);
    assert!(d.revoke_serial(&device).status.success());
    assert!(settles(
        || d.status_with_cert(d.https, NOORD, &device) == 401
    ));

    std::fs::write(
        d.path("policies/noord.toml"),
        format!(
            "{}\n# touched\n",
            std::fs::read_to_string(d.path("policies/noord.toml")).unwrap()
        ),
    )
    .unwrap();
}

#[test]
fn every_panel_template_variable_and_alert_expression_returns_data_from_a_real_certgate() {
    let redis = RedisServer::start();
    let mut noord = Org::new("noord", NOORD);
    noord.allow_ips = vec!["127.0.0.2/32"];
    noord.policy_extra = "\n[mfa]\nmethods = [\"email\"]\n".into();
    let mut zuid = Org::new("zuid", ZUID);
    zuid.allow_ips = vec!["127.0.0.0/8"];
    zuid.upstreams = vec![format!("http://127.0.0.1:{}", free_port())];
    let w = PortalWorld::start(
        &[noord, zuid],
        &format!(
            "[store]\nredis_url = \"{}\"\nkey_prefix = \"e2e:\"\n\n[limits]\npassword_failures_per_ip = \"2/15m\"\n",
            redis.url()
        ),
    );
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    let prometheus = Prometheus::start(w.d.admin);
    // A first scrape holds every counter at 0: the rates below rise from it.
    assert!(
        eventually(Duration::from_secs(30), || !prometheus
            .query(r#"certgate_requests_total{job="certgate"}"#)
            .is_empty()),
        "prometheus never scraped certgate:\n{}",
        prometheus.log()
    );
    drive_traffic(&w);
    // Scraped after the last of the traffic (the revocation), and once more.
    assert!(
        eventually(Duration::from_secs(30), || !prometheus
            .query(r#"certgate_requests_total{job="certgate",decision="denied_revoked"} > 0"#)
            .is_empty()),
        "prometheus did not scrape the traffic:\n{}",
        prometheus.log()
    );
    std::thread::sleep(Duration::from_secs(2));

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/certgate.json")).unwrap())
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "certgate");

    // Each variable's `label_values(selector, label)` as Grafana asks it.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let query = variable["query"]["query"].as_str().unwrap();
        let (selector, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(", "))
            .unwrap_or_else(|| panic!("not label_values(selector, label): {query}"));
        let values = prometheus.api(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &as_grafana_sends(selector))],
        );
        let values: Vec<&str> = values
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !values.is_empty(),
            "variable {}: no values",
            variable["name"]
        );
        if label == "org" {
            assert!(
                values.contains(&"noord") && values.contains(&"zuid"),
                "{values:?}"
            );
        }
    }

    // Every panel: each query returns series, and the panel shows what happened.
    let panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 15, "{} panels", panels.len());
    let mut datasources = 0;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap();
        datasources += usize::from(panel["datasource"]["uid"] == "${datasource}");
        let mut shown = Vec::new();
        for target in panel["targets"].as_array().unwrap() {
            let expr = as_grafana_sends(target["expr"].as_str().unwrap());
            let samples = prometheus.query(&expr);
            assert!(!samples.is_empty(), "{title}: no data for {expr}");
            shown.extend(samples.into_iter().map(|(_, v)| v));
        }
        assert!(
            shown.iter().any(|v| v.is_finite() && *v != 0.0),
            "{title}: nothing but zeros or NaN: {shown:?}"
        );
    }
    assert_eq!(
        datasources,
        panels.len(),
        "every panel asks the chosen data source"
    );

    // Series the traffic made, as the panels show them.
    let decisions: Vec<String> = prometheus
        .query(&as_grafana_sends(
            r#"sum by (decision) (rate(certgate_requests_total{job="certgate"}[5m])) > 0"#,
        ))
        .into_iter()
        .map(|(labels, _)| labels["decision"].as_str().unwrap().to_owned())
        .collect();
    for decision in [
        "allowed_ip",
        "allowed_certificate",
        "allowed_browser",
        "redirected",
        "unauthorized",
        "portal",
        "unknown_host",
        "denied_revoked",
    ] {
        assert!(
            decisions.iter().any(|d| d == decision),
            "{decision} not among {decisions:?}"
        );
    }

    // Every alert rule loaded and evaluates; each expression, comparing with `bool`, answers
    // for the series it watches (so the rule can fire when they cross the line).
    let rules_in_file = std::fs::read_to_string(deploy("prometheus/certgate-alerts.yml"))
        .unwrap()
        .matches("- alert: ")
        .count();
    let evaluated = || {
        let groups = prometheus.api("/api/v1/rules", &[("type", "alert")]);
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect::<Vec<Value>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let rules = evaluated();
            rules.len() == rules_in_file && rules.iter().all(|r| r["health"] == "ok")
        }),
        "alert rules not all loaded and healthy: {:#?}",
        evaluated()
    );
    for rule in evaluated() {
        let name = rule["name"].as_str().unwrap();
        let expr = with_bool_comparisons(rule["query"].as_str().unwrap());
        let samples = prometheus.query(&expr);
        assert!(!samples.is_empty(), "{name}: no data for {expr}");
        assert!(
            samples.iter().all(|(_, v)| *v == 0.0 || *v == 1.0),
            "{name}: {samples:?}"
        );
    }
    drop(redis);
}
