//! Real libraries and their system dependencies, each test in a fresh process that does not
//! link libm (so nothing is preloaded for mmkit), with glibc's `dlopen` of the same file as the
//! oracle (opened after mmkit's load, so it cannot pre-load a dependency either).

mod common;

use common::*;
use mmkit_elf::{ErrorKind, Namespace, Source, SystemPolicy};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};

/// Whether glibc has loaded an object whose file name starts with `prefix`.
fn process_maps(prefix: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .any(|p| Path::new(p).file_name().is_some_and(|f| f.to_string_lossy().starts_with(prefix)))
}

#[test]
fn libm_dependency_is_loaded_by_the_system_linker() {
    if !in_fresh_process("libm_dependency_is_loaded_by_the_system_linker") {
        return;
    }
    assert!(!process_maps("libm.so"), "the test process must not link libm");
    let so = build("default", "mathuse.c", "fxmath", &["-lm"]);
    let dir = tempfile::tempdir().unwrap();
    for source in [Source::path(&so), apk_with(dir.path(), "libfxmath.so", &so)] {
        let ours = open(source.clone());
        let deps = ours.dependencies();
        assert!(deps.iter().any(|(n, by_mmkit)| n.starts_with("libm.so") && !by_mmkit), "{deps:?}");
        assert!(process_maps("libm.so"), "libm is loaded by glibc now");
        let oracle = Dl::open(&so);
        for x in [0, 1, 27, 1000, -8, 123_456] {
            assert_eq!(call(&ours, "fx_cbrt_milli", &[x]), oracle.call("fx_cbrt_milli", &[x]), "cbrt {x}");
        }
        for x in [1, 2, 10, 50] {
            assert_eq!(call(&ours, "fx_lgamma_milli", &[x]), oracle.call("fx_lgamma_milli", &[x]), "lgamma {x}");
        }
        assert_eq!(call(&ours, "fx_hypot", &[3, 4]), 5);
        ours.verify().unwrap();
    }
    // Dropping the libraries never unloads libm (RTLD_NODELETE).
    assert!(process_maps("libm.so"));
}

#[test]
fn cxx_library_through_libstdcxx_throws_catches_and_formats() {
    if !in_fresh_process("cxx_library_through_libstdcxx_throws_catches_and_formats") {
        return;
    }
    assert!(!process_maps("libstdc++"), "the test process must not link libstdc++");
    let so = build("default", "cxxuse.cpp", "fxcxx", &["-lstdc++"]);
    let dir = tempfile::tempdir().unwrap();
    for source in [Source::path(&so), apk_with(dir.path(), "libfxcxx.so", &so)] {
        let ours = open(source);
        assert!(ours.unwind_tables_registered());
        let oracle = Dl::open(&so);
        for f in ["fx_cxx_sum_sorted", "fx_cxx_catch", "fx_cxx_format_len"] {
            for x in [0, 5, 11, 1000] {
                assert_eq!(call(&ours, f, &[x]), oracle.call(f, &[x]), "{f}({x})");
            }
        }
        assert_eq!(call(&ours, "fx_cxx_catch", &[11]), -(("too big: 11").len() as i64));
    }
}

/// glibc's `dl_iterate_phdr` does not see mmkit's libraries; libgcc's unwinder finds their
/// frames through the tables mmkit registers, so an exception crosses from one mmkit-mapped
/// library into another that catches it.
#[test]
fn exceptions_cross_between_libraries_mmkit_mapped() {
    if !in_fresh_process("exceptions_cross_between_libraries_mmkit_mapped") {
        return;
    }
    let thrower = build("cxxcross", "cxxcross.cpp", "fxcrossthrow", &["-DTHROWER", "-lstdc++"]);
    let dir = thrower.parent().unwrap().display().to_string();
    let catcher = build(
        "cxxcross",
        "cxxcross.cpp",
        "fxcrosscatch",
        &["-DCATCHER", &format!("-L{dir}"), "-Wl,-rpath,$ORIGIN", "-lfxcrossthrow", "-lstdc++"],
    );
    let ours = open(catcher.as_path());
    assert!(ours
        .loaded_dependencies()
        .iter()
        .any(|d| d.name() == "libfxcrossthrow.so" && d.unwind_tables_registered()));
    let oracle = Dl::open(&catcher);
    for x in [0, 5, 11, 1000] {
        assert_eq!(call(&ours, "fx_cross_catch", &[x]), oracle.call("fx_cross_catch", &[x]), "{x}");
    }
    assert_eq!(call(&ours, "fx_cross_catch", &[11]), -(("cross: 11").len() as i64));
}

type Sqlite3Callback = extern "C" fn(*mut c_void, c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;

extern "C" fn first_column(out: *mut c_void, n: c_int, values: *mut *mut c_char, _names: *mut *mut c_char) -> c_int {
    if n > 0 {
        // SAFETY: sqlite passes `n` column values; `out` is the String given to sqlite3_exec.
        unsafe {
            let v = *values;
            if !v.is_null() {
                (*out.cast::<String>()).push_str(&CStr::from_ptr(v).to_string_lossy());
            }
        }
    }
    0
}

/// Runs `sql` with the sqlite3 functions at the given addresses; returns the first column.
fn sqlite_query(open: u64, exec: u64, close: u64, sql: &CStr) -> String {
    type Open = extern "C" fn(*const c_char, *mut *mut c_void) -> c_int;
    type Exec = extern "C" fn(*mut c_void, *const c_char, Sqlite3Callback, *mut c_void, *mut *mut c_char) -> c_int;
    type Close = extern "C" fn(*mut c_void) -> c_int;
    // SAFETY: the addresses are sqlite3_open, sqlite3_exec and sqlite3_close of libsqlite3.
    let (open, exec, close) = unsafe {
        (
            std::mem::transmute::<u64, Open>(open),
            std::mem::transmute::<u64, Exec>(exec),
            std::mem::transmute::<u64, Close>(close),
        )
    };
    let mut db = std::ptr::null_mut();
    assert_eq!(open(c":memory:".as_ptr(), &mut db), 0);
    let mut out = String::new();
    let rc = exec(db, sql.as_ptr(), first_column, (&mut out as *mut String).cast(), std::ptr::null_mut());
    assert_eq!(rc, 0, "sqlite3_exec {sql:?}");
    assert_eq!(close(db), 0);
    out
}

#[test]
fn sqlite_reaches_libm_and_answers_like_glibcs_copy() {
    if !in_fresh_process("sqlite_reaches_libm_and_answers_like_glibcs_copy") {
        return;
    }
    let Some(path) = system_lib("libsqlite3.so.0") else { return };
    assert!(!process_maps("libm.so"));
    let ours = open(path.as_path());
    let addr = |name: &str| {
        // SAFETY: only the address is used, with the function's true signature.
        unsafe { ours.function::<extern "C" fn()>(name) }.unwrap().address()
    };
    let sql = c"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                SELECT printf('%.6f', sum(sqrt(i)) + exp(1.5)) || ':' || group_concat(i % 7, '') FROM n";
    let got = sqlite_query(addr("sqlite3_open"), addr("sqlite3_exec"), addr("sqlite3_close"), sql);
    let oracle = Dl::open(&path);
    let want = sqlite_query(
        oracle.addr("sqlite3_open") as u64,
        oracle.addr("sqlite3_exec") as u64,
        oracle.addr("sqlite3_close") as u64,
        sql,
    );
    assert_eq!(got, want);
    assert!(got.starts_with("675."), "{got}");
    assert_eq!(call(&ours, "sqlite3_libversion_number", &[]), oracle.call("sqlite3_libversion_number", &[]));
}

#[test]
fn policies_refuse_or_map_system_libraries_privately() {
    if !in_fresh_process("policies_refuse_or_map_system_libraries_privately") {
        return;
    }
    let so = build("default", "mathuse.c", "fxmath", &["-lm"]);
    let refuse = Namespace::new("strict").system_libraries(SystemPolicy::Refuse);
    // SAFETY: a test fixture.
    let err = unsafe { refuse.open(so.as_path()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("libm.so.6") && err.to_string().contains("strict"), "{err}");
    // Opened directly by path, a system library is refused too, unless the process already
    // has it (then it is used as it is, as for a dependency).
    if let (Some(libm), Some(libc_path)) = (system_lib("libm.so.6"), system_lib("libc.so.6")) {
        // SAFETY: a system library.
        let err = unsafe { refuse.open(libm.as_path()) }.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
        assert!(err.to_string().contains("libm.so.6") && err.to_string().contains("strict"), "{err}");
        assert!(!process_maps("libm.so"), "refused, and nobody loaded it");
        // SAFETY: libc is already loaded; nothing runs.
        let libc = unsafe { refuse.open(libc_path.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
        assert!(libc.is_pinned(), "the process's own libc, not a copy");
        assert!(libc.address_of("getpid").is_ok());
    }
    // A private copy of libm: its initial-exec TLS (`R_X86_64_TPOFF64 errno`) binds to libc's
    // errno in static TLS, so libm's errors land in the caller's errno.
    let private = Namespace::new("private").system_libraries(SystemPolicy::MapPrivately);
    // SAFETY: as above.
    let mine = unsafe { private.open(so.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert!(mine.dependencies().iter().any(|(n, by_mmkit)| n.starts_with("libm.so") && *by_mmkit));
    let private_answers = (call(&mine, "fx_hypot", &[5, 12]), call(&mine, "fx_log_errno", &[0]));
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD loads nothing.
    let glibcs = unsafe { libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
    assert!(glibcs.is_null(), "neither policy let glibc load libm");
    drop(mine);
    // The default has glibc load it.
    let ours = open(so.as_path());
    let oracle = Dl::open(&so);
    assert_eq!(call(&ours, "fx_hypot", &[5, 12]), 13);
    assert_eq!(call(&ours, "fx_log_errno", &[0]), i64::from(libc::ERANGE));
    assert_eq!(oracle.call("fx_log_errno", &[0]), i64::from(libc::ERANGE));
    assert_eq!(private_answers, (13, i64::from(libc::ERANGE)));
}

#[test]
fn libm_opened_directly_goes_to_the_system_linker_and_answers_like_glibc() {
    let test = "libm_opened_directly_goes_to_the_system_linker_and_answers_like_glibc";
    if !in_fresh_process(test) {
        return;
    }
    let Some(path) = system_lib("libm.so.6") else { return };
    assert!(!process_maps("libm.so"), "the test process must not link libm");
    type F1 = extern "C" fn(f64) -> f64;
    type F2 = extern "C" fn(f64, f64) -> f64;
    for source in [Source::path(&path), Source::path("libm.so.6")] {
        let ours = open(source);
        assert!(process_maps("libm.so"), "glibc loaded libm");
        assert!(ours.is_pinned() && ours.source().ends_with("libm.so.6"), "{}", ours.source());
        assert_eq!(ours.soname(), Some("libm.so.6"));
        // The names, read from glibc's copy, are the file's, in order.
        let readelf = std::process::Command::new("readelf").args(["-dW"]).arg(&path).output().unwrap();
        let file_needed: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
            .collect();
        assert!(file_needed.iter().any(|n| n.starts_with("libc.so")), "{file_needed:?}");
        assert_eq!(ours.needed(), file_needed, "DT_NEEDED of {}", path.display());
        // Its span holds its functions, as glibc's dladdr says.
        let cbrt_at = ours.address_of("cbrt").unwrap();
        let (start, len) = ours.span();
        assert!(cbrt_at >= start && cbrt_at < start + len, "{cbrt_at:#x} outside {start:#x}+{len:#x}");
        let info = mmkit_elf::addr_info(cbrt_at).unwrap();
        assert!(!info.loaded_by_mmkit && info.library.contains("libm.so"), "{info:?}");
        assert_eq!(info.base, start);
        let oracle = Dl::open(&path);
        // SAFETY: libm's cbrt, hypot, lgamma and pow have these signatures.
        let (cbrt, hypot, pow) = unsafe {
            (
                *ours.function::<F1>("cbrt").unwrap(),
                *ours.function::<F2>("hypot").unwrap(),
                *ours.function::<F2>("pow").unwrap(),
            )
        };
        // SAFETY: as above.
        let (gcbrt, ghypot, gpow): (F1, F2, F2) = unsafe {
            (
                std::mem::transmute::<*mut c_void, F1>(oracle.addr("cbrt")),
                std::mem::transmute::<*mut c_void, F2>(oracle.addr("hypot")),
                std::mem::transmute::<*mut c_void, F2>(oracle.addr("pow")),
            )
        };
        for x in [0.0, 1.0, 27.0, -8.0, 1e300, 0.001] {
            assert_eq!(cbrt(x).to_bits(), gcbrt(x).to_bits(), "cbrt {x}");
            assert_eq!(hypot(x, 4.0).to_bits(), ghypot(x, 4.0).to_bits(), "hypot {x}");
            assert_eq!(pow(x, 0.5).to_bits(), gpow(x, 0.5).to_bits(), "pow {x}");
        }
        assert_eq!(ours.symbol_kind("cbrt").unwrap(), mmkit_elf::SymbolKind::Function);
        // mmkit did not map it: its own mapping checks say so.
        let err = ours.verify().unwrap_err();
        assert!(err.to_string().contains("system linker") && err.to_string().contains("libm.so.6"), "{err}");
        assert!(ours.segments().is_err());
    }
    // libc.so.6 likewise: the process's own copy.
    let Some(libc_path) = system_lib("libc.so.6") else { return };
    let libc_lib = open(libc_path.as_path());
    assert_eq!(libc_lib.address_of("getpid").unwrap(), libc::getpid as *const () as u64);
}

#[test]
fn bare_sonames_are_searched_for() {
    let Some(path) = system_lib("libz.so.1") else { return };
    let ours = open(Source::path("libz.so.1"));
    assert!(ours.source().ends_with("/libz.so.1"), "{}", ours.source());
    let oracle = Dl::open(&path);
    assert_eq!(call(&ours, "adler32", &[1, 0, 0]), oracle.call("adler32", &[1, 0, 0]));
    let err = try_open(Source::path("libno-such-library.so.7")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound);
    assert!(err.to_string().contains("libno-such-library.so.7"), "{err}");
}

#[test]
fn namespace_search_path_reaches_into_an_apk_directory() {
    // libfxdep (a file) needs libfxbase.so, which is only in an APK on the namespace's path.
    let base = build("ns-base", "base.c", "fxbase", &[]);
    let base_dir = base.parent().unwrap().display().to_string();
    let dep = build("ns-dep", "dep.c", "fxdep", &[&format!("-L{base_dir}"), "-lfxbase"]);
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("libs.apk");
    write_zip(&apk, &[("lib/x86_64/libfxbase.so", &std::fs::read(&base).unwrap(), page_u16())]);
    let err = try_open(dep.as_path()).unwrap_err();
    assert!(err.to_string().contains("libfxbase.so"), "{err}");
    let ns = Namespace::new("app").search([format!("{}!/lib/x86_64", apk.display())]);
    // SAFETY: test fixtures.
    let ours = unsafe { ns.open(dep.as_path()) }.unwrap();
    let base_lib = ours.loaded_dependencies().into_iter().next().expect("libfxbase loaded by mmkit");
    assert!(base_lib.source().ends_with("libs.apk!/lib/x86_64/libfxbase.so"), "{}", base_lib.source());
    assert_eq!(call(&ours, "fx_dep_twice", &[20]), 2 * call(&base_lib, "fx_base_value", &[20]));
}

#[test]
fn an_ld_preload_interposer_with_a_version_table_wins_as_with_glibc() {
    const CHILD: &str = "MMKIT_ELF_PRELOAD_CHILD";
    let so = lib("callpid.c", "fxcallpid");
    if std::env::var(CHILD).is_ok() {
        let ours = open(so.as_path());
        let oracle = Dl::open(&so);
        let theirs = oracle.call("fx_pid", &[]);
        assert_eq!(theirs, 4242, "glibc binds getpid@GLIBC_2.2.5 to the interposer");
        assert_eq!(call(&ours, "fx_pid", &[]), theirs);
        return;
    }
    let preload = build("preload", "preload_getpid.c", "fxpreload", &[]);
    let dynamic = std::process::Command::new("readelf").arg("-d").arg(&preload).output().map(|o| o.stdout);
    if let Ok(text) = dynamic {
        assert!(String::from_utf8_lossy(&text).contains("VERSYM"), "the interposer must have a version table");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["an_ld_preload_interposer_with_a_version_table_wins_as_with_glibc", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .env("LD_PRELOAD", &preload)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn origin_in_an_apk_runpath_is_the_entry_directory() {
    // lib/x86_64/libfxdep.so has RUNPATH $ORIGIN/../common, where libfxbase.so is.
    let base = build("apk-origin-base", "base.c", "fxbase", &[]);
    let base_dir = base.parent().unwrap().display().to_string();
    let dep = build(
        "apk-origin",
        "dep.c",
        "fxdep",
        &[&format!("-L{base_dir}"), "-lfxbase", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../common"],
    );
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("app.apk");
    write_zip(
        &apk,
        &[
            ("lib/x86_64/libfxdep.so", &std::fs::read(&dep).unwrap(), page_u16()),
            ("lib/common/libfxbase.so", &std::fs::read(&base).unwrap(), page_u16()),
        ],
    );
    let ours = open(Source::zip_entry(&apk, "lib/x86_64/libfxdep.so"));
    let deps = ours.loaded_dependencies();
    assert_eq!(deps.len(), 1);
    assert!(deps[0].source().ends_with("app.apk!/lib/common/libfxbase.so"), "{}", deps[0].source());
    assert_eq!(call(&ours, "fx_dep_twice", &[5]), 2 * call(&deps[0], "fx_base_value", &[5]));
}

#[test]
fn addr_info_answers_like_dladdr_for_mmkit_libraries() {
    let so = lib("basic.c", "fxbasic");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libfxbasic.so");
    std::fs::copy(&so, &copy).unwrap();
    let ours = open(copy.as_path());
    let oracle = Dl::open(&so);
    for name in ["fx_add", "fx_mul", "fx_counter"] {
        let ours_at = ours.address_of(name).unwrap();
        let theirs_at = oracle.addr(name) as u64;
        for delta in [0u64, 1, 3] {
            let info = mmkit_elf::addr_info(ours_at + delta).expect("an mmkit library holds it");
            let mut want = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
            // SAFETY: dladdr fills the zeroed Dl_info.
            assert_ne!(unsafe { libc::dladdr((theirs_at + delta) as *const c_void, want.as_mut_ptr()) }, 0);
            // SAFETY: filled above.
            let want = unsafe { want.assume_init() };
            // SAFETY: glibc's symbol name string.
            let want_name = unsafe { CStr::from_ptr(want.dli_sname) }.to_str().unwrap();
            assert!(info.loaded_by_mmkit);
            assert_eq!(info.library, copy.display().to_string());
            assert_eq!(info.base, ours.span().0);
            assert_eq!(info.symbol.as_deref(), Some(want_name), "{name}+{delta}");
            assert_eq!(info.symbol_addr, Some(ours_at));
            assert_eq!(ours_at - info.base, theirs_at - want.dli_fbase as u64, "same offset in the file");
        }
    }
    // Other addresses go to glibc's dladdr.
    let getpid = libc::getpid as *const () as u64;
    let info = mmkit_elf::addr_info(getpid).unwrap();
    assert!(!info.loaded_by_mmkit && info.library.contains("libc.so"), "{info:?}");
    let gone = ours.address_of("fx_add").unwrap();
    drop(ours);
    assert!(mmkit_elf::addr_info(gone).is_none_or(|i| !i.loaded_by_mmkit));
}

/// `backtrace_symbols` and `backtrace_symbols_fd` called in a library mmkit mapped named its
/// frames `[0x7f...]` only (glibc's go through glibc's own `dladdr`, which does not know the
/// library); mmkit binds its own, which write glibc's lines: `libfx.so(fx_fn+0x9) [0x...]`, and
/// `libfx.so(+0x1273)` (from the load bias) for a function that is not exported.
#[test]
fn backtrace_symbols_in_a_mapped_library_name_its_frames_as_under_glibc() {
    let so = lib("backtrace.c", "fxbacktrace");
    let ours = open(so.as_path());
    let oracle = Dl::open(&so);
    let text = |p: i64| {
        // SAFETY: the fixture returns its static, NUL-terminated buffer.
        unsafe { CStr::from_ptr(p as usize as *const c_char) }.to_str().unwrap().to_owned()
    };
    for (to_fd, how) in [(0, "backtrace_symbols"), (1, "backtrace_symbols_fd")] {
        let theirs = text(oracle.call("fx_backtrace_names", &[to_fd]));
        assert!(theirs.contains("libfxbacktrace.so(fx_backtrace_names+0x"), "{how}, glibc's copy: {theirs}");
        assert_eq!(text(call(&ours, "fx_backtrace_names", &[to_fd])), theirs, "{how}");
    }
}

/// A library calling `dladdr` (or `dladdr1`) about itself (to find its data files, or name
/// itself) got "no object" from glibc's, which does not know libraries mmkit mapped; mmkit
/// binds its own.
#[test]
fn a_library_asking_dladdr_about_itself_is_answered_as_under_glibc() {
    let so = lib("selfaddr.c", "fxselfaddr");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libfxselfaddr.so");
    std::fs::copy(&so, &copy).unwrap();
    let ours = open(copy.as_path());
    let oracle = Dl::open(&so);
    let offset = call(&ours, "fx_self_offset", &[]);
    assert!(offset > 0, "dladdr in the library answered code {offset}");
    assert_eq!(offset, oracle.call("fx_self_offset", &[]), "same offset from the base as glibc's copy");
    assert_eq!(offset as u64, ours.address_of("fx_self_offset").unwrap() - ours.span().0);
    let fname = call(&ours, "fx_self_file", &[]);
    // SAFETY: the library's own name, alive while it is loaded.
    let fname = unsafe { CStr::from_ptr(fname as *const c_char) };
    assert_eq!(fname.to_str().unwrap(), copy.display().to_string());
    // Addresses outside mmkit's libraries still reach glibc's dladdr.
    let getpid = libc::getpid as *const () as i64;
    assert_eq!(call(&ours, "fx_base_of", &[getpid]), oracle.call("fx_base_of", &[getpid]));
    assert_ne!(call(&ours, "fx_base_of", &[getpid]), 0);
    // dladdr1 too (glibc's answered 0 for an mmkit library): the symbol's entry and the link_map.
    assert_eq!(oracle.call("fx_self_dladdr1", &[]), 111, "glibc's copy");
    assert_eq!(call(&ours, "fx_self_dladdr1", &[]), 111, "dladdr1 in the mapped library");
}

/// A wrapper library finding the function it wraps with `dlsym(RTLD_NEXT)` got NULL: glibc's
/// `dlsym` finds the caller by its return address, and knows no library mmkit mapped. mmkit
/// binds `dlsym`/`dlvsym` to entries that pass the return address on; the answers are
/// compared with glibc's copy of the same files.
#[test]
fn rtld_next_from_a_mapped_library_finds_the_next_definition_as_under_glibc() {
    let dir = tempfile::tempdir().unwrap();
    let copy = next_fixture_in(dir.path());
    let ours = open(copy.as_path());
    let oracle = Dl::open(&copy);
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let ask = |f: &str, args: &[&std::ffi::CString]| {
        let args: Vec<i64> = args.iter().map(|a| a.as_ptr() as i64).collect();
        (call(&ours, f, &args), oracle.call(f, &args))
    };
    // A function of the C library: the same address as glibc answers, the real getpid.
    let (mine, theirs) = ask("fx_next", &[&c("getpid")]);
    assert_ne!(theirs, 0);
    assert_eq!(mine, theirs, "RTLD_NEXT getpid");
    assert_eq!(mine as usize, libc::getpid as *const () as usize);
    assert_eq!(call(&ours, "fx_next_getpid", &[]), i64::from(std::process::id()));
    // A function of its dependency: that dependency's copy (mmkit's, glibc's).
    let (mine, theirs) = ask("fx_next", &[&c("fx_base_value")]);
    let base_lib =
        ours.loaded_dependencies().into_iter().find(|l| l.name().contains("fxbase")).expect("libfxbase mapped");
    assert_eq!(mine as u64, base_lib.address_of("fx_base_value").unwrap());
    assert_eq!(theirs as usize, oracle.addr("fx_base_value") as usize);
    // Defined only by the caller itself, or nowhere: NULL from both.
    for name in ["fx_next_own", "fx_defined_nowhere"] {
        assert_eq!(ask("fx_next", &[&c(name)]), (0, 0), "{name}");
        // With a dlerror message naming it, as glibc's.
        let (mine, theirs) = ask("fx_next_error", &[&c(name)]);
        assert!(theirs > 1000 && mine > 1000, "dlerror after RTLD_NEXT {name}: {mine} (glibc {theirs})");
    }
    // dlvsym: an existing version and one that is not.
    let version = if cfg!(target_arch = "aarch64") { "GLIBC_2.17" } else { "GLIBC_2.2.5" };
    let (mine, theirs) = ask("fx_next_versioned", &[&c("getpid"), &c(version)]);
    assert_ne!(theirs, 0);
    assert_eq!(mine, theirs, "dlvsym RTLD_NEXT getpid@{version}");
    assert_eq!(ask("fx_next_versioned", &[&c("getpid"), &c("GLIBC_9.99")]), (0, 0));
    // Other handles still reach glibc's dlsym.
    let (mine, theirs) = ask("fx_default", &[&c("getpid")]);
    assert_ne!(theirs, 0);
    assert_eq!(mine, theirs, "RTLD_DEFAULT getpid");
}

/// `RTLD_NEXT` from a library loaded as a dependency searches after it in the lookup scope of
/// the library whose load brought it in, as glibc does (its `l_loader` chain): a wrapper
/// listed before the library it wraps finds that library's definition, one listed after does
/// not. mmkit searched the wrapper's own dependencies (found nothing in the first case).
#[test]
fn rtld_next_from_a_dependency_searches_after_it_in_its_roots_scope_as_glibc() {
    let base = build("nextorder", "base.c", "fxbase", &[]);
    let dir = base.parent().unwrap().display().to_string();
    let next = build("nextorder", "next.c", "fxnext", &[]);
    let libs = |first: &str, second: &str| {
        vec![format!("-L{dir}"), "-Wl,--no-as-needed".to_owned(), format!("-l{first}"), format!("-l{second}")]
    };
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let value = c("fx_base_value");
    for (root_name, order, found) in
        [("fxrootwrapfirst", libs("fxnext", "fxbase"), true), ("fxrootwrapafter", libs("fxbase", "fxnext"), false)]
    {
        let mut flags: Vec<&str> = order.iter().map(String::as_str).collect();
        flags.push("-Wl,--enable-new-dtags,-rpath,$ORIGIN");
        let root = build("nextorder", "basic.c", root_name, &flags);
        // Each case in its own directory: a copy loaded once is shared, and its root is the first.
        let copies = tempfile::tempdir().unwrap();
        for f in [&base, &next, &root] {
            std::fs::copy(f, copies.path().join(f.file_name().unwrap())).unwrap();
        }
        let root_copy = copies.path().join(root.file_name().unwrap());
        let ours = open(root_copy.as_path());
        let wrapper =
            ours.loaded_dependencies().into_iter().find(|l| l.name() == "libfxnext.so").expect("libfxnext mapped");
        let mine = call(&wrapper, "fx_next", &[value.as_ptr() as i64]);
        let oracle = Dl::open(&root_copy);
        let theirs = oracle.call("fx_next", &[value.as_ptr() as i64]);
        assert_eq!(theirs != 0, found, "glibc, {root_name}");
        assert_eq!(mine != 0, found, "{root_name}");
        if found {
            let base_lib = ours.loaded_dependencies().into_iter().find(|l| l.name() == "libfxbase.so").unwrap();
            assert_eq!(mine as u64, base_lib.address_of("fx_base_value").unwrap());
        }
    }
}

/// glibc's `dl_iterate_phdr` and `_dl_find_object` list only glibc's objects; in a library mmkit
/// maps they are bound to mmkit's, which list it too: it finds itself, its segments, its
/// `.eh_frame_hdr` and its TLS block as its copy under glibc does (it found nothing).
#[test]
fn a_library_walking_the_loaded_objects_finds_itself_as_under_glibc() {
    let so = build("walk", "walk.c", "fxwalk", &[]);
    let dir = tempfile::tempdir().unwrap();
    let oracle = Dl::open(&so);
    // glibc's copy finds itself (under qemu-user on aarch64 without its TLS block: 8).
    assert_eq!(oracle.call("fx_walk_self", &[5]) | 8, 127, "glibc's copy finds itself");
    for source in [Source::path(&so), apk_with(dir.path(), "libfxwalk.so", &so)] {
        let ours = open(source);
        for tls in [5, -9] {
            assert_eq!(call(&ours, "fx_walk_self", &[tls]), 127, "which of the bits of fx_walk_self are missing?");
        }
        // Its initializer got the process's argc and argv, as glibc gives them (it got none);
        // the argv of the initial stack, which envp and the auxiliary vector follow, as Go's
        // runtime in a c-shared library needs (it got a copy: AT_PAGESZ not found, 0).
        assert_eq!(call(&ours, "fx_walk_args", &[]), oracle.call("fx_walk_args", &[]));
        assert_eq!(call(&ours, "fx_walk_args", &[]), expected_args());
        let page = rustix::param::page_size() as i64;
        assert_eq!(oracle.call("fx_walk_auxv_pagesz", &[]), page, "glibc's");
        assert_eq!(call(&ours, "fx_walk_auxv_pagesz", &[]), page, "AT_PAGESZ past argv and envp");
    }
}

/// A library's TLS block outlives the thread's `thread_local` destructors: its own
/// `pthread_key` destructor reads it at thread exit (a Rust `cdylib`'s std does that for every
/// `thread_local` with a destructor). It aborted: mmkit's table of blocks was a `thread_local`
/// already destroyed then.
#[test]
fn a_library_reaches_its_tls_from_a_thread_key_destructor_at_thread_exit() {
    if !in_fresh_process("a_library_reaches_its_tls_from_a_thread_key_destructor_at_thread_exit") {
        return;
    }
    let so = build("walk", "walk.c", "fxwalk", &[]);
    let ours = open(so.as_path());
    let oracle = Dl::open(&so);
    for n in [0, 3, 41] {
        assert_eq!(oracle.call("fx_walk_key_exit", &[n]), n + 1000);
        assert_eq!(call(&ours, "fx_walk_key_exit", &[n]), n + 1000);
    }
}

/// A C++ library with its own libstdc++ and unwinder (`-static-libgcc`, libstdc++ linked
/// statically: how portable C++ plug-ins ship) throws and catches: its unwinder asks
/// `_dl_find_object`, which mmkit answers for it (every throw ended in `std::terminate`).
#[test]
fn a_cxx_library_with_its_own_static_unwinder_catches_its_exceptions() {
    if !host_cc() || !in_fresh_process("a_cxx_library_with_its_own_static_unwinder_catches_its_exceptions") {
        return;
    }
    let flags = ["-static-libgcc", "-Wl,-Bstatic", "-lstdc++", "-Wl,-Bdynamic"];
    let so = build("cxxstatic", "cxxstatic.cpp", "fxcxxstatic", &flags);
    let dir = tempfile::tempdir().unwrap();
    let oracle = Dl::open(&so);
    for source in [Source::path(&so), apk_with(dir.path(), "libfxcxxstatic.so", &so)] {
        let ours = open(source);
        for n in [0, 3, 10, 11, 40] {
            assert_eq!(call(&ours, "fx_static_catch", &[n]), oracle.call("fx_static_catch", &[n]), "{n}");
        }
        assert_eq!(call(&ours, "fx_static_catch", &[11]), -(("too deep: 11").len() as i64));
    }
}

/// This process's argument count * 1000 + the length of its first argument (at most 999),
/// as the fixtures report what their initializers were given.
fn expected_args() -> i64 {
    let first = std::env::args_os().next().map_or(0, |a| a.len().min(999) as i64);
    std::env::args_os().count() as i64 * 1000 + first
}

/// `tests/fixtures/<src>` built by another toolchain (`build(tmp, dir)` writes it to `tmp`,
/// `false` when the toolchain is absent) as `mmkit-elf-fixtures/<kind>/<file>`. Built already
/// from this source (by this run as root, before the unprivileged run, which cannot run the
/// toolchain under root's home): reused.
fn built_by_toolchain(kind: &str, file: &str, src: &str, build: impl FnOnce(&Path, &Path) -> bool) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmkit-elf-fixtures").join(kind);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(file);
    let src = common::fixture_src(src);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(written)) = (modified(&out), modified(&src)) {
        if built >= written {
            return Some(out);
        }
    }
    let tmp = dir.join(format!(".{file}.{}", std::process::id()));
    if !build(&tmp, &src) {
        return None;
    }
    std::fs::rename(&tmp, &out).unwrap();
    Some(out)
}

/// `tests/fixtures/rustplug.rs` built as a Rust `cdylib` with this toolchain's `rustc`.
fn rust_plugin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            built_by_toolchain("rust", "libfxrustplug.so", "rustplug.rs", |tmp, src| {
                let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
                let status = std::process::Command::new(&rustc)
                    .args(["--edition", "2021", "-C", "opt-level=1", "--crate-type", "cdylib", "-o"])
                    .arg(tmp)
                    .arg(src)
                    .status()
                    .unwrap_or_else(|e| panic!("run {rustc}: {e}"));
                assert!(status.success(), "{rustc} failed for rustplug.rs");
                true
            })
            .unwrap()
        })
        .clone()
}

/// `tests/fixtures/goplug.go` built as a Go `-buildmode=c-shared` library with the machine's
/// `go`, or `None` without `go` (skipped; a failure under `CI=true`: scripts/test installs
/// golang-go).
fn go_plugin() -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            built_by_toolchain("go", "libfxgo.so", "goplug.go", |tmp, src| {
                // The build cache and GOPATH beside the fixture: the unprivileged run's HOME is
                // not the one the root run had.
                let dir = tmp.parent().unwrap();
                let status = std::process::Command::new("go")
                    .args(["build", "-buildmode=c-shared", "-o"])
                    .arg(tmp)
                    .arg(src)
                    .env("GOCACHE", dir.join("cache"))
                    .env("GOPATH", dir.join("gopath"))
                    .env("GO111MODULE", "off")
                    .status();
                match status {
                    Ok(s) if s.success() => {
                        let _ = std::fs::remove_file(tmp.with_extension("h"));
                        true
                    }
                    other => {
                        assert!(
                            std::env::var("CI").as_deref() != Ok("true"),
                            "go build: {other:?} (scripts/test installs golang-go)"
                        );
                        eprintln!("skipping: no Go toolchain here ({other:?})");
                        false
                    }
                }
            })
        })
        .clone()
}

/// A Go `c-shared` library (what gomobile and cgo plug-ins are) starts its runtime in its
/// initializer: it reads `AT_PAGESZ` by walking from `argv` past `envp` into the auxiliary
/// vector, starts threads, installs signal handlers. Its goroutines, collector and recovered
/// panics (one from a SIGSEGV its handler turns into a panic) answer as under glibc, from a
/// file and from an APK entry. It stopped with "fatal error: failed to get system page size":
/// initializers were given a copy of `argv`, not the initial stack's. One Go runtime per
/// process: each loader in a child of its own.
#[test]
fn a_go_c_shared_library_runs_its_runtime_as_under_glibc() {
    const NAME: &str = "a_go_c_shared_library_runs_its_runtime_as_under_glibc";
    if !host_cc() {
        return;
    }
    let Some(so) = go_plugin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let loaders = ["glibc", "file", "apk"];
    let Some(loader) = loaders.into_iter().find(|l| in_fresh_process_with(NAME, &[("MMKIT_FX_GO_LOADER", l)])) else {
        return; // the parent: each child passed
    };
    // In the child: the loader its variable names (the first `in_fresh_process_with` answered).
    let loader = std::env::var("MMKIT_FX_GO_LOADER").unwrap_or_else(|_| loader.to_owned());
    let answers = |call: &dyn Fn(&str, &[i64]) -> i64| {
        [call("FxGoAdd", &[40, 2]), call("FxGoWork", &[100]), call("FxGoPanics", &[]), call("FxGoWork", &[7])]
    };
    let got = match loader.as_str() {
        "glibc" => {
            let oracle = Dl::open(&so);
            answers(&|f, a| oracle.call(f, a))
        }
        which => {
            let source = if which == "apk" { apk_with(dir.path(), "libfxgo.so", &so) } else { Source::path(&so) };
            let ours = open(source);
            answers(&|f, a| call(&ours, f, a))
        }
    };
    assert_eq!(got, [42, 570, 2, 21], "{loader}");
}

/// A Rust `cdylib` plug-in (its own std): `thread_local` destructors in threads it spawns, a
/// panic caught inside, collections, and a backtrace that names its own frames; from a file and
/// an APK entry, compared with glibc's copy.
#[test]
fn a_rust_cdylib_runs_threads_panics_and_backtraces_as_under_glibc() {
    if !host_cc() || !in_fresh_process("a_rust_cdylib_runs_threads_panics_and_backtraces_as_under_glibc") {
        return;
    }
    let so = rust_plugin();
    let dir = tempfile::tempdir().unwrap();
    let oracle = Dl::open(&so);
    for source in [Source::path(&so), apk_with(dir.path(), "libfxrustplug.so", &so)] {
        let ours = open(source);
        for n in [0, 3] {
            let theirs = oracle.call("fx_rust_work", &[n]);
            assert_eq!(theirs, 6 * n + 1000 * i64::from(n > 0) + 100 + 400_000);
            assert_eq!(call(&ours, "fx_rust_work", &[n]), theirs, "fx_rust_work({n})");
        }
        assert_eq!(oracle.call("fx_rust_args", &[]), expected_args());
        assert_eq!(call(&ours, "fx_rust_args", &[]), expected_args(), "std::env::args() in the plug-in");
        assert_eq!(oracle.call("fx_rust_backtrace_names_itself", &[]), 1);
        if ours.source().contains(".apk!/") {
            // The symbolizer reads the file by the name the walk gives: an APK entry is none.
            continue;
        }
        assert_eq!(call(&ours, "fx_rust_backtrace_names_itself", &[]), 1);
    }
}

/// A library mmkit maps that opens a library beside it with `dlopen` (a bare name found
/// through its `DT_RUNPATH` `$ORIGIN`, or `$ORIGIN/...`) finds it as under glibc, from a file
/// and from an APK entry (its directory inside the archive), and the library it opens is mapped
/// by mmkit in its namespace. It was glibc's search, for the main program: "cannot open shared
/// object file".
#[test]
fn dlopen_from_a_mapped_library_searches_as_for_its_dependencies() {
    let base = build("opener", "base.c", "fxbase", &[]);
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libfxopener.so");
    std::fs::copy(&opener, &copy).unwrap();
    std::fs::copy(&base, dir.path().join("libfxbase.so")).unwrap();
    let apk = dir.path().join("app.apk");
    let (opener_bytes, base_bytes) = (std::fs::read(&opener).unwrap(), std::fs::read(&base).unwrap());
    write_zip(
        &apk,
        &[("lib/any/libfxopener.so", &opener_bytes, page_u16()), ("lib/any/libfxbase.so", &base_bytes, page_u16())],
    );
    let oracle = Dl::open(&copy);
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (value, base_name, nowhere) = (c("fx_base_value"), c("libfxbase.so"), c("libfxnowhere.so"));
    let arg = |s: &std::ffi::CString| s.as_ptr() as i64;
    for source in [Source::path(&copy), Source::zip_entry(&apk, "lib/any/libfxopener.so")] {
        let from_file = matches!(source, Source::Path(_));
        let ns = Namespace::new("opener");
        // SAFETY: the test's own fixtures.
        let ours = unsafe { ns.open(source) }.unwrap();
        for name in [c("libfxbase.so"), c("$ORIGIN/libfxbase.so")] {
            let args = [arg(&name), arg(&value), 5];
            assert_eq!(call(&ours, "fx_open_call", &args), 1005, "{name:?}");
            if from_file {
                assert_eq!(oracle.call("fx_open_call", &args), 1005, "glibc: {name:?}");
            }
        }
        // Opened twice: one handle, as glibc's one link_map (it was two), counted: still
        // open after one dlclose.
        assert_eq!(call(&ours, "fx_open_twice", &[arg(&base_name), arg(&value)]), 3);
        if from_file {
            assert_eq!(oracle.call("fx_open_twice", &[arg(&base_name), arg(&value)]), 3, "glibc");
        }
        // Closed again: not loaded. Kept open: mapped by mmkit, in the caller's namespace.
        assert_eq!(call(&ours, "fx_is_loaded", &[arg(&base_name)]), 0);
        assert_eq!(ns.loaded_count(), 1);
        let at = call(&ours, "fx_open_keep", &[arg(&base_name), arg(&value)]);
        assert_eq!(call_addr(at as u64, &[1]), 1001);
        let info = mmkit_elf::addr_info(at as u64).expect("an mmkit library holds it");
        assert!(info.loaded_by_mmkit && info.library.ends_with("libfxbase.so"), "{info:?}");
        assert_eq!(ns.loaded_count(), 2);
        assert_eq!(call(&ours, "fx_is_loaded", &[arg(&base_name)]), 1);
        // A symbol the opened library lacks: NULL, and dlerror names it.
        let missing = c("fx_not_in_base");
        assert!(call(&ours, "fx_sym_error", &[arg(&base_name), arg(&missing)]) > 1000);
        if from_file {
            assert!(oracle.call("fx_sym_error", &[arg(&base_name), arg(&missing)]) > 1000, "glibc");
        }
        assert_eq!(call(&ours, "fx_sym_error", &[arg(&base_name), arg(&value)]), -2);
        // dlinfo on the handle answers for mmkit's library (glibc's would read it as its own).
        let expected_dir = match from_file {
            true => c(&dir.path().display().to_string()),
            false => c(&format!("{}!/lib/any", apk.display())),
        };
        assert_eq!(call(&ours, "fx_open_info", &[arg(&base_name), arg(&expected_dir)]), 15);
        if from_file {
            assert_eq!(oracle.call("fx_open_info", &[arg(&base_name), arg(&expected_dir)]), 15, "glibc");
        }
        // Found nowhere: NULL, and dlerror names it (glibc's message: the search fell to it).
        assert_eq!(call(&ours, "fx_open_call", &[arg(&nowhere), arg(&value), 1]), -1);
        assert!(call(&ours, "fx_last_error", &[arg(&nowhere)]) > 1000);
        if from_file {
            // Found and not a library: mmkit's error, which dlerror answers (naming the file).
            let bad = c("libfxbad.so");
            std::fs::write(dir.path().join("libfxbad.so"), b"not an ELF file").unwrap();
            assert_eq!(call(&ours, "fx_open_call", &[arg(&bad), arg(&value), 1]), -1);
            assert!(call(&ours, "fx_last_error", &[arg(&bad)]) > 1000);
            assert_eq!(oracle.call("fx_open_call", &[arg(&bad), arg(&value), 1]), -1);
        }
    }
    assert_eq!(oracle.call("fx_open_call", &[arg(&nowhere), arg(&value), 1]), -1);
    assert!(oracle.call("fx_last_error", &[arg(&nowhere)]) > 1000);
}

/// A library mmkit maps that opens a runtime `RTLD_GLOBAL`, then a plug-in that uses the
/// runtime's symbols without naming it in `DT_NEEDED` (as Python extension modules use
/// libpython's): the plug-in binds to the runtime and `dlsym(RTLD_DEFAULT)` finds it, as under
/// glibc. That `dlsym` ties the runtime to the host (glibc adds the dependency): closed, it
/// stays loaded and global until the host goes. mmkit ignored `RTLD_GLOBAL`: the plug-in
/// failed with "undefined symbol `fx_provided`".
#[test]
fn rtld_global_from_a_mapped_library_makes_its_symbols_global() {
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let provider = build("opener", "provider.c", "fxprovider", &[]);
    let consumer = build("opener", "consumer.c", "fxconsumer", &[]);
    let dir = tempfile::tempdir().unwrap();
    for f in [&opener, &provider, &consumer] {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let host = dir.path().join("libfxopener.so");
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (p, q) = (c("libfxprovider.so"), c("libfxconsumer.so"));
    let args = [p.as_ptr() as i64, q.as_ptr() as i64];
    // 5 * 10 + 1, + 1000 (RTLD_DEFAULT finds it, no dlerror); the runtime, tied to the host,
    // is still there for the consumer opened again (else + 10000).
    assert_eq!(Dl::open(&host).call("fx_global_chain", &args), 1051, "glibc");
    let ns = Namespace::new("rtld-global");
    // SAFETY: the test's own fixtures.
    let ours = unsafe { ns.open(host.as_path()) }.unwrap();
    assert_eq!(call(&ours, "fx_global_chain", &args), 1051);
    assert_eq!(ns.loaded_count(), 2, "the host and the runtime it is tied to");
    drop(ours);
    assert_eq!(ns.loaded_count(), 0, "the runtime goes with the host");
}

/// `Library::make_global` (what `RTLD_GLOBAL` does) from the Rust API: a library loaded
/// afterwards binds to it, and keeps it loaded while it lives (glibc's `l_reldeps`), though
/// the provider's own handle is gone.
#[test]
fn make_global_lets_later_libraries_bind_to_it_and_keeps_it_for_them() {
    let provider = build("opener", "provider.c", "fxprovider", &[]);
    let consumer = build("opener", "consumer.c", "fxconsumer", &[]);
    let ns = Namespace::new("make-global");
    // SAFETY: the test's own fixtures.
    let err = unsafe { ns.open(consumer.as_path()) }.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("fx_provided"), "{err}");
    // SAFETY: as above.
    let runtime = unsafe { ns.open(provider.as_path()) }.unwrap();
    runtime.make_global();
    // SAFETY: as above.
    let plugin = unsafe { ns.open(consumer.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&plugin, "fx_consume", &[4]), 41);
    drop(runtime);
    assert_eq!(ns.loaded_count(), 2, "the plug-in's binding keeps the runtime loaded");
    assert_eq!(call(&plugin, "fx_consume", &[6]), 61);
    drop(plugin);
    assert_eq!(ns.loaded_count(), 0, "then both go");
    // SAFETY: as above.
    let err = unsafe { ns.open(consumer.as_path()) }.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("fx_provided"), "the runtime left the global scope: {err}");
}

#[test]
fn addr_info_answers_for_the_addresses_dladdr_answers_for() {
    // Not for the rest of the last segment's page or the reservation's padding (it answered for
    // the whole span); for the hole between segments, as glibc does.
    let hole: &[&str] = &["-Wl,-Tdata=0x40000"];
    for (src, name, flags, func) in [("basic.c", "fxbasic", &[][..], "fx_add"), ("hole.c", "fxhole", hole, "fx_hole")] {
        let so = build("addrinfo", src, name, flags);
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(format!("lib{name}.so"));
        std::fs::copy(&so, &copy).unwrap();
        let ours = open(copy.as_path());
        let oracle = Dl::open(&so);
        let (start, len) = ours.span();
        let mut at = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: dladdr fills the zeroed Dl_info.
        assert_ne!(unsafe { libc::dladdr(oracle.addr(func), at.as_mut_ptr()) }, 0);
        // SAFETY: filled above.
        let their_base = unsafe { at.assume_init() }.dli_fbase as u64;
        let mut answered = 0;
        for off in (0..len + 4096).step_by(16) {
            let info = mmkit_elf::addr_info(start + off).filter(|i| i.loaded_by_mmkit);
            let mut want = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
            // SAFETY: dladdr only looks the address up.
            let found = unsafe { libc::dladdr((their_base + off) as *const c_void, want.as_mut_ptr()) } != 0;
            // SAFETY: filled when found.
            let theirs = found.then(|| unsafe { want.assume_init() }).filter(|w| w.dli_fbase as u64 == their_base);
            assert_eq!(info.is_some(), theirs.is_some(), "{name} + {off:#x}: {info:?}");
            if let (Some(info), Some(w)) = (info, theirs) {
                // SAFETY: glibc's symbol name string, when it gives one.
                let want_name = (!w.dli_sname.is_null()).then(|| unsafe { CStr::from_ptr(w.dli_sname) });
                assert_eq!(info.symbol.as_deref(), want_name.map(|n| n.to_str().unwrap()), "{name} + {off:#x}");
                answered += 1;
            }
        }
        assert!(answered > 0);
    }
}

/// Runs `exercise` on mmkit's copy from a copy of the file (outside the system directories:
/// the system library itself goes to the system linker), mmkit's copy from an APK entry, and
/// glibc's copy, in a fresh process without libm, and checks the three answers agree.
fn same_answers_as_glibc(test: &str, soname: &str, exercise: fn(Lookup<'_>) -> String) {
    if !in_fresh_process(test) {
        return;
    }
    let Some(path) = system_lib(soname) else { return };
    assert!(!process_maps("libm.so"), "the test process must not link libm");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(soname);
    std::fs::copy(&path, &copy).unwrap();
    let mut answers = Vec::new();
    for source in [Source::path(&copy), apk_with(dir.path(), soname, &path)] {
        let ours = open(source.clone());
        // SAFETY: only the address is taken; `exercise` calls it with its true signature.
        let lookup = |name: &str| unsafe { ours.function::<extern "C" fn()>(name) }.unwrap().address();
        answers.push((source.display(), exercise(&lookup)));
        ours.verify().unwrap();
    }
    let oracle = Dl::open(&path);
    let theirs = exercise(&|name: &str| oracle.addr(name) as u64);
    assert!(!theirs.is_empty());
    for (source, ours) in answers {
        assert_eq!(ours, theirs, "{source}");
    }
}

#[test]
fn zlib_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("zlib_from_file_and_apk_answers_like_glibcs_copy", "libz.so.1", |l| {
        type Compress2 = extern "C" fn(*mut u8, *mut u64, *const u8, u64, c_int) -> c_int;
        type Crc = extern "C" fn(u64, *const u8, u32) -> u64;
        let src: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = vec![0u8; 8192];
        let mut len = out.len() as u64;
        // SAFETY: zlib's compress2 and crc32 signatures.
        let (compress2, crc32) = unsafe { (func::<Compress2>(l, "compress2"), func::<Crc>(l, "crc32")) };
        assert_eq!(compress2(out.as_mut_ptr(), &mut len, src.as_ptr(), src.len() as u64, 9), 0);
        format!("{:x} {}", crc32(0, out.as_ptr(), len as u32), len)
    });
}

#[test]
fn zstd_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("zstd_from_file_and_apk_answers_like_glibcs_copy", "libzstd.so.1", |l| {
        type Compress = extern "C" fn(*mut u8, usize, *const u8, usize, c_int) -> usize;
        type Decompress = extern "C" fn(*mut u8, usize, *const u8, usize) -> usize;
        let src: Vec<u8> = (0..20000u32).map(|i| (i / 13 % 256) as u8).collect();
        let mut out = vec![0u8; 32768];
        let mut back = vec![0u8; src.len()];
        // SAFETY: ZSTD_compress and ZSTD_decompress signatures.
        let (c, d) = unsafe { (func::<Compress>(l, "ZSTD_compress"), func::<Decompress>(l, "ZSTD_decompress")) };
        let n = c(out.as_mut_ptr(), out.len(), src.as_ptr(), src.len(), 19);
        assert!(n < out.len());
        assert_eq!(d(back.as_mut_ptr(), back.len(), out.as_ptr(), n), src.len());
        assert_eq!(back, src);
        format!("{n} {:?}", &out[..n.min(64)])
    });
}

#[test]
fn lz4_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("lz4_from_file_and_apk_answers_like_glibcs_copy", "liblz4.so.1", |l| {
        type Compress = extern "C" fn(*const u8, *mut u8, c_int, c_int) -> c_int;
        let src: Vec<u8> = b"mmkit maps libraries ".iter().copied().cycle().take(5000).collect();
        let mut out = vec![0u8; 8192];
        // SAFETY: LZ4_compress_default's signature.
        let c = unsafe { func::<Compress>(l, "LZ4_compress_default") };
        let n = c(src.as_ptr(), out.as_mut_ptr(), src.len() as c_int, out.len() as c_int);
        assert!(n > 0);
        format!("{n} {:?}", &out[..n as usize])
    });
}

#[test]
fn libcrypto_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("libcrypto_from_file_and_apk_answers_like_glibcs_copy", "libcrypto.so.3", |l| {
        type Sha = extern "C" fn(*const u8, usize, *mut u8) -> *mut u8;
        let mut md = [0u8; 64];
        // SAFETY: SHA256 and SHA512 signatures.
        let (s256, s512) = unsafe { (func::<Sha>(l, "SHA256"), func::<Sha>(l, "SHA512")) };
        s256(b"abc".as_ptr(), 3, md.as_mut_ptr());
        let a: String = md[..32].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        s512(b"mmkit".as_ptr(), 5, md.as_mut_ptr());
        let b: String = md.iter().map(|b| format!("{b:02x}")).collect();
        format!("{a} {b}")
    });
}

/// Counts elements and sums their name lengths (expat's start-element callback).
extern "C" fn on_start(user: *mut c_void, name: *const c_char, _attrs: *mut *const c_char) {
    // SAFETY: `user` is the `(u64, u64)` given to XML_SetUserData; expat's name is NUL-terminated.
    unsafe {
        let acc = &mut *user.cast::<(u64, u64)>();
        acc.0 += 1;
        acc.1 += CStr::from_ptr(name).to_bytes().len() as u64;
    }
}

extern "C" fn on_end(_user: *mut c_void, _name: *const c_char) {}

type StartHandler = extern "C" fn(*mut c_void, *const c_char, *mut *const c_char);

/// Parses `doc` with expat's functions (found by `l`), calling `on_start` with `user` for
/// every element.
fn expat_parse(l: Lookup<'_>, doc: &[u8], on_start: StartHandler, user: *mut c_void) {
    type Create = extern "C" fn(*const c_char) -> *mut c_void;
    type SetUser = extern "C" fn(*mut c_void, *mut c_void);
    type SetHandlers = extern "C" fn(*mut c_void, StartHandler, extern "C" fn(*mut c_void, *const c_char));
    type Parse = extern "C" fn(*mut c_void, *const c_char, c_int, c_int) -> c_int;
    type Free = extern "C" fn(*mut c_void);
    // SAFETY: expat's signatures.
    let (create, set_user, set_handlers, parse, free) = unsafe {
        (
            func::<Create>(l, "XML_ParserCreate"),
            func::<SetUser>(l, "XML_SetUserData"),
            func::<SetHandlers>(l, "XML_SetElementHandler"),
            func::<Parse>(l, "XML_Parse"),
            func::<Free>(l, "XML_ParserFree"),
        )
    };
    let p = create(std::ptr::null());
    set_user(p, user);
    set_handlers(p, on_start, on_end);
    assert_eq!(parse(p, doc.as_ptr().cast(), doc.len() as c_int, 1), 1);
    free(p);
}

#[test]
fn expat_from_file_and_apk_calls_back_like_glibcs_copy() {
    same_answers_as_glibc("expat_from_file_and_apk_calls_back_like_glibcs_copy", "libexpat.so.1", |l| {
        let doc = b"<lib><seg prot='r-x'/><seg prot='rw-'/><relro/><bss pages='3'/></lib>";
        let mut acc = (0u64, 0u64);
        expat_parse(l, doc, on_start, (&mut acc as *mut (u64, u64)).cast());
        format!("{acc:?}")
    });
}

#[test]
fn libgomp_with_initial_exec_tls_answers_like_glibcs_copy() {
    // libgomp is built for initial-exec TLS (DF_STATIC_TLS): its per-thread state
    // (`gomp_tls_data`) lives in a block of glibc's static TLS area, which these calls read.
    same_answers_as_glibc("libgomp_with_initial_exec_tls_answers_like_glibcs_copy", "libgomp.so.1", |l| {
        type Get = extern "C" fn() -> c_int;
        type Set = extern "C" fn(c_int);
        // SAFETY: OpenMP's runtime signatures.
        let (thread_num, in_parallel, set_threads, max_threads, level) = unsafe {
            (
                func::<Get>(l, "omp_get_thread_num"),
                func::<Get>(l, "omp_in_parallel"),
                func::<Set>(l, "omp_set_num_threads"),
                func::<Get>(l, "omp_get_max_threads"),
                func::<Get>(l, "omp_get_level"),
            )
        };
        set_threads(3);
        format!("{} {} {} {}", thread_num(), in_parallel(), max_threads(), level())
    });
}

#[test]
fn libpng_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("libpng_from_file_and_apk_answers_like_glibcs_copy", "libpng16.so.16", |l| {
        type Version = extern "C" fn() -> u32;
        type Create = extern "C" fn(*const c_char, *mut c_void, *mut c_void, *mut c_void) -> *mut c_void;
        type Destroy = extern "C" fn(*mut *mut c_void, *mut *mut c_void, *mut *mut c_void);
        type VerString = extern "C" fn(*mut c_void) -> *const c_char;
        // SAFETY: libpng's signatures.
        let (version, create, destroy, ver) = unsafe {
            (
                func::<Version>(l, "png_access_version_number"),
                func::<Create>(l, "png_create_read_struct"),
                func::<Destroy>(l, "png_destroy_read_struct"),
                func::<VerString>(l, "png_get_libpng_ver"),
            )
        };
        // SAFETY: a static NUL-terminated version string.
        let text = unsafe { CStr::from_ptr(ver(std::ptr::null_mut())) }.to_string_lossy().into_owned();
        let ctext = std::ffi::CString::new(text.clone()).unwrap();
        let mut png = create(ctext.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        assert!(!png.is_null());
        destroy(&mut png, std::ptr::null_mut(), std::ptr::null_mut());
        format!("{} {text}", version())
    });
}

#[test]
fn libxml2_from_file_and_apk_answers_like_glibcs_copy() {
    same_answers_as_glibc("libxml2_from_file_and_apk_answers_like_glibcs_copy", "libxml2.so.2", |l| {
        type Read = extern "C" fn(*const c_char, c_int, *const c_char, *const c_char, c_int) -> *mut c_void;
        type Root = extern "C" fn(*mut c_void) -> *mut c_void;
        type Count = extern "C" fn(*mut c_void) -> u64;
        type Free = extern "C" fn(*mut c_void);
        // SAFETY: libxml2's signatures.
        let (read, root, count, free) = unsafe {
            (
                func::<Read>(l, "xmlReadMemory"),
                func::<Root>(l, "xmlDocGetRootElement"),
                func::<Count>(l, "xmlChildElementCount"),
                func::<Free>(l, "xmlFreeDoc"),
            )
        };
        let doc = b"<maps><m a='1'/><m a='2'/><m a='3'/></maps>";
        let d = read(doc.as_ptr().cast(), doc.len() as c_int, c"m.xml".as_ptr(), std::ptr::null(), 0);
        assert!(!d.is_null());
        let r = root(d);
        // SAFETY: xmlNode's `name` is its third pointer-sized field (_private, type, name).
        let name = unsafe { CStr::from_ptr(*(r as *const *const c_char).add(2)) }.to_string_lossy().into_owned();
        let n = count(r);
        free(d);
        format!("{name} {n}")
    });
}

/// Captures a backtrace from inside expat's callback.
extern "C" fn capture_backtrace(user: *mut c_void, _name: *const c_char, _attrs: *mut *const c_char) {
    // SAFETY: `user` is the String given to XML_SetUserData.
    let out = unsafe { &mut *user.cast::<String>() };
    if out.is_empty() {
        *out = std::backtrace::Backtrace::force_capture().to_string();
    }
}

/// Parses a document with expat's functions (found by `l`) with a callback that takes a
/// backtrace; returns it. Not inlined: its name must appear in the backtrace.
#[inline(never)]
fn parse_from_marked_frame(l: Lookup<'_>) -> String {
    let mut trace = String::new();
    expat_parse(l, b"<a><b/></a>", capture_backtrace, (&mut trace as *mut String).cast());
    trace
}

#[test]
fn backtraces_from_a_c_library_callback_reach_the_caller() {
    if !in_fresh_process("backtraces_from_a_c_library_callback_reach_the_caller") {
        return;
    }
    let Some(path) = system_lib("libexpat.so.1") else { return };
    let oracle = Dl::open(&path);
    let theirs = parse_from_marked_frame(&|n: &str| oracle.addr(n) as u64);
    assert!(theirs.contains("parse_from_marked_frame"), "glibc's copy:\n{theirs}");
    let ours = open(path.as_path());
    assert!(ours.unwind_tables_registered());
    // SAFETY: only addresses are taken; called with expat's signatures.
    let lookup = |n: &str| unsafe { ours.function::<extern "C" fn()>(n) }.unwrap().address();
    let trace = parse_from_marked_frame(&lookup);
    assert!(trace.contains("parse_from_marked_frame"), "the unwinder stopped inside mmkit's expat:\n{trace}");
}

#[test]
fn an_isolated_namespace_reaches_system_libraries_only_through_its_links() {
    if !in_fresh_process("an_isolated_namespace_reaches_system_libraries_only_through_its_links") {
        return;
    }
    if system_lib("libz.so.1").is_none() {
        return;
    }
    let zuse = build("default", "zuse.c", "fxzuse", &["-lz"]);
    assert!(!process_maps("libz.so"), "the test process must not have libz loaded");
    let isolated = Namespace::isolated("isolated");
    // SAFETY: a test fixture.
    let err = unsafe { isolated.open(zuse.as_path()) }.unwrap_err();
    assert!(err.to_string().contains("libz.so.1") && err.to_string().contains("isolated"), "{err}");
    let system = std::sync::Arc::new(Namespace::new("system"));
    let linked = Namespace::isolated("app").link(system, ["libz.so.1"]);
    // SAFETY: as above.
    let ours = unsafe { linked.open(zuse.as_path()) }.unwrap();
    assert!(ours.dependencies().iter().any(|(n, by_mmkit)| n.starts_with("libz.so") && !by_mmkit));
    let oracle = Dl::open(&zuse);
    assert_eq!(call(&ours, "fx_crc", &[77]), oracle.call("fx_crc", &[77]));
}

#[test]
fn a_position_independent_executable_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("main.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = dir.path().join("pie");
    let ok = std::process::Command::new("gcc").args(["-fPIE", "-pie", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(ok.success(), "gcc -pie");
    let err = try_open(exe.as_path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSharedObject, "{err}");
    assert!(err.to_string().contains("DF_1_PIE") && err.to_string().contains("/pie"), "{err}");
}

/// A copy of libgcc_s (outside the system directories, so mmkit maps it) has an `.init_array`
/// entry that is an `R_X86_64_64` against its exported `__cpu_indicator_init`, which the
/// global scope binds to the libgcc_s glibc already loaded (Rust's standard library links it):
/// glibc calls that definition. Before the fix mmkit refused the load: "run initializer ...
/// failed: 0x... is not in an executable segment".
#[test]
fn an_initializer_bound_to_a_definition_in_another_library_runs() {
    let Some(system) = system_lib("libgcc_s.so.1") else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libgcc_s.so.1");
    std::fs::copy(&system, &copy).unwrap();
    let ours = open(Source::path(&copy));
    let unwind = ours.address_of("_Unwind_GetIP").expect("_Unwind_GetIP");
    let info = mmkit_elf::addr_info(unwind).expect("addr_info of the copy's function");
    assert!(info.loaded_by_mmkit && info.library.contains(&*dir.path().to_string_lossy()), "{info:?}");
}

/// `std::call_once` reaches libstdc++'s `__thread` variables (`_ZSt15__once_callable`,
/// `_ZSt11__once_call`) through a general-dynamic GOT pair (`R_X86_64_DTPMOD64` +
/// `R_X86_64_DTPOFF64`): glibc's libstdc++ defines them, so the pair holds glibc's module id
/// and mmkit's `__tls_get_addr` forwards it to glibc's. Before the fix the load failed: "no TLS
/// module of an mmkit-loaded library defines it". libstdc++'s `__once_proxy` reads the
/// variable through its own TLS access: a wrong address would call garbage.
#[test]
fn call_once_reaches_libstdcxx_tls_from_file_and_apk_like_glibcs_copy() {
    if !in_fresh_process("call_once_reaches_libstdcxx_tls_from_file_and_apk_like_glibcs_copy") {
        return;
    }
    assert!(!process_maps("libstdc++"), "the test process must not link libstdc++");
    let so = build("default", "cxxonce.cpp", "fxcxxonce", &["-lstdc++"]);
    let dir = tempfile::tempdir().unwrap();
    let oracle = Dl::open(&so);
    for source in [Source::path(&so), apk_with(dir.path(), "libfxcxxonce.so", &so)] {
        let ours = open(source.clone());
        assert!(ours.dependencies().iter().any(|(n, by_mmkit)| n.starts_with("libstdc++") && !by_mmkit));
        for x in [21, 5, 1000] {
            assert_eq!(call(&ours, "fx_once_fresh", &[x]), oracle.call("fx_once_fresh", &[x]), "fresh {x}");
        }
        // The first call sets the value; later ones, in any thread, see it.
        assert_eq!(call(&ours, "fx_once", &[21]), 42, "{}", source.display());
        assert_eq!(call(&ours, "fx_once", &[5]), 42);
        let from_thread = std::thread::scope(|s| {
            s.spawn(|| (call(&ours, "fx_once", &[7]), call(&ours, "fx_once_fresh", &[7]))).join().unwrap()
        });
        assert_eq!(from_thread, (42, 8));
        ours.verify().unwrap();
    }
    assert_eq!(oracle.call("fx_once", &[21]), 42);
    assert_eq!(oracle.call("fx_once", &[5]), 42);
}

/// A library linked with `-z nodlopen` (`DF_1_NOOPEN`) is refused by glibc's `dlopen`, opened
/// itself or needed by the library opened ("shared object cannot be dlopen()ed"); mmkit-elf
/// loaded both and called into them.
#[test]
fn a_library_marked_nodlopen_is_refused_as_glibc_refuses_it() {
    let top = build("nodlopen", "basic.c", "fxnoopen", &["-Wl,-z,nodlopen"]);
    let c = build("rpchain-nodlopen", "rpchain.c", "fxrpc", &["-DFX_C", "-Wl,-z,nodlopen"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let b = build(
        "rpchain-nodlopen",
        "rpchain.c",
        "fxrpb",
        &["-DFX_B", &format!("-L{c_dir}"), "-lfxrpc", "-Wl,--enable-new-dtags,-rpath,$ORIGIN"],
    );
    for lib in [&top, &b] {
        let err = try_open(lib.as_path()).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("DF_1_NOOPEN"), "{}: {err}", lib.display());
        let path = std::ffi::CString::new(lib.to_str().unwrap()).unwrap();
        // SAFETY: a test fixture; glibc refuses it before running any code.
        let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(h.is_null(), "glibc refuses {}", lib.display());
        // SAFETY: dlerror after the failed dlopen.
        let msg = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned();
        assert!(msg.contains("cannot be dlopen()ed"), "{msg}");
    }
}

/// A library opened by a relative path has its `$ORIGIN` fixed when it loads, as glibc fixes
/// `l_origin` (the current directory joined with the path's directory): after a `chdir`, its
/// `dlopen` still finds the library beside it (through its `DT_RUNPATH` `$ORIGIN`, or
/// `$ORIGIN/...`), and `dlinfo(RTLD_DI_ORIGIN)` answers the absolute directory. mmkit-elf
/// expanded `$ORIGIN` from the relative path at each `dlopen` (not found after the `chdir`) and
/// answered `d` for the directory. glibc's copy of the same files is the oracle.
#[test]
fn origin_of_a_library_opened_by_a_relative_path_is_fixed_at_load_as_with_glibc() {
    let test = "origin_of_a_library_opened_by_a_relative_path_is_fixed_at_load_as_with_glibc";
    let base = build("opener", "base.c", "fxbase", &[]);
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    // Changes the current directory: in a child process of its own.
    if !in_fresh_process(test) {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let top_dir = top.path().canonicalize().unwrap();
    let dir = top_dir.join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&opener, dir.join("libfxopener.so")).unwrap();
    std::fs::copy(&base, dir.join("libfxbase.so")).unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (value, opener_name, dir_name) = (c("fx_base_value"), c("libfxopener.so"), c(dir.to_str().unwrap()));
    let arg = |s: &std::ffi::CString| s.as_ptr() as i64;
    let check = |who: &str, f: &dyn Fn(&str, &[i64]) -> i64| {
        for name in [c("libfxbase.so"), c("$ORIGIN/libfxbase.so")] {
            assert_eq!(f("fx_open_call", &[arg(&name), arg(&value), 5]), 1005, "{who}: {name:?} after chdir");
        }
        assert_eq!(f("fx_open_info", &[arg(&opener_name), arg(&dir_name)]) & 1, 1, "{who}: RTLD_DI_ORIGIN is {dir:?}");
    };
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    std::env::set_current_dir(&top_dir).unwrap();
    let ns = Namespace::new("relative-origin");
    // SAFETY: the test's own fixtures.
    let ours = unsafe { ns.open(Path::new("d/libfxopener.so")) }.unwrap();
    std::env::set_current_dir("/").unwrap();
    check("mmkit", &|f, args| call(&ours, f, args));
    std::env::set_current_dir(&top_dir).unwrap();
    let oracle = Dl::open(Path::new("d/libfxopener.so"));
    std::env::set_current_dir("/").unwrap();
    check("glibc", &|f, args| oracle.call(f, args));
}

/// The `DT_RPATH` a library inherits from the library that loaded it has that loader's
/// `$ORIGIN` fixed at load too: glibc searches the loader's `l_rpath_dirs`, expanded with its
/// `l_origin`. A library opened by a relative path (`d/libfxoptop.so`, `DT_RPATH` `$ORIGIN/sub`)
/// needs libfxopener (in `sub`, no search path of its own), whose `dlopen("libfxbase.so")`
/// after a `chdir` finds libfxbase through that `DT_RPATH`. glibc's copy is the oracle.
#[test]
fn an_inherited_rpath_keeps_its_loaders_origin_after_a_chdir_as_with_glibc() {
    let test = "an_inherited_rpath_keeps_its_loaders_origin_after_a_chdir_as_with_glibc";
    let base = build("opener", "base.c", "fxbase", &[]);
    let opener = build("opener-no-runpath", "opener.c", "fxopener", &[]);
    let opener_dir = opener.parent().unwrap().display().to_string();
    let top = build(
        "opener-top",
        "basic.c",
        "fxoptop",
        &[&format!("-L{opener_dir}"), "-Wl,--no-as-needed", "-lfxopener", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/sub"],
    );
    // Changes the current directory: in a child process of its own.
    if !in_fresh_process(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let sub = root.join("d/sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(&top, root.join("d/libfxoptop.so")).unwrap();
    std::fs::copy(&opener, sub.join("libfxopener.so")).unwrap();
    std::fs::copy(&base, sub.join("libfxbase.so")).unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (name, value) = (c("libfxbase.so"), c("fx_base_value"));
    let args = [name.as_ptr() as i64, value.as_ptr() as i64, 5];
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    std::env::set_current_dir(&root).unwrap();
    let ns = Namespace::new("inherited-rpath-origin");
    // SAFETY: the test's own fixtures.
    let ours = unsafe { ns.open(Path::new("d/libfxoptop.so")) }.unwrap();
    std::env::set_current_dir("/").unwrap();
    assert_eq!(call(&ours, "fx_open_call", &args), 1005, "mmkit, after the chdir");
    std::env::set_current_dir(&root).unwrap();
    let oracle = Dl::open(Path::new("d/libfxoptop.so"));
    std::env::set_current_dir("/").unwrap();
    assert_eq!(oracle.call("fx_open_call", &args), 1005, "glibc, after the chdir");
}

/// A `DT_NEEDED` entry with a dynamic string token (`$ORIGIN/libfxrpc.so`, as a dependency
/// whose soname has it records) names the library beside the one that needs it: glibc expands
/// the tokens of a `DT_NEEDED` name (`expand_dst`). mmkit-elf opened `$ORIGIN/libfxrpc.so` as
/// it is ("No such file or directory"). glibc's copy is the oracle.
#[test]
fn origin_in_a_needed_entry_is_expanded_as_glibc_expands_it() {
    let c = build("needed-origin", "rpchain.c", "fxrpc", &["-DFX_C", "-Wl,-soname,$ORIGIN/libfxrpc.so"]);
    let dir = c.parent().unwrap().display().to_string();
    let b = build("needed-origin", "rpchain.c", "fxrpb", &["-DFX_B", &format!("-L{dir}"), "-lfxrpc"]);
    let ns = Namespace::new("needed-origin");
    // SAFETY: the test's own fixtures.
    let ours = unsafe { ns.open(b.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_rpb", &[]), 32);
    assert!(ours.loaded_dependencies().iter().any(|d| d.source().ends_with("needed-origin/libfxrpc.so")));
    assert_eq!(Dl::open(&b).call("fx_rpb", &[]), 32, "glibc");
}

/// A library loaded from memory has no `$ORIGIN`: its `dlopen("$ORIGIN/libfxbase.so")` fails,
/// and `dlerror` has glibc's words for a file it cannot open (`$ORIGIN/libfxbase.so: cannot open
/// shared object file: ...`), as a `DT_NEEDED` entry of that name has; it had mmkit's own message.
#[test]
fn dlopen_of_an_origin_name_without_an_origin_has_glibcs_dlerror_words() {
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let ns = Namespace::new("no-origin-dlopen");
    // SAFETY: the test's own fixture.
    let ours = unsafe { ns.open(Source::memory("libfxopener.so", std::fs::read(&opener).unwrap())) }.unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (name, value) = (c("$ORIGIN/libfxbase.so"), c("fx_base_value"));
    assert_eq!(call(&ours, "fx_open_call", &[name.as_ptr() as i64, value.as_ptr() as i64, 5]), -1);
    let words = c("$ORIGIN/libfxbase.so: cannot open shared object file");
    assert!(call(&ours, "fx_last_error", &[words.as_ptr() as i64]) >= 1000, "dlerror lacks glibc's words");
}
