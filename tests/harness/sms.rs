//! A local SMS provider for the portal's `webhook` SMS kind: it receives the JSON POSTs
//! (`{"to": "+316…", "text": "…"}`), records them, and answers 200 — or a failure status when a
//! test wants to see the provider-failure page.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::stub_server::{HttpReply, HttpRequest, StubServer};

/// Where the receiver listens; `SmsReceiver::url` is this path on its port.
const PATH: &str = "/sms";

/// One text message as the provider received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    pub to: String,
    pub text: String,
    /// The `Authorization` header, e.g. `Bearer <token>`.
    pub authorization: Option<String>,
}

pub struct SmsReceiver {
    server: StubServer,
    status: Arc<AtomicU16>,
    /// Indexes into the server's requests already returned by `wait_for`.
    taken: Mutex<HashSet<usize>>,
}

impl SmsReceiver {
    pub fn start() -> SmsReceiver {
        let status = Arc::new(AtomicU16::new(200));
        let answer = Arc::clone(&status);
        let server = StubServer::start(move |_| {
            let status = answer.load(Ordering::SeqCst);
            let body = if status < 300 {
                r#"{"status":"queued"}"#
            } else {
                r#"{"error":"provider failure"}"#
            };
            HttpReply::new(status, body).with_header("Content-Type", "application/json")
        });
        SmsReceiver {
            server,
            status,
            taken: Mutex::new(HashSet::new()),
        }
    }

    /// The webhook URL to configure in the portal.
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.server.base_url())
    }

    /// Answers every following request with `status` (e.g. 500), recording it all the same.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, whatever its method, path or body.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.server.requests()
    }

    /// Every well-formed message so far (a JSON POST with `to` and `text`), oldest first.
    pub fn all(&self) -> Vec<Sms> {
        self.requests().iter().filter_map(sms).collect()
    }

    /// The oldest message to `to` that no earlier `wait_for` returned, so a resent code is a
    /// second call; panics with what did arrive after `within`.
    pub fn wait_for(&self, to: &str, within: Duration) -> Sms {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            let mut taken = self.taken.lock();
            let found = requests.iter().enumerate().find_map(|(index, request)| {
                let message = sms(request).filter(|m| m.to == to)?;
                (!taken.contains(&index)).then_some((index, message))
            });
            if let Some((index, message)) = found {
                taken.insert(index);
                return message;
            }
            drop(taken);
            assert!(
                Instant::now() < deadline,
                "no SMS to {to} within {within:?}; received: {requests:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn sms(request: &HttpRequest) -> Option<Sms> {
    if request.method != "POST" || request.path != PATH {
        return None;
    }
    let json = request.json()?;
    Some(Sms {
        to: json["to"].as_str()?.to_owned(),
        text: json["text"].as_str()?.to_owned(),
        authorization: request.header("authorization").map(str::to_owned),
    })
}
