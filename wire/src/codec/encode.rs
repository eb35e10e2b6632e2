//! `api` values → framed FlatBuffers bytes.

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use super::enums::to_fb::{
    browse_sort, order_status, payment_status, restock_mode, role, status, stock_status,
};
use crate::api::{self, RequestBody, ResponseBody};
use crate::generated::souk::wire as fb;
use crate::limits;

type Fbb = FlatBufferBuilder<'static>;
type Off<T> = WIPOffset<T>;
type Str = Off<&'static str>;
type Vec1<T> = Off<flatbuffers::Vector<'static, flatbuffers::ForwardsUOffset<T>>>;

/// The file identifier written into every buffer, so a stray buffer from
/// another protocol is recognisable in a capture.
const FILE_IDENTIFIER: &str = "SOUK";

/// An encoded message was larger than its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    pub len: usize,
    pub max: usize,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message of {} bytes exceeds {} bytes",
            self.len, self.max
        )
    }
}

impl std::error::Error for EncodeError {}

/// Encodes messages into frames, reusing one buffer: keep one per task or
/// per shard so that the hot path does not allocate a builder per message.
pub struct Encoder {
    fbb: Fbb,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            fbb: FlatBufferBuilder::with_capacity(4096),
        }
    }

    /// A framed `Request`: the length header followed by the buffer.
    pub fn request(&mut self, request: &api::Request) -> Result<&[u8], EncodeError> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (body_type, body) = request_body(fbb, &request.body);
        let key = request
            .idempotency_key
            .map(|k| fb::IdempotencyKey::new((k.0 >> 64) as u64, k.0 as u64));
        let root = fb::Request::create(
            fbb,
            &fb::RequestArgs {
                idempotency_key: key.as_ref(),
                body_type,
                body: Some(body),
            },
        );
        self.finish(root, limits::REQUEST_BYTES_MAX)
    }

    /// A framed `Response`.
    pub fn response(&mut self, response: &api::Response) -> Result<&[u8], EncodeError> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let root = match response {
            Ok(body) => {
                let (body_type, body) = response_body(fbb, body);
                fb::Response::create(
                    fbb,
                    &fb::ResponseArgs {
                        status: fb::Status::Ok,
                        message: None,
                        retry_after_ms: 0,
                        body_type,
                        body,
                    },
                )
            }
            Err(error) => {
                let message = truncated(&error.message, limits::MESSAGE_BYTES_MAX);
                let message = fbb.create_string(message);
                fb::Response::create(
                    fbb,
                    &fb::ResponseArgs {
                        status: status(error.status),
                        message: Some(message),
                        retry_after_ms: error.retry_after_ms,
                        body_type: fb::ResponseBody::NONE,
                        body: None,
                    },
                )
            }
        };
        self.finish(root, limits::RESPONSE_BYTES_MAX)
    }

    /// A framed `Event`.
    pub fn event(&mut self, event: &api::Event) -> Result<&[u8], EncodeError> {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (body_type, body) = event_body(fbb, &event.body);
        let root = fb::Event::create(
            fbb,
            &fb::EventArgs {
                seq: event.seq,
                at_ms: event.at.0,
                body_type,
                body: Some(body),
            },
        );
        self.finish(root, limits::EVENT_BYTES_MAX)
    }

    fn finish<T>(&mut self, root: Off<T>, payload_max: usize) -> Result<&[u8], EncodeError> {
        self.fbb.finish_size_prefixed(root, Some(FILE_IDENTIFIER));
        let framed = self.fbb.finished_data();
        let len = framed.len() - limits::FRAME_HEADER_BYTES;
        if len > payload_max {
            return Err(EncodeError {
                len,
                max: payload_max,
            });
        }
        Ok(framed)
    }
}

/// Cuts a message at a character boundary at or below `max` bytes.
fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---------------------------------------------------------------------------
// Building blocks

fn string(fbb: &mut Fbb, value: &str) -> Str {
    fbb.create_string(value)
}

fn opt_string(fbb: &mut Fbb, value: Option<&str>) -> Option<Str> {
    value.map(|v| fbb.create_string(v))
}

fn strings<S: AsRef<str>>(fbb: &mut Fbb, values: &[S]) -> Vec1<&'static str> {
    let offsets: Vec<Str> = values
        .iter()
        .map(|v| fbb.create_string(v.as_ref()))
        .collect();
    fbb.create_vector(&offsets)
}

fn tables<T, U>(fbb: &mut Fbb, items: &[T], each: impl Fn(&mut Fbb, &T) -> Off<U>) -> Vec1<U> {
    let offsets: Vec<Off<U>> = items.iter().map(|item| each(fbb, item)).collect();
    fbb.create_vector(&offsets)
}

fn cursor(fbb: &mut Fbb, value: &Option<api::Cursor>) -> Option<Str> {
    value.as_ref().map(|c| fbb.create_string(&c.0))
}

fn money(fbb: &mut Fbb, value: &api::Money) -> Off<fb::Money<'static>> {
    let currency = fbb.create_string(value.currency.as_str());
    fb::Money::create(
        fbb,
        &fb::MoneyArgs {
            minor_units: value.minor_units,
            currency: Some(currency),
        },
    )
}

fn opt_money(fbb: &mut Fbb, value: &Option<api::Money>) -> Option<Off<fb::Money<'static>>> {
    value.as_ref().map(|m| money(fbb, m))
}

fn image(fbb: &mut Fbb, value: &api::Image) -> Off<fb::Image<'static>> {
    let url = string(fbb, &value.url);
    let alt = opt_string(fbb, value.alt.as_deref());
    fb::Image::create(
        fbb,
        &fb::ImageArgs {
            url: Some(url),
            alt,
        },
    )
}

fn attribute(fbb: &mut Fbb, value: &api::Attribute) -> Off<fb::Attribute<'static>> {
    let name = string(fbb, &value.name);
    let text = string(fbb, &value.value);
    fb::Attribute::create(
        fbb,
        &fb::AttributeArgs {
            name: Some(name),
            value: Some(text),
        },
    )
}

fn category(fbb: &mut Fbb, value: &api::Category) -> Off<fb::Category<'static>> {
    let id = string(fbb, value.id.as_str());
    let name = string(fbb, &value.name);
    let parent_id = opt_string(fbb, value.parent_id.as_ref().map(|p| p.as_str()));
    fb::Category::create(
        fbb,
        &fb::CategoryArgs {
            id: Some(id),
            name: Some(name),
            parent_id,
            product_count: value.product_count,
        },
    )
}

fn option_value(fbb: &mut Fbb, value: &api::OptionValue) -> Off<fb::OptionValue<'static>> {
    let name = string(fbb, &value.name);
    let text = string(fbb, &value.value);
    fb::OptionValue::create(
        fbb,
        &fb::OptionValueArgs {
            name: Some(name),
            value: Some(text),
        },
    )
}

fn product_option(fbb: &mut Fbb, value: &api::ProductOption) -> Off<fb::ProductOption<'static>> {
    let name = string(fbb, &value.name);
    let values = strings(fbb, &value.values);
    fb::ProductOption::create(
        fbb,
        &fb::ProductOptionArgs {
            name: Some(name),
            values: Some(values),
        },
    )
}

fn variant(fbb: &mut Fbb, value: &api::Variant) -> Off<fb::Variant<'static>> {
    let sku = string(fbb, value.sku.as_str());
    let name = opt_string(fbb, value.name.as_deref());
    let options = tables(fbb, &value.options, option_value);
    let price = money(fbb, &value.price);
    let compare_at_price = opt_money(fbb, &value.compare_at_price);
    let attributes = tables(fbb, &value.attributes, attribute);
    fb::Variant::create(
        fbb,
        &fb::VariantArgs {
            sku: Some(sku),
            name,
            options: Some(options),
            price: Some(price),
            compare_at_price,
            stock_status: stock_status(value.stock_status),
            available: value.available,
            attributes: Some(attributes),
        },
    )
}

fn product(fbb: &mut Fbb, value: &api::Product) -> Off<fb::Product<'static>> {
    let id = string(fbb, value.id.as_str());
    let name = string(fbb, &value.name);
    let description = opt_string(fbb, value.description.as_deref());
    let brand = opt_string(fbb, value.brand.as_deref());
    let category_ids: Vec<&str> = value.category_ids.iter().map(|c| c.as_str()).collect();
    let category_ids = strings(fbb, &category_ids);
    let options = tables(fbb, &value.options, product_option);
    let variants = tables(fbb, &value.variants, variant);
    let attributes = tables(fbb, &value.attributes, attribute);
    let images = tables(fbb, &value.images, image);
    fb::Product::create(
        fbb,
        &fb::ProductArgs {
            id: Some(id),
            name: Some(name),
            description,
            brand,
            category_ids: Some(category_ids),
            options: Some(options),
            variants: Some(variants),
            attributes: Some(attributes),
            images: Some(images),
            created_at_ms: value.created_at.0,
            updated_at_ms: value.updated_at.0,
        },
    )
}

fn product_summary(fbb: &mut Fbb, value: &api::ProductSummary) -> Off<fb::ProductSummary<'static>> {
    let id = string(fbb, value.id.as_str());
    let name = string(fbb, &value.name);
    let brand = opt_string(fbb, value.brand.as_deref());
    let category_id = opt_string(fbb, value.category_id.as_ref().map(|c| c.as_str()));
    let price_from = money(fbb, &value.price_from);
    let image = value.image.as_ref().map(|i| image(fbb, i));
    fb::ProductSummary::create(
        fbb,
        &fb::ProductSummaryArgs {
            id: Some(id),
            name: Some(name),
            brand,
            category_id,
            price_from: Some(price_from),
            image,
            stock_status: stock_status(value.stock_status),
            created_at_ms: value.created_at.0,
        },
    )
}

fn address(fbb: &mut Fbb, value: &api::Address) -> Off<fb::Address<'static>> {
    let name = opt_string(fbb, value.name.as_deref());
    let line1 = opt_string(fbb, value.line1.as_deref());
    let line2 = opt_string(fbb, value.line2.as_deref());
    let city = opt_string(fbb, value.city.as_deref());
    let region = opt_string(fbb, value.region.as_deref());
    let postal_code = opt_string(fbb, value.postal_code.as_deref());
    let country = opt_string(fbb, value.country.as_deref());
    let phone = opt_string(fbb, value.phone.as_deref());
    fb::Address::create(
        fbb,
        &fb::AddressArgs {
            id: value.id.0,
            name,
            line1,
            line2,
            city,
            region,
            postal_code,
            country,
            phone,
            is_default: value.is_default,
        },
    )
}

fn cart_line(fbb: &mut Fbb, value: &api::CartLine) -> Off<fb::CartLine<'static>> {
    let sku = string(fbb, value.sku.as_str());
    let product_id = string(fbb, value.product_id.as_str());
    let name = string(fbb, &value.name);
    let unit_price = money(fbb, &value.unit_price);
    let line_total = money(fbb, &value.line_total);
    fb::CartLine::create(
        fbb,
        &fb::CartLineArgs {
            sku: Some(sku),
            product_id: Some(product_id),
            name: Some(name),
            quantity: value.quantity,
            unit_price: Some(unit_price),
            line_total: Some(line_total),
            stock_status: stock_status(value.stock_status),
            available: value.available,
        },
    )
}

fn order_line(fbb: &mut Fbb, value: &api::OrderLine) -> Off<fb::OrderLine<'static>> {
    let sku = string(fbb, value.sku.as_str());
    let product_id = string(fbb, value.product_id.as_str());
    let name = string(fbb, &value.name);
    let unit_price = money(fbb, &value.unit_price);
    let line_total = money(fbb, &value.line_total);
    fb::OrderLine::create(
        fbb,
        &fb::OrderLineArgs {
            sku: Some(sku),
            product_id: Some(product_id),
            name: Some(name),
            quantity: value.quantity,
            unit_price: Some(unit_price),
            line_total: Some(line_total),
        },
    )
}

fn order(fbb: &mut Fbb, value: &api::Order) -> Off<fb::Order<'static>> {
    let lines = tables(fbb, &value.lines, order_line);
    let total = money(fbb, &value.total);
    let shipping_address = value.shipping_address.as_ref().map(|a| address(fbb, a));
    fb::Order::create(
        fbb,
        &fb::OrderArgs {
            id: value.id.0,
            user_id: value.user_id.0,
            status: order_status(value.status),
            lines: Some(lines),
            total: Some(total),
            created_at_ms: value.created_at.0,
            updated_at_ms: value.updated_at.0,
            expires_at_ms: value.expires_at.0,
            shipping_address,
            payment_status: payment_status(value.payment_status),
        },
    )
}

fn device(fbb: &mut Fbb, value: &Option<api::DeviceId>) -> Option<Str> {
    value.as_ref().map(|d| fbb.create_string(d.as_str()))
}

// ---------------------------------------------------------------------------
// Request bodies

// One flat dispatch over the union reads better than splitting it to meet the
// function-length rule of thumb: each arm is independent and short.
fn request_body(fbb: &mut Fbb, body: &RequestBody) -> (fb::RequestBody, Off<UnionWIPOffset>) {
    use RequestBody as R;
    use fb::RequestBody as T;
    match body {
        R::Hello(hello) => {
            let client_name = opt_string(fbb, hello.client_name.as_deref());
            let client_version = opt_string(fbb, hello.client_version.as_deref());
            let args = fb::HelloArgs {
                protocol_version: hello.protocol_version,
                client_name,
                client_version,
            };
            (T::Hello, fb::Hello::create(fbb, &args).as_union_value())
        }
        R::Authenticate { access_token } => {
            let access_token = Some(string(fbb, access_token));
            let args = fb::AuthenticateArgs { access_token };
            (
                T::Authenticate,
                fb::Authenticate::create(fbb, &args).as_union_value(),
            )
        }
        R::Refresh { refresh_token } => {
            let refresh_token = Some(string(fbb, refresh_token));
            let args = fb::RefreshArgs { refresh_token };
            (T::Refresh, fb::Refresh::create(fbb, &args).as_union_value())
        }
        R::Logout { all_devices } => {
            let args = fb::LogoutArgs {
                all_devices: *all_devices,
            };
            (T::Logout, fb::Logout::create(fbb, &args).as_union_value())
        }
        R::Register(register) => {
            let email = Some(string(fbb, &register.email));
            let password = Some(string(fbb, &register.password));
            let name = opt_string(fbb, register.name.as_deref());
            let args = fb::RegisterArgs {
                email,
                password,
                name,
            };
            (
                T::Register,
                fb::Register::create(fbb, &args).as_union_value(),
            )
        }
        R::Login(login) => {
            let email = Some(string(fbb, &login.email));
            let password = Some(string(fbb, &login.password));
            let device_id = device(fbb, &login.device_id);
            let args = fb::LoginArgs {
                email,
                password,
                device_id,
            };
            (T::Login, fb::Login::create(fbb, &args).as_union_value())
        }
        R::ListCategories => {
            let args = fb::ListCategoriesArgs {};
            (
                T::ListCategories,
                fb::ListCategories::create(fbb, &args).as_union_value(),
            )
        }
        R::BrowseCategory(browse) => {
            let category_id = opt_string(fbb, browse.category_id.as_ref().map(|c| c.as_str()));
            let cursor = cursor(fbb, &browse.cursor);
            let args = fb::BrowseCategoryArgs {
                category_id,
                sort: browse_sort(browse.sort),
                price_min: browse.price.min_minor_units,
                price_max: browse.price.max_minor_units,
                cursor,
                limit: browse.limit,
            };
            (
                T::BrowseCategory,
                fb::BrowseCategory::create(fbb, &args).as_union_value(),
            )
        }
        R::GetProduct { product_id } => {
            let product_id = Some(string(fbb, product_id.as_str()));
            let args = fb::GetProductArgs { product_id };
            (
                T::GetProduct,
                fb::GetProduct::create(fbb, &args).as_union_value(),
            )
        }
        R::AdminUpsertProduct(value) => {
            let product = Some(product(fbb, value));
            let args = fb::AdminUpsertProductArgs { product };
            let offset = fb::AdminUpsertProduct::create(fbb, &args);
            (T::AdminUpsertProduct, offset.as_union_value())
        }
        R::AdminRestock(restock) => {
            let sku = Some(string(fbb, restock.sku.as_str()));
            let args = fb::AdminRestockArgs {
                sku,
                quantity: restock.quantity,
                mode: restock_mode(restock.mode),
            };
            (
                T::AdminRestock,
                fb::AdminRestock::create(fbb, &args).as_union_value(),
            )
        }
        R::Search(query) => {
            let text = Some(string(fbb, &query.text));
            let category_id = opt_string(fbb, query.category_id.as_ref().map(|c| c.as_str()));
            let cursor = cursor(fbb, &query.cursor);
            let args = fb::SearchQueryArgs {
                text,
                category_id,
                price_min: query.price.min_minor_units,
                price_max: query.price.max_minor_units,
                cursor,
                limit: query.limit,
            };
            (
                T::SearchQuery,
                fb::SearchQuery::create(fbb, &args).as_union_value(),
            )
        }
        R::Suggest(suggest) => {
            let prefix = Some(string(fbb, &suggest.prefix));
            let args = fb::SuggestArgs {
                prefix,
                limit: suggest.limit,
            };
            (T::Suggest, fb::Suggest::create(fbb, &args).as_union_value())
        }
        R::GetCart { device_id } => {
            let device_id = device(fbb, device_id);
            let args = fb::GetCartArgs { device_id };
            (T::GetCart, fb::GetCart::create(fbb, &args).as_union_value())
        }
        R::AddToCart(change) => {
            let device_id = device(fbb, &change.device_id);
            let sku = Some(string(fbb, change.sku.as_str()));
            let args = fb::AddToCartArgs {
                device_id,
                sku,
                quantity: change.quantity,
            };
            (
                T::AddToCart,
                fb::AddToCart::create(fbb, &args).as_union_value(),
            )
        }
        R::UpdateCartLine(change) => {
            let device_id = device(fbb, &change.device_id);
            let sku = Some(string(fbb, change.sku.as_str()));
            let args = fb::UpdateCartLineArgs {
                device_id,
                sku,
                quantity: change.quantity,
            };
            (
                T::UpdateCartLine,
                fb::UpdateCartLine::create(fbb, &args).as_union_value(),
            )
        }
        R::RemoveCartLine { device_id, sku } => {
            let device_id = device(fbb, device_id);
            let sku = Some(string(fbb, sku.as_str()));
            let args = fb::RemoveCartLineArgs { device_id, sku };
            (
                T::RemoveCartLine,
                fb::RemoveCartLine::create(fbb, &args).as_union_value(),
            )
        }
        R::MergeCart { guest_device_id } => {
            let guest_device_id = Some(string(fbb, guest_device_id.as_str()));
            let args = fb::MergeCartArgs { guest_device_id };
            (
                T::MergeCart,
                fb::MergeCart::create(fbb, &args).as_union_value(),
            )
        }
        R::Checkout(checkout) => {
            let device_id = device(fbb, &checkout.device_id);
            let payment_method_token = Some(string(fbb, &checkout.payment_method_token));
            let expected_total = opt_money(fbb, &checkout.expected_total);
            let lines = (!checkout.lines.is_empty()).then(|| {
                let lines: Vec<_> = checkout
                    .lines
                    .iter()
                    .map(|line| {
                        let sku = Some(string(fbb, line.sku.as_str()));
                        fb::CheckoutLine::create(
                            fbb,
                            &fb::CheckoutLineArgs {
                                sku,
                                quantity: line.quantity,
                            },
                        )
                    })
                    .collect();
                fbb.create_vector(&lines)
            });
            let args = fb::CheckoutArgs {
                device_id,
                payment_method_token,
                shipping_address_id: checkout.shipping_address_id.map_or(0, |a| a.0),
                expected_total,
                lines,
            };
            (
                T::Checkout,
                fb::Checkout::create(fbb, &args).as_union_value(),
            )
        }
        R::GetOrder { order_id } => {
            let args = fb::GetOrderArgs {
                order_id: order_id.0,
            };
            (
                T::GetOrder,
                fb::GetOrder::create(fbb, &args).as_union_value(),
            )
        }
        R::ListOrders(list) => {
            let cursor = cursor(fbb, &list.cursor);
            let args = fb::ListOrdersArgs {
                cursor,
                limit: list.limit,
            };
            (
                T::ListOrders,
                fb::ListOrders::create(fbb, &args).as_union_value(),
            )
        }
        R::CancelOrder { order_id } => {
            let args = fb::CancelOrderArgs {
                order_id: order_id.0,
            };
            (
                T::CancelOrder,
                fb::CancelOrder::create(fbb, &args).as_union_value(),
            )
        }
        R::GetPaymentStatus { order_id } => {
            let args = fb::GetPaymentStatusArgs {
                order_id: order_id.0,
            };
            let offset = fb::GetPaymentStatus::create(fbb, &args);
            (T::GetPaymentStatus, offset.as_union_value())
        }
        R::RefundPayment(refund) => {
            let amount = opt_money(fbb, &refund.amount);
            let reason = opt_string(fbb, refund.reason.as_deref());
            let args = fb::RefundPaymentArgs {
                order_id: refund.order_id.0,
                amount,
                reason,
            };
            (
                T::RefundPayment,
                fb::RefundPayment::create(fbb, &args).as_union_value(),
            )
        }
        R::GetProfile => {
            let args = fb::GetProfileArgs {};
            (
                T::GetProfile,
                fb::GetProfile::create(fbb, &args).as_union_value(),
            )
        }
        R::UpdateProfile { name } => {
            let name = opt_string(fbb, name.as_deref());
            let args = fb::UpdateProfileArgs { name };
            (
                T::UpdateProfile,
                fb::UpdateProfile::create(fbb, &args).as_union_value(),
            )
        }
        R::ListAddresses => {
            let args = fb::ListAddressesArgs {};
            (
                T::ListAddresses,
                fb::ListAddresses::create(fbb, &args).as_union_value(),
            )
        }
        R::UpsertAddress(value) => {
            let address = Some(address(fbb, value));
            let args = fb::UpsertAddressArgs { address };
            (
                T::UpsertAddress,
                fb::UpsertAddress::create(fbb, &args).as_union_value(),
            )
        }
        R::DeleteAddress { address_id } => {
            let args = fb::DeleteAddressArgs {
                address_id: address_id.0,
            };
            (
                T::DeleteAddress,
                fb::DeleteAddress::create(fbb, &args).as_union_value(),
            )
        }
        R::WatchProduct { product_id } => {
            let product_id = Some(string(fbb, product_id.as_str()));
            let args = fb::WatchProductArgs { product_id };
            (
                T::WatchProduct,
                fb::WatchProduct::create(fbb, &args).as_union_value(),
            )
        }
        R::UnwatchProduct { product_id } => {
            let product_id = Some(string(fbb, product_id.as_str()));
            let args = fb::UnwatchProductArgs { product_id };
            (
                T::UnwatchProduct,
                fb::UnwatchProduct::create(fbb, &args).as_union_value(),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Response bodies

fn response_body(
    fbb: &mut Fbb,
    body: &ResponseBody,
) -> (fb::ResponseBody, Option<Off<UnionWIPOffset>>) {
    use ResponseBody as B;
    use fb::ResponseBody as T;
    let (tag, offset) = match body {
        B::Empty => return (T::NONE, None),
        B::HelloReply(hello) => {
            let server_version = Some(string(fbb, &hello.server_version));
            let args = fb::HelloReplyArgs {
                protocol_version: hello.protocol_version,
                server_version,
                shard: hello.shard,
                shard_count: hello.shard_count,
                server_time_ms: hello.server_time.0,
            };
            (
                T::HelloReply,
                fb::HelloReply::create(fbb, &args).as_union_value(),
            )
        }
        B::Identity(identity) => {
            let args = fb::IdentityArgs {
                user_id: identity.user_id.0,
                role: role(identity.role),
                access_expires_at_ms: identity.access_expires_at.0,
            };
            (
                T::Identity,
                fb::Identity::create(fbb, &args).as_union_value(),
            )
        }
        B::SessionGrant(grant) => {
            let access_token = Some(string(fbb, &grant.access_token));
            let refresh_token = Some(string(fbb, &grant.refresh_token));
            let args = fb::SessionGrantArgs {
                user_id: grant.user_id.0,
                role: role(grant.role),
                access_token,
                access_expires_at_ms: grant.access_expires_at.0,
                refresh_token,
            };
            (
                T::SessionGrant,
                fb::SessionGrant::create(fbb, &args).as_union_value(),
            )
        }
        B::CategoryList(list) => {
            let categories = Some(tables(fbb, list, category));
            let args = fb::CategoryListArgs { categories };
            (
                T::CategoryList,
                fb::CategoryList::create(fbb, &args).as_union_value(),
            )
        }
        B::ProductPage(page) => {
            let products = Some(tables(fbb, &page.products, product_summary));
            let next_cursor = cursor(fbb, &page.next_cursor);
            let args = fb::ProductPageArgs {
                products,
                next_cursor,
                total: page.total,
            };
            (
                T::ProductPage,
                fb::ProductPage::create(fbb, &args).as_union_value(),
            )
        }
        B::ProductDetail(value) => {
            let product = Some(product(fbb, value));
            let args = fb::ProductDetailArgs { product };
            (
                T::ProductDetail,
                fb::ProductDetail::create(fbb, &args).as_union_value(),
            )
        }
        B::StockLevel(level) => {
            let sku = Some(string(fbb, level.sku.as_str()));
            let args = fb::StockLevelArgs {
                sku,
                on_hand: level.on_hand,
                reserved: level.reserved,
                available: level.available,
            };
            (
                T::StockLevel,
                fb::StockLevel::create(fbb, &args).as_union_value(),
            )
        }
        B::SearchResults(results) => {
            let hits = Some(tables(fbb, &results.hits, product_summary));
            let next_cursor = cursor(fbb, &results.next_cursor);
            let args = fb::SearchResultsArgs {
                hits,
                total: results.total,
                next_cursor,
            };
            (
                T::SearchResults,
                fb::SearchResults::create(fbb, &args).as_union_value(),
            )
        }
        B::Suggestions(list) => {
            let suggestions = Some(strings(fbb, list));
            let args = fb::SuggestionsArgs { suggestions };
            (
                T::Suggestions,
                fb::Suggestions::create(fbb, &args).as_union_value(),
            )
        }
        B::CartView(cart) => {
            let lines = Some(tables(fbb, &cart.lines, cart_line));
            let subtotal = opt_money(fbb, &cart.subtotal);
            let args = fb::CartViewArgs {
                lines,
                subtotal,
                item_count: cart.item_count,
            };
            (
                T::CartView,
                fb::CartView::create(fbb, &args).as_union_value(),
            )
        }
        B::OrderView(value) => {
            let order = Some(order(fbb, value));
            let args = fb::OrderViewArgs { order };
            (
                T::OrderView,
                fb::OrderView::create(fbb, &args).as_union_value(),
            )
        }
        B::OrderPage(page) => {
            let orders = Some(tables(fbb, &page.orders, order));
            let next_cursor = cursor(fbb, &page.next_cursor);
            let args = fb::OrderPageArgs {
                orders,
                next_cursor,
            };
            (
                T::OrderPage,
                fb::OrderPage::create(fbb, &args).as_union_value(),
            )
        }
        B::PaymentView(payment) => {
            let amount = Some(money(fbb, &payment.amount));
            let refunded = opt_money(fbb, &payment.refunded);
            let last_error = opt_string(fbb, payment.last_error.as_deref());
            let args = fb::PaymentViewArgs {
                order_id: payment.order_id.0,
                status: payment_status(payment.status),
                amount,
                refunded,
                attempts: payment.attempts,
                last_error,
                updated_at_ms: payment.updated_at.0,
            };
            (
                T::PaymentView,
                fb::PaymentView::create(fbb, &args).as_union_value(),
            )
        }
        B::Profile(profile) => {
            let email = Some(string(fbb, &profile.email));
            let name = opt_string(fbb, profile.name.as_deref());
            let args = fb::ProfileArgs {
                user_id: profile.user_id.0,
                email,
                name,
                role: role(profile.role),
                created_at_ms: profile.created_at.0,
            };
            (T::Profile, fb::Profile::create(fbb, &args).as_union_value())
        }
        B::AddressList(list) => {
            let addresses = Some(tables(fbb, list, address));
            let args = fb::AddressListArgs { addresses };
            (
                T::AddressList,
                fb::AddressList::create(fbb, &args).as_union_value(),
            )
        }
        B::Address(value) => (T::Address, address(fbb, value).as_union_value()),
    };
    (tag, Some(offset))
}

// ---------------------------------------------------------------------------
// Event bodies

fn event_body(fbb: &mut Fbb, body: &api::EventBody) -> (fb::EventBody, Off<UnionWIPOffset>) {
    use api::EventBody as E;
    use fb::EventBody as T;
    match body {
        E::OrderStatusChanged {
            order_id,
            status,
            previous,
        } => {
            let args = fb::OrderStatusChangedArgs {
                order_id: order_id.0,
                status: order_status(*status),
                previous: order_status(*previous),
            };
            let offset = fb::OrderStatusChanged::create(fbb, &args);
            (T::OrderStatusChanged, offset.as_union_value())
        }
        E::PaymentResult {
            order_id,
            status,
            message,
        } => {
            let message = opt_string(fbb, message.as_deref());
            let args = fb::PaymentResultArgs {
                order_id: order_id.0,
                status: payment_status(*status),
                message,
            };
            (
                T::PaymentResult,
                fb::PaymentResult::create(fbb, &args).as_union_value(),
            )
        }
        E::StockLeft {
            product_id,
            sku,
            available,
        } => {
            let product_id = Some(string(fbb, product_id.as_str()));
            let sku = Some(string(fbb, sku.as_str()));
            let args = fb::StockLeftArgs {
                product_id,
                sku,
                available: *available,
            };
            (
                T::StockLeft,
                fb::StockLeft::create(fbb, &args).as_union_value(),
            )
        }
        E::WaitingRoomPosition {
            room,
            position,
            estimated_wait_ms,
            admitted,
        } => {
            let room = Some(string(fbb, room));
            let args = fb::WaitingRoomPositionArgs {
                room,
                position: *position,
                estimated_wait_ms: *estimated_wait_ms,
                admitted: *admitted,
            };
            let offset = fb::WaitingRoomPosition::create(fbb, &args);
            (T::WaitingRoomPosition, offset.as_union_value())
        }
    }
}
