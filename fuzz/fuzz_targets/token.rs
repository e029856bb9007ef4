//! Session and access tokens.
#![no_main]

libfuzzer_sys::fuzz_target!(|s: &str| {
    let _ = vestibule::fuzzing::token(s);
});
