//! Stopping without cutting anyone off. On SIGTERM the instance reports not ready, closes new
//! connections and keep-alives, and waits for the requests in flight, at most
//! `server.shutdown_grace`; then Pingora stops its runtimes. Pingora itself would always sleep
//! the whole grace period, busy or not, so certgate decides when the grace ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// Whether the instance is draining, and how many requests are in flight.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drain {
    /// Counts a request until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Stops taking new work and waits until nothing is in flight or `grace` has passed;
    /// whether everything finished.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + grace;
        loop {
            if self.in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pingora's shutdown signal: SIGTERM (and SIGQUIT, as certgate does not hand sockets to a
/// successor) drains first; SIGINT stops at once.
pub struct DrainingShutdown {
    pub drain: Arc<Drain>,
    pub grace: Duration,
    /// Cleared when draining begins, so `/readyz` says 503 at once.
    pub ready: Arc<AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            crate::server::fatal("cannot listen for SIGTERM and SIGINT");
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                return ShutdownSignal::FastShutdown;
            }
            _ = term.recv() => {}
            _ = quit.recv() => {}
        }
        self.ready.store(false, Ordering::Relaxed);
        tracing::info!(
            in_flight = self.drain.in_flight(),
            grace_ms = self.grace.as_millis() as u64,
            "shutting down: no new connections; waiting for the requests in flight"
        );
        if !self.drain.drain(self.grace).await {
            tracing::warn!(
                in_flight = self.drain.in_flight(),
                "the grace period is over; requests still in flight are cut"
            );
        }
        ShutdownSignal::GracefulTerminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_ends_when_the_last_request_does_or_at_the_grace() {
        let drain = Arc::new(Drain::default());
        assert!(drain.drain(Duration::from_secs(10)).await, "idle: at once");

        let drain = Arc::new(Drain::default());
        let request = drain.request();
        let waiting = tokio::spawn({
            let drain = Arc::clone(&drain);
            async move { drain.drain(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(drain.is_draining());
        assert!(!waiting.is_finished());
        drop(request);
        assert!(waiting.await.unwrap_or(false));

        let drain = Arc::new(Drain::default());
        let _stuck = drain.request();
        assert!(!drain.drain(Duration::from_millis(200)).await);
    }
}
