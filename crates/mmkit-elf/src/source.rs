//! Where a library's bytes come from: a file, a stored entry of a zip/APK, an open file
//! descriptor at an offset (Android's `ANDROID_DLEXT_USE_LIBRARY_FD_OFFSET`), or bytes in memory.
//!
//! Every source ends up as a file descriptor plus the offset and length of the ELF image inside
//! it, so the executor can `mmap` segments straight from the file (for an APK entry: the entry's
//! data offset + `p_offset`). Nothing is extracted and nothing falls back silently: a deflated,
//! encrypted, misaligned, truncated or missing entry is an error of its own kind. The one
//! fallback is bionic's: `archive!/entry` that is no usable entry names the file of that name
//! when there is one (a directory whose name ends in `!`).
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A library to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    Path(PathBuf),
    /// A stored (uncompressed), page-aligned entry of a zip archive such as an APK.
    ZipEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name inside the archive, e.g. `lib/x86_64/libfoo.so`.
        entry: String,
    },
    /// An open file at an offset: the image starts `offset` bytes into the file (a stored APK
    /// entry the caller located itself, as with `ANDROID_DLEXT_USE_LIBRARY_FD_OFFSET`). Made by
    /// [`Source::fd`], which keeps a duplicate of the caller's descriptor.
    Fd {
        /// The duplicated descriptor (shared by clones of the source).
        fd: SourceFd,
        /// Where the image starts in the file (checked to be page-aligned when opened).
        offset: u64,
        /// A name for messages.
        label: String,
    },
    /// Bytes in memory, copied into a sealed memfd.
    Memory {
        /// A name for messages and `/proc/self/maps` (`/memfd:<name>`).
        name: String,
        /// The ELF image.
        bytes: Vec<u8>,
    },
}

impl Source {
    /// Parses `path` or `archive.apk!/entry/in/zip` (opened as the file of that name when it
    /// is no usable zip entry, see [`Source::open`]).
    pub fn parse(s: &str) -> Source {
        // A byte scan: `split_once("!/")` sets up a substring searcher, costly on a hot path.
        // `!/` first names no archive: the file of that name.
        match s.as_bytes().windows(2).position(|w| w == b"!/") {
            Some(i) if i > 0 => Source::ZipEntry { archive: s[..i].into(), entry: s[i + 2..].to_owned() },
            _ => Source::Path(s.into()),
        }
    }

    /// [`Source::parse`] of any bytes, as a command line gives them: a path that is not UTF-8
    /// is that path; in `archive!/entry` the archive's path may be any bytes, the entry name
    /// must be UTF-8 (zip names are; else the whole is a path).
    ///
    /// ```
    /// use std::os::unix::ffi::OsStrExt;
    /// use mmkit_elf::Source;
    /// let s = Source::parse_os(std::ffi::OsStr::from_bytes(b"/data/\xff.apk!/lib/arm64-v8a/libx.so"));
    /// assert!(matches!(s, Source::ZipEntry { ref entry, .. } if entry == "lib/arm64-v8a/libx.so"));
    /// let s = Source::parse_os(std::ffi::OsStr::from_bytes(b"/tmp/lib\xff.so"));
    /// assert!(matches!(s, Source::Path(ref p) if p.as_os_str().as_bytes() == b"/tmp/lib\xff.so"));
    /// ```
    pub fn parse_os(s: &std::ffi::OsStr) -> Source {
        use std::os::unix::ffi::OsStrExt;
        if let Some(text) = s.to_str() {
            return Source::parse(text);
        }
        let b = s.as_bytes();
        if let Some(i) = b.windows(2).position(|w| w == b"!/").filter(|&i| i > 0) {
            if let Ok(entry) = std::str::from_utf8(&b[i + 2..]) {
                let archive = PathBuf::from(std::ffi::OsStr::from_bytes(&b[..i]));
                return Source::ZipEntry { archive, entry: entry.to_owned() };
            }
        }
        Source::Path(PathBuf::from(s))
    }

    /// The source with a relative file or archive path made absolute against the current
    /// directory (as glibc fixes a library's `l_origin` when it loads it: a `chdir` later does
    /// not move `$ORIGIN`); other sources as they are.
    pub(crate) fn absolute(&self) -> Source {
        let at_cwd = |p: &Path| std::env::current_dir().map(|cwd| cwd.join(p)).ok();
        match self {
            Source::Path(p) if p.is_relative() => at_cwd(p).map_or_else(|| self.clone(), Source::Path),
            Source::ZipEntry { archive, entry } if archive.is_relative() => at_cwd(archive)
                .map_or_else(|| self.clone(), |archive| Source::ZipEntry { archive, entry: entry.clone() }),
            _ => self.clone(),
        }
    }

    /// The directory on disk the source is in: the file's or the archive's (none for a
    /// descriptor or memory). `$ORIGIN` names it, and with
    /// [`Namespace::search_own_directory`](crate::Namespace::search_own_directory) `DT_NEEDED`
    /// libraries are searched there first.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Path(p) => p.parent(),
            Source::ZipEntry { archive, .. } => archive.parent(),
            Source::Fd { .. } | Source::Memory { .. } => None,
        }
    }

    /// A file on disk.
    pub fn path(path: impl Into<PathBuf>) -> Source {
        Source::Path(path.into())
    }

    /// A stored entry of a zip archive.
    pub fn zip_entry(archive: impl Into<PathBuf>, entry: impl Into<String>) -> Source {
        Source::ZipEntry { archive: archive.into(), entry: entry.into() }
    }

    /// The image at `offset` in the open file `fd` (`ANDROID_DLEXT_USE_LIBRARY_FD_OFFSET`),
    /// named `label` in messages. The descriptor is duplicated (`F_DUPFD_CLOEXEC`): the caller
    /// keeps and closes its own. The file must be a regular file and `offset` a multiple of
    /// the page size inside it, as for APK entries; [`Source::open`] checks both.
    #[doc(alias = "ANDROID_DLEXT_USE_LIBRARY_FD_OFFSET")]
    pub fn fd(fd: impl AsFd, offset: u64, label: impl Into<String>) -> Result<Source> {
        let label = label.into();
        let dup = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)
            .map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e).with_path(&label))?;
        Ok(Source::Fd { fd: SourceFd(std::sync::Arc::new(dup)), offset, label })
    }

    /// Bytes in memory.
    pub fn memory(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Source {
        Source::Memory { name: name.into(), bytes: bytes.into() }
    }

    /// How the source is written in messages: `path`, `archive!/entry`, `memfd:name`.
    pub fn display(&self) -> String {
        match self {
            Source::Path(p) => p.to_string_lossy().into_owned(),
            Source::ZipEntry { archive, entry } => format!("{}!/{entry}", archive.display()),
            Source::Fd { label, .. } => label.clone(),
            Source::Memory { name, .. } => format!("memfd:{name}"),
        }
    }

    /// Opens the source for an image that will be mapped with pages of `page_size` bytes.
    ///
    /// A [`Source::ZipEntry`] that cannot be opened as a zip entry (its archive is missing or
    /// not a zip, it has no such entry, the entry is compressed, ...) is opened as the file
    /// `archive!/entry` when there is one, as bionic's `open_library_at_path` does: a file in a
    /// directory whose name ends in `!` (`dir!/libfoo.so`) loads. Without such a file, the
    /// error is the zip entry's.
    pub fn open(&self, page_size: u64) -> Result<OpenSource> {
        let label = self.display();
        match self {
            Source::Path(path) => {
                let (file, meta) = open_regular_with_metadata(path, &label)?;
                Ok(OpenSource::whole_file(file, &meta, label))
            }
            Source::ZipEntry { archive, entry } => {
                crate::plan::check_page_size(page_size).map_err(|e| e.with_path(&label))?;
                open_zip_entry(archive, entry, page_size)
                    .or_else(|failure| open_as_file_instead(archive, entry, label, failure.into_error()))
            }
            Source::Fd { fd, offset, label } => {
                crate::plan::check_page_size(page_size).map_err(|e| e.with_path(label))?;
                open_fd_offset(&fd.0, *offset, label, page_size)
            }
            Source::Memory { name, bytes } => {
                let err = |op: &str, e| Error::os(op, e).with_path(&label);
                let fd =
                    memfd_holding(name, bytes, rustix::fs::MemfdFlags::ALLOW_SEALING).map_err(|(op, e)| err(op, e))?;
                // Sealed, the contents cannot change under the mapping.
                rustix::fs::fcntl_add_seals(
                    &fd,
                    rustix::fs::SealFlags::SHRINK
                        | rustix::fs::SealFlags::GROW
                        | rustix::fs::SealFlags::WRITE
                        | rustix::fs::SealFlags::SEAL,
                )
                .map_err(|e| err("fcntl(F_ADD_SEALS)", e))?;
                let st = rustix::fs::fstat(&fd).map_err(|e| err("fstat", e))?;
                Ok(OpenSource {
                    fd,
                    offset: 0,
                    len: bytes.len() as u64,
                    dev_ino: (st.st_dev, st.st_ino),
                    label,
                    changed: None,
                })
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Source {
        Source::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Source {
        Source::Path(p)
    }
}

impl From<&str> for Source {
    /// Same as [`Source::parse`].
    fn from(s: &str) -> Source {
        Source::parse(s)
    }
}

/// The descriptor of a [`Source::Fd`]: shared by clones, equal when it is the same open
/// descriptor.
#[derive(Debug, Clone)]
pub struct SourceFd(std::sync::Arc<OwnedFd>);

impl PartialEq for SourceFd {
    fn eq(&self, other: &SourceFd) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SourceFd {}

impl AsFd for SourceFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An opened source: a file descriptor and where the ELF image lies in it.
#[derive(Debug)]
pub struct OpenSource {
    fd: OwnedFd,
    offset: u64,
    len: u64,
    /// `(st_dev, st_ino)`, from the one `fstat` made when opening.
    dev_ino: (u64, u64),
    label: String,
    /// The file's `st_ctime` (seconds, nanoseconds) where known: the kernel sets it at every
    /// change of the contents, and no call sets it to a chosen value.
    changed: Option<(i64, i64)>,
}

impl OpenSource {
    /// The regular file `file` whose `fstat` is `meta`, whole.
    fn whole_file(file: File, meta: &std::fs::Metadata, label: String) -> OpenSource {
        use std::os::unix::fs::MetadataExt;
        let changed = Some((meta.ctime(), meta.ctime_nsec()));
        OpenSource { fd: file.into(), offset: 0, len: meta.len(), dev_ino: dev_ino(meta), label, changed }
    }

    /// What identifies the image's bytes while the file is unchanged: device, inode, offset,
    /// length and change time. `None` when the change time is unknown, or less than a second
    /// old: file times come from a coarse clock (a few milliseconds), so two changes close
    /// together may leave the same time; a change made after this one was read gets a time
    /// at least a second later.
    pub(crate) fn contents_key(&self) -> Option<(u64, u64, u64, u64, i64, i64)> {
        let (sec, nsec) = self.changed?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let settled = i64::try_from(now).is_ok_and(|now| sec < now - 1);
        settled.then_some((self.dev_ino.0, self.dev_ino.1, self.offset, self.len, sec, nsec))
    }
}

impl OpenSource {
    /// The file descriptor to map from.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Offset of the ELF image in the file (non-zero for a zip entry; always page-aligned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the ELF image: segments are bounds-checked against it, not the whole file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the source is written in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Takes the label out (the source keeps an empty one).
    pub(crate) fn take_label(&mut self) -> String {
        std::mem::take(&mut self.label)
    }

    /// Reads `len` bytes at `offset` inside the image (bounds-checked against the image).
    pub fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| self.outside(offset, len))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }

    fn outside(&self, offset: u64, len: u64) -> Error {
        Error::new("read", ErrorKind::Truncated, format!("image is {:#x} bytes", self.len))
            .with_range(offset, len)
            .with_path(&self.label)
    }

    /// Fills `buf` from `offset` inside the image (bounds-checked against the image).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(self.outside(offset, len));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = self.offset + offset + done as u64;
            let n = rustix::io::pread(&self.fd, &mut buf[done..], at)
                .map_err(|e| Error::os("pread", e).with_range(self.offset + offset, len).with_path(&self.label))?;
            if n == 0 {
                return Err(Error::new("pread", ErrorKind::Truncated, "unexpected end of file")
                    .with_range(self.offset + offset, len)
                    .with_path(&self.label));
            }
            done += n;
        }
        Ok(())
    }

    /// `(st_dev, st_ino)` of the file, to recognize it in `/proc/self/maps`.
    pub fn dev_ino(&self) -> (u64, u64) {
        self.dev_ino
    }
}

/// The file at `path` opened as [`Source::open`] opens a [`Source::Path`], for the directory
/// search to keep what it found open for the load (a found library is not opened twice); the
/// error is [`mmkit::open::open_then_verify_regular`]'s.
pub(crate) fn open_found(path: &Path) -> std::result::Result<OpenSource, mmkit::Error> {
    let (file, meta) = mmkit::open::open_then_verify_regular(path)?;
    Ok(OpenSource::whole_file(file, &meta, path.display().to_string()))
}

/// Opens the regular file at `path` read-only, never blocking, and refuses anything else once
/// opened, as glibc's `dlopen` (see [`mmkit::open::open_then_verify_regular`]: no `stat` before
/// the `open`, a system call per load fewer): with the
/// metadata of the one `fstat`. The descriptor keeps `O_NONBLOCK` (no effect on reading and mapping a regular
/// file; two `fcntl` calls fewer per load).
fn open_regular_with_metadata(path: &Path, label: &str) -> Result<(File, std::fs::Metadata)> {
    mmkit::open::open_then_verify_regular(path).map_err(|e| {
        let err = match e.errno() {
            // glibc's words for a file its `dlopen` cannot open.
            Some(errno) => Error::from_raw_errno(e.operation(), errno)
                .with_dlerror(format!("{label}: cannot open shared object file: {}", mmkit::error::strerror(errno))),
            None => Error::new(e.operation(), ErrorKind::Io, e.detail().unwrap_or_default()),
        };
        err.with_path(label)
    })
}

/// A memfd (close-on-exec, and `flags`) named `name` holding `bytes`; on failure the call that
/// failed and its errno.
pub(crate) fn memfd_holding(
    name: &str,
    bytes: &[u8],
    flags: rustix::fs::MemfdFlags,
) -> std::result::Result<OwnedFd, (&'static str, rustix::io::Errno)> {
    let fd =
        rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC | flags).map_err(|e| ("memfd_create", e))?;
    let mut done = 0;
    while done < bytes.len() {
        done += rustix::io::write(&fd, &bytes[done..]).map_err(|e| ("write", e))?;
    }
    Ok(fd)
}

/// Device and inode.
fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// `fstat` of `fd` as std's `Metadata` (through a duplicate: std builds it from a `File`).
pub(crate) fn fd_metadata(fd: &OwnedFd) -> std::io::Result<std::fs::Metadata> {
    std::fs::File::from(fd.try_clone()?).metadata()
}

/// Opens the image at `offset` in the open file `fd`, checked like a stored APK entry: a
/// regular file, a page-aligned offset, inside the file.
fn open_fd_offset(fd: &OwnedFd, offset: u64, label: &str, page_size: u64) -> Result<OpenSource> {
    let bad = |kind, detail: String| Error::new("open fd", kind, detail).with_path(label);
    let meta = fd_metadata(fd).map_err(|e| {
        Error::os("fstat", rustix::io::Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO))).with_path(label)
    })?;
    if !meta.is_file() {
        return Err(bad(
            ErrorKind::Io,
            format!("not a regular file: {}", mmkit::open::file_type_name(meta.file_type())),
        ));
    }
    // Read and mapped: a write-only or `O_PATH` descriptor was a bare `pread ... EBADF`.
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| Error::os("fcntl(F_GETFL)", e).with_path(label))?;
    if flags.contains(rustix::fs::OFlags::PATH) || flags & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::WRONLY {
        return Err(bad(ErrorKind::Io, "the descriptor is not open for reading".into()));
    }
    let file_size = meta.len();
    if !offset.is_multiple_of(page_size) {
        return Err(bad(
            ErrorKind::EntryMisaligned,
            format!("offset {offset:#x} is not a multiple of the {page_size:#x}-byte page"),
        )
        .with_range(offset, file_size.saturating_sub(offset)));
    }
    if offset >= file_size {
        return Err(bad(
            ErrorKind::EntryTruncated,
            format!("offset {offset:#x} is at or past the end of the {file_size}-byte file"),
        )
        .with_range(offset, 0));
    }
    let dup =
        rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e).with_path(label))?;
    Ok(OpenSource {
        fd: dup,
        offset,
        len: file_size - offset,
        dev_ino: (std::os::unix::fs::MetadataExt::dev(&meta), std::os::unix::fs::MetadataExt::ino(&meta)),
        label: label.to_owned(),
        changed: None,
    })
}

/// The file a path holding `!/` names when it is not read as a zip entry: `archive!/entry`.
pub(crate) fn bang_path(archive: &Path, entry: &str) -> PathBuf {
    let mut path = archive.as_os_str().to_owned();
    path.push("!/");
    path.push(entry);
    path.into()
}

/// bionic's `open_library_at_path`: a path holding `!/` that is not a usable zip entry is
/// opened as a file of that name. When that fails too, `zip_err` stands; if something is at
/// that path, the error also says why it did not open as a file.
fn open_as_file_instead(archive: &Path, entry: &str, label: String, zip_err: Error) -> Result<OpenSource> {
    let path = bang_path(archive, entry);
    match open_regular_with_metadata(&path, &label) {
        Ok((file, meta)) => Ok(OpenSource::whole_file(file, &meta, label)),
        Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR)) => Err(zip_err),
        Err(e) => Err(zip_err.and_detail(&format!(
            "{label} was read as entry {entry} of the zip archive {} (then as a file: {e})",
            archive.display()
        ))),
    }
}

/// `entry` with empty and `.` components dropped and `..` taking the previous one away, as
/// bionic's `normalize_path` has it; borrowed when it is plain already. `None` when a `..`
/// climbs out of the archive (no entry has such a name).
fn normalized_entry(entry: &str) -> Option<std::borrow::Cow<'_, str>> {
    let plain = !entry.starts_with('/') && !entry.contains("//") && entry.split('/').all(|c| c != "." && c != "..");
    if plain {
        return Some(std::borrow::Cow::Borrowed(entry));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in entry.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(std::borrow::Cow::Owned(parts.join("/")))
}

/// Why a zip entry could not be opened. The namespace search goes on past an archive it
/// cannot use or that lacks the entry, as bionic does, but an entry that is there and cannot
/// be mapped fails the load.
#[derive(Debug)]
pub(crate) enum ZipFailure {
    /// The archive is unusable: it cannot be opened (missing, unreadable, not a regular file),
    /// is not a zip (or a truncated one), or holds two entries of one name.
    Archive(Error),
    /// The archive has no entry of that name.
    NoEntry(Error),
    /// The entry is there but cannot be mapped: compressed, encrypted, misaligned, truncated,
    /// or its local header is broken.
    Entry(Error),
}

impl ZipFailure {
    /// The error, whatever the stage.
    pub(crate) fn into_error(self) -> Error {
        match self {
            ZipFailure::Archive(e) | ZipFailure::NoEntry(e) | ZipFailure::Entry(e) => e,
        }
    }
}

/// Opens the stored entry `entry` of `archive` (`page_size` already checked), saying at which
/// stage it failed.
pub(crate) fn open_zip_entry(archive: &Path, entry: &str, page_size: u64) -> Result<OpenSource, ZipFailure> {
    let label = format!("{}!/{entry}", archive.display());
    let apath = archive.display().to_string();
    let (file, meta) = open_regular_with_metadata(archive, &apath).map_err(ZipFailure::Archive)?;
    let (file_size, dev_ino) = (meta.len(), dev_ino(&meta));
    let bad = |kind, detail: String| Error::new("open zip entry", kind, detail).with_path(&label);
    let file = std::sync::Arc::new(file);
    // The zip crate parses the central directory and the local header; mmkit checks the rest.
    // Parsing untrusted archives must never take the process down, so a panic is an error too.
    let located = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let key = ArchiveKey::of(&meta);
        let mut zip = match parsed_in_this_load(&key) {
            Some(zip) => zip,
            None => {
                let zip = parse_archive(&file, &bad)?;
                remember_in_this_load(key, &zip);
                zip
            }
        };
        // As bionic's `open_library_in_zipfile` normalizes the path first: `lib/x/../x/a.so`,
        // `./lib/a.so` and `lib//a.so` name `lib/x/a.so` and `lib/a.so` (no allocation for a
        // plain name).
        let index = normalized_entry(entry).and_then(|e| zip.index_for_name(&e)).ok_or_else(|| {
            ZipFailure::NoEntry(bad(ErrorKind::EntryMissing, format!("the archive has no entry named {entry:?}")))
        })?;
        let raw = zip.by_index_raw(index).map_err(|e| {
            ZipFailure::Entry(bad(ErrorKind::BadArchive, format!("unreadable local header: {}", zip_detail(&e))))
        })?;
        let names = (raw.header_start(), raw.name_raw().to_vec());
        Ok::<_, ZipFailure>((
            raw.compression(),
            raw.encrypted(),
            raw.data_start(),
            raw.compressed_size(),
            raw.size(),
            names,
        ))
    }))
    .map_err(|_| ZipFailure::Archive(bad(ErrorKind::BadArchive, "the zip parser panicked on this archive".into())))??;
    // From here on the entry is there: what is wrong is wrong with it.
    let broken = |kind, detail: String| ZipFailure::Entry(bad(kind, detail));
    let (method, encrypted, data_start, compressed, size, (header_start, name)) = located;
    // The data is found through the local header the central directory points to: it must be
    // the entry's own (Android refuses a mismatch), not another entry's the offset was bent to.
    if local_name(&file, header_start)
        .map_err(|e| broken(ErrorKind::BadArchive, format!("unreadable local header: {e}")))?
        != name
    {
        return Err(broken(
            ErrorKind::BadArchive,
            format!(
                "the central directory points the entry at a local header of another name (offset {header_start:#x})"
            ),
        ));
    }
    if encrypted {
        return Err(broken(ErrorKind::EntryEncrypted, "the entry is encrypted".into()));
    }
    if method != zip::CompressionMethod::Stored {
        return Err(broken(
            ErrorKind::EntryCompressed,
            format!("the entry is compressed ({}); only stored entries can be mapped", method_name(method)),
        ));
    }
    if compressed != size {
        return Err(broken(
            ErrorKind::BadArchive,
            format!("stored entry has compressed size {compressed} ≠ size {size}"),
        ));
    }
    if data_start % page_size != 0 {
        return Err(ZipFailure::Entry(
            bad(
                ErrorKind::EntryMisaligned,
                format!(
                    "entry data starts at offset {data_start:#x}, not a multiple of the {page_size:#x}-byte \
                     page (align it when building the archive, e.g. zipalign -p)"
                ),
            )
            .with_range(data_start, size),
        ));
    }
    if data_start.checked_add(size).is_none_or(|end| end > file_size) {
        return Err(ZipFailure::Entry(
            bad(ErrorKind::EntryTruncated, format!("entry data extends past the end of the {file_size}-byte archive"))
                .with_range(data_start, size),
        ));
    }
    // The load's cache of parsed archives may hold the descriptor too: then a duplicate.
    let file = std::sync::Arc::try_unwrap(file).or_else(|shared| shared.try_clone()).map_err(|e| {
        ZipFailure::Archive(Error::from_raw_errno("dup", e.raw_os_error().unwrap_or(libc::EIO)).with_path(&apath))
    })?;
    Ok(OpenSource { fd: file.into(), offset: data_start, len: size, dev_ino, label, changed: None })
}

/// A parsed archive: the zip crate's index of its central directory, reading through its own
/// descriptor.
type Parsed = zip::ZipArchive<ReadBudget>;

/// Parses the central directory of the archive open as `file`, refusing duplicate names.
fn parse_archive(file: &std::sync::Arc<File>, bad: &dyn Fn(ErrorKind, String) -> Error) -> Result<Parsed, ZipFailure> {
    let size = file
        .metadata()
        .map_err(|e| ZipFailure::Archive(bad(ErrorKind::Io, format!("fstat of the archive failed: {e}"))))?
        .len();
    let zip = zip::ZipArchive::new(ReadBudget::new(file.clone(), size)).map_err(|e| {
        ZipFailure::Archive(bad(ErrorKind::BadArchive, format!("not a readable zip archive: {}", zip_detail(&e))))
    })?;
    if let Some(name) = duplicate_name(file, zip.central_directory_start())
        .map_err(|e| ZipFailure::Archive(bad(ErrorKind::BadArchive, format!("unreadable central directory: {e}"))))?
    {
        return Err(ZipFailure::Archive(bad(
            ErrorKind::BadArchive,
            format!("the archive holds two entries named {name:?} (refused, as Android's linker does)"),
        )));
    }
    Ok(zip)
}

/// What tells one version of an archive file from another: device, inode, size, and the
/// modification and change times to the nanosecond.
#[derive(PartialEq, Eq)]
struct ArchiveKey([i64; 6]);

impl ArchiveKey {
    fn of(meta: &std::fs::Metadata) -> ArchiveKey {
        use std::os::unix::fs::MetadataExt;
        ArchiveKey([
            meta.dev() as i64,
            meta.ino() as i64,
            meta.size() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime_nsec(),
        ])
    }
}

std::thread_local! {
    /// The archives parsed by the load this thread is running, if it is running one (see
    /// [`with_archive_cache`]).
    static LOAD_ARCHIVES: std::cell::RefCell<Option<Vec<(ArchiveKey, Parsed)>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `load` with a cache of the archives it parses, as bionic's `ZipArchiveCache` does for
/// one `dlopen`: an APK's central directory is read once however many of its libraries the
/// load looks for in it (the library, then each dependency searched for in its directory,
/// then opened). An APK of 5,000 entries took about 3 ms a parse. A load started inside
/// another on the same thread (an initializer that loads a library) shares the outer cache.
/// The cache goes with the load: a later load reads the archive again, as it may have changed.
pub(crate) fn with_archive_cache<T>(load: impl FnOnce() -> T) -> T {
    struct Scope(bool);
    impl Drop for Scope {
        fn drop(&mut self) {
            if self.0 {
                LOAD_ARCHIVES.with(|c| c.borrow_mut().take());
            }
        }
    }
    let outermost = LOAD_ARCHIVES.with(|c| {
        let mut c = c.borrow_mut();
        let outermost = c.is_none();
        c.get_or_insert_with(Vec::new);
        outermost
    });
    let _scope = Scope(outermost);
    load()
}

/// The archive of `key`, if this thread's load has parsed it.
fn parsed_in_this_load(key: &ArchiveKey) -> Option<Parsed> {
    LOAD_ARCHIVES.with(|c| c.borrow().as_ref()?.iter().find(|(k, _)| k == key).map(|(_, zip)| zip.clone()))
}

/// Keeps `zip` for the rest of this thread's load, if it is running one.
fn remember_in_this_load(key: ArchiveKey, zip: &Parsed) {
    LOAD_ARCHIVES.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push((key, zip.clone()));
        }
    });
}

/// The zip parser's error with its cause: its own message for a read error is a bare
/// `i/o error`.
fn zip_detail(e: &zip::result::ZipError) -> String {
    match e {
        zip::result::ZipError::Io(io) => format!("{e}: {io}"),
        _ => e.to_string(),
    }
}

/// The archive as the zip parser reads it, with a budget of bytes it may read. The parser tries
/// every end-of-central-directory signature in the file, from the end backwards, and scans
/// forward from each for its central directory: an archive made of such signatures (or one
/// that ends in many, e.g. in a comment) costs time quadratic in its size. A readable archive
/// is read about once (its central directory, the end record, one local header), so past a few
/// times its size the parser is chasing fake records and the archive is refused.
///
/// The parser reads an entry of the central directory in four small reads and asks for the
/// position twice and seeks once: seven system calls an entry on a plain file, 35,000 (9 ms)
/// for an APK of 5,000 entries. Here the position is kept in memory and reads are served from
/// a block read with one `pread` ([`ReadBudget::BLOCK`] bytes), so a central directory costs a
/// few `pread`s. The budget charges what the parser asks for, cached or not.
struct ReadBudget {
    file: std::sync::Arc<File>,
    len: u64,
    pos: u64,
    left: u64,
    /// The file's bytes from `block_at`.
    block: Vec<u8>,
    block_at: u64,
}

impl ReadBudget {
    /// Each read is charged at least this many bytes, so many tiny reads add up too.
    const MIN_CHARGE: u64 = 64;
    /// The bytes read ahead by one `pread`.
    const BLOCK: u64 = 64 << 10;
    /// Where a block starts: a multiple of a storage block (reads, not pages: no page size).
    const BLOCK_ALIGN: u64 = 4 << 10;

    fn new(file: std::sync::Arc<File>, file_size: u64) -> ReadBudget {
        ReadBudget {
            file,
            len: file_size,
            pos: 0,
            left: file_size.saturating_mul(8).saturating_add(1 << 20),
            block: Vec::new(),
            block_at: 0,
        }
    }
}

/// A copy for another lookup in the same archive: its own position, the budget left, no
/// block read yet.
impl Clone for ReadBudget {
    fn clone(&self) -> ReadBudget {
        ReadBudget { file: self.file.clone(), len: self.len, pos: 0, left: self.left, block: Vec::new(), block_at: 0 }
    }
}

impl std::io::Read for ReadBudget {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.left == 0 {
            return Err(std::io::Error::other(
                "the zip parser read the archive many times over chasing its end records",
            ));
        }
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let cached = self.pos.checked_sub(self.block_at).filter(|&o| o < self.block.len() as u64);
        let offset = match cached {
            Some(o) => o as usize,
            None => {
                // Start the block a little before the position: the parser steps back to
                // reread a record's start at times (the end record's search reads backwards).
                let at = self.pos.saturating_sub(Self::BLOCK / 4) & !(Self::BLOCK_ALIGN - 1);
                let want = Self::BLOCK.min(self.len - at) as usize;
                self.block.resize(want, 0);
                let mut got = 0;
                while got < want {
                    match self.file.read_at(&mut self.block[got..], at + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            self.block.clear();
                            return Err(e);
                        }
                    }
                }
                self.block.truncate(got);
                self.block_at = at;
                match self.pos.checked_sub(at).filter(|&o| o < got as u64) {
                    Some(o) => o as usize,
                    None => return Ok(0), // the file is shorter than it was
                }
            }
        };
        let n = buf.len().min(self.block.len() - offset);
        buf[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.pos += n as u64;
        self.left = self.left.saturating_sub((n as u64).max(Self::MIN_CHARGE));
        Ok(n)
    }
}

impl std::io::Seek for ReadBudget {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek to a negative or overflowing position")
        })?;
        Ok(self.pos)
    }

    fn stream_position(&mut self) -> std::io::Result<u64> {
        Ok(self.pos)
    }
}

/// The name in the local header at `offset`.
fn local_name(file: &File, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; 30];
    file.read_exact_at(&mut header, offset)?;
    let mut name = vec![0u8; usize::from(u16::from_le_bytes([header[26], header[27]]))];
    file.read_exact_at(&mut name, offset + 30)?;
    Ok(name)
}

/// The first entry name the central directory at `start` holds twice, if any. The zip parser
/// keeps the last of such entries, a verifier may check the first: Android refuses such
/// archives (`kDuplicateEntry`), and so does mmkit. Names are compared as stored (bytes).
fn duplicate_name(file: &File, start: u64) -> std::io::Result<Option<String>> {
    use std::io::{Read, Seek};
    const CDFH_LEN: usize = 46;
    let mut reader = std::io::BufReader::with_capacity(64 << 10, file);
    reader.seek(std::io::SeekFrom::Start(start))?;
    let mut seen = std::collections::HashSet::new();
    let mut header = [0u8; CDFH_LEN];
    loop {
        match reader.read_exact(&mut header) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        if header[..4] != *b"PK\x01\x02" {
            return Ok(None);
        }
        let field = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let (name_len, rest_len) = (field(28), field(30) + field(32));
        let mut name = vec![0u8; name_len];
        reader.read_exact(&mut name)?;
        reader.seek_relative(rest_len as i64)?;
        if let Some(twice) = seen.replace(name) {
            return Ok(Some(String::from_utf8_lossy(&twice).into_owned()));
        }
    }
}

/// A zip compression method as the format names it, with its number (the `zip` crate built
/// without codecs prints most as `Unsupported(8)`).
fn method_name(method: zip::CompressionMethod) -> String {
    use zip::CompressionMethod as M;
    let known = [
        (M::DEFLATE, "deflated, method 8"),
        (M::DEFLATE64, "deflate64, method 9"),
        (M::BZIP2, "bzip2, method 12"),
        (M::LZMA, "LZMA, method 14"),
        (M::ZSTD, "zstd, method 93"),
        (M::XZ, "xz, method 95"),
        (M::AES, "AES-encrypted, method 99"),
        (M::IMPLODE, "imploded, method 6"),
        (M::SHRINK, "shrunk, method 1"),
    ];
    known.iter().find(|(m, _)| *m == method).map_or_else(|| format!("method {method}"), |(_, n)| (*n).to_owned())
}
