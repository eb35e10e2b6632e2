//! Seeded shoppers: each one a client with a connection to a random shard,
//! choosing its next action at random, as people do.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use souk_wire::api::{
    AdminRestock, ApiError, CartLineChange, Checkout, CheckoutLine, DeviceId, IdempotencyKey,
    Login, OrderId, Register, Request, RequestBody, ResponseBody, RestockMode, Role, SessionGrant,
    UnixMillis, UserId,
};

use super::World;
use crate::domain::{Session, flow};

/// What a shopper remembers across the server's crashes.
#[derive(Debug, Clone)]
pub(super) struct Shopper {
    device: DeviceId,
    email: String,
    grant: Option<SessionGrant>,
    /// A checkout sent without a final answer: retried under its key.
    unanswered: Option<(IdempotencyKey, Checkout)>,
    orders: Vec<OrderId>,
    admin: bool,
}

const PASSWORD: &str = "simulated shopper";

/// Starts (or, after a crash, restarts) every shopper's task.
pub(super) fn start(world: &Rc<World>) {
    let count = world.settings.shoppers;
    {
        let mut ledger = world.ledger.borrow_mut();
        while ledger.shoppers.len() < count {
            let n = ledger.shoppers.len();
            ledger.shoppers.push(Shopper {
                device: DeviceId::new(format!("sim-device-{n}")).expect("a valid device id"),
                email: format!("shopper{n}@sim.example"),
                grant: None,
                unanswered: None,
                orders: Vec::new(),
                admin: n == 0,
            });
        }
    }
    for index in 0..count {
        let world = world.clone();
        let executor = &world.clone().executor;
        executor.spawn(Box::pin(async move { shop(world, index).await }));
    }
}

/// One shopper's life: a connection, then one action after another.
async fn shop(world: Rc<World>, index: usize) {
    let node = world.node();
    let shard = node.shards[world.random(0..node.shards.len() as u64) as usize].clone();
    drop(node);
    let session = RefCell::new(Session::default());
    let mut client = Client {
        world: world.clone(),
        shard,
        session,
        index,
    };
    client.reconnect().await;
    while !world.closing.get() {
        let think = world.random(10..3_000);
        world.clock.sleep(Duration::from_millis(think)).await;
        if world.closing.get() {
            return;
        }
        client.act().await;
    }
}

struct Client {
    world: Rc<World>,
    shard: Rc<super::SimShard>,
    session: RefCell<Session>,
    index: usize,
}

impl Client {
    fn me(&self) -> Shopper {
        self.world.ledger.borrow().shoppers[self.index].clone()
    }

    fn update(&self, change: impl FnOnce(&mut Shopper)) {
        change(&mut self.world.ledger.borrow_mut().shoppers[self.index]);
    }

    fn now(&self) -> UnixMillis {
        UnixMillis(self.world.clock.now_ms())
    }

    async fn send(
        &self,
        body: RequestBody,
        key: Option<IdempotencyKey>,
    ) -> Result<ResponseBody, ApiError> {
        self.world.report.borrow_mut().requests += 1;
        let request = Request {
            idempotency_key: key,
            body,
        };
        flow::dispatch(&self.shard, &self.session, request).await
    }

    fn new_key(&self) -> IdempotencyKey {
        IdempotencyKey(u128::from(self.world.random(1..u64::MAX)) << 64 | self.index as u128)
    }

    /// A new connection binds the identity the shopper holds, if any.
    async fn reconnect(&mut self) {
        let me = self.me();
        if me.admin {
            let admin = self.admin_user();
            let (token, _) = self
                .world
                .tokens
                .issue(admin, Role::Admin, self.now(), [0; 16]);
            let _ = self
                .send(
                    RequestBody::Authenticate {
                        access_token: token,
                    },
                    None,
                )
                .await;
            return;
        }
        if let Some(grant) = me.grant {
            let bound = self
                .send(
                    RequestBody::Authenticate {
                        access_token: grant.access_token,
                    },
                    None,
                )
                .await;
            if bound.is_err() {
                self.refresh().await;
            }
        }
    }

    fn admin_user(&self) -> UserId {
        if let Some(admin) = self.world.ledger.borrow().admin {
            return admin;
        }
        let admin = UserId(1);
        self.world.ledger.borrow_mut().admin = Some(admin);
        admin
    }

    async fn act(&mut self) {
        let me = self.me();
        if me.admin {
            return self.administer().await;
        }
        if me.unanswered.is_some() {
            return self.checkout().await;
        }
        match self.world.random(0..100) {
            0..=24 => self.browse().await,
            25..=54 => self.add_to_cart().await,
            55..=69 => self.checkout().await,
            70..=76 => self.cancel().await,
            77..=86 if me.grant.is_none() => self.sign_up().await,
            77..=86 => self.sign_in().await,
            87..=93 => self.refresh().await,
            _ => {} // walks away for a while: reservations lapse
        }
    }

    fn random_sku(&self) -> souk_wire::api::Sku {
        let catalog = self.shard.state.borrow().catalog.clone();
        let skus: Vec<_> = catalog.skus().cloned().collect();
        skus[self.world.random(0..skus.len() as u64) as usize].clone()
    }

    async fn browse(&self) {
        let catalog = self.shard.state.borrow().catalog.clone();
        let products: Vec<_> = catalog.products().map(|p| p.id.clone()).collect();
        let product_id = products[self.world.random(0..products.len() as u64) as usize].clone();
        let _ = self
            .send(RequestBody::GetProduct { product_id }, None)
            .await;
    }

    async fn add_to_cart(&self) {
        let change = CartLineChange {
            device_id: Some(self.me().device),
            sku: self.random_sku(),
            quantity: self.world.random(1..3) as u32,
        };
        let key = self.new_key();
        let _ = self.send(RequestBody::AddToCart(change), Some(key)).await;
    }

    async fn checkout(&self) {
        let me = self.me();
        let (key, checkout) = match me.unanswered {
            Some(unanswered) => unanswered,
            None => {
                let lines = if self.world.random(0..3) == 0 {
                    vec![CheckoutLine {
                        sku: self.random_sku(),
                        quantity: self.world.random(1..3) as u32,
                    }]
                } else {
                    Vec::new()
                };
                let checkout = Checkout {
                    device_id: None,
                    payment_method_token: "pm_sim_card".into(),
                    shipping_address_id: None,
                    expected_total: None,
                    lines,
                };
                (self.new_key(), checkout)
            }
        };
        self.update(|me| me.unanswered = Some((key, checkout.clone())));
        let answer = self.send(RequestBody::Checkout(checkout), Some(key)).await;
        match answer {
            Ok(ResponseBody::OrderView(order)) => {
                let user = order.user_id;
                let mut ledger = self.world.ledger.borrow_mut();
                let first = ledger
                    .acknowledged
                    .iter()
                    .find(|(_, placed)| **placed == (user, key));
                if let Some((first, _)) = first
                    && *first != order.id
                {
                    let violation = format!(
                        "key {:x} of user {} answered order {} and then order {}",
                        key.0, user.0, first.0, order.id.0
                    );
                    ledger.violations.push(violation);
                }
                ledger.acknowledged.insert(order.id, (user, key));
                drop(ledger);
                // Now and then the reply is lost on the way, and the app
                // asks again under the same key.
                let lost = self.world.random(0..10) == 0;
                self.update(|me| {
                    if !lost {
                        me.unanswered = None;
                    }
                    if !me.orders.contains(&order.id) {
                        me.orders.push(order.id);
                    }
                });
            }
            Err(error) if error.status.is_retryable() => {}
            _ => self.update(|me| me.unanswered = None),
        }
    }

    async fn cancel(&self) {
        let orders = self.me().orders;
        if orders.is_empty() {
            return;
        }
        let order_id = orders[self.world.random(0..orders.len() as u64) as usize];
        let key = self.new_key();
        let _ = self
            .send(RequestBody::CancelOrder { order_id }, Some(key))
            .await;
    }

    async fn sign_up(&self) {
        let register = Register {
            email: self.me().email,
            password: PASSWORD.into(),
            name: None,
        };
        let key = self.new_key();
        match self.send(RequestBody::Register(register), Some(key)).await {
            Ok(ResponseBody::SessionGrant(grant)) => self.update(|me| me.grant = Some(grant)),
            // Registered before, and the reply was lost: sign in instead.
            Err(error) if error.status == souk_wire::api::ErrorStatus::Conflict => {
                self.update(|me| {
                    me.grant = Some(SessionGrant {
                        user_id: UserId(0),
                        role: Role::Customer,
                        access_token: String::new(),
                        access_expires_at: UnixMillis(0),
                        refresh_token: String::new(),
                    })
                });
                self.sign_in().await;
            }
            _ => {}
        }
    }

    /// Signs in with the device's guest cart, which is merged.
    async fn sign_in(&self) {
        let login = Login {
            email: self.me().email,
            password: PASSWORD.into(),
            device_id: Some(self.me().device),
        };
        let key = self.new_key();
        if let Ok(ResponseBody::SessionGrant(grant)) =
            self.send(RequestBody::Login(login), Some(key)).await
        {
            self.update(|me| me.grant = Some(grant));
        }
    }

    async fn refresh(&self) {
        let Some(grant) = self.me().grant else {
            return;
        };
        let key = self.new_key();
        let body = RequestBody::Refresh {
            refresh_token: grant.refresh_token,
        };
        match self.send(body, Some(key)).await {
            Ok(ResponseBody::SessionGrant(grant)) => self.update(|me| me.grant = Some(grant)),
            Err(error) if error.status == souk_wire::api::ErrorStatus::Unauthenticated => {
                self.sign_in().await;
            }
            _ => {}
        }
    }

    /// Restocks a SKU, or changes a product's price.
    async fn administer(&self) {
        let key = self.new_key();
        if self.world.random(0..2) == 0 {
            let restock = AdminRestock {
                sku: self.random_sku(),
                quantity: self.world.random(1..4) as i64,
                mode: RestockMode::Add,
            };
            let _ = self
                .send(RequestBody::AdminRestock(restock), Some(key))
                .await;
            return;
        }
        let catalog = self.shard.state.borrow().catalog.clone();
        let products: Vec<_> = catalog.products().cloned().collect();
        let mut product = products[self.world.random(0..products.len() as u64) as usize].clone();
        for variant in &mut product.variants {
            let cents = variant.price.minor_units + self.world.random(0..200) as i64 - 100;
            variant.price.minor_units = cents.max(100);
        }
        let _ = self
            .send(
                RequestBody::AdminUpsertProduct(Box::new(product)),
                Some(key),
            )
            .await;
    }
}
