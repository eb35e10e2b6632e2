//! The routes: each turns an HTTP request into an `api::Request`, hands it
//! to `flow::dispatch`, and the reply into JSON. Each handler carries its
//! OpenAPI description, which `openapi` gathers into the document.
//!
//! A request built from JSON is encoded to a FlatBuffers frame and decoded
//! back before dispatch: the wire decoder is where every length, count and
//! range bound lives, so the bridge applies exactly the QUIC front's
//! validation, with its field-naming errors, instead of a second copy.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use souk_wire::api::{
    self, AddressId, BrowseCategory, BrowseSort, CartLineChange, CategoryId, DeviceId, OrderId,
    PriceRange, ProductId, RequestBody, ResponseBody, Sku,
};
use souk_wire::{codec, limits as wire_limits};
use utoipa::{IntoParams, ToSchema};

use super::exchange::{self, Exchange};
use super::openapi::CommonResponses;
use super::problem::Problem;
use super::{HttpSettings, json};
use crate::domain::{Session, flow};
use crate::io::shard::Shard;
use crate::limits;

pub type Reply = Result<Response<Full<Bytes>>, Problem>;

pub(super) fn service(
    shard: Rc<Shard>,
    settings: Arc<HttpSettings>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> {
    hyper::service::service_fn(move |request| {
        let shard = shard.clone();
        let settings = settings.clone();
        async move {
            // Boxed: the handlers' state is kilobytes (see serve_stream).
            Ok(Box::pin(handle(shard, settings, peer, request)).await)
        }
    })
}

/// One request in progress.
pub(super) struct Call {
    shard: Rc<Shard>,
    settings: Arc<HttpSettings>,
    parts: Parts,
    body: Option<Incoming>,
    exchange: Exchange,
    session: RefCell<Session>,
}

async fn handle(
    shard: Rc<Shard>,
    settings: Arc<HttpSettings>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    shard.stats_for_http().requests.increment();
    let (parts, body) = request.into_parts();
    let exchange = Exchange::read(&parts.headers, peer, &settings);
    let session = Session {
        remote: Some(exchange.client),
        ..Session::default()
    };
    let mut call = Call {
        shard,
        settings,
        parts,
        body: Some(body),
        exchange,
        session: RefCell::new(session),
    };
    let mut response = match route(&mut call).await {
        Ok(response) => response,
        Err(problem) => {
            call.shard.stats_for_http().request_errors.increment();
            problem.response()
        }
    };
    if call.parts.method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    call.exchange.finish(&mut response);
    response
}

async fn route(call: &mut Call) -> Reply {
    let method = call.parts.method.clone();
    if method == Method::OPTIONS {
        return Ok(call.exchange.preflight());
    }
    call.exchange.check_csrf(&method)?;
    let path = call.parts.uri.path().to_owned();
    let segments: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| Problem::bad_request("the path is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get = method == Method::GET || method == Method::HEAD;
    let (post, put, patch, delete) = (
        method == Method::POST,
        method == Method::PUT,
        method == Method::PATCH,
        method == Method::DELETE,
    );
    match segments.as_slice() {
        [""] if get => storefront(call),
        ["assets", name] if get => asset(call, name),
        ["healthz"] if get => healthz(call),
        ["readyz"] if get => readyz(call).await,
        ["v1", "openapi.json"] if get => openapi_document(call),
        ["v1", "categories"] if get => list_categories(call).await,
        ["v1", "products"] if get => browse_products(call).await,
        ["v1", "products", id] if get => get_product(call, id).await,
        ["v1", "cart"] if get => get_cart(call).await,
        ["v1", "cart", "lines"] if post => add_cart_line(call).await,
        ["v1", "cart", "lines", sku] if put => set_cart_line(call, sku).await,
        ["v1", "cart", "lines", sku] if delete => remove_cart_line(call, sku).await,
        ["v1", "checkout"] if post => checkout(call).await,
        ["v1", "orders"] if get => list_orders(call).await,
        ["v1", "orders", id] if get => get_order(call, id).await,
        ["v1", "orders", id, "cancel"] if post => cancel_order(call, id).await,
        ["v1", "orders", id, "payment"] if get => get_payment(call, id).await,
        ["v1", "account", "register"] if post => register(call).await,
        ["v1", "account", "login"] if post => login(call).await,
        ["v1", "account", "session", "refresh"] if post => refresh(call).await,
        ["v1", "account", "session", "logout"] if post => logout(call).await,
        ["v1", "account", "profile"] if get => get_profile(call).await,
        ["v1", "account", "profile"] if patch => update_profile(call).await,
        ["v1", "account", "addresses"] if get => list_addresses(call).await,
        ["v1", "account", "addresses"] if post => add_address(call).await,
        ["v1", "account", "addresses", id] if put => replace_address(call, id).await,
        ["v1", "account", "addresses", id] if delete => delete_address(call, id).await,
        ["v1", "admin", "products", id] if put => upsert_product(call, id).await,
        ["v1", "admin", "stock", sku] if post => restock(call, sku).await,
        _ => Err(unrouted(&segments, &method)),
    }
}

/// 405 for a known path with another method, 404 otherwise.
fn unrouted(segments: &[&str], method: &Method) -> Problem {
    let known = matches!(
        segments,
        [""] | ["healthz"]
            | ["readyz"]
            | ["v1", "openapi.json"]
            | ["v1", "categories"]
            | ["v1", "products", ..]
            | ["v1", "cart", ..]
            | ["v1", "checkout"]
            | ["v1", "orders", ..]
            | ["v1", "account", ..]
            | ["v1", "admin", ..]
    );
    if known && let Some(allow) = allowed_methods(segments) {
        let mut problem = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not offered on this path"),
        );
        problem.allow = Some(allow);
        problem
    } else {
        Problem::not_found("no such resource")
    }
}

/// The methods `route` serves on a path, for the `Allow` header of a 405.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        [""] | ["healthz"] | ["readyz"] | ["v1", "openapi.json"] | ["v1", "categories"] => {
            "GET, HEAD"
        }
        ["v1", "products"] | ["v1", "products", _] | ["v1", "cart"] | ["v1", "orders"] => {
            "GET, HEAD"
        }
        ["v1", "orders", _] | ["v1", "orders", _, "payment"] => "GET, HEAD",
        ["v1", "cart", "lines"] | ["v1", "checkout"] | ["v1", "orders", _, "cancel"] => "POST",
        ["v1", "cart", "lines", _] => "PUT, DELETE",
        ["v1", "account", "register" | "login"] => "POST",
        ["v1", "account", "session", "refresh" | "logout"] => "POST",
        ["v1", "account", "profile"] => "GET, HEAD, PATCH",
        ["v1", "account", "addresses"] => "GET, HEAD, POST",
        ["v1", "account", "addresses", _] => "PUT, DELETE",
        ["v1", "admin", "products", _] => "PUT",
        ["v1", "admin", "stock", _] => "POST",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Plumbing shared by the handlers

impl Call {
    /// Dispatches `body` exactly as the QUIC front would: through the
    /// wire codec, then `flow::dispatch`.
    async fn dispatch(&self, body: RequestBody) -> Result<ResponseBody, Problem> {
        let operation = body.operation();
        let idempotency_key = match exchange::idempotency_key(&self.parts.headers)? {
            Some(key) => Some(key),
            None if operation.is_mutating() => Some(api::IdempotencyKey(rand::random())),
            None => None,
        };
        let request = api::Request {
            idempotency_key,
            body,
        };
        let request =
            self.shard
                .with_encoder(|encoder| match encoder.request(&request) {
                    Ok(frame) => codec::decode_request(frame)
                        .map_err(|e| Problem::bad_request(e.to_string())),
                    Err(error) => Err(Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BadRequest",
                        error.to_string(),
                    )),
                })?;
        let response = flow::dispatch(&self.shard, &self.session, request).await;
        response.map_err(Problem::from)
    }

    /// Binds the caller's identity, when a token came with the request. A
    /// token that does not verify is refused, rather than the request run
    /// as a guest's the caller did not mean.
    async fn authenticate(&self) -> Result<bool, Problem> {
        let Some(token) = self.exchange.access_token() else {
            return Ok(false);
        };
        let body = RequestBody::Authenticate {
            access_token: token.to_owned(),
        };
        let request = api::Request {
            idempotency_key: None,
            body,
        };
        flow::dispatch(&self.shard, &self.session, request)
            .await
            .map_err(Problem::from)?;
        Ok(true)
    }

    /// Binds the caller's identity, or refuses the request: for routes
    /// that are a signed-in user's only. Checked before the body is read,
    /// so an anonymous caller learns nothing about what it would accept.
    async fn require_sign_in(&self) -> Result<(), Problem> {
        if self.authenticate().await? {
            return Ok(());
        }
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "sign in first: a bearer token or the session cookie",
        ))
    }

    /// The guest's device, from its cookie or made now and set as one.
    fn device(&mut self) -> Result<DeviceId, Problem> {
        if let Some(device) = &self.exchange.device_cookie
            && let Ok(device) = DeviceId::new(device.clone())
        {
            return Ok(device);
        }
        let made = format!("web-{:032x}", rand::random::<u128>());
        self.exchange.set_device(&made);
        self.exchange.device_cookie = Some(made.clone());
        DeviceId::new(made).map_err(|_| Problem::bad_request("device id"))
    }

    /// The device for a cart request: none once signed in, the user's
    /// cart is theirs wherever they are.
    async fn cart_device(&mut self) -> Result<Option<DeviceId>, Problem> {
        if self.authenticate().await? {
            return Ok(None);
        }
        self.device().map(Some)
    }

    async fn body<T: DeserializeOwned>(&mut self) -> Result<T, Problem> {
        let bytes = self.body_bytes().await?;
        if bytes.is_empty() {
            return Err(Problem::bad_request("a JSON body is required"));
        }
        parse_json(&bytes)
    }

    /// A body that may be absent or `null` (`{}` is assumed).
    async fn optional_body<T: DeserializeOwned + Default>(&mut self) -> Result<T, Problem> {
        let bytes = self.body_bytes().await?;
        if bytes.is_empty() {
            return Ok(T::default());
        }
        Ok(parse_json::<Option<T>>(&bytes)?.unwrap_or_default())
    }

    async fn body_bytes(&mut self) -> Result<Bytes, Problem> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let limited = Limited::new(body, wire_limits::REQUEST_BYTES_MAX);
        let collected = tokio::time::timeout(limits::REQUEST_READ_TIMEOUT, limited.collect()).await;
        let bytes = match collected {
            Err(_) => {
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "BadRequest",
                    format!(
                        "the body did not arrive within {} s",
                        limits::REQUEST_READ_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(Err(error)) => {
                if error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Err(Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BadRequest",
                        format!("the body is over {} bytes", wire_limits::REQUEST_BYTES_MAX),
                    ));
                }
                return Err(Problem::bad_request(format!("the body was cut: {error}")));
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        if !bytes.is_empty() {
            let json = self
                .parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    let essence = v.split(';').next().unwrap_or("").trim();
                    essence.eq_ignore_ascii_case("application/json")
                });
            if !json {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "BadRequest",
                    "send the body as Content-Type: application/json",
                ));
            }
        }
        Ok(bytes)
    }

    fn query<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        let query = self.parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map_err(|error| Problem::bad_request(format!("query: {error}")))
    }

    /// A catalog read: served from the shard's reply cache when it holds
    /// the same URL, with an ETag a CDN or browser revalidates against.
    async fn catalog_read(&self, body: RequestBody) -> Reply {
        let key = self
            .parts
            .uri
            .path_and_query()
            .map_or("", |p| p.as_str())
            .as_bytes()
            .to_vec();
        let now = Instant::now();
        if let Some(hit) = self.shard.http_cache_get(&key, now) {
            self.shard.stats_for_http().cache_hits.increment();
            return Ok(self.cached(hit));
        }
        let reply = self.dispatch(body).await?;
        let bytes = Bytes::from(encode(reply)?);
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
        let cached = CachedJson {
            etag: HeaderValue::from_str(&etag).expect("hex is a header value"),
            body: bytes,
        };
        self.shard.stats_for_http().cache_misses.increment();
        self.shard.http_cache_put(&key, cached.clone(), now);
        Ok(self.cached(cached))
    }

    fn cached(&self, cached: CachedJson) -> Response<Full<Bytes>> {
        let fresh = self
            .parts
            .headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|v| etag_matches(v.as_bytes(), cached.etag.as_bytes()));
        let mut response = if fresh {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            json_response(StatusCode::OK, cached.body)
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, cached.etag);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(limits::HTTP_CATALOG_CACHE_CONTROL),
        );
        response
    }

    /// A personal reply: never stored by a CDN or a shared cache.
    fn personal(&self, status: StatusCode, reply: ResponseBody) -> Reply {
        let mut response = match reply {
            ResponseBody::Empty => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            reply => json_response(status, Bytes::from(encode(reply)?)),
        };
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        Ok(response)
    }

    /// Signs the browser in: the access token in a short-lived cookie, the
    /// refresh token in one only the session routes see.
    fn signed_in(&mut self, status: StatusCode, reply: ResponseBody) -> Reply {
        let ResponseBody::SessionGrant(grant) = reply else {
            return Err(unexpected(&reply));
        };
        let now = self.shard.now_millis();
        let max_age = grant.access_expires_at.0.saturating_sub(now) / 1000;
        self.exchange.set_access(&grant.access_token, max_age);
        self.exchange.set_refresh(&grant.refresh_token);
        let session = json::Session {
            user_id: grant.user_id.0.to_string(),
            role: grant.role.into(),
            access_token: grant.access_token,
            access_expires_at: grant.access_expires_at.0,
        };
        let bytes = serde_json::to_vec(&session).expect("a session serializes");
        let mut response = json_response(status, Bytes::from(bytes));
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        Ok(response)
    }
}

/// A catalog reply as sent, with its ETag.
#[derive(Debug, Clone)]
pub struct CachedJson {
    pub etag: HeaderValue,
    pub body: Bytes,
}

/// `If-None-Match`: `*`, or a list of (possibly weak) tags.
fn etag_matches(header: &[u8], etag: &[u8]) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    let etag = std::str::from_utf8(etag).unwrap_or("");
    header.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
    })
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Parses JSON, naming the field that failed (`lines[0].quantity`). The
/// body is an object (or `null` where it is optional): serde would also
/// read a struct from an array, which no client means.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'n')) {
        return Err(Problem::bad_request("the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(format!("malformed JSON: {inner}"))
        } else if path == "." || path == "?" {
            // A missing or unknown field: serde names it in the message.
            Problem::bad_request(format!("body: {inner}"))
        } else {
            Problem::bad_request(format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|error| Problem::bad_request(format!("malformed JSON: {error}")))?;
    Ok(value)
}

fn unexpected(reply: &ResponseBody) -> Problem {
    tracing::error!(?reply, "a handler answered with an unexpected body");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal",
        "unexpected reply",
    )
}

/// A reply as its JSON bytes.
fn encode(reply: ResponseBody) -> Result<Vec<u8>, Problem> {
    use ResponseBody as B;
    let bytes = match reply {
        B::CategoryList(list) => serde_json::to_vec(&json::CategoryList::from(list)),
        B::ProductPage(page) => serde_json::to_vec(&json::ProductPage::from(page)),
        B::ProductDetail(product) => serde_json::to_vec(&json::Product::from(*product)),
        B::StockLevel(level) => serde_json::to_vec(&json::StockLevel::from(level)),
        B::CartView(cart) => serde_json::to_vec(&json::Cart::from(cart)),
        B::OrderView(order) => serde_json::to_vec(&json::Order::from(*order)),
        B::OrderPage(page) => serde_json::to_vec(&json::OrderPage::from(page)),
        B::PaymentView(payment) => serde_json::to_vec(&json::Payment::from(payment)),
        B::Profile(profile) => serde_json::to_vec(&json::Profile::from(profile)),
        B::AddressList(list) => serde_json::to_vec(&json::AddressList {
            addresses: list.into_iter().map(json::Address::from).collect(),
        }),
        B::Address(address) => serde_json::to_vec(&json::Address::from(address)),
        reply @ (B::Empty
        | B::HelloReply(_)
        | B::Identity(_)
        | B::SessionGrant(_)
        | B::SearchResults(_)
        | B::Suggestions(_)) => return Err(unexpected(&reply)),
    };
    Ok(bytes.expect("the JSON shapes serialize"))
}

fn sku(text: &str) -> Result<Sku, Problem> {
    Sku::new(text).map_err(|v| Problem::bad_request(format!("sku: {v}")))
}

fn product_id(text: &str) -> Result<ProductId, Problem> {
    ProductId::new(text).map_err(|v| Problem::bad_request(format!("product_id: {v}")))
}

/// A 64-bit id written in decimal, as the JSON carries it.
fn decimal_id(text: &str, what: &str) -> Result<u64, Problem> {
    text.parse()
        .map_err(|_| Problem::bad_request(format!("{what}: not a decimal id")))
}

fn order_id(text: &str) -> Result<OrderId, Problem> {
    decimal_id(text, "order_id").map(OrderId)
}

fn money(value: json::Money, field: &str) -> Result<api::Money, Problem> {
    let currency = api::Currency::new(&value.currency)
        .map_err(|v| Problem::bad_request(format!("{field}.currency: {v}")))?;
    Ok(api::Money::new(value.minor_units, currency))
}

fn page_limit(limit: Option<u16>) -> Result<u16, Problem> {
    match limit {
        None => Ok(wire_limits::PAGE_LIMIT_DEFAULT),
        Some(n) if (1..=wire_limits::PAGE_LIMIT_MAX).contains(&n) => Ok(n),
        Some(_) => Err(Problem::bad_request(format!(
            "limit: 1 to {}",
            wire_limits::PAGE_LIMIT_MAX
        ))),
    }
}

// ---------------------------------------------------------------------------
// Storefront, health and the document

fn storefront(call: &Call) -> Reply {
    let assets = &call.settings.assets;
    let etag = HeaderValue::from_str(&assets.index_etag).expect("hex is a header value");
    let cached = CachedJson {
        etag,
        body: assets.index.clone(),
    };
    let mut response = call.cached(cached);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page names the current assets: always revalidated.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn asset(call: &Call, name: &str) -> Reply {
    let file = call
        .settings
        .assets
        .file(name)
        .ok_or_else(|| Problem::not_found("no such asset"))?;
    let mut response = Response::new(Full::new(file.bytes.clone()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

fn health(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&json::Health {
        status: text.to_owned(),
    })
    .expect("health serializes");
    let mut response = json_response(status, Bytes::from(body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Alive: the shard's event loop answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = json::Health)))]
fn healthz(_call: &Call) -> Reply {
    Ok(health(StatusCode::OK, "ok"))
}

/// Ready for traffic: not draining, the store takes writes, and every
/// shard answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = json::Health),
        (status = 503, description = "Draining, the store refuses writes, or a shard does not answer", body = json::Health),
    ))]
async fn readyz(call: &Call) -> Reply {
    if call.shard.draining() {
        return Ok(health(StatusCode::SERVICE_UNAVAILABLE, "draining"));
    }
    if !call.shard.store_healthy() {
        return Ok(health(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store refuses writes after a failed write or fsync: restart",
        ));
    }
    match call.shard.probe_shards().await {
        Ok(()) => Ok(health(StatusCode::OK, "ok")),
        Err(why) => Ok(health(StatusCode::SERVICE_UNAVAILABLE, &why)),
    }
}

fn openapi_document(_call: &Call) -> Reply {
    let mut response = json_response(StatusCode::OK, super::openapi::document_bytes());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

// ---------------------------------------------------------------------------
// Catalog

/// Every category.
#[utoipa::path(get, path = "/v1/categories", tag = "catalog",
    responses(
        (status = 200, description = "Every category", body = json::CategoryList),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
    ))]
async fn list_categories(call: &Call) -> Reply {
    call.catalog_read(RequestBody::ListCategories).await
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    NameAsc,
    NameDesc,
    PriceAsc,
    PriceDesc,
    Newest,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseQuery {
    /// Only products of this category.
    #[param(pattern = "^[!-~]{1,64}$")]
    category: Option<String>,
    #[param(inline)]
    sort: Option<Sort>,
    /// Lowest price, in minor units.
    #[param(minimum = 0)]
    min_price: Option<i64>,
    /// Highest price, in minor units.
    #[param(minimum = 0)]
    max_price: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^o:[0-9]{1,9}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u16>,
}

/// Browse products, a page at a time.
#[utoipa::path(get, path = "/v1/products", tag = "catalog", params(BrowseQuery),
    responses(
        (status = 200, description = "A page of products", body = json::ProductPage),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
    ))]
async fn browse_products(call: &Call) -> Reply {
    let query: BrowseQuery = call.query()?;
    let category_id = match query.category {
        Some(id) => {
            Some(CategoryId::new(id).map_err(|v| Problem::bad_request(format!("category: {v}")))?)
        }
        None => None,
    };
    let sort = match query.sort.unwrap_or(Sort::NameAsc) {
        Sort::NameAsc => BrowseSort::NameAsc,
        Sort::NameDesc => BrowseSort::NameDesc,
        Sort::PriceAsc => BrowseSort::PriceAsc,
        Sort::PriceDesc => BrowseSort::PriceDesc,
        Sort::Newest => BrowseSort::Newest,
    };
    let browse = BrowseCategory {
        category_id,
        sort,
        price: PriceRange {
            min_minor_units: query.min_price,
            max_minor_units: query.max_price,
        },
        cursor: query.cursor.map(api::Cursor),
        limit: page_limit(query.limit)?,
    };
    call.catalog_read(RequestBody::BrowseCategory(browse)).await
}

/// A product with its variants' live stock.
#[utoipa::path(get, path = "/v1/products/{product_id}", tag = "catalog",
    params(("product_id" = String, Path, pattern = "^[!-~]{1,64}$")),
    responses(
        (status = 200, description = "The product", body = json::Product),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
    ))]
async fn get_product(call: &Call, id: &str) -> Reply {
    let product_id = product_id(id)?;
    call.catalog_read(RequestBody::GetProduct { product_id })
        .await
}

// ---------------------------------------------------------------------------
// Cart and checkout

/// The cart: the signed-in user's, or the guest device's (cookie).
#[utoipa::path(get, path = "/v1/cart", tag = "cart",
    responses((status = 200, description = "The cart", body = json::Cart)))]
async fn get_cart(call: &mut Call) -> Reply {
    let device_id = call.cart_device().await?;
    let reply = call.dispatch(RequestBody::GetCart { device_id }).await?;
    call.personal(StatusCode::OK, reply)
}

/// Adds units of a SKU to the cart.
#[utoipa::path(post, path = "/v1/cart/lines", tag = "cart",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry safe")),
    request_body = json::NewCartLine,
    responses((status = 200, description = "The cart after the change", body = json::Cart)))]
async fn add_cart_line(call: &mut Call) -> Reply {
    let line: json::NewCartLine = call.body().await?;
    let device_id = call.cart_device().await?;
    let change = CartLineChange {
        device_id,
        sku: sku(&line.sku)?,
        quantity: line.quantity,
    };
    let reply = call.dispatch(RequestBody::AddToCart(change)).await?;
    call.personal(StatusCode::OK, reply)
}

/// Sets a line's quantity (0 removes it).
#[utoipa::path(put, path = "/v1/cart/lines/{sku}", tag = "cart",
    params(("sku" = String, Path, pattern = "^[!-~]{1,64}$"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry safe")),
    request_body = json::CartLineQuantity,
    responses((status = 200, description = "The cart after the change", body = json::Cart)))]
async fn set_cart_line(call: &mut Call, sku_text: &str) -> Reply {
    let sku = sku(sku_text)?;
    let line: json::CartLineQuantity = call.body().await?;
    let device_id = call.cart_device().await?;
    let change = CartLineChange {
        device_id,
        sku,
        quantity: line.quantity,
    };
    let reply = call.dispatch(RequestBody::UpdateCartLine(change)).await?;
    call.personal(StatusCode::OK, reply)
}

/// Removes a line.
#[utoipa::path(delete, path = "/v1/cart/lines/{sku}", tag = "cart",
    params(("sku" = String, Path, pattern = "^[!-~]{1,64}$"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry safe")),
    responses((status = 200, description = "The cart after the change", body = json::Cart)))]
async fn remove_cart_line(call: &mut Call, sku_text: &str) -> Reply {
    let sku = sku(sku_text)?;
    let device_id = call.cart_device().await?;
    let reply = call
        .dispatch(RequestBody::RemoveCartLine { device_id, sku })
        .await?;
    call.personal(StatusCode::OK, reply)
}

/// Places an order from the cart (or the lines given), reserving its stock
/// and charging the payment method. A retry with the same key returns the
/// first attempt's order.
#[utoipa::path(post, path = "/v1/checkout", tag = "orders",
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$",
        description = "Required: a retry with the same key returns the first result")),
    request_body = json::CheckoutRequest,
    responses((status = 201, description = "The order placed", body = json::Order)))]
async fn checkout(call: &mut Call) -> Reply {
    if !call.parts.headers.contains_key("idempotency-key") {
        return Err(Problem::bad_request(
            "checkout needs an Idempotency-Key header: a retry with the same key returns the \
             first result",
        ));
    }
    call.require_sign_in().await?;
    let body: json::CheckoutRequest = call.body().await?;
    let lines = body
        .lines
        .into_iter()
        .map(|line| {
            Ok(api::CheckoutLine {
                sku: sku(&line.sku)?,
                quantity: line.quantity,
            })
        })
        .collect::<Result<_, Problem>>()?;
    let checkout = api::Checkout {
        device_id: None,
        payment_method_token: body.payment_method_token,
        shipping_address_id: body
            .shipping_address_id
            .map(|id| decimal_id(&id, "shipping_address_id").map(AddressId))
            .transpose()?,
        expected_total: body
            .expected_total
            .map(|m| money(m, "expected_total"))
            .transpose()?,
        lines,
    };
    let reply = call.dispatch(RequestBody::Checkout(checkout)).await?;
    call.personal(StatusCode::CREATED, reply)
}

// ---------------------------------------------------------------------------
// Orders

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    #[param(pattern = "^b:[0-9]{1,19}$")]
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u16>,
}

/// The signed-in user's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(PageQuery),
    responses((status = 200, description = "A page of orders", body = json::OrderPage)))]
async fn list_orders(call: &mut Call) -> Reply {
    let query: PageQuery = call.query()?;
    call.require_sign_in().await?;
    let list = api::ListOrders {
        cursor: query.cursor.map(api::Cursor),
        limit: page_limit(query.limit)?,
    };
    let reply = call.dispatch(RequestBody::ListOrders(list)).await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, pattern = "^[0-9]{1,19}$", description = "Decimal order id")),
    responses((status = 200, description = "The order", body = json::Order)))]
async fn get_order(call: &mut Call, id: &str) -> Reply {
    let order_id = order_id(id)?;
    call.require_sign_in().await?;
    let reply = call.dispatch(RequestBody::GetOrder { order_id }).await?;
    call.personal(StatusCode::OK, reply)
}

/// Cancels an order not yet fulfilled; paid orders are refunded.
#[utoipa::path(post, path = "/v1/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = String, Path, pattern = "^[0-9]{1,19}$", description = "Decimal order id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry safe")),
    responses((status = 200, description = "The cancelled order", body = json::Order)))]
async fn cancel_order(call: &mut Call, id: &str) -> Reply {
    let order_id = order_id(id)?;
    call.require_sign_in().await?;
    let reply = call.dispatch(RequestBody::CancelOrder { order_id }).await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(get, path = "/v1/orders/{order_id}/payment", tag = "orders",
    params(("order_id" = String, Path, pattern = "^[0-9]{1,19}$", description = "Decimal order id")),
    responses((status = 200, description = "The order's payment", body = json::Payment)))]
async fn get_payment(call: &mut Call, id: &str) -> Reply {
    let order_id = order_id(id)?;
    call.require_sign_in().await?;
    let reply = call
        .dispatch(RequestBody::GetPaymentStatus { order_id })
        .await?;
    call.personal(StatusCode::OK, reply)
}

// ---------------------------------------------------------------------------
// Account

/// Creates an account and signs in; a guest cart on this device moves into
/// the new account's cart.
#[utoipa::path(post, path = "/v1/account/register", tag = "account",
    request_body = json::Registration,
    responses((status = 201, description = "Signed in; cookies set", body = json::Session)))]
async fn register(call: &mut Call) -> Reply {
    let body: json::Registration = call.body().await?;
    let register = api::Register {
        email: body.email,
        password: body.password,
        name: body.name,
    };
    let reply = call.dispatch(RequestBody::Register(register)).await?;
    if let Some(device) = call.exchange.device_cookie.clone()
        && let Ok(guest_device_id) = DeviceId::new(device)
    {
        // A failed merge leaves the guest cart where it was; the account
        // exists either way.
        let merged = call
            .dispatch(RequestBody::MergeCart { guest_device_id })
            .await;
        if let Err(problem) = merged {
            tracing::debug!(?problem, "guest cart not merged at registration");
        }
    }
    call.signed_in(StatusCode::CREATED, reply)
}

/// Signs in; a guest cart on this device moves into the account's cart.
#[utoipa::path(post, path = "/v1/account/login", tag = "account",
    request_body = json::Credentials,
    responses((status = 200, description = "Signed in; cookies set", body = json::Session)))]
async fn login(call: &mut Call) -> Reply {
    let body: json::Credentials = call.body().await?;
    let device_id = call
        .exchange
        .device_cookie
        .clone()
        .and_then(|d| DeviceId::new(d).ok());
    let login = api::Login {
        email: body.email,
        password: body.password,
        device_id,
    };
    let reply = call.dispatch(RequestBody::Login(login)).await?;
    call.signed_in(StatusCode::OK, reply)
}

/// Rotates the refresh cookie and issues a new access token.
#[utoipa::path(post, path = "/v1/account/session/refresh", tag = "account",
    responses((status = 200, description = "A new session; cookies set", body = json::Session)))]
async fn refresh(call: &mut Call) -> Reply {
    let Some(refresh_token) = call.exchange.refresh_cookie.clone() else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "no refresh cookie: sign in",
        ));
    };
    let reply = call
        .dispatch(RequestBody::Refresh { refresh_token })
        .await?;
    call.signed_in(StatusCode::OK, reply)
}

/// Signs this browser out (its refresh token is revoked), or every device.
#[utoipa::path(post, path = "/v1/account/session/logout", tag = "account",
    request_body(content = Option<json::Logout>),
    responses((status = 204, description = "Signed out; cookies cleared")))]
async fn logout(call: &mut Call) -> Reply {
    let body: json::Logout = call.optional_body().await?;
    if body.all_devices {
        call.authenticate().await?;
    } else if let Some(token) = call.exchange.refresh_cookie.clone() {
        flow::adopt_refresh_family(&call.shard, &call.session, &token)
            .await
            .map_err(Problem::from)?;
    }
    let reply = call
        .dispatch(RequestBody::Logout {
            all_devices: body.all_devices,
        })
        .await?;
    call.exchange.clear_session();
    call.personal(StatusCode::NO_CONTENT, reply)
}

#[utoipa::path(get, path = "/v1/account/profile", tag = "account",
    responses((status = 200, description = "The signed-in user's profile", body = json::Profile)))]
async fn get_profile(call: &mut Call) -> Reply {
    call.require_sign_in().await?;
    let reply = call.dispatch(RequestBody::GetProfile).await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(patch, path = "/v1/account/profile", tag = "account",
    request_body = json::ProfileChange,
    responses((status = 200, description = "The profile after the change", body = json::Profile)))]
async fn update_profile(call: &mut Call) -> Reply {
    call.require_sign_in().await?;
    let body: json::ProfileChange = call.body().await?;
    let reply = call
        .dispatch(RequestBody::UpdateProfile { name: body.name })
        .await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(get, path = "/v1/account/addresses", tag = "account",
    responses((status = 200, description = "The user's addresses", body = json::AddressList)))]
async fn list_addresses(call: &mut Call) -> Reply {
    call.require_sign_in().await?;
    let reply = call.dispatch(RequestBody::ListAddresses).await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(post, path = "/v1/account/addresses", tag = "account",
    request_body = json::Address,
    responses((status = 201, description = "The address stored", body = json::Address)))]
async fn add_address(call: &mut Call) -> Reply {
    call.require_sign_in().await?;
    let body: json::Address = call.body().await?;
    let address = body.into_api(AddressId(0));
    let reply = call.dispatch(RequestBody::UpsertAddress(address)).await?;
    call.personal(StatusCode::CREATED, reply)
}

#[utoipa::path(put, path = "/v1/account/addresses/{address_id}", tag = "account",
    params(("address_id" = String, Path, pattern = "^[0-9]{1,19}$", description = "Decimal address id")),
    request_body = json::Address,
    responses((status = 200, description = "The address stored", body = json::Address)))]
async fn replace_address(call: &mut Call, id: &str) -> Reply {
    let id = AddressId(decimal_id(id, "address_id")?);
    call.require_sign_in().await?;
    let body: json::Address = call.body().await?;
    let reply = call
        .dispatch(RequestBody::UpsertAddress(body.into_api(id)))
        .await?;
    call.personal(StatusCode::OK, reply)
}

#[utoipa::path(delete, path = "/v1/account/addresses/{address_id}", tag = "account",
    params(("address_id" = String, Path, pattern = "^[0-9]{1,19}$", description = "Decimal address id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_address(call: &mut Call, id: &str) -> Reply {
    let address_id = AddressId(decimal_id(id, "address_id")?);
    call.require_sign_in().await?;
    let reply = call
        .dispatch(RequestBody::DeleteAddress { address_id })
        .await?;
    call.personal(StatusCode::NO_CONTENT, reply)
}

// ---------------------------------------------------------------------------
// Administration

/// Creates or replaces a product (admin).
#[utoipa::path(put, path = "/v1/admin/products/{product_id}", tag = "admin",
    params(("product_id" = String, Path, pattern = "^[!-~]{1,64}$")),
    request_body = json::Product,
    responses((status = 200, description = "The product stored", body = json::Product)))]
async fn upsert_product(call: &mut Call, id: &str) -> Reply {
    let id = product_id(id)?;
    call.require_sign_in().await?;
    let body: json::Product = call.body().await?;
    if body.id != id.as_str() {
        return Err(Problem::bad_request(
            "id: differs from the path's product id",
        ));
    }
    let product = product_from_json(body)?;
    let reply = call
        .dispatch(RequestBody::AdminUpsertProduct(Box::new(product)))
        .await?;
    call.personal(StatusCode::OK, reply)
}

/// Adds to (or sets) a SKU's units on hand (admin).
#[utoipa::path(post, path = "/v1/admin/stock/{sku}", tag = "admin",
    params(("sku" = String, Path, pattern = "^[!-~]{1,64}$"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry safe")),
    request_body = json::Restock,
    responses((status = 200, description = "The SKU's stock after the change", body = json::StockLevel)))]
async fn restock(call: &mut Call, sku_text: &str) -> Reply {
    let sku = sku(sku_text)?;
    call.require_sign_in().await?;
    let body: json::Restock = call.body().await?;
    let restock = api::AdminRestock {
        sku,
        quantity: body.quantity,
        mode: match body.mode {
            json::RestockMode::Add => api::RestockMode::Add,
            json::RestockMode::Set => api::RestockMode::Set,
        },
    };
    let reply = call.dispatch(RequestBody::AdminRestock(restock)).await?;
    call.personal(StatusCode::OK, reply)
}

fn product_from_json(p: json::Product) -> Result<api::Product, Problem> {
    let bad = |field: &str, v: api::Violation| Problem::bad_request(format!("{field}: {v}"));
    let pairs = |list: Vec<json::NameValue>| list.into_iter().map(|nv| (nv.name, nv.value));
    let variants = p
        .variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(api::Variant {
                sku: Sku::new(v.sku).map_err(|e| bad(&format!("variants[{i}].sku"), e))?,
                name: v.name,
                options: pairs(v.options)
                    .map(|(name, value)| api::OptionValue { name, value })
                    .collect(),
                price: money(v.price, &format!("variants[{i}].price"))?,
                compare_at_price: v
                    .compare_at_price
                    .map(|m| money(m, &format!("variants[{i}].compare_at_price")))
                    .transpose()?,
                stock_status: api::StockStatus::Unknown,
                available: 0,
                attributes: pairs(v.attributes)
                    .map(|(name, value)| api::Attribute { name, value })
                    .collect(),
            })
        })
        .collect::<Result<_, Problem>>()?;
    Ok(api::Product {
        id: ProductId::new(p.id).map_err(|e| bad("id", e))?,
        name: p.name,
        description: p.description,
        brand: p.brand,
        category_ids: p
            .category_ids
            .into_iter()
            .map(|c| CategoryId::new(c).map_err(|e| bad("category_ids", e)))
            .collect::<Result<_, _>>()?,
        options: p
            .options
            .into_iter()
            .map(|o| api::ProductOption {
                name: o.name,
                values: o.values,
            })
            .collect(),
        variants,
        attributes: pairs(p.attributes)
            .map(|(name, value)| api::Attribute { name, value })
            .collect(),
        images: p
            .images
            .into_iter()
            .map(|i| api::Image {
                url: i.url,
                alt: i.alt,
            })
            .collect(),
        created_at: api::UnixMillis(p.created_at),
        updated_at: api::UnixMillis(p.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        assert!(etag_matches(b"\"ab\"", b"\"ab\""));
        assert!(etag_matches(b"W/\"ab\"", b"\"ab\""));
        assert!(etag_matches(b"\"x\", \"ab\"", b"\"ab\""));
        assert!(etag_matches(b"*", b"\"ab\""));
        assert!(!etag_matches(b"\"abc\"", b"\"ab\""));
    }

    #[test]
    fn malformed_json_names_the_field() {
        let error = parse_json::<json::CheckoutRequest>(
            br#"{"payment_method_token":"pm","lines":[{"sku":"A","quantity":"two"}]}"#,
        )
        .unwrap_err();
        assert!(
            error.detail.starts_with("lines[0].quantity:"),
            "{}",
            error.detail
        );
        let error = parse_json::<json::NewCartLine>(br#"{"sku":"A"}"#).unwrap_err();
        assert!(
            error.detail.starts_with("body: missing field `quantity`"),
            "{}",
            error.detail
        );
        let error = parse_json::<json::NewCartLine>(b"{").unwrap_err();
        assert!(
            error.detail.starts_with("malformed JSON"),
            "{}",
            error.detail
        );
        let error = parse_json::<json::NewCartLine>(br#"{"sku":"A","quantity":1} x"#).unwrap_err();
        assert!(
            error.detail.starts_with("malformed JSON"),
            "{}",
            error.detail
        );
    }
}

/// Every route's description, gathered into the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "souk",
        description = "The HTTP/JSON bridge of souk for browsers: the same operations, rules \
                       and errors as the QUIC API. Failures are RFC 9457 problem details whose \
                       `code` names the failure. Money is integer minor units with a currency; \
                       64-bit ids are decimal strings."
    ),
    paths(
        healthz, readyz, list_categories, browse_products, get_product, get_cart,
        add_cart_line, set_cart_line, remove_cart_line, checkout, list_orders, get_order,
        cancel_order, get_payment, register, login, refresh, logout, get_profile,
        update_profile, list_addresses, add_address, replace_address, delete_address,
        upsert_product, restock
    ),
    components(schemas(json::Problem)),
    tags(
        (name = "catalog", description = "Public and cacheable: ETag, Cache-Control"),
        (name = "cart", description = "A guest's cart (device cookie) or the user's"),
        (name = "orders", description = "Checkout, orders and payments"),
        (name = "account", description = "Registration, sessions, profile, addresses"),
        (name = "admin", description = "Catalog and stock, for the admin role"),
        (name = "operations", description = "For load balancers and orchestrators"),
    ),
    modifiers(&CommonResponses)
)]
pub(super) struct ApiDoc;
