//! `certgate ca …`: bootstrap commands that write the CA and certificates as files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use certgate_certs::{
    files, generate_password, pkcs12_bundle, CertificateAuthority, CertificateError, DeviceId,
    DeviceSubject,
};
use certgate_policies::MAX_CREDENTIAL_LIFETIME;
use clap::Subcommand;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a root and an issuing CA (ECDSA P-256) in DIR; refuses to overwrite.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Make a new issuing CA under the same root (needs root.key in DIR). It signs every new
    /// certificate from now on, at every instance that reads DIR, without a restart; the
    /// certificates the previous one signed stay valid until they expire or `retire-issuing`.
    RotateIssuing {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop honouring the issuing CAs earlier rotations left: the certificates they signed are
    /// refused from now on, at every instance that reads DIR.
    RetireIssuing {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a server certificate; writes PREFIX.pem (certificate and chain) and PREFIX.key.
    IssueServer {
        #[arg(long)]
        dir: PathBuf,
        /// DNS name (repeat for several).
        #[arg(long, required_unless_present = "ip")]
        dns: Vec<String>,
        /// IP address (repeat for several).
        #[arg(long)]
        ip: Vec<IpAddr>,
        #[arg(long, default_value = "90d")]
        lifetime: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a device certificate for a user (kiosks, scripts, tests): writes PREFIX.key,
    /// PREFIX.pem (certificate and issuing CA), PREFIX-chain.pem and PREFIX.p12, and prints
    /// the PKCS#12 password.
    IssueClient {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        org: String,
        #[arg(long)]
        user: String,
        /// Device id; a new random one when omitted.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value = "12h")]
        lifetime: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: CaCommand) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    match command {
        CaCommand::Init { dir } => {
            CertificateAuthority::init(&dir, now).map_err(|e| e.to_string())?;
            println!("created the certificate authority in {}", dir.display());
            println!("root.pem is what clients and the gateway trust; keep root.key offline once you are done issuing CAs");
            Ok(())
        }
        CaCommand::RotateIssuing { dir } => {
            let ca = CertificateAuthority::rotate_issuing(&dir, now).map_err(|e| match e {
                CertificateError::MissingFile { path } if path.ends_with("root.key") => format!(
                    "{} does not exist: a new issuing CA is signed by the root; bring root.key back from where it is kept offline",
                    path.display()
                ),
                other => other.to_string(),
            })?;
            let mut cas = ca.issuing_cas().into_iter();
            if let Some(new) = cas.next() {
                println!(
                    "made a new issuing CA (serial {}, valid until {}): it signs every new certificate from now on",
                    new.serial,
                    new.not_after.date()
                );
            }
            for old in cas {
                println!(
                    "still honoured: the issuing CA with serial {} (valid until {})",
                    old.serial,
                    old.not_after.date()
                );
            }
            let last = now + MAX_CREDENTIAL_LIFETIME;
            println!(
                "certificates the previous issuing CA signed stay valid until they expire (at the latest {}); then, or to refuse them at once, run `certgate ca retire-issuing --dir {}`",
                last.date(),
                dir.display()
            );
            Ok(())
        }
        CaCommand::RetireIssuing { dir } => {
            let retired =
                CertificateAuthority::retire_previous_issuing(&dir).map_err(|e| e.to_string())?;
            if retired.is_empty() {
                println!("nothing to retire: only the current issuing CA is honoured");
            }
            for old in retired {
                println!(
                    "retired the issuing CA with serial {}: certificates it signed are refused from now on",
                    old.serial
                );
            }
            Ok(())
        }
        CaCommand::IssueServer {
            dir,
            dns,
            ip,
            lifetime,
            out,
        } => {
            let ca = CertificateAuthority::open(&dir).map_err(|e| e.to_string())?;
            let lifetime = parse_lifetime(&lifetime, None)?;
            let issued = ca
                .issue_server_certificate(&dns, &ip, lifetime, now)
                .map_err(|e| e.to_string())?;
            let (cert, key) = (with_suffix(&out, ".pem"), with_suffix(&out, ".key"));
            files::write_private(&key, issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
            files::write_public(&cert, issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
            println!(
                "wrote {} and {} (serial {})",
                cert.display(),
                key.display(),
                issued.serial
            );
            Ok(())
        }
        CaCommand::IssueClient {
            dir,
            org,
            user,
            device,
            lifetime,
            out,
        } => {
            let ca = CertificateAuthority::open(&dir).map_err(|e| e.to_string())?;
            let lifetime = parse_lifetime(&lifetime, Some(MAX_CREDENTIAL_LIFETIME))?;
            let subject = DeviceSubject {
                org,
                // User names are case-insensitive and stored lower-case; revocations match them.
                user: user.trim().to_lowercase(),
                device_id: device.unwrap_or_else(|| DeviceId::generate().into_string()),
            };
            let issued = ca
                .issue_device_key_pair(&subject, lifetime, now)
                .map_err(|e| e.to_string())?;
            let password = generate_password();
            let p12 = pkcs12_bundle(
                &issued.key_pem,
                &issued.cert_pem,
                &ca.chain_pem(),
                &subject.user,
                &password,
            )
            .map_err(|e| e.to_string())?;
            let key = with_suffix(&out, ".key");
            let cert = with_suffix(&out, ".pem");
            let chain = with_suffix(&out, "-chain.pem");
            let bundle = with_suffix(&out, ".p12");
            files::write_private(&key, issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
            files::write_public(&cert, issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
            files::write_public(&chain, ca.chain_pem().as_bytes()).map_err(|e| e.to_string())?;
            files::write_private(&bundle, &p12).map_err(|e| e.to_string())?;
            println!(
                "device {} for {} in {}",
                subject.device_id, subject.user, subject.org
            );
            println!("serial {}, valid until {}", issued.serial, issued.not_after);
            println!(
                "wrote {}, {}, {} and {}",
                key.display(),
                cert.display(),
                chain.display(),
                bundle.display()
            );
            println!("PKCS#12 password: {password}");
            Ok(())
        }
    }
}

fn parse_lifetime(
    text: &str,
    max: Option<std::time::Duration>,
) -> Result<std::time::Duration, String> {
    let lifetime =
        certgate_policies::parse_duration(text).map_err(|e| format!("--lifetime {text:?}: {e}"))?;
    if lifetime.is_zero() {
        return Err("--lifetime must be longer than 0s".into());
    }
    if let Some(max) = max {
        if lifetime > max {
            return Err(format!(
                "--lifetime {text:?} is longer than the maximum of 398d"
            ));
        }
    }
    Ok(lifetime)
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
