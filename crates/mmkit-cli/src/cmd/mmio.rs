//! `mmkit mmio` (placeholder until its issue lands).

/// Subcommands of `mmkit mmio`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Placeholder.
    List,
}

/// Runs `mmkit mmio`.
pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("`mmkit mmio` is not implemented yet")
}
