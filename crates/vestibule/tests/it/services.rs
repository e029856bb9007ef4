//! External services for tests (Redis, PostgreSQL): found, or skipped with a clear message.
//!
//! A developer's machine may have neither, so tests that need one print why they skip and pass.
//! CI sets `VESTIBULE_REQUIRE_SERVICES=1`, which turns every skip into a failure: there the
//! services must be up and these tests must run.

use std::time::Duration;

use vestibule::token::{SecretToken, TokenKind};

/// The variable that makes a missing service a test failure instead of a skip.
pub const REQUIRE_VAR: &str = "VESTIBULE_REQUIRE_SERVICES";

/// Redis for tests: `VESTIBULE_TEST_REDIS_URL`, default the local server.
pub fn redis_url() -> String {
    std::env::var("VESTIBULE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Skips (returns `false` after saying why) or, under `VESTIBULE_REQUIRE_SERVICES=1`, fails.
pub fn unavailable(service: &str, url: &str, why: &str) -> bool {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{service} at {url} is required ({REQUIRE_VAR}=1) but unreachable: {why}");
    }
    eprintln!(
        "SKIPPED: {service} at {url} is unreachable ({why}); set {REQUIRE_VAR}=1 to make this a failure"
    );
    false
}

/// Whether Redis answers PING at `url` within a second; prints the skip message if not.
pub async fn redis_reachable(url: &str) -> bool {
    let check = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => unavailable("Redis", url, &e),
        Err(_) => unavailable("Redis", url, "no answer within 1 s"),
    }
}

/// A fresh random key prefix, so tests sharing one Redis never see each other's keys.
pub fn random_prefix() -> String {
    let hex = SecretToken::generate(TokenKind::Session).hash().to_hex();
    format!("vestibule-test:{}:", &hex[..16])
}

/// Deletes every key under a prefix when dropped (also when the test panicked).
pub struct RedisKeysGuard {
    pub urls: Vec<String>,
    pub prefix: String,
}

impl Drop for RedisKeysGuard {
    fn drop(&mut self) {
        for url in &self.urls {
            if let Err(e) = delete_prefix(url, &self.prefix) {
                eprintln!(
                    "could not clean up redis keys {}* at {url}: {e}",
                    self.prefix
                );
            }
        }
    }
}

fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(1))?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut c)?;
    for k in keys {
        // One by one: in a cluster each key may live in another slot (DEL is per node anyway).
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&k).query(&mut c);
    }
    Ok(())
}
