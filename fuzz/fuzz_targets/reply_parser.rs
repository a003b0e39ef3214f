//! The downstream reply parser (SMTP client side): splits pipelined replies from one buffer.
#![no_main]
use mailwit_fuzz::delivery::smtp_client::reply::parse_reply;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((reply, used)) = parse_reply(rest) {
        assert!(used > 0 && used <= rest.len(), "used {used} of {}", rest.len());
        assert!((200..600).contains(&reply.code), "code {}", reply.code);
        rest = &rest[used..];
    }
});
