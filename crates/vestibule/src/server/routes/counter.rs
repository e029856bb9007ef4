//! The demo page's counter: a number kept in the session (anonymous or not), to show that the
//! session cookie comes back.

use serde_json::{Value, json};

use crate::error::Result;
use crate::session::Session;

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
