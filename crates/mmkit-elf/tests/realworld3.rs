//! The heaviest real cases, with glibc's `dlopen` of the same copy as the oracle: an embedded
//! CPython (libpython mapped by mmkit `dlopen`s its C extension modules through mmkit's
//! interposed `dlopen`), C++ libraries (ICU, Boost, libstdc++ mapped privately), libcurl and
//! libLLVM's C API. Each test runs in fresh processes and skips, saying why, when its library
//! is absent (a failure under CI=true; scripts/test installs them).

mod common;

use common::*;
use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};

/// A system library's path, or a skip (a failure under CI=true).
fn system_lib(soname: &str) -> Option<PathBuf> {
    let found = mmkit_elf::SYSTEM_DIRS.iter().map(|d| Path::new(d).join(soname)).find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{soname} is missing (scripts/test installs it)");
        eprintln!("skipping: no {soname}");
    }
    found
}

/// The host's system libraries are x86_64's: the tests call them.
fn x86_64_host(test: &str) -> bool {
    if !cfg!(target_arch = "x86_64") || !host_cc() {
        eprintln!("skipping {test}: it calls the x86_64 host's own system libraries");
        return false;
    }
    true
}

const LIBPYTHON: &str = "libpython3.11.so.1.0";

/// The program the embedded interpreter runs: C extension modules (each `dlopen`ed by the
/// interpreter), threads, exceptions, ctypes. It writes one line per probe to `OUT`.
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
    // SAFETY: the embedding sequence CPython documents, on one thread.
    let (rc, fin) = unsafe {
        init(0);
        let rc = run(program.as_ptr());
        (rc, fin())
    };
    let out = std::env::var("MMKIT_PY_OUT").unwrap();
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    format!("{lines}run {rc} finalize {fin}")
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
            std::mem::forget(dl);
            text
        }
        _ => {
            let lib = if how.starts_with("mmkit-private") {
                let ns =
                    mmkit_elf::Namespace::new("python-private").system_libraries(mmkit_elf::SystemPolicy::MapPrivately);
                // SAFETY: a system library's copy, trusted.
                unsafe { ns.open(copy.as_path()) }.unwrap_or_else(|e| panic!("{e}"))
            } else {
                open(copy.as_path())
            };
            if how.ends_with("global") {
                lib.make_global();
            }
            let text = run_python(&|n| lib.address_of(n).unwrap());
            std::mem::forget(lib);
            text
        }
    };
    std::fs::write(std::env::var("MMKIT_PY_ANSWER").unwrap(), text).unwrap();
}

/// Runs the program in a child that loads libpython's copy `how`; its answer.
fn python_answer(copy: &Path, dir: &Path, how: &str) -> String {
    let answer = dir.join(format!("answer-{how}"));
    let out = dir.join(format!("out-{how}"));
    let status = self_command()
        .args(["python_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MMKIT_PY_HOW", how)
        .env("MMKIT_PY_COPY", copy)
        .env("MMKIT_PY_OUT", &out)
        .env("MMKIT_PY_ANSWER", &answer)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .status()
        .unwrap();
    assert!(status.success(), "{how}: {status:?}");
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
    for scope in ["global", "local"] {
        let theirs = python_answer(&copy, dir.path(), &format!("glibc-{scope}"));
        eprintln!("glibc {scope}:\n{theirs}");
        let ours = python_answer(&copy, dir.path(), &format!("mmkit-{scope}"));
        assert_eq!(ours, theirs, "{scope}");
        let ours = python_answer(&copy, dir.path(), &format!("mmkit-private-{scope}"));
        assert_eq!(ours, theirs, "{scope}, system libraries mapped privately");
    }
}
