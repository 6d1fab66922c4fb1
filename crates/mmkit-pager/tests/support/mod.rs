//! Helpers shared by the pager's integration tests.
#![allow(dead_code)]

use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `f` on another thread and fails the test if it takes longer than `secs` (a hang).
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test thread panicked (see above)"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {secs} s: a faulting thread hung"),
    }
}

/// The environment variable that tells a re-executed test binary which child role to play.
pub const CHILD_ENV: &str = "MMKIT_PAGER_TEST_CHILD";

/// Re-runs this test binary's test `name` with `CHILD_ENV=role` (through `prefix`, e.g.
/// `setpriv ...`), killing it after `secs`; returns its exit status and output.
pub fn run_child(prefix: &[&str], name: &str, role: &str, secs: u64) -> (ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if let Some((first, rest)) = prefix.split_first() {
        let mut c = Command::new(first);
        c.args(rest).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, role);
    let out = tempfile::NamedTempFile::new().unwrap();
    // One open file description for both (a shared offset): two opens of the file wrote over
    // each other, and a child's panic message came back cut by the harness's lines.
    let file = out.reopen().unwrap();
    let mut child = cmd.stdout(file.try_clone().unwrap()).stderr(file).spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("child {role} hung for {secs} s: {}", std::fs::read_to_string(out.path()).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(out.path()).unwrap())
}

/// The role this process plays, when it was started by [`run_child`].
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Page `i`'s expected pattern byte at offset `j`.
pub fn pattern(page: u64, j: usize) -> u8 {
    (page as u8).wrapping_mul(31).wrapping_add(j as u8)
}

/// Installs a seccomp filter on this thread (and the threads it starts afterwards) that fails
/// system call `nr` with `errno`; with `arg1`, only calls whose second argument's low 32 bits
/// are that value (an `mmap` of one length). How a test makes the kernel refuse one call as a
/// sysctl, a limit or an exhausted resource would, without the privileges to set them.
pub fn deny_syscall(nr: libc::c_long, arg1: Option<u32>, errno: i32) {
    deny_syscall_arg(nr, arg1.map(|v| (1, v)), errno);
}

/// [`deny_syscall`] matching argument `arg.0` (0 to 5) against `arg.1` (its low 32 bits): a
/// `read(2)` of one length is `(2, len)`.
pub fn deny_syscall_arg(nr: libc::c_long, arg: Option<(u32, u32)>, errno: i32) {
    let arg1 = arg.map(|(_, v)| v);
    let f = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let mut filter = vec![
        f(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // seccomp_data.nr
        f(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr as u32, 0, if arg1.is_some() { 3 } else { 1 }),
    ];
    if let Some(value) = arg1 {
        // seccomp_data.args[i] (after nr, arch and ip: 16 bytes), its low word (little-endian).
        let offset = 16 + 8 * arg.map_or(1, |(i, _)| i);
        filter.push(f(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0));
        filter.push(f(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, value, 0, 1));
    }
    filter.push(f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno as u32, 0, 0));
    filter.push(f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0));
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with valid arguments; the filter outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _), 0);
    }
}
