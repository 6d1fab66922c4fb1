//! `--json` output: one document on stdout, pretty-printed as every command's `--json` is, or
//! one compact line per record for streams of events.

use std::io::Write;

use serde::Serialize;

use super::output::stdout_error;

/// Prints `value` as one pretty-printed JSON document and a newline.
pub fn print<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value).map_err(into_stdout_error)?;
    out.write_all(b"\n").map_err(stdout_error)?;
    out.flush().map_err(stdout_error)
}

/// Prints `value` as one line of compact JSON (a JSON Lines record).
pub fn print_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    super::output::write_bytes(&line)
}

/// A serializer's error is a stdout error when writing failed (so that a closed pipe stays a
/// quiet exit), else itself.
fn into_stdout_error(e: serde_json::Error) -> anyhow::Error {
    if e.is_io() {
        stdout_error(std::io::Error::from(e))
    } else {
        e.into()
    }
}
