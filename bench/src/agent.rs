//! A release agent on a lab's server side, its stdout read line by line as it arrives, stopped
//! (SIGINT, then SIGKILL after 15 s) when dropped.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sealwatch_tests::Lab;

pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts `agent run` on the lab's server interface with `--output json` and `extra`, and
    /// waits until it attached. Every later line goes to `on_line` with the time it was read.
    pub fn start(
        lab: &Lab,
        agent: &Path,
        extra: &[&str],
        mut on_line: impl FnMut(&str, Instant) + Send + 'static,
    ) -> anyhow::Result<Agent> {
        let agent = agent.to_string_lossy();
        let mut argv = vec![
            &*agent,
            "run",
            "--iface",
            &lab.server_if,
            "--output",
            "json",
        ];
        argv.extend_from_slice(extra);
        let mut child = Lab::in_ns(&lab.server_ns, &argv)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        // Owned from here on: a failure below stops the agent.
        let running = Agent { child };
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut attached = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                // A cheap check: a million lines may go through here.
                if !attached && line.contains(r#""sealwatch.agent.state":"attached""#) {
                    attached = true;
                    let _ = tx.send(());
                } else {
                    on_line(&line, at);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .context("the agent did not attach within 120 s")?;
        Ok(running)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child; SIGINT lets it detach cleanly.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
