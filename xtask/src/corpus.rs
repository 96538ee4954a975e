//! `cargo xtask corpus`: accuracy of `sealwatch analyze` on the labelled captures in
//! ../shared/corpus (see its README). Flows labelled `other` carry no ground truth and are left
//! out; a labelled flow sealwatch never reported counts as wrong.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A flow's identity across labels and events: capture, transport, endpoints in sorted order.
type FlowId = (String, String, (String, u64), (String, u64));

fn flow_id(pcap: &str, l4: &str, a: (String, u64), b: (String, u64)) -> FlowId {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (pcap.to_owned(), l4.to_ascii_lowercase(), lo, hi)
}

#[derive(Default)]
struct Score {
    labelled: u64,
    encryption_right: u64,
    family_right: u64,
    /// Reported flows only (the rest were never seen as a flow with payload).
    reported: u64,
    plaintext_called_encrypted: u64,
}

impl Score {
    fn add(&mut self, other: &Score) {
        self.labelled += other.labelled;
        self.encryption_right += other.encryption_right;
        self.family_right += other.family_right;
        self.reported += other.reported;
        self.plaintext_called_encrypted += other.plaintext_called_encrypted;
    }
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

pub fn run(agent: &Path, corpus: &Path, min_accuracy: Option<f64>) -> anyhow::Result<()> {
    let labels = std::fs::read_to_string(corpus.join("labels.csv"))
        .with_context(|| format!("reading {}/labels.csv", corpus.display()))?;
    let mut rows = Vec::new();
    for line in labels.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [pcap, l4, src, sport, dst, dport, class, family, _] = f[..] else {
            bail!("unexpected labels.csv row: {line}");
        };
        rows.push((
            pcap,
            l4,
            (src.to_owned(), sport.parse::<u64>()?),
            (dst.to_owned(), dport.parse::<u64>()?),
            class,
            family,
        ));
    }
    let mut pcaps: Vec<PathBuf> = rows
        .iter()
        .map(|r| corpus.join("pcaps").join(r.0))
        .collect();
    pcaps.sort();
    pcaps.dedup();

    let started = std::time::Instant::now();
    let out = Command::new(agent)
        .args(["analyze", "--output", "json"])
        .args(&pcaps)
        .output()
        .context("running sealwatch analyze")?;
    if !out.status.success() {
        bail!(
            "sealwatch analyze failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let elapsed = started.elapsed();
    let mut seen: HashMap<FlowId, (String, String)> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let e: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if e["event"] != "flow" {
            continue;
        }
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| e[k].as_u64().unwrap_or_default();
        let id = flow_id(
            &s("interface"),
            &s("network.transport"),
            (s("client.address"), n("client.port")),
            (s("server.address"), n("server.port")),
        );
        seen.insert(id, (s("sealwatch.encryption"), s("network.protocol.name")));
    }

    let mut by_family: BTreeMap<&str, Score> = BTreeMap::new();
    for (pcap, l4, src, dst, class, family) in rows {
        if class == "other" {
            continue;
        }
        let score = by_family.entry(family).or_default();
        score.labelled += 1;
        let Some((encryption, protocol)) = seen.get(&flow_id(pcap, l4, src, dst)) else {
            continue;
        };
        score.reported += 1;
        if encryption == class {
            score.encryption_right += 1;
        }
        if protocol == family {
            score.family_right += 1;
        }
        if class == "plaintext" && encryption == "encrypted" {
            score.plaintext_called_encrypted += 1;
        }
    }

    println!(
        "{:<16} {:>8} {:>9} {:>14} {:>12} {:>12}",
        "family", "labelled", "reported", "encryption ok", "family ok", "plain->enc"
    );
    let mut total = Score::default();
    for (family, s) in &by_family {
        total.add(s);
        println!(
            "{family:<16} {:>8} {:>9} {:>8} {:>4.0}% {:>6} {:>4.0}% {:>12}",
            s.labelled,
            s.reported,
            s.encryption_right,
            pct(s.encryption_right, s.labelled),
            s.family_right,
            pct(s.family_right, s.labelled),
            s.plaintext_called_encrypted
        );
    }
    let accuracy = pct(total.encryption_right, total.labelled);
    println!(
        "{:<16} {:>8} {:>9} {:>8} {:>4.1}% {:>6} {:>4.1}% {:>12}",
        "ALL",
        total.labelled,
        total.reported,
        total.encryption_right,
        accuracy,
        total.family_right,
        pct(total.family_right, total.labelled),
        total.plaintext_called_encrypted
    );
    println!(
        "analysed {} captures in {:.2}s",
        pcaps.len(),
        elapsed.as_secs_f64()
    );
    if let Some(min) = min_accuracy {
        if accuracy < min {
            bail!("encryption verdict right for {accuracy:.1}% of labelled flows, below {min}%");
        }
        if total.plaintext_called_encrypted > 0 {
            bail!(
                "{} plaintext flows called encrypted",
                total.plaintext_called_encrypted
            );
        }
    }
    Ok(())
}
