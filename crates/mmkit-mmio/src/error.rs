//! The crate's one error type: what was attempted, on which path and byte range, and why it
//! failed.
#![deny(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, device, map or BAR does not exist.
    NotFound,
    /// The kernel refused access (`EACCES`, `EPERM`).
    PermissionDenied,
    /// An access or a register block falls outside the mapped region.
    OutOfBounds,
    /// An access is not naturally aligned to its width.
    Misaligned,
    /// The device does not accept an access of this width at this offset.
    WidthNotAllowed,
    /// A sysfs attribute or an argument could not be parsed.
    Parse,
    /// No interrupt arrived before the timeout.
    TimedOut,
    /// The operation is not supported by this device or driver (`ENOSYS`, I/O-port BARs).
    Unsupported,
    /// An argument is invalid: a value too wide for the access, an unknown width or BAR.
    InvalidArgument,
    /// Any other failure reported by the kernel.
    Io,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::OutOfBounds => "out of bounds",
            ErrorKind::Misaligned => "misaligned",
            ErrorKind::WidthNotAllowed => "access width not allowed",
            ErrorKind::Parse => "parse error",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Unsupported => "not supported",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Io => "I/O error",
        }
    }
}

/// An error from a device source, a region access or an interrupt wait.
///
/// Built from the operation that failed; its message reads like
/// `mmap of /dev/uio0 [offset 0x0, len 0x100000] failed: Permission denied (EACCES)`.
/// The parts are available through [`Error::kind`], [`Error::operation`], [`Error::errno`],
/// [`Error::path`], [`Error::range`], [`Error::detail`] and [`Error::target`].
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    // Boxed: keeps `Result<u32, Error>` two words, so the success path of a register access
    // stays cheap.
    inner: Box<Inner>,
}

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    op: &'static str,
    kind: ErrorKind,
    errno: Option<i32>,
    path: Option<PathBuf>,
    target: Option<String>,
    range: Option<(u64, u64)>,
    detail: Option<String>,
}

impl Error {
    /// A failure of `op` (a short verb phrase such as `"mmap"`) of kind `kind`.
    pub(crate) fn new(op: &'static str, kind: ErrorKind) -> Self {
        Error { inner: Box::new(Inner { op, kind, errno: None, path: None, target: None, range: None, detail: None }) }
    }

    /// A failure of `op` reported by the kernel as `errno`.
    pub(crate) fn os(op: &'static str, errno: rustix::io::Errno) -> Self {
        Self::from_raw_errno(op, errno.raw_os_error())
    }

    /// A failure of `op` from a raw OS error number.
    pub(crate) fn from_raw_errno(op: &'static str, errno: i32) -> Self {
        let kind = match errno {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => ErrorKind::NotFound,
            libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
            libc::ENOSYS | libc::EOPNOTSUPP => ErrorKind::Unsupported,
            libc::ETIMEDOUT => ErrorKind::TimedOut,
            _ => ErrorKind::Io,
        };
        let mut err = Self::new(op, kind);
        err.inner.errno = Some(errno);
        err
    }

    /// A failure of `op` from a `std::io::Error`.
    pub(crate) fn io(op: &'static str, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(n) => Self::from_raw_errno(op, n),
            None => Self::new(op, ErrorKind::Io).with_detail(err.to_string()),
        }
    }

    /// Names the file the operation was on.
    pub(crate) fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        self.inner.path = Some(path.as_ref().to_owned());
        self
    }

    /// Names the target when it is not a file (e.g. `"fake registers"`), or qualifies the
    /// path (e.g. `"map0"`).
    pub(crate) fn with_target(mut self, target: impl Into<String>) -> Self {
        self.inner.target = Some(target.into());
        self
    }

    /// The byte range the operation covered.
    pub(crate) fn with_range(mut self, offset: u64, len: u64) -> Self {
        self.inner.range = Some((offset, len));
        self
    }

    /// Overrides the kind the errno gave (an `ENOTDIR` that means "no such device").
    pub(crate) fn set_kind(&mut self, kind: ErrorKind) {
        self.inner.kind = kind;
    }

    /// Explains the failure (used when there is no errno, or in addition to it).
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.inner.detail = Some(detail.into());
        self
    }

    /// Puts `context` before the detail (e.g. the register the access was for).
    pub(crate) fn context(mut self, context: impl std::fmt::Display) -> Self {
        let base = self.inner.detail.take().unwrap_or_else(|| self.inner.kind.describe().to_owned());
        self.inner.detail = Some(format!("{context}: {base}"));
        self
    }

    /// Sets the path and target of an error that was built without them.
    pub(crate) fn with_source_name(mut self, path: Option<&Path>, target: Option<&str>) -> Self {
        if self.inner.path.is_none() {
            self.inner.path = path.map(Path::to_owned);
        }
        if self.inner.target.is_none() {
            self.inner.target = target.map(str::to_owned);
        }
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The OS error number, when the kernel reported the failure.
    pub fn errno(&self) -> Option<i32> {
        self.inner.errno
    }

    /// The file the operation was on, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The byte range `(offset, len)` the operation covered, if any.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.inner.range
    }

    /// The operation that failed, e.g. `"mmap"`, `"read"`, `"wait for interrupt on"`.
    pub fn operation(&self) -> &str {
        self.inner.op
    }

    /// The explanation beyond the errno (or instead of it), if any, e.g. `"past the end of the
    /// 0x1000-byte region"`.
    pub fn detail(&self) -> Option<&str> {
        self.inner.detail.as_deref()
    }

    /// What the operation was on when it is not (only) a file, e.g. `"map0"` or `"fake
    /// registers"`, if any.
    pub fn target(&self) -> Option<&str> {
        self.inner.target.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.inner.op)?;
        // "mmap of /dev/uio0", but "wait for interrupt on /dev/uio0".
        let joiner = match self.inner.op.rsplit(' ').next() {
            Some("of" | "on" | "for" | "to" | "from" | "in") => " ",
            _ => " of ",
        };
        let mut named = false;
        if let Some(path) = &self.inner.path {
            write!(f, "{joiner}{}", path.display())?;
            named = true;
        }
        if let Some(target) = &self.inner.target {
            write!(f, "{}{}", if named { " " } else { joiner }, target)?;
        }
        if let Some((offset, len)) = self.inner.range {
            write!(f, " [offset {offset:#x}, len {len:#x}]")?;
        }
        f.write_str(" failed: ")?;
        match (self.inner.errno, &self.inner.detail) {
            (Some(n), detail) => {
                write!(f, "{} ({})", strerror(n), errno_name(n))?;
                if let Some(d) = detail {
                    write!(f, "; {d}")?;
                }
            }
            (None, Some(d)) => f.write_str(d)?,
            (None, None) => f.write_str(self.inner.kind.describe())?,
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("message", &self.to_string())
            .field("kind", &self.inner.kind)
            .field("errno", &self.inner.errno)
            .finish()
    }
}

impl std::error::Error for Error {}

// errno names and messages are mmkit's, so both crates word them alike.
use mmkit::error::{errno_name, strerror};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_path_range_and_errno() {
        let err = Error::from_raw_errno("mmap", libc::EACCES).with_path("/dev/uio0").with_range(0, 0x100000);
        assert_eq!(err.to_string(), "mmap of /dev/uio0 [offset 0x0, len 0x100000] failed: Permission denied (EACCES)");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert_eq!(err.errno(), Some(libc::EACCES));
        assert_eq!(err.path(), Some(Path::new("/dev/uio0")));
        assert_eq!(err.range(), Some((0, 0x100000)));
        assert_eq!(err.operation(), "mmap");
    }

    #[test]
    fn message_without_errno_uses_detail_or_kind() {
        let err = Error::new("read", ErrorKind::OutOfBounds)
            .with_path("/dev/uio0")
            .with_target("map0")
            .with_range(0x100000, 4)
            .with_detail("past the end of the 0x100000-byte region");
        assert_eq!(
            err.to_string(),
            "read of /dev/uio0 map0 [offset 0x100000, len 0x4] failed: \
             past the end of the 0x100000-byte region"
        );
        assert_eq!(err.detail(), Some("past the end of the 0x100000-byte region"));
        assert_eq!(err.target(), Some("map0"));
        let bare = Error::new("wait for interrupt on", ErrorKind::TimedOut).with_target("uio0");
        assert_eq!(bare.to_string(), "wait for interrupt on uio0 failed: timed out");
        assert_eq!(bare.errno(), None);
    }

    #[test]
    fn errno_kinds() {
        assert_eq!(Error::from_raw_errno("x", libc::ENOENT).kind(), ErrorKind::NotFound);
        assert_eq!(Error::from_raw_errno("x", libc::ENOSYS).kind(), ErrorKind::Unsupported);
        assert_eq!(Error::from_raw_errno("x", libc::EIO).kind(), ErrorKind::Io);
        assert_eq!(errno_name(9999), "errno 9999");
        assert!(Error::from_raw_errno("x", libc::ENOSYS).to_string().ends_with("(ENOSYS)"));
    }
}
