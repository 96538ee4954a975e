//! User-space side of the shared types: aya `Pod` so they can be map keys/values.

use crate::flow::{FlowKey, FlowState};

// SAFETY: both are `#[repr(C)]`, `Copy`, made only of integers, with explicit padding fields
// (sizes asserted in `flow.rs`), so every bit pattern is valid.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: see above.
unsafe impl aya::Pod for FlowState {}
