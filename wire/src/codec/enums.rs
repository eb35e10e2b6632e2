//! The enums that both the schema and `api` define, mapped both ways from
//! one list of variant names per enum.
//!
//! `to_fb` (for the encoder) matches every `api` variant, so a variant added
//! to `api` does not compile until it is listed here. `from_fb` (for the
//! decoder) refuses a value outside the list with `DecodeError::UnknownEnum`
//! naming the field: a FlatBuffers enum is open, and a newer peer may send a
//! value this build does not know. The tests below check that every value
//! the schema defines is listed, so a value added to the schema is not
//! silently refused.

use super::DecodeError;
use crate::api;
use crate::generated::souk::wire as fb;

/// For each enum: the function name (the same in both directions), the field
/// name decode errors report, the `api` and FlatBuffers types, and the
/// variants, spelled the same in both.
macro_rules! mirrored_enums {
    ($(
        $name:ident($field:literal): api::$api:ident <=> fb::$fb:ident {
            $($variant:ident),+ $(,)?
        }
    )+) => {
        /// `api` values → FlatBuffers values.
        pub(super) mod to_fb {
            use super::{api, fb};
            $(
                pub(in crate::codec) fn $name(value: api::$api) -> fb::$fb {
                    match value {
                        $(api::$api::$variant => fb::$fb::$variant,)+
                    }
                }
            )+
        }

        /// FlatBuffers values → `api` values, refusing values this build
        /// does not know.
        pub(super) mod from_fb {
            use super::{DecodeError, api, fb};
            $(
                pub(in crate::codec) fn $name(value: fb::$fb) -> Result<api::$api, DecodeError> {
                    match value {
                        $(fb::$fb::$variant => Ok(api::$api::$variant),)+
                        other => Err(DecodeError::UnknownEnum {
                            field: $field,
                            value: other.0,
                        }),
                    }
                }
            )+
        }
    };
}

mirrored_enums! {
    // `Status::Ok` is deliberately absent: it is not an error, and the
    // decoder reads the body instead of calling `status` when it sees it.
    status("status"): api::ErrorStatus <=> fb::Status {
        BadRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        InsufficientStock,
        LimitExceeded,
        Busy,
        Unavailable,
        Internal,
        NotOffered,
    }
    role("role"): api::Role <=> fb::Role { Customer, Admin }
    stock_status("stock_status"): api::StockStatus <=> fb::StockStatus {
        Unknown,
        InStock,
        LowStock,
        OutOfStock,
    }
    order_status("order_status"): api::OrderStatus <=> fb::OrderStatus {
        PendingPayment,
        Paid,
        Fulfilled,
        Cancelled,
        Expired,
        Refunded,
    }
    payment_status("payment_status"): api::PaymentStatus <=> fb::PaymentStatus {
        Pending,
        Authorized,
        Captured,
        Failed,
        Refunded,
        PartiallyRefunded,
    }
    browse_sort("sort"): api::BrowseSort <=> fb::BrowseSort {
        NameAsc,
        NameDesc,
        PriceAsc,
        PriceDesc,
        Newest,
    }
    restock_mode("mode"): api::RestockMode <=> fb::RestockMode { Add, Set }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the schema defines (but `skip`) decodes and encodes back
    /// to itself; the first value past the schema's is refused, naming
    /// `field`.
    fn mirrors<A, F: Copy + PartialEq + std::fmt::Debug>(
        schema_values: &[F],
        skip: &[F],
        past_last: F,
        field: &'static str,
        from_fb: fn(F) -> Result<A, DecodeError>,
        to_fb: fn(A) -> F,
    ) {
        for &value in schema_values.iter().filter(|v| !skip.contains(v)) {
            let decoded = from_fb(value).unwrap_or_else(|e| panic!("{value:?} is listed: {e}"));
            assert_eq!(to_fb(decoded), value);
        }
        assert!(matches!(
            from_fb(past_last),
            Err(DecodeError::UnknownEnum { field: f, .. }) if f == field
        ));
    }

    /// `mirrors` for one enum of the list above, by its function name.
    macro_rules! check {
        ($name:ident, $fb:ident, $field:literal, skip: [$($skip:ident),*]) => {
            mirrors(
                fb::$fb::ENUM_VALUES,
                &[$(fb::$fb::$skip),*],
                fb::$fb(fb::$fb::ENUM_MAX + 1),
                $field,
                from_fb::$name,
                to_fb::$name,
            )
        };
    }

    #[test]
    fn every_schema_value_is_mirrored_and_others_are_refused() {
        check!(status, Status, "status", skip: [Ok]);
        check!(role, Role, "role", skip: []);
        check!(stock_status, StockStatus, "stock_status", skip: []);
        check!(order_status, OrderStatus, "order_status", skip: []);
        check!(payment_status, PaymentStatus, "payment_status", skip: []);
        check!(browse_sort, BrowseSort, "sort", skip: []);
        check!(restock_mode, RestockMode, "mode", skip: []);
    }

    #[test]
    fn status_ok_is_not_an_error_status() {
        assert_eq!(
            from_fb::status(fb::Status::Ok),
            Err(DecodeError::UnknownEnum {
                field: "status",
                value: 0
            })
        );
    }
}
