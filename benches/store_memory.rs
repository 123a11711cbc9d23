//! What one Ready BankClient costs in the operator's stores: its BankClient and its child
//! AppRegistration as the watches keep them (pruned by `prune_for_store`, then cloned into the
//! store as kube-runtime's reflector does), counted by a counting
//! global allocator. `requested` is what the program asked for; `glibc` rounds every allocation
//! up to glibc malloc's chunk (16-byte multiples with an 8-byte header, 32 bytes at least), which
//! is closer to what RSS sees. The fixture is a Ready BankClient and its child from a
//! `bench/scale.sh bankclients 3000` run (`managedFields` left out).
//!
//! `cargo bench --bench store_memory`. Numbers go to BENCHMARKS.md ("Scale").

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use entra_operator::api::{AppRegistration, BankClient};
use entra_operator::controllers::wiring::prune_for_store;
use kube::runtime::reflector::{Lookup, ObjectRef};

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static CHUNKS: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size(), Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size(), Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Relaxed);
        ALLOCATIONS.fetch_sub(1, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const COPIES: usize = 10_000;

/// Live (requested, glibc chunks, allocations) per object of `COPIES` stored copies of `doc`.
fn per_object<K>(doc: &serde_json::Value) -> (usize, usize, usize)
where
    K: serde::de::DeserializeOwned + kube::Resource<DynamicType = ()> + Clone,
{
    let text = serde_json::to_string(doc).unwrap();
    let mut stored: Vec<(ObjectRef<K>, Arc<K>)> = Vec::with_capacity(COPIES);
    let before = (
        REQUESTED.load(Relaxed),
        CHUNKS.load(Relaxed),
        ALLOCATIONS.load(Relaxed),
    );
    for _ in 0..COPIES {
        // As a watch does: decoded from the API server's JSON and pruned; the reflector keeps a
        // clone behind an Arc (kube-runtime's `Writer::apply_watcher_event`) and drops the
        // decoded object once the event has passed, so lists are kept at their exact length.
        let mut obj: K = serde_json::from_str(&text).unwrap();
        prune_for_store(&mut obj);
        // Keyed by its reference (name, namespace, uid, resourceVersion), as the store is.
        stored.push((obj.to_object_ref(()), Arc::new(obj.clone())));
        drop(obj);
    }
    let after = (
        REQUESTED.load(Relaxed),
        CHUNKS.load(Relaxed),
        ALLOCATIONS.load(Relaxed),
    );
    // The Vec's own slots are not part of an object's cost.
    let slots = COPIES * std::mem::size_of::<(ObjectRef<K>, Arc<K>)>();
    let result = (
        (after.0 - before.0) / COPIES,
        (after.1 - before.1 - chunk(slots)) / COPIES,
        (after.2 - before.2) / COPIES,
    );
    drop(stored);
    result
}

fn main() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/ready-bankclient.json")).unwrap();
    let rows = [
        (
            "BankClient",
            std::mem::size_of::<BankClient>(),
            per_object::<BankClient>(&fixture["bankClient"]),
        ),
        (
            "AppRegistration (its child)",
            std::mem::size_of::<AppRegistration>(),
            per_object::<AppRegistration>(&fixture["child"]),
        ),
    ];
    println!("| object | size_of | requested bytes | glibc chunk bytes | allocations |");
    println!("| --- | --- | --- | --- | --- |");
    let mut total = 0;
    for (name, inline, (requested, chunks, allocations)) in rows {
        total += chunks;
        println!("| {name} | {inline} | {requested} | {chunks} | {allocations} |");
    }
    println!(
        "one Ready BankClient in the stores: {total} bytes; {COPIES} of them: {:.1} MiB",
        (total * COPIES) as f64 / (1024.0 * 1024.0)
    );
}
