//! `certgate login` and `certgate renew`: their arguments, for the agent (`certgate-agent`).

use std::path::PathBuf;

use certgate_agent::{Login, Renew, ResolveOverride};
use clap::Args;

/// `certgate login`.
#[derive(Args)]
pub struct LoginArgs {
    /// The organisation's address, e.g. https://noord.example.org
    #[arg(long, value_name = "https://HOST")]
    url: String,
    /// Ask for a credential that lasts days (the organisation's "trust this device" period)
    /// instead of one working session.
    #[arg(long)]
    trust_device: bool,
    /// Directory for the key, certificates and state; created with mode 0700. Must not already
    /// hold a device's files.
    #[arg(long, value_name = "DIR", default_value = "certgate-device")]
    out: PathBuf,
    /// How this device is listed in the portal (at most 64 characters) [default: this
    /// computer's host name]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `certgate renew`.
#[derive(Args)]
#[command(
    after_help = "Renewal writes a new key.pem, cert.pem and chain.pem and updates state.json. \
                  device.p12 is not rebuilt: it keeps the certificate from `certgate login`."
)]
pub struct RenewArgs {
    /// The directory `certgate login --out` wrote.
    #[arg(long, value_name = "DIR", default_value = "certgate-device")]
    dir: PathBuf,
    /// Keep running: renew at about two thirds of each certificate's lifetime, retry when the
    /// portal cannot be reached, and exit 1 when renewal is refused or the certificate expires.
    #[arg(long)]
    daemon: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// How to reach the portal; only tests need these, so they are hidden.
#[derive(Args)]
struct ConnectionArgs {
    /// Connect to ADDR whenever HOST is asked for, instead of asking DNS (like curl's
    /// --resolve; the port in the URL is the one used). Repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR", hide = true)]
    resolve: Vec<ResolveOverride>,
}

pub fn login(args: LoginArgs) -> Result<(), String> {
    certgate_agent::login(Login {
        url: args.url,
        trust_device: args.trust_device,
        out: args.out,
        name: args.name,
        resolve: args.connection.resolve,
    })
    .map_err(|e| e.to_string())
}

pub fn renew(args: RenewArgs) -> Result<(), String> {
    certgate_agent::renew(Renew {
        dir: args.dir,
        daemon: args.daemon,
        resolve: args.connection.resolve,
    })
    .map_err(|e| e.to_string())
}
