//! A fork helper for tests: the child runs a closure that only reads or writes memory
//! (async-signal-safe work: the test harness is multi-threaded), sends back one byte over a
//! pipe and `_exit`s. A child killed by a signal gives `Err(signal)`.

#![allow(dead_code)]

pub fn in_child(f: impl FnOnce() -> u8) -> Result<u8, i32> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid two-element array for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fork has no preconditions; the child below only runs `f` (memory access), then
    // write(2) and _exit(2), which are async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let v = f();
        // SAFETY: writes one byte from a live local to our pipe, then exits without unwinding.
        unsafe {
            libc::write(fds[1], (&v as *const u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end, which we own.
    unsafe { libc::close(fds[1]) };
    let mut b = 0u8;
    // SAFETY: reads at most one byte into a live local from the pipe we own.
    let n = unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
    // SAFETY: closing the read end, which we own.
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFSIGNALED(status) {
        return Err(libc::WTERMSIG(status));
    }
    assert_eq!(n, 1, "the child exited without answering (status {status:#x})");
    Ok(b)
}

/// `Rss` in bytes of the areas of /proc/self/smaps inside `[start, start + len)`.
pub fn rss_in(start: usize, len: usize) -> u64 {
    let (s, e) = (start as u64, (start + len) as u64);
    mmkit::inspect::smaps(std::process::id())
        .unwrap()
        .iter()
        .filter(|a| a.area.start < e && a.area.end > s)
        .map(|a| a.stats.rss * 1024)
        .sum()
}
