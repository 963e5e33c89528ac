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
    /// What to do about it, when the cause is clear.
    pub hint: Option<String>,
}

impl SyntaxError {
    fn new(loc: Loc, message: impl Into<String>) -> Self {
        SyntaxError {
            loc,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
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
                let at = Loc {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                };
                return Err(explain(source, &builder.stack, at, e.info()));
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
        /// Where it starts, in characters from the start of the source.
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        loc: Loc,
        /// Where it starts, in characters from the start of the source.
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

impl Frame {
    fn loc_and_start(&self) -> (Loc, usize) {
        match self {
            Frame::Seq { loc, start, .. } | Frame::Map { loc, start, .. } => (*loc, *start),
        }
    }
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
                    return Some(SyntaxError::new(
                        loc,
                        "a topology file holds one YAML document; found a second `---`",
                    ));
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
                None => return Some(SyntaxError::new(loc, "alias to an unknown anchor")),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                loc,
                start: span.start.index(),
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                loc,
                start: span.start.index(),
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        loc, anchor, items, ..
                    }) => (
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
                        self.duplicates.push(SyntaxError::new(
                            key.loc,
                            format!(
                                "duplicate key {} (first defined at line {})",
                                describe_key(&key),
                                first.loc.line
                            ),
                        ));
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

/// The error for the parser's complaint `info` at `at`, placed at its
/// cause when that is clear: a tab in the indentation, or a flow mapping or
/// sequence left open (`stack` is what was open when the parser stopped).
fn explain(source: &str, stack: &[Frame], at: Loc, info: &str) -> Vec<SyntaxError> {
    if let Some(tab) = indenting_tab(source, at, info.contains("tab")) {
        return vec![SyntaxError::new(
            tab,
            format!("line {} is indented with a tab ({info})", tab.line),
        )
        .hint("YAML does not allow tabs for indentation: use spaces")];
    }
    let unclosed: Vec<SyntaxError> = stack
        .iter()
        .filter_map(|frame| {
            let (loc, start) = frame.loc_and_start();
            let offset = source.char_indices().nth(start).map(|(i, _)| i)?;
            let open = source[offset..].chars().next()?;
            let (what, close, block) = match open {
                '{' => ("flow mapping", '}', "indented `key: value` lines"),
                '[' => ("flow sequence", ']', "indented `- item` lines"),
                _ => return None,
            };
            (!flow_closes(&source[offset..])).then(|| {
                SyntaxError::new(
                    loc,
                    format!(
                        "this `{open}` opens a {what} that is never closed (the parser stopped at line {}, column {}: {info})",
                        at.line, at.col
                    ),
                )
                .hint(format!(
                    "close it with `{close}`, or write it as {block} without brackets"
                ))
            })
        })
        .collect();
    if !unclosed.is_empty() {
        return unclosed;
    }
    let error = SyntaxError::new(at, info);
    if info.contains("expected ',' or '}'") {
        vec![error.hint("separate the entries of a flow mapping `{ … }` with `,`")]
    } else if info.contains("expected ',' or ']'") {
        vec![error.hint("separate the items of a flow sequence `[ … ]` with `,`")]
    } else {
        vec![error]
    }
}

/// The first tab in the indentation of the line of `at`, of the next line,
/// or of the one before (where the parser may notice it); the line of `at`
/// only unless `tab_reported`.
fn indenting_tab(source: &str, at: Loc, tab_reported: bool) -> Option<Loc> {
    let lines: Vec<&str> = source.lines().collect();
    let candidates = if tab_reported {
        vec![at.line, at.line + 1, at.line.saturating_sub(1)]
    } else {
        vec![at.line]
    };
    candidates.into_iter().find_map(|line| {
        let text = lines.get(line.checked_sub(1)?)?;
        let col = text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .position(|c| c == '\t')?;
        Some(Loc { line, col: col + 1 })
    })
}

/// Does the bracket `text` starts with have its closing bracket? Counts
/// brackets, skipping quoted scalars and comments, as flow context reads
/// them.
fn flow_closes(text: &str) -> bool {
    let mut depth = 0usize;
    let mut chars = text.chars();
    // A quote opens a quoted scalar only where a scalar may start.
    let mut scalar_may_start = true;
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return true;
                }
            }
            '"' if scalar_may_start => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '"' if !escaped => break,
                        '\\' => escaped = !escaped,
                        _ => escaped = false,
                    }
                }
            }
            '\'' if scalar_may_start => {
                // Inside, `''` is a quote, not the end.
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.clone().next() != Some('\'') {
                            break;
                        }
                        chars.next();
                    }
                }
            }
            '#' if scalar_may_start => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
        scalar_may_start = c.is_whitespace() || matches!(c, '{' | '[' | ',' | ':');
    }
    false
}

/// `bytes` as UTF-8, or an error at each line where they are not.
pub fn utf8(bytes: &[u8]) -> Result<&str, Vec<SyntaxError>> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text);
    }
    let mut errors: Vec<SyntaxError> = Vec::new();
    let (mut line, mut col) = (1, 1);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' {
                (line, col) = (line + 1, 1);
            } else {
                col += 1;
            }
        }
        let invalid = chunk.invalid();
        if !invalid.is_empty() {
            if errors.last().is_none_or(|e| e.loc.line != line) {
                let shown: Vec<String> = invalid.iter().map(|b| format!("0x{b:02x}")).collect();
                errors.push(
                    SyntaxError::new(
                        Loc { line, col },
                        format!(
                            "invalid UTF-8 (byte {}): a topology file must be UTF-8 text",
                            shown.join(" ")
                        ),
                    )
                    .hint("save the file as UTF-8 (from Latin-1: `iconv -f latin1 -t utf-8`)"),
                );
            }
            // An invalid sequence stands for one character.
            col += 1;
        }
    }
    Err(errors)
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
            vec![SyntaxError::new(
                Loc { line: 3, col: 1 },
                "duplicate key `a` (first defined at line 1)"
            )]
        );
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let errors = parse("a: 1\nb: c: d\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].loc, Loc { line: 2, col: 5 });
    }

    fn one_error(source: &str) -> SyntaxError {
        let mut errors = parse(source).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn a_tab_in_the_indentation_is_reported_where_it_is() {
        for (source, line, col) in [
            ("a:\n\tb: 1\n", 2, 1),
            ("a:\n  b: 1\n  \tc: 2\n", 3, 3),
            // Noticed at the end of the line before.
            ("a:\n  b: 1\n \tc: 2\n", 3, 2),
            // After a block scalar.
            ("a: |\n  x\n\ty: 1\n", 3, 1),
        ] {
            let e = one_error(source);
            assert_eq!(e.loc, Loc { line, col }, "{source:?}: {}", e.message);
            assert!(e.message.contains("indented with a tab"), "{}", e.message);
            assert_eq!(
                e.hint.as_deref(),
                Some("YAML does not allow tabs for indentation: use spaces")
            );
        }
        // A tab inside a value or a comment is no error.
        assert!(parse("a: \"x\ty\"\nb: 1 # \tc\n").is_ok());
    }

    #[test]
    fn an_unclosed_bracket_is_reported_where_it_opens() {
        for (source, line, col, open) in [
            ("a: { b: 1\nc: 2\n", 1, 4, '{'),
            ("a: [1, 2\nb: 3\n", 1, 4, '['),
            (
                "a:\n  b: { c: \"}\", d: '}' }\n  e: { f: 1\n  g: 2\n",
                3,
                6,
                '{',
            ),
            ("a: { b: 1, # }\n  c: 2\n", 1, 4, '{'),
        ] {
            let e = one_error(source);
            assert_eq!(e.loc, Loc { line, col }, "{source:?}: {}", e.message);
            assert!(
                e.message
                    .starts_with(&format!("this `{open}` opens a flow")),
                "{}",
                e.message
            );
            assert!(e.message.contains("never closed"), "{}", e.message);
            assert!(e.hint.unwrap().starts_with("close it with"));
        }
        // Two left open: both.
        let errors = parse("a: { b: { c: 1\nd: 2\n").unwrap_err();
        let places: Vec<Loc> = errors.iter().map(|e| e.loc).collect();
        assert_eq!(
            places,
            vec![Loc { line: 1, col: 4 }, Loc { line: 1, col: 9 }]
        );
    }

    #[test]
    fn a_missing_comma_in_a_closed_flow_mapping_stays_where_the_parser_saw_it() {
        let e = one_error("a: { b: 1\n  c: 2 }\n");
        assert_eq!(e.loc, Loc { line: 2, col: 4 });
        assert_eq!(
            e.hint.as_deref(),
            Some("separate the entries of a flow mapping `{ … }` with `,`")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_reported_at_their_place() {
        assert_eq!(utf8(b"a: caf\xc3\xa9\n").unwrap(), "a: café\n");
        let errors = utf8(b"a: 1\n# caf\xe9 \xe9\nb: \xc3\xa9\xff\n").unwrap_err();
        let places: Vec<Loc> = errors.iter().map(|e| e.loc).collect();
        // One per line; columns count characters.
        assert_eq!(
            places,
            vec![Loc { line: 2, col: 6 }, Loc { line: 3, col: 5 }]
        );
        assert!(
            errors[0].message.contains("byte 0xe9"),
            "{}",
            errors[0].message
        );
        assert!(errors[0].hint.as_deref().unwrap().contains("UTF-8"));
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
