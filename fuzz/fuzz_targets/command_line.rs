//! One command line: the verb parser, then the MAIL/RCPT path and parameter parsers on its
//! argument, as the session would call them.
#![no_main]
use mailwit_fuzz::smtp::command::{self, Command};
use mailwit_fuzz::smtp::{address, params};

libfuzzer_sys::fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = command::parse(line) else {
        return;
    };
    let (arg, is_mail) = match cmd {
        Command::Mail(arg) => (arg, true),
        Command::Rcpt(arg) => (arg, false),
        _ => return,
    };
    if let Ok(path) = address::parse_path(arg, is_mail, !is_mail) {
        // The address is a substring-derived value of bounded size, never longer than the line.
        assert!(path.address.len() <= line.len());
        if !path.utf8 {
            assert!(path.address.is_ascii());
        }
        if is_mail {
            let _ = params::parse_mail(path.rest, true);
        } else {
            let _ = params::parse_rcpt(path.rest);
        }
    }
});
