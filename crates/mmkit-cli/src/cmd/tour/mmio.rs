//! The tour's `mmio` section (placeholder until its issue lands).

use super::Args;
use crate::report::Section;

/// Builds the `mmio` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("mmio", "mmio");
    s.note("not implemented yet");
    Ok(s)
}
