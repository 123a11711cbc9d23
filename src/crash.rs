//! Crash injection for the crash matrix (`docs/reliability.md`, `tests/crash_matrix.rs`).
//!
//! With the `crash-hook` feature (on by default, like `sandbox`; the image is built without it) and
//! `ENTRA_OPERATOR_CRASH_AFTER_WRITE=N` in the environment, the process kills itself with SIGKILL
//! right after its Nth write was committed (a Graph write answered 2xx, or a Secret or status write
//! the API server accepted) and before it acts on the answer: the worst moment for a crash, since
//! the write took effect and nothing after it ran. It first prints one line to stderr naming the
//! write, so a matrix can record which write point each run covered. Without the variable (or
//! without the feature) [`after_write`] does nothing.

#[cfg(feature = "crash-hook")]
mod hook {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The environment variable that arms the hook.
    pub const VARIABLE: &str = "ENTRA_OPERATOR_CRASH_AFTER_WRITE";

    static ARMED_AT: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);

    pub fn after_write(what: impl std::fmt::Display) {
        let Some(at) = *ARMED_AT.get_or_init(|| {
            std::env::var(VARIABLE)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        }) else {
            return;
        };
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        if n == at {
            eprintln!("crash-hook: killed after write {n}: {what}");
            // SIGKILL to ourselves: no destructor, no flush, no lease release, as `kill -9`.
            // SAFETY: kill(2) with our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            // SIGKILL cannot be caught; should the call fail, still die without cleanup.
            std::process::abort();
        }
    }
}

/// Called after each committed write; kills the process at the armed write (see the module docs).
/// `what` is formatted only when the process dies, so an unarmed hook costs no allocation.
#[inline]
pub fn after_write(what: impl std::fmt::Display) {
    #[cfg(feature = "crash-hook")]
    hook::after_write(what);
    #[cfg(not(feature = "crash-hook"))]
    let _ = what;
}

#[cfg(feature = "crash-hook")]
pub use hook::VARIABLE;
