//! Every CQL statement the Scylla backend runs, prepared once at connect.
//!
//! The texts live in one table (`CQL`) with how each may be retried, so a
//! test can check the rule Paxos needs: a table written conditionally (a
//! lightweight transaction) is written only conditionally. A plain write
//! carries its own timestamp and bypasses the Paxos round, so it can land
//! after a conditional write that checked a state it then undoes (a retried
//! order insert taking a paid order back to pending, say).

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;

use crate::error::{Result, StorageError};

/// Rows per page of a full-table read (the catalog at start).
const PAGE_ROWS: i32 = 1000;

/// Whether the driver may run a statement again after a timeout: true for
/// plain reads and writes of fixed values, false for conditional ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Retry {
    Safe,
    Conditional,
}

use Retry::{Conditional, Safe};

/// Declares each statement once: its field in `Statements`, its text
/// (`{ks}` is the keyspace) and its retry kind.
macro_rules! statements {
    ($($name:ident: $retry:ident $cql:literal,)*) => {
        pub struct Statements {
            $(pub $name: PreparedStatement,)*
            /// The order row's indexes (by id, and the shard's replay
            /// index), one logged batch.
            pub index_order: Batch,
            /// A product and its catalog change row, one logged batch.
            pub put_product: Batch,
            /// Units moved between a SKU's pool and a node's grant: both
            /// conditions hold, or neither write lands (one partition).
            pub move_units: Batch,
        }

        /// Every statement's text and retry kind.
        #[cfg(test)]
        pub(crate) const CQL: &[(&str, Retry)] = &[$(($cql, $retry),)*];

        impl Statements {
            pub async fn prepare(session: &Session, keyspace: &str) -> Result<Statements> {
                let p = Preparer { session, keyspace };
                let mut index_order = Batch::new(BatchType::Logged);
                for cql in INDEX_ORDER {
                    index_order.append_statement(p.prepare(cql, Safe).await?);
                }
                index_order.set_is_idempotent(true);
                let mut move_units = Batch::new(BatchType::Unlogged);
                for cql in MOVE_UNITS {
                    move_units.append_statement(p.prepare(cql, Conditional).await?);
                }
                move_units.set_is_idempotent(false);
                let mut put_product = Batch::new(BatchType::Logged);
                for cql in PUT_PRODUCT {
                    put_product.append_statement(p.prepare(cql, Safe).await?);
                }
                put_product.set_is_idempotent(true);
                Ok(Statements {
                    $($name: p.prepare($cql, $retry).await?,)*
                    index_order,
                    move_units,
                    put_product,
                })
            }
        }
    };
}

/// The order's index rows, written before the order itself: an index row
/// whose order never landed is skipped by readers, while an order without
/// its replay row would be missed when stock is rebuilt.
pub(crate) const INDEX_ORDER: [&str; 2] = [
    "INSERT INTO {ks}.orders_by_id (order_id, user_id) VALUES (?, ?)",
    "INSERT INTO {ks}.orders_by_shard (node, shard, order_id, user_id) VALUES (?, ?, ?, ?)",
];

/// A product, and the row other nodes find the change by.
pub(crate) const PUT_PRODUCT: [&str; 2] = [
    "INSERT INTO {ks}.products (product_id, record) VALUES (?, ?)",
    "INSERT INTO {ks}.catalog_changes (day, at, product_id) VALUES (?, ?, ?)",
];

/// The pool's new size if it still has its old one, and the grant's
/// likewise.
pub(crate) const MOVE_UNITS: [&str; 2] = [
    "UPDATE {ks}.stock_escrow SET granted = ? WHERE sku = ? AND node = '*pool' IF granted = ?",
    "UPDATE {ks}.stock_escrow SET granted = ?, epoch = ? WHERE sku = ? AND node = ? IF granted = ? AND epoch = ?",
];

statements! {
    get_meta: Safe "SELECT value FROM {ks}.meta WHERE name = ?",
    put_meta: Safe "INSERT INTO {ks}.meta (name, value) VALUES (?, ?)",
    put_category: Safe "INSERT INTO {ks}.categories (category_id, record) VALUES (?, ?)",
    all_categories: Safe "SELECT record FROM {ks}.categories",
    get_product: Safe "SELECT record FROM {ks}.products WHERE product_id = ?",
    all_products: Safe "SELECT record FROM {ks}.products",
    put_stock: Safe "INSERT INTO {ks}.stock (sku, record) VALUES (?, ?)",
    all_stock: Safe "SELECT record FROM {ks}.stock",
    put_cart: Safe "INSERT INTO {ks}.carts (key, record) VALUES (?, ?)",
    delete_cart: Safe "DELETE FROM {ks}.carts WHERE key = ?",
    all_carts: Safe "SELECT record FROM {ks}.carts",
    insert_user: Conditional "INSERT INTO {ks}.users (user_id, email, record) VALUES (?, ?, ?) IF NOT EXISTS",
    forget_user: Conditional "DELETE FROM {ks}.users WHERE user_id = ? IF email = ?",
    claim_email: Conditional "INSERT INTO {ks}.users_by_email (email, user_id) VALUES (?, ?) IF NOT EXISTS",
    take_over_email: Conditional "UPDATE {ks}.users_by_email SET user_id = ? WHERE email = ? IF user_id = ?",
    get_user: Safe "SELECT record FROM {ks}.users WHERE user_id = ?",
    user_by_email: Safe "SELECT user_id FROM {ks}.users_by_email WHERE email = ?",
    update_user: Conditional "UPDATE {ks}.users SET record = ? WHERE user_id = ? IF email = ?",
    put_address: Safe "INSERT INTO {ks}.addresses (user_id, address_id, record) VALUES (?, ?, ?)",
    delete_address: Safe "DELETE FROM {ks}.addresses WHERE user_id = ? AND address_id = ?",
    get_address: Safe "SELECT address_id FROM {ks}.addresses WHERE user_id = ? AND address_id = ?",
    addresses: Safe "SELECT record FROM {ks}.addresses WHERE user_id = ?",
    put_token: Conditional "INSERT INTO {ks}.refresh_tokens (token_hash, rotated, revoked, record) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    put_token_family: Safe "INSERT INTO {ks}.token_families (family, token_hash) VALUES (?, ?)",
    get_token: Safe "SELECT record, revoked FROM {ks}.refresh_tokens WHERE token_hash = ?",
    rotate_token: Conditional "UPDATE {ks}.refresh_tokens SET rotated = true, record = ? WHERE token_hash = ? IF rotated = false AND revoked = false",
    revoke_token: Conditional "UPDATE {ks}.refresh_tokens SET revoked = true WHERE token_hash = ? IF EXISTS",
    revoke_missing_token: Conditional "INSERT INTO {ks}.refresh_tokens (token_hash, revoked) VALUES (?, true) IF NOT EXISTS",
    token_family: Safe "SELECT token_hash FROM {ks}.token_families WHERE family = ?",
    sign_out: Safe "INSERT INTO {ks}.sign_outs (user_id, at) VALUES (?, ?) USING TIMESTAMP ? AND TTL ?",
    signed_out_at: Safe "SELECT at FROM {ks}.sign_outs WHERE user_id = ?",
    insert_order: Conditional "INSERT INTO {ks}.orders_by_user (user_id, order_id, status, record) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    order_owner: Safe "SELECT user_id FROM {ks}.orders_by_id WHERE order_id = ?",
    get_order: Safe "SELECT record FROM {ks}.orders_by_user WHERE user_id = ? AND order_id = ?",
    // Read at the serial consistency (set at connect): it finishes any
    // conditional write left half done before answering.
    get_order_settled: Safe "SELECT record FROM {ks}.orders_by_user WHERE user_id = ? AND order_id = ?",
    update_order: Conditional "UPDATE {ks}.orders_by_user SET status = ?, record = ? WHERE user_id = ? AND order_id = ? IF status = ?",
    orders_of_user: Safe "SELECT record FROM {ks}.orders_by_user WHERE user_id = ? LIMIT ?",
    orders_of_user_before: Safe "SELECT record FROM {ks}.orders_by_user WHERE user_id = ? AND order_id < ? LIMIT ?",
    orders_of_shard: Safe "SELECT order_id, user_id FROM {ks}.orders_by_shard WHERE node = ? AND shard = ? AND order_id > ? LIMIT ?",
    put_payment: Safe "INSERT INTO {ks}.payments (order_id, record) VALUES (?, ?)",
    get_payment: Safe "SELECT record FROM {ks}.payments WHERE order_id = ?",
    stock_of: Safe "SELECT record FROM {ks}.stock WHERE sku = ?",
    escrow_of: Safe "SELECT node, granted, epoch FROM {ks}.stock_escrow WHERE sku = ?",
    all_escrow: Safe "SELECT sku, node, granted, epoch FROM {ks}.stock_escrow",
    open_pool: Conditional "INSERT INTO {ks}.stock_escrow (sku, node, granted, epoch) VALUES (?, '*pool', ?, 0) IF NOT EXISTS",
    set_pool: Conditional "UPDATE {ks}.stock_escrow SET granted = ? WHERE sku = ? AND node = '*pool' IF granted = ?",
    open_grant: Conditional "INSERT INTO {ks}.stock_escrow (sku, node, granted, epoch) VALUES (?, ?, 0, ?) IF NOT EXISTS",
    stamp_grant: Conditional "UPDATE {ks}.stock_escrow SET epoch = ? WHERE sku = ? AND node = ? IF epoch = ?",
    lease_of: Safe "SELECT until, epoch FROM {ks}.node_leases WHERE node = ?",
    all_leases: Safe "SELECT node, until, epoch FROM {ks}.node_leases",
    new_lease: Conditional "INSERT INTO {ks}.node_leases (node, until, epoch) VALUES (?, ?, ?) IF NOT EXISTS",
    set_lease: Conditional "UPDATE {ks}.node_leases SET until = ?, epoch = ? WHERE node = ? IF until = ? AND epoch = ?",
    node_numbers: Safe "SELECT number, node FROM {ks}.node_numbers",
    claim_number: Conditional "INSERT INTO {ks}.node_numbers (number, node) VALUES (?, ?) IF NOT EXISTS",
    catalog_changes: Safe "SELECT product_id FROM {ks}.catalog_changes WHERE day = ? AND at >= ?",
    claim_key: Conditional "INSERT INTO {ks}.checkout_keys (user_id, key, order_id, claimed_at) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    key_claim: Safe "SELECT order_id, claimed_at FROM {ks}.checkout_keys WHERE user_id = ? AND key = ?",
    move_key: Conditional "UPDATE {ks}.checkout_keys SET order_id = ?, claimed_at = ? WHERE user_id = ? AND key = ? IF order_id = ?",
    release_key: Conditional "DELETE FROM {ks}.checkout_keys WHERE user_id = ? AND key = ? IF order_id = ?",
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
        prepared.set_is_idempotent(retry == Safe);
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The table a write statement writes: the word after INSERT INTO,
    /// UPDATE or DELETE ... FROM.
    fn written_table(cql: &str) -> Option<&str> {
        let words: Vec<&str> = cql.split_whitespace().collect();
        let at = match *words.first()? {
            "INSERT" => 2,
            "UPDATE" => 1,
            "DELETE" => words.iter().position(|w| *w == "FROM")? + 1,
            _ => return None,
        };
        words.get(at).copied()
    }

    #[test]
    fn a_table_written_conditionally_is_only_written_conditionally() {
        let mut kinds: BTreeMap<&str, Vec<(Retry, &str)>> = BTreeMap::new();
        let writes = CQL
            .iter()
            .copied()
            .chain(INDEX_ORDER.map(|cql| (cql, Safe)))
            .chain(PUT_PRODUCT.map(|cql| (cql, Safe)))
            .chain(MOVE_UNITS.map(|cql| (cql, Conditional)));
        for (cql, retry) in writes {
            if let Some(table) = written_table(cql) {
                kinds.entry(table).or_default().push((retry, cql));
            }
        }
        assert!(kinds.contains_key("{ks}.orders_by_user"), "{kinds:?}");
        for (table, writes) in &kinds {
            let conditional = writes.iter().filter(|(r, _)| *r == Conditional).count();
            assert!(
                conditional == 0 || conditional == writes.len(),
                "{table} mixes plain and conditional writes: {writes:#?}"
            );
        }
    }

    #[test]
    fn conditional_statements_are_exactly_those_with_a_condition() {
        for (cql, retry) in CQL {
            let has_condition = cql.contains(" IF ");
            assert_eq!(has_condition, *retry == Conditional, "{cql}");
        }
    }
}
