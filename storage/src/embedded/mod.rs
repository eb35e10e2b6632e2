//! The embedded store, souk's default backend: one database in the data
//! directory, written by one group-commit thread (`commit`), read directly
//! by every shard. Reads are MVCC snapshots (redb) or LSM reads (fjall) and
//! never wait for the writer.

pub mod commit;
pub mod engine;
pub mod fault;
pub mod fjall_engine;
mod keys;
pub mod redb_engine;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use souk_wire::api::{
    Address, AddressId, Category, OrderId, OrderStatus, Product, ProductId, Sku, UnixMillis, UserId,
};

use crate::CatalogData;
use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};
use crate::limits::{PAGE_MAX, RECORD_BYTES_MAX};
use crate::model::{
    CartRecord, OrderRecord, Page, PaymentRecord, RefreshTokenRecord, SnapshotProgress,
    StockRecord, StockSnapshot, UserRecord,
};
use crate::store::{
    CartStore, CatalogStore, OrderStore, PaymentStore, StockStore, Store, TokenStore, UserStore,
};
use commit::Committer;
use engine::{Engine, Scan, Table, WriteTxn};

/// Which engine backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The default, chosen by measurement (see `storage/DESIGN.md`).
    #[default]
    Fjall,
    Redb,
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<EngineKind, String> {
        match name {
            "fjall" => Ok(EngineKind::Fjall),
            "redb" => Ok(EngineKind::Redb),
            other => Err(format!("unknown engine {other:?} (fjall or redb)")),
        }
    }
}

impl EngineKind {
    /// Opens the engine's files under `dir`.
    pub fn open(self, dir: &Path) -> Result<Arc<dyn Engine>> {
        std::fs::create_dir_all(dir)?;
        Ok(match self {
            EngineKind::Redb => Arc::new(redb_engine::RedbEngine::open(&dir.join("souk.redb"))?),
            EngineKind::Fjall => Arc::new(fjall_engine::FjallEngine::open(&dir.join("fjall"))?),
        })
    }
}

pub struct EmbeddedStore {
    engine: Arc<dyn Engine>,
    committer: Committer,
    /// The stock snapshot's watermark, as last committed. Only the commit
    /// thread changes it, and order inserts check it there, in the same
    /// order as the writes.
    watermark: Arc<AtomicU64>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    pub fn open(dir: &Path, kind: EngineKind) -> Result<EmbeddedStore> {
        EmbeddedStore::with_engine(kind.open(dir)?)
    }

    pub fn with_engine(engine: Arc<dyn Engine>) -> Result<EmbeddedStore> {
        let watermark = match engine.get(Table::Meta, keys::STOCK_WATERMARK)? {
            Some(bytes) => keys::trailing_order(&bytes)?.0,
            None => 0,
        };
        let committer = Committer::start(engine.clone())?;
        Ok(EmbeddedStore {
            engine,
            committer,
            watermark: Arc::new(AtomicU64::new(watermark)),
        })
    }

    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    async fn write<R, F>(&self, operation: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTxn) -> Result<R> + Send + 'static,
    {
        self.committer.write(operation).await
    }

    /// Answers a read once everything it could have seen is durable (see
    /// `commit`): every read of the store ends here.
    async fn settled<T>(&self, read: Result<T>) -> Result<T> {
        let value = read?;
        self.committer.settled().await?;
        Ok(value)
    }

    fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>> {
        self.engine
            .get(table, key)?
            .map(|bytes| decode(table.name(), &bytes))
            .transpose()
    }

    fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        scan: Scan<'_>,
    ) -> Result<Vec<T>> {
        self.engine
            .scan(table, scan)?
            .iter()
            .map(|(_, value)| decode(table.name(), value))
            .collect()
    }

    /// Up to `ALL_ORDERS_PAGE` orders from `from` on, in id order, and the
    /// id to read the next page from (none after the last).
    fn orders_page(&self, from: OrderId) -> Result<(Vec<OrderRecord>, Option<u64>)> {
        let key = keys::order(from);
        let scan = Scan {
            prefix: b"",
            from: Some(&key),
            descending: false,
            limit: ALL_ORDERS_PAGE,
        };
        let page: Vec<OrderRecord> = self.scan_records(Table::Orders, scan)?;
        let next = match page.last() {
            Some(last) if page.len() == ALL_ORDERS_PAGE => last.id.0.checked_add(1),
            _ => None,
        };
        Ok((page, next))
    }

    /// Orders named by the trailing ids of index keys, in index order.
    fn orders_by_index(&self, index: Table, scan: Scan<'_>) -> Result<Page<OrderRecord, OrderId>> {
        let limit = scan.limit;
        let mut items = Vec::new();
        for (key, _) in self.engine.scan(index, scan)? {
            let id = keys::trailing_order(&key)?;
            let order = self
                .get_record(Table::Orders, &keys::order(id))?
                .ok_or_else(|| StorageError::Corrupt {
                    table: index.name(),
                    reason: format!("index names missing order {}", id.0),
                })?;
            items.push(order);
        }
        let next = (items.len() == limit)
            .then(|| items.last().map(|o: &OrderRecord| o.id))
            .flatten();
        Ok(Page { items, next })
    }
}

/// A conditional order change, checked and applied inside a write.
struct OrderUpdate {
    id: OrderId,
    user: UserId,
    shard: u16,
    value: Vec<u8>,
    expected: OrderStatus,
}

impl OrderUpdate {
    fn new(order: &OrderRecord, expected: OrderStatus) -> Result<OrderUpdate> {
        Ok(OrderUpdate {
            id: order.id,
            user: order.user_id,
            shard: order.shard,
            value: encode("order", order, RECORD_BYTES_MAX)?,
            expected,
        })
    }

    /// Checks before writing, so a refusal writes nothing.
    fn apply(&self, txn: &mut dyn WriteTxn) -> Result<()> {
        let (id, expected) = (self.id, self.expected);
        let key = keys::order(id);
        let Some(stored) = txn.get(Table::Orders, &key)? else {
            return Err(StorageError::NotFound(format!("order {}", id.0)));
        };
        let stored: OrderRecord = decode("order", &stored)?;
        if stored.user_id != self.user || stored.shard != self.shard {
            return Err(StorageError::Conflict(
                "an order's owner cannot change".into(),
            ));
        }
        if stored.status != expected {
            return Err(StorageError::Conflict(format!(
                "order {} is {:?}, not {expected:?}",
                id.0, stored.status
            )));
        }
        txn.put(Table::Orders, &key, &self.value)
    }
}

fn page_limit(limit: usize) -> usize {
    limit.clamp(1, PAGE_MAX)
}

#[async_trait]
impl CatalogStore for EmbeddedStore {
    async fn catalog_imported(&self) -> Result<bool> {
        let imported = self.engine.get(Table::Meta, keys::CATALOG_IMPORTED);
        self.settled(imported.map(|flag| flag.is_some())).await
    }

    async fn import_catalog(&self, catalog: &CatalogData) -> Result<()> {
        let mut writes: Vec<(Table, Vec<u8>, Vec<u8>)> = Vec::new();
        for category in &catalog.categories {
            let key = keys::text(category.id.as_str(), "category id")?;
            writes.push((
                Table::Categories,
                key,
                encode("category", category, RECORD_BYTES_MAX)?,
            ));
        }
        for product in &catalog.products {
            let key = keys::text(product.id.as_str(), "product id")?;
            writes.push((
                Table::Products,
                key,
                encode("product", product, RECORD_BYTES_MAX)?,
            ));
        }
        for (sku, on_hand) in &catalog.stock {
            let record = StockRecord {
                sku: sku.clone(),
                received: *on_hand,
                updated_at: Default::default(),
            };
            let key = keys::text(sku.as_str(), "sku")?;
            writes.push((
                Table::Stock,
                key,
                encode("stock", &record, RECORD_BYTES_MAX)?,
            ));
        }
        writes.push((Table::Meta, keys::CATALOG_IMPORTED.to_vec(), vec![1]));
        self.write(move |txn| {
            for (table, key, value) in &writes {
                txn.put(*table, key, value)?;
            }
            Ok(())
        })
        .await
    }

    async fn load_catalog(&self) -> Result<CatalogData> {
        let everything = |limit| Scan::prefix(b"", limit);
        let categories = self.scan_records(Table::Categories, everything(usize::MAX))?;
        let products = self.scan_records(Table::Products, everything(usize::MAX))?;
        let stock: Vec<StockRecord> = self.scan_records(Table::Stock, everything(usize::MAX))?;
        self.settled(Ok(CatalogData {
            categories,
            products,
            stock: stock.into_iter().map(|s| (s.sku, s.received)).collect(),
        }))
        .await
    }

    async fn upsert_product(&self, product: &Product) -> Result<()> {
        let key = keys::text(product.id.as_str(), "product id")?;
        let value = encode("product", product, RECORD_BYTES_MAX)?;
        self.write(move |txn| txn.put(Table::Products, &key, &value))
            .await
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.settled(self.get_record(Table::Products, &keys::text(id.as_str(), "product id")?))
            .await
    }

    async fn put_categories(&self, categories: &[Category]) -> Result<()> {
        let writes = categories
            .iter()
            .map(|c| {
                Ok((
                    keys::text(c.id.as_str(), "category id")?,
                    encode("category", c, RECORD_BYTES_MAX)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(move |txn| {
            for (key, value) in &writes {
                txn.put(Table::Categories, key, value)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl StockStore for EmbeddedStore {
    async fn put_stock(&self, levels: &[StockRecord]) -> Result<()> {
        let writes = levels
            .iter()
            .map(|s| {
                Ok((
                    keys::text(s.sku.as_str(), "sku")?,
                    encode("stock", s, RECORD_BYTES_MAX)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(move |txn| {
            for (key, value) in &writes {
                txn.put(Table::Stock, key, value)?;
            }
            Ok(())
        })
        .await
    }

    async fn stock_levels(&self) -> Result<Vec<StockRecord>> {
        self.settled(self.scan_records(Table::Stock, Scan::prefix(b"", usize::MAX)))
            .await
    }

    async fn stock_snapshot(&self) -> Result<StockSnapshot> {
        let sold = self
            .engine
            .scan(Table::StockSold, Scan::prefix(b"", usize::MAX))?
            .into_iter()
            .map(|(key, value)| {
                let sku = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|s| Sku::new(s).ok())
                    .ok_or_else(|| StorageError::Corrupt {
                        table: "stock_sold",
                        reason: "a key is not a SKU".into(),
                    })?;
                Ok((sku, decode::<i64>("stock sold", &value)?))
            })
            .collect::<Result<_>>()?;
        self.settled(Ok(StockSnapshot {
            watermark: OrderId(self.watermark.load(Ordering::SeqCst)),
            sold,
        }))
        .await
    }

    /// Runs in the commit thread, so that no insert or update interleaves
    /// with the fold: the range it folds is exactly what is committed, and
    /// the new watermark guards inserts from the next write on.
    async fn advance_stock_snapshot(
        &self,
        below: OrderId,
        limit: usize,
        _shards: u16,
    ) -> Result<SnapshotProgress> {
        let watermark = self.watermark.clone();
        let limit = limit.max(1);
        self.write(move |txn| {
            let from = OrderId(watermark.load(Ordering::SeqCst));
            let mut next = from;
            let mut folded = 0;
            let mut sold: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (key, value) in txn.scan_from(Table::Orders, &keys::order(from), limit)? {
                let id = keys::trailing_order(&key)?;
                if id >= below {
                    break;
                }
                let order: OrderRecord = decode("order", &value)?;
                match order.status {
                    OrderStatus::PendingPayment => break,
                    OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Refunded => {
                        for line in &order.lines {
                            *sold
                                .entry(line.sku.as_str().as_bytes().to_vec())
                                .or_default() += i64::from(line.quantity);
                        }
                    }
                    OrderStatus::Cancelled | OrderStatus::Expired => {}
                }
                next = OrderId(id.0.saturating_add(1));
                folded += 1;
            }
            if folded > 0 {
                for (sku, units) in sold {
                    let before = match txn.get(Table::StockSold, &sku)? {
                        Some(bytes) => decode::<i64>("stock sold", &bytes)?,
                        None => 0,
                    };
                    txn.put(
                        Table::StockSold,
                        &sku,
                        &encode("stock sold", &(before + units), RECORD_BYTES_MAX)?,
                    )?;
                }
                txn.put(Table::Meta, keys::STOCK_WATERMARK, &keys::order(next))?;
                // Ahead of the commit: an insert below it that a failed
                // commit would have allowed is refused, which costs only
                // an order whose id is already older than `below`.
                watermark.store(next.0, Ordering::SeqCst);
            }
            Ok(SnapshotProgress {
                watermark: next,
                folded,
            })
        })
        .await
    }
}

#[async_trait]
impl UserStore for EmbeddedStore {
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let id = keys::user(user.id);
        let email = keys::email(&user.email)?;
        let value = encode("user", user, RECORD_BYTES_MAX)?;
        let user_id = user.id;
        self.write(move |txn| {
            if txn.get(Table::Users, &id)?.is_some() {
                return Err(StorageError::Conflict(format!("user {} exists", user_id.0)));
            }
            if txn.get(Table::UsersByEmail, &email)?.is_some() {
                return Err(StorageError::Conflict("e-mail already registered".into()));
            }
            txn.put(Table::Users, &id, &value)?;
            txn.put(Table::UsersByEmail, &email, &id)
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.settled(self.get_record(Table::Users, &keys::user(id)))
            .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let Some(id) = self.engine.get(Table::UsersByEmail, &keys::email(email)?)? else {
            return self.settled(Ok(None)).await;
        };
        self.settled(self.get_record(Table::Users, &id)).await
    }

    async fn update_user(&self, user: &UserRecord) -> Result<()> {
        let id = keys::user(user.id);
        let value = encode("user", user, RECORD_BYTES_MAX)?;
        let (user_id, email) = (user.id, user.email.to_lowercase());
        self.write(move |txn| {
            let Some(stored) = txn.get(Table::Users, &id)? else {
                return Err(StorageError::NotFound(format!("user {}", user_id.0)));
            };
            let stored: UserRecord = decode("user", &stored)?;
            if stored.email.to_lowercase() != email {
                return Err(StorageError::Conflict(
                    "the e-mail cannot change here".into(),
                ));
            }
            txn.put(Table::Users, &id, &value)
        })
        .await
    }

    async fn put_address(&self, user: UserId, address: &Address) -> Result<()> {
        let key = keys::address(user, address.id);
        let value = encode("address", address, RECORD_BYTES_MAX)?;
        self.write(move |txn| txn.put(Table::Addresses, &key, &value))
            .await
    }

    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<bool> {
        let key = keys::address(user, id);
        self.write(move |txn| {
            if txn.get(Table::Addresses, &key)?.is_none() {
                return Ok(false);
            }
            txn.delete(Table::Addresses, &key)?;
            Ok(true)
        })
        .await
    }

    async fn addresses(&self, user: UserId) -> Result<Vec<Address>> {
        self.settled(self.scan_records(Table::Addresses, Scan::prefix(&keys::user(user), PAGE_MAX)))
            .await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn put_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        let family = keys::token_family(&token.family, &token.token_hash);
        let (hash, value) = (
            token.token_hash,
            encode("refresh token", token, RECORD_BYTES_MAX)?,
        );
        self.write(move |txn| {
            txn.put(Table::RefreshTokens, &hash, &value)?;
            txn.put(Table::TokenFamilies, &family, &[])
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &[u8; 32]) -> Result<Option<RefreshTokenRecord>> {
        self.settled(self.get_record(Table::RefreshTokens, token_hash))
            .await
    }

    async fn rotate_refresh_token(&self, old: &[u8; 32], new: &RefreshTokenRecord) -> Result<()> {
        let old_hash = *old;
        let new = new.clone();
        let new_value = encode("refresh token", &new, RECORD_BYTES_MAX)?;
        self.write(move |txn| {
            let Some(stored) = txn.get(Table::RefreshTokens, &old_hash)? else {
                return Err(StorageError::Conflict("unknown refresh token".into()));
            };
            let mut stored: RefreshTokenRecord = decode("refresh token", &stored)?;
            if stored.rotated_at.is_some() || stored.revoked {
                return Err(StorageError::Conflict(
                    "refresh token already used or revoked".into(),
                ));
            }
            stored.rotated_at = Some(new.issued_at);
            let stored_value = encode("refresh token", &stored, RECORD_BYTES_MAX)?;
            txn.put(Table::RefreshTokens, &old_hash, &stored_value)?;
            txn.put(Table::RefreshTokens, &new.token_hash, &new_value)?;
            txn.put(
                Table::TokenFamilies,
                &keys::token_family(&new.family, &new.token_hash),
                &[],
            )
        })
        .await
    }

    async fn revoke_token_family(&self, family: &[u8; 16]) -> Result<usize> {
        let family = *family;
        self.write(move |txn| {
            let members = txn.scan_prefix(Table::TokenFamilies, &family)?;
            let mut updates = Vec::with_capacity(members.len());
            for (key, _) in &members {
                let hash = &key[16..];
                if let Some(stored) = txn.get(Table::RefreshTokens, hash)? {
                    let mut token: RefreshTokenRecord = decode("refresh token", &stored)?;
                    token.revoked = true;
                    updates.push((
                        hash.to_vec(),
                        encode("refresh token", &token, RECORD_BYTES_MAX)?,
                    ));
                }
            }
            for (hash, value) in &updates {
                txn.put(Table::RefreshTokens, hash, value)?;
            }
            Ok(updates.len())
        })
        .await
    }

    /// Kept whatever `keep_until` says: one small row per user who ever
    /// signed out everywhere.
    async fn sign_out_everywhere(
        &self,
        user: UserId,
        at: UnixMillis,
        _keep_until: UnixMillis,
    ) -> Result<()> {
        self.write(move |txn| {
            let key = keys::user(user);
            if let Some(stored) = txn.get(Table::SignOuts, &key)?
                && keys::millis(&stored)? >= at
            {
                return Ok(());
            }
            txn.put(Table::SignOuts, &key, &at.0.to_be_bytes())
        })
        .await
    }

    async fn signed_out_at(&self, user: UserId) -> Result<Option<UnixMillis>> {
        let read = self
            .engine
            .get(Table::SignOuts, &keys::user(user))
            .and_then(|stored| stored.map(|bytes| keys::millis(&bytes)).transpose());
        self.settled(read).await
    }
}

#[async_trait]
impl OrderStore for EmbeddedStore {
    async fn insert_order(&self, order: &OrderRecord) -> Result<()> {
        let id = order.id;
        let value = encode("order", order, RECORD_BYTES_MAX)?;
        let by_user = keys::order_by_user(order.user_id, id);
        let watermark = self.watermark.clone();
        self.write(move |txn| {
            if id.0 < watermark.load(Ordering::SeqCst) {
                return Err(StorageError::Conflict(format!(
                    "order {} is below the stock snapshot's watermark",
                    id.0
                )));
            }
            let key = keys::order(id);
            if let Some(stored) = txn.get(Table::Orders, &key)? {
                // The same order again is a retry; another with its id is a bug upstream.
                if stored == value {
                    return Ok(());
                }
                return Err(StorageError::Conflict(format!("order {} exists", id.0)));
            }
            txn.put(Table::Orders, &key, &value)?;
            txn.put(Table::OrdersByUser, &by_user, &[])
        })
        .await
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderRecord>> {
        self.settled(self.get_record(Table::Orders, &keys::order(id)))
            .await
    }

    async fn update_order(&self, order: &OrderRecord, expected: OrderStatus) -> Result<()> {
        let write = OrderUpdate::new(order, expected)?;
        self.write(move |txn| write.apply(txn)).await
    }

    async fn orders_of_user(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        let prefix = keys::user(user);
        let from = match before {
            Some(OrderId(0)) => {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            Some(before) => Some(keys::order_by_user(user, OrderId(before.0 - 1))),
            None => None,
        };
        let scan = Scan {
            prefix: &prefix,
            from: from.as_ref().map(|k| k.as_slice()),
            descending: true,
            limit: page_limit(limit),
        };
        self.settled(self.orders_by_index(Table::OrdersByUser, scan))
            .await
    }

    /// Walks the orders table in id order and keeps the shard's: the
    /// embedded store keeps no index by shard, as a start replays every
    /// order once through `orders_from`, and each index costs every insert.
    async fn orders_of_shard(
        &self,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        let limit = page_limit(limit);
        let mut items = Vec::new();
        let mut next = match after {
            Some(after) => after.0.checked_add(1),
            None => Some(0),
        };
        while let Some(from) = next
            && items.len() < limit
        {
            let page;
            (page, next) = self.orders_page(OrderId(from))?;
            items.extend(page.into_iter().filter(|o| o.shard == shard));
        }
        items.truncate(limit);
        let next = (items.len() == limit)
            .then(|| items.last().map(|o| o.id))
            .flatten();
        self.settled(Ok(Page { items, next })).await
    }

    /// One scan of the orders table: no index, no lookup per order.
    async fn orders_from(&self, from: OrderId, shards: u16) -> Result<Vec<OrderRecord>> {
        let mut orders: Vec<OrderRecord> = Vec::new();
        let mut next = Some(from.0);
        while let Some(from) = next {
            let page;
            (page, next) = self.orders_page(OrderId(from))?;
            orders.extend(page);
        }
        orders.retain(|o| o.shard < shards);
        self.settled(Ok(orders)).await
    }
}

/// Orders decoded per scan of `orders_from`.
const ALL_ORDERS_PAGE: usize = 10_000;

#[async_trait]
impl CartStore for EmbeddedStore {
    async fn put_carts(&self, carts: &[CartRecord]) -> Result<()> {
        let mut writes = Vec::with_capacity(carts.len());
        for cart in carts {
            let key = keys::text(&cart.key, "cart key")?;
            let value = if cart.lines.is_empty() {
                None
            } else {
                Some(encode("cart", cart, RECORD_BYTES_MAX)?)
            };
            writes.push((key, value));
        }
        self.write(move |txn| {
            for (key, value) in &writes {
                match value {
                    Some(value) => txn.put(Table::Carts, key, value)?,
                    None => txn.delete(Table::Carts, key)?,
                }
            }
            Ok(())
        })
        .await
    }

    async fn carts(&self) -> Result<Vec<CartRecord>> {
        self.settled(self.scan_records(Table::Carts, Scan::prefix(b"", usize::MAX)))
            .await
    }
}

#[async_trait]
impl PaymentStore for EmbeddedStore {
    async fn put_payment(&self, payment: &PaymentRecord) -> Result<()> {
        let key = keys::order(payment.order_id);
        let value = encode("payment", payment, RECORD_BYTES_MAX)?;
        self.write(move |txn| txn.put(Table::Payments, &key, &value))
            .await
    }

    async fn payment(&self, order: OrderId) -> Result<Option<PaymentRecord>> {
        self.settled(self.get_record(Table::Payments, &keys::order(order)))
            .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        match self.engine.name() {
            "fjall" => "embedded (fjall)",
            _ => "embedded (redb)",
        }
    }

    fn write_stats(&self) -> Option<crate::store::WriteStats> {
        Some(self.committer.stats())
    }

    /// One write: the payment is stored only with the order's change.
    async fn settle_payment(
        &self,
        order: &OrderRecord,
        expected: OrderStatus,
        payment: &PaymentRecord,
    ) -> Result<()> {
        let write = OrderUpdate::new(order, expected)?;
        let key = keys::order(payment.order_id);
        let value = encode("payment", payment, RECORD_BYTES_MAX)?;
        self.write(move |txn| {
            write.apply(txn)?;
            txn.put(Table::Payments, &key, &value)
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.committer.close();
        // After a failed commit the engine may not be able to write at all
        // (a full disk); its journal is replayed at the next start instead.
        if self.committer.healthy() {
            self.engine.flush()?;
        }
        Ok(())
    }
}
