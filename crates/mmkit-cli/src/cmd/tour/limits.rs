//! What the tour needs from the machine, checked before it starts, and its Ctrl-C handling.
//!
//! The file section writes a `--size` file and the anon section touches a few hundred MiB, so
//! both are checked against what there is (disk space by `statvfs(2)` of the temp dir, memory
//! by `MemAvailable` in `/proc/meminfo`) before anything is written. SIGINT and SIGTERM do not
//! kill the tour: a thread waits for them and raises a flag that the long loops check, so the
//! tour unwinds and removes its temporary files on its way out.

// One of the modules with `unsafe`: the tour shows mmkit's `unsafe` calls as a user writes them.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Context;

use crate::cli::size::bytes;

/// Bytes of memory the anon section holds at its peak (a 256 MiB first-touch region, 8 MiB
/// committed in the reservation, 1 MiB of zero-filled memory), rounded up.
pub const ANON_MEMORY: u64 = 288 << 20;

/// Bytes the elf section writes next to the file section's file (source, library, APK).
pub const ELF_DISK: u64 = 16 << 20;

/// The termination signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Routes SIGINT and SIGTERM to a flag instead of the default action (termination without
/// cleanup). Call before the tour creates files.
///
/// A handler, not a thread waiting in `sigwait`: the sections fork with
/// `in_forked_child_single_threaded`, which needs this process to have one thread.
pub fn catch_termination_signals() -> anyhow::Result<()> {
    extern "C" fn on_signal(sig: libc::c_int) {
        // Async-signal-safe: one lock-free atomic store.
        SIGNAL.store(sig, Ordering::SeqCst);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is plain data, valid all-zero (an empty mask, no flags) before the
        // fields below are set.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Interrupted system calls restart; the tour notices the flag at its next check.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is initialised and its handler only stores to an atomic, which is
        // async-signal-safe; replacing the disposition of SIGINT/SIGTERM affects no memory.
        let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(mmkit::Error::last_os_error("sigaction"))
                .with_context(|| format!("tour: sigaction({}) to remove temporary files on Ctrl-C", signal_name(sig)));
        }
    }
    Ok(())
}

/// An error once SIGINT or SIGTERM arrived, so the tour stops and drops its temporary files.
pub fn check_interrupted() -> anyhow::Result<()> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        sig => anyhow::bail!("interrupted by {}; temporary files removed", signal_name(sig)),
    }
}

/// The name of the termination signal received (`SIGINT`, `SIGTERM`), if one arrived since
/// [`catch_termination_signals`].
pub fn termination_signal() -> Option<String> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(signal_name(sig)),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".to_owned(),
        libc::SIGTERM => "SIGTERM".to_owned(),
        n => format!("signal {n}"),
    }
}

/// Fails unless `dir` is a directory this process may create files in, with the errno the
/// kernel gives (`ENOENT`, `ENOTDIR`, `EACCES`, `EROFS`). `from_flag`: `dir` is `--dir`'s (else
/// the system temp dir, from `TMPDIR`), which the message names.
pub fn check_dir(dir: &Path, from_flag: bool) -> anyhow::Result<()> {
    let what = if from_flag {
        "tour: the directory for temporary files (--dir)"
    } else {
        "tour: the directory for temporary files (the system temp dir: $TMPDIR, else /tmp; --dir chooses another)"
    };
    let meta = rustix::fs::stat(dir).map_err(|e| mmkit::Error::os("stat", e).with_path(dir)).context(what)?;
    if rustix::fs::FileType::from_raw_mode(meta.st_mode) != rustix::fs::FileType::Directory {
        return Err(mmkit::Error::os("stat", rustix::io::Errno::NOTDIR).with_path(dir)).context(what);
    }
    let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
    rustix::fs::access(dir, access).map_err(|e| mmkit::Error::os("access(W_OK | X_OK)", e).with_path(dir)).context(what)
}

/// Fails when `dir` has less than `needed` bytes free for an unprivileged writer
/// (`f_bavail * f_frsize`), or when it is memory-backed (tmpfs, ramfs) and the machine has
/// less than that available.
pub fn check_disk(dir: &Path, needed: u64, what: &str) -> anyhow::Result<()> {
    let vfs = rustix::fs::statvfs(dir)
        .map_err(|e| mmkit::Error::os("statvfs", e).with_path(dir))
        .context("tour: checking the free space of the directory for temporary files")?;
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    anyhow::ensure!(
        free >= needed,
        "tour: {what} needs {} ({needed} bytes) in {}, which has {} ({free} bytes) free; use a smaller --size or another --dir",
        bytes(needed),
        dir.display(),
        bytes(free),
    );
    let fs = rustix::fs::statfs(dir)
        .map_err(|e| mmkit::Error::os("statfs", e).with_path(dir))
        .context("tour: checking the file system of the directory for temporary files")?;
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets
    if crate::cli::memory::lives_in_memory(fs.f_type as u64) {
        check_memory(needed, &format!("{what} (in {}, which lives in memory)", dir.display()))?;
    }
    Ok(())
}

/// Fails when the kernel estimates less than `needed` bytes available (`MemAvailable`) for new
/// work without swapping.
pub fn check_memory(needed: u64, what: &str) -> anyhow::Result<()> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| crate::cli::io::io_error("read", Path::new("/proc/meminfo"), e))
        .context("tour: checking the memory available")?;
    let Some(available) = crate::cli::memory::mem_available(&meminfo) else {
        // Kernels before 3.14 lack the line; go on without the check.
        return Ok(());
    };
    anyhow::ensure!(
        available >= needed,
        "tour: {what} needs {} ({needed} bytes) of memory, and /proc/meminfo has MemAvailable {} ({available} bytes)",
        bytes(needed),
        bytes(available),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_disk_names_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_disk(dir.path(), u64::MAX, "the file section").unwrap_err().to_string();
        assert!(err.contains(&u64::MAX.to_string()) && err.contains("free"), "{err}");
        check_disk(dir.path(), 1, "the file section").unwrap();
        let err = check_memory(u64::MAX, "the anon section").unwrap_err().to_string();
        assert!(err.contains("MemAvailable"), "{err}");
    }
}
