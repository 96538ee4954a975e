//! sealwatch agent: loads the kernel programs, follows flows, and reports which ones are
//! plaintext. `main.rs` is only the command line around [`run::run`].

pub mod attrib;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod deep;
pub mod event;
pub mod events;
pub mod features;
pub mod flowlog;
pub mod flows;
pub mod flowtable;
pub mod json;
pub mod links;
pub mod offline;
pub mod output;
pub mod owners;
pub mod pins;
pub mod policy;
pub mod privileges;
pub mod programs;
pub mod progress;
pub mod quiet;
pub mod report;
pub mod reset;
pub mod run;
pub mod sinks;
pub mod streams;
pub mod telemetry;
