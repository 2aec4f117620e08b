//! The CLI side of the admin API: one HTTP/1.1 request over the running instance's Unix socket.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How long a request is retried while the instance is still opening its database (503),
/// as right after it started.
const WAIT_FOR_DATABASE: std::time::Duration = std::time::Duration::from_secs(15);

/// Sends one request and returns the body of a 2xx answer; anything else becomes a message.
/// An instance that has just started and not yet opened its database answers 503 with
/// `Retry-After`: that is retried for a while. A database that went away is said at once.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let started = std::time::Instant::now();
    loop {
        match call_once(socket, method, path, body.clone()) {
            Err((RETRY, _)) if started.elapsed() < WAIT_FOR_DATABASE => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            other => return other.map_err(|(_, message)| message),
        }
    }
}

/// Stands for "503 with Retry-After" among the statuses of [`call_once`].
const RETRY: u16 = 1503;

fn call_once(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, (u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (0, e.to_string()))?;
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
            (0, format!(
                "cannot reach the running instance at {}: {e} (is `certgate serve` running with this config?)",
                socket.display()
            ))
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| (0, e.to_string()))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "certgate-admin")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| (0, e.to_string()))?;
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), sender.send_request(request))
            .await
            .map_err(|_| (0, "the running instance did not answer within 10 s".to_owned()))?
            .map_err(|e| (0, e.to_string()))?;
        let status = response.status();
        let retry = status == hyper::StatusCode::SERVICE_UNAVAILABLE
            && response.headers().contains_key(hyper::header::RETRY_AFTER);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (0, e.to_string()))?
            .to_bytes()
            .to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| error_message(&v))
            .unwrap_or_else(|| status.to_string());
        Err((if retry { RETRY } else { status.as_u16() }, message))
    })
}

/// The API's `error`, with each of its `errors` (every bad line or row) on a line of its own.
fn error_message(answer: &serde_json::Value) -> Option<String> {
    let mut message = answer.get("error")?.as_str()?.to_owned();
    let each = answer.get("errors").and_then(|e| e.as_array());
    for error in each.into_iter().flatten().filter_map(|e| e.as_str()) {
        message.push('\n');
        message.push_str(error);
    }
    Some(message)
}
