//! Service protocols named after the core detectors had their say: databases, mail, directory,
//! caches, queues, management and VPN protocols. Each family lives in its own module; these
//! two functions are the only dispatch points.

use super::{Context, Verdict};

/// TCP first payloads.
#[inline(always)]
pub(super) fn detect_tcp(_w: &[u8], _ctx: &Context) -> Option<Verdict> {
    None
}

/// UDP datagrams.
#[inline(always)]
pub(super) fn detect_udp(_w: &[u8], _ctx: &Context) -> Option<Verdict> {
    None
}
