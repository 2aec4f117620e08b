//! The load benchmark's TLS client for what oha cannot do (scripts/load_bench.sh):
//!
//! - `handshakes`: one full TLS handshake per request, with a client certificate and session
//!   resumption switched off, `Connection: close`; prints oha's JSON summary fields so the same
//!   checks read it.
//! - `idle`: opens N keep-alive TLS connections, makes one request on each, then holds them open
//!   until stdin closes, so the server's resident size can be read with N idle clients.
//! - `credential`: a browser credential signed with a deployment's `credential.key`, as the portal
//!   would issue it after a sign-in, for the cookie scenario.
//!
//! The server certificate is not verified: the benchmark measures the server's work, and the
//! client's own verification would only slow the load generator down. Every request's status is
//! counted, so a wrong answer cannot look fast.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_certs::{CredentialClaims, CredentialClass, CredentialKey, MfaStatus};
use clap::{Args, Parser, Subcommand};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Full handshakes, one request per connection, for a number of seconds.
    Handshakes {
        #[command(flatten)]
        target: Target,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// N idle keep-alive connections after one request each, held until stdin closes.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
    },
    /// Print a browser credential for a device of ORG, valid for an hour.
    Credential {
        /// The deployment's `data/credential.key`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        org: String,
    },
}

#[derive(Args, Clone)]
struct Target {
    /// Address to connect to.
    #[arg(long)]
    connect: SocketAddr,
    /// Host name for SNI and the Host header.
    #[arg(long)]
    host: String,
    #[arg(long, default_value = "/bench")]
    path: String,
    /// Client certificate chain (PEM) and its key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector(target: &Target) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match (&target.cert, &target.key) {
        (Some(cert), Some(key)) => {
            let chain = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key: PrivateKeyDer = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .map_err(|e| format!("{}: {e}", key.display()))?
                .ok_or_else(|| format!("{}: no private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// One request on a fresh connection; the status code, or the error's text.
async fn one_request(
    connector: &TlsConnector,
    target: &Target,
    name: &ServerName<'static>,
    close: bool,
) -> Result<(u16, Option<tokio_rustls::client::TlsStream<TcpStream>>), String> {
    let tcp = TcpStream::connect(target.connect)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n\r\n",
        target.path,
        target.host,
        if close { "close" } else { "keep-alive" }
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(&mut tls);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| "bad content-length")?;
            }
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("read body: {e}"))?;
    if close {
        let _ = tls.shutdown().await;
        Ok((status, None))
    } else {
        Ok((status, Some(tls)))
    }
}

async fn handshakes(target: Target, concurrency: usize, seconds: u64) -> Result<(), String> {
    let connector = connector(&target)?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (connector, target, name) = (connector.clone(), target.clone(), name.clone());
        workers.spawn(async move {
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let began = Instant::now();
                match one_request(&connector, &target, &name, true).await {
                    Ok((status, _)) => {
                        latencies.push(began.elapsed().as_secs_f64());
                        *statuses.entry(status.to_string()).or_default() += 1;
                    }
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
            (statuses, errors, latencies)
        });
    }
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (s, e, l) = done.map_err(|e| e.to_string())?;
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        latencies.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let answered: u64 = statuses.values().sum();
    let summary = serde_json::json!({
        "summary": { "requestsPerSec": answered as f64 / elapsed, "total": elapsed },
        "statusCodeDistribution": statuses,
        "errorDistribution": errors,
        "latencyPercentiles": { "p50": quantile(0.5), "p99": quantile(0.99) },
    });
    println!("{summary}");
    Ok(())
}

async fn idle(target: Target, connections: usize) -> Result<(), String> {
    let connector = connector(&target)?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let mut held = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (status, stream) = one_request(&connector, &target, &name, false).await?;
        if status != 200 {
            return Err(format!("expected status 200, got {status}"));
        }
        held.push(stream);
    }
    println!("{} connections open and idle", held.len());
    // Held until whoever started us closes our stdin.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    drop(held);
    Ok(())
}

fn credential(key: &std::path::Path, org: &str) -> Result<String, String> {
    let key = CredentialKey::load(key).map_err(|e| e.to_string())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    key.sign(&CredentialClaims {
        device_id: "bench-browser".into(),
        org: org.into(),
        account: "bench@example.org".into(),
        class: CredentialClass::Personal,
        mfa: MfaStatus::Yes,
        issued_at: now,
        not_after: now + 3600,
    })
    .map_err(|e| e.to_string())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Credential { key, org } = &cli.command {
        return match credential(key, org) {
            Ok(token) => {
                println!("{token}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench-client: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Handshakes {
                target,
                concurrency,
                seconds,
            } => handshakes(target, concurrency, seconds).await,
            Command::Idle {
                target,
                connections,
            } => idle(target, connections).await,
            Command::Credential { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
