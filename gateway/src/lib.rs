//! The certgate gateway: a Pingora reverse proxy that admits requests from allow-listed
//! networks and devices holding a certgate credential and sends everyone else to the portal.
//! `GatewayServer` wires the configuration to the services; the control plane that changes its
//! live state is `certgate-control`.

pub mod acme;
pub mod admin_allowlist;
pub mod admission;
pub mod client_ip;
pub mod connection;
pub mod drain;
pub mod headers;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod proxy_protocol;
pub mod request_id;
pub mod revocation;
pub mod seen;
pub mod server;
pub mod tls;
pub mod upgraded;
pub mod upstreams;

pub use server::{GatewayServer, ServeError, Shared};
