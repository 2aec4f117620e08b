//! Organisation policy files turned into one validated [`PolicySet`], the IP allow lists inside
//! it, the hot-reload handle the gateway reads per request, and the model of `certgate.toml`.
//! Every file problem is reported at once, each with its file, line and key.

mod allowlist;
pub mod config;
mod duration;
mod endpoint;
mod error;
mod policy;
mod public_path;
mod reload;
mod time_zone;
mod walk;
mod watch;

pub use allowlist::{
    parse_admin_allow_list, parse_ip_or_cidr, AdminAllowEntry, AdminAllowListLimits, AllowEntry,
    EntrySource, IpAllowList, ADMIN_ALLOW_LIST_MAX_ENTRIES,
};
pub use duration::{parse_duration, DurationError, MAX_CREDENTIAL_LIFETIME};
pub use error::{PolicyError, PolicyErrors, ValueError};
pub use policy::{
    Access, ClientSecret, HealthCheck, Language, MfaMethod, MfaPolicy, MfaRequirement,
    Organisation, PolicySet, SsoKind, SsoMfa, SsoProvider, Upstream,
};
pub use public_path::{match_public_path, PublicPath};
pub use reload::PolicyHandle;
pub use time_zone::{TimeZone, TimeZoneError};
pub use watch::FileWatch;
