//! Automatic resume: while a control point stores, its control writer
//! probes the target now and then; when a probe succeeds it publishes an
//! `auto-resume` command, which the state machine accepts only if the
//! control point is still in the activation the probe was made in.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};

/// How to ask a target whether it is back.
#[derive(Clone)]
pub enum Probe {
    /// An HTTP GET: any answer below 500 other than 429 means the service
    /// answers again (a 404 or 405 from a health URL still says it is up).
    Http {
        client: reqwest::Client,
        url: String,
    },
    /// A metadata request for the target topic: up when every partition
    /// has a leader.
    Kafka {
        producer: FutureProducer,
        topic: String,
        timeout: Duration,
    },
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Http { url, .. } => write!(f, "GET {url}"),
            Probe::Kafka { topic, .. } => write!(f, "metadata of {topic}"),
        }
    }
}

/// A control point's automatic resume.
#[derive(Debug, Clone)]
pub struct AutoResume {
    /// Time between probes while storing.
    pub every: Duration,
    pub probe: Probe,
}

impl Probe {
    /// An HTTP probe of `url` that gives up after `timeout`.
    pub fn http(url: &str, timeout: Duration) -> Result<Probe, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Probe::Http {
            client,
            url: url.to_string(),
        })
    }

    /// Does the target answer again?
    pub async fn is_up(&self) -> bool {
        match self {
            Probe::Http { client, url } => match client.get(url).send().await {
                Ok(r) => answers(r.status().as_u16()),
                Err(_) => false,
            },
            Probe::Kafka {
                producer,
                topic,
                timeout,
            } => {
                let (producer, topic, timeout) = (producer.clone(), topic.clone(), *timeout);
                tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_metadata(Some(&topic), timeout)
                        .ok()
                        .and_then(|m| {
                            m.topics().iter().find(|t| t.name() == topic).map(|t| {
                                t.error().is_none()
                                    && !t.partitions().is_empty()
                                    && t.partitions().iter().all(|p| p.leader() >= 0)
                            })
                        })
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false)
            }
        }
    }
}

/// Does an HTTP status say the service is answering?
fn answers(status: u16) -> bool {
    status < 500 && status != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_answer_but_a_server_error_or_throttling_means_up() {
        for up in [200, 204, 301, 404, 405] {
            assert!(answers(up), "{up}");
        }
        for down in [429, 500, 502, 503, 504] {
            assert!(!answers(down), "{down}");
        }
    }
}
