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

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

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
    let args = help_flag_after_help(std::env::args_os().collect());
    let cli = Cli::try_parse_from(args).unwrap_or_else(|err| cli::output::usage_error(err));
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

/// clap's `help` subcommand takes every word after it as a command name, so `mmkit help --help`
/// (or `mmkit mmio help -h`) was a usage error, "unrecognized subcommand '--help'". A `-h` or
/// `--help` among those words asks for help, as everywhere else: of `help` itself when it names
/// no command (`mmkit help help`), else of the command it names. Other command lines are
/// returned as they are.
fn help_flag_after_help(mut args: Vec<OsString>) -> Vec<OsString> {
    let is_help_flag = |a: &OsString| a == "-h" || a == "--help";
    let mut cmd = Cli::command();
    // Only where `help` is a subcommand: every word before it names a subcommand.
    let mut at = None;
    for (i, arg) in args.iter().enumerate().skip(1) {
        let Some(word) = arg.to_str() else { break };
        if word == "help" && cmd.has_subcommands() {
            at = Some(i);
            break;
        }
        match cmd.find_subcommand(word) {
            Some(sub) => cmd = sub.clone(),
            None => break,
        }
    }
    let Some(at) = at else { return args };
    if !args[at + 1..].iter().any(is_help_flag) {
        return args;
    }
    let mut rest: Vec<OsString> = args.split_off(at + 1).into_iter().filter(|a| !is_help_flag(a)).collect();
    if rest.is_empty() {
        rest.push("help".into());
    }
    args.extend(rest);
    args
}

#[cfg(test)]
mod tests {
    use super::help_flag_after_help;

    fn rewrite(line: &str) -> String {
        let args = line.split(' ').map(std::ffi::OsString::from).collect();
        help_flag_after_help(args).iter().map(|a| a.to_str().unwrap()).collect::<Vec<_>>().join(" ")
    }

    /// Regression: `mmkit help --help` was "unrecognized subcommand '--help'" (exit 2).
    #[test]
    fn a_help_flag_after_the_help_subcommand_asks_for_help() {
        assert_eq!(rewrite("mmkit help --help"), "mmkit help help");
        assert_eq!(rewrite("mmkit help -h"), "mmkit help help");
        assert_eq!(rewrite("mmkit help mmio --help"), "mmkit help mmio");
        assert_eq!(rewrite("mmkit mmio help -h"), "mmkit mmio help help");
        assert_eq!(rewrite("mmkit mmio help read --help"), "mmkit mmio help read");
        // Untouched: no help flag, or `help` where it is not the subcommand.
        for line in
            ["mmkit help", "mmkit help mmio", "mmkit residency help --help", "mmkit --help", "mmkit mmio read help"]
        {
            assert_eq!(rewrite(line), line);
        }
    }
}
