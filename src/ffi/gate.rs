//! The gate in front of a C handle's callbacks: it makes `free` safe from any
//! thread, including from inside a callback, without use-after-free or deadlock.
//!
//! Every call into C passes [`Gate::enter`]. `free` closes the gate: no new
//! call starts after that. The user_data finalizers run exactly once, as soon
//! as the gate is closed and no call is in flight (on the thread that leaves
//! last), or when the gate is dropped. A `free` that may block waits for that
//! ([`Gate::wait_finalized`]); a `free` made inside a callback does not (its
//! own callback is still in flight), so the finalizer runs when that callback
//! returns.

use super::UserData;
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};

/// A C finalizer for a `user_data`.
pub(crate) type FreeFn = unsafe extern "C" fn(user_data: *mut c_void);

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Handle memory freed inside a callback, released when the outermost
    /// callback on this thread returns.
    static DEFERRED: std::cell::RefCell<Vec<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether this thread is inside a C callback called by this library.
pub(crate) fn in_ffi_callback() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Run `release` now, or, inside a callback, once the outermost callback on
/// this thread has returned and, when that callback runs inside a C door call
/// (an encoder inside a send), once that call returns too: a handle freed
/// inside a callback stays readable (and answers `FAL_RT_NOT_CONNECTED`)
/// until then, and the call that ran the callback may still use it.
pub(crate) fn release_after_callbacks(release: Box<dyn FnOnce()>) {
    if in_ffi_callback() {
        DEFERRED.with(|d| d.borrow_mut().push(release));
    } else {
        release();
    }
}

/// Called when the outermost C door call on this thread returns: releases
/// the handles freed inside callbacks it ran (unless a callback still runs
/// around it).
pub(crate) fn after_c_call() {
    if !in_ffi_callback() {
        run_deferred();
    }
}

/// Runs the releases of handles freed inside callbacks: they never wait for
/// the runtime to stop (the free that caused them did not wait either).
fn run_deferred() {
    crate::runtime::without_waiting(run_deferred_now);
}

fn run_deferred_now() {
    loop {
        let batch = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        if batch.is_empty() {
            return;
        }
        for release in batch {
            release();
        }
    }
}

pub(crate) struct Gate {
    active: AtomicBool,
    inflight: AtomicUsize,
    claimed: AtomicBool,
    finalizers: Mutex<Vec<(FreeFn, UserData)>>,
    done: Mutex<bool>,
    cv: Condvar,
}

/// An admitted call; leaving it may run the finalizers.
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            let n = d.get().saturating_sub(1);
            d.set(n);
            n
        });
        self.gate.leave();
        // Inside a C door call, the handles are released when it returns
        // ([`after_c_call`]): it may still use them.
        if depth == 0 && !crate::runtime::in_c_call_now() {
            run_deferred();
        }
    }
}

impl Gate {
    /// An open gate whose finalizer (if any) frees `user_data`.
    pub(crate) fn new(finalizer: Option<FreeFn>, user_data: *mut c_void) -> Self {
        Gate {
            active: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            finalizers: Mutex::new(finalizer.map(|f| (f, UserData(user_data))).into_iter().collect()),
            done: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    /// Admit one call into C, or `None` once the gate is closed. Hold the pass
    /// for the duration of the call.
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        self.inflight.fetch_add(1, SeqCst);
        if !self.active.load(SeqCst) {
            self.leave();
            return None;
        }
        DEPTH.with(|d| d.set(d.get() + 1));
        Some(Pass { gate: self })
    }

    fn leave(&self) {
        if self.inflight.fetch_sub(1, SeqCst) == 1 && !self.active.load(SeqCst) {
            self.finalize();
        }
    }

    /// Close the gate: no new call is admitted. Runs the finalizers now if no
    /// call is in flight, else when the last one leaves.
    pub(crate) fn close(&self) {
        self.active.store(false, SeqCst);
        if self.inflight.load(SeqCst) == 0 {
            self.finalize();
        }
    }

    /// Block until the finalizers have run (the gate must be closed).
    pub(crate) fn wait_finalized(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finalize(&self) {
        if self.claimed.swap(true, SeqCst) {
            return;
        }
        let list = std::mem::take(&mut *self.finalizers.lock().unwrap_or_else(|p| p.into_inner()));
        for (f, ud) in list {
            // SAFETY: the C caller handed us this finalizer for this user_data;
            // no call using it is in flight or can start.
            unsafe { f(ud.0) };
        }
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Nobody can hold a pass any more.
        self.active.store(false, SeqCst);
        self.finalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    static FREED: AtomicU32 = AtomicU32::new(0);
    unsafe extern "C" fn count(_: *mut c_void) {
        FREED.fetch_add(1, SeqCst);
    }

    #[test]
    fn finalizer_runs_once_after_the_last_call_leaves() {
        FREED.store(0, SeqCst);
        let g = Arc::new(Gate::new(Some(count), std::ptr::null_mut()));
        let pass = g.enter().unwrap();
        assert!(in_ffi_callback());
        g.close();
        assert!(g.enter().is_none());
        assert_eq!(FREED.load(SeqCst), 0);
        drop(pass);
        assert!(!in_ffi_callback());
        assert_eq!(FREED.load(SeqCst), 1);
        g.wait_finalized();
        drop(g);
        assert_eq!(FREED.load(SeqCst), 1);
    }
}
