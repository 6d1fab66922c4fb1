//! The one way commands print, and the one way `mmkit` ends.
//!
//! `println!` panics when stdout fails: a closed pipe (`mmkit maps | head -1`) or a full disk
//! (`> /dev/full`). Commands print with [`outln!`] and [`out!`], which return an error instead;
//! [`finish`] ends the process: 0 on success and on a broken pipe (quietly, as ripgrep does),
//! `mmkit: <message>` and 1 on failure, `mmkit: <message>` and 2 on a usage error.

use std::fmt;
use std::io::Write;

/// Exit code of a command that did what was asked (also when the reader closed the pipe early).
pub const EXIT_SUCCESS: i32 = 0;
/// Exit code of a command that failed (after one `mmkit: <message>` line on stderr).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a command line clap refused.
pub const EXIT_USAGE: i32 = 2;

/// Prints to stdout like `print!`, returning `anyhow::Result<()>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to stdout like `println!`, returning `anyhow::Result<()>` instead of panicking.
macro_rules! outln {
    () => { $crate::cli::output::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints `mmkit: warning: <message>` to stderr like `eprintln!`, without panicking when stderr
/// is closed.
macro_rules! warn_line {
    ($($arg:tt)*) => { $crate::cli::output::warn(format_args!($($arg)*)) };
}

/// Prints `mmkit: <message>` to stderr (a note, not an error), without panicking when stderr
/// is closed.
macro_rules! note_line {
    ($($arg:tt)*) => { $crate::cli::output::note(format_args!($($arg)*)) };
}

/// Writing to stdout failed.
#[derive(Debug)]
pub struct StdoutError(std::io::Error);

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(errno) => write!(
                f,
                "write to stdout failed: {} ({})",
                mmkit::error::strerror(errno),
                mmkit::error::errno_name(errno)
            ),
            None => write!(f, "write to stdout failed: {}", self.0),
        }
    }
}

impl std::error::Error for StdoutError {}

/// Writes formatted text to stdout (what [`out!`] and [`outln!`] call).
pub fn write_fmt(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    std::io::stdout().lock().write_fmt(args).map_err(|e| StdoutError(e).into())
}

/// Writes `bytes` to stdout as they are (for output built in a buffer).
pub fn write_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    std::io::stdout().lock().write_all(bytes).map_err(|e| StdoutError(e).into())
}

/// Wraps a failed write to stdout so that [`finish`] knows it (a broken pipe is a quiet exit).
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    StdoutError(e).into()
}

/// Writes `mmkit: warning: <message>` to stderr (what [`warn_line!`] calls); a failing stderr
/// loses the warning, nothing more.
pub fn warn(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "mmkit: warning: {}", printable(args));
}

/// A message for stderr without raw control characters: a path in it may be a name another
/// user chose (found in a walk), as [`crate::cli::table::printable`] writes it on stdout.
fn printable(args: fmt::Arguments<'_>) -> String {
    crate::cli::table::printable(&args.to_string()).into_owned()
}

/// Writes `mmkit: <message>` to stderr (what [`note_line!`] calls).
pub fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "mmkit: {}", printable(args));
}

/// Ends the process with the outcome of a command: flushes stdout, then exits 0, or prints
/// `mmkit: <error with causes>` and exits 1. A broken pipe on stdout is a quiet exit 0: the
/// reader has all it wanted.
pub fn finish(result: anyhow::Result<()>) -> ! {
    let result = result.and_then(|()| std::io::stdout().flush().map_err(|e| StdoutError(e).into()));
    match result {
        Ok(()) => std::process::exit(EXIT_SUCCESS),
        Err(err) if is_broken_pipe(&err) => std::process::exit(EXIT_SUCCESS),
        Err(err) => fail(EXIT_FAILURE, &format!("{err:#}"), None),
    }
}

/// Whether `err` is a write to stdout that failed because the reader closed the pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<StdoutError>().is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Ends the process after clap refused the command line: help and version print as usual
/// (exit 0); anything else is one `mmkit: <message>` line, clap's usage line, and exit 2.
pub fn usage_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A reader that closed the pipe early is a success, as for every report; any other
            // failed write (`--help > /dev/full`) is a failure, as for every report.
            let text = err.render().to_string();
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    fail(EXIT_FAILURE, &format!("{:#}", crate::cli::io::io_error_no_path("write to stdout", e)), None)
                }
                _ => std::process::exit(EXIT_SUCCESS),
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let text = err.render().to_string();
            let usage = text.lines().find(|l| l.starts_with("Usage:")).map(str::to_owned);
            fail(EXIT_USAGE, "a subcommand is required (see --help)", usage.as_deref())
        }
        _ => {
            let (message, usage) = one_line(&err.render().to_string());
            fail(EXIT_USAGE, &message, usage.as_deref())
        }
    }
}

/// clap's rendered error as one message line (without `error: `) and its `Usage:` line.
fn one_line(text: &str) -> (String, Option<String>) {
    let mut message = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") {
            usage = Some(line.to_owned());
        } else if usage.is_none() && !line.is_empty() && !line.starts_with("For more information") {
            message.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    (message.join(" "), usage)
}

/// Prints `mmkit: <message>` (and an optional second line) to stderr and exits with `code`.
fn fail(code: i32, message: &str, then: Option<&str>) -> ! {
    let mut err = std::io::stderr().lock();
    // Nothing is left to tell anyone when stderr itself fails.
    let _ = writeln!(err, "mmkit: {}", printable(format_args!("{message}")));
    if let Some(line) = then {
        let _ = writeln!(err, "{line}");
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let text = "error: the following required arguments were not provided:\n  --uio <N>\n\n\
                    Usage: mmkit mmio irq --uio <N>\n\nFor more information, try '--help'.\n";
        let (message, usage) = one_line(text);
        assert_eq!(message, "the following required arguments were not provided: --uio <N>");
        assert_eq!(usage.as_deref(), Some("Usage: mmkit mmio irq --uio <N>"));
        let (message, usage) =
            one_line("error: invalid value 'x' for '<PID>': bad\n\nFor more information, try '--help'.\n");
        assert_eq!((message.as_str(), usage), ("invalid value 'x' for '<PID>': bad", None));
    }

    #[test]
    fn stdout_errors_name_the_errno() {
        let e = StdoutError(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.to_string(), "write to stdout failed: No space left on device (ENOSPC)");
        let broken: anyhow::Error = StdoutError(std::io::Error::from_raw_os_error(libc::EPIPE)).into();
        assert!(is_broken_pipe(&broken.context("printing the table")));
    }
}
