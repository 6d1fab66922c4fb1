//! One module per subcommand.

// Commands print through `crate::output` (`outln!`): `println!` panics on a closed pipe.
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod elf;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod maps;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod mmio;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod pager;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod residency;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod tour;
