//! Handlers driven without sockets: a request in, a step out.

use souk_storage::demo;
use souk_wire::api::{BrowseCategory, CategoryId, IdempotencyKey, RestockMode};

use super::stock_board::StockBoard;
use super::*;

const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

/// Every shard of a `shard_count` server over the same demo catalog, each
/// holding only the counters it owns.
fn shards(shard_count: usize) -> Vec<ShardState> {
    let data = demo::generate(5, 60);
    let catalog = Arc::new(Catalog::build(&data));
    let placement = Placement::new(shard_count);
    let inventories: Vec<Inventory> = placement
        .shards()
        .map(|shard| {
            Inventory::load(
                data.stock
                    .iter()
                    .filter(|(sku, _)| placement.sku_owner(sku) == shard)
                    .cloned(),
                0,
            )
        })
        .collect();
    let board = Arc::new(StockBoard::new(
        placement,
        inventories.iter().map(Inventory::statuses).collect(),
    ));
    placement
        .shards()
        .zip(inventories)
        .map(|(shard, inventory)| ShardState {
            shard,
            placement,
            catalog: catalog.clone(),
            inventory,
            server_version: "test",
            carts: Carts::default(),
            pending: Pending::default(),
            ids: IdGenerator::new(shard),
            tokens: Arc::new(TokenKeys::new(&[1; 32])),
            commerce: CommerceConfig {
                reservation_ttl: std::time::Duration::from_secs(60),
                gateway: SimulatedGateway {
                    latency: std::time::Duration::ZERO,
                    declines_per_10k: 0,
                },
                purchase_limit: 0,
            },
            checkouts: Default::default(),
            placed: Default::default(),
            login_failures: Default::default(),
            rate_limits: throttle::RateLimits::new([], 10),
            stock_board: board.clone(),
            sign_outs: Default::default(),
        })
        .collect()
}

fn request(body: RequestBody) -> Request {
    let idempotency_key = body.operation().is_mutating().then_some(IdempotencyKey(1));
    Request {
        idempotency_key,
        body,
    }
}

fn run(state: &ShardState, session: &mut Session, body: RequestBody) -> Step {
    handle(state, session, &request(body), NOW)
}

fn expect_reply(step: Step) -> Response {
    match step {
        Step::Reply(response) => response,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Carries out a step the way the I/O layer does, with direct calls in
/// place of the mesh.
fn complete(shards: &mut [ShardState], on: usize, step: Step) -> Response {
    match step {
        Step::Reply(response) => response,
        Step::Owner { owner, call } => owner_reply(answer(&mut shards[owner.index()], call, NOW).0),
        Step::ProductStock { product_id, asks } => {
            let mut levels = Vec::new();
            for (owner, skus) in asks {
                match answer(
                    &mut shards[owner.index()],
                    ShardCall::StockLevels(skus),
                    NOW,
                )
                .0
                {
                    ShardAnswer::StockLevels(l) => levels.extend(l),
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            product_detail(&shards[on], &product_id, &levels)
        }
        Step::Authenticate(_) => panic!("authenticate with `sign_in`"),
    }
}

/// Authenticates with `token` as the I/O layer does, with `stored` as the
/// user's durable sign-out cutoff.
fn sign_in(
    state: &ShardState,
    session: &mut Session,
    token: &str,
    stored: Option<UnixMillis>,
) -> Response {
    let body = RequestBody::Authenticate {
        access_token: token.to_owned(),
    };
    match run(state, session, body) {
        Step::Authenticate(verified) => bind(state, session, verified, stored),
        Step::Reply(response) => response,
        other => panic!("authenticate stepped to {other:?}"),
    }
}

#[test]
fn hello_reports_the_shard_and_refuses_unknown_versions() {
    let shards = shards(2);
    let mut session = Session::default();
    let hello = |version| {
        RequestBody::Hello(Hello {
            protocol_version: version,
            client_name: None,
            client_version: None,
        })
    };
    let response = expect_reply(run(&shards[1], &mut session, hello(PROTOCOL_VERSION)));
    let Ok(ResponseBody::HelloReply(reply)) = response else {
        panic!("hello replies: {response:?}");
    };
    assert_eq!(
        (reply.shard, reply.shard_count, reply.server_time),
        (1, 2, NOW)
    );
    let response = expect_reply(run(&shards[0], &mut session, hello(PROTOCOL_VERSION + 1)));
    assert_eq!(response.unwrap_err().status, ErrorStatus::BadRequest);
}

#[test]
fn product_detail_gathers_stock_from_each_owner_once() {
    let mut shards = shards(3);
    let mut session = Session::default();
    let product_id = demo::product_id(1);
    let step = run(
        &shards[0],
        &mut session,
        RequestBody::GetProduct {
            product_id: product_id.clone(),
        },
    );
    let Step::ProductStock { asks, .. } = &step else {
        panic!("product detail needs the owners: {step:?}");
    };
    let owners: Vec<_> = asks.iter().map(|(shard, _)| *shard).collect();
    let mut unique = owners.clone();
    unique.dedup();
    assert_eq!(owners.len(), unique.len(), "one call per owner shard");
    let placement = shards[0].placement;
    for (owner, skus) in asks {
        assert!(skus.iter().all(|sku| placement.sku_owner(sku) == *owner));
    }
    let response = complete(&mut shards, 0, step);
    let Ok(ResponseBody::ProductDetail(product)) = response else {
        panic!("product detail replies: {response:?}");
    };
    for variant in &product.variants {
        let owner = placement.sku_owner(&variant.sku);
        let level = shards[owner.index()].inventory.level(&variant.sku);
        assert_eq!(variant.available, level.available);
        assert_eq!(variant.stock_status, stock_status(level.available));
    }
}

#[test]
fn unknown_product_and_category_are_not_found() {
    let shards = shards(2);
    let mut session = Session::default();
    let response = expect_reply(run(
        &shards[0],
        &mut session,
        RequestBody::GetProduct {
            product_id: ProductId::new("NOPE").unwrap(),
        },
    ));
    assert_eq!(response.unwrap_err().status, ErrorStatus::NotFound);
    let response = expect_reply(run(
        &shards[0],
        &mut session,
        RequestBody::BrowseCategory(BrowseCategory {
            category_id: Some(CategoryId::new("nope").unwrap()),
            limit: 10,
            ..BrowseCategory::default()
        }),
    ));
    assert_eq!(response.unwrap_err().status, ErrorStatus::NotFound);
}

#[test]
fn restock_needs_an_admin_and_runs_on_the_owner() {
    let mut shards = shards(2);
    let sku = shards[0]
        .catalog
        .product(&demo::product_id(3))
        .unwrap()
        .variants[0]
        .sku
        .clone();
    let restock = RequestBody::AdminRestock(AdminRestock {
        sku: sku.clone(),
        quantity: 500,
        mode: RestockMode::Set,
    });
    let mut anonymous = Session::default();
    let response = expect_reply(run(&shards[0], &mut anonymous, restock.clone()));
    assert_eq!(response.unwrap_err().status, ErrorStatus::Unauthenticated);

    let mut admin = Session::default();
    let response = sign_in(&shards[0], &mut admin, "not-the-key-at-all", None);
    assert_eq!(response.unwrap_err().status, ErrorStatus::Unauthenticated);
    let mut customer = Session::default();
    let (customer_token, _) = shards[0].tokens.issue(UserId(2), Role::Customer, NOW);
    assert!(sign_in(&shards[0], &mut customer, &customer_token, None).is_ok());
    let response = expect_reply(run(&shards[0], &mut customer, restock.clone()));
    assert_eq!(response.unwrap_err().status, ErrorStatus::Forbidden);

    let (admin_token, _) = shards[0].tokens.issue(UserId(1), Role::Admin, NOW);
    assert!(sign_in(&shards[0], &mut admin, &admin_token, None).is_ok());

    let step = run(&shards[0], &mut admin, restock);
    let owner = shards[0].placement.sku_owner(&sku);
    assert!(matches!(&step, Step::Owner { owner: o, .. } if *o == owner));
    let response = complete(&mut shards, 0, step);
    let Ok(ResponseBody::StockLevel(level)) = response else {
        panic!("restock replies with the level: {response:?}");
    };
    assert_eq!(level.on_hand, 500);
    assert_eq!(shards[owner.index()].inventory.level(&sku).on_hand, 500);
}

#[test]
fn a_restock_asks_to_be_persisted_and_is_undone_if_that_fails() {
    let mut shards = shards(1);
    let sku = shards[0]
        .catalog
        .product(&demo::product_id(2))
        .unwrap()
        .variants[0]
        .sku
        .clone();
    let before = shards[0].inventory.level(&sku).on_hand;
    let call = ShardCall::Restock(AdminRestock {
        sku: sku.clone(),
        quantity: 7,
        mode: RestockMode::Add,
    });
    let (answer_sent, effect) = answer(&mut shards[0], call, NOW);
    let Some(Effect::PersistStock {
        level,
        delta,
        received,
    }) = effect.clone()
    else {
        panic!("a restock must be persisted before it is acknowledged: {effect:?}");
    };
    assert_eq!(
        (level.on_hand, delta, received),
        (before + 7, 7, before + 7)
    );
    assert!(matches!(answer_sent, ShardAnswer::Restocked(Ok(_))));
    let failure = ApiError::new(ErrorStatus::Unavailable, "disk full");
    let answer_sent = undo(&mut shards[0], effect.unwrap(), failure.clone());
    assert_eq!(answer_sent, ShardAnswer::Restocked(Err(failure)));
    assert_eq!(shards[0].inventory.level(&sku).on_hand, before);
}

#[test]
#[should_panic(expected = "does not own it")]
fn a_call_for_state_a_shard_does_not_own_is_a_bug() {
    let mut shards = shards(2);
    let sku = (0..60)
        .flat_map(|n| {
            shards[0]
                .catalog
                .product(&demo::product_id(n))
                .unwrap()
                .variants
                .clone()
        })
        .map(|v| v.sku)
        .find(|sku| shards[0].placement.sku_owner(sku) == ShardId(1))
        .expect("some SKU is owned by shard 1");
    let _ = answer(&mut shards[0], ShardCall::StockLevels(vec![sku]), NOW);
}

#[test]
fn operations_of_later_versions_are_unavailable_not_dropped() {
    let shards = shards(1);
    let mut session = Session::default();
    let watch = RequestBody::WatchProduct {
        product_id: demo::product_id(1),
    };
    let response = expect_reply(run(&shards[0], &mut session, watch));
    let error = response.unwrap_err();
    assert_eq!(error.status, ErrorStatus::Unavailable);
    assert!(error.message.contains("watch_product"), "{error}");
}

/// Every owner publishes its changed stock statuses, as its shard does on
/// each `STOCK_BOARD_INTERVAL` tick.
fn publish_all(shards: &mut [ShardState]) {
    for state in shards.iter_mut() {
        let changes = state.inventory.take_status_changes();
        state.stock_board.publish(state.shard, &changes);
    }
}

/// The status a listing should show: the best of the owners' counters.
fn listed_status(shards: &[ShardState], product: &Product) -> StockStatus {
    let rank = |s: StockStatus| match s {
        StockStatus::InStock => 3,
        StockStatus::LowStock => 2,
        _ => 1,
    };
    product
        .variants
        .iter()
        .map(|v| {
            let owner = &shards[shards[0].placement.sku_owner(&v.sku).index()];
            stock_status(owner.inventory.level(&v.sku).available)
        })
        .max_by_key(|s| rank(*s))
        .unwrap()
}

#[test]
fn browse_pages_show_each_product_with_its_best_variants_stock() {
    let mut shards = shards(2);
    let product = shards[0]
        .catalog
        .product(&demo::product_id(4))
        .unwrap()
        .clone();
    let set = |shards: &mut [ShardState], sku: &Sku, quantity: i64| {
        let owner = shards[0].placement.sku_owner(sku).index();
        let call = ShardCall::Restock(AdminRestock {
            sku: sku.clone(),
            quantity,
            mode: RestockMode::Set,
        });
        let (answer_sent, _) = answer(&mut shards[owner], call, NOW);
        assert!(matches!(answer_sent, ShardAnswer::Restocked(Ok(_))));
    };
    let page = |shards: &[ShardState]| {
        let query = RequestBody::BrowseCategory(BrowseCategory {
            limit: 100,
            ..BrowseCategory::default()
        });
        let Ok(ResponseBody::ProductPage(page)) =
            expect_reply(run(&shards[1], &mut Session::default(), query))
        else {
            panic!("browse answers a page");
        };
        page
    };
    let shown = |shards: &[ShardState]| {
        page(shards)
            .products
            .iter()
            .find(|p| p.id == product.id)
            .unwrap()
            .stock_status
    };
    let assert_every_product_listed_right = |shards: &[ShardState]| {
        for summary in page(shards).products {
            let product = shards[0].catalog.product(&summary.id).unwrap();
            assert_eq!(
                summary.stock_status,
                listed_status(shards, product),
                "{}",
                summary.id
            );
        }
    };
    assert_every_product_listed_right(&shards);

    for variant in &product.variants {
        set(&mut shards, &variant.sku, 0);
    }
    assert_ne!(shown(&shards), StockStatus::OutOfStock, "not published yet");
    publish_all(&mut shards);
    assert_eq!(shown(&shards), StockStatus::OutOfStock);
    set(&mut shards, &product.variants[0].sku, 3);
    publish_all(&mut shards);
    assert_eq!(shown(&shards), StockStatus::LowStock);
    assert_every_product_listed_right(&shards);
}

#[test]
fn signing_out_everywhere_ends_earlier_sessions_and_refuses_earlier_tokens() {
    let fresh = shards(1).remove(0);
    let mut shards = shards(2);
    let user = UserId(7);
    let (before, _) = shards[1].tokens.issue(user, Role::Customer, NOW);
    let mut open = Session::default();
    assert!(sign_in(&shards[1], &mut open, &before, None).is_ok());
    let later = UnixMillis(NOW.0 + 1);
    let (after, _) = shards[1].tokens.issue(user, Role::Customer, later);

    // Another shard ran the sign-out; every shard is told.
    for shard in shards.iter_mut() {
        let call = ShardCall::SignOut { user, at: NOW };
        assert_eq!(answer(shard, call, NOW).0, ShardAnswer::SignedOut);
    }
    end_signed_out(&shards[1], &mut open);
    assert!(
        open.identity.is_none(),
        "the open session lost its identity"
    );
    let refused = require_customer(&open, NOW).unwrap_err();
    assert!(refused.message.contains("signed out"), "{refused:?}");

    // A token from before the cutoff is refused, by this shard's memory
    // or by the durable cutoff alone (a restart, another node's sign-out).
    let mut again = Session::default();
    let refused = sign_in(&shards[1], &mut again, &before, None).unwrap_err();
    assert_eq!(refused.status, ErrorStatus::Unauthenticated);
    assert!(refused.message.contains("signed out"), "{refused:?}");
    let refused = sign_in(&fresh, &mut again, &before, Some(NOW)).unwrap_err();
    assert_eq!(refused.status, ErrorStatus::Unauthenticated);
    assert!(again.identity.is_none());

    // One issued after it binds, and survives the check before requests.
    assert!(sign_in(&shards[1], &mut again, &after, Some(NOW)).is_ok());
    end_signed_out(&shards[1], &mut again);
    assert_eq!(again.identity.map(|i| i.user_id), Some(user));
    // Other users are untouched.
    let (other, _) = shards[1].tokens.issue(UserId(8), Role::Customer, NOW);
    assert!(sign_in(&shards[1], &mut Session::default(), &other, None).is_ok());
}
