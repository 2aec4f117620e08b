//! Builds the Pingora server from the configuration: the HTTPS (and optional plain HTTP)
//! listener, the admin listener and socket, hot reload of policies and certificates, upstream
//! health checks, and any tasks the caller adds (the portal). Everything fallible happens in
//! `build`, so a bad configuration is reported before anything listens.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certgate_certs::{CertificateAuthority, CredentialKey, CredentialVerifier, SecretKeyring};
use certgate_db::Database;
use certgate_policies::config::Config;
use certgate_policies::{FileWatch, PolicyErrors, PolicyHandle};
use parking_lot::Mutex;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::Listeners;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::{self, AdminState, PeerCheckedListener};
use crate::admin_allowlist::{self, AdminAllowLayers, AdminAllowLists};
use crate::client_ip::TrustedProxies;
use crate::connection::{ConnectionLimits, GuardedApp};
use crate::feed;
use crate::metrics::Metrics;
use crate::proxy::{unix_now, Gateway, GatewayState};
use crate::proxy_protocol::ProxyProtocol;
use crate::revocation::{RevocationSet, Revocations};
use crate::seen::RecentlySeen;
use crate::tls::{
    self, CertificateResolver, ClientCertificateInspector, LenientClientVerifier,
    ServerCertificateSource,
};
use crate::upstreams::Upstreams;
use certgate_store::{Store, StoreSettings, SystemClock};

/// The read buffer of a client connection: one TLS record.
const READ_BUFFER: usize = 16 * 1024;

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
    control: Arc<AdminState>,
}

impl GatewayServer {
    pub fn build(config: &Config) -> Result<Self, ServeError> {
        // One process-wide TLS provider for the listener, upstreams and `rediss://`.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Setup(e.to_string()))?);
        let policies = Arc::new(PolicyHandle::new(&config.policies.dir)?);
        metrics.policy_last_reload.set(unix_now() as f64);

        let ca = CertificateAuthority::open(&config.ca.dir)?;
        metrics
            .ca_not_after
            .set(ca.issuing_not_after().unix_timestamp() as f64);
        // The issuing CA is an anchor too, so a client that sends only its leaf is still known.
        let mut anchors = ca.trust_anchor_ders().to_vec();
        anchors.push(ca.issuing_der().clone());
        let client_verifier = tls::client_verifier(&anchors)?;

        std::fs::create_dir_all(&config.data.dir)
            .map_err(|e| ServeError::Setup(format!("{}: {e}", config.data.dir.display())))?;
        let credential_key =
            CredentialKey::load_or_create(&config.data.dir.join("credential.key"))?;
        let tokens = Arc::new(CredentialVerifier::new([&credential_key]));

        let durable = load_durable_state(config)?;
        let revocations = Arc::new(Revocations::new(durable.revocations));
        let admin_allow = Arc::new(AdminAllowLists::new(durable.admin_allow));
        let resolver = Arc::new(CertificateResolver::new(certificate_sources(config))?);
        let upstreams = Arc::new(Upstreams::new(&policies.current()));

        let state = Arc::new(GatewayState {
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
            access_log: matches!(
                config.server.access_log,
                certgate_policies::config::AccessLog::Json
            ),
        });

        let conf = ServerConf {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // Pingora keeps serving requests in flight for the grace period after SIGTERM (while
            // /readyz says 503), then gives the runtimes a last second.
            grace_period_seconds: Some(config.server.shutdown_grace.as_secs().saturating_sub(1)),
            graceful_shutdown_timeout_seconds: Some(1),
            pid_file: config.data.dir.join("certgate.pid").display().to_string(),
            upgrade_sock: config.data.dir.join("upgrade.sock").display().to_string(),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let inspector =
            ClientCertificateInspector::new(Arc::clone(&client_verifier), Arc::clone(&metrics));
        let mut settings = TlsSettings::with_callbacks(Box::new(inspector))
            .map_err(|e| ServeError::Setup(e.to_string()))?;
        settings.set_cert_resolver(Arc::clone(&resolver) as Arc<dyn rustls::server::ResolvesServerCert>);
        settings.set_client_cert_verifier(Arc::new(LenientClientVerifier::new(client_verifier)));
        settings.enable_h2();
        let mut listeners = Listeners::new();
        // Pingora gives every connection a 64 KiB read buffer (zeroed, so resident from the
        // first byte): most of an idle keep-alive connection's memory. One TLS record is at most
        // 16 KiB, and the requests this gateway reads are far smaller.
        listeners.add_listener(
            ListenerConfig::tcp(config.server.https_listen.to_string())
                .tls(settings)
                .l4_buffer(L4BufferSettings::default().read(READ_BUFFER)),
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
        );
        let proxy = pingora::services::listening::Service::with_listeners(
            "certgate gateway".into(),
            listeners,
            app,
        );
        server.add_service(proxy);

        let ready = Arc::new(AtomicBool::new(false));
        let keyring_path = config.data.dir.join("secrets.key");
        let keyring = SecretKeyring::load_or_create(&keyring_path)?;
        let control = Arc::new(AdminState {
            keyring: Arc::new(parking_lot::RwLock::new(keyring)),
            keyring_path,
            events: std::sync::OnceLock::new(),
            metrics: Arc::clone(&metrics),
            revocations,
            admin_allow,
            allow_list_limits: config.limits.admin_allow_list(),
            token_guesses: certgate_store::RateLimit {
                limit: config.limits.password_failures_per_ip.count,
                window: config.limits.password_failures_per_ip.window,
            },
            database: tokio::sync::OnceCell::new(),
            store: Arc::clone(&state.store),
            ready: Arc::clone(&ready),
            portal_serving: AtomicBool::new(false),
            policies: Arc::clone(&state.policies),
        });
        let mut gateway = GatewayServer {
            server,
            state,
            control: Arc::clone(&control),
        };
        gateway.add_admin(config, control)?;
        gateway.add_reload(policies, resolver, upstreams.clone(), metrics);
        gateway.add_task("upstream health", move |mut shutdown| {
            Box::pin(async move {
                loop {
                    upstreams.check_health(Duration::from_secs(2)).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        });
        Ok(gateway)
    }

    /// The per-process secret the portal uses to believe the gateway's headers.
    pub fn gateway_secret(&self) -> &str {
        &self.state.gateway_secret
    }

    /// What the portal shares with the gateway: policies, database and store (set once they
    /// open), metrics, and the revocation path.
    pub fn control(&self) -> Arc<AdminState> {
        Arc::clone(&self.control)
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
        self.server.run_forever();
    }

    fn add_admin(&mut self, config: &Config, state: Arc<AdminState>) -> Result<(), ServeError> {
        let token = match &config.server.admin_token_file {
            Some(path) => Some(Arc::new(
                admin::read_token_file(path).map_err(ServeError::Setup)?,
            )),
            None => None,
        };
        let socket_path = config.server.admin_socket.clone();
        let admin_listen = config.server.admin_listen;
        let database_url = config.database.url.clone().unwrap_or_default();
        let store_settings = StoreSettings {
            redis_url: config.store.redis_url.clone().unwrap_or_default(),
            key_prefix: config.store.key_prefix.clone(),
            sentinel_master: config.store.sentinel_master.clone(),
            ..StoreSettings::default()
        };
        let data_dir = config.data.dir.clone();
        self.add_task("admin", move |mut shutdown| {
            Box::pin(async move {
                let ready = Arc::clone(&state.ready);
                let mut serving = true;
                match PeerCheckedListener::bind(&socket_path) {
                    Ok(listener) => {
                        tokio::spawn(axum::serve(listener, admin::socket_router(Arc::clone(&state))).into_future());
                    }
                    Err(e) => {
                        serving = false;
                        tracing::error!(socket = %socket_path.display(), error = %e, "cannot open the admin socket");
                    }
                }
                if let Some(addr) = admin_listen {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => {
                            let router = admin::listener_router(Arc::clone(&state), token)
                                .into_make_service_with_connect_info::<std::net::SocketAddr>();
                            tokio::spawn(axum::serve(listener, router).into_future());
                        }
                        Err(e) => {
                            serving = false;
                            tracing::error!(%addr, error = %e, "cannot open the admin listener");
                        }
                    }
                }
                ready.store(serving, Ordering::Relaxed);
                // The listeners stay up until the runtime stops, so /readyz answers 503 while
                // requests in flight finish.
                let open_database = async {
                    loop {
                        match Database::open(&database_url, &data_dir).await {
                            Ok(db) => {
                                let _ = state.database.set(db.clone());
                                return db;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "admin API waits for the database");
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                        }
                    }
                };
                let follow_changes = async {
                    let database = open_database.await;
                    // Opening fails only for a malformed URL, which `certgate check` reports.
                    match Store::open(&store_settings, Arc::new(SystemClock)).await {
                        Ok(store) => {
                            let _ = state.store.set(store.clone());
                            feed::follow(
                                store,
                                database,
                                Arc::clone(&state.revocations),
                                Arc::clone(&state.admin_allow),
                                Arc::clone(&state.metrics),
                            )
                            .await;
                        }
                        Err(error) => tracing::error!(%error, "cannot open the shared store"),
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    _ = follow_changes => {}
                    _ = shutdown.changed() => {}
                }
                ready.store(false, Ordering::Relaxed);
            })
        });
        Ok(())
    }

    fn add_reload(
        &mut self,
        policies: Arc<PolicyHandle>,
        resolver: Arc<CertificateResolver>,
        upstreams: Arc<Upstreams>,
        metrics: Arc<Metrics>,
    ) {
        let reloader = Arc::new(Reloader {
            running: Mutex::new(()),
            policies,
            resolver,
            upstreams,
            metrics,
        });
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

/// Reloads policies and server certificates together, keeping the previous set of either on
/// error.
struct Reloader {
    /// The file watch and SIGHUP may fire together; one reload at a time.
    running: Mutex<()>,
    policies: Arc<PolicyHandle>,
    resolver: Arc<CertificateResolver>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.policies.watched_paths();
        paths.extend(self.resolver.watched_paths());
        paths
    }

    fn run(&self) {
        let _one_at_a_time = self.running.lock();
        let mut ok = true;
        match self.policies.reload() {
            Ok(set) => {
                self.upstreams.rebuild(&set);
                self.metrics.policy_last_reload.set(unix_now() as f64);
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
        if let Err(error) = self.resolver.reload() {
            ok = false;
            tracing::error!(%error, "certificate reload failed; keeping the previous certificates");
        }
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .policy_reloads
            .with_label_values(&[result])
            .inc();
    }
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
/// way and changing nothing: the CA, the server certificates and keys, the admin token file,
/// and the data directory's keys where they exist (a first start creates them). Every problem,
/// one message each.
pub fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(error) = CertificateAuthority::open(&config.ca.dir) {
        problems.push(format!("ca.dir: {error}"));
    }
    if let Err(error) = CertificateResolver::new(certificate_sources(config)) {
        problems.push(format!("server.certificates: {error}"));
    }
    if let Some(path) = &config.server.admin_token_file {
        if let Err(error) = admin::read_token_file(path) {
            problems.push(format!("server.admin_token_file: {error}"));
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
    problems
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
fn load_durable_state(config: &Config) -> Result<DurableState, ServeError> {
    with_database(config, async |db| {
        let records = db.live_revocations(unix_now()).await?;
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
