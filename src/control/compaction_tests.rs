//! The control topic is compacted: only the latest record of a key is kept.
//! These property tests play generated histories — instances racing with
//! triggers from views of different ages, operator commands, changes of the
//! writer's owner, and writes from an owner that lost ownership — through
//! the real state machine, the writer's rules (skip applied commands, repair
//! a stale write after its own) and the real table's fencing, and check
//! that a reader of the compacted log restores the state live readers hold.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::convert::state_to_record;
use super::machine::{Command, CommandKind, ControlPoint, Outcome, Trigger};
use super::table::ControlTable;
use super::writer::needs_repair;
use crate::records::ControlStateRecord;
use crate::rules::ExceptionChain;
use crate::store::MemoryStore;

const CONTROL_POINTS: [&str; 2] = ["Eis", "Billing"];

#[derive(Debug, Clone)]
enum Step {
    /// An instance publishes a command for a control point; triggers carry
    /// the epoch of a view `lag` changes old.
    Publish { cp: usize, kind: u8, lag: usize },
    /// The current owner processes its next command.
    Process,
    /// Ownership moves: the new owner restores from the table and resumes
    /// from the last committed command, which may be behind.
    NewOwner { uncommitted: usize },
    /// The previous owner, not yet aware it lost ownership, applies its
    /// next command with its own (stale) view and writes the result.
    Zombie,
    /// The owner checks for a stale write after its own.
    Repair,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..CONTROL_POINTS.len(), 0u8..4, 0usize..3).prop_map(|(cp, kind, lag)| Step::Publish { cp, kind, lag }),
        6 => Just(Step::Process),
        1 => (0usize..4).prop_map(|uncommitted| Step::NewOwner { uncommitted }),
        2 => Just(Step::Zombie),
        2 => Just(Step::Repair),
    ]
}

/// A writer's private view: the state and fencing token per control point,
/// and where it is in the commands.
#[derive(Clone, Default)]
struct Writer {
    current: HashMap<String, (ControlPoint, i64)>,
    next_command: usize,
}

struct World {
    commands: Vec<(String, Command)>,
    /// The control topic: every record ever written, in order.
    log: Vec<ControlStateRecord>,
    /// A reader that has read the whole log, live.
    live: ControlTable,
    owner: Writer,
    zombie: Option<Writer>,
    committed: usize,
    /// Epoch history per control point, for stale views.
    history: HashMap<String, Vec<u64>>,
}

impl World {
    fn new() -> Self {
        World {
            commands: Vec::new(),
            log: Vec::new(),
            live: table(),
            owner: Writer::default(),
            zombie: None,
            committed: 0,
            history: HashMap::new(),
        }
    }

    fn write(&mut self, record: ControlStateRecord) {
        self.log.push(record.clone());
        self.live.apply_state(record).unwrap();
    }

    /// Applies the next command with `writer`'s view, as `run_writer` does.
    fn process(&mut self, mut writer: Writer) -> Writer {
        let Some((cp, command)) = self.commands.get(writer.next_command).cloned() else {
            return writer;
        };
        let offset = writer.next_command as i64;
        writer.next_command += 1;
        let live = &self.live;
        let (state, generation) = writer
            .current
            .entry(cp.clone())
            .or_insert_with(|| {
                live.get_with_generation(&cp)
                    .unwrap_or_else(|| (ControlPoint::initial(&cp), -1))
            })
            .clone();
        if offset <= generation {
            return writer;
        }
        let mut next = state;
        if let Outcome::Applied { .. } = next.apply(&command) {
            self.write(state_to_record(&next, offset));
            self.history.entry(cp.clone()).or_default().push(next.epoch);
            writer.current.insert(cp, (next, offset));
        }
        writer
    }

    /// The owner's periodic check, over every control point it decides for.
    fn repair(&mut self) {
        for cp in CONTROL_POINTS {
            let accepted = self.live.get_with_generation(cp);
            if needs_repair(
                accepted.as_ref().map(|(_, g)| *g),
                self.live.last_seen_generation(cp),
            ) {
                let (state, generation) = self
                    .owner
                    .current
                    .get(cp)
                    .cloned()
                    .or(accepted)
                    .expect("accepted");
                self.write(state_to_record(&state, generation));
            }
        }
    }
}

fn table() -> ControlTable {
    ControlTable::open(Arc::new(MemoryStore::default()), "control", "replay").unwrap()
}

fn trigger(n: usize) -> Trigger {
    Trigger {
        request_id: format!("r{n}"),
        service: "s".into(),
        interface: "I".into(),
        operation: "op".into(),
        chain: ExceptionChain::default(),
        rule: "rule".into(),
        instance: "i".into(),
    }
}

/// The latest record per key: what compaction leaves.
fn compact(log: &[ControlStateRecord]) -> Vec<ControlStateRecord> {
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (i, r) in log.iter().enumerate() {
        latest.insert(r.control_point.as_str(), i);
    }
    let mut keep: Vec<usize> = latest.into_values().collect();
    keep.sort();
    keep.into_iter().map(|i| log[i].clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_compacted_control_topic_restores_the_live_state(steps in prop::collection::vec(arb_step(), 1..80)) {
        let mut w = World::new();
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Publish { cp, kind, lag } => {
                    let cp = CONTROL_POINTS[*cp].to_string();
                    let epochs = w.history.get(&cp).cloned().unwrap_or_default();
                    let seen = epochs.len().checked_sub(*lag + 1).map_or(0, |i| epochs[i]);
                    let kind = match kind {
                        0 | 1 => CommandKind::Trigger(trigger(n)),
                        2 => CommandKind::Store,
                        _ => CommandKind::Forward,
                    };
                    w.commands.push((cp, Command { id: format!("c{n}"), kind, observed_epoch: seen, by: "i".into(), at_ms: n as i64 }));
                }
                Step::Process => {
                    let owner = std::mem::take(&mut w.owner);
                    w.owner = w.process(owner);
                    w.committed = w.owner.next_command;
                }
                Step::NewOwner { uncommitted } => {
                    // The old owner may still act for a while (a zombie).
                    w.zombie = Some(w.owner.clone());
                    w.owner = Writer {
                        next_command: w.committed.saturating_sub(*uncommitted),
                        ..Writer::default()
                    };
                }
                Step::Zombie => {
                    if let Some(z) = w.zombie.take() {
                        w.zombie = Some(w.process(z));
                    }
                }
                Step::Repair => w.repair(),
            }
        }
        // The owner finishes its commands and checks once more, as its
        // periodic tick does.
        loop {
            let before = w.owner.next_command;
            let owner = std::mem::take(&mut w.owner);
            w.owner = w.process(owner);
            if w.owner.next_command == before {
                break;
            }
        }
        w.repair();

        let restored = table();
        for record in compact(&w.log) {
            restored.apply_state(record).unwrap();
        }
        for cp in CONTROL_POINTS {
            prop_assert_eq!(restored.get(cp), w.live.get(cp), "control point {}", cp);
        }
    }
}
