//! The tour's `file` section (placeholder until its issue lands).

use super::Args;
use crate::report::Section;

/// Builds the `file` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("file", "file");
    s.note("not implemented yet");
    Ok(s)
}
