//! One conformance suite for every backend: the same cases run against the directory backend and
//! against two real, independent Garage instances started by the harness. Each case is its own
//! test (`directory::<case>`, `garage::<case>`), so a failure names the backend and the assertion.

mod conformance {
    pub mod backend;
    pub mod cases;
}

use conformance::backend::Backend;

/// Runs `case` on a current-thread runtime in the test's own thread, which owns the servers.
fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(case(backend));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod directory {
            $( #[test] fn $case() { super::run(super::Backend::directory(), super::conformance::cases::$case) } )*
        }
        mod garage {
            $( #[test] fn $case() { super::run(super::Backend::garage(), super::conformance::cases::$case) } )*
        }
    };
}

conformance!(
    round_trip_with_metadata,
    instances_are_independent,
    large_object_streams_with_bounded_memory,
    ranged_reads,
    listing_10000_keys_sorted_across_pages,
    listing_with_prefix_and_start_after,
    missing_key_is_not_found,
    concurrent_writers_leave_one_whole_object,
    stopped_server_is_unavailable_not_not_found,
    malformed_and_traversal_keys_are_refused,
    oversize_put_is_refused_and_stores_nothing,
    failed_put_keeps_the_previous_object,
    partitioned_layout_round_trip,
    put_if_absent_writes_only_a_missing_key,
);
