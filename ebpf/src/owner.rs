//! Socket owners (see `sealwatch_common::owner`): cgroup socket programs record the process
//! behind each socket while running in it; sock_ops ties established TCP connections to them
//! by address. Every program here allows the operation: they watch, never decide.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
    },
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_probe_read_user,
        generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_probe_read_user_str},
    },
    macros::{cgroup_sock, cgroup_sock_addr, sock_ops, tracepoint},
    programs::{SockAddrContext, SockContext, SockOpsContext, TracePointContext},
};
use sealwatch_common::{
    net::{FAMILY_IPV4, FAMILY_IPV6, IPPROTO_TCP},
    owner::{EXEC_ARGS_BYTES, FlowOwners, ListenKey, MAX_EXEC_ARGV, Owner, established_key},
    stats::Stat,
};

use crate::maps::{EXEC_ARGS, EXEC_SCRATCH, FLOW_OWNERS, LISTENERS, SOCK_OWNERS, count};

/// cgroup socket programs: 1 lets the operation proceed.
const ALLOW: i32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[cgroup_sock_addr(connect4)]
pub fn owner_connect4(ctx: SockAddrContext) -> i32 {
    remember(&ctx, false);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn owner_connect6(ctx: SockAddrContext) -> i32 {
    remember(&ctx, false);
    ALLOW
}

/// Unconnected UDP: every datagram passes here, so only a socket's first is recorded.
#[cgroup_sock_addr(sendmsg4)]
pub fn owner_sendmsg4(ctx: SockAddrContext) -> i32 {
    remember(&ctx, true);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn owner_sendmsg6(ctx: SockAddrContext) -> i32 {
    remember(&ctx, true);
    ALLOW
}

#[cgroup_sock(post_bind4)]
pub fn owner_bind4(ctx: SockContext) -> i32 {
    bound(&ctx);
    ALLOW
}

#[cgroup_sock(post_bind6)]
pub fn owner_bind6(ctx: SockContext) -> i32 {
    bound(&ctx);
    ALLOW
}

/// The running process, which these programs run in.
#[inline(always)]
fn current(netns: u64) -> Owner {
    Owner {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        // SAFETY: no arguments; valid in every cgroup socket program.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns,
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// Records the current process as the owner of the context's socket and returns it; with
/// `only_new`, a socket already recorded costs one lookup (unconnected UDP: every datagram).
#[inline(always)]
fn remember<C: EbpfContext>(ctx: &C, only_new: bool) -> Option<Owner> {
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is only compared against None.
    if only_new && unsafe { SOCK_OWNERS.get(&cookie) }.is_some() {
        return None;
    }
    // SAFETY: as above.
    let owner = current(unsafe { bpf_get_netns_cookie(ctx.as_ptr()) });
    if SOCK_OWNERS.insert(&cookie, &owner, 0).is_err() {
        count(Stat::OwnersLost);
    }
    Some(owner)
}

/// A bound port: its owner is also the owner of every socket `accept` returns for it.
#[inline(always)]
fn bound(ctx: &SockContext) {
    let Some(owner) = remember(ctx, false) else {
        return;
    };
    // SAFETY: the context's socket is valid for the program's run.
    let (port, proto) = unsafe { ((*ctx.sock).src_port, (*ctx.sock).protocol) };
    if port == 0 {
        return;
    }
    let key = ListenKey::new(owner.netns, proto as u8, port as u16);
    if LISTENERS.insert(&key, &owner, 0).is_err() {
        count(Stat::OwnersLost);
    }
}

/// A TCP connection reached ESTABLISHED: the owner of its local end, known since `connect`
/// (active) or `bind` (passive), is filed under the connection's flow key, which the agent
/// finds from packets even where they carry no socket (a pod's, seen on the host's veth).
#[sock_ops]
pub fn owner_established(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return 1;
    }
    let Some((family, local, remote)) = addresses(&ctx) else {
        return 1;
    };
    let local_port = ctx.local_port() as u16;
    // Network order; kernels put it in the high 16 bits of the word (older ones, the low).
    let raw = ctx.remote_port();
    let raw = if raw >> 16 != 0 { raw >> 16 } else { raw };
    let remote_port = u16::from_be(raw as u16);
    let owner = if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        // SAFETY: the helper takes the program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        // SAFETY: read once and copied.
        unsafe { SOCK_OWNERS.get(&cookie) }.copied()
    } else {
        // SAFETY: as above.
        let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
        let key = ListenKey::new(netns, IPPROTO_TCP, local_port);
        // SAFETY: as above.
        unsafe { LISTENERS.get(&key) }.copied()
    };
    let Some(owner) = owner else {
        return 1;
    };
    let (key, side) = established_key(family, &local, local_port, &remote, remote_port);
    if FLOW_OWNERS.get_ptr_mut(&key).is_none() {
        // NOEXIST: the other end, on another CPU, may have filed it meanwhile.
        let _ = FLOW_OWNERS.insert(&key, &FlowOwners::default(), u64::from(BPF_NOEXIST));
    }
    match FLOW_OWNERS.get_ptr_mut(&key) {
        // SAFETY: map values stay valid for the program's run; each end writes its own side.
        Some(owners) => unsafe { (*owners).side[usize::from(side & 1)] = owner },
        None => count(Stat::OwnersLost),
    }
    1
}

/// The connection's family and addresses as the packet parser keys them: IPv4 in the first
/// word, also for IPv4 connections on dual-stack (IPv6) sockets, which see v4-mapped addresses.
#[inline(always)]
fn addresses(ctx: &SockOpsContext) -> Option<(u8, [u32; 4], [u32; 4])> {
    match ctx.family() {
        AF_INET => Some((
            FAMILY_IPV4,
            [ctx.local_ip4(), 0, 0, 0],
            [ctx.remote_ip4(), 0, 0, 0],
        )),
        AF_INET6 => {
            let local = ctx.local_ip6();
            let remote = ctx.remote_ip6();
            if v4_mapped(&local) {
                Some((FAMILY_IPV4, [local[3], 0, 0, 0], [remote[3], 0, 0, 0]))
            } else {
                Some((FAMILY_IPV6, local, remote))
            }
        }
        _ => None,
    }
}

/// `::ffff:a.b.c.d`, as network-order words.
#[inline(always)]
fn v4_mapped(a: &[u32; 4]) -> bool {
    a[0] == 0 && a[1] == 0 && a[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
}

/// `syscalls:sys_enter_execve`: `argv` at offset 24 (after the common header, the syscall
/// number and `filename`).
#[tracepoint]
pub fn exec_args(ctx: TracePointContext) -> u32 {
    record_exec(&ctx, 24);
    0
}

/// `syscalls:sys_enter_execveat`: `argv` at offset 32 (after `fd` and `filename`).
#[tracepoint]
pub fn execat_args(ctx: TracePointContext) -> u32 {
    record_exec(&ctx, 32);
    0
}

/// Files the arguments of an execve under the calling process (which keeps its pid through
/// the exec). A failed exec leaves arguments the next one replaces; user space checks them
/// against the owner's `comm`.
#[inline(always)]
fn record_exec(ctx: &TracePointContext, argv_at: usize) {
    const HALF: usize = EXEC_ARGS_BYTES / 2;
    // SAFETY: the offset is the tracepoint's `argv` field.
    let Ok(argv) = (unsafe { ctx.read_at::<*const *const u8>(argv_at) }) else {
        return;
    };
    let Some(buf) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU slot, this program's alone while it runs.
    let buf = unsafe { &mut *buf };
    let mut used: usize = 0;
    for i in 0..MAX_EXEC_ARGV {
        if used >= HALF {
            break;
        }
        // SAFETY: reads user memory through the helper, which fails cleanly on a bad pointer.
        let Ok(arg) = (unsafe { bpf_probe_read_user(argv.wrapping_add(i)) }) else {
            break;
        };
        if arg.is_null() {
            break;
        }
        // The mask keeps the verifier sure the copy ends inside the buffer.
        let at = used & (HALF - 1);
        // SAFETY: `at + HALF <= EXEC_ARGS_BYTES`; the helper writes at most HALF bytes.
        let n = unsafe {
            bpf_probe_read_user_str(
                buf.bytes.as_mut_ptr().wrapping_add(at).cast(),
                HALF as u32,
                arg.cast(),
            )
        };
        if n <= 0 {
            break;
        }
        used = at + n as usize;
    }
    buf.len = used as u32;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if EXEC_ARGS.insert(&tgid, buf, 0).is_err() {
        count(Stat::OwnersLost);
    }
}
