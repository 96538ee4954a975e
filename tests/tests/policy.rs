//! Policy reload on the running agent (SIGHUP): a valid new policy changes decisions for the
//! next flows without detaching or forgetting flows; an invalid one, or one other users could
//! have written, is rejected with an event and the old one stays.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{os::unix::fs::PermissionsExt, time::Duration};

use sealwatch_tests::{Lab, require_root};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn sighup_reloads_the_policy_and_keeps_the_old_one_when_the_new_is_invalid() {
    if !require_root("sighup_reloads_the_policy_and_keeps_the_old_one_when_the_new_is_invalid") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(&policy, "mode: monitor\n").expect("policy");
    let policy_arg = policy.to_string_lossy().into_owned();
    let agent = lab
        .start_agent(&["--idle-timeout", "3s", "--policy", &policy_arg])
        .expect("agent");
    let s4 = lab.server_v4.to_string();
    let curl = |port: &str| {
        let out = lab
            .client(
                &[
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--local-port",
                    port,
                    &format!("http://{s4}:8080/"),
                ],
                None,
                CLIENT_TIMEOUT,
            )
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let flow_from = |evs: &[Value], port: u16| {
        evs.iter()
            .find(|e| e["event"] == "flow" && e["client.port"] == port)
            .cloned()
    };
    let hup = || {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
    };

    curl("42001");
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            flow_from(evs, 42001).is_some()
        })
        .expect("first flow");
    assert_eq!(
        flow_from(&agent.events(), 42001).unwrap()["sealwatch.action"],
        "alert"
    );

    std::fs::write(
        &policy,
        "mode: monitor\nexclusions:\n  - {port: 8080, protocol: http, reason: lab web server}\n",
    )
    .expect("new policy");
    hup();
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter()
                .any(|e| e["sealwatch.agent.state"] == "policy_reloaded")
        })
        .expect("reloaded");
    curl("42002");
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            flow_from(evs, 42002).is_some()
        })
        .expect("second flow");
    let second = flow_from(&agent.events(), 42002).unwrap();
    assert_eq!(second["sealwatch.action"], "excluded", "{second}");
    assert_eq!(
        second["sealwatch.exclusion"],
        "lab web server (port 8080, protocol http)"
    );

    std::fs::write(&policy, "mode: monitor\nexclusions:\n  - {prot: 8080}\n").expect("bad policy");
    hup();
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter()
                .any(|e| e["sealwatch.agent.state"] == "policy_rejected")
        })
        .expect("rejected");
    let rejected = agent
        .events()
        .into_iter()
        .find(|e| e["sealwatch.agent.state"] == "policy_rejected")
        .unwrap();
    assert!(
        rejected["sealwatch.policy.error"]
            .as_str()
            .is_some_and(|e| e.contains(":3:6: exclusions[0]: unknown field `prot`")),
        "{rejected}"
    );
    curl("42003");
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            flow_from(evs, 42003).is_some()
        })
        .expect("third flow");
    assert_eq!(
        flow_from(&agent.events(), 42003).unwrap()["sealwatch.action"],
        "excluded",
        "the old policy stays"
    );

    // A valid policy, but one anybody could have written: rejected like an invalid one.
    // Written aside and renamed in, so the agent never sees it closed.
    let aside = lab.dir.join("open.yaml");
    std::fs::write(&aside, "mode: monitor\n").expect("open policy");
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::rename(&aside, &policy).expect("rename");
    hup();
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter()
                .filter(|e| e["sealwatch.agent.state"] == "policy_rejected")
                .count()
                >= 2
        })
        .expect("rejected again");
    let rejected = agent
        .events()
        .into_iter()
        .rfind(|e| e["sealwatch.agent.state"] == "policy_rejected")
        .unwrap();
    assert!(
        rejected["sealwatch.policy.error"]
            .as_str()
            .is_some_and(|e| e.contains("is writable by anyone (mode 0666)")),
        "{rejected}"
    );
    curl("42004");
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            flow_from(evs, 42004).is_some()
        })
        .expect("fourth flow");
    assert_eq!(
        flow_from(&agent.events(), 42004).unwrap()["sealwatch.action"],
        "excluded",
        "the old policy stays: the open file's `alert` did not take over"
    );

    let stopped = agent.stop().expect("stop");
    assert!(
        stopped.status.success(),
        "still running and stops cleanly after the reloads"
    );
    // Every flow was followed to its end across the reloads.
    for port in [42001, 42002, 42003, 42004] {
        assert!(
            stopped
                .events
                .iter()
                .any(|e| e["event"] == "flow.end" && e["client.port"] == port),
            "flow from {port} ended"
        );
    }
}
