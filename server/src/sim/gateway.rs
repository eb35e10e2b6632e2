//! The simulated payment gateway. Like a real provider called with an
//! idempotency key (the order id), it charges an order at most once and
//! answers a repeated charge with the first outcome; unlike a healthy
//! one, it sometimes does not answer, before or after charging.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use souk_wire::api::{Money, OrderId};

use crate::domain::ports::GatewayError;

#[derive(Debug, Default)]
pub struct SimGateway {
    /// Orders charged, and the amount; the money moved once each.
    captured: RefCell<HashMap<OrderId, Money>>,
    declined: RefCell<HashMap<OrderId, String>>,
    healed: Cell<bool>,
    /// A draw that replaces the random one, for tests that want one answer.
    forced: Cell<Option<u64>>,
    /// How long every answer takes, for tests; random otherwise.
    latency: Cell<Option<std::time::Duration>>,
    refunds: RefCell<std::collections::HashSet<OrderId>>,
}

/// What a test wants the gateway to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMode {
    Random,
    Approve,
    Decline,
    /// Charges, then does not answer.
    TimeOutAfterCharging,
}

impl SimGateway {
    /// `draw` in 0..100: 60 % approve, 10 % decline, 15 % no answer before
    /// charging, 15 % no answer after charging.
    pub fn charge(&self, order: OrderId, amount: Money, draw: u64) -> Result<String, GatewayError> {
        let draw = self.forced.get().unwrap_or(draw);
        let timed_out = !self.healed.get() && draw >= 70;
        if self.captured.borrow().contains_key(&order)
            || self.declined.borrow().contains_key(&order)
        {
            if timed_out {
                return Err(GatewayError::Unavailable("timed out".into()));
            }
            return self.first_outcome(order);
        }
        match draw {
            _ if timed_out && draw < 85 => {
                Err(GatewayError::Unavailable("connection refused".into()))
            }
            _ if timed_out => {
                self.captured.borrow_mut().insert(order, amount);
                Err(GatewayError::Unavailable("timed out after charging".into()))
            }
            60..=69 => {
                self.declined
                    .borrow_mut()
                    .insert(order, "card declined".into());
                self.first_outcome(order)
            }
            _ => {
                self.captured.borrow_mut().insert(order, amount);
                self.first_outcome(order)
            }
        }
    }

    fn first_outcome(&self, order: OrderId) -> Result<String, GatewayError> {
        if self.captured.borrow().contains_key(&order) {
            return Ok(format!("sim_ch_{:x}", order.0));
        }
        let reason = self.declined.borrow().get(&order).cloned();
        Err(GatewayError::Declined(reason.unwrap_or_default()))
    }

    pub fn set_mode(&self, mode: GatewayMode) {
        self.healed.set(false);
        self.forced.set(match mode {
            GatewayMode::Random => None,
            GatewayMode::Approve => Some(0),
            GatewayMode::Decline => Some(60),
            GatewayMode::TimeOutAfterCharging => Some(90),
        });
    }

    pub fn set_latency(&self, latency: std::time::Duration) {
        self.latency.set(Some(latency));
    }

    pub fn latency(&self) -> Option<std::time::Duration> {
        self.latency.get()
    }

    /// Whether the order's charge was given back.
    pub fn refunded(&self, order: OrderId) -> bool {
        self.refunds.borrow().contains(&order)
    }

    /// Gives an order's charge back (if it was charged); `draw` in 0..100,
    /// 20 % no answer, before or after refunding.
    pub fn refund(&self, order: OrderId, draw: u64) -> Result<(), GatewayError> {
        let timed_out = !self.healed.get() && draw >= 80;
        if timed_out && draw < 90 {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        if self.captured.borrow().contains_key(&order) {
            self.refunds.borrow_mut().insert(order);
        }
        if timed_out {
            return Err(GatewayError::Unavailable(
                "timed out after refunding".into(),
            ));
        }
        Ok(())
    }

    /// From now on every call is answered.
    pub fn heal(&self) {
        self.healed.set(true);
    }

    pub fn captured(&self, order: OrderId) -> Option<Money> {
        self.captured.borrow().get(&order).copied()
    }
}
