//! One policy file: every key read and checked against the schema of ARCHITECTURE.md, every
//! problem recorded with its line, and the facts the checks across files need.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Access, ClientSecret, HealthCheck, Language, MfaMethod, MfaPolicy, MfaRequirement,
    Organisation, SsoKind, SsoMfa, SsoProvider, Upstream,
};
use crate::allowlist::{
    not_an_ip_message, parse_ip_or_cidr, read_allow_list_file, AllowEntry, EntrySource, IpAllowList,
};
use crate::duration::{duration_at_most, lifetime_setting};
use crate::endpoint::{parse_host_name, parse_http_url, parse_served_host};
use crate::error::{PolicyError, ValueError};
use crate::public_path::PublicPath;
use crate::time_zone::TimeZone;
use crate::walk::{one_of, Document, Field, TableWalker};

/// One policy file after parsing: the organisation when the file had no problem, and what the
/// checks across files need even when it had some.
pub(super) struct ParsedPolicy {
    pub(super) file: PathBuf,
    pub(super) organisation: Option<Organisation>,
    pub(super) id: Option<(String, usize)>,
    /// Each valid host with its line and its index in `hosts`.
    pub(super) hosts: Vec<(String, usize, usize)>,
    /// `None` unless every upstream parsed, so a typo is not also reported as a mismatch.
    pub(super) upstreams: Option<HashSet<Upstream>>,
    pub(super) read_paths: Vec<PathBuf>,
    pub(super) errors: Vec<PolicyError>,
}

pub(super) fn parse_policy(file: &Path, text: &str) -> ParsedPolicy {
    let doc = Document::new(file, text);
    let mut parsed = ParsedPolicy {
        file: file.to_owned(),
        organisation: None,
        id: None,
        hosts: Vec::new(),
        upstreams: None,
        read_paths: Vec::new(),
        errors: Vec::new(),
    };
    let Some(table) = doc.parse(text) else {
        parsed.errors = doc.into_errors();
        return parsed;
    };
    let base = file.parent().unwrap_or(Path::new(""));
    let mut allow_list_errors = Vec::new();
    let organisation = {
        let mut root = doc.root(&table);
        let organisation = parse_organisation(&mut root, base, &mut parsed, &mut allow_list_errors);
        root.finish();
        organisation
    };
    let mut errors = doc.into_errors();
    errors.extend(allow_list_errors);
    if errors.is_empty() {
        parsed.organisation = organisation;
    }
    parsed.errors = errors;
    parsed
}

fn parse_organisation(
    root: &mut TableWalker<'_, '_>,
    base: &Path,
    parsed: &mut ParsedPolicy,
    allow_list_errors: &mut Vec<PolicyError>,
) -> Option<Organisation> {
    let file = parsed.file.clone();
    let id = root
        .required("id")
        .and_then(|field| field.parsed(parse_id).map(|id| (id, field.line())));
    parsed.id.clone_from(&id);
    let name = root
        .required_str("name")
        .and_then(|(field, name)| non_blank(&field, name));

    let mut hosts = Vec::new();
    if let Some(field) = root.required("hosts") {
        let items = field.array();
        if items.as_ref().is_some_and(Vec::is_empty) {
            field.error("at least one host is required");
        }
        for (index, item) in items.unwrap_or_default().into_iter().enumerate() {
            let Some(host) = item.parsed(|text| {
                parse_served_host(text).ok_or_else(|| ValueError::NotAHostName(text.to_owned()))
            }) else {
                continue;
            };
            if hosts.contains(&host) {
                item.error(format!("host {host:?} is listed twice"));
                continue;
            }
            parsed.hosts.push((host.clone(), item.line(), index));
            hosts.push(host);
        }
    }

    let mut upstreams = Vec::new();
    let mut upstreams_complete = false;
    if let Some(field) = root.required("upstreams") {
        if let Some(items) = field.array() {
            upstreams_complete = !items.is_empty();
            if items.is_empty() {
                field.error("at least one upstream is required");
            }
            for item in items {
                match item.parsed(Upstream::parse) {
                    Some(upstream) if upstreams.contains(&upstream) => {
                        item.error(format!("upstream {:?} is listed twice", upstream.url));
                    }
                    Some(upstream) => upstreams.push(upstream),
                    None => upstreams_complete = false,
                }
            }
        }
    }
    if upstreams_complete {
        parsed.upstreams = Some(upstreams.iter().cloned().collect());
    }

    let logo = root.non_empty_str("logo").and_then(|(field, written)| {
        let path = base.join(written);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Some(path),
            Ok(_) => {
                field.error(format!("{} is not a file", path.display()));
                None
            }
            Err(error) => {
                field.error(format!("cannot read {}: {error}", path.display()));
                None
            }
        }
    });
    let colour = root.parsed("colour", parse_colour);
    let default_language = root
        .parsed("default_language", |text| {
            one_of(text, &[("nl", Language::Nl), ("en", Language::En)])
        })
        .unwrap_or_default();
    let time_zone = root
        .parsed("time_zone", |name| Ok(TimeZone::named(name)?))
        .unwrap_or_default();

    let mut table = root.section("access");
    let access = parse_access(&mut table, &file, base, parsed, allow_list_errors);
    table.finish();
    let mut table = root.section("mfa");
    let mfa = parse_mfa(&mut table);
    table.finish();
    let health_check = root.table("health_check").map(|mut table| {
        let check = parse_health_check(&mut table);
        table.finish();
        check
    });
    let mut sso = Vec::new();
    let mut sso_ids: Vec<(String, usize)> = Vec::new();
    for mut table in root.tables("sso") {
        let id_field = table.required("id");
        let id = id_field.as_ref().and_then(|field| field.parsed(parse_id));
        if let (Some(id), Some(field)) = (&id, &id_field) {
            match sso_ids.iter().find(|(seen, _)| seen == id) {
                Some((_, line)) => {
                    field.error(format!("sso id {id:?} is already used on line {line}"))
                }
                None => sso_ids.push((id.clone(), field.line())),
            }
        }
        if let Some(provider) = parse_sso(&mut table, id, base) {
            sso.push(provider);
        }
        table.finish();
    }

    Some(Organisation {
        id: id?.0,
        name: name?.to_owned(),
        hosts,
        upstreams,
        logo,
        colour,
        default_language,
        time_zone,
        access,
        mfa,
        sso,
        health_check: health_check.flatten(),
        source: file,
    })
}

fn parse_health_check(table: &mut TableWalker<'_, '_>) -> Option<HealthCheck> {
    let path = table.required_str("path").and_then(|(field, path)| {
        let fine = path.starts_with('/')
            && path.len() <= 1024
            && path.bytes().all(|b| b.is_ascii_graphic());
        if !fine {
            field.error(format!(
                "{path:?} must start with \"/\" and hold no spaces or control characters"
            ));
        }
        fine.then(|| path.to_owned())
    });
    let expect_status = match table.field("expect_status") {
        None => Some(200),
        Some(field) => {
            let status = field
                .integer()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n));
            if status.is_none() {
                field.error("must be an HTTP status from 100 to 599");
            }
            status
        }
    };
    let interval = table
        .parsed("interval", |text| {
            duration_at_most(text, false, Duration::from_secs(300), "")
        })
        .unwrap_or(Duration::from_secs(5));
    let timeout_field = table.field("timeout");
    let timeout = timeout_field
        .as_ref()
        .and_then(|field| {
            field.parsed(|text| duration_at_most(text, false, Duration::from_secs(60), ""))
        })
        .unwrap_or(Duration::from_secs(2));
    if timeout >= interval {
        if let Some(field) = &timeout_field {
            field.error("must be shorter than interval");
        }
    }
    Some(HealthCheck {
        path: path?,
        expect_status: expect_status?,
        interval,
        timeout: timeout.min(interval),
    })
}

fn parse_access(
    table: &mut TableWalker<'_, '_>,
    file: &Path,
    base: &Path,
    parsed: &mut ParsedPolicy,
    allow_list_errors: &mut Vec<PolicyError>,
) -> Access {
    let mut entries = Vec::new();
    for (index, (field, text)) in table
        .strings("allow_ips")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match parse_ip_or_cidr(text) {
            Some(net) => entries.push(AllowEntry {
                net,
                source: EntrySource::Inline {
                    policy: file.to_owned(),
                    index,
                    line: field.line(),
                },
            }),
            None => field.error(not_an_ip_message(text)),
        }
    }
    let mut allow_ips_files = Vec::new();
    for (field, written) in table.strings("allow_ips_files").unwrap_or_default() {
        let path = base.join(written);
        parsed.read_paths.push(path.clone());
        match read_allow_list_file(&path, written, allow_list_errors) {
            Ok(from_file) => entries.extend(from_file),
            Err(error) => field.error(format!("cannot read {}: {error}", path.display())),
        }
        allow_ips_files.push(path);
    }
    let public_paths = table
        .strings("public_paths")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(field, _)| field.parsed(PublicPath::parse))
        .collect();
    Access {
        allow: IpAllowList::new(entries),
        allow_ips_files,
        public_paths,
        browser_credentials: table.bool_or("browser_credentials", true),
    }
}

fn parse_mfa(table: &mut TableWalker<'_, '_>) -> MfaPolicy {
    let defaults = MfaPolicy::default();
    let methods = match table.field("methods") {
        None => defaults.methods,
        Some(field) => {
            let mut methods = Vec::new();
            let items = field.array();
            if items.as_ref().is_some_and(Vec::is_empty) {
                field.error("at least one method is required");
            }
            for item in items.unwrap_or_default() {
                let Some(method) = item.parsed(|text| {
                    one_of(
                        text,
                        &[
                            ("authenticator", MfaMethod::Authenticator),
                            ("sms", MfaMethod::Sms),
                            ("email", MfaMethod::Email),
                            ("passkey", MfaMethod::Passkey),
                        ],
                    )
                }) else {
                    continue;
                };
                if methods.contains(&method) {
                    item.error(format!("{:?} is listed twice", method.as_str()));
                } else {
                    methods.push(method);
                }
            }
            methods
        }
    };
    let has_passkeys = methods.contains(&MfaMethod::Passkey);
    let required = table
        .parsed("required", |text| {
            one_of(
                text,
                &[
                    ("all", MfaRequirement::All),
                    ("enrolled", MfaRequirement::Enrolled),
                ],
            )
        })
        .unwrap_or_default();
    let exempt_roles = table
        .strings("exempt_roles")
        .unwrap_or_default()
        .into_iter()
        // Accounts' roles are stored in lower case.
        .filter_map(|(field, role)| non_blank(&field, role).map(|r| r.trim().to_lowercase()))
        .collect();
    MfaPolicy {
        methods,
        required,
        exempt_roles,
        trust_device_for: table
            .parsed("trust_device_for", |text| lifetime_setting(text, true))
            .unwrap_or(defaults.trust_device_for),
        session_lifetime: table
            .parsed("session_lifetime", |text| lifetime_setting(text, false))
            .unwrap_or(defaults.session_lifetime),
        group_idle_timeout: table
            .parsed("group_idle_timeout", |text| lifetime_setting(text, false))
            .unwrap_or(defaults.group_idle_timeout),
        device_flow: table.bool_or("device_flow", defaults.device_flow),
        passwordless: passkey_setting(table, "passwordless", has_passkeys),
        group_passkeys: passkey_setting(table, "group_passkeys", has_passkeys),
    }
}

/// A setting that only means something with `passkey` among the methods: an error without.
fn passkey_setting<'d>(table: &mut TableWalker<'d, '_>, key: &'d str, has_passkeys: bool) -> bool {
    let Some(field) = table.field(key) else {
        return false;
    };
    let on = field.bool().unwrap_or(false);
    if on && !has_passkeys {
        field.error("needs \"passkey\" in methods");
    }
    on
}

#[derive(Clone, Copy)]
enum KindName {
    Microsoft,
    Google,
    Oidc,
}

/// One `[[sso]]` entry; its `id`, read by the caller for the duplicate check, is passed in.
fn parse_sso(
    table: &mut TableWalker<'_, '_>,
    id: Option<String>,
    base: &Path,
) -> Option<SsoProvider> {
    let kind_name = table.required("kind").and_then(|field| {
        field.parsed(|text| {
            one_of(
                text,
                &[
                    ("microsoft", KindName::Microsoft),
                    ("google", KindName::Google),
                    ("oidc", KindName::Oidc),
                ],
            )
        })
    });
    let tenant = table.non_empty_str("tenant");
    let authority = table.non_empty_str("authority");
    let issuer = table.non_empty_str("issuer");
    let label = table
        .str("label")
        .and_then(|(field, label)| non_blank(&field, label));
    let client_id = table
        .required_str("client_id")
        .and_then(|(field, text)| non_blank(&field, text));
    let secret_file = table.non_empty_str("client_secret_file");
    let secret_env = table.non_empty_str("client_secret_env");
    let client_secret = match (secret_file, secret_env) {
        (Some(_), Some((field, _))) => {
            field.error("set client_secret_file or client_secret_env, not both");
            None
        }
        (Some((_, path)), None) => Some(ClientSecret::File(base.join(path))),
        (None, Some((field, name))) => field
            .parsed(|_| parse_env_name(name))
            .map(ClientSecret::Env),
        (None, None) => None,
    };
    let mfa = table
        .parsed("mfa", |text| {
            one_of(
                text,
                &[
                    ("provider", SsoMfa::Provider),
                    ("certgate", SsoMfa::Certgate),
                ],
            )
        })
        .unwrap_or_default();
    let require_provider_mfa = table.bool_or("require_provider_mfa", false);
    let create_accounts = table.bool_or("create_accounts", false);
    let allowed_email_domains = table
        .strings("allowed_email_domains")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(field, domain)| {
            field.parsed(|_| {
                parse_host_name(domain).ok_or_else(|| ValueError::NotADomainName(domain.to_owned()))
            })
        })
        .collect::<Vec<_>>();
    if create_accounts && allowed_email_domains.is_empty() {
        table.doc().error(
            table.header_offset(),
            &table.key_path("create_accounts"),
            "needs allowed_email_domains: without it everyone the provider signs in (any Google \
             Workspace, anyone who can register there) would get an account here",
        );
    }

    // Every key is read above, before anything can stop early, so none is reported unknown.
    let kind = match kind_name? {
        KindName::Microsoft => {
            if let Some((field, _)) = &issuer {
                field.error(
                    "not used with kind = \"microsoft\": its issuer is \
                     <authority>/<tenant>/v2.0 (set authority for a national cloud)",
                );
            }
            // Parsed here so that a bad authority is reported even without a tenant.
            let authority = match authority {
                Some((field, text)) => field.parsed(|_| parse_authority(text)),
                None => Some(SsoKind::MICROSOFT_AUTHORITY.to_owned()),
            };
            if require_provider_mfa {
                table.doc().error(
                    table.header_offset(),
                    &table.key_path("require_provider_mfa"),
                    "Entra ID's v2.0 ID tokens carry no `amr` claim, so this could never be met; \
                     require MFA with Conditional Access in Entra, or use mfa = \"certgate\"",
                );
            }
            match tenant {
                Some((field, text)) => field
                    .parsed(|_| parse_tenant(text))
                    .zip(authority)
                    .map(|(tenant, authority)| SsoKind::Microsoft { tenant, authority }),
                None => {
                    table.doc().error(
                        table.header_offset(),
                        &table.key_path("tenant"),
                        "required for kind = \"microsoft\"",
                    );
                    None
                }
            }
        }
        KindName::Google => {
            for (field, _) in [&tenant, &authority].into_iter().flatten() {
                field.error("only used with kind = \"microsoft\"");
            }
            if require_provider_mfa {
                table.doc().error(
                    table.header_offset(),
                    &table.key_path("require_provider_mfa"),
                    "Google does not tell which factors were used (no `amr` claim), so this could \
                     never be met; use mfa = \"certgate\" to have certgate ask for a code",
                );
            }
            // Google's own unless the policy names a stand-in (a test provider): the claim
            // rules (`hd`, `email_verified`) are Google's either way.
            match issuer {
                Some((field, text)) => field
                    .parsed(|_| parse_issuer(text))
                    .map(|issuer| SsoKind::Google { issuer }),
                None => Some(SsoKind::Google {
                    issuer: SsoKind::GOOGLE_ISSUER.to_owned(),
                }),
            }
        }
        KindName::Oidc => {
            for (field, _) in [&tenant, &authority].into_iter().flatten() {
                field.error("only used with kind = \"microsoft\"");
            }
            match issuer {
                Some((field, text)) => field
                    .parsed(|_| parse_issuer(text))
                    .map(|issuer| SsoKind::Oidc { issuer }),
                None => {
                    table.doc().error(
                        table.header_offset(),
                        &table.key_path("issuer"),
                        "required for kind = \"oidc\"",
                    );
                    None
                }
            }
        }
    };
    let id = id?;
    let kind = kind?;
    let label = label.map(str::to_owned).unwrap_or_else(|| match &kind {
        SsoKind::Microsoft { .. } => "Microsoft".to_owned(),
        SsoKind::Google { .. } => "Google".to_owned(),
        SsoKind::Oidc { .. } => id.clone(),
    });
    Some(SsoProvider {
        id,
        kind,
        label,
        client_id: client_id?.to_owned(),
        client_secret,
        mfa,
        require_provider_mfa,
        create_accounts,
        allowed_email_domains,
    })
}

/// Ids end up in certificate subjects, `urn:certgate:<org>:<device>` URIs, URLs and metric
/// labels, so they are kept to characters that need no escaping in any of them.
fn parse_id(text: &str) -> Result<String, ValueError> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(ValueError::NotAnId(text.to_owned()))
    }
}

fn non_blank<'a>(field: &Field<'_, '_>, text: &'a str) -> Option<&'a str> {
    if text.trim().is_empty() {
        field.error("must not be empty");
        None
    } else {
        Some(text)
    }
}

/// WCAG 2's minimum contrast for normal text (success criterion 1.4.3).
const MIN_CONTRAST: f64 = 4.5;

/// The brand colour is the background of buttons and the header, under white text, and the
/// colour of links on white: it must keep 4.5:1 against white, or staff cannot read them.
fn parse_colour(text: &str) -> Result<String, ValueError> {
    let rgb = text
        .strip_prefix('#')
        .filter(|hex| hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ValueError::NotAColour(text.to_owned()))?;
    let contrast = contrast_with_white(rgb);
    if contrast < MIN_CONTRAST {
        return Err(ValueError::ColourTooLight {
            colour: text.to_owned(),
            contrast,
            minimum: MIN_CONTRAST,
        });
    }
    Ok(text.to_ascii_lowercase())
}

/// The WCAG 2 contrast ratio of the colour `0xrrggbb` with white.
fn contrast_with_white(rgb: u32) -> f64 {
    let channel = |shift: u32| {
        let c = f64::from((rgb >> shift) & 0xff) / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(16) + 0.7152 * channel(8) + 0.0722 * channel(0);
    1.05 / (luminance + 0.05)
}

/// Microsoft's multi-tenant aliases would admit any Microsoft account, not the organisation's.
fn parse_tenant(text: &str) -> Result<String, ValueError> {
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
        return Err(ValueError::MultiTenant(text.to_owned()));
    }
    // The consumers tenant by id: every personal Microsoft account.
    if lower == "9188040d-6c67-4c5b-b112-36a304b66dad" {
        return Err(ValueError::PersonalAccountsTenant(text.to_owned()));
    }
    if is_guid(&lower) {
        return Ok(lower);
    }
    // Entra's issuer names the tenant by id, so a domain would never match the ID tokens.
    Err(ValueError::NotATenantId(text.to_owned()))
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where Entra ID lives, such as `https://login.microsoftonline.us` (a national cloud): the
/// issuer is `<authority>/<tenant>/v2.0`, so scheme, host and port only. Lowercased (as Entra's
/// `iss` is) and without a trailing `/`.
fn parse_authority(text: &str) -> Result<String, ValueError> {
    let (tls, url) = parse_http_url(text)?;
    if !tls && !url.is_loopback() {
        return Err(ValueError::NotHttps(text.to_owned()));
    }
    if !(url.rest.is_empty() || url.rest == "/") {
        return Err(ValueError::AuthorityWithPath(text.to_owned()));
    }
    Ok(text.strip_suffix('/').unwrap_or(text).to_ascii_lowercase())
}

/// The issuer is compared byte for byte with the `iss` claim, so it is kept as written.
fn parse_issuer(text: &str) -> Result<String, ValueError> {
    let (tls, url) = parse_http_url(text)?;
    if !tls && !url.is_loopback() {
        return Err(ValueError::NotHttps(text.to_owned()));
    }
    if url.rest.contains(['?', '#']) {
        return Err(ValueError::IssuerWithQuery(text.to_owned()));
    }
    Ok(text.to_owned())
}

fn parse_env_name(text: &str) -> Result<String, ValueError> {
    let valid = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(ValueError::NotAnEnvName(text.to_owned()))
    }
}
