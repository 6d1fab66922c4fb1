//! `mmkit elf` (placeholder until its issue lands).

/// Subcommands of `mmkit elf`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Placeholder.
    List,
}

/// Runs `mmkit elf`.
pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("`mmkit elf` is not implemented yet")
}
