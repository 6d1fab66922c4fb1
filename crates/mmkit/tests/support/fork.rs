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

/// `Rss` in bytes of `[start, start + len)`, from /proc/self/smaps.
///
/// smaps counts whole areas, and the kernel merges an anonymous area with a neighbour of the
/// same flags (another test thread's memory, say). So the range is first made an area of its
/// own: `MADV_DONTDUMP` gives it a flag its neighbours lack (the split is harmless for tests).
/// The areas measured must then lie inside the range, or the figure would include others' pages.
pub fn rss_in(start: usize, len: usize) -> u64 {
    // SAFETY: DONTDUMP only changes a VMA flag (core dumps); no contents or permissions change.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTDUMP) };
    let (s, e) = (start as u64, (start + len) as u64);
    let areas: Vec<_> = mmkit::inspect::smaps(std::process::id())
        .unwrap()
        .into_iter()
        .filter(|a| a.area.start < e && a.area.end > s)
        .collect();
    for a in &areas {
        assert!(
            a.area.start >= s && a.area.end <= e,
            "area {:#x}-{:#x} extends past the measured range {s:#x}-{e:#x}",
            a.area.start,
            a.area.end
        );
    }
    areas.iter().map(|a| a.stats.rss * 1024).sum()
}
