//! Logs as an operator reads them: one request id in the access log, in the portal's lines and
//! at the upstream (kept only from a trusted proxy, and only when sane), and `--log-format`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certgate_e2e::{
    certgate_bin, eventually, http_get, settles, Deployment, NewUser, Org, PortalWorld, SETTLE,
};
use serde_json::Value;

const HOST: &str = "noord.test";
const PASSWORD: &str = "correct horse battery";
const TRUSTED_PROXY: &str = "127.0.0.4";

/// Every address on loopback is allow-listed; 127.0.0.4 is a trusted proxy.
fn deployment() -> Deployment {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.0/8"];
    let mut d = Deployment::new(&[noord]);
    d.extra_server_config = format!("trusted_proxies = [\"{TRUSTED_PROXY}/32\"]");
    d.write_config();
    d
}

/// The JSON lines of a log (other lines are skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The access-log entry for `path`, once the gateway has written it.
fn access_entry(log: impl Fn() -> String, path: &str) -> Value {
    let find = || {
        json_lines(&log())
            .into_iter()
            .find(|v| v["target"] == "access" && v["fields"]["path"] == path)
    };
    assert!(
        settles(|| find().is_some()),
        "no access line for {path}:\n{}",
        log()
    );
    find().unwrap()
}

fn is_made_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn one_request_id_reaches_the_upstream_and_the_access_log_and_only_a_trusted_proxy_sets_it() {
    let mut d = deployment();
    d.start();
    let log = || d.gateway().log_text();
    // (path, from, X-Request-Id sent, kept?)
    let long = "x".repeat(129);
    let cases = [
        (
            "/untrusted",
            "127.0.0.3",
            Some("chosen-by-the-client"),
            false,
        ),
        ("/none", "127.0.0.3", None, false),
        ("/trusted", TRUSTED_PROXY, Some("edge-7f3a/42"), true),
        ("/trusted-spaces", TRUSTED_PROXY, Some("two words"), false),
        ("/trusted-long", TRUSTED_PROXY, Some(long.as_str()), false),
    ];
    let mut made = Vec::new();
    for (path, from, sent, kept) in cases {
        let header = sent.map(|id| format!("X-Request-Id: {id}"));
        let mut args = vec!["--interface", from];
        if let Some(header) = &header {
            args.extend(["-H", header.as_str()]);
        }
        let response = d.curl(HOST, "127.0.0.1", path, &args);
        assert_eq!(response.status, 200, "{path}: {response:?}");
        let upstream = response
            .upstream_header("x-request-id")
            .unwrap_or_else(|| panic!("{path}: the upstream got no X-Request-Id"));
        let values = response.json()["headers"]["x-request-id"].clone();
        assert_eq!(values.as_array().map(Vec::len), Some(1), "{path}: {values}");
        if kept {
            assert_eq!(Some(upstream.as_str()), sent, "{path}");
        } else {
            assert!(is_made_id(&upstream), "{path}: {upstream}");
            made.push(upstream.clone());
        }
        let entry = access_entry(log, path);
        assert_eq!(entry["fields"]["request_id"], upstream.as_str(), "{entry}");
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 4, "every request gets its own id");

    // CGI, PHP and Rack read `X_Request_Id` as `X-Request-Id`: it does not get through either.
    let underscored = d.curl(
        HOST,
        "127.0.0.1",
        "/underscored",
        &["--interface", "127.0.0.3", "-H", "X_Request_Id: chosen"],
    );
    assert_eq!(underscored.status, 200, "{underscored:?}");
    assert_eq!(underscored.upstream_header("x_request_id"), None);
    assert!(is_made_id(
        &underscored.upstream_header("x-request-id").unwrap()
    ));
}

#[test]
fn the_portals_lines_carry_the_request_id_of_the_access_log() {
    let mut noord = Org::new("noord", HOST);
    noord.policy_extra = "\n[mfa]\nmethods = [\"authenticator\", \"email\"]\n".into();
    let w = PortalWorld::start(&[noord], "");
    w.add_user(&NewUser::personal("noord", "anna@noord.test", PASSWORD));
    let client = w.client(HOST, "127.0.0.1");
    let done = client.sign_in_by_email("/", "anna@noord.test", PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);

    let log = || w.d.gateway().log_text();
    let signed_in = || {
        json_lines(&log())
            .into_iter()
            .find(|v| v["fields"]["message"] == "signed in")
    };
    assert!(settles(|| signed_in().is_some()), "{}", log());
    let line = signed_in().unwrap();
    assert_eq!(line["fields"]["account"], "anna@noord.test", "{line}");
    let id = line["span"]["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id on the portal's line: {line}"))
        .to_owned();
    assert!(is_made_id(&id), "{line}");
    let access = json_lines(&log())
        .into_iter()
        .filter(|v| v["target"] == "access" && v["fields"]["request_id"] == id.as_str())
        .collect::<Vec<_>>();
    assert_eq!(access.len(), 1, "one access line with {id}:\n{}", log());
    assert_eq!(access[0]["fields"]["path"], "/.certgate/mfa/code");
    assert_eq!(access[0]["fields"]["method"], "POST");
    assert_eq!(access[0]["fields"]["upstream"], "portal");
}

/// `certgate ARGS` with `env`, stderr and stdout to `log`, without `RUST_LOG` (the default
/// filter); killed when dropped.
struct Running(Child);

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(certgate_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("CERTGATE_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn log_format_text_is_for_people_and_json_for_collectors() {
    let mut d = deployment();
    // `auto`, with stderr in a file: JSON lines.
    d.start();
    d.curl(HOST, "127.0.0.1", "/auto", &[]);
    access_entry(|| d.gateway().log_text(), "/auto");
    let auto = d.gateway().log_text();
    for line in auto.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(d.stop_gateway(Duration::from_secs(5)));

    let config = d.config();
    // Starts `certgate ARGS`, sends one request to `path`, and returns the log once it shows.
    let run = |args: &[&str], env: &[(&str, &str)], path: &str, shows: &dyn Fn(&str) -> bool| {
        let file = d.path(&format!("{}.log", path.trim_start_matches('/')));
        let _gateway = Running::start(args, env, &file);
        let (admin, https) = (d.admin, d.https);
        let ready = eventually(SETTLE, || {
            matches!(http_get(admin, "/readyz"), Some((200, _)))
                && TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
        let text = || std::fs::read_to_string(&file).unwrap_or_default();
        assert!(ready, "did not start:\n{}", text());
        assert_eq!(d.curl(HOST, "127.0.0.1", path, &[]).status, 200);
        assert!(settles(|| shows(&text())), "{path}:\n{}", text());
        text()
    };

    // The option is global: after the subcommand too.
    let text = run(
        &["serve", "--config", &config, "--log-format", "text"],
        &[],
        "/text",
        &|log| log.contains(r#"path="/text""#),
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(!line.starts_with('{'), "JSON in text mode: {line}");
        assert!(
            !line.contains(".rs") && !line.contains("ThreadId"),
            "a source file or thread in: {line}"
        );
        // Pingora's own records stay below the default filter unless they warn.
        assert!(
            !(line.contains("INFO") && line.contains("pingora")),
            "Pingora floods: {line}"
        );
    }
    let access = lines
        .iter()
        .find(|l| l.contains(r#"path="/text""#))
        .unwrap();
    assert!(access.contains(" INFO access: "), "{access}");
    let id = access
        .split(' ')
        .find_map(|field| field.strip_prefix("request_id="))
        .map(|id| id.trim_matches('"'))
        .unwrap_or_else(|| panic!("no request id in: {access}"));
    assert!(is_made_id(id), "{access}");
    assert!(access.contains("status=200"), "{access}");

    // The flag wins over the environment.
    let json = run(
        &["--log-format", "json", "serve", "--config", &config],
        &[("CERTGATE_LOG_FORMAT", "text")],
        "/json",
        &|log| log.contains("\"/json\""),
    );
    let entries: Vec<Value> = json
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(entries
        .iter()
        .any(|v| v["target"] == "access" && v["fields"]["path"] == "/json"));
    assert!(
        !entries.iter().any(|v| v["level"] == "INFO"
            && v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("pingora"))),
        "Pingora floods:\n{json}"
    );

    // And the environment alone chooses too.
    run(
        &["serve", "--config", &config],
        &[("CERTGATE_LOG_FORMAT", "text")],
        "/env",
        &|log| log.contains("INFO access: ") && log.contains(r#"path="/env""#),
    );
}
