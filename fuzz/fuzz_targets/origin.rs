//! `Origin` values (must round-trip) and pattern matching: the input is `pattern\norigin`.
#![no_main]

libfuzzer_sys::fuzz_target!(|s: &str| {
    let _ = vestibule::fuzzing::origin(s);
    if let Some((pattern, origin)) = s.split_once('\n') {
        let _ = vestibule::fuzzing::origin_pattern(pattern, origin);
    }
});
