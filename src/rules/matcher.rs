//! Rules and the matcher: does this exception chain, from an invocation of
//! this operation, mean the service is down?

use std::fmt;

use super::{ChainElement, ExceptionChain, Glob, TypeTree};

/// Which elements of a chain a rule examines, and in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChainMode {
    /// Every element, from the original cause outwards (the default).
    #[default]
    OriginalFirst,
    /// Only the top-level element.
    TopLevel,
    /// Every element, from the top level inwards.
    Wrapped,
    /// Only the original (innermost) element.
    OriginalOnly,
}

impl ChainMode {
    pub const ALL: [ChainMode; 4] = [
        ChainMode::OriginalFirst,
        ChainMode::TopLevel,
        ChainMode::Wrapped,
        ChainMode::OriginalOnly,
    ];

    /// The spelling used in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainMode::OriginalFirst => "original-first",
            ChainMode::TopLevel => "top-level",
            ChainMode::Wrapped => "wrapped",
            ChainMode::OriginalOnly => "original-only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Indexes (0 = top level) of the elements examined, in examination order.
    pub fn examined(self, chain_len: usize) -> Box<dyn Iterator<Item = usize>> {
        match self {
            ChainMode::OriginalFirst => Box::new((0..chain_len).rev()),
            ChainMode::Wrapped => Box::new(0..chain_len),
            ChainMode::TopLevel => Box::new((0..chain_len.min(1)).map(|_| 0)),
            ChainMode::OriginalOnly => Box::new(chain_len.checked_sub(1).into_iter()),
        }
    }
}

impl fmt::Display for ChainMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule applies within its service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Every operation of every interface of the service.
    #[default]
    Service,
    /// Every operation of one interface.
    Interface(String),
    /// One operation.
    Operation {
        interface: String,
        operation: String,
    },
}

impl Scope {
    /// Is an invocation of `interface.operation` inside this scope?
    pub fn contains(&self, interface: &str, operation: &str) -> bool {
        match self {
            Scope::Service => true,
            Scope::Interface(i) => i == interface,
            Scope::Operation {
                interface: i,
                operation: o,
            } => i == interface && o == operation,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Service => f.write_str("service"),
            Scope::Interface(i) => f.write_str(i),
            Scope::Operation {
                interface,
                operation,
            } => write!(f, "{interface}.{operation}"),
        }
    }
}

/// One exception specification of a store-and-forward block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The exception type the rule looks for.
    pub exception: String,
    /// The message pattern; `None` matches any message.
    pub message: Option<Glob>,
    pub chain: ChainMode,
    /// Also match types that descend from `exception`.
    pub subtypes: bool,
    pub scope: Scope,
}

impl Rule {
    /// A rule for `exception` with every other setting at its default.
    pub fn new(exception: impl Into<String>) -> Self {
        Rule {
            exception: exception.into(),
            message: None,
            chain: ChainMode::default(),
            subtypes: false,
            scope: Scope::Service,
        }
    }

    /// Does this single element satisfy the rule's type and message tests?
    pub fn matches_element(&self, types: &TypeTree, element: &ChainElement) -> bool {
        let type_ok = if self.subtypes {
            types.is_a(&element.type_name, &self.exception)
        } else {
            element.type_name == self.exception
        };
        type_ok
            && self
                .message
                .as_ref()
                .is_none_or(|g| g.matches(&element.message))
    }

    /// The index (0 = top level) of the first element, in this rule's chain
    /// order, that the rule matches. Scope is not considered here.
    pub fn find_in(&self, types: &TypeTree, chain: &ExceptionChain) -> Option<usize> {
        let elements = chain.elements();
        self.chain
            .examined(elements.len())
            .find(|&i| self.matches_element(types, &elements[i]))
    }
}

impl fmt::Display for Rule {
    /// `ServiceUnavailableException message="*reset*" chain=top-level subtypes scope=I.op`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exception)?;
        if let Some(m) = &self.message {
            write!(f, " message={:?}", m.as_str())?;
        }
        write!(f, " chain={}", self.chain)?;
        if self.subtypes {
            f.write_str(" subtypes")?;
        }
        if self.scope != Scope::Service {
            write!(f, " scope={}", self.scope)?;
        }
        Ok(())
    }
}

/// Why a chain matched: which rule, and which element of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchReport {
    /// Position of the rule in its store-and-forward block (0-based).
    pub rule_index: usize,
    /// The rule, written out.
    pub rule: String,
    /// Position of the matching element in the chain (0 = top level).
    pub element_index: usize,
    pub element: ChainElement,
}

impl fmt::Display for MatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule #{} ({}) matched chain element #{} ({})",
            self.rule_index + 1,
            self.rule,
            self.element_index,
            self.element
        )
    }
}

/// The rules of one store-and-forward block, tried in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Self {
        RuleSet { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule, in declaration order, whose scope contains the
    /// invocation and which matches the chain.
    pub fn first_match(
        &self,
        types: &TypeTree,
        interface: &str,
        operation: &str,
        chain: &ExceptionChain,
    ) -> Option<MatchReport> {
        self.rules
            .iter()
            .enumerate()
            .find_map(|(rule_index, rule)| {
                if !rule.scope.contains(interface, operation) {
                    return None;
                }
                let element_index = rule.find_in(types, chain)?;
                Some(MatchReport {
                    rule_index,
                    rule: rule.to_string(),
                    element_index,
                    element: chain.elements()[element_index].clone(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::{SERVICE_RUNTIME, SERVICE_UNAVAILABLE};
    use super::*;
    use proptest::prelude::*;

    fn chain(elements: &[(&str, &str)]) -> ExceptionChain {
        elements
            .iter()
            .map(|(t, m)| ChainElement::new(*t, *m))
            .collect()
    }

    fn http_503() -> ExceptionChain {
        chain(&[
            (SERVICE_UNAVAILABLE, "POST http://eis/employee: HTTP 503"),
            ("HttpStatusException", "503 Service Unavailable"),
        ])
    }

    fn tree() -> TypeTree {
        let mut t = TypeTree::built_in();
        t.add("EisConnectionLost", Some(SERVICE_UNAVAILABLE))
            .unwrap();
        t
    }

    #[test]
    fn examination_order_per_mode() {
        let order = |m: ChainMode, n| m.examined(n).collect::<Vec<_>>();
        assert_eq!(order(ChainMode::OriginalFirst, 3), [2, 1, 0]);
        assert_eq!(order(ChainMode::Wrapped, 3), [0, 1, 2]);
        assert_eq!(order(ChainMode::TopLevel, 3), [0]);
        assert_eq!(order(ChainMode::OriginalOnly, 3), [2]);
        for m in ChainMode::ALL {
            assert!(order(m, 0).is_empty(), "{m} on an empty chain");
        }
    }

    #[test]
    fn chain_modes_parse_from_their_spelling() {
        for m in ChainMode::ALL {
            assert_eq!(ChainMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(ChainMode::parse("original"), None);
    }

    #[test]
    fn default_rule_finds_a_wrapped_type_anywhere() {
        let t = tree();
        let wrapped = chain(&[
            (SERVICE_RUNTIME, "invocation failed"),
            (SERVICE_UNAVAILABLE, "eis down"),
            ("ConnectException", "connection refused"),
        ]);
        let rule = Rule::new(SERVICE_UNAVAILABLE);
        assert_eq!(rule.find_in(&t, &wrapped), Some(1));
        let top = Rule {
            chain: ChainMode::TopLevel,
            ..Rule::new(SERVICE_UNAVAILABLE)
        };
        assert_eq!(top.find_in(&t, &wrapped), None);
        let original = Rule {
            chain: ChainMode::OriginalOnly,
            ..Rule::new("ConnectException")
        };
        assert_eq!(original.find_in(&t, &wrapped), Some(2));
        let original_wrong = Rule {
            chain: ChainMode::OriginalOnly,
            ..Rule::new(SERVICE_UNAVAILABLE)
        };
        assert_eq!(original_wrong.find_in(&t, &wrapped), None);
    }

    #[test]
    fn original_first_and_wrapped_report_different_elements() {
        let t = tree();
        let twice = chain(&[
            (SERVICE_UNAVAILABLE, "outer"),
            (SERVICE_UNAVAILABLE, "inner"),
        ]);
        let of = Rule::new(SERVICE_UNAVAILABLE);
        let wr = Rule {
            chain: ChainMode::Wrapped,
            ..of.clone()
        };
        assert_eq!(of.find_in(&t, &twice), Some(1));
        assert_eq!(wr.find_in(&t, &twice), Some(0));
    }

    #[test]
    fn subtypes_only_when_asked() {
        let t = tree();
        let c = chain(&[("EisConnectionLost", "socket closed")]);
        assert_eq!(Rule::new(SERVICE_UNAVAILABLE).find_in(&t, &c), None);
        let with = Rule {
            subtypes: true,
            ..Rule::new(SERVICE_UNAVAILABLE)
        };
        assert_eq!(with.find_in(&t, &c), Some(0));
        let root = Rule {
            subtypes: true,
            ..Rule::new(SERVICE_RUNTIME)
        };
        assert_eq!(root.find_in(&t, &c), Some(0));
    }

    #[test]
    fn message_patterns_must_match_the_whole_message() {
        let t = tree();
        let rule = |p: &str| Rule {
            message: Some(Glob::new(p)),
            ..Rule::new(SERVICE_UNAVAILABLE)
        };
        let c = http_503();
        assert_eq!(rule("*HTTP 503").find_in(&t, &c), Some(0));
        assert_eq!(rule("HTTP 503").find_in(&t, &c), None);
        assert_eq!(rule("*").find_in(&t, &c), Some(0));
    }

    #[test]
    fn scope_limits_rules_to_their_interface_or_operation() {
        let t = tree();
        let rules = RuleSet::new(vec![
            Rule {
                scope: Scope::Operation {
                    interface: "EmployeeQuery".into(),
                    operation: "getEmployee".into(),
                },
                ..Rule::new("HttpStatusException")
            },
            Rule {
                scope: Scope::Interface("EmployeeUpdate".into()),
                ..Rule::new(SERVICE_UNAVAILABLE)
            },
        ]);
        let c = http_503();
        let m = rules
            .first_match(&t, "EmployeeQuery", "getEmployee", &c)
            .expect("operation-scoped rule");
        assert_eq!((m.rule_index, m.element_index), (0, 1));
        assert!(rules
            .first_match(&t, "EmployeeQuery", "listEmployees", &c)
            .is_none());
        let m = rules
            .first_match(&t, "EmployeeUpdate", "update", &c)
            .expect("interface-scoped rule");
        assert_eq!((m.rule_index, m.element_index), (1, 0));
        assert_eq!(
            m.to_string(),
            "rule #2 (ServiceUnavailableException chain=original-first scope=EmployeeUpdate) \
             matched chain element #0 (ServiceUnavailableException: POST http://eis/employee: HTTP 503)"
        );
    }

    #[test]
    fn first_rule_in_declaration_order_wins() {
        let t = tree();
        let rules = RuleSet::new(vec![
            Rule::new("HttpStatusException"),
            Rule::new(SERVICE_UNAVAILABLE),
        ]);
        assert_eq!(
            rules
                .first_match(&t, "I", "o", &http_503())
                .unwrap()
                .rule_index,
            0
        );
        assert!(RuleSet::default()
            .first_match(&t, "I", "o", &http_503())
            .is_none());
    }

    const TYPES: &[&str] = &[
        SERVICE_RUNTIME,
        SERVICE_UNAVAILABLE,
        "ServiceTimeoutException",
        "EisConnectionLost",
        "ConnectException",
    ];

    fn arb_chain() -> impl Strategy<Value = ExceptionChain> {
        prop::collection::vec((prop::sample::select(TYPES), "[ab]{0,3}"), 0..6).prop_map(|v| {
            v.into_iter()
                .map(|(t, m)| ChainElement::new(t, m))
                .collect()
        })
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            prop::sample::select(TYPES),
            prop::option::of("[ab*]{0,3}"),
            prop::sample::select(ChainMode::ALL.to_vec()),
            any::<bool>(),
        )
            .prop_map(|(t, m, chain, subtypes)| Rule {
                exception: t.to_string(),
                message: m.map(|m| Glob::new(&m)),
                chain,
                subtypes,
                scope: Scope::Service,
            })
    }

    proptest! {
        #[test]
        fn original_first_and_wrapped_always_agree(rule in arb_rule(), c in arb_chain()) {
            let t = tree();
            let of = Rule { chain: ChainMode::OriginalFirst, ..rule.clone() };
            let wr = Rule { chain: ChainMode::Wrapped, ..rule };
            prop_assert_eq!(of.find_in(&t, &c).is_some(), wr.find_in(&t, &c).is_some());
        }

        #[test]
        fn top_level_or_original_only_match_implies_wrapped_match(rule in arb_rule(), c in arb_chain()) {
            let t = tree();
            let wr = Rule { chain: ChainMode::Wrapped, ..rule.clone() };
            for narrow in [ChainMode::TopLevel, ChainMode::OriginalOnly] {
                let r = Rule { chain: narrow, ..rule.clone() };
                if r.find_in(&t, &c).is_some() {
                    prop_assert!(wr.find_in(&t, &c).is_some());
                }
            }
        }

        #[test]
        fn reported_element_satisfies_the_rule_and_is_in_the_examined_set(
            rule in arb_rule(), c in arb_chain()
        ) {
            let t = tree();
            if let Some(i) = rule.find_in(&t, &c) {
                prop_assert!(rule.matches_element(&t, &c.elements()[i]));
                prop_assert!(rule.chain.examined(c.len()).any(|j| j == i));
                // Nothing examined before it matched.
                for j in rule.chain.examined(c.len()).take_while(|&j| j != i) {
                    prop_assert!(!rule.matches_element(&t, &c.elements()[j]));
                }
            } else {
                for j in rule.chain.examined(c.len()) {
                    prop_assert!(!rule.matches_element(&t, &c.elements()[j]));
                }
            }
        }

        #[test]
        fn subtypes_only_widen_the_match(rule in arb_rule(), c in arb_chain()) {
            let t = tree();
            let exact = Rule { subtypes: false, ..rule.clone() };
            let wide = Rule { subtypes: true, ..rule };
            if exact.find_in(&t, &c).is_some() {
                prop_assert!(wide.find_in(&t, &c).is_some());
            }
        }
    }
}
