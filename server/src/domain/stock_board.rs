//! Stock statuses for listings. A browse page shows each product as in
//! stock, low or sold out, which is the SKU owners' state; asking every
//! owner on every browse would put cross-shard calls on the busiest read.
//! Instead each owner publishes the statuses of the SKUs it owns, and only
//! when one changes (a counter crossing `LOW_STOCK_UNITS` or zero, which
//! is rare next to the sales that move it). The owner replaces its map
//! whole; other shards read immutable snapshots of it, as they read the
//! catalog. Each map still has exactly one writer, its owner shard.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use souk_wire::api::{Sku, StockStatus};

use crate::shard::{Placement, ShardId};

pub type StockStatuses = HashMap<Sku, StockStatus>;

#[derive(Debug)]
pub struct StockBoard {
    placement: Placement,
    /// One map per owner shard, in shard order.
    owners: Vec<RwLock<Arc<StockStatuses>>>,
}

impl StockBoard {
    /// The board at start, from each owner's rebuilt counters.
    pub fn new(placement: Placement, per_owner: Vec<StockStatuses>) -> StockBoard {
        assert_eq!(per_owner.len(), placement.shard_count());
        StockBoard {
            placement,
            owners: per_owner
                .into_iter()
                .map(|statuses| RwLock::new(Arc::new(statuses)))
                .collect(),
        }
    }

    /// What every owner last published, to read many SKUs from.
    pub fn snapshot(&self) -> BoardSnapshot {
        BoardSnapshot {
            placement: self.placement,
            owners: self
                .owners
                .iter()
                .map(|owner| owner.read().expect("not poisoned").clone())
                .collect(),
        }
    }

    /// Publishes an owner's changed statuses; whether any differed from
    /// what it had published. Only `owner`'s shard calls this.
    pub fn publish(&self, owner: ShardId, changes: &[(Sku, StockStatus)]) -> bool {
        let slot = &self.owners[owner.index()];
        let current = slot.read().expect("not poisoned").clone();
        let differs = changes.iter().any(|(sku, status)| {
            current.get(sku).copied().unwrap_or(StockStatus::Unknown) != *status
        });
        if !differs {
            return false;
        }
        let mut next = StockStatuses::clone(&current);
        for (sku, status) in changes {
            next.insert(sku.clone(), *status);
        }
        *slot.write().expect("not poisoned") = Arc::new(next);
        true
    }
}

pub struct BoardSnapshot {
    placement: Placement,
    owners: Vec<Arc<StockStatuses>>,
}

impl BoardSnapshot {
    pub fn status(&self, sku: &Sku) -> StockStatus {
        self.owners[self.placement.sku_owner(sku).index()]
            .get(sku)
            .copied()
            .unwrap_or(StockStatus::Unknown)
    }

    /// A product's status in a listing: the best of its variants', so that
    /// a product with any variant to sell is not shown as sold out.
    pub fn best<'s>(&self, skus: impl IntoIterator<Item = &'s Sku>) -> StockStatus {
        let rank = |status: StockStatus| match status {
            StockStatus::InStock => 3,
            StockStatus::LowStock => 2,
            StockStatus::OutOfStock => 1,
            _ => 0,
        };
        skus.into_iter()
            .map(|sku| self.status(sku))
            .max_by_key(|status| rank(*status))
            .unwrap_or(StockStatus::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(n: u32) -> Sku {
        Sku::new(format!("S-{n}")).unwrap()
    }

    #[test]
    fn owners_publish_changes_and_listings_show_the_best_variant() {
        let placement = Placement::new(2);
        let mut per_owner = vec![StockStatuses::new(), StockStatuses::new()];
        for n in 0..8 {
            per_owner[placement.sku_owner(&sku(n)).index()].insert(sku(n), StockStatus::InStock);
        }
        let board = StockBoard::new(placement, per_owner);
        let owner = placement.sku_owner(&sku(1));
        assert!(
            !board.publish(owner, &[(sku(1), StockStatus::InStock)]),
            "no change"
        );
        let before = board.snapshot();
        assert!(board.publish(owner, &[(sku(1), StockStatus::OutOfStock)]));
        assert_eq!(
            before.status(&sku(1)),
            StockStatus::InStock,
            "a snapshot stays as read"
        );
        let after = board.snapshot();
        assert_eq!(after.status(&sku(1)), StockStatus::OutOfStock);
        assert_eq!(after.best([&sku(1), &sku(2)]), StockStatus::InStock);
        assert_eq!(after.best([&sku(1)]), StockStatus::OutOfStock);
        assert_eq!(after.best([&sku(99)]), StockStatus::Unknown);
    }
}
