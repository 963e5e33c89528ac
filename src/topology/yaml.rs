//! A YAML document as a tree of nodes that remember where they are.
//!
//! Built from the parser's events rather than through serde so that every
//! node, and every key of every mapping, keeps its line and column, and so
//! that a duplicate key is an error instead of a silent overwrite.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

impl Loc {
    fn from_span(span: &Span) -> Self {
        Loc {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A node of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar as written. `plain` is false for quoted and block scalars,
    /// which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (duplicates are errors).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain `~`, `null`, `Null`, `NULL`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of node this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax problem, or a duplicate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(source: &str) -> Result<Node, Vec<SyntaxError>> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(source) {
        match item {
            Ok((event, span)) => {
                if let Some(stop) = builder.event(event, span) {
                    return Err(vec![stop]);
                }
            }
            Err(e) => {
                return Err(vec![SyntaxError {
                    loc: Loc {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    message: e.info().to_string(),
                }])
            }
        }
    }
    if !builder.duplicates.is_empty() {
        return Err(builder.duplicates);
    }
    Ok(builder.root.unwrap_or(Node {
        loc: Loc { line: 1, col: 1 },
        value: Value::Map(Vec::new()),
    }))
}

enum Frame {
    Seq {
        loc: Loc,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        loc: Loc,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    duplicates: Vec<SyntaxError>,
}

impl Builder {
    /// Feeds one event; returns an error that stops parsing.
    fn event(&mut self, event: Event<'_>, span: Span) -> Option<SyntaxError> {
        let loc = Loc::from_span(&span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Some(SyntaxError {
                        loc,
                        message: "a topology file holds one YAML document; found a second `---`"
                            .into(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    loc,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                self.complete(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = Node {
                        loc,
                        value: node.value.clone(),
                    };
                    self.complete(node, 0);
                }
                None => {
                    return Some(SyntaxError {
                        loc,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                loc,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                loc,
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { loc, anchor, items }) => (
                        Node {
                            loc,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        loc,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            loc,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => return None,
                };
                self.complete(node, anchor);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        None
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.value == key.value) {
                        self.duplicates.push(SyntaxError {
                            loc: key.loc,
                            message: format!(
                                "duplicate key {} (first defined at line {})",
                                describe_key(&key),
                                first.loc.line
                            ),
                        });
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

fn describe_key(key: &Node) -> String {
    match &key.value {
        Value::Scalar { text, .. } => format!("`{text}`"),
        _ => format!("({})", key.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.value {
            Value::Scalar { text, .. } => text,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = "a: 1\nb:\n  c: [x, 'y']\n";
        let root = parse(doc).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        assert_eq!(entries[0].0.loc, Loc { line: 1, col: 1 });
        assert_eq!(entries[0].1.loc, Loc { line: 1, col: 4 });
        let Value::Map(inner) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(inner[0].0.loc, Loc { line: 3, col: 3 });
        let Value::Seq(items) = &inner[0].1.value else {
            panic!()
        };
        assert_eq!(scalar(&items[1]), "y");
        assert_eq!(items[1].loc, Loc { line: 3, col: 10 });
        assert!(matches!(items[1].value, Value::Scalar { plain: false, .. }));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_places() {
        let errors = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            errors,
            vec![SyntaxError {
                loc: Loc { line: 3, col: 1 },
                message: "duplicate key `a` (first defined at line 1)".into()
            }]
        );
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let errors = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].loc.line >= 1);
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = parse("base: &b {x: 1}\ncopy: *b\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
        assert_eq!(entries[1].1.loc.line, 2);
    }

    #[test]
    fn empty_document_is_an_empty_mapping_and_nulls_are_recognised() {
        assert_eq!(parse("").unwrap().value, Value::Map(vec![]));
        let root = parse("a: ~\nb:\nc: 'null'\n").unwrap();
        let Value::Map(e) = &root.value else { panic!() };
        assert!(e[0].1.is_null() && e[1].1.is_null());
        assert!(!e[2].1.is_null());
    }

    #[test]
    fn a_second_document_is_refused() {
        let errors = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(errors[0].message.contains("one YAML document"));
    }
}
