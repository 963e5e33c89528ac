use proptest::prelude::*;

use super::*;
use crate::control::pace::{Pace, Rate};
use crate::rules::ChainElement;

fn trigger(request_id: &str) -> Trigger {
    Trigger {
        request_id: request_id.to_string(),
        service: "employee-eis".into(),
        interface: "EmployeeQuery".into(),
        operation: "getEmployee".into(),
        chain: ExceptionChain::new(vec![ChainElement::new(
            "ServiceUnavailableException",
            "HTTP 503",
        )]),
        rule: "ServiceUnavailableException chain=original-first".into(),
        instance: "i-1".into(),
    }
}

fn cmd(id: &str, kind: CommandKind, observed_epoch: u64) -> Command {
    Command {
        id: id.to_string(),
        kind,
        observed_epoch,
        by: "i-1".into(),
        at_ms: 1_000 + observed_epoch as i64,
    }
}

#[test]
fn first_trigger_wins_and_later_ones_at_the_same_epoch_are_stale() {
    let mut cp = ControlPoint::initial("EmployeeDataFromEISSystem");
    let first = cp.apply(&cmd("c1", CommandKind::Trigger(trigger("r1")), 0));
    assert_eq!(
        first,
        Outcome::Applied {
            designated_trigger: Some("r1".into())
        }
    );
    assert_eq!(
        (cp.mode, cp.epoch, cp.cause),
        (Mode::Store, 1, Cause::Trigger)
    );
    assert_eq!(cp.trigger.as_ref().unwrap().request_id, "r1");

    let second = cp.apply(&cmd("c2", CommandKind::Trigger(trigger("r2")), 0));
    assert_eq!(
        second,
        Outcome::Refused(Refusal::Stale {
            command: "trigger",
            observed: 0,
            current: 1,
            mode: Mode::Store
        })
    );
    assert_eq!(cp.epoch, 1);
    assert_eq!(cp.trigger.as_ref().unwrap().request_id, "r1");
    assert_eq!(
        Refusal::Stale {
            command: "trigger",
            observed: 0,
            current: 1,
            mode: Mode::Store
        }
        .to_string(),
        "trigger refused: decided at epoch 0 but the control point is at epoch 1 (STORE)"
    );
}

#[test]
fn operator_commands_are_idempotent() {
    let mut cp = ControlPoint::initial("cp");
    assert_eq!(
        cp.apply(&cmd("f0", CommandKind::Forward, 0)),
        Outcome::NoOp(NoOp::AlreadyForwarding {
            epoch: 0,
            replaying: false
        })
    );
    assert!(matches!(
        cp.apply(&cmd("s1", CommandKind::Store, 0)),
        Outcome::Applied {
            designated_trigger: None
        }
    ));
    assert_eq!(
        (cp.mode, cp.epoch, cp.cause),
        (Mode::Store, 1, Cause::Operator)
    );
    let again = cp.apply(&cmd("s2", CommandKind::Store, 0));
    assert_eq!(
        again,
        Outcome::NoOp(NoOp::AlreadyStoring {
            epoch: 1,
            since_ms: 1_000
        })
    );
    assert_eq!(
        NoOp::AlreadyStoring {
            epoch: 1,
            since_ms: 0
        }
        .to_string(),
        "already storing (epoch 1); nothing changed"
    );
    assert_eq!(cp.epoch, 1);
}

#[test]
fn forward_starts_a_replay_that_ends_when_caught_up() {
    let mut cp = ControlPoint::initial("cp");
    cp.apply(&cmd("t", CommandKind::Trigger(trigger("r1")), 0));
    cp.apply(&cmd("f", CommandKind::Forward, 1));
    assert_eq!((cp.mode, cp.replaying, cp.epoch), (Mode::Forward, true, 2));
    // A caught-up report from an older epoch is stale.
    assert!(matches!(
        cp.apply(&cmd("old", CommandKind::ReplayCaughtUp, 1)),
        Outcome::Refused(Refusal::Stale { .. })
    ));
    assert!(matches!(
        cp.apply(&cmd("up", CommandKind::ReplayCaughtUp, 2)),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        (cp.mode, cp.replaying, cp.epoch, cp.cause),
        (Mode::Forward, false, 3, Cause::ReplayCaughtUp)
    );
    // Caught up twice: nothing to catch up.
    assert!(matches!(
        cp.apply(&cmd("up2", CommandKind::ReplayCaughtUp, 3)),
        Outcome::Refused(Refusal::WrongState { .. })
    ));
}

#[test]
fn a_replayed_request_that_fails_re_triggers_the_store() {
    let mut cp = ControlPoint::initial("cp");
    cp.apply(&cmd("t1", CommandKind::Trigger(trigger("r1")), 0));
    cp.apply(&cmd("f", CommandKind::Forward, 1));
    assert!(cp.replaying);
    let out = cp.apply(&cmd("t2", CommandKind::Trigger(trigger("r7")), 2));
    assert_eq!(
        out,
        Outcome::Applied {
            designated_trigger: Some("r7".into())
        }
    );
    assert_eq!((cp.mode, cp.replaying, cp.epoch), (Mode::Store, false, 3));
}

#[test]
fn auto_resume_only_from_the_store_it_probed() {
    let mut cp = ControlPoint::initial("cp");
    assert!(matches!(
        cp.apply(&cmd("a0", CommandKind::AutoResume, 0)),
        Outcome::Refused(Refusal::WrongState { .. })
    ));
    cp.apply(&cmd("s", CommandKind::Store, 0));
    cp.apply(&cmd("f", CommandKind::Forward, 1));
    cp.apply(&cmd("s2", CommandKind::Store, 2));
    // A probe from the first store activation (epoch 1) is stale now.
    assert!(matches!(
        cp.apply(&cmd("a1", CommandKind::AutoResume, 1)),
        Outcome::Refused(Refusal::Stale { .. })
    ));
    assert!(matches!(
        cp.apply(&cmd("a3", CommandKind::AutoResume, 3)),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        (cp.mode, cp.replaying, cp.cause),
        (Mode::Forward, true, Cause::AutoResume)
    );
}

#[test]
fn an_epoch_from_the_future_is_refused() {
    let mut cp = ControlPoint::initial("cp");
    let out = cp.apply(&cmd("t", CommandKind::Trigger(trigger("r")), 5));
    assert!(matches!(
        out,
        Outcome::Refused(Refusal::FromTheFuture {
            observed: 5,
            current: 0,
            ..
        })
    ));
    assert_eq!(cp, ControlPoint::initial("cp"));
}

#[test]
fn a_republished_command_is_recognised() {
    let mut cp = ControlPoint::initial("cp");
    let c = cmd("same", CommandKind::Store, 0);
    cp.apply(&c);
    let before = cp.clone();
    assert_eq!(
        cp.apply(&c),
        Outcome::NoOp(NoOp::Duplicate {
            command_id: "same".into()
        })
    );
    assert_eq!(cp, before);
}

#[test]
fn a_pace_set_while_storing_paces_the_replay_and_ends_with_it() {
    let fifty = Some(Pace::Rate(Rate::per_second(50.0).unwrap()));
    let mut cp = ControlPoint::initial("cp");
    assert!(matches!(
        cp.apply(&cmd("p0", CommandKind::Pace(fifty), 0)),
        Outcome::Refused(Refusal::WrongState {
            command: "pace",
            ..
        })
    ));
    cp.apply(&cmd("s", CommandKind::Store, 0));
    assert!(matches!(
        cp.apply(&cmd("p1", CommandKind::Pace(fifty), 1)),
        Outcome::Applied { .. }
    ));
    assert_eq!((cp.epoch, cp.pace), (1, fifty), "no new epoch");
    assert!(matches!(
        cp.apply(&cmd("p2", CommandKind::Pace(fifty), 1)),
        Outcome::NoOp(NoOp::AlreadyPaced { .. })
    ));
    cp.apply(&cmd("f", CommandKind::Forward, 1));
    assert_eq!((cp.replaying, cp.pace), (true, fifty));
    assert!(matches!(
        cp.apply(&cmd("p3", CommandKind::Pace(Some(Pace::Unlimited)), 2)),
        Outcome::Applied { .. }
    ));
    assert_eq!(cp.pace, Some(Pace::Unlimited));
    cp.apply(&cmd("up", CommandKind::ReplayCaughtUp, 2));
    assert_eq!((cp.replaying, cp.pace), (false, None));
}

/// A generated step: which command, and how far behind the sender's view of
/// the control point is (0 = up to date).
#[derive(Debug, Clone)]
enum Step {
    Trigger {
        lag: usize,
    },
    Store,
    Forward,
    AutoResume {
        lag: usize,
    },
    CaughtUp {
        lag: usize,
    },
    /// Operator `pace`: 0 for the topology's, 1 unlimited, n a rate of n/s.
    Pace {
        rate: u8,
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4).prop_map(|lag| Step::Trigger { lag }),
        1 => Just(Step::Store),
        2 => Just(Step::Forward),
        1 => (0usize..3).prop_map(|lag| Step::AutoResume { lag }),
        1 => (0usize..3).prop_map(|lag| Step::CaughtUp { lag }),
        1 => (0u8..4).prop_map(|rate| Step::Pace { rate }),
    ]
}

proptest! {
    /// Several instances racing with views of different ages: epochs only
    /// grow, by one per applied change; every activation by trigger has
    /// exactly one designated trigger; and a trigger is accepted exactly
    /// when its sender's view was current and FORWARD.
    #[test]
    fn epochs_are_monotonic_and_each_activation_has_one_designated_trigger(
        steps in prop::collection::vec(arb_step(), 0..60)
    ) {
        let mut cp = ControlPoint::initial("cp");
        // history[e] = the state at epoch e
        let mut history = vec![cp.clone()];
        let mut designated_per_activation: Vec<usize> = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            let view = |lag: usize| &history[history.len().saturating_sub(1 + lag)];
            let (kind, observed) = match step {
                Step::Trigger { lag } => {
                    let v = view(*lag);
                    (CommandKind::Trigger(trigger(&format!("r{n}"))), v.epoch)
                }
                Step::Store => (CommandKind::Store, cp.epoch),
                Step::Forward => (CommandKind::Forward, cp.epoch),
                Step::AutoResume { lag } => (CommandKind::AutoResume, view(*lag).epoch),
                Step::CaughtUp { lag } => (CommandKind::ReplayCaughtUp, view(*lag).epoch),
                Step::Pace { rate } => (
                    CommandKind::Pace(match rate {
                        0 => None,
                        1 => Some(Pace::Unlimited),
                        n => Some(Pace::Rate(Rate::per_second(f64::from(*n)).unwrap())),
                    }),
                    cp.epoch,
                ),
            };
            let seen = history[observed as usize].clone();
            let before = cp.clone();
            let out = cp.apply(&cmd(&format!("c{n}"), kind.clone(), observed));
            match &out {
                Outcome::Applied { designated_trigger } if matches!(kind, CommandKind::Pace(_)) => {
                    // A pace changes nothing but the pace, during a replay
                    // or while storing.
                    prop_assert!(designated_trigger.is_none());
                    prop_assert!(before.mode == Mode::Store || before.replaying);
                    let CommandKind::Pace(pace) = kind else { unreachable!() };
                    prop_assert_eq!(&ControlPoint { pace: before.pace, command_id: before.command_id.clone(), ..cp.clone() }, &before);
                    prop_assert_eq!(cp.pace, pace);
                    *history.last_mut().unwrap() = cp.clone();
                }
                Outcome::Applied { designated_trigger } => {
                    prop_assert_eq!(cp.epoch, before.epoch + 1);
                    if cp.mode == Mode::Forward && !cp.replaying {
                        prop_assert_eq!(cp.pace, None, "a replay's pace ends with it");
                    }
                    if let CommandKind::Trigger(t) = &kind {
                        prop_assert_eq!(observed, before.epoch);
                        prop_assert_eq!(seen.mode, Mode::Forward);
                        prop_assert_eq!(designated_trigger.as_deref(), Some(t.request_id.as_str()));
                    } else {
                        prop_assert!(designated_trigger.is_none());
                    }
                    if before.mode == Mode::Forward && cp.mode == Mode::Store {
                        designated_per_activation.push(usize::from(designated_trigger.is_some()));
                        prop_assert_eq!(cp.cause == Cause::Trigger, designated_trigger.is_some());
                    }
                    history.push(cp.clone());
                    prop_assert_eq!(history.len() as u64, cp.epoch + 1);
                }
                Outcome::NoOp(_) | Outcome::Refused(_) => {
                    prop_assert_eq!(&cp, &before);
                    if let CommandKind::Trigger(_) = &kind {
                        prop_assert!(observed != before.epoch || before.mode == Mode::Store);
                    }
                }
            }
        }
        prop_assert!(designated_per_activation.iter().all(|&d| d <= 1));
    }

    /// However many instances report a failure seen at the same epoch, one
    /// wins.
    #[test]
    fn racing_triggers_at_one_epoch_yield_one_winner(racers in 1usize..50) {
        let mut cp = ControlPoint::initial("cp");
        let winners = (0..racers)
            .filter(|i| matches!(
                cp.apply(&cmd(&format!("c{i}"), CommandKind::Trigger(trigger(&format!("r{i}"))), 0)),
                Outcome::Applied { designated_trigger: Some(_) }
            ))
            .count();
        prop_assert_eq!(winners, 1);
        prop_assert_eq!(cp.trigger.unwrap().request_id, "r0");
    }
}
