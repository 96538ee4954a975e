#![no_std]
//! Marker library so the agent can list this crate as a build dependency (cargo needs a lib
//! target for that); the programs are in the `sealwatch` binary target.
