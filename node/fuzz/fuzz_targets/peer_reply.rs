//! The reply scanner a coordinator uses on an owner's answer: never a panic or a stack
//! overflow, never more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringshift_node::resp::reply::{array_items, reply_len};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = reply_len(data) {
        assert!(n <= data.len());
        let _ = array_items(&data[..n]);
    }
});
