//! `mmkit residency` (placeholder until its issue lands).

/// Arguments of `mmkit residency`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mmkit residency`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`mmkit residency` is not implemented yet")
}
