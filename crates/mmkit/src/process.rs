//! Seeing a mapping from another process: fork probes.
//!
//! Whether a write is visible across `fork` is *the* difference between `MAP_SHARED` and
//! `MAP_PRIVATE`, so mmkit lets a program ask the kernel directly: run a closure in a forked
//! child, which inherits every mapping, and get back the `u64` it computed.
//!
//! ```
//! # fn main() -> Result<(), mmkit::Error> {
//! use mmkit::{MapOptions, Sharing};
//! let mut shared = MapOptions::new().len(4096).sharing(Sharing::Shared).map_anon()?;
//! let mut private = MapOptions::new().len(4096).map_anon()?;
//! // The child writes to both maps; only the shared write reaches the parent.
//! // SAFETY: the child only stores two bytes (async-signal-safe work).
//! unsafe { mmkit::process::in_forked_child(|| { shared[0] = 1; private[0] = 1; 0 }) }?;
//! assert_eq!((shared[0], private[0]), (1, 0));
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ChildEnd};

/// Page faults this process has taken so far, `(minor, major)` (`getrusage(RUSAGE_SELF)`, all
/// threads): the kernel's count of what touching a mapping cost. Also `mmkit::page_faults`.
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// let mut mem = mmkit::MapOptions::new().len(16 * mmkit::page_size()).map_anon()?;
/// let (minor0, _) = mmkit::page_faults();
/// mem.fill(1); // first touch: the kernel faults the zero pages in
/// assert!(mmkit::page_faults().0 > minor0);
/// # Ok(()) }
/// ```
#[doc(alias = "getrusage")]
pub fn page_faults() -> (u64, u64) {
    sys::page_faults()
}

/// Runs `f` in a forked child and returns what it computed. A child killed by a signal
/// (e.g. `SIGSEGV` from touching a guard page) gives an error whose [`Error::errno`] is `None`
/// and whose [`Error::signal`] is the signal (its message names it too). The child always
/// ends inside this call: a panic in `f` is caught in the child, which `_exit`s, and the
/// parent gets an error saying the closure panicked.
///
/// # Safety
/// In a multi-threaded process (a test harness, a program with worker threads), the child may
/// only do async-signal-safe work: `f` must not allocate, take locks, print, or panic. In a
/// single-threaded process use the safe [`in_forked_child_single_threaded`].
#[allow(unsafe_code)]
pub unsafe fn in_forked_child<F: FnOnce() -> u64>(f: F) -> Result<u64> {
    // SAFETY: forwarded contract.
    match unsafe { sys::fork_with(f) } {
        Ok(ChildEnd::Value(v)) => Ok(v),
        Ok(ChildEnd::Signal(sig)) => Err(Error::new("fork probe", ErrorKind::Os)
            .with_signal(sig)
            .with_detail(format!("the child was killed by signal {sig} ({})", signal_name(sig)))),
        Ok(ChildEnd::Panicked) => Err(Error::new("fork probe", ErrorKind::Os)
            .with_detail("the closure panicked in the child (the child exited; its panic message went to stderr)")),
        Ok(ChildEnd::Exited(code)) => Err(Error::new("fork probe", ErrorKind::Os)
            .with_detail(format!("the child exited with status {code} without sending its value"))),
        Err(e) => Err(Error::os("fork probe", e)),
    }
}

/// Like [`in_forked_child`], but safe: it refuses (with [`ErrorKind::Unsupported`]) unless
/// this process has exactly one thread, in which case the child may do anything.
pub fn in_forked_child_single_threaded<F: FnOnce() -> u64>(f: F) -> Result<u64> {
    match sys::thread_count() {
        Some(1) => {
            #[allow(unsafe_code)]
            // SAFETY: with one thread no lock can be held by a thread that vanishes in the child.
            unsafe {
                in_forked_child(f)
            }
        }
        n => Err(Error::new("fork probe", ErrorKind::Unsupported).with_detail(format!(
            "needs a single-threaded process (this one has {} threads)",
            n.map_or("an unknown number of".to_owned(), |n| n.to_string())
        ))),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}
