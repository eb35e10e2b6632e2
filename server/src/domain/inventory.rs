//! The stock counters a shard owns. Only the owner shard of a SKU
//! (`Placement::sku_owner`) holds or changes its counter; every other shard
//! asks it through the mesh.
//!
//! Invariant, asserted on every write: `0 <= reserved <= on_hand <=
//! STOCK_UNITS_MAX`, so `available = on_hand - reserved` is never negative
//! and an oversell cannot be represented.

use std::collections::HashMap;

use souk_wire::api::{AdminRestock, ApiError, ErrorStatus, RestockMode, Sku, StockLevel};
use souk_wire::limits::STOCK_UNITS_MAX;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counter {
    on_hand: i64,
    reserved: i64,
}

impl Counter {
    fn assert_valid(&self, sku: &Sku) {
        assert!(
            0 <= self.reserved && self.reserved <= self.on_hand && self.on_hand <= STOCK_UNITS_MAX,
            "stock invariant broken for {sku}: {self:?}"
        );
    }

    fn level(&self, sku: &Sku) -> StockLevel {
        self.assert_valid(sku);
        StockLevel {
            sku: sku.clone(),
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.on_hand - self.reserved,
        }
    }
}

#[derive(Debug, Default)]
pub struct Inventory {
    counters: HashMap<Sku, Counter>,
}

impl Inventory {
    /// Counters for the SKUs this shard owns, from their stock on hand.
    pub fn load(stock: impl IntoIterator<Item = (Sku, i64)>) -> Inventory {
        let counters = stock
            .into_iter()
            .map(|(sku, on_hand)| {
                let counter = Counter {
                    on_hand: on_hand.clamp(0, STOCK_UNITS_MAX),
                    reserved: 0,
                };
                (sku, counter)
            })
            .collect();
        Inventory { counters }
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The level of a SKU; a SKU with no counter has none in stock.
    pub fn level(&self, sku: &Sku) -> StockLevel {
        self.counters
            .get(sku)
            .copied()
            .unwrap_or_default()
            .level(sku)
    }

    /// Adds to or sets the units on hand. Stock already reserved by pending
    /// orders cannot be taken away.
    pub fn restock(&mut self, restock: &AdminRestock) -> Result<StockLevel, ApiError> {
        let counter = self.counters.entry(restock.sku.clone()).or_default();
        let on_hand = match restock.mode {
            RestockMode::Add => counter.on_hand.checked_add(restock.quantity),
            RestockMode::Set => Some(restock.quantity),
        };
        let Some(on_hand) = on_hand.filter(|n| (0..=STOCK_UNITS_MAX).contains(n)) else {
            return Err(ApiError::bad_request(format!(
                "stock of {} would leave 0..={STOCK_UNITS_MAX}",
                restock.sku
            )));
        };
        if on_hand < counter.reserved {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                format!(
                    "{} has {} units reserved by pending orders",
                    restock.sku, counter.reserved
                ),
            ));
        }
        counter.on_hand = on_hand;
        Ok(counter.level(&restock.sku))
    }
}

impl Inventory {
    /// Takes back a restock of `delta` units that could not be persisted.
    pub fn revert(&mut self, sku: &Sku, delta: i64) {
        let counter = self.counters.entry(sku.clone()).or_default();
        counter.on_hand = (counter.on_hand - delta).clamp(counter.reserved, STOCK_UNITS_MAX);
        counter.assert_valid(sku);
    }

    /// Every counter's units on hand, for a stock snapshot.
    pub fn on_hand(&self) -> impl Iterator<Item = (&Sku, i64)> {
        self.counters
            .iter()
            .map(|(sku, counter)| (sku, counter.on_hand))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku() -> Sku {
        Sku::new("P00001-M").unwrap()
    }

    fn restock(quantity: i64, mode: RestockMode) -> AdminRestock {
        AdminRestock {
            sku: sku(),
            quantity,
            mode,
        }
    }

    #[test]
    fn restock_adds_and_sets_within_bounds() {
        let mut inventory = Inventory::load([(sku(), 10)]);
        assert_eq!(
            inventory
                .restock(&restock(5, RestockMode::Add))
                .unwrap()
                .available,
            15
        );
        assert_eq!(
            inventory
                .restock(&restock(3, RestockMode::Set))
                .unwrap()
                .on_hand,
            3
        );
        let error = inventory
            .restock(&restock(-4, RestockMode::Add))
            .unwrap_err();
        assert_eq!(error.status, ErrorStatus::BadRequest);
        assert_eq!(
            inventory.level(&sku()).on_hand,
            3,
            "a refused restock changes nothing"
        );
        let too_many = restock(STOCK_UNITS_MAX, RestockMode::Add);
        assert!(inventory.restock(&too_many).is_err());
    }

    #[test]
    fn reserved_units_cannot_be_taken_away() {
        let mut inventory = Inventory::load([(sku(), 10)]);
        inventory.counters.get_mut(&sku()).unwrap().reserved = 4;
        let error = inventory
            .restock(&restock(3, RestockMode::Set))
            .unwrap_err();
        assert_eq!(error.status, ErrorStatus::Conflict);
        assert_eq!(
            inventory
                .restock(&restock(4, RestockMode::Set))
                .unwrap()
                .available,
            0
        );
    }

    #[test]
    fn a_reverted_restock_restores_the_units_on_hand() {
        let mut inventory = Inventory::load([(sku(), 10)]);
        inventory.restock(&restock(4, RestockMode::Add)).unwrap();
        inventory.revert(&sku(), 4);
        assert_eq!(inventory.level(&sku()).on_hand, 10);
    }

    #[test]
    fn unknown_sku_has_nothing_available() {
        let inventory = Inventory::default();
        assert_eq!(inventory.level(&sku()).available, 0);
    }
}
