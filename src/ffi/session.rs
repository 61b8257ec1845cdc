//! Pull-style realtime sessions (`fal_rt_session_*`): explicit connect, then
//! blocking `send` and `recv` with a timeout, for hosts that cannot take
//! callbacks on foreign threads.

use super::client::{read_connect_options, ConnectOptions};
use super::gate::Gate;
use super::realtime::{fal_rt_stats, STATS_V1_SIZE};
use super::*;
use crate::session::{RealtimeReceiver, RealtimeSender};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A pull-style realtime session: connected at creation, then `send` and
/// `recv`. No background task and no thread hop: each session has its own
/// single-threaded event loop, driven by the thread that calls it, so the
/// calling thread reads and writes the socket itself.
///
/// Once the session has ended (the server's idle timeout, `Unauthorized`, a
/// close frame, a lost connection, an oversized message, no answer to
/// keepalive pings, or `fal_rt_session_close`), the library closes the socket
/// and every later send fails at once with `FAL_RT_CLOSED`, its message
/// saying why. Keepalive pings go out while a `fal_rt_session_recv` waits.
///
/// Thread-safety: one thread may block in `fal_rt_session_recv` while others
/// call `fal_rt_session_send*` (sends are serialised, as are receives). Every
/// call except `fal_rt_session_free` blocks, so none may be made from inside a
/// callback of this library (`FAL_RT_WOULD_BLOCK_IN_CALLBACK`).
/// `fal_rt_session_free` must not race with other calls on the same handle.
pub struct fal_rt_session {
    /// The session's own current-thread runtime (its socket is registered with
    /// it). Taken out on free, so it is never dropped on a runtime thread.
    rt: std::sync::Mutex<Option<Arc<tokio::runtime::Runtime>>>,
    tx: Arc<Mutex<RealtimeSender>>,
    rx: Mutex<RealtimeReceiver>,
    options_gate: Option<Arc<Gate>>,
    dead: std::sync::atomic::AtomicBool,
    /// `fal_rt_session_interrupt` and `recv`'s no-wait first try.
    wait: PullWait,
}

impl Handle for fal_rt_session {
    fn dead(&self) -> &std::sync::atomic::AtomicBool {
        &self.dead
    }
}

/// Release the option callbacks of a failed connect, waiting for a token
/// provider call still running when this thread may block, unless the
/// connect was cancelled (`FAL_RT_INTERRUPTED` returns at once: the
/// finalizer then runs when that call returns, on its thread).
pub(crate) fn release_failed(opts: &ConnectOptions, failure: &Failure) {
    opts.release();
    if let Some(g) = &opts.gate {
        if can_block() && !failure.is(FAL_RT_INTERRUPTED) {
            g.wait_finalized();
        }
    }
}

/// Connect a pull-style session to `app` (blocks until the socket is open or
/// the open timeout expires). `options` may be NULL; `connection_key` and
/// `throttle_ms` do not apply. On success writes the handle to `*out`; free it
/// with `fal_rt_session_free`. Errors: `FAL_RT_INVALID_ARGUMENT`,
/// `FAL_RT_CREDENTIALS`, `FAL_RT_AUTH`, `FAL_RT_HTTP`, `FAL_RT_TOKEN_PROVIDER`,
/// `FAL_RT_CONNECT`, `FAL_RT_TLS`, `FAL_RT_TIMEOUT`, `FAL_RT_WOULD_BLOCK_*`.
///
/// `FAL_RT_INTERRUPTED` (no `out_error`) when `options->cancel` was cancelled.
///
/// Ownership of `options->callbacks_user_data` passes to the library as soon
/// as this is called; its finalizer runs exactly once, also on failure: then
/// before this returns, except after `FAL_RT_INTERRUPTED` while the token
/// provider still runs (then when it returns, on its thread).
///
/// # Safety
/// `client` is NULL or valid; `app` is NULL or NUL-terminated; `options` is
/// NULL or a valid struct; `out` and `out_error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_connect(
    client: *const fal_rt_client,
    app: *const c_char,
    options: *const fal_rt_connect_options,
    out: *mut *mut fal_rt_session,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let opts = read_connect_options(options)?;
        let connect = || -> FfiResult<(crate::RealtimeSession, tokio::runtime::Runtime)> {
            let client = &*not_null(client, "client")?;
            let app = str_arg(app, "app")?;
            not_null(out, "out")?;
            check_can_block()?;
            let rt = session_runtime()?;
            match rt.block_on(opts.cancellable(client.client.connect(app, opts.options.clone()))) {
                Some(Ok(session)) => Ok((session, rt)),
                failed => {
                    // Dropping the runtime waits for its blocking-pool
                    // threads (a name lookup, a token provider): drop it on
                    // a helper thread (counted until they ended) and return.
                    crate::runtime::spawn_thread(move || drop(rt));
                    match failed {
                        Some(Err(e)) => Err(e.into()),
                        _ => Err(interrupted()),
                    }
                }
            }
        };
        match connect() {
            Ok((session, rt)) => {
                let (tx, rx) = session.split();
                put(
                    out,
                    Box::into_raw(Box::new(fal_rt_session {
                        rt: std::sync::Mutex::new(Some(Arc::new(rt))),
                        tx: Arc::new(Mutex::new(tx)),
                        rx: Mutex::new(rx),
                        options_gate: opts.gate.clone(),
                        dead: Default::default(),
                        wait: PullWait::default(),
                    })),
                );
                Ok(())
            }
            Err(f) => {
                release_failed(&opts, &f);
                Err(f)
            }
        }
    })
}

/// A new session runtime: single-threaded, timers and I/O enabled.
fn session_runtime() -> FfiResult<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all();
    crate::runtime::with_hooks(b).build().map_err(|e| {
        Failure::new(
            FAL_RT_INTERNAL,
            &format!("could not start the session's event loop: {e}"),
        )
    })
}

impl fal_rt_session {
    /// Run `fut` on the session's runtime from this (blocking-allowed) thread.
    /// Several threads may do so at once: one drives the socket, the others
    /// wait for their own futures.
    fn block_on<F: std::future::Future>(&self, fut: F) -> FfiResult<F::Output> {
        check_can_block()?;
        // `Runtime::block_on` (not `Handle::block_on`): only it drives the
        // socket and the timers of a current-thread runtime; concurrent calls
        // from several threads share the drivers.
        Ok(self.runtime()?.block_on(fut))
    }

    /// [`Self::block_on`] for a call that usually finishes at once (a send):
    /// polled once on this thread first, without `block_on`
    /// ([`poll_now`](crate::runtime::poll_now)).
    fn block_on_soon<F: std::future::Future>(&self, fut: F) -> FfiResult<F::Output> {
        check_can_block()?;
        let rt = self.runtime()?;
        let mut fut = std::pin::pin!(fut);
        match crate::runtime::poll_now(rt.handle(), fut.as_mut()) {
            std::task::Poll::Ready(out) => Ok(out),
            std::task::Poll::Pending => Ok(rt.block_on(fut)),
        }
    }

    fn runtime(&self) -> FfiResult<Arc<tokio::runtime::Runtime>> {
        let rt = self.rt.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rt.ok_or_else(|| Failure::new(FAL_RT_NOT_CONNECTED, "the session was freed"))
    }

    /// The next item, waiting at most `limit`: `None` when interrupted,
    /// `Some(None)` when the limit expired. An item that is there already (a
    /// frame read with an earlier one, the pipelined case) is taken by
    /// polling once on this thread, without `block_on`, the interrupt's
    /// waiter or the timeout's timer; a pending interrupt skips that and
    /// wins, and after a `recv` that had to wait it is skipped too (see
    /// `PullWait`).
    fn recv(
        &self,
        limit: Option<Duration>,
    ) -> FfiResult<Option<Option<Option<crate::Result<crate::Message>>>>> {
        check_can_block()?;
        let rt = self.runtime()?;
        // Cancel-safe: a frame half read stays buffered for the next poll.
        match self
            .wait
            .recv(rt.handle(), limit, || async { self.rx.lock().await.recv().await })
        {
            Ok(item) => Ok(Some(Some(item))),
            Err(wait) => Ok(rt.block_on(wait)),
        }
    }
}

unsafe fn session_send(s: *const fal_rt_session, bytes: FfiResult<Bytes>) -> FfiResult {
    let s = live(s, "session")?;
    let bytes = bytes?;
    s.block_on_soon(async { s.tx.lock().await.send_msgpack(bytes).await })??;
    Ok(())
}

/// Send an input given as msgpack bytes (through the custom encoder, if any);
/// blocks until it is written. Errors: `FAL_RT_ENCODE` (not exactly one
/// well-formed msgpack value, an empty buffer included, or a failing
/// encoder), `FAL_RT_CLOSED` (the session has ended; the message says why),
/// `FAL_RT_CONNECT` (socket failure), `FAL_RT_NOT_CONNECTED` (freed inside a
/// running callback), `FAL_RT_WOULD_BLOCK_*`.
///
/// # Safety
/// `session` is NULL or valid; `data` points to `len` readable bytes; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_send(
    session: *const fal_rt_session,
    data: *const u8,
    len: usize,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        session_send(session, bytes_arg(data, len, "data").map(Bytes::copy_from_slice))
    })
}

/// Send an input given as JSON text (NUL-terminated UTF-8), converted to
/// msgpack by the library. `FAL_RT_ENCODE` for invalid JSON; otherwise as
/// `fal_rt_session_send`.
///
/// # Safety
/// `session` is NULL or valid; `json` is NULL or NUL-terminated; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_send_json(
    session: *const fal_rt_session,
    json: *const c_char,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let bytes = str_arg(json, "json").and_then(|j| Ok(crate::codec::json_to_msgpack(j)?));
        session_send(session, bytes)
    })
}

/// Wait up to `timeout_ms` (`FAL_RT_WAIT_FOREVER` = -1: no limit; 0: poll;
/// below -1: `FAL_RT_INVALID_ARGUMENT`) for the next result. Returns:
/// * `FAL_RT_OK`: a result, written to `*out_message` (owned; free it with `fal_rt_message_free`);
/// * `FAL_RT_TIMEOUT_EXPIRED`: nothing arrived in time (call again);
/// * `FAL_RT_END`: the session ended cleanly (normal close or the server's
///   idle timeout), and on every call after any end;
/// * an error code (`FAL_RT_SERVER`, `FAL_RT_AUTH`, `FAL_RT_CLOSED`,
///   `FAL_RT_DECODE`, `FAL_RT_TIMEOUT` for a dead peer, ...) with details in
///   `*out_error`. After `FAL_RT_SERVER` and `FAL_RT_DECODE` the session may
///   still deliver results; after the others it has ended.
///
/// * `FAL_RT_INTERRUPTED`: `fal_rt_session_interrupt` was called while it
///   waited, or before it (once per interrupt); the session goes on.
///
/// `out_error` is not written for `FAL_RT_TIMEOUT_EXPIRED`, `FAL_RT_END` and
/// `FAL_RT_INTERRUPTED`.
///
/// # Safety
/// `session` is NULL or valid; `out_message` and `out_error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_recv(
    session: *const fal_rt_session,
    timeout_ms: i32,
    out_message: *mut *mut fal_rt_message,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let s = live(session, "session")?;
        not_null(out_message, "out_message")?;
        let limit = timeout_of(timeout_ms)?;
        let got = s.recv(limit)?;
        match got.ok_or_else(interrupted)? {
            None => Err(quiet(FAL_RT_TIMEOUT_EXPIRED)),
            Some(None) => Err(quiet(FAL_RT_END)),
            Some(Some(Err(e))) => Err(e.into()),
            Some(Some(Ok(msg))) => {
                put(out_message, Box::into_raw(Box::new(fal_rt_message { msg })));
                Ok(())
            }
        }
    })
}

/// Wake a `fal_rt_session_recv` waiting on this session from any thread: it
/// returns `FAL_RT_INTERRUPTED` and the session goes on (nothing is lost).
/// When no `recv` waits, the next one returns `FAL_RT_INTERRUPTED` at once
/// (interrupts do not add up: one is kept). Never blocks, so it may be called
/// from any thread, also inside callbacks and concurrently with the other
/// calls on the session (not with `fal_rt_session_free`). For hosts that
/// cancel a wait (Go's `context`, .NET's `CancellationToken`) without
/// polling with short timeouts.
///
/// # Safety
/// `session` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_interrupt(session: *const fal_rt_session) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let s = live(session, "session")?;
        s.wait.interrupt();
        Ok(())
    })
}

/// Close the session with code 1000 (blocks until the close frame is
/// written). Results already on the way may still be received; then `recv`
/// returns `FAL_RT_END`.
///
/// # Safety
/// `session` is NULL or valid; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_close(
    session: *const fal_rt_session,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let s = live(session, "session")?;
        s.block_on(async { s.tx.lock().await.close().await })??;
        Ok(())
    })
}

/// Counters of the session, written to `*out_stats` (set its `struct_size` first).
///
/// # Safety
/// `session` is NULL or valid; `out_stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_stats(
    session: *const fal_rt_session,
    out_stats: *mut fal_rt_stats,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let s = live(session, "session")?;
        not_null(out_stats, "out_stats")?;
        let stats = if let Ok(tx) = s.tx.try_lock() {
            tx.stats()
        } else if let Ok(rx) = s.rx.try_lock() {
            rx.stats()
        } else {
            check_can_block()?;
            s.tx.blocking_lock().stats()
        };
        write_versioned(out_stats, "out_stats", STATS_V1_SIZE, stats.into())
    })
}

/// Free a session: close it with code 1000 if it is still open (waiting at
/// most 2 s; inside a callback the close is sent in the background), then
/// release it. Accepts NULL. The option callbacks' finalizer has run when this
/// returns (from a callback: when the callback returns). Outside callbacks the
/// pointer must not be used again; inside one it stays readable until the
/// callback returns, and calls on it return `FAL_RT_NOT_CONNECTED`.
///
/// # Safety
/// `session` is NULL or a handle not freed before; no other thread uses it during the call.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_session_free(session: *mut fal_rt_session) {
    boundary_value((), || {
        if session.is_null() || !retire(session) {
            return;
        }
        let s = &*session;
        if let Some(g) = &s.options_gate {
            g.close();
        }
        let tx = s.tx.clone();
        let close = async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), async { tx.lock().await.close().await }).await;
        };
        let rt = s.rt.lock().unwrap_or_else(|p| p.into_inner()).take();
        if can_block() {
            if let Some(g) = &s.options_gate {
                g.wait_finalized();
            }
            if let Some(rt) = rt {
                rt.block_on(close);
            }
        } else if let Some(rt) = rt {
            // A runtime may not be driven or dropped on a runtime thread:
            // close and drop it on a thread of its own.
            crate::runtime::spawn_thread(move || {
                rt.block_on(close);
            });
        }
        release(session);
    })
}
