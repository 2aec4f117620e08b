//! The one error type of this crate: a problem in a policy, allow-list or config file, located by
//! file, line and key, and the list type that carries every problem found in one load; and why
//! one value was refused, which becomes such a problem's message once it is located.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::DurationError;
use crate::time_zone::TimeZoneError;

/// One problem in one file.
///
/// Displays as `file:line: key: message`; the line is left out when the problem has no single
/// line (a key missing from the top level, a directory without policies), the key when it is a
/// whole-file problem (syntax errors, allow-list lines).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyError {
    /// The file as it was joined from the directory or path the caller gave.
    pub file: PathBuf,
    /// 1-based line.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `access.allow_ips[2]`; empty when no key applies.
    pub key: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn file_problem(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, None, "", message)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Why one value was refused, on its own (`Upstream::parse`) or as the message of the
/// [`PolicyError`] that says where it was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("{url:?} is not an {} URL", scheme_list(.schemes))]
    NotAUrl {
        url: String,
        schemes: &'static [&'static str],
    },
    #[error("{0:?} must not contain user information")]
    UserInformation(String),
    #[error("{0:?} does not name a valid host and port")]
    NotAHostAndPort(String),
    #[error("{0:?} must be an https:// URL (http:// is allowed only for loopback hosts)")]
    NotHttps(String),
    #[error("{0:?} must not have a path, query or fragment (only scheme, host and port)")]
    UpstreamWithPath(String),
    #[error("{0:?} must not have a path")]
    SmtpUrlWithPath(String),
    #[error("{0:?} is not a postgres:// or sqlite: URL")]
    NotADatabaseUrl(String),
    #[error("{0:?} is not a redis://, rediss://, redis+sentinel:// or unix:// URL")]
    NotAStoreUrl(String),
    #[error("{0:?} is not a host name")]
    NotAHostName(String),
    #[error("{0:?} is not a domain name")]
    NotADomainName(String),
    #[error("{0:?} is not a host name or *.wildcard")]
    NotACertificateHost(String),
    #[error("{0:?} is not a socket address")]
    NotASocketAddress(String),
    #[error("{0:?} must start with \"/\"")]
    PathNotAbsolute(String),
    #[error("{0:?} would make every path public")]
    WholeSitePublic(String),
    #[error("{path:?} must not contain {character:?}")]
    PathCharacter { path: String, character: char },
    #[error("{0:?} must not contain empty, \".\" or \"..\" segments")]
    PathSegment(String),
    #[error("{text:?} is not a duration: {source}")]
    NotADuration { text: String, source: DurationError },
    #[error("{0:?} must be longer than zero")]
    ZeroDuration(String),
    /// `why`, when not empty, follows the bound in the message.
    #[error("{text:?} is longer than {}{why}", duration_bound(.max))]
    TooLong {
        text: String,
        max: Duration,
        why: &'static str,
    },
    #[error("{0:?} is not a rate limit (<count>/<duration>, e.g. \"5/15m\")")]
    NotARateLimit(String),
    #[error("{0:?} must allow at least one event")]
    NoEvents(String),
    #[error("{text:?} is not one of {}", quoted_list(.choices))]
    NotOneOf {
        text: String,
        choices: Vec<&'static str>,
    },
    #[error(
        "{0:?} is not a valid id (lowercase letters, digits, '-' and '_', starting with \
         a letter or digit, at most 64 characters)"
    )]
    NotAnId(String),
    #[error("{0:?} is not a colour (#rrggbb)")]
    NotAColour(String),
    #[error(
        "{colour:?} is too light: white text on it (buttons, the header) and links in it \
         have a contrast of {contrast:.1}:1, below the {minimum}:1 people need to \
         read them; choose a darker shade"
    )]
    ColourTooLight {
        colour: String,
        contrast: f64,
        minimum: f64,
    },
    #[error(
        "tenant {0:?} admits accounts of any Microsoft tenant; name the organisation's \
         own tenant (a GUID or a domain)"
    )]
    MultiTenant(String),
    #[error(
        "tenant {0:?} is Microsoft's tenant of personal accounts; name the organisation's own"
    )]
    PersonalAccountsTenant(String),
    #[error(
        "tenant {0:?} is not a tenant id: use the GUID shown as \"Tenant ID\" in Entra ID \
         (the ID tokens' issuer names it)"
    )]
    NotATenantId(String),
    #[error(
        "{0:?} must be scheme, host and port only, such as \"{microsoft}\" (the tenant's \
         issuer <authority>/<tenant>/v2.0 is made from it)",
        microsoft = crate::SsoKind::MICROSOFT_AUTHORITY
    )]
    AuthorityWithPath(String),
    #[error("{0:?} must not have a query or fragment")]
    IssuerWithQuery(String),
    #[error("{0:?} is not an environment variable name")]
    NotAnEnvName(String),
    #[error(transparent)]
    TimeZone(#[from] TimeZoneError),
}

/// `http:// or https://`.
fn scheme_list(schemes: &[&str]) -> String {
    let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    names.join(" or ")
}

/// `"nl", "en"`.
fn quoted_list(choices: &[&str]) -> String {
    let names: Vec<String> = choices.iter().map(|name| format!("{name:?}")).collect();
    names.join(", ")
}

/// `398 days`, or `5 minutes` for a bound that is no whole number of days.
fn duration_bound(max: &Duration) -> String {
    let secs = max.as_secs();
    if secs.is_multiple_of(86_400) {
        format!("{} days", secs / 86_400)
    } else {
        format!("{} minutes", secs / 60)
    }
}

/// Every problem found in one load, in file order and then line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by file, then line, so the output reads top-down whatever order checks ran in.
    pub(crate) fn sorted(mut errors: Vec<PolicyError>) -> Self {
        errors.sort_by(|a, b| {
            (a.file.as_path(), a.line.unwrap_or(0)).cmp(&(b.file.as_path(), b.line.unwrap_or(0)))
        });
        Self(errors)
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl From<PolicyError> for PolicyErrors {
    fn from(error: PolicyError) -> Self {
        Self(vec![error])
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operators read these in `certgate check` and the journal: their wording is kept.
    #[test]
    fn value_errors_read_as_before() {
        let cases = [
            (
                ValueError::NotAUrl {
                    url: "x".into(),
                    schemes: &["smtp", "smtps"],
                },
                r#""x" is not an smtp:// or smtps:// URL"#,
            ),
            (
                ValueError::NotAHostAndPort("http://ho st".into()),
                r#""http://ho st" does not name a valid host and port"#,
            ),
            (
                ValueError::WholeSitePublic("/".into()),
                r#""/" would make every path public"#,
            ),
            (
                ValueError::PathCharacter {
                    path: "/a;b".into(),
                    character: ';',
                },
                r#""/a;b" must not contain ';'"#,
            ),
            (
                ValueError::PathSegment("/a//b".into()),
                r#""/a//b" must not contain empty, "." or ".." segments"#,
            ),
            (
                ValueError::TooLong {
                    text: "10m".into(),
                    max: Duration::from_secs(300),
                    why: "",
                },
                r#""10m" is longer than 5 minutes"#,
            ),
            (
                ValueError::TooLong {
                    text: "400d".into(),
                    max: Duration::from_secs(398 * 86_400),
                    why: ", the longest a credential may live",
                },
                r#""400d" is longer than 398 days, the longest a credential may live"#,
            ),
            (
                ValueError::NotOneOf {
                    text: "fr".into(),
                    choices: vec!["nl", "en"],
                },
                r#""fr" is not one of "nl", "en""#,
            ),
            (
                ValueError::PersonalAccountsTenant("9188040d-6c67-4c5b-b112-36a304b66dad".into()),
                "tenant \"9188040d-6c67-4c5b-b112-36a304b66dad\" is Microsoft's tenant of \
                 personal accounts; name the organisation's own",
            ),
            (
                ValueError::NotATenantId("noord.example".into()),
                "tenant \"noord.example\" is not a tenant id: use the GUID shown as \"Tenant ID\" \
                 in Entra ID (the ID tokens' issuer names it)",
            ),
            (
                ValueError::TimeZone(TimeZoneError::Unknown("Mars/Olympus".into())),
                "\"Mars/Olympus\" is not a time zone (an IANA name such as \"Europe/Amsterdam\")",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
