//! The process's allocator, and the one chore it needs done from outside.
//!
//! mimalloc (v3, the crate's default) gives freed memory back to the OS a while after it is
//! freed (`purge_delay`, 1 s), but it runs no thread of its own: the pages whose delay has
//! passed are returned only when some thread frees a page again. A server that goes quiet after
//! a burst frees nothing more, so the burst's freed pages stay resident until the next burst.
//! Measured with `bench/soak.mjs` (200 clients, 60 s, bench/RESULTS.md): 10 s after the load the
//! server held 31.1 MB (15.0 MB anonymous) and 60 s after 28.4 MB, against 17.9 MB at the
//! start; with `MIMALLOC_PURGE_DELAY=0` in its environment (a purge on every free, also under
//! load) it came back to 24.1 MB. With the chore below, three runs: 25.8–28.0 MB 10 s after
//! (10.0–11.8 MB anonymous) and 24.5–28.0 MB 60 s after, with mimalloc's defaults. What stays
//! is not freed memory: pages still holding live objects, each thread's retired pages, and
//! SQLite's caches (which it allocates with the C library's malloc, not this one).
//!
//! [`give_back_freed_memory`] is that missing chore: every [`EVERY`] it allocates and frees one
//! block too big for mimalloc's size classes. A huge block has a page of its own, and freeing
//! that page is what runs mimalloc's purge of everything whose delay has passed, whichever
//! thread freed it. Its cost is one allocation and one free every 2 s; the block itself is never
//! written, so it never becomes resident. This is written here rather than by calling
//! `mi_collect` because the binary has no `unsafe` (and the library does not know the
//! allocator).

use std::time::Duration;

// glibc malloc showed as ~15% of a request's CPU in profiles (malloc, free, consolidate);
// mimalloc's thread-local free lists make the many small per-request allocations cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the purge runs: twice mimalloc's purge delay, so that a page freed just after one
/// run is due at the next.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// Bigger than mimalloc's largest size class (512 KiB): a page of its own, freed at once.
const HUGE: usize = 1 << 20;

/// Runs mimalloc's delayed purge once: one huge block allocated and freed.
pub(crate) fn purge_now() {
    let block: Vec<u8> = Vec::with_capacity(HUGE);
    // Without this the compiler may drop the allocation altogether.
    std::hint::black_box(&block);
    drop(block);
}

/// Runs [`purge_now`] every [`EVERY`], for as long as the runtime runs.
pub(crate) async fn give_back_freed_memory() {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        purge_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anonymous resident memory of this process, in KiB.
    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The freed pages of a burst are resident after mimalloc's purge delay has passed (nothing
    /// has freed a page since) and gone once `purge_now` runs.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_burst_s_memory_is_given_back_after_the_delay() {
        const MIB: usize = 1 << 20;
        // 48 MiB in blocks of mimalloc's large size class, written so they are resident, and
        // freed on the thread that allocated them.
        let before = rss_anon_kib();
        let mut blocks: Vec<Vec<u8>> = (0..192).map(|_| vec![1u8; 256 * 1024]).collect();
        for b in &mut blocks {
            std::hint::black_box(b.as_mut_slice());
        }
        let full = rss_anon_kib();
        assert!(
            full >= before + 40 * 1024,
            "burst not resident: {before} → {full} KiB"
        );
        drop(blocks);
        // mimalloc's purge delay (1 s) and its per-arena multiplier (1) have passed.
        std::thread::sleep(Duration::from_millis(1500));
        // Nothing has freed a page since: mimalloc has not purged them by itself.
        let waited = rss_anon_kib();
        assert!(
            waited + 8 * 1024 >= full,
            "purged without a nudge: {full} → {waited} KiB"
        );
        purge_now();
        let after = rss_anon_kib();
        assert!(
            after + 32 * (MIB as u64 / 1024) <= full,
            "freed memory still resident after the purge: {full} → {after} KiB"
        );
    }
}
