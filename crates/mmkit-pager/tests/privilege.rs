//! Privilege detection: root gets full fault handling; an unprivileged user gets
//! `UFFD_USER_MODE_ONLY` (or the device / sysctl route when the machine allows it).

mod support;

use mmkit_pager::{Backing, DirtyMechanism, FaultMode, Filled, FnSource, OpenedVia, PagedRegion, ShmemFill};
use support::{child_role, run_child};

fn expected_for_this_user() -> (FaultMode, Option<OpenedVia>) {
    if rustix::process::geteuid().is_root() {
        return (FaultMode::Full, Some(OpenedVia::Syscall));
    }
    let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd").unwrap_or_default();
    if sysctl.trim() == "1" {
        return (FaultMode::Full, Some(OpenedVia::Syscall));
    }
    if rustix::fs::access("/dev/userfaultfd", rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK).is_ok() {
        return (FaultMode::Full, Some(OpenedVia::Device));
    }
    (FaultMode::UserModeOnly, None)
}

fn check_this_user() {
    let caps = mmkit_pager::capabilities().unwrap();
    let (mode, via) = expected_for_this_user();
    assert_eq!(caps.mode, mode, "{caps:?}");
    if let Some(via) = via {
        assert_eq!(caps.via, via);
    }
    let page = mmkit::page_size();
    let region = PagedRegion::new(
        2 * page,
        FnSource(|_, buf: &mut [u8]| {
            buf.fill(4);
            Ok(Filled::Data)
        }),
    )
    .unwrap();
    assert_eq!(region.fault_mode(), mode);
    // A system call reading a missing page: full mode waits for the handler; user-mode-only
    // fails with EFAULT (the documented limit), never garbage.
    let (r, w) = rustix::pipe::pipe().unwrap();
    let sent = rustix::io::write(&w, &region.as_slice()[page..page + 16]);
    match mode {
        FaultMode::Full => {
            assert_eq!(sent, Ok(16));
            let mut b = [0u8; 16];
            rustix::io::read(&r, &mut b).unwrap();
            assert_eq!(b, [4; 16]);
        }
        FaultMode::UserModeOnly => assert_eq!(sent, Err(rustix::io::Errno::FAULT)),
    }
    assert_eq!(region.as_slice()[0], 4);
    // The memfd backing served with UFFDIO_CONTINUE works in every mode too (minor faults of
    // shmem need no extra privilege), staged and faulted pages alike.
    let shmem = PagedRegion::builder(2 * page)
        .backing(Backing::SharedMemory(ShmemFill::Continue))
        .build(FnSource(|_, buf: &mut [u8]| {
            buf.fill(6);
            Ok(Filled::Data)
        }))
        .unwrap();
    shmem.stage(0, &vec![5; page]).unwrap();
    assert_eq!((shmem.as_slice()[0], shmem.as_slice()[page]), (5, 6));
    assert_eq!((shmem.stats().staged_pages, shmem.stats().source_calls), (1, 1));
}

/// Becomes nobody (65534) before anything opens a userfaultfd; glibc applies the ids to every
/// thread of this freshly started child process.
fn become_nobody() {
    // rustix reads /proc/self/auxv for the page size in a static binary (the CI VM's): read it
    // while /proc/self is still ours.
    let _ = mmkit::page_size();
    // SAFETY: plain id-changing calls with valid arguments; PR_SET_DUMPABLE gives /proc/self
    // back to the new user (changing ids clears it).
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
        assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
        assert_eq!(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
    }
}

#[test]
fn this_user_gets_the_mode_its_privileges_allow() {
    if child_role().is_some() {
        return;
    }
    support::with_timeout(60, check_this_user);
}

#[test]
fn an_unprivileged_user_is_detected_and_served() {
    if child_role().as_deref() == Some("unprivileged") {
        become_nobody();
        assert!(!rustix::process::geteuid().is_root());
        check_this_user();
        println!("UNPRIVILEGED OK {:?}", mmkit_pager::capabilities().unwrap());
        return;
    }
    if child_role().is_some() || !rustix::process::geteuid().is_root() {
        return; // the other test covers a non-root run
    }
    let (status, out) = run_child(&[], "an_unprivileged_user_is_detected_and_served", "unprivileged", 60);
    assert!(status.success() && out.contains("UNPRIVILEGED OK"), "{status:?}\n{out}");
}

/// Fails `userfaultfd(2)` with `EPERM` on this thread, as a kernel with
/// `vm.unprivileged_userfaultfd=0` and no `UFFD_USER_MODE_ONLY` would.
fn deny_userfaultfd_syscall() {
    support::deny_syscall(libc::SYS_userfaultfd, None, libc::EPERM);
}

#[test]
fn no_route_to_userfaultfd_is_a_clear_error_naming_the_sysctl_and_the_device() {
    if child_role().as_deref() == Some("denied") {
        become_nobody();
        deny_userfaultfd_syscall();
        let err = PagedRegion::new(mmkit::page_size(), mmkit_pager::ZeroSource).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.errno(), Some(libc::EPERM), "{msg}");
        assert!(msg.contains("vm.unprivileged_userfaultfd") && msg.contains("/dev/userfaultfd"), "{msg}");
        println!("DENIED OK: {msg}");
        return;
    }
    if child_role().is_some() || !rustix::process::geteuid().is_root() {
        return;
    }
    let (status, out) =
        run_child(&[], "no_route_to_userfaultfd_is_a_clear_error_naming_the_sysctl_and_the_device", "denied", 60);
    assert!(status.success() && out.contains("DENIED OK"), "{status:?}\n{out}");
}

/// Out of descriptors (`RLIMIT_NOFILE`) is said as it is: the error named the sysctl and the
/// device (the privilege routes it tried next), which would not help.
#[test]
fn running_out_of_descriptors_is_named_not_mistaken_for_a_privilege_refusal() {
    const NAME: &str = "running_out_of_descriptors_is_named_not_mistaken_for_a_privilege_refusal";
    if child_role().as_deref() == Some("emfile") {
        let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let region = PagedRegion::new(mmkit::page_size(), mmkit_pager::ZeroSource).unwrap();
        // Every descriptor taken: the next region's first need, its userfaultfd, is refused.
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        let err = PagedRegion::new(mmkit::page_size(), mmkit_pager::ZeroSource).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.errno(), Some(libc::EMFILE), "{msg}");
        assert!(msg.starts_with("userfaultfd") && !msg.contains("sysctl"), "{msg}");
        // The region built before still serves.
        assert_eq!(region.as_slice()[1], 0);
        drop(held);
        println!("EMFILE OK: {msg}");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let (status, out) = run_child(&[], NAME, "emfile", 60);
    assert!(status.success() && out.contains("EMFILE OK"), "{status:?}\n{out}");
}

/// What the dirty module documents for an unprivileged user (`UFFD_USER_MODE_ONLY`): a system
/// call writing into a *supplied* page works under `PagemapScan` (the kernel lifts the
/// asynchronous protection itself), fails with `EFAULT` under `WriteProtect` (the protection
/// is lifted only by a fault delivered to the handler, and kernel-mode faults are not), and
/// works there once the page was written from user mode (the documented workaround), until a
/// collection protects it again. A missing page is `EFAULT` under both.
#[test]
fn an_unprivileged_users_system_calls_writing_into_tracked_pages_behave_as_documented() {
    const NAME: &str = "an_unprivileged_users_system_calls_writing_into_tracked_pages_behave_as_documented";
    if child_role().as_deref() == Some("dirty-syscalls") {
        become_nobody();
        if mmkit_pager::capabilities().unwrap().mode != FaultMode::UserModeOnly {
            println!("DIRTY SYSCALLS SKIPPED: this user gets full fault handling");
            return;
        }
        let page = mmkit::page_size();
        let (r, w) = rustix::pipe::pipe().unwrap();
        // `read(2)` of 16 bytes from a pipe into the region at `at`.
        let read_into = |region: &mut PagedRegion, at: usize| {
            rustix::io::write(&w, &[9u8; 16]).unwrap();
            let got = rustix::io::read(&r, &mut region.as_mut_slice()[at..at + 16]);
            if got.is_err() {
                rustix::io::read(&r, &mut [0u8; 16]).unwrap(); // empty the pipe
            }
            got
        };
        for mechanism in [DirtyMechanism::PagemapScan, DirtyMechanism::WriteProtect] {
            if !mechanism.is_available().unwrap() {
                println!("{mechanism:?} not offered: skipped");
                continue;
            }
            let mut region = PagedRegion::builder(4 * page)
                .track_dirty_with(mechanism)
                .build(FnSource(|_, buf: &mut [u8]| {
                    buf.fill(4);
                    Ok(Filled::Data)
                }))
                .unwrap();
            assert_eq!(std::hint::black_box(region.as_slice()[0]), 4); // supplied by a read
            assert_eq!(read_into(&mut region, 3 * page), Err(rustix::io::Errno::FAULT), "{mechanism:?}: missing");
            match mechanism {
                DirtyMechanism::PagemapScan => {
                    assert_eq!(read_into(&mut region, 0), Ok(16));
                    assert_eq!(region.collect_dirty().unwrap().pages, vec![0]);
                }
                _ => {
                    assert_eq!(read_into(&mut region, 0), Err(rustix::io::Errno::FAULT), "{mechanism:?}");
                    assert_eq!(region.as_slice()[0], 4, "nothing was written");
                    // The workaround: a user-mode write of the page first (of another value: a
                    // release build drops a store of the value just loaded from the same place).
                    region.as_mut_slice()[0] = 5;
                    assert_eq!(read_into(&mut region, 0), Ok(16));
                    assert_eq!(region.collect_dirty().unwrap().pages, vec![0]);
                    // Protected again by the collection.
                    assert_eq!(read_into(&mut region, 0), Err(rustix::io::Errno::FAULT));
                }
            }
            assert_eq!(region.as_slice()[..16], [9; 16]);
        }
        println!("DIRTY SYSCALLS OK");
        return;
    }
    if child_role().is_some() || !rustix::process::geteuid().is_root() {
        return;
    }
    let (status, out) = run_child(&[], NAME, "dirty-syscalls", 60);
    assert!(status.success() && out.contains("DIRTY SYSCALLS"), "{status:?}\n{out}");
    println!("{out}");
}
