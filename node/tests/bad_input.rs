//! Bad input, in process: the RESP request parser and the admin API's body parsing against the
//! corpus in `tests/corpus/` and property-based mutations of it. Properties: no panic, bounded
//! work, a clear error, and the same outcome however the bytes are split into reads.
//!
//! `RINGSHIFT_FUZZ_CASES=N` sets the number of generated cases per property (default 256, a few
//! seconds; `make reliability` runs many more).

use std::path::PathBuf;

use proptest::prelude::*;
use ringshift_node::admin::parse_body;
use ringshift_node::resp::parse::{ProtocolError, RequestParser};
use ringshift_node_api::*;

const MAX_FRAME: usize = 64 * 1024;

fn cases() -> u32 {
    std::env::var("RINGSHIFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn corpus_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind)
}

fn resp_corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir("resp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "resp"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 40, "RESP corpus missing: {}", out.len());
    out
}

/// What a connection makes of a byte stream: the commands, then a protocol error or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    commands: Vec<Vec<Vec<u8>>>,
    error: Option<ProtocolError>,
    /// Bytes left over, waiting for the rest of a frame.
    pending: usize,
}

/// Feeds `input` to one parser in reads of the given sizes (cycled), as the data port does:
/// append the read to the buffer, take every complete request, keep the incomplete rest.
fn drive(input: &[u8], reads: &[usize]) -> Outcome {
    let mut parser = RequestParser::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut commands = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    while fed < input.len() {
        let n = reads[i % reads.len()].max(1).min(input.len() - fed);
        i += 1;
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        let mut consumed = 0;
        loop {
            match parser.parse(&buf[consumed..], MAX_FRAME) {
                Ok(Some((args, used))) => {
                    assert!(used > 0, "a request must consume bytes");
                    assert!(consumed + used <= buf.len());
                    consumed += used;
                    commands.push(args);
                }
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        commands,
                        error: Some(e),
                        pending: 0,
                    };
                }
            }
        }
        buf.drain(..consumed);
    }
    Outcome {
        commands,
        error: None,
        pending: buf.len(),
    }
}

fn whole(input: &[u8]) -> Outcome {
    drive(input, &[input.len().max(1)])
}

#[test]
fn resp_corpus_meets_the_expectation_in_each_name() {
    for (name, bytes) in resp_corpus() {
        let got = whole(&bytes);
        let msg = got.error.as_ref().map(|e| e.to_string());
        if name.starts_with("ok-") {
            assert!(
                got.error.is_none() && got.pending == 0 && !got.commands.is_empty(),
                "{name}: {got:?}"
            );
        } else if name.starts_with("err-") {
            let msg = msg.unwrap_or_else(|| panic!("{name}: no protocol error: {got:?}"));
            assert!(msg.starts_with("ERR Protocol error: "), "{name}: {msg}");
        } else if name.starts_with("partial-") {
            assert!(
                got.error.is_none() && got.pending > 0,
                "{name}: should wait for more bytes: {got:?}"
            );
        } else {
            assert!(name.starts_with("any-"), "{name}: unknown corpus prefix");
        }
        // Byte-at-a-time and odd-sized reads reach the same result.
        for reads in [&[1usize][..], &[3, 1, 7], &[4096]] {
            assert_eq!(
                drive(&bytes, reads),
                got,
                "{name} read in pieces of {reads:?}"
            );
        }
    }
}

#[test]
fn resp_corpus_specific_answers() {
    let c: std::collections::BTreeMap<String, Vec<u8>> = resp_corpus().into_iter().collect();
    let err = |n: &str| whole(&c[n]).error.unwrap().to_string();
    assert_eq!(
        err("err-negative-bulk.resp"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        err("err-huge-multibulk.resp"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(
        err("err-nested-array.resp"),
        "ERR Protocol error: expected '$', got '*'"
    );
    assert_eq!(
        err("err-unbalanced-single-quote.resp"),
        "ERR Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        err("err-inline-too-long.resp"),
        "ERR Protocol error: too big inline request"
    );
    let got = whole(&c["err-garbage-after-valid.resp"]);
    assert_eq!(got.commands, vec![vec![b"PING".to_vec()]]);
    let got = whole(&c["ok-inline-escapes.resp"]);
    assert_eq!(
        got.commands,
        vec![vec![b"SET".to_vec(), b"k".to_vec(), b"A\n\t\"q\"".to_vec()]]
    );
    let got = whole(&c["ok-binary-bulk.resp"]);
    assert_eq!(got.commands[0][2], b"\0\r\n\xff*$".to_vec());
    // Empty and negative multibulk counts are empty requests (ignored), as in Redis.
    assert_eq!(
        whole(&c["ok-negative-multibulk.resp"]).commands,
        vec![Vec::<Vec<u8>>::new()]
    );
}

/// An inline line longer than the limit is refused whether or not its newline arrived in the
/// same read (the answer must not depend on how TCP split the bytes).
#[test]
fn inline_limit_does_not_depend_on_read_sizes() {
    let mut line = vec![b'a'; 70_000];
    line.extend_from_slice(b"\r\n");
    let one = whole(&line);
    assert!(one.error.is_some(), "{one:?}");
    assert_eq!(drive(&line, &[1000]), one);
}

/// A frame declaring many small arguments, delivered in tiny reads, costs work proportional to
/// its size: the parser resumes where it stopped instead of re-parsing the frame on every read.
#[test]
fn a_slowly_sent_frame_is_parsed_incrementally() {
    let args = 200_000;
    let mut frame = format!("*{args}\r\n").into_bytes();
    for _ in 0..args {
        frame.extend_from_slice(b"$1\r\nx\r\n");
    }
    let mut parser = RequestParser::default();
    let mut scanned = 0usize;
    let mut got = None;
    for end in (64..=frame.len()).step_by(64).chain([frame.len()]) {
        let before = parser.bytes_examined();
        let r = parser.parse(&frame[..end], 4 << 20).unwrap();
        scanned += parser.bytes_examined() - before;
        if let Some((a, used)) = r {
            assert_eq!(used, frame.len());
            got = Some(a.len());
            break;
        }
    }
    assert_eq!(got, Some(args));
    assert!(
        scanned <= 4 * frame.len(),
        "examined {scanned} bytes for a {} byte frame",
        frame.len()
    );
}

fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(kind, at, byte) in ops {
        let at = if v.is_empty() { 0 } else { at % (v.len() + 1) };
        match kind % 6 {
            0 if at < v.len() => v[at] = byte,
            1 => v.insert(at, byte),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            // Characters that matter to the grammar.
            4 => {
                let grammar = b"*$\r\n-0123456789\"' \\x";
                v.insert(at, grammar[usize::from(byte) % grammar.len()]);
            }
            _ => {
                let digits = format!("{}", u64::from(byte).pow(5));
                v.splice(at..at, digits.bytes());
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Mutated corpus inputs: no panic, progress on every request, the same outcome for any
    /// read sizes, and a `ERR Protocol error: ` prefix on every error.
    #[test]
    fn mutated_requests_parse_the_same_in_any_pieces(
        pick in any::<prop::sample::Index>(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8),
        reads in proptest::collection::vec(1usize..200, 1..5),
    ) {
        let corpus = resp_corpus();
        let (_, seed) = &corpus[pick.index(corpus.len())];
        let input = mutate(seed, &ops);
        let one = whole(&input);
        if let Some(e) = &one.error {
            prop_assert!(e.to_string().starts_with("ERR Protocol error: "));
        }
        prop_assert_eq!(drive(&input, &reads), one);
    }

    /// Random bytes behind a valid request still yield the valid request first.
    #[test]
    fn a_valid_request_before_garbage_is_served(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut input = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n".to_vec();
        input.extend_from_slice(&garbage);
        let got = whole(&input);
        prop_assert_eq!(&got.commands[0], &vec![b"ECHO".to_vec(), b"hi".to_vec()]);
    }

    /// Round trip: any arguments encoded as a multibulk frame come back unchanged.
    #[test]
    fn encoded_commands_round_trip(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        reads in proptest::collection::vec(1usize..50, 1..4),
    ) {
        let mut frame = Vec::new();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        ringshift_node::resp::reply::command(&mut frame, &refs);
        let got = drive(&frame, &reads);
        prop_assert_eq!(got.commands, vec![args]);
        prop_assert!(got.error.is_none());
    }

    /// The reply scanner (a coordinator reading an owner's answer) never panics and never
    /// claims more bytes than it has, whatever a peer sends.
    #[test]
    fn reply_scanner_is_total(
        pick in any::<prop::sample::Index>(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..8),
    ) {
        let corpus = resp_corpus();
        let (_, seed) = &corpus[pick.index(corpus.len())];
        let input = mutate(seed, &ops);
        if let Ok(Some(n)) = ringshift_node::resp::reply::reply_len(&input) {
            prop_assert!(n <= input.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// What a pull reads from a source node (snapshot chunks, change-log tails): arbitrary or
    /// damaged bytes are decoded or refused, never a panic; valid chunks round-trip.
    #[test]
    fn peer_bodies_decode_or_fail_cleanly(
        entries in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..24), proptest::collection::vec(any::<u8>(), 0..24)),
            0..6,
        ),
        done in any::<bool>(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6),
        raw in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        use ringshift_node::wire;
        let sub_entries = entries.iter().rev().cloned().collect();
        let chunk = wire::Chunk { entries, sub_entries, done };
        let encoded = wire::encode_chunk(&chunk);
        prop_assert_eq!(wire::decode_chunk(&encoded).unwrap(), chunk);
        let damaged = mutate(&encoded, &ops);
        let _ = wire::decode_chunk(&damaged);
        let _ = wire::decode_tail(&damaged);
        let _ = wire::decode_chunk(&raw);
        let _ = wire::decode_tail(&raw);
        let _ = ringshift_node::changelog::decode_entry(&raw);
    }
}

#[test]
fn deeply_nested_replies_from_a_peer_are_refused_not_a_stack_overflow() {
    let mut reply = b"*1\r\n".repeat(1_000_000);
    reply.extend_from_slice(b":1\r\n");
    let got = ringshift_node::resp::reply::reply_len(&reply);
    assert!(got.is_err(), "{got:?}");
}

// ---- admin API bodies ----

fn admin_cases() -> Vec<(String, Vec<u8>, String)> {
    let dir = corpus_dir("admin");
    let index = std::fs::read_to_string(dir.join("cases.tsv")).unwrap();
    let cases: Vec<(String, Vec<u8>, String)> = index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (file, expect) = l.split_once('\t').unwrap_or((l, ""));
            let body = std::fs::read(dir.join(file)).unwrap();
            (file.to_string(), body, expect.to_string())
        })
        .collect();
    assert!(cases.len() >= 100, "admin corpus missing: {}", cases.len());
    cases
}

/// Parses `body` as the request type named by `kind`, as the handler of that endpoint does.
fn parse_as(kind: &str, body: &[u8]) -> Result<(), String> {
    fn one<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(), String> {
        match parse_body::<T>(body) {
            Ok(_) => Ok(()),
            Err(e) => {
                assert_eq!(e.0.as_u16(), 400, "{}", e.1.error);
                assert_eq!(e.1.reason, ErrorReason::BadRequest);
                Err(e.1.error)
            }
        }
    }
    match kind {
        "caller" => one::<Caller>(body),
        "placement" => one::<PlacementInstall>(body),
        "fence" => one::<FenceRequest>(body),
        "unfence" => one::<UnfenceRequest>(body),
        "drop" => one::<DropRequest>(body),
        "checksum" => one::<ChecksumRequest>(body),
        "pull" => one::<StartPull>(body),
        "snapshot" => one::<OpenSnapshot>(body),
        other => panic!("unknown request type {other}"),
    }
}

const KINDS: [&str; 8] = [
    "caller",
    "placement",
    "fence",
    "unfence",
    "drop",
    "checksum",
    "pull",
    "snapshot",
];

#[test]
fn admin_corpus_parses_or_fails_with_a_clear_400() {
    for (file, body, expect) in admin_cases() {
        let kind = file.split('.').next().unwrap();
        let got = parse_as(kind, &body);
        match (expect.as_str(), got) {
            ("ok", Ok(())) => {}
            ("ok", Err(e)) => panic!("{file}: should parse, got: {e}"),
            (_, Ok(())) => panic!("{file}: should be refused ({expect})"),
            (want, Err(e)) => {
                assert!(
                    e.starts_with("invalid request body: ") && e.contains(want),
                    "{file}: error {e:?} should contain {want:?}"
                );
                assert!(e.len() < 1024, "{file}: error too long: {} bytes", e.len());
            }
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{1,25}".prop_map(Value::String),
        "-?[0-9a-z ]{0,8}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("caller".to_string()),
                    Just("epoch".to_string()),
                    Just("ranges".to_string()),
                    Just("start".to_string()),
                    Just("end".to_string()),
                    "[a-zA-Z]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random path of `v` with `new`.
fn replace_somewhere(v: &mut serde_json::Value, mut choice: usize, new: serde_json::Value) {
    use serde_json::Value;
    let mut cur = v;
    loop {
        let children = match &*cur {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if children == 0 || choice.is_multiple_of(3) {
            *cur = new;
            return;
        }
        let i = (choice / 3) % children;
        choice /= 7;
        cur = match cur {
            Value::Object(m) => m.values_mut().nth(i).unwrap(),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Valid bodies with one value anywhere replaced by random JSON, or random JSON as a
    /// whole: parsed or refused with a 400 naming the problem, never a panic.
    #[test]
    fn mutated_admin_bodies_parse_or_fail_cleanly(
        kind in prop::sample::select(KINDS.to_vec()),
        choice in any::<usize>(),
        new in json_value(),
        whole_body in any::<bool>(),
    ) {
        let dir = corpus_dir("admin");
        let valid: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{kind}.ok.valid.json"))).unwrap()).unwrap();
        let body = if whole_body {
            new
        } else {
            let mut v = valid;
            replace_somewhere(&mut v, choice, new);
            v
        };
        if let Err(e) = parse_as(kind, body.to_string().as_bytes()) {
            prop_assert!(e.starts_with("invalid request body: "));
            prop_assert!(e.contains("line 1 column"), "no position in {}", e);
        }
    }

    /// Raw byte mutations of the corpus bodies (truncation, flipped bytes): same properties.
    #[test]
    fn byte_mutated_admin_bodies_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6),
    ) {
        let cases = admin_cases();
        let (file, body, _) = &cases[pick.index(cases.len())];
        let kind = file.split('.').next().unwrap();
        let input = mutate(body, &ops);
        let _ = parse_as(kind, &input);
    }
}
