//! # fal-realtime
//!
//! One fast, correct core for fal.ai realtime WebSocket endpoints.
//!
//! * [`Client::realtime`]: the callback style of the JS client (lazy connect,
//!   latest-wins while connecting, throttled sends, token refresh, reconnect on
//!   the next send after any close).
//! * [`Client::connect`]: the explicit-connect, pull style of Python's
//!   `fal_client.realtime()` (`send`, `recv().await`, `close`).
//! * [`Client::ws_connect`]: a raw WebSocket with the same URL and auth rules.
//!
//! Results are [`Message`]s: the server's msgpack bytes, passed through
//! untouched, decoded only on demand.
//!
//! ```no_run
//! use fal_realtime::{Client, FnHandler, RealtimeOptions};
//! let client = Client::from_env()?;
//! let conn = client.realtime(
//!     "fal-ai/fast-lcm-diffusion",
//!     RealtimeOptions::default(),
//!     FnHandler::new(|msg| println!("{:?}", msg.to_json())),
//! )?;
//! conn.send(&serde_json::json!({"prompt": "a cat"}))?;
//! # Ok::<(), fal_realtime::Error>(())
//! ```

#![warn(missing_docs)]

pub mod auth;
mod client;
pub mod codec;
mod connection;
pub mod endpoint;
mod error;
pub mod ffi;
pub mod runtime;
mod session;
mod stats;
pub mod throttle;
mod transport;
mod ws;

pub use auth::{Credentials, TokenFuture, TokenProvider};
pub use client::{
    Client, ClientConfig, RealtimeOptions, DEFAULT_OPEN_TIMEOUT, DEFAULT_REST_URL, DEFAULT_RUN_HOST,
    DEFAULT_TOKEN_EXPIRATION,
};
pub use codec::{Frame, Message};
pub use connection::{in_callback, ConnectionState, FnHandler, RealtimeConnection, RealtimeHandler};
pub use error::{Error, ErrorKind, Result};
pub use session::{RealtimeReceiver, RealtimeSender, RealtimeSession};
pub use stats::Stats;
pub use ws::{WsConnection, WsOptions, WsReceiver, WsSender};

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A custom encoder: the msgpack encoding of an input → the frame to send
/// (binary or text). Called on the sending thread.
pub type Encoder = std::sync::Arc<dyn Fn(bytes::Bytes) -> Result<Frame> + Send + Sync>;

/// A custom decoder: an incoming frame → msgpack bytes, which are then
/// classified as usual (results, `x-fal-error`, …). Called on the runtime thread.
pub type Decoder = std::sync::Arc<dyn Fn(Frame) -> Result<bytes::Bytes> + Send + Sync>;
