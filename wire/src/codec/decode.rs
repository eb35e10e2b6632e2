//! Verified FlatBuffers bytes → `api` values.
//!
//! Every function here takes a buffer that the verifier has accepted, checks
//! each field against `limits` before copying it, and returns a typed error
//! for anything out of bounds. Nothing here may panic on any input: the
//! property tests and the fuzz target feed it arbitrary bytes.

use flatbuffers::{
    ErrorTraceDetail, Follow, ForwardsUOffset, InvalidFlatbuffer, Vector, VerifierOptions,
};

use super::DecodeError;
use super::enums::from_fb::{
    browse_sort, order_status, payment_status, restock_mode, role, status, stock_status,
};
use crate::api::{self, Violation};
use crate::generated::souk::wire as fb;
use crate::{frame, limits};

type Decoded<T> = Result<T, DecodeError>;

fn verifier_options(bytes_max: usize, tables_max: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: limits::VERIFIER_DEPTH_MAX,
        max_tables: tables_max,
        // A hostile buffer can point many offsets at one large string; the
        // apparent size counts every reference, so conversion stays bounded.
        max_apparent_size: bytes_max,
        ignore_missing_null_terminator: false,
    }
}

fn verified<'a, T>(frame: &'a [u8], bytes_max: usize, tables_max: usize) -> Decoded<T::Inner>
where
    T: Follow<'a> + flatbuffers::Verifiable + 'a,
{
    frame::payload(frame, bytes_max).map_err(DecodeError::Frame)?;
    // Verification runs over the whole frame, size prefix included: the
    // verifier checks alignment relative to the slice, and the builder
    // aligned the buffer with its prefix.
    let options = verifier_options(bytes_max + limits::FRAME_HEADER_BYTES, tables_max);
    flatbuffers::size_prefixed_root_with_opts::<T>(&options, frame).map_err(|e| malformed(&e))
}

/// The verifier's refusal as a decode error. A misaligned field almost
/// always means a client in another language built a plain buffer and put
/// its length in front (see `frame`), so that error names the rule rather
/// than only the position.
fn malformed(error: &InvalidFlatbuffer) -> DecodeError {
    let InvalidFlatbuffer::Unaligned {
        position,
        unaligned_type,
        error_trace,
    } = error
    else {
        return DecodeError::Malformed(error.to_string());
    };
    // The trace runs from the innermost field outwards.
    let field = error_trace.as_ref().iter().find_map(|detail| match detail {
        ErrorTraceDetail::TableField { field_name, .. } => Some(field_name),
        _ => None,
    });
    let field = field
        .map(|name| format!(", in field `{name}`"))
        .unwrap_or_default();
    DecodeError::Malformed(format!(
        "the frame is not a size-prefixed FlatBuffers buffer: build it with \
         finish_size_prefixed (FinishSizePrefixed), whose alignment counts the \
         {header}-byte length prefix; a plain buffer with a length put in front \
         misaligns 8-byte fields (Type `{unaligned_type}` at position {position} \
         is unaligned{field})",
        header = limits::FRAME_HEADER_BYTES,
    ))
}

/// Decodes a framed request: the length header and the payload.
pub fn decode_request(frame: &[u8]) -> Decoded<api::Request> {
    let request =
        verified::<fb::Request>(frame, limits::REQUEST_BYTES_MAX, limits::REQUEST_TABLES_MAX)?;
    let idempotency_key = request
        .idempotency_key()
        .map(|k| api::IdempotencyKey((u128::from(k.hi()) << 64) | u128::from(k.lo())));
    let body = request_body(&request)?;
    if body.operation().is_mutating() && idempotency_key.is_none() {
        return Err(violation("idempotency_key", Violation::Missing));
    }
    Ok(api::Request {
        idempotency_key,
        body,
    })
}

/// Decodes a framed response.
pub fn decode_response(frame: &[u8]) -> Decoded<api::Response> {
    let response = verified::<fb::Response>(
        frame,
        limits::RESPONSE_BYTES_MAX,
        limits::RESPONSE_TABLES_MAX,
    )?;
    if response.status() == fb::Status::Ok {
        return response_body(&response).map(Ok);
    }
    let status = status(response.status())?;
    let message = text(response.message(), "message", limits::MESSAGE_BYTES_MAX)?;
    Ok(Err(api::ApiError {
        status,
        message: message.unwrap_or_default(),
        retry_after_ms: response.retry_after_ms(),
    }))
}

/// Decodes a framed event.
pub fn decode_event(frame: &[u8]) -> Decoded<api::Event> {
    let event = verified::<fb::Event>(frame, limits::EVENT_BYTES_MAX, limits::REQUEST_TABLES_MAX)?;
    Ok(api::Event {
        seq: event.seq(),
        at: api::UnixMillis(event.at_ms()),
        body: event_body(&event)?,
    })
}

// ---------------------------------------------------------------------------
// Field rules

fn violation(field: &'static str, violation: Violation) -> DecodeError {
    DecodeError::Field { field, violation }
}

/// An optional text field of at most `max` bytes.
fn text(value: Option<&str>, field: &'static str, max: usize) -> Decoded<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if v.len() > max => Err(violation(field, Violation::TooLong { max })),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// A text field that must be present and not empty.
fn required(value: &str, field: &'static str, max: usize) -> Decoded<String> {
    if value.is_empty() {
        return Err(violation(field, Violation::Empty));
    }
    text(Some(value), field, max).map(|v| v.unwrap_or_default())
}

/// An identifier, checked by its type's constructor after a length check
/// that keeps the copy bounded.
fn ident<T>(
    value: &str,
    field: &'static str,
    make: fn(String) -> Result<T, Violation>,
) -> Decoded<T> {
    if value.len() > limits::IDENTIFIER_BYTES_MAX {
        let max = limits::IDENTIFIER_BYTES_MAX;
        return Err(violation(field, Violation::TooLong { max }));
    }
    make(value.to_owned()).map_err(|v| violation(field, v))
}

fn opt_ident<T>(
    value: Option<&str>,
    field: &'static str,
    make: fn(String) -> Result<T, Violation>,
) -> Decoded<Option<T>> {
    value.map(|v| ident(v, field, make)).transpose()
}

fn sku(value: String) -> Result<api::Sku, Violation> {
    api::Sku::new(value)
}
fn product_id(value: String) -> Result<api::ProductId, Violation> {
    api::ProductId::new(value)
}
fn category_id(value: String) -> Result<api::CategoryId, Violation> {
    api::CategoryId::new(value)
}
fn device_id(value: String) -> Result<api::DeviceId, Violation> {
    api::DeviceId::new(value)
}

/// A vector of tables or strings, refused before any allocation when it has
/// more than `max` items.
fn list<'a, T, U>(
    vector: Option<Vector<'a, ForwardsUOffset<T>>>,
    field: &'static str,
    max: usize,
    mut each: impl FnMut(<ForwardsUOffset<T> as Follow<'a>>::Inner) -> Decoded<U>,
) -> Decoded<Vec<U>>
where
    ForwardsUOffset<T>: Follow<'a>,
{
    let Some(vector) = vector else {
        return Ok(Vec::new());
    };
    if vector.len() > max {
        return Err(violation(field, Violation::TooMany { max }));
    }
    let mut out = Vec::with_capacity(vector.len());
    for item in vector.iter() {
        out.push(each(item)?);
    }
    Ok(out)
}

fn cursor(value: Option<&str>) -> Decoded<Option<api::Cursor>> {
    Ok(text(value, "cursor", limits::CURSOR_BYTES_MAX)?.map(api::Cursor))
}

/// Clamps a requested page size: 0 asks for the default, more than the
/// maximum gets the maximum.
fn page_limit(requested: u16, default: u16, max: u16) -> u16 {
    match requested {
        0 => default,
        n => n.min(max),
    }
}

fn price_range(min: Option<i64>, max: Option<i64>) -> Decoded<api::PriceRange> {
    if min.is_some_and(|m| m < 0) {
        return Err(violation("price_min", Violation::OutOfRange));
    }
    if max.is_some_and(|m| m < 0) {
        return Err(violation("price_max", Violation::OutOfRange));
    }
    if let (Some(low), Some(high)) = (min, max)
        && low > high
    {
        return Err(violation("price_max", Violation::OutOfRange));
    }
    Ok(api::PriceRange {
        min_minor_units: min,
        max_minor_units: max,
    })
}

fn money(value: fb::Money<'_>, field: &'static str) -> Decoded<api::Money> {
    let currency = api::Currency::new(value.currency()).map_err(|v| violation(field, v))?;
    Ok(api::Money::new(value.minor_units(), currency))
}

/// A price or amount a client sends: never negative.
fn amount(value: fb::Money<'_>, field: &'static str) -> Decoded<api::Money> {
    let money = money(value, field)?;
    if money.minor_units < 0 {
        return Err(violation(field, Violation::OutOfRange));
    }
    Ok(money)
}

fn quantity(value: u32, field: &'static str, min: u32) -> Decoded<u32> {
    if value < min || value > limits::LINE_QUANTITY_MAX {
        return Err(violation(field, Violation::OutOfRange));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------
// Records

fn image(value: fb::Image<'_>) -> Decoded<api::Image> {
    Ok(api::Image {
        url: required(value.url(), "image.url", limits::URL_BYTES_MAX)?,
        alt: text(value.alt(), "image.alt", limits::TEXT_BYTES_MAX)?,
    })
}

fn attribute(value: fb::Attribute<'_>) -> Decoded<api::Attribute> {
    Ok(api::Attribute {
        name: required(value.name(), "attribute.name", limits::TEXT_BYTES_MAX)?,
        value: required(value.value(), "attribute.value", limits::TEXT_BYTES_MAX)?,
    })
}

fn category(value: fb::Category<'_>) -> Decoded<api::Category> {
    Ok(api::Category {
        id: ident(value.id(), "category.id", category_id)?,
        name: required(value.name(), "category.name", limits::TEXT_BYTES_MAX)?,
        parent_id: opt_ident(value.parent_id(), "category.parent_id", category_id)?,
        product_count: value.product_count(),
    })
}

fn option_value(value: fb::OptionValue<'_>) -> Decoded<api::OptionValue> {
    Ok(api::OptionValue {
        name: required(value.name(), "option.name", limits::TEXT_BYTES_MAX)?,
        value: required(value.value(), "option.value", limits::TEXT_BYTES_MAX)?,
    })
}

fn product_option(value: fb::ProductOption<'_>) -> Decoded<api::ProductOption> {
    let values = list(
        value.values(),
        "option.values",
        limits::VALUES_PER_OPTION_MAX,
        |v| required(v, "option.values", limits::TEXT_BYTES_MAX),
    )?;
    Ok(api::ProductOption {
        name: required(value.name(), "option.name", limits::TEXT_BYTES_MAX)?,
        values,
    })
}

fn variant(value: fb::Variant<'_>) -> Decoded<api::Variant> {
    let compare_at_price = value
        .compare_at_price()
        .map(|m| amount(m, "variant.compare_at_price"))
        .transpose()?;
    Ok(api::Variant {
        sku: ident(value.sku(), "variant.sku", sku)?,
        name: text(value.name(), "variant.name", limits::TEXT_BYTES_MAX)?,
        options: list(
            value.options(),
            "variant.options",
            limits::OPTIONS_PER_PRODUCT_MAX,
            option_value,
        )?,
        price: amount(value.price(), "variant.price")?,
        compare_at_price,
        stock_status: stock_status(value.stock_status())?,
        available: value.available(),
        attributes: list(
            value.attributes(),
            "variant.attributes",
            limits::ATTRIBUTES_MAX,
            attribute,
        )?,
    })
}

fn product(value: fb::Product<'_>) -> Decoded<api::Product> {
    let variants = list(
        value.variants(),
        "product.variants",
        limits::VARIANTS_PER_PRODUCT_MAX,
        variant,
    )?;
    if variants.is_empty() {
        return Err(violation("product.variants", Violation::Empty));
    }
    Ok(api::Product {
        id: ident(value.id(), "product.id", product_id)?,
        name: required(value.name(), "product.name", limits::TEXT_BYTES_MAX)?,
        description: text(
            value.description(),
            "product.description",
            limits::DESCRIPTION_BYTES_MAX,
        )?,
        brand: text(value.brand(), "product.brand", limits::TEXT_BYTES_MAX)?,
        category_ids: list(
            value.category_ids(),
            "product.category_ids",
            limits::CATEGORIES_PER_PRODUCT_MAX,
            |c| ident(c, "product.category_ids", category_id),
        )?,
        options: list(
            value.options(),
            "product.options",
            limits::OPTIONS_PER_PRODUCT_MAX,
            product_option,
        )?,
        variants,
        attributes: list(
            value.attributes(),
            "product.attributes",
            limits::ATTRIBUTES_MAX,
            attribute,
        )?,
        images: list(
            value.images(),
            "product.images",
            limits::IMAGES_PER_PRODUCT_MAX,
            image,
        )?,
        created_at: api::UnixMillis(value.created_at_ms()),
        updated_at: api::UnixMillis(value.updated_at_ms()),
    })
}

fn product_summary(value: fb::ProductSummary<'_>) -> Decoded<api::ProductSummary> {
    Ok(api::ProductSummary {
        id: ident(value.id(), "product.id", product_id)?,
        name: required(value.name(), "product.name", limits::TEXT_BYTES_MAX)?,
        brand: text(value.brand(), "product.brand", limits::TEXT_BYTES_MAX)?,
        category_id: opt_ident(value.category_id(), "product.category_id", category_id)?,
        price_from: money(value.price_from(), "product.price_from")?,
        image: value.image().map(image).transpose()?,
        stock_status: stock_status(value.stock_status())?,
        created_at: api::UnixMillis(value.created_at_ms()),
    })
}

fn address(value: fb::Address<'_>) -> Decoded<api::Address> {
    let line = |v: Option<&str>, field| text(v, field, limits::TEXT_BYTES_MAX);
    let country = line(value.country(), "address.country")?;
    if let Some(code) = &country
        && (code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(violation("address.country", Violation::InvalidCharacters));
    }
    Ok(api::Address {
        id: api::AddressId(value.id()),
        name: line(value.name(), "address.name")?,
        line1: line(value.line1(), "address.line1")?,
        line2: line(value.line2(), "address.line2")?,
        city: line(value.city(), "address.city")?,
        region: line(value.region(), "address.region")?,
        postal_code: line(value.postal_code(), "address.postal_code")?,
        country,
        phone: line(value.phone(), "address.phone")?,
        is_default: value.is_default(),
    })
}

fn cart_line(value: fb::CartLine<'_>) -> Decoded<api::CartLine> {
    Ok(api::CartLine {
        sku: ident(value.sku(), "line.sku", sku)?,
        product_id: ident(value.product_id(), "line.product_id", product_id)?,
        name: required(value.name(), "line.name", limits::TEXT_BYTES_MAX)?,
        quantity: value.quantity(),
        unit_price: money(value.unit_price(), "line.unit_price")?,
        line_total: money(value.line_total(), "line.line_total")?,
        stock_status: stock_status(value.stock_status())?,
        available: value.available(),
    })
}

fn order_line(value: fb::OrderLine<'_>) -> Decoded<api::OrderLine> {
    Ok(api::OrderLine {
        sku: ident(value.sku(), "line.sku", sku)?,
        product_id: ident(value.product_id(), "line.product_id", product_id)?,
        name: required(value.name(), "line.name", limits::TEXT_BYTES_MAX)?,
        quantity: value.quantity(),
        unit_price: money(value.unit_price(), "line.unit_price")?,
        line_total: money(value.line_total(), "line.line_total")?,
    })
}

fn order(value: fb::Order<'_>) -> Decoded<api::Order> {
    Ok(api::Order {
        id: api::OrderId(value.id()),
        user_id: api::UserId(value.user_id()),
        status: order_status(value.status())?,
        lines: list(
            value.lines(),
            "order.lines",
            limits::CART_LINES_MAX,
            order_line,
        )?,
        total: money(value.total(), "order.total")?,
        created_at: api::UnixMillis(value.created_at_ms()),
        updated_at: api::UnixMillis(value.updated_at_ms()),
        expires_at: api::UnixMillis(value.expires_at_ms()),
        shipping_address: value.shipping_address().map(address).transpose()?,
        payment_status: payment_status(value.payment_status())?,
    })
}

// ---------------------------------------------------------------------------
// Request bodies

/// Unwraps a union member the verifier has checked against its tag.
fn member<T>(value: Option<T>) -> Decoded<T> {
    value.ok_or(DecodeError::MissingBody)
}

// One flat dispatch over the union reads better than splitting it to meet the
// function-length rule of thumb: each arm is independent and short.
fn request_body(request: &fb::Request<'_>) -> Decoded<api::RequestBody> {
    use api::RequestBody as R;
    use fb::RequestBody as T;
    let r = request;
    let body = match r.body_type() {
        T::NONE => return Err(DecodeError::MissingBody),
        T::Hello => {
            let hello = member(r.body_as_hello())?;
            R::Hello(api::Hello {
                protocol_version: hello.protocol_version(),
                client_name: text(hello.client_name(), "client_name", limits::TEXT_BYTES_MAX)?,
                client_version: text(
                    hello.client_version(),
                    "client_version",
                    limits::TEXT_BYTES_MAX,
                )?,
            })
        }
        T::Authenticate => {
            let auth = member(r.body_as_authenticate())?;
            R::Authenticate {
                access_token: required(
                    auth.access_token(),
                    "access_token",
                    limits::TOKEN_BYTES_MAX,
                )?,
            }
        }
        T::Refresh => {
            let refresh = member(r.body_as_refresh())?;
            R::Refresh {
                refresh_token: required(
                    refresh.refresh_token(),
                    "refresh_token",
                    limits::TOKEN_BYTES_MAX,
                )?,
            }
        }
        T::Logout => R::Logout {
            all_devices: member(r.body_as_logout())?.all_devices(),
        },
        T::Register => {
            let register = member(r.body_as_register())?;
            R::Register(api::Register {
                email: required(register.email(), "email", limits::EMAIL_BYTES_MAX)?,
                password: required(register.password(), "password", limits::PASSWORD_BYTES_MAX)?,
                name: text(register.name(), "name", limits::TEXT_BYTES_MAX)?,
            })
        }
        T::Login => {
            let login = member(r.body_as_login())?;
            R::Login(api::Login {
                email: required(login.email(), "email", limits::EMAIL_BYTES_MAX)?,
                password: required(login.password(), "password", limits::PASSWORD_BYTES_MAX)?,
                device_id: opt_ident(login.device_id(), "device_id", device_id)?,
            })
        }
        T::ListCategories => {
            member(r.body_as_list_categories())?;
            R::ListCategories
        }
        T::BrowseCategory => {
            let browse = member(r.body_as_browse_category())?;
            R::BrowseCategory(api::BrowseCategory {
                category_id: opt_ident(browse.category_id(), "category_id", category_id)?,
                sort: browse_sort(browse.sort())?,
                price: price_range(browse.price_min(), browse.price_max())?,
                cursor: cursor(browse.cursor())?,
                limit: page_limit(
                    browse.limit(),
                    limits::PAGE_LIMIT_DEFAULT,
                    limits::PAGE_LIMIT_MAX,
                ),
            })
        }
        T::GetProduct => {
            let get = member(r.body_as_get_product())?;
            R::GetProduct {
                product_id: ident(get.product_id(), "product_id", product_id)?,
            }
        }
        T::AdminUpsertProduct => {
            let upsert = member(r.body_as_admin_upsert_product())?;
            R::AdminUpsertProduct(Box::new(product(upsert.product())?))
        }
        T::AdminRestock => {
            let restock = member(r.body_as_admin_restock())?;
            let mode = restock_mode(restock.mode())?;
            let quantity = restock.quantity();
            let floor = match mode {
                api::RestockMode::Add => -limits::STOCK_UNITS_MAX,
                api::RestockMode::Set => 0,
            };
            if quantity < floor || quantity > limits::STOCK_UNITS_MAX {
                return Err(violation("quantity", Violation::OutOfRange));
            }
            R::AdminRestock(api::AdminRestock {
                sku: ident(restock.sku(), "sku", sku)?,
                quantity,
                mode,
            })
        }
        T::SearchQuery => {
            let query = member(r.body_as_search_query())?;
            R::Search(api::SearchQuery {
                text: text(Some(query.text()), "text", limits::SEARCH_TEXT_BYTES_MAX)?
                    .unwrap_or_default(),
                category_id: opt_ident(query.category_id(), "category_id", category_id)?,
                price: price_range(query.price_min(), query.price_max())?,
                cursor: cursor(query.cursor())?,
                limit: page_limit(
                    query.limit(),
                    limits::PAGE_LIMIT_DEFAULT,
                    limits::PAGE_LIMIT_MAX,
                ),
            })
        }
        T::Suggest => {
            let suggest = member(r.body_as_suggest())?;
            R::Suggest(api::Suggest {
                prefix: required(suggest.prefix(), "prefix", limits::SEARCH_TEXT_BYTES_MAX)?,
                limit: page_limit(
                    suggest.limit(),
                    limits::SUGGEST_LIMIT_DEFAULT,
                    limits::SUGGEST_LIMIT_MAX,
                ),
            })
        }
        T::GetCart => R::GetCart {
            device_id: opt_ident(
                member(r.body_as_get_cart())?.device_id(),
                "device_id",
                device_id,
            )?,
        },
        T::AddToCart => {
            let add = member(r.body_as_add_to_cart())?;
            R::AddToCart(api::CartLineChange {
                device_id: opt_ident(add.device_id(), "device_id", device_id)?,
                sku: ident(add.sku(), "sku", sku)?,
                quantity: quantity(add.quantity(), "quantity", 1)?,
            })
        }
        T::UpdateCartLine => {
            let update = member(r.body_as_update_cart_line())?;
            R::UpdateCartLine(api::CartLineChange {
                device_id: opt_ident(update.device_id(), "device_id", device_id)?,
                sku: ident(update.sku(), "sku", sku)?,
                quantity: quantity(update.quantity(), "quantity", 0)?,
            })
        }
        T::RemoveCartLine => {
            let remove = member(r.body_as_remove_cart_line())?;
            R::RemoveCartLine {
                device_id: opt_ident(remove.device_id(), "device_id", device_id)?,
                sku: ident(remove.sku(), "sku", sku)?,
            }
        }
        T::MergeCart => {
            let merge = member(r.body_as_merge_cart())?;
            R::MergeCart {
                guest_device_id: ident(merge.guest_device_id(), "guest_device_id", device_id)?,
            }
        }
        T::Checkout => {
            let checkout = member(r.body_as_checkout())?;
            R::Checkout(api::Checkout {
                device_id: opt_ident(checkout.device_id(), "device_id", device_id)?,
                payment_method_token: required(
                    checkout.payment_method_token(),
                    "payment_method_token",
                    limits::TOKEN_BYTES_MAX,
                )?,
                shipping_address_id: match checkout.shipping_address_id() {
                    0 => None,
                    id => Some(api::AddressId(id)),
                },
                expected_total: checkout
                    .expected_total()
                    .map(|m| amount(m, "expected_total"))
                    .transpose()?,
                lines: list(checkout.lines(), "lines", limits::CART_LINES_MAX, |line| {
                    Ok(api::CheckoutLine {
                        sku: ident(line.sku(), "lines.sku", sku)?,
                        quantity: quantity(line.quantity(), "lines.quantity", 1)?,
                    })
                })?,
            })
        }
        T::GetOrder => R::GetOrder {
            order_id: api::OrderId(member(r.body_as_get_order())?.order_id()),
        },
        T::ListOrders => {
            let list = member(r.body_as_list_orders())?;
            R::ListOrders(api::ListOrders {
                cursor: cursor(list.cursor())?,
                limit: page_limit(
                    list.limit(),
                    limits::PAGE_LIMIT_DEFAULT,
                    limits::PAGE_LIMIT_MAX,
                ),
            })
        }
        T::CancelOrder => R::CancelOrder {
            order_id: api::OrderId(member(r.body_as_cancel_order())?.order_id()),
        },
        T::GetPaymentStatus => R::GetPaymentStatus {
            order_id: api::OrderId(member(r.body_as_get_payment_status())?.order_id()),
        },
        T::RefundPayment => {
            let refund = member(r.body_as_refund_payment())?;
            let amount = refund.amount().map(|m| amount(m, "amount")).transpose()?;
            if amount.is_some_and(|m| m.minor_units == 0) {
                return Err(violation("amount", Violation::OutOfRange));
            }
            R::RefundPayment(api::RefundPayment {
                order_id: api::OrderId(refund.order_id()),
                amount,
                reason: text(refund.reason(), "reason", limits::TEXT_BYTES_MAX)?,
            })
        }
        T::GetProfile => {
            member(r.body_as_get_profile())?;
            R::GetProfile
        }
        T::UpdateProfile => R::UpdateProfile {
            name: text(
                member(r.body_as_update_profile())?.name(),
                "name",
                limits::TEXT_BYTES_MAX,
            )?,
        },
        T::ListAddresses => {
            member(r.body_as_list_addresses())?;
            R::ListAddresses
        }
        T::UpsertAddress => {
            R::UpsertAddress(address(member(r.body_as_upsert_address())?.address())?)
        }
        T::DeleteAddress => R::DeleteAddress {
            address_id: api::AddressId(member(r.body_as_delete_address())?.address_id()),
        },
        T::WatchProduct => R::WatchProduct {
            product_id: ident(
                member(r.body_as_watch_product())?.product_id(),
                "product_id",
                product_id,
            )?,
        },
        T::UnwatchProduct => R::UnwatchProduct {
            product_id: ident(
                member(r.body_as_unwatch_product())?.product_id(),
                "product_id",
                product_id,
            )?,
        },
        other => return Err(DecodeError::UnknownBody { tag: other.0 }),
    };
    Ok(body)
}

// ---------------------------------------------------------------------------
// Response bodies

fn response_body(response: &fb::Response<'_>) -> Decoded<api::ResponseBody> {
    use api::ResponseBody as B;
    use fb::ResponseBody as T;
    let r = response;
    let body = match r.body_type() {
        T::NONE => B::Empty,
        T::HelloReply => {
            let hello = member(r.body_as_hello_reply())?;
            B::HelloReply(api::HelloReply {
                protocol_version: hello.protocol_version(),
                server_version: text(
                    hello.server_version(),
                    "server_version",
                    limits::TEXT_BYTES_MAX,
                )?
                .unwrap_or_default(),
                shard: hello.shard(),
                shard_count: hello.shard_count(),
                server_time: api::UnixMillis(hello.server_time_ms()),
            })
        }
        T::Identity => {
            let identity = member(r.body_as_identity())?;
            B::Identity(api::Identity {
                user_id: api::UserId(identity.user_id()),
                role: role(identity.role())?,
                access_expires_at: api::UnixMillis(identity.access_expires_at_ms()),
            })
        }
        T::SessionGrant => {
            let grant = member(r.body_as_session_grant())?;
            B::SessionGrant(api::SessionGrant {
                user_id: api::UserId(grant.user_id()),
                role: role(grant.role())?,
                access_token: required(
                    grant.access_token(),
                    "access_token",
                    limits::TOKEN_BYTES_MAX,
                )?,
                access_expires_at: api::UnixMillis(grant.access_expires_at_ms()),
                refresh_token: required(
                    grant.refresh_token(),
                    "refresh_token",
                    limits::TOKEN_BYTES_MAX,
                )?,
            })
        }
        T::CategoryList => B::CategoryList(list(
            member(r.body_as_category_list())?.categories(),
            "categories",
            limits::CATEGORIES_MAX,
            category,
        )?),
        T::ProductPage => {
            let page = member(r.body_as_product_page())?;
            B::ProductPage(api::ProductPage {
                products: list(
                    page.products(),
                    "products",
                    usize::from(limits::PAGE_LIMIT_MAX),
                    product_summary,
                )?,
                next_cursor: cursor(page.next_cursor())?,
                total: page.total(),
            })
        }
        T::ProductDetail => {
            let detail = member(r.body_as_product_detail())?;
            B::ProductDetail(Box::new(product(detail.product())?))
        }
        T::StockLevel => {
            let level = member(r.body_as_stock_level())?;
            B::StockLevel(api::StockLevel {
                sku: ident(level.sku(), "sku", sku)?,
                on_hand: level.on_hand(),
                reserved: level.reserved(),
                available: level.available(),
            })
        }
        T::SearchResults => {
            let results = member(r.body_as_search_results())?;
            B::SearchResults(api::SearchResults {
                hits: list(
                    results.hits(),
                    "hits",
                    usize::from(limits::PAGE_LIMIT_MAX),
                    product_summary,
                )?,
                total: results.total(),
                next_cursor: cursor(results.next_cursor())?,
            })
        }
        T::Suggestions => B::Suggestions(list(
            member(r.body_as_suggestions())?.suggestions(),
            "suggestions",
            usize::from(limits::SUGGEST_LIMIT_MAX),
            |s| required(s, "suggestions", limits::TEXT_BYTES_MAX),
        )?),
        T::CartView => {
            let cart = member(r.body_as_cart_view())?;
            B::CartView(api::CartView {
                lines: list(cart.lines(), "lines", limits::CART_LINES_MAX, cart_line)?,
                subtotal: cart.subtotal().map(|m| money(m, "subtotal")).transpose()?,
                item_count: cart.item_count(),
            })
        }
        T::OrderView => B::OrderView(Box::new(order(member(r.body_as_order_view())?.order())?)),
        T::OrderPage => {
            let page = member(r.body_as_order_page())?;
            B::OrderPage(api::OrderPage {
                orders: list(
                    page.orders(),
                    "orders",
                    usize::from(limits::PAGE_LIMIT_MAX),
                    order,
                )?,
                next_cursor: cursor(page.next_cursor())?,
            })
        }
        T::PaymentView => {
            let payment = member(r.body_as_payment_view())?;
            B::PaymentView(api::PaymentView {
                order_id: api::OrderId(payment.order_id()),
                status: payment_status(payment.status())?,
                amount: money(payment.amount(), "amount")?,
                refunded: payment
                    .refunded()
                    .map(|m| money(m, "refunded"))
                    .transpose()?,
                attempts: payment.attempts(),
                last_error: text(
                    payment.last_error(),
                    "last_error",
                    limits::MESSAGE_BYTES_MAX,
                )?,
                updated_at: api::UnixMillis(payment.updated_at_ms()),
            })
        }
        T::Profile => {
            let profile = member(r.body_as_profile())?;
            B::Profile(api::Profile {
                user_id: api::UserId(profile.user_id()),
                email: required(profile.email(), "email", limits::EMAIL_BYTES_MAX)?,
                name: text(profile.name(), "name", limits::TEXT_BYTES_MAX)?,
                role: role(profile.role())?,
                created_at: api::UnixMillis(profile.created_at_ms()),
            })
        }
        T::AddressList => B::AddressList(list(
            member(r.body_as_address_list())?.addresses(),
            "addresses",
            limits::ADDRESSES_MAX,
            address,
        )?),
        T::Address => B::Address(address(member(r.body_as_address())?)?),
        other => return Err(DecodeError::UnknownBody { tag: other.0 }),
    };
    Ok(body)
}

// ---------------------------------------------------------------------------
// Event bodies

fn event_body(event: &fb::Event<'_>) -> Decoded<api::EventBody> {
    use api::EventBody as E;
    use fb::EventBody as T;
    let body = match event.body_type() {
        T::NONE => return Err(DecodeError::MissingBody),
        T::OrderStatusChanged => {
            let changed = member(event.body_as_order_status_changed())?;
            E::OrderStatusChanged {
                order_id: api::OrderId(changed.order_id()),
                status: order_status(changed.status())?,
                previous: order_status(changed.previous())?,
            }
        }
        T::PaymentResult => {
            let result = member(event.body_as_payment_result())?;
            E::PaymentResult {
                order_id: api::OrderId(result.order_id()),
                status: payment_status(result.status())?,
                message: text(result.message(), "message", limits::MESSAGE_BYTES_MAX)?,
            }
        }
        T::StockLeft => {
            let left = member(event.body_as_stock_left())?;
            E::StockLeft {
                product_id: ident(left.product_id(), "product_id", product_id)?,
                sku: ident(left.sku(), "sku", sku)?,
                available: left.available(),
            }
        }
        T::WaitingRoomPosition => {
            let position = member(event.body_as_waiting_room_position())?;
            E::WaitingRoomPosition {
                room: required(position.room(), "room", limits::IDENTIFIER_BYTES_MAX)?,
                position: position.position(),
                estimated_wait_ms: position.estimated_wait_ms(),
                admitted: position.admitted(),
            }
        }
        other => return Err(DecodeError::UnknownBody { tag: other.0 }),
    };
    Ok(body)
}
