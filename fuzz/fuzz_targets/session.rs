//! The whole sans-IO SMTP session over arbitrary bytes (split into pieces by the input itself),
//! with automatic answers to every event. Asserts inside `fuzz_session` (size limit) and no panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailwit_fuzz::smtp::fuzz_session(data);
});
