//! Builds the Pingora server from the configuration: the HTTPS (and optional plain HTTP)
//! listener, hot reload of policies and certificates, upstream health checks, and any tasks the
//! caller adds (the control plane, the portal). Everything fallible happens in
//! `build`, so a bad configuration is reported before anything listens.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certgate_certs::{
    CaHandle, CertificateAuthority, CredentialKey, CredentialVerifier, SecretKeyring,
};
use certgate_db::Database;
use certgate_policies::config::Config;
use certgate_policies::{FileWatch, PolicyErrors, PolicyHandle};
use parking_lot::Mutex;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::Listeners;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use tokio::signal::unix::{signal, SignalKind};

use crate::acme::{self, AcmeChallenges, AcmeManager};
use crate::admin_allowlist::{self, AdminAllowLayers, AdminAllowLists};
use crate::client_ip::TrustedProxies;
use crate::connection::{ConnectionLimits, GuardedApp};
use crate::drain::{Drain, DrainingShutdown};
use crate::metrics::Metrics;
use crate::proxy::{Gateway, GatewayState};
use crate::proxy_protocol::ProxyProtocol;
use crate::revocation::{RevocationSet, Revocations};
use crate::seen::RecentlySeen;
use crate::tls::{
    self, CertificateResolver, ClientCertificateInspector, ClientTrust, LenientClientVerifier,
    ServerCertificateSource,
};
use crate::upgraded::UpgradedConnections;
use crate::upstreams::Upstreams;
use certgate_store::{Clock, Store};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Policies(#[from] PolicyErrors),
    #[error("certificate authority: {0}")]
    Ca(#[from] certgate_certs::CertificateError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("database: {0}")]
    Database(#[from] certgate_db::DbError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {0}")]
    Listen(String),
    #[error("data.dir: {0}")]
    DataDir(certgate_certs::CertificateError),
    #[error("server.acme: {0}")]
    Acme(#[from] acme::AcmeError),
}

type Task = Box<dyn FnOnce(ShutdownWatch) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A one-shot task run as a Pingora background service.
struct TaskService(Mutex<Option<Task>>);

#[async_trait]
impl BackgroundService for TaskService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let task = self.0.lock().take();
        if let Some(task) = task {
            task(shutdown).await;
        }
    }
}

/// A configured gateway, ready to run.
pub struct GatewayServer {
    server: Server,
    state: Arc<GatewayState>,
    /// False until the listeners are up and again once shutdown begins (`/readyz`).
    ready: Arc<AtomicBool>,
    proxy_ports: Vec<u16>,
    shutdown_grace: Duration,
    /// The CA as last read, shared with the portal, which issues with it.
    ca: Arc<CaHandle>,
}

/// The gateway's live state that the control plane changes and reports on: the revocations and
/// admin allow lists every request consults, the metrics, the shared store once it opens, the
/// policies, readiness and drain.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    pub admin_allow: Arc<AdminAllowLists>,
    /// Set by whoever opens the store (the control plane); the proxy reads it.
    pub store: Arc<tokio::sync::OnceCell<Store>>,
    pub policies: Arc<PolicyHandle>,
    /// False until the listeners are up and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
    pub drain: Arc<Drain>,
    /// The proxy's ports, to tell when Pingora listens on all of them.
    pub proxy_ports: Vec<u16>,
}

impl GatewayServer {
    /// Everything fallible happens here; `clock` is the time every part reads.
    pub fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ServeError> {
        // One process-wide TLS provider for the listener, upstreams and `rediss://`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Setup(e.to_string()))?);
        let policies = Arc::new(PolicyHandle::new(&config.policies.dir)?);
        metrics.policy_last_reload.set(clock.unix_secs() as f64);

        let ca = Arc::new(CaHandle::open(&config.ca.dir)?);
        metrics
            .ca_not_after
            .set(ca.load().issuing_not_after().unix_timestamp() as f64);
        // The honoured issuing CAs are the anchors (a client that sends only its leaf is known
        // too), and are replaced when they change on disk.
        let trust = Arc::new(ClientTrust::new(ca.load().trust_anchor_ders())?);

        std::fs::create_dir_all(&config.data.dir).map_err(|e| {
            ServeError::Setup(format!("data.dir {}: {e}", config.data.dir.display()))
        })?;
        // Pingora binds its listeners later and, when that fails, retries for 30 s and panics
        // in a thread of its own: find a taken address here, with the reason.
        for (key, addr) in proxy_listeners(config) {
            probe_listener(key, addr)?;
        }
        let credential_key = CredentialKey::load_or_create(&config.data.dir.join("credential.key"))
            .map_err(ServeError::DataDir)?;
        let tokens = Arc::new(CredentialVerifier::new([&credential_key]));

        let durable = load_durable_state(config, clock.unix_secs())?;
        let revocations = Arc::new(Revocations::new(durable.revocations));
        let admin_allow = Arc::new(AdminAllowLists::new(durable.admin_allow));
        let mut sources = certificate_sources(config);
        if let Some(acme) = &config.server.acme {
            // Until the first ACME certificate arrives, one from certgate's CA stands in.
            acme::ensure_stand_in(acme, &config.data.dir, &ca)?;
            sources.push(acme::source(acme, &config.data.dir));
        }
        let resolver = Arc::new(CertificateResolver::new(sources)?);
        let acme_challenges = Arc::new(AcmeChallenges::default());
        resolver.export_expiries(&metrics);
        let upstreams = Arc::new(Upstreams::new(&policies.current()));

        let state = Arc::new(GatewayState {
            acme_challenges: Arc::clone(&acme_challenges),
            clock: Arc::clone(&clock),
            policies: Arc::clone(&policies),
            admin_allow: Arc::clone(&admin_allow),
            revocations: Arc::clone(&revocations),
            tokens,
            credential_key,
            upstreams: Arc::clone(&upstreams),
            metrics: Arc::clone(&metrics),
            // Behind a PROXY-protocol balancer the header names the client; X-Forwarded-For
            // would come from the client itself.
            trusted_proxies: if config.server.proxy_protocol {
                TrustedProxies::default()
            } else {
                TrustedProxies::new(config.server.trusted_proxies.clone())
            },
            portal_addr: config.portal.listen,
            gateway_secret: random_secret(),
            https_port: config.server.https_listen.port(),
            connect_timeout: config.server.upstream_connect_timeout,
            read_timeout: config.server.upstream_read_timeout,
            store: Arc::new(tokio::sync::OnceCell::new()),
            seen: RecentlySeen::default(),
            drain: Arc::new(Drain::default()),
            upgraded: Arc::new(UpgradedConnections::default()),
            access_log: matches!(
                config.server.access_log,
                certgate_policies::config::AccessLog::Json
            ),
        });

        let conf = ServerConf {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // certgate waits for the requests in flight itself (see `drain`), so once Pingora
            // hears of the shutdown nothing is left to wait for.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            pid_file: config.data.dir.join("certgate.pid").display().to_string(),
            upgrade_sock: config.data.dir.join("upgrade.sock").display().to_string(),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let inspector = ClientCertificateInspector::new(
            Arc::clone(&trust),
            Arc::clone(&metrics),
            Arc::clone(&clock),
        );
        let mut settings = TlsSettings::with_callbacks(Box::new(inspector))
            .map_err(|e| ServeError::Setup(e.to_string()))?;
        settings.set_cert_resolver(Arc::clone(&resolver) as Arc<dyn rustls::server::ResolvesServerCert>);
        // Its hints name the issuing CA, whose name stays the same across rollovers.
        settings.set_client_cert_verifier(Arc::new(LenientClientVerifier::new(trust.verifier())));
        settings.enable_h2();
        let mut listeners = Listeners::new();
        // Pingora gives every connection a 64 KiB read buffer (zeroed, so resident from the
        // first byte): most of an idle keep-alive connection's memory. rustls reads the socket
        // into a buffer of its own, 4 KiB at a time, which it shrinks back when it is empty, so
        // a second buffer in front of it only holds memory while the connection idles.
        listeners.add_listener(
            ListenerConfig::tcp(config.server.https_listen.to_string())
                .tls(settings)
                .l4_buffer(L4BufferSettings::default().read(0)),
        );
        if let Some(http) = config.server.http_listen {
            listeners.add_tcp(&http.to_string());
        }
        if config.server.proxy_protocol {
            let trusted = TrustedProxies::new(config.server.trusted_proxies.clone());
            listeners.set_pre_tls_callback(Arc::new(ProxyProtocol::new(trusted)));
        }
        let mut app = pingora::proxy::http_proxy(
            &server.configuration,
            Gateway {
                state: Arc::clone(&state),
            },
        );
        // HTTP/2 header blocks get the same ceiling as HTTP/1 heads.
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        h2.max_header_list_size(u32::try_from(config.server.max_request_head).unwrap_or(u32::MAX));
        app.h2_options = Some(h2);
        let app = GuardedApp::new(
            app,
            ConnectionLimits {
                head_timeout: config.server.request_head_timeout,
                max_head: config.server.max_request_head,
                per_client: config.server.max_connections_per_client,
            },
            // Balancers that name clients in X-Forwarded-For carry many clients on their
            // connections; behind PROXY protocol each connection names its client.
            if config.server.proxy_protocol {
                TrustedProxies::default()
            } else {
                TrustedProxies::new(config.server.trusted_proxies.clone())
            },
            Arc::clone(&metrics),
            Arc::clone(&state.drain),
        );
        let proxy = pingora::services::listening::Service::with_listeners(
            "certgate gateway".into(),
            listeners,
            app,
        );
        server.add_service(proxy);

        let mut gateway = GatewayServer {
            server,
            state,
            ready: Arc::new(AtomicBool::new(false)),
            proxy_ports: proxy_listeners(config)
                .into_iter()
                .map(|(_, addr)| addr.port())
                .collect(),
            shutdown_grace: config.server.shutdown_grace,
            ca: Arc::clone(&ca),
        };
        if let Some(acme) = config.server.acme.clone() {
            let manager = AcmeManager::new(
                acme,
                config.data.dir.clone(),
                acme_challenges,
                Arc::clone(&ca),
            );
            gateway.add_task("acme", move |shutdown| Box::pin(manager.run(shutdown)));
        }
        gateway.add_reload(Reloader {
            running: Mutex::new(()),
            policies,
            resolver,
            ca,
            trust,
            upstreams: upstreams.clone(),
            metrics,
            clock,
        });
        let (upgraded, live, time) = (
            Arc::clone(&gateway.state.upgraded),
            Arc::clone(&gateway.state.revocations),
            Arc::clone(&gateway.state.clock),
        );
        gateway.add_task("upgraded connections", move |mut shutdown| {
            Box::pin(async move {
                loop {
                    let cut = upgraded.sweep(&live.load(), time.unix_secs());
                    if cut > 0 {
                        tracing::info!(cut, "closed upgraded connections whose credential ended");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        });
        gateway.add_task("upstream health", move |mut shutdown| {
            Box::pin(async move {
                loop {
                    upstreams.check_due(std::time::Instant::now());
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        });
        Ok(gateway)
    }

    /// The CA as last read (re-read when its files change): the portal issues with it.
    pub fn ca(&self) -> Arc<CaHandle> {
        Arc::clone(&self.ca)
    }

    /// The per-process secret the portal uses to believe the gateway's headers.
    pub fn gateway_secret(&self) -> &str {
        &self.state.gateway_secret
    }

    /// What the control plane (`certgate-control`) and the portal work on.
    pub fn shared(&self) -> Shared {
        Shared {
            metrics: Arc::clone(&self.state.metrics),
            revocations: Arc::clone(&self.state.revocations),
            admin_allow: Arc::clone(&self.state.admin_allow),
            store: Arc::clone(&self.state.store),
            policies: Arc::clone(&self.state.policies),
            ready: Arc::clone(&self.ready),
            drain: Arc::clone(&self.state.drain),
            proxy_ports: self.proxy_ports.clone(),
        }
    }

    /// Runs `task` beside the proxy; it should return once `shutdown` changes.
    pub fn add_task(
        &mut self,
        name: &str,
        task: impl FnOnce(ShutdownWatch) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static,
    ) {
        let service = TaskService(Mutex::new(Some(Box::new(task))));
        self.server.add_service(background_service(name, service));
    }

    /// Serves until SIGTERM (graceful, within `shutdown_grace`) or SIGINT; exits the process.
    pub fn run(self) {
        // A listener Pingora cannot bind (taken since `build` checked it) panics its service
        // thread and would leave a process that never serves: end it with the reason.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if info.to_string().contains("Failed to build listeners") {
                fatal("a proxy listener could not be bound (see the message above)");
            }
        }));
        let shutdown = DrainingShutdown {
            drain: Arc::clone(&self.state.drain),
            grace: self.shutdown_grace,
            ready: Arc::clone(&self.ready),
        };
        self.server.run(RunArgs {
            shutdown_signal: Box::new(shutdown),
        });
        std::process::exit(0);
    }

    fn add_reload(&mut self, reloader: Reloader) {
        let reloader = Arc::new(reloader);
        self.add_task("reload", move |mut shutdown| {
            Box::pin(async move {
                let watch = {
                    let paths = Arc::clone(&reloader);
                    let on_change = Arc::clone(&reloader);
                    FileWatch::start(
                        Duration::from_millis(400),
                        move || paths.watched_paths(),
                        move || on_change.run(),
                    )
                };
                if let Err(e) = &watch {
                    tracing::error!(error = %e, "cannot watch policy and certificate files; SIGHUP still reloads");
                }
                let mut hangup = match signal(SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGHUP");
                        let _ = shutdown.changed().await;
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = hangup.recv() => {
                            tracing::info!("SIGHUP: reloading policies and certificates");
                            let reloader = Arc::clone(&reloader);
                            let _ = tokio::task::spawn_blocking(move || reloader.run()).await;
                        }
                        _ = shutdown.changed() => break,
                    }
                }
                drop(watch);
            })
        });
    }
}

/// Reloads policies, server certificates and the CA together, keeping the previous set of each
/// on error.
struct Reloader {
    /// The file watch and SIGHUP may fire together; one reload at a time.
    running: Mutex<()>,
    policies: Arc<PolicyHandle>,
    resolver: Arc<CertificateResolver>,
    ca: Arc<CaHandle>,
    trust: Arc<ClientTrust>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl Reloader {
    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.policies.watched_paths();
        paths.extend(self.resolver.watched_paths());
        paths.extend(self.ca.watched_paths());
        paths
    }

    fn run(&self) {
        let _one_at_a_time = self.running.lock();
        let mut ok = true;
        match self.policies.reload() {
            Ok(set) => {
                self.upstreams.rebuild(&set);
                self.metrics
                    .policy_last_reload
                    .set(self.clock.unix_secs() as f64);
                tracing::info!(
                    organisations = set.organisations().count(),
                    "policies reloaded"
                );
            }
            Err(errors) => {
                ok = false;
                for error in &errors.0 {
                    tracing::error!(%error, "policy reload failed; keeping the previous policies");
                }
            }
        }
        match self.resolver.reload() {
            Ok(()) => self.resolver.export_expiries(&self.metrics),
            Err(error) => {
                ok = false;
                tracing::error!(%error, "certificate reload failed; keeping the previous certificates");
            }
        }
        ok &= self.reload_ca();
        self.metrics
            .policy_reload_ok
            .set(if ok { 1.0 } else { 0.0 });
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .policy_reloads
            .with_label_values(&[result])
            .inc();
    }
}

impl Reloader {
    /// After an issuing-CA rollover or retirement: the new set of honoured issuing CAs judges
    /// the next handshake, and the portal signs with the new one.
    fn reload_ca(&self) -> bool {
        // Trust is replaced before the portal signs with the new CA, and neither when either
        // fails, so the two never disagree.
        let changed = self
            .ca
            .changed()
            .map_err(ServeError::from)
            .and_then(|fresh| {
                let Some(fresh) = fresh else {
                    return Ok(false);
                };
                self.trust.replace(fresh.trust_anchor_ders())?;
                self.ca.store(fresh);
                Ok(true)
            });
        match changed {
            Ok(false) => true,
            Ok(true) => {
                let ca = self.ca.load();
                self.metrics
                    .ca_not_after
                    .set(ca.issuing_not_after().unix_timestamp() as f64);
                tracing::info!(
                    honoured = ca.trust_anchor_ders().len(),
                    "issuing CAs reloaded"
                );
                true
            }
            Err(error) => {
                tracing::error!(%error, "CA reload failed; keeping the previous issuing CAs");
                false
            }
        }
    }
}

/// Ends the process with `message`: for what makes the instance unable to serve at start.
pub fn fatal(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("certgate: cannot start: {message}");
    std::process::exit(1);
}

/// The proxy's listeners, with the configuration key that names each.
fn proxy_listeners(config: &Config) -> Vec<(&'static str, SocketAddr)> {
    let mut listeners = vec![("server.https_listen", config.server.https_listen)];
    if let Some(http) = config.server.http_listen {
        listeners.push(("server.http_listen", http));
    }
    listeners
}

/// Binds `addr` and lets it go again: whether a listener can be made there now.
fn probe_listener(key: &str, addr: SocketAddr) -> Result<(), ServeError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| ServeError::Listen(format!("{key} {addr}: {}", io_reason(&e))))
}

/// An I/O error in words an operator acts on.
pub fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!("the address is already in use (another program, or certgate already running): {error}")
        }
        std::io::ErrorKind::PermissionDenied => format!("permission denied: {error}"),
        std::io::ErrorKind::NotFound => format!("its directory does not exist: {error}"),
        _ => error.to_string(),
    }
}

/// Whether this process has a listening TCP socket on each of `ports` (Linux: the kernel's
/// socket tables, matched against this process's own descriptors, so another program on the
/// same port does not count). Where `/proc` cannot be read this cannot be told, and the check
/// before start and the end of the process on a failed bind are what hold.
pub fn listening_on(ports: &[u16]) -> bool {
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return true;
    };
    if !std::path::Path::new("/proc/net/tcp").exists() {
        return true;
    }
    let ours: std::collections::HashSet<String> = descriptors
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut listening = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] ("0100007F:1F90"), st fields[3] (0A: LISTEN), inode
            // fields[9].
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != "0A" || !ours.contains(*inode) {
                continue;
            }
            if let Some(port) = local
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
            {
                listening.insert(port);
            }
        }
    }
    ports.iter().all(|port| listening.contains(port))
}

fn certificate_sources(config: &Config) -> Vec<ServerCertificateSource> {
    config
        .server
        .certificates
        .iter()
        .map(|c| ServerCertificateSource {
            hosts: c.hosts.clone(),
            cert: c.cert.clone(),
            key: c.key.clone(),
        })
        .collect()
}

/// `certgate check`: the files [`GatewayServer::build`] reads before it listens, read the same
/// way and changing nothing: the CA, the server certificates and keys, and the data
/// directory's keys where they exist (a first start creates them). Every problem, one message
/// each. (The admin token file is the control plane's: `certgate_control::check_files`.)
pub fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(error) = CertificateAuthority::open(&config.ca.dir) {
        problems.push(format!("ca.dir: {error}"));
    }
    // Each entry alone, so the message can say where it is written.
    for (index, (source, entry)) in certificate_sources(config)
        .into_iter()
        .zip(&config.server.certificates)
        .enumerate()
    {
        if let Err(error) = CertificateResolver::new(vec![source]) {
            problems.push(format!(
                "{}:{}: server.certificates[{index}]: {error}",
                config.source.display(),
                entry.line
            ));
        }
    }
    if let Some(root) = config.server.acme.as_ref().and_then(|a| a.ca_file.as_ref()) {
        let readable = std::fs::read(root)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                rustls_pemfile::certs(&mut pem.as_slice())
                    .next()
                    .and_then(Result::ok)
                    .map(drop)
                    .ok_or_else(|| "contains no PEM certificate".to_owned())
            });
        if let Err(error) = readable {
            problems.push(format!("server.acme.ca_file {}: {error}", root.display()));
        }
    }
    let credential_key = config.data.dir.join("credential.key");
    if credential_key.exists() {
        if let Err(error) = CredentialKey::load(&credential_key) {
            problems.push(format!("data.dir: {error}"));
        }
    }
    let keyring = config.data.dir.join("secrets.key");
    if keyring.exists() {
        if let Err(error) = SecretKeyring::load(&keyring) {
            problems.push(format!("data.dir: {error}"));
        }
    }
    if let Err(error) = writable_dir(&config.data.dir) {
        problems.push(format!("data.dir {}: {error}", config.data.dir.display()));
    }
    let socket = &config.server.admin_socket;
    let socket_dir = socket.parent().unwrap_or(Path::new("."));
    if !socket_dir.is_dir() && socket_dir.starts_with(&config.data.dir) {
        // Inside the data directory, which `serve` creates: the data directory check covers it.
    } else if let Err(error) = existing_writable_dir(socket_dir) {
        problems.push(format!("server.admin_socket {}: {error}", socket.display()));
    }
    // A running instance holds the ports; its socket answering says so.
    if std::os::unix::net::UnixStream::connect(socket).is_err() {
        let mut listeners = proxy_listeners(config);
        listeners.extend(
            config
                .server
                .admin_listen
                .map(|a| ("server.admin_listen", a)),
        );
        listeners.push(("portal.listen", config.portal.listen));
        for (key, addr) in listeners {
            if let Err(error) = probe_listener(key, addr) {
                problems.push(error.to_string());
            }
        }
    }
    problems
}

/// Why `serve` could not keep its files in a directory.
#[derive(Debug, thiserror::Error)]
enum DirProblem {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is not writable: {error}", dir.display())]
    NotWritable { dir: PathBuf, error: std::io::Error },
    #[error("cannot be created in {}: {problem}", ancestor.display())]
    CannotCreateIn {
        ancestor: PathBuf,
        problem: Box<DirProblem>,
    },
}

/// `dir` is a directory `serve` can write in, or can be created (its nearest existing
/// ancestor is one). Tried with a file made and removed at once.
fn writable_dir(dir: &Path) -> Result<(), DirProblem> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => return Ok(()),
        }
    }
    existing_writable_dir(existing).map_err(|problem| {
        if existing == dir {
            problem
        } else {
            DirProblem::CannotCreateIn {
                ancestor: existing.to_owned(),
                problem: Box::new(problem),
            }
        }
    })
}

fn existing_writable_dir(dir: &Path) -> Result<(), DirProblem> {
    if !dir.exists() {
        return Err(DirProblem::Missing(dir.to_owned()));
    }
    if !dir.is_dir() {
        return Err(DirProblem::NotADirectory(dir.to_owned()));
    }
    tempfile::Builder::new()
        .prefix(".certgate-check")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|error| DirProblem::NotWritable {
            dir: dir.to_owned(),
            error,
        })
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// What SQL holds that every request consults.
struct DurableState {
    revocations: RevocationSet,
    admin_allow: AdminAllowLayers,
}

/// The durable revocation record and the admins' allow lists, read before anything listens.
fn load_durable_state(config: &Config, now: i64) -> Result<DurableState, ServeError> {
    with_database(config, async |db| {
        let records = db.live_revocations(now).await?;
        let admin_allow = admin_allowlist::load_layers(db).await?;
        Ok(DurableState {
            revocations: RevocationSet::from_records(&records),
            admin_allow,
        })
    })
}

/// The admins' allow lists as SQL holds them now, for `certgate policy explain`. `None` when
/// the default SQLite file does not exist yet (nothing was ever saved; it is not created here).
pub fn read_admin_allow_layers(config: &Config) -> Result<Option<AdminAllowLayers>, ServeError> {
    if config.database.url.is_none() && !config.data.dir.join("certgate.db").exists() {
        return Ok(None);
    }
    with_database(config, async |db| {
        Ok(Some(admin_allowlist::load_layers(db).await?))
    })
}

/// Runs `work` on the configured database, opened for it alone.
fn with_database<T>(
    config: &Config,
    work: impl AsyncFnOnce(&Database) -> Result<T, ServeError>,
) -> Result<T, ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Setup(e.to_string()))?;
    runtime.block_on(async {
        let db = Database::open(
            config.database.url.as_deref().unwrap_or_default(),
            &config.data.dir,
        )
        .await?;
        let result = work(&db).await;
        db.close().await;
        result
    })
}
