//! The crate's one error type: the operation that failed, the path, the byte range, the errno.
#![deny(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use mmkit::error::{errno_name, strerror};

/// What went wrong, for callers that branch on the cause. Each planner check has its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The source is shorter than the structure being read (ELF header, program headers).
    Truncated,
    /// The first four bytes are not `\x7fELF`.
    BadMagic,
    /// Not a 64-bit ELF file (`EI_CLASS`).
    BadClass,
    /// Not little-endian (`EI_DATA`).
    BadEndianness,
    /// `EI_VERSION`/`e_version` is not `EV_CURRENT`.
    BadVersion,
    /// Not a shared object (`e_type` is not `ET_DYN`).
    NotSharedObject,
    /// Built for another machine than the one planned for or run on (`e_machine`), or the
    /// loader does not relocate for this architecture ([`Machine::host`](crate::Machine::host)).
    WrongMachine,
    /// `e_phentsize`, `e_phnum` or the program header table's bounds are invalid.
    BadProgramHeaders,
    /// No `PT_LOAD` segment.
    NoLoadSegments,
    /// `p_vaddr` and `p_offset` differ modulo the page size.
    OffsetNotCongruent,
    /// `p_offset + p_filesz` lies outside the source.
    SegmentOutsideSource,
    /// `p_filesz > p_memsz`.
    FileSizeExceedsMemSize,
    /// A segment is both writable and executable.
    WritableAndExecutable,
    /// `p_align` is not a power of two, or is smaller than the page size.
    BadAlignment,
    /// `PT_LOAD` segments are out of order or share pages, or addresses overflow.
    SegmentsOverlap,
    /// The page size given to the planner is not a power of two ≥ [`MIN_PAGE_SIZE`](crate::plan::MIN_PAGE_SIZE).
    BadPageSize,
    /// The zip archive could not be read (bad central directory, bad local header, ...).
    BadArchive,
    /// The zip archive has no such entry.
    EntryMissing,
    /// The zip entry is compressed; only stored entries can be mapped.
    EntryCompressed,
    /// The zip entry is encrypted.
    EntryEncrypted,
    /// The zip entry's data offset (or a [`Source::fd`](crate::Source::fd) offset) is not a
    /// multiple of the page size.
    EntryMisaligned,
    /// The zip entry's data extends past the end of the archive (or a
    /// [`Source::fd`](crate::Source::fd) offset lies at or past the end of the file).
    EntryTruncated,
    /// A system call failed (see [`Error::errno`]).
    Io,
    /// The dynamic section, symbol table, hash table or version tables are malformed.
    BadDynamic,
    /// A relocation type the loader does not implement.
    UnsupportedRelocation,
    /// A symbol that a relocation needs is defined nowhere.
    UndefinedSymbol,
    /// A version a library needs from a dependency (`DT_VERNEED`) is not one the dependency
    /// defines (`DT_VERDEF`): it was built against a newer build of the dependency. glibc's
    /// `dlopen` refuses it the same way (`` version `V' not found (required by …) ``).
    VersionNotFound,
    /// [`Library::symbol`](crate::Library::symbol) found no such symbol, or was asked for a
    /// type that is not pointer-sized (`symbol::<u32>`: the message says so).
    SymbolNotFound,
    /// [`Library::function`](crate::Library::function) found a symbol that is not code.
    NotAFunction,
    /// A `DT_NEEDED` library could not be found or loaded; also what
    /// [`Library::segments`](crate::Library::segments) and
    /// [`Library::verify`](crate::Library::verify) answer for a system library the system
    /// linker loaded (it has no mappings of mmkit's).
    DependencyNotFound,
    /// The mappings do not match `/proc/self/maps`.
    VerifyFailed,
    /// The library does not fit in the caller's reservation
    /// ([`LoadOptions::reserved`](crate::LoadOptions::reserved)); the message says how many
    /// bytes it needs.
    ReservationTooSmall,
    /// The range of the caller's reservation asked for ([`LoadOptions::reserved`](crate::LoadOptions::reserved))
    /// still holds a library mmkit loaded there (kept by another handle, or pinned); the
    /// message names it.
    ReservationInUse,
    /// The library is built for initial-exec TLS (`DF_STATIC_TLS`) and glibc's static TLS area
    /// has no room left for its block (glibc's `dlopen` of it fails the same way), or the
    /// block could not be set up; or relocations write into its TLS initialization image.
    StaticTls,
}

/// An error from planning, mapping, relocating or inspecting a library.
///
/// It reads like `mmap of /data/app.apk [offset 0x1000, len 0x3000] failed: Permission denied
/// (EACCES)`: the operation, the path, the byte range and the cause.
///
/// Its fields live in one allocation, so that a `Result` of the loader is small: the success
/// path of a function with many `?` moves a pointer, not the whole error, and its code stays
/// small (the first load of a library runs most of the loader's code for the first time).
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    op: String,
    path: Option<PathBuf>,
    range: Option<(u64, u64)>,
    /// What `range` measures (how it is written: `offset`, `address` or `vaddr`).
    range_kind: RangeKind,
    errno: Option<i32>,
    detail: String,
    /// What glibc's `dlerror` says for the same failure, where glibc has a message of its own
    /// for it (an undefined symbol, a file it cannot open): mmkit's interposed `dlopen`
    /// answers it, as programs show it or look for its words.
    dlerror: Option<String>,
}

/// What an error's range measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    /// Bytes of the source file (or of a region, for mmkit's core errors).
    Offset,
    /// Run-time addresses in this process.
    Address,
    /// Link-time addresses of the library (`p_vaddr`, `r_offset`), before the load bias.
    Vaddr,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        f.debug_struct("Error")
            .field("kind", &e.kind)
            .field("op", &e.op)
            .field("path", &e.path)
            .field("range", &e.range)
            .field("range_kind", &e.range_kind)
            .field("errno", &e.errno)
            .field("detail", &e.detail)
            .finish()
    }
}

// The constructors are `#[cold]` and never inlined: the blocks that build an error are then
// laid out away from the success path, which stays dense in the instruction cache.
impl Error {
    #[cold]
    #[inline(never)]
    pub(crate) fn new(op: impl Into<String>, kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            op: op.into(),
            path: None,
            range: None,
            range_kind: RangeKind::Offset,
            errno: None,
            detail: detail.into(),
            dlerror: None,
        }))
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn os(op: impl Into<String>, errno: rustix::io::Errno) -> Self {
        Self::from_raw_errno(op, errno.raw_os_error())
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn from_raw_errno(op: impl Into<String>, errno: i32) -> Self {
        Error(Box::new(Inner {
            kind: ErrorKind::Io,
            op: op.into(),
            path: None,
            range: None,
            range_kind: RangeKind::Offset,
            errno: Some(errno),
            detail: String::new(),
            dlerror: None,
        }))
    }

    /// An error of mmkit's core (a reservation's map, commit or protect), as `op` of the
    /// loader: keeps its errno and range, and its operation and detail in the detail.
    #[cold]
    #[inline(never)]
    pub(crate) fn from_core(op: impl Into<String>, e: &mmkit::Error) -> Self {
        let mut detail = e.operation().to_owned();
        if let Some(a) = e.addr() {
            detail.push_str(&format!(" at {a:#x}"));
        }
        if let Some(d) = e.detail() {
            detail.push_str(": ");
            detail.push_str(d);
        }
        let mut err = Error::new(op, ErrorKind::Io, detail);
        err.0.errno = e.errno();
        err.0.range = e.range();
        err
    }

    /// `self` about `len` bytes of the source file at `offset`.
    #[cold]
    pub(crate) fn with_range(mut self, offset: u64, len: u64) -> Self {
        self.0.range = Some((offset, len));
        self.0.range_kind = RangeKind::Offset;
        self
    }

    /// `self` about `len` bytes at run-time address `addr` (written `[address …]`).
    #[cold]
    pub(crate) fn with_addr_range(mut self, addr: u64, len: u64) -> Self {
        self.0.range = Some((addr, len));
        self.0.range_kind = RangeKind::Address;
        self
    }

    /// `self` about `len` bytes at the library's link-time address `vaddr` (written
    /// `[vaddr …]`).
    #[cold]
    pub(crate) fn with_vaddr_range(mut self, vaddr: u64, len: u64) -> Self {
        self.0.range = Some((vaddr, len));
        self.0.range_kind = RangeKind::Vaddr;
        self
    }

    /// The error with `op` as its operation (a caller that names the operation better, built
    /// only on the error path).
    #[cold]
    pub(crate) fn with_op(mut self, op: String) -> Self {
        self.0.op = op;
        self
    }

    /// `self` with `more` added to its detail.
    #[cold]
    pub(crate) fn and_detail(mut self, more: &str) -> Self {
        if !self.0.detail.is_empty() {
            self.0.detail.push_str("; ");
        }
        self.0.detail.push_str(more);
        self
    }

    /// Sets the path unless one is already set (inner errors name the more precise file).
    /// Sets glibc's `dlerror` message for this failure (see [`Error::dlerror_message`]).
    #[cold]
    pub(crate) fn with_dlerror(mut self, message: String) -> Self {
        self.0.dlerror = Some(message);
        self
    }

    /// Carries `inner`'s glibc message over to this error that wraps it.
    #[cold]
    pub(crate) fn with_dlerror_of(mut self, inner: &Error) -> Self {
        if self.0.dlerror.is_none() {
            self.0.dlerror.clone_from(&inner.0.dlerror);
        }
        self
    }

    /// What glibc's `dlerror` would say after a `dlopen` that failed this way: its own words
    /// for an undefined symbol (`/p/libfoo.so: undefined symbol: bar`) and for a file it
    /// cannot open (`/p/libfoo.so: cannot open shared object file: No such file or
    /// directory`); otherwise this error's message.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn dlerror_message(&self) -> String {
        self.0.dlerror.clone().unwrap_or_else(|| self.to_string())
    }

    #[cold]
    pub(crate) fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        if self.0.path.is_none() {
            self.0.path = Some(path.as_ref().to_owned());
        }
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The operation that failed (`mmap`, `plan`, `open zip entry`, `relocate`, ...).
    pub fn operation(&self) -> &str {
        &self.0.op
    }

    /// The file (or `archive.apk!/entry`, or `memfd:name`) the operation was about.
    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// The byte range `(start, len)` the operation was about: a file range for sources, a
    /// run-time address range for mappings, a link-time address range (`p_vaddr`, `r_offset`)
    /// for the library's own tables; the message names which (`[offset …]`, `[address …]`,
    /// `[vaddr …]`).
    pub fn range(&self) -> Option<(u64, u64)> {
        self.0.range
    }

    /// The errno of a failed system call.
    pub fn errno(&self) -> Option<i32> {
        self.0.errno
    }

    /// The explanation without the operation, path and range, if any.
    pub fn detail(&self) -> Option<&str> {
        Some(self.0.detail.as_str()).filter(|d| !d.is_empty())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "{}", e.op)?;
        if let Some(path) = &e.path {
            write!(f, " of {}", path.display())?;
        }
        if let Some((start, len)) = e.range {
            let what = match e.range_kind {
                RangeKind::Offset => "offset",
                RangeKind::Address => "address",
                RangeKind::Vaddr => "vaddr",
            };
            write!(f, " [{what} {start:#x}, len {len:#x}]")?;
        }
        write!(f, " failed")?;
        if !e.detail.is_empty() {
            write!(f, ": {}", e.detail)?;
        }
        if let Some(errno) = e.errno {
            write!(f, ": {} ({})", strerror(errno), errno_name(errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_path_range_and_errno() {
        let e = Error::os("mmap", rustix::io::Errno::ACCESS).with_range(0x4000, 0x3000).with_path("/data/app.apk");
        assert_eq!(
            e.to_string(),
            "mmap of /data/app.apk [offset 0x4000, len 0x3000] failed: Permission denied (EACCES)"
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.errno(), Some(libc::EACCES));
        assert_eq!(e.path(), Some(Path::new("/data/app.apk")));
        assert_eq!(e.range(), Some((0x4000, 0x3000)));
        // The innermost path wins.
        let e = e.with_path("outer");
        assert_eq!(e.path(), Some(Path::new("/data/app.apk")));
        assert_eq!(e.detail(), None);
        assert_eq!(Error::new("plan", ErrorKind::Truncated, "short").detail(), Some("short"));
        // An address range is not called an offset (mseal's error said `[offset 0x7f…]`).
        let e = Error::new("mseal (code and RELRO)", ErrorKind::Io, "no").with_addr_range(0x7f00_0000_1000, 0x2000);
        assert!(e.to_string().starts_with("mseal (code and RELRO) [address 0x7f0000001000, len 0x2000] failed"), "{e}");
        assert_eq!(e.range(), Some((0x7f00_0000_1000, 0x2000)));
        let e = Error::new("relocate", ErrorKind::BadDynamic, "no").with_vaddr_range(0x3ff8, 8);
        assert!(e.to_string().starts_with("relocate [vaddr 0x3ff8, len 0x8] failed"), "{e}");
    }
}
