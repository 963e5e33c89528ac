//! docker-compose.yml, its Dockerfile and the files it mounts, checked
//! without a Docker engine: the services and their ports, every sfwd
//! instance on the mounted topology (which must validate), Prometheus
//! scraping every instance, and the runtime libraries of the image.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use saphyr_parser::{Event, Parser};
use serde_json::{Map, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A YAML document as JSON: every scalar a string, anchors resolved.
fn yaml(text: &str) -> Value {
    enum Frame {
        Seq(usize, Vec<Value>),
        Map(usize, Map<String, Value>, Option<String>),
    }
    fn complete(stack: &mut [Frame], root: &mut Option<Value>, value: Value) {
        match stack.last_mut() {
            Some(Frame::Seq(_, items)) => items.push(value),
            Some(Frame::Map(_, map, key)) => match key.take() {
                None => {
                    let Value::String(k) = value else {
                        panic!("a mapping key that is not a scalar: {value}")
                    };
                    *key = Some(k);
                }
                Some(k) => {
                    assert!(
                        map.insert(k.clone(), value).is_none(),
                        "duplicate key `{k}`"
                    );
                }
            },
            None => *root = Some(value),
        }
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    let mut root = None;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.expect("YAML syntax");
        let value = match event {
            Event::Scalar(text, _, anchor, _) => {
                let v = Value::String(text.into_owned());
                if anchor > 0 {
                    anchors.insert(anchor, v.clone());
                }
                v
            }
            Event::Alias(id) => anchors
                .get(&id)
                .cloned()
                .unwrap_or_else(|| panic!("unknown alias at line {}", span.start.line())),
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(anchor, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(anchor, Map::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, v) = match stack.pop().expect("balanced events") {
                    Frame::Seq(a, items) => (a, Value::Array(items)),
                    Frame::Map(a, map, _) => (a, Value::Object(map)),
                };
                if anchor > 0 {
                    anchors.insert(anchor, v.clone());
                }
                v
            }
            _ => continue,
        };
        complete(&mut stack, &mut root, value);
    }
    root.unwrap_or(Value::Null)
}

fn compose() -> Value {
    yaml(&read("docker-compose.yml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The value after `flag` in an argument list.
fn arg<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).copied())
}

/// `[IP:]HOST:CONTAINER` port mappings of a service.
fn ports(service: &Value) -> Vec<(u16, u16)> {
    published(service)
        .into_iter()
        .map(|(_, host, container)| (host, container))
        .collect()
}

/// `[IP:]HOST:CONTAINER` port mappings with the host address (`None`: all).
fn published(service: &Value) -> Vec<(Option<String>, u16, u16)> {
    strings(&service["ports"])
        .into_iter()
        .map(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            let (ip, host, container) = match parts[..] {
                [host, container] => (None, host, container),
                [ip, host, container] => (Some(ip.to_string()), host, container),
                _ => panic!("`{p}` is not [IP:]HOST:CONTAINER"),
            };
            (ip, host.parse().unwrap(), container.parse().unwrap())
        })
        .collect()
}

/// `HOST:CONTAINER[:ro]` bind mounts of a service, host paths from the
/// compose file's directory.
fn mounts(service: &Value) -> HashMap<String, String> {
    strings(&service["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap().trim_start_matches("./").to_string();
            (parts.next().unwrap().to_string(), host)
        })
        .collect()
}

const SFWD: [&str; 3] = ["sfwd-1", "sfwd-2", "sfwd-3"];

#[test]
fn every_service_is_there() {
    let c = compose();
    let names: BTreeSet<&str> = c["services"]
        .as_object()
        .expect("services")
        .keys()
        .map(String::as_str)
        .collect();
    for name in [
        "kafka",
        "init",
        "sfwd-1",
        "sfwd-2",
        "sfwd-3",
        "target-sim",
        "prometheus",
    ] {
        assert!(names.contains(name), "no service `{name}` in {names:?}");
    }
}

#[test]
fn kafka_is_one_kraft_node_reachable_from_the_network_and_the_host() {
    let c = compose();
    let kafka = service(&c, "kafka");
    assert!(kafka["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    let env = &kafka["environment"];
    let get = |k: &str| env[k].as_str().unwrap_or_else(|| panic!("kafka: no {k}"));
    let roles: BTreeSet<&str> = get("KAFKA_PROCESS_ROLES").split(',').collect();
    assert_eq!(
        roles,
        BTreeSet::from(["broker", "controller"]),
        "KRaft, combined"
    );
    assert!(get("CLUSTER_ID").len() == 22, "a base64 UUID");

    // Every listener has a protocol, and the controller voter is a listener.
    let protocols: HashMap<&str, &str> = get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
        .split(',')
        .map(|p| p.split_once(':').unwrap())
        .collect();
    let listeners: HashMap<&str, &str> = get("KAFKA_LISTENERS")
        .split(',')
        .map(|l| l.split_once("://").unwrap())
        .collect();
    for name in listeners.keys() {
        assert!(
            protocols.contains_key(name),
            "listener {name} has no protocol"
        );
    }
    assert_eq!(listeners[get("KAFKA_CONTROLLER_LISTENER_NAMES")], ":9093");
    assert_eq!(get("KAFKA_CONTROLLER_QUORUM_VOTERS"), "1@kafka:9093");

    // The advertised addresses: kafka:9092 in the network, localhost on the
    // published port for the host.
    let advertised: HashMap<&str, &str> = get("KAFKA_ADVERTISED_LISTENERS")
        .split(',')
        .map(|l| l.split_once("://").unwrap())
        .collect();
    assert_eq!(
        advertised[get("KAFKA_INTER_BROKER_LISTENER_NAME")],
        "kafka:9092"
    );
    let host = advertised
        .iter()
        .find(|(_, a)| a.starts_with("localhost:"))
        .expect("a listener advertised to the host");
    let port: u16 = host.1.trim_start_matches("localhost:").parse().unwrap();
    assert_eq!(listeners[host.0], format!(":{port}"));
    assert!(
        ports(kafka).contains(&(port, port)),
        "the host listener is published"
    );
    assert!(kafka["healthcheck"]["test"].is_array());
}

#[test]
fn init_creates_every_request_topic_of_the_mounted_topology() {
    let c = compose();
    let init = service(&c, "init");
    assert_eq!(
        init["depends_on"]["kafka"]["condition"].as_str(),
        Some("service_healthy")
    );
    let script = strings(&init["command"]).join("\n");
    assert!(script.contains("--bootstrap-server kafka:9092"), "{script}");
    assert!(script.contains("--if-not-exists"), "{script}");
    let (topology, _) = sfwd::topology::load(&root().join("deploy/topology.yaml")).unwrap();
    for topic in topology.request_topics() {
        assert!(
            script.contains(topic),
            "init does not create {topic}: {script}"
        );
    }
    assert!(script.contains(&format!("--partitions {}", topology.kafka.partitions)));
}

#[test]
fn three_instances_run_the_mounted_topology_which_validates() {
    let c = compose();
    let mut admin_ports = BTreeSet::new();
    let mut topologies = BTreeSet::new();
    for name in SFWD {
        let s = service(&c, name);
        assert_eq!(
            s["build"].as_str(),
            Some("."),
            "{name} is built from the Dockerfile"
        );
        let args = strings(&s["command"]);
        assert_eq!(args[0], "run", "{name}");
        assert_eq!(arg(&args, "--instance-id"), Some(name));
        assert_eq!(arg(&args, "--admin-listen"), Some("0.0.0.0:9464"));
        // The admin server: tokens from the environment, published on the
        // host's loopback only.
        let source = arg(&args, "--admin-tokens").expect("--admin-tokens");
        let Ok(sfwd::admin::TokenSource::Env(var)) = sfwd::admin::TokenSource::parse(source) else {
            panic!("{name}: --admin-tokens {source} is not env:VAR");
        };
        assert_eq!(
            s["environment"][&var].as_str(),
            Some("${SFWD_ADMIN_TOKENS:-}"),
            "{name}: {var} comes from the shell that runs compose"
        );
        for (ip, _, container) in published(s) {
            if container == 9464 {
                assert_eq!(
                    ip.as_deref(),
                    Some("127.0.0.1"),
                    "{name}: the admin port stays on the host"
                );
            }
        }
        assert_eq!(
            s["environment"]["SFWD_BOOTSTRAP"].as_str(),
            Some("kafka:9092")
        );
        let path = arg(&args, "--topology").expect("--topology");
        let host = mounts(s)
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {path} is not mounted"));
        topologies.insert(host);
        let published: Vec<u16> = ports(s)
            .into_iter()
            .filter(|(_, container)| *container == 9464)
            .map(|(host, _)| host)
            .collect();
        assert_eq!(published.len(), 1, "{name} publishes its admin port");
        admin_ports.insert(published[0]);
        assert_eq!(
            s["depends_on"]["init"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{name} starts once the topics exist"
        );
    }
    assert_eq!(admin_ports.len(), 3, "one host port per instance");
    assert_eq!(topologies.len(), 1, "one topology for the group");

    let file = root().join(topologies.first().unwrap());
    let checked = sfwd::topology::check_file(&file);
    let errors: Vec<String> = checked.errors().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    let topology = checked.topology.unwrap();
    assert!(
        topology.control_points().count() >= 1,
        "store and forward is on"
    );

    // Its HTTP target is the target-sim service, on the port it listens on.
    let sim = service(&c, "target-sim");
    let sim_args = strings(&sim["command"]);
    assert_eq!(sim_args[0], "target-sim");
    let listen = arg(&sim_args, "--listen").expect("--listen");
    let port = listen.rsplit_once(':').unwrap().1;
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(
        yaml.contains(&format!("http://target-sim:{port}/")),
        "the topology calls target-sim on port {port}"
    );
    assert!(ports(sim).iter().any(|(_, c)| c.to_string() == port));
}

#[test]
fn prometheus_scrapes_every_instance() {
    let c = compose();
    let prometheus = service(&c, "prometheus");
    let config = mounts(prometheus)
        .get("/etc/prometheus/prometheus.yml")
        .cloned()
        .expect("prometheus.yml is mounted");
    let config = yaml(&read(&config));
    let mut targets = BTreeSet::new();
    for job in config["scrape_configs"].as_array().expect("scrape_configs") {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics");
        for sc in job["static_configs"].as_array().unwrap() {
            targets.extend(strings(&sc["targets"]).into_iter().map(String::from));
        }
    }
    let expected: BTreeSet<String> = SFWD
        .iter()
        .map(|name| {
            let args = strings(&service(&c, name)["command"]);
            let port = arg(&args, "--admin-listen")
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1;
            format!("{name}:{port}")
        })
        .collect();
    assert_eq!(targets, expected);
}

#[test]
fn host_ports_do_not_clash() {
    let c = compose();
    let mut seen: BTreeMap<u16, String> = BTreeMap::new();
    for (name, s) in c["services"].as_object().unwrap() {
        for (host, _) in ports(s) {
            if let Some(other) = seen.insert(host, name.clone()) {
                panic!("host port {host} used by {other} and {name}");
            }
        }
    }
}

#[test]
fn the_image_builds_with_the_debian_packages_and_runs_with_the_runtime_libraries() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert_eq!(stages.len(), 3, "a builder and a runtime stage");
    let (builder, runtime) = (stages[1], stages[2]);
    assert!(
        builder.starts_with("rust:1.95-bookworm AS builder"),
        "{builder}"
    );
    for package in [
        "librocksdb-dev",
        "libsnappy-dev",
        "libclang-dev",
        "cmake",
        "libcurl4-openssl-dev",
        "libssl-dev",
        "pkg-config",
    ] {
        assert!(builder.contains(package), "the builder installs {package}");
    }
    assert!(builder.contains("cargo build --release --locked"));
    assert!(runtime.starts_with("debian:bookworm-slim"), "{runtime}");
    for package in [
        "librocksdb7.8",
        "libsnappy1v5",
        "libssl3",
        "ca-certificates",
    ] {
        assert!(runtime.contains(package), "the runtime installs {package}");
    }
    assert!(runtime.contains("COPY --from=builder"));
    assert!(runtime.contains("ENTRYPOINT [\"sfwd\"]"));

    let ignore = read(".dockerignore");
    assert!(ignore
        .lines()
        .any(|l| l.trim() == "target/" || l.trim() == "target"));
}

/// The runtime stage installs, for each shared library the binary links,
/// the Debian package that holds it here (where `dpkg` can tell).
#[test]
fn the_runtime_packages_cover_the_binarys_shared_libraries() {
    let Ok(ldd) = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_sfwd"))
        .output()
    else {
        eprintln!("no ldd here: skipped");
        return;
    };
    let runtime = read("Dockerfile");
    let runtime = runtime.split("\nFROM ").nth(2).unwrap();
    let text = String::from_utf8_lossy(&ldd.stdout);
    for line in text.lines() {
        let Some(lib) = line.split_whitespace().next() else {
            continue;
        };
        let needs = match lib {
            l if l.starts_with("librocksdb.so.7.8") => "librocksdb7.8",
            l if l.starts_with("libsnappy.so.1") => "libsnappy1v5",
            l if l.starts_with("libssl.so.3") || l.starts_with("libcrypto.so.3") => "libssl3",
            // libc, libstdc++, libgcc, libz and the compression libraries
            // come with the base image or as dependencies of librocksdb7.8.
            _ => continue,
        };
        assert!(
            runtime.contains(needs),
            "{lib} needs {needs} in the runtime stage"
        );
    }
}

/// Debian's `docker-compose config` (no engine needed), when installed.
#[test]
fn docker_compose_config_accepts_the_file_when_available() {
    let Ok(out) = std::process::Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "--quiet"])
        .current_dir(root())
        .output()
    else {
        eprintln!("docker-compose is not installed: skipped");
        return;
    };
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_yaml_reader_resolves_anchors_and_keeps_strings() {
    let v = yaml("a: &x { b: [1, \"2\"] }\nc: *x\n");
    assert_eq!(v["c"]["b"][1], "2");
    assert_eq!(v["a"], v["c"]);
}
