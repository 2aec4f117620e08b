//! What one client can make the gateway hold before there is a request to decide. An HTTP/1
//! request head must arrive within a deadline from its first byte and fit a size, else the
//! client gets 408 or 431 and the connection closes; one client address holds only so many
//! connections at once. Pingora reads request heads itself with only a per-read timeout and a
//! 1 MiB ceiling, so these limits live in the stream it reads from and in a wrapper around the
//! application that is handed each new connection.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::client_ip::TrustedProxies;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::upgraded::Cut;

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 46\r\n\r\nThe request did not arrive in time. Try again.\n";
const TOO_LARGE_RESPONSE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 63\r\n\r\nThe request's headers are too large. Clear this site's cookies.\n";
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 52\r\n\r\nToo many connections from your address. Try again.\n";

/// The limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub head_timeout: Duration,
    pub max_head: usize,
    pub per_client: u32,
}

/// Why a connection was closed by these limits: the `reason` of
/// `certgate_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ClientLimit,
    HeadTimeout,
    HeadTooLarge,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::ClientLimit,
        Refusal::HeadTimeout,
        Refusal::HeadTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ClientLimit => "client_limit",
            Refusal::HeadTimeout => "head_timeout",
            Refusal::HeadTooLarge => "head_too_large",
        }
    }

    fn response(self) -> &'static [u8] {
        match self {
            Refusal::ClientLimit => BUSY_RESPONSE,
            Refusal::HeadTimeout => TIMEOUT_RESPONSE,
            Refusal::HeadTooLarge => TOO_LARGE_RESPONSE,
        }
    }
}

/// The application wrapped so each new connection is counted against its client's address and
/// an HTTP/1 connection's stream enforces the head limits.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    limits: ConnectionLimits,
    open: Arc<OpenConnections>,
    /// Peers exempt from the per-client cap: balancers that name clients per request.
    exempt: TrustedProxies,
    metrics: Arc<Metrics>,
    /// Once draining, new connections are closed at once.
    drain: Arc<Drain>,
}

impl<A> GuardedApp<A> {
    pub fn new(
        inner: A,
        limits: ConnectionLimits,
        exempt: TrustedProxies,
        metrics: Arc<Metrics>,
        drain: Arc<Drain>,
    ) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            limits,
            open: Arc::new(OpenConnections::default()),
            exempt,
            metrics,
            drain,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.drain.is_draining() {
            // Shutting down: the balancer has been told (`/readyz`), the client retries
            // elsewhere.
            Shutdown::shutdown(stream.as_mut()).await;
            return None;
        }
        // Behind PROXY protocol the socket digest already names the client.
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match peer.and_then(|peer| counted_client(&self.exempt, peer)) {
            Some(ip) => match self.open.take(ip, self.limits.per_client) {
                Some(slot) => Some(slot),
                None => {
                    self.refused(Refusal::ClientLimit);
                    if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                        let _ = stream.write_all(Refusal::ClientLimit.response()).await;
                        let _ = stream.flush().await;
                    }
                    Shutdown::shutdown(stream.as_mut()).await;
                    return None;
                }
            },
            None => None,
        };
        // HTTP/2 frames its own headers (Pingora bounds them); the guard reads HTTP/1 heads.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let guarded = Box::new(GuardedStream::new(
            stream,
            self.limits,
            Arc::clone(&self.metrics),
        ));
        // HTTP/1 runs in a task of its own, so the one Pingora spawned for the handshake (sized
        // for it, about 9 KiB) ends; and its keep-alive loop is ours, so an idle connection waits
        // for its next request in a small future instead of Pingora's whole proxy flow (about
        // 23 KiB). 45 -> 15 KiB per idle connection (benches/README.md).
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = _slot;
            this.serve_http1(guarded, shutdown).await;
        });
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// How long an idle keep-alive connection waits for its next request: Pingora's own default,
/// which its HTTP/1 loop (replaced here) uses.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

impl<A: HttpServerApp + Send + Sync + 'static> GuardedApp<A> {
    /// Pingora's HTTP/1 keep-alive loop (`HttpServerApp::process_new`), except that between
    /// requests the connection waits here for the next request's first byte, which the stream
    /// keeps for Pingora's reader. certgate never enables HTTP/1 pipelining, so no request is
    /// left buffered in the settings carried from one request to the next.
    async fn serve_http1(
        self: Arc<Self>,
        guarded: Box<GuardedStream>,
        mut shutdown: ShutdownWatch,
    ) {
        let mut session = ServerSession::new_http1(guarded);
        // A connection accepted while shutting down serves one request.
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(KEEPALIVE_IDLE.as_secs())
        });
        session.set_keepalive_reuses_remaining(
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        loop {
            let Some(reused) = self.inner.process_new_http(session, &shutdown).await else {
                return;
            };
            let (stream, settings) = reused.consume();
            let Ok(mut guarded) = stream.into_any().downcast::<GuardedStream>() else {
                return;
            };
            if *shutdown.borrow() || self.drain.is_draining() {
                return;
            }
            // Idle: until the next request begins, the keep-alive time is up, or shutdown.
            let next = tokio::select! {
                r = tokio::time::timeout(KEEPALIVE_IDLE, guarded.wait_for_data()) => {
                    matches!(r, Ok(Ok(true)))
                }
                _ = shutdown.changed() => false,
            };
            if !next {
                return;
            }
            session = ServerSession::new_http1(guarded);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }
}

impl<A> GuardedApp<A> {
    fn refused(&self, refusal: Refusal) {
        self.metrics
            .connections_refused
            .with_label_values(&[refusal.as_str()])
            .inc();
    }
}

/// The address a connection from `peer` counts against, or `None` for a trusted proxy (it
/// carries many clients). An IPv4-mapped address (a dual-stack listener) is the IPv4 address.
fn counted_client(exempt: &TrustedProxies, peer: IpAddr) -> Option<IpAddr> {
    let client = crate::client_ip::canonical(peer);
    (!exempt.contains(client)).then_some(client)
}

/// Open connections per client address (IPv6: per /64, which one subscriber usually has).
#[derive(Default)]
struct OpenConnections {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl OpenConnections {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<Slot> {
        let key = client_key(ip);
        let mut counts = self.counts.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: Arc::clone(self),
            key,
        })
    }
}

/// One open connection of a client; dropping it gives the place back.
struct Slot {
    open: Arc<OpenConnections>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn client_key(ip: IpAddr) -> IpAddr {
    match crate::client_ip::canonical(ip) {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
        v4 => v4,
    }
}

/// Where the guarded stream is in the request it reads.
enum Phase {
    /// Reading a request head: `bytes` so far, the deadline armed at its first byte, and the
    /// end-of-head scanner.
    Head {
        bytes: usize,
        started: bool,
        scan: HeadEnd,
    },
    /// The head is complete: body bytes, or an upgraded connection, pass untouched.
    Passing,
    /// Writing the refusal, then the stream ends.
    Refusing {
        refusal: Refusal,
        written: usize,
    },
    Closed,
}

/// Finds the empty line that ends a head (`\r\n\r\n`, or bare `\n\n` as parsers accept),
/// ignoring the empty lines a client may send before the request line.
#[derive(Debug, Clone, Copy, Default)]
struct HeadEnd {
    /// A byte other than CR or LF has been seen.
    content: bool,
    /// Bytes since the last LF were only CRs (0, 1…), or `None` inside a line.
    after_newline: Option<u8>,
}

impl HeadEnd {
    /// The offset just past the head's end within `bytes`, if it ends there.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => {
                    if self.content && self.after_newline.is_some() {
                        return Some(i + 1);
                    }
                    self.after_newline = Some(0);
                }
                b'\r' => {
                    if let Some(crs) = self.after_newline.as_mut() {
                        *crs = crs.saturating_add(1);
                    }
                }
                _ => {
                    self.content = true;
                    self.after_newline = None;
                }
            }
        }
        None
    }
}

/// A client's HTTP/1 stream that enforces the head deadline and size. The proxy calls
/// [`GuardedStream::next_request`] when a request is done, so the next bytes are a new head.
pub struct GuardedStream {
    inner: Stream,
    limits: ConnectionLimits,
    phase: Phase,
    /// One timer for the connection's life, reset at each head's first byte.
    deadline: Pin<Box<Sleep>>,
    next_request: AtomicBool,
    metrics: Arc<Metrics>,
    /// Set when a credential upgraded this connection: cut when it is revoked.
    cut: std::sync::OnceLock<Arc<Cut>>,
    /// The first byte of the next request, read while the connection idled.
    peeked: Option<u8>,
}

impl GuardedStream {
    fn new(inner: Stream, limits: ConnectionLimits, metrics: Arc<Metrics>) -> Self {
        GuardedStream {
            inner,
            limits,
            phase: Phase::Head {
                bytes: 0,
                started: false,
                scan: HeadEnd::default(),
            },
            deadline: Box::pin(tokio::time::sleep(limits.head_timeout)),
            next_request: AtomicBool::new(false),
            metrics,
            cut: std::sync::OnceLock::new(),
            peeked: None,
        }
    }

    /// Waits for the next request's first byte; false at the end of the stream.
    async fn wait_for_data(&mut self) -> io::Result<bool> {
        std::future::poll_fn(|cx| {
            if self.peeked.is_some() {
                return Poll::Ready(Ok(true));
            }
            let mut one = [0u8; 1];
            let mut buf = ReadBuf::new(&mut one);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(false));
            }
            self.peeked = Some(one[0]);
            Poll::Ready(Ok(true))
        })
        .await
    }

    /// Closes this connection once `cut` says so (an upgrade whose credential ended).
    pub fn close_on(&self, cut: Arc<Cut>) {
        let _ = self.cut.set(cut);
    }

    fn is_cut(&self) -> bool {
        self.cut.get().is_some_and(|cut| cut.is_cut())
    }

    /// The request on this connection is finished; what is read next is a new request head.
    pub fn next_request(&self) {
        self.next_request.store(true, Ordering::Relaxed);
    }

    /// The guarded stream under a session's connection, when it has one.
    pub fn of(stream: &Stream) -> Option<&GuardedStream> {
        stream.as_any().downcast_ref::<GuardedStream>()
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.metrics
            .connections_refused
            .with_label_values(&[refusal.as_str()])
            .inc();
        tracing::info!(
            reason = refusal.as_str(),
            "request head refused; connection closed"
        );
        self.phase = Phase::Refusing {
            refusal,
            written: 0,
        };
    }

    /// Writes the refusal; `Ready` once the stream has ended.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Phase::Refusing { refusal, written } = &mut self.phase {
            let response = refusal.response();
            if *written < response.len() {
                match ready!(Pin::new(&mut self.inner).poll_write(cx, &response[*written..])) {
                    Ok(0) | Err(_) => self.phase = Phase::Closed,
                    Ok(n) => *written += n,
                }
            } else {
                let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
                let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
                self.phase = Phase::Closed;
            }
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "request head refused",
        )))
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(cut) = this.cut.get() {
            if cut.is_cut() {
                return Poll::Ready(Err(credential_ended()));
            }
            cut.wake_on_cut(cx.waker());
        }
        // A load first: most reads are not the first of a request, and a swap is a write.
        if this.next_request.load(Ordering::Relaxed)
            && this.next_request.swap(false, Ordering::Relaxed)
        {
            this.phase = Phase::Head {
                bytes: 0,
                started: false,
                scan: HeadEnd::default(),
            };
        }
        match &this.phase {
            Phase::Passing => {
                if let Some(b) = this.peeked.take() {
                    buf.put_slice(&[b]);
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            Phase::Refusing { .. } | Phase::Closed => return this.poll_refusal(cx),
            Phase::Head { started, .. } => {
                if *started && this.deadline.as_mut().poll(cx).is_ready() {
                    this.refuse(Refusal::HeadTimeout);
                    return this.poll_refusal(cx);
                }
            }
        }
        let before = buf.filled().len();
        match this.peeked.take() {
            Some(b) if buf.remaining() > 0 => buf.put_slice(&[b]),
            Some(b) => this.peeked = Some(b),
            None => ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?,
        }
        let read = &buf.filled()[before..];
        let Phase::Head {
            bytes,
            started,
            scan,
        } = &mut this.phase
        else {
            return Poll::Ready(Ok(()));
        };
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !*started {
            *started = true;
            let deadline = Instant::now() + this.limits.head_timeout;
            this.deadline.as_mut().reset(deadline);
        }
        let (counted, complete) = match scan.feed(read) {
            Some(end) => (end, true),
            None => (read.len(), false),
        };
        *bytes += counted;
        if *bytes > this.limits.max_head {
            buf.set_filled(before);
            this.refuse(Refusal::HeadTooLarge);
            return this.poll_refusal(cx);
        }
        if complete {
            this.phase = Phase::Passing;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_cut() {
            return Poll::Ready(Err(credential_ended()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

fn credential_ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the credential that opened this connection was revoked or ran out",
    )
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn end_of(text: &[u8]) -> Option<usize> {
        HeadEnd::default().feed(text)
    }

    #[test]
    fn a_head_ends_at_its_empty_line() {
        assert_eq!(end_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(end_of(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(end_of(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        // Empty lines before the request line do not end anything: a slow client cannot send
        // them to get past the deadline.
        assert_eq!(end_of(b"\r\n\r\n\r\n"), None);
        assert_eq!(end_of(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
    }

    #[test]
    fn the_end_is_found_across_reads() {
        let mut scan = HeadEnd::default();
        assert_eq!(scan.feed(b"GET / HTTP/1.1\r\nHost: a\r"), None);
        assert_eq!(scan.feed(b"\n\r"), None);
        assert_eq!(scan.feed(b"\nrest"), Some(1));
    }

    #[test]
    fn trusted_proxies_are_not_counted_however_their_address_is_written() {
        let exempt = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        for proxy in ["10.1.2.3", "::ffff:10.1.2.3"] {
            assert_eq!(
                counted_client(&exempt, proxy.parse().unwrap()),
                None,
                "{proxy}"
            );
        }
        assert_eq!(
            counted_client(&exempt, "::ffff:192.0.2.1".parse().unwrap()),
            Some("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_64() {
        let open = Arc::new(OpenConnections::default());
        let a = "2001:db8:1:2::7".parse().unwrap();
        let b = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c = "2001:db8:1:3::7".parse().unwrap();
        let first = open.take(a, 2).unwrap();
        let _second = open.take(b, 2).unwrap();
        assert!(open.take(a, 2).is_none(), "the same /64 is one client");
        assert!(open.take(c, 2).is_some(), "another /64 is another client");
        drop(first);
        assert!(
            open.take(b, 2).is_some(),
            "a closed connection gives its place back"
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _v4 = open.take("192.0.2.1".parse().unwrap(), 1).unwrap();
        assert!(
            open.take(mapped, 1).is_none(),
            "an IPv4-mapped address is the IPv4 address"
        );
    }
}
