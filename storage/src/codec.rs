//! Record encoding: a format version byte, then postcard (compact, fast,
//! serde). Postcard is not self-describing, so a record type that changes
//! shape gets a new version and a decoder for the old one; `decode` refuses
//! versions it does not know instead of misreading them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StorageError};

/// The version of every record written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes `value` for `table`, refusing it if it exceeds `max` bytes.
pub fn encode<T: Serialize>(what: &'static str, value: &T, max: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![FORMAT_VERSION];
    let bytes = postcard::to_extend(value, std::mem::take(&mut bytes)).map_err(|e| {
        StorageError::Corrupt {
            table: what,
            reason: format!("cannot encode: {e}"),
        }
    })?;
    if bytes.len() > max {
        return Err(StorageError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| StorageError::Corrupt {
        table: what,
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
        }
        Some((version, _)) => Err(corrupt(format!("unknown format version {version}"))),
        None => Err(corrupt("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StockRecord;
    use souk_wire::api::{Sku, UnixMillis};

    #[test]
    fn records_round_trip_and_bad_bytes_are_corrupt_not_panics() {
        let record = StockRecord {
            sku: Sku::new("A-1").unwrap(),
            received: 5,
            updated_at: UnixMillis(9),
        };
        let bytes = encode("stock", &record, 100).unwrap();
        assert_eq!(decode::<StockRecord>("stock", &bytes).unwrap(), record);
        assert!(matches!(
            decode::<StockRecord>("stock", &[]),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<StockRecord>("stock", &[9, 1, 2]),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<StockRecord>("stock", &bytes[..3]),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            encode("stock", &record, 3),
            Err(StorageError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_invalid_identifier_in_stored_bytes_is_refused_on_read() {
        // A SKU with a space cannot be constructed; bytes that claim one are corrupt.
        let bytes = encode("stock", &("A B".to_owned(), 5i64, 9u64), 100).unwrap();
        assert!(decode::<StockRecord>("stock", &bytes).is_err());
    }
}
