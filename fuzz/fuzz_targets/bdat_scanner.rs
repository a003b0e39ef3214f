//! The BDAT text check (CRLF only, line length) against a reference, and split-invariant.
#![no_main]
use mailwit_fuzz::smtp::data::{Defect, TextCheck};

const MAX_LINE: usize = 40;

fn check(input: &[u8], piece: usize) -> Option<Defect> {
    let mut check = TextCheck::new(MAX_LINE);
    for chunk in input.chunks(piece.max(1)) {
        check.scan(chunk);
    }
    check.finish()
}

fn reference(input: &[u8]) -> Option<Defect> {
    let bare = input.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => input.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || input[i - 1] != b'\r',
        _ => false,
    });
    if bare {
        return Some(Defect::BareLineEnding);
    }
    let long = input
        .split(|&b| b == b'\n')
        .any(|line| line.strip_suffix(b"\r").unwrap_or(line).len() > MAX_LINE - 2);
    long.then_some(Defect::LongLine)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = check(input, input.len());
    assert_eq!(whole, check(input, 1 + split as usize % 7), "split changes the verdict");
    assert_eq!(whole, reference(input));
});
