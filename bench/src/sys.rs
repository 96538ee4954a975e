//! The `bpf(2)` commands the kernel benchmark needs that aya does not give it: loading an empty
//! program (the baseline every measurement is compared with), the flow-table floor programs
//! (what any flow tracker keyed like ours must pay: the map work alone, no parsing, no
//! classification), and `BPF_PROG_TEST_RUN` on any program file descriptor, ours or a running
//! agent's.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// Where [`attach_tcx`] attaches (`BPF_TCX_INGRESS`, `BPF_TCX_EGRESS`).
#[derive(Debug, Clone, Copy)]
pub enum TcxHook {
    Ingress = 46,
    Egress = 47,
}

/// Attaches a `SchedCls` program at TCX `hook` of interface `ifindex` (in the calling thread's
/// network namespace), after the programs already there; detached when the link is closed.
pub fn attach_tcx(prog: BorrowedFd<'_>, ifindex: u32, hook: TcxHook) -> io::Result<OwnedFd> {
    // union bpf_attr, BPF_LINK_CREATE part: prog_fd, target_ifindex, attach_type, flags.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_le_bytes());
    attr[8..12].copy_from_slice(&(hook as u32).to_le_bytes());
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `enum bpf_prog_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgType {
    SchedCls = 3,
    Xdp = 6,
}

/// One 8-byte BPF instruction: opcode, dst/src registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut i = [0u8; 8];
    i[0] = code;
    i[1] = (dst & 0x0f) | (src << 4);
    i[2..4].copy_from_slice(&off.to_le_bytes());
    i[4..8].copy_from_slice(&imm.to_le_bytes());
    i
}

// The opcodes the programs here use (uapi `linux/bpf.h`, `linux/bpf_common.h`).
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const LD_IMM64: u8 = 0x18;
const ST_DW: u8 = 0x7a;
const STX_DW: u8 = 0x7b;
const ATOMIC_ADD_DW: u8 = 0xdb;
const JEQ_IMM: u8 = 0x15;
const JNE_REG: u8 = 0x5d;
const LDX_DW: u8 = 0x79;
const STX_W: u8 = 0x63;
const XOR64_REG: u8 = 0xaf;
const MUL64_REG: u8 = 0x2f;
const RSH64_IMM: u8 = 0x77;
const AND64_IMM: u8 = 0x57;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;
const FP: u8 = 10;
// Helper numbers.
const MAP_LOOKUP_ELEM: i32 = 1;
const MAP_UPDATE_ELEM: i32 = 2;
const KTIME_GET_NS: i32 = 5;
const BPF_NOEXIST: i32 = 1;

/// Loads `r0 = ret; exit`: a program of `kind` that does nothing but return.
pub fn load_empty(kind: ProgType, ret: i32) -> io::Result<OwnedFd> {
    load(kind, &exit_with(ret), b"empty")
}

/// `r1 = map`: the two halves of a 64-bit load of the map's descriptor.
fn load_map(map: BorrowedFd<'_>) -> [[u8; 8]; 2] {
    [
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map.as_raw_fd()),
        insn(0, 0, 0, 0, 0),
    ]
}

/// Stores `words` as sign-extended 64-bit words on the stack from `at` up: the floors' key.
fn store_words(p: &mut Vec<[u8; 8]>, at: i16, words: &[i32]) {
    for (i, w) in words.iter().enumerate() {
        p.push(insn(ST_DW, FP, 0, at + 8 * i as i16, *w));
    }
}

/// Where the floors build their key on the stack.
const KEY_AT: i16 = -(FLOOR_KEY as i16);

/// `reg = fp + at`: a pointer to the stack, for a helper's key or value argument.
fn stack_ptr(reg: u8, at: i16) -> [[u8; 8]; 2] {
    [
        insn(MOV64_REG, reg, FP, 0, 0),
        insn(ADD64_IMM, reg, 0, 0, i32::from(at)),
    ]
}

/// A fast path's counting on the entry `r0` points at, `entry_at` bytes into the value: one
/// packet and a full segment's bytes, each with an atomic add.
fn count_packet(entry_at: i16) -> [[u8; 8]; 4] {
    [
        insn(MOV64_IMM, 1, 0, 0, 1),
        insn(ATOMIC_ADD_DW, 0, 1, entry_at + PACKETS_AT, 0),
        insn(MOV64_IMM, 1, 0, 0, 1400),
        insn(ATOMIC_ADD_DW, 0, 1, entry_at + BYTES_AT, 0),
    ]
}

/// `r0 = ret; exit`.
fn exit_with(ret: i32) -> [[u8; 8]; 2] {
    [insn(MOV64_IMM, 0, 0, 0, ret), insn(EXIT, 0, 0, 0, 0)]
}

/// The words of the key the floor programs build on their stack: each a sign-extended 32-bit
/// immediate (what `BPF_ST` stores), so the map can be given the same key from here.
pub fn floor_key(words: [i32; 5]) -> [u8; FLOOR_KEY] {
    let mut key = [0u8; FLOOR_KEY];
    for (chunk, w) in key.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&i64::from(w).to_le_bytes());
    }
    key
}

/// Key and value sizes of the floor's map: those of the agent's flow table.
pub const FLOOR_KEY: usize = 40;
pub const FLOOR_VALUE: usize = 88;
/// Where the flow counters sit in a flow entry (`FlowState::packets[0]`, `bytes[0]`).
const PACKETS_AT: i16 = 16;
const BYTES_AT: i16 = 32;

/// The flow-table floor with its table: a flow-shaped LRU hash of `capacity` entries holding
/// one established (zeroed) entry under `key`, and [`load_lookup_floor`]'s program counting
/// into it. Returns the map, for the other floors to share and for checks, and the program.
pub fn lookup_floor(
    kind: ProgType,
    ret: i32,
    capacity: u32,
    key: [i32; 5],
) -> io::Result<(OwnedFd, OwnedFd)> {
    let map = create_flow_shaped_lru(capacity)?;
    insert_zeroed(map.as_fd(), &floor_key(key))?;
    let prog = load_lookup_floor(kind, ret, map.as_fd(), key)?;
    Ok((map, prog))
}

/// The floor of the fast path: look a 40-byte key up in `map` (an LRU hash shaped like the flow
/// table) and add to two counters of the entry with atomic adds, as every packet of a counted
/// flow needs; no parsing, no clock, no flags.
fn load_lookup_floor(
    kind: ProgType,
    ret: i32,
    map: BorrowedFd<'_>,
    key: [i32; 5],
) -> io::Result<OwnedFd> {
    let mut p = Vec::new();
    store_words(&mut p, KEY_AT, &key);
    p.extend(load_map(map));
    p.extend(stack_ptr(2, KEY_AT));
    p.push(insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    let count = count_packet(0);
    p.push(insn(JEQ_IMM, 0, 0, count.len() as i16, 0));
    p.extend(count);
    p.extend(exit_with(ret));
    load(kind, &p, b"floor_lookup")
}

/// The multiplier of [`slot_of`]'s hash (2^64 over the golden ratio).
const SLOT_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The slot of `key` in a table of `capacity` slots (a power of two), as the array floor
/// program computes it: a multiply-xor hash of the key's five words, far cheaper than the
/// kernel's jhash.
pub fn slot_of(key: &[u8; FLOOR_KEY], capacity: u32) -> u32 {
    let mut h = 0u64;
    for w in key.chunks_exact(8) {
        let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
        h = (h ^ word).wrapping_mul(SLOT_MIX);
    }
    ((h >> 32) as u32) & (capacity - 1)
}

/// What a flow table of our own would cost on the fast path, at its least: an array of
/// 128-byte slots (key then entry), the slot picked by [`slot_of`], the key compared word by
/// word, the same two counter adds as [`load_lookup_floor`]. No collisions, no eviction and
/// no concurrent inserts are handled: that is the floor of such a table, not one.
pub fn load_array_floor(
    kind: ProgType,
    ret: i32,
    map: BorrowedFd<'_>,
    capacity: u32,
    key: [i32; 5],
) -> io::Result<OwnedFd> {
    const INDEX_AT: i16 = -48;
    let mut p = Vec::new();
    store_words(&mut p, KEY_AT, &key);
    // r6 = SLOT_MIX; r7 = 0; per word: r7 = (r7 ^ word) * r6.
    p.push(insn(LD_IMM64, 6, 0, 0, SLOT_MIX as u32 as i32));
    p.push(insn(0, 0, 0, 0, (SLOT_MIX >> 32) as u32 as i32));
    p.push(insn(MOV64_IMM, 7, 0, 0, 0));
    for i in 0..5 {
        p.push(insn(LDX_DW, 1, FP, KEY_AT + 8 * i, 0));
        p.push(insn(XOR64_REG, 7, 1, 0, 0));
        p.push(insn(MUL64_REG, 7, 6, 0, 0));
    }
    p.push(insn(RSH64_IMM, 7, 0, 0, 32));
    p.push(insn(AND64_IMM, 7, 0, 0, capacity as i32 - 1));
    p.push(insn(STX_W, FP, 7, INDEX_AT, 0));
    p.extend(load_map(map));
    p.extend(stack_ptr(2, INDEX_AT));
    p.push(insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    // Jumps to the exit, patched once its place is known.
    let mut to_out = vec![p.len()];
    p.push(insn(JEQ_IMM, 0, 0, 0, 0));
    for i in 0..5 {
        p.push(insn(LDX_DW, 1, 0, 8 * i, 0));
        p.push(insn(LDX_DW, 2, FP, KEY_AT + 8 * i, 0));
        to_out.push(p.len());
        p.push(insn(JNE_REG, 1, 2, 0, 0));
    }
    p.extend(count_packet(FLOOR_KEY as i16));
    let out = p.len();
    for at in to_out {
        p[at][2..4].copy_from_slice(&((out - at - 1) as i16).to_le_bytes());
    }
    p.extend(exit_with(ret));
    load(kind, &p, b"floor_array")
}

/// The floor of a new flow's entry: read the precise clock (a flow's start time; here also
/// what makes each run's key new), insert a zeroed 88-byte entry under a new 40-byte key with
/// `BPF_NOEXIST`, and look it up again for its address, as the tracker's `new_flow` does.
pub fn load_insert_floor(
    kind: ProgType,
    ret: i32,
    map: BorrowedFd<'_>,
    key: [i32; 5],
) -> io::Result<OwnedFd> {
    const VALUE_AT: i16 = KEY_AT - FLOOR_VALUE as i16;
    let mut p = vec![insn(CALL, 0, 0, 0, KTIME_GET_NS)];
    // The clock's reading is the key's first word.
    p.push(insn(STX_DW, FP, 0, KEY_AT, 0));
    store_words(&mut p, KEY_AT + 8, &key[1..]);
    store_words(&mut p, VALUE_AT, &[0; FLOOR_VALUE / 8]);
    p.extend(load_map(map));
    p.extend(stack_ptr(2, KEY_AT));
    p.extend(stack_ptr(3, VALUE_AT));
    p.push(insn(MOV64_IMM, 4, 0, 0, BPF_NOEXIST));
    p.push(insn(CALL, 0, 0, 0, MAP_UPDATE_ELEM));
    p.extend(load_map(map));
    p.extend(stack_ptr(2, KEY_AT));
    p.push(insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    p.extend(exit_with(ret));
    load(kind, &p, b"floor_insert")
}

fn load(kind: ProgType, insns: &[[u8; 8]], name: &[u8]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part: prog_type, insn_cnt, insns, license, then zeros
    // up to prog_name (16 bytes at offset 48).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(kind as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_le_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_le_bytes());
    let name = &name[..name.len().min(15)];
    attr[48..48 + name.len()].copy_from_slice(name);
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates an LRU hash map shaped like the flow table (40-byte keys, 88-byte values, entries
/// preallocated), with room for `capacity` entries.
fn create_flow_shaped_lru(capacity: u32) -> io::Result<OwnedFd> {
    const LRU_HASH: u32 = 9;
    create_map(LRU_HASH, FLOOR_KEY, FLOOR_VALUE, capacity, b"floor")
}

/// Creates an array of `capacity` 128-byte slots: a flow key then its entry.
pub fn create_slot_array(capacity: u32) -> io::Result<OwnedFd> {
    const ARRAY: u32 = 2;
    create_map(ARRAY, 4, FLOOR_KEY + FLOOR_VALUE, capacity, b"floora")
}

fn create_map(
    map_type: u32,
    key_size: usize,
    value_size: usize,
    capacity: u32,
    name: &[u8],
) -> io::Result<OwnedFd> {
    // union bpf_attr, BPF_MAP_CREATE part: map_type, key_size, value_size, max_entries,
    // map_flags, inner_map_fd, numa_node, map_name (16 bytes at offset 28).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&map_type.to_le_bytes());
    attr[4..8].copy_from_slice(&(key_size as u32).to_le_bytes());
    attr[8..12].copy_from_slice(&(value_size as u32).to_le_bytes());
    attr[12..16].copy_from_slice(&capacity.to_le_bytes());
    let name = &name[..name.len().min(15)];
    attr[28..28 + name.len()].copy_from_slice(name);
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The element commands' part of `union bpf_attr`: map_fd, key, value (or next key), flags 0.
fn elem_attr(map: BorrowedFd<'_>, key: u64, value: u64) -> [u8; 128] {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&key.to_le_bytes());
    attr[16..24].copy_from_slice(&value.to_le_bytes());
    attr
}

fn update_elem(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = elem_attr(map, key.as_ptr() as u64, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Writes `key` and a zeroed entry into its slot of an array from [`create_slot_array`].
pub fn place_in_slot(map: BorrowedFd<'_>, key: &[u8; FLOOR_KEY], capacity: u32) -> io::Result<()> {
    let mut value = [0u8; FLOOR_KEY + FLOOR_VALUE];
    value[..FLOOR_KEY].copy_from_slice(key);
    update_elem(map, &slot_of(key, capacity).to_ne_bytes(), &value)
}

/// Where the entry starts in a value of an LRU hash from [`create_flow_shaped_lru`], and of a
/// slot of [`create_slot_array`] (after its key).
pub const ENTRY_IN_LRU: usize = 0;
pub const ENTRY_IN_SLOT: usize = FLOOR_KEY;

/// The packet count the floor programs added to the entry under `key` (`FlowState::packets[0]`
/// of the entry starting `entry_at` bytes into the value): proof they found it.
pub fn floor_packets(map: BorrowedFd<'_>, key: &[u8], entry_at: usize) -> io::Result<u64> {
    let mut value = [0u8; FLOOR_KEY + FLOOR_VALUE];
    let mut attr = elem_attr(map, key.as_ptr() as u64, value.as_mut_ptr() as u64);
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    let at = entry_at + PACKETS_AT as usize;
    let mut word = [0u8; 8];
    word.copy_from_slice(&value[at..at + 8]);
    Ok(u64::from_le_bytes(word))
}

/// How many entries an LRU hash from [`create_flow_shaped_lru`] holds.
pub fn count_entries(map: BorrowedFd<'_>) -> io::Result<u64> {
    let (mut key, mut next) = ([0u8; FLOOR_KEY], [0u8; FLOOR_KEY]);
    let mut n = 0u64;
    let mut first = true;
    loop {
        // A null key asks for the first one.
        let from = if first { 0 } else { key.as_ptr() as u64 };
        let mut attr = elem_attr(map, from, next.as_mut_ptr() as u64);
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(n),
            Err(e) => return Err(e),
        }
        n += 1;
        key = next;
        first = false;
    }
}

/// Inserts a zeroed entry under `key`.
fn insert_zeroed(map: BorrowedFd<'_>, key: &[u8; FLOOR_KEY]) -> io::Result<()> {
    update_elem(map, key, &[0u8; FLOOR_VALUE])
}

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub retval: u32,
    /// Mean nanoseconds per repetition, as the kernel timed them (its own clock around the
    /// program, not around the system call).
    pub ns: u32,
}

/// Runs `prog` `repeat` times on `packet`.
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> io::Result<Run> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_le_bytes());
    attr[8..12].copy_from_slice(&(packet.len() as u32).to_le_bytes());
    attr[16..24].copy_from_slice(&(packet.as_ptr() as u64).to_le_bytes());
    attr[32..36].copy_from_slice(&repeat.to_le_bytes());
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let word = |at: usize| u32::from_le_bytes([attr[at], attr[at + 1], attr[at + 2], attr[at + 3]]);
    Ok(Run {
        retval: word(4),
        ns: word(36),
    })
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i32> {
    // SAFETY: `attr` is a zero-filled bpf_attr of the size we pass, with the fields `cmd`
    // reads set; the pointers in it outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}
