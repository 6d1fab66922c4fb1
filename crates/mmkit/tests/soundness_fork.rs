//! Soundness of the safe fork probe ([`mmkit::process::in_forked_child_single_threaded`]).
//!
//! The probe is only safe in a single-threaded process, so this test binary has no test
//! harness (`harness = false` in Cargo.toml): `main` runs each check on the only thread.
//! The oracle is a `MAP_SHARED` anonymous counter that parent and child both see.

use mmkit::process::in_forked_child_single_threaded;
use mmkit::{page_size, MapOptions};

/// A panic in the closure ends the child there: it must not unwind into the caller's code and
/// run the rest of the program a second time (issue 10, item 6).
fn a_panic_in_the_child_never_unwinds_into_the_caller() {
    let mut runs = MapOptions::new().len(page_size()).map_anon_shared().unwrap();
    // The child inherits this hook: its panic prints one line instead of a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| eprintln!("(expected, in the probe's child) {info}")));
    let result = std::panic::catch_unwind(|| in_forked_child_single_threaded(|| panic!("boom in the child")));
    std::panic::set_hook(default_hook);
    // This line runs once per process that returns here: the parent only.
    runs[0] += 1;
    let result = result.expect("the parent's call itself never panics");
    let err = result.expect_err("a panicking closure gives an error");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(err.signal(), None, "{err}");
    // Give a runaway child (the bug) time to reach the increment too; the correct child has
    // already been reaped by the probe.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(runs[0], 1, "the caller's code ran in the child too");
}

/// A closure that returns gives its value; one that dies of a signal gives the signal.
fn values_and_signals_are_reported() {
    assert_eq!(in_forked_child_single_threaded(|| 42).unwrap(), 42);
    let raw = mmkit::MapOptions::new().len(page_size()).protection(mmkit::Protection::NONE).map_anon_raw().unwrap();
    let p = raw.as_ptr() as usize;
    // SAFETY: the child reads an inaccessible page through a raw pointer and dies of SIGSEGV;
    // nothing else happens in it.
    let err = in_forked_child_single_threaded(|| unsafe { (p as *const u8).read_volatile() } as u64).unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGSEGV), "{err}");
}

/// A private `MmapMut` advised `MADV_WIPEONFORK` reads back zeros in a probe (valid bytes)
/// through borrows the child makes from the face, while the parent keeps its data.
fn wipe_on_fork_gives_the_child_zeros() {
    let mut secret = MapOptions::new().len(page_size()).map_anon().unwrap();
    secret.fill(7);
    // SAFETY: the child borrows the face afresh (`iter` after the fork); no reference into the
    // bytes made before the fork is used there.
    unsafe { secret.wipe_on_fork(..) }.unwrap();
    let child = in_forked_child_single_threaded(|| secret.iter().map(|&b| b as u64).sum()).unwrap();
    assert_eq!(child, 0);
    assert!(secret.iter().all(|&b| b == 7));
}

/// With the (now `unsafe`) `dont_fork`, the probe's child dies when it breaks the contract and
/// touches the range: the kernel really unmaps it there, which is why the call is `unsafe`.
fn dont_fork_is_what_its_safety_section_says() {
    let mut mem = MapOptions::new().len(page_size()).map_anon().unwrap();
    mem[0] = 3;
    // SAFETY: the child below only reads the address through a raw pointer (and dies).
    unsafe { mem.dont_fork(..) }.unwrap();
    let p = mem.as_ptr() as usize;
    // SAFETY: a raw read of an address unmapped in the child.
    let err = in_forked_child_single_threaded(|| unsafe { (p as *const u8).read_volatile() } as u64).unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGSEGV), "{err}");
    assert_eq!(mem[0], 3);
}

/// In a probe's child every face's memory is still mapped, so a `FixedNoReplace` map at its
/// address fails (`EEXIST`) instead of making a second owner of the page (issue 10, item 4:
/// with a safe `dont_fork` it succeeded).
fn a_child_cannot_map_a_second_owner_over_a_face() {
    let mut mem = MapOptions::new().len(page_size()).map_anon().unwrap();
    mem[0] = 5;
    let at = mem.as_ptr() as usize;
    let errno = in_forked_child_single_threaded(|| {
        match MapOptions::new().len(page_size()).placement(mmkit::Placement::FixedNoReplace(at)).map_anon() {
            Ok(_) => 0,
            Err(e) => e.errno().unwrap_or(-1) as u64,
        }
    })
    .unwrap();
    assert_eq!(errno, libc::EEXIST as u64);
    assert_eq!(mem[0], 5);
}

/// `GrowableMmap::grow` gives the new bytes storage, so on a full file system it fails with
/// `ENOSPC` instead of leaving a hole whose first write through the safe `&mut [u8]` raises
/// `SIGBUS` (review rev-core, F3); `GrowableMmap::new` gives a sparse file's holes storage
/// likewise. The child mounts a 64 KiB tmpfs in a mount namespace of its
/// own (root only: elsewhere the check says it was skipped).
fn a_grown_file_on_a_full_file_system_is_an_error_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let result = in_forked_child_single_threaded(|| {
        // SAFETY: plain syscalls on valid NUL-terminated strings (or null where the kernel
        // allows it); they change only this child's own (new) mount namespace.
        let mounted = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, c"size=64k".as_ptr().cast())
                    == 0
        };
        if !mounted {
            return 0;
        }
        // A sparse file of 1 MiB: mapping it must give its holes storage (or fail).
        let mut rw = std::fs::OpenOptions::new();
        let sparse = rw.read(true).write(true).create(true).truncate(true).open(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 20).unwrap();
        // SAFETY: the file is ours alone.
        match unsafe { mmkit::GrowableMmap::new(sparse, 1 << 20) } {
            Err(e) if e.errno() == Some(libc::ENOSPC) => {}
            Err(_) => return 5,
            Ok(mut g) => {
                g.fill(7); // SIGBUS before the fix
                return 4;
            }
        }
        let _ = std::fs::remove_file(dir.path().join("sparse"));
        let path = dir.path().join("log");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        // SAFETY: the file is ours alone.
        let mut g = unsafe { mmkit::GrowableMmap::new(file, 1 << 20) }.unwrap();
        if g.grow(4096).is_err() {
            return 7;
        }
        match g.grow(1 << 20) {
            // The error names the bytes it could not allocate: the new ones.
            Err(e) if e.errno() == Some(libc::ENOSPC) && e.range() != Some((4096, (1 << 20) - 4096)) => 6,
            Err(e) if e.errno() == Some(libc::ENOSPC) => 1,
            Err(_) => 3,
            Ok(()) => {
                g.fill(7); // SIGBUS before the fix
                2
            }
        }
    });
    match result {
        Ok(1) => {}
        Ok(0) => {
            skip_unless_root_under_ci("tmpfs mount");
            println!("(skipped: no mount namespace or tmpfs mount for this user)")
        }
        other => panic!("growth on a full file system: {other:?} (6: the error names the wrong range)"),
    }
}

/// A FUSE file whose daemon says "fs-verity" (answering `FS_IOC_MEASURE_VERITY` with `EOVERFLOW`,
/// which means "enabled, buffer too small") is not proven immutable: the daemon can change or
/// shrink it at any time (review rev-core, F4: it did, and the safe slice raised `SIGBUS`). The
/// child mounts a one-file FUSE file system in a mount namespace of its own and serves it from a
/// thread (root only: elsewhere the check says it was skipped).
fn map_if_safe_does_not_take_a_fuse_daemons_word_for_fs_verity() {
    let dir = tempfile::tempdir().unwrap();
    let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let result = in_forked_child_single_threaded(|| {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        // A daemon that never answers must not hang the suite: SIGALRM ends the child (the
        // probe reports the signal, and the check below fails naming it).
        // SAFETY: `alarm` only arms a timer.
        unsafe { libc::alarm(30) };
        // SAFETY: plain syscalls on valid NUL-terminated strings (or null where the kernel
        // allows it); they change only this child's own (new) mount namespace.
        let fuse = unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return 0;
            }
            libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
        };
        if fuse < 0 {
            return 0;
        }
        let opts = std::ffi::CString::new(format!("fd={fuse},rootmode=40000,user_id=0,group_id=0")).unwrap();
        // SAFETY: as above.
        if unsafe { libc::mount(c"liar".as_ptr(), target.as_ptr(), c"fuse".as_ptr(), 0, opts.as_ptr().cast()) } != 0 {
            return 0;
        }
        // SAFETY: `fuse` is the descriptor just opened, owned by this File from here on.
        let mut dev = unsafe { std::fs::File::from_raw_fd(fuse) };
        std::thread::spawn(move || {
            let attr = |ino: u64| {
                let (mode, size, nlink) = if ino == 1 { (0o40755u32, 0u64, 2u32) } else { (0o100444, 8192, 1) };
                let mut a = Vec::new();
                for v in [ino, size, size / 512, 0, 0, 0] {
                    a.extend_from_slice(&v.to_le_bytes());
                }
                for v in [0u32, 0, 0, mode, nlink, 0, 0, 0, 4096, 0] {
                    a.extend_from_slice(&v.to_le_bytes());
                }
                a
            };
            let mut buf = vec![0u8; 4 << 20];
            loop {
                let Ok(n) = dev.read(&mut buf) else { return };
                let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
                let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
                let (op, unique, node) = (u32_at(4), u64_at(8), u64_at(16));
                let (err, data): (i32, Vec<u8>) = match op {
                    // INIT: protocol 7.31, max_readahead as asked, max_write 128 KiB.
                    26 => {
                        let mut d = Vec::new();
                        for v in [7u32, 31, u32_at(48), 0] {
                            d.extend_from_slice(&v.to_le_bytes());
                        }
                        d.extend_from_slice(&16u16.to_le_bytes());
                        d.extend_from_slice(&12u16.to_le_bytes());
                        d.extend_from_slice(&(128u32 << 10).to_le_bytes());
                        d.extend_from_slice(&1u32.to_le_bytes());
                        d.extend_from_slice(&[0u8; 36]);
                        (0, d)
                    }
                    // LOOKUP of "f" in the root.
                    1 if node == 1 && buf[40..n].starts_with(b"f\0") => {
                        let mut d = vec![0u8; 40];
                        d[..8].copy_from_slice(&2u64.to_le_bytes());
                        d.extend(attr(2));
                        (0, d)
                    }
                    1 => (libc::ENOENT, Vec::new()),
                    3 => {
                        let mut d = vec![0u8; 16];
                        d.extend(attr(node));
                        (0, d)
                    }
                    14 | 27 => (0, vec![0u8; 16]),
                    // The lie: "verity is enabled; your buffer is too small for the digest".
                    39 => (libc::EOVERFLOW, Vec::new()),
                    2 | 42 => continue,
                    _ => (libc::ENOSYS, Vec::new()),
                };
                let mut out = Vec::new();
                out.extend_from_slice(&(16 + data.len() as u32).to_le_bytes());
                out.extend_from_slice(&(-err).to_le_bytes());
                out.extend_from_slice(&unique.to_le_bytes());
                out.extend(data);
                if dev.write_all(&out).is_err() {
                    return;
                }
            }
        });
        let Ok(file) = std::fs::File::open(dir.path().join("f")) else { return 3 };
        match MapOptions::new().map_if_safe(&file) {
            Err(e) if e.kind() == mmkit::ErrorKind::NotSafe => 1,
            Err(_) => 4,
            Ok(_) => 2,
        }
    });
    match result {
        Ok(1) => {}
        Ok(0) => {
            skip_unless_root_under_ci("FUSE mount");
            println!("(skipped: no mount namespace or FUSE mount for this user)")
        }
        other => panic!("map_if_safe of a FUSE file claiming fs-verity: {other:?} (2: mapped as safe)"),
    }
}

/// A root-only check that could not set itself up: skipped for an unprivileged user, a failure
/// as root under `CI=true` (DESIGN.md: a missing prerequisite fails under CI, never skips
/// silently: a CI container without the capability would turn the check into a no-op).
fn skip_unless_root_under_ci(what: &str) {
    let root = rustix::process::geteuid().is_root();
    assert!(
        !root || std::env::var("CI").as_deref() != Ok("true"),
        "root under CI=true, yet no mount namespace or {what}: the check cannot run (CAP_SYS_ADMIN, /dev/fuse?)"
    );
}

/// Regression (review B): the probe's pipe was not close-on-exec, so a process the closure
/// started (or, with the `unsafe` probe, another thread) held its write end: when the child then
/// died before writing, the parent waited for that process to exit instead of seeing the end of
/// the pipe (with `sleep infinity`: for ever). Safe code throughout.
fn a_child_dying_after_starting_a_process_is_reported_at_once() {
    // The child writes the sleeper's pid here; this process reads only its own file (no stale
    // file of another run names a pid to kill).
    let note = tempfile::NamedTempFile::new().unwrap();
    let note_path = note.path().to_path_buf();
    let started = std::time::Instant::now();
    let result = in_forked_child_single_threaded(|| {
        // A process that outlives the child; it is killed below.
        let sleeper = std::process::Command::new("sleep").arg("20").spawn().expect("sleep starts");
        std::fs::write(&note_path, sleeper.id().to_string()).unwrap();
        std::process::abort()
    });
    let waited = started.elapsed();
    if let Some(pid) = std::fs::read_to_string(note.path()).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
        // SAFETY: a plain signal to the sleeper the child started (still running: `sleep 20`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(result.unwrap_err().signal(), Some(libc::SIGABRT));
    assert!(waited < std::time::Duration::from_secs(10), "the probe waited {waited:?} for an unrelated process");
}

fn main() {
    let checks: [(&str, fn()); 8] = [
        (
            "a_child_dying_after_starting_a_process_is_reported_at_once",
            a_child_dying_after_starting_a_process_is_reported_at_once,
        ),
        (
            "map_if_safe_does_not_take_a_fuse_daemons_word_for_fs_verity",
            map_if_safe_does_not_take_a_fuse_daemons_word_for_fs_verity,
        ),
        (
            "a_grown_file_on_a_full_file_system_is_an_error_not_sigbus",
            a_grown_file_on_a_full_file_system_is_an_error_not_sigbus,
        ),
        ("a_child_cannot_map_a_second_owner_over_a_face", a_child_cannot_map_a_second_owner_over_a_face),
        ("a_panic_in_the_child_never_unwinds_into_the_caller", a_panic_in_the_child_never_unwinds_into_the_caller),
        ("values_and_signals_are_reported", values_and_signals_are_reported),
        ("wipe_on_fork_gives_the_child_zeros", wipe_on_fork_gives_the_child_zeros),
        ("dont_fork_is_what_its_safety_section_says", dont_fork_is_what_its_safety_section_says),
    ];
    for (name, check) in checks {
        check();
        println!("test {name} ... ok");
    }
}
