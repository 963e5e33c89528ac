//! Meaning checks: from the topology as written to the checked
//! [`Topology`], with every error and warning of SPEC §3 reported at its
//! place in the file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::diagnostics::{did_you_mean, Diagnostics};
use super::model::*;
use super::parse::{RawBinding, RawService, RawTarget, RawTopology, Spanned};
use super::yaml::Loc;
use crate::rules::{
    ChainMode, Glob, Rule, RuleSet, Scope, TypeError, TypeTree, SERVICE_RUNTIME, SERVICE_TIMEOUT,
    SERVICE_UNAVAILABLE,
};

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_LEN: usize = 249;

/// Checks `raw` and builds the topology. Returns `None` when there were
/// errors; warnings are left in `d` either way.
pub fn check(raw: RawTopology, dir: &Path, d: &mut Diagnostics) -> Option<Topology> {
    let application = match &raw.application {
        Some(app) => {
            if let Err(why) = topic_name_part(&app.value) {
                d.error(app.loc, format!("application id `{}` {why}", app.value))
                    .hint(
                        "it prefixes every topic sfwd creates: use letters, digits, `.`, `_`, `-`",
                    );
            }
            app.value.clone()
        }
        None => String::new(),
    };
    let kafka = kafka_settings(&raw, d);
    let types = type_tree(&raw, d);
    let max_request_bytes = match &raw.max_request_bytes {
        Some(m) if m.value == 0 => {
            d.error(m.loc, "`max_request_bytes` must be more than 0");
            DEFAULT_MAX_REQUEST_BYTES
        }
        Some(m) => m.value,
        None => DEFAULT_MAX_REQUEST_BYTES,
    };
    let (max_uncommitted_records, max_uncommitted_age) = redelivery_bound(&raw, d);
    let max_waiting_bytes = match &raw.max_waiting_bytes {
        Some(m) if m.value == 0 => {
            d.error(m.loc, "`max_waiting_bytes` must be more than 0")
                .hint(format!(
                "the default is {}MiB; each partition is paused at its share, never below {}MiB",
                DEFAULT_MAX_WAITING_BYTES >> 20,
                MIN_WAITING_PER_PARTITION >> 20,
            ));
            DEFAULT_MAX_WAITING_BYTES
        }
        Some(m) => {
            if m.value < MIN_WAITING_PER_PARTITION {
                let floor = MIN_WAITING_PER_PARTITION >> 20;
                d.warning(
                    m.loc,
                    format!("`max_waiting_bytes` is less than {floor}MiB: each partition still holds up to {floor}MiB for its worker before it is paused"),
                );
            }
            m.value
        }
        None => DEFAULT_MAX_WAITING_BYTES,
    };

    if raw.services.is_empty() {
        if let Some(loc) = raw.services_loc {
            d.error(
                loc,
                "`services` is empty: a topology declares at least one service",
            );
        }
    }
    let interactions = resolve_interactions(&raw.services, d);
    let own_topics = [
        ".failed",
        ".failed-actions",
        ".control",
        ".control-commands",
        ".replay",
    ]
    .map(|s| format!("{application}{s}"));

    let mut control_points: HashMap<String, Loc> = HashMap::new();
    let mut topic_readers: BTreeMap<String, Vec<TopicReader>> = BTreeMap::new();
    let mut services = Vec::new();
    for raw_service in &raw.services {
        let name = &raw_service.name;
        let interaction = interactions
            .get(name.value.as_str())
            .copied()
            .unwrap_or(Interaction::Async);

        let mut interfaces = Vec::new();
        let mut op_count = 0;
        for ri in &raw_service.interfaces {
            let mut operations = Vec::new();
            for ro in &ri.operations {
                op_count += 1;
                let full = format!("{}.{}", ri.name.value, ro.name.value);
                let topic = match &ro.topic {
                    Some(t) => {
                        if let Err(why) = topic_name(&t.value) {
                            d.error(t.loc, format!("request topic `{}` {why}", t.value));
                        } else if own_topics.contains(&t.value)
                            || t.value.starts_with(&format!("{application}.stored."))
                        {
                            d.error(t.loc, format!("request topic `{}` is one of sfwd's own topics", t.value))
                                .hint("sfwd writes `<application>.failed`, `.failed-actions`, `.control`, `.control-commands`, `.replay` and `.stored.*`; read requests from another topic");
                        }
                        topic_readers
                            .entry(t.value.clone())
                            .or_default()
                            .push(TopicReader {
                                operation: full.clone(),
                                loc: t.loc,
                                header: ro.operation_header.clone(),
                            });
                        t.value.clone()
                    }
                    None => {
                        d.error(
                            ro.name.loc,
                            format!("operation `{full}` has no request topic"),
                        )
                        .hint("add `topic: <request topic>` to the operation");
                        String::new()
                    }
                };
                let input_schema = ro
                    .input_schema
                    .as_ref()
                    .and_then(|s| input_schema(s, dir, d));
                operations.push(Operation {
                    name: ro.name.value.clone(),
                    topic,
                    operation_header: ro.operation_header.as_ref().map(|h| h.value.clone()),
                    interaction: ro.interaction.as_ref().map_or(interaction, |i| i.value),
                    input_schema,
                });
            }
            interfaces.push(Interface {
                name: ri.name.value.clone(),
                operations,
            });
        }
        if op_count == 0 && !raw_service.interfaces.is_empty() {
            d.error(
                name.loc,
                format!(
                    "service `{}` declares no operation: nothing to read requests from",
                    name.value
                ),
            );
        }

        let store_and_forward = raw_service.store_and_forward.as_ref().and_then(|sf| {
            if interaction == Interaction::Sync {
                d.error(
                    sf.loc,
                    format!(
                        "store-and-forward on service `{}`, whose interaction style is synchronous",
                        name.value
                    ),
                )
                .hint("only asynchronous requests can be stored: set `interaction: async` in the service's `binding`");
            }
            let control_point = sf.control_point.as_ref()?;
            check_control_point(control_point, &application, &mut control_points, d);
            let rules = match &sf.rules {
                None => RuleSet::new(vec![Rule::new(SERVICE_UNAVAILABLE)]),
                Some(raw_rules) => {
                    let mut rules = Vec::new();
                    let mut seen: Vec<(String, Loc)> = Vec::new();
                    for rr in raw_rules {
                        let Some(exception) = &rr.exception else { continue };
                        let written = format!(
                            "{}|{:?}|{}|{}|{:?}",
                            exception.value,
                            rr.message,
                            rr.chain,
                            rr.subtypes,
                            rr.scope.as_ref().map(|s| &s.value)
                        );
                        if let Some((_, first)) = seen.iter().find(|(w, _)| *w == written) {
                            d.warning(rr.loc, format!("duplicate rule: the same as the rule at line {}", first.line))
                                .hint("remove one of them");
                        } else {
                            seen.push((written, rr.loc));
                        }
                    }
                    let built: Vec<(Rule, Loc)> = raw_rules
                        .iter()
                        .filter_map(|rr| {
                            let exception = rr.exception.as_ref()?;
                            check_rule_type(exception, &types, d);
                            let scope = rr
                                .scope
                                .as_ref()
                                .map_or(Scope::Service, |s| check_scope(s, raw_service, d));
                            Some((
                                Rule {
                                    exception: exception.value.clone(),
                                    message: rr.message.as_deref().map(Glob::new),
                                    chain: rr.chain,
                                    subtypes: rr.subtypes,
                                    scope,
                                },
                                rr.loc,
                            ))
                        })
                        .collect();
                    for (rule, loc) in &built {
                        if let Some(binding) = &raw_service.binding {
                            warn_never_matches(rule, *loc, binding, &raw.services, &types, d);
                        }
                    }
                    rules.extend(built.into_iter().map(|(r, _)| r));
                    RuleSet::new(rules)
                }
            };
            Some(StoreAndForward {
                control_point: control_point.value.clone(),
                rules,
                auto_resume: sf.auto_resume.clone(),
                replay: sf.replay,
            })
        });

        let Some(binding) = raw_service
            .binding
            .as_ref()
            .and_then(|b| binding(b, name, &raw.services, d))
        else {
            continue;
        };
        services.push(Service {
            name: name.value.clone(),
            binding,
            interaction,
            retry: raw_service.binding.as_ref().and_then(|b| b.retry),
            store_and_forward,
            interfaces,
        });
    }
    check_shared_topics(&topic_readers, d);

    if d.has_errors() {
        return None;
    }
    Some(Topology {
        source: d.file().to_path_buf(),
        application,
        kafka: kafka?,
        limits: Limits {
            max_request_bytes,
            max_uncommitted_records,
            max_uncommitted_age,
            max_waiting_bytes,
        },
        types,
        services,
    })
}

fn kafka_settings(raw: &RawTopology, d: &mut Diagnostics) -> Option<KafkaSettings> {
    let k = raw.kafka.as_ref()?;
    let partitions = match &k.partitions {
        Some(p) if p.value == 0 || p.value > 10_000 => {
            d.error(
                p.loc,
                format!("`partitions` is {}; it must be 1 to 10000", p.value),
            );
            1
        }
        Some(p) => p.value as u32,
        None => 12,
    };
    let replication_factor = match &k.replication_factor {
        Some(r) if r.value == 0 || r.value > i16::MAX as u64 => {
            d.error(
                r.loc,
                format!("`replication_factor` is {}; it must be 1 or more", r.value),
            );
            1
        }
        Some(r) => r.value as u16,
        None => 1,
    };
    Some(KafkaSettings {
        bootstrap: k.bootstrap.as_ref()?.value.clone(),
        exactly_once: k.exactly_once,
        partitions,
        replication_factor,
        properties: k.properties.clone(),
    })
}

/// `limits.max_uncommitted_records` and `limits.max_uncommitted_age`, or
/// their defaults.
fn redelivery_bound(raw: &RawTopology, d: &mut Diagnostics) -> (u64, std::time::Duration) {
    let records = match &raw.max_uncommitted_records {
        Some(r) if r.value == 0 => {
            d.error(r.loc, "`max_uncommitted_records` must be at least 1")
                .hint("it is how many records a partition may take past its last committed offset");
            DEFAULT_MAX_UNCOMMITTED_RECORDS
        }
        Some(r) => r.value,
        None => DEFAULT_MAX_UNCOMMITTED_RECORDS,
    };
    let age = match &raw.max_uncommitted_age {
        Some(a) if a.value.is_zero() => {
            d.error(a.loc, "`max_uncommitted_age` must be more than 0");
            DEFAULT_MAX_UNCOMMITTED_AGE
        }
        Some(a) => a.value,
        None => DEFAULT_MAX_UNCOMMITTED_AGE,
    };
    (records, age)
}

fn type_tree(raw: &RawTopology, d: &mut Diagnostics) -> TypeTree {
    let mut tree = TypeTree::built_in();
    let errors = tree.add_all(raw.exception_types.iter().map(|t| {
        (
            t.name.value.as_str(),
            t.parent.as_ref().map(|p| p.value.as_str()),
        )
    }));
    for (name, err) in errors {
        let Some(t) = raw.exception_types.iter().find(|t| t.name.value == name) else {
            continue;
        };
        match &err {
            TypeError::UnknownParent { parent, .. } => {
                let loc = t.parent.as_ref().map_or(t.name.loc, |p| p.loc);
                let diag = d.error(loc, err.to_string());
                match did_you_mean(parent, tree.names()) {
                    Some(s) => diag.hint(format!("did you mean `{s}`?")),
                    None => diag
                        .hint("declare the parent under `exception_types` or use a built-in type"),
                };
            }
            TypeError::Duplicate(n) if TypeTree::is_built_in(n) => {
                d.error(
                    t.name.loc,
                    format!("exception type `{n}` is built in and cannot be redefined"),
                )
                .hint("pick another name for your type");
            }
            _ => {
                d.error(t.name.loc, err.to_string());
            }
        }
    }
    tree
}

/// Every service's effective interaction style: declared, or the binding's
/// default (http: sync, kafka: async, service: the referenced service's).
fn resolve_interactions<'a>(
    services: &'a [RawService],
    d: &mut Diagnostics,
) -> HashMap<&'a str, Interaction> {
    let by_name: HashMap<&str, &RawService> = services
        .iter()
        .map(|s| (s.name.value.as_str(), s))
        .collect();
    let mut out = HashMap::new();
    for s in services {
        let mut path: Vec<&str> = Vec::new();
        let mut current = s;
        let style = loop {
            let Some(b) = &current.binding else {
                break Interaction::Async;
            };
            if let Some(i) = &b.interaction {
                if matches!(b.target, Some(RawTarget::Kafka { .. }))
                    && i.value == Interaction::Sync
                    && current.name.value == s.name.value
                {
                    d.error(i.loc, "a kafka binding is always asynchronous")
                        .hint(
                        "remove `interaction: sync`; the kafka binding's style cannot be changed",
                    );
                }
                break i.value;
            }
            match &b.target {
                Some(RawTarget::Http { .. }) | None => break Interaction::Sync,
                Some(RawTarget::Kafka { .. }) => break Interaction::Async,
                Some(RawTarget::Service(r)) => {
                    path.push(current.name.value.as_str());
                    match by_name.get(r.value.as_str()) {
                        Some(next) if !path.contains(&next.name.value.as_str()) => current = next,
                        // Unknown or cyclic references are reported by `binding`.
                        _ => break Interaction::Async,
                    }
                }
            }
        };
        out.insert(s.name.value.as_str(), style);
    }
    out
}

fn binding(
    b: &RawBinding,
    service: &Spanned<String>,
    all: &[RawService],
    d: &mut Diagnostics,
) -> Option<Binding> {
    match b.target.as_ref()? {
        RawTarget::Http {
            url,
            method,
            timeout,
            headers,
            in_flight,
            ordering,
            rate,
        } => {
            if !(url.value.starts_with("http://") || url.value.starts_with("https://"))
                || url
                    .value
                    .split("://")
                    .nth(1)
                    .is_none_or(|rest| rest.is_empty() || rest.starts_with('/'))
            {
                d.error(
                    url.loc,
                    format!(
                        "`{}` is not an http:// or https:// URL with a host",
                        url.value
                    ),
                )
                .hint("for example `url: http://eis.local:8080/employee`");
            }
            if timeout.is_zero() {
                d.error(b.loc, "the http timeout must be more than 0");
            }
            Some(Binding::Http(HttpBinding {
                url: url.value.clone(),
                method: method.clone(),
                timeout: *timeout,
                headers: headers.clone(),
                in_flight: *in_flight,
                ordering: *ordering,
                rate: *rate,
            }))
        }
        RawTarget::Kafka {
            topic,
            timeout,
            in_flight,
        } => {
            if let Err(why) = topic_name(&topic.value) {
                d.error(topic.loc, format!("target topic `{}` {why}", topic.value));
            }
            Some(Binding::Kafka(KafkaBinding {
                topic: topic.value.clone(),
                timeout: *timeout,
                in_flight: *in_flight,
            }))
        }
        RawTarget::Service(target) => {
            if target.value == service.value {
                d.error(
                    target.loc,
                    format!("service `{}` refers to itself", service.value),
                );
                return None;
            }
            if !all.iter().any(|s| s.name.value == target.value) {
                let names: Vec<&str> = all.iter().map(|s| s.name.value.as_str()).collect();
                let diag = d.error(
                    target.loc,
                    format!("binding refers to unknown service `{}`", target.value),
                );
                if let Some(s) = did_you_mean(&target.value, names) {
                    diag.hint(format!("did you mean `{s}`?"));
                }
                return None;
            }
            if let Some(cycle) = reference_cycle(service, all) {
                d.error(
                    target.loc,
                    format!("service references form a cycle: {cycle}"),
                )
                .hint("a service binding must end at an http or kafka binding");
                return None;
            }
            Some(Binding::Service(target.value.clone()))
        }
    }
}

fn reference_cycle(start: &Spanned<String>, all: &[RawService]) -> Option<String> {
    let mut path = vec![start.value.as_str()];
    let mut current = start.value.as_str();
    loop {
        let s = all.iter().find(|s| s.name.value == current)?;
        let Some(RawTarget::Service(next)) = s.binding.as_ref().and_then(|b| b.target.as_ref())
        else {
            return None;
        };
        if path.contains(&next.value.as_str()) {
            path.push(&next.value);
            return Some(path.join(" -> "));
        }
        path.push(&next.value);
        current = &next.value;
    }
}

fn check_control_point(
    cp: &Spanned<String>,
    application: &str,
    seen: &mut HashMap<String, Loc>,
    d: &mut Diagnostics,
) {
    if cp.value.trim().is_empty() {
        d.error(cp.loc, "the control point name is empty")
            .hint("name it after the service it protects, e.g. `EmployeeDataFromEISSystem`");
        return;
    }
    if let Err(why) = topic_name_part(&cp.value) {
        d.error(cp.loc, format!("control point name `{}` {why}", cp.value))
            .hint("it names the stored topic `<application>.stored.<control point>`: use letters, digits, `.`, `_`, `-`");
        return;
    }
    let stored = format!("{application}.stored.{}", cp.value);
    if stored.len() > MAX_TOPIC_LEN {
        d.error(
            cp.loc,
            format!(
                "stored topic `{stored}` would be {} characters; Kafka allows {MAX_TOPIC_LEN}",
                stored.len()
            ),
        )
        .hint("shorten the control point name or the application id");
    }
    if let Some(first) = seen.get(&cp.value) {
        d.error(
            cp.loc,
            format!(
                "control point `{}` is already used at line {}",
                cp.value, first.line
            ),
        )
        .hint("control point names are unique in a topology: one per service");
    } else {
        seen.insert(cp.value.clone(), cp.loc);
    }
}

fn check_rule_type(exception: &Spanned<String>, types: &TypeTree, d: &mut Diagnostics) {
    let name = exception.value.as_str();
    if !types.contains(name) {
        let diag = d.error(exception.loc, format!("unknown exception type `{name}`"));
        match did_you_mean(name, types.names()) {
            Some(s) => diag.hint(format!("did you mean `{s}`?")),
            None => diag
                .hint("declare it under `exception_types` with a parent, or use a built-in type"),
        };
    } else if types.is_business(name) {
        d.error(
            exception.loc,
            format!("`{name}` is a business exception: business faults are answers, not outages"),
        )
        .hint("store-and-forward rules name runtime types such as ServiceUnavailableException");
    } else if !types.is_runtime(name) {
        d.error(exception.loc, format!("`{name}` is not a runtime exception type (it does not descend from {SERVICE_RUNTIME})"))
            .hint(format!("name {SERVICE_RUNTIME} or a type under it; transport causes such as `{name}` sit below one of those in a chain, so a rule on ServiceUnavailableException already covers them"));
    }
}

fn check_scope(scope: &Spanned<String>, service: &RawService, d: &mut Diagnostics) -> Scope {
    let (iface, op) = match scope.value.split_once('.') {
        Some((i, o)) => (i, Some(o)),
        None => (scope.value.as_str(), None),
    };
    let Some(interface) = service.interfaces.iter().find(|i| i.name.value == iface) else {
        let names: Vec<&str> = service
            .interfaces
            .iter()
            .map(|i| i.name.value.as_str())
            .collect();
        let diag = d.error(
            scope.loc,
            format!(
                "rule scope `{}` names no interface of service `{}`",
                scope.value, service.name.value
            ),
        );
        match did_you_mean(iface, names.iter().copied()) {
            Some(s) => diag.hint(format!("did you mean `{s}`?")),
            None => diag.hint(format!("interfaces of the service: {}", names.join(", "))),
        };
        return Scope::Service;
    };
    match op {
        None => Scope::Interface(iface.to_string()),
        Some(op) => {
            if interface.operations.iter().any(|o| o.name.value == op) {
                Scope::Operation {
                    interface: iface.to_string(),
                    operation: op.to_string(),
                }
            } else {
                let names: Vec<&str> = interface
                    .operations
                    .iter()
                    .map(|o| o.name.value.as_str())
                    .collect();
                let diag = d.error(
                    scope.loc,
                    format!(
                        "rule scope `{}` names no operation of interface `{iface}`",
                        scope.value
                    ),
                );
                match did_you_mean(op, names.iter().copied()) {
                    Some(s) => diag.hint(format!("did you mean `{iface}.{s}`?")),
                    None => diag.hint(format!("operations of `{iface}`: {}", names.join(", "))),
                };
                Scope::Service
            }
        }
    }
}

/// The types a binding can raise at the top level of a chain.
fn top_level_types(b: &RawBinding, all: &[RawService]) -> &'static [&'static str] {
    const HTTP: &[&str] = &[
        SERVICE_UNAVAILABLE,
        SERVICE_TIMEOUT,
        SERVICE_RUNTIME,
        crate::rules::SERVICE_BUSINESS,
    ];
    const KAFKA: &[&str] = &[SERVICE_UNAVAILABLE, SERVICE_TIMEOUT, SERVICE_RUNTIME];
    let mut current = b;
    for _ in 0..=all.len() {
        match &current.target {
            Some(RawTarget::Kafka { .. }) => return KAFKA,
            Some(RawTarget::Service(r)) => match all
                .iter()
                .find(|s| s.name.value == r.value)
                .and_then(|s| s.binding.as_ref())
            {
                Some(next) => current = next,
                None => return HTTP,
            },
            _ => return HTTP,
        }
    }
    HTTP
}

fn warn_never_matches(
    rule: &Rule,
    loc: Loc,
    b: &RawBinding,
    all: &[RawService],
    types: &TypeTree,
    d: &mut Diagnostics,
) {
    let raised = top_level_types(b, all);
    let reachable = |t: &&str| {
        if rule.subtypes {
            types.is_a(t, &rule.exception)
        } else {
            *t == rule.exception
        }
    };
    let kafka_only = std::ptr::eq(raised, top_level_types_kafka());
    match rule.chain {
        ChainMode::TopLevel if !raised.iter().any(reachable) => {
            d.warning(loc, format!(
                "this rule can never match: with `chain: top-level` it looks only at the top-level exception, and the binding never raises `{}` there",
                rule.exception
            ))
            .hint(format!(
                "top-level types this binding raises: {}; use the default chain mode to look at wrapped exceptions",
                raised.join(", ")
            ));
        }
        ChainMode::OriginalOnly if kafka_only => {
            d.warning(loc, "this rule can never match: a kafka binding's original exception is always KafkaException, which is not a runtime type")
                .hint("use the default chain mode, `original-first`");
        }
        _ => {}
    }
}

fn top_level_types_kafka() -> &'static [&'static str] {
    let b = RawBinding {
        loc: Loc::default(),
        target: Some(RawTarget::Kafka {
            topic: Spanned {
                value: String::new(),
                loc: Loc::default(),
            },
            timeout: Default::default(),
            in_flight: 1,
        }),
        interaction: None,
        retry: None,
    };
    top_level_types(&b, &[])
}

struct TopicReader {
    operation: String,
    loc: Loc,
    header: Option<Spanned<String>>,
}

fn check_shared_topics(readers: &BTreeMap<String, Vec<TopicReader>>, d: &mut Diagnostics) {
    for (topic, ops) in readers {
        if ops.len() < 2 {
            continue;
        }
        let first = &ops[0];
        for op in &ops[1..] {
            match (&first.header, &op.header) {
                (Some(a), Some(b)) if a.value != b.value => {
                    d.error(b.loc, format!(
                        "operations on topic `{topic}` use different operation headers (`{}` for {}, `{}` here)",
                        a.value, first.operation, b.value
                    ))
                    .hint("use one header name for every operation of a shared topic");
                }
                (Some(_), Some(_)) => {}
                _ => {
                    d.error(op.loc, format!(
                        "topic `{topic}` is read by `{}` (line {}) and `{}` without an operation header",
                        first.operation, first.loc.line, op.operation
                    ))
                    .hint(format!(
                        "set `operation_header: {DEFAULT_OPERATION_HEADER}` on every operation of the topic; producers then send the operation name in that header"
                    ));
                }
            }
        }
    }
}

fn input_schema(path: &Spanned<String>, dir: &Path, d: &mut Diagnostics) -> Option<InputSchema> {
    let full = dir.join(&path.value);
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                path.loc,
                format!("cannot read input schema `{}`: {e}", full.display()),
            )
            .hint("the path is relative to the topology file's directory");
            return None;
        }
    };
    match apache_avro::Schema::parse_str(&text) {
        Ok(schema) => {
            let canonical = schema.canonical_form();
            let reparsed = apache_avro::Schema::parse_str(&canonical).ok();
            let mut fingerprints = Vec::with_capacity(3);
            for fp in [
                Some(crate::records::fingerprint(&schema)),
                Some(crate::records::legacy_fingerprint(&schema)),
                reparsed.as_ref().map(crate::records::legacy_fingerprint),
            ]
            .into_iter()
            .flatten()
            {
                if !fingerprints.contains(&fp) {
                    fingerprints.push(fp);
                }
            }
            Some(InputSchema {
                path: full,
                canonical,
                fingerprints,
            })
        }
        Err(e) => {
            d.error(
                path.loc,
                format!("input schema `{}` does not parse: {e}", path.value),
            )
            .hint("it must be an Avro schema in JSON (.avsc)");
            None
        }
    }
}

/// Checks a full topic name against Kafka's rules.
pub fn topic_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err("is not a legal topic name".into());
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!("is longer than {MAX_TOPIC_LEN} characters"));
    }
    topic_name_part(name)
}

/// Checks a piece of a topic name: non-empty, only `[a-zA-Z0-9._-]`.
fn topic_name_part(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "contains {c:?}, which Kafka does not allow in topic names"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod redelivery_bound_tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{check_str, Limits};

    const TOPOLOGY: &str = r#"
application: app
kafka: { bootstrap: localhost:9092 }
LIMITS
services:
  eis:
    binding: { kafka: { topic: eis.in } }
    interfaces:
      Q: { operations: { get: { topic: req.get } } }
"#;

    fn limits(yaml: &str) -> Limits {
        let checked = check_str(&TOPOLOGY.replace("LIMITS", yaml), Path::new("t.yaml"));
        checked
            .topology
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
            .limits
    }

    #[test]
    fn the_redelivery_bound_defaults_to_1000_records_or_5_s() {
        let l = limits("");
        assert_eq!(l.max_uncommitted_records, 1000);
        assert_eq!(l.max_uncommitted_age, Duration::from_secs(5));
    }

    #[test]
    fn the_waiting_budget_defaults_to_64_mib_and_is_read_from_limits() {
        assert_eq!(limits("").max_waiting_bytes, 64 << 20);
        assert_eq!(
            limits("limits: { max_waiting_bytes: 8MiB }").max_waiting_bytes,
            8 << 20
        );
        let checked = check_str(
            &TOPOLOGY.replace("LIMITS", "limits: { max_waiting_bytes: 0 }"),
            Path::new("t.yaml"),
        );
        assert!(checked.topology.is_none());
        let text = format!("{:?}", checked.diagnostics);
        assert!(
            text.contains("`max_waiting_bytes` must be more than 0"),
            "{text}"
        );
        let small = check_str(
            &TOPOLOGY.replace("LIMITS", "limits: { max_waiting_bytes: 1MiB }"),
            Path::new("t.yaml"),
        );
        assert_eq!(
            small.topology.map(|t| t.limits.max_waiting_bytes),
            Some(1 << 20),
            "a small budget is a warning, not an error"
        );
        let text = format!("{:?}", small.diagnostics);
        assert!(text.contains("less than 2MiB"), "{text}");
    }

    #[test]
    fn the_redelivery_bound_is_read_from_limits() {
        let l = limits("limits: { max_uncommitted_records: 250, max_uncommitted_age: 1.5s }");
        assert_eq!(l.max_uncommitted_records, 250);
        assert_eq!(l.max_uncommitted_age, Duration::from_millis(1500));
        assert_eq!(
            l.max_request_bytes,
            1 << 20,
            "the other limits keep their default"
        );
    }
}
