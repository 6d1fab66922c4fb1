//! The hostile-input corpus: every command against broken, strange and special inputs.
//!
//! Truncated and mutated ELF files and APKs, FIFOs, sockets, `/proc` and `/sys` files,
//! directories, symbolic-link loops, empty and sparse files, garbage device selectors and
//! numbers. Each run must end within [`LIMIT`] with exit 1 or 2 and exactly one `mmkit:` error
//! line on stderr (`mmkit: warning:` lines aside); where the input is merely odd (an empty file
//! for `residency`, a valid mutant) exit 0 is allowed too. Never a panic (exit 101), a hang, or a
//! death by signal. The corpus is generated here, in a temporary directory.
//!
//! `scripts/test` runs this file as root and again as an unprivileged user; the tests that are
//! about privilege (`residency` of a file the user cannot write) drop to uid 65534 themselves
//! when they run as root.

use crate::common::*;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run may take before it counts as a hang (generous: the machine is loaded).
const LIMIT: Duration = Duration::from_secs(20);

/// The unprivileged user the privilege tests run as (`nobody`).
const NOBODY: u32 = 65534;

/// What one run did.
#[derive(Debug)]
struct Outcome {
    args: Vec<OsString>,
    /// Exit code, or `None` when killed by a signal (or by us after [`LIMIT`]).
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// Runs `mmkit ARGS` with stdin closed, killing it after [`LIMIT`].
fn run(args: &[OsString]) -> Outcome {
    run_as(args, None)
}

fn run_as(args: &[OsString], uid: Option<u32>) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(MMKIT);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn().expect("run mmkit");
    let started = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status, false);
        }
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            break (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| {
        let mut s = Vec::new();
        std::fs::File::open(p).unwrap().read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    };
    Outcome {
        args: args.to_vec(),
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// What a run may end with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Exit 1 or 2 with one `mmkit:` error line.
    Fail,
    /// Exit 2 (a usage error) with one `mmkit:` error line.
    Usage,
    /// Success, or a failure as [`Expect::Fail`] describes: the input is odd but may be valid.
    NoCrash,
}

impl Outcome {
    /// Lines that report the error (`mmkit: ...`, not `mmkit: warning: ...` or `mmkit: note: ...`).
    fn error_lines(&self) -> Vec<&str> {
        let not_error = |l: &str| l.starts_with("mmkit: warning: ") || l.starts_with("mmkit: note: ");
        self.stderr.lines().filter(|l| l.starts_with("mmkit: ") && !not_error(l)).collect()
    }

    /// Checks the outcome against `expect`; returns a description of what is wrong.
    fn problem(&self, expect: Expect) -> Option<String> {
        let what = if self.timed_out {
            format!("still running after {LIMIT:?} (a hang)")
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else if self.code == Some(101) || self.stderr.contains("panicked") {
            "panicked".to_owned()
        } else {
            let code = self.code.unwrap_or(-1);
            let lines = self.error_lines().len();
            let ok = match expect {
                Expect::Fail => (code == 1 || code == 2) && lines == 1,
                Expect::Usage => code == 2 && lines == 1,
                Expect::NoCrash => code == 0 || ((code == 1 || code == 2) && lines == 1),
            };
            if ok {
                return None;
            }
            format!("exit {code} with {lines} `mmkit:` error line(s), expected {expect:?}")
        };
        Some(format!("mmkit {:?}: {what}\n--- stderr:\n{}", self.args, self.stderr))
    }
}

/// Runs every case and fails with all the problems at once.
fn check_all(cases: &[(Vec<OsString>, Expect)]) {
    let problems: Vec<String> = cases.iter().filter_map(|(args, expect)| run(args).problem(*expect)).collect();
    assert!(problems.is_empty(), "{} of {} runs misbehaved:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

/// A zip with `entries` (name, bytes), stored and page-aligned.
fn zip(path: &Path, entries: &[(&str, &[u8])]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let page = u16::try_from(rustix::param::page_size()).unwrap();
    for (name, bytes) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(page);
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Marks every entry of the zip at `path` as deflated (method 8) in its local and central
/// headers (the workspace's zip crate is built without compressors).
fn mark_deflated(path: &Path) {
    let mut z = std::fs::read(path).unwrap();
    for i in 0..z.len().saturating_sub(12) {
        let at = match &z[i..i + 4] {
            b"PK\x03\x04" => i + 8,
            b"PK\x01\x02" => i + 10,
            _ => continue,
        };
        z[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
    }
    std::fs::write(path, z).unwrap();
}

/// A small deterministic generator (xorshift64*), so that every run tries the same mutants.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Special files that are not what any command wants: the name and the path.
struct Specials {
    _dir: tempfile::TempDir,
    fifo: PathBuf,
    socket: PathBuf,
    _listener: std::os::unix::net::UnixListener,
    dir: PathBuf,
    loop_link: PathBuf,
    dangling: PathBuf,
    missing: PathBuf,
    empty: PathBuf,
    sparse: PathBuf,
    garbage: PathBuf,
    unreadable: PathBuf,
}

fn specials() -> Specials {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let fifo = p.join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    let socket = p.join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let dir = p.join("dir with a fifo");
    std::fs::create_dir(&dir).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, dir.join("inner fifo"), rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    let loop_link = p.join("loop-a");
    std::os::unix::fs::symlink(p.join("loop-b"), &loop_link).unwrap();
    std::os::unix::fs::symlink(&loop_link, p.join("loop-b")).unwrap();
    let dangling = p.join("dangling");
    std::os::unix::fs::symlink(p.join("nowhere"), &dangling).unwrap();
    let empty = p.join("empty");
    std::fs::File::create(&empty).unwrap();
    let sparse = p.join("sparse");
    std::fs::File::create(&sparse).unwrap().set_len(1 << 30).unwrap();
    let garbage = p.join("garbage");
    let mut rng = Rng(0x5eed);
    std::fs::write(&garbage, (0..10_000).map(|_| rng.next() as u8).collect::<Vec<u8>>()).unwrap();
    let unreadable = p.join("unreadable");
    std::fs::write(&unreadable, b"\x7fELF secret").unwrap();
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    Specials {
        missing: p.join("missing"),
        _dir: d,
        fifo,
        socket,
        _listener: listener,
        dir,
        loop_link,
        dangling,
        empty,
        sparse,
        garbage,
        unreadable,
    }
}

impl Specials {
    /// Paths no command can use as a file (each is refused with a clear error).
    fn unusable(&self) -> Vec<PathBuf> {
        vec![
            self.fifo.clone(),
            self.socket.clone(),
            self.dir.clone(),
            self.loop_link.clone(),
            self.dangling.clone(),
            self.missing.clone(),
            "/dev/zero".into(),
            "/dev/null".into(),
        ]
    }

    /// Regular files that are not ELF images (odd for `residency`, but valid there).
    fn not_elf(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.empty.clone(),
            self.sparse.clone(),
            self.garbage.clone(),
            "/proc/self/maps".into(),
            "/proc/self/mem".into(),
            "/proc/self/status".into(),
            "/proc/self/pagemap".into(),
            "/proc/kcore".into(),
            "/sys/kernel/mm/transparent_hugepage/enabled".into(),
        ];
        if !is_root() {
            v.push(self.unreadable.clone());
        }
        v.retain(|p| p.exists());
        v
    }
}

#[test]
fn files_that_are_not_elf_images() {
    let s = specials();
    let mut cases = Vec::new();
    for p in s.unusable().iter().chain(&s.not_elf()) {
        let p = p.as_os_str();
        let entry = {
            let mut e = p.to_owned();
            e.push("!/lib/x86_64/libfoo.so");
            e
        };
        for args in [
            vec!["elf".into(), "plan".into(), p.to_owned()],
            vec!["elf".into(), "plan".into(), p.to_owned(), "--json".into()],
            vec!["elf".into(), "load".into(), p.to_owned()],
            vec!["elf".into(), "call".into(), p.to_owned(), "fx_add".into(), "1".into()],
            vec!["elf".into(), "plan".into(), entry.clone()],
            vec!["elf".into(), "load".into(), entry],
        ] {
            cases.push((args, Expect::Fail));
        }
    }
    check_all(&cases);
}

#[test]
fn residency_of_special_files() {
    let s = specials();
    let mut cases = Vec::new();
    for p in s.unusable() {
        let fail = if p == s.dir { Expect::NoCrash } else { Expect::Fail };
        for flags in [&[][..], &["--json"], &["--touch"], &["--evict"]] {
            let mut args = os(&["residency"]);
            args.extend(flags.iter().map(OsString::from));
            args.push(p.clone().into());
            cases.push((args, fail));
        }
    }
    for p in s.not_elf() {
        for flags in [&[][..], &["--touch"], &["--evict"]] {
            let mut args = os(&["residency"]);
            args.extend(flags.iter().map(OsString::from));
            args.push(p.clone().into());
            cases.push((args, Expect::NoCrash));
        }
    }
    // A directory holding a FIFO: the walk skips it, nothing blocks.
    cases.push((vec!["residency".into(), s.dir.clone().into()], Expect::NoCrash));
    cases.push((os(&["residency", "--threads", "nan", "/etc/passwd"]), Expect::Usage));
    cases.push((os(&["residency", "--threads", "-1", "/etc/passwd"]), Expect::Usage));
    cases.push((os(&["residency"]), Expect::Usage));
    check_all(&cases);
}

#[test]
fn truncated_and_mutated_elf_files() {
    let d = tempfile::tempdir().unwrap();
    let so = fixture_so(d.path(), &[]);
    let image = std::fs::read(&so).unwrap();
    let mut cases = Vec::new();
    // Truncated: inside the ELF header, the program headers, the segments, one byte short.
    let mut cuts = vec![1, 4, 16, 52, 63, 64, 65, 64 + 56, 64 + 56 * 3 + 7, 4096, image.len() / 2, image.len() - 1];
    cuts.retain(|&c| c < image.len());
    for cut in cuts {
        let p = d.path().join(format!("cut-{cut}.so"));
        std::fs::write(&p, &image[..cut]).unwrap();
        for cmd in ["plan", "load"] {
            cases.push((vec!["elf".into(), cmd.into(), p.clone().into()], Expect::NoCrash));
        }
        cases.push((vec!["elf".into(), "call".into(), p.clone().into(), "fx_add".into()], Expect::NoCrash));
    }
    // Mutated: random bytes of the ELF header and program header table (the loader's input;
    // mutating code would only test what the code does when run).
    let phdr_end = 64 + 56 * usize::from(u16::from_le_bytes([image[56], image[57]]));
    let mut rng = Rng(0x00e1_f5ee_d000_0001);
    for i in 0..40 {
        let mut m = image.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(phdr_end);
            m[at] = rng.next() as u8;
        }
        let p = d.path().join(format!("mutant-{i}.so"));
        std::fs::write(&p, &m).unwrap();
        cases.push((
            vec!["elf".into(), "plan".into(), p.clone().into(), "--page-size".into(), "4k".into()],
            Expect::NoCrash,
        ));
        cases.push((
            vec!["elf".into(), "plan".into(), p.clone().into(), "--page-size".into(), "64k".into()],
            Expect::NoCrash,
        ));
        cases.push((vec!["elf".into(), "load".into(), p.clone().into()], Expect::NoCrash));
    }
    // An executable (ET_DYN like a library, with an interpreter): planned, or refused.
    cases.push((os(&["elf", "plan", "/proc/self/exe"]), Expect::NoCrash));
    // Symbols and arguments that are not there.
    let so = so.into_os_string();
    cases.push((vec!["elf".into(), "call".into(), so.clone(), "no_such_symbol".into()], Expect::Fail));
    // Data, not functions: calling them jumped into data (SIGSEGV) before they were refused.
    for data in ["fx_counter", "fx_counter_ptr"] {
        cases.push((vec!["elf".into(), "call".into(), so.clone(), data.into(), "1".into()], Expect::Fail));
    }
    cases.push((vec!["elf".into(), "call".into(), so.clone(), "".into()], Expect::Fail));
    let seven: Vec<OsString> = (0..7).map(|i| i.to_string().into()).collect();
    cases.push(([vec!["elf".into(), "call".into(), so.clone(), "fx_add".into()], seven].concat(), Expect::Fail));
    for bad in ["nan", "1e3", "--5", "99999999999999999999", "0x"] {
        cases.push((vec!["elf".into(), "call".into(), so.clone(), "fx_add".into(), bad.into()], Expect::Usage));
    }
    for bad in ["0", "3000", "nan", "-4k", "8388608T", "1T"] {
        cases.push((vec!["elf".into(), "plan".into(), so.clone(), "--page-size".into(), bad.into()], Expect::Usage));
    }
    check_all(&cases);
}

#[test]
fn broken_and_unusable_apks() {
    let d = tempfile::tempdir().unwrap();
    let so = std::fs::read(fixture_so(d.path(), &[])).unwrap();
    let entry = "lib/x86_64/libfxbasic.so";
    let good = d.path().join("good.apk");
    zip(&good, &[("AndroidManifest.xml", b"<manifest/>"), (entry, &so)]);
    let deflated = d.path().join("deflated.apk");
    zip(&deflated, &[(entry, &so)]);
    mark_deflated(&deflated);
    let not_elf = d.path().join("not-elf.apk");
    zip(&not_elf, &[(entry, b"not an ELF image at all")]);
    let apk = std::fs::read(&good).unwrap();
    let mut archives = vec![good.clone(), deflated, not_elf];
    // Truncated: no central directory, a cut central directory, a cut entry.
    for cut in [0, 22, apk.len() / 2, apk.len() - 22, apk.len() - 1] {
        let p = d.path().join(format!("cut-{cut}.apk"));
        std::fs::write(&p, &apk[..cut]).unwrap();
        archives.push(p);
    }
    // Mutated: bytes of the central directory and the end record, and of the local headers.
    let cd = apk.len() - 22 - 2 * (46 + entry.len()).min(apk.len() / 4);
    let mut rng = Rng(0x21b_0000_0000_0001);
    for i in 0..30 {
        let mut m = apk.clone();
        let at = if i % 3 == 0 { rng.below(64) } else { cd + rng.below(apk.len() - cd) };
        m[at] = rng.next() as u8;
        let p = d.path().join(format!("mutant-{i}.apk"));
        std::fs::write(&p, &m).unwrap();
        archives.push(p);
    }
    let mut cases = Vec::new();
    for a in &archives {
        for name in [entry, "lib/missing.so", ""] {
            let mut source = a.clone().into_os_string();
            source.push("!/");
            source.push(name);
            cases.push((vec!["elf".into(), "plan".into(), source.clone()], Expect::NoCrash));
            if name != entry || a != &good {
                cases.push((vec!["elf".into(), "load".into(), source], Expect::NoCrash));
            }
        }
    }
    check_all(&cases);
    // The unusable ones are failures: a deflated entry, a missing entry, no archive.
    for (source, what) in [
        (format!("{}!/{entry}", d.path().join("deflated.apk").display()), "compressed"),
        (format!("{}!/lib/missing.so", good.display()), "no entry named"),
        (format!("{}!/{entry}", d.path().join("cut-0.apk").display()), "zip"),
    ] {
        let o = run(&os(&["elf", "plan", &source]));
        assert!(o.problem(Expect::Fail).is_none() && o.stderr.contains(what), "{source}: {}", o.stderr);
    }
}

#[test]
fn maps_of_odd_processes() {
    let mut zombie = Command::new("sleep").arg("60").spawn().unwrap();
    zombie.kill().unwrap();
    let zpid = zombie.id().to_string();
    // SIGKILL is delivered asynchronously: wait until the child is a zombie (not yet reaped).
    let stat = format!("/proc/{zpid}/stat");
    while !std::fs::read_to_string(&stat).unwrap().rsplit_once(')').is_some_and(|(_, r)| r.starts_with(" Z ")) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut cases = vec![
        (os(&["maps", "0"]), Expect::Fail),
        (os(&["maps", "4294967295"]), Expect::Fail),
        (os(&["maps", "4294967296"]), Expect::Usage),
        (os(&["maps", "-1"]), Expect::Usage),
        (os(&["maps", "1x"]), Expect::Usage),
        (os(&["maps", &zpid]), Expect::Fail),
        (os(&["maps", &zpid, "--json"]), Expect::Fail),
        (os(&["maps", "--kind", "bogus"]), Expect::Usage),
        // A kernel thread has no mappings: an empty list is the true answer.
        (os(&["maps", "2"]), Expect::NoCrash),
    ];
    let init_uid = std::fs::metadata("/proc/1").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if is_root() || init_uid.ok() == Some(rustix::process::geteuid().as_raw()) {
        cases.push((os(&["maps", "1"]), Expect::NoCrash));
    } else {
        // Another user's process (init): the kernel refuses its smaps.
        cases.push((os(&["maps", "1"]), Expect::Fail));
    }
    check_all(&cases);
    // A zombie says it is one (it said the process "exited while its smaps was read", as if
    // the read had raced the exit), naming the parent that has not reaped it.
    let o = run(&os(&["maps", &zpid]));
    assert!(o.stderr.contains("a zombie"), "{}", o.stderr);
    assert!(o.stderr.contains(&format!("process {}", std::process::id())), "{}", o.stderr);
    assert!(!o.stderr.contains("while its"), "{}", o.stderr);
    zombie.wait().unwrap();
}

#[test]
fn mmio_with_garbage_sources() {
    // Only selectors that name no real device: the corpus must never touch hardware.
    let cases: Vec<(Vec<OsString>, Expect)> = [
        (&["mmio", "read", "--uio", "99", "0"][..], Expect::Fail),
        (&["mmio", "read", "--uio", "99:7", "0x10"], Expect::Fail),
        (&["mmio", "read", "--uio", "4294967296", "0"], Expect::Usage),
        (&["mmio", "read", "--uio", "0:x", "0"], Expect::Usage),
        (&["mmio", "read", "--pci", "ffff:ff:1f.7", "0"], Expect::Fail),
        (&["mmio", "read", "--pci", "dead:beef", "--bar", "5", "0"], Expect::Fail),
        (&["mmio", "read", "--pci", "ffff:ff:1f.7", "--bar", "6", "0"], Expect::Usage),
        (&["mmio", "read", "--pci", "ffff:ff:1f.7", "--bar", "-1", "0"], Expect::Usage),
        (&["mmio", "read", "--pci", "zz:zz.z", "0"], Expect::Usage),
        // ADDR + OFFSET past 2^64 is a bad command line (exit 2; it was 1); an access that
        // fits in 64 bits but not in /dev/mem is the kernel's refusal (exit 1).
        (&["mmio", "read", "--phys", "0xfffffffffffffffc", "8"], Expect::Usage),
        (&["mmio", "read", "--phys", "0xfffffffffffffff0", "8"], Expect::Fail),
        (&["mmio", "read", "--phys", "0x1ffffffffffffffff", "0"], Expect::Usage),
        (&["mmio", "read", "--phys", "nan", "0"], Expect::Usage),
        (&["mmio", "read", "--uio", "99", "--width", "0", "0"], Expect::Usage),
        (&["mmio", "read", "--uio", "99", "0x1ffffffffffffffff"], Expect::Usage),
        (&["mmio", "write", "--uio", "99", "0", "0x1ffffffffffffffff"], Expect::Usage),
        (&["mmio", "write", "--uio", "99", "-w", "16", "0", "0x10000"], Expect::Usage),
        (&["mmio", "write", "--phys", "0xffffffffffffffff", "1", "0"], Expect::Usage),
        (&["mmio", "write", "--pci", "ffff:ff:1f.7", "0", "0"], Expect::Fail),
        (&["mmio", "irq", "--uio", "99", "--timeout", "0.01"], Expect::Fail),
        (&["mmio", "irq", "--uio", "99", "--count", "0"], Expect::Usage),
        (&["mmio", "irq", "--uio", "99", "--count", "-1"], Expect::Usage),
        (&["mmio", "list"], Expect::NoCrash),
        (&["mmio", "list", "--json"], Expect::NoCrash),
        (&["mmio"], Expect::Usage),
    ]
    .iter()
    .map(|(a, e)| (os(a), *e))
    .collect();
    check_all(&cases);
}

/// Files named by options, not by SOURCE: `elf load --fd-offset`'s SOURCE, `--use-relro` and
/// `mmio --profile` were opened with `File::open`, which a FIFO blocked forever.
#[test]
fn files_named_by_options_are_refused_unless_regular() {
    let s = specials();
    let lib_dir = tempfile::tempdir().unwrap();
    let lib: OsString = fixture_so(lib_dir.path(), &[]).into();
    let mut cases = Vec::new();
    for p in s.unusable() {
        let p: OsString = p.into();
        cases.push((vec!["elf".into(), "load".into(), p.clone(), "--fd-offset".into(), "0".into()], Expect::Fail));
        cases.push((vec!["elf".into(), "load".into(), lib.clone(), "--use-relro".into(), p.clone()], Expect::Fail));
        // No device 99: the profile is read first.
        let read = ["mmio", "read", "--uio", "99", "--profile"].map(OsString::from);
        cases.push((read.into_iter().chain([p]).collect(), Expect::Fail));
    }
    check_all(&cases);
}

/// `mmio --profile` read the whole file into memory before parsing it: a sparse 3 GiB file
/// named by mistake took over a minute and 3 GiB of memory, a 1 TiB one failed with a bare
/// "out of memory", and 2 MiB of comments were parsed. A profile is refused past 1 MiB, at once.
#[test]
fn mmio_profiles_longer_than_a_mebibyte_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let sparse = d.path().join("sparse profile");
    std::fs::File::create(&sparse).unwrap().set_len(1 << 40).unwrap();
    let comments = d.path().join("comment profile");
    std::fs::write(&comments, "# a comment line of a device profile, repeated\n".repeat(48 << 10)).unwrap();
    assert!(std::fs::metadata(&comments).unwrap().len() > 2 << 20);
    for profile in [&sparse, &comments] {
        let args =
            [OsString::from("mmio"), "read".into(), "--uio".into(), "99".into(), "--profile".into(), profile.into()];
        let o = run(&args);
        assert!(o.problem(Expect::Fail).is_none(), "{o:?}");
        let line = o.error_lines()[0];
        assert!(line.contains("longer than 1048576 bytes") && line.contains(profile.to_str().unwrap()), "{line}");
    }
}

/// Item 15 of issue 10: `--timeout nan` waited on, now every absurd number is a usage error.
#[test]
fn irq_timeouts_that_are_not_durations_are_usage_errors() {
    for bad in ["nan", "NaN", "inf", "-inf", "-1", "-0.001", "1e300", "86401", "", "5s", "0x10"] {
        let o = run(&os(&["mmio", "irq", "--uio", "0", &format!("--timeout={bad}")]));
        assert!(o.problem(Expect::Usage).is_none(), "--timeout {bad:?}: {o:?}");
        assert!(o.stderr.contains("--timeout"), "{}", o.stderr);
    }
}

#[test]
fn pager_with_special_files() {
    // Before mmkit::open: a FIFO hung `info` and `pack` (as input and as output) in open(2);
    // a directory, a device and an empty file were reported as snapshots with exit 0.
    let s = specials();
    let out = tempfile::tempdir().unwrap();
    let o: OsString = out.path().join("o").into();
    let pager = |args: &[&OsString]| -> Vec<OsString> {
        let mut v = os(&["pager"]);
        v.extend(args.iter().map(|a| (*a).clone()));
        v
    };
    let (info, pack, json) = (OsString::from("info"), OsString::from("pack"), OsString::from("--json"));
    let mut cases = Vec::new();
    let input: OsString = s.garbage.clone().into();
    for p in s.unusable().into_iter().chain([s.empty.clone()]) {
        let p = OsString::from(p);
        cases.push((pager(&[&info, &p]), Expect::Fail));
        cases.push((pager(&[&info, &p, &json]), Expect::Fail));
        // An empty input packs into an empty seekable file.
        let expect = if p == s.empty.as_os_str() { Expect::NoCrash } else { Expect::Fail };
        cases.push((pager(&[&pack, &p, &o]), expect));
    }
    // As the output: refused before anything is opened for writing (never a device). A missing
    // file or a dangling link's target would be created, as by the shell's `>`.
    for p in [&s.fifo, &s.socket, &s.dir, &s.loop_link, Path::new("/dev/zero"), Path::new("/dev/null")] {
        cases.push((pager(&[&pack, &input, &p.into()]), Expect::Fail));
    }
    // The output in a directory that is not there, or behind a symbolic-link loop.
    for output in [s.missing.join("o"), s.loop_link.join("o"), s.fifo.join("o")] {
        cases.push((pager(&[&pack, &input, &output.into()]), Expect::Fail));
    }
    // The input packed onto itself.
    cases.push((pager(&[&pack, &input, &input]), Expect::Fail));
    // Regular files that are valid snapshots (raw bytes): reported, or refused.
    for p in [&s.sparse, &s.garbage] {
        let p = OsString::from(p);
        cases.push((pager(&[&info, &p]), Expect::NoCrash));
        cases.push((pager(&[&info, &p, &json]), Expect::NoCrash));
    }
    // /proc and /sys files: their size is not their content; `pack` and `info` refuse them all
    // (never packs /proc/self/maps as empty, nor reads /proc/kcore's terabytes).
    for p in s.not_elf().into_iter().filter(|p| p.starts_with("/proc") || p.starts_with("/sys")) {
        let p = OsString::from(p);
        cases.push((pager(&[&info, &p]), Expect::Fail));
        cases.push((pager(&[&pack, &p, &o]), Expect::Fail));
    }
    for bad in ["0", "nan", "-1", "99999999999T"] {
        let args = pager(&[&pack, &input, &o]);
        cases.push(([args, vec!["--frame-size".into(), bad.into()]].concat(), Expect::Fail));
    }
    for bad in ["0", "23", "nan"] {
        let args = pager(&[&pack, &input, &o]);
        cases.push(([args, vec!["--level".into(), bad.into()]].concat(), Expect::Usage));
    }
    cases.push((os(&["pager"]), Expect::Usage));
    cases.push((os(&["pager", "info"]), Expect::Usage));
    check_all(&cases);
    // The message says what the file is.
    let e = run(&pager(&[&info, &s.fifo.clone().into()]));
    assert!(e.stderr.contains("not a regular file: a FIFO"), "{}", e.stderr);
    let e = run(&pager(&[&info, &s.empty.clone().into()]));
    assert!(e.stderr.contains("the file is empty"), "{}", e.stderr);
}

/// Truncated and mutated zstd seekable files and snapshots: `info` reports them or refuses
/// them with one line, never a hang, a panic or a truncated seekable file reported as a
/// snapshot.
#[test]
fn truncated_and_mutated_seekable_files_and_snapshots() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    let mut rng = Rng(0x5eed_ab1e);
    let content: Vec<u8> = (0..40_000).map(|i| if i % 3 == 0 { rng.next() as u8 } else { b'a' }).collect();
    std::fs::write(&raw, &content).unwrap();
    let packed = d.path().join("packed.zst");
    let o =
        run(&[os(&["pager", "pack", "--frame-size", "4K"]), vec![raw.clone().into(), packed.clone().into()]].concat());
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let image = std::fs::read(&packed).unwrap();
    let mut cases = Vec::new();
    let info = |p: &Path, json: bool| {
        let mut v = os(&["pager", "info"]);
        v.push(p.into());
        if json {
            v.push("--json".into());
        }
        v
    };
    // Truncated: every cut loses the seek table's footer. Four bytes or more start like zstd:
    // an error; fewer are a (tiny) snapshot.
    for cut in [1, 3, 4, 5, 13, image.len() / 2, image.len() - 9, image.len() - 1] {
        let p = d.path().join(format!("cut-{cut}.zst"));
        std::fs::write(&p, &image[..cut]).unwrap();
        let expect = if cut >= 4 { Expect::Fail } else { Expect::NoCrash };
        cases.push((info(&p, false), expect));
        cases.push((info(&p, true), expect));
        let mut pack = os(&["pager", "pack"]);
        pack.extend([p.into(), d.path().join(format!("repacked-{cut}")).into()]);
        cases.push((pack, Expect::NoCrash));
    }
    // Mutated: bytes anywhere, and bytes of the seek table (the last 9 + 12 per frame bytes).
    let table = image.len() - 9 - 12 * 10;
    for i in 0..40 {
        let mut m = image.clone();
        for _ in 0..1 + rng.below(3) {
            let at = if i % 2 == 0 { rng.below(m.len()) } else { table + rng.below(m.len() - table) };
            m[at] = rng.next() as u8;
        }
        let p = d.path().join(format!("mutant-{i}.zst"));
        std::fs::write(&p, &m).unwrap();
        cases.push((info(&p, false), Expect::NoCrash));
        cases.push((info(&p, true), Expect::NoCrash));
    }
    // Snapshots are raw bytes: truncated or mutated, still snapshots (a mutant that starts like
    // zstd is refused).
    let snap = d.path().join("snap");
    let page = rustix::param::page_size();
    let f = std::fs::File::create(&snap).unwrap();
    f.set_len(8 * page as u64).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &content[..page], 2 * page as u64).unwrap();
    drop(f);
    for cut in [1, page - 1, page, 3 * page - 1] {
        let p = d.path().join(format!("snap-cut-{cut}"));
        std::fs::write(&p, &std::fs::read(&snap).unwrap()[..cut]).unwrap();
        cases.push((info(&p, false), Expect::NoCrash));
    }
    for i in 0..8 {
        let mut m = std::fs::read(&snap).unwrap();
        let at = rng.below(m.len());
        m[at] = rng.next() as u8;
        let p = d.path().join(format!("snap-mutant-{i}"));
        std::fs::write(&p, &m).unwrap();
        cases.push((info(&p, true), Expect::NoCrash));
    }
    check_all(&cases);
    // A truncated seekable file is not called a snapshot.
    let e = run(&info(&d.path().join(format!("cut-{}.zst", image.len() - 1)), false));
    assert!(e.stderr.contains("seek table") && !e.stdout.contains("snapshot"), "{}{}", e.stdout, e.stderr);
}

#[test]
fn tour_arguments() {
    let s = specials();
    let mut cases: Vec<(Vec<OsString>, Expect)> = [
        (&["tour", "--size", "nan"][..], Expect::Usage),
        (&["tour", "--size", "-1"], Expect::Usage),
        (&["tour", "--size", "99999999999T"], Expect::Usage),
        (&["tour", "--size", "1Q"], Expect::Usage),
        // u64::MAX bytes parse; the disk they need plus the elf section's overflowed (a
        // panic in debug builds, a wrapped small sum that passed the free-space check in release).
        (&["tour", "--size", "18446744073709551615"], Expect::Fail),
        (&["tour", "--size", "18446744073709547520", "--only", "file,elf"], Expect::Fail),
        (&["tour", "--only", "bogus"], Expect::Fail),
        (&["tour", "--bogus"], Expect::Usage),
    ]
    .iter()
    .map(|(a, e)| (os(a), *e))
    .collect();
    for dir in [&s.fifo, &s.missing, &s.empty, &s.loop_link] {
        let args = os(&["tour", "--only", "file", "--size", "64K", "--dir"]);
        cases.push(([args, vec![dir.clone().into()]].concat(), Expect::Fail));
    }
    check_all(&cases);
}

/// Bad arguments that were checked only after parsing exited 1, as a failure: too many `elf
/// call` arguments, a negative `--reserve-at`/`--fd-offset`, a `--frame-size` of 0 or past 1 GiB.
/// Each is a usage error (exit 2) naming the argument.
#[test]
fn arguments_checked_after_parsing_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fixture_so(dir.path(), &[]);
    let lib = lib.to_str().unwrap();
    for (args, names) in [
        (&["elf", "call", lib, "fx_add", "1", "2", "3", "4", "5", "6", "7"][..], "ARGS"),
        (&["elf", "load", lib, "--reserve-at=-4096"], "--reserve-at"),
        (&["elf", "load", lib, "--fd-offset=-4096"], "--fd-offset"),
        (&["elf", "load", lib, "--reserve-at", "1"], "not a multiple of the page size"),
        (&["elf", "load", lib, "--fd-offset", "100"], "not a multiple of the page size"),
        (&["pager", "pack", lib, "out.zst", "--frame-size", "0"], "--frame-size"),
        (&["pager", "pack", lib, "out.zst", "--frame-size", "2G"], "--frame-size"),
    ] {
        let o = run(&os(args));
        assert!(o.problem(Expect::Usage).is_none(), "{o:?}");
        assert!(o.stderr.contains(names), "{args:?}: {}", o.stderr);
    }
    assert!(!Path::new("out.zst").exists());
}

/// The exit codes are part of the CLI's API (README, "Versioning"); a user with only `--help`
/// learns them there too.
#[test]
fn help_names_the_exit_codes() {
    let out = Command::new(MMKIT).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for said in ["Exit status: 0 success", "1 failure", "2 usage error"] {
        assert!(help.contains(said), "{said:?} not in: {help}");
    }
}

/// Regression: `mmkit help --help` (and `mmkit mmio help -h`) was a usage error, "unrecognized
/// subcommand '--help'", exit 2: clap's `help` took the flag for a command name. Now it is the
/// help of `help`; `mmkit help mmio --help` is mmio's.
#[test]
fn help_flag_after_the_help_subcommand_prints_help() {
    for (args, usage) in [
        (&["help", "--help"][..], "Usage: mmkit help [COMMAND]"),
        (&["help", "-h"], "Usage: mmkit help [COMMAND]"),
        (&["mmio", "help", "-h"], "Usage: mmkit mmio help [COMMAND]"),
        (&["help", "mmio", "--help"], "Usage: mmkit mmio <COMMAND>"),
    ] {
        let out = Command::new(MMKIT).args(args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {help}{}", String::from_utf8_lossy(&out.stderr));
        assert!(help.contains(usage), "{args:?}: {usage:?} not in: {help}");
    }
}

/// `mmkit ... | head -1`: the reader goes away; the command ends quietly (exit 0, no message).
#[test]
fn a_closed_stdout_pipe_is_a_quiet_exit() {
    let d = tempfile::tempdir().unwrap();
    let so = fixture_so(d.path(), &[]).into_os_string().into_string().unwrap();
    let snap = d.path().join("snap");
    std::fs::write(&snap, b"memory").unwrap();
    let snap = snap.into_os_string().into_string().unwrap();
    let commands: [&[&str]; 14] = [
        &["residency", &so],
        &["residency", "--json", &so],
        &["tour", "--only", "mmio"],
        &["tour", "--only", "mmio", "--json"],
        &["maps"],
        &["maps", "--json"],
        &["maps", "--summary"],
        &["elf", "plan", &so],
        &["elf", "load", &so],
        &["elf", "call", &so, "fx_add", "1", "2"],
        &["mmio", "list"],
        &["mmio", "list", "--json"],
        &["pager", "info", &snap],
        &["pager", "info", "--json", &snap],
    ];
    for args in commands {
        let (rd, wr) = rustix::pipe::pipe().unwrap();
        drop(rd);
        let out =
            Command::new(MMKIT).args(args).stdout(std::fs::File::from(wr)).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!((out.status.code(), stderr.as_ref()), (Some(0), ""), "mmkit {args:?}");
    }
}

/// `mmkit residency MISSING DIR | head -1`: the failure was known before the table was printed,
/// but the closed pipe made the run a quiet exit 0 (a script with `pipefail` saw success), and
/// with `--lock` the early return released the files at once instead of holding them until a
/// signal. The closed pipe ends the printing only.
#[test]
fn a_closed_stdout_pipe_keeps_residency_failures_and_locks() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..300 {
        std::fs::write(d.path().join(format!("f{i}")), b"x").unwrap();
    }
    let dir = d.path().to_str().unwrap();
    let missing = d.path().join("missing");
    let missing = missing.to_str().unwrap();
    for args in [&["residency", missing, dir][..], &["residency", "--json", missing, dir]] {
        let (rd, wr) = rustix::pipe::pipe().unwrap();
        drop(rd);
        let out =
            Command::new(MMKIT).args(args).stdout(std::fs::File::from(wr)).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "mmkit {args:?}: {stderr}");
        assert!(stderr.contains("1 of the paths could not be processed"), "mmkit {args:?}: {stderr}");
    }
    // `--lock` holds the files until a signal, whoever reads the table.
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    drop(rd);
    let mut child = Command::new(MMKIT)
        .args(["residency", "--lock", dir])
        .stdout(std::fs::File::from(wr))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let exited = child.try_wait().unwrap();
    if exited.is_none() {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
    }
    let status = child.wait().unwrap();
    assert!(exited.is_none(), "--lock with a closed stdout ended at once: {status:?}");
}

/// `mmkit ... > /dev/full`: a failed write is an error (exit 1, one line), never a panic.
#[test]
fn a_full_stdout_is_an_error() {
    // Regression: --help and --version exited 0 with their text lost.
    for args in [&["maps"][..], &["maps", "--json"], &["mmio", "list"], &["--help"], &["--version"], &["elf", "--help"]]
    {
        let out = Command::new(MMKIT)
            .args(args)
            .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "mmkit {args:?}: {stderr}");
        assert_eq!(stderr, "mmkit: write to stdout failed: No space left on device (ENOSPC)\n", "mmkit {args:?}");
    }
}

/// Item 7 of issue 10: `residency` of files the user may not write. Current kernels answer
/// `cachestat` with EPERM there; the count falls back to mincore, and agrees with `vmtouch` run
/// as the same user. As root the test runs both tools as `nobody`.
#[test]
fn residency_as_an_unprivileged_user_of_files_it_does_not_own() {
    let uid = is_root().then_some(NOBODY);
    let me = uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    // Resolved: vmtouch does not follow a symbolic link given as an argument.
    let files: Vec<PathBuf> = ["/etc/passwd", "/bin/sh", "/etc/hostname"]
        .into_iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != me))
        .collect();
    assert!(!files.is_empty(), "no file owned by someone else to look at");
    let mut args = os(&["residency", "--json"]);
    args.extend(files.iter().map(OsString::from));
    let o = run_as(&args, uid);
    assert_eq!(o.code, Some(0), "as uid {me}: {}", o.stderr);
    // No warning, one note: the counts the kernel hides are not measurements.
    assert!(
        o.stderr
            .starts_with(&format!("mmkit: note: the Resident counts of {} file(s) are not measurements", files.len())),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(doc["total"]["files"], files.len());
    let mut vmtouch = Command::new("vmtouch");
    vmtouch.args(&files);
    if let Some(uid) = uid {
        vmtouch.uid(uid).gid(uid);
    }
    match vmtouch.output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find(|l| l.contains("Resident Pages:")).unwrap_or_else(|| panic!("{text}"));
            let resident: u64 = line.split_whitespace().nth(2).and_then(|f| f.split('/').next()?.parse().ok()).unwrap();
            assert_eq!(doc["total"]["resident_pages"], resident, "vmtouch: {line}");
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("vmtouch is required under CI=true"),
        Err(_) => eprintln!("SKIP: vmtouch is not installed; the comparison with it is skipped"),
    }
}

/// `residency --touch` of a file it cannot open warned twice (the touch's and the count's
/// `open` error) and counted it as two of one path ("2 of the paths could not be processed").
#[test]
fn residency_counts_a_path_once_when_two_steps_fail() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let (bad, good) = (d.path().join("unreadable"), d.path().join("readable"));
    std::fs::write(&bad, b"secret").unwrap();
    std::fs::set_permissions(&bad, PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::write(&good, b"data").unwrap();
    std::fs::set_permissions(&good, PermissionsExt::from_mode(0o644)).unwrap();
    for step in ["--touch", "--evict"] {
        let args = vec!["residency".into(), step.into(), "-q".into(), bad.clone().into(), good.clone().into()];
        let o = run_as(&args, is_root().then_some(NOBODY));
        assert!(o.problem(Expect::Fail).is_none(), "{o:?}");
        assert_eq!(o.stderr.matches("mmkit: warning: ").count(), 1, "{step}: {}", o.stderr);
        assert!(o.stderr.contains("mmkit: 1 of the paths could not be processed"), "{step}: {}", o.stderr);
        assert!(o.stdout.contains("Files: 1"), "{step}: {}", o.stdout);
    }
}

/// Five sparse files of 4 EiB (tmpfs allows them) add up to more than 2^64 bytes: the totals
/// overflowed (a panic in debug builds, wrapped sums in release).
#[test]
fn residency_totals_of_files_larger_than_u64_together() {
    let Ok(d) = tempfile::tempdir_in("/dev/shm") else {
        return eprintln!("SKIP: no /dev/shm for sparse files of exabytes");
    };
    for i in 0..5 {
        let f = std::fs::File::create(d.path().join(format!("sparse{i}"))).unwrap();
        if f.set_len(4 << 60).is_err() {
            return eprintln!("SKIP: /dev/shm refuses a file of 4 EiB");
        }
    }
    let dir = d.path().as_os_str().to_owned();
    // Without cachestat(2) (before Linux 6.5) a file is counted with mincore, a bit per page:
    // 2^50 pages of 4 KiB cannot be, and each file is refused saying so (exit 1).
    let probe = tempfile::NamedTempFile::new_in("/dev/shm").unwrap();
    std::fs::write(probe.path(), b"x").unwrap();
    let cachestat = mmkit::inspect::cachestat(probe.path()).unwrap().source;
    if cachestat != mmkit::inspect::CacheStatSource::Cachestat {
        let o = run(&["residency".into(), dir.clone()]);
        assert!(o.problem(Expect::Fail).is_none() && o.code == Some(1), "{o:?}");
        assert_eq!(o.stderr.matches("no memory for a bitmap of").count(), 5, "{o:?}");
        return eprintln!("SKIP: no cachestat(2) here (before Linux 6.5): checked the refusal, not the totals");
    }
    for json in [false, true] {
        let mut args = vec!["residency".into(), dir.clone()];
        if json {
            args.push("--json".into());
        }
        let o = run(&args);
        assert!(o.problem(Expect::NoCrash).is_none() && o.code == Some(0), "{o:?}");
        if json {
            let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            assert_eq!(doc["total"]["files"], 5);
            assert_eq!(doc["total"]["size"], u64::MAX, "saturated");
        }
    }
}

/// Item 9 of issue 10: `maps` of a process that exits while its smaps is read. A child with
/// thousands of mappings exits (or runs another program) after a short, varying delay while
/// `mmkit maps` reads it; each answer is either the whole list (exit 0) or an error that says
/// the process exited, never a cut list with exit 0.
#[test]
fn maps_of_a_process_exiting_meanwhile_is_whole_or_an_error() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("many_maps.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
/* argv[1] mappings (alternating protections keep them apart), "ready", then after argv[2] us
   exit, or with a third argument run that program (execve replaces the memory). */
int main(int argc, char **argv) {
    long n = atol(argv[1]), page = sysconf(_SC_PAGESIZE);
    char *base = mmap(0, 2 * n * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (argc < 3 || base == MAP_FAILED) return 2;
    for (long i = 0; i < n; i++)
        if (mprotect(base + 2 * i * page, page, PROT_READ)) return 3;
    puts("ready");
    fflush(stdout);
    usleep(atol(argv[2]));
    if (argc > 3) execv(argv[3], argv + 3);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = gcc(d.path(), "many_maps", &src, &[]);
    const PAIRS: u64 = 3000;
    let (mut whole, mut exited) = (0, 0);
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    for round in 0..24u64 {
        let mut child = Command::new(&exe);
        child.args([PAIRS.to_string(), (round / 2 * 6000).to_string()]);
        if round % 2 == 1 {
            child.arg(&sleep).arg("0.1");
        }
        let mut child = child.stdout(Stdio::piped()).spawn().unwrap();
        let mut ready = [0u8; 6];
        child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        let o = run(&os(&["maps", &child.id().to_string(), "--json"]));
        child.wait().unwrap();
        if o.code == Some(0) {
            let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            let n = doc["total"]["mappings"].as_u64().unwrap();
            let maps_path =
                |p: &Path| doc["mappings"].as_array().unwrap().iter().any(|m| m["path"] == p.to_str().unwrap());
            // The whole list of the first program, or (read after its execve) of `sleep`; a cut
            // list of the first holds its executable (mapped lowest) and too few mappings.
            if maps_path(&exe) {
                assert!(n >= 2 * PAIRS, "round {round}: exit 0 with {n} mappings, fewer than {}", 2 * PAIRS);
            } else {
                assert!(round % 2 == 1 && maps_path(&sleep), "round {round}: exit 0, neither program's list");
            }
            whole += 1;
        } else {
            assert!(o.problem(Expect::Fail).is_none(), "{o:?}");
            // Cut by the exit, or (exited before the first read) a zombie by then.
            let said = o.stderr.contains("while its smaps was read") || o.stderr.contains("a zombie");
            assert!(said, "round {round}: {}", o.stderr);
            // The JSON is printed as it is read: what came out before the error is closed
            // with the error and `"complete": false` (it parses, and says it is cut), and the
            // error on stderr says so.
            if !o.stdout.is_empty() {
                let doc: serde_json::Value = serde_json::from_str(&o.stdout)
                    .unwrap_or_else(|e| panic!("round {round}: a cut document must parse ({e}): {}", o.stdout));
                assert_eq!(doc["complete"], false, "round {round}: {doc}");
                assert!(doc["error"].as_str().is_some_and(|e| e.contains("while its smaps was read")), "{doc}");
                assert!(doc.get("total").is_none(), "a cut list has no totals: {doc}");
                assert!(o.stderr.contains("the JSON on stdout is cut there"), "{}", o.stderr);
            }
            exited += 1;
        }
    }
    eprintln!("{whole} whole lists, {exited} reads cut short by the exit");
}

/// A file name with a terminal escape in it (anyone may name a file so, and `maps` lists other
/// users' processes): the table writes the control characters as `\xNN`, never raw; `--json`
/// escapes them as JSON does and keeps the name exact.
#[test]
fn maps_writes_control_characters_of_file_names_escaped() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("evil\x1b[31mred\x07");
    std::fs::write(&path, b"x").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: the file is ours, read-only here, and nothing truncates it while mapped.
    let map = unsafe { mmkit::Mmap::map(&file) }.unwrap();
    let pid = std::process::id().to_string();
    let o = run(&os(&["maps", &pid, "--filter", "evil"]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(!o.stdout.contains('\x1b') && !o.stdout.contains('\x07'), "raw control characters: {:?}", o.stdout);
    assert!(o.stdout.contains("evil\\x1b[31mred\\x07"), "{:?}", o.stdout);
    let o = run(&os(&["maps", &pid, "--filter", "evil", "--json"]));
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let listed = doc["mappings"].as_array().unwrap().iter().any(|m| m["path"] == path.to_str().unwrap());
    assert!(listed, "{}", o.stdout);
    drop(map);
    // The header's command line is the process's choice too.
    let mut child =
        Command::new("sh").args(["-c", "read x", "sh", "arg\x1b]0;title\x07"]).stdin(Stdio::piped()).spawn().unwrap();
    // Until the child has run `sh`, its command line is still this test's (seen flaky under load).
    let cmdline = format!("/proc/{}/cmdline", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read(&cmdline).unwrap_or_default().windows(3).any(|w| w == b"arg")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = run(&os(&["maps", &child.id().to_string()]));
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(o.code, Some(0), "{o:?}");
    let header = o.stdout.lines().next().unwrap_or_default();
    assert!(header.contains("arg\\x1b]0;title\\x07") && !header.contains('\x1b'), "{header:?}");
}

/// Regression: a file name that is not UTF-8 was written lossily in `--json` (U+FFFD in place
/// of its bytes), without saying so. The string is still the lossy form, and beside it
/// `path_bytes` (`input_path_bytes`, `output_path_bytes`) holds the exact bytes; a UTF-8 path
/// has no such field. In `residency`, `maps` and `pager`.
#[test]
fn json_names_a_non_utf8_path_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff\xfename");
    let path = d.path().join(name);
    std::fs::write(&path, vec![5u8; 8192]).unwrap();
    let exact: Vec<serde_json::Value> = path.as_os_str().as_bytes().iter().map(|&b| b.into()).collect();
    let o = run(&[os(&["residency", "--json"]), vec![path.clone().into()]].concat());
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(doc["files"][0]["path"], path.to_string_lossy().as_ref(), "{}", o.stdout);
    assert_eq!(doc["files"][0]["path_bytes"].as_array(), Some(&exact), "{}", o.stdout);
    // A UTF-8 path: no path_bytes.
    let plain = d.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let o = run(&[os(&["residency", "--json"]), vec![plain.into()]].concat());
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(doc["files"][0].get("path_bytes").is_none(), "{}", o.stdout);
    // maps: a mapping of the file in this process.
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: the file is ours, read-only here, and nothing truncates it while mapped.
    let map = unsafe { mmkit::Mmap::map(&file) }.unwrap();
    let o = run(&os(&["maps", &std::process::id().to_string(), "--filter", "name", "--json"]));
    drop(map);
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let listed = doc["mappings"].as_array().unwrap().iter().any(|m| m["path_bytes"].as_array() == Some(&exact));
    assert!(listed, "{}", o.stdout);
    // pager: pack's input and output, and info's path.
    let packed = d.path().join(std::ffi::OsStr::from_bytes(b"out\xff.zst"));
    let o = run(&[os(&["pager", "pack", "--json"]), vec![path.clone().into(), packed.clone().into()]].concat());
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(doc["input_path_bytes"].as_array(), Some(&exact), "{}", o.stdout);
    assert!(doc["output_path_bytes"].is_array(), "{}", o.stdout);
    let o = run(&[os(&["pager", "info", "--json"]), vec![path.clone().into()]].concat());
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(doc["path_bytes"].as_array(), Some(&exact), "{}", o.stdout);
}

/// `residency DIR` prints the names it finds, which other users chose: a name with a terminal
/// escape reached the terminal raw (`maps` escaped it, `residency` did not). The table writes
/// control characters as `\xNN`; `--json` keeps the name exact.
#[test]
fn residency_writes_control_characters_of_file_names_escaped() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("evil\x1b[31mred\x07");
    std::fs::write(&path, b"x").unwrap();
    let dir = d.path().to_str().unwrap();
    let o = run(&os(&["residency", dir]));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(!o.stdout.contains('\x1b') && !o.stdout.contains('\x07'), "raw control characters: {:?}", o.stdout);
    assert!(o.stdout.contains("evil\\x1b[31mred\\x07"), "{:?}", o.stdout);
    let o = run(&os(&["residency", dir, "--json"]));
    assert_eq!(o.code, Some(0), "{o:?}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(doc["files"][0]["path"], path.to_str().unwrap(), "{}", o.stdout);
    // Warnings and errors on stderr name it escaped too.
    let missing = d.path().join("gone\x1b]0;title\x07");
    let o = run(&[os(&["residency"]), vec![missing.into()]].concat());
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(!o.stderr.contains('\x1b') && o.stderr.contains("gone\\x1b]0;title\\x07"), "{:?}", o.stderr);
    let o = run(&[os(&["pager", "info"]), vec![d.path().join("gone\x1b[2J").into()]].concat());
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(!o.stderr.contains('\x1b') && o.stderr.contains("gone\\x1b[2J"), "{:?}", o.stderr);
}
