//! Wires the portal to the gateway it runs beside: the shared store and database, the
//! revocation path, the metrics registry, and the keys, mail and SMS settings of the config.

use std::sync::Arc;
use std::time::Duration;

use certgate_accounts::{AccountEvent, AccountEvents};
use certgate_certs::CredentialKey;
use certgate_control::allowlist::AllowListSaveError;
use certgate_control::AdminState;
use certgate_db::{Database, NewRevocation};
use certgate_policies::config::{Config, SmsConfig};
use certgate_portal::sms::SmsSender;
use certgate_portal::{
    AccountNotice, AllowListForm, AllowListProblem, Backend, MailSetup, PortalSetup,
};
use certgate_store::{Clock, Store};

/// How long the SMS provider may take before the user is told it failed.
const SMS_TIMEOUT: Duration = Duration::from_secs(10);
/// Every failed sign-in step is answered this long after it arrived.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Account changes made on the admin API, told to the user by the portal's mail.
pub struct Notices(pub Arc<certgate_portal::PortalState>);

impl AccountEvents for Notices {
    fn changed(&self, account: &certgate_db::Account, event: AccountEvent) {
        let notice = match event {
            AccountEvent::Created => AccountNotice::Welcome,
            AccountEvent::MfaReset => AccountNotice::MfaReset,
            AccountEvent::PasswordChanged => AccountNotice::PasswordChanged,
        };
        self.0.account_notice(account, notice);
    }
}

/// What the admin pages say of a failed allow-list read or save; an internal error's detail,
/// which the page does not show ("see the server log"), goes to the log.
fn logged(org: &str, error: AllowListSaveError) -> String {
    if let AllowListSaveError::Internal(detail) = &error {
        tracing::error!(org, error = %detail, "admin allow list: internal error");
    }
    error.to_string()
}

/// The gateway's control plane, seen by the portal.
struct GatewayBackend(Arc<AdminState>);

#[async_trait::async_trait]
impl Backend for GatewayBackend {
    fn store(&self) -> Option<Store> {
        self.0.store.get().cloned()
    }

    fn database(&self) -> Option<Database> {
        self.0.opened_database().cloned()
    }

    async fn allow_list(&self, org: &str) -> Result<AllowListForm, certgate_portal::BackendError> {
        let view = self
            .0
            .admin_allow_list(org)
            .await
            .map_err(|e| certgate_portal::BackendError::AllowListUnread(logged(org, e)))?;
        let text = view
            .entries
            .iter()
            .map(|e| {
                if e.note.is_empty() {
                    e.network.clone()
                } else {
                    format!("{}  # {}", e.network, e.note)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        Ok(AllowListForm {
            version: view.version,
            text,
            files: view
                .files
                .into_iter()
                .map(|f| (f.network, f.source))
                .collect(),
            min_prefix: (view.limits.min_prefix_v4, view.limits.min_prefix_v6),
        })
    }

    async fn save_allow_list(
        &self,
        org: &str,
        version: i64,
        text: &str,
        actor: &str,
        ip: &str,
    ) -> Result<i64, AllowListProblem> {
        let editor = certgate_db::AllowListEditor {
            actor: actor.to_owned(),
            ip: ip.to_owned(),
        };
        match self
            .0
            .save_admin_allow_list(org, version, text, &editor)
            .await
        {
            Ok(saved) => Ok(saved.version),
            Err(AllowListSaveError::Invalid(lines)) => Err(AllowListProblem::Invalid(lines)),
            Err(stale @ AllowListSaveError::Stale { .. }) => {
                Err(AllowListProblem::Stale(stale.to_string()))
            }
            Err(other) => Err(AllowListProblem::Other(logged(org, other))),
        }
    }

    async fn revoke(
        &self,
        revocation: &NewRevocation,
        reason: &'static str,
    ) -> Result<(), certgate_portal::BackendError> {
        self.0
            .revoke(revocation, reason)
            .await
            .map_err(|error| certgate_portal::BackendError::NotRevoked(format!("{error:?}")))
    }
}

fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `certgate check`: the secret files [`setup`] reads, read the same way.
pub fn check_files(config: &Config) -> Vec<String> {
    let mail = config
        .mail
        .as_ref()
        .and_then(|m| m.password_file.as_deref())
        .map(|path| ("mail.password_file", path));
    let sms = match &config.sms {
        Some(SmsConfig::Webhook {
            token_file: Some(path),
            ..
        }) => Some(("sms.token_file", path.as_path())),
        _ => None,
    };
    [mail, sms]
        .into_iter()
        .flatten()
        .filter_map(|(key, path)| read_secret_file(path).err().map(|e| format!("{key}: {e}")))
        .collect()
}

/// Everything the portal is built from, read before anything listens; `outbox` replaces SMTP
/// (for `make demo`).
pub fn setup(
    config: &Config,
    gateway: &certgate_gateway::GatewayServer,
    control: &Arc<AdminState>,
    outbox: Option<std::path::PathBuf>,
    clock: Arc<dyn Clock>,
) -> Result<PortalSetup, String> {
    let credential_key =
        CredentialKey::load(&config.data.dir.join("credential.key")).map_err(|e| e.to_string())?;
    let mail = match (outbox, &config.mail) {
        (Some(dir), _) => MailSetup::Outbox(dir),
        (None, Some(mail)) => {
            let password = mail
                .password_file
                .as_deref()
                .map(read_secret_file)
                .transpose()?;
            MailSetup::Smtp(mail.clone(), password)
        }
        (None, None) => MailSetup::None,
    };
    let sms = match &config.sms {
        Some(SmsConfig::Webhook { url, token_file }) => {
            let token = token_file.as_deref().map(read_secret_file).transpose()?;
            Some(SmsSender::webhook(url, token, SMS_TIMEOUT).map_err(|e| e.to_string())?)
        }
        Some(SmsConfig::Log) => Some(SmsSender::Log),
        None => None,
    };
    // Registered beside the gateway's, and exported for every organisation from the start.
    let metrics = certgate_portal::metrics::PortalMetrics::register(
        &control.metrics.registry,
        control.metrics.rate_limited.clone(),
    )
    .map_err(|e| e.to_string())?;
    let series = metrics.clone();
    control
        .metrics
        .add_organisation_series(Box::new(move |org| series.know_organisation(org)));
    Ok(PortalSetup {
        gateway_secret: gateway.gateway_secret().to_owned(),
        policies: Arc::clone(&control.policies),
        metrics,
        backend: Arc::new(GatewayBackend(Arc::clone(control))),
        credential_key,
        ca: gateway.ca(),
        keyring: Arc::clone(&control.keyring),
        keyring_path: control.keyring_path.clone(),
        mail,
        sms,
        limits: config.limits.clone(),
        clock,
        failure_delay: FAILURE_DELAY,
        audit_retention: config.database.audit_retention,
        https_port: config.server.https_listen.port(),
    })
}
