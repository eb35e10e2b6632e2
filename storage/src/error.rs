//! Storage errors: operating conditions the caller handles, each typed.

use std::io;

/// Why a storage operation failed. Clone, because one failed group commit
/// fails every write in the group with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A value or key over its bound (`limits`); nothing was written.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A key that breaks the key rules (empty, too long, bad characters).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A uniqueness rule or an expected state did not hold; nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The commit queue is full: the store is overloaded. Retry later.
    #[error("storage busy: the commit queue is full")]
    Busy,
    /// The disk is full. Writes fail until space is freed; reads still work.
    #[error("disk full")]
    DiskFull,
    /// An I/O failure; the write may be retried (idempotently).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The backend (a cluster, the committer) cannot be reached or has stopped.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back: a bug or a damaged disk.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl From<io::Error> for StorageError {
    fn from(error: io::Error) -> StorageError {
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::DiskFull,
            _ => StorageError::Io(error.to_string()),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
