//! The kernel's flow table as the tracker reads it. Its walk goes in batches
//! (`BPF_MAP_LOOKUP_BATCH`): a million flows are a few hundred system calls instead of two
//! million (a `get_next_key` and a lookup each), and never a copy of the whole table in memory
//! at once (128 MB at a million flows). aya 0.14 has no batch operations, hence the raw call.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};

use aya::maps::{HashMap, Map, MapData, MapError};
use sealwatch_common::flow::{FlowKey, FlowState};
use tracing::warn;

use crate::flows::{FlowTable, Scan};

/// `BPF_MAP_LOOKUP_BATCH` (uapi `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call; a hash map returns whole buckets, so the call asks for more when
/// one bucket holds more than this.
const BATCH: usize = 4096;

/// The batch commands' part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

pub struct KernelFlows {
    map: HashMap<MapData, FlowKey, FlowState>,
    /// The same map, for the batched walk aya does not offer.
    fd: OwnedFd,
    capacity: usize,
}

impl KernelFlows {
    /// The `FLOWS` map, taken from the loaded object.
    pub fn new(map: Map) -> Result<KernelFlows, MapError> {
        let (Map::HashMap(data) | Map::LruHashMap(data)) = &map else {
            // Not a hash map: the conversion fails, naming the type it is.
            let wrong = HashMap::<MapData, FlowKey, FlowState>::try_from(map).err();
            return Err(wrong.unwrap_or(MapError::InvalidMapType { map_type: 0 }));
        };
        let fd = data.fd().as_fd().try_clone_to_owned()?;
        let capacity = data.info()?.max_entries() as usize;
        Ok(KernelFlows {
            map: HashMap::try_from(map)?,
            fd,
            capacity,
        })
    }

    /// The next batch after `scan`'s position into `scan.batch`; `Ok(false)` at the end.
    fn lookup_batch(&self, scan: &mut Scan) -> std::io::Result<bool> {
        let mut want = BATCH.min(self.capacity.max(1));
        loop {
            scan.keys.resize(want, FlowKey::default());
            scan.values.resize(want, FlowState::default());
            let mut next = 0u32;
            let mut attr = BatchAttr {
                in_batch: scan
                    .token
                    .as_ref()
                    .map_or(0, |t| std::ptr::from_ref(t) as u64),
                out_batch: std::ptr::from_mut(&mut next) as u64,
                keys: scan.keys.as_mut_ptr() as u64,
                values: scan.values.as_mut_ptr() as u64,
                count: want as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: `attr` is a valid batch attribute whose key and value buffers hold
            // `count` FlowKeys and FlowStates (the map's key and value layouts), and whose
            // batch tokens point at live u32s (a hash map's token is its bucket index).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    std::ptr::from_mut(&mut attr),
                    size_of::<BatchAttr>(),
                )
            };
            let err = (r < 0).then(std::io::Error::last_os_error);
            match err.as_ref().and_then(std::io::Error::raw_os_error) {
                // One bucket holds more than we asked for.
                Some(libc::ENOSPC) if want < self.capacity => {
                    want = (want * 2).min(self.capacity);
                    continue;
                }
                None | Some(libc::ENOENT) => {}
                Some(_) => return Err(err.unwrap_or_else(std::io::Error::last_os_error)),
            }
            let got = attr.count as usize;
            scan.batch.clear();
            scan.batch.extend(
                scan.keys[..got]
                    .iter()
                    .copied()
                    .zip(scan.values[..got].iter().copied()),
            );
            // ENOENT: that was the last of the table.
            scan.done = err.is_some();
            scan.token = Some(next);
            return Ok(!scan.batch.is_empty() || !scan.done);
        }
    }
}

impl FlowTable for KernelFlows {
    fn get(&self, key: &FlowKey) -> Option<FlowState> {
        self.map.get(key, 0).ok()
    }

    fn remove(&mut self, key: &FlowKey) {
        // Already gone (evicted, or removed by a racing sweep) is fine.
        let _ = self.map.remove(key);
    }

    fn entries(&self) -> Vec<(FlowKey, FlowState)> {
        // Entries can vanish mid-walk (LRU eviction); skip those rather than stop.
        self.map.iter().filter_map(Result::ok).collect()
    }

    fn scan(&self, scan: &mut Scan) -> bool {
        if scan.done {
            scan.batch.clear();
            return false;
        }
        match self.lookup_batch(scan) {
            Ok(more) => more,
            Err(e) => {
                // A kernel without batch lookups (before 5.6): the whole table at once.
                warn!(error = %e, "batched flow-table walk failed; reading it key by key");
                scan.batch = self.entries();
                scan.done = true;
                !scan.batch.is_empty()
            }
        }
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }
}
