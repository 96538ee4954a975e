//! Kernel counters (per-CPU array [`crate::STATS_MAP`]). Nothing the kernel programs skip or fail
//! to deliver goes uncounted; user space sums the CPUs and reports these.

/// Index into the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every packet a program ran on.
    Packets = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, ...): counted, not parsed.
    NonIp,
    /// IP fragments (IPv4 MF/offset, IPv6 fragment header): counted, not parsed.
    Fragments,
    /// IP packets that are neither TCP nor UDP (ICMP, ESP, ...).
    OtherTransport,
    /// Headers cut short, bad IHL/data offset, or IPv6 extension chain longer than we walk.
    Malformed,
    /// Flow-table inserts the kernel refused.
    FlowInsertFailed,
    /// Verdict/close notices the ring buffer had no room for.
    NoticesLost,
    /// Payload samples the ring buffer had no room for.
    SamplesLost,
    /// Payload copies (`bpf_*_load_bytes`) that failed.
    LoadBytesFailed,
    /// Packets of a known flow seen on another interface than the one that owns the flow.
    ForeignInterface,
    /// Payload packets dropped in enforce mode.
    Dropped,
    /// Flows enforce mode started dropping.
    FlowsDropped,
    /// ServerHellos the kernel could not read (not at the start of the server's first payload,
    /// cut short): the flow's TLS version and suite are judged in user space only.
    HelloUnchecked,
    /// Tail calls into the decide (enforce) programs that failed, or whose flow they could not
    /// find again (the packet passed unclassified or undecided).
    EnforceUnreachable,
    /// Socket-owner records the kernel could not store (its flows are attributed from /proc,
    /// or not at all).
    OwnersLost,
}

/// Number of counters; the size of the per-CPU array.
pub const STAT_COUNT: u32 = Stat::OwnersLost as u32 + 1;

impl Stat {
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Packets,
        Stat::NonIp,
        Stat::Fragments,
        Stat::OtherTransport,
        Stat::Malformed,
        Stat::FlowInsertFailed,
        Stat::NoticesLost,
        Stat::SamplesLost,
        Stat::LoadBytesFailed,
        Stat::ForeignInterface,
        Stat::Dropped,
        Stat::FlowsDropped,
        Stat::HelloUnchecked,
        Stat::EnforceUnreachable,
        Stat::OwnersLost,
    ];

    /// Snake-case name used in agent events and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Packets => "packets",
            Stat::NonIp => "non_ip",
            Stat::Fragments => "fragments",
            Stat::OtherTransport => "other_transport",
            Stat::Malformed => "malformed",
            Stat::FlowInsertFailed => "flow_insert_failed",
            Stat::NoticesLost => "notices_lost",
            Stat::SamplesLost => "samples_lost",
            Stat::LoadBytesFailed => "load_bytes_failed",
            Stat::ForeignInterface => "foreign_interface",
            Stat::Dropped => "dropped",
            Stat::FlowsDropped => "flows_dropped",
            Stat::HelloUnchecked => "hello_unchecked",
            Stat::EnforceUnreachable => "enforce_unreachable",
            Stat::OwnersLost => "owners_lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_index_in_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }
}
