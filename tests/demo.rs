//! `sfwd demo` as a newcomer runs it, in a short configuration: it needs no
//! broker (its Kafka cluster is embedded), exits 0, and its summary adds up.

use std::collections::HashMap;
use std::process::Command;

/// The rows of the `summary` block: label → (value, detail).
fn summary_rows(stdout: &str) -> HashMap<String, (String, String)> {
    stdout
        .lines()
        .skip_while(|l| *l != "summary")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let label = parts.next().unwrap().to_string();
            let value = parts.next().unwrap_or_default().to_string();
            (label, (value, parts.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

#[test]
fn a_short_demo_shows_every_guarantee_and_its_numbers_add_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args([
            "demo",
            "--requests",
            "450",
            "--partitions",
            "4",
            "--rate",
            "300",
            "--outage",
            "1s",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run sfwd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sfwd demo exited {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );

    // Progress: one line per phase, in order.
    let mut at = 0;
    for phase in [
        "[1/5] start",
        "[2/5] target up",
        "[3/5] target down",
        "[4/5] forward",
        "[5/5] replay",
    ] {
        let found = stdout[at..]
            .find(phase)
            .unwrap_or_else(|| panic!("no `{phase}` after byte {at}:\n{stdout}"));
        at += found;
    }
    // Three instances began storing, each after the trigger.
    for i in 1..=3 {
        assert!(
            stdout.contains(&format!("demo-{i} storing, ")),
            "demo-{i} storing:\n{stdout}"
        );
    }

    let rows = summary_rows(&stdout);
    let n = |label: &str| -> usize {
        rows.get(label)
            .unwrap_or_else(|| panic!("no `{label}` row:\n{stdout}"))
            .0
            .parse()
            .unwrap_or_else(|_| panic!("`{label}` is not a number:\n{stdout}"))
    };
    let detail = |label: &str| rows[label].1.clone();
    let (sent, delivered, failed) = (n("sent"), n("delivered"), n("failed"));
    let (stored, replayed, lost) = (n("stored"), n("replayed"), n("lost"));
    assert_eq!(sent, 450);
    assert_eq!(
        sent,
        delivered + failed,
        "sent = delivered + failed:\n{stdout}"
    );
    assert_eq!(stored, replayed, "stored = replayed:\n{stdout}");
    assert_eq!(lost, 0);
    assert_eq!(failed, 1, "one failed event for the one activation");
    assert_eq!(detail("failed"), "store-trigger 1");
    assert!(stored > 0, "the outage stored requests:\n{stdout}");

    // delivered = live + replayed.
    let live: usize = detail("delivered")
        .split(" live")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(live + replayed, delivered, "{}", detail("delivered"));

    // stored = the sum of what each instance stored.
    let by: usize = detail("stored")
        .trim_start_matches("by ")
        .split(", ")
        .map(|part| part.rsplit_once(' ').unwrap().1.parse::<usize>().unwrap())
        .sum();
    assert_eq!(by, stored, "{}", detail("stored"));

    assert_eq!(n("duplicates"), 0);
    assert_eq!(rows["order"].0, "ok");
    assert_eq!(detail("order"), "4 of 4 partitions in order");

    // The time from the trigger to storing, for each instance.
    for i in 1..=3 {
        let row = stdout
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("instance "))
            .find(|l| l.trim_start().starts_with(&format!("demo-{i} ")))
            .unwrap_or_else(|| panic!("no timing row for demo-{i}:\n{stdout}"));
        let ms: Vec<&str> = row.split_whitespace().filter(|w| *w == "ms").collect();
        assert_eq!(
            ms.len(),
            2,
            "trigger → storing and forward → replaying: {row}"
        );
    }

    let checks: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "checks")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(checks.len(), 5, "{stdout}");
    assert!(
        checks.iter().all(|c| c.trim_start().starts_with("ok ")),
        "{stdout}"
    );
    assert!(stdout.contains("every guarantee held"));
}

#[test]
fn a_bad_option_is_refused_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args(["demo", "--instances", "0"])
        .output()
        .expect("run sfwd demo");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instances"));
}
