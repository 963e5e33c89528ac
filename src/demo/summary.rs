//! What a demo run observed, the numbers it adds up to, and the guarantees
//! they show. Pure: built from data, tested without Kafka.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};

use crate::records::FailureReason;

/// One request as the target received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The `sfwd-request-id` header (`topic/partition/offset`).
    pub request_id: String,
    /// The request carried `sfwd-redelivery`.
    pub redelivery: bool,
}

/// One record of the stored topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// The stored request's id.
    pub request_id: String,
    /// The instance that stored it.
    pub instance: String,
}

/// One record of the failed-events topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCopy {
    /// The failed request's id.
    pub request_id: String,
    /// Why it failed.
    pub reason: FailureReason,
}

/// How one instance followed the control point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTiming {
    /// The instance id.
    pub instance: String,
    /// Milliseconds from the trigger to this instance's control table
    /// holding STORE; `None` if it never did.
    pub trigger_to_store_ms: Option<i64>,
    /// Milliseconds from the operator's forward to this instance's control
    /// table holding FORWARD; `None` if it never did.
    pub forward_to_replay_ms: Option<i64>,
}

/// Everything a run observed, from the producer, the target, sfwd's topics
/// and the instances' control tables.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Ids of the requests sent, in the order they were acknowledged.
    pub sent: Vec<String>,
    /// Requests as the target received them, in order.
    pub received: Vec<Arrival>,
    /// Every record of the stored topic.
    pub stored: Vec<StoredCopy>,
    /// Every record of the failed-events topic.
    pub failed: Vec<FailedCopy>,
    /// Activations of the store seen by the control tables (STORE epochs).
    pub activations: usize,
    /// One entry per instance, in instance order.
    pub instances: Vec<InstanceTiming>,
}

/// The numbers of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Requests sent to the request topic.
    pub sent: usize,
    /// Distinct sent requests the target received.
    pub delivered: usize,
    /// Of `delivered`, those that were never stored.
    pub delivered_live: usize,
    /// Distinct requests in the stored topic.
    pub stored: usize,
    /// Records in the stored topic (more than `stored` if a copy was written twice).
    pub stored_records: usize,
    /// Distinct stored requests per instance that stored them.
    pub stored_by: BTreeMap<String, usize>,
    /// Stored requests the target received.
    pub replayed: usize,
    /// Distinct requests in the failed-events topic.
    pub failed: usize,
    /// `failed` by reason.
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Sent requests neither delivered nor failed.
    pub lost: Vec<String>,
    /// Requests the target received that were never sent.
    pub unknown: usize,
    /// Requests both stored and failed (a trigger must never be stored).
    pub stored_and_failed: usize,
    /// Requests received more than once, every repeat flagged `sfwd-redelivery`.
    pub duplicates_flagged: usize,
    /// Requests received more than once with a repeat not flagged.
    pub duplicates_unflagged: usize,
    /// Source partitions whose requests reached the target in order.
    pub partitions_in_order: usize,
    /// Source partitions that received anything.
    pub partitions: usize,
    /// The first out-of-order arrival, if any: partition, offset, and the
    /// offset it came after.
    pub first_disorder: Option<(String, i64, i64)>,
    /// Store activations seen by the control tables.
    pub activations: usize,
    /// Per instance, in order.
    pub instances: Vec<InstanceTiming>,
}

/// One guarantee and whether the run showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name, e.g. `G1 nothing lost`.
    pub name: &'static str,
    /// Held or not.
    pub ok: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// Splits `topic/partition/offset` into the partition's name and the offset.
fn position(id: &str) -> Option<(&str, i64)> {
    let (tp, offset) = id.rsplit_once('/')?;
    Some((tp, offset.parse().ok()?))
}

impl Summary {
    /// Adds up what a run observed.
    pub fn from_observations(o: &Observations) -> Summary {
        let sent: HashSet<&str> = o.sent.iter().map(String::as_str).collect();
        let mut arrivals: HashMap<&str, Vec<bool>> = HashMap::new();
        for a in &o.received {
            arrivals
                .entry(a.request_id.as_str())
                .or_default()
                .push(a.redelivery);
        }
        let delivered: HashSet<&str> = arrivals
            .keys()
            .copied()
            .filter(|id| sent.contains(id))
            .collect();
        let unknown = arrivals.keys().filter(|id| !sent.contains(*id)).count();

        let stored: HashSet<&str> = o.stored.iter().map(|s| s.request_id.as_str()).collect();
        let mut stored_by_sets: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        for s in &o.stored {
            stored_by_sets
                .entry(s.instance.clone())
                .or_default()
                .insert(&s.request_id);
        }
        let stored_by = stored_by_sets
            .into_iter()
            .map(|(k, v)| (k, v.len()))
            .collect();
        let replayed = stored.iter().filter(|id| delivered.contains(*id)).count();

        let mut failed_reason: HashMap<&str, FailureReason> = HashMap::new();
        for f in &o.failed {
            failed_reason.entry(&f.request_id).or_insert(f.reason);
        }
        let mut failed_by_reason: BTreeMap<String, usize> = BTreeMap::new();
        for reason in failed_reason.values() {
            *failed_by_reason.entry(reason.to_string()).or_default() += 1;
        }
        let lost = o
            .sent
            .iter()
            .filter(|id| {
                !delivered.contains(id.as_str()) && !failed_reason.contains_key(id.as_str())
            })
            .cloned()
            .collect();
        let stored_and_failed = stored
            .iter()
            .filter(|id| failed_reason.contains_key(*id))
            .count();

        let (mut duplicates_flagged, mut duplicates_unflagged) = (0, 0);
        for flags in arrivals.values().filter(|f| f.len() > 1) {
            if flags[1..].iter().all(|f| *f) {
                duplicates_flagged += 1;
            } else {
                duplicates_unflagged += 1;
            }
        }

        // Order: per partition, each first arrival comes after the one
        // before; a flagged repeat of a request already received is a
        // redelivery the target can drop by id, not a reordering.
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        let mut disordered: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for a in &o.received {
            let Some((partition, offset)) = position(&a.request_id) else {
                continue;
            };
            let first = seen.insert(&a.request_id);
            if !first && a.redelivery {
                continue;
            }
            if let Some(prev) = last.get(partition) {
                if offset <= *prev {
                    disordered.entry(partition).or_insert((offset, *prev));
                }
            }
            last.insert(partition, offset);
        }
        let first_disorder = disordered
            .iter()
            .next()
            .map(|(p, (offset, after))| (p.to_string(), *offset, *after));

        Summary {
            sent: o.sent.len(),
            delivered: delivered.len(),
            delivered_live: delivered.len() - replayed,
            stored: stored.len(),
            stored_records: o.stored.len(),
            stored_by,
            replayed,
            failed: failed_reason.len(),
            failed_by_reason,
            lost,
            unknown,
            stored_and_failed,
            duplicates_flagged,
            duplicates_unflagged,
            partitions_in_order: last.len() - disordered.len(),
            partitions: last.len(),
            first_disorder,
            activations: o.activations,
            instances: o.instances.clone(),
        }
    }

    /// The guarantees the demo shows, each held or not.
    pub fn checks(&self) -> Vec<Check> {
        let storing: Vec<i64> = self
            .instances
            .iter()
            .filter_map(|i| i.trigger_to_store_ms)
            .collect();
        let store_trigger = self
            .failed_by_reason
            .get(FailureReason::StoreTrigger.as_str())
            .copied()
            .unwrap_or(0);
        vec![
            Check {
                name: "G1 nothing lost",
                ok: self.lost.is_empty()
                    && self.unknown == 0
                    && self.sent == self.delivered + self.failed
                    && self.stored == self.replayed
                    && self.stored_and_failed == 0,
                detail: format!(
                    "sent {} = delivered {} + failed {}; stored {} = replayed {}{}{}",
                    self.sent,
                    self.delivered,
                    self.failed,
                    self.stored,
                    self.replayed,
                    if self.lost.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; lost {} (first {})",
                            self.lost.len(),
                            self.lost.first().map_or("", String::as_str)
                        )
                    },
                    if self.stored_and_failed > 0 {
                        format!("; {} both stored and failed", self.stored_and_failed)
                    } else {
                        String::new()
                    },
                ),
            },
            Check {
                name: "G2 the whole cluster follows",
                ok: !self.instances.is_empty() && storing.len() == self.instances.len(),
                detail: format!(
                    "{} of {} instances stored, the last {}",
                    storing.len(),
                    self.instances.len(),
                    storing
                        .iter()
                        .max()
                        .map_or("never".to_string(), |ms| format!(
                            "{ms} ms after the trigger"
                        ))
                ),
            },
            Check {
                name: "G3 one failed event per activation",
                ok: self.activations == 1 && self.failed == 1 && store_trigger == 1,
                detail: format!(
                    "{} activation{}, {} failed event{} ({})",
                    self.activations,
                    plural(self.activations),
                    self.failed,
                    plural(self.failed),
                    reasons(&self.failed_by_reason)
                ),
            },
            Check {
                name: "G4 order kept",
                ok: self.partitions > 0 && self.first_disorder.is_none(),
                detail: match &self.first_disorder {
                    None => format!(
                        "{} of {} partitions in order",
                        self.partitions_in_order, self.partitions
                    ),
                    Some((p, offset, after)) => format!(
                        "{} of {} partitions in order; {p}: offset {offset} arrived after {after}",
                        self.partitions_in_order, self.partitions
                    ),
                },
            },
            Check {
                name: "no unflagged duplicate",
                ok: self.duplicates_unflagged == 0,
                detail: format!(
                    "{} duplicate{} flagged sfwd-redelivery, {} unflagged",
                    self.duplicates_flagged,
                    plural(self.duplicates_flagged),
                    self.duplicates_unflagged
                ),
            },
        ]
    }

    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.ok)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn reasons(by_reason: &BTreeMap<String, usize>) -> String {
    if by_reason.is_empty() {
        return "none".into();
    }
    by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".to_string(), |ms| format!("{ms} ms"))
}

/// The summary table and the checks, as the demo prints them.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row =
            |f: &mut fmt::Formatter<'_>, label: &str, value: &dyn fmt::Display, detail: &str| {
                let line = format!("  {label:<12} {value:>7}  {detail}");
                writeln!(f, "{}", line.trim_end())
            };
        writeln!(f, "summary")?;
        row(f, "sent", &self.sent, "")?;
        row(
            f,
            "delivered",
            &self.delivered,
            &format!("{} live, {} replayed", self.delivered_live, self.replayed),
        )?;
        let by: Vec<String> = self
            .stored_by
            .iter()
            .map(|(i, n)| format!("{i} {n}"))
            .collect();
        let copies = if self.stored_records > self.stored {
            format!("; {} records", self.stored_records)
        } else {
            String::new()
        };
        row(
            f,
            "stored",
            &self.stored,
            &format!(
                "by {}{copies}",
                if by.is_empty() {
                    "none".into()
                } else {
                    by.join(", ")
                }
            ),
        )?;
        row(f, "replayed", &self.replayed, "")?;
        row(f, "failed", &self.failed, &reasons(&self.failed_by_reason))?;
        row(f, "lost", &self.lost.len(), "")?;
        row(
            f,
            "duplicates",
            &(self.duplicates_flagged + self.duplicates_unflagged),
            &format!(
                "{} flagged sfwd-redelivery, {} unflagged",
                self.duplicates_flagged, self.duplicates_unflagged
            ),
        )?;
        let order = if self.first_disorder.is_none() {
            "ok"
        } else {
            "BROKEN"
        };
        row(
            f,
            "order",
            &order,
            &format!(
                "{} of {} partitions in order",
                self.partitions_in_order, self.partitions
            ),
        )?;
        writeln!(f)?;
        let mut table = String::new();
        let _ = writeln!(
            table,
            "  {:<12} {:>17}  {:>18}",
            "instance", "trigger → storing", "forward → replaying"
        );
        for i in &self.instances {
            let _ = writeln!(
                table,
                "  {:<12} {:>17}  {:>18}",
                i.instance,
                ms(i.trigger_to_store_ms),
                ms(i.forward_to_replay_ms)
            );
        }
        f.write_str(&table)?;
        writeln!(f)?;
        writeln!(f, "checks")?;
        for c in self.checks() {
            writeln!(
                f,
                "  {} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: i32, o: i64) -> String {
        format!("t/{p}/{o}")
    }

    fn arrival(p: i32, o: i64, redelivery: bool) -> Arrival {
        Arrival {
            request_id: id(p, o),
            redelivery,
        }
    }

    fn timing(name: &str, store: Option<i64>) -> InstanceTiming {
        InstanceTiming {
            instance: name.into(),
            trigger_to_store_ms: store,
            forward_to_replay_ms: Some(5),
        }
    }

    /// Partition 0: 0 live, 1 the trigger, 2 and 3 stored then replayed,
    /// 4 live after the replay. Partition 1: 0 live, 1 stored, replayed.
    fn good() -> Observations {
        Observations {
            sent: vec![
                id(0, 0),
                id(1, 0),
                id(0, 1),
                id(0, 2),
                id(1, 1),
                id(0, 3),
                id(0, 4),
            ],
            received: vec![
                arrival(0, 0, false),
                arrival(1, 0, false),
                arrival(0, 2, false),
                arrival(1, 1, false),
                arrival(0, 3, false),
                arrival(0, 4, false),
            ],
            stored: vec![
                StoredCopy {
                    request_id: id(0, 2),
                    instance: "a".into(),
                },
                StoredCopy {
                    request_id: id(0, 3),
                    instance: "a".into(),
                },
                StoredCopy {
                    request_id: id(1, 1),
                    instance: "b".into(),
                },
            ],
            failed: vec![FailedCopy {
                request_id: id(0, 1),
                reason: FailureReason::StoreTrigger,
            }],
            activations: 1,
            instances: vec![timing("a", Some(10)), timing("b", Some(12))],
        }
    }

    #[test]
    fn a_good_run_adds_up_and_passes() {
        let s = Summary::from_observations(&good());
        assert_eq!((s.sent, s.delivered, s.failed), (7, 6, 1));
        assert_eq!((s.stored, s.replayed, s.delivered_live), (3, 3, 3));
        assert_eq!(s.stored_by.get("a"), Some(&2));
        assert_eq!((s.partitions, s.partitions_in_order), (2, 2));
        assert!(s.lost.is_empty());
        assert!(s.passed(), "{s}");
        let text = s.to_string();
        assert!(text.contains("  sent               7"), "{text}");
        assert!(text.contains("store-trigger 1"), "{text}");
    }

    #[test]
    fn a_lost_request_fails_g1() {
        let mut o = good();
        o.received.retain(|a| a.request_id != id(0, 4));
        let s = Summary::from_observations(&o);
        assert_eq!(s.lost, vec![id(0, 4)]);
        let c = &s.checks()[0];
        assert!(!c.ok && c.detail.contains("lost 1"), "{c:?}");
    }

    #[test]
    fn a_stored_request_not_replayed_fails_g1() {
        let mut o = good();
        o.stored.push(StoredCopy {
            request_id: id(0, 4),
            instance: "a".into(),
        });
        o.received.retain(|a| a.request_id != id(0, 4));
        o.failed.push(FailedCopy {
            request_id: id(0, 4),
            reason: FailureReason::ReplayFailed,
        });
        let s = Summary::from_observations(&o);
        assert!(!s.checks()[0].ok);
    }

    #[test]
    fn a_second_failed_event_fails_g3() {
        let mut o = good();
        o.received.retain(|a| a.request_id != id(1, 1));
        o.stored.retain(|s| s.request_id != id(1, 1));
        o.failed.push(FailedCopy {
            request_id: id(1, 1),
            reason: FailureReason::StoreTrigger,
        });
        let s = Summary::from_observations(&o);
        assert!(s.checks()[0].ok, "nothing lost");
        assert!(!s.checks()[2].ok);
        // Two copies of one failed event collapse.
        let mut o = good();
        o.failed.push(o.failed[0].clone());
        assert!(Summary::from_observations(&o).passed());
    }

    #[test]
    fn an_instance_that_never_stored_fails_g2() {
        let mut o = good();
        o.instances[1].trigger_to_store_ms = None;
        let s = Summary::from_observations(&o);
        assert!(!s.checks()[1].ok);
    }

    #[test]
    fn order_ignores_flagged_redeliveries_but_not_unflagged_ones() {
        let mut o = good();
        o.received.insert(4, arrival(0, 2, true));
        let s = Summary::from_observations(&o);
        assert_eq!((s.duplicates_flagged, s.duplicates_unflagged), (1, 0));
        assert!(s.passed(), "{s}");

        let mut o = good();
        o.received.insert(4, arrival(0, 2, false));
        let s = Summary::from_observations(&o);
        assert_eq!(s.duplicates_unflagged, 1);
        assert_eq!(s.first_disorder, Some(("t/0".into(), 2, 2)));
        assert!(!s.checks()[3].ok && !s.checks()[4].ok);
    }

    #[test]
    fn a_reordering_fails_g4() {
        let mut o = good();
        o.received.swap(4, 5);
        let s = Summary::from_observations(&o);
        assert_eq!(s.first_disorder, Some(("t/0".into(), 3, 4)));
        assert_eq!(s.partitions_in_order, 1);
        assert!(!s.passed());
    }
}
