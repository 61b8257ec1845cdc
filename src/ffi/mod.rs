//! The C ABI (`fal_rt_*`). The header `include/fal_realtime.h` is generated
//! from this module by cbindgen (see `cbindgen.toml`); the doc comments here
//! are the header's documentation.
//!
//! Rules every export follows (they are repeated in the header preamble):
//!
//! * One panic boundary (`boundary`) per export: no panic crosses into C; a
//!   caught panic returns `FAL_RT_PANIC`.
//! * Every pointer argument is null-checked (`FAL_RT_NULL_ARGUMENT`), every
//!   string is checked for UTF-8 (`FAL_RT_INVALID_UTF8`).
//! * Out-params are written only on success. The optional `out_error`
//!   (`fal_rt_error**`, may be NULL) is the exception: it is written only on
//!   failure, with an error the caller frees with `fal_rt_error_free`.
//! * Blocking calls made on a runtime thread (inside a callback) return
//!   `FAL_RT_WOULD_BLOCK_IN_CALLBACK` / `FAL_RT_WOULD_BLOCK_IN_RUNTIME` instead of blocking.

#![allow(non_camel_case_types)]

mod buffer;
mod client;
pub(crate) mod gate;
mod log;
mod realtime;
mod session;
mod threads;
mod ws;

pub use self::log::*;
pub use buffer::*;
pub use client::*;
pub use realtime::*;
pub use session::*;
pub use threads::*;
pub use ws::*;

use crate::error::{Error, ErrorKind};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Major version of the library (`FAL_RT_VERSION_MAJOR`).
pub const FAL_RT_VERSION_MAJOR: u32 = 0;
/// Minor version of the library (`FAL_RT_VERSION_MINOR`).
pub const FAL_RT_VERSION_MINOR: u32 = 1;
/// Patch version of the library (`FAL_RT_VERSION_PATCH`).
pub const FAL_RT_VERSION_PATCH: u32 = 0;
/// The version as one number, `MAJOR * 10000 + MINOR * 100 + PATCH`.
pub const FAL_RT_VERSION_NUMBER: u32 =
    FAL_RT_VERSION_MAJOR * 10000 + FAL_RT_VERSION_MINOR * 100 + FAL_RT_VERSION_PATCH;

/// A timeout meaning "wait forever" for `fal_rt_session_recv` and `fal_rt_ws_recv`.
pub const FAL_RT_WAIT_FOREVER: i32 = -1;
/// `throttle_ms` value that disables send throttling (`0` means the default, 128 ms).
pub const FAL_RT_THROTTLE_NONE: i32 = -1;

/// Result codes. Every fallible call returns one. The numbers are stable and
/// never renumbered; new codes may be added. Codes 1 to 99 are also error
/// kinds (`fal_rt_error_kind`), one per kind of the Rust core.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fal_rt_result {
    /// Success.
    FAL_RT_OK = 0,
    /// A caller-supplied argument is invalid (bad app id, `max_buffering` out of range, bad URL, ...).
    FAL_RT_INVALID_ARGUMENT = 1,
    /// No credentials are configured (set `FAL_KEY`, or pass a key or a token provider).
    FAL_RT_CREDENTIALS = 2,
    /// Authentication failed: the token endpoint refused the key, or the server answered `Unauthorized`.
    FAL_RT_AUTH = 3,
    /// The token endpoint failed with an HTTP status other than an auth failure.
    FAL_RT_HTTP = 4,
    /// The custom token provider failed.
    FAL_RT_TOKEN_PROVIDER = 5,
    /// TCP connect or WebSocket handshake failed.
    FAL_RT_CONNECT = 6,
    /// TLS failed (e.g. an untrusted certificate).
    FAL_RT_TLS = 7,
    /// The connection did not open in time (the open timeout), or the server
    /// stopped answering keepalive pings (close code 1011).
    FAL_RT_TIMEOUT = 8,
    /// The server reported an error (`x-fal-error`, e.g. `INTERNAL_ERROR`).
    FAL_RT_SERVER = 9,
    /// The connection closed abnormally (a close code other than 1000/1001, it
    /// dropped, or a message exceeded the size limit: close code 1009), or a
    /// send was made on a session or socket that has ended (the message says why).
    FAL_RT_CLOSED = 10,
    /// A frame from the server could not be decoded (the connection stays up).
    FAL_RT_DECODE = 11,
    /// An input could not be encoded (invalid JSON, bytes that are not one
    /// msgpack value, a failing custom encoder).
    FAL_RT_ENCODE = 12,
    /// The handle was freed (inside a callback that is still running), or the
    /// connection was shut down.
    FAL_RT_NOT_CONNECTED = 13,
    /// A bug or an unexpected state in this library.
    FAL_RT_INTERNAL = 14,
    /// A required pointer argument was NULL.
    FAL_RT_NULL_ARGUMENT = 100,
    /// A string argument was not valid UTF-8.
    FAL_RT_INVALID_UTF8 = 101,
    /// A blocking call was made from inside a callback of this library; it would deadlock.
    FAL_RT_WOULD_BLOCK_IN_CALLBACK = 102,
    /// A blocking call was made from a thread of the library's (or another tokio) runtime.
    FAL_RT_WOULD_BLOCK_IN_RUNTIME = 103,
    /// `recv` timed out: nothing arrived within the timeout. Not an error; call it again.
    FAL_RT_TIMEOUT_EXPIRED = 104,
    /// The session or socket ended cleanly (normal close, or the server's idle timeout): no more messages.
    FAL_RT_END = 105,
    /// A struct's `struct_size` is smaller than the first version of that struct (or 0).
    FAL_RT_BAD_STRUCT_SIZE = 106,
    /// The call does not apply to this object (e.g. `fal_rt_ws_recv` on a socket with callbacks).
    FAL_RT_WRONG_MODE = 107,
    /// Something process-wide was set already: another `log` logger owns the
    /// process (`fal_rt_set_logger`), or thread hooks cannot change while the
    /// library's threads run (`fal_rt_set_thread_hooks`). Nothing changed.
    FAL_RT_ALREADY_SET = 108,
    /// The call was interrupted: `fal_rt_session_interrupt` / `fal_rt_ws_interrupt`
    /// woke a `recv` (the session or socket goes on), or the
    /// `fal_rt_cancel_token` of a connect was cancelled (nothing was connected).
    /// Not an error: no `out_error` is written.
    FAL_RT_INTERRUPTED = 109,
    /// A panic was caught at the boundary (a bug in this library). The object may be unusable.
    FAL_RT_PANIC = 199,
}

use fal_rt_result::*;

impl fal_rt_result {
    fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => FAL_RT_INVALID_ARGUMENT,
            ErrorKind::Credentials => FAL_RT_CREDENTIALS,
            ErrorKind::Auth => FAL_RT_AUTH,
            ErrorKind::Http => FAL_RT_HTTP,
            ErrorKind::TokenProvider => FAL_RT_TOKEN_PROVIDER,
            ErrorKind::Connect => FAL_RT_CONNECT,
            ErrorKind::Tls => FAL_RT_TLS,
            ErrorKind::Timeout => FAL_RT_TIMEOUT,
            ErrorKind::Server => FAL_RT_SERVER,
            ErrorKind::Closed => FAL_RT_CLOSED,
            ErrorKind::Decode => FAL_RT_DECODE,
            ErrorKind::Encode => FAL_RT_ENCODE,
            ErrorKind::NotConnected => FAL_RT_NOT_CONNECTED,
            _ => FAL_RT_INTERNAL,
        }
    }

    fn name(code: i32) -> &'static CStr {
        match code {
            0 => c"ok",
            1 => c"invalid_argument",
            2 => c"credentials",
            3 => c"auth",
            4 => c"http",
            5 => c"token_provider",
            6 => c"connect",
            7 => c"tls",
            8 => c"timeout",
            9 => c"server",
            10 => c"closed",
            11 => c"decode",
            12 => c"encode",
            13 => c"not_connected",
            14 => c"internal",
            100 => c"null_argument",
            101 => c"invalid_utf8",
            102 => c"would_block_in_callback",
            103 => c"would_block_in_runtime",
            104 => c"timeout_expired",
            105 => c"end",
            106 => c"bad_struct_size",
            107 => c"wrong_mode",
            108 => c"already_set",
            109 => c"interrupted",
            199 => c"panic",
            _ => c"unknown",
        }
    }
}

/// The state of a callback-style realtime connection (`on_state`, `fal_rt_realtime_state`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fal_rt_state {
    /// Created, nothing sent yet.
    FAL_RT_STATE_IDLE = 0,
    /// Fetching a token.
    FAL_RT_STATE_AUTHENTICATING = 1,
    /// Opening the WebSocket.
    FAL_RT_STATE_CONNECTING = 2,
    /// Open: sends go out (throttled).
    FAL_RT_STATE_OPEN = 3,
    /// Closed (by the caller, the server, or an error). The next send reconnects.
    FAL_RT_STATE_CLOSED = 4,
}

impl From<crate::ConnectionState> for fal_rt_state {
    fn from(s: crate::ConnectionState) -> Self {
        use crate::ConnectionState as S;
        match s {
            S::Idle => fal_rt_state::FAL_RT_STATE_IDLE,
            S::Authenticating => fal_rt_state::FAL_RT_STATE_AUTHENTICATING,
            S::Connecting => fal_rt_state::FAL_RT_STATE_CONNECTING,
            S::Open => fal_rt_state::FAL_RT_STATE_OPEN,
            S::Closed => fal_rt_state::FAL_RT_STATE_CLOSED,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors

/// An error: kind, message, HTTP status, WebSocket close code and the server's body.
///
/// Ownership: an error passed to a callback (`const fal_rt_error*`) is borrowed
/// for the duration of the call (copy it with `fal_rt_error_clone` to keep it);
/// an error returned through an `out_error` parameter is owned by the caller,
/// who frees it with `fal_rt_error_free`. Immutable, so it may be read from any
/// thread. Never contains a token or an API key.
pub struct fal_rt_error {
    kind: fal_rt_result,
    message: CString,
    status: u16,
    close_code: u16,
    body: Option<CString>,
}

fn c_string_lossy(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let mut v = e.into_vec();
        v.retain(|b| *b != 0);
        // No NUL bytes are left.
        CString::new(v).unwrap_or_default()
    })
}

impl fal_rt_error {
    pub(crate) fn from_core(e: &Error) -> Self {
        fal_rt_error {
            kind: fal_rt_result::from_kind(e.kind()),
            message: c_string_lossy(e.message()),
            status: e.status().unwrap_or(0),
            close_code: e.close_code().unwrap_or(0),
            body: e.body().map(c_string_lossy),
        }
    }

    fn simple(kind: fal_rt_result, message: &str) -> Self {
        fal_rt_error {
            kind,
            message: c_string_lossy(message),
            status: 0,
            close_code: 0,
            body: None,
        }
    }
}

/// A failed FFI call: a code and its error.
pub(crate) struct Failure {
    code: fal_rt_result,
    error: fal_rt_error,
}

impl Failure {
    /// Whether this failure has the result `code`.
    pub(crate) fn is(&self, code: fal_rt_result) -> bool {
        self.code == code
    }

    pub(crate) fn new(code: fal_rt_result, message: &str) -> Self {
        Failure {
            code,
            error: fal_rt_error::simple(code, message),
        }
    }

    pub(crate) fn null(arg: &str) -> Self {
        Failure::new(FAL_RT_NULL_ARGUMENT, &format!("the argument `{arg}` is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let error = fal_rt_error::from_core(&e);
        Failure {
            code: error.kind,
            error,
        }
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

/// Runs `f` as a C door call; the outermost one releases, when it returns,
/// the handles freed inside callbacks it ran (see `gate::release_after_callbacks`).
fn c_call<T>(f: impl FnOnce() -> T) -> T {
    let outermost = !crate::runtime::in_c_call_now();
    let out = crate::runtime::in_c_call(f);
    if outermost {
        gate::after_c_call();
    }
    out
}

/// The one panic boundary: runs `f`, maps a failure to its code (writing
/// `out_error` if non-NULL) and a panic to `FAL_RT_PANIC`.
pub(crate) fn boundary(out_error: *mut *mut fal_rt_error, f: impl FnOnce() -> FfiResult) -> fal_rt_result {
    let failure = match catch_unwind(AssertUnwindSafe(|| c_call(f))) {
        Ok(Ok(())) => return FAL_RT_OK,
        Ok(Err(failure)) => failure,
        Err(_) => Failure::new(
            FAL_RT_PANIC,
            "a panic was caught in fal-realtime (a bug; please report it)",
        ),
    };
    let code = failure.code;
    // Codes that are outcomes, not errors, carry no error.
    let quiet = matches!(code, FAL_RT_TIMEOUT_EXPIRED | FAL_RT_END | FAL_RT_INTERRUPTED);
    if !out_error.is_null() && !quiet {
        // A panic while boxing (out of memory) must not escape either.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            *out_error = Box::into_raw(Box::new(failure.error));
        }));
    }
    code
}

/// A code that is an outcome, not an error (`FAL_RT_TIMEOUT_EXPIRED`,
/// `FAL_RT_END`, `FAL_RT_INTERRUPTED`): [`boundary`] returns it without an error.
pub(crate) fn quiet(code: fal_rt_result) -> Failure {
    Failure::new(code, "")
}

/// The outcome of an interrupted call (`FAL_RT_INTERRUPTED`).
pub(crate) fn interrupted() -> Failure {
    quiet(FAL_RT_INTERRUPTED)
}

/// `fut`, or `None` once `interrupt` is notified (a permit stored by an
/// earlier `notify_one` counts; checked first).
pub(crate) async fn interruptible<F: std::future::Future>(
    interrupt: &tokio::sync::Notify,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = interrupt.notified() => None,
        out = fut => Some(out),
    }
}

/// The receive side of a pull-style object (a session, a pull socket): the
/// interrupt of its `recv` and the no-wait first try that `recv` makes.
#[derive(Default)]
pub(crate) struct PullWait {
    /// Wakes a waiting `recv` (or keeps one permit for the next).
    interrupt: tokio::sync::Notify,
    /// Set by [`PullWait::interrupt`] (after it notified), cleared by a
    /// `recv` before it waits: while set, `recv` skips its no-wait try.
    pending: std::sync::atomic::AtomicBool,
    /// Whether the last `recv` found nothing at its first poll (it waited):
    /// then the next one skips the no-wait try, which would find nothing
    /// either in a request-reply loop, and polls in `block_on` at once. A
    /// hint only: the try and `block_on`'s first poll are the same poll.
    drained: std::sync::atomic::AtomicBool,
}

impl PullWait {
    /// Interrupt the waiting `recv`, or the next one. Never blocks.
    pub(crate) fn interrupt(&self) {
        self.interrupt.notify_one();
        self.pending.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The next item if it is there already (a frame read with an earlier
    /// one, the pipelined case): `next()` polled once on this thread, inside
    /// `rt`, without `block_on`, the interrupt's waiter or a timer. Else the
    /// wait to `block_on`: the item, `Some(None)` when `limit` expired, `None`
    /// when interrupted. A pending interrupt skips the try and wins; a last
    /// `recv` that had to wait also skips the try (see `drained`). `next`
    /// must be cancel-safe (the tried future is dropped when pending).
    pub(crate) fn recv<'a, F: std::future::Future + 'a>(
        &'a self,
        rt: &tokio::runtime::Handle,
        limit: Option<Duration>,
        next: impl Fn() -> F + 'a,
    ) -> Result<F::Output, impl std::future::Future<Output = Option<Option<F::Output>>> + 'a> {
        use std::sync::atomic::Ordering;
        if !self.pending.load(Ordering::Acquire) && !self.drained.load(Ordering::Relaxed) {
            if let std::task::Poll::Ready(item) = crate::runtime::poll_now(rt, std::pin::pin!(next())) {
                return Ok(item);
            }
        }
        // Cleared before the wait, which takes a pending interrupt first
        // (`interrupt` sets the flag after notifying, so a flag cleared here
        // cannot hide a permit the wait would miss).
        self.pending.store(false, Ordering::Release);
        Err(async move {
            // Made and pinned here: the wait is large, and is not moved.
            let wait = std::pin::pin!(interruptible(&self.interrupt, with_limit(limit, next())));
            let (out, at_once) = crate::runtime::first_poll(wait).await;
            self.drained.store(!at_once, Ordering::Relaxed);
            out
        })
    }
}

/// [`block_on`] for a call that usually finishes at once (a send): polled
/// once without it first ([`poll_now`](crate::runtime::poll_now)).
pub(crate) fn block_on_soon<F: std::future::Future>(fut: F) -> FfiResult<F::Output> {
    check_can_block()?;
    let mut fut = std::pin::pin!(fut);
    if let std::task::Poll::Ready(out) = crate::runtime::poll_now(&crate::runtime::handle(), fut.as_mut()) {
        return Ok(out);
    }
    block_on(fut)
}

/// The panic boundary for calls that return a value instead of a code.
pub(crate) fn boundary_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(|| c_call(f))).unwrap_or(fallback)
}

/// A handle type whose `free` may be called inside a callback: the memory
/// then stays valid until the callback returns, and the handle is dead.
pub(crate) trait Handle {
    fn dead(&self) -> &std::sync::atomic::AtomicBool;
}

/// A live handle argument: not NULL and not freed (inside a callback that is
/// still running); `FAL_RT_NOT_CONNECTED` for a freed one.
///
/// # Safety
/// `p` is NULL or points to a handle whose memory is valid (not freed
/// outside a callback).
pub(crate) unsafe fn live<'a, T: Handle>(p: *const T, name: &str) -> FfiResult<&'a T> {
    let h = &*not_null(p, name)?;
    if h.dead().load(std::sync::atomic::Ordering::Acquire) {
        return Err(Failure::new(
            FAL_RT_NOT_CONNECTED,
            &format!("`{name}` was freed (inside a callback that is still running)"),
        ));
    }
    Ok(h)
}

/// Mark `p` dead. Returns `false` if it was dead already (freed inside a
/// callback that is still running).
///
/// # Safety
/// `p` is a live handle from `Box::into_raw`.
pub(crate) unsafe fn retire<T: Handle>(p: *mut T) -> bool {
    if (*p).dead().swap(true, std::sync::atomic::Ordering::AcqRel) {
        return false;
    }
    true
}

/// Release the memory of a retired handle (now, or after the callbacks).
///
/// # Safety
/// `p` came from `Box::into_raw` and was retired by this thread.
pub(crate) unsafe fn release<T: 'static>(p: *mut T) {
    struct Ptr<T>(*mut T);
    let ptr = Ptr(p);
    gate::release_after_callbacks(Box::new(move || {
        let ptr = ptr;
        // SAFETY: retired exactly once; no other user (see the callers' contract).
        drop(Box::from_raw(ptr.0));
    }));
}

/// Null-check a pointer argument.
pub(crate) fn not_null<T>(p: *const T, name: &str) -> FfiResult<*const T> {
    if p.is_null() {
        Err(Failure::null(name))
    } else {
        Ok(p)
    }
}

/// A required C string argument as `&str`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    not_null(p, name)?;
    CStr::from_ptr(p).to_str().map_err(|_| {
        Failure::new(
            FAL_RT_INVALID_UTF8,
            &format!("the argument `{name}` is not valid UTF-8"),
        )
    })
}

/// An optional C string argument (NULL → `None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(Some)
    }
}

/// A byte-buffer argument: NULL is accepted only with `len == 0`.
///
/// # Safety
/// `p` points to `len` readable bytes.
pub(crate) unsafe fn bytes_arg<'a>(p: *const u8, len: usize, name: &str) -> FfiResult<&'a [u8]> {
    if p.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::null(name));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// Read a versioned input struct (first field `uint32_t struct_size`): copy
/// `min(struct_size, sizeof(T))` bytes over a zeroed `T`, so fields a caller
/// compiled against an older header does not know are zero (their defaults).
///
/// # Safety
/// `p` points to at least `struct_size` readable bytes; `T` is `repr(C)`,
/// starts with a `u32` and is valid when all-zero.
pub(crate) unsafe fn read_versioned<T: Copy>(p: *const T, name: &str, min_size: usize) -> FfiResult<T> {
    not_null(p, name)?;
    let size = std::ptr::read(p as *const u32) as usize;
    if size < min_size {
        return Err(Failure::new(
            FAL_RT_BAD_STRUCT_SIZE,
            &format!("`{name}->struct_size` is {size}; set it to sizeof the struct"),
        ));
    }
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    let n = size.min(std::mem::size_of::<T>());
    std::ptr::copy_nonoverlapping(p as *const u8, out.as_mut_ptr() as *mut u8, n);
    Ok(out.assume_init())
}

/// Write `value` to the versioned out-struct `p`: only `min(p->struct_size,
/// sizeof(T))` bytes, and `struct_size` set to that count.
///
/// # Safety
/// As [`read_versioned`], writable.
pub(crate) unsafe fn write_versioned<T: Copy>(p: *mut T, name: &str, min_size: usize, value: T) -> FfiResult {
    not_null(p, name)?;
    let size = std::ptr::read(p as *const u32) as usize;
    if size < min_size {
        return Err(Failure::new(
            FAL_RT_BAD_STRUCT_SIZE,
            &format!("`{name}->struct_size` is {size}; set it to sizeof the struct"),
        ));
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut value = value;
    std::ptr::write(&mut value as *mut T as *mut u32, n as u32);
    std::ptr::copy_nonoverlapping(&value as *const T as *const u8, p as *mut u8, n);
    Ok(())
}

/// Write an out-param (after null-checking it up front with [`not_null`]).
///
/// # Safety
/// `p` is non-NULL and writable.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    std::ptr::write(p, v)
}

/// Whether a blocking wait is allowed on this thread; the failure to return if not.
pub(crate) fn check_can_block() -> FfiResult {
    if gate::in_ffi_callback() || crate::in_callback() {
        return Err(Failure::new(
            FAL_RT_WOULD_BLOCK_IN_CALLBACK,
            "this call blocks and cannot be made from inside a fal-realtime callback",
        ));
    }
    if crate::runtime::in_runtime() {
        return Err(Failure::new(
            FAL_RT_WOULD_BLOCK_IN_RUNTIME,
            "this call blocks and cannot be made from a tokio runtime thread",
        ));
    }
    Ok(())
}

/// Whether this thread may block (not in a callback, not on a runtime thread).
pub(crate) fn can_block() -> bool {
    check_can_block().is_ok()
}

/// `block_on` on the shared runtime, refused on runtime threads.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> FfiResult<F::Output> {
    check_can_block()?;
    crate::runtime::block_on(fut).ok_or_else(|| {
        Failure::new(
            FAL_RT_WOULD_BLOCK_IN_RUNTIME,
            "this call blocks and cannot be made from a tokio runtime thread",
        )
    })
}

/// `fut`, bounded by `limit` (`None`: no bound); `None` when the time ran out.
pub(crate) async fn with_limit<F: std::future::Future>(limit: Option<Duration>, fut: F) -> Option<F::Output> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// A recv timeout: `FAL_RT_WAIT_FOREVER` (-1) → forever; below -1 is invalid.
pub(crate) fn timeout_of(ms: i32) -> FfiResult<Option<Duration>> {
    match ms {
        FAL_RT_WAIT_FOREVER => Ok(None),
        m if m < 0 => Err(Failure::new(
            FAL_RT_INVALID_ARGUMENT,
            &format!("timeout_ms is {m}; use 0 or more, or FAL_RT_WAIT_FOREVER (-1)"),
        )),
        m => Ok(Some(Duration::from_millis(m as u64))),
    }
}

/// `void*` user data handed back to C callbacks on other threads.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub *mut c_void);
// SAFETY: the C caller promises (documented on every handler struct) that its
// user_data may be used from the library's threads.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

// ---------------------------------------------------------------------------
// Version, result names, errors

/// The library version as a static NUL-terminated string, e.g. `"0.1.0"`. Never NULL.
#[no_mangle]
pub extern "C" fn fal_rt_version() -> *const c_char {
    static V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    V.as_ptr()
}

/// The library version as `MAJOR * 10000 + MINOR * 100 + PATCH`: compare with
/// `FAL_RT_VERSION_NUMBER` to detect a header / library mismatch.
#[no_mangle]
pub extern "C" fn fal_rt_version_number() -> u32 {
    FAL_RT_VERSION_NUMBER
}

/// A short stable name for a result code (`"ok"`, `"not_connected"`, ...), as a
/// static string; `"unknown"` for codes this version does not know. Never NULL.
#[no_mangle]
pub extern "C" fn fal_rt_result_name(code: i32) -> *const c_char {
    fal_rt_result::name(code).as_ptr()
}

/// The kind of an error: the code the failed call returned. One of
/// `FAL_RT_INVALID_ARGUMENT` .. `FAL_RT_INTERNAL` (1-14, one per error kind of
/// the Rust core), `FAL_RT_NULL_ARGUMENT`, `FAL_RT_INVALID_UTF8`,
/// `FAL_RT_WOULD_BLOCK_IN_CALLBACK`, `FAL_RT_WOULD_BLOCK_IN_RUNTIME`,
/// `FAL_RT_BAD_STRUCT_SIZE`, `FAL_RT_WRONG_MODE`, `FAL_RT_ALREADY_SET`
/// (100-103, 106-108) or `FAL_RT_PANIC` (199). Never `FAL_RT_OK`,
/// `FAL_RT_TIMEOUT_EXPIRED`, `FAL_RT_END` or `FAL_RT_INTERRUPTED` (those
/// carry no error). `FAL_RT_NULL_ARGUMENT` if `error` is NULL.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_kind(error: *const fal_rt_error) -> fal_rt_result {
    boundary_value(FAL_RT_PANIC, || match error.as_ref() {
        Some(e) => e.kind,
        None => FAL_RT_NULL_ARGUMENT,
    })
}

/// The error message (NUL-terminated UTF-8, never containing a token or key),
/// valid as long as `error`. NULL if `error` is NULL.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_message(error: *const fal_rt_error) -> *const c_char {
    boundary_value(std::ptr::null(), || match error.as_ref() {
        Some(e) => e.message.as_ptr(),
        None => std::ptr::null(),
    })
}

/// The HTTP status (token endpoint or handshake failures), or 0 if none.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_status(error: *const fal_rt_error) -> u16 {
    boundary_value(0, || error.as_ref().map_or(0, |e| e.status))
}

/// The WebSocket close code (abnormal closes, e.g. 1006 or 4001), or 0 if none.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_close_code(error: *const fal_rt_error) -> u16 {
    boundary_value(0, || error.as_ref().map_or(0, |e| e.close_code))
}

/// The server's body (the HTTP response body, or the JSON text of the
/// server's error frame) as NUL-terminated UTF-8 valid as long as `error`;
/// NULL if there is none or `error` is NULL.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_body(error: *const fal_rt_error) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        error
            .as_ref()
            .and_then(|e| e.body.as_ref())
            .map_or(std::ptr::null(), |b| b.as_ptr())
    })
}

/// An owned copy of `error` (e.g. to keep one passed to a callback); free it
/// with `fal_rt_error_free`. NULL if `error` is NULL.
///
/// # Safety
/// `error` is NULL or a valid error.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_clone(error: *const fal_rt_error) -> *mut fal_rt_error {
    boundary_value(std::ptr::null_mut(), || match error.as_ref() {
        Some(e) => Box::into_raw(Box::new(fal_rt_error {
            kind: e.kind,
            message: e.message.clone(),
            status: e.status,
            close_code: e.close_code,
            body: e.body.clone(),
        })),
        None => std::ptr::null_mut(),
    })
}

/// Free an error returned through an `out_error` parameter or by
/// `fal_rt_error_clone`. Accepts NULL. Never pass an error borrowed by a callback.
///
/// # Safety
/// `error` is NULL or an owned error not freed before.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_error_free(error: *mut fal_rt_error) {
    boundary_value((), || {
        if !error.is_null() {
            drop(Box::from_raw(error));
        }
    })
}

/// Free a string returned by this library (e.g. by `fal_rt_message_to_json`). Accepts NULL.
///
/// # Safety
/// `s` is NULL or a string from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_string_free(s: *mut c_char) {
    boundary_value((), || {
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_the_crate() {
        assert_eq!(FAL_RT_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(FAL_RT_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(FAL_RT_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
        let v = unsafe { CStr::from_ptr(fal_rt_version()) };
        assert_eq!(v.to_str().unwrap(), crate::VERSION);
    }

    #[test]
    fn header_macros_match_the_rust_constants() {
        let header = include_str!("../../include/fal_realtime.h");
        for line in [
            format!("#define FAL_RT_VERSION_STRING \"{}\"", crate::VERSION),
            format!("#define FAL_RT_VERSION_MAJOR {FAL_RT_VERSION_MAJOR}"),
            format!("#define FAL_RT_VERSION_MINOR {FAL_RT_VERSION_MINOR}"),
            format!("#define FAL_RT_VERSION_PATCH {FAL_RT_VERSION_PATCH}"),
            format!("#define FAL_RT_VERSION_NUMBER {FAL_RT_VERSION_NUMBER}"),
            format!("#define FAL_RT_WAIT_FOREVER ({FAL_RT_WAIT_FOREVER})"),
            format!("#define FAL_RT_THROTTLE_NONE ({FAL_RT_THROTTLE_NONE})"),
        ] {
            assert!(
                header.contains(&line),
                "update `{line}` in cbindgen.toml and regenerate"
            );
        }
    }

    #[test]
    fn every_kind_has_a_code_and_a_name() {
        for code in [0, 1, 5, 14, 100, 105, 107, 108, 109, 199] {
            let n = unsafe { CStr::from_ptr(fal_rt_result_name(code)) };
            assert_ne!(n.to_str().unwrap(), "unknown", "{code}");
        }
        assert_eq!(fal_rt_result::from_kind(ErrorKind::Server), FAL_RT_SERVER);
    }

    #[test]
    fn boundary_catches_panics_and_writes_the_error_only_on_failure() {
        let mut err: *mut fal_rt_error = std::ptr::null_mut();
        assert_eq!(boundary(&mut err, || Ok(())), FAL_RT_OK);
        assert!(err.is_null());
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let code = boundary(&mut err, || panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(code, FAL_RT_PANIC);
        assert!(!err.is_null());
        unsafe {
            assert_eq!(fal_rt_error_kind(err), FAL_RT_PANIC);
            fal_rt_error_free(err);
        }
    }
}
