//! Attacks on the gate itself, made as a penetration tester would from outside: request
//! smuggling through header spellings an application server reads differently, and headers that
//! make the gateway drop what it relies on. Against the real `certgate serve`, with an upstream
//! that reads headers the way the Mongrel family and CGI servers do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use certgate_e2e::{http1_raw, tls_connect, Deployment, Org};
use parking_lot::Mutex;

const HOST: &str = "noord.test";

/// A request as the folding upstream read it: method, path and headers with `_` read as `-`.
#[derive(Debug, Clone)]
struct Folded {
    path: String,
    headers: Vec<(String, String)>,
}

/// An HTTP/1.1 upstream that reads header names as Unicorn, Mongrel, older Puma and CGI
/// servers do (`Transfer_Encoding` is `Transfer-Encoding`), frames bodies by what it read, and
/// serves keep-alive connections: whatever follows a body it takes for the next request.
struct FoldingUpstream {
    port: u16,
    seen: Arc<Mutex<Vec<Folded>>>,
}

impl FoldingUpstream {
    fn start() -> FoldingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        FoldingUpstream { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn paths(&self) -> Vec<String> {
        self.seen.lock().iter().map(|r| r.path.clone()).collect()
    }
}

fn serve(stream: TcpStream, record: &Mutex<Vec<Folded>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((
                    name.trim().to_ascii_lowercase().replace('_', "-"),
                    value.trim().to_owned(),
                ));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if size == 0 {
                    break;
                }
            }
        } else if let Some(length) = header("content-length").and_then(|v| v.parse().ok()) {
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        record.lock().push(Folded { path, headers });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn deployment(upstream: &FoldingUpstream) -> Deployment {
    let mut noord = Org::new("noord", HOST);
    noord.public_paths = vec!["/public"];
    noord.upstreams = vec![upstream.url()];
    let mut d = Deployment::new(&[noord]);
    d.start();
    d
}

/// Sends `request` from an address no allow list holds, without a credential.
fn send(d: &Deployment, request: &[u8]) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async {
            let tls = tls_connect(d, HOST, "127.0.0.3", b"", None).await?;
            http1_raw(tls, request, Duration::from_secs(3)).await
        })
        .unwrap()
}

/// The measured attack: a public path, no credential, a body framed by `Content-Length` for the
/// gateway and by `Transfer_Encoding` for the application, which then reads a second request
/// carrying any identity the attacker likes.
#[test]
fn framing_headers_spelled_with_underscores_cannot_smuggle_a_request() {
    let upstream = FoldingUpstream::start();
    let d = deployment(&upstream);
    let smuggled = format!(
        "GET /admin HTTP/1.1\r\nHost: {HOST}\r\nX-Certgate-User: the-director\r\nX-Certgate-Auth: certificate\r\nContent-Length: 0\r\n\r\n"
    );
    let body = format!("0\r\n\r\n{smuggled}");
    for framing in [
        "Transfer_Encoding: chunked",
        "transfer_encoding: chunked",
        "Content_Length: 0",
    ] {
        let request = format!(
            "POST /public/form HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n{framing}\r\n\r\n{body}",
            body.len()
        );
        let answer = send(&d, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing}: {answer}");
    }
    // Control: the same body without the disguised header is an ordinary public request, and
    // the upstream reads it as one.
    let plain = format!(
        "POST /public/form HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = send(&d, plain.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        certgate_e2e::settles(|| !upstream.paths().is_empty()),
        "the upstream never saw the control request"
    );
    assert_eq!(upstream.paths(), ["/public/form"], "nothing was smuggled");
    let seen = upstream.seen.lock();
    assert!(
        seen.iter()
            .all(|r| r.headers.iter().all(|(k, _)| k != "x-certgate-user")),
        "{seen:?}"
    );
}

/// Over HTTP/2 too: the gateway speaks HTTP/1.1 to the application.
#[test]
fn framing_headers_with_underscores_are_refused_over_http2() {
    let upstream = FoldingUpstream::start();
    let d = deployment(&upstream);
    for framing in ["Transfer_Encoding: chunked", "Keep_Alive: 5", "Upgrade_: x"] {
        let r = d.curl(
            HOST,
            "127.0.0.1",
            "/public/x",
            &["--http2", "-H", framing, "--data", "a=1"],
        );
        let expected = if framing.starts_with("Upgrade_") {
            200
        } else {
            400
        };
        assert_eq!(r.status, expected, "{framing}: {r:?}");
    }
}

/// `Connection` may name connection options only: naming a header makes a proxy drop it, and
/// the gateway used to close the connection without a word when it named X-Forwarded-For.
#[test]
fn connection_naming_a_header_gets_a_clear_answer() {
    let upstream = FoldingUpstream::start();
    let d = deployment(&upstream);
    for connection in [
        "X-Forwarded-For",
        "Content-Length",
        "keep-alive, X-Certgate-User",
        "Transfer_Encoding",
    ] {
        let request =
            format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\nConnection: {connection}\r\n\r\n");
        let answer = send(&d, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400"), "{connection}: {answer}");
        assert!(answer.contains("Dit verzoek"), "{answer}");
    }
    let fine =
        format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive, close\r\n\r\n");
    let answer = send(&d, fine.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        d.metric("certgate_requests_total{decision=\"bad_request\",org=\"\"}"),
        4.0
    );
}

fn limited_deployment(server: &str) -> Deployment {
    let mut noord = Org::new("noord", HOST);
    noord.public_paths = vec!["/public"];
    let mut d = Deployment::new(&[noord]);
    d.extra_server_config = server.to_owned();
    d.write_config();
    d.start();
    d
}

/// Slowloris: a head sent a line at a time keeps a connection (and its buffers) only until the
/// head deadline, whatever the per-read timeout.
#[test]
fn a_request_head_sent_slowly_is_cut_at_its_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = limited_deployment("request_head_timeout = \"2s\"");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        let tls = tls_connect(&d, HOST, "127.0.0.3", b"", None).await.unwrap();
        let (mut read, mut write) = tokio::io::split(tls);
        let trickle = tokio::spawn(async move {
            let _ = write
                .write_all(format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
                .await;
            // Sixty lines, one every 300 ms: far longer than the deadline if nothing cuts it.
            for i in 0..60 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if write
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer)).await;
        let finished_sending = trickle.await.unwrap_or(true);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            finished_sending,
        )
    });
    assert!(answer.0.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        !answer.1,
        "the connection stayed open for the whole trickle"
    );
    assert_eq!(
        d.metric("certgate_connections_refused_total{reason=\"head_timeout\"}"),
        1.0
    );
    // A keep-alive connection's next request gets a deadline of its own: idle time between
    // requests, longer than the deadline, does not count against it.
    let second = runtime.block_on(async {
        let mut tls = tls_connect(&d, HOST, "127.0.0.3", b"", None).await.unwrap();
        let first = format!("GET /public/a HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        tls.write_all(first.as_bytes()).await.unwrap();
        let response = read_response(&mut tls).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let second = format!("GET /public/b HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        http1_raw(tls, second.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap()
    });
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// One response with a `Content-Length`, read from a kept-alive connection.
async fn read_response(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncReadExt;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => response.extend_from_slice(&chunk[..n]),
            _ => return text,
        }
    }
}

/// A head larger than `max_request_head` gets 431; bodies are not heads.
#[test]
fn an_oversized_request_head_gets_431_and_large_bodies_still_pass() {
    let d = limited_deployment("max_request_head = 16384");
    let big = "a".repeat(20_000);
    let request = format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n");
    let answer = send(&d, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Unfinished: the head never ends, and still only so much of it is read.
    let endless = format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}{big}");
    let answer = send(&d, endless.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(
        d.metric("certgate_connections_refused_total{reason=\"head_too_large\"}"),
        2.0
    );
    // HTTP/2 header blocks have the same ceiling.
    let h2 = d.curl(
        HOST,
        "127.0.0.1",
        "/public/x",
        &["--http2", "-H", &format!("X-Big: {big}")],
    );
    assert_ne!(h2.status, 200, "{h2:?}");
    // Heads up to the limit, and bodies of any size, pass.
    let fine = d.curl(
        HOST,
        "127.0.0.1",
        "/public/x",
        &["-H", &format!("X-Fine: {}", "b".repeat(8_000))],
    );
    assert_eq!(fine.status, 200, "{fine:?}");
    let body = d.path("body");
    std::fs::write(&body, "c".repeat(2_000_000)).unwrap();
    let upload = d.curl(
        HOST,
        "127.0.0.1",
        "/public/upload",
        &[
            "--http1.1",
            "--data-binary",
            &format!("@{}", body.display()),
        ],
    );
    assert_eq!(upload.status, 200, "{upload:?}");
}

/// One address may hold `max_connections_per_client` connections; others are not affected and
/// a closed connection gives its place back.
#[test]
fn one_address_holds_only_so_many_connections() {
    let d = limited_deployment("max_connections_per_client = 3");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tls_connect(&d, HOST, "127.0.0.3", b"", None).await.unwrap());
        }
        let request =
            format!("GET /public/x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let fourth = tls_connect(&d, HOST, "127.0.0.3", b"", None).await.unwrap();
        let answer = http1_raw(fourth, request.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let other = tls_connect(&d, HOST, "127.0.0.4", b"", None).await.unwrap();
        let answer = http1_raw(other, request.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(held.pop());
        let mut served = false;
        for _ in 0..50 {
            let again = tls_connect(&d, HOST, "127.0.0.3", b"", None).await.unwrap();
            let answer = http1_raw(again, request.as_bytes(), Duration::from_secs(5))
                .await
                .unwrap();
            if answer.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served, "the closed connection's place was not given back");
    });
    assert!(d.metric("certgate_connections_refused_total{reason=\"client_limit\"}") >= 1.0);
}

/// The rest of the class: every ambiguous framing a client can send through a public path
/// either gets 400 or reaches the application as exactly the request the gateway saw.
#[test]
fn no_framing_trick_smuggles_a_second_request() {
    let upstream = FoldingUpstream::start();
    let d = deployment(&upstream);
    let smuggled = format!(
        "GET /admin HTTP/1.1\r\nHost: {HOST}\r\nX-Certgate-User: the-director\r\nContent-Length: 0\r\n\r\n"
    );
    let chunked = format!("0\r\n\r\n{smuggled}");
    let n = chunked.len();
    for framing in [
        format!("Content-Length: {n}\r\nContent-Length: 5"),
        format!("Content-Length: 5\r\nContent-Length: {n}"),
        format!("Content-Length: {n}, 5"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: chunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: chunked, identity"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: identity, chunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: xchunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding : chunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding:\tchunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: Chunked"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
        format!("Content-Length: +{n}"),
        format!("Content-Length: 0{n}"),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked".to_owned(),
    ] {
        let before = upstream.paths().len();
        let request = format!(
            "POST /public/form HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\nConnection: close\r\n\r\n{chunked}"
        );
        let answer = send(&d, request.as_bytes());
        let status = answer.get(9..12).unwrap_or("");
        let seen: Vec<String> = upstream.paths()[before..].to_vec();
        assert!(
            !seen.iter().any(|p| p == "/admin"),
            "{framing:?} smuggled a request: answer {status}, upstream saw {seen:?}"
        );
    }
}
