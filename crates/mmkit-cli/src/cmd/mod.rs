//! One module per subcommand.

pub mod elf;
pub mod maps;
pub mod mmio;
pub mod residency;
pub mod tour;
