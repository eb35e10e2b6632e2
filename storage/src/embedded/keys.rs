//! Key layouts. Integers are big-endian so that byte order is numeric
//! order; composite keys put the partition first (user, shard, family) so
//! that one prefix scan reads one partition, as a Scylla partition would.

use souk_wire::api::{AddressId, OrderId, UnixMillis, UserId};

use crate::error::{Result, StorageError};
use crate::limits::KEY_BYTES_MAX;

pub const CATALOG_IMPORTED: &[u8] = b"catalog_imported";
/// The stock snapshot's watermark (an order id, big-endian); the units
/// sold below it are in `Table::StockSold`.
pub const STOCK_WATERMARK: &[u8] = b"stock_watermark";

/// Ends a variable-length text in a composite key, so text key parts may
/// not contain it.
const SEPARATOR: u8 = 0;

/// A text key part: bounded, and free of the separator byte.
pub fn text(value: &str, what: &str) -> Result<Vec<u8>> {
    if value.is_empty() || value.len() > KEY_BYTES_MAX || value.as_bytes().contains(&SEPARATOR) {
        return Err(StorageError::InvalidKey(format!(
            "{what} must be 1..={KEY_BYTES_MAX} bytes without NUL"
        )));
    }
    Ok(value.as_bytes().to_vec())
}

/// E-mail index key: lower-cased, so uniqueness ignores case.
pub fn email(email: &str) -> Result<Vec<u8>> {
    text(&email.to_lowercase(), "e-mail")
}

pub fn user(id: UserId) -> [u8; 8] {
    id.0.to_be_bytes()
}

pub fn address(user: UserId, id: AddressId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user.0.to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

pub fn order(id: OrderId) -> [u8; 8] {
    id.0.to_be_bytes()
}

pub fn order_by_user(user: UserId, order: OrderId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user.0.to_be_bytes());
    key[8..].copy_from_slice(&order.0.to_be_bytes());
    key
}

/// The order id at the end of an index key.
pub fn trailing_order(key: &[u8]) -> Result<OrderId> {
    let bytes: [u8; 8] = key
        .get(key.len().saturating_sub(8)..)
        .and_then(|tail| tail.try_into().ok())
        .ok_or_else(|| StorageError::Corrupt {
            table: "order index",
            reason: format!("key of {} bytes", key.len()),
        })?;
    Ok(OrderId(u64::from_be_bytes(bytes)))
}

pub fn token_family(family: &[u8; 16], token_hash: &[u8; 32]) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..16].copy_from_slice(family);
    key[16..].copy_from_slice(token_hash);
    key
}

/// A stored time (`Table::SignOuts` values): big-endian milliseconds.
pub fn millis(value: &[u8]) -> Result<UnixMillis> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
        table: "sign_outs",
        reason: format!("a time of {} bytes", value.len()),
    })?;
    Ok(UnixMillis(u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_keys_sort_numerically() {
        assert!(order(OrderId(2)) < order(OrderId(256)));
        assert!(order_by_user(UserId(1), OrderId(999)) < order_by_user(UserId(2), OrderId(0)));
        assert_eq!(
            trailing_order(&order_by_user(UserId(3), OrderId(77))).unwrap(),
            OrderId(77)
        );
    }

    #[test]
    fn text_keys_refuse_empty_long_and_nul() {
        assert!(text("", "x").is_err());
        assert!(text("a\0b", "x").is_err());
        assert!(text(&"a".repeat(KEY_BYTES_MAX + 1), "x").is_err());
        assert_eq!(email("Ada@Example.COM").unwrap(), b"ada@example.com");
    }
}
