//! `mmkit maps` (placeholder until its issue lands).

/// Arguments of `mmkit maps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mmkit maps`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`mmkit maps` is not implemented yet")
}
