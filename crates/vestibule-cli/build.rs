//! Release builds link the functions a running server uses together (`code-order.txt`).
//!
//! Why: the kernel maps a binary's code in 64 KiB windows around each page a process touches.
//! Without an order, the few thousand functions `vestibule serve` runs are spread over the
//! whole 19 MB of code, and an idle server kept about 10 MB of it resident, most of it code that
//! never runs. lld's `--symbol-ordering-file` places the listed functions first, in the listed
//! order; the program and its size do not change, only where each function sits. The list is
//! written by `bench/code_order.sh` (callgrind on start-up, idle and the common requests) and the
//! saving is measured by `bench/memory.sh` (bench/RESULTS.md, "Code order").
//!
//! Applied only where it is known to work: a release build for x86_64 Linux, which Rust links
//! with its bundled lld since 1.90, and only when no other linker may have been chosen: a
//! linker, `-fuse-ld`, or any link argument in the Cargo config or `RUSTFLAGS` could pick GNU
//! ld, which has no such option. Names the list holds that the binary no longer has (a
//! dependency or compiler upgrade, or a change of the code, changes their hashes) are ignored,
//! silently: the order then covers less code, and the build still links (`bench/memory.sh` says
//! how many are left). `VESTIBULE_CODE_ORDER=0` turns it off.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-env-changed=VESTIBULE_CODE_ORDER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let lld_by_default = var("TARGET") == "x86_64-unknown-linux-gnu";
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = env::var_os("RUSTC_LINKER").is_some()
        || ["linker", "fuse-ld", "link-self-contained", "link-arg"]
            .iter()
            .any(|f| flags.contains(f));
    let off = var("VESTIBULE_CODE_ORDER") == "0";
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join("code-order.txt");
    if release && lld_by_default && !other_linker && !off && list.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=vestibule=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin=vestibule=-Wl,--no-warn-symbol-ordering");
    }
}
