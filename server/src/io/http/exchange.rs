//! What the bridge reads from a request's headers and adds to every
//! response: the client's address, credentials, cookies, the CSRF and CORS
//! rules, and the security headers.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response};
use souk_wire::api::IdempotencyKey;

use super::HttpSettings;
use super::problem::Problem;

pub const ACCESS_COOKIE: &str = "souk_access";
pub const REFRESH_COOKIE: &str = "souk_refresh";
pub const DEVICE_COOKIE: &str = "souk_device";
/// The refresh cookie goes only to the two routes that use it.
pub const REFRESH_PATH: &str = "/v1/account/session";
/// A guest cart is kept this long after its last visit.
const DEVICE_COOKIE_SECONDS: u64 = 365 * 24 * 3600;
/// Refresh tokens live 30 days (`domain::accounts`); the cookie no longer.
const REFRESH_COOKIE_SECONDS: u64 = 30 * 24 * 3600;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;

/// One request's view of its headers.
#[derive(Debug)]
pub struct Exchange {
    /// The client, as the socket or a trusted proxy says.
    pub client: IpAddr,
    /// An access token from `Authorization: Bearer`.
    pub bearer: Option<String>,
    pub access_cookie: Option<String>,
    pub refresh_cookie: Option<String>,
    pub device_cookie: Option<String>,
    /// The request's own origin was allowed for CORS: echoed back.
    cors_origin: Option<HeaderValue>,
    origin_allowed: bool,
    origin_present: bool,
    same_origin_fetch: bool,
    /// Cookies to set on the response.
    pub set_cookies: Vec<String>,
    secure: bool,
}

impl Exchange {
    pub fn read(headers: &HeaderMap, peer: SocketAddr, settings: &HttpSettings) -> Exchange {
        let mut exchange = Exchange {
            client: client_address(headers, peer.ip(), &settings.trusted_proxies),
            bearer: bearer(headers),
            access_cookie: None,
            refresh_cookie: None,
            device_cookie: None,
            cors_origin: None,
            origin_allowed: false,
            origin_present: false,
            same_origin_fetch: headers
                .get("sec-fetch-site")
                .is_some_and(|site| site == "same-origin"),
            set_cookies: Vec::new(),
            secure: settings.tls.is_some(),
        };
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let slot = match name {
                    ACCESS_COOKIE => &mut exchange.access_cookie,
                    REFRESH_COOKIE => &mut exchange.refresh_cookie,
                    DEVICE_COOKIE => &mut exchange.device_cookie,
                    _ => continue,
                };
                *slot = Some(value.to_owned());
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            exchange.origin_present = true;
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let text = origin.to_str().unwrap_or("");
            let same = host.is_some_and(|host| authority(text) == Some(host));
            let listed = settings.allowed_origins.iter().any(|o| o == text);
            exchange.origin_allowed = same || listed;
            if listed {
                exchange.cors_origin = Some(origin.clone());
            }
        }
        exchange
    }

    /// Whether the request carries souk's cookies, which a browser attaches
    /// on its own and a forged cross-site request could ride on.
    fn has_cookies(&self) -> bool {
        self.access_cookie.is_some()
            || self.refresh_cookie.is_some()
            || self.device_cookie.is_some()
    }

    /// Refuses a state-changing request that rides on cookies from a page
    /// of another origin. Cookies are `SameSite=Strict` already; this holds
    /// for browsers that do not honour it, and for same-site other origins.
    pub fn check_csrf(&self, method: &Method) -> Result<(), Problem> {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if safe || self.bearer.is_some() || !self.has_cookies() {
            return Ok(());
        }
        if self.origin_allowed || (!self.origin_present && self.same_origin_fetch) {
            return Ok(());
        }
        Err(Problem::new(
            hyper::StatusCode::FORBIDDEN,
            "Forbidden",
            "a cookie-authenticated change needs a same-origin (or allowed) Origin header",
        ))
    }

    /// The access token, from the header or else the cookie.
    pub fn access_token(&self) -> Option<&str> {
        self.bearer.as_deref().or(self.access_cookie.as_deref())
    }

    /// `Secure` even without TLS: browsers honour it on http://localhost,
    /// where the storefront runs in development, and anywhere else the
    /// bridge without TLS sits behind a proxy that terminates it.
    fn cookie(name: &str, value: &str, path: &str, max_age: u64) -> String {
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
    }

    pub fn set_access(&mut self, token: &str, max_age: u64) {
        let cookie = Self::cookie(ACCESS_COOKIE, token, "/", max_age);
        self.set_cookies.push(cookie);
    }

    pub fn set_refresh(&mut self, token: &str) {
        let cookie = Self::cookie(REFRESH_COOKIE, token, REFRESH_PATH, REFRESH_COOKIE_SECONDS);
        self.set_cookies.push(cookie);
    }

    pub fn set_device(&mut self, device: &str) {
        let cookie = Self::cookie(DEVICE_COOKIE, device, "/", DEVICE_COOKIE_SECONDS);
        self.set_cookies.push(cookie);
    }

    pub fn clear_session(&mut self) {
        let access = Self::cookie(ACCESS_COOKIE, "", "/", 0);
        let refresh = Self::cookie(REFRESH_COOKIE, "", REFRESH_PATH, 0);
        self.set_cookies.push(access);
        self.set_cookies.push(refresh);
    }

    /// Adds the security headers, the cookies and, for an allowed origin,
    /// CORS. Every response goes through here.
    pub fn finish(&self, response: &mut Response<Full<Bytes>>) {
        let headers = response.headers_mut();
        for cookie in &self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' https: data:; object-src 'none'; \
                 base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        if self.secure {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        if let Some(origin) = &self.cors_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("etag, retry-after"),
            );
        }
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }

    /// The answer to a CORS preflight: allowed origins only.
    pub fn preflight(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
        if self.cors_origin.is_some() {
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, idempotency-key, if-none-match",
                ),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        self.finish(&mut response);
        response
    }
}

/// `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `host[:port]` of an origin such as `https://shop.example:8443`.
fn authority(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

/// The client's address: the socket's, unless the socket is a trusted
/// proxy, which names the client in `Forwarded` or `X-Forwarded-For`. The
/// rightmost address a trusted proxy did not add is the client: anything
/// left of it the client could have written itself.
pub fn client_address(headers: &HeaderMap, peer: IpAddr, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let Ok(value) = value.to_str() else { continue };
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((key, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if key.eq_ignore_ascii_case("for") {
                    hops.extend(parse_node(value));
                }
            }
        }
    }
    if hops.is_empty() {
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else { continue };
            hops.extend(value.split(',').filter_map(|hop| parse_node(hop.trim())));
        }
    }
    hops.into_iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer)
}

/// A `Forwarded` node: `192.0.2.1`, `"[2001:db8::1]:443"`, `192.0.2.1:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// The request's `Idempotency-Key`: any visible ASCII text up to 255
/// bytes (a UUID, as Stripe's clients send), hashed to souk's 128-bit key.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > IDEMPOTENCY_KEY_BYTES_MAX
        || !bytes.iter().all(u8::is_ascii_graphic)
    {
        return Err(Problem::bad_request(
            "Idempotency-Key: 1 to 255 visible ASCII characters, such as a UUID",
        ));
    }
    Ok(Some(IdempotencyKey(xxhash_rust::xxh3::xxh3_128(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7")]);
        // An untrusted peer's header is ignored.
        assert_eq!(client_address(&spoofed, client, &[proxy]), client);
        // Behind the proxy: the rightmost hop it did not add.
        assert_eq!(client_address(&spoofed, proxy, &[proxy]), client);
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(
            client_address(&forwarded, proxy, &[proxy]),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(&HeaderMap::new(), proxy, &[proxy]), proxy);
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_text() {
        let key = |v: &str| idempotency_key(&headers(&[("idempotency-key", v)]));
        let a = key("0b6f1a3e-2c44-4f7e-9a51-0d6f1c2b3a4d").unwrap();
        assert_eq!(
            a,
            key("0b6f1a3e-2c44-4f7e-9a51-0d6f1c2b3a4d").unwrap(),
            "the same key maps to the same value"
        );
        assert_ne!(a, key("another").unwrap());
        assert!(key(&"k".repeat(256)).is_err());
        assert!(key("has space").is_err());
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn cookie_riding_changes_need_a_same_origin() {
        let settings = HttpSettings {
            allowed_origins: vec!["https://shop.example".into()],
            trusted_proxies: vec![],
            tls: None,
            assets: super::super::Assets::empty(),
        };
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let read = |pairs: &[(&str, &str)]| Exchange::read(&headers(pairs), peer, &settings);
        let cookie = ("cookie", "souk_device=w1");
        let host = ("host", "127.0.0.1:8080");
        let post = Method::POST;
        assert!(
            read(&[cookie, host, ("origin", "http://127.0.0.1:8080")])
                .check_csrf(&post)
                .is_ok()
        );
        assert!(
            read(&[cookie, host, ("origin", "https://shop.example")])
                .check_csrf(&post)
                .is_ok()
        );
        assert!(
            read(&[cookie, host, ("origin", "https://evil.example")])
                .check_csrf(&post)
                .is_err()
        );
        assert!(read(&[cookie, host]).check_csrf(&post).is_err());
        assert!(read(&[cookie, host]).check_csrf(&Method::GET).is_ok());
        // No ambient credentials, nothing to forge.
        assert!(
            read(&[host, ("origin", "https://evil.example")])
                .check_csrf(&post)
                .is_ok()
        );
        // A bearer token is never sent by a browser on its own.
        assert!(
            read(&[cookie, host, ("authorization", "Bearer t")])
                .check_csrf(&post)
                .is_ok()
        );
    }
}
