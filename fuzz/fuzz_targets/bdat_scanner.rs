//! The BDAT text check (CRLF only, line length) against a reference, and split-invariant; see
//! `smtp::fuzz::check_bdat_text`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailwit_fuzz::smtp::fuzz::check_bdat_text(data);
});
