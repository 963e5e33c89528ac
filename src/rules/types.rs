//! The exception type tree: built-in types plus the ones a topology declares.

use std::collections::BTreeMap;

use thiserror::Error;

/// Root of every type a store-and-forward rule may name.
pub const SERVICE_RUNTIME: &str = "ServiceRuntimeException";
/// The target cannot be reached: connection refused, DNS failure, HTTP 503.
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailableException";
/// The target did not answer in time.
pub const SERVICE_TIMEOUT: &str = "ServiceTimeoutException";
/// The target answered with a declared fault: an answer, not an outage.
pub const SERVICE_BUSINESS: &str = "ServiceBusinessException";

/// The built-in types as `(name, parent)`. Transport causes have no parent:
/// they appear deeper in chains and are matched by name.
const BUILT_IN: &[(&str, Option<&str>)] = &[
    (SERVICE_RUNTIME, None),
    (SERVICE_UNAVAILABLE, Some(SERVICE_RUNTIME)),
    (SERVICE_TIMEOUT, Some(SERVICE_RUNTIME)),
    (SERVICE_BUSINESS, None),
    ("ConnectException", None),
    ("UnknownHostException", None),
    ("HttpStatusException", None),
    ("TimeoutException", None),
    ("TlsException", None),
    ("IoException", None),
    ("KafkaException", None),
];

/// Why a user type could not be added to the tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TypeError {
    #[error("exception type `{0}` is already defined")]
    Duplicate(String),
    #[error("parent type `{parent}` of `{name}` is not defined")]
    UnknownParent { name: String, parent: String },
    #[error("exception type `{0}` is its own ancestor (cycle in `parent`)")]
    Cycle(String),
    #[error("`{0}` is not a valid exception type name (letters, digits, `_`, `.`, `$`; not starting with a digit)")]
    InvalidName(String),
}

/// A forest of exception types: each type has at most one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeTree {
    parent: BTreeMap<String, Option<String>>,
}

impl Default for TypeTree {
    fn default() -> Self {
        Self::built_in()
    }
}

impl TypeTree {
    /// The tree with the built-in types only.
    pub fn built_in() -> Self {
        let parent = BUILT_IN
            .iter()
            .map(|(n, p)| (n.to_string(), p.map(str::to_string)))
            .collect();
        TypeTree { parent }
    }

    /// Is this one of the built-in types?
    pub fn is_built_in(name: &str) -> bool {
        BUILT_IN.iter().any(|(n, _)| *n == name)
    }

    /// Adds a user type under `parent` (or as a root when `None`).
    pub fn add(&mut self, name: &str, parent: Option<&str>) -> Result<(), TypeError> {
        if !is_valid_type_name(name) {
            return Err(TypeError::InvalidName(name.to_string()));
        }
        if self.parent.contains_key(name) {
            return Err(TypeError::Duplicate(name.to_string()));
        }
        if let Some(p) = parent {
            if p == name {
                return Err(TypeError::Cycle(name.to_string()));
            }
            if !self.parent.contains_key(p) {
                return Err(TypeError::UnknownParent {
                    name: name.to_string(),
                    parent: p.to_string(),
                });
            }
        }
        self.parent
            .insert(name.to_string(), parent.map(str::to_string));
        Ok(())
    }

    /// Adds a set of user types given as `name -> parent`, in any order
    /// (a type may name a parent declared after it). Returns every problem.
    pub fn add_all<'a>(
        &mut self,
        types: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Vec<(String, TypeError)> {
        let mut pending: Vec<(&str, Option<&str>)> = types.into_iter().collect();
        let mut errors = Vec::new();
        // Names declared twice or clashing with built-ins are refused up front.
        let mut seen = std::collections::BTreeSet::new();
        pending.retain(|(name, _)| {
            if !is_valid_type_name(name) {
                errors.push((name.to_string(), TypeError::InvalidName(name.to_string())));
                false
            } else if self.parent.contains_key(*name) || !seen.insert(*name) {
                errors.push((name.to_string(), TypeError::Duplicate(name.to_string())));
                false
            } else {
                true
            }
        });
        // Insert in dependency order; what is left when no progress is made
        // has an unknown parent or sits on a cycle.
        loop {
            let before = pending.len();
            pending.retain(|(name, parent)| match parent {
                Some(p) if !self.parent.contains_key(*p) => true,
                _ => {
                    self.parent
                        .insert(name.to_string(), parent.map(str::to_string));
                    false
                }
            });
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let pending_names: std::collections::BTreeSet<&str> =
            pending.iter().map(|(n, _)| *n).collect();
        for (name, parent) in pending {
            let parent = parent.unwrap_or_default();
            let err = if pending_names.contains(parent) {
                TypeError::Cycle(name.to_string())
            } else {
                TypeError::UnknownParent {
                    name: name.to_string(),
                    parent: parent.to_string(),
                }
            };
            errors.push((name.to_string(), err));
        }
        errors
    }

    pub fn contains(&self, name: &str) -> bool {
        self.parent.contains_key(name)
    }

    /// The parent of `name`, if it has one.
    pub fn parent_of(&self, name: &str) -> Option<&str> {
        self.parent.get(name).and_then(|p| p.as_deref())
    }

    /// `name` itself, then its parent, grandparent, … up to its root.
    pub fn lineage<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut next = Some(name);
        let mut steps = 0usize;
        std::iter::from_fn(move || {
            let current = next?;
            steps += 1;
            // The tree is acyclic by construction; the bound is a backstop.
            next = if steps > self.parent.len() {
                None
            } else {
                self.parent_of(current)
            };
            Some(current)
        })
    }

    /// Is `name` equal to `ancestor` or one of its descendants?
    /// Unknown names descend from nothing but themselves.
    pub fn is_a(&self, name: &str, ancestor: &str) -> bool {
        self.lineage(name).any(|t| t == ancestor)
    }

    /// Runtime types descend from `ServiceRuntimeException`.
    pub fn is_runtime(&self, name: &str) -> bool {
        self.is_a(name, SERVICE_RUNTIME)
    }

    /// Business faults descend from `ServiceBusinessException`.
    pub fn is_business(&self, name: &str) -> bool {
        self.is_a(name, SERVICE_BUSINESS)
    }

    /// Every type name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parent.keys().map(String::as_str)
    }
}

fn is_valid_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_tree_has_the_spec_shape() {
        let t = TypeTree::built_in();
        assert!(t.is_runtime(SERVICE_UNAVAILABLE));
        assert!(t.is_runtime(SERVICE_TIMEOUT));
        assert!(t.is_runtime(SERVICE_RUNTIME));
        assert!(!t.is_runtime(SERVICE_BUSINESS));
        assert!(t.is_business(SERVICE_BUSINESS));
        assert!(!t.is_runtime("ConnectException"));
        assert!(!t.is_a(SERVICE_RUNTIME, SERVICE_UNAVAILABLE));
    }

    #[test]
    fn user_types_extend_any_node_in_any_order() {
        let mut t = TypeTree::built_in();
        let errors = t.add_all([
            ("EisDown", Some("EisConnectionLost")),
            ("EisConnectionLost", Some(SERVICE_UNAVAILABLE)),
            ("OrderRejected", Some(SERVICE_BUSINESS)),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(t.is_a("EisDown", SERVICE_UNAVAILABLE));
        assert!(t.is_runtime("EisDown"));
        assert!(t.is_business("OrderRejected"));
        assert_eq!(
            t.lineage("EisDown").collect::<Vec<_>>(),
            [
                "EisDown",
                "EisConnectionLost",
                SERVICE_UNAVAILABLE,
                SERVICE_RUNTIME
            ]
        );
    }

    #[test]
    fn unknown_parents_cycles_and_duplicates_are_reported_each() {
        let mut t = TypeTree::built_in();
        let mut errors = t.add_all([
            ("A", Some("B")),
            ("B", Some("A")),
            ("C", Some("Nope")),
            (SERVICE_TIMEOUT, None),
            ("9bad", None),
        ]);
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        let kinds: Vec<_> = errors.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                TypeError::InvalidName("9bad".into()),
                TypeError::Cycle("A".into()),
                TypeError::Cycle("B".into()),
                TypeError::UnknownParent {
                    name: "C".into(),
                    parent: "Nope".into()
                },
                TypeError::Duplicate(SERVICE_TIMEOUT.into()),
            ]
        );
        assert!(!t.contains("A") && !t.contains("C"));
    }

    #[test]
    fn add_refuses_what_add_all_refuses() {
        let mut t = TypeTree::built_in();
        assert_eq!(
            t.add("X", Some("X")),
            Err(TypeError::Cycle("X".to_string()))
        );
        assert!(t.add("X", Some(SERVICE_RUNTIME)).is_ok());
        assert_eq!(t.add("X", None), Err(TypeError::Duplicate("X".to_string())));
    }
}
