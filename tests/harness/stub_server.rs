//! A small HTTP/1.1 server on a free port that stands in for one of certgate's peers — an SMS
//! provider, an upstream app — answering each request from a function and recording it. One
//! thread accepts, one thread a connection; every answer closes its connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{eventually, free_port};

/// A request as the stub received it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every cookie sent, in order, from all `Cookie` headers: over HTTP/2 a browser sends each
    /// cookie as its own header, and the gateway may pass them on that way.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .flat_map(|(_, line)| line.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `None` when it is not.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn new(status: u16, body: impl Into<String>) -> HttpReply {
        HttpReply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpReply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Respond = dyn Fn(&HttpRequest) -> HttpReply + Send + Sync;

/// The server; stopped when dropped.
pub struct StubServer {
    port: u16,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Listens on `127.0.0.1:<free port>` and answers every request with `respond`.
    pub fn start(
        respond: impl Fn(&HttpRequest) -> HttpReply + Send + Sync + 'static,
    ) -> StubServer {
        // Bound in this process, so a port taken between the check and the bind (seen once in
        // CI) is simply skipped for the next.
        let listener = (0..20)
            .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
            .expect("bind the stub server to a free port");
        let port = listener
            .local_addr()
            .expect("the stub server's address")
            .port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let respond: Arc<Respond> = Arc::new(respond);
        let acceptor = {
            let (requests, stopping) = (Arc::clone(&requests), Arc::clone(&stopping));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, respond) = (Arc::clone(&requests), Arc::clone(&respond));
                    std::thread::spawn(move || serve_connection(stream, &requests, &*respond));
                }
            })
        };
        StubServer {
            port,
            requests,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().clone()
    }

    /// Waits until at least `count` requests have arrived; false on timeout.
    pub fn wait_for_requests(&self, count: usize, within: Duration) -> bool {
        eventually(within, || self.requests.lock().len() >= count)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The acceptor blocks in accept(): a connection wakes it up to see the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve_connection(stream: TcpStream, requests: &Mutex<Vec<HttpRequest>>, respond: &Respond) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let Some(request) = read_request(&mut BufReader::new(stream)) else {
        return;
    };
    let reply = respond(&request);
    requests.lock().push(request);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(reply.body.as_bytes());
    let _ = writer.flush();
}

/// One request: the head, then a body by `Content-Length` or chunked encoding.
fn read_request(reader: &mut impl BufRead) -> Option<HttpRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = header("content-length") {
        body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
    }
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
