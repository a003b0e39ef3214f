//! The config loader on arbitrary text: an error names a line within the text, never a panic.
#![no_main]
use mailwit_fuzz::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, "fuzz.toml", None) {
        assert_eq!(e.file, "fuzz.toml");
        assert!(e.line <= text.lines().count() + 1, "error line {} out of range", e.line);
        let _ = e.to_string();
    }
});
