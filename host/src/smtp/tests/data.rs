//! DATA: sequence, bare LF, smuggling, line and size limits, refusals.

use super::*;
use crate::smtp::text::END_OF_DATA_LOOKALIKES;

/// The replies to a DATA transaction refused with `refusal`, then to a second one that is queued.
fn refused_then_queued(refusal: &str) -> [&str; 8] {
    [
        "250 2.1.0",
        "250 2.1.5",
        "354 End",
        refusal,
        "250 2.1.0",
        "250 2.1.5",
        "354 End",
        "250 2.0.0",
    ]
}

#[test]
fn data_sequence_errors() {
    assert_eq!(run_default("EHLO c\r\nDATA\r\n").codes(), ["503 5.5.1"]);
    assert_eq!(
        run_default("EHLO c\r\nMAIL FROM:<>\r\nDATA\r\n").codes(),
        ["250 2.1.0", "554 5.5.1"]
    );
    assert_eq!(run_default("EHLO c\r\nDATA x\r\n").codes(), ["501 5.5.4"]);
}

#[test]
fn bare_lf_is_refused_and_the_next_transaction_is_clean() {
    let out = run_default(&format!(
        "{TX}DATA\r\na\nb\r\n.\r\n{}DATA\r\nok\r\n.\r\n",
        &TX[21..]
    ));
    assert_eq!(out.codes(), refused_then_queued("554 5.6.0"));
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].1, b"ok\r\n");
}

#[test]
fn smuggling_variants_yield_one_message_or_a_refusal_never_two() {
    let smuggled =
        "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@mx.example>\r\nDATA\r\nforged\r\n";
    // Also a NUL before the dot and a bare LF after it.
    for sneaky in END_OF_DATA_LOOKALIKES.iter().chain(&["\r\n\x00.\n"]) {
        let input = format!("{TX}DATA\r\nreal{sneaky}{smuggled}\r\n.\r\nQUIT\r\n");
        for step in [1, 3, input.len()] {
            let pieces: Vec<&[u8]> = input.as_bytes().chunks(step).collect();
            let out = drive(&mut greeted(config()), &pieces);
            assert!(out.messages.len() <= 1, "{sneaky:?}: {out:?}");
            assert!(
                !out.events.iter().any(|e| e.contains("evil")),
                "{sneaky:?} smuggled a MAIL"
            );
            assert_eq!(out.codes().last().unwrap(), "221 2.0.0");
            if out.messages.is_empty() {
                assert!(out.output.contains("554 5.6.0"));
            } else {
                assert!(out.messages[0].1.ends_with(b"forged\r\n\r\n"));
            }
        }
    }
}

#[test]
fn text_line_limit_refuses_at_the_end() {
    let long = "x".repeat(999);
    let out = run_default(&format!("{TX}DATA\r\n{long}\r\n.\r\nNOOP\r\n"));
    assert_eq!(out.codes()[3..], ["500 5.5.2", "250 2.0.0"]);
    assert!(out.messages.is_empty());
    let ok = "x".repeat(998);
    let out = run_default(&format!("{TX}DATA\r\n{ok}\r\n.\r\n"));
    assert_eq!(out.messages.len(), 1);
}

#[test]
fn oversized_message_is_read_discarded_and_refused() {
    let cfg = SessionConfig {
        max_message_size: 1000,
        ..config()
    };
    let mut s = greeted(cfg);
    let mut out = drive(&mut s, &[TX.as_bytes(), b"DATA\r\n"]);
    let line = [b'y'; 98];
    for _ in 0..1000 {
        let more = drive(&mut s, &[&line, b"\r\n"]);
        out.output.push_str(&more.output);
        assert!(s.input.capacity() < 64 * 1024);
    }
    let rest = drive(
        &mut s,
        &[format!(".\r\n{}DATA\r\nsmall\r\n.\r\n", &TX[21..]).as_bytes()],
    );
    out.output.push_str(&rest.output);
    assert_eq!(out.codes(), refused_then_queued("552 5.3.4"));
    assert_eq!(rest.messages.len(), 1);
    assert_eq!(rest.messages[0].1, b"small\r\n");
}

#[test]
fn refused_and_disconnected_messages() {
    let mut s = greeted(config());
    s.receive(format!("{TX}DATA\r\nx\r\n.\r\nRSET\r\n").as_bytes());
    let mut last = None;
    while let Some(ev) = s.poll() {
        if let Event::Message { .. } = ev {
            s.answer(Answer::Refuse(Reply::new(451, "4.3.0", "spool full")));
            assert!(s.envelope().is_none());
        } else {
            s.answer(Answer::Accept);
        }
        last = Some(ev);
    }
    assert!(matches!(last, Some(Event::Message { .. })));
    let text = String::from_utf8(s.take_output()).unwrap();
    assert!(
        text.ends_with("451 4.3.0 spool full\r\n250 2.0.0 Reset ok\r\n"),
        "{text}"
    );

    let mut s = greeted(config());
    s.receive(format!("{TX}DATA\r\nx\r\n.\r\nNOOP\r\n").as_bytes());
    while let Some(ev) = s.poll() {
        match ev {
            Event::Message { .. } => s.answer(Answer::Disconnect(Reply::new(421, "4.7.0", "bye"))),
            Event::Close => break,
            _ => s.answer(Answer::Accept),
        }
    }
    assert!(s.is_closed());
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("421 4.7.0 bye\r\n")
    );
}
