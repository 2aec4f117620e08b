//! The PROXY protocol (v1 text and v2 binary) on the HTTPS listener, for load balancers that
//! pass TCP through. A header is read only from a trusted proxy, which must send one; the
//! address it names becomes the connection's peer. Other clients connect as usual.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncReadExt;

use crate::client_ip::TrustedProxies;

/// The v2 signature; a v1 header starts with `PROXY `.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// A v2 header's address block is small; refuse anything that claims more.
const V2_MAX_PAYLOAD: usize = 512;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ProxyProtocol {
    trusted: TrustedProxies,
}

impl ProxyProtocol {
    pub fn new(trusted: TrustedProxies) -> Self {
        ProxyProtocol { trusted }
    }
}

fn refused(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, why)
}

/// Reads exactly one PROXY header from `stream`, leaving the TLS bytes after it unread.
async fn read_header(stream: &mut L4Stream) -> Result<Vec<u8>> {
    let mut header = vec![0u8; 16];
    stream
        .read_exact(&mut header[..6])
        .await
        .map_err(|_| refused("connection closed before the PROXY header"))?;
    if &header[..6] == b"PROXY " {
        header.truncate(6);
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(refused("PROXY v1 header too long"));
            }
            let byte = stream
                .read_u8()
                .await
                .map_err(|_| refused("truncated PROXY v1 header"))?;
            header.push(byte);
        }
        return Ok(header);
    }
    stream
        .read_exact(&mut header[6..16])
        .await
        .map_err(|_| refused("truncated PROXY v2 header"))?;
    if header[..12] != V2_SIGNATURE {
        return Err(refused("a trusted proxy sent no PROXY header"));
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if length > V2_MAX_PAYLOAD {
        return Err(refused("PROXY v2 header too long"));
    }
    header.resize(16 + length, 0);
    stream
        .read_exact(&mut header[16..])
        .await
        .map_err(|_| refused("truncated PROXY v2 header"))?;
    Ok(header)
}

/// The client address a PROXY header names; `None` for LOCAL (health checks) and UNKNOWN.
pub fn source_address(header: &[u8]) -> Result<Option<SocketAddr>> {
    if header.starts_with(b"PROXY ") {
        let parsed =
            ppp::v1::Header::try_from(header).map_err(|_| refused("malformed PROXY v1 header"))?;
        return Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    let parsed =
        ppp::v2::Header::try_from(header).map_err(|_| refused("malformed PROXY v2 header"))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified => None,
    })
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let Some(peer) = peer else {
            return Ok(());
        };
        if !self.trusted.contains(crate::client_ip::canonical(peer)) {
            return Ok(());
        }
        let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(stream))
            .await
            .map_err(|_| refused("no PROXY header within 5 s"))??;
        if let Some(source) = source_address(&header)? {
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest.peer_addr.set(Some(PeerAddr::Inet(source)));
            stream.set_socket_digest(digest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_v1_and_v2_source_addresses() {
        let v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 51234 443\r\n";
        assert_eq!(
            source_address(v1).unwrap(),
            Some("198.51.100.7:51234".parse().unwrap())
        );
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
        assert_eq!(
            source_address(v1_6).unwrap(),
            Some("[2001:db8::7]:51234".parse().unwrap())
        );
        assert_eq!(source_address(b"PROXY UNKNOWN\r\n").unwrap(), None);

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        v2.extend([198, 51, 100, 7, 192, 0, 2, 1]);
        v2.extend(51234u16.to_be_bytes());
        v2.extend(443u16.to_be_bytes());
        assert_eq!(
            source_address(&v2).unwrap(),
            Some("198.51.100.7:51234".parse().unwrap())
        );

        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(source_address(&local).unwrap(), None);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(source_address(b"PROXY TCP4 nonsense\r\n").is_err());
        assert!(source_address(b"GET / HTTP/1.1\r\n").is_err());
    }
}
