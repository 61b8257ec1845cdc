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

// Layers, each importing only from the ones above it in this list:
// pure rules (error, codec, endpoint, auth, throttle, keepalive, stats),
// config, transport, open (token fetch + socket open), link (the socket
// rules every style shares), the styles (session, ws, connection), the face
// (client), and the C door (ffi).
pub mod auth;
mod client;
pub mod codec;
mod config;
mod connection;
pub mod endpoint;
mod error;
pub mod ffi;
pub mod keepalive;
mod link;
mod open;
pub mod runtime;
mod session;
mod stats;
pub mod throttle;
mod transport;
mod ws;

pub use auth::{Credentials, TokenFuture, TokenProvider};
pub use client::Client;
pub use codec::{Frame, Message};
pub use config::{
    ClientConfig, Decoder, Encoder, RealtimeOptions, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OPEN_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, DEFAULT_READ_BUFFER_SIZE,
    DEFAULT_REST_URL, DEFAULT_RUN_HOST, DEFAULT_TOKEN_EXPIRATION, MIN_TOKEN_EXPIRATION,
};
pub use connection::{
    in_callback, ConnectionState, FnHandler, RealtimeConnection, RealtimeHandler, RESULT_BATCH,
};
pub use error::{Error, ErrorKind, Result};
pub use session::{RealtimeReceiver, RealtimeSender, RealtimeSession};
pub use stats::Stats;
pub use ws::{WsConnection, WsOptions, WsReceiver, WsSender};

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
