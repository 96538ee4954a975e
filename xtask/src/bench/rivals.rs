//! Other analyzers timed on the same capture as `sealwatch analyze`, the way a user would run
//! them to find out which flows are encrypted: nDPI's `ndpiReader` (flow classification by
//! deep packet inspection, the closest to what sealwatch does) and Wireshark's `tshark` (full
//! protocol dissection). Each is timed by the same [`measure`] as sealwatch, so wall time, CPU
//! time and peak RSS mean the same for all three.
//!
//! Neither is a dependency of the build: `cargo xtask setup` installs both from Debian, and a
//! machine without them still benches sealwatch, only without the comparison.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{Cost, count_lines, measure};

/// An analyzer sealwatch is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    NdpiReader,
    Tshark,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::NdpiReader, Tool::Tshark];

    pub fn program(self) -> &'static str {
        match self {
            Tool::NdpiReader => "ndpiReader",
            Tool::Tshark => "tshark",
        }
    }

    /// The Debian package that has it.
    pub fn package(self) -> &'static str {
        match self {
            Tool::NdpiReader => "libndpi-bin",
            Tool::Tshark => "tshark",
        }
    }

    /// How many times its packet rate sealwatch is meant to reach (the offline-analysis
    /// issue's targets). Reported beside the measured ratio, never asserted.
    pub fn target(self) -> f64 {
        match self {
            Tool::NdpiReader => 5.0,
            Tool::Tshark => 50.0,
        }
    }
}

/// A tool found on this machine.
#[derive(Debug, Clone)]
pub struct Installed {
    pub tool: Tool,
    pub path: PathBuf,
    /// Its version line, as it prints it.
    pub version: String,
}

/// The tool on `PATH`, or `None` after saying on stdout that it is missing: a machine without
/// it still benches sealwatch, only without this comparison.
pub fn find(tool: Tool) -> Option<Installed> {
    let Ok(path) = which::which(tool.program()) else {
        println!(
            "xtask: bench analyze: {} not found (Debian package {}, installed by `cargo xtask setup`): no comparison with it",
            tool.program(),
            tool.package()
        );
        return None;
    };
    let version = version(tool, &path);
    Some(Installed {
        tool,
        path,
        version,
    })
}

/// The first line that names the version: `ndpiReader` has no version flag, its help starts
/// with "Welcome to nDPI x.y.z"; `tshark --version` starts with "TShark (Wireshark) x.y.z".
fn version(tool: Tool, path: &Path) -> String {
    let (arg, marker) = match tool {
        Tool::NdpiReader => ("-h", "nDPI"),
        Tool::Tshark => ("--version", "TShark"),
    };
    Command::new(path)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| l.contains(marker))
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown version".to_owned())
}

/// One timed run and what the tool said it saw.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub cost: Cost,
    /// Packets it read, from its output: a check that it read the whole file.
    pub packets: Option<u64>,
    /// Flows it counted (`ndpiReader` only): a check that the replicas are distinct flows.
    pub flows: Option<u64>,
}

/// The command line, for the report.
pub fn command_line(tool: Tool, capture: &Path) -> String {
    let mut words = vec![tool.program().to_owned()];
    words.extend(args(tool, capture));
    words.join(" ")
}

/// The arguments that make `tool` analyse `capture`, the output going to stdout.
///
/// - `ndpiReader -i FILE`: reads the capture offline (a file name, not a device), classifies
///   every flow with its default settings and prints a summary (traffic counters, protocols,
///   the undetected flows) whose size does not grow with the packets. `-q` would print nothing,
///   but the summary's packet and flow counts show that it read everything and that the
///   replicas are distinct flows.
/// - `tshark -n -r FILE -T fields -e frame.protocols`: one line per packet with its protocol
///   stack. Asking for a field makes tshark build each packet's protocol tree, so every
///   dissector down to TLS, QUIC or SSH runs on every packet, as when a user filters or prints
///   what the packets carry; with `-q` alone and nothing asked for it builds no tree and skips
///   most of that work, which no one looking for encrypted flows would do. `-n`: no name
///   resolution (DNS look-ups would time the network).
fn args(tool: Tool, capture: &Path) -> Vec<String> {
    let file = capture.display().to_string();
    let v: Vec<&str> = match tool {
        Tool::NdpiReader => vec!["-i", &file],
        Tool::Tshark => vec!["-n", "-r", &file, "-T", "fields", "-e", "frame.protocols"],
    };
    v.into_iter().map(str::to_owned).collect()
}

/// Runs `tool` over `capture` once, timed; its stdout and stderr go to files in `scratch`
/// (files, not pipes to drain while it is timed).
pub fn run(tool: &Installed, capture: &Path, scratch: &Path) -> anyhow::Result<Run> {
    let out = scratch.join(format!("{}.out", tool.tool.program()));
    let err = scratch.join(format!("{}.err", tool.tool.program()));
    let mut cmd = Command::new(&tool.path);
    cmd.args(args(tool.tool, capture))
        .stdout(File::create(&out).with_context(|| format!("creating {}", out.display()))?)
        .stderr(File::create(&err).with_context(|| format!("creating {}", err.display()))?);
    let cost = measure(cmd).with_context(|| {
        let said = std::fs::read_to_string(&err).unwrap_or_default();
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{} said: {}", tool.tool.program(), tail.join(" / "))
    })?;
    let (packets, flows) = match tool.tool {
        Tool::NdpiReader => {
            let text = std::fs::read_to_string(&out)
                .with_context(|| format!("reading {}", out.display()))?;
            (ndpi_packets(&text), counter(&text, "Unique flows:"))
        }
        Tool::Tshark => (Some(count_lines(&out)?), None),
    };
    Ok(Run {
        cost,
        packets,
        flows,
    })
}

/// All the packets ndpiReader read, IP or not: "\tIP packets:  1700  of 1723 packets total".
fn ndpi_packets(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("IP packets:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "of")?;
    words.next()?.parse().ok()
}

/// The number after `label` in ndpiReader's summary ("\tUnique flows:   1234").
fn counter(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndpi_reader_summary_counters() {
        let text = "Traffic statistics:\n\tEthernet bytes:        38869         (includes ethernet CRC/IFC/trailer)\n\tIP packets:            1700          of 1723 packets total\n\tUnique flows:          197          \n";
        assert_eq!(counter(text, "IP packets:"), Some(1700));
        assert_eq!(ndpi_packets(text), Some(1723));
        assert_eq!(counter(text, "Unique flows:"), Some(197));
        assert_eq!(counter(text, "TCP Packets:"), None);
    }
}
