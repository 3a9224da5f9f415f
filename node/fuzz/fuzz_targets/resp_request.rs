//! The data port's request parser: no panic, progress on every request, a protocol error
//! worded as Redis does, and the same requests whether the bytes come in one read or in reads
//! of the sizes the first input byte picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringshift_node::resp::parse::{ProtocolError, RequestParser};

const MAX_FRAME: usize = 64 * 1024;

type Outcome = (Vec<Vec<Vec<u8>>>, Option<ProtocolError>);

fn drive(input: &[u8], read: usize) -> Outcome {
    let mut parser = RequestParser::default();
    let mut buf = Vec::new();
    let mut commands = Vec::new();
    for piece in input.chunks(read.max(1)) {
        buf.extend_from_slice(piece);
        let mut consumed = 0;
        loop {
            match parser.parse(&buf[consumed..], MAX_FRAME) {
                Ok(Some((args, used))) => {
                    assert!(used > 0 && consumed + used <= buf.len());
                    consumed += used;
                    commands.push(args);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(e.to_string().starts_with("ERR Protocol error: "));
                    return (commands, Some(e));
                }
            }
        }
        buf.drain(..consumed);
    }
    (commands, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&read, input)) = data.split_first() else {
        return;
    };
    let whole = drive(input, input.len());
    assert_eq!(drive(input, usize::from(read % 64) + 1), whole);
});
