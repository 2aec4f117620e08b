//! The `certgate` binary: parses arguments and wires configuration to the libraries.
//! Every subcommand's logic lives in a library crate; this file only dispatches.

mod admin_client;
mod agent;
mod allowlist;
mod backup;
mod ca;
mod demo;
mod demo_app;
mod healthcheck;
mod logging;
mod portal;
mod user;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use certgate_gateway::GatewayServer;
use certgate_policies::config::Config;
use certgate_policies::PolicySet;
use clap::{Args, Parser, Subcommand};

// glibc's malloc took about a tenth of the gateway's time per request in the load benchmark
// (many small header and buffer allocations); mimalloc keeps them in per-thread pools.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "certgate",
    version,
    about = "A reverse-proxy gateway that admits allow-listed networks and devices with a certgate credential, and sends everyone else to its sign-in portal."
)]
struct Cli {
    /// How log lines are written on stderr: `text` for people, `json` (one object a line) for
    /// a log collector, `auto` = text on a terminal, JSON otherwise.
    #[arg(
        long,
        global = true,
        env = "CERTGATE_LOG_FORMAT",
        value_enum,
        default_value_t = logging::LogFormat::Auto
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway, the portal and the admin listener.
    Serve(ConfigArg),
    /// Run everything locally with a dev CA, a demo organisation and a demo app.
    Demo {
        /// Where the demo keeps its CA, certificates, configuration and data.
        #[arg(long, default_value = ".certgate-demo")]
        dir: PathBuf,
    },
    /// Validate the configuration and every policy, and read the files `serve` reads first;
    /// print every error and exit 1 if any.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Check the configuration and policies only, not the CA, certificates and secret
        /// files (e.g. in a policy repository's CI, away from the server).
        #[arg(long)]
        no_files: bool,
    },
    /// Ask the running instance's /readyz (on server.admin_listen): exit 0 while it is ready,
    /// 1 otherwise; for a container's or a load balancer's health check.
    Healthcheck(ConfigArg),
    /// Questions about policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The certificate authority: create it, issue server and client certificates.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Devices and their credentials on the running instance.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Accounts on the running instance (or, with --offline, before the first start).
    #[command(subcommand)]
    User(user::UserCommand),
    /// The organisation admins' allow-list layer on the running instance (the policy files'
    /// entries stay in the files).
    #[command(subcommand)]
    Allowlist(allowlist::AllowlistCommand),
    /// The keys in the data directory.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write the CA, the data directory's keys and a consistent copy of the SQLite database to
    /// one file (tar.gz, mode 0600), while certgate runs. With PostgreSQL the database is not
    /// copied: it says how to back it up with pg_dump.
    Backup(backup::BackupArgs),
    /// Put a backup's CA, keys and SQLite database into the directories the configuration
    /// names, with certgate stopped; refuses (changing nothing) a damaged or foreign file, and
    /// directories that already hold a CA, keys or a database unless --force.
    Restore(backup::RestoreArgs),
    /// Agent: sign this device in through the portal (device flow) and store its key and certificate.
    Login(agent::LoginArgs),
    /// Agent: renew this device's certificate with a new key, over mutual TLS.
    Renew(agent::RenewArgs),
    /// The demo "legacy app": shows the identity headers it receives (used by the demo and tests).
    #[command(hide = true)]
    DemoUpstream {
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new secret-encryption key on the running instance and encrypt every
    /// authenticator secret again with it (the old key stays, to read anything missed).
    Rotate(ConfigArg),
}

#[derive(Args)]
struct ConfigArg {
    /// The certgate configuration file.
    #[arg(long, short, env = "CERTGATE_CONFIG", default_value = "certgate.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print which organisation and which rule would admit or redirect a request.
    Explain {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
        /// The Host the request is for.
        #[arg(long)]
        host: String,
        /// The client address.
        #[arg(long)]
        ip: IpAddr,
        /// The path and query.
        #[arg(long, default_value = "/")]
        path: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Revoke a certificate (by serial), a device, or every credential of a user, at once on
    /// the running instance. The revocation is durable: it survives restarts.
    Revoke {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
        /// Certificate serial as openssl or a browser prints it (hex, colons optional).
        #[arg(long, conflicts_with_all = ["device", "user"])]
        serial: Option<String>,
        /// A device id (needs --org).
        #[arg(long, requires = "org", conflicts_with = "user")]
        device: Option<String>,
        /// Every credential of this user issued until now (needs --org).
        #[arg(long, requires = "org")]
        user: Option<String>,
        #[arg(long)]
        org: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List a user's devices (credentials issued, their trust, expiry, last use, revocation).
    List {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
        #[arg(long)]
        org: String,
        /// User name or e-mail address.
        #[arg(long)]
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the revocations in force on the running instance.
    Revocations {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(&args.config),
        Command::Demo { dir } => demo::run(&dir),
        Command::Check { config, no_files } => check(&config.config, !no_files),
        Command::Healthcheck(args) => healthcheck::run(&args.config),
        Command::Policy(PolicyCommand::Explain {
            config,
            host,
            ip,
            path,
        }) => explain(&config, &host, ip, &path),
        Command::Ca(command) => ca::run(command),
        Command::Device(command) => device(command),
        Command::User(command) => user::run(command),
        Command::Allowlist(command) => allowlist::run(command),
        Command::Keys(KeysCommand::Rotate(args)) => rotate_keys(&args.config),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::DemoUpstream { listen } => demo_app::run(listen),
        Command::Login(args) => agent::login(args),
        Command::Renew(args) => agent::renew(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("certgate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, String> {
    Config::load(path).map_err(|errors| errors.to_string())
}

fn serve(config_path: &std::path::Path) -> Result<(), String> {
    let config = load_config(config_path)?;
    start(&config, None, None)
}

/// Builds the gateway, adds the portal (and the demo app, for `demo`), and runs until stopped.
/// `outbox`: the demo's mail directory instead of SMTP.
fn start(
    config: &Config,
    demo_upstream: Option<SocketAddr>,
    outbox: Option<PathBuf>,
) -> Result<(), String> {
    let clock: Arc<dyn certgate_store::Clock> = Arc::new(certgate_store::SystemClock);
    let mut server = GatewayServer::build(config, Arc::clone(&clock)).map_err(|e| e.to_string())?;
    let control = certgate_control::attach(&mut server, config, Arc::clone(&clock))
        .map_err(|e| e.to_string())?;
    let setup = portal::setup(config, &server, &control, outbox, clock)?;
    let portal_listen = config.portal.listen;
    // Bound before anything serves: a portal that cannot listen must stop `serve`, not leave an
    // instance that never becomes ready without saying why.
    let portal_listener = std::net::TcpListener::bind(portal_listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| format!("cannot listen on portal.listen {portal_listen}: {e}"))?;
    server.add_task("portal", move |mut shutdown| {
        Box::pin(async move {
            let stop = async move {
                let _ = shutdown.changed().await;
            };
            let state = match certgate_portal::PortalState::new(setup) {
                Ok(state) => Arc::new(state),
                Err(e) => certgate_gateway::server::fatal(&format!("the portal: {e}")),
            };
            let listener = match tokio::net::TcpListener::from_std(portal_listener) {
                Ok(listener) => listener,
                Err(e) => {
                    certgate_gateway::server::fatal(&format!("portal.listen {portal_listen}: {e}"))
                }
            };
            let _ = control
                .events
                .set(Arc::new(portal::Notices(Arc::clone(&state))));
            // Only now is the instance ready: sign-ins have their pages, and accounts created
            // from here on get their welcome mail.
            control.portal_serving.store(true, Ordering::Relaxed);
            if let Err(e) = certgate_portal::serve(listener, state, stop).await {
                tracing::error!(listen = %portal_listen, error = %e, "portal stopped");
            }
        })
    });
    if let Some(listen) = demo_upstream {
        server.add_task("demo app", move |mut shutdown| {
            Box::pin(async move {
                let stop = async move {
                    let _ = shutdown.changed().await;
                };
                if let Err(e) = demo_app::serve(listen, stop).await {
                    tracing::error!(%listen, error = %e, "demo app stopped");
                }
            })
        });
    }
    server.run();
    Ok(())
}

fn check(config_path: &std::path::Path, files: bool) -> Result<(), String> {
    let config = load_config(config_path)?;
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    let set = PolicySet::load(&config.policies.dir).map_err(|errors| errors.to_string())?;
    // What `serve` reads before it listens, so a missing certificate fails here, not at start.
    let mut problems = Vec::new();
    if files {
        problems.extend(certgate_gateway::server::check_files(&config));
        problems.extend(certgate_control::check_files(&config));
        problems.extend(portal::check_files(&config));
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    println!(
        "ok: {} and {} organisation polic{} in {}",
        config_path.display(),
        set.organisations().count(),
        if set.organisations().count() == 1 {
            "y"
        } else {
            "ies"
        },
        config.policies.dir.display()
    );
    Ok(())
}

fn explain(
    config_path: &std::path::Path,
    host: &str,
    ip: IpAddr,
    path: &str,
) -> Result<(), String> {
    let config = load_config(config_path)?;
    let set = PolicySet::load(&config.policies.dir).map_err(|errors| errors.to_string())?;
    let admin_allow = certgate_gateway::server::read_admin_allow_layers(&config)
        .unwrap_or_else(|error| {
            eprintln!("warning: the admin allow lists were not consulted: {error}");
            None
        })
        .unwrap_or_default();
    println!(
        "{}",
        certgate_gateway::admission::explain(&set, &admin_allow, host, ip, path)
    );
    Ok(())
}

fn rotate_keys(config: &std::path::Path) -> Result<(), String> {
    let config = load_config(config)?;
    let answer = admin_client::call(
        &config.server.admin_socket,
        "POST",
        "/api/v1/keys/rotate",
        None,
    )?;
    let report: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
    println!(
        "new secret-encryption key in use; {} authenticator secrets encrypted again",
        report["resealed"]
    );
    if report["failed"].as_u64().unwrap_or(0) > 0 {
        return Err(format!(
            "{} secrets could not be opened (see the instance's log); reset those users' MFA",
            report["failed"]
        ));
    }
    Ok(())
}

/// One line of `certgate device list`: what the device is, whether the gateway admits it
/// now, and its times in ISO 8601 in the organisation's time zone
/// (`2026-12-06T21:07:16+01:00`).
fn device_line(d: &certgate_control::users::DeviceView) -> String {
    let zone = certgate_policies::TimeZone::named(&d.time_zone).unwrap_or_default();
    let when = |t: Option<i64>| t.map_or("-".to_owned(), |t| zone.iso(t));
    let what = match (d.browser.as_str(), d.system.as_str()) {
        ("", "") => d.kind.clone(),
        ("", system) => format!("{} on {system}", d.kind),
        (browser, "") => browser.to_owned(),
        (browser, system) => format!("{browser} on {system}"),
    };
    let mut line = format!(
        "{}  {}  {} {}  created {}  expires {}  last seen {}",
        d.id,
        if d.state.is_empty() { "-" } else { &d.state },
        what,
        d.trust,
        when(Some(d.created_at)),
        when(Some(d.expires_at)),
        when(d.last_seen),
    );
    if let Some(revoked) = d.revoked_at {
        line.push_str(&format!("  revoked {}", when(Some(revoked))));
    }
    line
}

fn device(command: DeviceCommand) -> Result<(), String> {
    match command {
        DeviceCommand::List {
            config,
            org,
            user,
            json,
        } => {
            let config = load_config(&config)?;
            let path = format!(
                "/api/v1/users/{}/{}/devices",
                percent_encoding::utf8_percent_encode(&org, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(&user, percent_encoding::NON_ALPHANUMERIC)
            );
            let answer = admin_client::call(&config.server.admin_socket, "GET", &path, None)?;
            let devices: Vec<certgate_control::users::DeviceView> = serde_json::from_slice(&answer)
                .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
                return Ok(());
            }
            for d in devices {
                println!("{}", device_line(&d));
            }
            Ok(())
        }
        DeviceCommand::Revoke {
            config,
            serial,
            device,
            user,
            org,
            reason,
        } => {
            let config = load_config(&config)?;
            let request = certgate_control::admin::RevokeRequest {
                serial,
                device,
                user,
                org,
                reason,
            };
            let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            let answer = admin_client::call(
                &config.server.admin_socket,
                "POST",
                "/api/v1/revocations",
                Some(body),
            )?;
            let view: certgate_control::admin::RevocationView = serde_json::from_slice(&answer)
                .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
            println!(
                "revoked {} {}{} (effective now on the running instance, recorded durably)",
                view.kind,
                view.subject,
                if view.org.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", view.org)
                }
            );
            Ok(())
        }
        DeviceCommand::Revocations { config } => {
            let config = load_config(&config)?;
            let answer = admin_client::call(
                &config.server.admin_socket,
                "GET",
                "/api/v1/revocations",
                None,
            )?;
            let views: Vec<certgate_control::admin::RevocationView> =
                serde_json::from_slice(&answer)
                    .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
            for v in views {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    v.kind, v.org, v.subject, v.revoked_at, v.reason
                );
            }
            Ok(())
        }
    }
}
