//! Message patterns: `*` matches any run of characters (including none),
//! every other character matches itself, and the pattern must cover the
//! whole message.

use std::fmt;

/// A compiled message pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The literal pieces between stars, in order.
    pieces: Vec<String>,
    starts_with_star: bool,
    ends_with_star: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let pieces: Vec<String> = pattern
            .split('*')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        Glob {
            pattern: pattern.to_string(),
            pieces,
            starts_with_star: pattern.starts_with('*'),
            ends_with_star: pattern.ends_with('*') && !pattern.is_empty(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Does the pattern match the whole of `text`?
    pub fn matches(&self, text: &str) -> bool {
        if !self.pattern.contains('*') {
            return self.pattern == text;
        }
        let mut rest = text;
        let mut pieces = self.pieces.as_slice();
        if !self.starts_with_star {
            match pieces.split_first() {
                Some((first, tail)) => {
                    let Some(after) = rest.strip_prefix(first.as_str()) else {
                        return false;
                    };
                    rest = after;
                    pieces = tail;
                }
                None => return rest.is_empty(),
            }
        }
        let last = if self.ends_with_star {
            None
        } else {
            match pieces.split_last() {
                Some((last, init)) => {
                    pieces = init;
                    Some(last)
                }
                // Pattern like "abc*" handled above; "*" with nothing after.
                None => None,
            }
        };
        // Middle pieces: leftmost occurrence is always safe for `*` globs.
        for piece in pieces {
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        match last {
            Some(last) => rest.len() >= last.len() && rest.ends_with(last.as_str()),
            None => true,
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).matches(t)
    }

    #[test]
    fn literal_patterns_match_the_whole_message_only() {
        assert!(m("connection refused", "connection refused"));
        assert!(!m("connection refused", "connection refused!"));
        assert!(!m("connection", "connection refused"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn star_matches_any_run_including_none() {
        assert!(m("*", ""));
        assert!(m("*", "anything at all"));
        assert!(m("**", "x"));
        assert!(m("*connection reset*", "connection reset"));
        assert!(m("*connection reset*", "read: connection reset by peer"));
        assert!(m("HTTP 5*", "HTTP 503"));
        assert!(!m("HTTP 5*", "an HTTP 503"));
        assert!(m("*503", "HTTP 503"));
        assert!(!m("*503", "HTTP 5030"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-c-b"));
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
    }

    #[test]
    fn other_characters_are_literal() {
        assert!(m("a?c", "a?c"));
        assert!(!m("a?c", "abc"));
        assert!(m("[x]", "[x]"));
        assert!(m("a.c", "a.c"));
        assert!(!m("a.c", "abc"));
    }

    /// Reference matcher: a straightforward dynamic programme over chars.
    fn reference(p: &str, t: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let t: Vec<char> = t.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
            for j in 1..=t.len() {
                dp[i][j] = if p[i - 1] == '*' {
                    dp[i - 1][j] || dp[i][j - 1]
                } else {
                    dp[i - 1][j - 1] && p[i - 1] == t[j - 1]
                };
            }
        }
        dp[p.len()][t.len()]
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_matcher(p in "[ab*é]{0,8}", t in "[abé]{0,10}") {
            prop_assert_eq!(Glob::new(&p).matches(&t), reference(&p, &t));
        }

        #[test]
        fn a_pattern_without_stars_matches_only_itself(p in "[a-z ]{0,12}", t in "[a-z ]{0,12}") {
            prop_assert_eq!(Glob::new(&p).matches(&t), p == t);
        }

        #[test]
        fn star_around_a_substring_matches_every_text_containing_it(
            pre in ".{0,6}", mid in "[^*]{0,6}", post in ".{0,6}"
        ) {
            let text = format!("{pre}{mid}{post}");
            let pattern = format!("*{mid}*");
            prop_assert!(Glob::new(&pattern).matches(&text));
        }
    }
}
