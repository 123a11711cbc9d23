//! How the operator asks glibc's allocator to keep its resident memory close to what it uses.
//!
//! The operator holds every watched object in memory and replaces one on every status write, while
//! list pages of a watch (hundreds of objects, megabytes of JSON) come and go. With glibc's
//! defaults that leaves freed memory resident that the operator never uses again:
//!
//! - **One arena per busy thread.** glibc gives a thread that finds the main arena locked an arena
//!   of its own (up to 8 per core). Memory freed in one arena serves only that arena's later
//!   requests, so each holds its own peak. The operator spends most of its time waiting on Graph
//!   and the API server (a fifth of one core at 10,000 BankClients), so one arena costs no
//!   measurable time.
//! - **A moving mmap threshold.** A block larger than the threshold (128 KiB at first) gets its own
//!   mapping, returned whole when freed; but freeing one raises the threshold to its size (up to
//!   32 MiB) and the trim threshold to twice that. After the first large list page, later pages
//!   are carved out of the heap, and up to twice the largest page stays resident at its top.
//!   Setting both thresholds fixes them: large blocks are always mapped and returned, and free
//!   space at the top of the heap beyond 128 KiB goes back to the system.
//!
//! `man 3 mallopt` (M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; an explicit threshold turns
//! the dynamic adjustment off). Measured in BENCHMARKS.md ("Allocator", "10,000
//! BankClients"): 3,000 BankClients end at 49 MiB instead of 56, 10,000 at 113 MiB instead of 132,
//! at the same speed.
//!
//! A deployment that sets glibc's malloc tunables itself (`GLIBC_TUNABLES=glibc.malloc.…`) keeps
//! them: the operator then changes nothing. Other C libraries (musl) are left alone.

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// One arena and fixed thresholds are set.
    Applied,
    /// The environment sets glibc malloc tunables; they are kept as they are.
    LeftToEnvironment,
    /// Not glibc, or glibc refused one of the settings.
    Unsupported,
}

/// Largest block carved out of the heap; larger ones get their own mapping (glibc's initial value).
pub const MMAP_THRESHOLD: usize = 128 * 1024;
/// Free space kept at the top of the heap before it is returned (glibc's initial value).
pub const TRIM_THRESHOLD: usize = 128 * 1024;

/// Whether `GLIBC_TUNABLES` (its value, if set) already tunes malloc.
pub fn environment_tunes_malloc(tunables: Option<&str>) -> bool {
    tunables.is_some_and(|t| {
        t.split(':')
            .any(|setting| setting.trim_start().starts_with("glibc.malloc."))
    })
}

/// Sets one arena and fixed mmap and trim thresholds, unless the environment tunes malloc itself.
/// Call it first thing in `main`, before any other thread exists: arenas already created stay.
pub fn tune() -> Tuning {
    if environment_tunes_malloc(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
        return Tuning::LeftToEnvironment;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    // SAFETY: mallopt only changes the allocator's parameters; it is safe to call at any time,
    // and is called here before other threads exist.
    let set = unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    };
    if set {
        Tuning::Applied
    } else {
        Tuning::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_malloc_settings_in_the_environment_take_over() {
        assert!(!environment_tunes_malloc(None));
        assert!(!environment_tunes_malloc(Some("")));
        assert!(!environment_tunes_malloc(Some(
            "glibc.pthread.rseq=0:glibc.cpu.hwcaps=-AVX"
        )));
        assert!(environment_tunes_malloc(Some("glibc.malloc.arena_max=2")));
        assert!(environment_tunes_malloc(Some(
            "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=65536"
        )));
    }

    /// With glibc's defaults, freeing a large mapped block raises the mmap threshold to its size,
    /// so a later block of 1 MiB comes out of the heap (and its memory stays there once freed).
    /// Tuned, the threshold stays fixed: the 1 MiB block is mapped and given back when freed.
    /// (nextest runs each test in its own process, so this one sees a fresh allocator.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_large_block_is_mapped_even_after_a_larger_one_was_freed() {
        if environment_tunes_malloc(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
            eprintln!("GLIBC_TUNABLES tunes malloc: the operator leaves it alone, nothing to test");
            return;
        }
        assert_eq!(tune(), Tuning::Applied);
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        let large = std::hint::black_box(vec![1u8; 8 << 20]);
        drop(large);
        let before = mapped();
        let block = std::hint::black_box(vec![1u8; 1 << 20]);
        let during = mapped();
        assert!(
            during >= before + (1 << 20),
            "a 1 MiB block after an 8 MiB one was freed is not mapped: {before} -> {during} bytes mapped"
        );
        drop(block);
        assert!(
            mapped() + (1 << 20) <= during,
            "the mapped block is given back"
        );
    }
}
