//! Security headers on every response of Vestibule's own router.

use axum::http::{HeaderValue, header};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::set_header::SetResponseHeaderLayer;

type Layers = Stack<
    SetResponseHeaderLayer<HeaderValue>,
    Stack<
        SetResponseHeaderLayer<HeaderValue>,
        Stack<SetResponseHeaderLayer<HeaderValue>, Identity>,
    >,
>;

/// `X-Content-Type-Options: nosniff` (a JSON error is never sniffed into HTML),
/// `Referrer-Policy: no-referrer` (no URL of ours leaks to another site), and
/// `Cache-Control: no-store` unless the handler set a cache policy: answers carry CSRF tokens,
/// bearer tokens and user data that no shared or browser cache may keep.
pub(crate) fn security_headers() -> ServiceBuilder<Layers> {
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}
