//! The shop as the load generator sees it, over either front door: QUIC
//! through the Rust SDK, or the HTTP/JSON bridge as a browser or a CDN's
//! origin fetch reaches it. Each call returns what the scenarios read, so
//! the two targets run the very same actions and checks.
//!
//! Over HTTP each shopper keeps its own keep-alive connections (HTTP/1.1
//! carries one request at a time, so a shopper with several actions in
//! flight opens one per action, and reuses them), signs in with a bearer
//! token and keeps its guest cart in a device cookie.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use souk_client::api::{
    ApiError, BrowseCategory, BrowseSort, CategoryId, Checkout, Cursor, DeviceId, ErrorStatus,
    IdempotencyKey, OrderId, OrderStatus, ProductId, RestockMode, Sku, StockLevel, UnixMillis,
};
use souk_client::{Client, ClientConfig, ClientError};

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Quic(ClientConfig),
    Http { addr: SocketAddr, timeout: Duration },
}

impl Endpoint {
    pub fn address(&self) -> SocketAddr {
        match self {
            Endpoint::Quic(config) => config.server,
            Endpoint::Http { addr, .. } => *addr,
        }
    }
}

/// An order as the end-of-run checks read it.
#[derive(Debug, Clone)]
pub struct OrderSummary {
    pub status: OrderStatus,
    pub created_at: UnixMillis,
    pub lines: Vec<(Sku, u32)>,
}

/// One shopper's (or the setup's) way into the shop.
pub enum Shop {
    Quic(Client),
    Http(HttpShop),
}

impl Shop {
    pub async fn connect(endpoint: &Endpoint) -> Result<Shop, ClientError> {
        match endpoint {
            Endpoint::Quic(config) => Client::connect(config.clone()).await.map(Shop::Quic),
            Endpoint::Http { addr, timeout } => {
                let shop = HttpShop {
                    addr: *addr,
                    timeout: *timeout,
                    idle: RefCell::default(),
                    bearer: RefCell::default(),
                };
                // Fail here, as a QUIC connect would, if nobody listens.
                let connection = shop.take_connection().await?;
                shop.idle.borrow_mut().push(connection);
                Ok(Shop::Http(shop))
            }
        }
    }

    pub fn close(&self) {
        match self {
            Shop::Quic(client) => client.close(),
            Shop::Http(shop) => shop.idle.borrow_mut().clear(),
        }
    }

    /// Categories that hold products.
    pub async fn category_ids(&self) -> Result<Vec<CategoryId>, ClientError> {
        match self {
            Shop::Quic(client) => Ok(client
                .list_categories()
                .await?
                .into_iter()
                .filter(|c| c.product_count > 0)
                .map(|c| c.id)
                .collect()),
            Shop::Http(shop) => {
                let list = shop.call(Method::GET, "/v1/categories", None, None).await?;
                Ok(array(&list["categories"])
                    .iter()
                    .filter(|c| c["product_count"].as_u64().unwrap_or(0) > 0)
                    .filter_map(|c| CategoryId::new(text(&c["id"])).ok())
                    .collect())
            }
        }
    }

    /// A page of product ids, and the cursor to the next.
    pub async fn browse(
        &self,
        query: BrowseCategory,
    ) -> Result<(Vec<ProductId>, Option<Cursor>), ClientError> {
        match self {
            Shop::Quic(client) => {
                let page = client.browse(query).await?;
                let ids = page.products.into_iter().map(|p| p.id).collect();
                Ok((ids, page.next_cursor))
            }
            Shop::Http(shop) => {
                let sort = match query.sort {
                    BrowseSort::NameAsc => "name_asc",
                    BrowseSort::NameDesc => "name_desc",
                    BrowseSort::PriceAsc => "price_asc",
                    BrowseSort::PriceDesc => "price_desc",
                    BrowseSort::Newest => "newest",
                };
                let mut path = format!("/v1/products?sort={sort}&limit={}", query.limit);
                if let Some(category) = &query.category_id {
                    path.push_str(&format!("&category={}", escape(category.as_str())));
                }
                if let Some(cursor) = &query.cursor {
                    path.push_str(&format!("&cursor={}", escape(&cursor.0)));
                }
                let page = shop.call(Method::GET, &path, None, None).await?;
                let ids = array(&page["products"])
                    .iter()
                    .filter_map(|p| ProductId::new(text(&p["id"])).ok())
                    .collect();
                let next = page["next_cursor"].as_str().map(|c| Cursor(c.to_owned()));
                Ok((ids, next))
            }
        }
    }

    /// A product's detail, with live stock; returns its first SKU.
    pub async fn product(&self, product: &ProductId) -> Result<Option<Sku>, ClientError> {
        match self {
            Shop::Quic(client) => {
                let detail = client.get_product(product).await?;
                Ok(detail.variants.first().map(|v| v.sku.clone()))
            }
            Shop::Http(shop) => {
                let path = format!("/v1/products/{}", escape(product.as_str()));
                let detail = shop.call(Method::GET, &path, None, None).await?;
                Ok(array(&detail["variants"])
                    .first()
                    .and_then(|v| Sku::new(text(&v["sku"])).ok()))
            }
        }
    }

    /// The server's clock now (to the second over HTTP, from `Date`).
    pub async fn server_time(&self) -> Result<UnixMillis, ClientError> {
        match self {
            Shop::Quic(client) => Ok(client.hello().await?.server_time),
            Shop::Http(shop) => shop.server_time().await,
        }
    }

    pub async fn register(&self, email: &str, password: &str) -> Result<(), ClientError> {
        match self {
            Shop::Quic(client) => client
                .register(email, password, Some("loadgen"))
                .await
                .map(drop),
            Shop::Http(shop) => {
                let body = json!({"email": email, "password": password, "name": "loadgen"});
                let session = shop
                    .call(Method::POST, "/v1/account/register", Some(body), None)
                    .await?;
                shop.keep_token(&session);
                Ok(())
            }
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<(), ClientError> {
        match self {
            Shop::Quic(client) => client.login(email, password, None).await.map(drop),
            Shop::Http(shop) => {
                let body = json!({"email": email, "password": password});
                let session = shop
                    .call(Method::POST, "/v1/account/login", Some(body), None)
                    .await?;
                shop.keep_token(&session);
                Ok(())
            }
        }
    }

    pub async fn restock(
        &self,
        sku: &Sku,
        quantity: i64,
        mode: RestockMode,
    ) -> Result<StockLevel, ClientError> {
        match self {
            Shop::Quic(client) => client.admin_restock(sku, quantity, mode).await,
            Shop::Http(shop) => {
                let mode = match mode {
                    RestockMode::Add => "add",
                    RestockMode::Set => "set",
                };
                let path = format!("/v1/admin/stock/{}", escape(sku.as_str()));
                let body = json!({"quantity": quantity, "mode": mode});
                let level = shop.call(Method::POST, &path, Some(body), None).await?;
                Ok(StockLevel {
                    sku: sku.clone(),
                    on_hand: level["on_hand"].as_i64().unwrap_or(0),
                    reserved: level["reserved"].as_i64().unwrap_or(0),
                    available: level["available"].as_i64().unwrap_or(0),
                })
            }
        }
    }

    /// The cart of the signed-in user, or of `device` (over HTTP the
    /// device is the shopper's cookie).
    pub async fn view_cart(&self, device: Option<DeviceId>) -> Result<(), ClientError> {
        match self {
            Shop::Quic(client) => client.get_cart(device).await.map(drop),
            Shop::Http(shop) => shop
                .call(Method::GET, "/v1/cart", None, device.as_ref())
                .await
                .map(drop),
        }
    }

    pub async fn add_to_cart(
        &self,
        device: Option<DeviceId>,
        sku: &Sku,
        quantity: u32,
    ) -> Result<(), ClientError> {
        match self {
            Shop::Quic(client) => client.add_to_cart(device, sku, quantity).await.map(drop),
            Shop::Http(shop) => {
                let body = json!({"sku": sku.as_str(), "quantity": quantity});
                shop.call(Method::POST, "/v1/cart/lines", Some(body), device.as_ref())
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn update_cart_line(
        &self,
        device: Option<DeviceId>,
        sku: &Sku,
        quantity: u32,
    ) -> Result<(), ClientError> {
        match self {
            Shop::Quic(client) => client
                .update_cart_line(device, sku, quantity)
                .await
                .map(drop),
            Shop::Http(shop) => {
                let path = format!("/v1/cart/lines/{}", escape(sku.as_str()));
                let body = json!({"quantity": quantity});
                shop.call(Method::PUT, &path, Some(body), device.as_ref())
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn checkout(
        &self,
        checkout: Checkout,
        key: IdempotencyKey,
    ) -> Result<OrderId, ClientError> {
        match self {
            Shop::Quic(client) => client.checkout(checkout, key).await.map(|o| o.id),
            Shop::Http(shop) => {
                let lines: Vec<Value> = checkout
                    .lines
                    .iter()
                    .map(|l| json!({"sku": l.sku.as_str(), "quantity": l.quantity}))
                    .collect();
                let body = json!({
                    "payment_method_token": checkout.payment_method_token,
                    "lines": lines,
                });
                let order = shop
                    .call_with_key(Method::POST, "/v1/checkout", Some(body), key)
                    .await?;
                decimal_order_id(&order["id"])
            }
        }
    }

    pub async fn order(&self, id: OrderId) -> Result<OrderId, ClientError> {
        match self {
            Shop::Quic(client) => client.get_order(id).await.map(|o| o.id),
            Shop::Http(shop) => {
                let path = format!("/v1/orders/{}", id.0);
                let order = shop.call(Method::GET, &path, None, None).await?;
                decimal_order_id(&order["id"])
            }
        }
    }

    /// A page of the user's orders, newest first.
    pub async fn orders(
        &self,
        cursor: Option<Cursor>,
        limit: u16,
    ) -> Result<(Vec<OrderSummary>, Option<Cursor>), ClientError> {
        match self {
            Shop::Quic(client) => {
                let page = client.list_orders(cursor, limit).await?;
                let orders = page
                    .orders
                    .into_iter()
                    .map(|o| OrderSummary {
                        status: o.status,
                        created_at: o.created_at,
                        lines: o.lines.into_iter().map(|l| (l.sku, l.quantity)).collect(),
                    })
                    .collect();
                Ok((orders, page.next_cursor))
            }
            Shop::Http(shop) => {
                let mut path = format!("/v1/orders?limit={limit}");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={}", escape(&cursor.0)));
                }
                let page = shop.call(Method::GET, &path, None, None).await?;
                let mut orders = Vec::new();
                for order in array(&page["orders"]) {
                    orders.push(OrderSummary {
                        status: order_status(text(&order["status"]))?,
                        created_at: UnixMillis(order["created_at"].as_u64().unwrap_or(0)),
                        lines: array(&order["lines"])
                            .iter()
                            .filter_map(|l| {
                                let sku = Sku::new(text(&l["sku"])).ok()?;
                                Some((sku, l["quantity"].as_u64()? as u32))
                            })
                            .collect(),
                    });
                }
                let next = page["next_cursor"].as_str().map(|c| Cursor(c.to_owned()));
                Ok((orders, next))
            }
        }
    }
}

/// A shopper over the HTTP bridge.
pub struct HttpShop {
    addr: SocketAddr,
    timeout: Duration,
    /// Keep-alive connections not in use.
    idle: RefCell<Vec<SendRequest<Full<Bytes>>>>,
    bearer: RefCell<Option<String>>,
}

impl HttpShop {
    async fn take_connection(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        loop {
            let Some(mut sender) = self.idle.borrow_mut().pop() else {
                break;
            };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn keep_token(&self, session: &Value) {
        *self.bearer.borrow_mut() = session["access_token"].as_str().map(str::to_owned);
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        device: Option<&DeviceId>,
    ) -> Result<Value, ClientError> {
        let mut request = self.request(method, path, body.is_some());
        if let Some(device) = device {
            request = request.header("cookie", format!("souk_device={device}"));
        }
        self.send(request, body).await.map(|(_, json)| json)
    }

    async fn call_with_key(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: IdempotencyKey,
    ) -> Result<Value, ClientError> {
        let request = self
            .request(method, path, body.is_some())
            .header("idempotency-key", format!("{:032x}", key.0));
        self.send(request, body).await.map(|(_, json)| json)
    }

    fn request(&self, method: Method, path: &str, json: bool) -> hyper::http::request::Builder {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if json {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = self.bearer.borrow().as_deref() {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
    }

    async fn server_time(&self) -> Result<UnixMillis, ClientError> {
        let request = self.request(Method::GET, "/healthz", false);
        let (headers, _) = self.send(request, None).await?;
        let date = headers
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(httpdate)
            .ok_or_else(|| ClientError::UnexpectedReply("no Date header".into()))?;
        Ok(date)
    }

    async fn send(
        &self,
        request: hyper::http::request::Builder,
        body: Option<Value>,
    ) -> Result<(hyper::HeaderMap, Value), ClientError> {
        let bytes = body.map_or_else(Bytes::new, |json| {
            Bytes::from(serde_json::to_vec(&json).expect("JSON serializes"))
        });
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let exchange = async {
            let mut sender = self.take_connection().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            // Whole exchange done: the connection may carry the next one.
            self.idle.borrow_mut().push(sender);
            Ok::<_, ClientError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)??;
        if parts.status.is_success() {
            let json = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ClientError::UnexpectedReply(e.to_string()))?
            };
            return Ok((parts.headers, json));
        }
        Err(problem(parts.status, &body))
    }
}

/// An RFC 9457 problem as the SDK's error, by its `code`.
fn problem(status: StatusCode, body: &[u8]) -> ClientError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = json["code"].as_str().unwrap_or("");
    let status = match code {
        "BadRequest" => ErrorStatus::BadRequest,
        "Unauthenticated" => ErrorStatus::Unauthenticated,
        "Forbidden" => ErrorStatus::Forbidden,
        "NotFound" => ErrorStatus::NotFound,
        "Conflict" => ErrorStatus::Conflict,
        "InsufficientStock" => ErrorStatus::InsufficientStock,
        "LimitExceeded" => ErrorStatus::LimitExceeded,
        "Busy" => ErrorStatus::Busy,
        "Unavailable" => ErrorStatus::Unavailable,
        "NotOffered" => ErrorStatus::NotOffered,
        "Internal" => ErrorStatus::Internal,
        _ => {
            return ClientError::UnexpectedReply(format!("HTTP {status} without a problem code"));
        }
    };
    let mut error = ApiError::new(status, json["detail"].as_str().unwrap_or(""));
    error.retry_after_ms = json["retry_after_ms"].as_u64().unwrap_or(0) as u32;
    ClientError::Api(error)
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_owned()
}

fn decimal_order_id(value: &Value) -> Result<OrderId, ClientError> {
    value
        .as_str()
        .and_then(|id| id.parse().ok())
        .map(OrderId)
        .ok_or_else(|| ClientError::UnexpectedReply(format!("order id {value}")))
}

fn order_status(text: String) -> Result<OrderStatus, ClientError> {
    Ok(match text.as_str() {
        "pending_payment" => OrderStatus::PendingPayment,
        "paid" => OrderStatus::Paid,
        "fulfilled" => OrderStatus::Fulfilled,
        "cancelled" => OrderStatus::Cancelled,
        "expired" => OrderStatus::Expired,
        "refunded" => OrderStatus::Refunded,
        other => {
            return Err(ClientError::UnexpectedReply(format!(
                "order status {other}"
            )));
        }
    })
}

/// Percent-escapes what a path segment or query value cannot carry.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix milliseconds.
fn httpdate(text: &str) -> Option<UnixMillis> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|n| n.parse().ok()).collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UnixMillis(u64::try_from(seconds).ok()? * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_read_as_unix_time() {
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UnixMillis(784_111_777_000))
        );
        assert_eq!(httpdate("yesterday"), None);
    }

    #[test]
    fn problems_become_the_sdk_errors() {
        let body = br#"{"code":"InsufficientStock","detail":"gone","status":409}"#;
        let error = problem(StatusCode::CONFLICT, body);
        assert_eq!(error.status(), Some(ErrorStatus::InsufficientStock));
        assert!(matches!(
            problem(StatusCode::BAD_GATEWAY, b"<html>"),
            ClientError::UnexpectedReply(_)
        ));
    }
}
