//! Failed file operations as mmkit's own errors, so that a message always names the operation,
//! the path and the errno: `open of /x failed: No such file or directory (ENOENT)`, never std's
//! bare `No such file or directory (os error 2)`.

// One of the modules with `unsafe`: maps the file the user names through mmkit's `unsafe` constructor.
#![allow(unsafe_code)]

use std::path::Path;

/// `e`, from `op` on `path`, as an [`mmkit::Error`] (`op of path failed: ... (EXXX)`); an error
/// without an errno (a short read, a zip's own error) keeps its message as the detail.
pub fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> anyhow::Error {
    os_error(op, e).with_path(path).into()
}

/// `e`, from `op` on `[offset, offset + len)` of `path`, as an [`mmkit::Error`]
/// (`op of path [offset 0x.., len 0x..] failed: ... (EXXX)`): where a write past `ulimit -f` or
/// a full disk stopped.
pub fn io_error_at(op: &'static str, path: &Path, offset: u64, len: u64, e: std::io::Error) -> anyhow::Error {
    os_error(op, e).with_path(path).with_range(offset, len).into()
}

/// `write_all` of `buf` to `file` (the file `path`, now at offset `at`), whose error names where
/// the refused write started and what was left of it (`ulimit -f`, a full disk), as
/// [`io_error_at`] writes it.
pub fn write_all_at(file: &mut std::fs::File, path: &Path, buf: &[u8], at: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut done = 0;
    while done < buf.len() {
        let offset = at + done as u64;
        let left = (buf.len() - done) as u64;
        match file.write(&buf[done..]) {
            Ok(0) => return Err(io_error_at("write", path, offset, left, std::io::ErrorKind::WriteZero.into())),
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error_at("write", path, offset, left, e)),
        }
    }
    Ok(())
}

/// `e`, from `op`, as an [`mmkit::Error`] without a path (`op failed: ... (EXXX)`), for an
/// operation whose path the caller's context names (a temporary file's random name).
pub fn io_error_no_path(op: &'static str, e: std::io::Error) -> anyhow::Error {
    os_error(op, e).into()
}

fn os_error(op: &'static str, e: std::io::Error) -> mmkit::Error {
    match errno_of(&e) {
        Some(errno) => mmkit::Error::from_raw_errno(op, errno),
        None => mmkit::Error::from_io(op, &e),
    }
}

/// The errno of `e`, also when it wraps the failed call's error in a message of its own:
/// `tempfile` makes `No space left on device (os error 28) at path "/d/.tmpX"` of it, a private
/// type whose `source()` does not lead back to the errno, so the errno is read from std's
/// ` (os error N)` in the message.
fn errno_of(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        let message = e.get_ref()?.to_string();
        let (_, after) = message.split_once(" (os error ")?;
        after.split_once(')')?.0.parse().ok()
    })
}

/// `.on(op, path)` on an `io::Result`: the error as [`io_error`] makes it.
pub trait IoResultExt<T> {
    /// Turns a failure of `op` on `path` into an error that names both and the errno.
    fn on(self, op: &'static str, path: &Path) -> anyhow::Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn on(self, op: &'static str, path: &Path) -> anyhow::Result<T> {
        self.map_err(|e| io_error(op, path, e))
    }
}

/// Makes a write past `RLIMIT_FSIZE` (`ulimit -f`) fail with `EFBIG` instead of killing the
/// process with `SIGXFSZ`: the command then reports the write that failed, names its file and
/// removes what it leaves half-written, as it does for `ENOSPC`. Called once, first in `main`.
pub fn ignore_file_size_signal() {
    // SAFETY: `SIG_IGN` runs no code of ours; the disposition of SIGXFSZ affects no memory.
    // It cannot fail for a valid signal number, and there is nothing to do if it did.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_operation_path_and_errno() {
        let e = std::fs::read("/nonexistent/x").on("read", Path::new("/nonexistent/x")).unwrap_err();
        assert_eq!(e.to_string(), "read of /nonexistent/x failed: No such file or directory (ENOENT)");
        let short = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        let e = io_error("read", Path::new("/f"), short);
        assert_eq!(e.to_string(), "read of /f failed: failed to fill whole buffer");
        // tempfile's errors carry the errno inside, with the path in the message.
        let e = tempfile::tempdir_in("/nonexistent").unwrap_err();
        assert_eq!(e.raw_os_error(), None, "{e}");
        let e = io_error_no_path("mkdir", e);
        assert_eq!(e.to_string(), "mkdir failed: No such file or directory (ENOENT)");
    }
}
