//! `sfwd validate`: every error and warning of SPEC §3 has a fixture here,
//! and the command must report it with its message and its place.

use std::path::Path;
use std::process::Command;

/// One expected diagnostic: severity, line:col, and text the message (or
/// hint) must contain.
struct Expect(&'static str, &'static str, &'static str);

struct Run {
    code: i32,
    stderr: String,
    stdout: String,
}

fn validate(files: &[&str]) -> Run {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .current_dir(root)
        .arg("validate")
        .args(files)
        .output()
        .expect("run sfwd validate");
    Run {
        code: out.status.code().expect("exit code"),
        stderr: String::from_utf8(out.stderr).unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

/// Checks that exactly the expected diagnostics were printed, each at its place.
fn check(fixture: &str, code: i32, expected: &[Expect]) {
    let path = format!("tests/fixtures/topology/{fixture}");
    let run = validate(&[&path]);
    assert_eq!(run.code, code, "exit code of {fixture}\n{}", run.stderr);
    let blocks: Vec<&str> = run
        .stderr
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    assert_eq!(
        blocks.len(),
        expected.len(),
        "number of diagnostics for {fixture}:\n{}",
        run.stderr
    );
    for Expect(severity, place, text) in expected {
        let location = format!("--> {path}:{place}");
        let block = blocks
            .iter()
            .find(|b| b.starts_with(&format!("{severity}: ")) && b.contains(&location))
            .unwrap_or_else(|| panic!("no {severity} at {place} in {fixture}:\n{}", run.stderr));
        assert!(
            block.contains(text),
            "{severity} at {place} in {fixture} should mention {text:?}:\n{block}"
        );
    }
}

#[test]
fn shipped_examples_are_valid() {
    let run = validate(&["topology/hr-integration.yaml", "topology/orders.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "no warnings expected");
    assert!(run
        .stdout
        .contains("topology/hr-integration.yaml: ok: application `hr-integration`, 2 services, 1 control point"));
    assert!(run
        .stdout
        .contains("topology/orders.yaml: ok: application `orders`, 3 services, 2 control points"));
}

#[test]
fn control_point_name_empty() {
    check(
        "cp_empty.yaml",
        1,
        &[Expect("error", "7:22", "the control point name is empty")],
    );
}

#[test]
fn control_point_name_not_unique() {
    check(
        "cp_duplicate.yaml",
        1,
        &[Expect(
            "error",
            "11:41",
            "control point `EisDown` is already used at line 6",
        )],
    );
}

#[test]
fn control_point_name_not_usable_in_a_topic_name() {
    check(
        "cp_not_a_topic_name.yaml",
        1,
        &[Expect(
            "error",
            "6:41",
            "control point name `Employee Data/EIS` contains ' ', which Kafka does not allow",
        )],
    );
}

#[test]
fn rule_with_unknown_exception_type() {
    check(
        "rule_unknown_type.yaml",
        1,
        &[Expect(
            "error",
            "9:22",
            "unknown exception type `ServiceUnavailable`\n  --> tests/fixtures/topology/rule_unknown_type.yaml:9:22\n  = hint: did you mean `ServiceUnavailableException`?",
        )],
    );
}

#[test]
fn rule_with_a_type_that_is_not_runtime() {
    check(
        "rule_not_runtime.yaml",
        1,
        &[Expect(
            "error",
            "9:22",
            "`ConnectException` is not a runtime exception type (it does not descend from ServiceRuntimeException)",
        )],
    );
}

#[test]
fn rule_with_a_business_exception_or_subtype() {
    check(
        "rule_business.yaml",
        1,
        &[
            Expect(
                "error",
                "11:22",
                "`ServiceBusinessException` is a business exception",
            ),
            Expect("error", "12:22", "`OrderRejected` is a business exception"),
        ],
    );
}

#[test]
fn rule_scope_naming_no_interface_or_operation() {
    check(
        "rule_scope_unknown.yaml",
        1,
        &[
            Expect(
                "error",
                "10:18",
                "rule scope `EmployeeQuerry` names no interface of service `eis`\n  --> tests/fixtures/topology/rule_scope_unknown.yaml:10:18\n  = hint: did you mean `EmployeeQuery`?",
            ),
            Expect(
                "error",
                "12:18",
                "did you mean `EmployeeQuery.getEmployee`?",
            ),
        ],
    );
}

#[test]
fn store_and_forward_on_a_synchronous_service_hints_async() {
    check(
        "sync_store_and_forward.yaml",
        1,
        &[Expect(
            "error",
            "8:7",
            "whose interaction style is synchronous\n  --> tests/fixtures/topology/sync_store_and_forward.yaml:8:7\n  = hint: only asynchronous requests can be stored: set `interaction: async`",
        )],
    );
}

#[test]
fn operation_without_request_topic() {
    check(
        "operation_without_topic.yaml",
        1,
        &[
            Expect("error", "9:11", "operation `Q.get` has no request topic"),
            Expect("error", "10:11", "operation `Q.list` has no request topic"),
        ],
    );
}

#[test]
fn two_operations_on_one_topic_without_operation_header() {
    check(
        "shared_topic_without_header.yaml",
        1,
        &[Expect(
            "error",
            "10:26",
            "topic `req.shared` is read by `Q.get` (line 9) and `Q.list` without an operation header",
        )],
    );
}

#[test]
fn input_schema_that_does_not_parse_or_is_missing() {
    check(
        "input_schema_invalid.yaml",
        1,
        &[
            Expect(
                "error",
                "9:48",
                "input schema `schemas/broken.avsc` does not parse",
            ),
            Expect("error", "10:50", "cannot read input schema"),
        ],
    );
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    check(
        "unknown_keys.yaml",
        1,
        &[
            Expect("error", "2:37", "unknown key `partitons` in `kafka`"),
            Expect("error", "6:5", "did you mean `store_and_forward`?"),
            Expect("error", "9:49", "did you mean `operation_header`?"),
        ],
    );
}

#[test]
fn kafka_binding_cannot_be_made_synchronous() {
    check(
        "kafka_binding_sync.yaml",
        1,
        &[Expect(
            "error",
            "5:55",
            "a kafka binding is always asynchronous",
        )],
    );
}

#[test]
fn kafka_binding_in_flight_out_of_range_is_an_error_at_its_place() {
    check(
        "kafka_in_flight_zero.yaml",
        1,
        &[Expect(
            "error",
            "5:51",
            "`in_flight` is 0; it must be 1 to 10000",
        )],
    );
}

#[test]
fn http_in_flight_needs_key_ordering_and_a_known_ordering() {
    check(
        "http_in_flight_ordering.yaml",
        1,
        &[
            Expect(
                "error",
                "5:56",
                "`in_flight` is 8 with `ordering: partition`",
            ),
            Expect("error", "9:56", "`in_flight` is 2000; it must be 1 to 1024"),
            Expect("error", "13:54", "unknown ordering `keys`"),
        ],
    );
}

#[test]
fn a_redelivery_bound_of_zero_is_an_error_at_its_place() {
    check(
        "limits_uncommitted_invalid.yaml",
        1,
        &[
            Expect(
                "error",
                "4:28",
                "`max_uncommitted_records` must be at least 1",
            ),
            Expect("error", "5:24", "`max_uncommitted_age` must be more than 0"),
        ],
    );
    check(
        "limits_uncommitted_not_a_duration.yaml",
        1,
        &[
            Expect("error", "3:36", "expected a whole number"),
            Expect("error", "3:63", "`5` is not a duration"),
        ],
    );
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_have_places() {
    // `kafka: {` is never closed: the error is where it opens, not where
    // the parser gave up.
    check_one(
        "yaml_syntax.yaml",
        "2:8",
        "this `{` opens a flow mapping that is never closed",
        "close it with `}`",
    );
    check(
        "duplicate_key.yaml",
        1,
        &[Expect(
            "error",
            "8:3",
            "duplicate key `eis` (first defined at line 4)",
        )],
    );
}

/// Checks that `fixture` is refused with exactly one error, at `place`,
/// whose message contains `message` and whose hint contains `hint`.
fn check_one(fixture: &str, place: &str, message: &str, hint: &str) {
    let path = format!("tests/fixtures/topology/{fixture}");
    let run = validate(&[&path]);
    assert_eq!(run.code, 1, "exit code of {fixture}\n{}", run.stderr);
    let mut lines = run.stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(message),
        "{fixture}: message should mention {message:?}:\n{}",
        run.stderr
    );
    assert_eq!(
        lines.next(),
        Some(format!("  --> {path}:{place}").as_str()),
        "{fixture}: place\n{}",
        run.stderr
    );
    let hint_line = lines.next().unwrap_or_default();
    assert!(
        hint_line.starts_with("  = hint: ") && hint_line.contains(hint),
        "{fixture}: hint should mention {hint:?}:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("refused: 1 error"),
        "{fixture}: one error\n{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_tab_in_the_indentation_is_reported_at_the_tab() {
    check_one(
        "yaml_tab.yaml",
        "7:5",
        "line 7 is indented with a tab",
        "YAML does not allow tabs for indentation: use spaces",
    );
}

#[test]
fn bytes_that_are_not_utf8_are_reported_at_their_place() {
    let path = "tests/fixtures/topology/yaml_not_utf8.yaml";
    check(
        "yaml_not_utf8.yaml",
        1,
        &[
            Expect("error", "3:24", "invalid UTF-8 (byte 0xe9)"),
            Expect("error", "8:44", "invalid UTF-8 (byte 0xe9)"),
        ],
    );
    let run = validate(&[path]);
    assert!(
        run.stderr
            .contains("= hint: save the file as UTF-8 (from Latin-1: `iconv -f latin1 -t utf-8`)"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unclosed_flow_mapping_is_reported_where_it_opens() {
    check_one(
        "yaml_unclosed_flow.yaml",
        "5:14",
        "this `{` opens a flow mapping that is never closed (the parser stopped at line 6, column 5",
        "close it with `}`, or write it as indented `key: value` lines",
    );
}

#[test]
fn every_problem_of_a_file_is_reported_in_one_run() {
    check(
        "many_errors.yaml",
        1,
        &[
            Expect(
                "error",
                "5:22",
                "did you mean `ServiceUnavailableException`?",
            ),
            Expect(
                "error",
                "9:20",
                "`eis.local/x` is not an http:// or https:// URL",
            ),
            Expect("error", "9:42", "`soon` is not a duration"),
            Expect("error", "14:22", "unknown exception type `Nope`"),
            Expect("error", "15:18", "unknown chain mode `inner-most`"),
            Expect("error", "17:26", "operation `Q.get` has no request topic"),
            Expect("error", "19:25", "did you mean `eis`?"),
            Expect(
                "error",
                "21:39",
                "request topic `app.failed` is one of sfwd's own topics",
            ),
        ],
    );
}

#[test]
fn duplicate_rules_are_a_warning_and_the_file_is_accepted() {
    check(
        "warn_duplicate_rule.yaml",
        0,
        &[Expect(
            "warning",
            "10:11",
            "duplicate rule: the same as the rule at line 9",
        )],
    );
}

#[test]
fn rules_that_can_never_match_are_a_warning() {
    check(
        "warn_never_matches.yaml",
        0,
        &[
            Expect(
                "warning",
                "11:11",
                "with `chain: top-level` it looks only at the top-level exception, and the binding never raises `EisConnectionLost` there",
            ),
            Expect(
                "warning",
                "20:11",
                "a kafka binding's original exception is always KafkaException",
            ),
        ],
    );
}

#[test]
fn several_files_are_checked_and_any_error_fails_the_run() {
    let run = validate(&[
        "topology/orders.yaml",
        "tests/fixtures/topology/cp_empty.yaml",
        "tests/fixtures/topology/warn_duplicate_rule.yaml",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("topology/orders.yaml: ok"));
    assert!(run
        .stdout
        .contains("tests/fixtures/topology/cp_empty.yaml: refused: 1 error"));
    assert!(run
        .stdout
        .contains("warn_duplicate_rule.yaml: ok: application `app`, 1 service, 1 control point, 1 request topic, 1 warning"));
}

#[test]
fn a_missing_file_is_an_error_with_its_name() {
    let run = validate(&["tests/fixtures/topology/does-not-exist.yaml"]);
    assert_eq!(run.code, 1);
    assert!(run
        .stderr
        .contains("error: cannot read the file: No such file or directory"));
    assert!(run
        .stderr
        .contains("--> tests/fixtures/topology/does-not-exist.yaml:1:1"));
}

#[test]
fn replay_rate_and_overload_that_do_not_read() {
    check(
        "replay_bad.yaml",
        1,
        &[
            Expect("error", "8:23", "`200` is not a rate"),
            Expect("error", "8:41", "unknown `on_overload` `retry`"),
            Expect(
                "warning",
                "15:15",
                "`replay.ramp` without `rate` has no effect",
            ),
        ],
    );
}
