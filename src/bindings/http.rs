//! The HTTP binding.

use super::failure::Failure;
use super::{Request, Response};
use crate::topology::HttpBinding;

/// An HTTP target: one URL, method, timeout and extra headers.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    binding: HttpBinding,
}

impl HttpTarget {
    pub fn new(binding: &HttpBinding) -> Self {
        HttpTarget {
            binding: binding.clone(),
        }
    }

    pub async fn call(&self, _request: &Request) -> Result<Response, Failure> {
        Err(Failure::ConnectRefused {
            url: self.binding.url.clone(),
            detail: "not implemented".into(),
        })
    }

    pub fn describe(&self) -> String {
        format!("http {} {}", self.binding.method, self.binding.url)
    }
}
