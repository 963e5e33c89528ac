//! Between the state machine's types and the Avro records on the control
//! topics.

use super::machine::{Cause, Command, CommandKind, ControlPoint, Mode, Trigger};
use super::pace::Pace;
use crate::records::{self, ControlCommand, ControlStateRecord, TriggerInfo};

pub fn trigger_to_record(t: &Trigger) -> TriggerInfo {
    TriggerInfo {
        request_id: t.request_id.clone(),
        service: t.service.clone(),
        interface: t.interface.clone(),
        operation: t.operation.clone(),
        chain: t.chain.clone(),
        rule: t.rule.clone(),
        instance: t.instance.clone(),
    }
}

pub fn trigger_from_record(t: TriggerInfo) -> Trigger {
    Trigger {
        request_id: t.request_id,
        service: t.service,
        interface: t.interface,
        operation: t.operation,
        chain: t.chain,
        rule: t.rule,
        instance: t.instance,
    }
}

/// The state as written to the control topic, with the writer's fencing
/// token (the commands-topic offset of the command that produced it).
pub fn state_to_record(cp: &ControlPoint, generation: i64) -> ControlStateRecord {
    ControlStateRecord {
        control_point: cp.name.clone(),
        mode: match cp.mode {
            Mode::Forward => records::Mode::Forward,
            Mode::Store => records::Mode::Store,
        },
        replaying: cp.replaying,
        epoch: cp.epoch as i64,
        since: cp.since_ms,
        cause: match cp.cause {
            Cause::Initial => records::Cause::Initial,
            Cause::Trigger => records::Cause::Trigger,
            Cause::Operator => records::Cause::Operator,
            Cause::AutoResume => records::Cause::AutoResume,
            Cause::ReplayCaughtUp => records::Cause::ReplayCaughtUp,
        },
        changed_by: cp.by.clone(),
        trigger: cp.trigger.as_ref().map(trigger_to_record),
        command_id: cp.command_id.clone(),
        writer_generation: generation,
        replay_rate: cp.pace.map(Pace::to_wire),
    }
}

pub fn state_from_record(r: ControlStateRecord) -> (ControlPoint, i64) {
    let cp = ControlPoint {
        name: r.control_point,
        mode: match r.mode {
            records::Mode::Forward => Mode::Forward,
            records::Mode::Store => Mode::Store,
        },
        replaying: r.replaying,
        epoch: r.epoch.max(0) as u64,
        since_ms: r.since,
        cause: match r.cause {
            records::Cause::Initial => Cause::Initial,
            records::Cause::Trigger => Cause::Trigger,
            records::Cause::Operator => Cause::Operator,
            records::Cause::AutoResume => Cause::AutoResume,
            records::Cause::ReplayCaughtUp => Cause::ReplayCaughtUp,
        },
        by: r.changed_by,
        trigger: r.trigger.map(trigger_from_record),
        command_id: r.command_id,
        pace: r.replay_rate.map(Pace::from_wire),
    };
    (cp, r.writer_generation)
}

pub fn command_to_record(control_point: &str, c: &Command) -> ControlCommand {
    let (kind, trigger, replay_rate) = match &c.kind {
        CommandKind::Trigger(t) => (
            records::CommandKind::Trigger,
            Some(trigger_to_record(t)),
            None,
        ),
        CommandKind::Store => (records::CommandKind::Store, None, None),
        CommandKind::Forward => (records::CommandKind::Forward, None, None),
        CommandKind::AutoResume => (records::CommandKind::AutoResume, None, None),
        CommandKind::ReplayCaughtUp => (records::CommandKind::ReplayCaughtUp, None, None),
        CommandKind::Pace(p) => (records::CommandKind::Pace, None, p.map(Pace::to_wire)),
    };
    ControlCommand {
        command_id: c.id.clone(),
        control_point: control_point.to_string(),
        kind,
        observed_epoch: c.observed_epoch as i64,
        issued_by: c.by.clone(),
        issued_at: c.at_ms,
        trigger,
        replay_rate,
    }
}

/// The command, or `None` for a trigger without its trigger details (a
/// malformed command, refused by the writer).
pub fn command_from_record(r: ControlCommand) -> Option<(String, Command)> {
    let kind = match r.kind {
        records::CommandKind::Trigger => CommandKind::Trigger(trigger_from_record(r.trigger?)),
        records::CommandKind::Store => CommandKind::Store,
        records::CommandKind::Forward => CommandKind::Forward,
        records::CommandKind::AutoResume => CommandKind::AutoResume,
        records::CommandKind::ReplayCaughtUp => CommandKind::ReplayCaughtUp,
        records::CommandKind::Pace => CommandKind::Pace(r.replay_rate.map(Pace::from_wire)),
    };
    Some((
        r.control_point,
        Command {
            id: r.command_id,
            kind,
            observed_epoch: r.observed_epoch.max(0) as u64,
            by: r.issued_by,
            at_ms: r.issued_at,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{ChainElement, ExceptionChain};

    #[test]
    fn states_and_commands_survive_the_round_trip() {
        let trigger = Trigger {
            request_id: "t/0/5".into(),
            service: "s".into(),
            interface: "I".into(),
            operation: "op".into(),
            chain: ExceptionChain::new(vec![ChainElement::new("A", "m")]),
            rule: "A chain=original-first".into(),
            instance: "i-1".into(),
        };
        let cmd = Command {
            id: "c-1".into(),
            kind: CommandKind::Trigger(trigger.clone()),
            observed_epoch: 0,
            by: "i-1".into(),
            at_ms: 42,
        };
        let (cp_name, back) = command_from_record(command_to_record("cp", &cmd)).unwrap();
        assert_eq!((cp_name.as_str(), &back), ("cp", &cmd));

        let mut cp = ControlPoint::initial("cp");
        cp.apply(&cmd);
        let (state, generation) = state_from_record(state_to_record(&cp, 17));
        assert_eq!((state, generation), (cp, 17));
    }
}
