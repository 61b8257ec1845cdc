//! The TCP stream under every emulator connection, with per-connection fault switches.
//!
//! Hyper and the WebSocket layer own the stream, so faults that need the socket itself (an
//! RST on close) are requested through a shared [`ConnFaults`] and applied when the stream
//! is dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Fault switches of one connection, shared between its stream and its handlers.
#[derive(Debug, Default)]
pub(crate) struct ConnFaults {
    reset_on_drop: AtomicBool,
}

impl ConnFaults {
    /// Makes the close of the connection an abort: `SO_LINGER` 0, so dropping the stream
    /// sends an RST instead of a FIN.
    pub(crate) fn reset_on_drop(&self) {
        self.reset_on_drop.store(true, Ordering::SeqCst);
    }
}

/// An accepted TCP stream that applies its [`ConnFaults`] when dropped.
pub(crate) struct FaultTcp {
    tcp: TcpStream,
    faults: Arc<ConnFaults>,
}

impl FaultTcp {
    pub(crate) fn new(tcp: TcpStream) -> (FaultTcp, Arc<ConnFaults>) {
        let faults = Arc::new(ConnFaults::default());
        (
            FaultTcp {
                tcp,
                faults: faults.clone(),
            },
            faults,
        )
    }
}

impl Drop for FaultTcp {
    fn drop(&mut self) {
        if self.faults.reset_on_drop.load(Ordering::SeqCst) {
            // Deprecated because a non-zero linger time blocks the thread on close; a zero one
            // never blocks: the close discards the send queue and sends an RST.
            #[allow(deprecated)]
            if let Err(e) = self.tcp.set_linger(Some(Duration::ZERO)) {
                log::debug!("cannot set SO_LINGER: {e}");
            }
        }
    }
}

impl AsyncRead for FaultTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
