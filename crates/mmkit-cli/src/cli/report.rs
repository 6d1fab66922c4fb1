//! Reports that print as an aligned table for people or as JSON for programs.
//!
//! Every report command builds a [`Report`] of [`Section`]s of facts and prints it once, so the
//! human and `--json` outputs always carry the same facts.

use serde::Serialize;
use serde_json::Value;

/// One measured or observed fact: a stable key for JSON, a label and a rendering for people.
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    /// Stable snake_case key used in JSON.
    pub key: String,
    /// What a person reads in the left column.
    #[serde(skip)]
    pub label: String,
    /// The value for programs (numbers stay numbers).
    pub value: Value,
    /// The value for people (units, thousands separators, context).
    #[serde(skip)]
    pub text: String,
}

/// A titled group of facts, with free-text notes that explain them.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Stable key of the section.
    pub id: String,
    /// Title shown to people.
    pub title: String,
    /// The facts, in order.
    pub facts: Vec<Fact>,
    /// Explanations shown under the facts.
    pub notes: Vec<String>,
    /// Why the section could not be completed (then it has no facts), if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Facts for programs that people read inside another fact's text (`written in 8 ms` after
    /// a size): in the JSON's `facts` beside the others, no row of their own.
    #[serde(skip)]
    pub details: Vec<(String, Value)>,
}

impl Section {
    /// Starts an empty section.
    pub fn new(id: &str, title: &str) -> Self {
        Section {
            id: id.to_owned(),
            title: title.to_owned(),
            facts: Vec::new(),
            notes: Vec::new(),
            error: None,
            details: Vec::new(),
        }
    }

    /// A section that failed with `error` (one line): reported in its place, without facts.
    pub fn failed(id: &str, title: &str, error: &str) -> Self {
        Section { error: Some(error.to_owned()), ..Section::new(id, title) }
    }

    /// Adds a fact whose JSON value is `value` and whose human text is `text`.
    pub fn fact(&mut self, key: &str, label: &str, value: impl Into<Value>, text: impl Into<String>) {
        self.facts.push(Fact { key: key.to_owned(), label: label.to_owned(), value: value.into(), text: text.into() });
    }

    /// Adds a fact for programs whose human form is already in another fact's text (so that
    /// the JSON carries every fact the report prints): a key of `facts`, no row.
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.push((key.to_owned(), value.into()));
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The facts as a JSON object keyed by fact key, and `"error"` when the section failed.
    pub fn to_json(&self) -> Value {
        let mut facts = serde_json::Map::new();
        for f in &self.facts {
            facts.insert(f.key.clone(), f.value.clone());
        }
        for (key, value) in &self.details {
            facts.insert(key.clone(), value.clone());
        }
        let mut doc = serde_json::json!({ "id": self.id, "title": self.title, "facts": facts, "notes": self.notes });
        if let Some(e) = &self.error {
            doc["error"] = e.clone().into();
        }
        doc
    }

    /// Renders the section for people: a title, aligned `label  value` rows, then notes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("== {} ==\n", self.title));
        if let Some(e) = &self.error {
            out.push_str(&format!("  FAILED  {e}\n"));
        }
        let width = self.facts.iter().map(|f| f.label.chars().count()).max().unwrap_or(0);
        for f in &self.facts {
            out.push_str(&format!("  {:<width$}  {}\n", f.label, f.text, width = width));
        }
        for n in &self.notes {
            out.push_str(&format!("  - {n}\n"));
        }
        out
    }
}

/// Formats a duration in the most readable unit.
pub fn duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 10_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// How `t` compares with the baseline `base`: `2.46x faster` or `2.46x slower` (never
/// `0.41x faster`).
pub fn speed_against(base: std::time::Duration, t: std::time::Duration) -> String {
    let ratio = base.as_secs_f64() / t.as_secs_f64().max(1e-9);
    if ratio >= 1.0 {
        format!("{ratio:.2}x faster")
    } else {
        format!("{:.2}x slower", 1.0 / ratio.max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_say_faster_or_slower() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(speed_against(ms(505), ms(100)), "5.05x faster");
        assert_eq!(speed_against(ms(505), ms(1246)), "2.47x slower");
        assert_eq!(speed_against(ms(100), ms(100)), "1.00x faster");
    }

    #[test]
    fn render_aligns_labels() {
        let mut s = Section::new("x", "X");
        s.fact("a", "short", 1, "1");
        s.fact("b", "a longer label", 2, "2");
        let text = s.render();
        assert!(text.contains("  short           1\n"), "{text}");
        assert_eq!(s.to_json()["facts"]["b"], 2);
        assert!(s.to_json().get("error").is_none());
        s.detail("b_ns", 7);
        assert_eq!(s.render(), text, "a detail has no row");
        assert_eq!(s.to_json()["facts"]["b_ns"], 7);
    }

    #[test]
    fn failed_sections_show_their_error() {
        let s = Section::failed("x", "X", "mmap of /f failed: Operation not permitted (EPERM)");
        assert_eq!(s.render(), "== X ==\n  FAILED  mmap of /f failed: Operation not permitted (EPERM)\n");
        assert_eq!(s.to_json()["error"], "mmap of /f failed: Operation not permitted (EPERM)");
    }
}
