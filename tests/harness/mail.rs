//! A real SMTP server for the portal's mail: aiosmtpd (installed by `make test`) on a free port,
//! with a handler that decodes each message with Python's `email` package — MIME parts,
//! quoted-printable, base64, encoded headers — and writes it as one JSON file the harness reads.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{certgate_ok, eventually, free_port};

/// The aiosmtpd handler. Bodies get `\n` line ends. Each message becomes `NNNNNN.json`, renamed into place once written so
/// the harness never reads half a file; the counter keeps the order of arrival.
const HANDLER: &str = r#"
import email, email.policy, json, os

def lines(part):
    # SMTP carries CRLF; a test compares text as written, with "\n".
    return part.get_content().replace("\r\n", "\n") if part is not None else None

class JsonMaildir:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("JsonMaildir takes the directory to write to")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "envelope_from": envelope.mail_from,
            "recipients": list(envelope.rcpt_tos),
            "from": str(message.get("From", "")),
            "to": str(message.get("To", "")),
            "subject": str(message.get("Subject", "")),
            "body_text": lines(text) or "",
            "body_html": lines(html),
            "headers": [[k, str(v)] for k, v in message.items()],
            "raw": raw.decode("utf-8", "replace"),
        }
        self.count += 1
        path = os.path.join(self.directory, "%06d.json" % self.count)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"
"#;

/// One message as the SMTP server received it, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The `From` header.
    pub from: String,
    /// The `To` header.
    pub to: String,
    /// The envelope recipients (`RCPT TO`): who the message was delivered to.
    pub recipients: Vec<String>,
    /// The envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    pub subject: String,
    /// The text/plain part (or the whole body of a plain message), decoded.
    pub body_text: String,
    /// The text/html part, decoded, if there is one.
    pub body_html: Option<String>,
    /// Every header, decoded, in order.
    pub headers: Vec<(String, String)>,
    /// The message as sent, for assertions on encodings.
    pub raw: String,
}

impl Mail {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The SMTP server; killed when dropped.
pub struct MailSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
    /// Message files already returned by `wait_for`.
    taken: Mutex<HashSet<String>>,
}

/// How a sink speaks TLS: with its own certificate authority's certificate for `localhost`
/// and 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    /// Plain SMTP that refuses mail until the client has upgraded with STARTTLS.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Smtps,
}

impl MailSink {
    /// Starts `python3 -m aiosmtpd` on `127.0.0.1:<free port>` and waits until it answers.
    pub fn start() -> MailSink {
        Self::spawn(None)
    }

    /// Like [`MailSink::start`], speaking TLS with a certificate from a certificate authority
    /// of its own (`certgate ca init`), whose root is [`MailSink::root_pem`].
    pub fn start_tls(tls: SinkTls) -> MailSink {
        Self::spawn(Some(tls))
    }

    /// The root certificate of the sink's own certificate authority (TLS sinks only).
    pub fn root_pem(&self) -> PathBuf {
        self.dir.path().join("ca/root.pem")
    }

    fn spawn(tls: Option<SinkTls>) -> MailSink {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("certgate_mail_sink.py"), HANDLER).unwrap();
        std::fs::create_dir(dir.path().join("messages")).unwrap();
        let mut tls_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(tls) = tls {
            let ca = dir.path().join("ca");
            let server = dir.path().join("server");
            certgate_ok(&["ca", "init", "--dir", ca.to_str().unwrap()]);
            certgate_ok(&[
                "ca",
                "issue-server",
                "--dir",
                ca.to_str().unwrap(),
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--out",
                server.to_str().unwrap(),
            ]);
            let (cert_flag, key_flag) = match tls {
                SinkTls::StartTls => ("--tlscert", "--tlskey"),
                SinkTls::Smtps => ("--smtpscert", "--smtpskey"),
            };
            tls_args.extend([
                cert_flag.into(),
                dir.path().join("server.pem").into(),
                key_flag.into(),
                dir.path().join("server.key").into(),
            ]);
        }
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).unwrap();
        let child = Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-u", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(&tls_args)
            .args(["-c", "certgate_mail_sink.JsonMaildir"])
            .arg(dir.path().join("messages"))
            .env("PYTHONPATH", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 -m aiosmtpd (make test installs aiosmtpd)");
        let mut sink = MailSink {
            port,
            dir,
            child,
            taken: Mutex::new(HashSet::new()),
        };
        let up = eventually(Duration::from_secs(10), || {
            matches!(sink.child.try_wait(), Ok(None))
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "aiosmtpd did not start:\n{}", sink.log_text());
        sink
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, no TLS, no authentication.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    /// Every message received so far, oldest first.
    pub fn all(&self) -> Vec<Mail> {
        self.files().iter().map(|(_, mail)| mail.clone()).collect()
    }

    /// The oldest message delivered to `to` (an envelope recipient, any case) that no earlier
    /// `wait_for` returned, so a resent code is a second call; panics with what did arrive after
    /// `within`.
    pub fn wait_for(&self, to: &str, within: Duration) -> Mail {
        let deadline = Instant::now() + within;
        loop {
            let mut taken = self.taken.lock();
            let found = self.files().into_iter().find(|(file, mail)| {
                !taken.contains(file) && mail.recipients.iter().any(|r| r.eq_ignore_ascii_case(to))
            });
            if let Some((file, mail)) = found {
                taken.insert(file);
                return mail;
            }
            drop(taken);
            assert!(
                Instant::now() < deadline,
                "no mail to {to} within {within:?}; received: {:#?}\naiosmtpd log:\n{}",
                self.all(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The messages written so far with their file names, in order of arrival.
    fn files(&self) -> Vec<(String, Mail)> {
        let dir = self.dir.path().join("messages");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let mail = read_mail(dir.join(&name));
                (name, mail)
            })
            .collect()
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_mail(path: PathBuf) -> Mail {
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let string = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    Mail {
        from: string("from"),
        to: string("to"),
        recipients: strings(&json["recipients"]),
        envelope_from: string("envelope_from"),
        subject: string("subject"),
        body_text: string("body_text"),
        body_html: json["body_html"].as_str().map(str::to_owned),
        headers: json["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| {
                let pair = strings(pair);
                Some((pair.first()?.clone(), pair.get(1)?.clone()))
            })
            .collect(),
        raw: string("raw"),
    }
}
