//! The tour's `anon` section (placeholder until its issue lands).

use super::Args;
use crate::report::Section;

/// Builds the `anon` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("anon", "anon");
    s.note("not implemented yet");
    Ok(s)
}
