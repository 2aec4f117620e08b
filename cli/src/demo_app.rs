//! The demo "legacy app" behind the gateway: it shows the identity headers it receives, echoes
//! WebSocket messages on `/ws`, and on `/set-cookie` tries to set a certgate cookie (which the
//! gateway drops). `make demo` runs it in-process; the end-to-end tests run it as a process.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/set-cookie", get(set_cookie))
        .fallback(show_request)
}

pub async fn serve(
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `certgate demo-upstream`: the app as its own process, until SIGTERM or Ctrl-C.
pub fn run(listen: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let stop = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(listen, stop)
            .await
            .map_err(|e| format!("{listen}: {e}"))
    })
}

async fn show_request(uri: Uri, headers: HeaderMap) -> Response {
    let all: BTreeMap<String, Vec<String>> = headers
        .keys()
        .map(|name| {
            let values = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), values)
        })
        .collect();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return Json(serde_json::json!({ "path": uri.to_string(), "headers": all }))
            .into_response();
    }
    let rows: String = all
        .iter()
        .filter(|(name, _)| name.starts_with("x-certgate-") || name.starts_with("x-forwarded-"))
        .map(|(name, values)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(&values.join(", "))
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Demo app</title></head><body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem\">\
         <h1>The legacy app behind certgate</h1><p>certgate admitted this request and told the app who you are:</p>\
         <table>{rows}</table></body></html>"
    ))
    .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn set_cookie() -> impl IntoResponse {
    (
        AppendHeaders([
            (header::SET_COOKIE, "app-session=1; Path=/; HttpOnly"),
            (
                header::SET_COOKIE,
                "__Host-certgate-device=forged; Path=/; Secure",
            ),
        ]),
        "cookies set\n",
    )
}

async fn websocket(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(text),
            Message::Binary(bytes) => Message::Binary(bytes),
            Message::Close(_) => return,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
