//! `Cookie` and `Authorization` headers: split the input into header lines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(&[u8], &[u8])> = data
        .split(|b| *b == b'\n')
        .map(|line| match line.split_first() {
            Some((b'a', rest)) => (&b"authorization"[..], rest),
            Some((_, rest)) => (&b"cookie"[..], rest),
            None => (&b"cookie"[..], line),
        })
        .collect();
    let _ = vestibule::fuzzing::credential(&pairs);
});
