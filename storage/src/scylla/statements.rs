//! Every CQL statement the Scylla backend runs, prepared once at connect.

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;

use crate::error::{Result, StorageError};

/// Rows per page of a full-table read (the catalog at start).
const PAGE_ROWS: i32 = 1000;

pub struct Statements {
    pub get_meta: PreparedStatement,
    pub put_meta: PreparedStatement,
    pub put_category: PreparedStatement,
    pub all_categories: PreparedStatement,
    pub put_product: PreparedStatement,
    pub get_product: PreparedStatement,
    pub all_products: PreparedStatement,
    pub put_stock: PreparedStatement,
    pub all_stock: PreparedStatement,
    pub put_cart: PreparedStatement,
    pub delete_cart: PreparedStatement,
    pub all_carts: PreparedStatement,
    pub claim_email: PreparedStatement,
    pub release_email: PreparedStatement,
    pub insert_user: PreparedStatement,
    pub get_user: PreparedStatement,
    pub user_by_email: PreparedStatement,
    pub update_user: PreparedStatement,
    pub put_address: PreparedStatement,
    pub delete_address: PreparedStatement,
    pub addresses: PreparedStatement,
    pub put_token: PreparedStatement,
    pub put_token_family: PreparedStatement,
    pub get_token: PreparedStatement,
    pub rotate_token: PreparedStatement,
    pub revoke_token: PreparedStatement,
    pub token_family: PreparedStatement,
    pub sign_out: PreparedStatement,
    pub signed_out_at: PreparedStatement,
    pub insert_order: Batch,
    pub order_owner: PreparedStatement,
    pub get_order: PreparedStatement,
    pub update_order: PreparedStatement,
    pub orders_of_user: PreparedStatement,
    pub orders_of_user_before: PreparedStatement,
    pub orders_of_shard: PreparedStatement,
    pub put_payment: PreparedStatement,
    pub get_payment: PreparedStatement,
}

/// Whether the driver may run a statement again after a timeout: true for
/// plain reads and writes of fixed values, false for conditional ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Safe,
    Conditional,
}

struct Preparer<'a> {
    session: &'a Session,
    keyspace: &'a str,
}

impl Preparer<'_> {
    async fn prepare(&self, cql: &str, retry: Retry) -> Result<PreparedStatement> {
        let cql = cql.replace("{ks}", self.keyspace);
        let statement = Statement::new(cql.clone()).with_page_size(PAGE_ROWS);
        let mut prepared = self
            .session
            .prepare(statement)
            .await
            .map_err(|e| StorageError::Unavailable(format!("scylla: preparing {cql}: {e}")))?;
        prepared.set_is_idempotent(retry == Retry::Safe);
        Ok(prepared)
    }
}

impl Statements {
    pub async fn prepare(session: &Session, keyspace: &str) -> Result<Statements> {
        let p = Preparer { session, keyspace };
        use Retry::{Conditional, Safe};
        let order_writes = [
            p.prepare("INSERT INTO {ks}.orders_by_user (user_id, order_id, status, record) VALUES (?, ?, ?, ?)", Safe).await?,
            p.prepare("INSERT INTO {ks}.orders_by_id (order_id, user_id) VALUES (?, ?)", Safe).await?,
            p.prepare("INSERT INTO {ks}.orders_by_shard (node, shard, order_id, user_id) VALUES (?, ?, ?, ?)", Safe).await?,
        ];
        let mut insert_order = Batch::new(BatchType::Logged);
        for statement in order_writes {
            insert_order.append_statement(statement);
        }
        insert_order.set_is_idempotent(true);
        Ok(Statements {
            get_meta: p.prepare("SELECT value FROM {ks}.meta WHERE name = ?", Safe).await?,
            put_meta: p.prepare("INSERT INTO {ks}.meta (name, value) VALUES (?, ?)", Safe).await?,
            put_category: p.prepare("INSERT INTO {ks}.categories (category_id, record) VALUES (?, ?)", Safe).await?,
            all_categories: p.prepare("SELECT record FROM {ks}.categories", Safe).await?,
            put_product: p.prepare("INSERT INTO {ks}.products (product_id, record) VALUES (?, ?)", Safe).await?,
            get_product: p.prepare("SELECT record FROM {ks}.products WHERE product_id = ?", Safe).await?,
            all_products: p.prepare("SELECT record FROM {ks}.products", Safe).await?,
            put_stock: p.prepare("INSERT INTO {ks}.stock (sku, record) VALUES (?, ?)", Safe).await?,
            all_stock: p.prepare("SELECT record FROM {ks}.stock", Safe).await?,
            put_cart: p.prepare("INSERT INTO {ks}.carts (key, record) VALUES (?, ?)", Safe).await?,
            delete_cart: p.prepare("DELETE FROM {ks}.carts WHERE key = ?", Safe).await?,
            all_carts: p.prepare("SELECT record FROM {ks}.carts", Safe).await?,
            claim_email: p.prepare("INSERT INTO {ks}.users_by_email (email, user_id) VALUES (?, ?) IF NOT EXISTS", Conditional).await?,
            release_email: p.prepare("DELETE FROM {ks}.users_by_email WHERE email = ? IF user_id = ?", Conditional).await?,
            insert_user: p.prepare("INSERT INTO {ks}.users (user_id, email, record) VALUES (?, ?, ?) IF NOT EXISTS", Conditional).await?,
            get_user: p.prepare("SELECT record FROM {ks}.users WHERE user_id = ?", Safe).await?,
            user_by_email: p.prepare("SELECT user_id FROM {ks}.users_by_email WHERE email = ?", Safe).await?,
            update_user: p.prepare("UPDATE {ks}.users SET record = ? WHERE user_id = ? IF email = ?", Conditional).await?,
            put_address: p.prepare("INSERT INTO {ks}.addresses (user_id, address_id, record) VALUES (?, ?, ?)", Safe).await?,
            delete_address: p.prepare("DELETE FROM {ks}.addresses WHERE user_id = ? AND address_id = ? IF EXISTS", Conditional).await?,
            addresses: p.prepare("SELECT record FROM {ks}.addresses WHERE user_id = ?", Safe).await?,
            put_token: p.prepare("INSERT INTO {ks}.refresh_tokens (token_hash, rotated, revoked, record) VALUES (?, ?, ?, ?)", Safe).await?,
            put_token_family: p.prepare("INSERT INTO {ks}.token_families (family, token_hash) VALUES (?, ?)", Safe).await?,
            get_token: p.prepare("SELECT record FROM {ks}.refresh_tokens WHERE token_hash = ?", Safe).await?,
            rotate_token: p.prepare("UPDATE {ks}.refresh_tokens SET rotated = true, record = ? WHERE token_hash = ? IF rotated = false AND revoked = false", Conditional).await?,
            revoke_token: p.prepare("UPDATE {ks}.refresh_tokens SET revoked = true, record = ? WHERE token_hash = ?", Safe).await?,
            token_family: p.prepare("SELECT token_hash FROM {ks}.token_families WHERE family = ?", Safe).await?,
            sign_out: p.prepare("INSERT INTO {ks}.sign_outs (user_id, at) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?", Safe).await?,
            signed_out_at: p.prepare("SELECT at FROM {ks}.sign_outs WHERE user_id = ?", Safe).await?,
            insert_order,
            order_owner: p.prepare("SELECT user_id FROM {ks}.orders_by_id WHERE order_id = ?", Safe).await?,
            get_order: p.prepare("SELECT record FROM {ks}.orders_by_user WHERE user_id = ? AND order_id = ?", Safe).await?,
            update_order: p.prepare("UPDATE {ks}.orders_by_user SET status = ?, record = ? WHERE user_id = ? AND order_id = ? IF status = ?", Conditional).await?,
            orders_of_user: p.prepare("SELECT record FROM {ks}.orders_by_user WHERE user_id = ? LIMIT ?", Safe).await?,
            orders_of_user_before: p.prepare("SELECT record FROM {ks}.orders_by_user WHERE user_id = ? AND order_id < ? LIMIT ?", Safe).await?,
            orders_of_shard: p.prepare("SELECT order_id, user_id FROM {ks}.orders_by_shard WHERE node = ? AND shard = ? AND order_id > ? LIMIT ?", Safe).await?,
            put_payment: p.prepare("INSERT INTO {ks}.payments (order_id, record) VALUES (?, ?)", Safe).await?,
            get_payment: p.prepare("SELECT record FROM {ks}.payments WHERE order_id = ?", Safe).await?,
        })
    }
}
