//! What every subcommand shares, in one place (as ripgrep's `grep-cli` crate): printing and
//! exit codes ([`output`]), failed file operations ([`io`]), sizes ([`size`]), memory ([`memory`]), column tables ([`table`]), progress bars
//! ([`progress`]), JSON output ([`json`]) and the fact reports of `tour` ([`report`]).
//!
//! A subcommand module under `cmd/` uses these and never another subcommand's helpers.

#[macro_use]
pub mod output;
pub mod io;
pub mod json;
pub mod memory;
pub mod progress;
pub mod report;
pub mod size;
pub mod table;
