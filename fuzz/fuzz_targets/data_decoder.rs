//! The DATA dot-unstuffing decoder against a simple reference, and against itself fed in pieces
//! (the SMTP smuggling defence); see `smtp::fuzz::check_data_decoder` for the properties.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailwit_fuzz::smtp::fuzz::check_data_decoder(data);
});
