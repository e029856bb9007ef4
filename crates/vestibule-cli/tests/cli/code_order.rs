//! The release build's function order (`code-order.txt`, read by `build.rs`): lld takes the
//! list line by line as symbol names and ignores, without a word, every line that names nothing
//! in the binary. A list written wrong (demangled names, callgrind's recursion marks, addresses)
//! would therefore link fine and save nothing; these checks catch that when the list is written.

use std::collections::HashSet;

fn list() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/code-order.txt");
    std::fs::read_to_string(path).expect("code-order.txt is part of the crate")
}

#[test]
fn the_code_order_lists_linker_symbol_names_once_each() {
    let text = list();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        assert!(
            !line.is_empty()
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b)),
            "line {}: {line:?} is not a symbol name as the linker sees it (mangled, no spaces, no `'2` recursion mark)",
            n + 1
        );
        assert!(
            !line.starts_with("0x"),
            "line {}: an address, not a name",
            n + 1
        );
        assert!(seen.insert(line), "line {}: {line} is listed twice", n + 1);
    }
    // Start-up, idle and the common requests run a few thousand functions (2,652 when the list
    // was last written); far fewer means the workload in bench/code_order.sh failed part-way.
    assert!(seen.len() > 1000, "only {} functions listed", seen.len());
}

#[test]
fn the_code_order_holds_the_request_path_of_the_server() {
    let text = list();
    // Demangled, each of these is the hot core of a request every SPA makes: the HTTP/1 server
    // loop, the session layer and the SHA-256 of the session token. Legacy mangling writes a
    // path segment as its length and name.
    for segment in ["5hyper", "9vestibule7session", "4sha2"] {
        assert!(
            text.lines().any(|l| l.contains(segment)),
            "no function of {segment} in the list"
        );
    }
}
