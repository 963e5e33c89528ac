//! The exception chain of a failed invocation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One exception of a chain: its type name and its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainElement {
    /// The exception type, a name from the type tree (`ServiceUnavailableException`,
    /// `ConnectException`, or a type the topology declares).
    #[serde(rename = "type")]
    pub type_name: String,
    /// The human-readable message. May be empty.
    pub message: String,
}

impl ChainElement {
    pub fn new(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        ChainElement {
            type_name: type_name.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ChainElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.type_name)
        } else {
            write!(f, "{}: {}", self.type_name, self.message)
        }
    }
}

/// A chain of exceptions, like a Java cause chain.
///
/// Index 0 is the *top-level* exception (what the caller sees); the last
/// element is the *original* cause (the innermost one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExceptionChain(Vec<ChainElement>);

impl ExceptionChain {
    /// Builds a chain from elements listed top-level first.
    pub fn new(elements: Vec<ChainElement>) -> Self {
        ExceptionChain(elements)
    }

    /// Appends a cause below the current original cause.
    pub fn push_cause(&mut self, element: ChainElement) {
        self.0.push(element);
    }

    /// Appends every element of `other` below the current original cause.
    pub fn extend(&mut self, other: ExceptionChain) {
        self.0.extend(other.0);
    }

    pub fn elements(&self) -> &[ChainElement] {
        &self.0
    }

    pub fn into_elements(self) -> Vec<ChainElement> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The outermost exception.
    pub fn top_level(&self) -> Option<&ChainElement> {
        self.0.first()
    }

    /// The innermost exception, the original cause.
    pub fn original(&self) -> Option<&ChainElement> {
        self.0.last()
    }
}

impl fmt::Display for ExceptionChain {
    /// `Top: message <- Cause: message <- Original: message`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" <- ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FromIterator<ChainElement> for ExceptionChain {
    fn from_iter<I: IntoIterator<Item = ChainElement>>(iter: I) -> Self {
        ExceptionChain(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_is_first_and_original_is_last() {
        let chain = ExceptionChain::new(vec![
            ChainElement::new("ServiceUnavailableException", "POST http://x: 503"),
            ChainElement::new("HttpStatusException", "503 Service Unavailable"),
        ]);
        assert_eq!(
            chain.top_level().unwrap().type_name,
            "ServiceUnavailableException"
        );
        assert_eq!(chain.original().unwrap().type_name, "HttpStatusException");
        assert_eq!(
            chain.to_string(),
            "ServiceUnavailableException: POST http://x: 503 <- HttpStatusException: 503 Service Unavailable"
        );
    }

    #[test]
    fn serialises_as_a_list_of_type_and_message() {
        let chain = ExceptionChain::new(vec![ChainElement::new("A", "m")]);
        let json = serde_json::to_string(&chain).unwrap();
        assert_eq!(json, r#"[{"type":"A","message":"m"}]"#);
        let back: ExceptionChain = serde_json::from_str(&json).unwrap();
        assert_eq!(back, chain);
    }
}
