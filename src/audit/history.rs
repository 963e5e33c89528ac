//! Reading the audit trail back: the events of one control point, oldest
//! first.

use rdkafka::ClientConfig;

use crate::failed::read::read_to_end;
use crate::failed::FailedError;
use crate::records::{AuditEvent, AvroRecord};

/// Why the trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The cluster could not be read.
    #[error(transparent)]
    Kafka(#[from] FailedError),
    /// The read task panicked: a bug.
    #[error("internal error while reading the audit trail: {0}")]
    Internal(String),
}

/// The last `limit` events of `control_point` (every control point when
/// `None`) on the audit `topic`, oldest first, read with `config` (a
/// consumer configuration; the group is not used). Records that do not
/// decode are counted in the second value and skipped. A topic that does
/// not exist yet has no events.
pub async fn history(
    config: ClientConfig,
    topic: &str,
    bootstrap: &str,
    control_point: Option<&str>,
    limit: usize,
) -> Result<super::Trail, HistoryError> {
    let (topic, bootstrap) = (topic.to_string(), bootstrap.to_string());
    let raw = tokio::task::spawn_blocking(move || read_to_end(config, &topic, &bootstrap))
        .await
        .map_err(|e| HistoryError::Internal(e.to_string()))??
        .unwrap_or_default();
    let mut undecodable = 0;
    let events = raw
        .into_iter()
        .filter_map(|r| {
            let decoded = r.payload.as_deref().map(AuditEvent::decode);
            match decoded {
                Some(Ok(e)) => Some(e),
                _ => {
                    undecodable += 1;
                    None
                }
            }
        })
        .collect();
    Ok((select(events, control_point, limit), undecodable))
}

/// The last `limit` of `events` about `control_point` (all when `None`),
/// in the order of the trail.
pub fn select(
    events: Vec<AuditEvent>,
    control_point: Option<&str>,
    limit: usize,
) -> Vec<AuditEvent> {
    let mut chosen: Vec<AuditEvent> = events
        .into_iter()
        .filter(|e| control_point.is_none() || e.control_point.as_deref() == control_point)
        .collect();
    let skip = chosen.len().saturating_sub(limit);
    chosen.drain(..skip);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cp: Option<&str>, n: i64) -> AuditEvent {
        AuditEvent {
            control_point: cp.map(str::to_string),
            ..crate::audit::event("i", "store", "cli", "operator:a", &n.to_string())
        }
    }

    #[test]
    fn the_last_events_of_one_control_point_in_trail_order() {
        let trail = vec![
            at(Some("A"), 1),
            at(Some("B"), 2),
            at(None, 3),
            at(Some("A"), 4),
            at(Some("A"), 5),
        ];
        let results = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.result).collect::<Vec<_>>();
        assert_eq!(
            results(select(trail.clone(), Some("A"), 10)),
            ["1", "4", "5"]
        );
        assert_eq!(results(select(trail.clone(), Some("A"), 2)), ["4", "5"]);
        assert_eq!(results(select(trail.clone(), None, 2)), ["4", "5"]);
        assert_eq!(
            results(select(trail.clone(), Some("C"), 2)),
            Vec::<String>::new()
        );
        assert_eq!(results(select(trail, Some("A"), 0)), Vec::<String>::new());
    }
}
