//! The ScyllaDB backend: how souk grows past one machine.
//!
//! The schema (`storage/scylla/schema.cql`) is applied at connect. Every
//! statement is prepared once, so the driver routes each to a replica that
//! owns its partition and to the right shard of that replica (token- and
//! shard-aware). Reads and writes run at the configured consistency
//! (LOCAL_QUORUM unless told otherwise) under a request timeout.
//! Lightweight transactions are used only where a condition must hold
//! across writers: unique e-mails and user ids, orders (inserted once,
//! then moved between states) and refresh tokens (used once, revocable);
//! those tables are never written without one (see `statements`). Plain
//! writes are marked idempotent (re-running them writes the same values),
//! so the driver may retry them after a timeout; conditional writes are
//! not retried blindly.
//!
//! The same code runs on ScyllaDB (production) and Apache Cassandra 5.0
//! (the test cluster, `storage/scylla/cluster.sh`). The two differ where
//! it matters here: ScyllaDB creates keyspaces with tablets, on which it
//! refuses lightweight transactions, so souk creates its keyspace with
//! tablets off there (`Server::keyspace_options`); and a conditional write
//! that applies answers with the row's old values on ScyllaDB but only
//! `[applied]` on Cassandra, so only that first column is ever read.

mod escrow;
mod statements;

pub use escrow::{Escrow, Grant, Held, Lapse, Lease, NODE_NUMBERS, NodeEscrow, Reclaim, Reclaimed};

use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlValue, Row};
use souk_wire::api::{
    Address, AddressId, Category, IdempotencyKey, OrderId, OrderStatus, Product, ProductId,
    UnixMillis, UserId,
};

use crate::CatalogData;
use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};
use crate::limits::{PAGE_MAX, RECORD_BYTES_MAX, check_len};
use crate::model::{
    CartRecord, OrderRecord, Page, PaymentRecord, RefreshTokenRecord, SnapshotProgress,
    StockRecord, StockSnapshot, UserRecord,
};
use crate::store::{
    CartStore, CatalogStore, KeyClaim, OrderStore, PaymentStore, StockStore, Store, TokenStore,
    UserStore,
};
use statements::Statements;

/// The schema, with `{keyspace}` and `{replication}` to fill in.
pub const SCHEMA: &str = include_str!("../../scylla/schema.cql");

pub use scylla::frame::types::{Consistency, SerialConsistency};

/// How long one request may take before the driver gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one schema change may take. A node applies schema changes one
/// at a time and waits for the others to agree, so a freshly started node,
/// or one that several souk nodes (or test runs) ask at once, can take far
/// longer than a data request; giving up at 5 s failed a cold start.
pub(crate) const SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);

/// Milliseconds in the day buckets of `catalog_changes`.
const DAY_MS: i64 = 86_400_000;

/// Orders read at once when a shard's replay index is followed.
const ORDER_READS_IN_FLIGHT: usize = 64;

#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// `host:port` of some nodes; the driver discovers the rest.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replicas per datacenter (NetworkTopologyStrategy) when souk creates
    /// the keyspace; an existing keyspace keeps its own.
    pub replication_factor: u32,
    /// Of every read and plain write.
    pub consistency: Consistency,
    /// Of the Paxos round of every conditional write.
    pub serial_consistency: SerialConsistency,
    /// This souk node's name: shard numbers repeat on every node, so replay
    /// indexes are kept per node.
    pub node: String,
}

impl ScyllaConfig {
    /// Production defaults: three replicas, quorum in the local datacenter.
    pub fn new(nodes: Vec<String>, keyspace: String) -> ScyllaConfig {
        ScyllaConfig {
            nodes,
            keyspace,
            replication_factor: 3,
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            node: "souk-1".into(),
        }
    }
}

/// The CQL server souk is talking to, told apart by the system tables
/// only ScyllaDB has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// ScyllaDB; `tablets` when it knows the keyspace option (6.0 on).
    ScyllaDb { tablets: bool },
    /// Apache Cassandra (the test cluster) or another CQL server.
    Cassandra,
}

impl Server {
    async fn detect(session: &Session) -> Result<Server> {
        let found = |cql: &'static str, values: (&'static str, &'static str)| async move {
            let rows = session
                .query_unpaged(cql, values)
                .await
                .map_err(unavailable)?
                .into_rows_result()
                .map_err(unavailable)?;
            Ok::<_, StorageError>(rows.rows_num() > 0)
        };
        let table = "SELECT table_name FROM system_schema.tables \
                     WHERE keyspace_name = ? AND table_name = ?";
        if !found(table, ("system", "scylla_local")).await? {
            return Ok(Server::Cassandra);
        }
        // `scylla_keyspaces` is older than tablets; its `initial_tablets`
        // column came with them (6.0).
        let column = "SELECT column_name FROM system_schema.columns \
                      WHERE keyspace_name = 'system_schema' \
                      AND table_name = ? AND column_name = ?";
        Ok(Server::ScyllaDb {
            tablets: found(column, ("scylla_keyspaces", "initial_tablets")).await?,
        })
    }

    /// What follows the replication map when souk creates its keyspace:
    /// ScyllaDB would otherwise give it tablets, and refuse the
    /// lightweight transactions souk's uniqueness and order states need.
    pub fn keyspace_options(self) -> &'static str {
        match self {
            Server::ScyllaDb { tablets: true } => " AND tablets = {'enabled': false}",
            Server::ScyllaDb { tablets: false } | Server::Cassandra => "",
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("scylla: {error}"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The schema's statements, filled in for `config` on `server`.
pub fn schema_statements(config: &ScyllaConfig, server: Server) -> Vec<String> {
    let replication = format!(
        "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
        config.replication_factor
    );
    let without_comments: String = SCHEMA
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(|statement| {
            statement
                .replace("{keyspace}", &config.keyspace)
                .replace("{replication}", &replication)
                .replace("{keyspace_options}", server.keyspace_options())
        })
        .collect()
}

pub struct ScyllaStore {
    session: Session,
    statements: Statements,
    server: Server,
    keyspace: String,
    node: String,
    /// The stock snapshot's watermark as this node last read or moved it.
    watermark: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn snapshot_key_of(node: &str) -> String {
    format!("stock_snapshot/{node}")
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).expect("ids stay below 2^63")
}

fn status_code(status: OrderStatus) -> i8 {
    match status {
        OrderStatus::PendingPayment => 0,
        OrderStatus::Paid => 1,
        OrderStatus::Fulfilled => 2,
        OrderStatus::Cancelled => 3,
        OrderStatus::Expired => 4,
        OrderStatus::Refunded => 5,
    }
}

/// `cql`, a schema change, under the schema deadline.
fn schema_change(cql: String) -> Statement {
    let mut statement = Statement::new(cql);
    statement.set_request_timeout(Some(SCHEMA_TIMEOUT));
    statement
}

/// Whether a conditional statement applied (its first column, `[applied]`).
fn applied(result: QueryResult) -> Result<bool> {
    let rows = result.into_rows_result().map_err(unavailable)?;
    let row: Row = rows.first_row().map_err(unavailable)?;
    Ok(matches!(
        row.columns.first(),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

impl ScyllaStore {
    /// Connects, applies the schema and prepares every statement.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore> {
        if !valid_name(&config.keyspace) {
            return Err(StorageError::InvalidKey(format!(
                "keyspace name {:?}",
                config.keyspace
            )));
        }
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency)
            .serial_consistency(Some(config.serial_consistency))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(unavailable)?;
        let server = Server::detect(&session).await?;
        for statement in schema_statements(config, server) {
            session
                .query_unpaged(schema_change(statement), &[])
                .await
                .map_err(unavailable)?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;
        let mut statements = Statements::prepare(&session, &config.keyspace).await?;
        statements
            .get_order_settled
            .set_consistency(match config.serial_consistency {
                SerialConsistency::Serial => Consistency::Serial,
                SerialConsistency::LocalSerial => Consistency::LocalSerial,
            });
        Ok(ScyllaStore {
            session,
            statements,
            server,
            keyspace: config.keyspace.clone(),
            node: config.node.clone(),
            watermark: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The CQL server this store is connected to.
    pub fn server(&self) -> Server {
        self.server
    }

    /// Drops the keyspace and everything in it: for tests and tooling that
    /// made a keyspace of their own.
    pub async fn drop_keyspace(&self) -> Result<()> {
        let cql = format!("DROP KEYSPACE IF EXISTS {}", self.keyspace);
        self.session
            .query_unpaged(schema_change(cql), &[])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn snapshot_key(&self) -> String {
        snapshot_key_of(&self.node)
    }

    /// `node`'s stock snapshot, as stored.
    async fn snapshot_of(&self, node: &str) -> Result<StockSnapshot> {
        Ok(self
            .record(
                "stock snapshot",
                &self.statements.get_meta,
                (snapshot_key_of(node),),
            )
            .await?
            .unwrap_or_default())
    }

    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(unavailable)
    }

    /// The first row's `record` blob, decoded.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<T>> {
        let rows = self
            .run(statement, values)
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(Vec<u8>,)> = rows.maybe_first_row().map_err(unavailable)?;
        row.map(|(bytes,)| decode(what, &bytes)).transpose()
    }

    /// Every row's `record` blob of a statement, page by page.
    async fn records<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow + Clone,
    ) -> Result<Vec<T>> {
        let mut records = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(statement, values.clone(), paging)
                .await
                .map_err(unavailable)?;
            let rows = result.into_rows_result().map_err(unavailable)?;
            for row in rows.rows::<(Vec<u8>,)>().map_err(unavailable)? {
                let (bytes,) = row.map_err(unavailable)?;
                records.push(decode(what, &bytes)?);
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => return Ok(records),
                ControlFlow::Continue(state) => paging = state,
            }
        }
    }

    /// Points `email` at user `id` unless it names a user that exists.
    async fn claim_email(&self, email: &str, id: i64) -> Result<bool> {
        let claimed = self.run(&self.statements.claim_email, (email, id)).await?;
        if applied(claimed)? {
            return Ok(true);
        }
        let Some(owner) = self.email_owner(email).await? else {
            // Claimed and gone again between the two statements: a rare
            // race, and the caller's answer is simply a conflict.
            return Ok(false);
        };
        if owner == id {
            return Ok(true);
        }
        if self.user(UserId(owner.max(0) as u64)).await?.is_some() {
            return Ok(false);
        }
        let taken = self
            .run(&self.statements.take_over_email, (id, email, owner))
            .await?;
        applied(taken)
    }

    async fn email_owner(&self, email: &str) -> Result<Option<i64>> {
        let rows = self
            .run(&self.statements.user_by_email, (email,))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(i64,)> = rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.map(|(id,)| id))
    }

    /// Marks a token revoked: true when it was stored. A token of the
    /// family not stored yet (its family row is written first, and a
    /// rotation may be between the two) gets a revoked mark in its place,
    /// so that its insert fails rather than land live.
    async fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool> {
        for _ in 0..3 {
            let updated = self
                .run(&self.statements.revoke_token, (hash.to_vec(),))
                .await?;
            if applied(updated)? {
                return Ok(true);
            }
            let marked = self
                .run(&self.statements.revoke_missing_token, (hash.to_vec(),))
                .await?;
            if applied(marked)? {
                return Ok(false);
            }
            // Stored between the two: revoke it now.
        }
        Err(StorageError::Unavailable(
            "scylla: a token kept appearing and vanishing while it was revoked".into(),
        ))
    }

    async fn order_owner(&self, id: OrderId) -> Result<Option<i64>> {
        let rows = self
            .run(&self.statements.order_owner, (to_i64(id.0),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(i64,)> = rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.map(|(user,)| user))
    }
}

#[async_trait]
impl CatalogStore for ScyllaStore {
    async fn catalog_imported(&self) -> Result<bool> {
        let rows = self
            .run(&self.statements.get_meta, ("catalog_imported",))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(Vec<u8>,)> = rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.is_some())
    }

    /// Writes everything, then the marker: a catalog counts as imported
    /// only once all of it is stored, and an interrupted import is simply
    /// run again (every write is an idempotent upsert).
    async fn import_catalog(&self, catalog: &CatalogData) -> Result<()> {
        self.put_categories(&catalog.categories).await?;
        for product in &catalog.products {
            self.upsert_product(product).await?;
        }
        let stock: Vec<StockRecord> = catalog
            .stock
            .iter()
            .map(|(sku, on_hand)| StockRecord {
                sku: sku.clone(),
                received: *on_hand,
                updated_at: Default::default(),
            })
            .collect();
        self.put_stock(&stock).await?;
        self.run(&self.statements.put_meta, ("catalog_imported", vec![1u8]))
            .await?;
        Ok(())
    }

    async fn load_catalog(&self) -> Result<CatalogData> {
        let categories = self
            .records("category", &self.statements.all_categories, ())
            .await?;
        let products = self
            .records("product", &self.statements.all_products, ())
            .await?;
        let stock: Vec<StockRecord> = self
            .records("stock", &self.statements.all_stock, ())
            .await?;
        Ok(CatalogData {
            categories,
            products,
            stock: stock.into_iter().map(|s| (s.sku, s.received)).collect(),
        })
    }

    /// The product and its change row in one logged batch, so that a
    /// change stored is a change other nodes find.
    async fn upsert_product(&self, product: &Product) -> Result<()> {
        let record = encode("product", product, RECORD_BYTES_MAX)?;
        let at = to_i64(product.updated_at.0);
        let values = (
            (product.id.as_str(), record),
            (at / DAY_MS, at, product.id.as_str()),
        );
        self.session
            .batch(&self.statements.put_product, values)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn catalog_changes(&self, since: UnixMillis) -> Result<Vec<ProductId>> {
        let since = to_i64(since.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Rows live two days: older buckets are empty.
        let (first, today) = ((since / DAY_MS).max(now / DAY_MS - 2), now / DAY_MS);
        let mut changed = Vec::new();
        for day in first..=today {
            let rows = self
                .run(&self.statements.catalog_changes, (day, since))
                .await?
                .into_rows_result()
                .map_err(unavailable)?;
            for row in rows.rows::<(String,)>().map_err(unavailable)? {
                let (id,) = row.map_err(unavailable)?;
                let id = ProductId::new(id).map_err(|e| StorageError::Corrupt {
                    table: "catalog_changes",
                    reason: e.to_string(),
                })?;
                if !changed.contains(&id) {
                    changed.push(id);
                }
            }
        }
        Ok(changed)
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.record("product", &self.statements.get_product, (id.as_str(),))
            .await
    }

    async fn put_categories(&self, categories: &[Category]) -> Result<()> {
        for category in categories {
            let record = encode("category", category, RECORD_BYTES_MAX)?;
            self.run(
                &self.statements.put_category,
                (category.id.as_str(), record),
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StockStore for ScyllaStore {
    async fn put_stock(&self, levels: &[StockRecord]) -> Result<()> {
        for level in levels {
            let record = encode("stock", level, RECORD_BYTES_MAX)?;
            self.run(&self.statements.put_stock, (level.sku.as_str(), record))
                .await?;
        }
        Ok(())
    }

    async fn stock_levels(&self) -> Result<Vec<StockRecord>> {
        self.records("stock", &self.statements.all_stock, ()).await
    }

    /// One `meta` record, so that the watermark and the totals change in
    /// one single-partition write; bounded by `RECORD_BYTES_MAX` (about ten
    /// thousand SKUs sold), past which the snapshot stops advancing with
    /// `TooLarge` and a start replays the orders after it.
    async fn stock_snapshot(&self) -> Result<StockSnapshot> {
        let snapshot = self.snapshot_of(&self.node).await?;
        self.watermark
            .fetch_max(snapshot.watermark.0, std::sync::atomic::Ordering::SeqCst);
        Ok(snapshot)
    }

    /// Unlike the embedded store, this read and write are not one atomic
    /// step against concurrent inserts: callers pass a `below` far older
    /// than any order in flight (the server passes a day ago), and this
    /// node refuses inserts under the watermark it knows. Folds in steps
    /// of at most a page per shard, each saved, until `limit` or the end.
    async fn advance_stock_snapshot(
        &self,
        below: OrderId,
        limit: usize,
        shards: u16,
    ) -> Result<SnapshotProgress> {
        let mut progress = SnapshotProgress {
            watermark: OrderId(self.watermark.load(std::sync::atomic::Ordering::SeqCst)),
            folded: 0,
        };
        loop {
            let step = (limit - progress.folded).clamp(1, PAGE_MAX);
            let stepped = self.advance_snapshot_step(below, step, shards).await?;
            // A step can fold less than it asked for with more to come
            // (shards' pages cut at different ids), so only a step that
            // neither folded nor moved the watermark says the end is
            // reached.
            let moved = stepped.watermark != progress.watermark;
            progress.watermark = stepped.watermark;
            progress.folded += stepped.folded;
            if (stepped.folded == 0 && !moved) || progress.folded >= limit {
                return Ok(progress);
            }
        }
    }
}

impl ScyllaStore {
    /// One step of `advance_stock_snapshot`: up to `limit` (at most a page)
    /// orders folded, and the snapshot written once.
    async fn advance_snapshot_step(
        &self,
        below: OrderId,
        limit: usize,
        shards: u16,
    ) -> Result<SnapshotProgress> {
        let mut snapshot = self.stock_snapshot().await?;
        // A page of each shard's orders from the watermark on; merged, they
        // are complete only up to the last id of the shortest cut page.
        let after = snapshot.watermark.0.checked_sub(1).map(OrderId);
        let (mut orders, mut complete_to) = (Vec::new(), OrderId(u64::MAX));
        for shard in 0..shards {
            let page = self.orders_of_shard(shard, after, limit).await?;
            if let Some(next) = page.next {
                complete_to = complete_to.min(next);
            }
            orders.extend(page.items);
        }
        orders.sort_unstable_by_key(|o| o.id);
        let mut sold: std::collections::BTreeMap<_, i64> =
            std::mem::take(&mut snapshot.sold).into_iter().collect();
        let mut folded = 0;
        // Whether an order at or below `complete_to` was left unfolded.
        let mut stopped = orders.len() > limit;
        for order in orders.iter().take(limit) {
            if order.id > complete_to {
                break;
            }
            if order.id >= below || order.status == OrderStatus::PendingPayment {
                stopped = true;
                break;
            }
            if matches!(
                order.status,
                OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Refunded
            ) {
                for line in &order.lines {
                    *sold.entry(line.sku.clone()).or_default() += i64::from(line.quantity);
                }
            }
            snapshot.watermark = OrderId(order.id.0.saturating_add(1));
            folded += 1;
        }
        // Every order up to the cut was folded: the index rows up to it
        // without an order (inserts that never landed) are passed over
        // too, or a page of nothing but those would hold the fold forever.
        let start = snapshot.watermark;
        if !stopped && complete_to.0 < below.0 && complete_to.0 >= snapshot.watermark.0 {
            snapshot.watermark = OrderId(complete_to.0 + 1);
        }
        if folded > 0 || snapshot.watermark != start {
            snapshot.sold = sold.into_iter().collect();
            let record = encode("stock snapshot", &snapshot, RECORD_BYTES_MAX)?;
            self.run(&self.statements.put_meta, (self.snapshot_key(), record))
                .await?;
            self.watermark
                .fetch_max(snapshot.watermark.0, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(SnapshotProgress {
            watermark: snapshot.watermark,
            folded,
        })
    }
}

#[async_trait]
impl UserStore for ScyllaStore {
    /// Stores the user under its id, then claims the e-mail for it. A
    /// registration cut off between the two leaves a user nothing points
    /// to, never an e-mail claimed by nobody. A claim that does point to a
    /// missing user (left by an earlier souk, which claimed the e-mail first) is
    /// taken over.
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let email = user.email.to_lowercase();
        if email.is_empty() {
            return Err(StorageError::InvalidKey("empty e-mail".into()));
        }
        let record = encode("user", user, RECORD_BYTES_MAX)?;
        let id = to_i64(user.id.0);
        let inserted = self
            .run(&self.statements.insert_user, (id, email.as_str(), record))
            .await?;
        if !applied(inserted)? {
            return Err(StorageError::Conflict(format!("user {} exists", user.id.0)));
        }
        if self.claim_email(&email, id).await? {
            return Ok(());
        }
        self.run(&self.statements.forget_user, (id, email.as_str()))
            .await?;
        Err(StorageError::Conflict("e-mail already registered".into()))
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.record("user", &self.statements.get_user, (to_i64(id.0),))
            .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let email = email.to_lowercase();
        if email.is_empty() {
            return Err(StorageError::InvalidKey("empty e-mail".into()));
        }
        match self.email_owner(&email).await? {
            Some(id) => self.record("user", &self.statements.get_user, (id,)).await,
            None => Ok(None),
        }
    }

    async fn update_user(&self, user: &UserRecord) -> Result<()> {
        let record = encode("user", user, RECORD_BYTES_MAX)?;
        let id = to_i64(user.id.0);
        let email = user.email.to_lowercase();
        let result = self
            .run(&self.statements.update_user, (record, id, email.as_str()))
            .await?;
        if applied(result)? {
            return Ok(());
        }
        match self.user(user.id).await? {
            None => Err(StorageError::NotFound(format!("user {}", user.id.0))),
            Some(_) => Err(StorageError::Conflict(
                "the e-mail cannot change here".into(),
            )),
        }
    }

    async fn put_address(&self, user: UserId, address: &Address) -> Result<()> {
        let record = encode("address", address, RECORD_BYTES_MAX)?;
        let values = (to_i64(user.0), to_i64(address.id.0), record);
        self.run(&self.statements.put_address, values).await?;
        Ok(())
    }

    /// A read, then a plain delete: addresses take no conditional writes
    /// (see `statements`), and the answer only says whether there was one.
    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<bool> {
        let key = (to_i64(user.0), to_i64(id.0));
        let rows = self
            .run(&self.statements.get_address, key)
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let existed = rows.rows_num() > 0;
        self.run(&self.statements.delete_address, key).await?;
        Ok(existed)
    }

    async fn addresses(&self, user: UserId) -> Result<Vec<Address>> {
        self.records("address", &self.statements.addresses, (to_i64(user.0),))
            .await
    }
}

#[async_trait]
impl TokenStore for ScyllaStore {
    /// The family row first, so that revoking the family finds every
    /// token that exists. The token itself is inserted once: the same
    /// token again is a retry, another with its hash a conflict.
    async fn put_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        let record = encode("refresh token", token, RECORD_BYTES_MAX)?;
        let family = (token.family.to_vec(), token.token_hash.to_vec());
        self.run(&self.statements.put_token_family, family).await?;
        let rotated = token.rotated_at.is_some();
        let values = (token.token_hash.to_vec(), rotated, token.revoked, record);
        let inserted = self.run(&self.statements.put_token, values).await?;
        if applied(inserted)?
            || self.refresh_token(&token.token_hash).await?.as_ref() == Some(token)
        {
            return Ok(());
        }
        Err(StorageError::Conflict("refresh token exists".into()))
    }

    /// Revocation sets only the `revoked` column (so that it can never
    /// write back a stale record), which is laid over the record here.
    async fn refresh_token(&self, token_hash: &[u8; 32]) -> Result<Option<RefreshTokenRecord>> {
        let rows = self
            .run(&self.statements.get_token, (token_hash.to_vec(),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(Option<Vec<u8>>, Option<bool>)> =
            rows.maybe_first_row().map_err(unavailable)?;
        // No record: the mark a revocation leaves for a token not yet
        // stored (see `revoke_token_family`).
        let Some((Some(bytes), revoked)) = row else {
            return Ok(None);
        };
        let mut token: RefreshTokenRecord = decode("refresh token", &bytes)?;
        token.revoked |= revoked.unwrap_or(false);
        Ok(Some(token))
    }

    /// Claims the old token with a conditional update, then stores the new
    /// one. A crash between the two leaves the user to log in again: the
    /// safe direction.
    async fn rotate_refresh_token(&self, old: &[u8; 32], new: &RefreshTokenRecord) -> Result<()> {
        let Some(mut stored) = self.refresh_token(old).await? else {
            return Err(StorageError::Conflict("unknown refresh token".into()));
        };
        stored.rotated_at = Some(new.issued_at);
        let record = encode("refresh token", &stored, RECORD_BYTES_MAX)?;
        let result = self
            .run(&self.statements.rotate_token, (record, old.to_vec()))
            .await?;
        if !applied(result)? {
            return Err(StorageError::Conflict(
                "refresh token already used or revoked".into(),
            ));
        }
        self.put_refresh_token(new).await
    }

    async fn revoke_token_family(&self, family: &[u8; 16]) -> Result<usize> {
        let rows = self
            .run(&self.statements.token_family, (family.to_vec(),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let hashes: Vec<Vec<u8>> = rows
            .rows::<(Vec<u8>,)>()
            .map_err(unavailable)?
            .map(|row| row.map(|(hash,)| hash).map_err(unavailable))
            .collect::<Result<_>>()?;
        let mut revoked = 0;
        for hash in hashes {
            let hash: [u8; 32] = hash
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::Corrupt {
                    table: "token_families",
                    reason: "hash of the wrong length".into(),
                })?;
            if self.revoke_token(&hash).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn sign_out_everywhere(
        &self,
        user: UserId,
        at: UnixMillis,
        keep_until: UnixMillis,
    ) -> Result<()> {
        // Microseconds, as CQL write timestamps are: the later cutoff wins.
        let timestamp = to_i64(at.0.saturating_mul(1000));
        // CQL refuses a TTL over 20 years.
        let ttl = (keep_until.0.saturating_sub(at.0) / 1000 + 1).min(630_720_000) as i32;
        let values = (to_i64(user.0), to_i64(at.0), timestamp, ttl);
        self.run(&self.statements.sign_out, values).await?;
        Ok(())
    }

    async fn signed_out_at(&self, user: UserId) -> Result<Option<UnixMillis>> {
        let rows = self
            .run(&self.statements.signed_out_at, (to_i64(user.0),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(i64,)> = rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.map(|(at,)| UnixMillis(at.max(0) as u64)))
    }
}

#[async_trait]
impl OrderStore for ScyllaStore {
    /// The indexes (by id, and the shard's replay index) in one logged
    /// batch, then the order in its user's partition, once, by a
    /// conditional insert: the same order again is a retry, and a retry
    /// that arrives after the order moved on (paid, say) changes nothing.
    /// Readers skip an index row whose order never landed.
    async fn insert_order(&self, order: &OrderRecord) -> Result<()> {
        if order.id.0 < self.watermark.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Conflict(format!(
                "order {} is below the stock snapshot's watermark",
                order.id.0
            )));
        }
        let record = encode("order", order, RECORD_BYTES_MAX)?;
        let (id, user) = (to_i64(order.id.0), to_i64(order.user_id.0));
        let indexes = (
            (id, user),
            (self.node.as_str(), i32::from(order.shard), id, user),
        );
        self.session
            .batch(&self.statements.index_order, indexes)
            .await
            .map_err(unavailable)?;
        let values = (user, id, status_code(order.status), &record);
        let inserted = self.run(&self.statements.insert_order, values).await?;
        if applied(inserted)? {
            return Ok(());
        }
        let stored: Option<(Vec<u8>,)> = self
            .run(&self.statements.get_order, (user, id))
            .await?
            .into_rows_result()
            .map_err(unavailable)?
            .maybe_first_row()
            .map_err(unavailable)?;
        match stored {
            Some((bytes,)) if bytes == record => Ok(()),
            _ => Err(StorageError::Conflict(format!(
                "order {} exists",
                order.id.0
            ))),
        }
    }

    async fn claim_checkout_key(
        &self,
        user: UserId,
        key: IdempotencyKey,
        order: OrderId,
        now: UnixMillis,
    ) -> Result<KeyClaim> {
        let (user, key) = (to_i64(user.0), key.0.to_be_bytes().to_vec());
        let values = (user, &key, to_i64(order.0), to_i64(now.0));
        let claimed = self.run(&self.statements.claim_key, values).await?;
        if applied(claimed)? {
            return Ok(KeyClaim::Claimed);
        }
        let rows = self
            .run(&self.statements.key_claim, (user, &key))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(i64, i64)> = rows.maybe_first_row().map_err(unavailable)?;
        match row {
            Some((held, _)) if held == to_i64(order.0) => Ok(KeyClaim::Claimed),
            Some((held, at)) => Ok(KeyClaim::Taken {
                order: OrderId(held.max(0) as u64),
                claimed_at: UnixMillis(at.max(0) as u64),
            }),
            // Released between the two statements: the caller tries again.
            None => Err(StorageError::Conflict(
                "the checkout key changed hands; try again".into(),
            )),
        }
    }

    async fn take_over_checkout_key(
        &self,
        user: UserId,
        key: IdempotencyKey,
        from: OrderId,
        order: OrderId,
        now: UnixMillis,
    ) -> Result<bool> {
        let key = key.0.to_be_bytes().to_vec();
        let values = (
            to_i64(order.0),
            to_i64(now.0),
            to_i64(user.0),
            key,
            to_i64(from.0),
        );
        applied(self.run(&self.statements.move_key, values).await?)
    }

    async fn release_checkout_key(
        &self,
        user: UserId,
        key: IdempotencyKey,
        order: OrderId,
    ) -> Result<()> {
        let key = key.0.to_be_bytes().to_vec();
        let values = (to_i64(user.0), key, to_i64(order.0));
        self.run(&self.statements.release_key, values).await?;
        Ok(())
    }

    async fn order_settled(&self, user: UserId, id: OrderId) -> Result<Option<OrderRecord>> {
        let values = (to_i64(user.0), to_i64(id.0));
        self.record("order", &self.statements.get_order_settled, values)
            .await
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderRecord>> {
        let Some(user) = self.order_owner(id).await? else {
            return Ok(None);
        };
        self.record("order", &self.statements.get_order, (user, to_i64(id.0)))
            .await
    }

    async fn update_order(&self, order: &OrderRecord, expected: OrderStatus) -> Result<()> {
        let record = encode("order", order, RECORD_BYTES_MAX)?;
        let (id, user) = (to_i64(order.id.0), to_i64(order.user_id.0));
        let values = (
            status_code(order.status),
            record,
            user,
            id,
            status_code(expected),
        );
        let result = self.run(&self.statements.update_order, values).await?;
        if applied(result)? {
            return Ok(());
        }
        match self.order(order.id).await? {
            None => Err(StorageError::NotFound(format!("order {}", order.id.0))),
            Some(stored) => Err(StorageError::Conflict(format!(
                "order {} is {:?}, not {expected:?}",
                order.id.0, stored.status
            ))),
        }
    }

    async fn orders_of_user(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        let limit = limit.clamp(1, PAGE_MAX);
        let user = to_i64(user.0);
        let items: Vec<OrderRecord> = match before {
            Some(before) => {
                let values = (user, to_i64(before.0), limit as i32);
                self.records("order", &self.statements.orders_of_user_before, values)
                    .await?
            }
            None => {
                let values = (user, limit as i32);
                self.records("order", &self.statements.orders_of_user, values)
                    .await?
            }
        };
        let next = (items.len() == limit)
            .then(|| items.last().map(|o| o.id))
            .flatten();
        Ok(Page { items, next })
    }

    async fn orders_of_shard(
        &self,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        self.shard_orders_of(&self.node, shard, after, limit).await
    }
}

impl ScyllaStore {
    /// A page of `node`'s shard `shard`'s replay index after `after`:
    /// (order id, user id), at most `limit` (1..=`PAGE_MAX`).
    async fn shard_index_of(
        &self,
        node: &str,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<(i64, i64)>> {
        let after = after.map_or(-1, |id| to_i64(id.0));
        let values = (node, i32::from(shard), after, limit as i32);
        let rows = self
            .run(&self.statements.orders_of_shard, values)
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(i64, i64)>()
            .map_err(unavailable)?
            .collect::<std::result::Result<_, _>>()
            .map_err(unavailable)
    }

    /// A page of the orders `node`'s shard `shard` placed, after `after`.
    async fn shard_orders_of(
        &self,
        node: &str,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>> {
        let limit = limit.clamp(1, PAGE_MAX);
        let index = self.shard_index_of(node, shard, after, limit).await?;
        let full = index.len() == limit;
        let last = index
            .last()
            .map(|(id, _)| OrderId(id.max(&0).unsigned_abs()));
        // An index row whose order is missing is an insert that never
        // finished (it was not acknowledged): nothing to replay.
        let items: Vec<OrderRecord> = stream::iter(index)
            .map(|(id, user)| {
                self.record::<OrderRecord>("order", &self.statements.get_order, (user, id))
            })
            .buffered(ORDER_READS_IN_FLIGHT)
            .try_filter_map(|order| async move { Ok(order) })
            .try_collect()
            .await?;
        // The page goes on from the last index row, found or not.
        let next = full.then_some(last).flatten();
        Ok(Page { items, next })
    }
}

#[async_trait]
impl CartStore for ScyllaStore {
    async fn put_carts(&self, carts: &[CartRecord]) -> Result<()> {
        for cart in carts {
            check_len("cart key", cart.key.len(), crate::limits::KEY_BYTES_MAX)?;
            if cart.lines.is_empty() {
                self.run(&self.statements.delete_cart, (cart.key.as_str(),))
                    .await?;
            } else {
                let record = encode("cart", cart, RECORD_BYTES_MAX)?;
                self.run(&self.statements.put_cart, (cart.key.as_str(), record))
                    .await?;
            }
        }
        Ok(())
    }

    async fn carts(&self) -> Result<Vec<CartRecord>> {
        self.records("cart", &self.statements.all_carts, ()).await
    }
}

#[async_trait]
impl PaymentStore for ScyllaStore {
    async fn put_payment(&self, payment: &PaymentRecord) -> Result<()> {
        let record = encode("payment", payment, RECORD_BYTES_MAX)?;
        self.run(
            &self.statements.put_payment,
            (to_i64(payment.order_id.0), record),
        )
        .await?;
        Ok(())
    }

    async fn payment(&self, order: OrderId) -> Result<Option<PaymentRecord>> {
        self.record("payment", &self.statements.get_payment, (to_i64(order.0),))
            .await
    }
}

#[async_trait]
impl Store for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    async fn close(&self) -> Result<()> {
        // Every write was acknowledged at LOCAL_QUORUM; nothing is buffered.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_fills_in_keyspace_and_replication() {
        let mut config = ScyllaConfig::new(vec!["127.0.0.1:9042".into()], "souk_test".into());
        config.replication_factor = 1;
        let statements = schema_statements(&config, Server::Cassandra);
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS souk_test"));
        assert!(
            statements[0]
                .ends_with("{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}")
        );
        let scylla = schema_statements(&config, Server::ScyllaDb { tablets: true });
        assert!(scylla[0].ends_with("'replication_factor': 1} AND tablets = {'enabled': false}"));
        assert_eq!(scylla[1..], statements[1..], "only the keyspace differs");
        let older = schema_statements(&config, Server::ScyllaDb { tablets: false });
        assert_eq!(
            older, statements,
            "no tablets option before ScyllaDB knew it"
        );
        assert!(
            statements
                .iter()
                .all(|s| !s.contains('{') || s.contains("'class'"))
        );
        assert!(statements.iter().skip(1).all(|s| s.contains("souk_test.")));
        let tables = SCHEMA.matches("CREATE TABLE").count();
        assert_eq!(statements.len(), 1 + tables);
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_name("souk_prod_1"));
        assert!(!valid_name("souk; DROP"));
        assert!(!valid_name(""));
    }
}
