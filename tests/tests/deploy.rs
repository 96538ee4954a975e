//! Everything under `deploy/`, checked offline: the Kubernetes manifests rendered (our
//! kustomize subset, `sealwatch_tests::kustomize`) and validated against the API schemas with
//! kubernetes-validate, their security properties, the agent flags they pass (parsed by the
//! agent's own CLI), the systemd unit (`systemd-analyze verify` and `security`), the collector
//! configuration's shape and its agreement with the agent and the alert rules, the Containerfile
//! (hadolint, and its stages), the image build script (shellcheck, and which engine it runs)
//! and the Vagrantfile (`ruby -c`). A missing tool fails the test: run `cargo xtask setup`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use clap::Parser as _;
use sealwatch::cli::{Cli, Command as Verb};
use sealwatch_tests::{agent_binary, kustomize, tools::venv_bin};
use serde_yaml::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs a tool the tests need; a missing one is a failure that says how to get it.
fn tool(program: impl AsRef<Path>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}): run `cargo xtask setup`",
                program.display()
            )
        })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The Kubernetes versions validated against: the oldest and newest EKS supports around
/// this release, and the newest schema the validator ships.
const KUBERNETES_VERSIONS: [&str; 3] = ["1.30.0", "1.33.0", "1.37.0"];

/// Every kustomization users apply.
const KUSTOMIZATIONS: [&str; 4] = [
    "kubernetes/base",
    "kubernetes/overlays/kubelet",
    "kubernetes/overlays/enforce",
    "otel-collector",
];

fn render(dir: &str) -> Vec<Value> {
    kustomize::render(&deploy().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e:#}"))
}

fn validate(yaml: &str, name: &str) -> Vec<(String, Output)> {
    let file = std::env::temp_dir().join(format!(
        "sealwatch-deploy-{}-{name}.yaml",
        std::process::id()
    ));
    std::fs::write(&file, yaml).unwrap();
    let out = KUBERNETES_VERSIONS
        .iter()
        .map(|v| {
            (
                (*v).to_owned(),
                tool(
                    venv_bin("kubernetes-validate"),
                    &["--strict", "-k", v, &file.to_string_lossy()],
                ),
            )
        })
        .collect();
    let _ = std::fs::remove_file(&file);
    out
}

#[test]
fn manifests_validate_against_the_kubernetes_api_schemas() {
    for dir in KUSTOMIZATIONS {
        let resources = render(dir);
        assert!(!resources.is_empty(), "{dir}");
        let yaml = kustomize::to_yaml(&resources).unwrap();
        for (version, out) in validate(&yaml, &dir.replace('/', "-")) {
            let report = text(&out);
            assert!(out.status.success(), "{dir} against {version}:\n{report}");
            let passed = report.matches(" passed for resource ").count();
            assert_eq!(
                passed,
                resources.len(),
                "{dir} against {version}:\n{report}"
            );
        }
    }
    // The validator is not a formality: a misspelt field fails it.
    let mut ds = render("kubernetes/base")
        .into_iter()
        .find(|r| r["kind"] == "DaemonSet")
        .unwrap();
    ds["spec"]["template"]["spec"]
        .as_mapping_mut()
        .unwrap()
        .insert("hostNetwrok".into(), true.into());
    let yaml = kustomize::to_yaml(&[ds]).unwrap();
    for (version, out) in validate(&yaml, "misspelt") {
        assert!(!out.status.success(), "{version} accepted hostNetwrok");
        assert!(text(&out).contains("hostNetwrok"), "{}", text(&out));
    }
}

fn find<'a>(resources: &'a [Value], kind: &str) -> Vec<&'a Value> {
    resources.iter().filter(|r| r["kind"] == kind).collect()
}

fn one<'a>(resources: &'a [Value], kind: &str) -> &'a Value {
    let found = find(resources, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The agent's own parser reads the arguments: unknown or malformed flags fail here.
fn parse_run(args: &[String]) -> Box<sealwatch::cli::RunArgs> {
    let argv = std::iter::once("sealwatch".to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
    {
        Verb::Run(run) => run,
        other => panic!("not `run`: {other:?}"),
    }
}

/// The least-privilege properties every variant of the DaemonSet keeps.
fn check_daemonset(dir: &str, resources: &[Value]) -> Box<sealwatch::cli::RunArgs> {
    let ds = one(resources, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true, "{dir}");
    assert_eq!(pod["hostPID"], true, "{dir}");
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet", "{dir}");
    // Tolerates every taint: one toleration with operator Exists and no key or effect.
    let tolerations = pod["tolerations"].as_sequence().unwrap();
    assert!(
        tolerations.iter().any(|t| t["operator"] == "Exists"
            && t.get("key").is_none()
            && t.get("effect").is_none()),
        "{dir}: {tolerations:?}"
    );
    let priority = pod["priorityClassName"].as_str().unwrap();
    assert!(
        find(resources, "PriorityClass")
            .iter()
            .any(|p| p["metadata"]["name"] == priority && p["value"].as_i64() >= Some(1_000_000)),
        "{dir}: priority class {priority}"
    );
    let strategy = &ds["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "RollingUpdate", "{dir}");
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], 0, "{dir}");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 1, "{dir}");

    let containers = kustomize::containers(ds);
    assert_eq!(containers.len(), 1, "{dir}");
    let c = containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false, "{dir}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{dir}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{dir}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{dir}");
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{dir}");
    let added: BTreeSet<String> = strings(&sc["capabilities"]["add"]).into_iter().collect();
    let allowed: BTreeSet<String> = [
        "BPF",
        "PERFMON",
        "NET_ADMIN",
        "SYS_PTRACE",
        "DAC_READ_SEARCH",
    ]
    .map(str::to_owned)
    .into();
    assert!(added.is_subset(&allowed), "{dir}: {added:?}");
    for needed in ["BPF", "PERFMON", "NET_ADMIN"] {
        assert!(added.contains(needed), "{dir}: {needed} missing");
    }
    for requests_or_limits in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][requests_or_limits][resource]
                    .as_str()
                    .is_some(),
                "{dir}: {requests_or_limits}.{resource}"
            );
        }
    }

    // The arguments parse, and the probes ask the metrics address the agent serves.
    let args = parse_run(&strings(&c["args"]));
    assert!(args.all_interfaces, "{dir}");
    let metrics = args.metrics_addr.expect("--metrics-addr");
    let port = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("metrics port");
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(metrics.port()))
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{dir}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{dir}: {probe}");
    }

    // The policy: the ConfigMap exists under the mounted name, holds the file --policy names,
    // and that file is valid for the agent.
    let policy = args.policy.clone().expect("--policy");
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{dir}: volume {name}"))
    };
    let policy_mount = mounts
        .iter()
        .find(|m| policy.parent() == Some(Path::new(m["mountPath"].as_str().unwrap())))
        .expect("the policy's directory is mounted");
    let cm_name = volume(policy_mount["name"].as_str().unwrap())["configMap"]["name"]
        .as_str()
        .expect("policy from a ConfigMap");
    let cm = find(resources, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("{dir}: ConfigMap {cm_name}"));
    let key = policy.file_name().unwrap().to_str().unwrap();
    let file = std::env::temp_dir().join(format!("sealwatch-policy-{}.yaml", std::process::id()));
    std::fs::write(&file, cm["data"][key].as_str().expect("policy data")).unwrap();
    let check = tool(
        agent_binary(),
        &["policy", "check", &file.to_string_lossy()],
    );
    let _ = std::fs::remove_file(&file);
    assert!(check.status.success(), "{dir}: {}", text(&check));

    // Host paths: only these, read-only but for bpffs in the fail-closed variant, never
    // Bidirectional (which would need a privileged container). /sys/kernel/btf needs no mount:
    // the container's own sysfs has it.
    let expected: BTreeSet<&str> = [
        "/sys/fs/bpf",
        "/sys/fs/cgroup",
        "/sys/kernel/tracing",
        "/var/log/pods",
        "/etc/passwd",
    ]
    .into();
    let mut seen = BTreeSet::new();
    for m in mounts {
        let v = volume(m["name"].as_str().unwrap());
        let Some(host) = v["hostPath"]["path"].as_str() else {
            assert_eq!(m["readOnly"], true, "{dir}: {m:?}");
            continue;
        };
        assert!(
            expected.contains(host),
            "{dir}: unexpected host path {host}"
        );
        seen.insert(host);
        assert_ne!(m["mountPropagation"], "Bidirectional", "{dir}: {m:?}");
        let writable =
            host == "/sys/fs/bpf" && args.on_exit == sealwatch::pins::OnExit::KeepEnforcing;
        assert_eq!(m["readOnly"], !writable, "{dir}: {host}");
    }
    assert_eq!(seen, expected, "{dir}");
    args
}

#[test]
fn daemonset_is_least_privilege_in_every_variant() {
    let base = render("kubernetes/base");
    let args = check_daemonset("base", &base);
    assert_eq!(args.on_exit, sealwatch::pins::OnExit::Detach);
    assert!(
        args.mode.is_none(),
        "base runs in the policy's (monitor) mode"
    );
    // No API access: no RBAC, no token anywhere.
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        assert!(find(&base, kind).is_empty(), "base has a {kind}");
    }
    assert_eq!(
        one(&base, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    let ds = one(&base, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    // The namespace admits the pod (hostPID, hostNetwork, hostPath).
    assert_eq!(
        one(&base, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    // A fixed ConfigMap name: policy edits reach running agents without a rollout.
    assert!(
        find(&base, "ConfigMap")
            .iter()
            .any(|c| c["metadata"]["name"] == "sealwatch-policy")
    );

    let kubelet = render("kubernetes/overlays/kubelet");
    check_daemonset("kubelet", &kubelet);
    let role = one(&kubelet, "ClusterRole");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(strings(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strings(&rules[0]["resources"]), ["nodes/proxy"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get"]);
    let binding = one(&kubelet, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = one(&kubelet, "ServiceAccount");
    let subjects = binding["subjects"].as_sequence().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["name"], sa["metadata"]["name"]);
    assert_eq!(subjects[0]["namespace"], sa["metadata"]["namespace"]);
    let ds = one(&kubelet, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );

    let enforce = render("kubernetes/overlays/enforce");
    let args = check_daemonset("enforce", &enforce);
    assert_eq!(args.mode, Some(sealwatch::policy::file::Mode::Enforce));
    assert_eq!(args.on_exit, sealwatch::pins::OnExit::KeepEnforcing);
    assert_eq!(one(&enforce, "ClusterRole")["rules"], role["rules"]);
}

#[test]
fn agents_point_at_the_collector_service() {
    let collector = render("otel-collector");
    let service = one(&collector, "Service");
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    let config = collector_config();
    let grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert!(
        grpc.ends_with(":4317") && ports.contains(&4317),
        "{grpc} {ports:?}"
    );
    let want = format!(
        "http://{}.{}.svc.cluster.local:4317",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    for dir in &KUSTOMIZATIONS[..3] {
        let resources = render(dir);
        let ds = one(&resources, "DaemonSet");
        let env = kustomize::containers(ds)[0]["env"].as_sequence().unwrap();
        let endpoint = env
            .iter()
            .find(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
            .expect("OTLP endpoint");
        assert_eq!(endpoint["value"], want.as_str(), "{dir}");
        assert!(
            env.iter().any(|e| e["name"] == "NODE_NAME"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
            "{dir}: NODE_NAME"
        );
    }
    // The collector reads the generated configuration.
    let deployment = one(&collector, "Deployment");
    let cm = one(&collector, "ConfigMap");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == cm["metadata"]["name"])
    );
    assert!(cm["data"]["config.yaml"].as_str().is_some());
}

fn collector_config() -> Value {
    let text = std::fs::read_to_string(deploy().join("otel-collector/config.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// A metric name as the collector's Prometheus exporter writes a monotonic sum.
fn prometheus_counter(otel_name: &str) -> String {
    format!("{}_total", otel_name.replace('.', "_"))
}

#[test]
fn collector_turns_drop_and_plaintext_alerts_into_notifications() {
    let config = collector_config();
    let defined = |section: &str| -> BTreeSet<String> {
        config[section]
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (receivers, processors, exporters, connectors) = (
        defined("receivers"),
        defined("processors"),
        defined("exporters"),
        defined("connectors"),
    );
    let otlp = &config["receivers"]["otlp"]["protocols"];
    assert!(
        otlp["grpc"]["endpoint"]
            .as_str()
            .unwrap()
            .ends_with(":4317")
    );
    assert!(
        otlp["http"]["endpoint"]
            .as_str()
            .unwrap()
            .ends_with(":4318")
    );
    for e in strings(&config["service"]["extensions"]) {
        assert!(defined("extensions").contains(&e), "extension {e}");
    }
    let pipelines = config["service"]["pipelines"].as_mapping().unwrap();
    let mut logs_to = BTreeSet::new();
    let mut metrics_from = BTreeSet::new();
    let mut metrics_to = BTreeSet::new();
    for (name, p) in pipelines {
        let name = name.as_str().unwrap();
        let kind = name.split('/').next().unwrap();
        for r in strings(&p["receivers"]) {
            assert!(
                receivers.contains(&r) || connectors.contains(&r),
                "{name}: {r}"
            );
        }
        let procs = strings(&p["processors"]);
        for pr in &procs {
            assert!(processors.contains(pr), "{name}: {pr}");
        }
        // memory_limiter first, batch last, as the collector's docs advise.
        assert_eq!(
            procs.first().map(String::as_str),
            Some("memory_limiter"),
            "{name}"
        );
        assert_eq!(procs.last().map(String::as_str), Some("batch"), "{name}");
        for e in strings(&p["exporters"]) {
            assert!(
                exporters.contains(&e) || connectors.contains(&e),
                "{name}: {e}"
            );
        }
        match kind {
            "logs" => logs_to.extend(strings(&p["exporters"])),
            "metrics" => {
                metrics_from.extend(strings(&p["receivers"]));
                metrics_to.extend(strings(&p["exporters"]));
            }
            other => panic!("unexpected pipeline type {other}"),
        }
    }
    // Alert records reach a count connector that feeds the Prometheus exporter.
    let count = connectors
        .iter()
        .find(|c| c.starts_with("count"))
        .expect("a count connector");
    assert!(logs_to.contains(count) && metrics_from.contains(count));
    assert!(metrics_from.contains("otlp") && metrics_to.contains("prometheus"));

    // Its conditions name what the agent puts on alert records.
    let kinds: Vec<&str> = [
        sealwatch::telemetry::alerts::AlertKind::Plaintext,
        sealwatch::telemetry::alerts::AlertKind::WeakTls,
    ]
    .map(|k| k.name())
    .to_vec();
    let metrics = config["connectors"][count.as_str()]["logs"]
        .as_mapping()
        .unwrap();
    let mut counters = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for (metric, spec) in metrics {
        let metric = metric.as_str().unwrap();
        let conditions = strings(&spec["conditions"]).join(" ");
        assert!(
            conditions.contains(r#"attributes["sealwatch.action"]"#),
            "{metric}"
        );
        counters.insert(prometheus_counter(metric));
        for a in spec["attributes"].as_sequence().unwrap() {
            labels.insert(a["key"].as_str().unwrap().replace('.', "_"));
        }
        if metric.contains("plaintext") {
            for k in &kinds {
                assert!(conditions.contains(&format!("== \"{k}\"")), "{metric}: {k}");
            }
        }
        if metric.contains("dropped") {
            assert!(conditions.contains(r#"== "drop""#), "{metric}");
        }
    }
    // The filter keeps exactly the records that carry an alert kind.
    let filter = strings(&config["processors"]["filter/sealwatch-alerts"]["logs"]["log_record"]);
    assert_eq!(filter, [r#"attributes["sealwatch.alert.kind"] == nil"#]);

    // Every rule reads a counter the collector exports (or the agent's own), grouped by labels
    // that exist; Alertmanager routes every severity the rules set to a receiver it defines.
    let rules_text =
        std::fs::read_to_string(deploy().join("otel-collector/prometheus-rules.yaml")).unwrap();
    let rules: Value = serde_yaml::from_str(&rules_text).unwrap();
    let agent_counter = prometheus_counter("sealwatch.alerts.dropped");
    // Labels from the agent's resource, made labels by resource_to_telemetry_conversion.
    assert_eq!(
        config["exporters"]["prometheus"]["resource_to_telemetry_conversion"]["enabled"],
        true
    );
    labels.insert("k8s_node_name".into());
    let mut severities = BTreeSet::new();
    let mut read = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let metric = counters
                .iter()
                .chain([&agent_counter])
                .find(|c| expr.contains(&format!("{c}[")))
                .unwrap_or_else(|| panic!("{expr} reads no exported counter"));
            read.insert(metric.clone());
            let by = expr
                .split("by (")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap();
            for label in by.split(',').map(str::trim) {
                assert!(labels.contains(label), "{expr}: label {label}");
            }
            severities.insert(rule["labels"]["severity"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        counters.is_subset(&read),
        "a counter no rule reads: {counters:?}"
    );
    let am: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy().join("otel-collector/alertmanager.yaml")).unwrap(),
    )
    .unwrap();
    let receivers: BTreeSet<&str> = am["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(receivers.contains(am["route"]["receiver"].as_str().unwrap()));
    for route in am["route"]["routes"].as_sequence().unwrap() {
        assert!(receivers.contains(route["receiver"].as_str().unwrap()));
    }
    assert!(severities.contains("page"));
    assert!(
        am["route"]["routes"][0]["matchers"][0]
            .as_str()
            .unwrap()
            .contains("page")
    );
}

/// The unit with ExecStart pointing at the built agent (verify wants the binary to exist).
fn unit_for_verify(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(deploy().join("systemd/sealwatch.service")).unwrap();
    let path = dir.join("sealwatch.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/sealwatch",
            &agent_binary().to_string_lossy(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = std::env::temp_dir().join(format!("sealwatch-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = unit_for_verify(&dir);
    let unit_s = unit.to_string_lossy().into_owned();
    let verify = tool("systemd-analyze", &["verify", &unit_s]);
    // verify exits 0 on unknown keys and bad values, with a warning: any output fails.
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "{}",
        text(&verify)
    );
    let security = tool(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=40",
            "--no-pager",
            &unit_s,
        ],
    );
    let report = text(&security);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        security.status.success(),
        "exposure above 4.0 (threshold 40 on the 0-100 scale):\n{report}"
    );
    assert!(report.contains("Overall exposure level"), "{report}");

    // The settings themselves.
    let text = std::fs::read_to_string(deploy().join("systemd/sealwatch.service")).unwrap();
    let setting = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let caps: BTreeSet<String> = setting("CapabilityBoundingSet")
        .join(" ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let allowed: BTreeSet<String> = [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
    ]
    .map(str::to_owned)
    .into();
    assert!(
        caps.is_subset(&allowed) && caps.contains("CAP_BPF"),
        "{caps:?}"
    );
    assert_eq!(setting("NoNewPrivileges"), ["yes"]);
    assert_eq!(setting("ProtectSystem"), ["strict"]);
    assert_eq!(setting("ProtectHome"), ["yes"]);
    assert_eq!(setting("ReadWritePaths"), ["/sys/fs/bpf"]);
    assert_eq!(setting("LogsDirectory"), ["sealwatch"]);
    assert_eq!(setting("AmbientCapabilities"), [""]);

    // ExecStart, with the environment file's arguments, is a valid `sealwatch run`, and its
    // flow log is where the unit may write.
    let env = std::fs::read_to_string(deploy().join("systemd/sealwatch.env")).unwrap();
    let extra = env
        .lines()
        .find_map(|l| l.strip_prefix("SEALWATCH_ARGS="))
        .expect("SEALWATCH_ARGS");
    let exec = setting("ExecStart")
        .join(" ")
        .replace("$SEALWATCH_ARGS", extra);
    let words: Vec<String> = exec.split_whitespace().skip(1).map(str::to_owned).collect();
    let args = parse_run(&words);
    assert!(args.all_interfaces);
    let flow_log = args.flow_log.flow_log.expect("flow log");
    assert!(flow_log.starts_with("/var/log/sealwatch"), "{flow_log:?}");
    let metrics = args.metrics_addr.expect("metrics");
    assert!(
        metrics.ip().is_loopback(),
        "metrics stay on the host: {metrics}"
    );

    let check = tool(
        agent_binary(),
        &[
            "policy",
            "check",
            &deploy().join("systemd/policy.yaml").to_string_lossy(),
        ],
    );
    assert!(check.status.success(), "{}", self::text(&check));
}

#[test]
fn container_image_lints_clean_and_runs_the_agent_without_a_shell() {
    let file = deploy().join("image/Containerfile");
    let lint = tool(
        venv_bin("hadolint"),
        &["--no-color", &file.to_string_lossy()],
    );
    assert!(lint.status.success(), "hadolint:\n{}", text(&lint));

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage");
    let runtime = &lines[*stages.last().unwrap()..];
    // Nothing runs a shell at build or run time in the final stage.
    for l in runtime {
        assert!(!l.starts_with("RUN "), "final stage runs {l}");
        assert!(!l.starts_with("SHELL "), "{l}");
    }
    let arg = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("ARG {name}"))
    };
    assert!(runtime[0].contains("${RUNTIME_IMAGE}"));
    assert!(
        arg("RUNTIME_IMAGE").contains("distroless/cc"),
        "no shell in the base"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=builder ") && l.ends_with(" /sealwatch"))
    );
    assert!(
        runtime.contains(&r#"ENTRYPOINT ["/sealwatch"]"#),
        "exec-form entrypoint"
    );
    let cmd = runtime
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("exec-form CMD");
    assert_eq!(cmd[0], "run");
    parse_run(&cmd);

    // The builder follows `cargo xtask setup`'s recipe: same Rust, bpf-linker and LLVM.
    let setup = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/src/setup.rs"),
    )
    .unwrap();
    let constant = |name: &str| {
        setup
            .lines()
            .find_map(|l| l.strip_prefix(&format!("const {name}: &str = \"")))
            .and_then(|v| v.strip_suffix("\";"))
            .unwrap_or_else(|| panic!("{name} in setup.rs"))
    };
    let builder = lines[..*stages.last().unwrap()].join("\n");
    assert!(builder.contains(&format!("bpf-linker@{}", constant("BPF_LINKER_VERSION"))));
    assert!(builder.contains(&format!("toolchain install {}", constant("EBPF_TOOLCHAIN"))));
    assert!(builder.contains(&format!(
        "{}/",
        constant("LLVM_BIN").trim_end_matches("/bin")
    )));
    assert!(builder.contains("cargo build --release --locked --package sealwatch"));
}

#[test]
fn image_build_script_uses_docker_or_podman() {
    let script = deploy().join("build-image.sh");
    let lint = tool("shellcheck", &[&script.to_string_lossy()]);
    assert!(lint.status.success(), "shellcheck:\n{}", text(&lint));

    // Stand-in engines that record how they were called.
    let dir = std::env::temp_dir().join(format!("sealwatch-engines-{}", std::process::id()));
    let run = |engines: &[&str], chosen: Option<&str>| -> Output {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in engines {
            let path = dir.join(e);
            std::fs::write(&path, format!("#!/bin/sh\necho {e} \"$@\"\n")).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(&script)
            .args(["registry.example/sealwatch:1", "--pull"])
            .current_dir("/")
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .env_remove("CONTAINER_ENGINE");
        if let Some(c) = chosen {
            cmd.env("CONTAINER_ENGINE", c);
        }
        cmd.output().unwrap()
    };
    let root = deploy().join("..").canonicalize().unwrap();
    let want = |engine: &str| {
        format!(
            "{engine} build -t registry.example/sealwatch:1 -f {}/deploy/image/Containerfile --pull {}",
            root.display(),
            root.display()
        )
    };
    let out = run(&["docker", "podman"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want("docker"));
    let out = run(&["podman"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want("podman"));
    let out = run(&["docker", "podman"], Some("podman"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want("podman"));
    let out = run(&[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("neither docker nor podman"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vagrantfile_parses_and_brings_the_lab_up_on_a_tcx_kernel() {
    let file = deploy().join("vagrant/Vagrantfile");
    let syntax = tool("ruby", &["-c", &file.to_string_lossy()]);
    assert!(
        syntax.status.success() && text(&syntax).contains("Syntax OK"),
        "{}",
        text(&syntax)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("config.vm.box = \"debian/bookworm64\""));
    // Debian 12's own kernel (6.1) has no TCX: the backports kernel, then a reboot into it.
    assert!(text.contains("-t bookworm-backports linux-image-amd64"));
    assert!(text.contains("reboot: true"));
    assert!(text.contains("cargo xtask lab \"$@\"") && text.contains("sealwatch-lab up"));
}
