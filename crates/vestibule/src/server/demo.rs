//! The built-in demo page: plain HTML and JS modules embedded in the binary, and the JavaScript
//! client (`clients/js/src/index.js`, the file the npm package ships) at `/_vestibule/client.js`.
//!
//! The page (`/`, `/demo/*`) and its counter (`/demo/counter`) exist only in demo mode
//! (`--demo`, `demo = true`): a production server answers them with a plain 404 JSON (or hands
//! them to its upstream or static site), so nothing a user did not ask for is on the origin.
//! The client file stays mounted everywhere: pages on other origins import it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use super::{AppState, routes};
use crate::error::{Error, ErrorCode};

/// The demo's routes: the counter, and the page itself unless `/` belongs to the proxy (a
/// catch-all upstream or a static site).
pub(crate) fn routes(proxy_serves_root: bool) -> Router<AppState> {
    let app = Router::new().route(
        "/demo/counter",
        get(routes::counter::get_counter).post(routes::counter::post_counter),
    );
    if proxy_serves_root {
        return app;
    }
    // `/reset` and `/verify`: where the demo's email links land (`email.link_base` defaults to
    // `public_url`); the page reads `?token=`.
    app.route("/", get(index))
        .route("/reset", get(index))
        .route("/verify", get(index))
        .route("/demo/{file}", get(asset))
}

#[derive(RustEmbed)]
#[folder = "assets/demo/"]
struct Assets;

fn serve(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return Error::new(ErrorCode::NotFound, format!("no demo asset {path:?}")).into_response();
    };
    let mime = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let mut res = file.data.into_owned().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
    }
    res
}

/// The npm package's `vestibule-client` module, byte for byte: the demo page imports it, and a
/// plain page on another origin can too (`import … from '<api>/_vestibule/client.js'`).
const CLIENT_JS: &str = include_str!("../../../../clients/js/src/index.js");

/// `GET /_vestibule/client.js`.
pub(crate) async fn client_js() -> Response {
    let mut res = CLIENT_JS.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}
