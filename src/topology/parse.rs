//! From YAML nodes to the topology as written: shapes, keys and scalar
//! types are checked here, with every problem reported; meaning is checked
//! in [`super::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::diagnostics::{suggest, Diagnostics};
use super::model::{AutoResume, Interaction, Ordering, Overload, ReplayPolicy, RetryPolicy};
use super::yaml::{Loc, Node, Value};
use crate::rules::ChainMode;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

#[derive(Debug, Default)]
pub struct RawTopology {
    pub application: Option<Spanned<String>>,
    pub kafka: Option<RawKafka>,
    pub max_request_bytes: Option<Spanned<u64>>,
    pub max_uncommitted_records: Option<Spanned<u64>>,
    pub max_uncommitted_age: Option<Spanned<Duration>>,
    pub max_waiting_bytes: Option<Spanned<u64>>,
    pub exception_types: Vec<RawType>,
    pub services: Vec<RawService>,
    pub services_loc: Option<Loc>,
}

#[derive(Debug)]
pub struct RawKafka {
    pub bootstrap: Option<Spanned<String>>,
    pub exactly_once: bool,
    pub partitions: Option<Spanned<u64>>,
    pub replication_factor: Option<Spanned<u64>>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct RawType {
    pub name: Spanned<String>,
    pub parent: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RawService {
    pub name: Spanned<String>,
    pub binding: Option<RawBinding>,
    pub store_and_forward: Option<RawStoreAndForward>,
    pub interfaces: Vec<RawInterface>,
}

#[derive(Debug)]
pub struct RawBinding {
    pub loc: Loc,
    pub target: Option<RawTarget>,
    pub interaction: Option<Spanned<Interaction>>,
    pub retry: Option<RetryPolicy>,
}

#[derive(Debug)]
pub enum RawTarget {
    Http {
        url: Spanned<String>,
        method: String,
        timeout: Duration,
        headers: BTreeMap<String, String>,
        in_flight: u32,
        ordering: Ordering,
        rate: Option<crate::control::Rate>,
    },
    Kafka {
        topic: Spanned<String>,
        timeout: Duration,
        in_flight: u32,
    },
    Service(Spanned<String>),
}

#[derive(Debug)]
pub struct RawStoreAndForward {
    pub loc: Loc,
    pub control_point: Option<Spanned<String>>,
    /// `None` when the key is absent (the default rule applies).
    pub rules: Option<Vec<RawRule>>,
    pub auto_resume: Option<AutoResume>,
    pub replay: ReplayPolicy,
}

#[derive(Debug)]
pub struct RawRule {
    pub loc: Loc,
    pub exception: Option<Spanned<String>>,
    pub message: Option<String>,
    pub chain: ChainMode,
    pub subtypes: bool,
    pub scope: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RawInterface {
    pub name: Spanned<String>,
    pub operations: Vec<RawOperation>,
}

#[derive(Debug)]
pub struct RawOperation {
    pub name: Spanned<String>,
    pub topic: Option<Spanned<String>>,
    pub operation_header: Option<Spanned<String>>,
    pub interaction: Option<Spanned<Interaction>>,
    pub input_schema: Option<Spanned<String>>,
}

/// Default HTTP timeout when a binding does not set one.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default Kafka produce timeout when a binding does not set one.
pub const DEFAULT_KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of produces a Kafka binding keeps in flight per source
/// partition.
pub const DEFAULT_KAFKA_IN_FLIGHT: u32 = 1024;
/// The most a Kafka binding's `in_flight` may be.
pub const MAX_KAFKA_IN_FLIGHT: u64 = 10_000;
/// The most an HTTP binding's `in_flight` may be.
pub const MAX_HTTP_IN_FLIGHT: u64 = 1024;

/// Reads the whole document, reporting every structural problem.
pub fn read(root: &Node, d: &mut Diagnostics) -> RawTopology {
    let mut r = Reader { d };
    r.topology(root)
}

struct Reader<'d> {
    d: &'d mut Diagnostics,
}

/// The entries of a mapping whose keys were checked against a fixed list.
struct Fields<'n> {
    loc: Loc,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

impl Reader<'_> {
    fn topology(&mut self, root: &Node) -> RawTopology {
        const KEYS: &[&str] = &[
            "application",
            "kafka",
            "limits",
            "exception_types",
            "services",
        ];
        let Some(f) = self.fields(root, "the topology", KEYS) else {
            return RawTopology::default();
        };
        let mut t = RawTopology {
            application: self.req_string(&f, "application", "the topology"),
            ..RawTopology::default()
        };
        match f.get("kafka") {
            Some(k) => t.kafka = self.kafka(k),
            None => {
                self.d
                    .error(f.loc, "missing `kafka` section")
                    .hint("add `kafka: { bootstrap: localhost:9092 }`");
            }
        }
        if let Some(limits) = f.get("limits") {
            const LIMITS: &[&str] = &[
                "max_request_bytes",
                "max_uncommitted_records",
                "max_uncommitted_age",
                "max_waiting_bytes",
            ];
            if let Some(lf) = self.fields(limits, "`limits`", LIMITS) {
                t.max_request_bytes = lf.get("max_request_bytes").and_then(|n| self.size(n));
                t.max_uncommitted_records =
                    lf.get("max_uncommitted_records").and_then(|n| self.uint(n));
                t.max_uncommitted_age = lf
                    .get("max_uncommitted_age")
                    .and_then(|n| self.duration(n).map(|value| Spanned { value, loc: n.loc }));
                t.max_waiting_bytes = lf.get("max_waiting_bytes").and_then(|n| self.size(n));
            }
        }
        if let Some(types) = f.get("exception_types") {
            for (name, node) in self.named(types, "`exception_types`") {
                let what = format!("exception type `{}`", name.value);
                let parent = self
                    .fields(node, &what, &["parent"])
                    .and_then(|tf| self.opt_string(&tf, "parent"));
                t.exception_types.push(RawType { name, parent });
            }
        }
        match f.get("services") {
            Some(s) => {
                t.services_loc = Some(s.loc);
                for (name, node) in self.named(s, "`services`") {
                    if let Some(service) = self.service(name, node) {
                        t.services.push(service);
                    }
                }
            }
            None => {
                self.d
                    .error(
                        f.loc,
                        "missing `services`: a topology declares at least one service",
                    )
                    .hint("add a `services:` mapping; see topology/ for examples");
            }
        }
        t
    }

    fn kafka(&mut self, node: &Node) -> Option<RawKafka> {
        const KEYS: &[&str] = &[
            "bootstrap",
            "exactly_once",
            "partitions",
            "replication_factor",
            "properties",
        ];
        let f = self.fields(node, "`kafka`", KEYS)?;
        let mut properties = BTreeMap::new();
        if let Some(p) = f.get("properties") {
            for (k, v) in self.named(p, "`kafka.properties`") {
                if let Some(v) = self.scalar_text(v, &format!("property `{}`", k.value)) {
                    properties.insert(k.value, v.value);
                }
            }
        }
        Some(RawKafka {
            bootstrap: self.req_string(&f, "bootstrap", "`kafka`"),
            exactly_once: self.opt_bool(&f, "exactly_once").unwrap_or(false),
            partitions: f.get("partitions").and_then(|n| self.uint(n)),
            replication_factor: f.get("replication_factor").and_then(|n| self.uint(n)),
            properties,
        })
    }

    fn service(&mut self, name: Spanned<String>, node: &Node) -> Option<RawService> {
        const KEYS: &[&str] = &["binding", "store_and_forward", "interfaces"];
        let what = format!("service `{}`", name.value);
        let f = self.fields(node, &what, KEYS)?;
        let binding = match f.get("binding") {
            Some(b) => self.binding(b, &what),
            None => {
                self.d
                    .error(name.loc, format!("{what} has no `binding`"))
                    .hint("add `binding: { http: { url: … } }`, `binding: { kafka: { topic: … } }` or `binding: { service: <name> }`");
                None
            }
        };
        let store_and_forward = f
            .get("store_and_forward")
            .and_then(|n| self.store_and_forward(n, &what));
        let mut interfaces = Vec::new();
        match f.get("interfaces") {
            Some(i) => {
                for (iname, inode) in self.named(i, &format!("interfaces of {what}")) {
                    let iwhat = format!("interface `{}`", iname.value);
                    let Some(ifields) = self.fields(inode, &iwhat, &["operations"]) else {
                        continue;
                    };
                    let mut operations = Vec::new();
                    match ifields.get("operations") {
                        Some(ops) => {
                            for (oname, onode) in self.named(ops, &format!("operations of {iwhat}"))
                            {
                                if let Some(op) = self.operation(oname, onode, &iname.value) {
                                    operations.push(op);
                                }
                            }
                        }
                        None => {
                            self.d
                                .error(iname.loc, format!("{iwhat} has no `operations`"))
                                .hint("add `operations: { <name>: { topic: <request topic> } }`");
                        }
                    }
                    interfaces.push(RawInterface {
                        name: iname,
                        operations,
                    });
                }
            }
            None => {
                self.d
                    .error(
                        name.loc,
                        format!("{what} has no `interfaces`: nothing to read requests from"),
                    )
                    .hint(
                        "add `interfaces: { <Interface>: { operations: { <op>: { topic: … } } } }`",
                    );
            }
        }
        Some(RawService {
            name,
            binding,
            store_and_forward,
            interfaces,
        })
    }

    fn binding(&mut self, node: &Node, service: &str) -> Option<RawBinding> {
        const KEYS: &[&str] = &["http", "kafka", "service", "interaction", "retry"];
        let what = format!("binding of {service}");
        let f = self.fields(node, &what, KEYS)?;
        let mut targets = Vec::new();
        if let Some(h) = f.get("http") {
            targets.push((h.loc, self.http(h)));
        }
        if let Some(k) = f.get("kafka") {
            targets.push((k.loc, self.kafka_target(k)));
        }
        if let Some(s) = f.get("service") {
            targets.push((s.loc, self.string(s, "`service`").map(RawTarget::Service)));
        }
        if targets.len() > 1 {
            self.d
                .error(targets[1].0, format!("{what} names more than one target"))
                .hint("keep exactly one of `http`, `kafka`, `service`");
        } else if targets.is_empty() {
            self.d
                .error(f.loc, format!("{what} names no target"))
                .hint("add one of `http: { url: … }`, `kafka: { topic: … }`, `service: <name>`");
        }
        let interaction = f.get("interaction").and_then(|n| self.interaction(n));
        let retry = f.get("retry").and_then(|n| self.retry(n));
        Some(RawBinding {
            loc: f.loc,
            target: targets.into_iter().next().and_then(|(_, t)| t),
            interaction,
            retry,
        })
    }

    fn http(&mut self, node: &Node) -> Option<RawTarget> {
        let f = self.fields(
            node,
            "`http`",
            &[
                "url",
                "method",
                "timeout",
                "headers",
                "in_flight",
                "ordering",
                "rate",
            ],
        )?;
        let url = self.req_string(&f, "url", "`http`")?;
        let method = match self.opt_string(&f, "method") {
            Some(m) => {
                const METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET", "DELETE"];
                let upper = m.value.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    self.d
                        .error(m.loc, format!("unsupported HTTP method `{}`", m.value))
                        .hint(format!("expected one of: {}", METHODS.join(", ")));
                }
                upper
            }
            None => "POST".to_string(),
        };
        let timeout = f
            .get("timeout")
            .and_then(|n| self.duration(n))
            .unwrap_or(DEFAULT_HTTP_TIMEOUT);
        let mut headers = BTreeMap::new();
        if let Some(h) = f.get("headers") {
            for (k, v) in self.named(h, "`headers`") {
                if let Some(v) = self.scalar_text(v, &format!("header `{}`", k.value)) {
                    headers.insert(k.value, v.value);
                }
            }
        }
        let ordering = match self.opt_string(&f, "ordering") {
            None => Ordering::Partition,
            Some(o) => match o.value.as_str() {
                "partition" => Ordering::Partition,
                "key" => Ordering::Key,
                other => {
                    self.d
                        .error(o.loc, format!("unknown ordering `{other}`"))
                        .hint("`partition` (one call at a time, the partition's order) or `key` (each key's order, keys overlap)");
                    Ordering::Partition
                }
            },
        };
        let in_flight = match f.get("in_flight").and_then(|n| self.uint(n)) {
            Some(n) if n.value == 0 || n.value > MAX_HTTP_IN_FLIGHT => {
                self.d
                    .error(
                        n.loc,
                        format!(
                            "`in_flight` is {}; it must be 1 to {MAX_HTTP_IN_FLIGHT}",
                            n.value
                        ),
                    )
                    .hint("the calls kept out at once per source partition; the default is 1");
                1
            }
            Some(n) if n.value > 1 && ordering == Ordering::Partition => {
                self.d
                    .error(
                        n.loc,
                        format!(
                            "`in_flight` is {} with `ordering: partition`: an HTTP target gets a \
                             partition's requests one at a time, in the order consumed",
                            n.value
                        ),
                    )
                    .hint("set `ordering: key` to overlap the calls of different keys (each key keeps its order)");
                1
            }
            Some(n) => n.value as u32,
            None => 1,
        };
        let rate = self.opt_string(&f, "rate").and_then(|r| self.rate(&r));
        Some(RawTarget::Http {
            url,
            method,
            timeout,
            headers,
            in_flight,
            ordering,
            rate,
        })
    }

    fn kafka_target(&mut self, node: &Node) -> Option<RawTarget> {
        let f = self.fields(node, "`kafka` binding", &["topic", "timeout", "in_flight"])?;
        let topic = self.req_string(&f, "topic", "`kafka` binding")?;
        let timeout = f
            .get("timeout")
            .and_then(|n| self.duration(n))
            .unwrap_or(DEFAULT_KAFKA_TIMEOUT);
        let in_flight = match f.get("in_flight").and_then(|n| self.uint(n)) {
            Some(n) if n.value == 0 || n.value > MAX_KAFKA_IN_FLIGHT => {
                self.d
                    .error(
                        n.loc,
                        format!(
                            "`in_flight` is {}; it must be 1 to {MAX_KAFKA_IN_FLIGHT}",
                            n.value
                        ),
                    )
                    .hint("1 waits for each produce before the next; the default is 1024");
                DEFAULT_KAFKA_IN_FLIGHT
            }
            Some(n) => n.value as u32,
            None => DEFAULT_KAFKA_IN_FLIGHT,
        };
        Some(RawTarget::Kafka {
            topic,
            timeout,
            in_flight,
        })
    }

    fn retry(&mut self, node: &Node) -> Option<RetryPolicy> {
        let f = self.fields(node, "`retry`", &["attempts", "backoff"])?;
        let attempts = match f.get("attempts").and_then(|n| self.uint(n)) {
            Some(a) if a.value == 0 || a.value > 100 => {
                self.d
                    .error(
                        a.loc,
                        format!("`attempts` is {}; it must be 1 to 100", a.value),
                    )
                    .hint("attempts counts the first call too: 3 means two retries");
                1
            }
            Some(a) => a.value as u32,
            None => 3,
        };
        let backoff = f
            .get("backoff")
            .and_then(|n| self.duration(n))
            .unwrap_or(Duration::from_millis(200));
        Some(RetryPolicy { attempts, backoff })
    }

    fn store_and_forward(&mut self, node: &Node, service: &str) -> Option<RawStoreAndForward> {
        const KEYS: &[&str] = &["control_point", "rules", "auto_resume", "replay"];
        let what = format!("`store_and_forward` of {service}");
        let f = self.fields(node, &what, KEYS)?;
        let control_point = self.req_string(&f, "control_point", &what);
        let rules = f.get("rules").map(|r| {
            self.list(r, "`rules`")
                .into_iter()
                .filter_map(|n| self.rule(n))
                .collect()
        });
        let auto_resume = f.get("auto_resume").and_then(|n| {
            let af = self.fields(n, "`auto_resume`", &["every", "probe_url"])?;
            let every = match af.get("every") {
                Some(e) => self.duration(e)?,
                None => {
                    self.d
                        .error(af.loc, "`auto_resume` needs `every`: how often to probe")
                        .hint("for example `auto_resume: { every: 30s }`");
                    return None;
                }
            };
            Some(AutoResume {
                every,
                probe_url: self.opt_string(&af, "probe_url").map(|s| s.value),
            })
        });
        let replay = f
            .get("replay")
            .and_then(|n| self.replay(n))
            .unwrap_or_default();
        Some(RawStoreAndForward {
            loc: f.loc,
            control_point,
            rules,
            auto_resume,
            replay,
        })
    }

    /// `replay: { rate: 200/s, ramp: 30s, on_overload: back-off }`
    /// A `rate:` value: a cap per second, or `unlimited` (`None`).
    fn rate(&mut self, r: &Spanned<String>) -> Option<crate::control::Rate> {
        match r.value.parse::<crate::control::Pace>() {
            Ok(crate::control::Pace::Rate(rate)) => Some(rate),
            Ok(crate::control::Pace::Unlimited) => None,
            Err(e) => {
                self.d
                    .error(r.loc, format!("`rate`: {e}"))
                    .hint("for example `rate: 200/s`; leave it out for no cap");
                None
            }
        }
    }

    fn replay(&mut self, node: &Node) -> Option<ReplayPolicy> {
        let f = self.fields(node, "`replay`", &["rate", "ramp", "on_overload"])?;
        let rate = self.opt_string(&f, "rate").and_then(|r| self.rate(&r));
        let ramp = f
            .get("ramp")
            .and_then(|n| self.duration(n))
            .unwrap_or_default();
        let on_overload = match self.opt_string(&f, "on_overload") {
            None => Overload::default(),
            Some(o) => match o.value.as_str() {
                "back-off" => Overload::BackOff,
                "fail" => Overload::Fail,
                other => {
                    self.d
                        .error(o.loc, format!("unknown `on_overload` `{other}`"))
                        .hint("`back-off` (wait as a 429 or 503's Retry-After says, the default) or `fail` (rules decide)");
                    Overload::default()
                }
            },
        };
        if ramp > Duration::ZERO && rate.is_none() {
            self.d
                .warning(f.loc, "`replay.ramp` without `rate` has no effect: a ramp slows the start of a capped replay")
                .hint("add e.g. `rate: 200/s`");
        }
        Some(ReplayPolicy {
            rate,
            ramp,
            on_overload,
        })
    }

    fn rule(&mut self, node: &Node) -> Option<RawRule> {
        const KEYS: &[&str] = &["exception", "message", "chain", "subtypes", "scope"];
        let f = self.fields(node, "a rule", KEYS)?;
        let chain = match self.opt_string(&f, "chain") {
            Some(c) => match ChainMode::parse(&c.value) {
                Some(m) => m,
                None => {
                    let modes: Vec<&str> = ChainMode::ALL.iter().map(|m| m.as_str()).collect();
                    self.d
                        .error(c.loc, format!("unknown chain mode `{}`", c.value))
                        .hint(suggest(&c.value, &modes));
                    ChainMode::default()
                }
            },
            None => ChainMode::default(),
        };
        Some(RawRule {
            loc: f.loc,
            exception: self.req_string(&f, "exception", "a rule"),
            message: self.opt_string(&f, "message").map(|m| m.value),
            chain,
            subtypes: self.opt_bool(&f, "subtypes").unwrap_or(false),
            scope: self.opt_string(&f, "scope"),
        })
    }

    fn operation(
        &mut self,
        name: Spanned<String>,
        node: &Node,
        interface: &str,
    ) -> Option<RawOperation> {
        const KEYS: &[&str] = &["topic", "operation_header", "interaction", "input_schema"];
        let what = format!("operation `{interface}.{}`", name.value);
        let f = if node.is_null() {
            Fields {
                loc: node.loc,
                entries: Vec::new(),
            }
        } else {
            self.fields(node, &what, KEYS)?
        };
        Some(RawOperation {
            name,
            topic: self.opt_string(&f, "topic"),
            operation_header: self.opt_string(&f, "operation_header"),
            interaction: f.get("interaction").and_then(|n| self.interaction(n)),
            input_schema: self.opt_string(&f, "input_schema"),
        })
    }

    fn interaction(&mut self, node: &Node) -> Option<Spanned<Interaction>> {
        let s = self.string(node, "`interaction`")?;
        let value = match s.value.as_str() {
            "sync" => Interaction::Sync,
            "async" => Interaction::Async,
            other => {
                self.d
                    .error(s.loc, format!("unknown interaction style `{other}`"))
                    .hint(suggest(other, &["sync", "async"]));
                return None;
            }
        };
        Some(Spanned { value, loc: s.loc })
    }

    // --- shapes -----------------------------------------------------------

    /// A mapping with a fixed set of keys; unknown keys are errors. A null
    /// node reads as an empty mapping.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        if node.is_null() {
            return Some(Fields {
                loc: node.loc,
                entries: Vec::new(),
            });
        }
        let Value::Map(entries) = &node.value else {
            self.d.error(
                node.loc,
                format!("{what} must be a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Scalar { text, .. } = &k.value else {
                self.d.error(
                    k.loc,
                    format!("keys of {what} must be names, found {}", k.kind()),
                );
                continue;
            };
            if allowed.contains(&text.as_str()) {
                out.push((text.as_str(), v));
            } else {
                self.d
                    .error(k.loc, format!("unknown key `{text}` in {what}"))
                    .hint(suggest(text, allowed));
            }
        }
        Some(Fields {
            loc: node.loc,
            entries: out,
        })
    }

    /// A mapping whose keys are user-chosen names.
    fn named<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(Spanned<String>, &'n Node)> {
        if node.is_null() {
            return Vec::new();
        }
        let Value::Map(entries) = &node.value else {
            self.d.error(
                node.loc,
                format!("{what} must be a mapping of names, found {}", node.kind()),
            );
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(k, v)| match &k.value {
                Value::Scalar { text, .. } if !k.is_null() => Some((
                    Spanned {
                        value: text.clone(),
                        loc: k.loc,
                    },
                    v,
                )),
                _ => {
                    self.d.error(
                        k.loc,
                        format!("keys of {what} must be names, found {}", k.kind()),
                    );
                    None
                }
            })
            .collect()
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> Vec<&'n Node> {
        match &node.value {
            _ if node.is_null() => Vec::new(),
            Value::Seq(items) => items.iter().collect(),
            _ => {
                self.d
                    .error(
                        node.loc,
                        format!("{what} must be a list, found {}", node.kind()),
                    )
                    .hint("write each item on its own line starting with `- `");
                Vec::new()
            }
        }
    }

    // --- scalars ----------------------------------------------------------

    /// Any scalar as text (numbers and booleans included).
    fn scalar_text(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Scalar { text, .. } => Some(Spanned {
                value: text.clone(),
                loc: node.loc,
            }),
            _ => {
                self.d.error(
                    node.loc,
                    format!("{what} must be a single value, found {}", node.kind()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        if node.is_null() {
            self.d.error(node.loc, format!("{what} is empty"));
            return None;
        }
        self.scalar_text(node, what)
    }

    fn opt_string(&mut self, f: &Fields<'_>, key: &str) -> Option<Spanned<String>> {
        let node = f.get(key)?;
        self.string(node, &format!("`{key}`"))
    }

    fn req_string(&mut self, f: &Fields<'_>, key: &str, what: &str) -> Option<Spanned<String>> {
        match f.get(key) {
            Some(node) => self.string(node, &format!("`{key}`")),
            None => {
                self.d.error(f.loc, format!("missing `{key}` in {what}"));
                None
            }
        }
    }

    fn opt_bool(&mut self, f: &Fields<'_>, key: &str) -> Option<bool> {
        let node = f.get(key)?;
        match &node.value {
            Value::Scalar { text, plain: true }
                if matches!(text.as_str(), "true" | "True" | "TRUE") =>
            {
                Some(true)
            }
            Value::Scalar { text, plain: true }
                if matches!(text.as_str(), "false" | "False" | "FALSE") =>
            {
                Some(false)
            }
            _ => {
                self.d
                    .error(node.loc, format!("`{key}` must be true or false"));
                None
            }
        }
    }

    fn uint(&mut self, node: &Node) -> Option<Spanned<u64>> {
        match &node.value {
            Value::Scalar { text, plain: true } if text.parse::<u64>().is_ok() => Some(Spanned {
                value: text.parse().expect("checked"),
                loc: node.loc,
            }),
            _ => {
                self.d
                    .error(node.loc, "expected a whole number")
                    .hint("write digits only, for example `12`");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node) -> Option<Duration> {
        let s = self.scalar_text(node, "a duration")?;
        match parse_duration(&s.value) {
            Some(d) => Some(d),
            None => {
                self.d
                    .error(s.loc, format!("`{}` is not a duration", s.value))
                    .hint("write a number and a unit: 250ms, 2s, 1.5s, 5m, 1h");
                None
            }
        }
    }

    fn size(&mut self, node: &Node) -> Option<Spanned<u64>> {
        let s = self.scalar_text(node, "a size")?;
        match parse_size(&s.value) {
            Some(value) => Some(Spanned { value, loc: s.loc }),
            None => {
                self.d
                    .error(s.loc, format!("`{}` is not a size", s.value))
                    .hint("write bytes, or a number with KiB, MiB or GiB: 1048576, 512KiB, 1MiB");
                None
            }
        }
    }
}

/// `250ms`, `2s`, `1.5s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// `1048576`, `512KiB`, `1MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("2 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 MiB"), Some(1 << 20));
        assert_eq!(parse_size("1TiB"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }
}
