//! The operator control plane beside the gateway: the admin socket and listener (`/metrics`,
//! `/healthz`, `/readyz` and the JSON API the CLI uses), account administration through the
//! account service, the organisation admins' allow-list saves, and the feed that keeps this
//! instance's revocations and allow lists in step with every other instance. It changes the
//! gateway's live state ([`certgate_gateway::Shared`]); the gateway knows nothing of it.

pub mod admin;
pub mod allowlist;
pub mod feed;
pub mod users;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certgate_certs::SecretKeyring;
use certgate_db::Database;
use certgate_gateway::server::{fatal, io_reason, listening_on};
use certgate_gateway::{GatewayServer, ServeError};
use certgate_policies::config::Config;
use certgate_store::{Clock, Store, StoreSettings};

pub use admin::AdminState;
use admin::{BoundSocket, PeerCheckedListener};

/// Makes the control plane of `gateway` and adds it as a task: the admin socket (bound now, so
/// an instance nobody could revoke on never starts) and listener, then the database, the shared
/// store and the feed as they become reachable. `/readyz` says ready once every proxy listener
/// is up (and the portal serves).
pub fn attach(
    gateway: &mut GatewayServer,
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<AdminState>, ServeError> {
    let shared = gateway.shared();
    let keyring_path = config.data.dir.join("secrets.key");
    let keyring = SecretKeyring::load_or_create(&keyring_path).map_err(ServeError::DataDir)?;
    let state = Arc::new(AdminState {
        keyring: Arc::new(parking_lot::RwLock::new(keyring)),
        keyring_path,
        events: std::sync::OnceLock::new(),
        metrics: shared.metrics,
        revocations: shared.revocations,
        admin_allow: shared.admin_allow,
        allow_list_limits: config.limits.admin_allow_list(),
        token_guesses: certgate_store::RateLimit {
            limit: config.limits.password_failures_per_ip.count,
            window: config.limits.password_failures_per_ip.window,
        },
        database: tokio::sync::OnceCell::new(),
        // The gateway read the revocations from it just now.
        database_up: AtomicBool::new(true),
        store: shared.store,
        ready: shared.ready,
        portal_serving: AtomicBool::new(false),
        policies: shared.policies,
        clock: Arc::clone(&clock),
    });
    let token = match &config.server.admin_token_file {
        Some(path) => Some(Arc::new(
            admin::read_token_file(path).map_err(|e| ServeError::Setup(e.to_string()))?,
        )),
        None => None,
    };
    let socket_path = config.server.admin_socket.clone();
    let socket = BoundSocket::bind(&socket_path).map_err(|e| {
        ServeError::Listen(format!(
            "server.admin_socket {}: {}",
            socket_path.display(),
            io_reason(&e)
        ))
    })?;
    let admin_tcp = match config.server.admin_listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| {
                    ServeError::Listen(format!("server.admin_listen {addr}: {}", io_reason(&e)))
                })?,
        ),
        None => None,
    };
    let (proxy_ports, drain) = (shared.proxy_ports, shared.drain);
    let database_url = config.database.url.clone().unwrap_or_default();
    let store_settings = StoreSettings {
        redis_url: config.store.redis_url.clone().unwrap_or_default(),
        key_prefix: config.store.key_prefix.clone(),
        sentinel_master: config.store.sentinel_master.clone(),
        ..StoreSettings::default()
    };
    state.metrics.know_store(store_settings.backend_name());
    let data_dir = config.data.dir.clone();
    let task_state = Arc::clone(&state);
    gateway.add_task("admin", move |mut shutdown| {
        let state = task_state;
        Box::pin(async move {
            match PeerCheckedListener::serve(socket) {
                Ok(listener) => {
                    tokio::spawn(
                        axum::serve(listener, admin::socket_router(Arc::clone(&state)))
                            .into_future(),
                    );
                }
                Err(e) => fatal(&format!(
                    "server.admin_socket {}: {e}",
                    socket_path.display()
                )),
            }
            if let Some(listener) = admin_tcp {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        let router = admin::listener_router(Arc::clone(&state), token)
                            .into_make_service_with_connect_info::<std::net::SocketAddr>();
                        tokio::spawn(axum::serve(listener, router).into_future());
                    }
                    Err(e) => fatal(&format!("server.admin_listen: {e}")),
                }
            }
            // Ready once Pingora listens on every proxy address (it binds them in a service of
            // its own); until then /readyz says 503.
            while !listening_on(&proxy_ports) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Not if SIGTERM came first.
            if !drain.is_draining() {
                state.ready.store(true, Ordering::Relaxed);
            }
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
                tokio::spawn(probe_database(database.clone(), Arc::clone(&state)));
                // Opening fails only for a malformed URL, which `certgate check` reports.
                match Store::open(&store_settings, Arc::clone(&clock)).await {
                    Ok(store) => {
                        let _ = state.store.set(store.clone());
                        feed::follow(store, database, Arc::clone(&state)).await;
                    }
                    Err(error) => tracing::error!(%error, "cannot open the shared store"),
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = follow_changes => {}
                _ = shutdown.changed() => {}
            }
            state.ready.store(false, Ordering::Relaxed);
        })
    });
    Ok(state)
}

/// `certgate check`: the control plane's files, read as [`attach`] reads them; every problem,
/// one message each.
pub fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(path) = &config.server.admin_token_file {
        if let Err(error) = admin::read_token_file(path) {
            problems.push(format!("server.admin_token_file: {error}"));
        }
    }
    problems
}

/// Keeps `database_up` (for `/readyz`) and `certgate_database_up` current, and logs when the
/// database goes away and comes back.
async fn probe_database(database: Database, state: Arc<AdminState>) {
    loop {
        let started = std::time::Instant::now();
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(2), database.ping()).await,
            Ok(Ok(()))
        );
        if up {
            state
                .metrics
                .database_ping
                .set(started.elapsed().as_secs_f64());
        }
        let was = state.database_up.swap(up, Ordering::Relaxed);
        state.metrics.database_up.set(if up { 1.0 } else { 0.0 });
        if was != up {
            if up {
                tracing::info!("the database is reachable again");
            } else {
                tracing::error!(
                    "the database is unreachable; sign-ins and admin changes fail until it is back"
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
