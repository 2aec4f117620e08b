//! The organisation admins' allow-list layer across two instances sharing one redis-server and
//! one PostgreSQL database: a bad list is refused line by line and changes nothing, networks
//! broader than the limit are refused, a good save admits the address at both instances within
//! two seconds, a save based on an outdated version is refused, every save is audited, and a
//! restarted instance loads the layer from SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use certgate_e2e::{
    certgate, certgate_bin, certgate_ok, settles, throwaway_postgres_database, Deployment,
    Instance, Org, RedisServer,
};

const HOST: &str = "noord.test";

struct World {
    d: Deployment,
    second: Instance,
    database: String,
    _redis: RedisServer,
}

fn start() -> World {
    let redis = RedisServer::start();
    let database = throwaway_postgres_database();
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    let mut d = Deployment::new(&[noord]);
    d.extra_sections = format!(
        "[store]\nredis_url = \"{}\"\nkey_prefix = \"e2e:\"\n\n[database]\nurl = \"{database}\"\n",
        redis.url()
    );
    d.write_config();
    let mut second = d.add_instance("second");
    d.start();
    second.start();
    World {
        d,
        second,
        database,
        _redis: redis,
    }
}

impl World {
    /// `X-Certgate-Auth` as the app saw it for a request from `addr` to the instance at
    /// `https`, or the status when the request was not admitted.
    fn admitted_as(&self, https: u16, addr: &str) -> Result<String, u16> {
        let response = self
            .d
            .curl_port(https, HOST, "127.0.0.1", "/", &["--interface", addr]);
        if response.status != 200 {
            return Err(response.status);
        }
        assert_eq!(
            response.upstream_header("x-certgate-org").as_deref(),
            Some("noord")
        );
        Ok(response
            .upstream_header("x-certgate-auth")
            .unwrap_or_default())
    }

    fn admitted_by_ip_at_both(&self, addr: &str) -> bool {
        [self.d.https, self.second.https]
            .into_iter()
            .all(|https| self.admitted_as(https, addr).as_deref() == Ok("ip"))
    }

    fn refused_at_both(&self, addr: &str) -> bool {
        [self.d.https, self.second.https]
            .into_iter()
            .all(|https| self.admitted_as(https, addr) == Err(401))
    }

    fn show(&self, config: &str) -> serde_json::Value {
        let out = certgate_ok(&[
            "allowlist",
            "show",
            "--config",
            config,
            "--org",
            "noord",
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    }

    fn set(&self, config: &str, text: &str, extra: &[&str]) -> Output {
        let file = self
            .d
            .path(&format!("list-{}.txt", certgate_e2e::free_port()));
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap().to_owned();
        let mut args = vec![
            "allowlist",
            "set",
            "--config",
            config,
            "--org",
            "noord",
            "--file",
            &file,
        ];
        args.extend_from_slice(extra);
        certgate(&args)
    }

    /// The allow-list saves in the shared database's audit log: (subject, detail).
    fn audited_saves(&self) -> Vec<(String, String)> {
        let out = Command::new("psql")
            .arg(&self.database)
            .args(["-v", "ON_ERROR_STOP=1", "-AtF", "|", "-c"])
            .arg(
                "SELECT subject, detail FROM audit_log \
                 WHERE org = 'noord' AND action = 'allowlist.save' ORDER BY id",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_once('|'))
            .map(|(subject, detail)| (subject.to_owned(), detail.to_owned()))
            .collect()
    }

    /// A raw PUT on an instance's admin socket: (status, JSON body).
    fn put_raw(&self, socket: &std::path::Path, body: &str) -> (u16, serde_json::Value) {
        certgate_e2e::admin_socket_call(socket, "PUT", "/api/v1/allowlist/noord", Some(body))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn admin_allow_list_saves_are_checked_versioned_audited_and_reach_every_instance() {
    let w = start();
    let first = w.d.config();
    let second = w.second.config.clone();

    // Nothing saved yet: version 0; the policy file's entry is shown read-only with its source.
    let view = w.show(&first);
    assert_eq!(view["version"], 0);
    assert_eq!(view["entries"], serde_json::json!([]));
    assert_eq!(view["files"][0]["network"], "127.0.0.2/32");
    assert!(
        view["files"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("allow_ips[0] noord.toml:"),
        "{view}"
    );
    assert_eq!(w.admitted_as(w.d.https, "127.0.0.2").as_deref(), Ok("ip"));
    assert!(w.refused_at_both("127.0.0.7"));

    // A file with bad lines: each is named, the CLI fails, and nothing changes anywhere.
    let bad = w.set(
        &first,
        "# office\n127.0.0.7  # front desk\n10.0.0.300\n\n2001:db8::/32 # too wide\n",
        &[],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let message = stderr(&bad);
    assert!(
        message.contains("nothing was saved: 2 problems"),
        "{message}"
    );
    assert!(
        message.contains("line 3: \"10.0.0.300\": not an IP address or CIDR"),
        "{message}"
    );
    assert!(
        message.contains(
            "line 5: \"2001:db8::/32\": broader than allowed: IPv6 networks need a prefix of /48"
        ),
        "{message}"
    );
    assert!(!message.contains("line 2"), "{message}");
    assert_eq!(w.show(&first)["version"], 0);
    assert_eq!(w.show(&second)["version"], 0);
    assert!(w.refused_at_both("127.0.0.7"));

    // Wider than the default /16 limit.
    let everything = w.set(&first, "0.0.0.0/0\n", &[]);
    assert_eq!(everything.status.code(), Some(1));
    assert!(
        stderr(&everything).contains(
            "line 1: \"0.0.0.0/0\": broader than allowed: IPv4 networks need a prefix of /16"
        ),
        "{}",
        stderr(&everything)
    );
    let (status, body) = w.put_raw(
        &w.d.path("data/admin.sock"),
        r#"{"version": 0, "text": "10.0.0.0/8\n::/0\n"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(w.show(&first)["version"], 0);

    // A good save, from standard input: admitted at both instances within two seconds.
    let mut child = Command::new(certgate_bin())
        .args([
            "allowlist",
            "set",
            "--config",
            &first,
            "--org",
            "noord",
            "--file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"127.0.0.7  # front desk\n")
        .unwrap();
    let saved = child.wait_with_output().unwrap();
    let started = Instant::now();
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(
        String::from_utf8_lossy(&saved.stdout).contains("saved version 1"),
        "{}",
        String::from_utf8_lossy(&saved.stdout)
    );
    assert!(
        settles(|| w.admitted_by_ip_at_both("127.0.0.7")),
        "127.0.0.7 is admitted at both instances within 2 s"
    );
    println!(
        "admin allow-list entry in force at both instances after {:?}",
        started.elapsed()
    );
    let view = w.show(&second);
    assert_eq!(view["version"], 1);
    assert_eq!(view["entries"][0]["network"], "127.0.0.7/32");
    assert_eq!(view["entries"][0]["note"], "front desk");
    assert!(view["entries"][0]["added_by"]
        .as_str()
        .unwrap()
        .starts_with("operator "));
    let explained = certgate_ok(&[
        "policy",
        "explain",
        "--config",
        &first,
        "--host",
        HOST,
        "--ip",
        "127.0.0.7",
    ]);
    assert!(
        explained.starts_with("admitted: admin allow list (front desk) 127.0.0.7/32"),
        "{explained}"
    );

    // Saves based on the version before are refused, on either instance, and change nothing.
    let stale = w.set(&second, "127.0.0.8\n", &["--expect-version", "0"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        stderr(&stale).contains(
            "changed by someone else meanwhile (you edited version 0, it is now at version 1)"
        ),
        "{}",
        stderr(&stale)
    );
    let (status, body) = w.put_raw(
        &w.d.path("data/admin.sock"),
        r#"{"version": 0, "text": "127.0.0.8\n"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was saved"),
        "{body}"
    );
    assert_eq!(w.show(&first)["version"], 1);
    assert!(w.refused_at_both("127.0.0.8"));

    // A save at the second instance reaches the first the same way.
    let replaced = w.set(
        &second,
        "127.0.0.9 # new desk\n",
        &["--expect-version", "1"],
    );
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert!(
        settles(|| w.admitted_by_ip_at_both("127.0.0.9") && w.refused_at_both("127.0.0.7")),
        "the replaced list is in force at both instances within 2 s"
    );

    // Both saves are in the audit log, naming what they changed; the refused ones are not.
    assert_eq!(
        w.audited_saves(),
        [
            ("version 1".to_owned(), "added 127.0.0.7/32".to_owned()),
            (
                "version 2".to_owned(),
                "added 127.0.0.9/32; removed 127.0.0.7/32".to_owned()
            ),
        ]
    );

    // A restarted instance loads the layer from SQL before it admits anything.
    let mut w = w;
    drop(w.second.process.take());
    w.second.start();
    assert_eq!(
        w.admitted_as(w.second.https, "127.0.0.9").as_deref(),
        Ok("ip")
    );
    assert_eq!(w.admitted_as(w.second.https, "127.0.0.7"), Err(401));
}

#[test]
fn an_unknown_organisation_is_not_found() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    d.start();
    let out = certgate(&[
        "allowlist",
        "show",
        "--config",
        &d.config(),
        "--org",
        "zuid",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no organisation \"zuid\""),
        "{}",
        stderr(&out)
    );
}
