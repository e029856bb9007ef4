//! The proxy's rewriting of a backend's `Set-Cookie` and `Location`: the first byte picks the
//! flags (strip the prefix, plain-http loopback, which prefix), the rest is the header value.
//! The entry points assert the promises (no `Domain`, name and value kept, `Secure` dropped only
//! on loopback, `Path` and `Location` under the prefix, never a `//host`), so a break is a crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(value) = std::str::from_utf8(rest) {
        let _ = vestibule::fuzzing::set_cookie(value, *flags);
        let _ = vestibule::fuzzing::location(value, *flags);
    }
});
