//! The client and the connect options shared by realtime connections, pull
//! sessions and raw WebSockets (with the token-provider, encode and decode callbacks).

use super::gate::{FreeFn, Gate};
use super::*;
use crate::auth::{Credentials, TokenFuture, TokenProvider};
use crate::client::Client;
use crate::codec::Frame;
use crate::config::{ClientConfig, RealtimeOptions};
use bytes::Bytes;
use std::sync::Arc;

/// Options of `fal_rt_client_new`. Zero (or NULL) fields take their defaults,
/// so initialise with `{ .struct_size = sizeof(fal_rt_client_options) }` and
/// set what you need. The library reads the struct during the call only.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct fal_rt_client_options {
    /// `sizeof(fal_rt_client_options)`, for compatibility with later versions that add fields.
    pub struct_size: u32,
    /// The fal API key (`FAL_KEY` format, `id:secret` or a key). NULL: from the
    /// environment (`FAL_KEY`, or `FAL_KEY_ID` + `FAL_KEY_SECRET`), if set.
    pub key: *const c_char,
    /// Host (and optional port) of the realtime endpoints. NULL: `FAL_RUN_HOST`
    /// or `fal.run`. Plain `ws://host:port` needs `allow_insecure`, except for
    /// a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`): a token sent in
    /// clear there never leaves the machine. The same rule in every door.
    pub run_host: *const c_char,
    /// REST base URL of the token endpoint. NULL: `FAL_REST_URL` or
    /// `https://rest.fal.ai`. Plain `http://` as for `run_host`.
    pub rest_url: *const c_char,
    /// A PEM file of extra CA certificates trusted beside the system roots, or NULL.
    pub extra_ca_file: *const c_char,
    /// Allow plain `ws://` and `http://` (a local emulator). Default false.
    pub allow_insecure: bool,
    /// Time allowed for the token fetch plus the handshake, in ms. 0: 90 s.
    pub open_timeout_ms: u32,
    /// Largest accepted incoming frame and message, in bytes. 0: the
    /// defaults, 16 MiB per frame and 64 MiB per message. A larger message
    /// ends the connection with `FAL_RT_CLOSED` (close code 1009).
    pub max_frame_size: u64,
    /// Retries of a failed token request. 0: the default (3); negative: none.
    pub token_retries: i32,
    /// Keepalive: send a WebSocket ping every this many ms. 0: the default
    /// (20 s); negative: no keepalive pings. Realtime connections ping from
    /// their task; sessions and raw sockets ping while a `recv` waits.
    pub ping_interval_ms: i32,
    /// Keepalive: after a ping, how long (ms) to wait for any frame from the
    /// server before the connection is declared dead: it is closed with 1011
    /// and reported as `FAL_RT_TIMEOUT` (`on_error`, or from `recv`).
    /// 0: the default (20 s); negative: never give up.
    pub ping_timeout_ms: i32,
    /// Unused: the padding after `ping_timeout_ms` in earlier versions of this
    /// struct, kept so that `server_side` lies beyond their size. Ignored.
    pub reserved: u32,
    /// The host renders pages on a server (server-side rendering): realtime
    /// connections made with `fal_rt_connect_options.client_only` are then
    /// no-ops whose inputs are dropped (logged at debug level, counted in
    /// `fal_rt_stats.inputs_dropped_client_only`), as fal's JS client does
    /// outside a browser. Default false.
    pub server_side: bool,
}

/// The size of the first version of `fal_rt_client_options` (without the keepalive fields).
const CLIENT_OPTIONS_V1_SIZE: usize = std::mem::offset_of!(fal_rt_client_options, ping_interval_ms);

/// A keepalive duration option: 0 → `default`, negative → `None`.
fn keepalive_ms(ms: i32, default: Option<Duration>) -> Option<Duration> {
    match ms {
        0 => default,
        n if n < 0 => None,
        n => Some(Duration::from_millis(n as u64)),
    }
}

/// A client: configuration, TLS roots and the registry of keyed connections.
///
/// Thread-safe: may be used from any thread concurrently. Connections keep
/// what they need, so the client may be freed while its connections live.
pub struct fal_rt_client {
    pub(crate) client: Client,
    /// Keeps the library's threads (last: dropped after the client).
    _lease: crate::runtime::Lease,
}

/// Create a client. `options` may be NULL (all defaults: credentials and hosts
/// from the environment). On success writes the new client to `*out`; free it
/// with `fal_rt_client_free`. Fails with `FAL_RT_INVALID_ARGUMENT` for a bad run
/// host or REST URL, plain ws/http without `allow_insecure`, or a missing CA file.
///
/// # Safety
/// `options` is NULL or a valid struct whose strings are NULL or NUL-terminated;
/// `out` is NULL or writable; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_client_new(
    options: *const fal_rt_client_options,
    out: *mut *mut fal_rt_client,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        not_null(out, "out")?;
        let mut config = ClientConfig::from_env();
        if !options.is_null() {
            let o: fal_rt_client_options = read_versioned(options, "options", CLIENT_OPTIONS_V1_SIZE)?;
            if let Some(k) = opt_str_arg(o.key, "options->key")? {
                config.credentials = Some(Credentials::key(k));
            }
            if let Some(h) = opt_str_arg(o.run_host, "options->run_host")? {
                config.run_host = h.to_string();
            }
            if let Some(r) = opt_str_arg(o.rest_url, "options->rest_url")? {
                config.rest_url = r.to_string();
            }
            if let Some(c) = opt_str_arg(o.extra_ca_file, "options->extra_ca_file")? {
                config.extra_ca_file = Some(c.into());
            }
            config.allow_insecure = o.allow_insecure;
            if o.open_timeout_ms > 0 {
                config.open_timeout = Duration::from_millis(u64::from(o.open_timeout_ms));
            }
            if o.max_frame_size > 0 {
                config.max_frame_size = Some(usize::try_from(o.max_frame_size).unwrap_or(usize::MAX));
            }
            match o.token_retries {
                0 => {}
                n if n < 0 => config.token_retries = 0,
                n => config.token_retries = n as u32,
            }
            config.ping_interval = keepalive_ms(o.ping_interval_ms, config.ping_interval);
            config.ping_timeout = keepalive_ms(o.ping_timeout_ms, config.ping_timeout);
            config.server_side = o.server_side;
        }
        let client = Client::new(config)?;
        put(
            out,
            Box::into_raw(Box::new(fal_rt_client {
                client,
                _lease: crate::runtime::lease(),
            })),
        );
        Ok(())
    })
}

/// Free a client. Accepts NULL. Connections made from it stay usable. When
/// it is the last object of the library and is freed outside callbacks, off
/// the library's threads, it waits (at most 5 s) for the library's threads
/// to end; elsewhere they end in the background. See
/// `fal_rt_set_thread_hooks` for when the threads end and who waits.
///
/// # Safety
/// `client` is NULL or a client not freed before, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_client_free(client: *mut fal_rt_client) {
    boundary_value((), || {
        if !client.is_null() {
            drop(Box::from_raw(client));
        }
    })
}

/// A token provider: write a token for `app` (the normalised `{id}{path}`, e.g.
/// `"123/myapp/realtime"`, NUL-terminated, borrowed for the call) into
/// `out_token` with `fal_rt_buffer_append`, and return 0; any other return
/// value is a failure (reported as `FAL_RT_TOKEN_PROVIDER`).
///
/// Thread: a blocking-pool thread of the library's runtime, so it may block
/// (e.g. on an HTTP request to your backend); never concurrently for one
/// connection. Blocking calls of this library are refused there.
pub type fal_rt_token_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, app: *const c_char, out_token: *mut fal_rt_buffer) -> i32,
>;

/// A custom encoder: turn the msgpack encoding of an input (`data`, `len`,
/// borrowed for the call) into the frame to send, appended to `out_frame`
/// (binary by default; `fal_rt_buffer_set_text` for a text frame). Return 0 on
/// success; any other value fails the send with `FAL_RT_ENCODE`.
///
/// Thread: the thread that called send (inside a callback: a runtime thread).
pub type fal_rt_encode_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        data: *const u8,
        len: usize,
        out_frame: *mut fal_rt_buffer,
    ) -> i32,
>;

/// A custom decoder: turn an incoming binary frame (`data`, `len`, borrowed
/// for the call) into msgpack bytes appended to `out_msgpack`, which are then
/// classified as usual (results, server errors). Text frames are JSON and never
/// reach the decoder (the rule of fal's JS and Python clients and of every door
/// of this library), so `is_text` is always false; it stays for ABI stability.
/// Return 0 on success; any other value reports a `FAL_RT_DECODE` error and the
/// connection stays up.
///
/// Thread: realtime connections: a runtime worker thread, never concurrently
/// for one connection; sessions: the thread calling `fal_rt_session_recv`.
pub type fal_rt_decode_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        data: *const u8,
        len: usize,
        is_text: bool,
        out_msgpack: *mut fal_rt_buffer,
    ) -> i32,
>;

/// A finalizer for a `user_data` pointer: called exactly once, when the library
/// no longer uses it, on whichever thread lets go of it last.
pub type fal_rt_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Options of `fal_rt_realtime_connect`, `fal_rt_session_connect` and
/// `fal_rt_ws_connect`: every option of the Rust core. Zero (or NULL) fields
/// take their defaults; initialise with `{ .struct_size =
/// sizeof(fal_rt_connect_options) }`. Pass NULL for all defaults. The library
/// reads the struct during the call only.
///
/// `callbacks_user_data` is passed to `token_provider`, `encoder` and
/// `decoder`. Ownership of it passes to the library when the connect call is
/// made: `free_callbacks_user_data` (if set) is called exactly once when no
/// callback can use it any more, also when the connect call fails.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct fal_rt_connect_options {
    /// `sizeof(fal_rt_connect_options)`.
    pub struct_size: u32,
    /// Realtime only: reuse one live connection per key (per client); the
    /// latest handler replaces the earlier one. NULL: no reuse.
    pub connection_key: *const c_char,
    /// Realtime only: minimum time between sends, in ms. 0: the default
    /// (128 ms); `FAL_RT_THROTTLE_NONE` (-1): no throttling.
    pub throttle_ms: i32,
    /// Server-side input queue length, 1 to 60. 0: not set (the server's
    /// default). Any other value fails the connect with `FAL_RT_INVALID_ARGUMENT`.
    pub max_buffering: i32,
    /// Path after the app id. NULL: `/realtime` for realtime connections and
    /// sessions (never doubled), none for raw WebSockets.
    pub path: *const c_char,
    /// Authenticate with the `Authorization: Key` header instead of a
    /// short-lived JWT in the URL. Needs a key. Default false (JWT).
    pub header_auth: bool,
    /// Life of a token, in ms: requested from the token endpoint (default
    /// 120 s), or the life of the provider's tokens (then refreshed at 90 % of it). 0: default.
    pub token_expiration_ms: u32,
    /// A token provider replacing the default token endpoint, or NULL.
    pub token_provider: fal_rt_token_fn,
    /// Realtime and sessions: a custom encoder, or NULL (msgpack binary frames).
    pub encoder: fal_rt_encode_fn,
    /// Realtime and sessions: a custom decoder, or NULL (msgpack).
    pub decoder: fal_rt_decode_fn,
    /// Passed to `token_provider`, `encoder` and `decoder`; must be usable from any thread.
    pub callbacks_user_data: *mut c_void,
    /// Finalizer of `callbacks_user_data`, or NULL.
    pub free_callbacks_user_data: fal_rt_free_fn,
    /// Realtime only: the JS client's `clientOnly`. On a client made with
    /// `fal_rt_client_options.server_side`, the connection never opens and
    /// every send is dropped (returning `FAL_RT_OK`; logged at debug level and
    /// counted in `fal_rt_stats.inputs_dropped_client_only`). Elsewhere it has
    /// no effect; sessions and raw WebSockets ignore it. Default false.
    pub client_only: bool,
    /// Sessions and raw WebSockets: a cancel token (see `fal_rt_cancel_token`)
    /// that interrupts the blocking connect call (`FAL_RT_INTERRUPTED`), or
    /// NULL. Borrowed for the call: keep it until the connect returns.
    /// Realtime connections (which do not block) ignore it.
    pub cancel: *const super::threads::fal_rt_cancel_token,
}

/// The size of the first version of `fal_rt_connect_options` (without `client_only`).
const CONNECT_OPTIONS_V1_SIZE: usize = std::mem::offset_of!(fal_rt_connect_options, client_only);

/// The C callbacks of a `fal_rt_connect_options`, behind their gate.
pub(crate) struct OptionCallbacks {
    pub(crate) gate: Arc<Gate>,
    token: fal_rt_token_fn,
    encoder: fal_rt_encode_fn,
    decoder: fal_rt_decode_fn,
    ud: UserData,
}

/// Connect options converted for the core; `gate` guards the C callbacks (if any).
pub(crate) struct ConnectOptions {
    pub(crate) options: RealtimeOptions,
    pub(crate) gate: Option<Arc<Gate>>,
    /// The cancel token of a blocking connect, if any.
    pub(crate) cancel: Option<Arc<super::threads::CancelState>>,
}

impl ConnectOptions {
    /// `fut`, or `None` once the cancel token (if any) is cancelled.
    pub(crate) async fn cancellable<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        match &self.cancel {
            None => Some(fut.await),
            Some(c) => tokio::select! {
                biased;
                _ = c.cancelled() => None,
                out = fut => Some(out),
            },
        }
    }
}

impl ConnectOptions {
    /// Release the callbacks now (the connect failed): close the gate.
    pub(crate) fn release(&self) {
        if let Some(g) = &self.gate {
            g.close();
        }
    }
}

fn freed() -> crate::Error {
    crate::Error::new(crate::ErrorKind::NotConnected, "the connection was freed")
}

struct CTokenProvider(Arc<OptionCallbacks>);

impl TokenProvider for CTokenProvider {
    fn token(&self, app: &str) -> TokenFuture {
        let cbs = self.0.clone();
        let app = c_string_lossy(app);
        Box::pin(async move {
            let join = tokio::task::spawn_blocking(move || -> crate::Result<String> {
                let f = cbs.token.ok_or_else(freed)?;
                let _pass = cbs.gate.enter().ok_or_else(freed)?;
                let mut buf = fal_rt_buffer::new();
                // SAFETY: the C caller's callback and user_data; `app` and `buf` outlive the call.
                let rc = unsafe { f(cbs.ud.0, app.as_ptr(), &mut buf) };
                if rc != 0 {
                    return Err(crate::Error::new(
                        crate::ErrorKind::TokenProvider,
                        format!("the token provider callback returned {rc}"),
                    ));
                }
                String::from_utf8(buf.data).map_err(|_| {
                    crate::Error::new(
                        crate::ErrorKind::TokenProvider,
                        "the token provider wrote invalid UTF-8",
                    )
                })
            });
            join.await.map_err(|_| {
                crate::Error::new(
                    crate::ErrorKind::TokenProvider,
                    "the token provider callback failed",
                )
            })?
        })
    }
}

fn encode_with(cbs: &OptionCallbacks, bytes: Bytes) -> crate::Result<Frame> {
    let f = cbs.encoder.ok_or_else(freed)?;
    let _pass = cbs.gate.enter().ok_or_else(freed)?;
    let mut buf = fal_rt_buffer::new();
    // SAFETY: the C caller's callback; `bytes` and `buf` outlive the call.
    let rc = unsafe { f(cbs.ud.0, bytes.as_ptr(), bytes.len(), &mut buf) };
    if rc != 0 {
        return Err(crate::Error::new(
            crate::ErrorKind::Encode,
            format!("the custom encoder returned {rc}"),
        ));
    }
    if buf.text {
        String::from_utf8(buf.data).map(Frame::Text).map_err(|_| {
            crate::Error::new(
                crate::ErrorKind::Encode,
                "the custom encoder wrote a text frame that is not UTF-8",
            )
        })
    } else {
        Ok(Frame::Binary(Bytes::from(buf.data)))
    }
}

fn decode_with(cbs: &OptionCallbacks, frame: Frame) -> crate::Result<Bytes> {
    let f = cbs.decoder.ok_or_else(freed)?;
    let _pass = cbs.gate.enter().ok_or_else(freed)?;
    let mut buf = fal_rt_buffer::new();
    let data = frame.as_bytes();
    let is_text = matches!(frame, Frame::Text(_));
    // SAFETY: the C caller's callback; `frame` and `buf` outlive the call.
    let rc = unsafe { f(cbs.ud.0, data.as_ptr(), data.len(), is_text, &mut buf) };
    if rc != 0 {
        return Err(crate::Error::new(
            crate::ErrorKind::Decode,
            format!("the custom decoder returned {rc}"),
        ));
    }
    Ok(Bytes::from(buf.data))
}

/// Read `fal_rt_connect_options` (NULL → defaults). Takes ownership of
/// `callbacks_user_data` first, so its finalizer runs even if reading the rest fails.
///
/// # Safety
/// `p` is NULL or a valid struct.
pub(crate) unsafe fn read_connect_options(p: *const fal_rt_connect_options) -> FfiResult<ConnectOptions> {
    let mut options = RealtimeOptions::default();
    if p.is_null() {
        return Ok(ConnectOptions {
            options,
            gate: None,
            cancel: None,
        });
    }
    let o: fal_rt_connect_options = read_versioned(p, "options", CONNECT_OPTIONS_V1_SIZE)?;
    let has_callbacks = o.token_provider.is_some() || o.encoder.is_some() || o.decoder.is_some();
    let gate = (has_callbacks || o.free_callbacks_user_data.is_some()).then(|| {
        Arc::new(Gate::new(
            o.free_callbacks_user_data.map(|f| f as FreeFn),
            o.callbacks_user_data,
        ))
    });
    let mut fill = || -> FfiResult {
        options.connection_key =
            opt_str_arg(o.connection_key, "options->connection_key")?.map(str::to_string);
        options.throttle_interval = match o.throttle_ms {
            0 => options.throttle_interval,
            n if n < 0 => Duration::ZERO,
            n => Duration::from_millis(n as u64),
        };
        if o.max_buffering != 0 {
            options.max_buffering = Some(i64::from(o.max_buffering));
        }
        options.path = opt_str_arg(o.path, "options->path")?.map(str::to_string);
        options.use_jwt = !o.header_auth;
        options.client_only = o.client_only;
        if o.token_expiration_ms > 0 {
            options.token_expiration = Some(Duration::from_millis(u64::from(o.token_expiration_ms)));
        }
        if let Some(gate) = &gate {
            let cbs = Arc::new(OptionCallbacks {
                gate: gate.clone(),
                token: o.token_provider,
                encoder: o.encoder,
                decoder: o.decoder,
                ud: UserData(o.callbacks_user_data),
            });
            if o.token_provider.is_some() {
                options.token_provider = Some(Arc::new(CTokenProvider(cbs.clone())));
            }
            if o.encoder.is_some() {
                let c = cbs.clone();
                options.encoder = Some(Arc::new(move |b| encode_with(&c, b)));
            }
            if o.decoder.is_some() {
                let c = cbs.clone();
                options.decoder = Some(Arc::new(move |f| decode_with(&c, f)));
            }
        }
        Ok(())
    };
    match fill() {
        Ok(()) => Ok(ConnectOptions {
            options,
            gate,
            // SAFETY: NULL or a live token (the caller keeps it for the call).
            cancel: o.cancel.as_ref().map(|t| t.state.clone()),
        }),
        Err(f) => {
            if let Some(g) = &gate {
                g.close();
            }
            Err(f)
        }
    }
}
