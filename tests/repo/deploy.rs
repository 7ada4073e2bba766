//! The deployment files are code too: this test parses every manifest under
//! deploy/kubernetes and holds them to the invariants that keep a cluster safe (probes hit
//! routes the web crate serves, several replicas only on PostgreSQL, no secret value in a
//! file, resources on every container, migrations by `datacap migrate`), checks the
//! systemd unit's key lines, and runs `systemd-analyze verify` on it where systemd is
//! installed (CI and this machine), saying so when it is not.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::repo;

/// Every document of every `*.yaml` under deploy/kubernetes, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "found the manifests: {files:?}");
    let mut documents = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("readable manifest");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|error| panic!("{name}: not valid YAML: {error}"));
            if value.is_null() {
                continue;
            }
            for field in ["apiVersion", "kind"] {
                assert!(
                    value[field].is_string(),
                    "{name}: a document without {field}"
                );
            }
            documents.push((name.clone(), value));
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [(String, Value)], kind: &str) -> Vec<&'a (String, Value)> {
    documents
        .iter()
        .filter(|(_, value)| value["kind"] == kind)
        .collect()
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Containers and init containers of a pod template.
fn containers(template: &Value) -> Vec<&Value> {
    let spec = &template["spec"];
    array(&spec["initContainers"])
        .iter()
        .chain(array(&spec["containers"]))
        .collect()
}

/// The `datacap.toml` the pods mount, from the ConfigMap of that name.
fn mounted_config(documents: &[(String, Value)], template: &Value) -> toml::Table {
    let volume = array(&template["spec"]["volumes"])
        .iter()
        .find(|volume| volume["configMap"].is_object())
        .expect("the pod mounts a ConfigMap");
    let name = text(&volume["configMap"]["name"]);
    let (_, config_map) = of_kind(documents, "ConfigMap")
        .into_iter()
        .find(|(_, value)| value["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("ConfigMap {name} is in deploy/kubernetes"));
    text(&config_map["data"]["datacap.toml"])
        .parse()
        .expect("the ConfigMap's datacap.toml is TOML")
}

fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    array(&container["env"])
        .iter()
        .find(|entry| entry["name"] == name)
}

#[test]
fn probes_hit_routes_the_web_crate_serves() {
    let documents = manifests();
    let deployments = of_kind(&documents, "Deployment");
    assert!(!deployments.is_empty(), "a Deployment");
    for (file, deployment) in deployments {
        let template = &deployment["spec"]["template"];
        let config = mounted_config(&documents, template);
        let listen = config["http"]["listen"].as_str().expect("[http] listen");
        let port: u64 = listen
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("listen has a port");
        assert!(
            !listen.starts_with("127.") && !listen.starts_with("[::1]"),
            "{file}: [http] listen {listen} is loopback: probes and scrapes cannot reach it"
        );
        let daemon = array(&template["spec"]["containers"])
            .iter()
            .find(|container| array(&container["args"]).contains(&Value::from("run")))
            .unwrap_or_else(|| panic!("{file}: a container runs `datacap run`"));
        let http_port = array(&daemon["ports"])
            .iter()
            .find(|entry| entry["name"] == "http")
            .unwrap_or_else(|| panic!("{file}: a port named http"));
        assert_eq!(http_port["containerPort"], port, "{file}: http port");
        // Probes and Prometheus go to [http] metrics_listen when it is set (then the page's
        // port serves no /metrics), else to listen.
        let (probe_port_name, probe_port) = match config["http"].get("metrics_listen") {
            Some(metrics) => {
                let metrics = metrics.as_str().expect("metrics_listen is text");
                let metrics_port: u64 = metrics
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse().ok())
                    .expect("metrics_listen has a port");
                let named = array(&daemon["ports"])
                    .iter()
                    .find(|entry| entry["name"] == "metrics")
                    .unwrap_or_else(|| panic!("{file}: a port named metrics"));
                assert_eq!(named["containerPort"], metrics_port, "{file}: metrics port");
                ("metrics", metrics_port)
            }
            None => ("http", port),
        };
        for (probe, path) in [
            ("livenessProbe", datacap_web::HEALTHZ_PATH),
            ("readinessProbe", datacap_web::READYZ_PATH),
        ] {
            let get = &daemon[probe]["httpGet"];
            assert_eq!(text(&get["path"]), path, "{file}: {probe} path");
            assert!(
                get["port"] == probe_port_name || get["port"] == probe_port,
                "{file}: {probe} port"
            );
        }
        let routes = [
            datacap_web::HEALTHZ_PATH,
            datacap_web::READYZ_PATH,
            datacap_web::METRICS_PATH,
        ];
        if let Some(get) = daemon["startupProbe"].get("httpGet") {
            assert!(routes.contains(&text(&get["path"])), "{file}: startupProbe");
        }
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{file}");
        assert_eq!(
            text(&annotations["prometheus.io/path"]),
            datacap_web::METRICS_PATH,
            "{file}"
        );
        assert_eq!(
            text(&annotations["prometheus.io/port"]),
            probe_port.to_string(),
            "{file}"
        );
    }
}

#[test]
fn a_network_policy_admits_only_the_page_port_and_the_monitoring_port() {
    let documents = manifests();
    let policies = of_kind(&documents, "NetworkPolicy");
    let (file, policy) = policies
        .first()
        .expect("a NetworkPolicy in deploy/kubernetes");
    let spec = &policy["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "datacap",
        "{file}: it selects datacap's pods"
    );
    let types: BTreeSet<&str> = array(&spec["policyTypes"]).iter().map(text).collect();
    assert_eq!(types, BTreeSet::from(["Ingress", "Egress"]), "{file}");
    // Every ingress rule names its sources and ports: nothing is open to all.
    let mut admitted = BTreeSet::new();
    for rule in array(&spec["ingress"]) {
        assert!(
            !array(&rule["from"]).is_empty(),
            "{file}: an ingress rule from anywhere"
        );
        for port in array(&rule["ports"]) {
            admitted.insert(port["port"].as_u64().expect("numeric port"));
        }
    }
    let (_, deployment) = of_kind(&documents, "Deployment")[0];
    let config = mounted_config(&documents, &deployment["spec"]["template"]);
    let port_of = |key: &str| {
        config["http"][key]
            .as_str()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("[http] {key} has a port"))
    };
    assert_eq!(
        admitted,
        BTreeSet::from([port_of("listen"), port_of("metrics_listen")]),
        "{file}: exactly the page's and the metrics listener's ports"
    );
    // Egress is limited to named ports.
    for rule in array(&spec["egress"]) {
        assert!(
            !array(&rule["ports"]).is_empty(),
            "{file}: an egress rule to every port"
        );
    }
    // And the public URL the config gives is https.
    let public_url = config["web"]["public_url"]
        .as_str()
        .expect("[web] public_url");
    assert!(public_url.starts_with("https://"), "{file}: {public_url}");
}

#[test]
fn several_replicas_only_on_postgresql() {
    let documents = manifests();
    for (file, deployment) in of_kind(&documents, "Deployment") {
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        let template = &deployment["spec"]["template"];
        let config = mounted_config(&documents, template);
        for container in containers(template) {
            let url = match env_entry(container, "DATACAP_DATABASE__URL") {
                Some(entry) if entry["value"].is_string() => text(&entry["value"]).to_owned(),
                Some(_) => panic!(
                    "{file}: DATACAP_DATABASE__URL from a Secret hides the backend from this \
                     check: put the url without password in the ConfigMap, the password in \
                     PGPASSWORD"
                ),
                None => config["database"]["url"]
                    .as_str()
                    .unwrap_or("sqlite://datacap.sqlite")
                    .to_owned(),
            };
            if replicas > 1 {
                assert!(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    "{file}: {replicas} replicas on {url:?}: SQLite has one writer"
                );
            }
        }
        assert!(replicas >= 2, "{file}: the cluster layout runs 2+ replicas");
        // The daemon never migrates by itself there: the Job and init container do.
        assert_eq!(
            config["database"]["migrate_on_start"].as_bool(),
            Some(false),
            "{file}"
        );
    }
}

/// Env names that carry a secret; `*_ENV`, `*_FILE` and `*_ID` only name one.
fn names_a_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let refers = ["_ENV", "_FILE", "_ID"]
        .iter()
        .any(|suffix| upper.ends_with(suffix));
    // PGPASSFILE names the PostgreSQL driver's password file, like a `*_FILE` key.
    let refers = refers || upper == "PGPASSFILE";
    !refers
        && ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PGPASS"]
            .iter()
            .any(|word| upper.contains(word))
}

#[test]
fn no_secret_value_is_inline() {
    let documents = manifests();
    for (file, secret) in of_kind(&documents, "Secret") {
        for field in ["data", "stringData"] {
            if let Some(entries) = secret[field].as_object() {
                for (key, value) in entries {
                    assert!(
                        value.is_null() || value == "",
                        "{file}: Secret {} has a value for {key}: templates stay empty",
                        secret["metadata"]["name"]
                    );
                }
            }
        }
    }
    for (file, document) in &documents {
        let template = match text(&document["kind"]) {
            "Deployment" => &document["spec"]["template"],
            "Job" => &document["spec"]["template"],
            _ => continue,
        };
        for container in containers(template) {
            for entry in array(&container["env"]) {
                let name = text(&entry["name"]);
                assert!(
                    !(names_a_secret(name) && entry.get("value").is_some()),
                    "{file}: env {name} has an inline value: mount its Secret as a file"
                );
                // Secrets reach the pods as files (0400), never as variables that any
                // child process, crash dump or `env` listing would carry.
                assert!(
                    entry["valueFrom"]["secretKeyRef"].is_null(),
                    "{file}: env {name} comes from a Secret: mount it as a file instead"
                );
            }
        }
        for volume in array(&template["spec"]["volumes"]) {
            if volume["secret"].is_object() {
                assert_eq!(
                    volume["secret"]["defaultMode"], 0o400,
                    "{file}: secret volume {} is not mode 0400",
                    volume["name"]
                );
            }
        }
    }
    let password_in_url = |value: &str| {
        value.split("://").skip(1).any(|rest| {
            let authority = rest.split(['/', '?', '"']).next().unwrap_or("");
            authority
                .split_once('@')
                .is_some_and(|(user, _)| user.contains(':'))
        })
    };
    for (file, config_map) in of_kind(&documents, "ConfigMap") {
        for (key, value) in config_map["data"].as_object().into_iter().flatten() {
            let value = text(value);
            assert!(
                !password_in_url(value),
                "{file}: {key} holds a url with a password"
            );
            assert!(!value.contains("PRIVATE KEY"), "{file}: {key} holds a key");
        }
    }
    // Applying the directory must never blank the real Secrets.
    let kustomization = of_kind(&documents, "Kustomization");
    let (_, kustomization) = kustomization.first().expect("a kustomization.yaml");
    let listed: BTreeSet<&str> = array(&kustomization["resources"])
        .iter()
        .map(text)
        .collect();
    let files: BTreeSet<&str> = documents
        .iter()
        .filter(|(name, _)| name != "kustomization.yaml")
        .map(|(name, _)| name.as_str())
        .collect();
    for file in files {
        let has_secret = documents
            .iter()
            .any(|(name, value)| name == file && value["kind"] == "Secret");
        assert_eq!(
            listed.contains(file),
            !has_secret,
            "{file}: kustomization.yaml lists every manifest except Secret templates"
        );
    }
}

#[test]
fn every_container_has_requests_and_limits() {
    let documents = manifests();
    for (file, document) in &documents {
        if !matches!(text(&document["kind"]), "Deployment" | "Job") {
            continue;
        }
        for container in containers(&document["spec"]["template"]) {
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        !container["resources"][bound][resource].is_null(),
                        "{file}: container {} has no {bound}.{resource}",
                        container["name"]
                    );
                }
            }
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{file}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{file}");
        }
    }
}

fn runs_datacap_migrate(container: &Value) -> bool {
    let words: Vec<&str> = array(&container["command"])
        .iter()
        .chain(array(&container["args"]))
        .map(text)
        .collect();
    words
        .first()
        .is_some_and(|first| first.ends_with("datacap"))
        && words.last() == Some(&"migrate")
}

#[test]
fn migrations_run_by_datacap_migrate_before_the_daemon() {
    let documents = manifests();
    let jobs = of_kind(&documents, "Job");
    assert!(
        jobs.iter().any(|(_, job)| {
            array(&job["spec"]["template"]["spec"]["containers"])
                .iter()
                .any(runs_datacap_migrate)
        }),
        "a Job runs `datacap migrate`"
    );
    for (file, deployment) in of_kind(&documents, "Deployment") {
        let init = &deployment["spec"]["template"]["spec"]["initContainers"];
        assert!(
            array(init).iter().any(runs_datacap_migrate),
            "{file}: an init container runs `datacap migrate`"
        );
    }
}

#[test]
fn service_and_disruption_budget_select_the_daemon() {
    let documents = manifests();
    let (_, deployment) = of_kind(&documents, "Deployment")[0];
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selects = |selector: &Value| {
        selector
            .as_object()
            .is_some_and(|wanted| wanted.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    let services = of_kind(&documents, "Service");
    assert!(!services.is_empty(), "a Service");
    for (file, service) in services {
        assert!(selects(&service["spec"]["selector"]), "{file}: selector");
        assert!(
            array(&service["spec"]["ports"])
                .iter()
                .any(|port| port["targetPort"] == "http"),
            "{file}: the http port (page and metrics)"
        );
    }
    let budgets = of_kind(&documents, "PodDisruptionBudget");
    assert!(!budgets.is_empty(), "a PodDisruptionBudget");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    for (file, budget) in budgets {
        assert!(
            selects(&budget["spec"]["selector"]["matchLabels"]),
            "{file}: selector"
        );
        let min = budget["spec"]["minAvailable"].as_u64().unwrap_or(0);
        assert!(min >= 1 && min < replicas, "{file}: minAvailable {min}");
    }
}

// ---------------------------------------------------------------------------------------
// systemd

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/datacap.service")).expect("unit file")
}

#[test]
fn systemd_unit_key_lines() {
    let unit = unit_text();
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for line in [
        "DynamicUser=yes",
        "StateDirectory=datacap",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/datacap/datacap.env",
        "ExecStart=/usr/local/bin/datacap --config /etc/datacap/datacap.toml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NotifyAccess=main",
    ] {
        assert!(lines.contains(line), "the unit has {line:?}");
    }
    // Type=notify only if the daemon really tells systemd it is ready.
    let sends_ready = ["crates/cli/src", "crates/worker/src", "crates/web/src"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo().join(dir)).into_iter().flatten())
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains("READY=1"))
        });
    let expected = if sends_ready {
        "Type=notify"
    } else {
        "Type=exec"
    };
    assert!(lines.contains(expected), "the unit has {expected}");
}

#[test]
fn systemd_analyze_verify_passes() {
    let found = Command::new("systemd-analyze").arg("--version").output();
    if !found.is_ok_and(|output| output.status.success()) {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "skipped: systemd-analyze is not on PATH, so `systemd-analyze verify` did not \
                 run (systemd_unit_key_lines still checked the unit)"
            );
        }
        return;
    }
    // verify wants ExecStart's binary to exist: point it at the one cargo built.
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_text().replace("/usr/local/bin/datacap", env!("CARGO_BIN_EXE_datacap"));
    let path = dir.path().join("datacap.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("datacap.service"))
        .collect();
    assert!(about_ours.is_empty(), "warnings: {about_ours:?}");
}

#[test]
fn the_image_holds_only_the_binary_and_the_default_config() {
    let containerfile =
        std::fs::read_to_string(repo().join("deploy/container/Containerfile")).unwrap();
    // The runtime stage: everything after the last FROM.
    let runtime = containerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a runtime stage");
    let copies: Vec<&str> = runtime
        .lines()
        .filter(|line| line.trim_start().starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 3, "{copies:?}");
    for copy in &copies {
        assert!(copy.contains("--from=builder"), "{copy}: only built files");
    }
    assert!(
        !containerfile.contains("cp -r config") && !containerfile.contains("/usr/share/datacap"),
        "the sim's fake keys and example files stay out of the image"
    );
    assert!(
        containerfile
            .contains("install -D -m 0644 config/datacap.toml /staging/etc/datacap/datacap.toml")
    );
    // The licence goes with the binary (issue 17 §6), under /usr (the first COPY).
    assert!(
        containerfile.contains("install -D -m 0644 LICENSE /staging/usr/share/doc/datacap/LICENSE")
    );
    assert!(copies[0].contains("/staging/usr /usr"), "{}", copies[0]);
    // Exactly three things are staged: the binary, the config and the licence (and the
    // empty state directory).
    let staged: Vec<&str> = containerfile
        .split_whitespace()
        .filter(|word| word.starts_with("/staging/"))
        .collect();
    assert_eq!(
        staged
            .iter()
            .filter(|path| !path.ends_with('/') && path.matches('/').count() > 3)
            .copied()
            .collect::<BTreeSet<_>>(),
        [
            "/staging/etc/datacap/datacap.toml",
            "/staging/usr/local/bin/datacap",
            "/staging/usr/share/doc/datacap/LICENSE",
            "/staging/var/lib/datacap",
        ]
        .into_iter()
        .collect(),
        "{staged:?}"
    );
    // The build context is an allowlist.
    let ignore =
        std::fs::read_to_string(repo().join("deploy/container/Containerfile.dockerignore"))
            .unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(rules.first(), Some(&"*"), "everything is ignored first");
    for admitted in rules.iter().filter_map(|rule| rule.strip_prefix('!')) {
        assert!(
            [
                "Cargo.toml",
                "Cargo.lock",
                "LICENSE",
                "crates/",
                "migrations/"
            ]
            .contains(&admitted)
                || admitted.starts_with("config/"),
            "{admitted}: the context admits only sources"
        );
    }
    assert!(
        rules.contains(&"!LICENSE"),
        "the licence enters the build context"
    );
}

/// The licence file at the root is the one `Cargo.toml` declares for every crate.
#[test]
fn the_licence_file_is_the_declared_licence() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml parses");
    let declared = manifest["workspace"]["package"]["license"]
        .as_str()
        .expect("workspace.package.license");
    assert_eq!(declared, "Apache-2.0");
    let licence = std::fs::read_to_string(repo().join("LICENSE")).expect("a LICENSE file");
    let words: Vec<&str> = licence.split_whitespace().collect();
    assert_eq!(
        words.get(..4),
        Some(&["Apache", "License", "Version", "2.0,"][..]),
        "the Apache License 2.0 text"
    );
    assert!(licence.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"));
    assert!(licence.contains("END OF TERMS AND CONDITIONS"));
}
