//! The upstream side: a dead upstream gives a clear 502 within the connect timeout, and
//! WebSockets pass through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use certgate_e2e::{free_port, tls_connect, ClientCert, Deployment, Org};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "noord.test";

#[test]
fn a_dead_upstream_gives_a_502_page_within_the_timeout() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    // Nothing listens there.
    noord.upstreams = vec![format!("http://127.0.0.1:{}", free_port())];
    let mut d = Deployment::new(&[noord]);
    d.start();
    let r = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("not reachable right now"), "{}", r.body);
    assert_eq!(
        d.metric("certgate_upstream_errors_total{org=\"noord\"}"),
        1.0
    );
}

#[test]
fn requests_go_to_the_live_upstream_when_another_is_down() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    let mut d = Deployment::new(std::slice::from_ref(&noord));
    // The first upstream is dead; the second is the demo app.
    noord.upstreams = vec![format!("http://127.0.0.1:{}", free_port()), d.app_url()];
    d.write_policy(&noord);
    d.start();
    for i in 0..6 {
        let r = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
}

#[test]
fn websockets_pass_through() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    let mut d = Deployment::new(&[noord]);
    d.start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let echoed = runtime.block_on(websocket_echo(&d, "hallo via certgate"));
    assert_eq!(echoed, "hallo via certgate");
}

/// A minimal WebSocket client: upgrade over TLS from 127.0.0.2, send one masked text frame,
/// read the echo.
async fn websocket_echo(d: &Deployment, text: &str) -> String {
    let mut tls = websocket(d, "127.0.0.2", None).await;
    echo(&mut tls, text).await
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// An upgraded WebSocket connection from `source`, presenting `client` if given.
async fn websocket(d: &Deployment, source: &str, client: Option<&ClientCert>) -> Tls {
    let client = client.map(|c| (c.cert.as_path(), c.key.as_path()));
    let mut tls = tls_connect(d, HOST, source, b"", client).await.unwrap();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls
}

/// Sends one masked text frame and reads the echo.
async fn echo(tls: &mut Tls, text: &str) -> String {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).await.unwrap();

    let mut header = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header[0], 0x81, "a final text frame");
    let mut echoed = vec![0u8; (header[1] & 0x7f) as usize];
    tls.read_exact(&mut echoed).await.unwrap();
    String::from_utf8(echoed).unwrap()
}

/// An upstream that accepts connections and never answers: frozen, not down.
fn frozen_upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// The measured fault: an upstream that did not answer in time gave the "not reachable" 502.
#[test]
fn an_upstream_that_does_not_answer_in_time_gives_a_504_page() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    noord.upstreams = vec![format!("http://127.0.0.1:{}", frozen_upstream())];
    let mut d = Deployment::new(&[noord]);
    d.extra_server_config = "upstream_read_timeout = \"1s\"".into();
    d.write_config();
    d.start();
    let r = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]);
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains("did not answer in time"), "{}", r.body);
    assert_eq!(
        d.metric("certgate_upstream_errors_total{org=\"noord\"}"),
        1.0
    );
}

/// A TCP connect finds a frozen application up; an HTTP health check finds it down, and the
/// requests go to the upstream that answers.
#[test]
fn an_http_health_check_takes_a_frozen_upstream_out_of_rotation() {
    let mut noord = Org::new("noord", HOST);
    noord.allow_ips = vec!["127.0.0.2"];
    let mut d = Deployment::new(std::slice::from_ref(&noord));
    noord.upstreams = vec![
        format!("http://127.0.0.1:{}", frozen_upstream()),
        d.app_url(),
    ];
    noord.policy_extra =
        "\n[health_check]\npath = \"/\"\nexpect_status = 200\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
            .into();
    d.write_policy(&noord);
    d.extra_server_config = "upstream_read_timeout = \"2s\"".into();
    d.write_config();
    d.start();
    // Once the first round of checks has run, every request is answered by the live one.
    assert!(certgate_e2e::eventually(Duration::from_secs(10), || {
        (0..4).all(|_| {
            d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"])
                .status
                == 200
        })
    }));
    for i in 0..8 {
        let r = d.curl(HOST, "127.0.0.1", "/", &["--interface", "127.0.0.2"]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    assert!(d.gateway().log_text().contains("upstream health changed"));
}

/// The measured fault: an open WebSocket stayed open after its credential was revoked
/// (revocation was checked per request only).
#[test]
fn a_websocket_closes_when_its_credential_is_revoked() {
    let noord = Org::new("noord", HOST);
    let mut d = Deployment::new(&[noord]);
    d.start();
    let anna = d.issue_client("noord", "anna@noord.test", "1h");
    let bob = d.issue_client("noord", "bob@noord.test", "1h");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut annas = websocket(&d, "127.0.0.3", Some(&anna)).await;
        let mut bobs = websocket(&d, "127.0.0.3", Some(&bob)).await;
        assert_eq!(echo(&mut annas, "voor").await, "voor");
        let revoked = d.revoke_serial(&anna);
        assert!(revoked.status.success(), "{revoked:?}");
        // The gateway closes Anna's connection: the read ends rather than waiting.
        let mut byte = [0u8; 1];
        let ended = tokio::time::timeout(Duration::from_secs(10), annas.read(&mut byte)).await;
        assert!(
            matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
            "still open after the revocation: {ended:?}"
        );
        // Bob's goes on.
        assert_eq!(echo(&mut bobs, "na").await, "na");
    });
}
