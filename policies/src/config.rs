//! The model of `certgate.toml`: every section parsed into typed values with defaults, relative
//! paths resolved against the file's directory, and every problem reported at once with its
//! line and key, like the policy files.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::allowlist::{not_an_ip_message, parse_ip_or_cidr, AdminAllowListLimits};
use crate::duration::{duration_at_most, duration_setting};
use crate::endpoint::{parse_http_url, parse_url, shown_url};
use crate::error::{PolicyError, PolicyErrors, ValueError};
use crate::walk::{one_of, Document, TableWalker};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file, as given to [`Config::load`].
    pub source: PathBuf,
    pub server: ServerConfig,
    pub policies: PoliciesConfig,
    pub data: DataConfig,
    pub ca: CaConfig,
    pub portal: PortalConfig,
    pub store: StoreConfig,
    pub database: DatabaseConfig,
    /// `None` when `mail.smtp_url` is empty or absent: no mail can be sent.
    pub mail: Option<MailConfig>,
    /// `None` when there is no `[sms]` section: no SMS can be sent.
    pub sms: Option<SmsConfig>,
    pub limits: LimitsConfig,
    pub development: DevelopmentConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Default `0.0.0.0:8443`, so a first start needs no root and no edit.
    pub https_listen: SocketAddr,
    /// Plain HTTP listener that redirects to HTTPS; off unless set.
    pub http_listen: Option<SocketAddr>,
    /// Metrics, health and the token-protected admin API. Default `127.0.0.1:9100`; `""` turns
    /// it off.
    pub admin_listen: Option<SocketAddr>,
    /// The CLI's admin socket. Default `<data dir>/admin.sock`.
    pub admin_socket: PathBuf,
    /// File holding the bearer token of the admin listener's API; without it that API is off.
    pub admin_token_file: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` / PROXY header is believed; empty by default.
    pub trusted_proxies: Vec<IpNet>,
    pub proxy_protocol: bool,
    pub shutdown_grace: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
    pub access_log: AccessLog,
    /// An HTTP/1 request head (request line and headers) must arrive within this from its first
    /// byte, else 408 and the connection closes.
    pub request_head_timeout: Duration,
    /// The largest request head, in bytes; beyond it 431 and the connection closes.
    pub max_request_head: usize,
    /// Connections one client address (IPv6: its /64) may hold open at once; trusted proxies
    /// that do not send PROXY headers are exempt (they carry many clients).
    pub max_connections_per_client: u32,
    /// The first is the default when no SNI name matches; empty only with `acme`, whose
    /// certificate is then the default.
    pub certificates: Vec<CertificateConfig>,
    /// `[server.acme]`: a certificate for some hosts from an ACME CA.
    pub acme: Option<AcmeConfig>,
}

/// `[server.acme]`: certgate obtains and renews one certificate for `hosts` from the ACME CA at
/// `directory`, answering its HTTP-01 challenges on `server.http_listen` (port 80 to the
/// world), and keeps it in `<data dir>/acme/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's ACME directory URL (https).
    pub directory: String,
    /// Lowercased DNS names, no wildcards (HTTP-01 cannot prove them).
    pub hosts: Vec<String>,
    /// `mailto:` addresses for the CA's expiry notices; may be empty.
    pub contact: Vec<String>,
    /// Renew when the certificate has less than this left. Default 30 days.
    pub renew_before: Duration,
    /// PEM file of the root that signs the ACME server's own HTTPS certificate, for a private
    /// ACME CA; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessLog {
    Json,
    Off,
}

/// One `[[server.certificates]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    /// Lowercased SNI names; `*.example.org` covers one label.
    pub hosts: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The line of `cert` in the configuration file, for messages about the files.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoliciesConfig {
    /// Default `policies`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConfig {
    /// Default `data`: keys, the SQLite file, the admin socket.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// Default `ca`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    /// Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `None`: state in this process's memory (one instance only). May hold a password: log
    /// the host, not this.
    pub redis_url: Option<String>,
    /// Default `certgate:`.
    pub key_prefix: String,
    /// Required with `redis+sentinel://` URLs.
    pub sentinel_master: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `None`: SQLite in the data directory; otherwise `postgres://…` or `sqlite:…`. May hold
    /// a password: log the host, not this.
    pub url: Option<String>,
    /// Audit entries older than this are deleted (they hold personal data); default 365 days.
    pub audit_retention: Duration,
}

/// A URL with any `user:password@` part replaced, for debug output.
fn without_credentials(url: &Option<String>) -> Option<String> {
    url.as_ref()
        .map(|url| match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &url[at + 1..]),
            _ => url.clone(),
        })
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("redis_url", &without_credentials(&self.redis_url))
            .field("key_prefix", &self.key_prefix)
            .field("sentinel_master", &self.sentinel_master)
            .finish()
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &without_credentials(&self.url))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    pub smtp_url: String,
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: String,
}

/// How the SMTP connection is protected, from the URL scheme and `starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte (default port 465).
    Tls,
    /// `smtp://` with `starttls = true` (default port 587).
    StartTls,
    /// `smtp://` without TLS (default port 25): a local relay or a test sink.
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsConfig {
    /// POSTs each message to `url`, with the bearer token read from `token_file`.
    Webhook {
        url: String,
        token_file: Option<PathBuf>,
    },
    /// Writes codes to the log; only with `development.enabled`.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Default 5 per 15 minutes.
    pub password_failures_per_pair: RateLimit,
    /// Default 30 per 15 minutes.
    pub password_failures_per_ip: RateLimit,
    /// Default 5.
    pub code_failures_per_code: u32,
    /// Default 5 per 15 minutes.
    pub codes_sent_per_account: RateLimit,
    /// New sign-in sessions and single sign-on round trips started from one address (what an
    /// unauthenticated visitor can make the store keep); default 300 per 20 minutes.
    pub sign_in_starts_per_ip: RateLimit,
    /// How long a device-flow user code waits for approval; default 10 minutes.
    pub device_code_lifetime: Duration,
    /// The shortest IPv4 prefix an organisation admin may add to the allow list; default 16.
    pub admin_allowlist_min_prefix_v4: u8,
    /// The shortest IPv6 prefix an organisation admin may add to the allow list; default 48.
    pub admin_allowlist_min_prefix_v6: u8,
}

impl LimitsConfig {
    /// What [`crate::parse_admin_allow_list`] accepts under this configuration.
    pub fn admin_allow_list(&self) -> AdminAllowListLimits {
        AdminAllowListLimits {
            min_prefix_v4: self.admin_allowlist_min_prefix_v4,
            min_prefix_v6: self.admin_allowlist_min_prefix_v6,
            ..AdminAllowListLimits::default()
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            password_failures_per_pair: FIVE_PER_QUARTER_HOUR,
            password_failures_per_ip: THIRTY_PER_QUARTER_HOUR,
            code_failures_per_code: 5,
            codes_sent_per_account: FIVE_PER_QUARTER_HOUR,
            sign_in_starts_per_ip: THREE_HUNDRED_PER_TWENTY_MINUTES,
            device_code_lifetime: Duration::from_secs(600),
            admin_allowlist_min_prefix_v4: AdminAllowListLimits::default().min_prefix_v4,
            admin_allowlist_min_prefix_v6: AdminAllowListLimits::default().min_prefix_v6,
        }
    }
}

/// `"<count>/<window>"`, e.g. `"5/15m"`: at most `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub count: u32,
    pub window: Duration,
}

impl RateLimit {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let invalid = || ValueError::NotARateLimit(text.to_owned());
        let (count, window) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.parse().map_err(|_| invalid())?;
        if count == 0 {
            return Err(ValueError::NoEvents(text.to_owned()));
        }
        let window = duration_setting(window, false)?;
        Ok(Self { count, window })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevelopmentConfig {
    pub enabled: bool,
}

const FIVE_PER_QUARTER_HOUR: RateLimit = RateLimit {
    count: 5,
    window: Duration::from_secs(15 * 60),
};

const THIRTY_PER_QUARTER_HOUR: RateLimit = RateLimit {
    count: 30,
    window: Duration::from_secs(15 * 60),
};

/// As long as a sign-in session lives: a shared address (a care home behind one NAT) has room for
/// every colleague's sign-in at a shift change, one address cannot fill the store.
const THREE_HUNDRED_PER_TWENTY_MINUTES: RateLimit = RateLimit {
    count: 300,
    window: Duration::from_secs(20 * 60),
};

impl Config {
    /// Reads and checks `path`; relative paths in it are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, PolicyErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            PolicyErrors::from(PolicyError::new(
                path,
                None,
                "",
                format!("cannot read: {error}"),
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, PolicyErrors> {
        let doc = Document::new(path, text);
        let Some(table) = doc.parse(text) else {
            return Err(PolicyErrors(doc.into_errors()));
        };
        let base = path.parent().unwrap_or(Path::new(""));
        let config = {
            let mut root = doc.root(&table);
            let config = parse_config(&mut root, path, base);
            root.finish();
            config
        };
        let errors = doc.into_errors();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(PolicyErrors::sorted(errors))
        }
    }

    /// Things that are allowed but that an operator should know about, for `certgate check`
    /// and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.development.enabled {
            warnings.push(
                "development.enabled = true: development conveniences are on (SMS codes go to \
                 the log); do not run this in production"
                    .to_owned(),
            );
        }
        if self.store.redis_url.is_none() {
            warnings.push(
                "store.redis_url is empty: sessions and rate limits live in this process's \
                 memory; run only one instance"
                    .to_owned(),
            );
        }
        if self.mail.is_none() {
            warnings.push(
                "mail.smtp_url is empty: e-mail codes and notifications cannot be sent".to_owned(),
            );
        }
        if self.sms.is_none() {
            warnings.push("no [sms] section: SMS codes cannot be sent".to_owned());
        }
        if self
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.prefix_len() == 0)
        {
            warnings.push(
                "server.trusted_proxies contains a /0 network: every client can choose its own \
                 address with X-Forwarded-For"
                    .to_owned(),
            );
        }
        if !self.portal.listen.ip().is_loopback() {
            warnings.push(format!(
                "portal.listen = {}: the portal is meant to be reached only through the gateway",
                self.portal.listen
            ));
        }
        warnings
    }
}

fn parse_config(root: &mut TableWalker<'_, '_>, path: &Path, base: &Path) -> Config {
    let mut dir_of = |section: &'static str| {
        let mut table = root.section(section);
        let dir = table.non_empty_str("dir").map(|(_, dir)| base.join(dir));
        table.finish();
        dir.unwrap_or_else(|| base.join(section))
    };
    let data = DataConfig {
        dir: dir_of("data"),
    };
    let ca = CaConfig { dir: dir_of("ca") };
    let policies = PoliciesConfig {
        dir: dir_of("policies"),
    };

    let mut table = root.section("server");
    let server = parse_server(&mut table, base, &data);
    table.finish();

    let mut table = root.section("portal");
    let portal = PortalConfig {
        listen: table
            .parsed("listen", parse_socket_addr)
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090)),
    };
    table.finish();

    let mut table = root.section("store");
    let store = parse_store(&mut table);
    table.finish();

    let mut table = root.section("database");
    let database = DatabaseConfig {
        url: table.non_empty_str("url").and_then(|(field, url)| {
            field.parsed(|_| {
                let known = ["postgres://", "postgresql://", "sqlite:"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme));
                if known {
                    Ok(url.to_owned())
                } else {
                    Err(ValueError::NotADatabaseUrl(shown_url(url)))
                }
            })
        }),
        audit_retention: table
            .parsed("audit_retention", |text| duration_setting(text, false))
            .unwrap_or(Duration::from_secs(365 * 86_400)),
    };
    table.finish();

    let mut table = root.section("development");
    let development = DevelopmentConfig {
        enabled: table.bool_or("enabled", false),
    };
    table.finish();

    let mut table = root.section("mail");
    let mail = parse_mail(&mut table, base);
    table.finish();

    let sms = root.table("sms").and_then(|mut table| {
        let sms = parse_sms(&mut table, base, development.enabled);
        table.finish();
        sms
    });

    let mut table = root.section("limits");
    let limits = LimitsConfig {
        password_failures_per_pair: table
            .parsed("password_failures_per_pair", RateLimit::parse)
            .unwrap_or(FIVE_PER_QUARTER_HOUR),
        password_failures_per_ip: table
            .parsed("password_failures_per_ip", RateLimit::parse)
            .unwrap_or(THIRTY_PER_QUARTER_HOUR),
        code_failures_per_code: table
            .field("code_failures_per_code")
            .and_then(|field| {
                let count = u32::try_from(field.integer()?)
                    .ok()
                    .filter(|count| *count > 0);
                if count.is_none() {
                    field.error("must be a positive whole number");
                }
                count
            })
            .unwrap_or(5),
        codes_sent_per_account: table
            .parsed("codes_sent_per_account", RateLimit::parse)
            .unwrap_or(FIVE_PER_QUARTER_HOUR),
        sign_in_starts_per_ip: table
            .parsed("sign_in_starts_per_ip", RateLimit::parse)
            .unwrap_or(THREE_HUNDRED_PER_TWENTY_MINUTES),
        device_code_lifetime: table
            .parsed("device_code_lifetime", |text| {
                duration_at_most(text, false, Duration::from_secs(3600), "")
            })
            .unwrap_or(Duration::from_secs(600)),
        admin_allowlist_min_prefix_v4: prefix_length(
            &mut table,
            "admin_allowlist_min_prefix_v4",
            32,
        )
        .unwrap_or(AdminAllowListLimits::default().min_prefix_v4),
        admin_allowlist_min_prefix_v6: prefix_length(
            &mut table,
            "admin_allowlist_min_prefix_v6",
            128,
        )
        .unwrap_or(AdminAllowListLimits::default().min_prefix_v6),
    };
    table.finish();

    Config {
        source: path.to_owned(),
        server,
        policies,
        data,
        ca,
        portal,
        store,
        database,
        mail,
        sms,
        limits,
        development,
    }
}

fn parse_server(table: &mut TableWalker<'_, '_>, base: &Path, data: &DataConfig) -> ServerConfig {
    let optional_addr = |table: &mut TableWalker<'_, '_>, name, default: Option<SocketAddr>| {
        match table.str(name) {
            None => default,
            Some((_, "")) => None,
            Some((field, text)) => field.parsed(|_| parse_socket_addr(text)),
        }
    };
    let timeout = |table: &mut TableWalker<'_, '_>, name, default_secs| {
        table
            .parsed(name, |text| duration_setting(text, false))
            .unwrap_or(Duration::from_secs(default_secs))
    };
    let https_listen = table
        .parsed("https_listen", parse_socket_addr)
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443));
    let http_listen = optional_addr(table, "http_listen", None);
    let admin_listen = optional_addr(
        table,
        "admin_listen",
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100)),
    );
    let admin_socket = table
        .non_empty_str("admin_socket")
        .map(|(_, socket)| base.join(socket))
        .unwrap_or_else(|| data.dir.join("admin.sock"));
    let admin_token_file = table
        .non_empty_str("admin_token_file")
        .map(|(_, file)| base.join(file));
    let trusted_proxies = table
        .strings("trusted_proxies")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(field, text)| {
            let net = parse_ip_or_cidr(text);
            if net.is_none() {
                field.error(not_an_ip_message(text));
            }
            net
        })
        .collect();
    let proxy_protocol = table.bool_or("proxy_protocol", false);
    let shutdown_grace = table
        .parsed("shutdown_grace", |text| duration_setting(text, true))
        .unwrap_or(Duration::from_secs(10));
    let upstream_connect_timeout = timeout(table, "upstream_connect_timeout", 3);
    let upstream_read_timeout = timeout(table, "upstream_read_timeout", 60);
    let access_log = table
        .parsed("access_log", |text| {
            one_of(text, &[("json", AccessLog::Json), ("off", AccessLog::Off)])
        })
        .unwrap_or(AccessLog::Json);
    let request_head_timeout = table
        .parsed("request_head_timeout", |text| {
            duration_at_most(text, false, Duration::from_secs(300), "")
        })
        .unwrap_or(Duration::from_secs(20));
    let max_request_head = whole_number_in(table, "max_request_head", 4096..=1_048_576)
        .map_or(64 * 1024, |n| n as usize);
    let max_connections_per_client =
        whole_number_in(table, "max_connections_per_client", 1..=1_000_000).unwrap_or(256);

    let mut certificates = Vec::new();
    let entries = table.tables("certificates");
    let listed = !entries.is_empty();
    for mut entry in entries {
        if let Some(certificate) = parse_certificate(&mut entry, base) {
            certificates.push(certificate);
        }
        entry.finish();
    }
    let acme = table.table("acme").and_then(|mut section| {
        let acme = parse_acme(&mut section, base, http_listen.is_some());
        section.finish();
        acme
    });
    if !listed && acme.is_none() {
        table.doc().error(
            table.header_offset(),
            &table.key_path("certificates"),
            "at least one [[server.certificates]] entry (or [server.acme]) is required",
        );
    }
    ServerConfig {
        https_listen,
        http_listen,
        admin_listen,
        admin_socket,
        admin_token_file,
        trusted_proxies,
        proxy_protocol,
        shutdown_grace,
        upstream_connect_timeout,
        upstream_read_timeout,
        access_log,
        request_head_timeout,
        max_request_head,
        max_connections_per_client,
        certificates,
        acme,
    }
}

fn parse_acme(table: &mut TableWalker<'_, '_>, base: &Path, http: bool) -> Option<AcmeConfig> {
    let directory = table.required_str("directory").and_then(|(field, url)| {
        if url.starts_with("https://") && url.len() > "https://".len() {
            Some(url.to_owned())
        } else {
            field.error(format!(
                "{url:?} is not the https:// URL of an ACME directory"
            ));
            None
        }
    });
    let hosts = table.required("hosts").and_then(|field| {
        let items = field.array()?;
        if items.is_empty() {
            field.error("at least one host is required");
            return None;
        }
        let mut hosts: Vec<String> = items
            .into_iter()
            .filter_map(|item| {
                item.parsed(|text| match parse_certificate_host(text) {
                    Ok(host) if !host.starts_with("*.") => Ok(host),
                    _ => Err(ValueError::NotAHostName(text.to_owned())),
                })
            })
            .collect();
        // Once each, in the order written (the first names the certificate in metrics).
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|host| seen.insert(host.clone()));
        Some(hosts)
    });
    let contact = table
        .strings("contact")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(field, text)| {
            if text.starts_with("mailto:") && text.contains('@') {
                Some(text.to_owned())
            } else {
                field.error(format!("{text:?} is not a mailto: address"));
                None
            }
        })
        .collect();
    let renew_before = table
        .parsed("renew_before", |text| duration_setting(text, false))
        .unwrap_or(Duration::from_secs(30 * 86_400));
    let ca_file = table
        .non_empty_str("ca_file")
        .map(|(_, file)| base.join(file));
    if !http {
        table.doc().error(
            table.header_offset(),
            &table.key_path("directory"),
            "[server.acme] needs server.http_listen: the ACME CA checks \
             http://HOST/.well-known/acme-challenge/ there (port 80 to the world)",
        );
        return None;
    }
    Some(AcmeConfig {
        directory: directory?,
        hosts: hosts?,
        contact,
        renew_before,
        ca_file,
    })
}

fn parse_certificate(table: &mut TableWalker<'_, '_>, base: &Path) -> Option<CertificateConfig> {
    let hosts = table.required("hosts").map(|field| {
        let items = field.array();
        if items.as_ref().is_some_and(Vec::is_empty) {
            field.error("at least one host is required");
        }
        items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| item.parsed(parse_certificate_host))
            .collect::<Vec<_>>()
    });
    let cert = table
        .required_str("cert")
        .map(|(field, cert)| (base.join(cert), field.line()));
    let key = table.required_str("key").map(|(_, key)| base.join(key));
    let (cert, line) = cert?;
    Some(CertificateConfig {
        hosts: hosts?,
        cert,
        key: key?,
        line,
    })
}

/// A host name, or `*.` and a host name: a wildcard covers exactly one label, as in
/// certificates.
fn parse_certificate_host(text: &str) -> Result<String, ValueError> {
    let name = text.strip_prefix("*.").unwrap_or(text);
    match crate::endpoint::parse_served_host(name) {
        Some(host) if name.len() == text.len() => Ok(host),
        Some(host) if !host.contains(':') => Ok(format!("*.{host}")),
        _ => Err(ValueError::NotACertificateHost(text.to_owned())),
    }
}

fn parse_store(table: &mut TableWalker<'_, '_>) -> StoreConfig {
    const SCHEMES: [&str; 6] = [
        "redis://",
        "rediss://",
        "redis+sentinel://",
        "rediss+sentinel://",
        "redis+unix://",
        "unix://",
    ];
    let redis_url = table.non_empty_str("redis_url").and_then(|(field, url)| {
        field.parsed(|_| {
            if SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
                Ok(url.to_owned())
            } else {
                Err(ValueError::NotAStoreUrl(shown_url(url)))
            }
        })
    });
    let key_prefix = table
        .str("key_prefix")
        .map_or_else(|| "certgate:".to_owned(), |(_, prefix)| prefix.to_owned());
    let sentinel_master = table
        .non_empty_str("sentinel_master")
        .map(|(_, name)| name.to_owned());
    if redis_url
        .as_deref()
        .is_some_and(|url| url.contains("+sentinel://"))
        && sentinel_master.is_none()
    {
        table.doc().error(
            table.header_offset(),
            &table.key_path("sentinel_master"),
            "required with a redis+sentinel:// URL",
        );
    }
    StoreConfig {
        redis_url,
        key_prefix,
        sentinel_master,
    }
}

fn parse_mail(table: &mut TableWalker<'_, '_>, base: &Path) -> Option<MailConfig> {
    let url = table.non_empty_str("smtp_url");
    let starttls = table.field("starttls");
    let username = table
        .non_empty_str("username")
        .map(|(_, name)| name.to_owned());
    let password_file = table
        .non_empty_str("password_file")
        .map(|(_, file)| base.join(file));
    let from = table.non_empty_str("from");

    let (url_field, url_text) = url?;
    let parsed = url_field.parsed(|_| {
        let url = parse_url(url_text, &["smtp", "smtps"])?;
        if !(url.rest.is_empty() || url.rest == "/") {
            return Err(ValueError::SmtpUrlWithPath(url_text.to_owned()));
        }
        Ok(url)
    })?;
    let starttls_on = starttls
        .as_ref()
        .and_then(|field| field.bool())
        .unwrap_or(false);
    let security = match (parsed.scheme.as_str(), starttls_on) {
        ("smtps", true) => {
            if let Some(field) = &starttls {
                field.error("starttls applies to smtp:// URLs; smtps:// is TLS from the start");
            }
            return None;
        }
        ("smtps", false) => SmtpSecurity::Tls,
        (_, true) => SmtpSecurity::StartTls,
        (_, false) => SmtpSecurity::Plain,
    };
    let Some((_, from)) = from else {
        table.doc().error(
            table.header_offset(),
            &table.key_path("from"),
            "required when smtp_url is set",
        );
        return None;
    };
    let port = parsed.port.unwrap_or(match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Plain => 25,
    });
    Some(MailConfig {
        smtp_url: url_text.to_owned(),
        host: parsed.host,
        port,
        security,
        username,
        password_file,
        from: from.to_owned(),
    })
}

#[derive(Clone, Copy)]
enum SmsKindName {
    Webhook,
    Log,
}

fn parse_sms(table: &mut TableWalker<'_, '_>, base: &Path, development: bool) -> Option<SmsConfig> {
    let kind_field = table.field("kind");
    let kind = match &kind_field {
        None => Some(SmsKindName::Webhook),
        Some(field) => field.parsed(|text| {
            one_of(
                text,
                &[("webhook", SmsKindName::Webhook), ("log", SmsKindName::Log)],
            )
        }),
    };
    let url = table.non_empty_str("url");
    let token_file = table
        .non_empty_str("token_file")
        .map(|(_, file)| base.join(file));
    match kind? {
        SmsKindName::Log => {
            if !development {
                if let Some(field) = &kind_field {
                    field.error("\"log\" is only allowed with development.enabled = true");
                }
                return None;
            }
            Some(SmsConfig::Log)
        }
        SmsKindName::Webhook => {
            let Some((field, url)) = url else {
                table.doc().error(
                    table.header_offset(),
                    &table.key_path("url"),
                    "required for kind = \"webhook\"",
                );
                return None;
            };
            field.parsed(|_| {
                let (tls, parsed) = parse_http_url(url)?;
                if tls || parsed.is_loopback() {
                    Ok(())
                } else {
                    Err(ValueError::NotHttps(shown_url(url)))
                }
            })?;
            Some(SmsConfig::Webhook {
                url: url.to_owned(),
                token_file,
            })
        }
    }
}

/// A prefix length from 1 to `max`: 0 would let an organisation admin admit every address.
fn prefix_length(table: &mut TableWalker<'_, '_>, name: &'static str, max: u8) -> Option<u8> {
    let field = table.field(name)?;
    let value = field.integer()?;
    let length = u8::try_from(value)
        .ok()
        .filter(|length| (1..=max).contains(length));
    if length.is_none() {
        field.error(format!("must be a prefix length from 1 to {max}"));
    }
    length
}

fn whole_number_in(
    table: &mut TableWalker<'_, '_>,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
) -> Option<u32> {
    let field = table.field(name)?;
    let value = field.integer()?;
    let number = u32::try_from(value)
        .ok()
        .filter(|number| range.contains(number));
    if number.is_none() {
        field.error(format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        ));
    }
    number
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, ValueError> {
    text.parse()
        .map_err(|_| ValueError::NotASocketAddress(text.to_owned()))
}

#[cfg(test)]
mod tests;
