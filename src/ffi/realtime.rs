//! Callback-style realtime connections (`fal_rt_realtime_*`).

use super::client::{read_connect_options, ConnectOptions};
use super::gate::{FreeFn, Gate};
use super::*;
use crate::codec::Message;
use crate::connection::{ConnectionState, RealtimeConnection, RealtimeHandler};
use bytes::Bytes;
use std::sync::Arc;

/// The callbacks of a realtime connection. NULL callbacks are skipped.
///
/// Threads: every callback runs on a runtime worker thread (named
/// `fal-realtime-worker`), never concurrently for one connection. Pointer
/// arguments are borrowed for the duration of the call. Callbacks may call
/// `fal_rt_realtime_send*`, `fal_rt_realtime_close` and even
/// `fal_rt_realtime_free` (deferred) on any connection; blocking calls
/// (`fal_rt_session_*`, `fal_rt_ws_connect`, `*_recv`) fail there with
/// `FAL_RT_WOULD_BLOCK_IN_CALLBACK`.
///
/// Ownership: `user_data` passes to the library when `fal_rt_realtime_connect`
/// can read this struct (non-NULL, `struct_size` large enough):
/// `free_user_data` (if set) is called exactly once, when no callback can run
/// any more (also when the connect fails for another reason), on the thread
/// that lets go last. Release your context there, not after
/// `fal_rt_realtime_free` returns. A handler replaced by a later keyed connect
/// gets no more callbacks; its finalizer runs when its own handle is freed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct fal_rt_realtime_handler {
    /// `sizeof(fal_rt_realtime_handler)`.
    pub struct_size: u32,
    /// Passed first to every callback; must be usable from the runtime's threads.
    pub user_data: *mut c_void,
    /// A result from the app (borrowed for the call; see `fal_rt_message_clone`).
    pub on_result: Option<unsafe extern "C" fn(user_data: *mut c_void, message: *const fal_rt_message)>,
    /// An error: server errors, abnormal closes, undecodable frames, failed
    /// connects and token refreshes (borrowed for the call). The next send reconnects.
    pub on_error: Option<unsafe extern "C" fn(user_data: *mut c_void, error: *const fal_rt_error)>,
    /// The connection state changed.
    pub on_state: Option<unsafe extern "C" fn(user_data: *mut c_void, state: fal_rt_state)>,
    /// Finalizer of `user_data`, or NULL.
    pub free_user_data: fal_rt_free_fn,
}

struct CHandler {
    h: fal_rt_realtime_handler,
    ud: UserData,
    gate: Arc<Gate>,
}

// SAFETY: the function pointers are plain C functions; user_data is wrapped in UserData.
unsafe impl Send for CHandler {}
unsafe impl Sync for CHandler {}

impl RealtimeHandler for CHandler {
    fn on_result(&self, message: Message) {
        if let Some(f) = self.h.on_result {
            if let Some(_pass) = self.gate.enter() {
                let view = fal_rt_message { msg: message };
                // SAFETY: the C caller's callback; `view` outlives the call.
                unsafe { f(self.ud.0, &view) };
            }
        }
    }

    fn on_error(&self, error: crate::Error) {
        if let Some(f) = self.h.on_error {
            if let Some(_pass) = self.gate.enter() {
                let view = fal_rt_error::from_core(&error);
                // SAFETY: as above.
                unsafe { f(self.ud.0, &view) };
            }
        }
    }

    fn on_state(&self, state: ConnectionState) {
        if let Some(f) = self.h.on_state {
            if let Some(_pass) = self.gate.enter() {
                // SAFETY: as above.
                unsafe { f(self.ud.0, state.into()) };
            }
        }
    }
}

/// A callback-style realtime connection: lazy connect on the first send,
/// latest-wins while connecting, throttled sends, token refresh, reconnect on
/// the next send after any close.
///
/// Thread-safety: `send*`, `close`, `state` and `stats` may be called from
/// any thread concurrently, also from inside callbacks, and never block.
/// `fal_rt_realtime_free` must not race with other calls on the same handle.
pub struct fal_rt_realtime {
    conn: RealtimeConnection,
    handler_gate: Arc<Gate>,
    options_gate: Option<Arc<Gate>>,
    dead: std::sync::atomic::AtomicBool,
    /// Keeps the library's threads (last: dropped after the connection).
    _lease: crate::runtime::Lease,
}

impl Handle for fal_rt_realtime {
    fn dead(&self) -> &std::sync::atomic::AtomicBool {
        &self.dead
    }
}

/// Connect to `app` (e.g. `"fal-ai/fast-lcm-diffusion"` or `"123-myapp"`).
/// Returns at once: the socket opens on the first send. On success writes the
/// handle to `*out`, before any callback can run unless a live keyed
/// connection is reused (so `out` may point into your user_data); free it with
/// `fal_rt_realtime_free`. `options` may be NULL.
///
/// Fails at once with `FAL_RT_INVALID_ARGUMENT` (bad app id, `max_buffering`
/// outside 1..=60) or `FAL_RT_CREDENTIALS` (no key and no token provider).
/// With a `connection_key` already live on this client, the handle refers to
/// that connection and `handler` replaces its handler (its `options` are not
/// used; their finalizer runs at once). The earlier handles stay valid and can
/// still send, but `fal_rt_realtime_close` on them does nothing: it cannot
/// close the connection the newer handle uses.
///
/// Ownership of `handler->user_data` and `options->callbacks_user_data` passes
/// to the library for each struct this call can read (see the rules at the
/// top); their finalizers then run exactly once, also on failure. A struct
/// the call cannot read (`FAL_RT_BAD_STRUCT_SIZE`, NULL handler) is not
/// taken and its finalizer is not called; the other one's still runs.
///
/// # Safety
/// `client` is NULL or valid; `app` is NULL or NUL-terminated; `options` and
/// `handler` are NULL or valid structs; `out` and `out_error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_connect(
    client: *const fal_rt_client,
    app: *const c_char,
    options: *const fal_rt_connect_options,
    handler: *const fal_rt_realtime_handler,
    out: *mut *mut fal_rt_realtime,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        // Both structs are read first: each one that can be read is owned
        // from here on, and released (its finalizer run) if the call fails.
        let h = read_versioned(handler, "handler", std::mem::size_of::<fal_rt_realtime_handler>());
        let (h, opts) = match (h, read_connect_options(options)) {
            (Ok(h), Ok(o)) => (h, o),
            (Err(f), Ok(o)) => {
                super::session::release_failed(&o, &f);
                return Err(f);
            }
            (Ok(h), Err(f)) => {
                Gate::new(h.free_user_data.map(|f| f as FreeFn), h.user_data).close();
                return Err(f);
            }
            (Err(f), Err(_)) => return Err(f),
        };
        let h: fal_rt_realtime_handler = h;
        let handler_gate = Arc::new(Gate::new(h.free_user_data.map(|f| f as FreeFn), h.user_data));
        let fail = |f: Failure, opts: &ConnectOptions| {
            handler_gate.close();
            opts.release();
            Err(f)
        };
        let (client, app) = match (
            not_null(client, "client"),
            str_arg(app, "app"),
            not_null(out, "out"),
        ) {
            (Ok(c), Ok(a), Ok(_)) => (&*c, a),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(e, &opts),
        };
        let chandler = Arc::new(CHandler {
            h,
            ud: UserData(h.user_data),
            gate: handler_gate.clone(),
        });
        let ConnectOptions {
            options: ropts,
            gate: options_gate,
            ..
        } = opts;
        match client.client.realtime_dyn(app, ropts, chandler) {
            Ok(conn) => {
                // A live keyed connection was reused: these options were not used.
                let options_gate = match options_gate {
                    Some(g) if conn.handle_count() > 1 => {
                        g.close();
                        None
                    }
                    g => g,
                };
                put(
                    out,
                    Box::into_raw(Box::new(fal_rt_realtime {
                        conn,
                        handler_gate,
                        options_gate,
                        dead: Default::default(),
                        _lease: crate::runtime::lease(),
                    })),
                );
                Ok(())
            }
            Err(e) => {
                handler_gate.close();
                if let Some(g) = &options_gate {
                    g.close();
                }
                Err(e.into())
            }
        }
    })
}

/// Queue an input given as msgpack bytes (copied once; through the custom
/// encoder, if any). Never blocks. While the connection is opening only the
/// latest input is kept; sends are throttled (see `throttle_ms`).
/// Connection errors go to `on_error`; this returns `FAL_RT_ENCODE` when the
/// bytes are not exactly one well-formed msgpack value (an empty buffer
/// included) or the encoder fails, and `FAL_RT_NOT_CONNECTED` on a handle
/// freed inside a callback that is still running.
///
/// # Safety
/// `conn` is NULL or valid; `data` points to `len` readable bytes; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_send(
    conn: *const fal_rt_realtime,
    data: *const u8,
    len: usize,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let c = live(conn, "conn")?;
        let data = bytes_arg(data, len, "data")?;
        c.conn.send_msgpack(Bytes::copy_from_slice(data))?;
        Ok(())
    })
}

/// Queue an input given as JSON text (NUL-terminated UTF-8), converted to
/// msgpack by the library: the easy path for C. `FAL_RT_ENCODE` for invalid JSON.
/// Otherwise as `fal_rt_realtime_send`.
///
/// # Safety
/// `conn` is NULL or valid; `json` is NULL or NUL-terminated; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_send_json(
    conn: *const fal_rt_realtime,
    json: *const c_char,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let c = live(conn, "conn")?;
        let json = str_arg(json, "json")?;
        c.conn.send_json(json)?;
        Ok(())
    })
}

/// Close the socket with code 1000 (from any state, also while connecting) and
/// drop a pending throttled input. Never blocks: the connection's task sends
/// the close frame and waits up to 1 s for the server's reply. The next send
/// reconnects. On a handle whose handler a later keyed connect replaced, this
/// does nothing (returns `FAL_RT_OK`).
///
/// # Safety
/// `conn` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_close(conn: *const fal_rt_realtime) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let c = live(conn, "conn")?;
        c.conn.close();
        Ok(())
    })
}

/// The current state, written to `*out_state`.
///
/// # Safety
/// `conn` is NULL or valid; `out_state` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_state(
    conn: *const fal_rt_realtime,
    out_state: *mut fal_rt_state,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let c = live(conn, "conn")?;
        not_null(out_state, "out_state")?;
        put(out_state, c.conn.state().into());
        Ok(())
    })
}

/// Counters of a connection or session. Set `struct_size = sizeof(fal_rt_stats)`
/// before the call; the library writes at most that many bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct fal_rt_stats {
    /// `sizeof(fal_rt_stats)` (set by the caller; the library writes back how many bytes it filled).
    pub struct_size: u32,
    /// Data frames written to the socket.
    pub frames_sent: u64,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Data frames read (results, control and error frames).
    pub frames_received: u64,
    /// Payload bytes read.
    pub bytes_received: u64,
    /// Results delivered.
    pub results: u64,
    /// Errors reported.
    pub errors: u64,
    /// Successful connection opens.
    pub connects: u64,
    /// Opens after the first one.
    pub reconnects: u64,
    /// Tokens fetched (initial and refreshes).
    pub token_fetches: u64,
    /// Inputs replaced by a newer one before they were sent (latest-wins).
    pub inputs_replaced: u64,
    /// The last server processing time from a timings message, in µs; -1 if none.
    pub last_server_timing_us: i64,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Pongs received (answers to keepalive pings).
    pub pongs_received: u64,
    /// Inputs dropped because the connection is `client_only` on a client
    /// made with `server_side` (see `fal_rt_connect_options.client_only`).
    pub inputs_dropped_client_only: u64,
}

/// The size of the first version of `fal_rt_stats` (without the keepalive counters).
pub(crate) const STATS_V1_SIZE: usize = std::mem::offset_of!(fal_rt_stats, pings_sent);

impl From<crate::Stats> for fal_rt_stats {
    fn from(s: crate::Stats) -> Self {
        fal_rt_stats {
            struct_size: 0,
            frames_sent: s.frames_sent,
            bytes_sent: s.bytes_sent,
            frames_received: s.frames_received,
            bytes_received: s.bytes_received,
            results: s.results,
            errors: s.errors,
            connects: s.connects,
            reconnects: s.reconnects,
            token_fetches: s.token_fetches,
            inputs_replaced: s.inputs_replaced,
            last_server_timing_us: s
                .last_server_timing
                .map_or(-1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            pings_sent: s.pings_sent,
            pongs_received: s.pongs_received,
            inputs_dropped_client_only: s.inputs_dropped_client_only,
        }
    }
}

/// Counters of the connection, written to `*out_stats` (set its `struct_size` first).
///
/// # Safety
/// `conn` is NULL or valid; `out_stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_stats(
    conn: *const fal_rt_realtime,
    out_stats: *mut fal_rt_stats,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let c = live(conn, "conn")?;
        write_versioned(out_stats, "out_stats", STATS_V1_SIZE, c.conn.stats().into())
    })
}

fn free_impl(conn: *mut fal_rt_realtime, may_wait: bool) {
    // SAFETY: the caller hands over a handle not freed before (or freed
    // inside a callback that is still running: then `retire` says so).
    if conn.is_null() || !unsafe { retire(conn) } {
        return;
    }
    let h = unsafe { &*conn };
    // Other handles (same connection_key) keep the connection and its option callbacks.
    let last = h.conn.handle_count() == 1;
    h.handler_gate.close();
    if last {
        if let Some(g) = &h.options_gate {
            g.close();
        }
    }
    let wait = may_wait && can_block();
    if wait {
        // No callback of this handle runs after this point, and the finalizers ran.
        h.handler_gate.wait_finalized();
        if last {
            if let Some(g) = &h.options_gate {
                g.wait_finalized();
            }
            let conn = h.conn.clone();
            let _ = crate::runtime::block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.shutdown()).await;
            });
        }
    } else if last {
        // Closed by a task that holds a lease: the runtime stops only after
        // the close frame went out (or after 2 s).
        let conn = h.conn.clone();
        let lease = crate::runtime::lease();
        crate::runtime::handle().spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await;
            drop(lease);
        });
    }
    // SAFETY: retired above, by this call only.
    if wait {
        unsafe { release(conn) };
    } else {
        // A last lease dropped here stops the runtime in the background.
        crate::runtime::without_waiting(|| unsafe { release(conn) });
    }
}

/// Free a connection handle: close the socket (code 1000) and stop it. Accepts NULL.
///
/// Outside callbacks it blocks until no callback of this handle (its token
/// provider included) is running and the finalizers have run: no callback runs after it returns, and the pointer
/// must not be used again; for the last handle of a connection it then waits
/// for the close (at most 5 s) and, when this was the library's last object,
/// at most 5 s more for the library's threads to end (see
/// `fal_rt_set_thread_hooks`). Inside a callback (or on a runtime thread) it does
/// not block: no new callback starts, the finalizers run when the running
/// callback returns, and until then the handle stays readable: calls on it
/// return `FAL_RT_NOT_CONNECTED` (a second free is ignored). Never deadlocks,
/// but do not hold a lock your callbacks take while calling it from another
/// thread, or use `fal_rt_realtime_free_nowait`. With a `connection_key`
/// shared by several handles, the connection lives until its last handle is freed.
///
/// # Safety
/// `conn` is NULL or a handle not freed before; no other thread uses it during the call.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_free(conn: *mut fal_rt_realtime) {
    boundary_value((), || free_impl(conn, true))
}

/// Like `fal_rt_realtime_free`, but never waits: no new callback starts, a
/// running one finishes on its thread, and the finalizers run after it. The
/// close frame (1000) is sent in the background; when this was the
/// library's last object, its threads end in the background once the close
/// went out (at most 2 s) and the running callbacks returned. For hosts that marshal callbacks to the thread that
/// frees (event loops). Accepts NULL.
///
/// # Safety
/// As `fal_rt_realtime_free`.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_realtime_free_nowait(conn: *mut fal_rt_realtime) {
    boundary_value((), || free_impl(conn, false))
}
