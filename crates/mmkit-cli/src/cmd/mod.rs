//! One module per subcommand.

pub mod elf;
pub mod maps;
pub mod mmio;
pub mod pager;
pub mod residency;
pub mod tour;
