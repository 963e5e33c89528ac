//! The plan of a topology with a control point, a service without one,
//! and a request topic the two share.

use super::*;

const TOPOLOGY: &str = r#"
application: app
kafka: { bootstrap: "unused:9092" }
services:
  eis:
    binding: { kafka: { topic: eis.out } }
    store_and_forward: { control_point: Eis }
    interfaces:
      Query:
        operations:
          get: { topic: hr.get }
          put: { topic: shared, operation_header: op }
  audit:
    binding: { kafka: { topic: audit.out } }
    interfaces:
      Audit: { operations: { log: { topic: shared, operation_header: op } } }
"#;

#[test]
fn the_plan_holds_what_each_service_control_point_and_request_topic_needs() {
    let checked = crate::topology::check_str(TOPOLOGY, std::path::Path::new("t.yaml"));
    let topology = checked
        .topology
        .unwrap_or_else(|| panic!("{:?}", checked.diagnostics));
    let request_partitions = HashMap::from([("hr.get".to_string(), 3), ("shared".to_string(), 2)]);
    let plan = Plan::new(&topology, &request_partitions, &HashMap::new());

    let eis = plan.service_index("eis").expect("eis");
    let audit = plan.service_index("audit").expect("audit");
    assert_eq!(plan.service_index("nobody"), None);
    assert_eq!(plan.service(eis).name, "eis");
    assert_eq!(plan.service(eis).control_point.as_deref(), Some("Eis"));
    assert_eq!(plan.service(eis).source_partitions, 5);
    assert_eq!(plan.service(audit).control_point, None);
    assert_eq!(plan.service(audit).source_partitions, 2);

    let cp = plan.control_point("Eis");
    assert_eq!(cp.stored_topic, topology.stored_topic("Eis"));
    assert_eq!(cp.stored_partitions, 1, "no partition count known: one");
    assert_eq!(cp.services, [eis]);
    assert_eq!(plan.replays["Eis"].partitions.len(), 5);

    let shared = plan.topic("shared");
    assert_eq!(shared.services, [eis, audit]);
    assert_eq!(shared.control_points, ["Eis"]);
    assert!(plan.topic("nobody").services.is_empty());
    assert_eq!(plan.request_topics(), ["hr.get", "shared"]);
    assert_eq!(plan.failed_topic(), topology.failed_topic());
    assert_eq!(plan.replay_topic(), topology.replay_topic());
}
