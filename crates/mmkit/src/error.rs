//! The one error type of mmkit.
//!
//! Every failure names the operation, the path (when there is one), the address or byte range,
//! and the errno, so that a message alone tells what went wrong:
//!
//! ```text
//! mmap of /data/app.apk [offset 0x1000, len 0x3000] failed: Permission denied (EACCES)
//! ```

#![deny(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The kernel refused the call; [`Error::errno`] says why.
    Os,
    /// A byte range is outside the mapping, the file or the reservation.
    OutOfBounds,
    /// An address, offset or length is not aligned as the operation requires.
    Unaligned,
    /// An argument makes no sense (zero length where one is needed, conflicting options...).
    InvalidArgument,
    /// A typed view does not fit: wrong size or alignment for the type.
    Layout,
    /// The file was truncated under a mapping: the pages past its end cannot be read.
    Truncated,
    /// The kernel or the machine lacks the feature (and no fallback was possible).
    Unsupported,
    /// A safe map was refused because the file cannot be proven immutable (a memfd without
    /// the `WRITE` and `SHRINK` seals, a file without fs-verity): map it with the `unsafe`
    /// constructors if the caller can vouch for it.
    NotSafe,
}

/// An mmkit error: operation, path, range and errno. See the [module docs](self).
#[derive(Clone)]
pub struct Error(Box<Inner>);

/// The fields of an [`Error`], boxed so that `Result<T, Error>` stays one pointer wide.
#[derive(Clone)]
struct Inner {
    op: Cow<'static, str>,
    kind: ErrorKind,
    errno: Option<i32>,
    path: Option<PathBuf>,
    addr: Option<usize>,
    range: Option<(u64, u64)>,
    detail: Option<String>,
    signal: Option<i32>,
}

/// `Result` with mmkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` from operation `op`, with no errno.
    pub fn new(op: impl Into<Cow<'static, str>>, kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            op: op.into(),
            kind,
            errno: None,
            path: None,
            addr: None,
            range: None,
            detail: None,
            signal: None,
        }))
    }

    /// A kernel error from operation `op` (e.g. `"mmap"`).
    pub fn os(op: impl Into<Cow<'static, str>>, errno: rustix::io::Errno) -> Self {
        Self::from_raw_errno(op, errno.raw_os_error())
    }

    /// A kernel error from operation `op` with a raw errno value.
    pub fn from_raw_errno(op: impl Into<Cow<'static, str>>, errno: i32) -> Self {
        let mut e = Self::new(op, ErrorKind::Os);
        e.0.errno = Some(errno);
        e
    }

    /// A failed `std` I/O operation `op` (`std::fs`, `std::io`): its errno when it has one,
    /// else its kind (a short read is [`ErrorKind::Truncated`]) with its message as the detail.
    pub fn from_io(op: impl Into<Cow<'static, str>>, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::from_raw_errno(op, errno),
            None => {
                let kind = match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => ErrorKind::Truncated,
                    std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
                    _ => ErrorKind::InvalidArgument,
                };
                Self::new(op, kind).with_detail(e.to_string())
            }
        }
    }

    /// A kernel error from the last OS error of this thread.
    pub fn last_os_error(op: impl Into<Cow<'static, str>>) -> Self {
        Self::from_raw_errno(op, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// Adds the path the operation was about.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.path = Some(path.into());
        self
    }

    /// Adds the path if there is one.
    pub fn with_opt_path(mut self, path: Option<&Path>) -> Self {
        if let Some(p) = path {
            self.0.path = Some(p.to_owned());
        }
        self
    }

    /// Adds the byte range `[offset, offset + len)` the operation was about.
    pub fn with_range(mut self, offset: u64, len: u64) -> Self {
        self.0.range = Some((offset, len));
        self
    }

    /// Adds the address the operation was about.
    pub fn with_addr(mut self, addr: usize) -> Self {
        self.0.addr = Some(addr);
        self
    }

    /// Adds an explanation (shown after the errno, or instead of it).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Replaces the kind (e.g. an `EINVAL` that means "unsupported" here).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// Records the signal that ended a child process (see [`crate::process`]).
    pub fn with_signal(mut self, signal: i32) -> Self {
        self.0.signal = Some(signal);
        self
    }

    /// The signal that killed a probed child process, if that is what failed.
    pub fn signal(&self) -> Option<i32> {
        self.0.signal
    }

    /// The operation that failed (`"mmap"`, `"madvise(MADV_HUGEPAGE)"`, ...).
    pub fn operation(&self) -> &str {
        &self.0.op
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The raw errno, when the kernel refused the call.
    pub fn errno(&self) -> Option<i32> {
        self.0.errno
    }

    /// The path the operation was about, if any.
    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// The byte range `(offset, len)` the operation was about, if any.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.0.range
    }

    /// The explanation added to the error, if any (what is wrong beyond the errno).
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The address the operation was about, if any.
    pub fn addr(&self) -> Option<usize> {
        self.0.addr
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.op)?;
        match &self.0.path {
            Some(p) if p.as_os_str().is_empty() => f.write_str(" of \"\" (an empty path)")?,
            Some(p) => write!(f, " of {}", p.display())?,
            None => {}
        }
        if let Some(a) = self.0.addr {
            write!(f, " at {a:#x}")?;
        }
        if let Some((off, len)) = self.0.range {
            write!(f, " [offset {off:#x}, len {len:#x}]")?;
        }
        f.write_str(" failed: ")?;
        match (self.0.errno, &self.0.detail) {
            (Some(e), Some(d)) => write!(f, "{} ({}): {d}", strerror(e), errno_name(e)),
            (Some(e), None) => write!(f, "{} ({})", strerror(e), errno_name(e)),
            (None, Some(d)) => f.write_str(d),
            (None, None) => write!(f, "{:?}", self.0.kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is the useful part; `unwrap()` on an mmkit error should print it.
        write!(f, "Error({self}, kind: {:?})", self.0.kind)
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.0.kind {
            ErrorKind::Os => {
                return match e.0.errno {
                    Some(n) => std::io::Error::new(std::io::Error::from_raw_os_error(n).kind(), e.to_string()),
                    None => std::io::Error::other(e.to_string()),
                }
            }
            ErrorKind::OutOfBounds | ErrorKind::Unaligned | ErrorKind::InvalidArgument | ErrorKind::Layout => {
                std::io::ErrorKind::InvalidInput
            }
            ErrorKind::Truncated => std::io::ErrorKind::UnexpectedEof,
            ErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
            ErrorKind::NotSafe => std::io::ErrorKind::PermissionDenied,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// The system's message for `errno`, without std's ` (os error N)` suffix.
pub fn strerror(errno: i32) -> String {
    let msg = std::io::Error::from_raw_os_error(errno).to_string();
    match msg.rfind(" (os error ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// The symbolic name of `errno` (`"EACCES"`), or `"errno N"` for unknown values.
pub fn errno_name(errno: i32) -> Cow<'static, str> {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        crate::sys::kconst::EHWPOISON => "EHWPOISON",
        libc::ENOTTY => "ENOTTY",
        libc::ELOOP => "ELOOP",
        _ => return Cow::Owned(format!("errno {errno}")),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_path_range_and_errno() {
        let e = Error::from_raw_errno("mmap", libc::EACCES).with_path("/data/app.apk").with_range(0x1000, 0x3000);
        assert_eq!(
            e.to_string(),
            "mmap of /data/app.apk [offset 0x1000, len 0x3000] failed: Permission denied (EACCES)"
        );
        assert_eq!(e.errno(), Some(libc::EACCES));
        assert_eq!(e.kind(), ErrorKind::Os);
        assert_eq!(e.range(), Some((0x1000, 0x3000)));
    }

    #[test]
    fn an_empty_path_is_named_as_one() {
        // It read "stat of  failed" (mmkit elf plan '!/x').
        let e = Error::from_raw_errno("stat", libc::ENOENT).with_path("");
        assert_eq!(e.to_string(), "stat of \"\" (an empty path) failed: No such file or directory (ENOENT)");
    }

    #[test]
    fn non_os_errors_read_well() {
        let e = Error::new("advise", ErrorKind::OutOfBounds)
            .with_range(0x10, 0x2000)
            .with_detail("range ends past the mapping (len 0x1000)");
        assert_eq!(e.to_string(), "advise [offset 0x10, len 0x2000] failed: range ends past the mapping (len 0x1000)");
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn error_is_one_pointer_wide() {
        // clippy's result_large_err fires at 128 bytes; every fallible mmkit call returns this.
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<Result<()>>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn unknown_errno_is_numbered() {
        assert_eq!(errno_name(4000), "errno 4000");
    }
}
