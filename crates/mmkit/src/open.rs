//! Opening a path that must be a regular file, without blocking and without acting on anything
//! else.
//!
//! A path handed to a tool may name a FIFO (whose `open(2)` waits for a writer, or a reader,
//! forever), a socket, a directory or a device (opening some devices acts on them: a tape
//! rewinds, a terminal becomes the controlling one). Every function here refuses all of those
//! the same way, before and after the open ([`open_then_verify_regular`] only after it, as
//! glibc's `dlopen` does):
//!
//! 1. `stat(2)` the path: anything but a regular file is refused without opening it;
//! 2. `open(2)` with `O_NONBLOCK | O_NOCTTY | O_CLOEXEC` (`O_NONBLOCK` in case a FIFO took the
//!    path's place meanwhile);
//! 3. `fstat(2)` the descriptor: what was opened must be a regular file too;
//! 4. clear `O_NONBLOCK`, so reads and writes behave as usual.
//!
//! The error names the path and what it is: `open of /tmp/f failed: not a regular file: a FIFO`.

#![deny(unsafe_code)]

use std::fs::{File, Metadata, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Opens the regular file at `path` for reading (see the [module docs](self)).
pub fn open_regular(path: impl AsRef<Path>) -> Result<File> {
    open_regular_with_metadata(path).map(|(file, _)| file)
}

/// Opens the regular file at `path` for reading, with the `fstat(2)` of what was opened (its
/// length, device and inode; see the [module docs](self)).
pub fn open_regular_with_metadata(path: impl AsRef<Path>) -> Result<(File, Metadata)> {
    checked_open(path.as_ref(), OpenOptions::new().read(true), true, true)
}

/// [`open_regular_with_metadata`] without step 4 of the [module docs](self): the descriptor
/// keeps `O_NONBLOCK`, which has no effect on `read`, `pread` or `mmap` of a regular file
/// (`open(2)`: "this flag has no effect for regular files"), for two `fcntl(2)` calls fewer. For
/// a caller that only reads and maps the file, such as a loader whose first load should make
/// no more syscalls than glibc's `dlopen`.
pub fn open_regular_nonblocking_with_metadata(path: impl AsRef<Path>) -> Result<(File, Metadata)> {
    checked_open(path.as_ref(), OpenOptions::new().read(true), true, false)
}

/// [`open_regular_nonblocking_with_metadata`] without step 1 of the [module docs](self): the
/// path is opened first, as glibc's `dlopen` and most programs open a file, and refused after
/// the `fstat` unless it is a regular file. One `stat(2)` fewer; the cost is that a device node
/// named by the path is opened (and closed) before it is refused. `O_NONBLOCK` and `O_NOCTTY`
/// still keep a FIFO from blocking and a terminal from becoming the controlling one. When the
/// open fails, the path is `stat`ed for the error's words (a socket's `ENXIO` becomes "not a
/// regular file: a socket"). For a loader whose every load should make no more system calls
/// than glibc's.
pub fn open_then_verify_regular(path: impl AsRef<Path>) -> Result<(File, Metadata)> {
    let path = path.as_ref();
    open_and_verify(path, OpenOptions::new().read(true)).map_err(|e| match e {
        // These say nothing of what the path names (and a search meets them in every
        // directory without the file: no second system call for them).
        OpenFailure::Open(e)
            if !matches!(
                e.raw_os_error(),
                Some(
                    libc::ENOENT
                        | libc::ENOTDIR
                        | libc::EACCES
                        | libc::ELOOP
                        | libc::ENAMETOOLONG
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOMEM
                )
            ) =>
        {
            match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() => not_regular("open", &meta).with_path(path),
                _ => Error::from_io("open", &e).with_path(path),
            }
        }
        other => other.into_error(path),
    })
}

/// Opens the regular file at `path` for reading and writing; it must exist (see the
/// [module docs](self)).
pub fn open_regular_read_write(path: impl AsRef<Path>) -> Result<File> {
    checked_open(path.as_ref(), OpenOptions::new().read(true).write(true), true, true).map(|(file, _)| file)
}

/// Creates the regular file at `path` for writing, or empties it when it exists; a FIFO,
/// socket, directory or device in its place is refused (see the [module docs](self)): nothing
/// is truncated before what was opened is known to be a regular file.
pub fn create_regular(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let (file, meta) = checked_open(path, OpenOptions::new().write(true).create(true), false, true)?;
    if meta.len() != 0 {
        file.set_len(0).map_err(|e| Error::from_io("ftruncate", &e).with_path(path))?;
    }
    Ok(file)
}

/// The four steps of the module docs. `must_exist`: a missing path is an error at `stat`
/// (otherwise `open` creates it, as `options` says); `clear_nonblock`: step 4.
fn checked_open(
    path: &Path,
    options: &mut OpenOptions,
    must_exist: bool,
    clear_nonblock: bool,
) -> Result<(File, Metadata)> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(not_regular("open", &meta).with_path(path)),
        Ok(_) => {}
        Err(e) if must_exist || e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::from_io("stat", &e).with_path(path))
        }
        Err(_) => {}
    }
    let (file, meta) = open_and_verify(path, options).map_err(|e| e.into_error(path))?;
    if clear_nonblock {
        crate::sys::clear_nonblock(file.as_fd()).map_err(|e| Error::os("fcntl(F_SETFL)", e).with_path(path))?;
    }
    Ok((file, meta))
}

/// How [`open_and_verify`] failed: the `open` itself (its error kept for the caller to
/// explain), or what followed it.
enum OpenFailure {
    Open(std::io::Error),
    After(Error),
}

impl OpenFailure {
    fn into_error(self, path: &Path) -> Error {
        match self {
            OpenFailure::Open(e) => Error::from_io("open", &e).with_path(path),
            OpenFailure::After(e) => e,
        }
    }
}

/// Steps 2 and 3 of the module docs: opens `path` as `options` says, with `O_NONBLOCK`
/// (a FIFO cannot block the open), `O_NOCTTY` and `O_CLOEXEC`, then `fstat`s what was opened
/// and refuses anything but a regular file.
fn open_and_verify(path: &Path, options: &mut OpenOptions) -> std::result::Result<(File, Metadata), OpenFailure> {
    let file = options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(OpenFailure::Open)?;
    let meta = file.metadata().map_err(|e| OpenFailure::After(Error::from_io("fstat", &e).with_path(path)))?;
    if !meta.is_file() {
        return Err(OpenFailure::After(not_regular("open", &meta).with_path(path)));
    }
    Ok((file, meta))
}

/// What a file that is not a regular file is, for messages: `"a FIFO"`, `"a directory"`, ...
pub fn file_type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

/// The error of operation `op` for a file that is not a regular file, naming what it is.
pub(crate) fn not_regular(op: &'static str, meta: &Metadata) -> Error {
    Error::new(op, ErrorKind::InvalidArgument)
        .with_detail(format!("not a regular file: {}", file_type_name(meta.file_type())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// Runs `f` in a thread; a FIFO's blocking `open(2)` fails the test instead of hanging it.
    fn within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(20)).expect("open blocked")
    }

    #[test]
    fn special_files_are_refused_by_every_open_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let sock = d.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let cases = [
            (fifo, "a FIFO"),
            (sock, "a socket"),
            ("/dev/zero".into(), "a character device"),
            (d.path().to_owned(), "a directory"),
        ];
        for (p, what) in cases {
            let q = p.clone();
            let errors = within_limit(move || {
                [
                    open_regular(&q).map(drop),
                    open_regular_nonblocking_with_metadata(&q).map(drop),
                    open_then_verify_regular(&q).map(drop),
                    open_regular_read_write(&q).map(drop),
                    create_regular(&q).map(drop),
                ]
            });
            for e in errors {
                let e = e.unwrap_err();
                assert_eq!(e.to_string(), format!("open of {} failed: not a regular file: {what}", p.display()));
                assert_eq!(e.path(), Some(p.as_path()));
            }
        }
        // /dev/zero was never written to or truncated: it is still a character device.
        assert!(std::fs::metadata("/dev/zero").unwrap().file_type().is_char_device());
    }

    #[test]
    fn regular_files_open_blocking_with_their_metadata() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let (mut f, meta) = open_regular_with_metadata(&p).unwrap();
        assert_eq!(meta.len(), 5);
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK), "{flags:?}");
        let fdflags = rustix::io::fcntl_getfd(&f).unwrap();
        assert!(fdflags.contains(rustix::io::FdFlags::CLOEXEC));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let missing = d.path().join("missing");
        assert_eq!(open_regular(&missing).unwrap_err().errno(), Some(libc::ENOENT));
        assert_eq!(open_regular_read_write(&missing).unwrap_err().errno(), Some(libc::ENOENT));
    }

    #[test]
    fn the_nonblocking_open_keeps_o_nonblock_and_reads_all_of_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let (mut f, meta) = open_regular_nonblocking_with_metadata(&p).unwrap();
        assert_eq!(meta.len(), 5);
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(flags.contains(rustix::fs::OFlags::NONBLOCK), "{flags:?}");
        assert!(rustix::io::fcntl_getfd(&f).unwrap().contains(rustix::io::FdFlags::CLOEXEC));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let missing = d.path().join("missing");
        assert_eq!(open_regular_nonblocking_with_metadata(&missing).unwrap_err().errno(), Some(libc::ENOENT));
    }

    #[test]
    fn create_makes_a_missing_file_and_empties_an_existing_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        create_regular(&p).unwrap().write_all(b"first, longer").unwrap();
        create_regular(&p).unwrap().write_all(b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let e = create_regular(d.path().join("no/such/dir")).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }
}
