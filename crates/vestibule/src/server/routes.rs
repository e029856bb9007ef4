//! The `/auth` JSON API, health checks and the demo counter.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json::Json;
use super::{AppState, ClientIp};
use crate::auth::{AccessToken, AuthUser, MaybeAuthUser, Password, Scope, Username};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{AUTH_USER_KEY, Session, SessionUser, Transport, UnixTime, now};
use crate::token::TokenHash;

/// `{"username", "password", "transport"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: Password,
    /// `"cookie"` (default): a session cookie. `"bearer"`: the session token in the body, for
    /// `Authorization: Bearer`, and no cookie.
    #[serde(default)]
    transport: LoginTransport,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LoginTransport {
    #[default]
    Cookie,
    Bearer,
}

/// `{"current_password", "new_password"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordChange {
    current_password: Password,
    new_password: Password,
}

fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `{"user": {"id", "username"}, "csrf_token"}`: what login, signup, me and password answer.
#[derive(Debug, Serialize)]
pub(crate) struct UserBody {
    user: UserView,
    csrf_token: Option<String>,
}

#[derive(Debug, Serialize)]
struct UserView {
    id: i64,
    username: String,
}

async fn user_body(session: &Session, id: i64, username: &str) -> Result<UserBody> {
    Ok(UserBody {
        user: UserView {
            id,
            username: username.to_owned(),
        },
        csrf_token: session.csrf_token().await?,
    })
}

/// `{"user", "token", "expires_at"}`: a login with the bearer transport.
#[derive(Debug, Serialize)]
pub(crate) struct BearerBody {
    user: UserView,
    token: String,
    expires_at: String,
}

/// What login, signup and password change answer, by transport.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum AuthBody {
    /// The cookie carries the session; the body carries the CSRF token.
    Cookie(UserBody),
    /// The body carries the session token itself.
    Bearer(BearerBody),
}

fn bearer_body(
    id: i64,
    username: &str,
    token: &crate::token::SecretToken,
    expires_at: UnixTime,
) -> AuthBody {
    AuthBody::Bearer(BearerBody {
        user: UserView {
            id,
            username: username.to_owned(),
        },
        token: token.expose().to_owned(),
        expires_at: rfc3339(expires_at),
    })
}

/// Makes room for one more session of `user_id` under `limits.max_sessions_per_user` by ending
/// the least recently used others (not this request's own, which the login replaces anyway).
async fn make_room_for_session(app: &AppState, session: &Session, user_id: i64) -> Result<()> {
    let cap = app.max_sessions_per_user;
    let current = session.id().await?;
    let store = app.sessions.store();
    let mut others: Vec<_> = store
        .list_user(user_id)
        .await?
        .into_iter()
        .filter(|r| Some(r.key) != current)
        .collect();
    if others.len() < cap {
        return Ok(());
    }
    others.sort_by_key(|r| r.last_seen);
    let excess = others.len() + 1 - cap;
    for r in others.iter().take(excess) {
        store.delete(&r.key).await?;
    }
    audit!(
        "session.revoke",
        reason = "session_cap",
        user_id,
        ended = excess,
        "session cap reached: least recently used ended"
    );
    Ok(())
}

/// Logs `id` in: a rotated cookie session, or a new bearer session.
async fn start_session(
    app: &AppState,
    session: &Session,
    id: i64,
    username: &str,
    transport: LoginTransport,
) -> Result<AuthBody> {
    make_room_for_session(app, session, id).await?;
    let user = SessionUser {
        id,
        username: username.to_owned(),
        auth_time: now(),
        transport: Transport::Cookie,
    };
    let body = if transport == LoginTransport::Bearer {
        let (token, expires_at) = session.login_bearer(user).await?;
        bearer_body(id, username, &token, expires_at)
    } else {
        session.login(user).await?;
        match (session.transport(), session.current_token().await) {
            // A bearer session that rotated (password change): the client needs the new token.
            (Transport::Bearer, Some((token, expires_at))) => {
                bearer_body(id, username, &token, expires_at)
            }
            _ => AuthBody::Cookie(user_body(session, id, username).await?),
        }
    };
    app.users.record_login(id).await?;
    Ok(body)
}

pub(crate) async fn post_signup(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    if !app.signup {
        return Err(Error::new(ErrorCode::SignupDisabled, "signup is turned off on this server")
            .with_hint("set auth.signup = true (VESTIBULE_AUTH__SIGNUP=true), or create users with `vestibule user add`"));
    }
    app.limits
        .signup_ip
        .check(&ip)
        .map_err(|l| app.limited(l, "signups from this address", "rate_limits.signup_per_ip"))?;
    let username = Username::parse(&body.username)?;
    app.policy.check(username.as_str(), &body.password)?;
    let hash = app.hasher.hash(&body.password).await?;
    let user = app.users.create(&username, &hash).await?;
    audit!("signup", user_id = user.id, client_ip = %ip, "user signed up");
    let transport = body.transport;
    let body = start_session(&app, &session, user.id, &user.username, transport).await?;
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    remember_device(&app, &mut res, &user.username, transport);
    Ok(res)
}

/// The account a login attempt is for, as the rate limits key it (usernames are
/// case-insensitive; the length bound keeps made-up names from growing memory).
fn account_key(username: &str) -> String {
    username
        .chars()
        .take(150)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Gives a browser that logged in with the cookie transport the device cookie of `account`.
fn remember_device(app: &AppState, res: &mut Response, account: &str, transport: LoginTransport) {
    if transport != LoginTransport::Cookie {
        return;
    }
    if let Ok(v) = HeaderValue::try_from(app.device.issue(account, now())) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Throttles login attempts per client address, then per account: from a device that logged
/// in to the account before, against that device budget; from anywhere else, against the
/// account's shared budget, which is what slows a distributed password-guessing attack.
fn check_login_rate(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    account: &str,
) -> Result<()> {
    app.limits.login_ip.check(&ip).map_err(|l| {
        app.limited(
            l,
            "login attempts from this address",
            "rate_limits.login_per_ip",
        )
    })?;
    if app.device.recognises(headers, account, now()) {
        app.limits
            .login_device
            .check(&account.to_owned())
            .map_err(|l| {
                app.limited(
                    l,
                    "login attempts for this account from this device",
                    "rate_limits.login_per_device",
                )
            })
    } else {
        app.limits
            .login_user
            .check(&account.to_owned())
            .map_err(|l| {
                app.limited(
                    l,
                    "login attempts for this account",
                    "rate_limits.login_per_user",
                )
            })
    }
}

pub(crate) async fn post_login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    session: Session,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    if let Err(e) = check_login_rate(&app, ip, &headers, &account_key(&body.username)) {
        app.login_failed("rate_limited");
        return Err(e);
    }
    let user = if body.username.len() <= 150 {
        app.users.by_username(&body.username).await?
    } else {
        None
    };
    // Unknown users are verified against a dummy hash: same answer, same time.
    let ok = app
        .hasher
        .verify(
            user.as_ref().map(|u| u.password_hash.as_str()),
            &body.password,
        )
        .await;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            app.login_failed("invalid_credentials");
            audit!(
                "login.failure",
                reason = "invalid_credentials",
                user_id = user.as_ref().map(|u| u.id),
                client_ip = %ip,
                "login refused: invalid credentials"
            );
            return Err(Error::new(
                ErrorCode::InvalidCredentials,
                "wrong username or password",
            ));
        }
    };
    if !user.is_active {
        app.login_failed("account_disabled");
        audit!("login.failure", reason = "account_disabled", user_id = user.id, client_ip = %ip);
        return Err(Error::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    audit!("login.success", user_id = user.id, client_ip = %ip, transport = ?body.transport, "user logged in");
    let body_out = start_session(&app, &session, user.id, &user.username, body.transport).await?;
    let mut res = axum::Json(body_out).into_response();
    remember_device(&app, &mut res, &user.username, body.transport);
    Ok(res)
}

pub(crate) async fn post_logout(session: Session, user: MaybeAuthUser) -> Result<StatusCode> {
    session.flush().await?;
    audit!("logout", user_id = user.0.as_ref().map(|u| u.id));
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_me(session: Session, user: AuthUser) -> Result<axum::Json<UserBody>> {
    Ok(axum::Json(
        user_body(&session, user.id, &user.username).await?,
    ))
}

pub(crate) async fn get_csrf(session: Session) -> Result<axum::Json<Value>> {
    Ok(axum::Json(
        json!({ "csrf_token": session.csrf_token().await? }),
    ))
}

pub(crate) async fn post_password(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
    Json(body): Json<PasswordChange>,
) -> Result<axum::Json<AuthBody>> {
    require_session(&session)?;
    app.limits.password_user.check(&user.id).map_err(|l| {
        app.limited(
            l,
            "password change attempts",
            "rate_limits.password_per_user",
        )
    })?;
    let stored = app
        .users
        .by_id(user.id)
        .await?
        .ok_or_else(Error::not_authenticated)?;
    if !app
        .hasher
        .verify(Some(&stored.password_hash), &body.current_password)
        .await
    {
        return Err(Error::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    app.policy.check(&stored.username, &body.new_password)?;
    let hash = app.hasher.hash(&body.new_password).await?;
    app.users.set_password_hash(user.id, &hash).await?;
    // The session is bound to the password: this one moves to a new token, every other one ends.
    let body = start_session(
        &app,
        &session,
        user.id,
        &stored.username,
        LoginTransport::Cookie,
    )
    .await?;
    let keep = session.id().await?;
    let ended = app
        .sessions
        .store()
        .delete_user(user.id, keep.as_ref())
        .await?;
    let revoked = if app.token_settings.revoke_on_password_change {
        app.access_tokens.revoke_all(user.id).await?
    } else {
        0
    };
    audit!(
        "password.change",
        user_id = user.id,
        ended = ended.len(),
        tokens_revoked = revoked,
        "password changed"
    );
    Ok(axum::Json(body))
}

pub(crate) async fn get_sessions(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
) -> Result<axum::Json<Value>> {
    let current = session.id().await?;
    let records = app.sessions.store().list_user(user.id).await?;
    let list: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.key.to_hex(),
                "created_at": rfc3339(r.created_at),
                "last_seen": rfc3339(r.last_seen),
                "expires_at": rfc3339(r.expires_at.min(r.absolute_expires_at)),
                "user_agent": r.user_agent,
                "transport": r
                    .data
                    .get(AUTH_USER_KEY)
                    .and_then(|u| u.get("transport"))
                    .cloned()
                    .unwrap_or_else(|| json!("cookie")),
                "current": Some(r.key) == current,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "sessions": list })))
}

pub(crate) async fn delete_session(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require_session(&session)?;
    let not_found = || {
        Error::new(
            ErrorCode::SessionNotFound,
            "no session with this id belongs to you",
        )
    };
    let key = TokenHash::from_hex(&id).ok_or_else(not_found)?;
    let record = app
        .sessions
        .store()
        .load(&key)
        .await?
        .filter(|r| r.user_id == Some(user.id))
        .ok_or_else(not_found)?;
    if session.id().await? == Some(record.key) {
        session.flush().await?;
    } else {
        app.sessions.store().delete(&record.key).await?;
    }
    audit!("session.revoke", reason = "by_owner", user_id = user.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses access-token requests for account-management calls: a leaked script token must not
/// mint more tokens, change the password or end the owner's sessions.
fn require_session(session: &Session) -> Result<()> {
    if session.transport() == Transport::AccessToken {
        return Err(Error::new(
            ErrorCode::SessionRequired,
            "access tokens cannot manage the account",
        )
        .with_hint(
            "call this with a session: the cookie, or a bearer token from POST /auth/login",
        ));
    }
    Ok(())
}

pub(crate) async fn post_logout_all(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
) -> Result<StatusCode> {
    require_session(&session)?;
    let ended = app.sessions.store().delete_user(user.id, None).await?;
    session.flush().await?;
    audit!(
        "session.revoke",
        reason = "logout_all",
        user_id = user.id,
        ended = ended.len(),
        "logged out everywhere"
    );
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_counter(session: Session) -> Result<axum::Json<Value>> {
    let n: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(axum::Json(json!({ "counter": n })))
}

pub(crate) async fn post_counter(session: Session) -> Result<axum::Json<Value>> {
    let n: u64 = session
        .get::<u64>("counter")
        .await?
        .unwrap_or(0)
        .saturating_add(1);
    session.insert("counter", n).await?;
    Ok(axum::Json(json!({ "counter": n })))
}

pub(crate) async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    let store = app.sessions.store().ping().await;
    let db = app.db.ping().await;
    match (store, db) {
        (Ok(()), Ok(())) => axum::Json(json!({ "status": "ready" })).into_response(),
        (Err(e), _) => Error::from(e).into_response(),
        (_, Err(e)) => Error::new(ErrorCode::StoreUnavailable, "the database is unavailable")
            .with_source(e)
            .into_response(),
    }
}

pub(crate) async fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "no such route")
}

pub(crate) async fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept this method",
    )
}

/// `{"name", "expires_in_days"?, "scopes"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct NewToken {
    name: String,
    expires_in_days: Option<u32>,
    scopes: Option<Vec<Scope>>,
}

fn token_json(t: &AccessToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "scopes": t.scopes,
        "created_at": rfc3339(t.created_at),
        "last_used_at": t.last_used_at.map(rfc3339),
        "expires_at": rfc3339(t.expires_at),
    })
}

pub(crate) async fn post_token(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
    Json(body): Json<NewToken>,
) -> Result<Response> {
    require_session(&session)?;
    app.limits.token_user.check(&user.id).map_err(|l| {
        app.limited(
            l,
            "access tokens created",
            "rate_limits.token_create_per_user",
        )
    })?;
    let limits = &app.token_settings;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "name must have 1 to 100 characters",
        ));
    }
    let expires_at = limits
        .expiry_for(body.expires_in_days)
        .map_err(|msg| Error::new(ErrorCode::InvalidBody, msg))?;
    let scopes = body.scopes.unwrap_or_else(|| vec![Scope::Read]);
    if scopes.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "scopes must name at least one scope",
        ));
    }
    let (token, secret) = app
        .access_tokens
        .create(user.id, name, &scopes, expires_at, limits.per_user_limit)
        .await?;
    audit!(
        "token.create",
        user_id = user.id,
        token_id = token.id,
        "access token created"
    );
    let mut out = token_json(&token);
    out["token"] = json!(secret.expose());
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

pub(crate) async fn get_tokens(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
) -> Result<axum::Json<Value>> {
    require_session(&session)?;
    let tokens = app.access_tokens.list(user.id).await?;
    Ok(axum::Json(
        json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() }),
    ))
}

pub(crate) async fn delete_token(
    State(app): State<AppState>,
    session: Session,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require_session(&session)?;
    let not_found = || {
        Error::new(
            ErrorCode::TokenNotFound,
            "no access token with this id belongs to you",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    if app.access_tokens.revoke(user.id, id).await? {
        audit!(
            "token.revoke",
            user_id = user.id,
            token_id = id,
            "access token revoked"
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
