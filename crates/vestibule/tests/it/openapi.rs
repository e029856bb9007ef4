//! `GET /openapi.json`: an OpenAPI 3.1 document that matches the routes the router really mounts.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::support::TestApp;

/// Every route of the JSON API the router mounts, by method. Adding a route to `router()`
/// without documenting it (and listing it here) fails `the_document_lists_exactly_the_mounted_api`
/// or `no_other_method_is_mounted_on_documented_paths`.
const MOUNTED: &[(&str, &str)] = &[
    ("post", "/auth/signup"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("post", "/auth/logout-all"),
    ("get", "/auth/me"),
    ("get", "/auth/csrf"),
    ("post", "/auth/password"),
    ("post", "/auth/reauth"),
    ("post", "/auth/reauth/webauthn/start"),
    ("post", "/auth/password/reset"),
    ("post", "/auth/password/forgot"),
    ("post", "/auth/email"),
    ("get", "/auth/email"),
    ("post", "/auth/email/verify"),
    ("post", "/auth/email/verify/resend"),
    ("get", "/auth/sessions"),
    ("delete", "/auth/sessions/{id}"),
    ("get", "/auth/tokens"),
    ("post", "/auth/tokens"),
    ("delete", "/auth/tokens/{id}"),
    ("post", "/auth/mfa/totp"),
    ("delete", "/auth/mfa/totp"),
    ("post", "/auth/mfa/totp/enroll"),
    ("post", "/auth/mfa/totp/confirm"),
    ("get", "/auth/mfa"),
    ("post", "/auth/mfa/recovery"),
    ("post", "/auth/mfa/recovery/regenerate"),
    ("post", "/auth/mfa/webauthn/start"),
    ("post", "/auth/mfa/webauthn/finish"),
    ("get", "/auth/passkeys"),
    ("delete", "/auth/passkeys/{id}"),
    ("post", "/auth/passkeys/register/start"),
    ("post", "/auth/passkeys/register/finish"),
    ("post", "/auth/passkey/login/start"),
    ("post", "/auth/passkey/login/finish"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/auth/oidc/providers"),
    ("get", "/auth/oidc/{provider}/start"),
    ("get", "/auth/oidc/{provider}/callback"),
    ("get", "/auth/identities"),
    ("delete", "/auth/identities/{id}"),
    ("post", "/auth/oidc/{provider}/backchannel-logout"),
    ("post", "/auth/oidc/logout"),
    ("post", "/auth/oidc/{provider}/link"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let res = app
        .raw_client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ctype.starts_with("application/json"), "{ctype}");
    res.json().await.expect("the document is JSON")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths object");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

/// Sends `method` to `path` (with `{id}` filled in) without credentials.
async fn call(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let res = app
        .raw_client()
        .request(method, app.url(&path.replace("{id}", "1")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Whether the answer is the router's own "no such route" or "wrong method".
fn is_router_miss(status: u16, body: &Value) -> bool {
    (status == 404 && body["code"] == "not_found")
        || (status == 405 && body["code"] == "method_not_allowed")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_credentials_and_error_body() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(doc["info"]["title"], "Vestibule");

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session_cookie"]["type"], "apiKey");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "vestibule_session");
    assert_eq!(schemes["csrf_token"]["in"], "header");
    assert_eq!(schemes["csrf_token"]["name"], "X-CSRF-Token");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    let error = &doc["components"]["schemas"]["ErrorBody"];
    let required: BTreeSet<&str> = error["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message", "hint"]));
    assert!(error["properties"]["hint"].is_object());
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    assert!(
        codes
            .as_array()
            .is_some_and(|c| c.contains(&Value::from("invalid_credentials"))),
        "{codes}"
    );

    // Every documented failure answers the error body.
    for (method, path) in operations(&doc) {
        let responses = doc["paths"][&path][&method]["responses"]
            .as_object()
            .expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_document_lists_exactly_the_mounted_api() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let documented = operations(&doc);
    let mounted: BTreeSet<(String, String)> = MOUNTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "mounted, not documented: {undocumented:?}"
    );
    let unlisted: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        unlisted.is_empty(),
        "documented, not in MOUNTED: {unlisted:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= MOUNTED.len());
    for (method, path) in ops {
        let (status, body) = call(&app, &method, &path).await;
        assert!(
            !is_router_miss(status, &body),
            "{method} {path} is documented but not routed: {status} {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn no_other_method_is_mounted_on_documented_paths() {
    let app = TestApp::spawn().await;
    let paths: BTreeSet<&str> = MOUNTED.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in METHODS {
            if MOUNTED.contains(&(method, path)) {
                continue;
            }
            let (status, body) = call(&app, method, path).await;
            assert!(
                is_router_miss(status, &body),
                "{method} {path} answers {status} {body}: a mounted route missing from MOUNTED"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_route_check_tells_a_missing_route_apart() {
    // The detector the tests above rely on: an unmounted path and a wrong method are misses.
    let app = TestApp::spawn().await;
    let (status, body) = call(&app, "get", "/auth/no-such-route").await;
    assert!(is_router_miss(status, &body), "{status} {body}");
    let (status, body) = call(&app, "put", "/auth/login").await;
    assert!(is_router_miss(status, &body), "{status} {body}");
    // A handler's own 404 is not a miss.
    let (status, body) = call(&app, "delete", "/auth/tokens/{id}").await;
    assert!(!is_router_miss(status, &body), "{status} {body}");
    app.stop().await;
}

#[tokio::test]
async fn a_real_429_is_the_documented_one() {
    // Rate limits are off in the schemathesis run: check this documented answer here.
    let app = TestApp::spawn_with(|raw| raw.rate_limits.login_per_ip = "1/h".into()).await;
    let doc = document(&app).await;
    let documented = &doc["paths"]["/auth/login"]["post"]["responses"]["429"];
    assert!(
        documented["headers"]["Retry-After"].is_object(),
        "{documented}"
    );
    let client = app.raw_client();
    let mut last = None;
    for _ in 0..3 {
        let res = client
            .post(app.url("/auth/login"))
            .json(&serde_json::json!({"username": "nobody", "password": "wrong password"}))
            .send()
            .await
            .expect("request");
        if res.status() == 429 {
            last = Some(res);
            break;
        }
        assert_eq!(res.status(), 401);
    }
    let res = last.expect("the second attempt within the hour is limited");
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after > 0);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
    assert!(body["message"].is_string());
    assert!(body.get("hint").is_some(), "hint is always present: {body}");
    app.stop().await;
}
