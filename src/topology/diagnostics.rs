//! Problems found in a topology file, each with where it is and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Loc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted, but something in it is probably not what was meant.
    Warning,
}

/// One problem, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// ```text
    /// error: unknown exception type `ServiceUnavailable`
    ///   --> topology/hr.yaml:14:22
    ///   = hint: did you mean `ServiceUnavailableException`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}: {}\n  --> {}:{}",
            self.message,
            self.file.display(),
            self.loc
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects every problem of one file.
#[derive(Debug)]
pub struct Diagnostics {
    file: PathBuf,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Diagnostics {
            file: file.to_path_buf(),
            items: Vec::new(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn error(&mut self, loc: Loc, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, loc, message.into())
    }

    pub fn warning(&mut self, loc: Loc, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, loc, message.into())
    }

    fn push(&mut self, severity: Severity, loc: Loc, message: String) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            loc,
            message,
            hint: None,
        });
        self.items.last_mut().expect("just pushed")
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Every problem, sorted by place in the file.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.loc, d.severity));
        self.items
    }
}

impl Diagnostic {
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The closest candidate to `word`, if one is close enough to be a typo.
///
/// A candidate is close when it is a few edits away, or when one of the
/// two starts with the other (`ServiceUnavailable` for
/// `ServiceUnavailableException`).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let lc = c.to_lowercase();
            let distance = edit_distance(&word, &lc);
            let prefix = word.len() >= 5 && (lc.starts_with(&word) || word.starts_with(&lc));
            (distance <= limit || prefix).then_some((distance, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` or a list of what is allowed.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["store_and_forward", "binding", "interfaces"];
        assert_eq!(
            did_you_mean("store_and_foward", names),
            Some("store_and_forward")
        );
        assert_eq!(did_you_mean("Binding", names), Some("binding"));
        assert_eq!(did_you_mean("zzz", names), None);
        assert_eq!(
            did_you_mean(
                "ServiceUnavailable",
                ["ServiceUnavailableException", "ServiceTimeoutException"]
            ),
            Some("ServiceUnavailableException")
        );
        assert_eq!(suggest("zzz", &["a", "b"]), "expected one of: a, b");
    }

    #[test]
    fn renders_place_and_hint() {
        let mut d = Diagnostics::new(Path::new("t.yaml"));
        d.error(Loc { line: 3, col: 5 }, "bad thing")
            .hint("do this");
        d.warning(Loc { line: 1, col: 1 }, "odd thing");
        assert!(d.has_errors());
        let all = d.into_sorted();
        assert_eq!(all[0].severity, Severity::Warning);
        assert_eq!(
            all[1].to_string(),
            "error: bad thing\n  --> t.yaml:3:5\n  = hint: do this"
        );
    }
}
