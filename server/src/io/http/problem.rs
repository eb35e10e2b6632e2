//! Failures as RFC 9457 `application/problem+json`, with the `Status` name
//! as a stable `code` and the HTTP status a browser or CDN acts on.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use souk_wire::api::{ApiError, ErrorStatus};

use super::json;

/// A failed HTTP request: an API error, or one only HTTP has.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after_ms: u32,
    /// For 405: the methods the path offers.
    pub allow: Option<&'static str>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after_ms: 0,
            allow: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "BadRequest", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "NotFound", detail)
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let body = json::Problem {
            kind: format!("https://souk.dev/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            retry_after_ms: (self.retry_after_ms > 0).then_some(self.retry_after_ms),
        };
        let bytes = serde_json::to_vec(&body).expect("a problem serializes");
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.retry_after_ms > 0 {
            // Whole seconds, rounded up: zero would invite an immediate retry.
            let seconds = self.retry_after_ms.div_ceil(1000).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The HTTP status and code of each API status. Both `Conflict` and
/// `InsufficientStock` are 409: the request clashed with the state.
pub fn status_of(status: ErrorStatus) -> (StatusCode, &'static str) {
    use ErrorStatus as E;
    match status {
        E::BadRequest => (StatusCode::BAD_REQUEST, "BadRequest"),
        E::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthenticated"),
        E::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
        E::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
        E::Conflict => (StatusCode::CONFLICT, "Conflict"),
        E::InsufficientStock => (StatusCode::CONFLICT, "InsufficientStock"),
        E::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "LimitExceeded"),
        E::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
        E::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        E::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
        E::NotOffered => (StatusCode::NOT_IMPLEMENTED, "NotOffered"),
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Problem {
        let (status, code) = status_of(error.status);
        let retry_after_ms = match error.status {
            // A limit or overload without its own hint still gets one.
            ErrorStatus::Busy | ErrorStatus::LimitExceeded | ErrorStatus::Unavailable => {
                error.retry_after_ms.max(1000)
            }
            _ => error.retry_after_ms,
        };
        Problem {
            status,
            code,
            detail: error.message,
            retry_after_ms,
            allow: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_to_its_documented_http_status() {
        use ErrorStatus as E;
        let expected = [
            (E::BadRequest, 400),
            (E::Unauthenticated, 401),
            (E::Forbidden, 403),
            (E::NotFound, 404),
            (E::Conflict, 409),
            (E::InsufficientStock, 409),
            (E::LimitExceeded, 429),
            (E::Busy, 503),
            (E::Unavailable, 503),
            (E::Internal, 500),
            (E::NotOffered, 501),
        ];
        for (status, http) in expected {
            assert_eq!(status_of(status).0.as_u16(), http, "{status:?}");
            assert_eq!(status_of(status).1, format!("{status:?}"));
        }
    }

    #[test]
    fn busy_says_when_to_retry_in_whole_seconds() {
        let response = Problem::from(ApiError::busy(1500, "queue full")).response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
