//! The decisions over every input, and G3/G4 over any outcomes of calls
//! settled in source order with a first-trigger-wins control writer.

use proptest::prelude::*;

use super::*;
use crate::control::{Command, CommandKind, Outcome, Trigger};
use crate::rules::ExceptionChain;

fn origins() -> Vec<Origin> {
    let mut v = vec![Origin::Replayed];
    for sync in [false, true] {
        for control_point in [false, true] {
            v.push(Origin::Live {
                sync,
                control_point,
            });
        }
    }
    v
}

fn calls() -> Vec<Called> {
    let mut v = vec![Called::Answered];
    for matched in [false, true] {
        for overloaded in [None, Some(Duration::from_secs(2))] {
            v.push(Called::Failed {
                matched,
                overloaded,
            });
        }
    }
    v
}

#[test]
fn every_origin_and_outcome() {
    for origin in origins() {
        for called in calls() {
            let step = after_call(origin, called);
            let live_sync = matches!(origin, Origin::Live { sync: true, .. });
            let has_cp = match origin {
                Origin::Live { control_point, .. } => control_point,
                Origin::Replayed => true,
            };
            let ctx = format!("{origin:?} {called:?} → {step:?}");
            match called {
                Called::Answered => assert_eq!(step, Step::Done, "{ctx}"),
                Called::Failed { .. } if live_sync => {
                    assert_eq!(step, Step::AnswerError, "a sync failure is answered: {ctx}")
                }
                Called::Failed {
                    matched,
                    overloaded,
                } => {
                    if step == Step::Trigger {
                        assert!(matched && has_cp, "only a matching failure triggers: {ctx}");
                    }
                    if matched && has_cp && !(origin == Origin::Replayed && overloaded.is_some()) {
                        assert_eq!(step, Step::Trigger, "{ctx}");
                    }
                    if let Step::BackOff(_) = step {
                        assert_eq!(origin, Origin::Replayed, "live calls never back off: {ctx}");
                    }
                    if let Step::Fail(reason) = step {
                        let want = if origin == Origin::Replayed {
                            FailureReason::ReplayFailed
                        } else {
                            FailureReason::InvocationFailed
                        };
                        assert_eq!(reason, want, "{ctx}");
                    }
                }
            }
        }
    }
}

#[test]
fn before_the_call() {
    for sync in [false, true] {
        for trigger in [false, true] {
            assert_eq!(before_call(sync, false, trigger), Before::Invoke);
        }
    }
    assert_eq!(
        before_call(true, true, true),
        Before::RefuseSync,
        "sync is never stored"
    );
    assert_eq!(before_call(false, true, true), Before::FailAsTrigger);
    assert_eq!(before_call(false, true, false), Before::Store);
    assert_eq!(after_trigger(Decision::Designated), Settle::FailAsTrigger);
    assert_eq!(after_trigger(Decision::Store), Settle::Store);
    assert_eq!(after_trigger(Decision::Retry), Settle::CallAgain);
}

fn trigger_of(request_id: &str, instance: &str) -> Command {
    Command {
        id: format!("{instance}-{request_id}"),
        kind: CommandKind::Trigger(Trigger {
            request_id: request_id.to_string(),
            service: "svc".into(),
            interface: "I".into(),
            operation: "op".into(),
            chain: ExceptionChain::default(),
            rule: "Unavailable".into(),
            instance: instance.to_string(),
        }),
        observed_epoch: 0,
        by: instance.to_string(),
        at_ms: 1,
    }
}

fn operator(kind: CommandKind, observed_epoch: u64) -> Command {
    Command {
        id: format!("op-{}-{observed_epoch}", kind.name()),
        kind,
        observed_epoch,
        by: "operator:ann".into(),
        at_ms: 2,
    }
}

/// An instance publishes the trigger of request `r1` and dies before the
/// writer decides; the partition's next owner calls `r1` again, it fails
/// again, and its trigger, published from the same epoch, is refused as
/// stale. `r1` is still the activation's trigger for the next owner: to the
/// failed events, not stored (G3's one failed event per activation).
#[test]
fn the_trigger_of_an_instance_that_died_is_designated_for_the_next_owner() {
    let mut state = ControlPoint::initial("cp");
    let first = state.apply(&trigger_of("r1", "dead"));
    assert!(matches!(first, Outcome::Applied { .. }), "{first:?}");
    let again = state.apply(&trigger_of("r1", "next-owner"));
    assert!(matches!(again, Outcome::Refused(_)), "{again:?}");
    assert_eq!(answer(&state, "r1", "next-owner"), Decision::Designated);
    assert_eq!(
        answer(&state, "r2", "next-owner"),
        Decision::Store,
        "another request whose trigger lost is stored"
    );
    state.apply(&operator(CommandKind::Forward, state.epoch));
    assert_eq!(
        answer(&state, "r2", "next-owner"),
        Decision::Retry,
        "forwarding again by the time the answer is read: call once more"
    );
    assert_eq!(
        answer(&state, "r1", "dead"),
        Decision::Designated,
        "the instance that published the trigger still knows it after a later change"
    );
}

/// `r1` activated the store once; long after, it is sent again under the
/// same id (a resubmitted failed event), fails, and an operator stores
/// while its trigger is out. The state still names `r1` as the trigger of
/// the earlier activation: another instance stores it.
#[test]
fn a_trigger_of_an_earlier_activation_designates_no_other_instance() {
    let mut state = ControlPoint::initial("cp");
    state.apply(&trigger_of("r1", "a"));
    state.apply(&operator(CommandKind::Forward, state.epoch));
    state.apply(&operator(CommandKind::Store, state.epoch));
    assert_eq!(answer(&state, "r1", "b"), Decision::Store);
}

/// What became of one request in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Delivered,
    Failed(FailureReason),
    Stored,
}

/// One partition of async requests to a service with store and forward:
/// the first `in_flight` are called while FORWARD, their outcomes settle
/// in source order, and a request whose turn comes later is stored if the
/// control point is storing by then. The control writer designates the
/// first trigger of an epoch and answers `Store` to later ones.
fn run(outcomes: &[Called], in_flight: usize) -> Vec<End> {
    let mut storing = false;
    let mut ends = Vec::new();
    for (i, called) in outcomes.iter().enumerate() {
        // Requests sent before the store was seen are in flight already;
        // the others meet the state at their turn.
        let sent_while_forward = i < in_flight || !storing;
        if !sent_while_forward {
            assert_eq!(before_call(false, storing, false), Before::Store);
            ends.push(End::Stored);
            continue;
        }
        let origin = Origin::Live {
            sync: false,
            control_point: true,
        };
        let end = match after_call(origin, *called) {
            Step::Done => End::Delivered,
            Step::Fail(reason) => End::Failed(reason),
            Step::Trigger => {
                let decision = if storing {
                    Decision::Store
                } else {
                    storing = true;
                    Decision::Designated
                };
                match after_trigger(decision) {
                    Settle::FailAsTrigger => End::Failed(FailureReason::StoreTrigger),
                    Settle::Store => End::Stored,
                    Settle::CallAgain => unreachable!("nobody forwards in the model"),
                }
            }
            step => unreachable!("{step:?} for a live async request"),
        };
        ends.push(end);
    }
    ends
}

fn live_outcome() -> impl Strategy<Value = Called> {
    prop_oneof![
        3 => Just(Called::Answered),
        2 => Just(Called::Failed { matched: true, overloaded: None }),
        1 => Just(Called::Failed { matched: false, overloaded: None }),
    ]
}

proptest! {
    /// G3: however many calls are out when the service fails, one request
    /// (the first matching failure, in source order) is the trigger; every
    /// request ends exactly one way; and what is stored keeps its order.
    #[test]
    fn one_trigger_and_every_request_ends_once(
        outcomes in prop::collection::vec(live_outcome(), 0..200),
        in_flight in 1usize..64,
    ) {
        let ends = run(&outcomes, in_flight);
        prop_assert_eq!(ends.len(), outcomes.len());
        let triggers: Vec<usize> = ends
            .iter()
            .enumerate()
            .filter(|(_, e)| **e == End::Failed(FailureReason::StoreTrigger))
            .map(|(i, _)| i)
            .collect();
        let first_match = outcomes
            .iter()
            .position(|c| *c == Called::Failed { matched: true, overloaded: None });
        prop_assert_eq!(triggers.first().copied(), first_match);
        prop_assert!(triggers.len() <= 1, "one trigger: {:?}", triggers);
        if let Some(t) = first_match {
            for (i, end) in ends.iter().enumerate().skip(t + 1) {
                // After the trigger a request is stored, unless it was out
                // already and the service answered it or failed it
                // without a matching rule.
                if *end != End::Stored {
                    prop_assert!(i < in_flight, "request {} sent after the store: {:?}", i, end);
                    let matched = outcomes[i] == Called::Failed { matched: true, overloaded: None };
                    prop_assert!(!matched, "a matching failure after the trigger is stored ({})", i);
                }
            }
            for (i, end) in ends.iter().enumerate().take(t) {
                prop_assert!(*end != End::Stored, "nothing before the trigger is stored ({})", i);
            }
        } else {
            prop_assert!(!ends.contains(&End::Stored));
        }
    }
}
