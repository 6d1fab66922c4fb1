//! Mutated dynamic sections and dynamic tables: the loader answers with an error or a loaded
//! library, never a panic or a hang.
//!
//! A mutated library that loads may run mutated code (its initializers, relocated through
//! mutated tables), so each case runs in a child process: this test binary again, running the
//! ignored `worker` test with the case in its environment. A child killed by a signal is a
//! library crashing, which the loader cannot prevent; a child that panics (exit status 101)
//! or hangs is a loader bug.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CASES: u64 = 300;

/// A small deterministic generator (the case number is the seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// File offset and entry count of the dynamic section, and the file range of the first
/// segment's tables (after the program headers).
fn layout(bytes: &[u8]) -> ((usize, usize), (usize, usize)) {
    let plan = mmkit_elf::Plan::new(bytes, bytes.len() as u64, 4096).unwrap();
    let (dyn_vaddr, dyn_size) = plan.dynamic.unwrap();
    let seg = plan.segments.iter().find(|s| dyn_vaddr >= s.vaddr && dyn_vaddr < s.vaddr + s.file_size).unwrap();
    let dyn_off = (seg.file_offset + dyn_vaddr - seg.vaddr) as usize;
    let first = &plan.segments[0];
    let tables_from = 64 + 56 * 16; // past the ELF header and a generous program header table
    ((dyn_off, dyn_size as usize / 16), (tables_from, first.file_size as usize))
}

/// Tags whose values the loader follows (initializers are left alone: changing them only runs
/// arbitrary code, which proves nothing about the loader).
const TAGS: [u64; 23] = [
    1,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    23,
    2,
    20,
    35,
    36,
    0x6fff_fef5,
    0x6fff_fffc,
    0x6fff_fffe,
    0x6fff_fff0,
    0,
    0x6000_0011, // DT_ANDROID_RELA
    0x6000_0012, // DT_ANDROID_RELASZ
    0x6fff_e000, // DT_ANDROID_RELR
    0x6fff_e001, // DT_ANDROID_RELRSZ
];

/// Applies case `seed`'s mutation to a copy of `bytes`.
fn mutate(bytes: &[u8], seed: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let ((dyn_off, ndyn), (t_from, t_to)) = layout(bytes);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let entry = |out: &[u8], i: usize| {
        let at = dyn_off + 16 * i;
        (
            u64::from_le_bytes(out[at..at + 8].try_into().unwrap()),
            u64::from_le_bytes(out[at + 8..at + 16].try_into().unwrap()),
        )
    };
    let live: Vec<usize> = (0..ndyn)
        .take_while(|&i| entry(&out, i).0 != 0)
        .filter(|&i| ![12, 13, 25, 26].contains(&entry(&out, i).0))
        .collect();
    for _ in 0..1 + rng.below(3) {
        match rng.below(3) {
            0 => {
                // A followed tag gets an interesting value.
                let i = live[rng.below(live.len() as u64) as usize];
                let (_, val) = entry(&out, i);
                let other = entry(&out, live[rng.below(live.len() as u64) as usize]).1;
                let v = match rng.below(8) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => u64::MAX - 7,
                    3 => 1 << 46,
                    4 => val.wrapping_add(rng.below(64)).wrapping_sub(32),
                    5 => other,
                    6 => rng.below(1 << 32),
                    _ => val.wrapping_mul(2),
                };
                let at = dyn_off + 16 * i + 8;
                out[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            1 => {
                // An entry changes its tag.
                let i = live[rng.below(live.len() as u64) as usize];
                let tag = TAGS[rng.below(TAGS.len() as u64) as usize];
                let at = dyn_off + 16 * i;
                out[at..at + 8].copy_from_slice(&tag.to_le_bytes());
            }
            _ => {
                // Bytes of the tables (symbols, strings, hash tables, versions, relocations).
                for _ in 0..1 + rng.below(8) {
                    let at = t_from + rng.below((t_to - t_from) as u64) as usize;
                    out[at] = rng.next() as u8;
                }
            }
        }
    }
    out
}

#[test]
#[ignore = "the child of mutated_dynamic_tables_are_errors_never_panics (needs its environment)"]
fn worker() {
    let (Ok(path), Ok(seed)) = (std::env::var("MMKIT_FUZZ_LIB"), std::env::var("MMKIT_FUZZ_CASE")) else {
        panic!("run by mutated_dynamic_tables_are_errors_never_panics, which sets MMKIT_FUZZ_LIB and MMKIT_FUZZ_CASE");
    };
    let bytes = mutate(&std::fs::read(path).unwrap(), seed.parse().unwrap());
    // SAFETY: the library is mutated on purpose and may run broken code: this is a child
    // process whose crash the parent expects and tolerates.
    match unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("fuzz", bytes)) } {
        Ok(lib) => println!("fuzz-result: loaded {}", lib.name()),
        Err(e) => println!("fuzz-result: error {:?}: {e}", e.kind()),
    }
}

/// The fixtures mutated: a plain one, one with symbol versions and packed relocations, and
/// (with lld) one with Android's packed relocations (`DT_ANDROID_RELA`'s stream and
/// `DT_ANDROID_RELR` in the first segment's tables).
fn fixtures() -> Vec<std::path::PathBuf> {
    let map = format!("-Wl,--version-script={}", fixture_src("ver.map").display());
    let mut out =
        vec![lib("basic.c", "fxbasic"), build("relr", "ver.c", "fxver", &["-Wl,-z,pack-relative-relocs", &map])];
    if let Some(flags) = lld_flags(&["-Wl,--pack-dyn-relocs=android+relr", "-Wl,--use-android-relr-tags"]) {
        out.push(build("lld-aps2-relr", "packed.c", "fxpacked", &flags.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

#[test]
fn mutated_dynamic_tables_are_errors_never_panics() {
    for path in fixtures() {
        let (mut loaded, mut errors, mut crashed) = (0, 0, 0);
        for seed in 0..CASES {
            let mut child = common::self_command()
                .args(["--ignored", "--exact", "worker", "--nocapture", "--test-threads=1"])
                .env("MMKIT_FUZZ_LIB", &path)
                .env("MMKIT_FUZZ_CASE", seed.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    panic!("{} case {seed}: the loader hung", path.display());
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(0), _) if stdout.contains("fuzz-result: loaded") => loaded += 1,
                (Some(0), _) if stdout.contains("fuzz-result: error") => errors += 1,
                (None, Some(_)) => crashed += 1,
                _ => panic!(
                    "{} case {seed}: the loader panicked or failed ({status}):\n{stdout}\n{}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        println!(
            "{}: {CASES} mutations: {loaded} loaded, {errors} errors, {crashed} crashed in their own code",
            path.display()
        );
        assert!(errors > CASES / 4, "most mutations must be caught: {errors} errors of {CASES}");
    }
}

/// Regression (found by the test above): an absurd `DT_FINI_ARRAYSZ` made the finalizers walk
/// 2^37 entries at unload. The arrays are now checked at load.
#[test]
fn absurd_initializer_array_sizes_are_errors_at_load() {
    let bytes = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
    for tag in [27u64 /* DT_INIT_ARRAYSZ */, 28 /* DT_FINI_ARRAYSZ */] {
        for size in [1u64 << 40, 1 << 20] {
            let bad = with_dynamic_value(&bytes, tag, size);
            // SAFETY: the library is refused before any of its code runs.
            let err = unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("bad-array", bad)) }.unwrap_err();
            assert_eq!(err.kind(), mmkit_elf::ErrorKind::BadDynamic, "tag {tag} size {size:#x}: {err}");
        }
    }
}

/// `DT_VERNEED` of 65535 libraries, each with 65535 needed versions all sharing one chain of
/// records (in an added read-only segment): 2^32 steps of the version walk (well over 30 s)
/// before any check refused the library. Refused quickly.
#[test]
fn a_version_table_made_to_walk_long_is_refused_quickly() {
    let mut bytes = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
    let plan = mmkit_elf::Plan::new(&bytes, bytes.len() as u64, 4096).unwrap();
    let base = plan.segments.last().unwrap().map_end().next_multiple_of(0x10000);
    let (n, rec) = (65535u64, 16u64);
    let aux = base + n * rec;
    let mut blob = Vec::new();
    for i in 0..n {
        // Verneed: version 1, 65535 records, file name at .dynstr offset 1, aux, next.
        blob.extend(1u16.to_le_bytes());
        blob.extend(0xffffu16.to_le_bytes());
        blob.extend(1u32.to_le_bytes());
        blob.extend(((aux - (base + i * rec)) as u32).to_le_bytes());
        blob.extend(16u32.to_le_bytes());
    }
    for i in 0..n {
        // Vernaux: hash, flags, version index 2, name at offset 1, next (0 ends the chain).
        blob.extend(0u32.to_le_bytes());
        blob.extend(0u16.to_le_bytes());
        blob.extend(2u16.to_le_bytes());
        blob.extend(1u32.to_le_bytes());
        blob.extend((if i + 1 < n { 16u32 } else { 0 }).to_le_bytes());
    }
    // The blob becomes a new PT_LOAD in place of the PT_NOTE header.
    let offset = (bytes.len() as u64).next_multiple_of(0x1000);
    let (phoff, phnum) = plan.phdrs;
    let note = (0..phnum)
        .map(|i| (phoff + i * 56) as usize)
        .find(|&at| bytes[at..at + 4] == 4u32.to_le_bytes())
        .expect("a PT_NOTE header");
    let ph = [1u64 | (4 << 32), offset, base, base, blob.len() as u64, blob.len() as u64, 0x1000];
    for (k, v) in ph.iter().enumerate() {
        bytes[note + 8 * k..note + 8 * k + 8].copy_from_slice(&v.to_le_bytes());
    }
    bytes.resize(offset as usize, 0);
    bytes.extend(&blob);
    let bytes = with_dynamic_value(&bytes, 0x6fff_fffe /* DT_VERNEED */, base);
    let bytes = with_dynamic_value(&bytes, 0x6fff_ffff /* DT_VERNEEDNUM */, n);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: the library is refused before any of its code runs.
        let res = unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("long-versions", bytes)) };
        tx.send(res.map(|_| ()))
    });
    let res = rx.recv_timeout(Duration::from_secs(30)).expect("reading the version table hangs");
    let err = res.unwrap_err();
    assert_eq!(err.kind(), mmkit_elf::ErrorKind::BadDynamic, "{err}");
    assert!(err.to_string().contains("more than 65535 version records"), "{err}");
}

/// `bytes` with its `PT_TLS` header's `p_memsz` set to `size`.
fn with_tls_size(bytes: &[u8], size: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let plan = mmkit_elf::Plan::new(bytes, bytes.len() as u64, 4096).unwrap();
    let (phoff, phnum) = plan.phdrs;
    let at = (0..phnum)
        .map(|i| (phoff + i * 56) as usize)
        .find(|&at| bytes[at..at + 4] == 7u32.to_le_bytes())
        .expect("a PT_TLS header");
    out[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
    out
}

#[test]
#[ignore = "the child of a_tls_block_that_cannot_be_allocated_is_named (aborts)"]
fn huge_tls_worker() {
    let bytes = with_tls_size(&std::fs::read(lib("tls.c", "fxtls")).unwrap(), 1 << 47);
    // SAFETY: a well-formed library but for the size of its TLS block.
    let lib = unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("huge-tls", bytes)) }.unwrap();
    println!("loaded");
    call(&lib, "fx_tls_bump", &[1]);
}

/// A `PT_TLS` block of 128 TiB (`p_memsz` of a hostile library; more than a 4-level x86_64
/// address space holds, so no overcommit setting lets it be allocated) loads, and the library's first
/// access to its thread-local data cannot have its block: mmkit's `__tls_get_addr` aborted
/// (as glibc's does) saying "unknown TLS module 1 of mmkit (library unloaded?)", which sent one
/// looking for an unload. The message says what failed: the allocation, its size.
#[test]
fn a_tls_block_that_cannot_be_allocated_is_named() {
    let out = common::self_command()
        .args(["--ignored", "--exact", "huge_tls_worker", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("loaded"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("__tls_get_addr: cannot allocate memory for thread-local data: 0x800000000000 bytes"),
        "{stderr}"
    );
}

/// File offset of `addr`, a link-time address in the file pages of a segment of `bytes`.
fn file_offset_of(bytes: &[u8], addr: u64) -> usize {
    let plan = mmkit_elf::Plan::new(bytes, bytes.len() as u64, 4096).unwrap();
    let seg = plan.segments.iter().find(|s| addr >= s.vaddr && addr < s.vaddr + s.file_size).unwrap();
    (seg.file_offset + addr - seg.vaddr) as usize
}

/// File offset of the `.dynsym` entry of `name`.
fn dynsym_entry(bytes: &[u8], name: &str) -> usize {
    let tag = |t: u64| dynamic_entries(bytes).into_iter().find(|e| e.0 == t).unwrap().1;
    let (symtab, strtab) = (file_offset_of(bytes, tag(6)), file_offset_of(bytes, tag(5)));
    (1..10_000)
        .map(|i| symtab + 24 * i)
        .find(|&at| {
            let off = strtab + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            bytes[off..].split(|&b| b == 0).next() == Some(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

/// A function symbol (`STT_FUNC`) whose `st_value` a hostile library points at its data, or
/// outside it: `Library::function` handed it out, and `mmkit elf call` jumped there (SIGSEGV,
/// no code of the library ran). Refused, naming the address.
#[test]
fn a_function_whose_address_is_not_code_is_refused() {
    let bytes = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
    let data = u64::from_le_bytes(bytes[dynsym_entry(&bytes, "fx_counter") + 8..][..8].try_into().unwrap());
    for (value, why) in [(data, "is not in an executable segment"), (1 << 40, "outside the library, is not mapped")] {
        let mut bad = bytes.clone();
        let at = dynsym_entry(&bad, "fx_add");
        bad[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
        // SAFETY: the library's code is well-formed; only a symbol's value changed.
        let lib = unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("bad-function", bad)) }.unwrap();
        // SAFETY: the signature is fx_add's; the lookup must refuse it.
        let err = unsafe { lib.function::<extern "C" fn(i64, i64) -> i64>("fx_add") }.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), mmkit_elf::ErrorKind::BadDynamic, "{value:#x}: {err}");
        assert!(err.to_string().contains(why), "{value:#x}: {err}");
        assert!(err.to_string().contains("function lookup of `fx_add`"), "{err}");
    }
}

/// An `R_X86_64_IRELATIVE` whose addend (the resolver, in the library) a hostile library points
/// at its data: the loader called it while relocating, before any code of the library ran
/// (SIGSEGV). Refused, as an initializer outside code is.
#[test]
fn an_ifunc_resolver_that_is_not_code_is_refused() {
    if !x86_64_host("an_ifunc_resolver_that_is_not_code_is_refused")
        || !in_fresh_process("an_ifunc_resolver_that_is_not_code_is_refused")
    {
        return;
    }
    let bytes = std::fs::read(lib("ifunc.c", "fxifunc")).unwrap();
    let tag = |t: u64| dynamic_entries(&bytes).into_iter().find(|e| e.0 == t).map(|e| e.1);
    let data = u64::from_le_bytes(bytes[dynsym_entry(&bytes, "fx_local_ptr") + 8..][..8].try_into().unwrap());
    let mut bad = bytes.clone();
    let mut changed = 0;
    for table in [(7, 8), (23, 2)] {
        let (Some(addr), Some(size)) = (tag(table.0), tag(table.1)) else { continue };
        let at = file_offset_of(&bytes, addr);
        for r in (at..at + size as usize).step_by(24) {
            if u64::from_le_bytes(bad[r + 8..r + 16].try_into().unwrap()) == 37 {
                bad[r + 16..r + 24].copy_from_slice(&data.to_le_bytes());
                changed += 1;
            }
        }
    }
    assert!(changed > 0, "no R_X86_64_IRELATIVE in the fixture");
    // SAFETY: refused before any of its code runs.
    let err = unsafe { mmkit_elf::Library::open(mmkit_elf::Source::memory("bad-irelative", bad)) }.unwrap_err();
    assert_eq!(err.kind(), mmkit_elf::ErrorKind::BadDynamic, "{err}");
    assert!(err.to_string().contains("call IFUNC resolver"), "{err}");
    assert!(err.to_string().contains("is not in an executable segment"), "{err}");
}

/// Refuses `openat` (`EPERM`) to the calling thread only: a seccomp filter without TSYNC.
fn deny_openat_on_this_thread() {
    let f = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let filter = [
        f(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // seccomp_data.nr
        f(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_openat as u32, 0, 1),
        f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
        f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with valid arguments; the kernel copies the filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog), 0);
    }
}

/// Regression: `Library::function` of a function a dependency defines (libc's `getpid` through
/// a library that calls it; `fx_base_value` through `fxdep`, whose `libfxbase` mmkit mapped)
/// read `/proc/self/maps` on every lookup to check that the address is code. A dependency
/// mmkit mapped is checked by its own segments, one glibc loaded by its program headers: no
/// file is opened (here, none can be).
#[test]
fn a_function_a_dependency_defines_is_checked_without_reading_proc_maps() {
    let callpid = lib("callpid.c", "fxcallpid");
    let base = build("default", "base.c", "fxbase", &[]);
    let dep = build("default", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let ns = mmkit_elf::Namespace::new("function-check").search_own_directory(true);
    // SAFETY: test fixtures are trusted.
    let (a, b) = unsafe { (ns.open(callpid.as_path()).unwrap(), ns.open(dep.as_path()).unwrap()) };
    std::thread::scope(|s| {
        s.spawn(|| {
            deny_openat_on_this_thread();
            assert!(std::fs::File::open("/proc/self/maps").is_err(), "the filter is in place");
            for (lib, name) in [(&a, "getpid"), (&b, "fx_base_value"), (&b, "fx_dep_twice")] {
                // SAFETY: only looked up, never called.
                unsafe { lib.function::<extern "C" fn() -> i64>(name) }.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        });
    });
}
