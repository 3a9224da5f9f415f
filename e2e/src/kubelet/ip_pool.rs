//! Loopback addresses for pods: every pod instance gets its own 127.x.y.z.
//!
//! Cluster N of the machine (`--ip-block N`, 0-9) owns 127.(16N).0.0 - 127.(16N+15).255.255, so
//! clusters side by side never share an address. Pods get the upper half but its last /16
//! (127.(16N+15).0.0/16 holds the Services, see `net_plan`), handed out
//! round-robin from 127.(16N+8).0.10 upward so that a recreated pod usually gets a different
//! address (as on a real cluster) and a dying process's sockets never collide with a new pod's.
//! The lower half is left to processes started outside the kubelet (the node's integration
//! tests and benchmarks bind 127.0.x.y), which once took a pod's address mid-test.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// First index handed out: 127.(16N+8).0.10 (the lower half of the block is left for the
/// control plane, tests and tools).
const FIRST: u32 = (8 << 16) + 10;
/// Last index handed out: 127.(16N+14).255.255 (127.(16N+15).0.0/16 is the Service network).
const LAST: u32 = (15 << 16) - 1;
pub const MAX_BLOCK: u8 = 9;

/// The address of `index` in `block`, or None for indexes whose last octet is 0 or 255.
pub fn address(block: u8, index: u32) -> Option<Ipv4Addr> {
    let last = index & 0xff;
    if block > MAX_BLOCK || !(FIRST..=LAST).contains(&index) || last == 0 || last == 255 {
        return None;
    }
    Some(Ipv4Addr::from(
        0x7f00_0000 | (u32::from(block) << 20) | index,
    ))
}

#[derive(Debug)]
pub struct IpPool {
    block: u8,
    in_use: BTreeSet<Ipv4Addr>,
    cursor: u32,
}

impl IpPool {
    pub fn new(block: u8) -> Self {
        Self {
            block,
            in_use: BTreeSet::new(),
            cursor: FIRST,
        }
    }

    /// Takes `preferred` when it is a free address of this block (a kubelet restart keeps a
    /// pod's address), else the next free address after the previous allocation.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = preferred {
            let index = u32::from(ip).wrapping_sub(0x7f00_0000 | (u32::from(self.block) << 20));
            if address(self.block, index) == Some(ip) && self.in_use.insert(ip) {
                return Some(ip);
            }
        }
        for _ in FIRST..=LAST {
            let index = self.cursor;
            self.cursor = if self.cursor >= LAST {
                FIRST
            } else {
                self.cursor + 1
            };
            if let Some(ip) = address(self.block, index)
                && self.in_use.insert(ip)
            {
                return Some(ip);
            }
        }
        None
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_ten_of_the_upper_half_and_is_distinct() {
        let mut pool = IpPool::new(0);
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 8, 0, 10)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 8, 0, 11)));
    }

    #[test]
    fn blocks_do_not_overlap() {
        assert_eq!(
            IpPool::new(2).allocate(None),
            Some(Ipv4Addr::new(127, 40, 0, 10))
        );
        assert_eq!(address(0, LAST - 1), Some(Ipv4Addr::new(127, 14, 255, 254)));
        // The Service network is never handed to a pod.
        assert_eq!(address(0, 15 << 16 | 0x0101), None);
        assert_eq!(address(1, FIRST), Some(Ipv4Addr::new(127, 24, 0, 10)));
        // The lower half (tests and benchmarks on the host) is never handed out.
        assert_eq!(address(0, (1 << 16) + 30), None);
        assert_eq!(address(10, FIRST), None);
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut pool = IpPool::new(0);
        let a = pool.allocate(None).unwrap();
        pool.release(a);
        assert_ne!(pool.allocate(None).unwrap(), a);
    }

    #[test]
    fn preferred_address_kept_when_free_and_in_the_block() {
        let mut pool = IpPool::new(1);
        let want = Ipv4Addr::new(127, 24, 0, 42);
        assert_eq!(pool.allocate(Some(want)), Some(want));
        // Taken now, so the next request for it gets another address.
        assert_ne!(pool.allocate(Some(want)), Some(want));
        // Addresses of other blocks or outside loopback are not honoured.
        for other in [
            Ipv4Addr::new(127, 0, 0, 42),
            Ipv4Addr::new(127, 16, 0, 42),
            Ipv4Addr::new(10, 24, 0, 42),
        ] {
            assert_ne!(pool.allocate(Some(other)), Some(other));
        }
    }

    #[test]
    fn skips_network_and_broadcast_like_octets() {
        let base = 8 << 16;
        assert_eq!(address(0, base + 255), None);
        assert_eq!(address(0, base + 256), None);
        assert_eq!(address(0, base + 257), Some(Ipv4Addr::new(127, 8, 1, 1)));
        let mut pool = IpPool {
            block: 0,
            in_use: BTreeSet::new(),
            cursor: base + 254,
        };
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 8, 0, 254)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 8, 1, 1)));
    }

    #[test]
    fn wraps_around_at_the_end() {
        let mut pool = IpPool {
            block: 0,
            in_use: BTreeSet::new(),
            cursor: LAST - 1,
        };
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 14, 255, 254)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 8, 0, 10)));
    }
}
