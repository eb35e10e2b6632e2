//! The metrics endpoint: every shard's counters in the Prometheus text
//! format at `GET /metrics` on `--metrics-listen`. It runs on the storage
//! runtime, off the shards, and only reads counters (one writer each), so
//! scraping never slows a request.

use std::fmt::Write;
use std::net::TcpListener;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use souk_storage::Store;
use souk_storage::store::{SYNC_BUCKETS_SECONDS, WriteStats};
use tokio::sync::watch;

use crate::stats::{Counter, ShardStats, Stats};

type Read = fn(&ShardStats) -> &Counter;

/// Every per-shard counter: its metric name and what it counts.
const COUNTERS: &[(&str, &str, Read)] = &[
    ("souk_requests_total", "Requests received.", |s| &s.requests),
    (
        "souk_request_errors_total",
        "Requests answered with an error status.",
        |s| &s.request_errors,
    ),
    (
        "souk_bad_frames_total",
        "Request frames refused before decoding.",
        |s| &s.bad_frames,
    ),
    (
        "souk_cross_shard_calls_total",
        "Calls sent to another shard.",
        |s| &s.cross_shard_calls,
    ),
    (
        "souk_cross_shard_busy_total",
        "Calls refused because the owner's inbox was full.",
        |s| &s.cross_shard_busy,
    ),
    (
        "souk_cross_shard_served_total",
        "Calls from other shards answered.",
        |s| &s.cross_shard_served,
    ),
    (
        "souk_connections_accepted_total",
        "Connections accepted.",
        |s| &s.connections_accepted,
    ),
    (
        "souk_connections_refused_total",
        "Connections refused at the per-shard limit.",
        |s| &s.connections_refused,
    ),
    (
        "souk_connections_retried_total",
        "New connections asked to prove their address with a QUIC Retry.",
        |s| &s.connections_retried,
    ),
    (
        "souk_connections_rate_limited_total",
        "New connections refused: their address opened too many per second.",
        |s| &s.connections_rate_limited,
    ),
    (
        "souk_connections_closed_total",
        "Connections closed.",
        |s| &s.connections_closed,
    ),
    (
        "souk_datagrams_forwarded_total",
        "Packets of migrated connections handed to their shard.",
        |s| &s.datagrams_forwarded,
    ),
    (
        "souk_datagrams_forward_dropped_total",
        "Forwarded packets dropped on a full queue.",
        |s| &s.datagrams_forward_dropped,
    ),
    (
        "souk_catalog_cache_hits_total",
        "Catalog reads answered from the reply cache.",
        |s| &s.cache_hits,
    ),
    (
        "souk_catalog_cache_misses_total",
        "Catalog reads that built their reply.",
        |s| &s.cache_misses,
    ),
    (
        "souk_escrow_takes_total",
        "Takes of units from the cluster's shared stock pools.",
        |s| &s.escrow_takes,
    ),
    (
        "souk_escrow_units_taken_total",
        "Units taken from the cluster's shared stock pools.",
        |s| &s.escrow_units_taken,
    ),
    (
        "souk_escrow_units_returned_total",
        "Unsold units given back to the cluster's shared stock pools.",
        |s| &s.escrow_units_returned,
    ),
];

/// The exposition text: every shard's counters, then the store's group
/// commit where the backend has one.
pub fn render(stats: &Stats, writes: Option<&WriteStats>) -> String {
    let mut out = String::with_capacity(4096);
    for (name, help, read) in COUNTERS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (shard, counters) in stats.shards().iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", read(counters).get());
        }
    }
    let _ = writeln!(
        out,
        "# HELP souk_catalog_cache_hit_ratio Share of catalog reads answered from the reply caches.\n\
         # TYPE souk_catalog_cache_hit_ratio gauge\n\
         souk_catalog_cache_hit_ratio {}",
        stats.cache_hit_rate()
    );
    if let Some(writes) = writes {
        render_writes(&mut out, writes);
    }
    out
}

/// The embedded store's group commit: its batching (writes per group), where
/// a write's wait goes (queue, apply, hand-over to an fsync, the fsync as a
/// histogram), refusals of a full queue, and whether it stopped after a
/// failed write.
fn render_writes(out: &mut String, writes: &WriteStats) {
    let counters = [
        (
            "souk_store_commit_groups_total",
            "Group commits: write transactions applied, each made durable by an fsync.",
            writes.groups,
        ),
        (
            "souk_store_committed_writes_total",
            "Writes run in group commits (writes per group is the batching).",
            writes.writes,
        ),
        (
            "souk_store_busy_total",
            "Writes refused with Busy because the commit queue was full.",
            writes.busy,
        ),
    ];
    let seconds = [
        (
            "souk_store_commit_queue_seconds_total",
            "Seconds writes waited for their group to begin to apply, summed over writes.",
            writes.queue_seconds,
        ),
        (
            "souk_store_commit_apply_seconds_total",
            "Seconds spent running groups' writes and applying them, summed over groups.",
            writes.apply_seconds,
        ),
        (
            "souk_store_commit_handover_seconds_total",
            "Seconds applied groups waited for the fsync that covers them to begin, summed over groups.",
            writes.handover_seconds,
        ),
    ];
    let counter = |out: &mut String, name: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    for (name, help, value) in counters {
        counter(out, name, help, &value);
    }
    for (name, help, value) in seconds {
        counter(out, name, help, &value);
    }
    let name = "souk_store_fsync_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} fsyncs of group commits, by how long they took.\n# TYPE {name} histogram"
    );
    for (bound, count) in SYNC_BUCKETS_SECONDS.iter().zip(writes.sync_buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {syncs}\n{name}_sum {sum}\n{name}_count {syncs}",
        syncs = writes.syncs,
        sum = writes.sync_seconds
    );
    let _ = writeln!(
        out,
        "# HELP souk_store_healthy 1 while every write and fsync succeeded; 0 once one failed and the store refuses writes until a restart.\n\
         # TYPE souk_store_healthy gauge\n\
         souk_store_healthy {}",
        u8::from(writes.healthy)
    );
}

/// Serves `/metrics` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let body = render(&stats, store.write_stats().as_ref());
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardId;

    #[test]
    fn every_counter_is_rendered_per_shard() {
        let stats = Stats::new(2);
        stats.shard(ShardId(1)).cache_hits.increment();
        stats.shard(ShardId(1)).cache_hits.increment();
        stats.shard(ShardId(0)).cache_misses.increment();
        let text = render(&stats, None);
        assert!(
            text.contains("souk_catalog_cache_hits_total{shard=\"1\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("souk_catalog_cache_hits_total{shard=\"0\"} 0\n"));
        let ratio = text
            .lines()
            .find(|l| l.starts_with("souk_catalog_cache_hit_ratio "))
            .unwrap();
        let ratio: f64 = ratio.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((ratio - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(text.matches("# TYPE").count(), COUNTERS.len() + 1);
        assert!(!text.contains("souk_store_"), "{text}");
    }

    #[test]
    fn the_group_commit_is_rendered_with_a_cumulative_fsync_histogram() {
        let mut sync_buckets = [0; SYNC_BUCKETS_SECONDS.len()];
        sync_buckets[2..].fill(3);
        sync_buckets[9] = 4;
        let writes = WriteStats {
            groups: 5,
            writes: 120,
            busy: 2,
            queue_seconds: 0.375,
            apply_seconds: 0.5,
            handover_seconds: 0.25,
            syncs: 5,
            sync_seconds: 0.0125,
            sync_buckets,
            healthy: true,
        };
        let text = render(&Stats::new(1), Some(&writes));
        for line in [
            "souk_store_commit_groups_total 5",
            "souk_store_committed_writes_total 120",
            "souk_store_busy_total 2",
            "souk_store_commit_queue_seconds_total 0.375",
            "souk_store_commit_apply_seconds_total 0.5",
            "souk_store_commit_handover_seconds_total 0.25",
            "souk_store_fsync_seconds_bucket{le=\"0.00025\"} 0",
            "souk_store_fsync_seconds_bucket{le=\"0.0005\"} 3",
            "souk_store_fsync_seconds_bucket{le=\"1\"} 4",
            "souk_store_fsync_seconds_bucket{le=\"+Inf\"} 5",
            "souk_store_fsync_seconds_sum 0.0125",
            "souk_store_fsync_seconds_count 5",
            "souk_store_healthy 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let stopped = WriteStats {
            healthy: false,
            ..writes
        };
        let text = render(&Stats::new(1), Some(&stopped));
        assert!(text.lines().any(|l| l == "souk_store_healthy 0"), "{text}");
    }
}
