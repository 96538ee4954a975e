//! `cargo xtask lab up|down|status`: the standing lab of `sealwatch_tests::standing`.

use anyhow::bail;
use clap::Subcommand;
use sealwatch_tests::standing::{self, Binaries, LabSpec};

use crate::{agent_binary, build, setup};

#[derive(Subcommand)]
pub enum Action {
    /// Set up, build, create the namespaces, start every service and print the status.
    Up,
    /// Stop every lab process and remove its namespaces and state.
    Down,
    /// List the namespaces and services, and the commands to try monitor and enforce mode.
    Status,
}

pub fn run(action: Action) -> anyhow::Result<()> {
    if !sealwatch_tests::is_root() {
        bail!("the lab creates network namespaces: run it as root");
    }
    let spec = LabSpec::user();
    match action {
        Action::Up => {
            setup::run()?;
            build()?;
            let agent = agent_binary();
            let bins = Binaries {
                pq_tls: agent.with_file_name("pq-tls"),
                agent,
            };
            if let Err(e) = standing::up(&spec, &bins) {
                // Half a lab helps nobody: take down what was made.
                let _ = standing::down(&spec);
                return Err(e.context("bringing the lab up (what was made is removed)"));
            }
            print!("{}", standing::status(&spec)?.text);
        }
        Action::Down => {
            standing::down(&spec)?;
            println!("sealwatch lab: down");
        }
        Action::Status => print!("{}", standing::status(&spec)?.text),
    }
    Ok(())
}
