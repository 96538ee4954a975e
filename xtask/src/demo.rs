//! `cargo xtask demo`: a small lab with real servers and clients and the agent watching it.

use std::{
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sealwatch_tests::{Lab, attached};

pub fn run(agent: &Path) -> anyhow::Result<()> {
    if !sealwatch_tests::is_root() {
        bail!("the demo creates network namespaces and loads BPF programs: run it as root");
    }
    let mut lab = Lab::new()?;
    println!(
        "demo: lab up: client {} / {} in netns {}, server {} / {} in netns {}",
        lab.client_v4, lab.client_v6, lab.client_ns, lab.server_v4, lab.server_v6, lab.server_ns
    );
    lab.spawn_standard_servers()?;
    println!(
        "demo: servers up: python http.server :8080, openssl s_server :8443, sshd :22, nc :9000"
    );

    let flow_log = lab.dir.join("flows.jsonl");
    let mut child = Lab::in_ns(
        &lab.server_ns,
        &[
            &agent.to_string_lossy(),
            "run",
            "--iface",
            &lab.server_if,
            "--output",
            "text",
            "--idle-timeout",
            "5s",
            "--flow-log",
            &flow_log.to_string_lossy(),
        ],
    )
    .stdin(Stdio::null())
    // Events on stdout are the show; the agent's own info log would only interleave with them.
    .env("RUST_LOG", "warn")
    .spawn()
    .context("starting the agent")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while attached(&lab.server_ns, &lab.server_if)
        .map(|a| a.tc_ingress.is_empty())
        .unwrap_or(true)
    {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("the agent did not attach");
        }
        thread::sleep(Duration::from_millis(100));
    }

    let s4 = lab.server_v4.to_string();
    let s6 = lab.server_v6.to_string();
    let clients: [DemoClient; 5] = [
        (
            "plaintext HTTP",
            argv(&[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                &format!("http://{s4}:8080/"),
            ]),
            None,
        ),
        (
            "plaintext HTTP over IPv6",
            argv(&[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-g",
                &format!("http://[{s6}]:8080/"),
            ]),
            None,
        ),
        (
            "HTTPS",
            argv(&[
                "curl",
                "-sSk",
                "-o",
                "/dev/null",
                &format!("https://{s4}:8443/"),
            ]),
            None,
        ),
        ("SSH", lab.ssh_probe(), None),
        (
            "a protocol no detector knows",
            argv(&["nc", "-q", "1", &s4, "9000"]),
            Some(b"\x8f\x11\xe2\x00\x7a\x33 custom binary frame\n"),
        ),
    ];
    for (what, args, stdin) in &clients {
        println!("demo: client: {what}: {}", args.join(" "));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.client(&args, *stdin, Duration::from_secs(10))?;
        thread::sleep(Duration::from_millis(300));
    }
    thread::sleep(Duration::from_secs(2));
    println!("demo: stopping the agent (SIGINT)");
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    if !status.success() {
        bail!("agent exited with {status}");
    }
    println!(
        "demo: the compliance report of the flow log (sealwatch report {}):",
        flow_log.display()
    );
    let report = std::process::Command::new(agent)
        .arg("report")
        .arg(&flow_log)
        .status()
        .context("running sealwatch report")?;
    let page = crate::workspace_root().join("target/demo-report.html");
    let html = std::process::Command::new(agent)
        .args(["report", "--format", "html", "-o"])
        .arg(&page)
        .arg(&flow_log)
        .status()
        .context("running sealwatch report --format html")?;
    if !report.success() || !html.success() {
        bail!("sealwatch report failed");
    }
    println!("demo: the same as a page to hand on: {}", page.display());
    println!("demo: done; lab removed");
    Ok(())
}

/// What the client shows, its command line, and what it sends on stdin.
type DemoClient<'a> = (&'a str, Vec<String>, Option<&'a [u8]>);

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}
