//! The two halves of a pull-style connection (realtime session or raw
//! WebSocket), each owned behind its own async mutex so one thread (or task)
//! can wait in `recv` while others `send`.

use crate::hooks;
use fal_realtime::{
    Error, ErrorKind, Frame, Message, RealtimeReceiver, RealtimeSender, Result, Stats, WsReceiver, WsSender,
};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::Mutex;

pub enum Tx {
    Realtime(RealtimeSender),
    Ws(WsSender),
}

pub enum Rx {
    /// A realtime session; the flag says whether its idle `TIMEOUT` was reported.
    Realtime(RealtimeReceiver, bool),
    Ws(WsReceiver),
}

pub enum Item {
    Message(Message),
    Frame(Frame),
    /// The server's idle `TIMEOUT` ended the session (its JSON): `recv`
    /// raises it as a `RealtimeError("TIMEOUT", ...)` (as `fal_client`),
    /// iteration ends cleanly. Reported once; then `recv` returns `None`.
    IdleTimeout(String),
}

impl Tx {
    pub async fn send(&mut self, f: Frame) -> Result<()> {
        match self {
            Tx::Realtime(s) => s.send_frame(f).await,
            Tx::Ws(s) => s.send(f).await,
        }
    }

    /// Send a close frame: realtime sessions always with 1000; raw sockets
    /// with `code` and `reason` (checked by the core).
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<()> {
        match self {
            Tx::Realtime(s) => s.close().await,
            Tx::Ws(s) => s.close_with(code, reason).await,
        }
    }

    /// How a raw socket ended (`close_code`, `close_reason`); `None` for sessions.
    pub fn close_info(&self) -> Option<(u16, String)> {
        match self {
            Tx::Realtime(_) => None,
            Tx::Ws(s) => s.close_code().zip(s.close_reason()),
        }
    }

    pub fn stats(&self) -> Stats {
        match self {
            Tx::Realtime(s) => s.stats(),
            Tx::Ws(s) => s.stats(),
        }
    }
}

impl Rx {
    pub fn stats(&self) -> Stats {
        match self {
            Rx::Realtime(r, _) => r.stats(),
            Rx::Ws(r) => r.stats(),
        }
    }

    pub fn close_info(&self) -> Option<(u16, String)> {
        match self {
            Rx::Realtime(..) => None,
            Rx::Ws(r) => r.close_code().zip(r.close_reason()),
        }
    }

    pub async fn recv(&mut self) -> Option<Result<Item>> {
        match self {
            Rx::Realtime(r, reported) => match r.recv().await {
                Some(item) => Some(item.map(Item::Message)),
                None => match r.idle_timeout() {
                    Some(body) if !*reported => {
                        *reported = true;
                        Some(Ok(Item::IdleTimeout(body.to_string())))
                    }
                    _ => None,
                },
            },
            Rx::Ws(r) => r.recv().await.map(|r| r.map(Item::Frame)),
        }
    }

    /// After a close frame was sent: read until the server's reply ends the
    /// socket, for at most 1 s. What arrives meanwhile is dropped.
    pub async fn finish_close(&mut self) {
        match self {
            Rx::Realtime(..) => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    while self.recv().await.is_some() {}
                })
                .await;
            }
            Rx::Ws(r) => r.finish_close().await,
        }
    }
}

impl Item {
    /// The Python value of what `recv` got: a result, a frame, or (for the
    /// idle `TIMEOUT`) the `RealtimeError` to raise.
    pub fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            Item::Message(m) => hooks::message_to_py(py, &m),
            Item::Frame(f) => hooks::frame_to_py(py, f),
            Item::IdleTimeout(body) => Err(idle_timeout_error(py, body)),
        }
    }
}

/// `RealtimeError("TIMEOUT", reason, payload)` for the server's idle
/// `TIMEOUT` message (`_from_core` takes `error`, `reason` and `payload` from
/// the JSON body).
pub fn idle_timeout_error(py: Python<'_>, body: String) -> PyErr {
    crate::errors::to_py(py, &Error::new(ErrorKind::Server, "TIMEOUT").with_body(body))
}

/// Both halves, shared.
#[derive(Clone)]
pub struct Halves {
    pub tx: Arc<Mutex<Tx>>,
    pub rx: Arc<Mutex<Rx>>,
    /// Read ahead: what was already readable when a `recv` got its item, in
    /// order (at most `READ_AHEAD`), so the next `recv`s take it without
    /// entering the runtime (`take_ready`) — the pipelined case, where each
    /// wake-up finds many results.
    ahead: Arc<std::sync::Mutex<VecDeque<Option<Result<Item>>>>>,
    last_stats: Arc<std::sync::Mutex<Stats>>,
    last_close: Arc<std::sync::Mutex<Option<(u16, String)>>>,
}

/// The most items one `recv` reads ahead.
const READ_AHEAD: usize = 63;

impl Halves {
    pub fn new(tx: Tx, rx: Rx) -> Self {
        Halves {
            tx: Arc::new(Mutex::new(tx)),
            rx: Arc::new(Mutex::new(rx)),
            ahead: Default::default(),
            last_stats: Default::default(),
            last_close: Default::default(),
        }
    }

    pub async fn send(&self, f: Frame) -> Result<()> {
        self.tx.lock().await.send(f).await
    }

    /// The next item: one read ahead, else the next from the socket. When
    /// that one was there at the first poll (more may be: the pipelined
    /// case), every item already readable is then read ahead (polled once
    /// each with this task's waker, a no-op one in the asyncio door: the
    /// read a following `recv` would make anyway); when it had to be waited for (a request-reply loop), the
    /// socket has nothing more and the read-ahead, which would find nothing
    /// and still zero-fill a read buffer, is skipped. Cancel-safe, as
    /// `Rx::recv`.
    pub async fn recv(&self) -> Option<Result<Item>> {
        if let Some(x) = self.take_ready() {
            return x;
        }
        let mut rx = self.rx.lock().await;
        // Another receiver may have read ahead while this one waited for the lock.
        if let Some(x) = self.take_ready() {
            return x;
        }
        let (first, at_once) = fal_realtime::runtime::first_poll(std::pin::pin!(rx.recv())).await;
        if at_once && matches!(first, Some(Ok(_))) {
            self.fill_ahead(&mut rx).await;
        }
        first
    }

    /// Move every item already readable into the read-ahead queue, polling
    /// each once with this task's waker (the read a following `recv` would
    /// make anyway), until one would wait, the connection ends, or the queue
    /// holds `READ_AHEAD`.
    async fn fill_ahead(&self, rx: &mut Rx) {
        let queued = || self.ahead.lock().unwrap_or_else(|p| p.into_inner()).len();
        while queued() < READ_AHEAD {
            let mut next = std::pin::pin!(rx.recv());
            match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                Poll::Ready(x) => {
                    let end = !matches!(x, Some(Ok(_)));
                    self.ahead.lock().unwrap_or_else(|p| p.into_inner()).push_back(x);
                    if end {
                        return;
                    }
                }
                Poll::Pending => return,
            }
        }
    }

    /// Read what is readable now into the read-ahead queue without waiting,
    /// for a socket that woke its event loop while no `recv` waited; nothing
    /// when another caller holds the receiving half.
    pub async fn read_ahead(&self) {
        if let Ok(mut rx) = self.rx.try_lock() {
            self.fill_ahead(&mut rx).await;
        }
    }

    /// An item read ahead, without waiting; `None` when there is none.
    pub fn take_ready(&self) -> Option<Option<Result<Item>>> {
        self.ahead.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// Send a close frame (`code` and `reason` for raw sockets, else 1000),
    /// then, unless another caller is receiving, read until the server's
    /// close reply so the socket ends cleanly. Bounded. An invalid code or
    /// reason fails before anything is sent.
    pub async fn close(&self, code: u16, reason: &str) -> Result<()> {
        use std::time::Duration;
        let sent = {
            let mut tx = self.tx.lock().await;
            match tokio::time::timeout(Duration::from_secs(2), tx.close(code, reason)).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    "the close frame could not be sent within 2 s",
                )),
            }
        };
        if matches!(&sent, Err(e) if e.kind() == ErrorKind::InvalidArgument) {
            return sent;
        }
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.finish_close().await;
        }
        sent
    }

    /// How a raw socket ended (code, reason), without waiting: from
    /// whichever half is free, else the last answer.
    pub fn try_close_info(&self) -> Option<(u16, String)> {
        let fresh = match self.tx.try_lock() {
            Ok(t) => Some(t.close_info()),
            Err(_) => self.rx.try_lock().ok().map(|r| r.close_info()),
        };
        let mut last = self.last_close.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Some(c)) = fresh {
            *last = Some(c);
        }
        last.clone()
    }

    /// The counters, without waiting: from whichever half is free, else the
    /// last snapshot taken.
    pub fn try_stats(&self) -> Stats {
        let fresh = match self.tx.try_lock() {
            Ok(t) => Some(t.stats()),
            Err(_) => self.rx.try_lock().ok().map(|r| r.stats()),
        };
        let mut last = self.last_stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = fresh {
            *last = s;
        }
        *last
    }
}
