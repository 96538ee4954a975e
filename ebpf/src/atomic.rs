//! Atomic read-modify-write on map values. `core`'s atomic types offer no RMW methods on the BPF
//! target, so these call the intrinsics directly; LLVM lowers them to BPF_ATOMIC instructions
//! (`lock xadd`, `atomic_fetch_or`), which the kernel has supported since 5.12.

use core::intrinsics::{AtomicOrdering, atomic_and, atomic_or, atomic_xadd};

/// Adds `v` to `*dst` without returning the old value.
#[inline(always)]
pub fn add_u64(dst: &mut u64, v: u64) {
    // SAFETY: `dst` is a valid, 8-byte aligned map value slot.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, v) };
}

/// ORs `bits` into `*dst` and returns the previous value.
#[inline(always)]
pub fn fetch_or_u64(dst: &mut u64, bits: u64) -> u64 {
    // SAFETY: `dst` is a valid, 8-byte aligned map value slot.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

/// ANDs `bits` into `*dst` and returns the previous value.
#[inline(always)]
pub fn fetch_and_u64(dst: &mut u64, bits: u64) -> u64 {
    // SAFETY: `dst` is a valid, 8-byte aligned map value slot.
    unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

/// Reads `*dst` once, as other CPUs may be writing it.
#[inline(always)]
pub fn load_u64(dst: &u64) -> u64 {
    // SAFETY: `dst` is a valid, aligned reference.
    unsafe { core::ptr::read_volatile(dst) }
}
