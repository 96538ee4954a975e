//! Kernels that lack what the agent needs. This machine's kernel has everything, so an older
//! one is simulated where the agent meets it, at the bpf() system call: a preloaded shim
//! answers as a kernel without the feature does (EINVAL for a map or program type it does not
//! know, ENOSYS without CONFIG_BPF_SYSCALL). The agent must stop with exit code 1 and a message
//! naming the feature, or, where the feature is optional for the chosen mode, work without it.
//! A kernel without BTF (no /sys/kernel/btf/vmlinux) is real: a private mount namespace hides
//! it, and the agent must classify as usual, since its programs need no CO-RE relocation.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use sealwatch_tests::{Agent, Lab, agent_binary, require_root};
use serde_json::Value;

/// `syscall(2)` as a kernel lacking `$SHIM_LACKS` answers it: `bpf` (no bpf() at all),
/// `ringbuf` (no BPF_MAP_TYPE_RINGBUF, before 5.8), `xdp` (no BPF_PROG_TYPE_XDP). Everything
/// else goes to the real call.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#define BPF_MAP_CREATE 0
#define BPF_PROG_LOAD 5
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_PROG_TYPE_XDP 6

long syscall(long number, ...) {
    static long (*real)(long, ...);
    va_list ap;
    long a[6];
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    const char *lacks = getenv("SHIM_LACKS");
    if (number == SYS_bpf && lacks) {
        long cmd = a[0];
        const uint32_t *attr = (const uint32_t *)a[1];
        if (!strcmp(lacks, "bpf")) {
            errno = ENOSYS;
            return -1;
        }
        if (!strcmp(lacks, "ringbuf") && cmd == BPF_MAP_CREATE && attr[0] == BPF_MAP_TYPE_RINGBUF) {
            errno = EINVAL;
            return -1;
        }
        if (!strcmp(lacks, "xdp") && cmd == BPF_PROG_LOAD && attr[0] == BPF_PROG_TYPE_XDP) {
            errno = EINVAL;
            return -1;
        }
    }
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
"#;

fn shim(dir: &Path) -> PathBuf {
    let src = dir.join("old_kernel.c");
    let lib = dir.join("old_kernel.so");
    std::fs::write(&src, SHIM).expect("shim source");
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// The agent in the lab's server namespace on a kernel lacking `lacks`, expected to fail.
fn run_lacking(lab: &Lab, lib: &Path, lacks: &str, attach: &str) -> Output {
    let bin = agent_binary();
    Lab::in_ns(
        &lab.server_ns,
        &[
            "timeout",
            "-k",
            "5",
            "60",
            &bin.to_string_lossy(),
            "run",
            "--iface",
            &lab.server_if,
            "--attach",
            attach,
            "--output",
            "json",
        ],
    )
    .env("LD_PRELOAD", lib)
    .env("SHIM_LACKS", lacks)
    .output()
    .expect("agent")
}

fn plaintext_http_seen(lab: &Lab, agent: &Agent, port: u16) {
    let url = format!("http://{}:{port}/", lab.server_v4);
    let out = lab
        .client(
            &["curl", "-sS", "-o", "/dev/null", &url],
            None,
            Duration::from_secs(10),
        )
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent
        .wait_for(Duration::from_secs(20), |evs: &[Value]| {
            evs.iter().any(|e| {
                e["event"] == "flow"
                    && e["server.port"] == port
                    && e["network.protocol.name"] == "http"
                    && e["sealwatch.encryption"] == "plaintext"
            })
        })
        .expect("the plaintext HTTP flow classified");
}

fn http_server(lab: &mut Lab, port: u16) {
    lab.spawn_server(&[
        "python3",
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "0.0.0.0",
    ])
    .expect("http server");
    lab.wait_listening(port, false).expect("listening");
}

#[test]
fn a_kernel_without_a_needed_feature_is_named_with_exit_1() {
    if !require_root("a_kernel_without_a_needed_feature_is_named_with_exit_1") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let lib = shim(&lab.dir);
    for (lacks, attach, expected) in [
        (
            "bpf",
            "tc",
            "the kernel lacks the bpf() system call (CONFIG_BPF_SYSCALL)",
        ),
        (
            "ringbuf",
            "tc",
            "the kernel lacks BPF ring buffers (BPF_MAP_TYPE_RINGBUF) (Linux 5.8+)",
        ),
        ("xdp", "xdp", "the kernel lacks XDP programs (Linux 4.8+)"),
    ] {
        let out = run_lacking(&lab, &lib, lacks, attach);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "lacking {lacks}: {err}");
        assert!(err.contains(expected), "lacking {lacks}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "no events when nothing attached");
        // Nothing was left attached.
        let attached = sealwatch_tests::attached(&lab.server_ns, &lab.server_if).expect("bpftool");
        assert_eq!(
            attached,
            sealwatch_tests::Attached::default(),
            "lacking {lacks}"
        );
    }
}

#[test]
fn without_xdp_the_tc_hooks_still_work() {
    if !require_root("without_xdp_the_tc_hooks_still_work") {
        return;
    }
    const PORT: u16 = 18620;
    let mut lab = Lab::new().expect("lab");
    let lib = shim(&lab.dir);
    http_server(&mut lab, PORT);
    let bin = agent_binary();
    let mut cmd = Lab::in_ns(
        &lab.server_ns,
        &[
            &bin.to_string_lossy(),
            "run",
            "--iface",
            &lab.server_if,
            "--attach",
            "tc",
            "--output",
            "json",
        ],
    );
    cmd.env("LD_PRELOAD", &lib).env("SHIM_LACKS", "xdp");
    let agent = Agent::spawn(&mut cmd).expect("agent");
    agent.wait_attached().expect("attached without XDP");
    plaintext_http_seen(&lab, &agent, PORT);
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn without_kernel_btf_the_agent_classifies_as_usual() {
    if !require_root("without_kernel_btf_the_agent_classifies_as_usual") {
        return;
    }
    const PORT: u16 = 18621;
    let mut lab = Lab::new().expect("lab");
    http_server(&mut lab, PORT);
    let bin = agent_binary();
    // A private mount namespace: the tmpfs over /sys/kernel/btf is gone with the agent.
    let script = format!(
        "mount -t tmpfs none /sys/kernel/btf && test ! -e /sys/kernel/btf/vmlinux && exec {} run --iface {} --attach tc --output json",
        bin.display(),
        lab.server_if
    );
    let mut cmd = Lab::in_ns(
        &lab.server_ns,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
    );
    let agent = Agent::spawn(&mut cmd).expect("agent");
    agent.wait_attached().expect("attached without vmlinux BTF");
    plaintext_http_seen(&lab, &agent, PORT);
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "the host's BTF untouched"
    );
}
