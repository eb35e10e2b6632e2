//! Example values for every message: round-trip tests, benchmarks and fuzz
//! seeds start from these, so each operation added to the schema gets one.

use crate::api::*;

fn sku(value: &str) -> Sku {
    Sku::new(value).expect("sample SKUs are valid")
}

fn product_id(value: &str) -> ProductId {
    ProductId::new(value).expect("sample product ids are valid")
}

fn category_id(value: &str) -> CategoryId {
    CategoryId::new(value).expect("sample category ids are valid")
}

fn device() -> Option<DeviceId> {
    Some(DeviceId::new("device-7f3a").expect("sample device ids are valid"))
}

fn usd(minor_units: i64) -> Money {
    Money::new(minor_units, Currency::USD)
}

/// A product with two variants, options, attributes and an image.
pub fn product() -> Product {
    let variant = |code: &str, size: &str, price| Variant {
        sku: sku(code),
        name: Some(format!("Trail Runner {size}")),
        options: vec![OptionValue {
            name: "Size".into(),
            value: size.into(),
        }],
        price: usd(price),
        compare_at_price: Some(usd(price + 1500)),
        stock_status: StockStatus::InStock,
        available: 42,
        attributes: vec![Attribute {
            name: "Weight".into(),
            value: "280 g".into(),
        }],
    };
    Product {
        id: product_id("P-1001"),
        name: "Trail Runner".into(),
        description: Some("A light shoe for rough paths.".into()),
        brand: Some("Northwind".into()),
        category_ids: vec![category_id("shoes"), category_id("outdoor")],
        options: vec![ProductOption {
            name: "Size".into(),
            values: vec!["42".into(), "43".into()],
        }],
        variants: vec![variant("TR-42", "42", 8999), variant("TR-43", "43", 9499)],
        attributes: vec![Attribute {
            name: "Material".into(),
            value: "Mesh".into(),
        }],
        images: vec![Image {
            url: "https://cdn.example.com/p/1001.jpg".into(),
            alt: Some("Trail Runner, side view".into()),
        }],
        created_at: UnixMillis(1_700_000_000_000),
        updated_at: UnixMillis(1_700_000_500_000),
    }
}

pub fn product_summary() -> ProductSummary {
    ProductSummary {
        id: product_id("P-1001"),
        name: "Trail Runner".into(),
        brand: Some("Northwind".into()),
        category_id: Some(category_id("shoes")),
        price_from: usd(8999),
        image: Some(Image {
            url: "https://cdn.example.com/p/1001.jpg".into(),
            alt: None,
        }),
        stock_status: StockStatus::LowStock,
        created_at: UnixMillis(1_700_000_000_000),
    }
}

pub fn address() -> Address {
    Address {
        id: AddressId(3),
        name: Some("Ada Lovelace".into()),
        line1: Some("12 St James's Square".into()),
        line2: None,
        city: Some("London".into()),
        region: None,
        postal_code: Some("SW1Y 4JH".into()),
        country: Some("GB".into()),
        phone: Some("+44 20 7946 0000".into()),
        is_default: true,
    }
}

pub fn order() -> Order {
    Order {
        id: OrderId(9_000_001),
        user_id: UserId(77),
        status: OrderStatus::PendingPayment,
        lines: vec![OrderLine {
            sku: sku("TR-42"),
            product_id: product_id("P-1001"),
            name: "Trail Runner 42".into(),
            quantity: 2,
            unit_price: usd(8999),
            line_total: usd(17998),
        }],
        total: usd(17998),
        created_at: UnixMillis(1_700_000_000_000),
        updated_at: UnixMillis(1_700_000_000_000),
        expires_at: UnixMillis(1_700_000_900_000),
        shipping_address: Some(address()),
        payment_status: PaymentStatus::Pending,
    }
}

/// One request of every operation, in `Operation::ALL` order.
pub fn requests() -> Vec<Request> {
    use RequestBody as R;
    let change = |quantity| CartLineChange {
        device_id: device(),
        sku: sku("TR-42"),
        quantity,
    };
    let bodies = vec![
        R::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: Some("souk-ios".into()),
            client_version: Some("1.4.0".into()),
        }),
        R::Authenticate {
            access_token: "eyJhbGciOiJFZERTQSJ9.e30.c2ln".into(),
        },
        R::Refresh {
            refresh_token: "rt_3q2+7w==".into(),
        },
        R::Logout { all_devices: true },
        R::Register(Register {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            name: Some("Ada".into()),
        }),
        R::Login(Login {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            device_id: device(),
        }),
        R::ListCategories,
        R::BrowseCategory(BrowseCategory {
            category_id: Some(category_id("shoes")),
            sort: BrowseSort::PriceDesc,
            price: PriceRange {
                min_minor_units: Some(1000),
                max_minor_units: Some(20000),
            },
            cursor: Some(Cursor("o:40".into())),
            limit: 40,
        }),
        R::GetProduct {
            product_id: product_id("P-1001"),
        },
        R::AdminUpsertProduct(Box::new(product())),
        R::AdminRestock(AdminRestock {
            sku: sku("TR-42"),
            quantity: 100,
            mode: RestockMode::Set,
        }),
        R::Search(SearchQuery {
            text: "trail shoe".into(),
            category_id: None,
            price: PriceRange::default(),
            cursor: None,
            limit: 20,
        }),
        R::Suggest(Suggest {
            prefix: "tra".into(),
            limit: 8,
        }),
        R::GetCart {
            device_id: device(),
        },
        R::AddToCart(change(2)),
        R::UpdateCartLine(change(0)),
        R::RemoveCartLine {
            device_id: device(),
            sku: sku("TR-42"),
        },
        R::MergeCart {
            guest_device_id: device().expect("sample device"),
        },
        R::Checkout(Checkout {
            device_id: None,
            payment_method_token: "pm_tok_visa_4242".into(),
            shipping_address_id: Some(AddressId(3)),
            expected_total: Some(usd(17998)),
            // Buy now: these lines instead of the cart's.
            lines: vec![
                CheckoutLine {
                    sku: sku("TR-42"),
                    quantity: 2,
                },
                CheckoutLine {
                    sku: sku("TR-43"),
                    quantity: 1,
                },
            ],
        }),
        R::GetOrder {
            order_id: OrderId(9_000_001),
        },
        R::ListOrders(ListOrders {
            cursor: None,
            limit: 20,
        }),
        R::CancelOrder {
            order_id: OrderId(9_000_001),
        },
        R::GetPaymentStatus {
            order_id: OrderId(9_000_001),
        },
        R::RefundPayment(RefundPayment {
            order_id: OrderId(9_000_001),
            amount: Some(usd(500)),
            reason: Some("damaged box".into()),
        }),
        R::GetProfile,
        R::UpdateProfile {
            name: Some("Ada L.".into()),
        },
        R::ListAddresses,
        R::UpsertAddress(address()),
        R::DeleteAddress {
            address_id: AddressId(3),
        },
        R::WatchProduct {
            product_id: product_id("P-1001"),
        },
        R::UnwatchProduct {
            product_id: product_id("P-1001"),
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Request {
            idempotency_key: body.operation().is_mutating().then_some(IdempotencyKey(
                0x0123_4567_89ab_cdef_0000_0000_0000_0000 + i as u128,
            )),
            body,
        })
        .collect()
}

/// One response of every body type, and one error.
pub fn responses() -> Vec<Response> {
    use ResponseBody as B;
    vec![
        Ok(B::Empty),
        Ok(B::HelloReply(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            server_version: "0.1.0".into(),
            shard: 1,
            shard_count: 2,
            server_time: UnixMillis(1_700_000_000_123),
        })),
        Ok(B::Identity(Identity {
            user_id: UserId(77),
            role: Role::Admin,
            access_expires_at: UnixMillis(1_700_000_900_000),
        })),
        Ok(B::SessionGrant(SessionGrant {
            user_id: UserId(77),
            role: Role::Customer,
            access_token: "eyJ.e30.sig".into(),
            access_expires_at: UnixMillis(1_700_000_900_000),
            refresh_token: "rt_abc".into(),
        })),
        Ok(B::CategoryList(vec![Category {
            id: category_id("shoes"),
            name: "Shoes".into(),
            parent_id: Some(category_id("apparel")),
            product_count: 120,
        }])),
        Ok(B::ProductPage(ProductPage {
            products: vec![product_summary(), product_summary()],
            next_cursor: Some(Cursor("o:20".into())),
            total: 120,
        })),
        Ok(B::ProductDetail(Box::new(product()))),
        Ok(B::StockLevel(StockLevel {
            sku: sku("TR-42"),
            on_hand: 100,
            reserved: 3,
            available: 97,
        })),
        Ok(B::SearchResults(SearchResults {
            hits: vec![product_summary()],
            total: 1,
            next_cursor: None,
        })),
        Ok(B::Suggestions(vec![
            "trail runner".into(),
            "travel bag".into(),
        ])),
        Ok(B::CartView(CartView {
            lines: vec![CartLine {
                sku: sku("TR-42"),
                product_id: product_id("P-1001"),
                name: "Trail Runner 42".into(),
                quantity: 2,
                unit_price: usd(8999),
                line_total: usd(17998),
                stock_status: StockStatus::InStock,
                available: 40,
            }],
            subtotal: Some(usd(17998)),
            item_count: 2,
        })),
        Ok(B::OrderView(Box::new(order()))),
        Ok(B::OrderPage(OrderPage {
            orders: vec![order()],
            next_cursor: Some(Cursor("9000000".into())),
        })),
        Ok(B::PaymentView(PaymentView {
            order_id: OrderId(9_000_001),
            status: PaymentStatus::PartiallyRefunded,
            amount: usd(17998),
            refunded: Some(usd(500)),
            attempts: 2,
            last_error: Some("gateway timeout".into()),
            updated_at: UnixMillis(1_700_000_100_000),
        })),
        Ok(B::Profile(Profile {
            user_id: UserId(77),
            email: "ada@example.com".into(),
            name: Some("Ada".into()),
            role: Role::Customer,
            created_at: UnixMillis(1_600_000_000_000),
        })),
        Ok(B::AddressList(vec![address()])),
        Ok(B::Address(address())),
        Err(ApiError::busy(250, "shard inbox full")),
        Err(ApiError::new(
            ErrorStatus::InsufficientStock,
            "TR-42: 0 left",
        )),
    ]
}

/// One event of every body type.
pub fn events() -> Vec<Event> {
    use EventBody as E;
    let bodies = vec![
        E::OrderStatusChanged {
            order_id: OrderId(9_000_001),
            status: OrderStatus::Paid,
            previous: OrderStatus::PendingPayment,
        },
        E::PaymentResult {
            order_id: OrderId(9_000_001),
            status: PaymentStatus::Captured,
            message: None,
        },
        E::StockLeft {
            product_id: product_id("P-1001"),
            sku: sku("TR-42"),
            available: 3,
        },
        E::WaitingRoomPosition {
            room: "black-friday".into(),
            position: 1204,
            estimated_wait_ms: 95_000,
            admitted: false,
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            seq: i as u64 + 1,
            at: UnixMillis(1_700_000_000_000 + i as u64),
            body,
        })
        .collect()
}
