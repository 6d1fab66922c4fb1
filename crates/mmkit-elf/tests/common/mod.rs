//! Shared test helpers: compile C fixtures with gcc, build APKs, call through glibc's dlopen
//! (the oracle), synthesize ELF headers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub fn fixture_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The C compiler the fixtures are built with: `MMKIT_ELF_CC`, else `gcc` (set it to
/// `aarch64-linux-gnu-gcc` when the tests run for aarch64 under qemu-user).
pub fn cc() -> String {
    std::env::var("MMKIT_ELF_CC").ok().filter(|c| !c.is_empty()).unwrap_or_else(|| "gcc".to_owned())
}

/// Is the host's gcc building the fixtures (not a cross compiler)? Tests that need the host's
/// own system libraries (libz, libstdc++ at glibc's paths, gdb) check this.
pub fn host_cc() -> bool {
    cc() == "gcc"
}

fn out_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmkit-elf-fixtures");
    std::fs::create_dir_all(&root).expect("create fixture dir");
    root
}

/// Compiles `src` (in tests/fixtures) into `lib<name>.so` with extra gcc `flags`, in a
/// directory named after `variant`; cached per process, built atomically across processes, and
/// built once across processes: a fixture whose stamp (`.lib<name>.so.built`) names the same
/// build (compiler, flags, the fixture sources' bytes) is reused as it is. A child process
/// (a test re-run in a fresh process) must not rename a new file over one its parent's other
/// tests have open: the file's inode is the identity a loader shares copies by, and a test
/// that opened it twice around the rename saw two libraries.
///
/// For a machine without a compiler (the arm64 VM, vmtest/arm64/run): with
/// `MMKIT_ELF_FIXTURES_SAVE=DIR` each fixture compiled is also stored in DIR, under its variant
/// and a hash of its compiler, source, name and flags; with `MMKIT_ELF_FIXTURES=DIR` the same
/// test binary copies the fixtures from such a store instead of compiling them (a missing one
/// fails naming what it is).
pub fn build(variant: &str, src: &str, name: &str, flags: &[&str]) -> PathBuf {
    build_with(&cc(), variant, src, name, flags)
}

/// [`build`] with the compiler `cc` (`aarch64-linux-gnu-gcc` for the cross fixtures).
pub fn build_with(cc: &str, variant: &str, src: &str, name: &str, flags: &[&str]) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, ()>>> = OnceLock::new();
    let dir = out_root().join(cc).join(variant);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("lib{name}.so"));
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if guard.contains_key(&out) {
        return out;
    }
    let tmp = dir.join(format!(".lib{name}.so.{}", std::process::id()));
    let key = format!("{variant}/lib{name}-{:016x}.so", fixture_key(cc, src, name, flags));
    // The directory's lock (flock) orders the processes that build in it: one builds, the
    // others find its stamp.
    let lock = std::fs::File::open(&dir).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let stamp = dir.join(format!(".lib{name}.so.built"));
    let built = format!("{key} {:016x}\n", sources_hash());
    // With MMKIT_ELF_FIXTURES_SAVE, every fixture a test asks for goes to the store, also one
    // built before (by an earlier run in this target directory).
    let save = |from: &Path| {
        if let Some(store) = std::env::var_os("MMKIT_ELF_FIXTURES_SAVE").filter(|d| !d.is_empty()) {
            let stored = Path::new(&store).join(&key);
            std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
            std::fs::copy(from, &stored).unwrap_or_else(|e| panic!("save the fixture as {}: {e}", stored.display()));
        }
    };
    if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == built) {
        save(&out);
        guard.insert(out.clone(), ());
        return out;
    }
    let set_stamp = || {
        let tmp = dir.join(format!(".lib{name}.so.built.{}", std::process::id()));
        std::fs::write(&tmp, &built).unwrap();
        std::fs::rename(&tmp, &stamp).unwrap();
    };
    if let Some(store) = std::env::var_os("MMKIT_ELF_FIXTURES").filter(|d| !d.is_empty()) {
        let stored = Path::new(&store).join(&key);
        std::fs::copy(&stored, &tmp)
            .unwrap_or_else(|e| panic!("prebuilt fixture {} ({src} {flags:?}, compiler {cc}): {e}", stored.display()));
        std::fs::rename(&tmp, &out).unwrap();
        set_stamp();
        guard.insert(out.clone(), ());
        return out;
    }
    let mut cmd = Command::new(cc);
    cmd.args(["-shared", "-fPIC", "-O1", "-o"]).arg(&tmp).arg(fixture_src(src));
    cmd.args(flags);
    let output =
        cmd.output().unwrap_or_else(|e| panic!("cannot run {cc} ({e}): the ELF tests compile C fixtures; install it"));
    assert!(output.status.success(), "{cc} failed for {src} {flags:?}:\n{}", String::from_utf8_lossy(&output.stderr));
    save(&tmp);
    std::fs::rename(&tmp, &out).unwrap();
    set_stamp();
    guard.insert(out.clone(), ());
    out
}

/// The flags that link a fixture with LLVM's `ld.lld`, packing its relocations as `how`
/// (`--pack-dyn-relocs=android`, ...), or `None` without lld (skipped; a failure under
/// `CI=true`: scripts/test installs it). The compiler finds `ld.lld` through `-B` and a
/// directory of this run holding a link to it (a cross gcc looks for its own linker names).
pub fn lld_flags(how: &[&str]) -> Option<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmkit-elf-lld");
    if !prebuilt_fixtures() {
        let lld = ["/usr/bin/ld.lld", "/usr/local/bin/ld.lld"].into_iter().find(|p| std::path::Path::new(p).exists());
        let Some(lld) = lld else {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "ld.lld is missing (scripts/test installs lld)");
            eprintln!("skipping: ld.lld is not installed (apt-get install lld)");
            return None;
        };
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("ld.lld");
        if std::fs::read_link(&link).ok().as_deref() != Some(std::path::Path::new(lld)) {
            let tmp = dir.join(format!(".ld.lld.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(lld, &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
        }
    }
    let mut flags = vec!["-fuse-ld=lld".to_owned(), format!("-B{}/", dir.display())];
    flags.extend(how.iter().map(|f| f.to_string()));
    Some(flags)
}

/// The dynamic entries of the 64-bit little-endian ELF image `bytes` up to `DT_NULL`, each as
/// `(tag, value, file offset of the entry)`.
pub fn dynamic_entries(bytes: &[u8]) -> Vec<(u64, u64, usize)> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let file = ElfFile64::<object::Endianness>::parse(bytes).expect("an ELF image");
    let e = file.endian();
    let dynamic = file.elf_program_headers().iter().find(|p| p.p_type(e) == object::elf::PT_DYNAMIC);
    let p = dynamic.expect("PT_DYNAMIC");
    let (at, n) = (p.p_offset(e) as usize, p.p_filesz(e) as usize / 16);
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    (0..n).map(|i| at + 16 * i).map(|at| (word(at), word(at + 8), at)).take_while(|&(tag, _, _)| tag != 0).collect()
}

/// `bytes` with the value of its dynamic entry `tag` replaced by `value` (it must have one).
pub fn with_dynamic_value(bytes: &[u8], tag: u64, value: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let (_, _, at) = dynamic_entries(bytes)
        .into_iter()
        .find(|&(t, _, _)| t == tag)
        .unwrap_or_else(|| panic!("no dynamic tag {tag:#x}"));
    out[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
    out
}

/// A hash of every fixture source's name and bytes (read once per process): a fixture built
/// from an older source (or header) is built again. Where the sources are not (the arm64 VM,
/// which copies prebuilt fixtures), the hash of none.
fn sources_hash() -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    static HASH: OnceLock<u64> = OnceLock::new();
    *HASH.get_or_init(|| {
        let dir = fixture_src("");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                assert!(prebuilt_fixtures(), "read the fixture sources in {}: {e}", dir.display());
                return 0;
            }
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        files.sort();
        let mut h = DefaultHasher::new();
        for f in files {
            f.file_name().hash(&mut h);
            std::fs::read(&f).unwrap().hash(&mut h);
        }
        h.finish()
    })
}

/// The key of a fixture in a store of prebuilt ones: a hash of how it is built (SipHash with
/// fixed keys, so the same test binary finds what it stored in another run or on another
/// machine).
fn fixture_key(cc: &str, src: &str, name: &str, flags: &[&str]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (cc, src, name, flags).hash(&mut h);
    h.finish()
}

/// Puts a copy of `from` at `to` by renaming a fresh copy over it: a fixture directory may hold
/// a file of that name that another user built (the root run, then the unprivileged one), which
/// `std::fs::copy` cannot overwrite (it sets the permissions of the existing file: EPERM).
pub fn replace_with_copy(from: &Path, to: &Path) {
    let tmp = to.with_file_name(format!(".{}.{}", to.file_name().unwrap().to_string_lossy(), std::process::id()));
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), tmp.display()));
    std::fs::rename(&tmp, to).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), to.display()));
}

/// Are the fixtures taken from a store of prebuilt ones (`MMKIT_ELF_FIXTURES`), not compiled?
pub fn prebuilt_fixtures() -> bool {
    std::env::var_os("MMKIT_ELF_FIXTURES").is_some_and(|d| !d.is_empty())
}

/// The default-built fixture.
pub fn lib(src: &str, name: &str) -> PathBuf {
    build("default", src, name, &[])
}

/// The fixture variants the loader must handle the same way as glibc.
pub const VARIANTS: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("now", &["-Wl,-z,now"]),
    ("relr", &["-Wl,-z,pack-relative-relocs"]),
    ("lazy-norelro", &["-Wl,-z,lazy", "-Wl,-z,norelro"]),
    ("page16k", &["-Wl,-z,max-page-size=16384"]),
    ("page64k", &["-Wl,-z,max-page-size=65536", "-Wl,-z,separate-code"]),
];

/// Writes a zip with the given entries: `(name, bytes, alignment)`; alignment 0 = stored
/// without alignment padding.
pub fn write_zip(path: &Path, entries: &[(&str, &[u8], u16)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    for (name, bytes, align) in entries {
        let mut opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        if *align > 0 {
            opts = opts.with_alignment(*align);
        }
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// `bytes` as a page-aligned stored APK entry `lib/x86_64/<name>`; returns the source.
pub fn apk_with(dir: &Path, name: &str, so: &Path) -> mmkit_elf::Source {
    let apk = dir.join("app.apk");
    let bytes = std::fs::read(so).unwrap();
    let entry = format!("lib/x86_64/{name}");
    write_zip(&apk, &[("AndroidManifest.xml", b"<manifest/>", 0), (&entry, &bytes, page_u16())]);
    mmkit_elf::Source::zip_entry(apk, entry)
}

/// Page size as u16 for the zip writer's alignment.
pub fn page_u16() -> u16 {
    u16::try_from(rustix::param::page_size()).expect("page size fits the zip alignment field")
}

/// A command that runs this test binary again: directly, or through `MMKIT_TEST_RUNNER` (the
/// user-mode emulator when the tests run for another machine, e.g. `qemu-aarch64-static -L
/// /usr/aarch64-linux-gnu`: without binfmt_misc, the child needs it as cargo's runner did).
pub fn self_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("MMKIT_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// Runs test `name` again in a fresh child process and checks that it passed there; returns
/// `true` in the child, where the body runs. The child's `MMKIT_FX_LOG` names a file the
/// graph fixtures log their constructors and destructors to (see [`take_log`]).
pub fn in_fresh_process(name: &str) -> bool {
    in_fresh_process_with(name, &[])
}

/// [`in_fresh_process`] with more environment variables for the child (`LD_LIBRARY_PATH`,
/// which glibc reads only at process start).
pub fn in_fresh_process_with(name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var("MMKIT_ELF_FRESH").as_deref() == Ok(name) {
        return true;
    }
    let log = std::env::temp_dir().join(format!("mmkit-fx-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let out = self_command()
        .env("MMKIT_FX_LOG", &log)
        .envs(env.iter().copied())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("MMKIT_ELF_FRESH", name)
        .output()
        .expect("re-run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed in a fresh process ({:?}):\n{text}", out.status);
    assert!(text.contains("1 passed"), "{name} did not run in the child:\n{text}");
    let _ = std::fs::remove_file(&log);
    false
}

/// What the fixtures logged since the last call (`+a` constructor of a, `-a` destructor), and
/// a fresh start.
pub fn take_log() -> String {
    let path = std::env::var("MMKIT_FX_LOG").expect("run in_fresh_process");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, b"").unwrap();
    text
}

/// glibc's dlopen: the oracle.
pub struct Dl(*mut c_void);

impl Dl {
    pub fn open(path: &Path) -> Dl {
        Dl::open_with(path, libc::RTLD_NOW | libc::RTLD_LOCAL)
    }

    /// `dlopen(RTLD_NOW | RTLD_GLOBAL)`: the library joins glibc's global scope.
    pub fn open_global(path: &Path) -> Dl {
        Dl::open_with(path, libc::RTLD_NOW | libc::RTLD_GLOBAL)
    }

    /// `dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` of a library glibc has loaded: it joins the global
    /// scope (glibc's load counters do not change).
    pub fn promote(path: &Path) -> Dl {
        Dl::open_with(path, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL)
    }

    fn open_with(path: &Path, flags: i32) -> Dl {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: loading a trusted test fixture.
        let h = unsafe { libc::dlopen(c.as_ptr(), flags) };
        assert!(!h.is_null(), "dlopen {path:?} failed");
        Dl(h)
    }

    pub fn addr(&self, name: &str) -> *mut c_void {
        let c = CString::new(name).unwrap();
        // SAFETY: live handle.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!p.is_null(), "dlsym {name} failed");
        p
    }

    pub fn call(&self, name: &str, args: &[i64]) -> i64 {
        call_addr(self.addr(name) as u64, args)
    }
}

impl Drop for Dl {
    fn drop(&mut self) {
        // SAFETY: handle from dlopen.
        unsafe { libc::dlclose(self.0) };
    }
}

/// Calls `extern "C" fn(i64 x n) -> i64` at `addr`.
pub fn call_addr(addr: u64, args: &[i64]) -> i64 {
    type F0 = extern "C" fn() -> i64;
    type F1 = extern "C" fn(i64) -> i64;
    type F2 = extern "C" fn(i64, i64) -> i64;
    type F3 = extern "C" fn(i64, i64, i64) -> i64;
    type F6 = extern "C" fn(i64, i64, i64, i64, i64, i64) -> i64;
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // SAFETY: test fixtures' functions take int64_t arguments and return int64_t.
    unsafe {
        match args.len() {
            0 => std::mem::transmute::<u64, F0>(addr)(),
            1 => std::mem::transmute::<u64, F1>(addr)(a(0)),
            2 => std::mem::transmute::<u64, F2>(addr)(a(0), a(1)),
            3 => std::mem::transmute::<u64, F3>(addr)(a(0), a(1), a(2)),
            _ => std::mem::transmute::<u64, F6>(addr)(a(0), a(1), a(2), a(3), a(4), a(5)),
        }
    }
}

/// Calls a symbol of an mmkit-loaded library like `call_addr`.
pub fn call(lib: &mmkit_elf::Library, name: &str, args: &[i64]) -> i64 {
    // SAFETY: fixture functions are `int64_t f(int64_t...)`; a pointer-sized fn type.
    let f = unsafe { lib.symbol::<extern "C" fn()>(name) }.unwrap_or_else(|e| panic!("{e}"));
    call_addr(f.address(), args)
}

/// Opens with mmkit, panicking with the error's message.
pub fn open(source: impl Into<mmkit_elf::Source>) -> mmkit_elf::Library {
    // SAFETY: test fixtures are trusted.
    unsafe { mmkit_elf::Library::open(source) }.unwrap_or_else(|e| panic!("{e}"))
}

/// Opens with mmkit, returning the error.
pub fn try_open(source: impl Into<mmkit_elf::Source>) -> Result<mmkit_elf::Library, mmkit_elf::Error> {
    // SAFETY: test fixtures are trusted (negative tests fail before running any code).
    unsafe { mmkit_elf::Library::open(source) }
}

/// One program header for `synth_elf`.
#[derive(Clone, Copy, Debug)]
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Ph {
    pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64) -> Ph {
        Ph { p_type: 1, flags, offset, vaddr, filesz, memsz, align }
    }
}

/// A minimal ET_DYN header of the host's machine (x86_64 elsewhere) + program header table, padded to `len` bytes.
pub fn synth_elf(phdrs: &[Ph], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little-endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    let machine = mmkit_elf::Machine::HOST.unwrap_or(mmkit_elf::Machine::X86_64);
    b[18..20].copy_from_slice(&machine.e_machine().to_le_bytes()); // EM_X86_64 or EM_AARCH64
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    for p in phdrs {
        b.extend_from_slice(&p.p_type.to_le_bytes());
        b.extend_from_slice(&p.flags.to_le_bytes());
        for v in [p.offset, p.vaddr, p.vaddr, p.filesz, p.memsz, p.align] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    if b.len() < len {
        b.resize(len, 0);
    }
    b
}

/// A system library's path, or a skip (a failure under CI=true: scripts/test installs it).
pub fn system_lib(soname: &str) -> Option<PathBuf> {
    let found = mmkit_elf::SYSTEM_DIRS.iter().map(|d| Path::new(d).join(soname)).find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{soname} is missing (scripts/test installs it)");
        eprintln!("skipping: no {soname}");
    }
    found
}

/// Looks a symbol up by name (in mmkit's copy or glibc's) and returns its address.
pub type Lookup<'a> = &'a dyn Fn(&str) -> u64;

/// The symbol `name` as a value of type `F` (a function pointer).
///
/// # Safety
/// `F` must be the function's true signature.
pub unsafe fn func<F: Copy>(lookup: Lookup<'_>, name: &str) -> F {
    let addr = lookup(name);
    assert_ne!(addr, 0, "{name}");
    assert_eq!(std::mem::size_of::<F>(), 8);
    // SAFETY: F is a pointer-sized fn type (checked) matching the function (contract).
    unsafe { std::mem::transmute_copy::<u64, F>(&addr) }
}

/// The host's system libraries are x86_64's: the tests that call them skip elsewhere (saying so).
pub fn x86_64_host(test: &str) -> bool {
    if !cfg!(target_arch = "x86_64") || !host_cc() {
        eprintln!("skipping {test}: it calls the x86_64 host's own system libraries");
        return false;
    }
    true
}

/// glibc's `dl_platform` (its `$PLATFORM`), as this process's ld.so prints it with
/// `--list-diagnostics` (glibc 2.33 and later); `None` where it cannot say.
pub fn glibc_dl_platform() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let ld_so = maps
        .lines()
        .filter_map(|l| l.split_once('/').map(|(_, p)| format!("/{p}")))
        .find(|p| p.contains("/ld-linux"))?;
    let out = Command::new(ld_so).arg("--list-diagnostics").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("dl_platform=\""))?;
    Some(line.strip_suffix('"')?.to_owned())
}

/// Copies the `next.c` fixture (`libfxnext.so`, which needs `libfxbase.so` through
/// `$ORIGIN`) and `libfxbase.so` into `dir`; returns the copy of `libfxnext.so`.
pub fn next_fixture_in(dir: &Path) -> PathBuf {
    let base = build("next", "base.c", "fxbase", &[]);
    let base_dir = base.parent().unwrap().display().to_string();
    let so = build(
        "next",
        "next.c",
        "fxnext",
        &[&format!("-L{base_dir}"), "-lfxbase", "-Wl,--enable-new-dtags,-rpath,$ORIGIN"],
    );
    let copy = dir.join("libfxnext.so");
    std::fs::copy(&so, &copy).unwrap();
    std::fs::copy(&base, dir.join("libfxbase.so")).unwrap();
    copy
}
