//! Tests under lowered resource limits: the limits are per process, so such a test re-runs
//! itself in a child of its test binary and lowers them there.

#![allow(dead_code)]

/// The child's marker in its environment.
const ROLE: &str = "MMKIT_TEST_LIMITED_CHILD";

/// Whether this is the child of test `name`, which goes on to lower its limits and prints
/// `LIMITED OK` when done. In the parent, runs that child and asserts it printed that.
pub fn in_limited_child(name: &str) -> bool {
    if std::env::var_os(ROLE).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("LIMITED OK"), "{:?}\n{text}", out.status);
    false
}

/// This process's `field` (`VmData`, `VmSize`) from /proc/self/status, in bytes.
pub fn vm_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

/// Sets the soft `resource` limit to `cur` and returns the old limits.
pub fn lower_soft_limit(resource: libc::__rlimit_resource_t, cur: u64) -> libc::rlimit {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the valid struct given; setrlimit reads a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(resource, &mut old), 0);
        let cur = libc::rlim_t::try_from(cur).expect("a limit the target's rlim_t holds");
        assert_eq!(libc::setrlimit(resource, &libc::rlimit { rlim_cur: cur, rlim_max: old.rlim_max }), 0);
    }
    old
}

/// Puts back the limits [`lower_soft_limit`] returned.
pub fn restore_limit(resource: libc::__rlimit_resource_t, old: &libc::rlimit) {
    // SAFETY: setrlimit reads a valid struct.
    assert_eq!(unsafe { libc::setrlimit(resource, old) }, 0);
}
