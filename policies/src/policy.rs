//! Organisation policies: the domain types one policy file becomes, the parser that checks
//! every key of it, and the [`PolicySet`] that loads a directory of them, checks them against
//! each other and answers the gateway's per-request questions (which organisations serve a host).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::allowlist::IpAllowList;
use crate::endpoint::parse_http_url;
use crate::error::{PolicyError, PolicyErrors, ValueError};
use crate::public_path::{match_public_path, PublicPath};
use crate::time_zone::TimeZone;

/// One organisation, from one policy file.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    /// Lowercased host names (or IP addresses) the organisation is served on.
    pub hosts: Vec<String>,
    pub upstreams: Vec<Upstream>,
    /// Resolved against the policy file's directory; checked to exist at load.
    pub logo: Option<PathBuf>,
    /// `#rrggbb`, lowercased.
    pub colour: Option<String>,
    pub default_language: Language,
    /// `time_zone`: where the pages and the CLI show times (default `Europe/Amsterdam`).
    pub time_zone: TimeZone,
    pub access: Access,
    pub mfa: MfaPolicy,
    pub sso: Vec<SsoProvider>,
    /// `[health_check]`: how the gateway decides its upstreams are up. Without it, a TCP
    /// connect every 5 s.
    pub health_check: Option<HealthCheck>,
    /// The policy file, as joined from the directory given to [`PolicySet::load`].
    pub source: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    #[default]
    Nl,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nl => "nl",
            Self::En => "en",
        }
    }
}

/// An HTTP health check of every upstream: `GET path` must answer `expect_status` within
/// `timeout`, every `interval`. It finds an application that accepts connections but no longer
/// answers, which a TCP connect does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Starts with `/`; printable ASCII without spaces.
    pub path: String,
    pub expect_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
}

/// An upstream the organisation's traffic is proxied to.
///
/// Equality and hashing look at what is connected to (`tls`, `host`, `port`), not at how the
/// URL was spelled, so `http://a` and `http://A:80/` are the same upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// As written in the policy.
    pub url: String,
    /// `https://`: connect with TLS and verify the upstream's certificate.
    pub tls: bool,
    /// Lowercased; an IPv6 address without brackets.
    pub host: String,
    /// The URL's port, or 80/443.
    pub port: u16,
}

impl Upstream {
    /// Accepts `http://host[:port]` and `https://host[:port]` with an optional `/` and nothing
    /// else: no path prefix, query or user information, which the proxy would not honour.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let (tls, url) = parse_http_url(text)?;
        if !(url.rest.is_empty() || url.rest == "/") {
            return Err(ValueError::UpstreamWithPath(text.to_owned()));
        }
        Ok(Self {
            url: text.to_owned(),
            tls,
            port: url.port.unwrap_or(if tls { 443 } else { 80 }),
            host: url.host,
        })
    }

    /// `host:port`, with brackets around an IPv6 host, as socket APIs want it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl PartialEq for Upstream {
    fn eq(&self, other: &Self) -> bool {
        (self.tls, &self.host, self.port) == (other.tls, &other.host, other.port)
    }
}

impl Eq for Upstream {}

impl Hash for Upstream {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.tls, &self.host, self.port).hash(state);
    }
}

/// Who gets in without a credential.
#[derive(Debug, Clone)]
pub struct Access {
    /// `allow_ips` and every `allow_ips_files` entry, in one lookup structure.
    pub allow: IpAllowList,
    /// The allow-list files read, resolved against the policy file's directory.
    pub allow_ips_files: Vec<PathBuf>,
    pub public_paths: Vec<PublicPath>,
    /// Whether browsers may be issued a credential cookie.
    pub browser_credentials: bool,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            allow: IpAllowList::default(),
            allow_ips_files: Vec::new(),
            public_paths: Vec::new(),
            browser_credentials: true,
        }
    }
}

impl Access {
    /// The public path covering a request target; see [`match_public_path`] for the rules.
    pub fn public_path(&self, raw_path: &str) -> Option<&PublicPath> {
        match_public_path(&self.public_paths, raw_path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MfaMethod {
    Authenticator,
    Sms,
    Email,
    /// A passkey (WebAuthn): the phone's or laptop's fingerprint, face or screen lock.
    Passkey,
}

impl MfaMethod {
    /// The methods offered when a policy does not list them: passkeys are asked for by name.
    pub const ALL: [MfaMethod; 3] = [Self::Authenticator, Self::Sms, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticator => "authenticator",
            Self::Sms => "sms",
            Self::Email => "email",
            Self::Passkey => "passkey",
        }
    }
}

/// Who must pass a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MfaRequirement {
    /// Everyone not in an exempt role; users enrol on first sign-in.
    #[default]
    All,
    /// Only users who have enrolled a factor.
    Enrolled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaPolicy {
    /// Never empty, no duplicates, in the order written.
    pub methods: Vec<MfaMethod>,
    pub required: MfaRequirement,
    pub exempt_roles: Vec<String>,
    /// Credential lifetime when "trust this device" is ticked; zero hides the checkbox.
    pub trust_device_for: Duration,
    /// Credential lifetime otherwise; never zero.
    pub session_lifetime: Duration,
    /// Group accounts' credentials expire after this long unused; never zero.
    pub group_idle_timeout: Duration,
    /// Whether the device authorisation flow (for the agent) is offered.
    pub device_flow: bool,
    /// `passwordless`: a passkey alone signs a person in (it is a password and a second factor
    /// in one), from the sign-in page. Needs `passkey` in `methods`.
    pub passwordless: bool,
    /// `group_passkeys`: a passkey on a shared tablet may be a group account's factor, next to
    /// its authenticator. Needs `passkey` in `methods`.
    pub group_passkeys: bool,
}

impl MfaPolicy {
    /// Whether passkeys are one of the methods offered.
    pub fn offers_passkeys(&self) -> bool {
        self.methods.contains(&MfaMethod::Passkey)
    }
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            methods: MfaMethod::ALL.to_vec(),
            required: MfaRequirement::All,
            exempt_roles: Vec::new(),
            trust_device_for: Duration::from_secs(7 * 24 * 60 * 60),
            session_lifetime: Duration::from_secs(12 * 60 * 60),
            group_idle_timeout: Duration::from_secs(60 * 24 * 60 * 60),
            device_flow: false,
            passwordless: false,
            group_passkeys: false,
        }
    }
}

/// One `[[sso]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoProvider {
    pub id: String,
    pub kind: SsoKind,
    /// Button text; defaults to "Microsoft", "Google", or the id for OIDC.
    pub label: String,
    pub client_id: String,
    pub client_secret: Option<ClientSecret>,
    pub mfa: SsoMfa,
    pub require_provider_mfa: bool,
    pub create_accounts: bool,
    /// Lowercased; empty means any domain.
    pub allowed_email_domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsoKind {
    /// Entra ID, one tenant: the issuer is `{authority}/{tenant}/v2.0`.
    Microsoft {
        /// A tenant id (GUID, lowercased), never a multi-tenant alias.
        tenant: String,
        /// Where Entra ID lives: [`SsoKind::MICROSOFT_AUTHORITY`] unless the policy names a
        /// national cloud's (or a stand-in's). Scheme, host and port only, lowercased, without a
        /// trailing `/`; `https://` (`http://` only on loopback).
        authority: String,
    },
    /// Google: [`SsoKind::GOOGLE_ISSUER`] unless the policy names a stand-in.
    Google {
        /// As [`SsoKind::Oidc`]'s.
        issuer: String,
    },
    /// `issuer` is an `https://` URL (`http://` only on loopback), as written.
    Oidc { issuer: String },
}

impl SsoKind {
    /// Entra ID's global authority; national clouds have their own.
    pub const MICROSOFT_AUTHORITY: &'static str = "https://login.microsoftonline.com";
    /// Google's issuer.
    pub const GOOGLE_ISSUER: &'static str = "https://accounts.google.com";

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Microsoft { .. } => "microsoft",
            Self::Google { .. } => "google",
            Self::Oidc { .. } => "oidc",
        }
    }

    /// The issuer ID tokens must name, compared with their `iss` byte for byte: the tenant's
    /// own for Microsoft, never the shared `common` or `organizations` endpoints.
    pub fn issuer(&self) -> String {
        match self {
            Self::Microsoft { tenant, authority } => format!("{authority}/{tenant}/v2.0"),
            Self::Google { issuer } | Self::Oidc { issuer } => issuer.clone(),
        }
    }
}

/// Where the OIDC client secret is read from; the secret itself is never held here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// Resolved against the policy file's directory; not read at load.
    File(PathBuf),
    Env(String),
}

/// Who runs the second factor for users signing in through a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SsoMfa {
    Provider,
    /// The default: certgate's own second factor runs after the provider's sign-in.
    #[default]
    Certgate,
}

/// Every organisation of a policies directory, checked against each other, with the host map
/// the gateway consults per request.
#[derive(Debug, Clone)]
pub struct PolicySet {
    dir: PathBuf,
    organisations: Vec<Arc<Organisation>>,
    by_id: HashMap<String, Arc<Organisation>>,
    by_host: HashMap<String, Vec<Arc<Organisation>>>,
    watched: Vec<PathBuf>,
}

impl PolicySet {
    /// Reads every `*.toml` file of `dir` (names starting with `.` are skipped: editor and
    /// Kubernetes bookkeeping) and reports every problem of every file at once.
    pub fn load(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        load_recording_paths(dir).0
    }

    /// The organisations served on `host` (a `Host` header or SNI name): case-insensitive, a
    /// `:port` suffix and IPv6 brackets ignored. Several when they share one upstream set.
    pub fn organisations_for_host(&self, host: &str) -> &[Arc<Organisation>] {
        self.by_host
            .get(host_key(host).as_ref())
            .map_or(&[], Vec::as_slice)
    }

    pub fn organisation(&self, id: &str) -> Option<&Arc<Organisation>> {
        self.by_id.get(id)
    }

    /// In policy file name order.
    pub fn organisations(&self) -> impl Iterator<Item = &Arc<Organisation>> {
        self.organisations.iter()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory itself (so new policy files are noticed), every policy file and every
    /// allow-list file this set was built from.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        self.watched.clone()
    }
}

/// The lookup key of a `Host` header: port and brackets removed, lowercased, no trailing dot.
fn host_key(host: &str) -> Cow<'_, str> {
    // A port is digits only: `host:@evil.example` names no organisation.
    let port_ok = |port: &str| {
        port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
    };
    let without_port = if let Some(bracketed) = host.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((inside, "")) => inside,
            Some((inside, rest)) if rest.strip_prefix(':').is_some_and(port_ok) => inside,
            _ => "",
        }
    } else if host.matches(':').count() == 1 {
        match host.split_once(':') {
            Some((name, port)) if port_ok(port) => name,
            _ => "",
        }
    } else {
        host
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Loads like [`PolicySet::load`], also returning every path it read or tried to read, so a
/// reload watcher can notice the fix of a file that made the load fail.
pub(crate) fn load_recording_paths(dir: &Path) -> (Result<PolicySet, PolicyErrors>, Vec<PathBuf>) {
    let mut watched = vec![dir.to_owned()];
    let mut errors = Vec::new();
    let files = match policy_files(dir) {
        Ok(files) => files,
        Err(error) => {
            errors.push(PolicyError::file_problem(
                dir,
                format!("cannot read the policies directory: {error}"),
            ));
            return (Err(PolicyErrors(errors)), watched);
        }
    };
    if files.is_empty() {
        errors.push(PolicyError::file_problem(
            dir,
            "no organisation policies found (expected *.toml files)",
        ));
        return (Err(PolicyErrors(errors)), watched);
    }
    let mut parsed = Vec::new();
    for file in files {
        watched.push(file.clone());
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let policy = parse::parse_policy(&file, &text);
                watched.extend(policy.read_paths.iter().cloned());
                errors.extend(policy.errors.iter().cloned());
                parsed.push(policy);
            }
            Err(error) => errors.push(PolicyError::file_problem(
                &file,
                format!("cannot read: {error}"),
            )),
        }
    }
    check_across_files(&parsed, &mut errors);
    if !errors.is_empty() {
        return (Err(PolicyErrors::sorted(errors)), watched);
    }
    let organisations: Vec<Arc<Organisation>> = parsed
        .into_iter()
        .filter_map(|policy| policy.organisation.map(Arc::new))
        .collect();
    let mut by_id = HashMap::new();
    let mut by_host: HashMap<String, Vec<Arc<Organisation>>> = HashMap::new();
    for organisation in &organisations {
        by_id.insert(organisation.id.clone(), Arc::clone(organisation));
        for host in &organisation.hosts {
            by_host
                .entry(host.clone())
                .or_default()
                .push(Arc::clone(organisation));
        }
    }
    let set = PolicySet {
        dir: dir.to_owned(),
        organisations,
        by_id,
        by_host,
        watched: watched.clone(),
    };
    (Ok(set), watched)
}

fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // Follows symlinks, as Kubernetes ConfigMap volumes are made of them.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(dir.join(name));
    }
    files.sort();
    Ok(files)
}

fn check_across_files(parsed: &[parse::ParsedPolicy], errors: &mut Vec<PolicyError>) {
    let mut ids: HashMap<&str, (&Path, usize)> = HashMap::new();
    for policy in parsed {
        let Some((id, line)) = &policy.id else {
            continue;
        };
        match ids.get(id.as_str()) {
            Some((first_file, first_line)) => errors.push(PolicyError::new(
                &policy.file,
                Some(*line),
                "id",
                format!(
                    "organisation id {id:?} is already used by {}:{first_line}",
                    first_file.display()
                ),
            )),
            None => {
                ids.insert(id, (&policy.file, *line));
            }
        }
    }

    let mut hosts: HashMap<&str, &parse::ParsedPolicy> = HashMap::new();
    for policy in parsed {
        for (host, line, index) in &policy.hosts {
            let Some(first) = hosts.get(host.as_str()) else {
                hosts.insert(host, policy);
                continue;
            };
            if let (Some(ours), Some(theirs)) = (&policy.upstreams, &first.upstreams) {
                if ours != theirs {
                    let other = first.id.as_ref().map_or("?", |(id, _)| id.as_str());
                    errors.push(PolicyError::new(
                        &policy.file,
                        Some(*line),
                        format!("hosts[{index}]"),
                        format!(
                            "host {host:?} is also served by organisation {other:?} ({}) with \
                             different upstreams; organisations may share a host only when \
                             their upstreams are the same",
                            first.file.display()
                        ),
                    ));
                }
            }
        }
    }
}

mod parse;
#[cfg(test)]
mod tests;
