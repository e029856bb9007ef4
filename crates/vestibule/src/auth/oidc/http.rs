//! `openidconnect`'s HTTP through the reqwest Vestibule already links (its own `reqwest`
//! feature pulls another major version of reqwest and hyper): no redirects followed (a
//! redirected discovery or token request is an error, not a detour), a bounded wait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The relying party's HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Http(reqwest::Client);

/// A request to the provider failed (connection, timeout, body).
#[derive(Debug, thiserror::Error)]
#[error("request to the OpenID provider failed: {0}")]
pub(crate) struct HttpError(#[from] reqwest::Error);

impl Http {
    /// A client with `timeout` per request.
    pub(crate) fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map(Self)
    }

    /// The client itself, for the requests `openidconnect` has no type for (the discovery
    /// document's extra endpoints, RFC 7009 revocation).
    pub(crate) fn reqwest(&self) -> &reqwest::Client {
        &self.0
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = self.0.execute(request).await?;
            let mut out = http::Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                headers.extend(
                    response
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            let body = response.bytes().await?.to_vec();
            // The builder got a valid status and valid headers from a parsed response.
            Ok(out
                .body(body)
                .unwrap_or_else(|_| http::Response::new(Vec::new())))
        })
    }
}
