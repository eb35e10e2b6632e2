//! The simulated store: every storage trait over in-memory maps, with
//! faults drawn from the simulation's seed.
//!
//! A write first waits a random while on the simulated clock, then either
//! fails having written nothing or applies whole and returns: applying and
//! acknowledging happen in one step, so a crash (which drops every task)
//! loses exactly the writes that had not returned. Reads wait too, and may
//! fail the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use rand::rngs::StdRng;
use souk_storage::error::Result;
use souk_storage::model::{
    CartRecord, OrderRecord, Page, PaymentRecord, RefreshTokenRecord, SnapshotProgress,
    StockRecord, StockSnapshot, UserRecord,
};
use souk_storage::store::{
    CartStore, CatalogStore, OrderStore, PaymentStore, StockStore, TokenStore, UserStore,
};
use souk_storage::{CatalogData, StorageError, Store};
use souk_wire::api::{
    Address, AddressId, Category, OrderId, OrderStatus, Product, ProductId, UnixMillis, UserId,
};

use super::executor::Clock;

/// How often and how slowly the store misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct StoreFaults {
    /// Writes (and reads) that fail, per 10,000.
    pub failures_per_10k: u32,
    /// The longest a call waits before it completes.
    pub delay_max: Duration,
}

#[derive(Debug, Default)]
struct Data {
    catalog: Option<CatalogData>,
    stock: BTreeMap<souk_wire::api::Sku, StockRecord>,
    users: BTreeMap<UserId, UserRecord>,
    emails: HashMap<String, UserId>,
    addresses: BTreeMap<(UserId, AddressId), Address>,
    tokens: HashMap<[u8; 32], RefreshTokenRecord>,
    sign_outs: HashMap<UserId, UnixMillis>,
    orders: BTreeMap<OrderId, OrderRecord>,
    payments: HashMap<OrderId, PaymentRecord>,
    carts: BTreeMap<String, CartRecord>,
}

/// Survives the simulated process's crashes, as a disk does.
#[derive(Debug)]
pub struct SimStore {
    data: Mutex<Data>,
    clock: Clock,
    rng: Arc<Mutex<StdRng>>,
    faults: Mutex<StoreFaults>,
}

impl SimStore {
    pub fn new(
        catalog: CatalogData,
        clock: Clock,
        rng: Arc<Mutex<StdRng>>,
        faults: StoreFaults,
    ) -> SimStore {
        let data = Data {
            stock: catalog
                .stock
                .iter()
                .map(|(sku, received)| {
                    let record = StockRecord {
                        sku: sku.clone(),
                        received: *received,
                        updated_at: UnixMillis(0),
                    };
                    (sku.clone(), record)
                })
                .collect(),
            catalog: Some(catalog),
            ..Data::default()
        };
        SimStore {
            data: Mutex::new(data),
            clock,
            rng,
            faults: Mutex::new(faults),
        }
    }

    pub fn set_faults(&self, faults: StoreFaults) {
        *self.faults.lock().expect("not poisoned") = faults;
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data
            .lock()
            .expect("the simulator does not panic holding the store")
    }

    /// Every stored order, for the invariant checks.
    pub fn all_orders(&self) -> Vec<OrderRecord> {
        self.data().orders.values().cloned().collect()
    }

    /// Writes an order's change at once, as another node sharing the
    /// store would: none of this node's shards hears of it.
    pub fn update_order_elsewhere(&self, order: &OrderRecord, expected: OrderStatus) -> Result<()> {
        update(&mut self.data(), order, expected)
    }

    pub fn all_payments(&self) -> Vec<PaymentRecord> {
        self.data().payments.values().cloned().collect()
    }

    /// Waits a random while, then fails or lets the call go on.
    async fn turn(&self) -> Result<()> {
        let faults = *self.faults.lock().expect("not poisoned");
        let (delay_ms, fails) = {
            let mut rng = self.rng.lock().expect("not poisoned");
            let delay_ms = rng.random_range(0..=faults.delay_max.as_millis() as u64);
            (
                delay_ms,
                rng.random_range(0..10_000) < faults.failures_per_10k,
            )
        };
        self.clock.sleep(Duration::from_millis(delay_ms)).await;
        if fails {
            return Err(StorageError::Io("simulated I/O failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl CatalogStore for SimStore {
    async fn catalog_imported(&self) -> Result<bool> {
        Ok(self.data().catalog.is_some())
    }

    async fn import_catalog(&self, catalog: &CatalogData) -> Result<()> {
        self.turn().await?;
        self.data().catalog = Some(catalog.clone());
        Ok(())
    }

    async fn load_catalog(&self) -> Result<CatalogData> {
        let data = self.data();
        let mut catalog = data.catalog.clone().unwrap_or_default();
        catalog.stock = data
            .stock
            .values()
            .map(|s| (s.sku.clone(), s.received))
            .collect();
        Ok(catalog)
    }

    async fn upsert_product(&self, product: &Product) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        let catalog = data.catalog.get_or_insert_with(CatalogData::default);
        match catalog.products.iter_mut().find(|p| p.id == product.id) {
            Some(stored) => *stored = product.clone(),
            None => catalog.products.push(product.clone()),
        }
        Ok(())
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.turn().await?;
        let data = self.data();
        let catalog = data.catalog.as_ref();
        Ok(catalog.and_then(|c| c.products.iter().find(|p| &p.id == id).cloned()))
    }

    async fn put_categories(&self, categories: &[Category]) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        data.catalog
            .get_or_insert_with(CatalogData::default)
            .categories = categories.to_vec();
        Ok(())
    }
}

#[async_trait]
impl StockStore for SimStore {
    async fn put_stock(&self, levels: &[StockRecord]) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        for level in levels {
            data.stock.insert(level.sku.clone(), level.clone());
        }
        Ok(())
    }

    async fn stock_levels(&self) -> Result<Vec<StockRecord>> {
        Ok(self.data().stock.values().cloned().collect())
    }

    async fn stock_snapshot(&self) -> Result<StockSnapshot> {
        // The simulator replays every order: its snapshot never advances.
        Ok(StockSnapshot::default())
    }

    async fn advance_stock_snapshot(
        &self,
        _below: OrderId,
        _limit: usize,
        _shards: u16,
    ) -> Result<SnapshotProgress> {
        Ok(SnapshotProgress {
            watermark: StockSnapshot::default().watermark,
            folded: 0,
        })
    }
}

#[async_trait]
impl UserStore for SimStore {
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        if data.users.contains_key(&user.id) || data.emails.contains_key(&user.email) {
            return Err(StorageError::Conflict("user exists".into()));
        }
        data.emails.insert(user.email.clone(), user.id);
        data.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.turn().await?;
        Ok(self.data().users.get(&id).cloned())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        self.turn().await?;
        let data = self.data();
        Ok(data
            .emails
            .get(email)
            .and_then(|id| data.users.get(id))
            .cloned())
    }

    async fn update_user(&self, user: &UserRecord) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        let Some(stored) = data.users.get_mut(&user.id) else {
            return Err(StorageError::NotFound("user".into()));
        };
        let email = stored.email.clone();
        *stored = UserRecord {
            email,
            ..user.clone()
        };
        Ok(())
    }

    async fn put_address(&self, user: UserId, address: &Address) -> Result<()> {
        self.turn().await?;
        self.data()
            .addresses
            .insert((user, address.id), address.clone());
        Ok(())
    }

    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<bool> {
        self.turn().await?;
        Ok(self.data().addresses.remove(&(user, id)).is_some())
    }

    async fn addresses(&self, user: UserId) -> Result<Vec<Address>> {
        self.turn().await?;
        let data = self.data();
        let mine = data
            .addresses
            .range((user, AddressId(0))..=(user, AddressId(u64::MAX)));
        Ok(mine.map(|(_, a)| a.clone()).collect())
    }
}

#[async_trait]
impl TokenStore for SimStore {
    async fn put_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        self.turn().await?;
        self.data().tokens.insert(token.token_hash, token.clone());
        Ok(())
    }

    async fn refresh_token(&self, token_hash: &[u8; 32]) -> Result<Option<RefreshTokenRecord>> {
        self.turn().await?;
        Ok(self.data().tokens.get(token_hash).cloned())
    }

    async fn rotate_refresh_token(&self, old: &[u8; 32], new: &RefreshTokenRecord) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        match data.tokens.get_mut(old) {
            Some(token) if token.rotated_at.is_none() && !token.revoked => {
                token.rotated_at = Some(new.issued_at);
            }
            _ => return Err(StorageError::Conflict("refresh token not current".into())),
        }
        data.tokens.insert(new.token_hash, new.clone());
        Ok(())
    }

    async fn revoke_token_family(&self, family: &[u8; 16]) -> Result<usize> {
        self.turn().await?;
        let mut revoked = 0;
        for token in self.data().tokens.values_mut() {
            if &token.family == family && !token.revoked {
                token.revoked = true;
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn sign_out_everywhere(
        &self,
        user: UserId,
        at: UnixMillis,
        _keep_until: UnixMillis,
    ) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        let cutoff = data.sign_outs.entry(user).or_insert(at);
        *cutoff = (*cutoff).max(at);
        Ok(())
    }

    async fn signed_out_at(&self, user: UserId) -> Result<Option<UnixMillis>> {
        self.turn().await?;
        Ok(self.data().sign_outs.get(&user).copied())
    }
}

#[async_trait]
impl OrderStore for SimStore {
    async fn insert_order(&self, order: &OrderRecord) -> Result<()> {
        self.turn().await?;
        self.data()
            .orders
            .entry(order.id)
            .or_insert_with(|| order.clone());
        Ok(())
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderRecord>> {
        self.turn().await?;
        Ok(self.data().orders.get(&id).cloned())
    }

    async fn update_order(&self, order: &OrderRecord, expected: OrderStatus) -> Result<()> {
        self.turn().await?;
        update(&mut self.data(), order, expected)
    }

    async fn orders_of_user(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        self.turn().await?;
        let data = self.data();
        let below = before.map_or(u64::MAX, |id| id.0);
        let mut items: Vec<OrderRecord> = data
            .orders
            .range(..OrderId(below))
            .rev()
            .filter(|(_, o)| o.user_id == user)
            .take(limit.saturating_add(1))
            .map(|(_, o)| o.clone())
            .collect();
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items
                .last()
                .map(|o| o.id)
                .expect("limit > 0 when more remain")
        });
        Ok(Page { items, next })
    }

    async fn orders_of_shard(
        &self,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        let data = self.data();
        let items: Vec<OrderRecord> = data
            .orders
            .values()
            .filter(|o| o.shard == shard && after.is_none_or(|a| o.id > a))
            .take(limit)
            .cloned()
            .collect();
        Ok(Page { items, next: None })
    }
}

fn update(data: &mut Data, order: &OrderRecord, expected: OrderStatus) -> Result<()> {
    let Some(stored) = data.orders.get_mut(&order.id) else {
        return Err(StorageError::NotFound(format!("order {}", order.id.0)));
    };
    if stored.status != expected {
        return Err(StorageError::Conflict(format!(
            "order is {:?}",
            stored.status
        )));
    }
    *stored = order.clone();
    Ok(())
}

#[async_trait]
impl PaymentStore for SimStore {
    async fn put_payment(&self, payment: &PaymentRecord) -> Result<()> {
        self.turn().await?;
        self.data()
            .payments
            .insert(payment.order_id, payment.clone());
        Ok(())
    }

    async fn payment(&self, order: OrderId) -> Result<Option<PaymentRecord>> {
        self.turn().await?;
        Ok(self.data().payments.get(&order).cloned())
    }
}

#[async_trait]
impl CartStore for SimStore {
    async fn put_carts(&self, carts: &[CartRecord]) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        for cart in carts {
            if cart.lines.is_empty() {
                data.carts.remove(&cart.key);
            } else {
                data.carts.insert(cart.key.clone(), cart.clone());
            }
        }
        Ok(())
    }

    async fn carts(&self) -> Result<Vec<CartRecord>> {
        Ok(self.data().carts.values().cloned().collect())
    }
}

#[async_trait]
impl Store for SimStore {
    fn backend(&self) -> &'static str {
        "simulated"
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// Both records in one write, or neither, as the embedded store does.
    async fn settle_payment(
        &self,
        order: &OrderRecord,
        expected: OrderStatus,
        payment: &PaymentRecord,
    ) -> Result<()> {
        self.turn().await?;
        let mut data = self.data();
        update(&mut data, order, expected)?;
        data.payments.insert(payment.order_id, payment.clone());
        Ok(())
    }
}
