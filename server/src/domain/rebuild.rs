//! Each shard's state, rebuilt from what the store holds: a pure function
//! of the stored catalog, stock snapshot, orders and carts. The server
//! runs it at start, and the simulator after every crash, so both start
//! from exactly the same rules.

use std::sync::Arc;

use souk_storage::CatalogData;
use souk_storage::model::{CartRecord, OrderRecord, StockSnapshot};
use souk_wire::api::{OrderStatus, Sku};

use super::accounts::TokenKeys;
use super::cart::{CartKey, Carts};
use super::catalog::Catalog;
use super::inventory::Inventory;
use super::orders::{IdGenerator, Pending, Placed};
use super::stock_board::StockBoard;
use super::throttle::{Rate, RateClass, RateLimits};
use super::{CommerceConfig, ShardState};
use crate::limits;
use crate::shard::Placement;

/// What every shard shares, and what each one's state starts from.
#[derive(Debug)]
pub struct Stored<'a> {
    pub catalog: &'a CatalogData,
    pub snapshot: &'a StockSnapshot,
    /// Every order from the snapshot's watermark on.
    pub orders: &'a [OrderRecord],
    pub carts: Vec<CartRecord>,
    /// Where nodes share stock: each SKU's pool as read at start (this
    /// node's grants stand in for units received in `catalog.stock`).
    pub pools: Vec<(Sku, i64)>,
}

/// The settings every shard starts with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub placement: Placement,
    pub tokens: Arc<TokenKeys>,
    pub commerce: CommerceConfig,
    /// Per-customer rates; buckets start full at every start.
    pub rates: Vec<(RateClass, Rate)>,
    pub server_version: &'static str,
    /// This node's number among the nodes sharing a cluster (0 alone).
    pub node: u8,
}

/// Every shard's state, in shard order: counters of the SKUs it owns
/// (units received, minus what the snapshot and the later orders hold),
/// its users' pending orders and idempotency keys, and the carts it owns.
pub fn shard_states(stored: Stored<'_>, settings: &Settings) -> Vec<ShardState> {
    let placement = settings.placement;
    let catalog = Arc::new(Catalog::build(stored.catalog));
    let mut replay = Replay::partition(stored.catalog, stored.snapshot, stored.orders, placement);
    let mut carts: Vec<Carts> = placement.shards().map(|_| Carts::default()).collect();
    for cart in stored.carts {
        match CartKey::from_storage_key(&cart.key) {
            Some(key) => {
                carts[key.owner(placement).index()].restore(key, cart.lines, cart.updated_at)
            }
            None => {
                tracing::warn!(key = %cart.key, "a stored cart with a key souk does not write; skipped")
            }
        }
    }
    let mut inventories: Vec<Inventory> = placement
        .shards()
        .map(|shard| {
            Inventory::rebuild(
                std::mem::take(&mut replay.stock[shard.index()]),
                std::mem::take(&mut replay.sold_before[shard.index()]),
                replay.sku_orders[shard.index()].iter().copied(),
                |sku| placement.sku_owner(sku) == shard,
                settings.commerce.purchase_limit,
            )
        })
        .collect();
    for (sku, pool) in &stored.pools {
        inventories[placement.sku_owner(sku).index()].set_pool(sku, *pool);
    }
    for inventory in &mut inventories {
        // Published with the board built below.
        inventory.take_status_changes();
    }
    let stock_board = Arc::new(StockBoard::new(
        placement,
        inventories.iter().map(Inventory::statuses).collect(),
    ));
    placement
        .shards()
        .zip(inventories)
        .zip(carts)
        .map(|((shard, inventory), carts)| {
            let mut pending = Pending::default();
            let mut placed = Placed::default();
            for order in &replay.user_orders[shard.index()] {
                if order.status == OrderStatus::PendingPayment {
                    pending.insert(order.id, order.expires_at);
                }
                if let Some(key) = order.idempotency_key {
                    placed.insert(order.user_id, key, order.id, order.created_at);
                }
            }
            ShardState {
                shard,
                placement,
                catalog: catalog.clone(),
                inventory,
                server_version: settings.server_version,
                carts,
                pending,
                ids: IdGenerator::new(settings.node, shard),
                tokens: settings.tokens.clone(),
                commerce: settings.commerce,
                checkouts: Default::default(),
                placed,
                login_failures: Default::default(),
                rate_limits: RateLimits::new(
                    settings.rates.iter().copied(),
                    limits::RATE_LIMITED_KEYS_MAX,
                ),
                stock_board: stock_board.clone(),
                sign_outs: Default::default(),
                escrow: Default::default(),
            }
        })
        .collect()
}

/// What each shard replays, sorted out in one pass over the stored orders
/// rather than one pass per shard.
struct Replay<'a> {
    /// Units received of the SKUs each shard owns.
    stock: Vec<Vec<(Sku, i64)>>,
    /// Units the stock snapshot holds sold, of the SKUs each shard owns.
    sold_before: Vec<Vec<(Sku, i64)>>,
    /// Orders with a line each shard owns the SKU of.
    sku_orders: Vec<Vec<&'a OrderRecord>>,
    /// Orders of the users each shard owns, oldest first (the idempotency
    /// index takes them in creation order).
    user_orders: Vec<Vec<&'a OrderRecord>>,
}

impl<'a> Replay<'a> {
    fn partition(
        data: &CatalogData,
        snapshot: &StockSnapshot,
        orders: &'a [OrderRecord],
        placement: Placement,
    ) -> Replay<'a> {
        let shards = placement.shard_count();
        let mut replay = Replay {
            stock: vec![Vec::new(); shards],
            sold_before: vec![Vec::new(); shards],
            sku_orders: vec![Vec::new(); shards],
            user_orders: vec![Vec::new(); shards],
        };
        for (sku, received) in &data.stock {
            replay.stock[placement.sku_owner(sku).index()].push((sku.clone(), *received));
        }
        for (sku, sold) in &snapshot.sold {
            replay.sold_before[placement.sku_owner(sku).index()].push((sku.clone(), *sold));
        }
        let mut owners = Vec::new();
        for order in orders {
            replay.user_orders[placement.user_owner(order.user_id).index()].push(order);
            owners.clear();
            owners.extend(
                order
                    .lines
                    .iter()
                    .map(|l| placement.sku_owner(&l.sku).index()),
            );
            owners.sort_unstable();
            owners.dedup();
            for &owner in &owners {
                replay.sku_orders[owner].push(order);
            }
        }
        for user_orders in &mut replay.user_orders {
            user_orders.sort_by_key(|o| (o.created_at, o.id));
        }
        replay
    }
}
