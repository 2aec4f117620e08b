//! Text messages with sign-in codes: an HTTP webhook of the organisation's SMS provider (a JSON
//! POST with the number and the text, an optional bearer token, a timeout), or — only in
//! development — the log.

use std::time::Duration;

/// How to send.
pub enum SmsSender {
    Webhook {
        url: String,
        token: Option<String>,
        client: reqwest::Client,
    },
    /// Development only: the message goes to the log.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    #[error("the SMS provider could not be reached")]
    Unreachable,
    #[error("the SMS provider did not answer in time")]
    Timeout,
    #[error("the SMS provider refused the message (HTTP {0})")]
    Refused(u16),
    #[error("the SMS sender could not be set up")]
    Setup,
}

impl SmsSender {
    /// A webhook sender; `timeout` bounds the whole request.
    pub fn webhook(url: &str, token: Option<String>, timeout: Duration) -> Result<Self, SmsError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|_| SmsError::Setup)?;
        Ok(SmsSender::Webhook {
            url: url.to_owned(),
            token,
            client,
        })
    }

    /// Sends `text` to `number`. Errors never include the token or the text (it holds a code).
    pub async fn send(&self, number: &str, text: &str) -> Result<(), SmsError> {
        match self {
            SmsSender::Log => {
                tracing::warn!(to = %number, %text, "development: SMS written to the log instead of sent");
                Ok(())
            }
            SmsSender::Webhook { url, token, client } => {
                let mut request = client
                    .post(url)
                    .json(&serde_json::json!({ "to": number, "text": text }));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| {
                    if e.is_timeout() {
                        SmsError::Timeout
                    } else {
                        SmsError::Unreachable
                    }
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(SmsError::Refused(status.as_u16()))
                }
            }
        }
    }
}

/// A mobile number as the pages show it: only the last four digits readable
/// ("+31 6 •••• 1234" style).
pub fn masked(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits.iter().rev().take(4).rev().collect();
    format!("•••• {tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};
    use parking_lot::Mutex;

    use super::*;

    type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

    /// A local HTTP receiver standing in for the provider: answers `status` after `delay`.
    async fn receiver(status: StatusCode, delay: Duration) -> (String, Received) {
        let received: Received = Arc::default();
        let app = Router::new()
            .route(
                "/send",
                post(
                    move |State(r): State<Received>,
                          headers: HeaderMap,
                          Json(body): Json<serde_json::Value>| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        r.lock().push((auth, body));
                        tokio::time::sleep(delay).await;
                        status
                    },
                ),
            )
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, received)
    }

    #[tokio::test]
    async fn posts_number_and_text_with_the_token() {
        let (url, received) = receiver(StatusCode::OK, Duration::ZERO).await;
        let sender =
            SmsSender::webhook(&url, Some("provider-token".into()), Duration::from_secs(2))
                .unwrap();
        sender
            .send("+31612341234", "Uw code is 482913")
            .await
            .unwrap();
        let got = received.lock().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_deref(), Some("Bearer provider-token"));
        assert_eq!(
            got[0].1,
            serde_json::json!({ "to": "+31612341234", "text": "Uw code is 482913" })
        );
    }

    #[tokio::test]
    async fn provider_failures_are_clear_errors() {
        let (url, _) = receiver(StatusCode::BAD_GATEWAY, Duration::ZERO).await;
        let sender = SmsSender::webhook(&url, None, Duration::from_secs(2)).unwrap();
        assert_eq!(
            sender.send("+31612341234", "x").await,
            Err(SmsError::Refused(502))
        );

        let (slow, _) = receiver(StatusCode::OK, Duration::from_secs(3)).await;
        let sender = SmsSender::webhook(&slow, None, Duration::from_millis(300)).unwrap();
        assert_eq!(
            sender.send("+31612341234", "x").await,
            Err(SmsError::Timeout)
        );

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let nobody = SmsSender::webhook(
            &format!("http://127.0.0.1:{port}/send"),
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(
            nobody.send("+31612341234", "x").await,
            Err(SmsError::Unreachable)
        );
    }

    #[test]
    fn numbers_are_masked_for_pages() {
        assert_eq!(masked("+31612341234"), "•••• 1234");
    }
}
