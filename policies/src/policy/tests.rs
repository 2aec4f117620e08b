#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use super::*;
use crate::MAX_CREDENTIAL_LIFETIME;

/// The example policy of ARCHITECTURE.md, verbatim.
const EXAMPLE: &str = r##"id = "noord"
name = "Zorggroep Noord"
hosts = ["noord.example.org"]
upstreams = ["http://10.0.0.5:8080"]
logo = "noord-logo.svg"                 # optional branding
colour = "#0b6e4f"

[access]
allow_ips = ["192.0.2.10", "198.51.100.0/24", "2001:db8::/48"]
allow_ips_files = ["noord.allowlist"]   # one address or CIDR a line, '#' starts a comment
public_paths = ["/favicon.ico"]
browser_credentials = true

[mfa]
methods = ["authenticator", "sms", "email"]
required = "all"                        # "all" | "enrolled"
exempt_roles = ["parent"]
trust_device_for = "7d"                 # "0s" hides the checkbox
session_lifetime = "12h"
group_idle_timeout = "60d"
device_flow = true

[[sso]]
id = "microsoft"
kind = "microsoft"                      # "microsoft" | "google" | "oidc"
label = "Microsoft"
tenant = "00000000-0000-0000-0000-000000000000"   # microsoft: one tenant per entry
issuer = ""                             # oidc: the issuer URL
client_id = "…"
client_secret_file = "secrets/noord-microsoft"    # or client_secret_env = "NOORD_MS_SECRET"
mfa = "provider"                        # "provider" | "certgate"
require_provider_mfa = false            # only where the provider sends `amr`
create_accounts = false
allowed_email_domains = ["noord.example.org"]
"##;

const ALLOWLIST: &str = "# office network\n10.20.0.0/16   # main building\n\n  203.0.113.7  \n";

const MINIMAL: &str = "id = \"zuid\"\nname = \"Zuid\"\nhosts = [\"zuid.example.org\"]\n\
                       upstreams = [\"https://zuid-app.internal\"]\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn example_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "noord.toml", EXAMPLE);
    write(dir.path(), "noord.allowlist", ALLOWLIST);
    write(dir.path(), "noord-logo.svg", "<svg/>");
    dir
}

fn errors_of(dir: &Path) -> Vec<String> {
    PolicySet::load(dir)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn loads_the_architecture_example() {
    let dir = example_dir();
    let set = PolicySet::load(dir.path()).unwrap();
    let org = set.organisation("noord").unwrap();
    assert_eq!(org.name, "Zorggroep Noord");
    assert_eq!(org.hosts, ["noord.example.org"]);
    assert_eq!(org.upstreams.len(), 1);
    let upstream = &org.upstreams[0];
    assert_eq!(
        (upstream.tls, upstream.host.as_str(), upstream.port),
        (false, "10.0.0.5", 8080)
    );
    assert_eq!(upstream.address(), "10.0.0.5:8080");
    assert_eq!(
        org.logo.as_deref(),
        Some(dir.path().join("noord-logo.svg").as_path())
    );
    assert_eq!(org.colour.as_deref(), Some("#0b6e4f"));
    assert_eq!(org.default_language, Language::Nl);
    assert_eq!(org.source, dir.path().join("noord.toml"));

    let access = &org.access;
    assert_eq!(access.allow.len(), 5);
    assert!(access.browser_credentials);
    assert_eq!(access.allow_ips_files, [dir.path().join("noord.allowlist")]);
    assert_eq!(
        access.allow.lookup(ip("198.51.100.9")).unwrap().to_string(),
        "allow_ips[1] noord.toml:9 198.51.100.0/24"
    );
    assert_eq!(
        access.allow.lookup(ip("10.20.3.4")).unwrap().to_string(),
        "allow_ips_files noord.allowlist:2 10.20.0.0/16"
    );
    assert_eq!(
        access.allow.lookup(ip("203.0.113.7")).unwrap().to_string(),
        "allow_ips_files noord.allowlist:4 203.0.113.7/32"
    );
    assert!(access.allow.contains(ip("2001:db8::1")));
    assert!(!access.allow.contains(ip("192.0.2.11")));
    assert_eq!(
        access.public_path("/favicon.ico").map(PublicPath::as_str),
        Some("/favicon.ico")
    );
    assert_eq!(access.public_path("/favicon.ico/../admin"), None);

    let mfa = &org.mfa;
    assert_eq!(mfa.methods, MfaMethod::ALL);
    assert_eq!(mfa.required, MfaRequirement::All);
    assert_eq!(mfa.exempt_roles, ["parent"]);
    assert_eq!(mfa.trust_device_for, Duration::from_secs(7 * 86_400));
    assert_eq!(mfa.session_lifetime, Duration::from_secs(12 * 3_600));
    assert_eq!(mfa.group_idle_timeout, Duration::from_secs(60 * 86_400));
    assert!(mfa.device_flow);

    assert_eq!(
        org.sso,
        [SsoProvider {
            id: "microsoft".into(),
            kind: SsoKind::Microsoft {
                tenant: "00000000-0000-0000-0000-000000000000".into(),
                authority: "https://login.microsoftonline.com".into(),
            },
            label: "Microsoft".into(),
            client_id: "…".into(),
            client_secret: Some(ClientSecret::File(
                dir.path().join("secrets/noord-microsoft")
            )),
            mfa: SsoMfa::Provider,
            require_provider_mfa: false,
            create_accounts: false,
            allowed_email_domains: vec!["noord.example.org".into()],
        }]
    );

    assert_eq!(
        set.watched_paths(),
        [
            dir.path().to_owned(),
            dir.path().join("noord.toml"),
            dir.path().join("noord.allowlist"),
        ]
    );
}

#[test]
fn defaults_apply_to_a_minimal_policy() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "zuid.toml", MINIMAL);
    write(dir.path(), "notes.txt", "not a policy");
    write(dir.path(), "zuid.allowlist", "not read unless named");
    let set = PolicySet::load(dir.path()).unwrap();
    let org = set.organisation("zuid").unwrap();
    assert_eq!(org.upstreams[0].port, 443);
    assert!(org.upstreams[0].tls);
    assert!(org.access.allow.is_empty());
    assert!(org.access.browser_credentials);
    assert_eq!(org.mfa, MfaPolicy::default());
    assert!(org.sso.is_empty());
    assert_eq!(org.logo, None);
    assert_eq!(org.health_check, None);
    assert_eq!(set.organisations().count(), 1);
}

#[test]
fn an_http_health_check_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}\n[health_check]\npath = \"/status?deep=1\"\ninterval = \"10s\"\n"),
    );
    let set = PolicySet::load(dir.path()).unwrap();
    assert_eq!(
        set.organisation("zuid").unwrap().health_check,
        Some(HealthCheck {
            path: "/status?deep=1".into(),
            expect_status: 200,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        })
    );
    write(
        dir.path(),
        "zuid.toml",
        &format!(
            "{MINIMAL}\n[health_check]\npath = \"status now\"\nexpect_status = 42\ninterval = \"2s\"\ntimeout = \"5s\"\nport = 1\n"
        ),
    );
    let errors = errors_of(dir.path()).join("\n");
    for expected in [
        "health_check.path",
        "health_check.expect_status: must be an HTTP status",
        "health_check.timeout: must be shorter than interval",
        "health_check.port",
    ] {
        assert!(errors.contains(expected), "{expected:?} in {errors}");
    }
}

#[test]
fn reports_every_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"id = "noord"
name = "Zorggroep Noord"
hosts = ["noord.example.org"]
upstreams = ["http://10.0.0.5:8080/app", "ftp://x"]
colour = "green"
[access]
allow_ips = ["192.0.2.10", "198.51.100.0/24", "10.0.0.300"]
allow_ip = ["1.2.3.4"]
public_paths = ["favicon.ico"]
allow_ips_files = ["noord.allowlist"]
[mfa]
methods = ["authenticator", "pigeon"]
required = "some"
trust_device_for = "7 days"
session_lifetime = "0s"
[[sso]]
id = "ms"
kind = "microsoft"
tenant = "common"
client_id = "abc"
client_secret_file = "a"
client_secret_env = "B"
mfa = "maybe"
[[sso]]
id = "ms"
kind = "oidc"
issuer = "https://idp.example.org"
client_id = "x"
"#;
    write(dir.path(), "noord.toml", policy);
    write(
        dir.path(),
        "noord.allowlist",
        "192.0.2.1\n# comment\n300.1.1.1/8\n",
    );
    let file = dir.path().join("noord.toml").display().to_string();
    let allowlist = dir.path().join("noord.allowlist").display().to_string();
    let expected = [
        format!("{allowlist}:3: \"300.1.1.1/8\" is not an IP address or CIDR"),
        format!(
            "{file}:4: upstreams[0]: \"http://10.0.0.5:8080/app\" must not have a path, query or \
             fragment (only scheme, host and port)"
        ),
        format!("{file}:4: upstreams[1]: \"ftp://x\" is not an http:// or https:// URL"),
        format!("{file}:5: colour: \"green\" is not a colour (#rrggbb)"),
        format!("{file}:7: access.allow_ips[2]: \"10.0.0.300\" is not an IP address or CIDR"),
        format!("{file}:8: access.allow_ip: unknown key"),
        format!("{file}:9: access.public_paths[0]: \"favicon.ico\" must start with \"/\""),
        format!(
            "{file}:12: mfa.methods[1]: \"pigeon\" is not one of \"authenticator\", \"sms\", \
             \"email\", \"passkey\""
        ),
        format!("{file}:13: mfa.required: \"some\" is not one of \"all\", \"enrolled\""),
        format!(
            "{file}:14: mfa.trust_device_for: \"7 days\" is not a duration: unknown unit \" \
             days\" (use ms, s, m, h or d)"
        ),
        format!("{file}:15: mfa.session_lifetime: \"0s\" must be longer than zero"),
        format!(
            "{file}:19: sso[0].tenant: tenant \"common\" admits accounts of any Microsoft \
             tenant; name the organisation's own tenant (a GUID or a domain)"
        ),
        format!(
            "{file}:22: sso[0].client_secret_env: set client_secret_file or client_secret_env, \
             not both"
        ),
        format!("{file}:23: sso[0].mfa: \"maybe\" is not one of \"provider\", \"certgate\""),
        format!("{file}:25: sso[1].id: sso id \"ms\" is already used on line 17"),
    ];
    assert_eq!(errors_of(dir.path()), expected);
}

#[test]
fn reports_every_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{MINIMAL}nmae = \"x\"\n[access]\nallow_ip = []\n[mfa]\nmethod = []\n[extra]\na = 1\n\
         [[sso]]\nid = \"g\"\nkind = \"google\"\nclient_id = \"c\"\nsecret = \"s\"\n"
    );
    write(dir.path(), "zuid.toml", &policy);
    let file = dir.path().join("zuid.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [
            format!("{file}:5: nmae: unknown key"),
            format!("{file}:7: access.allow_ip: unknown key"),
            format!("{file}:9: mfa.method: unknown key"),
            format!("{file}:10: extra: unknown key"),
            format!("{file}:16: sso[0].secret: unknown key"),
        ]
    );
}

#[test]
fn reports_missing_keys_and_wrong_types() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        "name = 5\nhosts = \"a.example\"\n[access]\nbrowser_credentials = \"yes\"\n[[sso]]\nkind = \"oidc\"\n",
    );
    let file = dir.path().join("a.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [
            format!("{file}: id: missing required key"),
            format!("{file}: upstreams: missing required key"),
            format!("{file}:1: name: expected a string, found integer"),
            format!("{file}:2: hosts: expected an array, found string"),
            format!("{file}:4: access.browser_credentials: expected true or false, found string"),
            format!("{file}:5: sso[0].id: missing required key"),
            format!("{file}:5: sso[0].client_id: missing required key"),
            format!("{file}:5: sso[0].issuer: required for kind = \"oidc\""),
        ]
    );
}

#[test]
fn reports_syntax_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        "id = \"a\"\nname = \"unterminated\nhosts = []\n",
    );
    write(dir.path(), "b.toml", MINIMAL);
    let errors = errors_of(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let prefix = format!("{}:2: invalid TOML: ", dir.path().join("a.toml").display());
    assert!(errors[0].starts_with(&prefix), "{errors:?}");
}

#[test]
fn reports_duplicate_ids_across_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", MINIMAL);
    write(
        dir.path(),
        "b.toml",
        &MINIMAL.replace("zuid.example.org", "other.example.org"),
    );
    let a = dir.path().join("a.toml").display().to_string();
    let b = dir.path().join("b.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [format!(
            "{b}:1: id: organisation id \"zuid\" is already used by {a}:1"
        )]
    );
}

#[test]
fn shared_hosts_need_equal_upstream_sets() {
    let dir = tempfile::tempdir().unwrap();
    let shared = |id: &str, upstreams: &str| {
        format!(
            "id = \"{id}\"\nname = \"{id}\"\nhosts = [\"app.example.org\", \"{id}.example.org\"]\n\
             upstreams = [{upstreams}]\n"
        )
    };
    write(
        dir.path(),
        "a.toml",
        &shared("a", "\"http://10.0.0.1\", \"http://10.0.0.2:80\""),
    );
    write(
        dir.path(),
        "b.toml",
        &shared("b", "\"HTTP://10.0.0.2/\", \"http://10.0.0.1:80\""),
    );
    let set = PolicySet::load(dir.path()).unwrap();
    let ids: Vec<&str> = set
        .organisations_for_host("App.Example.org:443")
        .iter()
        .map(|org| org.id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    // Only digits make a port: anything else after the colon names no organisation.
    for trick in [
        "app.example.org:@evil.example",
        "app.example.org:x",
        "[app.example.org]x",
    ] {
        assert!(set.organisations_for_host(trick).is_empty(), "{trick}");
    }
    assert_eq!(set.organisations_for_host("app.example.org.:8443").len(), 2);

    write(dir.path(), "c.toml", &shared("c", "\"https://10.0.0.1\""));
    let a = dir.path().join("a.toml").display().to_string();
    let c = dir.path().join("c.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [format!(
            "{c}:3: hosts[0]: host \"app.example.org\" is also served by organisation \"a\" \
             ({a}) with different upstreams; organisations may share a host only when their \
             upstreams are the same"
        )]
    );
}

#[test]
fn reports_a_missing_allow_list_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}[access]\nallow_ips_files = [\"gone.allowlist\"]\n"),
    );
    let errors = errors_of(dir.path());
    let prefix = format!(
        "{}:6: access.allow_ips_files[0]: cannot read {}: ",
        dir.path().join("zuid.toml").display(),
        dir.path().join("gone.allowlist").display()
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(&prefix), "{errors:?}");
}

#[test]
fn reports_bad_durations() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zuid.toml",
        &format!(
            "{MINIMAL}[mfa]\ntrust_device_for = \"7\"\nsession_lifetime = \"-1h\"\n\
             group_idle_timeout = \"99999999999999999999d\"\n"
        ),
    );
    let file = dir.path().join("zuid.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [
            format!(
                "{file}:6: mfa.trust_device_for: \"7\" is not a duration: missing unit (use ms, \
                 s, m, h or d)"
            ),
            format!(
                "{file}:7: mfa.session_lifetime: \"-1h\" is not a duration: missing number \
                 before the unit"
            ),
            format!(
                "{file}:8: mfa.group_idle_timeout: \"99999999999999999999d\" is not a \
                 duration: too large"
            ),
        ]
    );
}

#[test]
fn credential_lifetimes_end_where_revocations_are_still_kept() {
    // A revocation is kept 398 days; a credential living longer would be admitted again after.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zuid.toml",
        &format!(
            "{MINIMAL}[mfa]\ntrust_device_for = \"730d\"\nsession_lifetime = \"9553h\"\n\
             group_idle_timeout = \"399d\"\n"
        ),
    );
    let file = dir.path().join("zuid.toml").display().to_string();
    let too_long = |line: u32, key: &str, text: &str| {
        format!(
            "{file}:{line}: mfa.{key}: \"{text}\" is longer than 398 days, the longest a \
             credential may live"
        )
    };
    assert_eq!(
        errors_of(dir.path()),
        [
            too_long(6, "trust_device_for", "730d"),
            too_long(7, "session_lifetime", "9553h"),
            too_long(8, "group_idle_timeout", "399d"),
        ]
    );

    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}[mfa]\ntrust_device_for = \"398d\"\ngroup_idle_timeout = \"9552h\"\n"),
    );
    let set = PolicySet::load(dir.path()).unwrap();
    let mfa = &set.organisations().next().unwrap().mfa;
    assert_eq!(mfa.trust_device_for, MAX_CREDENTIAL_LIFETIME);
    assert_eq!(mfa.group_idle_timeout, MAX_CREDENTIAL_LIFETIME);
}

#[test]
fn exempt_roles_match_accounts_roles_in_any_case() {
    // Accounts' roles are stored in lower case; a policy written "Ouder" must still exempt them.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}[mfa]\nexempt_roles = [\"Ouder\", \" GAST \"]\n"),
    );
    let set = PolicySet::load(dir.path()).unwrap();
    let mfa = &set.organisations().next().unwrap().mfa;
    assert_eq!(mfa.exempt_roles, ["ouder", "gast"]);
}

#[test]
fn checks_sso_entries() {
    let dir = tempfile::tempdir().unwrap();
    let sso = r#"
[[sso]]
id = "m"
kind = "microsoft"
client_id = "c"
[[sso]]
id = "o"
kind = "oidc"
issuer = "http://idp.example.org"
tenant = "contoso.onmicrosoft.com"
client_id = ""
client_secret_env = "1BAD"
[[sso]]
id = "local"
kind = "oidc"
issuer = "http://127.0.0.1:5556/dex"
client_id = "c"
client_secret_env = "DEX_SECRET"
allowed_email_domains = ["Example.org", "not a domain"]
[[sso]]
id = "Bad Id"
kind = "facebook"
client_id = "c"
[[sso]]
id = "g"
kind = "google"
client_id = "c"
mfa = "provider"
require_provider_mfa = true
create_accounts = true
"#;
    write(dir.path(), "zuid.toml", &format!("{MINIMAL}{sso}"));
    let file = dir.path().join("zuid.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [
            format!("{file}:6: sso[0].tenant: required for kind = \"microsoft\""),
            format!(
                "{file}:13: sso[1].issuer: \"http://idp.example.org\" must be an https:// URL \
                 (http:// is allowed only for loopback hosts)"
            ),
            format!("{file}:14: sso[1].tenant: only used with kind = \"microsoft\""),
            format!("{file}:15: sso[1].client_id: must not be empty"),
            format!(
                "{file}:16: sso[1].client_secret_env: \"1BAD\" is not an environment variable name"
            ),
            format!(
                "{file}:23: sso[2].allowed_email_domains[1]: \"not a domain\" is not a domain name"
            ),
            format!(
                "{file}:25: sso[3].id: \"Bad Id\" is not a valid id (lowercase letters, digits, \
                 '-' and '_', starting with a letter or digit, at most 64 characters)"
            ),
            format!(
                "{file}:26: sso[3].kind: \"facebook\" is not one of \"microsoft\", \"google\", \
                 \"oidc\""
            ),
            format!(
                "{file}:28: sso[4].create_accounts: needs allowed_email_domains: without it \
                 everyone the provider signs in (any Google Workspace, anyone who can register \
                 there) would get an account here"
            ),
            format!(
                "{file}:28: sso[4].require_provider_mfa: Google does not tell which factors were \
                 used (no `amr` claim), so this could never be met; use mfa = \"certgate\" to have \
                 certgate ask for a code"
            ),
        ]
    );
}

#[test]
fn accepts_every_sso_kind() {
    let dir = tempfile::tempdir().unwrap();
    let sso = r#"
[[sso]]
id = "google"
kind = "google"
client_id = "g"
client_secret_env = "GOOGLE_SECRET"
mfa = "certgate"
[[sso]]
id = "ms"
kind = "microsoft"
tenant = "0F2A6C1E-1234-4A5B-9C8D-00112233AABB"
client_id = "m"
[[sso]]
id = "dex"
kind = "oidc"
label = "Dex"
issuer = "https://dex.example.org/dex"
client_id = "d"
"#;
    write(dir.path(), "zuid.toml", &format!("{MINIMAL}{sso}"));
    let set = PolicySet::load(dir.path()).unwrap();
    let sso = &set.organisation("zuid").unwrap().sso;
    assert_eq!(
        sso[0].kind,
        SsoKind::Google {
            issuer: "https://accounts.google.com".into()
        }
    );
    assert_eq!(sso[0].kind.issuer(), "https://accounts.google.com");
    assert_eq!(sso[0].label, "Google");
    assert_eq!(
        sso[0].client_secret,
        Some(ClientSecret::Env("GOOGLE_SECRET".into()))
    );
    assert_eq!(
        sso[1].kind,
        SsoKind::Microsoft {
            tenant: "0f2a6c1e-1234-4a5b-9c8d-00112233aabb".into(),
            authority: "https://login.microsoftonline.com".into(),
        }
    );
    assert_eq!(
        sso[1].kind.issuer(),
        "https://login.microsoftonline.com/0f2a6c1e-1234-4a5b-9c8d-00112233aabb/v2.0",
        "the tenant's own issuer"
    );
    assert_eq!(sso[1].mfa, SsoMfa::Certgate);
    assert_eq!(
        sso[2].kind,
        SsoKind::Oidc {
            issuer: "https://dex.example.org/dex".into()
        }
    );
    assert_eq!(sso[2].label, "Dex");
    assert_eq!(
        sso[2].kind.issuer(),
        "https://dex.example.org/dex",
        "as written"
    );
}

#[test]
fn microsoft_national_clouds_and_stand_ins_keep_the_tenant_issuer_shape() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = "0f2a6c1e-1234-4a5b-9c8d-00112233aabb";
    let sso = format!(
        r#"
[[sso]]
id = "gov"
kind = "microsoft"
tenant = "{tenant}"
authority = "https://login.microsoftonline.us"
client_id = "m"
[[sso]]
id = "china"
kind = "microsoft"
tenant = "{tenant}"
authority = "HTTPS://Login.Partner.MicrosoftOnline.cn/"
client_id = "m"
[[sso]]
id = "stand-in-ms"
kind = "microsoft"
tenant = "{tenant}"
authority = "http://127.0.0.1:5556"
client_id = "m"
[[sso]]
id = "stand-in-google"
kind = "google"
issuer = "http://127.0.0.1:5557"
client_id = "g"
"#
    );
    write(dir.path(), "zuid.toml", &format!("{MINIMAL}{sso}"));
    let set = PolicySet::load(dir.path()).unwrap();
    let issuers: Vec<(String, &str)> = set
        .organisation("zuid")
        .unwrap()
        .sso
        .iter()
        .map(|p| (p.kind.issuer(), p.label.as_str()))
        .collect();
    assert_eq!(
        issuers,
        [
            (
                format!("https://login.microsoftonline.us/{tenant}/v2.0"),
                "Microsoft"
            ),
            (
                format!("https://login.partner.microsoftonline.cn/{tenant}/v2.0"),
                "Microsoft"
            ),
            (format!("http://127.0.0.1:5556/{tenant}/v2.0"), "Microsoft"),
            ("http://127.0.0.1:5557".to_owned(), "Google"),
        ]
    );
}

#[test]
fn checks_where_microsoft_and_google_live() {
    let dir = tempfile::tempdir().unwrap();
    let sso = r#"
[[sso]]
id = "a"
kind = "microsoft"
tenant = "0f2a6c1e-1234-4a5b-9c8d-00112233aabb"
authority = "http://login.microsoftonline.us"
client_id = "m"
[[sso]]
id = "b"
kind = "microsoft"
tenant = "0f2a6c1e-1234-4a5b-9c8d-00112233aabb"
authority = "https://login.microsoftonline.com/common/v2.0"
client_id = "m"
[[sso]]
id = "c"
kind = "microsoft"
tenant = "common"
authority = "login.microsoftonline.us"
issuer = "https://login.microsoftonline.com/0f2a6c1e-1234-4a5b-9c8d-00112233aabb/v2.0"
client_id = "m"
[[sso]]
id = "d"
kind = "google"
issuer = "http://accounts.example.org"
authority = "https://login.microsoftonline.com"
client_id = "g"
[[sso]]
id = "e"
kind = "google"
issuer = "https://accounts.example.org/?tenant=1"
client_id = "g"
[[sso]]
id = "f"
kind = "oidc"
issuer = "https://idp.example.org"
authority = "https://login.microsoftonline.com"
client_id = "o"
"#;
    write(dir.path(), "zuid.toml", &format!("{MINIMAL}{sso}"));
    let file = dir.path().join("zuid.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [
            format!(
                "{file}:10: sso[0].authority: \"http://login.microsoftonline.us\" must be an \
                 https:// URL (http:// is allowed only for loopback hosts)"
            ),
            format!(
                "{file}:16: sso[1].authority: \"https://login.microsoftonline.com/common/v2.0\" \
                 must be scheme, host and port only, such as \"https://login.microsoftonline.com\" \
                 (the tenant's issuer <authority>/<tenant>/v2.0 is made from it)"
            ),
            format!(
                "{file}:21: sso[2].tenant: tenant \"common\" admits accounts of any Microsoft \
                 tenant; name the organisation's own tenant (a GUID or a domain)"
            ),
            format!(
                "{file}:22: sso[2].authority: \"login.microsoftonline.us\" is not an http:// or \
                 https:// URL"
            ),
            format!(
                "{file}:23: sso[2].issuer: not used with kind = \"microsoft\": its issuer is \
                 <authority>/<tenant>/v2.0 (set authority for a national cloud)"
            ),
            format!(
                "{file}:28: sso[3].issuer: \"http://accounts.example.org\" must be an https:// \
                 URL (http:// is allowed only for loopback hosts)"
            ),
            format!("{file}:29: sso[3].authority: only used with kind = \"microsoft\""),
            format!(
                "{file}:34: sso[4].issuer: \"https://accounts.example.org/?tenant=1\" must not \
                 have a query or fragment"
            ),
            format!("{file}:40: sso[5].authority: only used with kind = \"microsoft\""),
        ]
    );
}

#[test]
fn looks_hosts_up_case_insensitively_without_port() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "zuid.toml", MINIMAL);
    write(
        dir.path(),
        "local.toml",
        "id = \"local\"\nname = \"L\"\nhosts = [\"[::1]\", \"127.0.0.1\"]\nupstreams = [\"http://[::1]:9000\"]\n",
    );
    let set = PolicySet::load(dir.path()).unwrap();
    let id_for = |host: &str| {
        set.organisations_for_host(host)
            .first()
            .map(|o| o.id.clone())
    };
    assert_eq!(id_for("zuid.example.org").as_deref(), Some("zuid"));
    assert_eq!(id_for("ZUID.Example.ORG").as_deref(), Some("zuid"));
    assert_eq!(id_for("zuid.example.org:8443").as_deref(), Some("zuid"));
    assert_eq!(id_for("zuid.example.org.").as_deref(), Some("zuid"));
    assert_eq!(id_for("[::1]:8443").as_deref(), Some("local"));
    assert_eq!(id_for("[::1]").as_deref(), Some("local"));
    assert_eq!(id_for("::1").as_deref(), Some("local"));
    assert_eq!(id_for("127.0.0.1:8443").as_deref(), Some("local"));
    assert_eq!(id_for("noord.example.org"), None);
    assert_eq!(id_for(""), None);
    assert_eq!(id_for("[::1"), None);
    assert_eq!(
        set.organisation("local").unwrap().upstreams[0].address(),
        "[::1]:9000"
    );
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "noord.allowlist", "192.0.2.1\n");
    assert_eq!(
        errors_of(dir.path()),
        [format!(
            "{}: no organisation policies found (expected *.toml files)",
            dir.path().display()
        )]
    );
    let missing = dir.path().join("nowhere");
    let errors = errors_of(&missing);
    assert!(errors[0].starts_with(&format!(
        "{}: cannot read the policies directory: ",
        missing.display()
    )));
}

#[test]
fn collects_errors_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let named = |id: &str| MINIMAL.replace("zuid", id);
    write(
        dir.path(),
        "a.toml",
        &named("a").replace("https://a-app.internal", "https://a b"),
    );
    write(
        dir.path(),
        "b.toml",
        &(named("b") + "colour = \"#12345\"\n"),
    );
    let errors = errors_of(dir.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("a.toml:4: upstreams[0]"), "{errors:?}");
    assert!(errors[1].contains("b.toml:5: colour"), "{errors:?}");
}

#[test]
fn upstream_urls() {
    let up = Upstream::parse("https://app.internal:8443").unwrap();
    assert_eq!(
        (up.tls, up.host.as_str(), up.port),
        (true, "app.internal", 8443)
    );
    assert_eq!(
        Upstream::parse("http://a").unwrap(),
        Upstream::parse("HTTP://A:80/").unwrap()
    );
    assert_ne!(
        Upstream::parse("http://a").unwrap(),
        Upstream::parse("https://a:80").unwrap()
    );
    for bad in [
        "http://a/app",
        "http://a?x",
        "http://a#x",
        "http://user:pw@a",
        "tcp://a",
        "a:80",
        "http://a:99999",
    ] {
        assert!(Upstream::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_time_zone_defaults_to_amsterdam_and_an_unknown_one_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "zuid.toml", MINIMAL);
    let set = PolicySet::load(dir.path()).unwrap();
    assert_eq!(
        set.organisation("zuid").unwrap().time_zone.name(),
        "Europe/Amsterdam"
    );

    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}time_zone = \"America/Curacao\"\n"),
    );
    let set = PolicySet::load(dir.path()).unwrap();
    assert_eq!(
        set.organisation("zuid").unwrap().time_zone.name(),
        "America/Curacao"
    );

    write(
        dir.path(),
        "zuid.toml",
        &format!("{MINIMAL}time_zone = \"Europe/Amsterdan\"\n"),
    );
    let file = dir.path().join("zuid.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path()),
        [format!(
            "{file}:5: time_zone: \"Europe/Amsterdan\" is not a time zone (an IANA name such as \"Europe/Amsterdam\")"
        )]
    );
}

/// The brand colour carries white text (buttons, the header) and is the colour of links on white:
/// a light one makes them unreadable, so `check` refuses it with where it is written.
#[test]
fn a_brand_colour_too_light_to_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (colour, readable) in [
        ("#ffd23f", false),
        ("#ffffff", false),
        ("#7fb3d5", false),
        ("#0b6e4f", true),
        ("#000000", true),
        // Just above and just below 4.5:1 against white.
        ("#767676", true),
        ("#777777", false),
    ] {
        write(
            dir.path(),
            "zuid.toml",
            &format!("{MINIMAL}colour = \"{colour}\"\n"),
        );
        let line = MINIMAL.lines().count() + 1;
        match PolicySet::load(dir.path()) {
            Ok(set) => {
                assert!(readable, "{colour} was accepted");
                let org = set.organisations().next().unwrap();
                assert_eq!(org.colour.as_deref(), Some(colour));
            }
            Err(errors) => {
                assert!(!readable, "{colour}: {errors}");
                let errors = errors.to_string();
                assert!(
                    errors.contains(&format!(
                        "zuid.toml:{line}: colour: \"{colour}\" is too light"
                    )) && errors.contains(":1, below the 4.5:1"),
                    "{errors}"
                );
            }
        }
    }
}

#[test]
fn passkeys_are_a_method_by_name_and_their_settings_need_them() {
    let dir = tempfile::tempdir().unwrap();
    let with = format!(
        "{MINIMAL}\n[mfa]\nmethods = [\"passkey\", \"authenticator\"]\npasswordless = true\ngroup_passkeys = true\n"
    );
    write(dir.path(), "zuid.toml", &with);
    let set = PolicySet::load(dir.path()).unwrap();
    let mfa = &set.organisation("zuid").unwrap().mfa;
    assert_eq!(mfa.methods, [MfaMethod::Passkey, MfaMethod::Authenticator]);
    assert!(mfa.offers_passkeys() && mfa.passwordless && mfa.group_passkeys);
    // Not offered unless listed; off by default.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "zuid.toml", MINIMAL);
    let set = PolicySet::load(dir.path()).unwrap();
    let mfa = &set.organisation("zuid").unwrap().mfa;
    assert!(!mfa.offers_passkeys() && !mfa.passwordless && !mfa.group_passkeys);
    // A passkey setting without passkeys is an error, each with its line.
    let dir = tempfile::tempdir().unwrap();
    let without = format!(
        "{MINIMAL}\n[mfa]\nmethods = [\"email\"]\npasswordless = true\ngroup_passkeys = true\n"
    );
    write(dir.path(), "zuid.toml", &without);
    let errors = errors_of(dir.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("mfa.passwordless")
            && errors[0].contains("needs \"passkey\" in methods"),
        "{errors:?}"
    );
    assert!(errors[1].contains("mfa.group_passkeys"), "{errors:?}");
}
