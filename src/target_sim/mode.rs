//! How the simulated target answers, and schedules of modes over time.
//!
//! Both are written the same way on the command line, on the control
//! endpoints and in `/_sim/state`:
//!
//! - a mode: `up`, `unavailable`, `refuse`, `slow:DELAY`,
//!   `slow-unavailable:DELAY`, `error500`, `bad-request`,
//!   `overloaded:RETRY_AFTER` (durations like `250ms`,
//!   `2s`, `1.5s`, `1m`);
//! - a schedule: modes with how long each lasts, `MODE:DURATION`, separated
//!   by commas, e.g. `up:10s,unavailable:20s,up` or
//!   `up:5s,slow:3s:10s`. When the last step has no duration the schedule
//!   runs once and stays in that mode; when every step has one it repeats.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::topology::parse_duration;

/// The modes accepted, as listed in error messages.
const MODE_NAMES: &str =
    "up, unavailable, refuse, slow:DELAY, slow-unavailable:DELAY, error500, bad-request, \
     overloaded:RETRY_AFTER";
/// How durations are written, as shown in error messages.
const DURATION_HINT: &str = "write e.g. 250ms, 2s, 1.5s, 1m";

/// How the simulated target answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Answer `200 OK` with `{"ok":true,"request_id":…}`.
    Up,
    /// Answer `503 Service Unavailable`.
    Unavailable,
    /// Close the listening socket, so that connections are refused
    /// (`ECONNREFUSED`); the same port is bound again when the mode changes.
    Refuse,
    /// Answer `200 OK`, but only after `delay` (to provoke timeouts).
    Slow {
        /// How long each request waits before it is answered.
        delay: Duration,
    },
    /// Answer `503 Service Unavailable`, but only after `delay`: a service
    /// that fails while many calls are out.
    SlowUnavailable {
        /// How long each request waits before it is answered.
        delay: Duration,
    },
    /// Answer `500 Internal Server Error` with an exception chain in a JSON
    /// body, as described in [`crate::bindings::failure`].
    Error500,
    /// Answer `400 Bad Request`.
    BadRequest,
    /// Answer `429 Too Many Requests` with `Retry-After` (whole seconds,
    /// rounded up).
    Overloaded {
        /// The wait the answer asks for.
        retry_after: Duration,
    },
}

impl Mode {
    /// True for the mode that closes the listener.
    pub fn refuses(&self) -> bool {
        matches!(self, Mode::Refuse)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Up => f.write_str("up"),
            Mode::Unavailable => f.write_str("unavailable"),
            Mode::Refuse => f.write_str("refuse"),
            Mode::Slow { delay } => write!(f, "slow:{}", DisplayDuration(*delay)),
            Mode::SlowUnavailable { delay } => {
                write!(f, "slow-unavailable:{}", DisplayDuration(*delay))
            }
            Mode::Error500 => f.write_str("error500"),
            Mode::BadRequest => f.write_str("bad-request"),
            Mode::Overloaded { retry_after } => {
                write!(f, "overloaded:{}", DisplayDuration(*retry_after))
            }
        }
    }
}

/// Why a mode could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseModeError {
    /// Nothing was written.
    #[error("no mode given; expected one of {MODE_NAMES}")]
    Empty,
    /// The name is not one of the modes.
    #[error("unknown mode `{0}`; expected one of {MODE_NAMES}")]
    Unknown(String),
    /// `slow` or `slow-unavailable` without its delay.
    #[error("`{0}` needs a delay, e.g. `{0}:2s`")]
    MissingDelay(&'static str),
    /// `overloaded` without its `Retry-After`.
    #[error("`overloaded` needs the wait its answers ask for, e.g. `overloaded:2s`")]
    MissingRetryAfter,
    /// A delay or duration that does not read as one.
    #[error("`{0}` is not a duration; {DURATION_HINT}")]
    BadDuration(String),
    /// Something after a complete mode, e.g. `up:fast`.
    #[error("unexpected `:{extra}` after mode `{mode}`")]
    Trailing {
        /// The mode read so far.
        mode: String,
        /// What followed it.
        extra: String,
    },
}

impl FromStr for Mode {
    type Err = ParseModeError;

    /// Reads `up`, `unavailable`, `refuse`, `slow:DELAY`, `error500` or
    /// `bad-request`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':').map(str::trim);
        let mode = mode_from_parts(&mut parts)?;
        match parts.next() {
            None => Ok(mode),
            Some(extra) => Err(ParseModeError::Trailing {
                mode: mode.to_string(),
                extra: extra.to_string(),
            }),
        }
    }
}

/// Reads one mode from the `:`-separated parts: the name, and for `slow`
/// its delay. Leaves whatever follows.
fn mode_from_parts<'a>(parts: &mut impl Iterator<Item = &'a str>) -> Result<Mode, ParseModeError> {
    let name = parts.next().unwrap_or("");
    Ok(match name {
        "" => return Err(ParseModeError::Empty),
        "up" => Mode::Up,
        "unavailable" => Mode::Unavailable,
        "refuse" => Mode::Refuse,
        "error500" => Mode::Error500,
        "bad-request" => Mode::BadRequest,
        "overloaded" => match parts.next() {
            None | Some("") => return Err(ParseModeError::MissingRetryAfter),
            Some(wait) => Mode::Overloaded {
                retry_after: parse_duration(wait)
                    .ok_or_else(|| ParseModeError::BadDuration(wait.to_string()))?,
            },
        },
        "slow" => Mode::Slow {
            delay: delay_of("slow", parts)?,
        },
        "slow-unavailable" => Mode::SlowUnavailable {
            delay: delay_of("slow-unavailable", parts)?,
        },
        other => return Err(ParseModeError::Unknown(other.to_string())),
    })
}

/// The delay that follows mode `name`.
fn delay_of<'a>(
    name: &'static str,
    parts: &mut impl Iterator<Item = &'a str>,
) -> Result<Duration, ParseModeError> {
    match parts.next() {
        None | Some("") => Err(ParseModeError::MissingDelay(name)),
        Some(delay) => {
            parse_duration(delay).ok_or_else(|| ParseModeError::BadDuration(delay.to_string()))
        }
    }
}

/// One step of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The mode during this step.
    pub mode: Mode,
    /// How long the step lasts; `None` (only on the last step) for ever.
    pub duration: Option<Duration>,
}

/// Modes over time, e.g. `up:10s,unavailable:20s,up`.
///
/// Runs once when the last step has no duration (it then lasts for ever),
/// and repeats from the first step when every step has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Step>,
}

impl Schedule {
    /// The steps, in order; never empty.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// True when the schedule starts over after its last step.
    pub fn repeats(&self) -> bool {
        self.steps.iter().all(|s| s.duration.is_some())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", step.mode)?;
            if let Some(d) = step.duration {
                write!(f, ":{}", DisplayDuration(d))?;
            }
        }
        Ok(())
    }
}

/// What is wrong with one step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepProblem {
    /// The step's position, from 1.
    pub step: usize,
    /// The step as written.
    pub text: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for StepProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} `{}`: {}", self.step, self.text, self.message)
    }
}

/// Why a schedule could not be read: every problem found, each with its
/// step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScheduleError {
    /// The problems, in the order of the steps; never empty.
    pub problems: Vec<StepProblem>,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad schedule: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Reads `MODE[:DURATION],…`; reports every bad step at once.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let texts: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut steps = Vec::with_capacity(texts.len());
        let mut problems = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let is_last = i + 1 == texts.len();
            match parse_step(text, is_last) {
                Ok(step) => steps.push(step),
                Err(message) => problems.push(StepProblem {
                    step: i + 1,
                    text: text.to_string(),
                    message,
                }),
            }
        }
        if problems.is_empty() {
            Ok(Schedule { steps })
        } else {
            Err(ScheduleError { problems })
        }
    }
}

/// Reads one `MODE[:DURATION]` step.
fn parse_step(text: &str, is_last: bool) -> Result<Step, String> {
    if text.is_empty() {
        return Err(format!(
            "empty step; expected MODE:DURATION, MODE one of {MODE_NAMES}"
        ));
    }
    let mut parts = text.split(':').map(str::trim);
    let mode = mode_from_parts(&mut parts).map_err(|e| e.to_string())?;
    let duration = match parts.next() {
        None => None,
        Some(d) => match parse_duration(d) {
            Some(d) if d.is_zero() => return Err("a step must last longer than 0s".into()),
            Some(d) => Some(d),
            None => return Err(format!("`{d}` is not a duration; {DURATION_HINT}")),
        },
    };
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `:{extra}`; a step is MODE:DURATION"));
    }
    if duration.is_none() && !is_last {
        return Err(format!(
            "only the last step may leave out its duration (it then lasts for ever); \
             write e.g. `{mode}:10s`"
        ));
    }
    Ok(Step { mode, duration })
}

/// Writes a duration so that [`parse_duration`] reads it back: `2s`,
/// `300ms`, `1.5ms`.
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos() % 1_000_000 == 0 {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}ms", d.as_secs_f64() * 1000.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn overloaded_needs_its_wait() {
        assert_eq!(
            "overloaded".parse::<Mode>(),
            Err(ParseModeError::MissingRetryAfter)
        );
        assert_eq!(
            "overloaded:soon".parse::<Mode>(),
            Err(ParseModeError::BadDuration("soon".into()))
        );
    }

    #[test]
    fn modes_read_and_write_back() {
        for (text, mode) in [
            ("up", Mode::Up),
            ("unavailable", Mode::Unavailable),
            ("refuse", Mode::Refuse),
            ("error500", Mode::Error500),
            ("bad-request", Mode::BadRequest),
            (
                "slow:2s",
                Mode::Slow {
                    delay: Duration::from_secs(2),
                },
            ),
            (
                "slow:300ms",
                Mode::Slow {
                    delay: Duration::from_millis(300),
                },
            ),
            (
                "slow-unavailable:40ms",
                Mode::SlowUnavailable {
                    delay: Duration::from_millis(40),
                },
            ),
            (
                "overloaded:3s",
                Mode::Overloaded {
                    retry_after: Duration::from_secs(3),
                },
            ),
        ] {
            assert_eq!(text.parse::<Mode>(), Ok(mode), "{text}");
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(
            " slow : 1.5s ".parse::<Mode>(),
            Ok(Mode::Slow {
                delay: Duration::from_millis(1500)
            })
        );
        assert_eq!(
            Mode::Slow {
                delay: Duration::from_millis(1500)
            }
            .to_string(),
            "slow:1500ms"
        );
    }

    #[test]
    fn bad_modes_say_why() {
        assert_eq!("".parse::<Mode>(), Err(ParseModeError::Empty));
        assert_eq!(
            "down".parse::<Mode>(),
            Err(ParseModeError::Unknown("down".into()))
        );
        assert_eq!(
            "slow".parse::<Mode>(),
            Err(ParseModeError::MissingDelay("slow"))
        );
        assert_eq!(
            "slow:".parse::<Mode>(),
            Err(ParseModeError::MissingDelay("slow"))
        );
        assert_eq!(
            "slow-unavailable".parse::<Mode>(),
            Err(ParseModeError::MissingDelay("slow-unavailable"))
        );
        assert_eq!(
            "slow:fast".parse::<Mode>(),
            Err(ParseModeError::BadDuration("fast".into()))
        );
        assert_eq!(
            "up:10s".parse::<Mode>(),
            Err(ParseModeError::Trailing {
                mode: "up".into(),
                extra: "10s".into()
            })
        );
        let message = "down".parse::<Mode>().unwrap_err().to_string();
        assert!(
            message.contains("unknown mode `down`") && message.contains("bad-request"),
            "{message}"
        );
    }

    #[test]
    fn schedule_that_runs_once() {
        let s: Schedule = "up:10s, unavailable:20s ,up".parse().unwrap();
        assert_eq!(
            s.steps(),
            &[
                Step {
                    mode: Mode::Up,
                    duration: secs(10)
                },
                Step {
                    mode: Mode::Unavailable,
                    duration: secs(20)
                },
                Step {
                    mode: Mode::Up,
                    duration: None
                },
            ]
        );
        assert!(!s.repeats());
        assert_eq!(s.to_string(), "up:10s,unavailable:20s,up");
    }

    #[test]
    fn schedule_that_repeats() {
        let s: Schedule = "up:5s,slow:3s:10s,refuse:1m".parse().unwrap();
        assert_eq!(
            s.steps(),
            &[
                Step {
                    mode: Mode::Up,
                    duration: secs(5)
                },
                Step {
                    mode: Mode::Slow {
                        delay: Duration::from_secs(3)
                    },
                    duration: secs(10)
                },
                Step {
                    mode: Mode::Refuse,
                    duration: secs(60)
                },
            ]
        );
        assert!(s.repeats());
        assert_eq!(s.to_string(), "up:5s,slow:3s:10s,refuse:60s");
        assert_eq!(s.to_string().parse::<Schedule>(), Ok(s));
    }

    #[test]
    fn a_single_mode_is_a_schedule() {
        let s: Schedule = "slow:2s".parse().unwrap();
        assert_eq!(
            s.steps(),
            &[Step {
                mode: Mode::Slow {
                    delay: Duration::from_secs(2)
                },
                duration: None
            }]
        );
        assert!(!s.repeats());
    }

    #[test]
    fn schedule_reports_every_bad_step() {
        let err = "up:10s,down:5s,unavailable,slow:20s,up:0s,error500:3x,,bad-request:1s:2s"
            .parse::<Schedule>()
            .unwrap_err();
        let steps: Vec<usize> = err.problems.iter().map(|p| p.step).collect();
        // Step 4 is `slow` with a 20s delay and no duration, not at the end.
        assert_eq!(steps, [2, 3, 4, 5, 6, 7, 8]);
        let text = err.to_string();
        for expected in [
            "step 2 `down:5s`: unknown mode `down`",
            "step 3 `unavailable`: only the last step may leave out its duration",
            "step 4 `slow:20s`: only the last step",
            "step 5 `up:0s`: a step must last longer than 0s",
            "step 6 `error500:3x`: `3x` is not a duration",
            "step 7 ``: empty step",
            "step 8 `bad-request:1s:2s`: unexpected `:2s`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
    }

    #[test]
    fn empty_schedule_is_refused() {
        let err = "".parse::<Schedule>().unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.to_string().contains("empty step"), "{err}");
        let err = "up:1s,".parse::<Schedule>().unwrap_err();
        assert_eq!(err.problems[0].step, 2);
        let err = "slow".parse::<Schedule>().unwrap_err();
        assert!(err.to_string().contains("`slow` needs a delay"), "{err}");
    }
}
