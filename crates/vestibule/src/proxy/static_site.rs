//! `--static DIR`: a built single-page app on the gateway's origin. Client-side routes get
//! `index.html`; hashed assets are cached for a year; `index.html` is revalidated every time so
//! a deploy is picked up at once; precompressed `.br`/`.gz` files are served when present.
//! Every file answer (`index.html`, client-side routes and assets alike, 200 or 304) carries the
//! configured `[static_site.headers]` (see `proxy::config::DEFAULT_STATIC_HEADERS`); the JSON
//! 404 of a missing asset does not.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::error::{Error, ErrorCode};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The built SPA.
#[derive(Debug, Clone)]
pub(crate) struct StaticSite {
    dir: ServeDir,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl StaticSite {
    pub(crate) fn new(dir: &Path, headers: &[(HeaderName, HeaderValue)]) -> Self {
        Self {
            headers: headers.to_vec(),
            dir: ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .append_index_html_on_directories(true),
        }
    }

    /// Serves the file, or `index.html` for a path without an extension (a client-side route).
    pub(crate) async fn serve(&self, req: Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Error::new(
                ErrorCode::MethodNotAllowed,
                "static files are read with GET or HEAD",
            )
            .into_response();
        }
        let path = req.uri().path().to_owned();
        // Only what ServeDir reads; the body (a GET's) is dropped here.
        let (parts, _) = req.into_parts();
        let copy = |uri: &str| {
            let mut r = Request::new(Body::empty());
            *r.method_mut() = parts.method.clone();
            *r.headers_mut() = parts.headers.clone();
            if let Ok(u) = uri.parse() {
                *r.uri_mut() = u;
            }
            r
        };
        let first = match self.dir.clone().oneshot(copy(&parts.uri.to_string())).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        let last_segment = path.rsplit('/').next().unwrap_or("");
        let (res, is_index) = if first.status() == StatusCode::NOT_FOUND {
            if last_segment.contains('.') {
                return Error::new(ErrorCode::NotFound, format!("no file {path}"))
                    .with_hint(
                        "the asset is missing from the build; rebuild the SPA or fix the link",
                    )
                    .into_response();
            }
            let index = match self.dir.clone().oneshot(copy("/index.html")).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            (index, true)
        } else {
            let is_index = path.ends_with('/') || last_segment == "index.html";
            (first, is_index)
        };
        let mut res = res.map(Body::new);
        if res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED {
            let policy = if !is_index && looks_hashed(last_segment) {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
            for (name, value) in &self.headers {
                res.headers_mut().insert(name.clone(), value.clone());
            }
        }
        res
    }
}

/// Whether a file name carries a content hash (`index-BXk3a9Zq.js`, `main.3f2a1b9c.css`): then
/// its content never changes under that name and may be cached for good.
fn looks_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(hash) = stem.rsplit(['-', '.', '_']).next() else {
        return false;
    };
    let alnum = hash.bytes().all(|b| b.is_ascii_alphanumeric());
    let mixed = hash.bytes().any(|b| b.is_ascii_digit())
        || (hash.bytes().any(|b| b.is_ascii_uppercase())
            && hash.bytes().any(|b| b.is_ascii_lowercase()));
    hash.len() != stem.len() && (8..=32).contains(&hash.len()) && alnum && mixed
}

#[cfg(test)]
mod tests {
    use super::looks_hashed;

    #[test]
    fn hashed_names_are_told_from_plain_ones() {
        for hashed in [
            "index-BXk3a9Zq.js",
            "main.3f2a1b9c.css",
            "logo-DiwrgTda.svg",
            "chunk-abc12345.js",
        ] {
            assert!(looks_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "favicon.ico",
            "robots.txt",
            "app-settings.json",
            "abcdefgh.js",
            "manifest.webmanifest",
        ] {
            assert!(!looks_hashed(plain), "{plain}");
        }
    }
}
