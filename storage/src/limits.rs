//! Storage bounds, each with its reason.

/// A stored record. The largest legitimate ones are a product at every
/// `souk_wire` list bound (well under 64 KiB) and an order of
/// `CART_LINES_MAX` lines; 256 KiB leaves room and still bounds what one
/// write can make the committer hold.
pub const RECORD_BYTES_MAX: usize = 256 * 1024;

/// A storage key: identifiers are at most 64 bytes, e-mails 254.
pub const KEY_BYTES_MAX: usize = 512;

/// Writes waiting for the group-commit thread. A full queue answers `Busy`
/// at once instead of blocking a shard's event loop. At thousands of writes
/// per fsync this is several commit rounds of backlog.
pub const COMMIT_QUEUE_MAX: usize = 16 * 1024;

/// Writes in one group commit: one fsync acknowledges all of them. Bounded
/// so that one commit's latency, and the memory of its batch, stay bounded.
pub const COMMIT_BATCH_MAX: usize = 4096;

/// Groups applied whose writers are not yet told. The commit thread
/// applies the next groups while fsyncs run; past this many it waits, so
/// memory held by unacknowledged writes stays bounded. It waits only for
/// an fsync that can cover the group it holds: when every waiting group is
/// covered by one under way and a sync thread is idle, it hands the group
/// over anyway (at most `SYNC_THREADS - 1` past this; see
/// `embedded/commit/pipeline.rs`).
pub const SYNC_PIPELINE_MAX: usize = 8;

/// Items in one page of a list query.
pub const PAGE_MAX: usize = 1000;

/// Refuses a value of `len` bytes over `max` before anything is written.
pub fn check_len(what: &'static str, len: usize, max: usize) -> crate::Result<()> {
    if len > max {
        return Err(crate::StorageError::TooLarge { what, len, max });
    }
    Ok(())
}
