//! The admin API's request bodies: parsed into the type the first byte picks, or refused with a
//! 400 `BadRequest` whose message says what is wrong; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringshift_node::admin::parse_body;
use ringshift_node_api::*;

fn check<T: serde::de::DeserializeOwned>(body: &[u8]) {
    if let Err(e) = parse_body::<T>(body) {
        assert_eq!(e.0.as_u16(), 400);
        assert_eq!(e.1.reason, ErrorReason::BadRequest);
        assert!(e.1.error.starts_with("invalid request body: "));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        0 => check::<Caller>(body),
        1 => check::<PlacementInstall>(body),
        2 => check::<FenceRequest>(body),
        3 => check::<UnfenceRequest>(body),
        4 => check::<DropRequest>(body),
        5 => check::<ChecksumRequest>(body),
        6 => check::<StartPull>(body),
        _ => check::<OpenSnapshot>(body),
    }
});
