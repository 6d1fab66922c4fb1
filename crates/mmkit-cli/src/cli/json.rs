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

/// Appends `s` to `out` as a JSON string (quoted and escaped as RFC 8259 asks), for output
/// built by hand where a serializer per record would cost more than the record.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The bytes of `path` when it is not UTF-8, else `None`. A path's JSON string is lossy then
/// (U+FFFD for each invalid sequence); `residency`, `maps`, `pager` and `elf` (`source_bytes`)
/// put these bytes beside it, as an array of
/// numbers under the string's key + `_bytes` (`path_bytes`; `input_path_bytes` for `input`),
/// so that the JSON names the path exactly. A UTF-8 path has no such field.
pub fn path_bytes(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    match path.to_str() {
        Some(_) => None,
        None => Some(path.as_os_str().as_bytes().to_vec()),
    }
}

/// For output built by hand: appends `,\n{indent}"{key}": [b, ...]` when `path` is not UTF-8
/// (see [`path_bytes`]), nothing otherwise.
pub fn push_path_bytes(out: &mut Vec<u8>, indent: &str, key: &str, path: &std::path::Path) {
    let Some(bytes) = path_bytes(path) else { return };
    out.extend_from_slice(format!(",\n{indent}\"{key}\": [").as_bytes());
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b.to_string().as_bytes());
    }
    out.push(b']');
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

#[cfg(test)]
mod tests {
    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in ["plain", "/a \"q\" b\\c", "tab\tnl\nbell\u{7}", "é [anon:x]", ""] {
            let mut out = Vec::new();
            super::push_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
