#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// The example configuration of ARCHITECTURE.md, verbatim.
const EXAMPLE: &str = r#"[server]
https_listen = "0.0.0.0:8443"
http_listen = "0.0.0.0:8080"          # optional; redirects to https
admin_listen = "127.0.0.1:9100"       # /metrics, /healthz, /readyz, admin API (token)
admin_socket = "data/admin.sock"      # admin API for the CLI (peer-checked)
trusted_proxies = []                  # CIDRs whose X-Forwarded-For / PROXY header is believed
proxy_protocol = false
shutdown_grace = "10s"
upstream_connect_timeout = "3s"
upstream_read_timeout = "60s"
access_log = "json"                   # "json" | "off"

[[server.certificates]]               # chosen by SNI; the first is the default
hosts = ["*.example.org"]
cert = "tls/example.pem"
key = "tls/example.key"

[data]
dir = "data"                          # keys, SQLite file, admin socket

[ca]
dir = "ca"                            # made by `certgate ca init`

[portal]
listen = "127.0.0.1:9090"             # internal only

[store]
redis_url = ""                        # empty: in-process memory (one instance only)
key_prefix = "certgate:"
sentinel_master = ""                  # with redis+sentinel:// URLs

[database]
url = ""                              # empty: SQLite in [data] dir; or postgres://…

[mail]
smtp_url = "smtp://127.0.0.1:2525"    # smtps:// or smtp:// with starttls = true
starttls = false
username = ""
password_file = ""
from = "certgate <no-reply@example.org>"

[sms]
kind = "webhook"                      # "webhook" | "log" (development only)
url = "https://sms.example/send"
token_file = ""

[limits]                              # defaults documented in the README
password_failures_per_pair = "5/15m"
code_failures_per_code = 5
codes_sent_per_account = "5/15m"

[development]
enabled = false                       # allows the sms "log" kind and other conveniences; `certgate check` warns
"#;

const MINIMAL: &str =
    "[[server.certificates]]\nhosts = [\"gate.example.org\"]\ncert = \"c.pem\"\nkey = \"c.key\"\n";

fn errors(text: &str) -> Vec<String> {
    Config::parse(Path::new("certgate.toml"), text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn parses_the_architecture_example() {
    let config = Config::parse(Path::new("/etc/certgate/certgate.toml"), EXAMPLE).unwrap();
    let base = Path::new("/etc/certgate");
    let server = &config.server;
    assert_eq!(server.https_listen, addr("0.0.0.0:8443"));
    assert_eq!(server.http_listen, Some(addr("0.0.0.0:8080")));
    assert_eq!(server.admin_listen, Some(addr("127.0.0.1:9100")));
    assert_eq!(server.admin_socket, base.join("data/admin.sock"));
    assert!(server.trusted_proxies.is_empty());
    assert!(!server.proxy_protocol);
    assert_eq!(server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(server.upstream_connect_timeout, Duration::from_secs(3));
    assert_eq!(server.upstream_read_timeout, Duration::from_secs(60));
    assert_eq!(server.access_log, AccessLog::Json);
    assert_eq!(server.admin_token_file, None);
    assert_eq!(
        server.certificates,
        [CertificateConfig {
            hosts: vec!["*.example.org".into()],
            cert: base.join("tls/example.pem"),
            key: base.join("tls/example.key"),
            line: 15,
        }]
    );
    assert_eq!(server.request_head_timeout, Duration::from_secs(20));
    assert_eq!(server.max_request_head, 64 * 1024);
    assert_eq!(server.max_connections_per_client, 256);
    assert_eq!(config.data.dir, base.join("data"));
    assert_eq!(config.ca.dir, base.join("ca"));
    assert_eq!(config.policies.dir, base.join("policies"));
    assert_eq!(config.portal.listen, addr("127.0.0.1:9090"));
    assert_eq!(
        config.store,
        StoreConfig {
            redis_url: None,
            key_prefix: "certgate:".into(),
            sentinel_master: None
        }
    );
    assert_eq!(config.database.url, None);
    assert_eq!(
        config.database.audit_retention,
        Duration::from_secs(365 * 86_400),
        "audit entries are kept a year"
    );
    assert_eq!(
        config.mail,
        Some(MailConfig {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            host: "127.0.0.1".into(),
            port: 2525,
            security: SmtpSecurity::Plain,
            username: None,
            password_file: None,
            from: "certgate <no-reply@example.org>".into(),
        })
    );
    assert_eq!(
        config.sms,
        Some(SmsConfig::Webhook {
            url: "https://sms.example/send".into(),
            token_file: None
        })
    );
    assert_eq!(
        config.limits,
        LimitsConfig {
            password_failures_per_pair: RateLimit {
                count: 5,
                window: Duration::from_secs(900),
            },
            password_failures_per_ip: RateLimit {
                count: 30,
                window: Duration::from_secs(900),
            },
            code_failures_per_code: 5,
            codes_sent_per_account: RateLimit {
                count: 5,
                window: Duration::from_secs(900),
            },
            sign_in_starts_per_ip: RateLimit {
                count: 300,
                window: Duration::from_secs(1200),
            },
            device_code_lifetime: Duration::from_secs(600),
            admin_allowlist_min_prefix_v4: 16,
            admin_allowlist_min_prefix_v6: 48,
        }
    );
    assert_eq!(config.limits, LimitsConfig::default());
    assert!(!config.development.enabled);
    assert_eq!(config.source, Path::new("/etc/certgate/certgate.toml"));
}

#[test]
fn defaults_for_a_minimal_config() {
    let config = Config::parse(Path::new("conf/certgate.toml"), MINIMAL).unwrap();
    assert_eq!(config.server.https_listen, addr("0.0.0.0:8443"));
    assert_eq!(config.server.http_listen, None);
    assert_eq!(config.server.admin_listen, Some(addr("127.0.0.1:9100")));
    assert_eq!(
        config.server.admin_socket,
        Path::new("conf/data/admin.sock")
    );
    assert_eq!(config.policies.dir, Path::new("conf/policies"));
    assert_eq!(config.server.certificates[0].cert, Path::new("conf/c.pem"));
    assert_eq!(config.mail, None);
    assert_eq!(config.sms, None);
    assert_eq!(config.store.key_prefix, "certgate:");
    assert_eq!(
        config.warnings(),
        [
            "store.redis_url is empty: sessions and rate limits live in this process's memory; \
             run only one instance",
            "mail.smtp_url is empty: e-mail codes and notifications cannot be sent",
            "no [sms] section: SMS codes cannot be sent",
        ]
    );
}

#[test]
fn reads_the_less_common_forms() {
    let text = format!(
        "{MINIMAL}[server]\nadmin_listen = \"\"\nadmin_token_file = \"secrets/admin-token\"\n\
         trusted_proxies = [\"10.0.0.7/8\", \"::1\"]\naccess_log = \"off\"\n\
         [policies]\ndir = \"/srv/policies\"\n[data]\ndir = \"/var/lib/certgate\"\n\
         [store]\nredis_url = \"redis+sentinel://s1:26379\"\nsentinel_master = \"main\"\n\
         [database]\nurl = \"postgres://db/certgate\"\n\
         [mail]\nsmtp_url = \"smtps://mail.example.org\"\nfrom = \"x@example.org\"\n\
         [sms]\nkind = \"log\"\n[development]\nenabled = true\n\
         [limits]\npassword_failures_per_pair = \"10/1h\"\n"
    );
    let config = Config::parse(Path::new("certgate.toml"), &text).unwrap();
    assert_eq!(config.server.admin_listen, None);
    assert_eq!(
        config.server.admin_token_file.as_deref(),
        Some(Path::new("secrets/admin-token"))
    );
    assert_eq!(
        config.server.trusted_proxies,
        [
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "::1/128".parse().unwrap()
        ]
    );
    assert_eq!(config.server.access_log, AccessLog::Off);
    assert_eq!(config.policies.dir, Path::new("/srv/policies"));
    assert_eq!(
        config.server.admin_socket,
        Path::new("/var/lib/certgate/admin.sock")
    );
    assert_eq!(config.store.sentinel_master.as_deref(), Some("main"));
    assert_eq!(
        config.database.url.as_deref(),
        Some("postgres://db/certgate")
    );
    let mail = config.mail.as_ref().unwrap();
    assert_eq!((mail.security, mail.port), (SmtpSecurity::Tls, 465));
    assert_eq!(config.sms, Some(SmsConfig::Log));
    assert_eq!(
        config.limits.password_failures_per_pair,
        RateLimit {
            count: 10,
            window: Duration::from_secs(3600)
        }
    );
    assert!(config.warnings()[0].starts_with("development.enabled = true"));
}

#[test]
fn reports_every_error_with_line_and_key() {
    let text = r#"# certgate
[server]
http_listen = "0.0.0.0:80"
admin_listen = "127.0.0.1:9100"
trusted_proxies = ["10.0.0.0/8", "proxy.example"]
proxy_protocol = "no"
shutdown_grace = "10"
upstream_connect_timeout = "0s"
access_log = "text"
tls = true


https_listen = "x"

[[server.certificates]]
hosts = ["*.example.org", "*.*.example.org"]
cert = "tls/example.pem"

[store]
redis_url = "http://redis"
[mail]
smtp_url = "smtps://mail.example.org"
starttls = true
from = "x@example.org"
[sms]
kind = "log"
[limits]
password_failures_per_pair = "5"
code_failures_per_code = 0
codes_sent_per_account = "0/15m"
[portal]
listen = "localhost:9090"
[extra]
"#;
    assert_eq!(
        errors(text),
        [
            "certgate.toml:5: server.trusted_proxies[1]: \"proxy.example\" is not an IP address or CIDR",
            "certgate.toml:6: server.proxy_protocol: expected true or false, found string",
            "certgate.toml:7: server.shutdown_grace: \"10\" is not a duration: missing unit (use ms, s, m, h or d)",
            "certgate.toml:8: server.upstream_connect_timeout: \"0s\" must be longer than zero",
            "certgate.toml:9: server.access_log: \"text\" is not one of \"json\", \"off\"",
            "certgate.toml:10: server.tls: unknown key",
            "certgate.toml:13: server.https_listen: \"x\" is not a socket address",
            "certgate.toml:15: server.certificates[0].key: missing required key",
            "certgate.toml:16: server.certificates[0].hosts[1]: \"*.*.example.org\" is not a host name or *.wildcard",
            "certgate.toml:20: store.redis_url: \"http://redis\" is not a redis://, rediss://, redis+sentinel:// or unix:// URL",
            "certgate.toml:23: mail.starttls: starttls applies to smtp:// URLs; smtps:// is TLS from the start",
            "certgate.toml:26: sms.kind: \"log\" is only allowed with development.enabled = true",
            "certgate.toml:28: limits.password_failures_per_pair: \"5\" is not a rate limit (<count>/<duration>, e.g. \"5/15m\")",
            "certgate.toml:29: limits.code_failures_per_code: must be a positive whole number",
            "certgate.toml:30: limits.codes_sent_per_account: \"0/15m\" must allow at least one event",
            "certgate.toml:32: portal.listen: \"localhost:9090\" is not a socket address",
            "certgate.toml:33: extra: unknown key",
        ]
    );
}

#[test]
fn requires_a_certificate() {
    assert_eq!(
        errors("[server]\nhttps_listen = \"0.0.0.0:443\"\n"),
        ["certgate.toml:1: server.certificates: at least one [[server.certificates]] entry (or [server.acme]) is required"]
    );
    assert_eq!(
        errors(""),
        ["certgate.toml: server.certificates: at least one [[server.certificates]] entry (or [server.acme]) is required"]
    );
}

#[test]
fn acme_alone_is_enough_and_its_settings_are_checked() {
    let config = Config::parse(
        Path::new("conf/certgate.toml"),
        r#"[server]
http_listen = "0.0.0.0:80"

[server.acme]
directory = "https://acme.example/directory"
hosts = ["Noord.Example.org", "zuid.example.org", "noord.example.org"]
contact = ["mailto:ops@example.org"]
ca_file = "acme-root.pem"
"#,
    )
    .unwrap();
    assert!(config.server.certificates.is_empty());
    let acme = config.server.acme.unwrap();
    assert_eq!(acme.hosts, ["noord.example.org", "zuid.example.org"]);
    assert_eq!(
        acme.renew_before,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        acme.ca_file.as_deref(),
        Some(Path::new("conf/acme-root.pem"))
    );

    assert_eq!(
        errors(
            r#"[server.acme]
directory = "http://acme.example/directory"
hosts = ["*.example.org", "noord.example.org"]
contact = ["ops@example.org"]
renew_before = "0s"
"#
        ),
        [
            "certgate.toml:1: server.acme.directory: [server.acme] needs server.http_listen: the ACME CA checks http://HOST/.well-known/acme-challenge/ there (port 80 to the world)",
            "certgate.toml:1: server.certificates: at least one [[server.certificates]] entry (or [server.acme]) is required",
            "certgate.toml:2: server.acme.directory: \"http://acme.example/directory\" is not the https:// URL of an ACME directory",
            "certgate.toml:3: server.acme.hosts[0]: \"*.example.org\" is not a host name",
            "certgate.toml:4: server.acme.contact[0]: \"ops@example.org\" is not a mailto: address",
            "certgate.toml:5: server.acme.renew_before: \"0s\" must be longer than zero",
        ]
    );
}

#[test]
fn reports_syntax_and_read_errors() {
    let found = errors("[server\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("certgate.toml:1: invalid TOML: "),
        "{found:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("certgate.toml");
    let error = Config::load(&missing).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{error}"
    );
}

#[test]
fn loads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certgate.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.policies.dir, dir.path().join("policies"));
}

#[test]
fn requires_what_the_chosen_kinds_need() {
    let text = format!(
        "{MINIMAL}[store]\nredis_url = \"redis+sentinel://s1:26379\"\n[mail]\n\
         smtp_url = \"smtp://mail.example.org\"\nstarttls = true\n[sms]\nurl = \"http://sms.example\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "certgate.toml:5: store.sentinel_master: required with a redis+sentinel:// URL",
            "certgate.toml:7: mail.from: required when smtp_url is set",
            "certgate.toml:11: sms.url: \"http://sms.example\" must be an https:// URL (http:// is allowed only for loopback hosts)",
        ]
    );
}

#[test]
fn debug_output_hides_url_passwords() {
    let store = StoreConfig {
        redis_url: Some("rediss://certgate:s3cr/et@redis.example:6380/2".into()),
        key_prefix: "certgate:".into(),
        sentinel_master: None,
    };
    let database = DatabaseConfig {
        url: Some("postgres://certgate:hunter2@db.example/certgate".into()),
        audit_retention: Duration::from_secs(86_400),
    };
    let shown = format!("{store:?} {database:?}");
    assert!(
        !shown.contains("s3cr") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(
        shown.contains("redis.example:6380/2") && shown.contains("db.example/certgate"),
        "{shown}"
    );
}

#[test]
fn errors_about_urls_never_show_their_secrets() {
    // `certgate check` runs before every start; what it prints ends up in the journal.
    let text = format!(
        "{MINIMAL}[database]\nurl = \"postgresql+psycopg://certgate:hunter2@db/x\"\n\
         [store]\nredis_url = \"redis:/:pw-redis@cache\"\n\
         [mail]\nsmtp_url = \"smtp://relay:S3cret@mail.example.org:587\"\nfrom = \"x@example.org\"\n\
         [sms]\nkind = \"webhook\"\nurl = \"http://sms.example/send?key=k3y\"\ntoken_file = \"t\"\n"
    );
    let errors = errors(&text);
    assert_eq!(
        errors,
        [
            "certgate.toml:6: database.url: \"postgresql+psycopg://***@db/x\" is not a postgres:// or sqlite: URL",
            "certgate.toml:8: store.redis_url: \"***@cache\" is not a redis://, rediss://, redis+sentinel:// or unix:// URL",
            "certgate.toml:10: mail.smtp_url: \"smtp://***@mail.example.org:587\" must not contain user information",
            "certgate.toml:14: sms.url: \"http://sms.example/send?…\" must be an https:// URL (http:// is allowed only for loopback hosts)",
        ]
    );
}

#[test]
fn admin_allow_list_prefix_limits_are_read_and_checked() {
    let config = Config::parse(
        Path::new("certgate.toml"),
        &format!(
            "{MINIMAL}[limits]\nadmin_allowlist_min_prefix_v4 = 24\nadmin_allowlist_min_prefix_v6 = 56\n"
        ),
    )
    .unwrap();
    assert_eq!(
        config.limits.admin_allow_list(),
        crate::AdminAllowListLimits {
            min_prefix_v4: 24,
            min_prefix_v6: 56,
            max_entries: crate::ADMIN_ALLOW_LIST_MAX_ENTRIES,
        }
    );
    assert_eq!(
        Config::parse(Path::new("certgate.toml"), MINIMAL)
            .unwrap()
            .limits
            .admin_allow_list(),
        crate::AdminAllowListLimits::default()
    );
    assert_eq!(
        errors(&format!(
            "{MINIMAL}[limits]\nadmin_allowlist_min_prefix_v4 = 0\nadmin_allowlist_min_prefix_v6 = 129\n"
        )),
        [
            "certgate.toml:6: limits.admin_allowlist_min_prefix_v4: must be a prefix length from 1 to 32",
            "certgate.toml:7: limits.admin_allowlist_min_prefix_v6: must be a prefix length from 1 to 128",
        ]
    );
    assert_eq!(
        errors(&format!(
            "{MINIMAL}[limits]\nadmin_allowlist_min_prefix_v4 = \"/16\"\n"
        )),
        ["certgate.toml:6: limits.admin_allowlist_min_prefix_v4: expected an integer, found string"]
    );
}

#[test]
fn connection_limits_are_checked() {
    let text = format!(
        "[server]\nrequest_head_timeout = \"0s\"\nmax_request_head = 100\nmax_connections_per_client = 0\n{MINIMAL}"
    );
    let errors = errors(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("server.request_head_timeout") && e.contains("longer than zero")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("server.max_request_head") && e.contains("4096 to 1048576")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("server.max_connections_per_client") && e.contains("1 to 1000000")),
        "{errors:?}"
    );
    let fine = format!(
        "[server]\nrequest_head_timeout = \"10s\"\nmax_request_head = 16384\nmax_connections_per_client = 8\n{MINIMAL}"
    );
    let config = Config::parse(Path::new("certgate.toml"), &fine).unwrap();
    assert_eq!(config.server.request_head_timeout, Duration::from_secs(10));
    assert_eq!(config.server.max_request_head, 16384);
    assert_eq!(config.server.max_connections_per_client, 8);
}
