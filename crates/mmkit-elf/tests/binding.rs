//! `dlopen`'s binding flags. Lazy binding where it shows (`LoadOptions::lazy_binding`, a
//! mapped library's `dlopen(RTLD_LAZY)`): a library whose unused code calls a function nothing
//! defines loads, as glibc's `dlopen(RTLD_LAZY)` loads it, and the call, if made, ends the
//! process as glibc ends it. `RTLD_DEEPBIND` (`LoadOptions::deep_bind`): the library's own
//! definitions before the global scope's. glibc's `dlopen` of the same files is the oracle
//! throughout.

mod common;

use common::{build, call, call_addr, self_command};
use mmkit_elf::{ErrorKind, Library, LoadOptions};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

const MISSING: &str = "mmkit_fx_missing_fn";

/// The plug-in, one copy per test (`variant`): a file is loaded once per namespace, so tests
/// running at once in this process must not share one (an eager open would get the copy a
/// lazy open loaded).
fn plugin(variant: &str) -> PathBuf {
    build(&format!("lazy-{variant}"), "lazy.c", "fxlazy", &[])
}

fn open_lazy(path: &Path, lazy: bool) -> Result<Library, mmkit_elf::Error> {
    // SAFETY: a trusted fixture.
    unsafe { Library::open_with(path, &LoadOptions::new().lazy_binding(lazy)) }
}

/// glibc's `dlopen(path, flags)`: the handle, or its `dlerror` message.
fn glibc_open(path: &Path, flags: i32) -> Result<*mut libc::c_void, String> {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a trusted fixture.
    let h = unsafe { libc::dlopen(c.as_ptr(), flags) };
    if h.is_null() {
        // SAFETY: dlerror's message after a failed dlopen.
        Err(unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned())
    } else {
        Ok(h)
    }
}

fn glibc_call(h: *mut libc::c_void, name: &str, args: &[i64]) -> i64 {
    let c = CString::new(name).unwrap();
    // SAFETY: a live handle.
    let f = unsafe { libc::dlsym(h, c.as_ptr()) };
    assert!(!f.is_null(), "dlsym {name}");
    call_addr(f as u64, args)
}

#[test]
fn an_undefined_function_fails_the_load_by_default_as_with_rtld_now() {
    let lib = plugin("eager");
    let e = open_lazy(&lib, false).expect_err("an undefined function must fail an eager load");
    assert_eq!(e.kind(), ErrorKind::UndefinedSymbol, "{e}");
    assert!(e.to_string().contains(MISSING), "{e}");
    let glibc = glibc_open(&lib, libc::RTLD_NOW | libc::RTLD_LOCAL).expect_err("glibc's RTLD_NOW fails too");
    assert!(glibc.contains(MISSING), "{glibc}");
}

#[test]
fn lazy_binding_loads_a_library_whose_unused_code_calls_an_undefined_function() {
    let lib = plugin("lazy");
    let mapped = open_lazy(&lib, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&mapped, "fx_lazy_ok", &[41]), 42);
    assert_eq!(mapped.unbound_functions(), [MISSING]);
    let h = glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).expect("glibc's RTLD_LAZY loads it");
    assert_eq!(glibc_call(h, "fx_lazy_ok", &[41]), 42);
    // SAFETY: glibc's handle, closed once.
    unsafe { libc::dlclose(h) };
}

/// The environment variable that makes the test binary, run again, make the call.
const CHILD: &str = "MMKIT_ELF_LAZY_CHILD";

/// In the child: loads the fixture (mmkit or glibc) lazily and calls the undefined function.
/// Never returns there (the process ends with 127); `false` in the parent.
fn calls_missing_in_child() -> bool {
    let Ok(who) = std::env::var(CHILD) else { return false };
    let lib = plugin("child");
    let r = if who == "mmkit" {
        let mapped = open_lazy(&lib, true).unwrap_or_else(|e| panic!("{e}"));
        let r = call(&mapped, "fx_lazy_call_missing", &[1]);
        drop(mapped);
        r
    } else {
        let h = glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).unwrap();
        glibc_call(h, "fx_lazy_call_missing", &[1])
    };
    panic!("the undefined function returned {r}");
}

#[test]
fn calling_the_undefined_function_ends_the_process_as_glibc_does() {
    if calls_missing_in_child() {
        return;
    }
    let run = |who: &str| {
        let out = self_command()
            .args(["calling_the_undefined_function_ends_the_process_as_glibc_does", "--exact", "--nocapture"])
            .args(["--test-threads=1"])
            .env(CHILD, who)
            .output()
            .expect("run the test binary again");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let lib = plugin("child");
    let expected = format!(": symbol lookup error: {}: undefined symbol: {MISSING}", lib.display());
    let (glibc_code, glibc_err) = run("glibc");
    assert_eq!(glibc_code, Some(127), "glibc's lazy call: {glibc_err}");
    assert!(glibc_err.contains(&expected), "glibc's message changed: {glibc_err}");
    let (code, err) = run("mmkit");
    assert_eq!(code, Some(127), "mmkit's lazy call must end the process with 127: {err}");
    assert!(err.contains(&expected), "want `{expected}` on stderr, as glibc: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_library_linked_with_z_now_is_bound_at_load_even_when_lazy() {
    let lib = build("lazy-now", "lazy.c", "fxlazynow", &["-Wl,-z,now"]);
    let e = open_lazy(&lib, true).expect_err("-z now binds at load");
    assert_eq!(e.kind(), ErrorKind::UndefinedSymbol, "{e}");
    assert!(glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).is_err(), "glibc binds -z now at load too");
}

#[test]
fn an_undefined_data_reference_fails_the_load_even_when_lazy() {
    let lib = build("lazy-data", "lazy.c", "fxlazydata", &["-DFX_DATA"]);
    let e = open_lazy(&lib, true).expect_err("an undefined variable fails the load");
    assert_eq!(e.kind(), ErrorKind::UndefinedSymbol, "{e}");
    assert!(e.to_string().contains("mmkit_fx_missing_var"), "{e}");
    let glibc = glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).expect_err("glibc fails it too");
    assert!(glibc.contains("mmkit_fx_missing_var"), "{glibc}");
}

/// `fx_lazy_open_call(plugin, flags, "fx_lazy_ok", 41)` through the host fixture loaded by
/// `load`, and the host's `dlopen` error.
fn host_opens(host_call: &dyn Fn(&str, &[i64]) -> i64, plugin: &CStr, flags: i32) -> (i64, String) {
    let sym = c"fx_lazy_ok";
    let r = host_call("fx_lazy_open_call", &[plugin.as_ptr() as i64, i64::from(flags), sym.as_ptr() as i64, 41]);
    let err = host_call("fx_lazy_error", &[]);
    // SAFETY: the fixture's NUL-terminated error buffer.
    (r, unsafe { CStr::from_ptr(err as *const libc::c_char) }.to_string_lossy().into_owned())
}

#[test]
fn a_mapped_librarys_dlopen_binds_lazily_when_it_asks_for_rtld_lazy() {
    let host = build("lazy", "lazyopen.c", "fxlazyopen", &[]);
    let plugin_path = plugin("dlopen");
    let plugin = CString::new(plugin_path.to_str().unwrap()).unwrap();
    let mapped = open_lazy(&host, false).unwrap_or_else(|e| panic!("{e}"));
    let (now, now_err) = host_opens(&|f, a| call(&mapped, f, a), &plugin, libc::RTLD_NOW);
    assert_eq!(now, -1, "RTLD_NOW must fail on the undefined function");
    assert!(now_err.contains(MISSING), "{now_err}");
    let (lazy, lazy_err) = host_opens(&|f, a| call(&mapped, f, a), &plugin, libc::RTLD_LAZY);
    assert_eq!(lazy, 42, "RTLD_LAZY from a mapped library: {lazy_err}");
    // The oracle: the same host loaded by glibc answers the same.
    let h = glibc_open(&host, libc::RTLD_NOW | libc::RTLD_LOCAL).unwrap();
    let (g_now, _) = host_opens(&|f, a| glibc_call(h, f, a), &plugin, libc::RTLD_NOW);
    let (g_lazy, _) = host_opens(&|f, a| glibc_call(h, f, a), &plugin, libc::RTLD_LAZY);
    assert_eq!((g_now, g_lazy), (now, lazy));
}

#[test]
fn ld_bind_now_in_the_environment_turns_lazy_binding_off_as_with_glibc() {
    if !common::in_fresh_process_with(
        "ld_bind_now_in_the_environment_turns_lazy_binding_off_as_with_glibc",
        &[("LD_BIND_NOW", "1")],
    ) {
        return;
    }
    let lib = plugin("bindnow");
    let e = open_lazy(&lib, true).expect_err("LD_BIND_NOW binds at load");
    assert_eq!(e.kind(), ErrorKind::UndefinedSymbol, "{e}");
    assert!(glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).is_err(), "glibc honours LD_BIND_NOW too");
}

/// `fx_deep_call(0)` of a copy of `deep.c` (a fresh file per `copy`: each loader loads a file
/// once) opened by glibc with `flags`.
fn glibc_deep_call(copy: &str, flags: i32) -> i64 {
    let lib = build(&format!("deep-{copy}"), "deep.c", "fxdeep", &[]);
    let h = glibc_open(&lib, flags).unwrap();
    glibc_call(h, "fx_deep_call", &[0])
}

#[test]
fn deep_binding_prefers_the_librarys_own_definitions_to_the_global_scope_as_glibc_does() {
    if !common::in_fresh_process("deep_binding_prefers_the_librarys_own_definitions_to_the_global_scope_as_glibc_does")
    {
        return;
    }
    // Another definition of fx_deep_name in glibc's global scope.
    let global = build("deep-global", "deep.c", "fxdeepglobal", &["-DFX_GLOBAL"]);
    let _global = glibc_open(&global, libc::RTLD_NOW | libc::RTLD_GLOBAL).unwrap();
    // The oracle: the global definition wins, unless RTLD_DEEPBIND.
    assert_eq!(glibc_deep_call("g-now", libc::RTLD_NOW), 20);
    assert_eq!(glibc_deep_call("g-deep", libc::RTLD_NOW | libc::RTLD_DEEPBIND), 10);
    let open = |copy: &str, deep: bool| {
        let lib = build(&format!("deep-{copy}"), "deep.c", "fxdeep", &[]);
        // SAFETY: a trusted fixture.
        unsafe { Library::open_with(lib.as_path(), &LoadOptions::new().deep_bind(deep)) }
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (now, deep) = (open("m-now", false), open("m-deep", true));
    assert_eq!(call(&now, "fx_deep_call", &[0]), 20, "without deep binding the global scope comes first");
    assert_eq!(call(&deep, "fx_deep_call", &[0]), 10, "deep binding: the library's own definition first");
    // dlsym(RTLD_DEFAULT) from it: the same order (glibc puts the library's own scope first
    // in its l_scope).
    let glibc_default = |copy: &str, flags: i32| {
        let lib = build(&format!("deep-{copy}"), "deep.c", "fxdeep", &[]);
        glibc_call(glibc_open(&lib, flags).unwrap(), "fx_deep_default", &[])
    };
    assert_eq!(glibc_default("gd-now", libc::RTLD_NOW), 2);
    assert_eq!(glibc_default("gd-deep", libc::RTLD_NOW | libc::RTLD_DEEPBIND), 1);
    assert_eq!(call(&now, "fx_deep_default", &[]), 2, "RTLD_DEFAULT: the global scope first");
    assert_eq!(call(&deep, "fx_deep_default", &[]), 1, "RTLD_DEFAULT with deep binding: its own first");
    // A mapped library's own dlopen(RTLD_DEEPBIND).
    let host = build("deep-host", "lazyopen.c", "fxlazyopen", &[]);
    let host = open_lazy(&host, false).unwrap_or_else(|e| panic!("{e}"));
    for (copy, flags, want) in [("h-now", libc::RTLD_NOW, 20), ("h-deep", libc::RTLD_NOW | libc::RTLD_DEEPBIND, 10)] {
        let lib = build(&format!("deep-{copy}"), "deep.c", "fxdeep", &[]);
        let lib = CString::new(lib.to_str().unwrap()).unwrap();
        let r = call(
            &host,
            "fx_lazy_open_call",
            &[lib.as_ptr() as i64, i64::from(flags), c"fx_deep_call".as_ptr() as i64, 0],
        );
        assert_eq!(r, want, "dlopen flags {flags:#x} from a mapped library");
    }
}

type LateCall = extern "C" fn(i64, i64, i64, i64, i64, i64, f64, f64, f64, f64, f64, f64, f64, f64) -> i64;

/// `fx_late_call` at `addr` with fixed arguments (six integers and eight doubles, all in
/// registers: a trampoline that lost one would change the answer).
fn late_call(addr: u64) -> i64 {
    // SAFETY: `fx_late_call`'s signature (fixture late.c).
    let f = unsafe { std::mem::transmute::<u64, LateCall>(addr) };
    f(1, 2, 3, 4, 5, 6, 0.5, 0.25, 0.125, 1.0, 2.0, 3.0, 4.0, 5.0)
}

/// `fx_late_vec(1, 2, 3, 4)` at `addr` (a 256-bit vector in ymm0 on to the late function).
#[cfg(target_arch = "x86_64")]
fn late_vec(addr: u64) -> i64 {
    type F = extern "C" fn(f64, f64, f64, f64) -> i64;
    // SAFETY: `fx_late_vec`'s signature (fixture late.c, built with -mavx).
    let f = unsafe { std::mem::transmute::<u64, F>(addr) };
    f(1.0, 2.0, 3.0, 4.0)
}

/// AVX is here and the fixtures are built by the host's gcc (the vector test's `-mavx`).
fn avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    return common::host_cc() && std::arch::is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn late_flags() -> Vec<&'static str> {
    if avx() {
        vec!["-mavx"]
    } else {
        vec![]
    }
}

#[test]
fn a_function_defined_after_the_load_binds_at_its_first_call_as_with_glibc() {
    if !common::in_fresh_process("a_function_defined_after_the_load_binds_at_its_first_call_as_with_glibc") {
        return;
    }
    let flags = late_flags();
    let late = |copy: &str| build(&format!("late-{copy}"), "late.c", "fxlate", &flags);
    let mut provider_flags = flags.clone();
    provider_flags.push("-DFX_PROVIDER");
    // Loaded while nothing defines mmkit_fx_late_fn: by glibc and by mmkit, lazily.
    let g = glibc_open(&late("glibc"), libc::RTLD_LAZY | libc::RTLD_LOCAL).unwrap();
    let m = open_lazy(&late("mmkit"), true).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.unbound_functions().iter().any(|f| f == "mmkit_fx_late_fn"), "{:?}", m.unbound_functions());
    // Then a library defining it joins glibc's global scope.
    let provider = build("late-provider", "late.c", "fxlateprov", &provider_flags);
    let _p = glibc_open(&provider, libc::RTLD_NOW | libc::RTLD_GLOBAL).unwrap();
    // SAFETY: dlsym on glibc's live handle.
    let g_call = unsafe { libc::dlsym(g, c"fx_late_call".as_ptr()) } as u64;
    let want = late_call(g_call);
    assert_eq!(want, 102_029_321, "glibc's answer (the fixture's arithmetic)");
    let m_call = m.address_of("fx_late_call").unwrap();
    assert_eq!(late_call(m_call), want, "the first call binds and passes every argument register");
    assert_eq!(late_call(m_call), want, "the second call goes straight to it");
    #[cfg(target_arch = "x86_64")]
    if avx() {
        // SAFETY: as above.
        let g_vec = unsafe { libc::dlsym(g, c"fx_late_vec".as_ptr()) } as u64;
        assert_eq!(late_vec(g_vec), 4321);
        assert_eq!(late_vec(m.address_of("fx_late_vec").unwrap()), 4321, "ymm0's upper half kept");
    }
}

#[test]
fn a_function_a_library_made_global_later_defines_binds_at_its_call() {
    if !common::in_fresh_process("a_function_a_library_made_global_later_defines_binds_at_its_call") {
        return;
    }
    let late = build("late-mglobal", "late.c", "fxlate", &[]);
    let m = open_lazy(&late, true).unwrap_or_else(|e| panic!("{e}"));
    // The provider mapped by mmkit and made global (RTLD_GLOBAL of mmkit's scope).
    let provider = build("late-mprovider", "late.c", "fxlateprov", &["-DFX_PROVIDER"]);
    let p = open_lazy(&provider, false).unwrap_or_else(|e| panic!("{e}"));
    p.make_global();
    assert_eq!(late_call(m.address_of("fx_late_call").unwrap()), 102_029_321);
    // The provider stays loaded while the library bound to it is (glibc's l_reldeps).
    drop(p);
    assert_eq!(late_call(m.address_of("fx_late_call").unwrap()), 102_029_321);
}

/// aarch64: a PLT call to a function of a variant PCS (the AdvSIMD vector PCS here, SVE's
/// likewise: the symbol has `STO_AARCH64_VARIANT_PCS`, the library `DT_AARCH64_VARIANT_PCS`)
/// is bound at load even when lazy, as glibc's `elf_machine_lazy_rel` binds it: the lazy
/// trampoline keeps the base PCS's argument registers, and such a function's caller counts on
/// more (q8-q23 whole, or the z and p registers). mmkit-elf left an undefined one to the
/// trampoline; it fails the load now, as glibc's `dlopen(RTLD_LAZY)` fails, and a defined one
/// is bound and called as with glibc.
#[cfg(target_arch = "aarch64")]
#[test]
fn variant_pcs_calls_are_bound_at_load_even_when_lazy() {
    let lib = build("lazy-vpcs", "vpcs.c", "fxvpcs", &[]);
    let e = open_lazy(&lib, true).map(|_| ()).expect_err("a variant PCS call is bound at load");
    assert_eq!(e.kind(), ErrorKind::UndefinedSymbol, "{e}");
    assert!(e.to_string().contains("fx_vpcs_far"), "{e}");
    let glibc = glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).expect_err("glibc binds it at load too");
    assert!(glibc.contains("fx_vpcs_far"), "{glibc}");
    // Defined by a library in the global scope: both bind it and the call answers alike.
    let provider = build("lazy-vpcs", "vpcs.c", "fxvpcsprovider", &["-DPROVIDER"]);
    let _global = glibc_open(&provider, libc::RTLD_NOW | libc::RTLD_GLOBAL).unwrap();
    let mapped = open_lazy(&lib, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&mapped, "fx_vpcs_call", &[2]), 7);
    let h = glibc_open(&lib, libc::RTLD_LAZY | libc::RTLD_LOCAL).unwrap();
    assert_eq!(glibc_call(h, "fx_vpcs_call", &[2]), 7);
}
