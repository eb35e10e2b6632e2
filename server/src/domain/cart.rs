//! Carts, each held by its owner shard: a user's cart by the user's shard,
//! a guest cart by the shard its device id hashes to. A cart holds only
//! SKUs and quantities; prices and stock are read fresh whenever a cart is
//! shown or checked out, so a cart never shows a stale price.

use std::collections::{HashMap, HashSet};

use souk_wire::api::{
    ApiError, CartLine, CartView, DeviceId, ErrorStatus, Money, Sku, StockLevel, UnixMillis, UserId,
};

use super::catalog::Catalog;
use crate::limits::{CART_LINE_UNITS_MAX, CART_LINES_MAX, CARTS_PER_SHARD_MAX};
use crate::shard::{Placement, ShardId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CartKey {
    User(UserId),
    Guest(DeviceId),
}

impl CartKey {
    /// The key carts are stored under.
    pub fn storage_key(&self) -> String {
        match self {
            CartKey::User(user) => format!("u:{}", user.0),
            CartKey::Guest(device) => format!("g:{device}"),
        }
    }

    /// The inverse of `storage_key`; `None` for a key souk did not write.
    pub fn from_storage_key(key: &str) -> Option<CartKey> {
        match key.split_once(':')? {
            ("u", id) => id.parse().ok().map(|id| CartKey::User(UserId(id))),
            ("g", device) => DeviceId::new(device).ok().map(CartKey::Guest),
            _ => None,
        }
    }

    pub fn owner(&self, placement: Placement) -> ShardId {
        match self {
            CartKey::User(user) => placement.user_owner(*user),
            CartKey::Guest(device) => placement.device_owner(device),
        }
    }
}

/// A changed cart as it is now, for writing to the store: the key, its
/// lines (none: the cart is gone) and when it was last changed.
pub type DirtyCart = (CartKey, Vec<(Sku, u32)>, UnixMillis);

/// A change to a cart, run on its owner shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartChange {
    View,
    /// Adds units to a line (creating it).
    Add {
        sku: Sku,
        units: u32,
    },
    /// Sets a line's units; 0 removes it.
    Set {
        sku: Sku,
        units: u32,
    },
    Remove {
        sku: Sku,
    },
    /// Adds another cart's lines (a guest cart at login). Each summed line
    /// is capped by `caps` (what is in stock and what the customer may
    /// buy, as the caller found them) and by the line bound.
    Merge {
        lines: Vec<(Sku, u32)>,
        caps: Vec<(Sku, u32)>,
    },
    /// Empties the cart and returns what it held (the guest half of a merge).
    Take,
    /// Removes exactly these units (what a checkout ordered), leaving any
    /// units added since.
    Deduct {
        lines: Vec<(Sku, u32)>,
    },
}

#[derive(Debug, Default)]
struct Cart {
    lines: Vec<(Sku, u32)>,
    touched: UnixMillis,
}

#[derive(Debug, Default)]
pub struct Carts {
    carts: HashMap<CartKey, Cart>,
    /// Carts changed since the last flush to the store.
    dirty: HashSet<CartKey>,
}

impl Carts {
    /// Applies a change and returns the cart's lines after it.
    pub fn apply(
        &mut self,
        key: &CartKey,
        change: CartChange,
        now: UnixMillis,
    ) -> Result<Vec<(Sku, u32)>, ApiError> {
        if let CartChange::View = change {
            return Ok(self
                .carts
                .get(key)
                .map(|c| c.lines.clone())
                .unwrap_or_default());
        }
        if !self.carts.contains_key(key) {
            self.make_room();
        }
        self.dirty.insert(key.clone());
        let cart = self.carts.entry(key.clone()).or_default();
        cart.touched = now;
        let position = |lines: &[(Sku, u32)], sku: &Sku| lines.iter().position(|(s, _)| s == sku);
        match change {
            CartChange::View => {}
            CartChange::Add { sku, units } => {
                let current = position(&cart.lines, &sku).map_or(0, |i| cart.lines[i].1);
                let total = current.saturating_add(units);
                set_line(&mut cart.lines, sku, total)?;
            }
            CartChange::Set { sku, units } => set_line(&mut cart.lines, sku, units)?,
            CartChange::Remove { sku } => {
                if let Some(i) = position(&cart.lines, &sku) {
                    cart.lines.remove(i);
                }
            }
            CartChange::Merge { lines, caps } => {
                for (sku, units) in lines {
                    let current = position(&cart.lines, &sku).map_or(0, |i| cart.lines[i].1);
                    let cap = caps
                        .iter()
                        .find(|(s, _)| *s == sku)
                        .map_or(CART_LINE_UNITS_MAX, |(_, cap)| *cap);
                    // A line already over the cap is not cut down by a merge.
                    let total = current
                        .max(current.saturating_add(units).min(cap))
                        .min(CART_LINE_UNITS_MAX);
                    // A merge keeps what fits: a full cart drops the rest
                    // instead of failing the login that merges it.
                    let _ = set_line(&mut cart.lines, sku, total);
                }
            }
            CartChange::Take => {
                let lines = std::mem::take(&mut cart.lines);
                self.carts.remove(key);
                return Ok(lines);
            }
            CartChange::Deduct { lines } => {
                for (sku, units) in lines {
                    if let Some(i) = position(&cart.lines, &sku) {
                        let left = cart.lines[i].1.saturating_sub(units);
                        set_line(&mut cart.lines, sku, left)?;
                    }
                }
            }
        }
        let lines = cart.lines.clone();
        if lines.is_empty() {
            self.carts.remove(key);
        }
        Ok(lines)
    }

    pub fn len(&self) -> usize {
        self.carts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.carts.is_empty()
    }

    /// Drops the cart idle longest when the shard holds its maximum. The
    /// scan is linear but runs once per new cart only at the bound.
    fn make_room(&mut self) {
        if self.carts.len() < CARTS_PER_SHARD_MAX {
            return;
        }
        let oldest = self
            .carts
            .iter()
            .min_by_key(|(_, cart)| cart.touched)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.carts.remove(&key);
            self.dirty.insert(key);
        }
    }

    /// Puts back carts read from the store at start.
    pub fn restore(&mut self, key: CartKey, lines: Vec<(Sku, u32)>, touched: UnixMillis) {
        if !lines.is_empty() {
            self.carts.insert(key, Cart { lines, touched });
        }
    }

    /// The carts changed since the last call, as they are now (no lines:
    /// the cart is gone). The caller writes them; if that fails it hands
    /// them back with `mark_dirty`.
    pub fn take_dirty(&mut self) -> Vec<DirtyCart> {
        self.dirty
            .drain()
            .map(|key| {
                let (lines, touched) = self
                    .carts
                    .get(&key)
                    .map_or((Vec::new(), UnixMillis(0)), |c| {
                        (c.lines.clone(), c.touched)
                    });
                (key, lines, touched)
            })
            .collect()
    }

    pub fn mark_dirty(&mut self, keys: impl IntoIterator<Item = CartKey>) {
        self.dirty.extend(keys);
    }
}

fn set_line(lines: &mut Vec<(Sku, u32)>, sku: Sku, units: u32) -> Result<(), ApiError> {
    if units > CART_LINE_UNITS_MAX {
        return Err(ApiError::bad_request(format!(
            "{sku}: at most {CART_LINE_UNITS_MAX} units per line"
        )));
    }
    match lines.iter().position(|(s, _)| *s == sku) {
        Some(i) if units == 0 => {
            lines.remove(i);
        }
        Some(i) => lines[i].1 = units,
        None if units == 0 => {}
        None if lines.len() >= CART_LINES_MAX => {
            return Err(ApiError::new(
                ErrorStatus::LimitExceeded,
                format!("a cart holds at most {CART_LINES_MAX} lines"),
            ));
        }
        None => lines.push((sku, units)),
    }
    Ok(())
}

/// The cart as the client sees it: current prices and stock, a line per
/// SKU that still exists in the catalog.
pub fn view(catalog: &Catalog, lines: &[(Sku, u32)], levels: &[StockLevel]) -> CartView {
    let mut view_lines = Vec::with_capacity(lines.len());
    let mut subtotal: Option<Money> = None;
    let mut item_count = 0u32;
    for (sku, units) in lines {
        let Some((product, variant)) = catalog.sku_variant(sku) else {
            continue;
        };
        let available = levels
            .iter()
            .find(|l| &l.sku == sku)
            .map_or(0, |l| l.available);
        let line_total = Money::new(
            variant.price.minor_units.saturating_mul(i64::from(*units)),
            variant.price.currency,
        );
        subtotal = match subtotal {
            None => Some(line_total),
            Some(sum) if sum.currency == line_total.currency => Some(Money::new(
                sum.minor_units.saturating_add(line_total.minor_units),
                sum.currency,
            )),
            // Mixed currencies have no single subtotal.
            Some(_) => None,
        };
        item_count = item_count.saturating_add(*units);
        view_lines.push(CartLine {
            sku: sku.clone(),
            product_id: product.id.clone(),
            name: line_name(&product.name, variant.name.as_deref()),
            quantity: *units,
            unit_price: variant.price,
            line_total,
            stock_status: super::stock_status(available),
            available,
        });
    }
    CartView {
        lines: view_lines,
        subtotal,
        item_count,
    }
}

/// A line's name: the product's, with the variant's when it says more. A
/// variant named in full ("Desk Organizer (Black)", as catalogs and the
/// demo name them) is used as it is, not nested in the product's name.
pub fn line_name(product: &str, variant: Option<&str>) -> String {
    match variant {
        Some(variant) if variant.starts_with(product) => variant.to_owned(),
        Some(variant) if !variant.is_empty() => format!("{product} ({variant})"),
        _ => product.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_do_not_repeat_the_product() {
        assert_eq!(line_name("Mug", Some("Blue")), "Mug (Blue)");
        assert_eq!(line_name("Mug", Some("Mug (Blue)")), "Mug (Blue)");
        assert_eq!(line_name("Mug", Some("")), "Mug");
        assert_eq!(line_name("Mug", None), "Mug");
    }

    fn sku(n: u32) -> Sku {
        Sku::new(format!("P{n:05}-M")).unwrap()
    }

    const NOW: UnixMillis = UnixMillis(1);

    fn add(carts: &mut Carts, key: &CartKey, n: u32, units: u32) -> Vec<(Sku, u32)> {
        let add = CartChange::Add { sku: sku(n), units };
        carts.apply(key, add, NOW).unwrap()
    }

    #[test]
    fn lines_are_added_set_and_removed() {
        let mut carts = Carts::default();
        let key = CartKey::User(UserId(1));
        let add = |units| CartChange::Add { sku: sku(1), units };
        carts.apply(&key, add(2), NOW).unwrap();
        let lines = carts.apply(&key, add(3), NOW).unwrap();
        assert_eq!(lines, vec![(sku(1), 5)]);
        let set = CartChange::Set {
            sku: sku(1),
            units: 1,
        };
        assert_eq!(carts.apply(&key, set, NOW).unwrap(), vec![(sku(1), 1)]);
        let too_many = CartChange::Set {
            sku: sku(1),
            units: CART_LINE_UNITS_MAX + 1,
        };
        assert_eq!(
            carts.apply(&key, too_many, NOW).unwrap_err().status,
            ErrorStatus::BadRequest
        );
        let zero = CartChange::Set {
            sku: sku(1),
            units: 0,
        };
        assert!(carts.apply(&key, zero, NOW).unwrap().is_empty());
        assert!(carts.is_empty(), "an empty cart takes no memory");
    }

    #[test]
    fn changes_are_tracked_for_the_store_and_keys_round_trip() {
        let mut carts = Carts::default();
        let user = CartKey::User(UserId(7));
        let guest = CartKey::Guest(DeviceId::new("phone-1").unwrap());
        add(&mut carts, &user, 1, 2);
        add(&mut carts, &guest, 2, 1);
        carts.apply(&guest, CartChange::View, NOW).unwrap();
        let mut dirty = carts.take_dirty();
        dirty.sort_by_key(|(key, _, _)| key.storage_key());
        assert_eq!(dirty.len(), 2);
        assert_eq!(dirty[0].0.storage_key(), "g:phone-1");
        assert_eq!(dirty[1].1, vec![(sku(1), 2)]);
        assert!(carts.take_dirty().is_empty(), "a view changes nothing");
        carts.apply(&guest, CartChange::Take, NOW).unwrap();
        let gone = carts.take_dirty();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1.is_empty(), "a taken cart is written as gone");
        for key in [user, guest] {
            assert_eq!(CartKey::from_storage_key(&key.storage_key()), Some(key));
        }
        assert_eq!(CartKey::from_storage_key("x:1"), None);
    }

    #[test]
    fn a_cart_is_bounded() {
        let mut carts = Carts::default();
        let key = CartKey::User(UserId(1));
        for n in 0..CART_LINES_MAX as u32 {
            add(&mut carts, &key, n, 1);
        }
        let error = carts
            .apply(
                &key,
                CartChange::Add {
                    sku: sku(100_000),
                    units: 1,
                },
                NOW,
            )
            .unwrap_err();
        assert_eq!(error.status, ErrorStatus::LimitExceeded);
    }

    #[test]
    fn merge_sums_and_caps_and_deduct_keeps_later_additions() {
        let mut carts = Carts::default();
        let guest = CartKey::Guest(DeviceId::new("phone-1").unwrap());
        let user = CartKey::User(UserId(1));
        add(&mut carts, &guest, 1, 2);
        add(&mut carts, &guest, 2, 990);
        add(&mut carts, &user, 2, 20);
        let taken = carts.apply(&guest, CartChange::Take, NOW).unwrap();
        assert!(
            carts
                .apply(&guest, CartChange::View, NOW)
                .unwrap()
                .is_empty()
        );
        let merge = CartChange::Merge {
            lines: taken,
            caps: vec![(sku(1), 1)],
        };
        let merged = carts.apply(&user, merge, NOW).unwrap();
        assert_eq!(
            merged,
            vec![(sku(2), CART_LINE_UNITS_MAX), (sku(1), 1)],
            "summed, capped by the line bound and by the caller's cap"
        );
        let after = carts
            .apply(
                &user,
                CartChange::Deduct {
                    lines: vec![(sku(2), 10), (sku(1), 1)],
                },
                NOW,
            )
            .unwrap();
        assert_eq!(after, vec![(sku(2), CART_LINE_UNITS_MAX - 10)]);
    }
}
