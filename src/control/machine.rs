//! The control-point state machine.
//!
//! This is the one decision every instance must agree on. The single writer
//! of a control point runs [`ControlPoint::apply`] on commands in the order
//! they were published; its results are written to the control topic, which
//! every instance reads. The function is pure: same state and command, same
//! outcome.
//!
//! Epochs: every applied change increments the epoch by one. A command that
//! was decided against what an instance *observed* (a trigger, an automatic
//! resume, a replay catching up) carries that observed epoch; if the control
//! point has moved on since, the command is stale and refused. That is what
//! makes the first trigger of an activation win and every later one lose.

use std::fmt;

use super::pace::Pace;
use crate::rules::ExceptionChain;

/// The two states of a control point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Invoking the target (the default).
    Forward,
    /// Parking requests in the stored topic.
    Store,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Forward => "FORWARD",
            Mode::Store => "STORE",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a control point is in its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Never changed: FORWARD at epoch 0.
    Initial,
    /// A failed invocation matched a rule.
    Trigger,
    /// An operator asked for it.
    Operator,
    /// A probe request succeeded while storing.
    AutoResume,
    /// The replay of the stored backlog reached its end.
    ReplayCaughtUp,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Initial => "initial",
            Cause::Trigger => "trigger",
            Cause::Operator => "operator",
            Cause::AutoResume => "auto-resume",
            Cause::ReplayCaughtUp => "replay-caught-up",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request whose failure activated the store, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub request_id: String,
    pub service: String,
    pub interface: String,
    pub operation: String,
    pub chain: ExceptionChain,
    /// The rule that matched, written out.
    pub rule: String,
    /// The instance that saw the failure.
    pub instance: String,
}

/// A command for one control point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// An invocation made while the control point was FORWARD at
    /// `observed_epoch` failed with a chain that matched a rule.
    Trigger(Trigger),
    /// Operator: start storing.
    Store,
    /// Operator: stop storing and replay the backlog.
    Forward,
    /// A probe made while storing at `observed_epoch` succeeded.
    AutoResume,
    /// The replay started at `observed_epoch` reached the end of the backlog.
    ReplayCaughtUp,
    /// Operator: replay at this pace (`None`: the topology's) from now on,
    /// until the replay catches up. Accepted while storing (it then paces
    /// the next replay) or replaying; it changes no epoch.
    Pace(Option<Pace>),
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Trigger(_) => "trigger",
            CommandKind::Store => "store",
            CommandKind::Forward => "forward",
            CommandKind::AutoResume => "auto-resume",
            CommandKind::ReplayCaughtUp => "replay-caught-up",
            CommandKind::Pace(_) => "pace",
        }
    }
}

/// A command as published on the commands topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Unique per command, so a re-published command is recognised.
    pub id: String,
    pub kind: CommandKind,
    /// The epoch the sender saw when it decided. Operator commands are not
    /// conditional on it.
    pub observed_epoch: u64,
    /// Instance id, or `operator:<name>`.
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The state of one control point, as the control topic carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPoint {
    pub name: String,
    pub mode: Mode,
    /// FORWARD while the stored backlog is still being replayed.
    pub replaying: bool,
    pub epoch: u64,
    /// When the last change happened (ms since the Unix epoch).
    pub since_ms: i64,
    pub cause: Cause,
    /// Who made the last change.
    pub by: String,
    /// The designated trigger of the current (or last) activation.
    pub trigger: Option<Trigger>,
    /// The command that produced this state.
    pub command_id: Option<String>,
    /// An operator's override of the replay's pace; `None`: the topology's.
    /// Cleared when a replay catches up.
    pub pace: Option<Pace>,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state changed; the new state is in the control point.
    Applied {
        /// For an accepted trigger: the request that goes to the failed
        /// events (`store-trigger`), never to the stored topic.
        designated_trigger: Option<String>,
    },
    /// Nothing to do: the control point is already where the command asks.
    NoOp(NoOp),
    /// The command was decided on an outdated view and is refused.
    Refused(Refusal),
}

/// An idempotent repeat, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoOp {
    AlreadyStoring {
        epoch: u64,
        since_ms: i64,
    },
    AlreadyForwarding {
        epoch: u64,
        replaying: bool,
    },
    /// A command id already applied (a duplicate from a retried publish).
    Duplicate {
        command_id: String,
    },
    /// The replay already has this pace.
    AlreadyPaced {
        pace: Option<Pace>,
    },
}

impl fmt::Display for NoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoOp::AlreadyStoring { epoch, .. } => {
                write!(f, "already storing (epoch {epoch}); nothing changed")
            }
            NoOp::AlreadyForwarding { epoch, replaying } => write!(
                f,
                "already forwarding (epoch {epoch}{}); nothing changed",
                if *replaying { ", replaying" } else { "" }
            ),
            NoOp::Duplicate { command_id } => {
                write!(f, "command {command_id} was already applied")
            }
            NoOp::AlreadyPaced { pace } => match pace {
                Some(p) => write!(f, "the replay pace is already {p}; nothing changed"),
                None => write!(
                    f,
                    "the replay pace is already the topology's; nothing changed"
                ),
            },
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The control point moved on after the sender observed it.
    Stale {
        command: &'static str,
        observed: u64,
        current: u64,
        mode: Mode,
    },
    /// The command makes no sense in the current state at its epoch
    /// (a trigger while storing, a resume while forwarding, …).
    WrongState {
        command: &'static str,
        epoch: u64,
        mode: Mode,
        replaying: bool,
    },
    /// The observed epoch is ahead of the control point: a bug or a
    /// control topic that lost data.
    FromTheFuture {
        command: &'static str,
        observed: u64,
        current: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Stale {
                command,
                observed,
                current,
                mode,
            } => write!(
                f,
                "{command} refused: decided at epoch {observed} but the control point \
                 is at epoch {current} ({mode})"
            ),
            Refusal::WrongState {
                command,
                epoch,
                mode,
                replaying,
            } => write!(
                f,
                "{command} refused: the control point is {mode}{} at epoch {epoch}",
                if *replaying { " (replaying)" } else { "" }
            ),
            Refusal::FromTheFuture {
                command,
                observed,
                current,
            } => write!(
                f,
                "{command} refused: it claims epoch {observed} but the control point is \
                 only at epoch {current}"
            ),
        }
    }
}

impl ControlPoint {
    /// A control point that has never changed: FORWARD at epoch 0.
    pub fn initial(name: impl Into<String>) -> Self {
        ControlPoint {
            name: name.into(),
            mode: Mode::Forward,
            replaying: false,
            epoch: 0,
            since_ms: 0,
            cause: Cause::Initial,
            by: String::new(),
            trigger: None,
            command_id: None,
            pace: None,
        }
    }

    /// Should new requests for this service go to the stored topic?
    pub fn is_storing(&self) -> bool {
        self.mode == Mode::Store
    }

    /// Applies one command. On `Applied` the state has changed and, for
    /// every command but `Pace`, its epoch is one higher; otherwise the
    /// state is untouched.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        if self.command_id.as_deref() == Some(command.id.as_str()) {
            return Outcome::NoOp(NoOp::Duplicate {
                command_id: command.id.clone(),
            });
        }
        let name = command.kind.name();
        match &command.kind {
            CommandKind::Store => match self.mode {
                Mode::Store => Outcome::NoOp(NoOp::AlreadyStoring {
                    epoch: self.epoch,
                    since_ms: self.since_ms,
                }),
                Mode::Forward => {
                    self.change(command, Mode::Store, false, Cause::Operator);
                    Outcome::Applied {
                        designated_trigger: None,
                    }
                }
            },
            CommandKind::Forward => match self.mode {
                Mode::Forward => Outcome::NoOp(NoOp::AlreadyForwarding {
                    epoch: self.epoch,
                    replaying: self.replaying,
                }),
                Mode::Store => {
                    self.change(command, Mode::Forward, true, Cause::Operator);
                    Outcome::Applied {
                        designated_trigger: None,
                    }
                }
            },
            CommandKind::Trigger(trigger) => {
                if let Some(refusal) = self.check_observed(name, command.observed_epoch) {
                    return Outcome::Refused(refusal);
                }
                if self.mode != Mode::Forward {
                    return Outcome::Refused(self.wrong_state(name));
                }
                self.change(command, Mode::Store, false, Cause::Trigger);
                self.trigger = Some(trigger.clone());
                Outcome::Applied {
                    designated_trigger: Some(trigger.request_id.clone()),
                }
            }
            CommandKind::AutoResume => {
                if let Some(refusal) = self.check_observed(name, command.observed_epoch) {
                    return Outcome::Refused(refusal);
                }
                if self.mode != Mode::Store {
                    return Outcome::Refused(self.wrong_state(name));
                }
                self.change(command, Mode::Forward, true, Cause::AutoResume);
                Outcome::Applied {
                    designated_trigger: None,
                }
            }
            CommandKind::ReplayCaughtUp => {
                if let Some(refusal) = self.check_observed(name, command.observed_epoch) {
                    return Outcome::Refused(refusal);
                }
                if self.mode != Mode::Forward || !self.replaying {
                    return Outcome::Refused(self.wrong_state(name));
                }
                self.change(command, Mode::Forward, false, Cause::ReplayCaughtUp);
                self.pace = None;
                Outcome::Applied {
                    designated_trigger: None,
                }
            }
            CommandKind::Pace(pace) => {
                if self.mode == Mode::Forward && !self.replaying {
                    return Outcome::Refused(self.wrong_state(name));
                }
                if self.pace == *pace {
                    return Outcome::NoOp(NoOp::AlreadyPaced { pace: *pace });
                }
                self.pace = *pace;
                self.command_id = Some(command.id.clone());
                Outcome::Applied {
                    designated_trigger: None,
                }
            }
        }
    }

    fn check_observed(&self, command: &'static str, observed: u64) -> Option<Refusal> {
        if observed < self.epoch {
            Some(Refusal::Stale {
                command,
                observed,
                current: self.epoch,
                mode: self.mode,
            })
        } else if observed > self.epoch {
            Some(Refusal::FromTheFuture {
                command,
                observed,
                current: self.epoch,
            })
        } else {
            None
        }
    }

    fn wrong_state(&self, command: &'static str) -> Refusal {
        Refusal::WrongState {
            command,
            epoch: self.epoch,
            mode: self.mode,
            replaying: self.replaying,
        }
    }

    fn change(&mut self, command: &Command, mode: Mode, replaying: bool, cause: Cause) {
        self.mode = mode;
        self.replaying = replaying;
        self.epoch += 1;
        self.since_ms = command.at_ms;
        self.cause = cause;
        self.by = command.by.clone();
        self.command_id = Some(command.id.clone());
    }
}

#[cfg(test)]
mod tests;
