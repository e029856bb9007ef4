//! The gateway's framing, differentially (the model of `tests/it/framing.rs`): the input becomes
//! a pipelined sequence of requests (Content-Length and chunked bodies, WebSocket handshakes with
//! and without a body, early answers, `Expect: 100-continue`, `Connection` lists) sent through a
//! real gateway to a raw-socket upstream that answers handshakes and `/api/early` before reading
//! the body and drains it afterwards. Every request the upstream parses must be one the client
//! sent, in order, with no identity header (the client is anonymous) and no framing on a
//! handshake; anything else (a request line made of another request's bytes) panics.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct World {
    rt: tokio::runtime::Runtime,
    gateway: String,
    /// (target, method, headers) as parsed.
    log: Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>,
    runs: AtomicUsize,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let log = Arc::new(Mutex::new(Vec::new()));
        let gateway = rt.block_on(start(Arc::clone(&log)));
        World {
            rt,
            gateway,
            log,
            runs: AtomicUsize::new(0),
        }
    })
}

async fn start(log: Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(upstream(s, Arc::clone(&log)));
        }
    });
    let dir = std::env::temp_dir().join(format!("vestibule-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut raw = vestibule::config::RawConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    raw.database_url = dir.join("vestibule.db").display().to_string();
    raw.csrf.trusted_origins = vec!["http://localhost:3000".into()];
    raw.rate_limits = vestibule::config::RawRateLimits::off();
    raw.upstream = vec![vestibule::proxy::RawUpstream {
        prefix: "/api".into(),
        url,
        policy: vestibule::proxy::UpstreamPolicy::AnonymousOk,
        ..Default::default()
    }];
    let config = raw.validate().expect("config");
    let app = vestibule::server::App::build(config).await.expect("app");
    let addr = app.local_addr().expect("addr");
    tokio::spawn(app.run_until(std::future::pending::<()>()));
    addr.to_string()
}

/// Reads a line (CRLF) from `s`, buffering in `buf`.
async fn line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let l = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Some(l);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 && buf.len() < 65536 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn take(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(k)) if k > 0 => buf.extend_from_slice(&chunk[..k]),
            _ => return false,
        }
    }
    buf.drain(..n);
    true
}

async fn upstream(mut s: TcpStream, log: Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>) {
    let mut buf = Vec::new();
    while let Some(first) = line(&mut s, &mut buf).await {
        let mut headers = Vec::new();
        loop {
            match line(&mut s, &mut buf).await {
                Some(l) if l.is_empty() => break,
                Some(l) => {
                    let (n, v) = l.split_once(':').unwrap_or((&l, ""));
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                None => return,
            }
        }
        let mut parts = first.splitn(3, ' ');
        let (method, target, version) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or(""),
        );
        assert!(
            version.starts_with("HTTP/1."),
            "the upstream parsed a request line no client sent: {first:?}"
        );
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let early = get("upgrade").is_some() || target.starts_with("/api/early");
        let chunked = get("transfer-encoding").is_some();
        let len: usize = get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Ok(mut l) = log.lock() {
            l.push((target.clone(), method, headers.clone()));
        }
        let answer = format!(
            "HTTP/1.1 {}\r\ncontent-length: 2\r\n\r\nok",
            if get("upgrade").is_some() {
                "400 No"
            } else {
                "200 OK"
            }
        );
        if early && s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if chunked {
            loop {
                let Some(size) = line(&mut s, &mut buf).await else {
                    return;
                };
                let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                    return;
                };
                if size == 0 {
                    if line(&mut s, &mut buf).await.is_none() {
                        return;
                    }
                    break;
                }
                if !take(&mut s, &mut buf, size + 2).await {
                    return;
                }
            }
        } else if !take(&mut s, &mut buf, len).await {
            return;
        }
        if !early && s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

const NAMES: [&str; 4] = ["x-vestibule-user-id", "content-length", "host", "forwarded"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let w = world();
    let run = w.runs.fetch_add(1, Ordering::SeqCst);
    // Each request: flags, Connection names, body length, body bytes.
    let mut sent = Vec::new();
    let mut bytes = Vec::new();
    let mut rest = data;
    while let [flags, names, len, tail @ ..] = rest {
        let n = sent.len();
        let body = &tail[..usize::from(*len % 32).min(tail.len())];
        rest = &tail[body.len()..];
        let upgrade = flags & 1 != 0;
        let post = flags & 2 != 0 && !upgrade;
        let route = if flags & 4 != 0 { "early" } else { "echo" };
        let target = if upgrade {
            format!("/api/ws?r={run}&n={n}")
        } else {
            format!("/api/{route}?r={run}&n={n}")
        };
        let method = if post { "POST" } else { "GET" };
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:3000\r\nX-Vestibule-User-Id: 1\r\n"
        );
        let mut connection: Vec<&str> = (0..NAMES.len())
            .filter(|i| names & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect();
        if upgrade {
            connection.insert(0, "Upgrade");
            head.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        }
        if !connection.is_empty() {
            head.push_str(&format!("Connection: {}\r\n", connection.join(", ")));
        }
        if flags & 8 != 0 {
            head.push_str("Expect: 100-continue\r\n");
        }
        let chunked = flags & 16 != 0;
        let with_body = flags & 32 != 0;
        let refused = upgrade && with_body && (chunked || !body.is_empty());
        if with_body && chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            bytes.extend_from_slice(head.as_bytes());
            if !body.is_empty() {
                bytes.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                bytes.extend_from_slice(body);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else if with_body {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            bytes.extend_from_slice(head.as_bytes());
            bytes.extend_from_slice(body);
        } else {
            head.push_str("\r\n");
            bytes.extend_from_slice(head.as_bytes());
        }
        sent.push((target, method, upgrade, refused));
    }
    if sent.is_empty() {
        return;
    }
    let count = sent.len();
    w.rt.block_on(async {
        let Ok(mut s) = TcpStream::connect(&w.gateway).await else {
            return;
        };
        let _ = s.write_all(&bytes).await;
        // Read until the gateway has answered everything or goes quiet.
        let mut buf = Vec::new();
        let mut answers = 0;
        while answers < count {
            match line(&mut s, &mut buf).await {
                Some(l) if l.starts_with("HTTP/1.1 1") => {}
                Some(l) if l.starts_with("HTTP/") => answers += 1,
                Some(_) => {}
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    let log = w.log.lock().map(|l| l.clone()).unwrap_or_default();
    let tag = format!("r={run}&");
    let mine: Vec<_> = log.iter().filter(|(t, _, _)| t.contains(&tag)).collect();
    let forwarded: Vec<_> = sent.iter().filter(|s| !s.3).collect();
    assert!(mine.len() <= forwarded.len(), "{mine:?}");
    for ((target, method, headers), (want_target, want_method, upgrade, _)) in
        mine.iter().zip(&forwarded)
    {
        assert_eq!(
            target, want_target,
            "order or a request no client sent: {mine:?}"
        );
        assert_eq!(method, want_method);
        let get = |n: &str| headers.iter().any(|(k, _)| k == n);
        assert!(
            !headers.iter().any(|(k, _)| k.starts_with("x-vestibule")),
            "identity on an anonymous request: {headers:?}"
        );
        assert!(get("host") && get("forwarded"), "{headers:?}");
        if *upgrade {
            assert!(
                !get("content-length") && !get("transfer-encoding"),
                "{headers:?}"
            );
        }
    }
});
