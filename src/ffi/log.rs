//! The log sink of the C ABI: `fal_rt_set_logger` routes the library's `log`
//! records to a C callback.

use super::{boundary_value, c_string_lossy, fal_rt_result};
use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{OnceLock, RwLock};

/// Severity of a log record (`fal_rt_set_logger`, `fal_rt_log_fn`). A logger
/// set at a level receives the records of that level and every more severe one.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fal_rt_log_level {
    /// Failures the library could not report otherwise (e.g. a callback panicked).
    FAL_RT_LOG_ERROR = 1,
    /// Errors also reported to callbacks, unusual conditions.
    FAL_RT_LOG_WARN = 2,
    /// Rare lifecycle events.
    FAL_RT_LOG_INFO = 3,
    /// Connection lifecycle: opening a socket (`"opening ws://..."`, URL
    /// redacted), token fetches, closes.
    FAL_RT_LOG_DEBUG = 4,
    /// Everything, including the TLS and WebSocket libraries' chatter.
    FAL_RT_LOG_TRACE = 5,
}

/// A log callback: one record of `level`. `target` is the module that logged
/// it (e.g. `"fal_realtime::open"`; records of the library start with
/// `"fal_realtime"`, others come from the TLS or WebSocket libraries it
/// uses) and `message` the formatted text: both NUL-terminated UTF-8,
/// borrowed for the duration of the call (copy them to keep them).
///
/// Thread: any thread of the library that logs (runtime workers, blocking-pool
/// threads, or your own thread inside a library call), possibly concurrently
/// with itself: make it thread-safe and quick, and do not call functions of
/// this library from it (a record may be logged while the library holds an
/// internal lock). It is never called re-entrantly: records logged on a
/// thread while that thread is inside the callback are dropped. Messages
/// never contain a token or an API key (URLs are redacted).
pub type fal_rt_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: fal_rt_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, fal_rt_log_level, *const c_char, *const c_char),
    user_data: *mut c_void,
    level: log::Level,
}

// SAFETY: the caller of `fal_rt_set_logger` promises that `user_data` may be
// used from any thread.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

/// The current sink. Held for reading while a callback runs, so replacing it
/// waits for running callbacks: after `fal_rt_set_logger` returns the old
/// callback is never called again.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Whether our logger is the process's `log` logger (decided on first use).
static INSTALLED: OnceLock<bool> = OnceLock::new();

thread_local! {
    /// Set while this thread runs the log callback (or replaces it).
    static IN_LOGGER: Cell<bool> = const { Cell::new(false) };
}

struct CLogger;

static LOGGER: CLogger = CLogger;

fn to_level(l: log::Level) -> fal_rt_log_level {
    match l {
        log::Level::Error => fal_rt_log_level::FAL_RT_LOG_ERROR,
        log::Level::Warn => fal_rt_log_level::FAL_RT_LOG_WARN,
        log::Level::Info => fal_rt_log_level::FAL_RT_LOG_INFO,
        log::Level::Debug => fal_rt_log_level::FAL_RT_LOG_DEBUG,
        log::Level::Trace => fal_rt_log_level::FAL_RT_LOG_TRACE,
    }
}

fn from_level(l: fal_rt_log_level) -> log::Level {
    match l {
        fal_rt_log_level::FAL_RT_LOG_ERROR => log::Level::Error,
        fal_rt_log_level::FAL_RT_LOG_WARN => log::Level::Warn,
        fal_rt_log_level::FAL_RT_LOG_INFO => log::Level::Info,
        fal_rt_log_level::FAL_RT_LOG_DEBUG => log::Level::Debug,
        fal_rt_log_level::FAL_RT_LOG_TRACE => log::Level::Trace,
    }
}

impl log::Log for CLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        if IN_LOGGER.with(|g| g.get()) {
            return false;
        }
        match SINK.try_read() {
            Ok(g) => g.as_ref().is_some_and(|s| metadata.level() <= s.level),
            Err(_) => true,
        }
    }

    fn log(&self, record: &log::Record) {
        if IN_LOGGER.with(|g| g.replace(true)) {
            return; // re-entrant: drop
        }
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                IN_LOGGER.with(|g| g.set(false));
            }
        }
        let _reset = Reset;
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let guard = match SINK.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let Some(sink) = *guard else { return };
            if record.level() > sink.level {
                return;
            }
            let mut text = String::new();
            let _ = write!(text, "{}", record.args());
            let message = c_string_lossy(&text);
            let target = c_string_lossy(record.target());
            // SAFETY: the caller of fal_rt_set_logger supplied a valid callback.
            unsafe {
                (sink.callback)(
                    sink.user_data,
                    to_level(record.level()),
                    target.as_ptr(),
                    message.as_ptr(),
                );
            }
            drop(guard);
        }));
    }

    fn flush(&self) {}
}

/// Route the library's log records to `callback`, or turn logging off
/// (`callback` NULL). Records of `level` and more severe ones are passed on;
/// the others are filtered out cheaply (`log::set_max_level`), so a quiet
/// level costs almost nothing. May be called again at any time, from any
/// thread, to change the level or replace the callback: when it returns, the
/// previous callback is not running and is never called again, so its
/// `user_data` may be released then (so do not call this while holding a
/// lock your callback takes). `user_data` is passed first to every call and
/// must be usable from any thread. See `fal_rt_log_fn` for the thread and
/// the borrowing rules.
///
/// `level` is one of the `fal_rt_log_level` values (`FAL_RT_LOG_ERROR` 1 to
/// `FAL_RT_LOG_TRACE` 5); any other value is `FAL_RT_INVALID_ARGUMENT`
/// (ignored when `callback` is NULL).
///
/// Returns `FAL_RT_OK`; `FAL_RT_WOULD_BLOCK_IN_CALLBACK` when called from
/// inside the log callback itself (nothing changes); `FAL_RT_ALREADY_SET` when
/// another `log` logger is already installed in this process (e.g. the Python binding's
/// `pyo3-log`, or a Rust host's `env_logger` when the library is linked
/// statically into a Rust program): the records go to that logger, and
/// nothing changes.
///
/// # Safety
/// `callback` is NULL or a function that may be called from any thread until
/// this function is next called; `user_data` is valid for it.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_set_logger(
    level: i32,
    callback: fal_rt_log_fn,
    user_data: *mut c_void,
) -> fal_rt_result {
    boundary_value(fal_rt_result::FAL_RT_PANIC, || {
        if IN_LOGGER.with(|g| g.get()) {
            return fal_rt_result::FAL_RT_WOULD_BLOCK_IN_CALLBACK;
        }
        // An int, not the enum: a C caller may pass any value, and an
        // out-of-range enum would be undefined behaviour on this side.
        let level = match level {
            1 => fal_rt_log_level::FAL_RT_LOG_ERROR,
            2 => fal_rt_log_level::FAL_RT_LOG_WARN,
            3 => fal_rt_log_level::FAL_RT_LOG_INFO,
            4 => fal_rt_log_level::FAL_RT_LOG_DEBUG,
            5 => fal_rt_log_level::FAL_RT_LOG_TRACE,
            _ if callback.is_none() => fal_rt_log_level::FAL_RT_LOG_ERROR,
            _ => return fal_rt_result::FAL_RT_INVALID_ARGUMENT,
        };
        let new = callback.map(|cb| Sink {
            callback: cb,
            user_data,
            level: from_level(level),
        });
        let ours = *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok());
        if !ours {
            return fal_rt_result::FAL_RT_ALREADY_SET;
        }
        // Quiet first, so no record is offered to a callback being removed.
        if new.is_none() {
            log::set_max_level(log::LevelFilter::Off);
        }
        {
            let mut slot = match SINK.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *slot = new;
        }
        if let Some(s) = new {
            log::set_max_level(s.level.to_level_filter());
        }
        fal_rt_result::FAL_RT_OK
    })
}
