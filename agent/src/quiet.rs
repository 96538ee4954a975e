//! Reported flows with nothing to remember beyond their key: most flows, once reported, are
//! told entirely by their kernel table entry (verdict, counters, the policy's action), so user
//! space keeps only that they were reported, in a set built to hold a million of them in a few
//! tens of megabytes. IPv4 keys are stored in their 13 meaningful bytes (addresses, ports,
//! protocol) instead of the 40 of a [`FlowKey`].

use std::collections::HashMap;

use sealwatch_common::{flow::FlowKey, net::FAMILY_IPV4};

use crate::flows::FlowHasher;

/// An IPv4 flow key without its unused words: both addresses, both ports, the protocol.
type V4Key = [u8; 13];

/// Each flow with the number of the last sweep that saw it in the kernel table.
#[derive(Debug, Default)]
pub struct QuietFlows {
    v4: HashMap<V4Key, u8, FlowHasher>,
    v6: HashMap<FlowKey, u8, FlowHasher>,
}

impl QuietFlows {
    pub fn insert(&mut self, key: &FlowKey, visited: u8) {
        match compact(key) {
            Some(k) => self.v4.insert(k, visited),
            None => self.v6.insert(*key, visited),
        };
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        match compact(key) {
            Some(k) => self.v4.contains_key(&k),
            None => self.v6.contains_key(key),
        }
    }

    /// Whether the flow was here.
    pub fn remove(&mut self, key: &FlowKey) -> bool {
        match compact(key) {
            Some(k) => self.v4.remove(&k).is_some(),
            None => self.v6.remove(key).is_some(),
        }
    }

    /// Notes that the sweep numbered `visited` saw the flow; false when it is not here.
    pub fn visit(&mut self, key: &FlowKey, visited: u8) -> bool {
        let seen = match compact(key) {
            Some(k) => self.v4.get_mut(&k),
            None => self.v6.get_mut(key),
        };
        seen.map(|v| *v = visited).is_some()
    }

    /// Drops the flows the sweep numbered `visited` did not see (the table evicted them);
    /// returns how many. Gives memory back once most flows are gone.
    pub fn keep_visited(&mut self, visited: u8) -> usize {
        let before = self.len();
        self.v4.retain(|_, v| *v == visited);
        self.v6.retain(|_, v| *v == visited);
        shrink(&mut self.v4);
        shrink(&mut self.v6);
        before - self.len()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every flow, emptying the set.
    pub fn drain(&mut self) -> Vec<FlowKey> {
        let v4 = self.v4.drain().map(|(k, _)| expand(&k));
        let mut all: Vec<FlowKey> = v4.chain(self.v6.drain().map(|(k, _)| k)).collect();
        all.sort_unstable();
        all
    }
}

/// A hash map's memory follows its largest size; once it holds under a quarter of what it
/// could, it is rebuilt at its size.
pub fn shrink<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

fn compact(key: &FlowKey) -> Option<V4Key> {
    let v4 = key.family == FAMILY_IPV4
        && key.addr_lo[1..] == [0; 3]
        && key.addr_hi[1..] == [0; 3]
        && key._pad == [0; 2];
    if !v4 {
        return None;
    }
    let mut k = [0u8; 13];
    k[0..4].copy_from_slice(&key.addr_lo[0].to_ne_bytes());
    k[4..8].copy_from_slice(&key.addr_hi[0].to_ne_bytes());
    k[8..10].copy_from_slice(&key.port_lo.to_ne_bytes());
    k[10..12].copy_from_slice(&key.port_hi.to_ne_bytes());
    k[12] = key.proto;
    Some(k)
}

fn expand(k: &V4Key) -> FlowKey {
    let word = |at: usize| u32::from_ne_bytes([k[at], k[at + 1], k[at + 2], k[at + 3]]);
    FlowKey {
        addr_lo: [word(0), 0, 0, 0],
        addr_hi: [word(4), 0, 0, 0],
        port_lo: u16::from_ne_bytes([k[8], k[9]]),
        port_hi: u16::from_ne_bytes([k[10], k[11]]),
        proto: k[12],
        family: FAMILY_IPV4,
        _pad: [0; 2],
    }
}

#[cfg(test)]
mod tests {
    use sealwatch_common::net::{FAMILY_IPV6, IPPROTO_TCP, IPPROTO_UDP};

    use super::*;

    fn v4(port: u16) -> FlowKey {
        FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], port, [192, 168, 7, 1], 443).0
    }

    fn v6() -> FlowKey {
        FlowKey::canonical(
            FAMILY_IPV6,
            IPPROTO_UDP,
            [0xfd00, 0, 0, 1],
            5353,
            [0xfd00, 0, 0, 2],
            53,
        )
        .0
    }

    #[test]
    fn keys_of_both_families_come_back_whole() {
        let mut q = QuietFlows::default();
        for k in [v4(40000), v4(40001), v6()] {
            q.insert(&k, 0);
        }
        assert!(q.contains(&v4(40001)) && q.contains(&v6()) && !q.contains(&v4(1)));
        assert_eq!(compact(&v6()), None, "an IPv6 key is kept whole");
        let mut want = vec![v4(40000), v4(40001), v6()];
        want.sort_unstable();
        assert_eq!(q.drain(), want);
        assert!(q.is_empty());
    }

    #[test]
    fn a_sweep_keeps_only_what_it_saw() {
        let mut q = QuietFlows::default();
        q.insert(&v4(1), 7);
        q.insert(&v4(2), 7);
        q.insert(&v6(), 7);
        assert!(q.visit(&v4(2), 8) && q.visit(&v6(), 8));
        assert!(!q.visit(&v4(3), 8), "not here");
        assert_eq!(q.keep_visited(8), 1);
        assert!(!q.contains(&v4(1)) && q.contains(&v4(2)));
        assert!(q.remove(&v4(2)) && !q.remove(&v4(2)));
        assert_eq!(q.len(), 1);
    }
}
