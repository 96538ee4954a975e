//! Interfaces: programs already on a hook keep running beside ours (TCX links, and our
//! programs pass packets on to the next one), and an interface that goes away is let go of.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::Duration;

use sealwatch_tests::{Lab, require_root, run};
use serde_json::Value;

fn curl(lab: &Lab, port: &str) {
    let url = format!("http://{}:8080/", lab.server_v4);
    let out = lab
        .client(
            &["curl", "-sS", "-o", "/dev/null", "--local-port", port, &url],
            None,
            Duration::from_secs(20),
        )
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn saw(evs: &[Value], port: u16) -> bool {
    evs.iter()
        .any(|e| e["event"] == "flow" && e["client.port"] == port)
}

#[test]
fn two_agents_on_one_interface_both_see_every_flow_and_one_leaving_keeps_the_other() {
    if !require_root(
        "two_agents_on_one_interface_both_see_every_flow_and_one_leaving_keeps_the_other",
    ) {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let first = lab.start_agent(&[]).expect("first agent");
    let second = lab.start_agent(&[]).expect("second agent");
    curl(&lab, "43201");
    for agent in [&first, &second] {
        agent
            .wait_for(Duration::from_secs(10), |evs| saw(evs, 43201))
            .expect("both agents see the flow: neither hides it from the other");
    }
    // The first attached first; its programs stay when the second detaches.
    let stopped = second.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    curl(&lab, "43202");
    first
        .wait_for(Duration::from_secs(10), |evs| saw(evs, 43202))
        .expect("the first agent still sees flows after the second left");
    first.stop().expect("stop");
}

#[test]
fn all_interfaces_lets_go_of_an_interface_that_disappears() {
    if !require_root("all_interfaces_lets_go_of_an_interface_that_disappears") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let agent = lab.start_agent(&["--all-interfaces"]).expect("agent");
    let (a, b) = (format!("{}d", lab.server_if), format!("{}e", lab.server_if));
    run(&[
        "ip",
        "-n",
        &lab.server_ns,
        "link",
        "add",
        &a,
        "type",
        "veth",
        "peer",
        "name",
        &b,
    ])
    .expect("veth");
    let event = |state: &'static str, iface: String| {
        move |evs: &[Value]| {
            evs.iter()
                .any(|e| e["sealwatch.agent.state"] == state && e["interface"] == *iface)
        }
    };
    agent
        .wait_for(Duration::from_secs(10), event("attached", a.clone()))
        .expect("attached to the new veth");
    agent
        .wait_for(Duration::from_secs(10), event("attached", b.clone()))
        .expect("attached to its peer");
    run(&["ip", "-n", &lab.server_ns, "link", "del", &a]).expect("del");
    // Deleting one end of a veth deletes both.
    for iface in [a, b] {
        agent
            .wait_for(Duration::from_secs(10), event("detached", iface))
            .expect("detached");
    }
    let loopback_attached = agent
        .events()
        .iter()
        .any(|e| e["sealwatch.agent.state"] == "attached" && e["interface"] == "lo");
    assert!(!loopback_attached, "loopback is never attached");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// `--iface NAME`: the interface goes away (a pod's veth when the pod restarts) and the agent
/// says so and runs on; an interface of that name comes back and is watched again.
#[test]
fn a_named_interface_that_goes_away_is_attached_again_when_it_returns() {
    if !require_root("a_named_interface_that_goes_away_is_attached_again_when_it_returns") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let agent = lab.start_agent(&[]).expect("agent");
    curl(&lab, "43211");
    agent
        .wait_for(Duration::from_secs(10), |evs| saw(evs, 43211))
        .expect("the first flow");
    let states = |evs: &[Value], state: &str| {
        evs.iter()
            .filter(|e| e["sealwatch.agent.state"] == state && e["interface"] == *lab.server_if)
            .count()
    };

    // Deleting the server's end deletes the pair.
    run(&["ip", "-n", &lab.server_ns, "link", "del", &lab.server_if]).expect("del");
    agent
        .wait_for(Duration::from_secs(10), |evs| states(evs, "detached") == 1)
        .expect("detached when it went away");

    // The same pair again, as Lab::new made it.
    lab.connect().expect("veth again");
    agent
        .wait_for(Duration::from_secs(10), |evs| states(evs, "attached") == 2)
        .expect("attached again when it came back");
    curl(&lab, "43212");
    agent
        .wait_for(Duration::from_secs(10), |evs| saw(evs, 43212))
        .expect("flows on the new interface are classified");

    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(
        states(&stopped.events, "attached"),
        2,
        "one attach each time"
    );
    assert_eq!(states(&stopped.events, "detached"), 1);
    let flow = stopped
        .events
        .iter()
        .find(|e| e["event"] == "flow" && e["client.port"] == 43212)
        .expect("flow");
    assert_eq!(flow["interface"], *lab.server_if);
    assert_eq!(flow["sealwatch.encryption"], "plaintext");
    assert!(
        stopped
            .stderr
            .contains("interface gone: detached; attached again if it comes back"),
        "{}",
        stopped.stderr
    );
}
