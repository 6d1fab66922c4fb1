//! More real libraries, each copied out of the system directories so that mmkit maps it (its
//! dependencies go to the system linker, or are mapped privately too), from a file, an APK
//! entry and a memfd, with glibc's `dlopen` of the same copy as the oracle: libffi (closures
//! on executable trampolines), PCRE2 (JIT), GMP, GLib (constructors, threads, variadic
//! calls), libssl over libcrypto, libyaml, jansson, libuv (a thread pool its destructor
//! joins) and libevent. Each test runs in a fresh process and skips, saying why, when its
//! library is absent (scripts/test installs them).

mod common;

use common::*;
use mmkit_elf::{Namespace, Source, SystemPolicy};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::path::{Path, PathBuf};

/// A C string returned by a library, as a Rust string.
fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the libraries return NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// What /proc/self/maps names the mapping holding `addr` (its file name, or `anon`).
fn mapping_name(addr: u64) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for l in maps.lines() {
        let mut f = l.split_whitespace();
        let range = f.next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        if (a..b).contains(&addr) {
            let perms = f.next().unwrap().to_owned();
            let name = f.nth(3).map(|p| Path::new(p).file_name().unwrap().to_string_lossy().into_owned());
            return format!("{perms} {}", name.unwrap_or_else(|| "anon".into()));
        }
    }
    "unmapped".into()
}

/// Runs `exercise` on mmkit's copies of `soname` (copied out of the system directory): from
/// the file, from an APK entry, from a memfd, and from the file in a namespace that maps the
/// system libraries it needs privately too; then on glibc's `dlopen` of the same file. All
/// answers must agree. In a fresh process.
fn same_answers_as_glibc(test: &str, soname: &str, exercise: fn(Lookup<'_>) -> String) {
    if !x86_64_host(test) {
        return;
    }
    if !in_fresh_process(test) {
        return;
    }
    let Some(path) = system_lib(soname) else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(soname);
    std::fs::copy(&path, &copy).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    let apk = dir.path().join("app.apk");
    let entry = format!("lib/x86_64/{soname}");
    write_zip(&apk, &[("AndroidManifest.xml", b"<manifest/>", 0), (&entry, &bytes, page_u16())]);
    let private = Namespace::new(format!("{test}-private")).system_libraries(SystemPolicy::MapPrivately);
    let mut answers = Vec::new();
    for (how, source) in [
        ("file", Source::path(&copy)),
        ("apk", Source::zip_entry(&apk, &entry)),
        ("memfd", Source::memory(soname, bytes.clone())),
        ("private deps", Source::path(&copy)),
    ] {
        let ours = if how == "private deps" {
            // SAFETY: a system library, trusted.
            unsafe { private.open(source) }
        } else {
            // SAFETY: a system library, trusted.
            unsafe { mmkit_elf::Library::open(source) }
        }
        .unwrap_or_else(|e| panic!("{how}: {e}"));
        let lookup = |name: &str| {
            // SAFETY: only the address is taken; `exercise` uses it with its true type.
            unsafe { ours.function::<extern "C" fn()>(name) }
                .map(|f| f.address())
                .or_else(|_| ours.address_of(name))
                .unwrap_or_else(|e| panic!("{how}: {e}"))
        };
        answers.push((how, exercise(&lookup)));
        ours.verify().unwrap_or_else(|e| panic!("{how}: {e}"));
    }
    let oracle = Dl::open(&copy);
    let theirs = exercise(&|name: &str| oracle.addr(name) as u64);
    assert!(!theirs.is_empty());
    eprintln!("glibc: {theirs}");
    for (how, ours) in answers {
        assert_eq!(ours, theirs, "{soname} from {how}");
    }
}

#[repr(C)]
struct FfiType {
    size: usize,
    alignment: u16,
    kind: u16,
    elements: *mut *mut FfiType,
}

#[repr(C)]
struct FfiCif {
    abi: c_int,
    nargs: c_uint,
    arg_types: *mut *mut FfiType,
    rtype: *mut FfiType,
    bytes: c_uint,
    flags: c_uint,
}

extern "C" fn ffi_target(a: i64, x: f64, b: i64) -> i64 {
    a * 1000 + (x * 10.0) as i64 + b
}

/// A closure's body: `args[0] * 3 + args[1] + *user`.
extern "C" fn closure_body(_cif: *mut FfiCif, ret: *mut c_void, args: *mut *mut c_void, user: *mut c_void) {
    // SAFETY: libffi passes the two i64 arguments the cif describes, an i64-sized return
    // slot, and the user data given to ffi_prep_closure_loc (an i64).
    unsafe {
        let (a, b) = (*(*args).cast::<i64>(), *(*args.add(1)).cast::<i64>());
        *ret.cast::<i64>() = a * 3 + b + *user.cast::<i64>();
    }
}

#[test]
fn libffi_calls_and_closures_answer_like_glibcs_copy() {
    same_answers_as_glibc("libffi_calls_and_closures_answer_like_glibcs_copy", "libffi.so.8", |l| {
        type PrepCif = extern "C" fn(*mut FfiCif, c_int, c_uint, *mut FfiType, *mut *mut FfiType) -> c_int;
        type Call = extern "C" fn(*mut FfiCif, *const c_void, *mut c_void, *mut *mut c_void);
        type Alloc = extern "C" fn(usize, *mut *mut c_void) -> *mut c_void;
        type PrepClosure = extern "C" fn(
            *mut c_void,
            *mut FfiCif,
            extern "C" fn(*mut FfiCif, *mut c_void, *mut *mut c_void, *mut c_void),
            *mut c_void,
            *mut c_void,
        ) -> c_int;
        type Free = extern "C" fn(*mut c_void);
        const FFI_DEFAULT_ABI: c_int = 2; // FFI_UNIX64
                                          // SAFETY: libffi's signatures (3.4).
        let (prep_cif, call, alloc, prep_closure, free) = unsafe {
            (
                func::<PrepCif>(l, "ffi_prep_cif"),
                func::<Call>(l, "ffi_call"),
                func::<Alloc>(l, "ffi_closure_alloc"),
                func::<PrepClosure>(l, "ffi_prep_closure_loc"),
                func::<Free>(l, "ffi_closure_free"),
            )
        };
        let (sint64, double) = (l("ffi_type_sint64") as *mut FfiType, l("ffi_type_double") as *mut FfiType);
        let mut out = String::new();
        // A call through ffi_call: (i64, double, i64) -> i64.
        let mut types = [sint64, double, sint64];
        // SAFETY: a zeroed cif is what ffi_prep_cif fills.
        let mut cif: FfiCif = unsafe { std::mem::zeroed() };
        assert_eq!(prep_cif(&mut cif, FFI_DEFAULT_ABI, 3, sint64, types.as_mut_ptr()), 0);
        let (mut a, mut x, mut b) = (7i64, 2.5f64, -3i64);
        let mut args: [*mut c_void; 3] =
            [(&mut a as *mut i64).cast(), (&mut x as *mut f64).cast(), (&mut b as *mut i64).cast()];
        let mut ret = 0i64;
        call(&mut cif, ffi_target as *const c_void, (&mut ret as *mut i64).cast(), args.as_mut_ptr());
        out += &format!("call {ret}; ");
        // Closures: libffi hands out executable trampolines (static ones mapped from its own
        // file, found through dl_iterate_phdr, or dynamic ones).
        let mut types2 = [sint64, sint64];
        // SAFETY: as above.
        let mut cif2: FfiCif = unsafe { std::mem::zeroed() };
        assert_eq!(prep_cif(&mut cif2, FFI_DEFAULT_ABI, 2, sint64, types2.as_mut_ptr()), 0);
        let mut users = [100i64, 200, 300];
        let mut closures = Vec::new();
        for user in users.iter_mut() {
            let mut code = std::ptr::null_mut();
            let closure = alloc(256, &mut code);
            assert!(!closure.is_null() && !code.is_null());
            let rc = prep_closure(closure, &mut cif2, closure_body, (user as *mut i64).cast(), code);
            assert_eq!(rc, 0);
            closures.push((closure, code));
        }
        for (i, &(_, code)) in closures.iter().enumerate() {
            // SAFETY: the trampoline calls closure_body with the cif's (i64, i64) -> i64.
            let f = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn(i64, i64) -> i64>(code) };
            out += &format!("closure{i} {} {}; ", f(5, i as i64), mapping_name(code as u64));
        }
        for (closure, _) in closures {
            free(closure);
        }
        out
    });
}

#[test]
fn pcre2_jit_compiles_and_matches_like_glibcs_copy() {
    same_answers_as_glibc("pcre2_jit_compiles_and_matches_like_glibcs_copy", "libpcre2-8.so.0", |l| {
        type Compile = extern "C" fn(*const u8, usize, u32, *mut c_int, *mut usize, *mut c_void) -> *mut c_void;
        type Jit = extern "C" fn(*mut c_void, u32) -> c_int;
        type MdCreate = extern "C" fn(*mut c_void, *mut c_void) -> *mut c_void;
        type Match = extern "C" fn(*mut c_void, *const u8, usize, usize, u32, *mut c_void, *mut c_void) -> c_int;
        type Ovector = extern "C" fn(*mut c_void) -> *mut usize;
        type Info = extern "C" fn(*mut c_void, u32, *mut c_void) -> c_int;
        type Config = extern "C" fn(u32, *mut c_void) -> c_int;
        type Free = extern "C" fn(*mut c_void);
        // SAFETY: PCRE2's 8-bit signatures.
        let (compile, jit, md_create, matcher, ovector, info, config, md_free, code_free) = unsafe {
            (
                func::<Compile>(l, "pcre2_compile_8"),
                func::<Jit>(l, "pcre2_jit_compile_8"),
                func::<MdCreate>(l, "pcre2_match_data_create_from_pattern_8"),
                func::<Match>(l, "pcre2_match_8"),
                func::<Ovector>(l, "pcre2_get_ovector_pointer_8"),
                func::<Info>(l, "pcre2_pattern_info_8"),
                func::<Config>(l, "pcre2_config_8"),
                func::<Free>(l, "pcre2_match_data_free_8"),
                func::<Free>(l, "pcre2_code_free_8"),
            )
        };
        let mut has_jit: u32 = 0;
        config(1 /* PCRE2_CONFIG_JIT */, (&mut has_jit as *mut u32).cast());
        let pattern = br"(\w+)@(\w+)\.(com|org)";
        let (mut err, mut at) = (0, 0usize);
        let code = compile(pattern.as_ptr(), pattern.len(), 0, &mut err, &mut at, std::ptr::null_mut());
        assert!(!code.is_null(), "pcre2_compile: {err} at {at}");
        let jit_rc = jit(code, 1 /* PCRE2_JIT_COMPLETE */);
        let mut jit_size = 0usize;
        info(code, 16 /* PCRE2_INFO_JITSIZE */, (&mut jit_size as *mut usize).cast());
        assert!(has_jit == 0 || (jit_rc == 0 && jit_size > 0), "JIT {has_jit} rc {jit_rc} size {jit_size}");
        let md = md_create(code, std::ptr::null_mut());
        let subject = b"mail ann@example.com, bob@site.org and nobody@nowhere.net; eve@x.com";
        let mut out = format!("jit {has_jit} {jit_rc} {}; ", jit_size > 0);
        let mut start = 0;
        loop {
            let rc = matcher(code, subject.as_ptr(), subject.len(), start, 0, md, std::ptr::null_mut());
            if rc < 0 {
                out += &format!("end {rc}");
                break;
            }
            // SAFETY: the ovector has a pair per capture group (rc pairs set).
            let ov = unsafe { std::slice::from_raw_parts(ovector(md), 2 * rc as usize) };
            out += &format!("{:?}; ", ov);
            start = ov[1];
        }
        md_free(md);
        code_free(code);
        out
    });
}

#[repr(C)]
struct Mpz {
    alloc: c_int,
    size: c_int,
    limbs: *mut u64,
}

#[test]
fn gmp_big_arithmetic_answers_like_glibcs_copy() {
    same_answers_as_glibc("gmp_big_arithmetic_answers_like_glibcs_copy", "libgmp.so.10", |l| {
        type Init = extern "C" fn(*mut Mpz);
        type PowUi = extern "C" fn(*mut Mpz, u64, u64);
        type FacUi = extern "C" fn(*mut Mpz, u64);
        type Bin = extern "C" fn(*mut Mpz, *const Mpz, *const Mpz);
        type GetStr = extern "C" fn(*mut c_char, c_int, *const Mpz) -> *mut c_char;
        type Prime = extern "C" fn(*const Mpz, c_int) -> c_int;
        type NextPrime = extern "C" fn(*mut Mpz, *const Mpz);
        // SAFETY: GMP's signatures (the mpz_ macros name these).
        let (init, clear, pow, fac, mul, tdiv_r, get_str, prime, nextprime) = unsafe {
            (
                func::<Init>(l, "__gmpz_init"),
                func::<Init>(l, "__gmpz_clear"),
                func::<PowUi>(l, "__gmpz_ui_pow_ui"),
                func::<FacUi>(l, "__gmpz_fac_ui"),
                func::<Bin>(l, "__gmpz_mul"),
                func::<Bin>(l, "__gmpz_tdiv_r"),
                func::<GetStr>(l, "__gmpz_get_str"),
                func::<Prime>(l, "__gmpz_probab_prime_p"),
                func::<NextPrime>(l, "__gmpz_nextprime"),
            )
        };
        // SAFETY: gmp's version string, a `const char *const` in its data.
        let version = text(unsafe { *(l("__gmp_version") as *const *const c_char) });
        let mut z: [Mpz; 4] = std::array::from_fn(|_| Mpz { alloc: 0, size: 0, limbs: std::ptr::null_mut() });
        for m in z.iter_mut() {
            init(m);
        }
        let [a, b, c, d] = &mut z;
        pow(a, 3, 4000);
        fac(b, 1500);
        mul(c, a, b);
        pow(d, 2, 521);
        let m521 = d as *mut Mpz;
        // 2^521 - 1 is a Mersenne prime: the next prime after 2^521 - 2 is it... compute
        // (3^4000 * 1500!) mod 2^521 and the next prime after it.
        tdiv_r(a, c, m521);
        nextprime(b, a);
        let s = |m: &Mpz, base: c_int| {
            let p = get_str(std::ptr::null_mut(), base, m);
            let t = text(p);
            // SAFETY: gmp allocates the string with its default allocator, malloc.
            unsafe { libc::free(p.cast()) };
            t
        };
        let out = format!(
            "{} len{} {} {} {} {}",
            version.split('.').count(),
            s(c, 10).len(),
            s(a, 16),
            s(b, 36),
            prime(b, 25),
            prime(c, 25)
        );
        for m in z.iter_mut() {
            clear(m);
        }
        out
    });
}

extern "C" fn glib_thread(data: *mut c_void) -> *mut c_void {
    (data as usize * 7) as *mut c_void
}

#[test]
fn glib_formats_hashes_threads_and_regexes_like_glibcs_copy() {
    same_answers_as_glibc("glib_formats_hashes_threads_and_regexes_like_glibcs_copy", "libglib-2.0.so.0", |l| {
        type Printf = unsafe extern "C" fn(*const c_char, ...) -> *mut c_char;
        type HashNew = extern "C" fn(u64, u64) -> *mut c_void;
        type Insert = extern "C" fn(*mut c_void, *const c_void, *const c_void) -> c_int;
        type LookupFn = extern "C" fn(*mut c_void, *const c_void) -> *mut c_void;
        type Size = extern "C" fn(*mut c_void) -> c_uint;
        type Unref = extern "C" fn(*mut c_void);
        type Up = extern "C" fn(*const c_char, isize) -> *mut c_char;
        type Regex = extern "C" fn(*const c_char, *const c_char, c_int, c_int) -> c_int;
        type ThreadNew =
            extern "C" fn(*const c_char, extern "C" fn(*mut c_void) -> *mut c_void, *mut c_void) -> *mut c_void;
        type Join = extern "C" fn(*mut c_void) -> *mut c_void;
        type Quark = extern "C" fn(*const c_char) -> u32;
        type QuarkStr = extern "C" fn(u32) -> *const c_char;
        type Free = extern "C" fn(*mut c_void);
        // SAFETY: GLib's signatures.
        let (printf, hash_new, insert, lookup, size, unref, up, regex, thread_new, join, quark, quark_str, free) = unsafe {
            (
                func::<Printf>(l, "g_strdup_printf"),
                func::<HashNew>(l, "g_hash_table_new"),
                func::<Insert>(l, "g_hash_table_insert"),
                func::<LookupFn>(l, "g_hash_table_lookup"),
                func::<Size>(l, "g_hash_table_size"),
                func::<Unref>(l, "g_hash_table_unref"),
                func::<Up>(l, "g_utf8_strup"),
                func::<Regex>(l, "g_regex_match_simple"),
                func::<ThreadNew>(l, "g_thread_new"),
                func::<Join>(l, "g_thread_join"),
                func::<Quark>(l, "g_quark_from_string"),
                func::<QuarkStr>(l, "g_quark_to_string"),
                func::<Free>(l, "g_free"),
            )
        };
        let owned = |p: *mut c_char| {
            let t = text(p);
            free(p.cast());
            t
        };
        // SAFETY: the format's arguments match it.
        let s =
            owned(unsafe { printf(c"%s-%05d-%.3f-%x".as_ptr(), c"glib".as_ptr(), 42 as c_int, 1.23456f64, 255u32) });
        let table = hash_new(l("g_str_hash"), l("g_str_equal"));
        let keys = [c"alpha", c"beta", c"gamma", c"delta"];
        for (i, k) in keys.iter().enumerate() {
            insert(table, k.as_ptr().cast(), (i + 1) as *const c_void);
        }
        let found: Vec<usize> =
            [c"gamma", c"alpha", c"omega"].iter().map(|k| lookup(table, k.as_ptr().cast()) as usize).collect();
        let n = size(table);
        unref(table);
        let upper = owned(up(c"straße ǆ".as_ptr(), -1));
        let re = [
            regex(c"^[a-z]+@[a-z]+\\.org$".as_ptr(), c"bob@site.org".as_ptr(), 0, 0),
            regex(c"\\d{3}-\\d{4}".as_ptr(), c"call 555-1234".as_ptr(), 0, 0),
            regex(c"^x".as_ptr(), c"y".as_ptr(), 0, 0),
        ];
        let threads: Vec<_> =
            (1..4usize).map(|i| thread_new(c"worker".as_ptr(), glib_thread, i as *mut c_void)).collect();
        let joined: Vec<usize> = threads.into_iter().map(|t| join(t) as usize).collect();
        let q = quark(c"mmkit-quark".as_ptr());
        format!("{s} {found:?} {n} {upper} {re:?} {joined:?} {}", text(quark_str(q)))
    });
}

#[test]
fn libssl_over_libcrypto_makes_a_context_like_glibcs_copy() {
    same_answers_as_glibc("libssl_over_libcrypto_makes_a_context_like_glibcs_copy", "libssl.so.3", |l| {
        type Init = extern "C" fn(u64, *const c_void) -> c_int;
        type Method = extern "C" fn() -> *const c_void;
        type CtxNew = extern "C" fn(*const c_void) -> *mut c_void;
        type SetList = extern "C" fn(*mut c_void, *const c_char) -> c_int;
        type SslNew = extern "C" fn(*mut c_void) -> *mut c_void;
        type CipherList = extern "C" fn(*const c_void, c_int) -> *const c_char;
        type Free = extern "C" fn(*mut c_void);
        type Ctrl = extern "C" fn(*mut c_void, c_int, i64, *mut c_void) -> i64;
        // SAFETY: OpenSSL 3's signatures.
        let (init, method, ctx_new, set_list, ssl_new, cipher, ssl_free, ctx_free, ctrl) = unsafe {
            (
                func::<Init>(l, "OPENSSL_init_ssl"),
                func::<Method>(l, "TLS_method"),
                func::<CtxNew>(l, "SSL_CTX_new"),
                func::<SetList>(l, "SSL_CTX_set_cipher_list"),
                func::<SslNew>(l, "SSL_new"),
                func::<CipherList>(l, "SSL_get_cipher_list"),
                func::<Free>(l, "SSL_free"),
                func::<Free>(l, "SSL_CTX_free"),
                func::<Ctrl>(l, "SSL_CTX_ctrl"),
            )
        };
        assert_eq!(init(0, std::ptr::null()), 1);
        let ctx = ctx_new(method());
        assert!(!ctx.is_null());
        assert_eq!(set_list(ctx, c"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL".as_ptr()), 1);
        // SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), then get it back.
        assert_eq!(ctrl(ctx, 123, 0x0303, std::ptr::null_mut()), 1);
        let min = ctrl(ctx, 130, 0, std::ptr::null_mut());
        let ssl = ssl_new(ctx);
        assert!(!ssl.is_null());
        let ciphers: Vec<String> = (0..)
            .map_while(|i| {
                let p = cipher(ssl, i);
                (!p.is_null()).then(|| text(p))
            })
            .collect();
        ssl_free(ssl);
        ctx_free(ctx);
        format!("{min:#x} {}", ciphers.join(":"))
    });
}

#[test]
fn libyaml_parses_events_like_glibcs_copy() {
    same_answers_as_glibc("libyaml_parses_events_like_glibcs_copy", "libyaml-0.so.2", |l| {
        type Init = extern "C" fn(*mut c_void) -> c_int;
        type Input = extern "C" fn(*mut c_void, *const u8, usize);
        type Parse = extern "C" fn(*mut c_void, *mut c_void) -> c_int;
        type Delete = extern "C" fn(*mut c_void);
        type Version = extern "C" fn() -> *const c_char;
        // SAFETY: libyaml's signatures.
        let (init, input, parse, event_delete, parser_delete, version) = unsafe {
            (
                func::<Init>(l, "yaml_parser_initialize"),
                func::<Input>(l, "yaml_parser_set_input_string"),
                func::<Parse>(l, "yaml_parser_parse"),
                func::<Delete>(l, "yaml_event_delete"),
                func::<Delete>(l, "yaml_parser_delete"),
                func::<Version>(l, "yaml_get_version_string"),
            )
        };
        let doc = b"libs:\n  - name: libyaml\n    pages: [1, 2, 3]\n  - {name: libffi, rwx: true}\nend: ~\n";
        // yaml_parser_t and yaml_event_t, with room to spare (8-byte aligned).
        let mut parser = vec![0u64; 1024];
        let mut event = vec![0u64; 64];
        assert_eq!(init(parser.as_mut_ptr().cast()), 1);
        input(parser.as_mut_ptr().cast(), doc.as_ptr(), doc.len());
        let mut kinds = Vec::new();
        loop {
            assert_eq!(parse(parser.as_mut_ptr().cast(), event.as_mut_ptr().cast()), 1);
            let kind = event[0] as u32;
            kinds.push(kind);
            event_delete(event.as_mut_ptr().cast());
            if kind == 2 || kinds.len() > 100 {
                break; // YAML_STREAM_END_EVENT
            }
        }
        parser_delete(parser.as_mut_ptr().cast());
        format!("{} {kinds:?}", text(version()))
    });
}

#[test]
fn jansson_round_trips_like_glibcs_copy() {
    same_answers_as_glibc("jansson_round_trips_like_glibcs_copy", "libjansson.so.4", |l| {
        type Loads = extern "C" fn(*const c_char, usize, *mut c_void) -> *mut c_void;
        type Dumps = extern "C" fn(*const c_void, usize) -> *mut c_char;
        type Delete = extern "C" fn(*mut c_void);
        type Get = extern "C" fn(*const c_void, *const c_char) -> *mut c_void;
        type IntValue = extern "C" fn(*const c_void) -> i64;
        // SAFETY: jansson's signatures.
        let (loads, dumps, delete, get, int_value) = unsafe {
            (
                func::<Loads>(l, "json_loads"),
                func::<Dumps>(l, "json_dumps"),
                func::<Delete>(l, "json_delete"),
                func::<Get>(l, "json_object_get"),
                func::<IntValue>(l, "json_integer_value"),
            )
        };
        let mut error = vec![0u8; 1024];
        let doc = cr#"{"z": [1, 2.5, "three", null], "a": {"pages": 42, "ok": true}, "m": "\u00e9"}"#;
        let j = loads(doc.as_ptr(), 0, error.as_mut_ptr().cast());
        assert!(!j.is_null());
        let pages = int_value(get(get(j, c"a".as_ptr()), c"pages".as_ptr()));
        let p = dumps(j, 0x80 | 0x20); // JSON_SORT_KEYS | JSON_COMPACT
        let s = text(p);
        // SAFETY: jansson's default allocator is malloc.
        unsafe { libc::free(p.cast()) };
        // The reference count starts at 1: json_decref is inline, json_delete frees.
        delete(j);
        format!("{pages} {s}")
    });
}

extern "C" fn uv_on_timer(handle: *mut c_void) {
    // SAFETY: the handle's data (uv_handle_t's first field) is the counter and the stop
    // function's address, set by the test.
    unsafe {
        let state = *handle.cast::<*mut (u64, u64)>();
        (*state).0 += 1;
        if (*state).0 == 3 {
            std::mem::transmute::<u64, extern "C" fn(*mut c_void) -> c_int>((*state).1)(handle);
        }
    }
}

extern "C" fn uv_work(req: *mut c_void) {
    // SAFETY: the request's data (its first field) is an AtomicU64 of the test.
    unsafe { (**req.cast::<*const std::sync::atomic::AtomicU64>()).fetch_add(10, std::sync::atomic::Ordering::SeqCst) };
}

extern "C" fn uv_after_work(req: *mut c_void, status: c_int) {
    // SAFETY: as uv_work.
    unsafe {
        (**req.cast::<*const std::sync::atomic::AtomicU64>())
            .fetch_add(1 + status as u64, std::sync::atomic::Ordering::SeqCst)
    };
}

#[test]
fn libuv_runs_timers_and_its_thread_pool_like_glibcs_copy() {
    // libuv's thread pool threads run in the library until its destructor stops and joins
    // them: unloading mmkit's copy must run it before unmapping.
    same_answers_as_glibc("libuv_runs_timers_and_its_thread_pool_like_glibcs_copy", "libuv.so.1", |l| {
        type Version = extern "C" fn() -> *const c_char;
        type Size = extern "C" fn(c_int) -> usize;
        type LoopSize = extern "C" fn() -> usize;
        type LoopInit = extern "C" fn(*mut c_void) -> c_int;
        type TimerInit = extern "C" fn(*mut c_void, *mut c_void) -> c_int;
        type TimerStart = extern "C" fn(*mut c_void, extern "C" fn(*mut c_void), u64, u64) -> c_int;
        type Stop = extern "C" fn(*mut c_void) -> c_int;
        type Run = extern "C" fn(*mut c_void, c_int) -> c_int;
        type Queue = extern "C" fn(
            *mut c_void,
            *mut c_void,
            extern "C" fn(*mut c_void),
            extern "C" fn(*mut c_void, c_int),
        ) -> c_int;
        let (
            version,
            handle_size,
            req_size,
            loop_size,
            loop_init,
            timer_init,
            timer_start,
            timer_stop,
            run,
            queue,
            loop_close,
            // SAFETY: libuv's signatures.
        ) = unsafe {
            (
                func::<Version>(l, "uv_version_string"),
                func::<Size>(l, "uv_handle_size"),
                func::<Size>(l, "uv_req_size"),
                func::<LoopSize>(l, "uv_loop_size"),
                func::<LoopInit>(l, "uv_loop_init"),
                func::<TimerInit>(l, "uv_timer_init"),
                func::<TimerStart>(l, "uv_timer_start"),
                func::<Stop>(l, "uv_timer_stop"),
                func::<Run>(l, "uv_run"),
                func::<Queue>(l, "uv_queue_work"),
                func::<Stop>(l, "uv_loop_close"),
            )
        };
        let mut lp = vec![0u64; loop_size().div_ceil(8)];
        let mut timer = vec![0u64; handle_size(13 /* UV_TIMER */).div_ceil(8)];
        assert_eq!(loop_init(lp.as_mut_ptr().cast()), 0);
        assert_eq!(timer_init(lp.as_mut_ptr().cast(), timer.as_mut_ptr().cast()), 0);
        let mut state = (0u64, l("uv_timer_stop"));
        timer[0] = &mut state as *mut (u64, u64) as u64; // uv_handle_t.data
        assert_eq!(timer_start(timer.as_mut_ptr().cast(), uv_on_timer, 1, 1), 0);
        let sum = std::sync::atomic::AtomicU64::new(0);
        let mut reqs: Vec<Vec<u64>> = (0..8).map(|_| vec![0u64; req_size(7 /* UV_WORK */).div_ceil(8)]).collect();
        for r in reqs.iter_mut() {
            r[0] = &sum as *const _ as u64; // uv_req_t.data
            assert_eq!(queue(lp.as_mut_ptr().cast(), r.as_mut_ptr().cast(), uv_work, uv_after_work), 0);
        }
        assert_eq!(run(lp.as_mut_ptr().cast(), 0 /* UV_RUN_DEFAULT */), 0);
        let _ = timer_stop;
        // The timer handle must be closed before the loop; it is stopped, so uv_loop_close
        // answers UV_EBUSY only if it is still active.
        let closed = loop_close(lp.as_mut_ptr().cast());
        format!("{} {} {} {}", text(version()), state.0, sum.load(std::sync::atomic::Ordering::SeqCst), closed)
    });
}

#[test]
fn libevent_makes_a_base_and_buffers_like_glibcs_copy() {
    same_answers_as_glibc("libevent_makes_a_base_and_buffers_like_glibcs_copy", "libevent-2.1.so.7", |l| {
        type Version = extern "C" fn() -> *const c_char;
        type BaseNew = extern "C" fn() -> *mut c_void;
        type Method = extern "C" fn(*const c_void) -> *const c_char;
        type Free = extern "C" fn(*mut c_void);
        type BufNew = extern "C" fn() -> *mut c_void;
        type AddPrintf = unsafe extern "C" fn(*mut c_void, *const c_char, ...) -> c_int;
        type Len = extern "C" fn(*const c_void) -> usize;
        type Pullup = extern "C" fn(*mut c_void, isize) -> *mut u8;
        // SAFETY: libevent's signatures.
        let (version, base_new, method, base_free, buf_new, add_printf, len, pullup, buf_free) = unsafe {
            (
                func::<Version>(l, "event_get_version"),
                func::<BaseNew>(l, "event_base_new"),
                func::<Method>(l, "event_base_get_method"),
                func::<Free>(l, "event_base_free"),
                func::<BufNew>(l, "evbuffer_new"),
                func::<AddPrintf>(l, "evbuffer_add_printf"),
                func::<Len>(l, "evbuffer_get_length"),
                func::<Pullup>(l, "evbuffer_pullup"),
                func::<Free>(l, "evbuffer_free"),
            )
        };
        let base = base_new();
        assert!(!base.is_null());
        let m = text(method(base));
        base_free(base);
        let buf = buf_new();
        for i in 0..50 {
            // SAFETY: the format's arguments match it.
            unsafe { add_printf(buf, c"[%d:%s]".as_ptr(), i as c_int, c"ev".as_ptr()) };
        }
        let n = len(buf);
        // SAFETY: pullup(-1) makes the whole buffer contiguous and returns it.
        let bytes = unsafe { std::slice::from_raw_parts(pullup(buf, -1), n) }.to_vec();
        buf_free(buf);
        format!("{} {m} {n} {}", text(version()), String::from_utf8_lossy(&bytes[..40]))
    });
}

/// Whether /proc/self/maps shows a mapping starting at `start`.
fn mapped_at(start: u64) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| l.split('-').next().is_some_and(|a| u64::from_str_radix(a, 16) == Ok(start)))
}

/// A `DF_1_NODELETE` library stays loaded when its last handle and its namespace are gone, as
/// glibc never unloads one: dropping the namespace dropped its registry, which finalized and
/// unmapped it (glib's copy in a namespace of its own then crashed the next exiting thread,
/// in the pthread key destructor it had registered).
#[test]
fn a_nodelete_library_outlives_its_namespace_as_under_glibc() {
    let path = build("nodelete", "counter.c", "fxnodelete", &["-Wl,-z,nodelete"]);
    let ns = Namespace::new("outlived");
    // SAFETY: a test fixture.
    let lib = unsafe { ns.open(path.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert!(lib.is_pinned());
    let (start, _) = lib.span();
    let next = lib.address_of("fx_next").unwrap();
    assert_eq!(call_addr(next, &[]), 1);
    drop(lib);
    drop(ns);
    // glibc's copy after dlclose: still mapped.
    let oracle = Dl::open(&path);
    let theirs = oracle.addr("fx_next") as u64;
    drop(oracle);
    assert!(mmkit_elf::addr_info(theirs).is_some(), "glibc keeps its copy");
    assert!(mapped_at(start), "mmkit's copy at {start:#x} was unmapped with its namespace");
    assert_eq!(call_addr(next, &[]), 2, "the same copy, its state kept");
    assert!(mmkit_elf::addr_info(next).is_some_and(|i| i.loaded_by_mmkit), "still known as mmkit's");
}

/// A reference without a version (a library linked against an unversioned build of its
/// dependency) binds as glibc's relocation processing binds it: to the definition of the
/// dependency's first version (index 2, the oldest; hidden or not), else to the only
/// non-hidden one of a later version, never to a hidden later one. mmkit bound it as `dlsym`
/// answers (the default `@@` version): `fx_multi` gave 3 where glibc's copy gives 1, and
/// `fx_oldonly` (a hidden first version only) was an undefined symbol. `dlsym` still answers
/// the default.
#[test]
fn references_without_a_version_bind_the_oldest_as_glibcs_relocations_do() {
    let map = format!("-Wl,--version-script={}", fixture_src("vermany.map").display());
    let real = build("vermany", "vermany.c", "fxvermany", &[&map]);
    let stub = build("verstub", "verstub.c", "fxvermany", &[]);
    let stub_dir = format!("-L{}", stub.parent().unwrap().display());
    let consumer = build("verunv", "verunv.c", "fxverunv", &[&stub_dir, "-lfxvermany", "-Wl,-rpath,$ORIGIN"]);
    let dir = tempfile::tempdir().unwrap();
    let (dep, user) = (dir.path().join("libfxvermany.so"), dir.path().join("libfxverunv.so"));
    replace_with_copy(&real, &dep);
    replace_with_copy(&consumer, &user);
    let ours = open(user.as_path());
    let oracle = Dl::open(&user);
    let names = ["fx_unv_multi", "fx_unv_late", "fx_unv_oldonly", "fx_unv_gone"];
    let theirs: Vec<i64> = names.iter().map(|f| oracle.call(f, &[])).collect();
    assert_eq!(theirs, [1, 33, 11, 0], "glibc's answers");
    let got: Vec<i64> = names.iter().map(|f| call(&ours, f, &[])).collect();
    assert_eq!(got, theirs, "{names:?}");
    // dlsym: the default version, or nothing for a name with hidden versions only.
    let lib = open(dep.as_path());
    let glibc_dep = Dl::open(&dep);
    for f in ["fx_multi", "fx_late"] {
        assert_eq!(call(&lib, f, &[]), glibc_dep.call(f, &[]), "{f}");
    }
    // SAFETY: only looked up.
    assert!(unsafe { lib.symbol::<extern "C" fn()>("fx_oldonly") }.is_err());
}

/// The fixture libgmodule opens in [`gmodule_opens_a_plugin_through_dlopen_like_glibcs_copy`].
static PLUGIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// A library that loads plug-ins itself: libgmodule's `g_module_open` calls `dlopen` (mmkit's
/// in its copies), `g_module_symbol` calls `dlsym`, and a missing symbol's message is
/// `dlerror`'s.
#[test]
fn gmodule_opens_a_plugin_through_dlopen_like_glibcs_copy() {
    if host_cc() {
        PLUGIN.get_or_init(|| lib("basic.c", "fxbasic"));
    }
    same_answers_as_glibc("gmodule_opens_a_plugin_through_dlopen_like_glibcs_copy", "libgmodule-2.0.so.0", |l| {
        type Open = extern "C" fn(*const c_char, c_int) -> *mut c_void;
        type Sym = extern "C" fn(*mut c_void, *const c_char, *mut *mut c_void) -> c_int;
        type Close = extern "C" fn(*mut c_void) -> c_int;
        type Error = extern "C" fn() -> *const c_char;
        // SAFETY: GModule's signatures.
        let (open, symbol, close, error) = unsafe {
            (
                func::<Open>(l, "g_module_open"),
                func::<Sym>(l, "g_module_symbol"),
                func::<Close>(l, "g_module_close"),
                func::<Error>(l, "g_module_error"),
            )
        };
        let path = std::ffi::CString::new(PLUGIN.get().unwrap().to_str().unwrap()).unwrap();
        let module = open(path.as_ptr(), 1 /* G_MODULE_BIND_LAZY */);
        assert!(!module.is_null(), "g_module_open: {}", text(error()));
        let mut f = std::ptr::null_mut();
        assert_eq!(symbol(module, c"fx_apply".as_ptr(), &mut f), 1);
        let got = call_addr(f as u64, &[2, 6, 7]);
        let mut g = std::ptr::null_mut();
        let missing = symbol(module, c"fx_nope".as_ptr(), &mut g);
        let message = text(error());
        assert_eq!(close(module), 1);
        format!("{got} {missing} {message}")
    });
}

/// The same rule for a definition in a library glibc loaded: a reference without a version to
/// libc's `realpath` (a library linked against a libc stand-in without versions) binds
/// `realpath@GLIBC_2.2.5`, libc's first version, as glibc's relocation does, not the default
/// `realpath@@GLIBC_2.3` that `dlsym` answers (and mmkit bound): the old one refuses a NULL
/// buffer. `memcpy` (an IFUNC at both versions) binds the same implementation as glibc's.
#[test]
fn references_without_a_version_to_libc_bind_its_first_version_as_glibc_does() {
    if !cfg!(target_arch = "x86_64") || !host_cc() {
        eprintln!("skipping: libc's first version is GLIBC_2.2.5 on x86_64 only");
        return;
    }
    let stub = build("cstub", "cstub.c", "fxcstub", &["-nostdlib", "-Wl,-soname,libc.so.6"]);
    let stub_dir = format!("-L{}", stub.parent().unwrap().display());
    let user = build("unvlibc", "unvlibc.c", "fxunvlibc", &["-nostdlib", "-fno-builtin", &stub_dir, "-lfxcstub"]);
    let ours = open(user.as_path());
    assert!(ours.dependencies().iter().any(|(n, by_mmkit)| n == "libc.so.6" && !by_mmkit));
    let oracle = Dl::open(&user);
    for f in ["fx_unv_realpath", "fx_unv_memcpy_addr", "fx_unv_realpath_addr"] {
        assert_eq!(call(&ours, f, &[]), oracle.call(f, &[]), "{f}");
    }
    assert_eq!(oracle.call("fx_unv_realpath", &[]), -1, "glibc binds the old realpath");
}

/// Whether `so` has an `R_X86_64_TLSDESC` relocation (binutils' readelf says).
#[cfg(target_arch = "x86_64")]
fn has_tlsdesc(so: &Path) -> bool {
    let out = std::process::Command::new("readelf").arg("-rW").arg(so).output().expect("run readelf (binutils)");
    String::from_utf8_lossy(&out.stdout).contains("R_X86_64_TLSDESC")
}

/// x86_64 TLS descriptors (`-mtls-dialect=gnu2`, GCC's `R_X86_64_TLSDESC`) of variables in
/// dynamic TLS blocks: the library's own (`tls.c`, and `tls_regs.c` with values live in
/// integer and vector registers across the accesses, which the resolver must preserve: the
/// compiler assumes it changes only `rax`), another mmkit-mapped library's, and one of a
/// library glibc loaded (its module id). Each thread gets its own copy, the first access of a
/// thread allocating it, and the answers are glibc's. mmkit refused them ("x86_64 TLS
/// descriptors of a dynamic TLS block"), where glibc's `dlopen` loads them.
#[cfg(target_arch = "x86_64")]
#[test]
fn tls_descriptors_of_dynamic_blocks_answer_like_glibc() {
    if !host_cc() {
        eprintln!("skipping: x86_64 fixtures");
        return;
    }
    let gnu2 = "-mtls-dialect=gnu2";
    // The library's own block.
    let tls = build("gnu2", "tls.c", "fxtls", &[gnu2]);
    assert!(has_tlsdesc(&tls), "gcc emitted no TLS descriptor");
    let ours = open(tls.as_path());
    let oracle = Dl::open(&tls);
    assert_eq!(call(&ours, "fx_tls_bump", &[1]), oracle.call("fx_tls_bump", &[1]));
    assert_eq!(call(&ours, "fx_tls_bump", &[10]), 16);
    assert_eq!(call(&ours, "fx_tls_local_count", &[]), 2);
    let here = call(&ours, "fx_tls_addr", &[]);
    let (first, addr) = std::thread::scope(|s| {
        s.spawn(|| (call(&ours, "fx_tls_bump", &[100]), call(&ours, "fx_tls_addr", &[]))).join().unwrap()
    });
    assert_eq!(first, 105, "a new thread starts from the template");
    assert_ne!(addr, here, "threads share a TLS block");
    assert_eq!(call(&ours, "fx_tls_bump", &[0]), 16);
    // Registers live across the accesses, on each thread's first access and after.
    let regs = build("gnu2", "tls_regs.c", "fxtlsregs", &[gnu2]);
    assert!(has_tlsdesc(&regs));
    let ours = open(regs.as_path());
    let oracle = Dl::open(&regs);
    let glibcs = oracle.addr("fx_tls_mix") as u64;
    let args = [3i64, -7, 11, 5, 13, -2];
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for round in 0..3 {
                    let a = args.map(|x| x + round);
                    assert_eq!(call(&ours, "fx_tls_mix", &a), call_addr(glibcs, &a), "round {round}");
                }
            });
        }
    });
    // Another library's variable: mapped by mmkit (found beside the user), then glibc's.
    for (variant, glibc_first) in [("gnu2-mmkit", false), ("gnu2-glibc", true)] {
        let def = build(variant, "tlsdef.c", "fxtlsdef", &["-Wl,-soname,libfxtlsdef.so", gnu2]);
        let dir = format!("-L{}", def.parent().unwrap().display());
        let user = build(variant, "tlsuse.c", "fxtlsuse", &[&dir, "-lfxtlsdef", "-Wl,-rpath,$ORIGIN", gnu2]);
        assert!(has_tlsdesc(&user));
        let theirs = glibc_first.then(|| Dl::open(&def));
        let ours = open(user.as_path());
        assert!(ours.dependencies().iter().any(|(n, by_mmkit)| n == "libfxtlsdef.so" && *by_mmkit != glibc_first));
        assert_eq!(call(&ours, "fx_use_get", &[]), 7, "{variant}");
        assert_eq!(call(&ours, "fx_use_set", &[11]), 11);
        if let Some(theirs) = &theirs {
            assert_eq!(call(&ours, "fx_use_addr", &[]), theirs.call("fx_def_addr", &[]), "{variant}");
            assert_eq!(theirs.call("fx_def_get", &[]), 11);
        }
        let main_addr = call(&ours, "fx_use_addr", &[]);
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                let initial = call(&ours, "fx_use_get", &[]);
                call(&ours, "fx_use_set", &[100]);
                (initial, call(&ours, "fx_use_get", &[]), call(&ours, "fx_use_addr", &[]))
            })
            .join()
            .unwrap()
        });
        assert_eq!((seen.0, seen.1), (7, 100), "{variant}");
        assert_ne!(seen.2, main_addr, "{variant}: per-thread addresses");
        assert_eq!(call(&ours, "fx_use_get", &[]), 11, "{variant}: other threads left this one's copy alone");
    }
}

#[test]
fn libm_copy_with_its_ifuncs_answers_like_glibcs_copy() {
    // libm's IFUNC resolvers pick FMA/AVX2 variants from glibc's CPU features: mmkit's copy
    // must pick the same ones (bit-identical answers).
    same_answers_as_glibc("libm_copy_with_its_ifuncs_answers_like_glibcs_copy", "libm.so.6", |l| {
        type F1 = extern "C" fn(f64) -> f64;
        type F2 = extern "C" fn(f64, f64) -> f64;
        let mut out = String::new();
        for name in ["sin", "cos", "tan", "exp", "log", "log2", "atan", "expm1", "cbrt", "lgamma", "erf", "sinf"] {
            if name == "sinf" {
                type Ff = extern "C" fn(f32) -> f32;
                // SAFETY: sinf's signature.
                let f = unsafe { func::<Ff>(l, name) };
                out += &format!("{name} {:08x}; ", f(0.7f32).to_bits());
                continue;
            }
            // SAFETY: libm's double -> double signatures.
            let f = unsafe { func::<F1>(l, name) };
            let bits: Vec<String> =
                [0.3, 1.7, 12.5, -3.25].iter().map(|&x| format!("{:016x}", f(x).to_bits())).collect();
            out += &format!("{name} {}; ", bits.join(","));
        }
        for name in ["pow", "atan2", "fmod", "hypot"] {
            // SAFETY: libm's (double, double) -> double signatures.
            let f = unsafe { func::<F2>(l, name) };
            out += &format!("{name} {:016x}; ", f(2.5, 1.3).to_bits());
        }
        out
    });
}

/// Mappings, file descriptors and threads of the process, from /proc/self.
fn process_counts() -> (usize, usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    (maps, fds, threads)
}

/// Real libraries without `DF_1_NODELETE`, loaded, called and unloaded again and again (from
/// a file and an APK entry): their finalizers run and they leave no mapping, file descriptor
/// or thread behind (libuv's destructor joins the thread pool its work started).
#[test]
fn real_libraries_load_and_unload_without_leaving_anything() {
    let test = "real_libraries_load_and_unload_without_leaving_anything";
    if !x86_64_host(test) {
        return;
    }
    if !in_fresh_process(test) {
        return;
    }
    let libs = [
        ("libjansson.so.4", "jansson_version_str"),
        ("libyaml-0.so.2", "yaml_get_version_string"),
        ("libpcre2-8.so.0", "pcre2_maketables_8"),
        ("libevent-2.1.so.7", "event_get_version"),
        ("libuv.so.1", "uv_version_string"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut sources = Vec::new();
    for (soname, f) in libs {
        let Some(path) = system_lib(soname) else { return };
        let copy = dir.path().join(soname);
        std::fs::copy(&path, &copy).unwrap();
        let apk = dir.path().join(format!("{soname}.apk"));
        let entry = format!("lib/x86_64/{soname}");
        write_zip(&apk, &[(&entry, &std::fs::read(&copy).unwrap(), page_u16())]);
        sources.push((Source::path(&copy), f));
        sources.push((Source::zip_entry(&apk, &entry), f));
    }
    type Work =
        extern "C" fn(*mut c_void, *mut c_void, extern "C" fn(*mut c_void), extern "C" fn(*mut c_void, c_int)) -> c_int;
    type Ptr = extern "C" fn(*mut c_void) -> *const c_void;
    let round = || {
        for (source, f) in &sources {
            let lib = open(source.clone());
            // SAFETY: each function takes at most one pointer (pcre2_maketables_8 a NULL general
            // context: a table from malloc, freed below) and returns a pointer.
            let p = unsafe { lib.function::<Ptr>(f) }.unwrap()(std::ptr::null_mut());
            assert!(!p.is_null(), "{f}");
            if *f == "pcre2_maketables_8" {
                // SAFETY: pcre2 allocated it with malloc.
                unsafe { libc::free(p as *mut c_void) };
            }
            if *f == "uv_version_string" {
                // Start libuv's thread pool: work on the default loop.
                // SAFETY: libuv's signatures; the request outlives the loop run.
                unsafe {
                    let default_loop = lib.function::<extern "C" fn() -> *mut c_void>("uv_default_loop").unwrap()();
                    let size = lib.function::<extern "C" fn(c_int) -> usize>("uv_req_size").unwrap()(7);
                    let sum = std::sync::atomic::AtomicU64::new(0);
                    let mut req = vec![0u64; size.div_ceil(8)];
                    req[0] = &sum as *const _ as u64;
                    let queue = lib.function::<Work>("uv_queue_work").unwrap();
                    assert_eq!(queue(default_loop, req.as_mut_ptr().cast(), uv_work, uv_after_work), 0);
                    let run = lib.function::<extern "C" fn(*mut c_void, c_int) -> c_int>("uv_run").unwrap();
                    assert_eq!(run(default_loop, 0), 0);
                    assert_eq!(sum.load(std::sync::atomic::Ordering::SeqCst), 11);
                    lib.function::<extern "C" fn(*mut c_void) -> c_int>("uv_loop_close").unwrap()(default_loop);
                }
            }
        }
    };
    round();
    let after_one = process_counts();
    for _ in 0..20 {
        round();
    }
    assert_eq!(process_counts(), after_one, "(maps, fds, threads) after 21 rounds vs after 1");
}

/// `DT_INIT` and `DT_FINI` beside `.init_array`/`.fini_array` with priorities run in glibc's
/// order: `DT_INIT`, the init array; at unload the fini array backwards, then `DT_FINI`.
#[test]
fn dt_init_and_dt_fini_run_around_the_arrays_as_under_glibc() {
    let test = "dt_init_and_dt_fini_run_around_the_arrays_as_under_glibc";
    let log = std::env::temp_dir().join(format!("mmkit-initfini-{}", std::process::id()));
    if std::env::var_os("FX_INITFINI_LOG").is_none() {
        let _ = std::fs::remove_file(&log);
        in_fresh_process_with(test, &[("FX_INITFINI_LOG", log.to_str().unwrap())]);
        let _ = std::fs::remove_file(&log);
        return;
    }
    if !in_fresh_process(test) {
        return;
    }
    let log = PathBuf::from(std::env::var_os("FX_INITFINI_LOG").unwrap());
    let so = build("initfini", "initfini.c", "fxinitfini", &["-Wl,-init,fx_init_fn", "-Wl,-fini,fx_fini_fn"]);
    let take = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::write(&log, b"").unwrap();
        text
    };
    take();
    let ours = open(so.as_path());
    assert_eq!(call(&ours, "fx_initfini_loaded", &[]), 1);
    drop(ours);
    let mmkit = take();
    let oracle = Dl::open(&so);
    drop(oracle);
    let glibc = take();
    assert_eq!(glibc, "IabxyF", "glibc's order");
    assert_eq!(mmkit, glibc);
}

/// Link layouts the usual fixtures do not have, each called like glibc's copy: SysV hash only
/// (no `DT_GNU_HASH`), no separate code segment, gold's layout, 2 MiB segment alignment,
/// a stripped library, and a 1 GiB `.bss`.
#[test]
fn odd_link_layouts_answer_like_glibc() {
    let mut variants: Vec<(&str, Vec<&str>)> = vec![
        ("sysv-hash", vec!["-Wl,--hash-style=sysv"]),
        ("noseparate", vec!["-Wl,-z,noseparate-code"]),
        ("page2m", vec!["-Wl,-z,max-page-size=0x200000", "-Wl,-z,separate-code"]),
        ("stripped", vec!["-s"]),
    ];
    if host_cc() && Path::new("/usr/bin/ld.gold").exists() {
        variants.push(("gold64k", vec!["-fuse-ld=gold", "-Wl,-z,max-page-size=65536"]));
    }
    for (variant, flags) in &variants {
        let so = build(variant, "basic.c", "fxbasic", flags);
        let ours = open(so.as_path());
        let oracle = Dl::open(&so);
        for (f, args) in
            [("fx_apply", &[2, 6, 7][..]), ("fx_format_len", &[12345]), ("fx_name_len", &[3]), ("fx_weak_is_null", &[])]
        {
            assert_eq!(call(&ours, f, args), oracle.call(f, args), "{variant}: {f}");
        }
        ours.verify().unwrap();
    }
    let big = build("bigbss", "bigbss.c", "fxbigbss", &[]);
    let ours = open(big.as_path());
    let oracle = Dl::open(&big);
    assert_eq!(call(&ours, "fx_big_size", &[]), (1 << 30) + 12345);
    for (i, v) in [(0, 3), (0, 4), ((1 << 30) + 12344, 5), (1 << 29, 7), ((1 << 30) + 12345, 1)] {
        assert_eq!(call(&ours, "fx_big_add", &[i, v]), oracle.call("fx_big_add", &[i, v]), "1 GiB .bss at {i}");
    }
    ours.verify().unwrap();
}

/// A library `patchelf` edited (as auditwheel, Nix and conda edit them: a longer `DT_RUNPATH`,
/// a new `DT_SONAME`, an added `DT_NEEDED`) keeps its grown `.dynstr` in a new writable
/// `PT_LOAD`, and glibc loads it. mmkit-elf refused it ("the table at 0x5160 lies in a writable
/// segment"): it lends `.dynstr` out only from pages relocation never writes. It keeps a copy
/// of such a table now, and the edited names work: the added dependency is found through the
/// new search path and binds the library's call, as glibc's copy of the same file does.
#[test]
fn a_library_edited_by_patchelf_loads_as_with_glibc() {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let dep = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let user = build("which-user-unlinked", "which.c", "fxwhichuser", &["-DUSER"]);
    let dir = tempfile::tempdir().unwrap();
    let deps = dir.path().join("a-search-directory-with-a-name-longer-than-the-library-had-room-for");
    std::fs::create_dir(&deps).unwrap();
    replace_with_copy(&dep, &deps.join("libfxwhich.so"));
    let edited = dir.path().join("libfxpatched.so");
    replace_with_copy(&user, &edited);
    let soname = "libfxpatched-under-a-new-and-much-longer-soname.so";
    // One edit a run, as users run it (patchelf 0.14 mixes the names up when given all three).
    let deps_arg = deps.display().to_string();
    for edit in [["--add-needed", "libfxwhich.so"], ["--set-soname", soname], ["--set-rpath", &deps_arg]] {
        match std::process::Command::new("patchelf").args(edit).arg(&edited).status() {
            Ok(s) if s.success() => {}
            other => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "patchelf: {other:?} (scripts/test installs it)");
                eprintln!("skipping: patchelf is not here ({other:?})");
                return;
            }
        }
    }
    // What patchelf made: .dynstr in a writable segment (else this test proves nothing).
    let bytes = std::fs::read(&edited).unwrap();
    let file = ElfFile64::<object::Endianness>::parse(&*bytes).unwrap();
    let (e, phdrs) = (file.endian(), file.elf_program_headers());
    let strtab = dynamic_entries(&bytes).into_iter().find(|&(t, _, _)| t == u64::from(object::elf::DT_STRTAB));
    let strtab = strtab.expect("DT_STRTAB").1;
    let holder = phdrs
        .iter()
        .find(|p| p.p_type(e) == object::elf::PT_LOAD && (p.p_vaddr(e)..p.p_vaddr(e) + p.p_memsz(e)).contains(&strtab))
        .expect("a PT_LOAD holds .dynstr");
    assert_ne!(holder.p_flags(e) & object::elf::PF_W, 0, "patchelf left .dynstr in a writable segment");

    let oracle = Dl::open(&edited);
    let ours = open(edited.as_path());
    assert_eq!(oracle.call("fx_user_which", &[]), 2, "glibc's answer");
    assert_eq!(call(&ours, "fx_user_which", &[]), 2);
    assert_eq!(ours.soname(), Some(soname));
    assert_eq!(ours.needed(), ["libfxwhich.so"]);
}

/// An underlinked system library: Debian's libtheoraenc calls libtheoradec's `th_comment_*`
/// without needing libtheoradec (ffmpeg's libavcodec needs both). glibc's `dlopen` of a library
/// that needs both binds those calls in the load's scope, where libtheoradec is; the system
/// linker given libtheoraenc alone cannot ("undefined symbol: th_comment_query_count"), and
/// mmkit-elf, which hands system dependencies to it one by one, failed the whole load. Such a
/// dependency is mapped by mmkit-elf in the load's group now, and binds as glibc binds it.
#[test]
fn an_underlinked_system_library_binds_in_the_loads_scope_as_with_glibc() {
    let test = "an_underlinked_system_library_binds_in_the_loads_scope_as_with_glibc";
    if !x86_64_host(test) {
        return;
    }
    let (Some(enc), Some(dec)) = (system_lib("libtheoraenc.so.1"), system_lib("libtheoradec.so.1")) else { return };
    if !in_fresh_process(test) {
        return;
    }
    let user = build("theora", "theorause.c", "fxtheorause", &[enc.to_str().unwrap(), dec.to_str().unwrap()]);
    // The system linker alone cannot load libtheoraenc (else this test proves nothing).
    let c_enc = std::ffi::CString::new(enc.to_str().unwrap()).unwrap();
    // SAFETY: dlopen of a system library; it fails before any of its code runs.
    let alone = unsafe { libc::dlopen(c_enc.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(alone.is_null(), "glibc loads libtheoraenc alone now: the test needs another underlinked library");
    // SAFETY: dlerror's message is copied at once.
    let why = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned();
    assert!(why.contains("undefined symbol: th_comment"), "{why}");

    let ours = open(user.as_path());
    let deps = ours.dependencies();
    assert!(deps.contains(&("libtheoraenc.so.1".to_owned(), true)), "mapped by mmkit-elf: {deps:?}");
    assert!(deps.contains(&("libtheoradec.so.1".to_owned(), false)), "loaded by glibc: {deps:?}");
    let got = call(&ours, "fx_theora_comment", &[]);
    ours.verify().unwrap();
    let oracle = Dl::open(&user);
    assert_eq!(got, oracle.call("fx_theora_comment", &[]));
    assert!(got > 0, "{got}");
}

/// A dependency only `ld.so.cache` knows (in a directory `/etc/ld.so.conf.d` adds: here
/// libfakeroot's; Debian's `/usr/local/lib/x86_64-linux-gnu`, CUDA's) is found under
/// `MapPrivately` as glibc's `dlopen` finds it, and refused as a system library under `Refuse`.
/// Both said "not found" (only `SystemLinker` asked glibc's search).
#[test]
fn a_dependency_only_ld_so_cache_knows_is_found_as_glibc_finds_it() {
    const TEST: &str = "a_dependency_only_ld_so_cache_knows_is_found_as_glibc_finds_it";
    let dir = "/usr/lib/x86_64-linux-gnu/libfakeroot";
    let listed = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{dir}/libfakeroot-0.so")));
    if !x86_64_host(TEST) || !listed {
        eprintln!("skipping {TEST}: no libfakeroot-0.so in ld.so.cache (package fakeroot)");
        return;
    }
    if !in_fresh_process(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("needcfg.c");
    std::fs::write(&src, "long nf(void) { return 5; }\n").unwrap();
    let out = tmp.path().join("libneedcfg.so");
    let built = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .args(["-Wl,--no-as-needed", &format!("-L{dir}"), "-lfakeroot-0"])
        .status()
        .unwrap();
    assert!(built.success());
    let private = Namespace::new("ld-so-cache-private").system_libraries(SystemPolicy::MapPrivately);
    // SAFETY: a fixture and libfakeroot (nothing of it is called).
    let ours = unsafe { private.open(Source::path(&out)) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "nf", &[]), 5);
    let refusing = Namespace::new("ld-so-cache-refuse").system_libraries(SystemPolicy::Refuse);
    // SAFETY: as above.
    let refused = unsafe { refusing.open(Source::path(&out)) }.map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains(&format!("{dir}/libfakeroot-0.so (from ld.so.cache) is a system library")), "{refused}");
    // Opened by its bare soname, as glibc's `dlopen("libfakeroot-0.so")` finds it.
    // SAFETY: libfakeroot; nothing of it is called.
    let bare = unsafe { private.open("libfakeroot-0.so") }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bare.source(), format!("{dir}/libfakeroot-0.so"));
    // SAFETY: as above.
    let refused = unsafe { refusing.open("libfakeroot-0.so") }.map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("(from ld.so.cache) is a system library"), "{refused}");
    assert_eq!(Dl::open(&out).call("nf", &[]), 5);
}
