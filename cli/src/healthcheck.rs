//! `certgate healthcheck`: asks the running instance's `/readyz` on its admin listener, for a
//! container's health check or a load balancer's script. Exit status 0 while it is ready
//! (degraded included: admission still works), 1 otherwise, with what it answered.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use certgate_policies::config::Config;

/// The longest the whole question may take: a health check must answer, not hang.
const TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(config: &Path) -> Result<(), String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let Some(listen) = config.server.admin_listen else {
        return Err("server.admin_listen is off, so there is no /readyz to ask".into());
    };
    let addr = reachable(listen);
    let answer = ask(addr).map_err(|e| format!("not ready: {addr}: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => {
            print!("{body}");
            Ok(())
        }
        Some((head, body)) => Err(format!(
            "not ready: {} {}",
            head.lines().next().unwrap_or_default(),
            body.trim()
        )),
        None => Err(format!("not ready: no answer from {listen}")),
    }
}

/// A wildcard listening address is asked on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn ask(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    // An answer is a few hundred bytes; more is not certgate.
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_wildcard_listener_is_asked_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9100".parse().unwrap();
        assert_eq!(reachable(v4).to_string(), "127.0.0.1:9100");
        let v6: SocketAddr = "[::]:9100".parse().unwrap();
        assert_eq!(reachable(v6).to_string(), "[::1]:9100");
        let own: SocketAddr = "10.1.2.3:9100".parse().unwrap();
        assert_eq!(reachable(own), own);
    }
}
