//! The Avro enums, with the kebab-case names the CLI shows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that is not one of an enum's kebab-case names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{input}`, expected one of: {expected}")]
pub struct ParseEnumError {
    kind: &'static str,
    input: String,
    expected: String,
}

/// Declares an enum whose variants map to an Avro symbol and a kebab-case name.
macro_rules! avro_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $symbol:literal, $kebab:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $symbol)] $variant, )+
        }

        impl $name {
            /// Every variant, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kebab-case name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $kebab,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            /// Parses the kebab-case name.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| ParseEnumError {
                        kind: $kind,
                        input: s.to_owned(),
                        expected: [$($kebab),+].join(", "),
                    })
            }
        }
    };
}

avro_enum! {
    /// Why a request went to the failed-events topic.
    FailureReason, "failure reason" {
        /// Its failure activated the store (§5: the trigger is never stored).
        StoreTrigger = "STORE_TRIGGER", "store-trigger";
        /// The invocation failed with a chain no rule matched.
        InvocationFailed = "INVOCATION_FAILED", "invocation-failed";
        /// The payload could not be decoded or failed the input schema.
        Malformed = "MALFORMED", "malformed";
        /// No operation matches the topic or the operation header.
        UnknownOperation = "UNKNOWN_OPERATION", "unknown-operation";
        /// The request exceeds the size limit.
        Oversized = "OVERSIZED", "oversized";
        /// A required header is absent.
        MissingHeader = "MISSING_HEADER", "missing-header";
        /// A replayed request failed.
        ReplayFailed = "REPLAY_FAILED", "replay-failed";
        /// A reason written by a newer sfwd that this one does not know.
        Unknown = "UNKNOWN", "unknown";
        /// An operator skipped the request while it was stored: it is
        /// never replayed. Listed after `Unknown`, as in the schema, where
        /// it was added last so that the earlier symbols keep their index.
        Skipped = "SKIPPED", "skipped";
    }
}

avro_enum! {
    /// What a control command asks for.
    CommandKind, "command kind" {
        /// A failure matched a rule: activate the store.
        Trigger = "TRIGGER", "trigger";
        /// Operator `store`.
        Store = "STORE", "store";
        /// Operator `forward`.
        Forward = "FORWARD", "forward";
        /// Automatic resume: a probe request succeeded.
        AutoResume = "AUTO_RESUME", "auto-resume";
        /// The replay reached the end of the stored topic.
        ReplayCaughtUp = "REPLAY_CAUGHT_UP", "replay-caught-up";
        /// Operator `pace`: the replay's rate.
        Pace = "PACE", "pace";
    }
}

avro_enum! {
    /// The state of a control point.
    Mode, "mode" {
        /// Invoking the target.
        Forward = "FORWARD", "forward";
        /// Parking requests.
        Store = "STORE", "store";
    }
}

avro_enum! {
    /// What caused the current state of a control point.
    Cause, "cause" {
        /// No change yet: the default state.
        Initial = "INITIAL", "initial";
        /// A failure matched a rule.
        Trigger = "TRIGGER", "trigger";
        /// An operator command.
        Operator = "OPERATOR", "operator";
        /// Automatic resume.
        AutoResume = "AUTO_RESUME", "auto-resume";
        /// The replay caught up.
        ReplayCaughtUp = "REPLAY_CAUGHT_UP", "replay-caught-up";
    }
}

avro_enum! {
    /// What an operator did with a failed event.
    FailedActionKind, "failed action" {
        /// Claims the resubmission of one failure; the first claim wins.
        Resubmitting = "RESUBMITTING", "resubmitting";
        /// The claimed resubmission was written back to the request topic.
        Resubmitted = "RESUBMITTED", "resubmitted";
        /// The claimed resubmission could not be written back.
        Interrupted = "INTERRUPTED", "interrupted";
        /// Hidden from the default list; the failed event itself stays.
        Discarded = "DISCARDED", "discarded";
        /// An action written by a newer sfwd that this one does not know.
        Unknown = "UNKNOWN", "unknown";
    }
}
