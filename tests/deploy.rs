//! deploy/: every manifest parses, and every unmark command, flag, stage, setting, consumer
//! and probe path in it is one the binary and the broker really have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;
use unmark_broker::{WORK_STREAM, stage_consumer};

use crate::common::*;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of a YAML file, with `<<` merge keys applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            value.apply_merge().expect("merge keys");
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The built-in stages of both pipelines, each scaled on its own consumer.
fn builtin_stages() -> BTreeSet<String> {
    let pipelines = unmark_schemas::pipeline::WATERMARK_STAGES
        .iter()
        .chain(&unmark_schemas::pipeline::BACKGROUND_STAGES);
    pipelines.map(|s| (*s).to_owned()).collect()
}

/// Every worker a deployment runs: the built-in stages and the generic plugin worker.
fn stages() -> BTreeSet<String> {
    let mut all = builtin_stages();
    all.insert("plugin".to_owned());
    all
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The stage a worker command runs, if it is one.
fn worker_stage(args: &[String]) -> Option<String> {
    let at = args.iter().position(|a| a == "--stage")?;
    Some(args[at + 1].clone())
}

/// The binary accepts the command line, its stages exist, and `check-config` accepts the
/// configuration the container would see.
fn check_invocation(what: &str, args: &[String], env: &BTreeMap<String, String>) {
    assert!(
        matches!(args.first().map(String::as_str), Some("serve" | "worker")),
        "{what}: unexpected command {args:?}"
    );
    let help = unmark()
        .args(args)
        .arg("--help")
        .output()
        .expect("run unmark");
    assert!(
        help.status.success(),
        "{what}: unmark rejects {args:?}: {}",
        String::from_utf8_lossy(&help.stderr)
    );
    let known = stages();
    if let Some(stage) = worker_stage(args) {
        assert!(known.contains(&stage), "{what}: no stage {stage:?}");
    }
    if let Some(at) = args.iter().position(|a| a == "--stages") {
        for stage in args[at + 1].split(',') {
            assert!(
                matches!(stage, "all" | "none") || known.contains(stage),
                "{what}: no stage {stage:?}"
            );
        }
    }
    let check = unmark()
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .expect("run unmark check-config");
    assert!(
        check.status.success(),
        "{what}: check-config fails with {env:?}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `${VAR:-default}` -> `default`, `${VAR}` -> a placeholder.
fn compose_value(text: &str) -> String {
    match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map_or("placeholder".to_owned(), |(_, d)| d.to_owned()),
        None => text.to_owned(),
    }
}

#[test]
fn the_compose_file_runs_every_stage_with_real_commands() {
    let docs = documents(&deploy_dir().join("docker-compose.yml"));
    let compose = &docs[0];
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .expect("volumes")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let mut workers = BTreeMap::new();
    let mut gateways = 0;
    for (name, service) in services {
        let name = name.as_str().expect("name");
        if let Some(deps) = service["depends_on"].as_mapping() {
            for dep in deps.keys() {
                let dep = dep.as_str().expect("dep");
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
            }
        }
        for mount in service["volumes"].as_sequence().into_iter().flatten() {
            let volume = mount
                .as_str()
                .expect("mount")
                .split(':')
                .next()
                .expect("volume");
            assert!(
                volumes.contains(volume),
                "{name} mounts unknown volume {volume}"
            );
        }
        if service["image"].as_str() != Some("unmark:latest") {
            continue;
        }
        let args = strings(&service["command"]);
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .expect("environment")
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| format!("{v:?}"), compose_value);
                (k.as_str().expect("key").to_owned(), v)
            })
            .collect();
        assert!(env.contains_key("UNMARK_NATS_URL"), "{name} has no broker");
        check_invocation(name, &args, &env);
        match worker_stage(&args) {
            Some(stage) => {
                let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
                workers.insert(stage, replicas);
            }
            None => {
                gateways += 1;
                assert!(
                    env.contains_key("UNMARK_DATABASE_URL"),
                    "the gateway keeps job records"
                );
            }
        }
    }
    assert_eq!(gateways, 1);
    assert_eq!(workers.keys().cloned().collect::<BTreeSet<_>>(), stages());
    assert!(workers["inpaint"] >= 2, "inpaint runs with replicas");
    let nats = strings(&services["nats"]["command"]);
    assert!(nats.contains(&"-js".to_owned()), "NATS without JetStream");
}

#[tokio::test]
async fn the_kubernetes_manifests_scale_every_stage_on_its_consumer() {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("k8s folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in &files {
        docs.extend(documents(file));
    }
    let of_kind = |kind: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let config = of_kind("ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "unmark-config")
        .expect("the unmark-config ConfigMap");
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("unmark.toml");
    std::fs::write(
        &config_file,
        config["data"]["unmark.toml"].as_str().expect("toml"),
    )
    .expect("write");
    let secrets = &of_kind("Secret")[0]["stringData"];

    // Every Deployment of unmark: real commands and a configuration check-config accepts.
    let mut deployments = BTreeMap::new();
    for deployment in of_kind("Deployment") {
        let name = deployment["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args = strings(&container["args"]);
        let mut env = BTreeMap::new();
        for var in container["env"].as_sequence().expect("env") {
            let key = var["name"].as_str().expect("name").to_owned();
            let value = if let Some(v) = var["value"].as_str() {
                v.to_owned()
            } else {
                let secret_key = var["valueFrom"]["secretKeyRef"]["key"]
                    .as_str()
                    .expect("ref");
                secrets[secret_key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: no secret key {secret_key}"))
                    .to_owned()
            };
            env.insert(key, value);
        }
        assert_eq!(env["UNMARK_CONFIG"], "/etc/unmark/unmark.toml");
        env.insert("UNMARK_CONFIG".into(), config_file.display().to_string());
        check_invocation(&name, &args, &env);
        deployments.insert(name, (args, container.clone()));
    }
    let worker_stages: BTreeSet<String> = deployments
        .values()
        .filter_map(|(args, _)| worker_stage(args))
        .collect();
    assert_eq!(worker_stages, stages());

    // NATS serves JetStream and the monitoring port KEDA reads.
    let nats = of_kind("StatefulSet")[0];
    let nats_args = strings(&nats["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(nats_args.contains(&"-js".to_owned()) && nats_args.contains(&"8222".to_owned()));
    let nats_service = of_kind("Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "nats")
        .expect("nats service");
    let ports: Vec<u64> = nats_service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert!(ports.contains(&4222) && ports.contains(&8222));

    // One ScaledObject per stage, on that stage's consumer of the work stream.
    let mut scaled = BTreeSet::new();
    for object in of_kind("ScaledObject") {
        let target = object["spec"]["scaleTargetRef"]["name"]
            .as_str()
            .expect("target");
        let (args, _) = deployments
            .get(target)
            .unwrap_or_else(|| panic!("ScaledObject targets unknown {target}"));
        let stage = worker_stage(args).expect("a worker");
        let trigger = &object["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "nats-jetstream");
        let meta = &trigger["metadata"];
        assert_eq!(meta["stream"].as_str(), Some(WORK_STREAM));
        assert_eq!(
            meta["consumer"].as_str(),
            Some(stage_consumer(&stage).as_str())
        );
        let endpoint = meta["natsServerMonitoringEndpoint"]
            .as_str()
            .expect("endpoint");
        assert!(
            endpoint.starts_with("nats.") && endpoint.ends_with(":8222"),
            "{endpoint}"
        );
        scaled.insert(stage);
    }
    assert_eq!(scaled, builtin_stages());

    // The gateway's probes are real endpoints.
    let (_, gateway) = &deployments["gateway"];
    let server = Server::start(&[]);
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = gateway[probe]["httpGet"]["path"].as_str().expect("path");
        let response = reqwest::get(server.url(path)).await.expect("probe");
        assert_eq!(response.status().as_u16(), 200, "{probe} {path}");
    }
}

#[test]
fn the_dockerfile_builds_the_one_binary() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    assert!(text.contains("cargo build --release --locked --bin unmark"));
    assert!(text.contains("ENTRYPOINT [\"unmark\"]"));
}
