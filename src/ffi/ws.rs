//! Raw WebSockets (`fal_rt_ws_*`): the same URL and auth rules as realtime
//! connections, any path, text and binary frames, no codec. Frames reach C
//! through callbacks, or through a blocking `fal_rt_ws_recv` when no handler is given.

use super::client::read_connect_options;
use super::gate::{FreeFn, Gate};
use super::realtime::{fal_rt_stats, STATS_V1_SIZE};
use super::session::release_failed;
use super::*;
use crate::codec::Frame;
use crate::ws::{WsOptions, WsReceiver, WsSender};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex, Notify};

/// The callbacks of a raw WebSocket. NULL callbacks are skipped.
///
/// Threads: every callback runs on a runtime worker thread, never
/// concurrently for one socket. Pointer arguments are borrowed for the call.
/// Callbacks may call `fal_rt_ws_send_*`, `fal_rt_ws_close` and
/// `fal_rt_ws_free` (deferred); blocking calls fail there with
/// `FAL_RT_WOULD_BLOCK_IN_CALLBACK`.
///
/// Ownership: `user_data` passes to the library when `fal_rt_ws_connect` is
/// called with this struct: `free_user_data` (if set) is called exactly once,
/// when no callback can run any more (also when the connect fails).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct fal_rt_ws_handler {
    /// `sizeof(fal_rt_ws_handler)`.
    pub struct_size: u32,
    /// Passed first to every callback; must be usable from the runtime's threads.
    pub user_data: *mut c_void,
    /// A data frame: `data`/`len` (text frames: UTF-8, NOT NUL-terminated; `is_text` true).
    pub on_message:
        Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize, is_text: bool)>,
    /// An error: an abnormal close (with its close code), a lost connection, a failed send.
    pub on_error: Option<unsafe extern "C" fn(user_data: *mut c_void, error: *const fal_rt_error)>,
    /// The socket ended (called once, last): `close_code` is 1000 for a normal
    /// close, else the abnormal code (e.g. 1006 when the connection dropped).
    pub on_close: Option<unsafe extern "C" fn(user_data: *mut c_void, close_code: u16)>,
    /// Finalizer of `user_data`, or NULL.
    pub free_user_data: fal_rt_free_fn,
}

struct WsCallbacks {
    h: fal_rt_ws_handler,
    ud: UserData,
    gate: Arc<Gate>,
}

// SAFETY: plain C function pointers; user_data is wrapped in UserData.
unsafe impl Send for WsCallbacks {}
unsafe impl Sync for WsCallbacks {}

impl WsCallbacks {
    fn message(&self, frame: &Frame) {
        if let (Some(f), Some(_pass)) = (self.h.on_message, self.gate.enter()) {
            let b = frame.as_bytes();
            // SAFETY: the C caller's callback; `frame` outlives the call.
            unsafe { f(self.ud.0, b.as_ptr(), b.len(), matches!(frame, Frame::Text(_))) };
        }
    }

    fn error(&self, e: &crate::Error) {
        if let (Some(f), Some(_pass)) = (self.h.on_error, self.gate.enter()) {
            let view = fal_rt_error::from_core(e);
            // SAFETY: as above.
            unsafe { f(self.ud.0, &view) };
        }
    }

    fn close(&self, code: u16) {
        if let (Some(f), Some(_pass)) = (self.h.on_close, self.gate.enter()) {
            // SAFETY: as above.
            unsafe { f(self.ud.0, code) };
        }
    }
}

enum WsCmd {
    Send(Frame),
    /// A close; the lease (of a free that does not wait) keeps the runtime
    /// until the close frame is written.
    Close(u16, String, Option<crate::runtime::Lease>),
}

/// A raw WebSocket connection.
///
/// Thread-safety: `send_*` and `close` may be called from any thread
/// concurrently, also from inside callbacks (there they are queued, in order,
/// and failures go to `on_error`; elsewhere they block until the frame is
/// written). `fal_rt_ws_free` must not race with other calls on the same handle.
pub struct fal_rt_ws {
    tx: Arc<Mutex<WsSender>>,
    /// Frames queued from runtime threads (callbacks), written in order by a task.
    queue: mpsc::UnboundedSender<WsCmd>,
    /// Pull mode (no handler): the receiving half.
    rx: Option<Mutex<WsReceiver>>,
    /// Callback mode: stops the reader task.
    stop: Arc<Notify>,
    handler_gate: Option<Arc<Gate>>,
    options_gate: Option<Arc<Gate>>,
    dead: std::sync::atomic::AtomicBool,
    /// How the socket ended (code and reason), without locking a half.
    close_watch: crate::ws::CloseWatch,
    /// `fal_rt_ws_interrupt` and `recv`'s no-wait first try.
    wait: PullWait,
    /// Keeps the library's threads (last: dropped after the socket).
    _lease: crate::runtime::Lease,
}

impl Handle for fal_rt_ws {
    fn dead(&self) -> &std::sync::atomic::AtomicBool {
        &self.dead
    }
}

async fn read_loop(mut rx: WsReceiver, cbs: Arc<WsCallbacks>, stop: Arc<Notify>) {
    let mut code = 1000;
    loop {
        let next = tokio::select! {
            // Freed: no more callbacks (the gate is closed anyway).
            _ = stop.notified() => return,
            next = rx.recv() => next,
        };
        match next {
            Some(Ok(frame)) => cbs.message(&frame),
            Some(Err(e)) => {
                code = e.close_code().unwrap_or(1006);
                cbs.error(&e);
            }
            None => break,
        }
    }
    cbs.close(code);
}

async fn write_loop(
    mut queue: mpsc::UnboundedReceiver<WsCmd>,
    tx: Arc<Mutex<WsSender>>,
    cbs: Option<Arc<WsCallbacks>>,
) {
    while let Some(cmd) = queue.recv().await {
        let mut sink = tx.lock().await;
        let res = match cmd {
            WsCmd::Send(f) => sink.send(f).await,
            WsCmd::Close(code, reason, lease) => {
                let res = match tokio::time::timeout(Duration::from_secs(2), sink.close_with(code, &reason))
                    .await
                {
                    Ok(res) => res,
                    Err(_) => Ok(()),
                };
                drop(lease);
                res
            }
        };
        if let (Err(e), Some(cbs)) = (res, &cbs) {
            cbs.error(&e);
        }
    }
}

/// Open a raw WebSocket to `app` with the same URL and auth rules as realtime
/// connections (default path: none, i.e. `/{app}`; set `options->path`). Blocks
/// until the socket is open or the open timeout expires.
///
/// With a `handler`, frames go to its callbacks (which may start before this
/// returns; `*out` is written before the first one, so `out` may point into
/// your user_data). With `handler` NULL, read frames with `fal_rt_ws_recv`.
/// `options` may be NULL; only `path`, `max_buffering`, `header_auth`,
/// `token_provider` and `token_expiration_ms` apply.
///
/// `FAL_RT_INTERRUPTED` (no `out_error`) when `options->cancel` was cancelled.
///
/// Ownership of `handler->user_data` and `options->callbacks_user_data` passes
/// to the library as soon as this is called; their finalizers run exactly
/// once, also on failure: then before this returns, except the options' one
/// after `FAL_RT_INTERRUPTED` while the token provider still runs (then when
/// it returns, on its thread).
///
/// # Safety
/// `client` is NULL or valid; `app` is NULL or NUL-terminated; `options` and
/// `handler` are NULL or valid structs; `out` and `out_error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_connect(
    client: *const fal_rt_client,
    app: *const c_char,
    options: *const fal_rt_connect_options,
    handler: *const fal_rt_ws_handler,
    out: *mut *mut fal_rt_ws,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        // Both structs are read first: each one that can be read is owned
        // from here on, and released (its finalizer run) if the call fails.
        let cbs = if handler.is_null() {
            Ok(None)
        } else {
            read_versioned(handler, "handler", std::mem::size_of::<fal_rt_ws_handler>()).map(
                |h: fal_rt_ws_handler| {
                    Some(Arc::new(WsCallbacks {
                        h,
                        ud: UserData(h.user_data),
                        gate: Arc::new(Gate::new(h.free_user_data.map(|f| f as FreeFn), h.user_data)),
                    }))
                },
            )
        };
        let release_handler = |cbs: &Option<Arc<WsCallbacks>>| {
            if let Some(c) = cbs {
                c.gate.close();
                if can_block() {
                    c.gate.wait_finalized();
                }
            }
        };
        let (cbs, opts) = match (cbs, read_connect_options(options)) {
            (Ok(c), Ok(o)) => (c, o),
            (Err(f), Ok(o)) => {
                release_failed(&o, &f);
                return Err(f);
            }
            (Ok(c), Err(f)) => {
                release_handler(&c);
                return Err(f);
            }
            (Err(f), Err(_)) => return Err(f),
        };
        let connect = || -> FfiResult<crate::WsConnection> {
            let client = &*not_null(client, "client")?;
            let app = str_arg(app, "app")?;
            not_null(out, "out")?;
            let o = &opts.options;
            let wopts = WsOptions {
                path: o.path.clone(),
                use_jwt: o.use_jwt,
                max_buffering: o.max_buffering,
                token_provider: o.token_provider.clone(),
                token_expiration: o.token_expiration,
            };
            Ok(block_on(opts.cancellable(client.client.ws_connect(app, wopts)))?
                .ok_or_else(interrupted)??)
        };
        let ws = match connect() {
            Ok(ws) => ws,
            Err(f) => {
                release_failed(&opts, &f);
                release_handler(&cbs);
                return Err(f);
            }
        };
        let (sink, stream) = ws.split();
        let close_watch = sink.close_watch();
        let tx = Arc::new(Mutex::new(sink));
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let rt = crate::runtime::handle();
        rt.spawn(write_loop(queue_rx, tx.clone(), cbs.clone()));
        let stop = Arc::new(Notify::new());
        let handle = Box::into_raw(Box::new(fal_rt_ws {
            tx,
            queue,
            rx: None,
            stop: stop.clone(),
            handler_gate: cbs.as_ref().map(|c| c.gate.clone()),
            options_gate: opts.gate.clone(),
            dead: Default::default(),
            close_watch,
            wait: PullWait::default(),
            _lease: crate::runtime::lease(),
        }));
        match cbs {
            Some(cbs) => {
                // Written before the reader starts: callbacks see `*out`. The
                // handle is not touched after this (a callback may free it).
                put(out, handle);
                rt.spawn(read_loop(stream, cbs, stop));
            }
            None => {
                (*handle).rx = Some(Mutex::new(stream));
                put(out, handle);
            }
        }
        Ok(())
    })
}

unsafe fn ws_send(ws: *const fal_rt_ws, frame: FfiResult<Frame>) -> FfiResult {
    let w = live(ws, "ws")?;
    let frame = frame?;
    if can_block() {
        block_on_soon(async { w.tx.lock().await.send(frame).await })??;
    } else {
        w.queue
            .send(WsCmd::Send(frame))
            .map_err(|_| Failure::new(FAL_RT_NOT_CONNECTED, "the socket was freed"))?;
    }
    Ok(())
}

/// Send a text frame (`text`: NUL-terminated UTF-8). Outside callbacks, blocks
/// until the frame is written and returns the failure (`FAL_RT_CLOSED`,
/// `FAL_RT_CONNECT`); inside callbacks, queues it (in order) and reports
/// failures to `on_error`.
///
/// # Safety
/// `ws` is NULL or valid; `text` is NULL or NUL-terminated; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_send_text(
    ws: *const fal_rt_ws,
    text: *const c_char,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        ws_send(ws, str_arg(text, "text").map(|t| Frame::Text(t.to_string())))
    })
}

/// Send a binary frame of `len` bytes at `data` (copied once). As `fal_rt_ws_send_text`.
///
/// # Safety
/// `ws` is NULL or valid; `data` points to `len` readable bytes; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_send_binary(
    ws: *const fal_rt_ws,
    data: *const u8,
    len: usize,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        ws_send(
            ws,
            bytes_arg(data, len, "data").map(|d| Frame::Binary(Bytes::copy_from_slice(d))),
        )
    })
}

/// Close the socket with code 1000 (outside callbacks: blocks until the close
/// frame is written; inside: queued). The server's reply ends the socket:
/// `on_close(1000)`, or `FAL_RT_END` from `fal_rt_ws_recv`. As
/// `fal_rt_ws_close_with(ws, 1000, NULL, 0, out_error)`.
///
/// # Safety
/// `ws` is NULL or valid; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_close(
    ws: *const fal_rt_ws,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || ws_close(ws, 1000, ""))
}

unsafe fn ws_close(ws: *const fal_rt_ws, code: u16, reason: &str) -> FfiResult {
    let w = live(ws, "ws")?;
    WsSender::check_close(code, reason)?;
    if can_block() {
        block_on(async { w.tx.lock().await.close_with(code, reason).await })??;
    } else {
        w.queue
            .send(WsCmd::Close(code, reason.to_string(), None))
            .map_err(|_| Failure::new(FAL_RT_NOT_CONNECTED, "the socket was freed"))?;
    }
    Ok(())
}

/// Close the socket with `code` and a reason of `reason_len` bytes at
/// `reason` (UTF-8, not NUL-terminated; NULL only with `reason_len` 0).
/// `code` must be one a peer may send (RFC 6455 §7.4): 1000-1003, 1007-1014
/// or 3000-4999, and the reason at most 123 bytes (it must fit in a control
/// frame): else `FAL_RT_INVALID_ARGUMENT` and nothing is sent;
/// `FAL_RT_INVALID_UTF8` for a reason that is not UTF-8. Only the first
/// close frame goes out; later sends fail with `FAL_RT_CLOSED`. Outside
/// callbacks it blocks until the close frame is written; inside them it is
/// queued after the frames sent before it. The server's reply ends the
/// socket (`on_close` with the reply's code, or `FAL_RT_END` from
/// `fal_rt_ws_recv`); then `fal_rt_ws_close_code` / `fal_rt_ws_close_reason`
/// tell how it ended.
///
/// # Safety
/// `ws` is NULL or valid; `reason` points to `reason_len` readable bytes;
/// `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_close_with(
    ws: *const fal_rt_ws,
    code: u16,
    reason: *const u8,
    reason_len: usize,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let bytes = bytes_arg(reason, reason_len, "reason")?;
        let reason = std::str::from_utf8(bytes)
            .map_err(|_| Failure::new(FAL_RT_INVALID_UTF8, "the argument `reason` is not valid UTF-8"))?;
        ws_close(ws, code, reason)
    })
}

/// How the socket ended, written to `*out_code`: the code of the server's
/// close frame (its reply to yours, or its own close; 1005 for a close frame
/// without a code), or 1006 when it ended without one (the connection
/// dropped, the peer stopped answering, no reply to your close within 1 s);
/// 0 while the socket has not ended. Known once `on_close` ran or
/// `fal_rt_ws_recv` returned `FAL_RT_END` or an error that ended it. Never blocks.
///
/// # Safety
/// `ws` is NULL or valid; `out_code` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_close_code(ws: *const fal_rt_ws, out_code: *mut u16) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let w = live(ws, "ws")?;
        not_null(out_code, "out_code")?;
        put(out_code, w.close_watch.get().map_or(0, |(c, _)| c));
        Ok(())
    })
}

/// The reason of the server's close frame, as a new NUL-terminated UTF-8
/// string at `*out_reason` (free it with `fal_rt_string_free`; `""` when the
/// frame had none or the socket ended without one), or NULL while the socket
/// has not ended (see `fal_rt_ws_close_code`). Never blocks.
///
/// # Safety
/// `ws` is NULL or valid; `out_reason` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_close_reason(
    ws: *const fal_rt_ws,
    out_reason: *mut *mut c_char,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let w = live(ws, "ws")?;
        not_null(out_reason, "out_reason")?;
        let reason = w
            .close_watch
            .get()
            .map_or(std::ptr::null_mut(), |(_, r)| c_string_lossy(&r).into_raw());
        put(out_reason, reason);
        Ok(())
    })
}

/// Pull mode only (else `FAL_RT_WRONG_MODE`): wake a `fal_rt_ws_recv`
/// waiting on this socket from any thread: it returns `FAL_RT_INTERRUPTED`
/// and the socket goes on (nothing is lost). When no `recv` waits, the next
/// one returns `FAL_RT_INTERRUPTED` at once (one interrupt is kept). Never
/// blocks: callable from any thread, also inside callbacks and concurrently
/// with the other calls on the socket (not with `fal_rt_ws_free`).
///
/// # Safety
/// `ws` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_interrupt(ws: *const fal_rt_ws) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let w = live(ws, "ws")?;
        if w.rx.is_none() {
            return Err(Failure::new(
                FAL_RT_WRONG_MODE,
                "this socket delivers frames to its handler's callbacks",
            ));
        }
        w.wait.interrupt();
        Ok(())
    })
}

/// Pull mode only (connected without a handler; else `FAL_RT_WRONG_MODE`):
/// wait up to `timeout_ms` (`FAL_RT_WAIT_FOREVER`: no limit; below -1:
/// `FAL_RT_INVALID_ARGUMENT`) for the next data frame. Keepalive pings go out
/// while it waits; a dead peer is `FAL_RT_TIMEOUT`. After any end, sends fail
/// with `FAL_RT_CLOSED` and later calls return `FAL_RT_END`. `FAL_RT_OK` with `*out_frame` (owned; free with `fal_rt_frame_free`),
/// `FAL_RT_TIMEOUT_EXPIRED`, `FAL_RT_END` after a normal close, or an error
/// (`FAL_RT_CLOSED` with the close code) in `*out_error`, or
/// `FAL_RT_INTERRUPTED` after `fal_rt_ws_interrupt` (the socket goes on).
/// `out_error` is not written for `FAL_RT_TIMEOUT_EXPIRED`, `FAL_RT_END` and
/// `FAL_RT_INTERRUPTED`.
///
/// # Safety
/// `ws` is NULL or valid; `out_frame` and `out_error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_recv(
    ws: *const fal_rt_ws,
    timeout_ms: i32,
    out_frame: *mut *mut fal_rt_frame,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let w = live(ws, "ws")?;
        not_null(out_frame, "out_frame")?;
        let rx = w.rx.as_ref().ok_or_else(|| {
            Failure::new(
                FAL_RT_WRONG_MODE,
                "this socket delivers frames to its handler's callbacks",
            )
        })?;
        let limit = timeout_of(timeout_ms)?;
        check_can_block()?;
        let rt = crate::runtime::handle();
        let got = match w.wait.recv(&rt, limit, || async { rx.lock().await.recv().await }) {
            Ok(item) => Some(Some(item)),
            Err(wait) => block_on(wait)?,
        };
        match got.ok_or_else(interrupted)? {
            None => Err(quiet(FAL_RT_TIMEOUT_EXPIRED)),
            Some(None) => Err(quiet(FAL_RT_END)),
            Some(Some(Err(e))) => Err(e.into()),
            Some(Some(Ok(frame))) => {
                put(out_frame, Box::into_raw(Box::new(fal_rt_frame { frame })));
                Ok(())
            }
        }
    })
}

/// Counters of the socket (frames and bytes each way), written to
/// `*out_stats` (set its `struct_size` first).
///
/// # Safety
/// `ws` is NULL or valid; `out_stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_stats(
    ws: *const fal_rt_ws,
    out_stats: *mut fal_rt_stats,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let w = live(ws, "ws")?;
        not_null(out_stats, "out_stats")?;
        let stats = match w.tx.try_lock() {
            Ok(tx) => tx.stats(),
            Err(_) => {
                check_can_block()?;
                w.tx.blocking_lock().stats()
            }
        };
        write_versioned(out_stats, "out_stats", STATS_V1_SIZE, stats.into())
    })
}

/// Free a socket: close it with code 1000 if still open and release it.
/// Accepts NULL. Outside callbacks it blocks until no callback of this
/// socket runs and the finalizers ran (as long as a running callback takes),
/// then for the close (at most 2 s), and, when this was the library's last
/// object, at most 5 s more for its threads to end (see
/// `fal_rt_set_thread_hooks`); the pointer must not be used again. Inside a callback it does not block (no
/// new callback starts; the finalizers run when the running callback returns)
/// and the handle stays readable until then: calls on it return
/// `FAL_RT_NOT_CONNECTED`. See also `fal_rt_ws_free_nowait`.
///
/// # Safety
/// `ws` is NULL or a handle not freed before; no other thread uses it during the call.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_free(ws: *mut fal_rt_ws) {
    boundary_value((), || free_impl(ws, true))
}

/// Like `fal_rt_ws_free`, but never waits (for event-loop hosts whose
/// callbacks run on the thread that frees): the close frame (1000) is sent
/// in the background, and when this was the library's last object its
/// threads end in the background once the close went out (at most 2 s) and
/// the running callbacks returned. Accepts NULL.
///
/// # Safety
/// As `fal_rt_ws_free`.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_ws_free_nowait(ws: *mut fal_rt_ws) {
    boundary_value((), || free_impl(ws, false))
}

fn free_impl(ws: *mut fal_rt_ws, may_wait: bool) {
    // SAFETY: the caller hands over a handle not freed before (or freed
    // inside a callback that is still running: then `retire` says so).
    if ws.is_null() || !unsafe { retire(ws) } {
        return;
    }
    let w = unsafe { &*ws };
    let gates = [&w.handler_gate, &w.options_gate];
    for g in gates.into_iter().flatten() {
        g.close();
    }
    let wait = may_wait && can_block();
    if wait {
        for g in gates.into_iter().flatten() {
            g.wait_finalized();
        }
        let tx = w.tx.clone();
        let _ = crate::runtime::block_on(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), async { tx.lock().await.close().await }).await;
        });
    } else {
        let _ = w
            .queue
            .send(WsCmd::Close(1000, String::new(), Some(crate::runtime::lease())));
    }
    // Stores a permit if the reader is not waiting right now.
    w.stop.notify_one();
    if wait {
        // SAFETY: retired above, by this call only.
        unsafe { release(ws) };
    } else {
        // A last lease dropped here stops the runtime in the background.
        crate::runtime::without_waiting(|| unsafe { release(ws) });
    }
}
