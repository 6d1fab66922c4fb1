//! The tour's `elf` section (placeholder until its issue lands).

use super::Args;
use crate::report::Section;

/// Builds the `elf` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("elf", "elf");
    s.note("not implemented yet");
    Ok(s)
}
