//! Helpers every test module uses: running `mmkit`, reading its output, building the fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `mmkit` binary under test.
pub const MMKIT: &str = env!("CARGO_BIN_EXE_mmkit");

/// Runs `mmkit ARGS` and collects its output.
pub fn mmkit(args: &[&str]) -> Output {
    Command::new(MMKIT).args(args).output().expect("run mmkit")
}

/// The run's stdout, lossily decoded.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The run's stderr, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run succeeded and printed JSON: the parsed document.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("mmkit prints JSON")
}

/// Whether the running kernel is at least `major.minor` (from `/proc/sys/kernel/osrelease`).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Compiles the C file `src` into `dir/name` with gcc (`-O1`) and `flags`.
pub fn gcc(dir: &Path, name: &str, src: &Path, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("gcc").args(flags).arg("-O1").arg("-o").arg(&out).arg(src).status();
    assert!(status.expect("the CLI tests compile C fixtures: install gcc").success(), "gcc {}", src.display());
    out
}

/// The loader's basic fixture library (`tests/fixtures/basic.c`, a link to mmkit-elf's: `cargo
/// package` copies its target into this crate's package), built into `dir/libfxbasic.so` with
/// extra gcc `flags`.
pub fn fixture_so(dir: &Path, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/basic.c");
    let mut all = vec!["-shared", "-fPIC"];
    all.extend_from_slice(flags);
    gcc(dir, "libfxbasic.so", &src, &all)
}
