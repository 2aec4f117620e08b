//! E-mail: codes and security notices through SMTP (TLS, STARTTLS or plain on loopback, with
//! optional authentication). Messages are queued and sent by a background task, so a page
//! answers in the same time whether or not a mail goes out.

use std::time::Duration;

use certgate_policies::config::{MailConfig, SmtpSecurity};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;

/// Mails waiting beyond this are refused rather than piling up while the server is down.
const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    #[error("the mail settings are not usable: {0}")]
    Settings(String),
    #[error("{0:?} is not an e-mail address")]
    BadAddress(String),
    #[error("the mail queue is full")]
    QueueFull,
}

/// One mail to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Queues mail for the background sender.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Message>,
    from: Mailbox,
}

/// The demo's mail address; the outbox needs no real one.
const OUTBOX_FROM: &str = "certgate demo <no-reply@certgate.invalid>";

impl Mailer {
    /// Starts the sender task on the current runtime. `password` comes from `password_file`.
    pub fn start(config: &MailConfig, password: Option<String>) -> Result<Mailer, MailError> {
        let builder = match config.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
            }
            SmtpSecurity::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &config.host,
            )),
        }
        .map_err(|e| MailError::Settings(e.to_string()))?;
        let mut builder = builder
            .port(config.port)
            .timeout(Some(Duration::from_secs(10)));
        if let (Some(user), Some(password)) = (&config.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let transport = builder.build();
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| MailError::Settings(format!("from {:?} is not a mailbox", config.from)))?;
        let (queue, mut waiting) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            while let Some(message) = waiting.recv().await {
                send_with_retries(&transport, message).await;
            }
        });
        Ok(Mailer { queue, from })
    }

    /// `make demo`'s mail: every message is written to `dir` as an `.eml` file, and the file's
    /// name (never its content) is logged.
    pub fn outbox(dir: std::path::PathBuf) -> Result<Mailer, MailError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| MailError::Settings(format!("{}: {e}", dir.display())))?;
        let from: Mailbox = OUTBOX_FROM
            .parse()
            .map_err(|_| MailError::Settings("outbox sender".into()))?;
        let (queue, mut waiting) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            let mut written = 0u64;
            while let Some(message) = waiting.recv().await {
                written += 1;
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let path = dir.join(format!("{stamp}-{written}.eml"));
                match tokio::fs::write(&path, message.formatted()).await {
                    Ok(()) => tracing::info!(file = %path.display(), "mail written to the outbox"),
                    Err(error) => {
                        tracing::error!(file = %path.display(), %error, "cannot write to the outbox")
                    }
                }
            }
        });
        Ok(Mailer { queue, from })
    }

    /// Queues `mail`; returns at once.
    pub fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| MailError::BadAddress(mail.to.clone()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            // `text/plain; charset=utf-8` with `MIME-Version: 1.0`, so a reader decodes the
            // Dutch quotes and accents instead of guessing.
            .singlepart(SinglePart::plain(mail.body))
            .map_err(|e| MailError::Settings(e.to_string()))?;
        self.queue
            .try_send(message)
            .map_err(|_| MailError::QueueFull)
    }
}

async fn send_with_retries(transport: &AsyncSmtpTransport<Tokio1Executor>, message: Message) {
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match transport.send(message.clone()).await {
            Ok(_) => return,
            // The message holds a code: log only that sending failed, and why.
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, "sending mail failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(error) => tracing::error!(%error, "sending mail failed; giving up"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use super::*;

    /// A real SMTP server (aiosmtpd, installed by make test) that prints what it receives.
    struct SmtpSink(std::process::Child);

    impl Drop for SmtpSink {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_mail_reaches_a_real_smtp_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sink = SmtpSink(
            Command::new("python3")
                .args([
                    "-u",
                    "-m",
                    "aiosmtpd",
                    "-n",
                    "-c",
                    "aiosmtpd.handlers.Debugging",
                    "-l",
                ])
                .arg(format!("127.0.0.1:{port}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 -m aiosmtpd (make test installs aiosmtpd)"),
        );
        let stdout = sink.0.stdout.take().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let config = MailConfig {
            smtp_url: format!("smtp://127.0.0.1:{port}"),
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Plain,
            username: None,
            password_file: None,
            from: "certgate <no-reply@noord.example>".into(),
        };
        let mailer = Mailer::start(&config, None).unwrap();
        mailer
            .send(Mail {
                to: "anna@noord.example".into(),
                subject: "Uw inlogcode".into(),
                body: "Uw code is 482913".into(),
            })
            .unwrap();
        assert_eq!(
            mailer
                .send(Mail {
                    to: "not an address".into(),
                    subject: String::new(),
                    body: String::new()
                })
                .unwrap_err(),
            MailError::BadAddress("not an address".into())
        );

        let received = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                text.push_str(&line);
                text.push('\n');
                if line.contains("END MESSAGE") {
                    break;
                }
            }
            text
        });
        let text = tokio::time::timeout(Duration::from_secs(10), received)
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains("Subject: Uw inlogcode"), "{text}");
        assert!(text.contains("Uw code is 482913"), "{text}");
        assert!(text.contains("anna@noord.example"), "{text}");
    }

    /// Mail is queued, never sent on the caller's time: a server that accepts the connection and
    /// never says a word holds nobody up (a sending caller would wait for it and then fail).
    #[tokio::test]
    async fn a_silent_mail_server_holds_nobody_up() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let config = MailConfig {
            smtp_url: format!("smtp://127.0.0.1:{port}"),
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Plain,
            username: None,
            password_file: None,
            from: "certgate <no-reply@noord.example>".into(),
        };
        let mailer = Mailer::start(&config, None).unwrap();
        for n in 0..3 {
            let mail = Mail {
                to: "anna@noord.example".into(),
                subject: format!("Uw inlogcode {n}"),
                body: "Uw code is 482913".into(),
            };
            assert_eq!(mailer.send(mail), Ok(()));
        }
        drop(silent);
    }
}
