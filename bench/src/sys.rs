//! The two `bpf(2)` commands the kernel benchmark needs that aya does not give it: loading an
//! empty program (the floor every measurement is compared with) and `BPF_PROG_TEST_RUN` on any
//! program file descriptor, ours or a running agent's.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `enum bpf_prog_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgType {
    SchedCls = 3,
    Xdp = 6,
}

/// One 8-byte BPF instruction: opcode, dst/src registers, offset, immediate.
fn insn(code: u8, dst: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut i = [0u8; 8];
    i[0] = code;
    i[1] = dst & 0x0f;
    i[2..4].copy_from_slice(&off.to_le_bytes());
    i[4..8].copy_from_slice(&imm.to_le_bytes());
    i
}

/// Loads `r0 = ret; exit`: a program of `kind` that does nothing but return.
pub fn load_empty(kind: ProgType, ret: i32) -> io::Result<OwnedFd> {
    const MOV64_IMM: u8 = 0xb7;
    const EXIT: u8 = 0x95;
    let insns = [insn(MOV64_IMM, 0, 0, ret), insn(EXIT, 0, 0, 0)];
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part: prog_type, insn_cnt, insns, license, then zeros.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(kind as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_le_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_le_bytes());
    attr[48..54].copy_from_slice(b"empty\0");
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
