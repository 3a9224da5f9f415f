//! Loopback addresses for pods: every pod instance gets its own 127.x.y.z.
//!
//! Addresses are handed out round-robin from 127.0.0.10 upward so that a pod that is recreated
//! usually gets a different address (as on a real cluster) and a dying process's sockets never
//! collide with a new pod's.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// First index handed out: 127.0.0.10 (lower ones are left for the control plane and tools).
const FIRST: u32 = 10;
/// Size of the index space: 127.0.0.10 up to 127.255.255.x.
const LAST: u32 = 0x00ff_ffff;

/// The address for an index, or None for indexes whose last octet is 0 or 255.
pub fn address(index: u32) -> Option<Ipv4Addr> {
    let last = index & 0xff;
    if !(FIRST..=LAST).contains(&index) || last == 0 || last == 255 {
        return None;
    }
    Some(Ipv4Addr::from(0x7f00_0000 | index))
}

#[derive(Debug, Default)]
pub struct IpPool {
    in_use: BTreeSet<Ipv4Addr>,
    cursor: u32,
}

impl IpPool {
    pub fn new() -> Self {
        Self {
            in_use: BTreeSet::new(),
            cursor: FIRST,
        }
    }

    /// Takes `preferred` when it is a free pod address (a kubelet restart keeps a pod's address),
    /// else the next free address after the previous allocation.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = preferred {
            let index = u32::from(ip) & 0x00ff_ffff;
            if ip.octets()[0] == 127 && address(index) == Some(ip) && self.in_use.insert(ip) {
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
            if let Some(ip) = address(index)
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
    fn starts_at_ten_and_is_distinct() {
        let mut pool = IpPool::new();
        let a = pool.allocate(None).unwrap();
        let b = pool.allocate(None).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 0, 0, 10));
        assert_eq!(b, Ipv4Addr::new(127, 0, 0, 11));
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut pool = IpPool::new();
        let a = pool.allocate(None).unwrap();
        pool.release(a);
        assert_ne!(pool.allocate(None).unwrap(), a);
    }

    #[test]
    fn preferred_address_kept_when_free() {
        let mut pool = IpPool::new();
        let want = Ipv4Addr::new(127, 0, 0, 42);
        assert_eq!(pool.allocate(Some(want)), Some(want));
        // Taken now, so the next request for it gets another address.
        assert_ne!(pool.allocate(Some(want)), Some(want));
        // Addresses outside the pod range are not honoured.
        assert_ne!(
            pool.allocate(Some(Ipv4Addr::new(10, 0, 0, 1))),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
    }

    #[test]
    fn skips_network_and_broadcast_like_octets() {
        assert_eq!(address(255), None);
        assert_eq!(address(256), None);
        assert_eq!(address(257), Some(Ipv4Addr::new(127, 0, 1, 1)));
        let mut pool = IpPool {
            in_use: BTreeSet::new(),
            cursor: 254,
        };
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 1, 1)));
    }

    #[test]
    fn wraps_around_at_the_end() {
        let mut pool = IpPool {
            in_use: BTreeSet::new(),
            cursor: LAST - 1,
        };
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 255, 255, 254)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 0, 10)));
    }
}
