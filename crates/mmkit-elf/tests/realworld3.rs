//! The heaviest real cases, with glibc's `dlopen` of the same copy as the oracle: an embedded
//! CPython (libpython mapped by mmkit `dlopen`s its C extension modules through mmkit's
//! interposed `dlopen`, RTLD_LOCAL and RTLD_GLOBAL), C++ (libstdc++ mapped privately, ICU),
//! libcurl, libarchive with every compression library, and libLLVM's C API down to MCJIT.
//! Each test runs in fresh processes and skips, saying why, when its library is absent (a
//! failure under CI=true; scripts/test installs them).

mod common;

use common::*;
use mmkit_elf::{Namespace, SystemPolicy};
use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

const LIBPYTHON: &str = "libpython3.11.so.1.0";

/// The program the embedded interpreter runs: C extension modules (each `dlopen`ed by the
/// interpreter), threads, exceptions, ctypes, and numpy from a manylinux wheel (its modules
/// and OpenBLAS edited by auditwheel's patchelf; `MMKIT_PY_NUMPY`). It writes one line per
/// probe to `OUT`.
const PYTHON_PROGRAM: &str = r#"
import sys, os
lines = []
def probe(name, f):
    try:
        lines.append(f"{name}: {f()!r}")
    except BaseException as e:
        lines.append(f"{name}: {type(e).__name__}: {e}")
probe("flags", lambda: sys.getdlopenflags())
probe("math", lambda: __import__("math").lgamma(10.5))
probe("struct", lambda: __import__("struct").pack("<iQd", -7, 2**60, 0.5).hex())
def json_c():
    import json.encoder, _json
    return (json.encoder.c_make_encoder is not None, json.dumps({"a": [1, 2.5, None, "\u00e9"]}))
probe("_json", json_c)
probe("_decimal", lambda: str(__import__("_decimal").Decimal(1) / __import__("_decimal").Decimal(7)))
def sqlite():
    import sqlite3
    c = sqlite3.connect(":memory:")
    c.execute("create table t(x)")
    c.executemany("insert into t values (?)", [(i,) for i in range(100)])
    return (sqlite3.sqlite_version, c.execute("select sum(x), count(*) from t").fetchone())
probe("_sqlite3", sqlite)
probe("zlib", lambda: __import__("zlib").crc32(__import__("zlib").compress(b"mmkit" * 100)))
# libnsl, libtirpc, Kerberos and libresolv, which refers to libc's `errno` as initial-exec TLS
# (with libpython global, through the global scope).
probe("nis", lambda: __import__("nis").__name__)
def ssl():
    import ssl
    ctx = ssl.create_default_context()
    return (ssl.OPENSSL_VERSION.split()[0], ctx.verify_mode, ctx.check_hostname)
probe("_ssl", ssl)
probe("_hashlib", lambda: __import__("hashlib").sha256(b"mmkit").hexdigest())
def ctypes_calls():
    import ctypes
    libc = ctypes.CDLL(None)
    pid = libc.getpid() == os.getpid()
    z = ctypes.CDLL("libz.so.1")
    z.zlibVersion.restype = ctypes.c_char_p
    cmp = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))(
        lambda a, b: a[0] - b[0])
    arr = (ctypes.c_int * 6)(5, 3, 9, 1, 7, 2)
    libc.qsort(arr, 6, ctypes.sizeof(ctypes.c_int), cmp)
    return (pid, z.zlibVersion().decode(), list(arr))
probe("_ctypes", ctypes_calls)
def pythonapi():
    import ctypes
    ctypes.pythonapi.Py_GetVersion.restype = ctypes.c_char_p
    return ctypes.pythonapi.Py_GetVersion().decode().split()[0]
probe("pythonapi", pythonapi)
probe("absent", lambda: __import__("ctypes").CDLL("libmmkit_absent.so.9"))
probe("absent path", lambda: __import__("ctypes").CDLL("/nonexistent/libmmkit_absent.so"))
def flags():
    # RTLD_LAZY for two modules, then RTLD_GLOBAL for one, whose init function the main
    # program's handle then finds (when _ctypes imports at all).
    sys.setdlopenflags(os.RTLD_LAZY)
    import _lzma, _bz2
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
    import _queue
    sys.setdlopenflags(os.RTLD_NOW)
    import _contextvars
    main = __import__("ctypes").CDLL(None)
    return (_lzma.is_check_supported(_lzma.CHECK_SHA256), len(_bz2.BZ2Compressor().flush()),
            hasattr(main, "PyInit__queue"), hasattr(main, "PyInit__contextvars"))
probe("dlopen flags", flags)
def plugin():
    # A plain C library through ctypes: mmkit's dlopen maps it when the interpreter is mmkit's.
    import ctypes, _ctypes
    path = os.environ["MMKIT_PY_PLUGIN"]
    lib = ctypes.CDLL(path)
    counter = ctypes.c_int64.in_dll(lib, "fx_counter")
    answers = [lib.fx_sum6(1, 2, 3, 4, 5, 6), lib.fx_format_len(12345), counter.value, lib.fx_bump(5), counter.value]
    try:
        lib.fx_not_there
    except AttributeError as e:
        answers.append(str(e))
    main = ctypes.CDLL(None)
    answers.append(hasattr(main, "fx_apply"))
    again = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
    answers += [hasattr(main, "fx_apply"), again._handle == lib._handle, again.fx_apply(2, 6, 7)]
    return answers
probe("plugin", plugin)
probe("find_library", lambda: __import__("ctypes.util").util.find_library("z"))
def threads():
    import threading
    out = [0] * 4
    def work(i):
        out[i] = sum(j * j for j in range(10000 * (i + 1)))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    return out
probe("threads", threads)
def exceptions():
    import traceback
    try:
        {}["missing"]
    except KeyError as e:
        return (repr(e), traceback.format_exc().splitlines()[-1])
probe("exceptions", exceptions)
probe("bad", lambda: __import__("no_such_module_mmkit"))
def numpy():
    # A manylinux wheel (MMKIT_PY_NUMPY: where scripts/test unpacked it): auditwheel's patchelf
    # edits, OpenBLAS and libgfortran found through $ORIGIN/../numpy.libs, BLAS threads.
    where = os.environ.get("MMKIT_PY_NUMPY")
    if not where:
        return "not installed"
    sys.path.insert(0, where)
    import numpy as np
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    m = np.random.default_rng(7).standard_normal((200, 200))
    return (np.__version__, float((a @ a.T).sum()), round(float(np.linalg.det(np.array([[2.0, 1.0], [1.0, 3.0]]))), 9),
            np.fft.fft(np.ones(4)).real.tolist(), round(float(np.linalg.norm(m @ m.T)), 6),
            np.array(["b", "a"]).argsort().tolist())
probe("numpy", numpy)
with open(os.environ["MMKIT_PY_OUT"], "w") as f:
    f.write("\n".join(lines) + "\n")
"#;

type PyInit = unsafe extern "C" fn(c_int);
type PyRun = unsafe extern "C" fn(*const c_char) -> c_int;
type PyFinal = unsafe extern "C" fn() -> c_int;

/// Runs [`PYTHON_PROGRAM`] in the interpreter whose functions `lookup` finds; its lines and
/// the two return codes.
fn run_python(lookup: &dyn Fn(&str) -> u64) -> String {
    let at = |name: &str| {
        let a = lookup(name);
        assert_ne!(a, 0, "{name}");
        a
    };
    // SAFETY: CPython 3.11's signatures for these three functions.
    let (init, run, fin) = unsafe {
        (
            std::mem::transmute::<u64, PyInit>(at("Py_InitializeEx")),
            std::mem::transmute::<u64, PyRun>(at("PyRun_SimpleString")),
            std::mem::transmute::<u64, PyFinal>(at("Py_FinalizeEx")),
        )
    };
    let program = CString::new(PYTHON_PROGRAM).unwrap();
    let threads_before = threads();
    // SAFETY: the embedding sequence CPython documents, on one thread.
    let (rc, fin) = unsafe {
        init(0);
        let rc = run(program.as_ptr());
        (rc, fin())
    };
    // `Thread.join` returns once a Python thread has released its state, while the thread
    // still runs libpython's code on its way out: closing the library then (glibc's dlclose
    // or mmkit's drop) unmaps code it runs. Wait for the threads to be gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while threads() > threads_before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let out = std::env::var("MMKIT_PY_OUT").unwrap();
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    format!("{lines}run {rc} finalize {fin}")
}

/// The process's threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The child's half of the CPython tests: loads the copy named by `MMKIT_PY_COPY` the way
/// `MMKIT_PY_HOW` says and runs the program.
#[test]
#[ignore = "the child half of the CPython tests, run by them"]
fn python_child() {
    let Ok(how) = std::env::var("MMKIT_PY_HOW") else { return };
    let copy = PathBuf::from(std::env::var("MMKIT_PY_COPY").unwrap());
    let text = match how.as_str() {
        "glibc-local" | "glibc-global" => {
            let dl = if how == "glibc-local" { Dl::open(&copy) } else { Dl::open_global(&copy) };
            let text = run_python(&|n| dl.addr(n) as u64);
            drop(dl);
            text + &still_mapped(&copy)
        }
        _ => {
            let lib = if how.starts_with("mmkit-private") {
                let ns = Namespace::new("python-private").system_libraries(SystemPolicy::MapPrivately);
                // SAFETY: a system library's copy, trusted.
                unsafe { ns.open(copy.as_path()) }.unwrap_or_else(|e| panic!("{e}"))
            } else {
                open(copy.as_path())
            };
            if how.ends_with("global") {
                lib.make_global();
            }
            let text = run_python(&|n| lib.address_of(n).unwrap());
            drop(lib);
            text + &still_mapped(&copy)
        }
    };
    std::fs::write(std::env::var("MMKIT_PY_ANSWER").unwrap(), text).unwrap();
}

/// After the interpreter's handle is closed: whether the copy of libpython is still mapped
/// (glibc keeps it while an extension module bound to it is loaded) and how many extension
/// modules are.
fn still_mapped(copy: &Path) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let copy = copy.to_str().unwrap();
    let python = maps.lines().any(|l| l.ends_with(copy));
    let mut modules: Vec<&str> =
        maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.contains("/lib-dynload/")).collect();
    modules.sort_unstable();
    modules.dedup();
    format!("\nclosed: libpython mapped {python}, {} extension modules", modules.len())
}

/// Runs the program in a child that loads libpython's copy `how`; its answer.
fn python_answer(copy: &Path, plugin: &Path, dir: &Path, how: &str) -> String {
    let answer = dir.join(format!("answer-{how}"));
    let program_out = dir.join(format!("out-{how}"));
    let out = self_command()
        .args(["python_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MMKIT_PY_HOW", how)
        .env("MMKIT_PY_COPY", copy)
        .env("MMKIT_PY_OUT", &program_out)
        .env("MMKIT_PY_ANSWER", &answer)
        .env("MMKIT_PY_PLUGIN", plugin)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("1 passed"), "{how}: {:?}\n{said}", out.status);
    std::fs::read_to_string(&answer).unwrap_or_else(|e| panic!("{how}: {e}"))
}

#[test]
fn embedded_python_imports_its_extension_modules_as_under_glibc() {
    let test = "embedded_python_imports_its_extension_modules_as_under_glibc";
    if !x86_64_host(test) {
        return;
    }
    let Some(path) = system_lib(LIBPYTHON) else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(LIBPYTHON);
    std::fs::copy(&path, &copy).unwrap();
    let plugin = build("default", "basic.c", "fxbasic", &[]);
    let numpy = std::env::var_os("MMKIT_PY_NUMPY").is_some_and(|d| !d.is_empty());
    assert!(numpy || std::env::var("CI").as_deref() != Ok("true"), "MMKIT_PY_NUMPY is unset (scripts/test sets it)");
    for scope in ["global", "local"] {
        let theirs = python_answer(&copy, &plugin, dir.path(), &format!("glibc-{scope}"));
        eprintln!("glibc {scope}:\n{theirs}");
        if numpy && scope == "global" {
            assert!(theirs.contains("numpy: ('1.26.4', 1134.0, 5.0"), "glibc's numpy: {theirs}");
        }
        let ours = python_answer(&copy, &plugin, dir.path(), &format!("mmkit-{scope}"));
        assert_eq!(ours, theirs, "{scope}");
        let ours = python_answer(&copy, &plugin, dir.path(), &format!("mmkit-private-{scope}"));
        assert_eq!(ours, theirs, "{scope}, system libraries mapped privately");
    }
}

/// `fx_heavy_report`'s text from the copy whose functions `lookup` finds.
fn heavy_report(lookup: &dyn Fn(&str) -> u64) -> String {
    let mut buf = vec![0u8; 8192];
    let n = call_addr(lookup("fx_heavy_report"), &[buf.as_mut_ptr() as i64, buf.len() as i64]);
    assert!(n > 0 && (n as usize) < buf.len(), "{n}");
    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
}

#[test]
fn libstdcxx_mapped_privately_throws_threads_and_formats_like_glibcs() {
    let test = "libstdcxx_mapped_privately_throws_threads_and_formats_like_glibcs";
    if !x86_64_host(test) || !in_fresh_process(test) {
        return;
    }
    let so = build("default", "cxxheavy.cpp", "fxcxxheavy", &["-lstdc++"]);
    // libstdc++, libgcc_s and libm mapped by mmkit, in a namespace of their own.
    let private = Namespace::new("cxx-private").system_libraries(SystemPolicy::MapPrivately);
    // SAFETY: a test fixture, trusted.
    let mine = unsafe { private.open(so.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    let mapped: Vec<String> =
        mine.dependencies().into_iter().filter(|(_, by_mmkit)| *by_mmkit).map(|(n, _)| n).collect();
    assert!(mapped.iter().any(|n| n.starts_with("libstdc++")), "{mapped:?}");
    let private_report = heavy_report(&|n| mine.address_of(n).unwrap());
    drop(mine);
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD loads nothing.
    let glibcs = unsafe { libc::dlopen(c"libstdc++.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
    assert!(glibcs.is_null(), "the private run left glibc's libstdc++ unloaded");
    let ours = open(so.as_path());
    let default_report = heavy_report(&|n| ours.address_of(n).unwrap());
    let oracle = Dl::open(&so);
    let theirs = heavy_report(&|n| oracle.addr(n) as u64);
    eprintln!("glibc: {theirs}");
    assert!(theirs.contains("dtors=4") && theirs.contains("St11logic_error:from a thread"), "{theirs}");
    assert_eq!(private_report, theirs, "libstdc++ mapped privately");
    assert_eq!(default_report, theirs, "libstdc++ from the system linker");
}

/// Runs `exercise` on mmkit's copies of `soname` (copied out of the system directory): from
/// the file with its dependencies from the system linker, from a memfd, and from the file in a
/// namespace that maps the system libraries it needs privately too; then on glibc's `dlopen`
/// of the same file. All answers must agree. In a fresh process.
fn same_answers_as_glibc(test: &str, soname: &str, exercise: fn(Lookup<'_>) -> String) {
    if !x86_64_host(test) || !in_fresh_process(test) {
        return;
    }
    let Some(path) = system_lib(soname) else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(soname);
    std::fs::copy(&path, &copy).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    let private = Namespace::new(format!("{test}-private")).system_libraries(SystemPolicy::MapPrivately);
    let mut answers = Vec::new();
    for (how, source) in [
        ("private deps", mmkit_elf::Source::path(&copy)),
        ("file", mmkit_elf::Source::path(&copy)),
        ("memfd", mmkit_elf::Source::memory(soname, bytes.clone())),
    ] {
        let ours = if how == "private deps" {
            // SAFETY: a system library, trusted.
            unsafe { private.open(source) }
        } else {
            // SAFETY: a system library, trusted.
            unsafe { mmkit_elf::Library::open(source) }
        }
        .unwrap_or_else(|e| panic!("{how}: {e}"));
        let lookup = |name: &str| ours.address_of(name).unwrap_or_else(|e| panic!("{how}: {e}"));
        answers.push((how, exercise(&lookup)));
        ours.verify().unwrap_or_else(|e| panic!("{how}: {e}"));
        if how != "private deps" {
            // Kept mapped to the end of the (fresh) process. Its system dependencies stay
            // loaded (SystemPolicy::SystemLinker loads them RTLD_NODELETE), and they may keep
            // objects this copy made: ICU's libicuuc caches collators whose vtables are in
            // libicui18n, so after an unload the next copy's ucol_open (or the exit's
            // cleanup) calls through a vtable in unmapped memory. glibc crashes the same way
            // when libicuuc is pinned; with plain dlopen/dlclose it unloads libicuuc, and its
            // cache, with its last user.
            std::mem::forget(ours);
        }
    }
    let oracle = Dl::open(&copy);
    let theirs = exercise(&|name: &str| oracle.addr(name) as u64);
    assert!(!theirs.is_empty());
    eprintln!("glibc: {theirs}");
    for (how, ours) in answers {
        assert_eq!(ours, theirs, "{soname} from {how}");
    }
}

const ICU_I18N: &str = "libicui18n.so.72";

/// UTF-16 of `s`.
fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

#[test]
fn icu_cases_collates_normalizes_and_breaks_like_glibcs_copy() {
    same_answers_as_glibc("icu_cases_collates_normalizes_and_breaks_like_glibcs_copy", ICU_I18N, |l| {
        // ICU's C API names carry the major version (`u_strToUpper_72`).
        let v = |name: &str| format!("{name}_72");
        type Case = extern "C" fn(*mut u16, i32, *const u16, i32, *const c_char, *mut c_int) -> i32;
        type CollOpen = extern "C" fn(*const c_char, *mut c_int) -> *mut std::ffi::c_void;
        type Coll = extern "C" fn(*mut std::ffi::c_void, *const u16, i32, *const u16, i32) -> c_int;
        type CollClose = extern "C" fn(*mut std::ffi::c_void);
        type Nfc = extern "C" fn(*mut c_int) -> *const std::ffi::c_void;
        type Norm = extern "C" fn(*const std::ffi::c_void, *const u16, i32, *mut u16, i32, *mut c_int) -> i32;
        type BrkOpen = extern "C" fn(c_int, *const c_char, *const u16, i32, *mut c_int) -> *mut std::ffi::c_void;
        type BrkNext = extern "C" fn(*mut std::ffi::c_void) -> i32;
        type ErrName = extern "C" fn(c_int) -> *const c_char;
        type Version = extern "C" fn(*mut u8);
        // SAFETY: ICU 72's C signatures.
        let (upper, lower, coll_open, coll, coll_close, nfc, norm, brk_open, brk_next, brk_close, err_name, version) = unsafe {
            (
                func::<Case>(l, &v("u_strToUpper")),
                func::<Case>(l, &v("u_strToLower")),
                func::<CollOpen>(l, &v("ucol_open")),
                func::<Coll>(l, &v("ucol_strcoll")),
                func::<CollClose>(l, &v("ucol_close")),
                func::<Nfc>(l, &v("unorm2_getNFCInstance")),
                func::<Norm>(l, &v("unorm2_normalize")),
                func::<BrkOpen>(l, &v("ubrk_open")),
                func::<BrkNext>(l, &v("ubrk_next")),
                func::<CollClose>(l, &v("ubrk_close")),
                func::<ErrName>(l, &v("u_errorName")),
                func::<Version>(l, &v("u_getVersion")),
            )
        };
        let mut out = String::new();
        let mut ver = [0u8; 4];
        version(ver.as_mut_ptr());
        out += &format!("version {ver:?}; ");
        let mut buf = [0u16; 256];
        for (input, locale, f, what) in [
            ("straße istanbul", c"de", upper, "upper"),
            ("istanbul ılık", c"tr", upper, "upper"),
            ("İSTANBUL ΟΔΟΣ", c"tr", lower, "lower"),
            ("ΟΔΟΣ", c"el", lower, "lower"),
        ] {
            let src = utf16(input);
            let mut err = 0;
            let n = f(buf.as_mut_ptr(), buf.len() as i32, src.as_ptr(), src.len() as i32, locale.as_ptr(), &mut err);
            out +=
                &format!("{what} {:?} {}; ", String::from_utf16_lossy(&buf[..n.max(0) as usize]), text(err_name(err)));
        }
        // Collation: German and Swedish sort ä differently; the rules come from libicudata.
        for locale in [c"de", c"sv", c"root"] {
            let mut err = 0;
            let c = coll_open(locale.as_ptr(), &mut err);
            assert!(!c.is_null(), "{}", text(err_name(err)));
            let (a, z) = (utf16("ä"), utf16("z"));
            let (x, y) = (utf16("côte"), utf16("coté"));
            out += &format!(
                "coll {:?} {} {} {}; ",
                locale,
                coll(c, a.as_ptr(), a.len() as i32, z.as_ptr(), z.len() as i32),
                coll(c, x.as_ptr(), x.len() as i32, y.as_ptr(), y.len() as i32),
                text(err_name(err))
            );
            coll_close(c);
        }
        let mut err = 0;
        let n2 = nfc(&mut err);
        let decomposed = utf16("e\u{301}A\u{30a}");
        let n = norm(n2, decomposed.as_ptr(), decomposed.len() as i32, buf.as_mut_ptr(), buf.len() as i32, &mut err);
        out += &format!("nfc {:?} {}; ", String::from_utf16_lossy(&buf[..n.max(0) as usize]), text(err_name(err)));
        // Word breaks (the dictionary-free rules) over mixed text.
        let words = utf16("Hello, world! 42 × émigré. Ünïcode");
        let mut err = 0;
        let b = brk_open(1 /* UBRK_WORD */, c"en".as_ptr(), words.as_ptr(), words.len() as i32, &mut err);
        assert!(!b.is_null(), "{}", text(err_name(err)));
        let mut bounds = Vec::new();
        loop {
            let p = brk_next(b);
            if p < 0 {
                break;
            }
            bounds.push(p);
        }
        brk_close(b);
        out += &format!("words {bounds:?}");
        out
    });
}

/// A C string returned by a library, as a Rust string.
fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the libraries return NUL-terminated strings.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// libcurl's write callback: appends to the `Vec<u8>` behind `user`.
extern "C" fn curl_write(data: *const u8, size: usize, n: usize, user: *mut std::ffi::c_void) -> usize {
    // SAFETY: libcurl passes `size * n` bytes at `data` and the CURLOPT_WRITEDATA pointer, a
    // live `Vec<u8>` of the exercise below.
    unsafe {
        (*user.cast::<Vec<u8>>()).extend_from_slice(std::slice::from_raw_parts(data, size * n));
    }
    size * n
}

#[test]
fn libcurl_fetches_a_file_url_and_parses_urls_like_glibcs_copy() {
    same_answers_as_glibc("libcurl_fetches_a_file_url_and_parses_urls_like_glibcs_copy", "libcurl.so.4", |l| {
        use std::ffi::c_void;
        type GlobalInit = extern "C" fn(std::ffi::c_long) -> c_int;
        type VersionInfo = extern "C" fn(c_int) -> *const u8;
        type Init = extern "C" fn() -> *mut c_void;
        type Setopt = unsafe extern "C" fn(*mut c_void, c_int, ...) -> c_int;
        type Perform = extern "C" fn(*mut c_void) -> c_int;
        type Getinfo = unsafe extern "C" fn(*mut c_void, c_int, ...) -> c_int;
        type Strerror = extern "C" fn(c_int) -> *const c_char;
        type Cleanup = extern "C" fn(*mut c_void);
        type UrlSet = extern "C" fn(*mut c_void, c_int, *const c_char, u32) -> c_int;
        type UrlGet = extern "C" fn(*mut c_void, c_int, *mut *mut c_char, u32) -> c_int;
        type Free = extern "C" fn(*mut c_void);
        type Escape = extern "C" fn(*mut c_void, *const c_char, c_int) -> *mut c_char;
        // SAFETY: libcurl 7.88's signatures.
        let (global_init, version_info, init, setopt, perform, getinfo, strerror, cleanup) = unsafe {
            (
                func::<GlobalInit>(l, "curl_global_init"),
                func::<VersionInfo>(l, "curl_version_info"),
                func::<Init>(l, "curl_easy_init"),
                func::<Setopt>(l, "curl_easy_setopt"),
                func::<Perform>(l, "curl_easy_perform"),
                func::<Getinfo>(l, "curl_easy_getinfo"),
                func::<Strerror>(l, "curl_easy_strerror"),
                func::<Cleanup>(l, "curl_easy_cleanup"),
            )
        };
        // SAFETY: as above.
        let (url_new, url_set, url_get, url_cleanup, free, escape) = unsafe {
            (
                func::<Init>(l, "curl_url"),
                func::<UrlSet>(l, "curl_url_set"),
                func::<UrlGet>(l, "curl_url_get"),
                func::<Cleanup>(l, "curl_url_cleanup"),
                func::<Free>(l, "curl_free"),
                func::<Escape>(l, "curl_easy_escape"),
            )
        };
        let mut out = format!("init {}; ", global_init(3 /* CURL_GLOBAL_ALL */));
        // curl_version_info_data: age, version, version_num, host, features, ssl_version,
        // ssl_version_num, libz_version, protocols.
        let info = version_info(0);
        // SAFETY: the struct's leading fields, as the header lays them out.
        let (version, num, ssl, zlib, protocols) = unsafe {
            (
                *info.add(8).cast::<*const c_char>(),
                *info.add(16).cast::<u32>(),
                *info.add(40).cast::<*const c_char>(),
                *info.add(56).cast::<*const c_char>(),
                *info.add(64).cast::<*const *const c_char>(),
            )
        };
        let mut protos = Vec::new();
        for i in 0.. {
            // SAFETY: a NULL-terminated array of protocol names.
            let p = unsafe { *protocols.add(i) };
            if p.is_null() {
                break;
            }
            protos.push(text(p));
        }
        out += &format!("version {} {num:#x} {} {} {protos:?}; ", text(version), text(ssl), text(zlib));
        // A file:// URL, through an easy handle and a write callback; then a missing file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("page.txt");
        std::fs::write(&file, "mmkit fetched this through libcurl\n".repeat(100)).unwrap();
        let handle = init();
        assert!(!handle.is_null());
        let h = handle;
        for url in [format!("file://{}", file.display()), format!("file://{}/missing", dir.path().display())] {
            let url = CString::new(url).unwrap();
            let mut body: Vec<u8> = Vec::new();
            let write: extern "C" fn(*const u8, usize, usize, *mut c_void) -> usize = curl_write;
            // SAFETY: CURLOPT_URL takes a string, CURLOPT_WRITEFUNCTION a callback of
            // curl_write's type, CURLOPT_WRITEDATA its user pointer (the live `body`).
            let set = unsafe {
                [
                    setopt(h, 10002, url.as_ptr()),
                    setopt(h, 20011, write),
                    setopt(h, 10001, (&mut body as *mut Vec<u8>).cast::<c_void>()),
                ]
            };
            let rc = perform(h);
            let mut size: i64 = 0;
            // SAFETY: CURLINFO_SIZE_DOWNLOAD_T writes a curl_off_t.
            let info_rc = unsafe { getinfo(h, 0x600008, &mut size as *mut i64) };
            let lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
            out += &format!("perform {set:?} {rc} {} {size} {info_rc} {} lines; ", text(strerror(rc)), lines);
        }
        // The URL API, with an IDN host (libidn2) and a relative path resolved.
        let u = url_new();
        let rc = url_set(
            u,
            0, /* CURLUPART_URL */
            c"https://user@b\xc3\xbccher.example:8080/a/../b%20c?q=1#frag".as_ptr(),
            0,
        );
        out += &format!("url set {rc}; ");
        for (part, flags) in [(5 /* HOST */, 0u32), (5, 1 << 12 /* CURLU_PUNYCODE */), (6, 0), (7, 0), (8, 0), (0, 0)] {
            let mut value = std::ptr::null_mut();
            let rc = url_get(u, part, &mut value, flags);
            let shown = if value.is_null() { "-".to_owned() } else { text(value) };
            out += &format!("{part}/{flags:#x} {rc} {shown}; ");
            if !value.is_null() {
                free(value.cast());
            }
        }
        url_cleanup(u);
        let escaped = escape(h, c"a b/ü&=".as_ptr(), 0);
        out += &format!("escape {}", text(escaped));
        free(escaped.cast());
        cleanup(h);
        out
    });
}

#[test]
fn libllvm_builds_verifies_compiles_and_jits_like_glibcs_copy() {
    same_answers_as_glibc("libllvm_builds_verifies_compiles_and_jits_like_glibcs_copy", "libLLVM-15.so.1", |l| {
        use std::ffi::c_void;
        type P = *mut c_void;
        // SAFETY: LLVM 15's C API signatures, each named with its type below.
        unsafe {
            let ctx: P = func::<extern "C" fn() -> P>(l, "LLVMContextCreate")();
            let module: P = func::<extern "C" fn(*const c_char, P) -> P>(l, "LLVMModuleCreateWithNameInContext")(
                c"mmkit".as_ptr(),
                ctx,
            );
            let i64t: P = func::<extern "C" fn(P) -> P>(l, "LLVMInt64TypeInContext")(ctx);
            let mut params = [i64t, i64t];
            let fn_type: P = func::<extern "C" fn(P, *mut P, u32, c_int) -> P>(l, "LLVMFunctionType")(
                i64t,
                params.as_mut_ptr(),
                2,
                0,
            );
            let f: P =
                func::<extern "C" fn(P, *const c_char, P) -> P>(l, "LLVMAddFunction")(module, c"mix".as_ptr(), fn_type);
            let entry: P = func::<extern "C" fn(P, P, *const c_char) -> P>(l, "LLVMAppendBasicBlockInContext")(
                ctx,
                f,
                c"entry".as_ptr(),
            );
            let b: P = func::<extern "C" fn(P) -> P>(l, "LLVMCreateBuilderInContext")(ctx);
            func::<extern "C" fn(P, P)>(l, "LLVMPositionBuilderAtEnd")(b, entry);
            let param = func::<extern "C" fn(P, u32) -> P>(l, "LLVMGetParam");
            let (x, y) = (param(f, 0), param(f, 1));
            let binop = |name: &str, a: P, c: P, n: &std::ffi::CStr| {
                func::<extern "C" fn(P, P, P, *const c_char) -> P>(l, name)(b, a, c, n.as_ptr())
            };
            let seven = func::<extern "C" fn(P, u64, c_int) -> P>(l, "LLVMConstInt")(i64t, 7, 0);
            let m = binop("LLVMBuildMul", x, seven, c"m");
            let s = binop("LLVMBuildAdd", m, y, c"s");
            func::<extern "C" fn(P, P) -> P>(l, "LLVMBuildRet")(b, s);
            let mut msg: *mut c_char = std::ptr::null_mut();
            let bad =
                func::<extern "C" fn(P, c_int, *mut *mut c_char) -> c_int>(l, "LLVMVerifyModule")(module, 2, &mut msg);
            let dispose_msg = func::<extern "C" fn(*mut c_char)>(l, "LLVMDisposeMessage");
            dispose_msg(msg);
            let ir_ptr = func::<extern "C" fn(P) -> *mut c_char>(l, "LLVMPrintModuleToString")(module);
            let ir = text(ir_ptr);
            dispose_msg(ir_ptr);
            let mut out = format!("verify {bad}; ir {ir:?}; ");
            // The x86 back end: assembly to a memory buffer.
            for init in [
                "LLVMInitializeX86TargetInfo",
                "LLVMInitializeX86Target",
                "LLVMInitializeX86TargetMC",
                "LLVMInitializeX86AsmPrinter",
            ] {
                func::<extern "C" fn()>(l, init)();
            }
            let mut target: P = std::ptr::null_mut();
            let rc = func::<extern "C" fn(*const c_char, *mut P, *mut *mut c_char) -> c_int>(
                l,
                "LLVMGetTargetFromTriple",
            )(c"x86_64-pc-linux-gnu".as_ptr(), &mut target, &mut msg);
            assert_eq!(rc, 0);
            let tm: P =
                func::<extern "C" fn(P, *const c_char, *const c_char, *const c_char, c_int, c_int, c_int) -> P>(
                    l,
                    "LLVMCreateTargetMachine",
                )(
                    target, c"x86_64-pc-linux-gnu".as_ptr(), c"x86-64".as_ptr(), c"".as_ptr(), 2, 1 /* PIC */, 0
                );
            let mut buf: P = std::ptr::null_mut();
            let rc = func::<extern "C" fn(P, P, c_int, *mut *mut c_char, *mut P) -> c_int>(
                l,
                "LLVMTargetMachineEmitToMemoryBuffer",
            )(tm, module, 0 /* assembly */, &mut msg, &mut buf);
            assert_eq!(rc, 0);
            let start = func::<extern "C" fn(P) -> *const u8>(l, "LLVMGetBufferStart")(buf);
            let size = func::<extern "C" fn(P) -> usize>(l, "LLVMGetBufferSize")(buf);
            let asm = String::from_utf8_lossy(std::slice::from_raw_parts(start, size)).into_owned();
            let body: Vec<&str> =
                asm.lines().filter(|l| l.starts_with('\t') && !l.starts_with("\t.")).map(str::trim).collect();
            out += &format!("asm {body:?}; ");
            func::<extern "C" fn(P)>(l, "LLVMDisposeMemoryBuffer")(buf);
            func::<extern "C" fn(P)>(l, "LLVMDisposeTargetMachine")(tm);
            // MCJIT: code generated into memory and called.
            func::<extern "C" fn()>(l, "LLVMLinkInMCJIT")();
            let mut engine: P = std::ptr::null_mut();
            let rc = func::<extern "C" fn(*mut P, P, *mut *mut c_char) -> c_int>(
                l,
                "LLVMCreateExecutionEngineForModule",
            )(&mut engine, module, &mut msg);
            assert_eq!(rc, 0, "{}", if msg.is_null() { String::new() } else { text(msg) });
            let addr =
                func::<extern "C" fn(P, *const c_char) -> u64>(l, "LLVMGetFunctionAddress")(engine, c"mix".as_ptr());
            assert_ne!(addr, 0);
            out += &format!("jit {}", call_addr(addr, &[6, 5]));
            func::<extern "C" fn(P)>(l, "LLVMDisposeBuilder")(b);
            func::<extern "C" fn(P)>(l, "LLVMDisposeExecutionEngine")(engine);
            func::<extern "C" fn(P)>(l, "LLVMContextDispose")(ctx);
            out
        }
    });
}

#[test]
fn libarchive_writes_and_reads_back_every_filter_like_glibcs_copy() {
    same_answers_as_glibc("libarchive_writes_and_reads_back_every_filter_like_glibcs_copy", "libarchive.so.13", |l| {
        use std::ffi::c_void;
        type P = *mut c_void;
        type New = extern "C" fn() -> P;
        type OnA = extern "C" fn(P) -> c_int;
        type Str = extern "C" fn(P) -> *const c_char;
        // SAFETY: libarchive 3.6's signatures, each named with its type.
        unsafe {
            let f_new = |n: &str| func::<New>(l, n);
            let on = |n: &str| func::<OnA>(l, n);
            let details = text(func::<extern "C" fn() -> *const c_char>(l, "archive_version_details")());
            let mut out = format!("{details}; ");
            let payloads: [(&str, Vec<u8>); 3] = [
                ("docs/readme.txt", b"mmkit maps libarchive\n".repeat(50)),
                ("bin/data.bin", (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()),
                ("empty", Vec::new()),
            ];
            for (format, filter) in [
                ("archive_write_set_format_pax_restricted", "archive_write_add_filter_gzip"),
                ("archive_write_set_format_pax_restricted", "archive_write_add_filter_xz"),
                ("archive_write_set_format_ustar", "archive_write_add_filter_zstd"),
                ("archive_write_set_format_cpio_newc", "archive_write_add_filter_bzip2"),
                ("archive_write_set_format_ustar", "archive_write_add_filter_lz4"),
                ("archive_write_set_format_zip", "archive_write_add_filter_none"),
                ("archive_write_set_format_7zip", "archive_write_add_filter_none"),
            ] {
                let w = f_new("archive_write_new")();
                let rc = (on(format)(w), on(filter)(w));
                let mut buf = vec![0u8; 1 << 20];
                let mut used = 0usize;
                let open =
                    func::<extern "C" fn(P, *mut u8, usize, *mut usize) -> c_int>(l, "archive_write_open_memory");
                assert_eq!(open(w, buf.as_mut_ptr(), buf.len(), &mut used), 0, "{format} {filter}");
                for (name, data) in &payloads {
                    let e = f_new("archive_entry_new")();
                    let name = CString::new(*name).unwrap();
                    func::<extern "C" fn(P, *const c_char)>(l, "archive_entry_set_pathname")(e, name.as_ptr());
                    func::<extern "C" fn(P, i64)>(l, "archive_entry_set_size")(e, data.len() as i64);
                    func::<extern "C" fn(P, u32)>(l, "archive_entry_set_filetype")(e, 0o100000);
                    func::<extern "C" fn(P, u32)>(l, "archive_entry_set_perm")(e, 0o644);
                    func::<extern "C" fn(P, i64, i64)>(l, "archive_entry_set_mtime")(e, 1_700_000_000, 0);
                    assert_eq!(func::<extern "C" fn(P, P) -> c_int>(l, "archive_write_header")(w, e), 0);
                    let n = func::<extern "C" fn(P, *const u8, usize) -> isize>(l, "archive_write_data")(
                        w,
                        data.as_ptr(),
                        data.len(),
                    );
                    assert_eq!(n, data.len() as isize);
                    func::<extern "C" fn(P)>(l, "archive_entry_free")(e);
                }
                let closed = on("archive_write_close")(w);
                on("archive_write_free")(w);
                // Read back with every filter and format enabled (auto-detection).
                let r = f_new("archive_read_new")();
                on("archive_read_support_filter_all")(r);
                on("archive_read_support_format_all")(r);
                let open = func::<extern "C" fn(P, *const u8, usize) -> c_int>(l, "archive_read_open_memory");
                assert_eq!(open(r, buf.as_ptr(), used), 0);
                let mut entries = Vec::new();
                let mut entry: P = std::ptr::null_mut();
                let next = func::<extern "C" fn(P, *mut P) -> c_int>(l, "archive_read_next_header");
                while next(r, &mut entry) == 0 {
                    let name = text(func::<extern "C" fn(P) -> *const c_char>(l, "archive_entry_pathname")(entry));
                    let mut data = vec![0u8; 8192];
                    let n = func::<extern "C" fn(P, *mut u8, usize) -> isize>(l, "archive_read_data")(
                        r,
                        data.as_mut_ptr(),
                        data.len(),
                    );
                    let sum: u64 = data[..n.max(0) as usize].iter().map(|&b| u64::from(b)).sum();
                    entries.push(format!("{name}:{n}:{sum}"));
                }
                let filter_name =
                    text(func::<extern "C" fn(P, c_int) -> *const c_char>(l, "archive_filter_name")(r, 0));
                let format_name = text(func::<Str>(l, "archive_format_name")(r));
                on("archive_read_free")(r);
                out += &format!("{rc:?} {closed} {filter_name} {format_name} {entries:?}; ");
            }
            // Garbage: an error naming why.
            let r = f_new("archive_read_new")();
            on("archive_read_support_filter_all")(r);
            on("archive_read_support_format_all")(r);
            let junk = b"this is not an archive of any kind, just text".repeat(20);
            let open = func::<extern "C" fn(P, *const u8, usize) -> c_int>(l, "archive_read_open_memory");
            let rc = open(r, junk.as_ptr(), junk.len());
            out += &format!("junk {rc} {}", text(func::<Str>(l, "archive_error_string")(r)));
            on("archive_read_free")(r);
            out
        }
    });
}

/// `dlsym(RTLD_DEFAULT)` from a library mmkit mapped `RTLD_LOCAL` answered from the global
/// scope only (glibc's, then mmkit's global libraries): NULL for the library's own functions
/// and its dependencies'. glibc searches the caller's `l_scope`: the global scope, then the
/// search list of the library whose `dlopen` brought it in. The main program's handle
/// (`dlopen(NULL)`) stays the global scope alone. Answers compared with glibc's copy.
#[test]
fn rtld_default_from_a_local_library_searches_its_own_scope_as_glibc_does() {
    let test = "rtld_default_from_a_local_library_searches_its_own_scope_as_glibc_does";
    if !host_cc() || !in_fresh_process(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = next_fixture_in(dir.path());
    let ours = open(copy.as_path());
    let base_lib =
        ours.loaded_dependencies().into_iter().find(|l| l.name().contains("fxbase")).expect("libfxbase mapped");
    let oracle = Dl::open(&copy);
    let c = |s: &str| CString::new(s).unwrap();
    let ask = |f: &str, args: &[&CString]| {
        let args: Vec<i64> = args.iter().map(|a| a.as_ptr() as i64).collect();
        (call(&ours, f, &args), oracle.call(f, &args))
    };
    // Its own function and its dependency's: found, each copy's own, with no dlerror.
    let (mine, theirs) = ask("fx_default", &[&c("fx_next_own")]);
    assert_eq!(
        (mine as u64, theirs as usize),
        (ours.address_of("fx_next_own").unwrap(), oracle.addr("fx_next_own") as usize)
    );
    let (mine, theirs) = ask("fx_default", &[&c("fx_base_value")]);
    assert_eq!(theirs as usize, oracle.addr("fx_base_value") as usize);
    assert_eq!(mine as u64, base_lib.address_of("fx_base_value").unwrap());
    for name in ["fx_next_own", "fx_base_value", "getpid"] {
        assert_eq!(ask("fx_default_found", &[&c(name)]), (1, 1), "{name}");
    }
    assert_eq!(ask("fx_default_found", &[&c("fx_defined_nowhere")]), (2, 2));
    // The C library's: glibc's answer.
    let (mine, theirs) = ask("fx_default", &[&c("getpid")]);
    assert_eq!(mine, theirs);
    assert_eq!(mine as usize, libc::getpid as *const () as usize);
    // dlvsym: its dependency has no versions, so a version finds nothing under glibc either.
    let version = if cfg!(target_arch = "aarch64") { "GLIBC_2.17" } else { "GLIBC_2.2.5" };
    let (mine, theirs) = ask("fx_default_versioned", &[&c("getpid"), &c(version)]);
    assert_eq!(mine, theirs);
    assert_ne!(mine, 0);
    // The main program's handle: the global scope, where neither library is.
    for name in ["fx_next_own", "fx_base_value"] {
        assert_eq!(ask("fx_main_handle", &[&c(name)]), (0, 0), "{name}");
    }
    assert_eq!(ask("fx_main_handle", &[&c("getpid")]), ask("fx_default", &[&c("getpid")]));
}

/// `dlsym(RTLD_DEFAULT | RTLD_NEXT, "dlopen")` (and `"dlsym"`, `"dlclose"`) from a library
/// mmkit mapped answered glibc's functions: a `dlopen` through that pointer searched as the
/// program's (the library's dependency beside it was not found) and a `dlsym` through it read
/// mmkit's handle as a `link_map`. They answer the functions the library's own references are
/// bound to, as glibc's answer is the function its own references reach.
#[test]
fn dl_functions_taken_with_dlsym_in_a_mapped_library_are_mmkits_as_its_references_are() {
    if !host_cc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = next_fixture_in(dir.path());
    // Ours first: glibc's `dlopen` would find its own copy of libfxbase.so once it has one.
    let ours = open(copy.as_path());
    let mine: Vec<i64> = [0, 1].iter().map(|&how| call(&ours, "fx_dl_through_pointers", &[how, 5])).collect();
    let oracle = Dl::open(&copy);
    let theirs: Vec<i64> = [0, 1].iter().map(|&how| oracle.call("fx_dl_through_pointers", &[how, 5])).collect();
    assert_eq!(theirs, [1005, 1005], "glibc's copy");
    assert_eq!(mine, theirs);
}

/// A `dl*` call that succeeds drops the error an earlier one left unread, as glibc's
/// `_dlerror_run` does: mmkit's `dlsym`, `dlopen` and `dlclose` left it, so code checking
/// `dlerror()` after a successful `dlsym` (without clearing it first) saw a stale failure.
#[test]
fn a_successful_dl_call_drops_an_unread_error_as_glibc_does() {
    if !host_cc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = next_fixture_in(dir.path());
    let ours = open(copy.as_path());
    let oracle = Dl::open(&copy);
    assert_eq!(oracle.call("fx_error_cleared_by_success", &[]), 0, "glibc's copy");
    assert_eq!(call(&ours, "fx_error_cleared_by_success", &[]), 0);
}

/// `dlsym(RTLD_DEFAULT)` that finds nothing, from a library mmkit mapped: glibc's `dlerror`
/// names the caller (`/p/libfxnext.so: undefined symbol: x`, its lookup's `undef_map`); mmkit
/// left the message of the system linker's `dlsym` it had called, which named `libc.so.6`.
/// Messages compared with glibc's copy's.
#[test]
fn rtld_default_not_found_names_the_caller_in_dlerror_as_glibc_does() {
    if !host_cc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = next_fixture_in(dir.path());
    let ours = open(copy.as_path());
    let oracle = Dl::open(&copy);
    let name = CString::new("fx_defined_nowhere").unwrap();
    let message = |f: &dyn Fn(&[i64]) -> i64| {
        let mut buf = vec![0u8; 512];
        let n = f(&[name.as_ptr() as i64, buf.as_mut_ptr() as i64, buf.len() as i64]);
        assert!(n > 0, "no dlerror message ({n})");
        String::from_utf8_lossy(&buf[..n as usize]).into_owned()
    };
    let mine = message(&|args| call(&ours, "fx_default_error", args));
    let theirs = message(&|args| oracle.call("fx_default_error", args));
    assert_eq!(theirs, format!("{}: undefined symbol: fx_defined_nowhere", copy.display()));
    assert_eq!(mine, theirs);
}
