//! `certgate user …`: account administration through the running instance's admin socket;
//! `--offline` writes SQL directly, only while no instance runs (the first account).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use certgate_accounts::{AccountError, Accounts, Actor, RecordOnly};
use certgate_control::users::{AddUser, Imported, SetPassword, UserView};
use certgate_policies::config::Config;
use certgate_policies::Organisation;
use clap::{Args, Subcommand};

use crate::admin_client;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account (personal by default). With --offline, before the first start.
    Add {
        #[command(flatten)]
        at: OrgArgs,
        /// The sign-in name; for personal accounts usually the e-mail address.
        #[arg(long)]
        username: String,
        /// The name shown on pages.
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// In international form, e.g. +31612345678.
        #[arg(long)]
        mobile: Option<String>,
        /// A shared tablet account instead of a personal one.
        #[arg(long)]
        group: bool,
        /// A role such as admin or parent (repeat for several).
        #[arg(long)]
        role: Vec<String>,
        /// Write to the database directly (only while no instance is running).
        #[arg(long)]
        offline: bool,
    },
    /// List an organisation's accounts.
    List {
        #[command(flatten)]
        at: OrgArgs,
    },
    /// Show one account.
    Show(UserArgs),
    /// Disable an account and refuse its credentials at once.
    Disable(UserArgs),
    /// Enable a disabled account (its old credentials stay refused).
    Enable(UserArgs),
    /// Clear the account's second factor and recovery codes and refuse its credentials; the
    /// user enrols again at the next sign-in.
    ResetMfa(UserArgs),
    /// Change an account's name, e-mail, mobile, kind or roles (what is not given stays; an
    /// empty --email or --mobile removes it).
    Edit {
        #[command(flatten)]
        user: UserArgs,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        mobile: Option<String>,
        /// personal or group.
        #[arg(long)]
        kind: Option<String>,
        /// The roles, replacing the current ones (repeat for several; --role "" for none).
        #[arg(long)]
        role: Option<Vec<String>>,
    },
    /// Delete a leaver's account: its credentials are refused at once, the account, its devices
    /// and single sign-on links are removed; the audit log keeps its trail.
    Delete(UserArgs),
    /// Create many accounts from a CSV file (first line: username,name,email,mobile,kind,roles;
    /// roles separated by ;). Every row is checked first; nothing is created unless all are right.
    Import {
        #[command(flatten)]
        at: OrgArgs,
        /// The CSV file, or - for standard input.
        #[arg(long)]
        file: PathBuf,
    },
    /// Set a password, read as one line from standard input.
    SetPassword {
        #[command(flatten)]
        user: UserArgs,
        /// Write to the database directly (only while no instance is running).
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Args)]
pub struct OrgArgs {
    #[arg(long, short, default_value = "certgate.toml")]
    config: PathBuf,
    #[arg(long)]
    org: String,
}

#[derive(Args)]
pub struct UserArgs {
    #[command(flatten)]
    at: OrgArgs,
    /// User name or e-mail address.
    #[arg(long)]
    user: String,
}

pub fn run(command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Add {
            at,
            username,
            name,
            email,
            mobile,
            group,
            role,
            offline,
        } => {
            let config = crate::load_config(&at.config)?;
            let request = AddUser {
                org: at.org,
                username,
                display_name: name,
                email,
                mobile,
                kind: Some(if group { "group" } else { "personal" }.to_owned()),
                roles: role,
            };
            let view = if offline {
                add_offline(&config, &request)?
            } else {
                call(&config, "POST", "/api/v1/users", Some(&request))?
            };
            print_user(&view);
            if !view.has_password {
                println!("no password yet: set one with `certgate user set-password`");
            }
            Ok(())
        }
        UserCommand::List { at } => {
            let config = crate::load_config(&at.config)?;
            let path = format!("/api/v1/users?org={}", encode(&at.org));
            let users: Vec<UserView> = call(&config, "GET", &path, None::<&()>)?;
            for u in &users {
                println!(
                    "{}\t{}\t{}\t{}\tmfa={}\tpasskeys={}\t{}",
                    u.username,
                    u.display_name,
                    u.kind,
                    u.roles.join(","),
                    u.mfa_method.as_deref().unwrap_or("-"),
                    u.passkeys,
                    if u.disabled { "disabled" } else { "active" }
                );
            }
            Ok(())
        }
        UserCommand::Show(args) => action(args, "GET", ""),
        UserCommand::Disable(args) => action(args, "POST", "/disable"),
        UserCommand::Enable(args) => action(args, "POST", "/enable"),
        UserCommand::ResetMfa(args) => action(args, "POST", "/reset-mfa"),
        UserCommand::Edit {
            user,
            name,
            email,
            mobile,
            kind,
            role,
        } => {
            let config = crate::load_config(&user.at.config)?;
            let request = certgate_control::users::EditUser {
                display_name: name,
                email,
                mobile,
                kind,
                roles: role.map(|r| r.into_iter().filter(|r| !r.is_empty()).collect()),
            };
            let path = user_path(&user.at.org, &user.user);
            let view: UserView = call(&config, "PATCH", &path, Some(&request))?;
            print_user(&view);
            Ok(())
        }
        UserCommand::Delete(args) => {
            let config = crate::load_config(&args.at.config)?;
            let path = user_path(&args.at.org, &args.user);
            admin_client::call(&config.server.admin_socket, "DELETE", &path, None)?;
            println!(
                "deleted {} in {}: its credentials are refused on every instance",
                args.user, args.at.org
            );
            Ok(())
        }
        UserCommand::Import { at, file } => import(&at, &file),
        UserCommand::SetPassword { user, offline } => {
            let config = crate::load_config(&user.at.config)?;
            let password = read_password()?;
            // The rule the portal's reset page applies; the organisation's name is not known
            // offline, so only its id joins the words a guesser tries.
            certgate_portal::password::check_new(&password, &user.user, &[&user.at.org])
                .map_err(|e| e.to_string())?;
            let hash = certgate_portal::password::hash(&password).map_err(|e| e.to_string())?;
            if offline {
                set_password_offline(&config, &user.at.org, &user.user, &hash)?;
                println!("password set for {}", user.user);
                return Ok(());
            }
            let path = format!("{}/password", user_path(&user.at.org, &user.user));
            let view: UserView = call(
                &config,
                "PUT",
                &path,
                Some(&SetPassword {
                    password_hash: hash,
                }),
            )?;
            println!("password set for {}", view.username);
            Ok(())
        }
    }
}

fn action(args: UserArgs, method: &str, suffix: &str) -> Result<(), String> {
    let config = crate::load_config(&args.at.config)?;
    let path = format!("{}{suffix}", user_path(&args.at.org, &args.user));
    let view: UserView = call(&config, method, &path, None::<&()>)?;
    print_user(&view);
    Ok(())
}

/// Sends a CSV file to the instance, which checks every row (fields, names taken or repeated)
/// and creates the accounts only when all are right.
fn import(at: &OrgArgs, file: &Path) -> Result<(), String> {
    let config = crate::load_config(&at.config)?;
    let text = read_limited(file, certgate_db::IMPORT_MAX_BYTES)?;
    let path = format!("/api/v1/users/import?org={}", encode(&at.org));
    let answer = admin_client::call(
        &config.server.admin_socket,
        "POST",
        &path,
        Some(text.into_bytes()),
    )
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let imported: Imported = serde_json::from_slice(&answer)
        .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
    println!("created {} accounts in {}", imported.created, at.org);
    Ok(())
}

/// A file (or `-`, standard input) of at most `limit` bytes.
fn read_limited(file: &Path, limit: usize) -> Result<String, String> {
    use std::io::Read;
    let name = file.display();
    let mut source: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| format!("{name}: {e}"))?)
    };
    let mut bytes = Vec::new();
    source
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!(
            "{name}: the file is larger than {} MB; split it",
            limit / 1_000_000
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{name}: the file is not UTF-8 text"))
}

fn user_path(org: &str, login: &str) -> String {
    format!("/api/v1/users/{}/{}", encode(org), encode(login))
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn call<T: serde::de::DeserializeOwned, B: serde::Serialize>(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, String> {
    let body = body
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| e.to_string())?;
    let answer = admin_client::call(&config.server.admin_socket, method, path, body)?;
    serde_json::from_slice(&answer).map_err(|e| format!("unexpected answer from the instance: {e}"))
}

fn print_user(u: &UserView) {
    println!("{} ({}) in {}", u.username, u.display_name, u.org);
    println!(
        "  kind: {}; roles: {}",
        u.kind,
        if u.roles.is_empty() {
            "-".into()
        } else {
            u.roles.join(", ")
        }
    );
    println!(
        "  e-mail: {}; mobile: {}",
        u.email.as_deref().unwrap_or("-"),
        u.mobile.as_deref().unwrap_or("-")
    );
    let method = match (u.mfa_method.as_deref(), u.passkeys) {
        (Some(method), _) => method,
        (None, 0) => "not chosen",
        (None, _) => "passkey",
    };
    println!(
        "  second factor: {method}{}; passkeys: {}; {}",
        if u.mfa_enrolled { " (enrolled)" } else { "" },
        u.passkeys,
        if u.disabled { "DISABLED" } else { "active" }
    );
}

/// One line from standard input, without its line end.
fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Offline writes race with a running instance's own; refuse while one answers.
fn refuse_if_running(config: &Config) -> Result<(), String> {
    if std::os::unix::net::UnixStream::connect(&config.server.admin_socket).is_ok() {
        return Err("an instance is running: leave out --offline so it applies the change".into());
    }
    Ok(())
}

pub(crate) fn with_database<T>(
    config: &Config,
    org: &str,
    work: impl AsyncFnOnce(certgate_db::Database, Arc<Organisation>) -> Result<T, String>,
) -> Result<T, String> {
    refuse_if_running(config)?;
    let policies =
        certgate_policies::PolicySet::load(&config.policies.dir).map_err(|e| e.to_string())?;
    let Some(org) = policies.organisation(org).cloned() else {
        return Err(format!(
            "no organisation {org:?} in {}",
            config.policies.dir.display()
        ));
    };
    std::fs::create_dir_all(&config.data.dir)
        .map_err(|e| format!("{}: {e}", config.data.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let db = certgate_db::Database::open(
            config.database.url.as_deref().unwrap_or_default(),
            data_dir(config),
        )
        .await
        .map_err(|e| e.to_string())?;
        let result = work(db.clone(), org).await;
        db.close().await;
        result
    })
}

fn data_dir(config: &Config) -> &Path {
    &config.data.dir
}

/// The account service on the database itself: revocations are recorded for the instances to
/// read when they start.
pub(crate) async fn offline<T>(
    db: &certgate_db::Database,
    work: impl AsyncFnOnce(&Accounts<'_>) -> Result<T, AccountError>,
) -> Result<T, String> {
    let revoke = RecordOnly(db);
    let service = Accounts {
        db,
        revoke: &revoke,
        events: None,
        now: unix_now(),
    };
    work(&service).await.map_err(|e| e.to_string())
}

fn add_offline(config: &Config, request: &AddUser) -> Result<UserView, String> {
    let new = request.checked().map_err(|e| e.to_string())?;
    with_database(config, &request.org, async |db, org| {
        let account = offline(&db, async |service| {
            service.create(Actor::Operator, &org, &new).await
        })
        .await?;
        Ok(UserView::from(&account))
    })
}

fn set_password_offline(config: &Config, org: &str, login: &str, hash: &str) -> Result<(), String> {
    with_database(config, org, async |db, org| {
        let account = db
            .find_account(&org.id, login)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account {login:?} in {}", org.id))?;
        offline(&db, async |service| {
            service
                .set_password(Actor::Operator, &org, &account, hash)
                .await
        })
        .await?;
        Ok(())
    })
}

fn unix_now() -> i64 {
    certgate_store::Clock::unix_secs(&certgate_store::SystemClock)
}
