//! `mmkit`: a tour of mmap on this machine, and tools to see and measure mapped memory.
//!
//! The binary is thin: each subcommand lives in `cmd/<name>.rs` and calls the libraries.
//! Exit codes: 0 success (and a reader that closed the pipe early), 1 failure, 2 usage error;
//! every failure is one `mmkit: <message>` line on stderr (see [`cli::output`]). A loaded
//! library's code that crashes ends the process with its signal (128 + N), as in any program.

// `unsafe` only in the modules that say `#![allow(unsafe_code)]`: those that call loaded
// code or mmkit's `unsafe` constructors on the user's behalf.
#![deny(unsafe_code)]

#[macro_use]
mod cli;
mod cmd;

use clap::{Parser, Subcommand};

/// The whole of mmap: file-backed, anonymous and device mappings, and the tools to see them.
#[derive(Debug, Parser)]
#[command(
    name = "mmkit",
    version,
    about,
    propagate_version = true,
    after_help = "Exit status: 0 success (also when the reader closes the pipe early, as `mmkit maps | head -1`), \
                  1 failure (said on stderr as `mmkit: <error>`, naming the operation, path and errno), \
                  2 usage error (a bad argument)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Demonstrate and measure mmap on this machine (the main job).
    Tour(cmd::tour::Args),
    /// Page-cache residency of files (a vmtouch/fincore peer): count, touch, evict, lock.
    Residency(cmd::residency::Args),
    /// A process's mappings with their memory cost (a `pmap -X` peer).
    Maps(cmd::maps::Args),
    /// Plan, load and call into ELF shared objects, from files or APK entries.
    #[command(subcommand)]
    Elf(cmd::elf::Command),
    /// Read and write device registers (UIO, PCI sysfs, /dev/mem), list devices, wait for IRQs.
    #[command(subcommand)]
    Mmio(cmd::mmio::Command),
    /// Pack files into the zstd seekable format; report a snapshot's or seekable file's pages.
    #[command(subcommand)]
    Pager(cmd::pager::Command),
}

fn main() {
    cli::io::ignore_file_size_signal();
    let cli = Cli::try_parse().unwrap_or_else(|err| cli::output::usage_error(err));
    let result = match cli.command {
        Command::Tour(args) => cmd::tour::run(args),
        Command::Residency(args) => cmd::residency::run(args),
        Command::Maps(args) => cmd::maps::run(args),
        Command::Elf(command) => cmd::elf::run(command),
        Command::Mmio(command) => cmd::mmio::run(command),
        Command::Pager(command) => cmd::pager::run(command),
    };
    cli::output::finish(result)
}
