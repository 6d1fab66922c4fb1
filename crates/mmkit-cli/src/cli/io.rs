//! Failed file operations as mmkit's own errors, so that a message always names the operation,
//! the path and the errno: `open of /x failed: No such file or directory (ENOENT)`, never std's
//! bare `No such file or directory (os error 2)`.

use std::path::Path;

/// `e`, from `op` on `path`, as an [`mmkit::Error`] (`op of path failed: ... (EXXX)`); an error
/// without an errno (a short read, a zip's own error) keeps its message as the detail.
pub fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> anyhow::Error {
    let err = match e.raw_os_error() {
        Some(errno) => mmkit::Error::from_raw_errno(op, errno),
        None => mmkit::Error::new(op, io_kind(e.kind())).with_detail(e.to_string()),
    };
    err.with_path(path).into()
}

fn io_kind(kind: std::io::ErrorKind) -> mmkit::ErrorKind {
    match kind {
        std::io::ErrorKind::UnexpectedEof => mmkit::ErrorKind::Truncated,
        std::io::ErrorKind::Unsupported => mmkit::ErrorKind::Unsupported,
        _ => mmkit::ErrorKind::InvalidArgument,
    }
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
    }
}
