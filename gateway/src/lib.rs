//! The certgate gateway: a Pingora reverse proxy that admits requests from allow-listed
//! networks and devices holding a certgate credential, sends everyone else to the portal, and
//! serves the admin control plane. `GatewayServer` wires the configuration to the services.

pub mod admin;
pub mod admin_allowlist;
pub mod admission;
pub mod client_ip;
pub mod connection;
pub mod drain;
pub mod feed;
pub mod headers;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod proxy_protocol;
pub mod revocation;
pub mod seen;
pub mod server;
pub mod tls;
pub mod upgraded;
pub mod upstreams;
pub mod users;

pub use server::{GatewayServer, ServeError};
