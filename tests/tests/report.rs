//! `sealwatch report` as users run it: rows from a known flow log, bad input, and the HTML
//! page rendered by headless Chromium, whose screenshot must show the chart.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sealwatch_tests::agent_binary;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/src/testdata/flowlog.jsonl")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sealwatch-report-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn json_rows_from_a_known_flow_log() {
    let out = Command::new(agent_binary())
        .args(["report", "--format", "json"])
        .arg(fixture())
        .output()
        .expect("run report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let rows: Vec<(String, u64, String, String, u64, u64, u64)> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["server.address"].as_str().unwrap_or_default().to_owned(),
                s["server.port"].as_u64().unwrap_or_default(),
                s["network.protocol.name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                s["verdict"].as_str().unwrap_or_default().to_owned(),
                s["clients"].as_u64().unwrap_or_default(),
                s["flows"].as_u64().unwrap_or_default(),
                s["bytes"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let row = |port: u64, proto: &str, verdict: &str, clients, flows, bytes| {
        (
            "10.0.0.1".to_owned(),
            port,
            proto.to_owned(),
            verdict.to_owned(),
            clients,
            flows,
            bytes,
        )
    };
    assert_eq!(
        rows,
        vec![
            row(6379, "redis", "plaintext", 2, 2, 1500),
            row(8080, "http", "plaintext", 1, 1, 900),
            row(443, "tls", "weak", 1, 1, 5000),
            row(8443, "tls", "encrypted-pq", 1, 1, 7000),
        ]
    );
    assert_eq!(v["services"][0]["owner"], "shop/cart-0");
    assert_eq!(v["services"][1]["owner"], "python3 (pid 77)");
    assert!(
        v["services"][1]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("TLS")
    );
    assert_eq!(v["summary"]["flows"], 5);
    assert_eq!(v["summary"]["bytes"], 14400);
}

#[test]
fn bad_input_exits_2_with_the_file_and_line() {
    let dir = scratch("bad");
    let missing = Command::new(agent_binary())
        .args(["report"])
        .arg(dir.join("missing.jsonl"))
        .output()
        .expect("run report");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.jsonl: cannot read"));
    let corrupt = dir.join("corrupt.jsonl");
    std::fs::write(&corrupt, "{\"event\":\"agent\"}\n\u{0}\u{1}garbage\n").expect("write");
    let out = Command::new(agent_binary())
        .arg("report")
        .arg(&corrupt)
        .output()
        .expect("run report");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt.jsonl:2: not a JSON event"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pixels of exactly this colour in an RGB(A) screenshot.
fn count_colour(png_path: &Path, rgb: [u8; 3]) -> (usize, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    let channels = info.color_type.samples();
    let n = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| p[..3] == rgb)
        .count();
    (n, info.width, info.height)
}

#[test]
fn the_html_page_renders_in_headless_chromium_with_its_chart() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "headless Chromium renders the report page: run `cargo xtask setup` (Debian package chromium)"
    );
    let dir = scratch("html");
    let page = dir.join("report.html");
    let out = Command::new(agent_binary())
        .args(["report", "--format", "html", "--group-by", "service", "-o"])
        .arg(&page)
        .arg(fixture())
        .output()
        .expect("run report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shot = dir.join("report.png");
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (plaintext, w, h) = count_colour(&shot, [0xd6, 0x27, 0x28]);
    let (encrypted, ..) = count_colour(&shot, [0x2c, 0xa0, 0x2c]);
    assert_eq!((w, h), (1280, 1400));
    // The bars: plaintext (redis, http) and encrypted (8443) bytes and connections, hundreds
    // of pixels each, beside the badges' smaller areas.
    assert!(plaintext > 2000, "plaintext bars: {plaintext} pixels");
    assert!(encrypted > 2000, "encrypted bars: {encrypted} pixels");
    let keep = std::env::var_os("SEALWATCH_KEEP_SCREENSHOT");
    if let Some(to) = keep {
        std::fs::copy(&shot, to).expect("keep screenshot");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
