//! `vestibule.toml` text through loading and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|s: &str| {
    let _ = vestibule::fuzzing::config_toml(s);
});
