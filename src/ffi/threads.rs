//! Process-wide thread hooks (`fal_rt_set_thread_hooks`) for hosts that must
//! attach foreign threads (Mono, .NET, JNI), the count of the library's
//! threads, and cancel tokens for connect calls (`fal_rt_cancel_token_*`).

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// A thread hook: called with `user_data` on a thread of the library (see
/// `fal_rt_set_thread_hooks`). Keep it short and do not call blocking
/// functions of this library from it.
pub type fal_rt_thread_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Set the process-wide thread hooks: `on_start` (or NULL) runs first on
/// every thread the library starts, before it runs any callback of yours,
/// and `on_stop` (or NULL) runs last on it, after its last callback, before
/// it exits. That is every thread the library starts: the runtime's worker
/// threads (`fal-realtime-worker`) and blocking-pool threads (token
/// providers), the blocking-pool threads of sessions, and the helper threads
/// (`fal-realtime-helper`) that close and stop things in the background.
/// Other threads can call you too, unhooked: your own threads inside a
/// library call (sessions' `recv`, encoders), and the threads of a tokio
/// runtime that is not the library's: objects connected from inside one (a
/// Rust host calling the C door from its async code) run their tasks and
/// callbacks there. Hosts whose
/// managed runtime must attach foreign threads attach in `on_start` and
/// detach in `on_stop` (Mono's `mono_thread_attach` / `mono_thread_detach`,
/// JNI's `AttachCurrentThread` / `DetachCurrentThread`).
///
/// Call it before the first client (or when `fal_rt_thread_count()` is 0):
/// while threads of the library run it returns `FAL_RT_ALREADY_SET` and
/// nothing changes, so that every thread stops with the hooks it started
/// with. NULL for both removes the hooks. `user_data` must be usable from any
/// thread until the hooks are replaced.
///
/// The library's threads end when the last client, realtime connection and
/// socket are freed and every session is freed; the next client starts them
/// again, calling `on_start`. Who waits for that:
/// * a blocking free (`fal_rt_client_free`, `fal_rt_realtime_free`,
///   `fal_rt_ws_free`) of the last object, made outside callbacks and off the
///   library's threads: after its own waits (see each free), it waits at most
///   5 s more for the threads to end, `on_stop` included; a thread held
///   longer (a token provider of a failed or cancelled connect that still
///   blocks, a callback of another object that does not return) ends in the
///   background when it is released;
/// * any other last free (`*_free_nowait`, inside a callback, on a runtime
///   thread): nobody; they end in the background right after the calls still
///   running on them return (a close that free sent goes out first, for at
///   most 2 s).
///
/// Before unloading the library (or exiting with threads of it still
/// running), wait until `fal_rt_thread_count()` returns 0. Rust and Python
/// users of the same process (also Rust code that connected from a callback,
/// on the library's threads) keep the runtime for the process's life: then
/// its threads never end.
///
/// # Safety
/// `on_start` and `on_stop` are NULL or functions callable from any thread;
/// `user_data` is valid for them.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_set_thread_hooks(
    on_start: fal_rt_thread_fn,
    on_stop: fal_rt_thread_fn,
    user_data: *mut c_void,
) -> fal_rt_result {
    boundary_value(fal_rt_result::FAL_RT_PANIC, || {
        let ud = UserData(user_data);
        let hook = |f: fal_rt_thread_fn| -> Option<crate::runtime::Hook> {
            f.map(|f| {
                Arc::new(move || {
                    let ud = ud;
                    // SAFETY: the caller's hook and user_data (see the contract above).
                    unsafe { f(ud.0) }
                }) as crate::runtime::Hook
            })
        };
        if crate::runtime::set_thread_hooks(hook(on_start), hook(on_stop)) {
            fal_rt_result::FAL_RT_OK
        } else {
            fal_rt_result::FAL_RT_ALREADY_SET
        }
    })
}

/// The number of the library's threads running now (see
/// `fal_rt_set_thread_hooks`): a thread counts from before `on_start` until
/// it has exited, after `on_stop` (helper threads until they are joined,
/// which this call does for those that ended). 0 before the first client,
/// and once everything was freed and the threads ended (when a blocking last
/// free returns, or soon after any other): then no code of the library runs
/// and none will until the next client, so it may be unloaded.
#[no_mangle]
pub extern "C" fn fal_rt_thread_count() -> u32 {
    boundary_value(0, || {
        u32::try_from(crate::runtime::live_threads()).unwrap_or(u32::MAX)
    })
}

pub(crate) struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelState {
    /// Resolves once cancelled (at once if it already is).
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// A cancel token for blocking connect calls (`fal_rt_session_connect`,
/// `fal_rt_ws_connect`): put it in `fal_rt_connect_options.cancel`, and
/// `fal_rt_cancel_token_cancel` from another thread makes the connect
/// return `FAL_RT_INTERRUPTED` at once (nothing is connected). It does not
/// wait for a token provider call or a name lookup still running: they end
/// on their library thread, and then the options' finalizer runs there (else
/// it runs before the connect returns, as for any failed connect). Once cancelled it
/// stays cancelled: a later connect with it returns `FAL_RT_INTERRUPTED`
/// at once. One token may serve several calls at a time.
///
/// Thread-safe: `fal_rt_cancel_token_cancel` may be called from any thread
/// (also inside callbacks; it never blocks) while connects use it.
/// `fal_rt_cancel_token_free` must not race with other uses.
pub struct fal_rt_cancel_token {
    pub(crate) state: Arc<CancelState>,
}

/// Create a cancel token (not cancelled) at `*out`; free it with `fal_rt_cancel_token_free`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_cancel_token_new(out: *mut *mut fal_rt_cancel_token) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        not_null(out, "out")?;
        let t = fal_rt_cancel_token {
            state: Arc::new(CancelState {
                cancelled: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        };
        put(out, Box::into_raw(Box::new(t)));
        Ok(())
    })
}

/// Cancel: every connect using the token returns `FAL_RT_INTERRUPTED` (those
/// that already connected are not affected). Idempotent; never blocks.
///
/// # Safety
/// `token` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_cancel_token_cancel(token: *const fal_rt_cancel_token) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let t = &*not_null(token, "token")?;
        t.state.cancelled.store(true, Ordering::Release);
        t.state.notify.notify_waiters();
        Ok(())
    })
}

/// Whether the token was cancelled (false for NULL).
///
/// # Safety
/// `token` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_cancel_token_is_cancelled(token: *const fal_rt_cancel_token) -> bool {
    boundary_value(false, || {
        token
            .as_ref()
            .is_some_and(|t| t.state.cancelled.load(Ordering::Acquire))
    })
}

/// Free a cancel token. Accepts NULL. Free it after the connects that use
/// it returned, and not while another thread cancels it.
///
/// # Safety
/// `token` is NULL or a token not freed before, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_cancel_token_free(token: *mut fal_rt_cancel_token) {
    boundary_value((), || {
        if !token.is_null() {
            drop(Box::from_raw(token));
        }
    })
}
