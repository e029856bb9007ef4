//! `X-Forwarded-For` / `Forwarded` / `X-Real-IP` behind trusted proxies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(&[u8], &[u8])> = data
        .split(|b| *b == b'\n')
        .map(|line| match line.split_first() {
            Some((b'f', rest)) => (&b"forwarded"[..], rest),
            Some((b'r', rest)) => (&b"x-real-ip"[..], rest),
            Some((_, rest)) => (&b"x-forwarded-for"[..], rest),
            None => (&b"x-forwarded-for"[..], line),
        })
        .collect();
    let _ = vestibule::fuzzing::client_ip(&pairs);
});
