//! The narrow interface the embedded store needs from a key-value engine:
//! ordered tables of byte keys and values, snapshot reads, and a write
//! transaction that sees its own writes and commits atomically and durably.
//! Two engines implement it (`fjall_engine`, `redb_engine`); `DESIGN.md`
//! records how they were measured against each other.

use crate::error::Result;

/// The logical tables. Each engine maps them to its own namespaces, found
/// by `name`, never by position: a table removed from here is left unread
/// in an existing data directory, as `idempotency`, `events` and
/// `event_offsets` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Meta,
    Categories,
    Products,
    Stock,
    Users,
    UsersByEmail,
    Addresses,
    RefreshTokens,
    TokenFamilies,
    Orders,
    OrdersByUser,
    Payments,
    Carts,
    StockSold,
    SignOuts,
}

impl Table {
    pub const ALL: [Table; 15] = [
        Table::Meta,
        Table::Categories,
        Table::Products,
        Table::Stock,
        Table::Users,
        Table::UsersByEmail,
        Table::Addresses,
        Table::RefreshTokens,
        Table::TokenFamilies,
        Table::Orders,
        Table::OrdersByUser,
        Table::Payments,
        Table::Carts,
        Table::StockSold,
        Table::SignOuts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Categories => "categories",
            Table::Products => "products",
            Table::Stock => "stock",
            Table::Users => "users",
            Table::UsersByEmail => "users_by_email",
            Table::Addresses => "addresses",
            Table::RefreshTokens => "refresh_tokens",
            Table::TokenFamilies => "token_families",
            Table::Orders => "orders",
            Table::OrdersByUser => "orders_by_user",
            Table::Payments => "payments",
            Table::Carts => "carts",
            Table::StockSold => "stock_sold",
            Table::SignOuts => "sign_outs",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

pub type Pair = (Vec<u8>, Vec<u8>);

/// Keys that start with `prefix`, walked up from `from` (ascending) or down
/// from it (descending); `from` is inclusive and defaults to the end of the
/// prefix in the walk's direction.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    pub prefix: &'a [u8],
    pub from: Option<&'a [u8]>,
    pub descending: bool,
    pub limit: usize,
}

impl<'a> Scan<'a> {
    pub fn prefix(prefix: &'a [u8], limit: usize) -> Scan<'a> {
        Scan {
            prefix,
            from: None,
            descending: false,
            limit,
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`, or
/// `None` when no such key exists (an empty or all-0xFF prefix).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub trait Engine: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<Pair>>;
    /// A write transaction. Only the group-commit thread opens them.
    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>>;
    /// Makes every transaction applied before the call durable. Only the
    /// group commit's threads call it, concurrently with the next
    /// transactions and with other calls of `sync`. An engine whose `apply`
    /// is already durable has nothing to do.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Called at a clean shutdown: leave the files so that the next open
    /// has no journal to replay.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// A write transaction: reads see its own writes; nothing is visible to
/// readers until `apply` returns, and dropping it unapplied discards every
/// write. An applied transaction is durable after the engine's next `sync`
/// (or at once, for engines that sync in `apply`); a crash keeps a prefix
/// of the applied transactions, each whole or not at all.
pub trait WriteTxn {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<Pair>>;
    /// Up to `limit` pairs from `from` (inclusive) on, in key order.
    fn scan_from(&mut self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Pair>>;
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<()>;
    /// Applies every write atomically, in order after the transactions
    /// applied before it.
    fn apply(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
