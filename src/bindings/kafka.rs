//! The Kafka binding.

use super::failure::Failure;
use super::{Request, Response};
use crate::topology::KafkaBinding;

/// A Kafka target: requests are produced to its topic.
#[derive(Clone)]
pub struct KafkaTarget {
    binding: KafkaBinding,
}

impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTarget").field("topic", &self.binding.topic).finish()
    }
}

impl KafkaTarget {
    pub fn new(binding: &KafkaBinding) -> Self {
        KafkaTarget {
            binding: binding.clone(),
        }
    }

    pub async fn call(&self, _request: &Request) -> Result<Response, Failure> {
        Err(Failure::Kafka {
            topic: self.binding.topic.clone(),
            code: "NotImplemented".into(),
            detail: String::new(),
            retriable: false,
        })
    }

    pub fn describe(&self) -> String {
        format!("kafka {}", self.binding.topic)
    }
}
