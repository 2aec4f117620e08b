//! Who gets in: allow-listed networks, device certificates, and everyone else to the portal.
//! Against the real `certgate serve` and demo upstream, with curl as the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use certgate_e2e::{http1_get, tls_connect, Deployment, Org};

const HOST: &str = "noord.test";
const HTML: [&str; 2] = ["-H", "Accept: text/html"];

fn deployment() -> Deployment {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2", "::1"];
    noord.public_paths = vec!["/public"];
    let mut zuid = Org::new("zuid", "zuid.test");
    zuid.allow_ips = vec!["127.0.0.5"];
    let mut d = Deployment::new(&[noord, zuid]);
    d.start();
    d
}

#[test]
fn allow_listed_networks_are_admitted_and_others_sent_to_sign_in() {
    let d = deployment();

    let v4 = d.curl(HOST, "127.0.0.1", "/app?x=1", &["--interface", "127.0.0.2"]);
    assert_eq!(v4.status, 200, "{v4:?}");
    assert_eq!(v4.upstream_header("x-certgate-auth").as_deref(), Some("ip"));
    assert_eq!(
        v4.upstream_header("x-certgate-org").as_deref(),
        Some("noord")
    );
    assert_eq!(
        v4.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        v4.upstream_header("x-certgate-mfa").as_deref(),
        Some("none")
    );
    assert_eq!(v4.upstream_header("x-certgate-user"), None);

    let v6 = d.curl(HOST, "::1", "/", &[]);
    assert_eq!(v6.status, 200, "{v6:?}");
    assert_eq!(v6.upstream_header("x-certgate-auth").as_deref(), Some("ip"));
    assert_eq!(
        v6.upstream_header("x-forwarded-for").as_deref(),
        Some("::1")
    );

    // Not on the list: a browser is redirected to sign in, an API client gets 401.
    let page = d.curl(
        HOST,
        "127.0.0.1",
        "/rooster?week=12",
        &[&["--interface", "127.0.0.3"][..], &HTML].concat(),
    );
    assert_eq!(page.status, 302);
    assert_eq!(
        page.header("location").as_deref(),
        Some("/.certgate/login?return_to=/rooster%3Fweek%3D12")
    );
    let api = d.curl(
        HOST,
        "127.0.0.1",
        "/api/clients",
        &["--interface", "127.0.0.3"],
    );
    assert_eq!(api.status, 401);
    assert_eq!(
        api.json()["login_url"],
        "/.certgate/login?return_to=/api/clients"
    );

    // Another organisation's network does not open this one.
    let other = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.5"]);
    assert_eq!(other.status, 401);

    // The login URL is the portal's sign-in page, in the organisation's language.
    let login = d.curl(HOST, "127.0.0.1", "/.certgate/login?return_to=/", &HTML);
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("Sign in to Org noord"),
        "{}",
        login.body
    );

    // An unknown host gets a clear page.
    let unknown = d.curl("elsewhere.test", "127.0.0.1", "/", &["-k"]);
    assert_eq!(unknown.status, 421);
    assert!(unknown.body.contains("not served here"));

    // Metrics count each decision per organisation.
    assert!(d.metric("certgate_requests_total{decision=\"allowed_ip\",org=\"noord\"}") >= 2.0);
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"redirected\",org=\"noord\"}"),
        1.0
    );
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"unauthorized\",org=\"noord\"}"),
        2.0
    );
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"unknown_host\",org=\"\"}"),
        1.0
    );

    // The access log is JSON, one line a request.
    let log = d.gateway().log_text();
    let entry = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["path"] == "/rooster")
        .expect("an access log line for /rooster");
    assert_eq!(entry["fields"]["decision"], "redirected");
    assert_eq!(entry["fields"]["status"], 302);
    assert_eq!(entry["fields"]["client_ip"], "127.0.0.3");
}

#[test]
fn a_valid_certificate_is_admitted_with_its_identity_over_http1_and_http2() {
    let d = deployment();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let cert = [
        "--cert",
        anna.cert.to_str().unwrap(),
        "--key",
        anna.key.to_str().unwrap(),
    ];
    for version in ["--http1.1", "--http2"] {
        let r = d.curl(
            HOST,
            "127.0.0.1",
            "/",
            &[&cert[..], &[version, "--interface", "127.0.0.3"]].concat(),
        );
        assert_eq!(r.status, 200, "{version}: {r:?}");
        assert_eq!(
            r.upstream_header("x-certgate-auth").as_deref(),
            Some("certificate")
        );
        assert_eq!(
            r.upstream_header("x-certgate-user").as_deref(),
            Some("anna@noord.test")
        );
        assert_eq!(
            r.upstream_header("x-certgate-device").as_deref(),
            Some(anna.device.as_str())
        );
        assert_eq!(
            r.upstream_header("x-certgate-org").as_deref(),
            Some("noord")
        );
        assert_eq!(r.upstream_header("x-certgate-mfa").as_deref(), Some("none"));
    }
    // From an allow-listed address the certificate still wins: it names a person.
    let both = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[&cert[..], &["--interface", "127.0.0.2"]].concat(),
    );
    assert_eq!(
        both.upstream_header("x-certgate-auth").as_deref(),
        Some("certificate")
    );
    assert!(d.metric("certgate_tls_handshakes_total{client_certificate=\"valid\"}") >= 3.0);
}

#[test]
fn expired_foreign_other_org_and_revoked_certificates_reach_the_sign_in_page() {
    let d = deployment();
    let expired = d.issue_client("noord", "old@noord.test", "1s");
    let other_org = d.issue_client("zuid", "zara@zuid.test", "1h");
    let foreign_ca = d.path("foreign-ca");
    certgate_e2e::certgate_ok(&["ca", "init", "--dir", foreign_ca.to_str().unwrap()]);
    let foreign = d.issue_client_from(&foreign_ca, "noord", "mallory@noord.test", "1h");
    let revoked = d.issue_client("noord", "lost@noord.test", "1h");
    let out = d.revoke_serial(&revoked);
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(2100));

    for (name, cert) in [
        ("expired", &expired),
        ("other org", &other_org),
        ("foreign CA", &foreign),
        ("revoked", &revoked),
    ] {
        let args = [
            &[
                "--cert",
                cert.cert.to_str().unwrap(),
                "--key",
                cert.key.to_str().unwrap(),
            ][..],
            &HTML,
        ]
        .concat();
        let r = d.curl(HOST, "127.0.0.1", "/", &args);
        assert_eq!(
            r.exit, 0,
            "{name}: the TLS handshake must succeed: {}",
            r.stderr
        );
        assert_eq!(r.status, 302, "{name}: {r:?}");
        assert!(
            r.header("location")
                .unwrap()
                .starts_with("/.certgate/login"),
            "{name}"
        );
    }
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"denied_revoked\",org=\"noord\"}"),
        1.0
    );
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"denied_expired\",org=\"noord\"}"),
        1.0
    );
    assert!(d.metric("certgate_tls_handshakes_total{client_certificate=\"foreign\"}") >= 1.0);
}

#[test]
fn spoofed_identity_headers_and_certgate_cookies_do_not_get_through() {
    let d = deployment();
    let r = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[
            "--interface",
            "127.0.0.2",
            "-H",
            "X-Certgate-User: the-director",
            "-H",
            "X-Certgate-Auth: certificate",
            "-H",
            "Forwarded: for=192.0.2.1",
            "-H",
            "X-Real-IP: 192.0.2.1",
            "-H",
            "X-Forwarded-Host: evil.test",
            "-H",
            "X-Forwarded-For: 192.0.2.1",
            "-H",
            "Cookie: app=1; __Host-certgate-device=stolen; certgate_session=x",
            // CGI, PHP and Rack read these as X-Certgate-User and X-Forwarded-For.
            "-H",
            "X_Certgate_User: the-director",
            "-H",
            "X-Certgate_Org: elsewhere",
            "-H",
            "X_Forwarded_For: 192.0.2.1",
            "-H",
            "X_Custom_App: kept",
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-certgate-user"), None);
    assert_eq!(r.upstream_header("x_certgate_user"), None);
    assert_eq!(r.upstream_header("x-certgate_org"), None);
    assert_eq!(r.upstream_header("x_forwarded_for"), None);
    assert_eq!(
        r.upstream_header("x_custom_app").as_deref(),
        Some("kept"),
        "other names with underscores pass"
    );
    assert_eq!(r.upstream_header("x-certgate-auth").as_deref(), Some("ip"));
    assert_eq!(r.upstream_header("forwarded"), None);
    assert_eq!(r.upstream_header("x-real-ip"), None);
    assert_eq!(r.upstream_header("x-forwarded-host"), None);
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(r.upstream_header("cookie").as_deref(), Some("app=1"));

    // A forged X-Forwarded-For from an untrusted peer does not make it allow-listed.
    let forged = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[
            "--interface",
            "127.0.0.3",
            "-H",
            "X-Forwarded-For: 127.0.0.2",
        ],
    );
    assert_eq!(forged.status, 401);

    // The upstream cannot set certgate's cookies.
    let cookies = d.curl(
        HOST,
        "127.0.0.1",
        "/set-cookie",
        &["--interface", "127.0.0.2"],
    );
    assert_eq!(cookies.status, 200);
    assert!(
        cookies.headers.contains("app-session=1"),
        "{}",
        cookies.headers
    );
    assert!(
        !cookies
            .headers
            .to_ascii_lowercase()
            .contains("certgate-device"),
        "{}",
        cookies.headers
    );
}

#[test]
fn a_trusted_proxy_supplies_the_client_address() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["198.51.100.0/24"];
    let mut d = Deployment::new(&[noord]);
    d.extra_server_config = "trusted_proxies = [\"127.0.0.4/32\"]".into();
    d.write_config();
    d.start();
    let via_proxy = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[
            "--interface",
            "127.0.0.4",
            "-H",
            "X-Forwarded-For: 203.0.113.7, 198.51.100.20",
        ],
    );
    assert_eq!(via_proxy.status, 200, "{via_proxy:?}");
    assert_eq!(
        via_proxy.upstream_header("x-forwarded-for").as_deref(),
        Some("198.51.100.20")
    );
    let not_listed = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[
            "--interface",
            "127.0.0.4",
            "-H",
            "X-Forwarded-For: 203.0.113.7",
        ],
    );
    assert_eq!(not_listed.status, 401);
    let untrusted = d.curl(
        HOST,
        "127.0.0.1",
        "/",
        &[
            "--interface",
            "127.0.0.3",
            "-H",
            "X-Forwarded-For: 198.51.100.20",
        ],
    );
    assert_eq!(untrusted.status, 401);
}

#[test]
fn public_paths_match_whole_segments_and_never_tricks() {
    let d = deployment();
    let public = d.curl(HOST, "127.0.0.1", "/public/app.css", &[]);
    assert_eq!(public.status, 200);
    assert_eq!(
        public.upstream_header("x-certgate-auth").as_deref(),
        Some("public")
    );
    for path in [
        "/public/../admin",
        "/public;x/admin",
        "/public%2fadmin",
        "/public%2Fadmin",
        "/publicity",
        "/public/%2e%2e/admin",
        // Segments some servers read as `..` after trimming, overlong decoding or Unicode
        // normalisation.
        "/public/..%20/admin",
        "/public/..%09/admin",
        "/public/..%00/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%ef%bc%8e%ef%bc%8e/admin",
        "/public/.../admin",
    ] {
        let r = d.curl(HOST, "127.0.0.1", path, &["--path-as-is"]);
        assert_eq!(r.status, 401, "{path} must not be public: {r:?}");
    }
}

/// A client that presents someone's certificate without holding its key must not get in. curl
/// cannot do this (it checks the pair), so this client is built on rustls.
#[test]
fn a_certificate_without_its_key_is_refused() {
    let d = deployment();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let mallory = d.issue_client("noord", "mallory@noord.test", "1h");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let request = |cert: &std::path::Path, key: &std::path::Path| {
        runtime.block_on(async {
            let tls = tls_connect(&d, HOST, "127.0.0.3", b"", Some((cert, key))).await?;
            http1_get(tls, HOST, "/").await
        })
    };
    // Control: the matching pair works, so the refusal below is about the key.
    let ok = request(&anna.cert, &anna.key);
    assert!(
        ok.as_deref().unwrap_or("").starts_with("HTTP/1.1 200"),
        "{ok:?}"
    );
    let stolen = request(&anna.cert, &mallory.key);
    assert!(
        !stolen.as_deref().unwrap_or("").contains(" 200 "),
        "{stolen:?}"
    );
}

/// A TCP load balancer in front passes the client address in a PROXY header; only trusted
/// proxies may, and they must.
#[test]
fn the_proxy_protocol_from_a_trusted_proxy_gives_the_client_address() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["198.51.100.0/24"];
    let mut d = Deployment::new(&[noord]);
    d.extra_server_config = "trusted_proxies = [\"127.0.0.4/32\"]\nproxy_protocol = true".into();
    d.write_config();
    d.start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |source: &str, preface: &[u8]| {
        runtime.block_on(async {
            let tls = tls_connect(&d, HOST, source, preface, None).await?;
            http1_get(tls, HOST, "/").await
        })
    };
    let v1 = get(
        "127.0.0.4",
        b"PROXY TCP4 198.51.100.20 127.0.0.1 50000 443\r\n",
    )
    .unwrap();
    assert!(v1.starts_with("HTTP/1.1 200"), "{v1}");
    assert!(
        v1.contains("\"x-forwarded-for\":[\"198.51.100.20\"]"),
        "{v1}"
    );
    let outside = get(
        "127.0.0.4",
        b"PROXY TCP4 203.0.113.9 127.0.0.1 50000 443\r\n",
    )
    .unwrap();
    assert!(outside.starts_with("HTTP/1.1 401"), "{outside}");
    // An untrusted client cannot send one, and a trusted proxy cannot leave it out.
    assert!(get(
        "127.0.0.3",
        b"PROXY TCP4 198.51.100.20 127.0.0.1 50000 443\r\n"
    )
    .is_err());
    assert!(get("127.0.0.4", b"").is_err());
    // Direct clients still connect as usual.
    let direct = get("127.0.0.3", b"").unwrap();
    assert!(direct.starts_with("HTTP/1.1 401"), "{direct}");
}

#[test]
fn plain_http_redirects_to_https() {
    let mut d = Deployment::new(&[Org::new("noord", HOST)]);
    let http = certgate_e2e::free_port();
    d.extra_server_config = format!("http_listen = \"127.0.0.1:{http}\"");
    d.write_config();
    d.start();
    // Status and redirect of a plain-HTTP request with this `Host` (and extra curl arguments).
    let plain = |host: &str, path: &str, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["-H", &format!("Host: {host}")])
            .args(extra)
            .arg(format!("http://127.0.0.1:{http}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        plain(HOST, "/rooster?week=1", &[]),
        format!("308 https://{HOST}:{}/rooster?week=1", d.https)
    );
    // Only to hosts certgate serves: a redirect to whatever `Host` said would send people
    // anywhere (and poison caches in between). 421, or 400 where the HTTP parser already
    // refuses the name or the request target.
    for host in ["evil.test", "noord.test.evil.test", "noord.test@evil.test"] {
        let text = plain(host, "/rooster", &[]);
        assert!(text == "421 " || text == "400 ", "{host}: {text}");
    }
    let text = plain(HOST, "/x", &["--request-target", "http://evil.test/x"]);
    assert!(text == "421 " || text == "400 ", "{text}");
}
