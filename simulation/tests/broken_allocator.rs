//! The checker bites: with a deliberately broken allocator injected into
//! every node (`--features broken-allocator`, `sim::faults::BrokenAllocator`:
//! a release forgets the owner index), the invariants catch it within the
//! fixed seed set. Run by `deploy/test.sh`:
//! `cargo test -p simulation --features broken-allocator --test broken_allocator`.

#![cfg(feature = "broken-allocator")]

use simulation::sim::{run, SimConfig, Violation};

#[test]
fn the_invariants_catch_a_broken_allocator() {
    // Goal: among the seeds the normal test passes, the broken allocator
    // makes some fail with a state invariant violation.
    let caught: Vec<u64> = (0..200)
        .filter(|seed| {
            run(&SimConfig {
                seed: *seed,
                nodes: 5,
                voters: 3,
                operations: 60,
                faults: true,
            })
            .violations
            .iter()
            .any(|v| matches!(v, Violation::StateInvariant { .. }))
        })
        .take(3)
        .collect();
    assert!(!caught.is_empty(), "no seed caught the broken allocator");
    println!("caught by seeds {caught:?}");
}
