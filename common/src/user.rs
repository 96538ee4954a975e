//! User-space side of the shared types: aya `Pod` so they can be map keys/values.

use crate::flow::{FlowKey, FlowState};

// SAFETY: both are `#[repr(C)]`, `Copy`, made only of integers, with explicit padding fields
// (sizes asserted in `flow.rs`), so every bit pattern is valid.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: see above.
unsafe impl aya::Pod for FlowState {}
// SAFETY: see above (size asserted in `policy.rs`).
unsafe impl aya::Pod for crate::policy::KernelPolicy {}
// SAFETY: see above.
unsafe impl aya::Pod for crate::policy::NetKey {}
// SAFETY: see above.
unsafe impl aya::Pod for crate::policy::NetValue {}
// SAFETY: see above (sizes asserted in `owner.rs`).
unsafe impl aya::Pod for crate::owner::Owner {}
// SAFETY: see above.
unsafe impl aya::Pod for crate::owner::ListenKey {}
// SAFETY: see above.
unsafe impl aya::Pod for crate::owner::FlowOwners {}
// SAFETY: see above (size asserted in `owner.rs`).
unsafe impl aya::Pod for crate::owner::ExecArgs {}
