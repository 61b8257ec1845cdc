//! The two halves of a pull-style connection (realtime session or raw
//! WebSocket), each owned behind its own async mutex so one thread (or task)
//! can wait in `recv` while others `send`.

use crate::hooks;
use fal_realtime::{
    Error, ErrorKind, Frame, Message, RealtimeReceiver, RealtimeSender, Result, Stats, WsReceiver, WsSender,
};
use pyo3::prelude::*;
use std::sync::Arc;
use tokio::sync::Mutex;

pub enum Tx {
    Realtime(RealtimeSender),
    Ws(WsSender),
}

pub enum Rx {
    Realtime(RealtimeReceiver),
    Ws(WsReceiver),
}

pub enum Item {
    Message(Message),
    Frame(Frame),
}

impl Tx {
    pub async fn send(&mut self, f: Frame) -> Result<()> {
        match self {
            Tx::Realtime(s) => s.send_frame(f).await,
            Tx::Ws(s) => s.send(f).await,
        }
    }

    pub async fn close(&mut self) -> Result<()> {
        match self {
            Tx::Realtime(s) => s.close().await,
            Tx::Ws(s) => s.close().await,
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
            Rx::Realtime(r) => r.stats(),
            Rx::Ws(r) => r.stats(),
        }
    }

    pub async fn recv(&mut self) -> Option<Result<Item>> {
        match self {
            Rx::Realtime(r) => r.recv().await.map(|r| r.map(Item::Message)),
            Rx::Ws(r) => r.recv().await.map(|r| r.map(Item::Frame)),
        }
    }
}

impl Item {
    pub fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            Item::Message(m) => hooks::message_to_py(py, &m),
            Item::Frame(f) => hooks::frame_to_py(py, f),
        }
    }
}

/// Both halves, shared.
#[derive(Clone)]
pub struct Halves {
    pub tx: Arc<Mutex<Tx>>,
    pub rx: Arc<Mutex<Rx>>,
    last_stats: Arc<std::sync::Mutex<Stats>>,
}

impl Halves {
    pub fn new(tx: Tx, rx: Rx) -> Self {
        Halves {
            tx: Arc::new(Mutex::new(tx)),
            rx: Arc::new(Mutex::new(rx)),
            last_stats: Default::default(),
        }
    }

    pub async fn send(&self, f: Frame) -> Result<()> {
        self.tx.lock().await.send(f).await
    }

    pub async fn recv(&self) -> Option<Result<Item>> {
        self.rx.lock().await.recv().await
    }

    /// Send a close frame (1000), then, unless another caller is receiving,
    /// read until the server's close reply so the socket ends cleanly. Bounded.
    pub async fn close(&self) -> Result<()> {
        use std::time::Duration;
        let sent = {
            let mut tx = self.tx.lock().await;
            match tokio::time::timeout(Duration::from_secs(2), tx.close()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    "the close frame could not be sent within 2 s",
                )),
            }
        };
        if let Ok(mut rx) = self.rx.try_lock() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while rx.recv().await.is_some() {}
            })
            .await;
        }
        sent
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
