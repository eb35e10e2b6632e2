use proptest::prelude::*;
use souk_storage::testing;
use souk_wire::api::{Currency, Money, OrderLine, ProductId};

use super::*;

fn sku(n: u8) -> Sku {
    Sku::new(format!("P0000{n}-M")).unwrap()
}

fn restock(sku: Sku, quantity: i64, mode: RestockMode) -> AdminRestock {
    AdminRestock {
        sku,
        quantity,
        mode,
    }
}

#[test]
fn restock_adds_and_sets_within_bounds() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    let added = inventory.restock(&restock(sku(1), 5, RestockMode::Add));
    assert_eq!(added.unwrap().available, 15);
    let set = inventory.restock(&restock(sku(1), 3, RestockMode::Set));
    assert_eq!(set.unwrap().on_hand, 3);
    let error = inventory
        .restock(&restock(sku(1), -4, RestockMode::Add))
        .unwrap_err();
    assert_eq!(error.status, ErrorStatus::BadRequest);
    assert_eq!(
        inventory.level(&sku(1)).on_hand,
        3,
        "a refused restock changes nothing"
    );
    assert!(
        inventory
            .restock(&restock(sku(1), STOCK_UNITS_MAX, RestockMode::Add))
            .is_err()
    );
}

#[test]
fn reserved_units_cannot_be_taken_away() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 4)])
        .unwrap();
    let error = inventory
        .restock(&restock(sku(1), 3, RestockMode::Set))
        .unwrap_err();
    assert_eq!(error.status, ErrorStatus::Conflict);
    let level = inventory
        .restock(&restock(sku(1), 4, RestockMode::Set))
        .unwrap();
    assert_eq!(level.available, 0);
}

#[test]
fn setting_stock_after_sales_counts_what_was_sold() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 4)])
        .unwrap();
    assert!(inventory.commit(OrderId(1)));
    inventory
        .restock(&restock(sku(1), 20, RestockMode::Set))
        .unwrap();
    assert_eq!(inventory.received(&sku(1)), 24, "20 on hand after 4 sold");
    assert_eq!(inventory.level(&sku(1)).on_hand, 20);
}

#[test]
fn a_reverted_restock_restores_the_units_on_hand() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    inventory
        .restock(&restock(sku(1), 4, RestockMode::Add))
        .unwrap();
    inventory.revert(&sku(1), 4);
    assert_eq!(inventory.level(&sku(1)).on_hand, 10);
}

#[test]
fn unknown_sku_has_nothing_available() {
    let mut inventory = Inventory::default();
    assert_eq!(inventory.level(&sku(1)).available, 0);
    let error = inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 1)])
        .unwrap_err();
    assert_eq!(error.status, ErrorStatus::InsufficientStock);
}

#[test]
fn a_reservation_is_all_or_nothing() {
    let mut inventory = Inventory::load([(sku(1), 10), (sku(2), 1)], None);
    let error = inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 3), (sku(2), 2)])
        .unwrap_err();
    assert_eq!(error.status, ErrorStatus::InsufficientStock);
    assert_eq!(inventory.level(&sku(1)).available, 10);
    assert_eq!(inventory.level(&sku(2)).available, 1);
}

#[test]
fn reserving_and_settling_are_idempotent_by_order() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    inventory
        .reserve(OrderId(7), UserId(1), &[(sku(1), 3)])
        .unwrap();
    inventory
        .reserve(OrderId(7), UserId(1), &[(sku(1), 3)])
        .unwrap();
    assert_eq!(inventory.level(&sku(1)).reserved, 3, "reserved once");
    assert!(inventory.release(OrderId(7)));
    assert!(!inventory.release(OrderId(7)), "released once");
    assert!(
        !inventory.commit(OrderId(7)),
        "a released order cannot sell"
    );
    assert_eq!(inventory.level(&sku(1)).available, 10);
    let late = inventory.reserve(OrderId(7), UserId(1), &[(sku(1), 3)]);
    assert_eq!(
        late.unwrap_err().status,
        ErrorStatus::Conflict,
        "a late duplicate is refused"
    );
    assert_eq!(inventory.level(&sku(1)).available, 10);
}

#[test]
fn purchase_limits_count_reserved_and_bought_units() {
    let mut inventory = Inventory::load([(sku(1), 100)], Some(3));
    inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 2)])
        .unwrap();
    inventory.commit(OrderId(1));
    let over = inventory
        .reserve(OrderId(2), UserId(1), &[(sku(1), 2)])
        .unwrap_err();
    assert_eq!(over.status, ErrorStatus::LimitExceeded);
    inventory
        .reserve(OrderId(3), UserId(1), &[(sku(1), 1)])
        .unwrap();
    inventory.release(OrderId(3));
    inventory
        .reserve(OrderId(4), UserId(1), &[(sku(1), 1)])
        .unwrap();
    inventory
        .reserve(OrderId(5), UserId(2), &[(sku(1), 3)])
        .unwrap();
    let split = inventory.reserve(OrderId(6), UserId(3), &[(sku(1), 2), (sku(1), 2)]);
    assert_eq!(
        split.unwrap_err().status,
        ErrorStatus::LimitExceeded,
        "lines of one SKU add up"
    );
}

#[test]
fn bad_quantities_are_refused() {
    let mut inventory = Inventory::load([(sku(1), 10)], None);
    for units in [0, -1, STOCK_UNITS_MAX + 1] {
        let error = inventory
            .reserve(OrderId(1), UserId(1), &[(sku(1), units)])
            .unwrap_err();
        assert_eq!(error.status, ErrorStatus::BadRequest);
    }
}

#[test]
fn a_rebuild_from_stock_records_behind_the_orders_stays_consistent() {
    // Restored from an older backup: the stock record says 1 received,
    // the orders hold 2 sold and 3 reserved.
    let mut paid = order_record(1, 1, &[(sku(1), 2)]);
    paid.status = OrderStatus::Paid;
    let pending = order_record(2, 2, &[(sku(1), 3)]);
    let mut inventory = Inventory::rebuild([(sku(1), 1)], [], [&pending, &paid], |_| true, None);
    let totals = inventory.totals(&sku(1));
    assert_eq!(
        (
            totals.received,
            totals.sold,
            totals.reserved,
            totals.available
        ),
        (5, 2, 3, 0)
    );
    assert!(
        inventory.release(OrderId(2)),
        "the pending order can still be released"
    );
    assert_eq!(inventory.totals(&sku(1)).available, 3);
}

/// What the model of the durable record holds about one order.
#[derive(Debug, Clone)]
struct ModelOrder {
    record: OrderRecord,
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        user: u8,
        lines: Vec<(u8, i64)>,
    },
    Release(usize),
    Commit(usize),
    Restock {
        sku: u8,
        units: i64,
    },
    /// Folds the settled orders before the first pending one into the
    /// stock snapshot, as the store does.
    Snapshot,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, prop::collection::vec((0u8..3, 1i64..5), 1..4))
            .prop_map(|(user, lines)| Op::Reserve { user, lines }),
        2 => (0usize..64).prop_map(Op::Release),
        2 => (0usize..64).prop_map(Op::Commit),
        1 => (0u8..3, 0i64..6).prop_map(|(sku, units)| Op::Restock { sku, units }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Crash),
    ]
}

fn order_record(id: u64, user: u8, lines: &[(Sku, i64)]) -> OrderRecord {
    let mut record = testing::order(id);
    record.user_id = UserId(u64::from(user));
    record.status = OrderStatus::PendingPayment;
    record.lines = lines
        .iter()
        .map(|(sku, units)| OrderLine {
            sku: sku.clone(),
            product_id: ProductId::new("P1").unwrap(),
            name: "thing".into(),
            quantity: *units as u32,
            unit_price: Money::new(100, Currency::EUR),
            line_total: Money::new(100 * units, Currency::EUR),
        })
        .collect();
    record
}

const LIMIT: i64 = 6;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random interleavings of reserve, release, commit, restock, stock
    /// snapshots and crash-and-rebuild: stock is conserved at every step,
    /// never oversold, limits hold, and a rebuild from the durable record
    /// (units received, the snapshot, and the last states of the orders
    /// after it) gives back exactly the live counters.
    #[test]
    fn stock_is_conserved_through_any_interleaving(
        initial in prop::collection::vec(0i64..8, 3),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let skus: Vec<Sku> = (0..3).map(sku).collect();
        let mut received: Vec<i64> = initial.clone();
        let load = |received: &[i64]| skus.iter().cloned().zip(received.iter().copied()).collect::<Vec<_>>();
        let mut inventory = Inventory::load(load(&received), Some(LIMIT));
        let mut orders: Vec<ModelOrder> = Vec::new();
        // Orders folded into the snapshot, and the units they sold per SKU.
        let (mut folded, mut sold_before) = (0usize, vec![0i64; 3]);
        // Orders whose purchases the live counters no longer count against
        // limits: those folded before the last rebuild.
        let mut forgotten = 0usize;
        for op in ops {
            match op {
                Op::Reserve { user, lines } => {
                    let lines: Vec<(Sku, i64)> =
                        lines.iter().map(|(s, n)| (skus[*s as usize].clone(), *n)).collect();
                    let before: Vec<Totals> = skus.iter().map(|s| inventory.totals(s)).collect();
                    let id = orders.len() as u64 + 1;
                    match inventory.reserve(OrderId(id), UserId(u64::from(user)), &lines) {
                        Ok(()) => orders.push(ModelOrder { record: order_record(id, user, &lines) }),
                        Err(_) => {
                            let after: Vec<Totals> = skus.iter().map(|s| inventory.totals(s)).collect();
                            prop_assert_eq!(before, after, "a refused reservation changes nothing");
                        }
                    }
                }
                Op::Release(n) | Op::Commit(n) if orders.is_empty() => { let _ = n; }
                Op::Release(n) => {
                    let count = orders.len();
                    let order = &mut orders[n % count].record;
                    let held = inventory.release(order.id);
                    prop_assert_eq!(held, order.status == OrderStatus::PendingPayment);
                    if held { order.status = OrderStatus::Cancelled; }
                }
                Op::Commit(n) => {
                    let count = orders.len();
                    let order = &mut orders[n % count].record;
                    let held = inventory.commit(order.id);
                    prop_assert_eq!(held, order.status == OrderStatus::PendingPayment);
                    if held { order.status = OrderStatus::Paid; }
                }
                Op::Restock { sku, units } => {
                    let sku = &skus[sku as usize];
                    if inventory.restock(&restock(sku.clone(), units, RestockMode::Add)).is_ok() {
                        received[skus.iter().position(|s| s == sku).unwrap()] = inventory.received(sku);
                    }
                }
                Op::Snapshot => {
                    while let Some(order) = orders.get(folded).map(|o| &o.record) {
                        if order.status == OrderStatus::PendingPayment {
                            break;
                        }
                        if order.status == OrderStatus::Paid {
                            for line in &order.lines {
                                let i = skus.iter().position(|s| s == &line.sku).unwrap();
                                sold_before[i] += i64::from(line.quantity);
                            }
                        }
                        folded += 1;
                    }
                }
                Op::Crash => {
                    let records: Vec<&OrderRecord> = orders[folded..].iter().map(|o| &o.record).collect();
                    let rebuilt = Inventory::rebuild(load(&received), load(&sold_before), records, |_| true, Some(LIMIT));
                    forgotten = folded;
                    for s in &skus {
                        prop_assert_eq!(rebuilt.totals(s), inventory.totals(s));
                    }
                    inventory = rebuilt;
                }
            }
            for (i, s) in skus.iter().enumerate() {
                let t = inventory.totals(s);
                prop_assert_eq!(t.received, received[i]);
                prop_assert_eq!(t.received, t.available + t.reserved + t.sold, "conservation");
                prop_assert!(t.available >= 0);
                let sold: i64 = orders.iter()
                    .filter(|o| o.record.status == OrderStatus::Paid)
                    .flat_map(|o| o.record.lines.iter())
                    .filter(|l| &l.sku == s)
                    .map(|l| i64::from(l.quantity))
                    .sum();
                prop_assert_eq!(t.sold, sold, "sold is what paid orders hold");
            }
            for user in 0..4u64 {
                for s in &skus {
                    let held: i64 = orders[forgotten..].iter()
                        .filter(|o| o.record.user_id == UserId(user))
                        .filter(|o| matches!(o.record.status, OrderStatus::Paid | OrderStatus::PendingPayment))
                        .flat_map(|o| o.record.lines.iter())
                        .filter(|l| &l.sku == s)
                        .map(|l| i64::from(l.quantity))
                        .sum();
                    prop_assert!(held <= LIMIT, "user {} holds {} of {}", user, held, s);
                }
            }
        }
    }
}

#[test]
fn only_a_crossing_of_a_status_is_reported_for_the_stock_board() {
    let mut inventory = Inventory::load([(sku(1), 7)], None);
    inventory
        .reserve(OrderId(1), UserId(1), &[(sku(1), 1)])
        .unwrap();
    assert!(
        inventory.take_status_changes().is_empty(),
        "6 left: still in stock"
    );
    inventory
        .reserve(OrderId(2), UserId(1), &[(sku(1), 2)])
        .unwrap();
    inventory.commit(OrderId(2));
    assert_eq!(
        inventory.take_status_changes(),
        vec![(sku(1), StockStatus::LowStock)]
    );
    inventory
        .reserve(OrderId(3), UserId(2), &[(sku(1), 4)])
        .unwrap();
    inventory.release(OrderId(3));
    assert_eq!(
        inventory.take_status_changes(),
        vec![(sku(1), StockStatus::LowStock)],
        "sold out and back: reported once, as it is now"
    );
    inventory.release(OrderId(1));
    assert!(
        inventory.take_status_changes().is_empty(),
        "5 left: still low"
    );
    inventory
        .restock(&restock(sku(1), 0, RestockMode::Set))
        .unwrap();
    assert_eq!(
        inventory.take_status_changes(),
        vec![(sku(1), StockStatus::OutOfStock)]
    );
    assert_eq!(inventory.statuses()[&sku(1)], StockStatus::OutOfStock);
}
