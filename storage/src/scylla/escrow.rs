//! Stock shared by several souk nodes on one cluster, held in escrow.
//!
//! Each SKU's units are split between its pool (units no node holds) and
//! one grant per node (units that node may sell). A node sells only from
//! its own grant, which its shards count in memory as they count received
//! stock on a single node; it takes units from the pool in chunks and
//! gives back what it did not sell when it stops. Units are conserved:
//! every change moves units between the pool and one grant in a single
//! conditional batch on the SKU's partition, so pool + grants stays the
//! units received and two nodes can never take the same units.
//!
//! A node that dies keeps its grants until its lease runs out. Another
//! node then fences it (sets its lease negative, so it cannot renew) and
//! reclaims each grant down to the units the dead node's durable orders
//! hold (sold or awaiting payment), which it reads from the orders. A
//! fenced node that starts again reclaims its own grants the same way
//! before it sells.

use souk_wire::api::{Sku, UnixMillis};

use super::{ScyllaStore, applied, unavailable};
use crate::error::{Result, StorageError};

/// Conditional writes tried before contention is reported as `Busy`.
const CAS_ATTEMPTS: usize = 32;

/// One SKU's escrow: its pool and every node's grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Escrow {
    pub pool: i64,
    /// `(node, units granted)`, by node name.
    pub grants: Vec<(String, i64)>,
}

impl Escrow {
    pub fn granted_to(&self, node: &str) -> i64 {
        self.grants
            .iter()
            .find(|(n, _)| n == node)
            .map_or(0, |(_, units)| *units)
    }

    /// Units received: the pool and every grant.
    pub fn total(&self) -> i64 {
        self.pool + self.grants.iter().map(|(_, units)| units).sum::<i64>()
    }
}

/// A node's lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// It may sell until then.
    Until(UnixMillis),
    /// Fenced after its lease ran out; its grants are being reclaimed.
    Fenced,
}

const FENCED: i64 = -1;

fn lease_value(until: i64) -> Lease {
    if until < 0 {
        Lease::Fenced
    } else {
        Lease::Until(UnixMillis(until as u64))
    }
}

fn millis(at: UnixMillis) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

/// After a conditional write lost to another writer: a short random wait,
/// growing with the attempt, so that writers racing on one partition stop
/// colliding in step.
async fn back_off(attempt: usize) {
    let ceiling_ms = 1u64 << attempt.min(6);
    let wait = rand::random::<u64>() % ceiling_ms;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
}

fn contended(what: &str) -> StorageError {
    StorageError::Unavailable(format!(
        "scylla: {what} stayed contended after {CAS_ATTEMPTS} conditional writes"
    ))
}

impl ScyllaStore {
    /// This node's name among the nodes sharing the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A SKU's pool and grants.
    pub async fn escrow(&self, sku: &Sku) -> Result<Escrow> {
        Ok(self.escrow_read(sku).await?.1)
    }

    /// The same, and whether the pool was ever opened.
    async fn escrow_read(&self, sku: &Sku) -> Result<(bool, Escrow)> {
        let mut opened = false;
        let rows = self
            .run(&self.statements.escrow_of, (sku.as_str(),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut escrow = Escrow::default();
        for row in rows
            .rows::<(Option<i64>, Option<String>, Option<i64>)>()
            .map_err(unavailable)?
        {
            let (pool, node, granted) = row.map_err(unavailable)?;
            opened |= pool.is_some();
            escrow.pool = pool.unwrap_or(0);
            if let Some(node) = node {
                escrow.grants.push((node, granted.unwrap_or(0)));
            }
        }
        Ok((opened, escrow))
    }

    /// Every SKU's escrow, as a node reads it at start.
    pub async fn all_escrow(&self) -> Result<Vec<(Sku, Escrow)>> {
        let mut all: Vec<(Sku, Escrow)> = Vec::new();
        let mut paging = scylla::response::PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(&self.statements.all_escrow, (), paging)
                .await
                .map_err(unavailable)?;
            let rows = result.into_rows_result().map_err(unavailable)?;
            for row in rows
                .rows::<(String, Option<i64>, Option<String>, Option<i64>)>()
                .map_err(unavailable)?
            {
                let (sku, pool, node, granted) = row.map_err(unavailable)?;
                let sku = Sku::new(sku).map_err(|e| StorageError::Corrupt {
                    table: "stock_escrow",
                    reason: e.to_string(),
                })?;
                if all.last().is_none_or(|(last, _)| *last != sku) {
                    all.push((sku, Escrow::default()));
                }
                let escrow = &mut all.last_mut().expect("pushed above").1;
                escrow.pool = pool.unwrap_or(0);
                if let Some(node) = node {
                    escrow.grants.push((node, granted.unwrap_or(0)));
                }
            }
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => return Ok(all),
                std::ops::ControlFlow::Continue(state) => paging = state,
            }
        }
    }

    /// Adds `units` received (a restock, or the opening stock) to the pool;
    /// the pool's new size.
    pub async fn add_to_pool(&self, sku: &Sku, units: i64) -> Result<i64> {
        if units < 0 {
            return Err(StorageError::Conflict(format!(
                "cannot add {units} units to the pool of {sku}"
            )));
        }
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let (opened, escrow) = self.escrow_read(sku).await?;
            let pool = escrow.pool + units;
            let written = if !opened {
                self.run(&self.statements.open_pool, (sku.as_str(), pool))
                    .await?
            } else {
                self.run(&self.statements.set_pool, (pool, sku.as_str(), escrow.pool))
                    .await?
            };
            if applied(written)? {
                return Ok(pool);
            }
        }
        Err(contended("the pool"))
    }

    /// Moves up to `want` units from the pool to this node's grant; the
    /// units moved, none when the pool is empty.
    pub async fn take_from_pool(&self, sku: &Sku, want: i64) -> Result<i64> {
        if want <= 0 {
            return Ok(0);
        }
        self.open_grant(sku, &self.node).await?;
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.escrow(sku).await?;
            let taken = want.min(escrow.pool);
            if taken <= 0 {
                return Ok(0);
            }
            let granted = escrow.granted_to(&self.node);
            if self
                .move_units(sku, &self.node, (escrow.pool, granted), -taken)
                .await?
            {
                return Ok(taken);
            }
        }
        Err(contended("the pool"))
    }

    /// Moves `units` of this node's grant back to the pool (what it did not
    /// sell, when it stops or a SKU moves to another node).
    pub async fn return_to_pool(&self, sku: &Sku, units: i64) -> Result<()> {
        self.reclaim(sku, &self.node, |granted| granted - units)
            .await
            .map(drop)
    }

    /// Sets `node`'s grant to `keep(granted)` (at most what it has), the
    /// rest back to the pool; the units returned. `keep` is asked again on
    /// each attempt, with the grant as it then is.
    pub async fn reclaim(&self, sku: &Sku, node: &str, keep: impl Fn(i64) -> i64) -> Result<i64> {
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.escrow(sku).await?;
            let granted = escrow.granted_to(node);
            let kept = keep(granted);
            if kept < 0 || kept > granted {
                return Err(StorageError::Conflict(format!(
                    "{node} holds {granted} units of {sku}, cannot keep {kept}"
                )));
            }
            let returned = granted - kept;
            if returned == 0 {
                return Ok(0);
            }
            if self
                .move_units(sku, node, (escrow.pool, granted), returned)
                .await?
            {
                return Ok(returned);
            }
        }
        Err(contended("a grant"))
    }

    async fn open_grant(&self, sku: &Sku, node: &str) -> Result<()> {
        let escrow = self.escrow(sku).await?;
        if escrow.grants.iter().any(|(n, _)| n == node) {
            return Ok(());
        }
        // Not applied means it exists now: either way it is there.
        self.run(&self.statements.open_grant, (sku.as_str(), node))
            .await?;
        Ok(())
    }

    /// `pool += units`, `grant -= units`, if both are still as read.
    async fn move_units(
        &self,
        sku: &Sku,
        node: &str,
        (pool, granted): (i64, i64),
        units: i64,
    ) -> Result<bool> {
        let values = (
            (pool + units, sku.as_str(), pool),
            (granted - units, sku.as_str(), node, granted),
        );
        let result = self
            .session
            .batch(&self.statements.move_units, values)
            .await
            .map_err(unavailable)?;
        applied(result)
    }

    /// `node`'s lease, if it ever had one.
    pub async fn lease(&self, node: &str) -> Result<Option<Lease>> {
        let rows = self
            .run(&self.statements.lease_of, (node,))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(Option<i64>,)> = rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.map(|(until,)| lease_value(until.unwrap_or(FENCED))))
    }

    /// Every node's lease.
    pub async fn leases(&self) -> Result<Vec<(String, Lease)>> {
        let rows = self
            .run(&self.statements.all_leases, ())
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(String, Option<i64>)>()
            .map_err(unavailable)?
            .map(|row| {
                let (node, until) = row.map_err(unavailable)?;
                Ok((node, lease_value(until.unwrap_or(FENCED))))
            })
            .collect()
    }

    /// Moves this node's lease from `held` (what it last wrote; `None` at
    /// start, to take over whatever is stored) to `until`. `Conflict` when
    /// the stored lease is not `held`: another node fenced this one, which
    /// must stop selling and reclaim its grants before it sells again.
    pub async fn renew_lease(&self, held: Option<Lease>, until: UnixMillis) -> Result<()> {
        let node = self.node.as_str();
        let stored = match held {
            Some(held) => Some(held),
            None => self.lease(node).await?,
        };
        let written = match stored {
            None => {
                self.run(&self.statements.new_lease, (node, millis(until)))
                    .await?
            }
            Some(stored) => {
                let old = match stored {
                    Lease::Until(at) => millis(at),
                    Lease::Fenced => FENCED,
                };
                self.run(&self.statements.set_lease, (millis(until), node, old))
                    .await?
            }
        };
        if applied(written)? {
            Ok(())
        } else {
            Err(StorageError::Conflict(format!(
                "the lease of {node} changed: fenced by another node"
            )))
        }
    }

    /// Fences `node` if its lease ran out before `now`: from then on it
    /// cannot renew, so its grants can be reclaimed. True when it is
    /// fenced (by this call or before).
    pub async fn fence(&self, node: &str, now: UnixMillis) -> Result<bool> {
        match self.lease(node).await? {
            None => Ok(false),
            Some(Lease::Fenced) => Ok(true),
            Some(Lease::Until(until)) if until >= now => Ok(false),
            Some(Lease::Until(until)) => {
                let written = self
                    .run(&self.statements.set_lease, (FENCED, node, millis(until)))
                    .await?;
                if applied(written)? {
                    return Ok(true);
                }
                // Renewed or fenced meanwhile: look again.
                Ok(matches!(self.lease(node).await?, Some(Lease::Fenced)))
            }
        }
    }
}
