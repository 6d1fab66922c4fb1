//! Identity and lifetime, as glibc's `dlopen`/`dlclose` have them: one copy per file per
//! namespace, diamonds and cycles loaded once, constructors dependencies first and destructors
//! in reverse, pins, and no growth over many load/unload rounds. glibc is the oracle: the same
//! calls on its copy give the same answers and the same constructor/destructor order.

mod common;

use common::*;
use mmkit_elf::{Library, Namespace, Source};
use std::path::{Path, PathBuf};

/// Builds graph.c as `libfxg<role>.so` in `variant`, needing the libraries in `needs` (in that
/// `DT_NEEDED` order) and calling their counters.
fn graph_lib(variant: &str, role: char, needs: &[char], extra: &[&str]) -> PathBuf {
    let dir = build(variant, "counter.c", "fxdirprobe", &[]).parent().unwrap().to_path_buf();
    let mut flags: Vec<String> = vec![format!("-DROLE={role}"), format!("-DROLE_CHAR='{role}'")];
    if !needs.is_empty() {
        let calls: Vec<String> = needs.iter().map(|n| format!("X({n})")).collect();
        flags.push(format!("-DCALLS={}", calls.join(" ")));
        flags.push(format!("-L{}", dir.display()));
        flags.push("-Wl,-rpath,$ORIGIN".into());
        flags.extend(needs.iter().map(|n| format!("-lfxg{n}")));
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    build(variant, "graph.c", &format!("fxg{role}"), &flags)
}

fn fresh_ns(name: &str) -> Namespace {
    Namespace::new(name)
}

fn ns_open(ns: &Namespace, path: &Path) -> Library {
    // SAFETY: test fixtures.
    unsafe { ns.open(path) }.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn opening_a_file_twice_shares_one_copy_like_glibc() {
    let path = lib("counter.c", "fxcounter");
    let ns = fresh_ns("twice");
    let first = ns_open(&ns, &path);
    let second = ns_open(&ns, &path);
    let ours: Vec<i64> =
        vec![call(&first, "fx_next", &[]), call(&second, "fx_next", &[]), call(&first, "fx_next", &[])];
    assert_eq!(first.span(), second.span());
    assert_eq!(ns.loaded_count(), 1);
    let a = Dl::open(&path);
    let b = Dl::open(&path);
    let theirs = vec![a.call("fx_next", &[]), b.call("fx_next", &[]), a.call("fx_next", &[])];
    assert_eq!(ours, theirs);
    assert_eq!(ours, [1, 2, 3]);
    drop(first);
    assert_eq!(ns.loaded_count(), 1, "a handle is left");
    assert_eq!(call(&second, "fx_next", &[]), 4);
    drop(second);
    assert_eq!(ns.loaded_count(), 0, "the last handle unloads it");
    // Another namespace has its own copy.
    let other = fresh_ns("other");
    let again = ns_open(&other, &path);
    assert_eq!(call(&again, "fx_next", &[]), 1);
}

#[test]
fn a_dependency_is_found_by_the_soname_of_a_loaded_library_like_glibc() {
    let c = graph_lib("soname", 'c', &[], &["-Wl,-soname,libfxgc.so"]);
    let b = graph_lib("soname", 'b', &['c'], &[]);
    // b alone in a directory: no search finds its DT_NEEDED libfxgc.so.
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("libfxgb.so");
    std::fs::copy(&b, &lone).unwrap();
    let ns = fresh_ns("soname");
    // SAFETY: test fixtures.
    assert!(unsafe { ns.open(lone.as_path()) }.is_err(), "libfxgc.so is nowhere to be found yet");
    assert_eq!(ns.loaded_count(), 0);
    // c loaded from memory (no directory a search could find it in), then b: its dependency is
    // the library loaded with that soname, as glibc and bionic match DT_NEEDED names against
    // the sonames of the libraries loaded (it was "not found").
    // SAFETY: test fixtures.
    let c_lib = unsafe { ns.open(Source::memory("libfxgc.so", std::fs::read(&c).unwrap())) }.unwrap();
    let b_lib = ns_open(&ns, &lone);
    assert_eq!(ns.loaded_count(), 2, "c is not loaded twice");
    let ours = [call(&c_lib, "fx_c_next", &[]), call(&b_lib, "fx_b_next_all", &[]), call(&c_lib, "fx_c_next", &[])];
    // dlopen of the bare soname hands out the same copy too.
    // SAFETY: test fixtures.
    let by_name = unsafe { ns.open("libfxgc.so") }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_name.span(), c_lib.span());
    assert_eq!(call(&by_name, "fx_c_next", &[]), 4);
    let theirs = {
        let c = Dl::open(&c);
        let b = Dl::open(&lone);
        [c.call("fx_c_next", &[]), b.call("fx_b_next_all", &[]), c.call("fx_c_next", &[])]
    };
    assert_eq!(ours, theirs);
    assert_eq!(ours, [1, 2, 3]);
    drop((b_lib, by_name, c_lib));
    assert_eq!(ns.loaded_count(), 0);
}

/// A library loaded from memory or a descriptor has no directory, so no `$ORIGIN`: its
/// `DT_RUNPATH` entries naming it are dropped, as glibc drops them. `$ORIGIN` became "", and
/// the dependency was loaded from the current directory (`$ORIGIN/../lib` from `/lib`).
#[test]
fn origin_of_a_library_from_memory_or_a_descriptor_is_not_the_current_directory() {
    let test = "origin_of_a_library_from_memory_or_a_descriptor_is_not_the_current_directory";
    let c = graph_lib("origin-memory", 'c', &[], &[]);
    let b = graph_lib("origin-memory", 'b', &['c'], &[]); // DT_RUNPATH $ORIGIN
                                                          // Changes the current directory: in a child process of its own.
    if !in_fresh_process(test) {
        return;
    }
    std::env::set_current_dir(c.parent().unwrap()).unwrap();
    let bytes = std::fs::read(&b).unwrap();
    let file = std::fs::File::open(&b).unwrap();
    for source in [Source::memory("libfxgb.so", bytes.clone()), Source::fd(&file, 0, "libfxgb.so").unwrap()] {
        let ns = Namespace::isolated("origin-memory");
        // SAFETY: test fixtures (the load fails before running any code).
        let err = unsafe { ns.open(source.clone()) }.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), mmkit_elf::ErrorKind::DependencyNotFound, "{source}: {err}");
        assert!(err.to_string().contains("libfxgc.so"), "{err}");
        assert_eq!(ns.loaded_count(), 0);
    }
    // glibc: the same bytes in a memfd, opened as /proc/self/fd/N ($ORIGIN is /proc/self/fd).
    let memfd = rustix::fs::memfd_create("libfxgb.so", rustix::fs::MemfdFlags::empty()).unwrap();
    std::fs::write(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&memfd)), &bytes).unwrap();
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&memfd))).unwrap();
    // SAFETY: a test fixture; the load fails before running any code.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(handle.is_null(), "glibc found libfxgc.so in the current directory too");
}

/// A library's `dlopen` of a path whose file was removed since the same path was opened (an
/// unlinked temporary plug-in) answers the loaded library, as glibc's matches the name before
/// it opens a file; mmkit opened the file first and failed with ENOENT.
#[test]
fn dlopen_of_a_path_whose_file_was_removed_answers_the_loaded_library_as_with_glibc() {
    let opener = lib("reopen.c", "fxreopen");
    let plugin = lib("basic.c", "fxbasic");
    let dir = tempfile::tempdir().unwrap();
    let ours = open(opener.as_path());
    let oracle = Dl::open(&opener);
    let answer = |name: &str, f: &dyn Fn(i64) -> i64| {
        let copy = dir.path().join(name);
        std::fs::copy(&plugin, &copy).unwrap();
        let c = std::ffi::CString::new(copy.to_str().unwrap()).unwrap();
        f(c.as_ptr() as i64)
    };
    let theirs = answer("libfxglibcs.so", &|p| oracle.call("fx_reopen_unlinked", &[p]));
    assert_eq!(theirs, 11, "glibc's copy");
    assert_eq!(answer("libfxmmkits.so", &|p| call(&ours, "fx_reopen_unlinked", &[p])), theirs);
}

/// Runs the diamond (a needs `order`, b needs c) through mmkit and through glibc; returns both
/// (counter answers, constructor/destructor log).
fn diamond(variant: &str, order: &[char]) -> [(Vec<i64>, String); 2] {
    graph_lib(variant, 'c', &[], &[]);
    graph_lib(variant, 'b', &['c'], &[]);
    let a = graph_lib(variant, 'a', order, &[]);
    take_log();
    let ns = fresh_ns(variant);
    let ours = {
        let lib = ns_open(&ns, &a);
        assert_eq!(ns.loaded_count(), 3, "c is loaded once");
        let deps = lib.loaded_dependencies();
        assert_eq!(deps.len(), 2);
        let got =
            vec![call(&lib, "fx_a_next_all", &[]), call(&lib, "fx_b_next_all", &[]), call(&lib, "fx_a_next_all", &[])];
        drop(deps);
        got
    };
    assert_eq!(ns.loaded_count(), 0);
    let our_log = take_log();
    let theirs = {
        let lib = Dl::open(&a);
        vec![lib.call("fx_a_next_all", &[]), lib.call("fx_b_next_all", &[]), lib.call("fx_a_next_all", &[])]
    };
    [(ours, our_log), (theirs, take_log())]
}

#[test]
fn diamond_c_first_loads_c_once_and_orders_like_glibc() {
    if !in_fresh_process("diamond_c_first_loads_c_once_and_orders_like_glibc") {
        return;
    }
    let [ours, theirs] = diamond("diamond-cb", &['c', 'b']);
    assert_eq!(ours, theirs);
    assert_eq!(ours.0, [101, 2, 302]);
    assert_eq!(ours.1, "+c+b+a-a-b-c");
}

#[test]
fn diamond_b_first_loads_c_once_and_orders_like_glibc() {
    if !in_fresh_process("diamond_b_first_loads_c_once_and_orders_like_glibc") {
        return;
    }
    let [ours, theirs] = diamond("diamond-bc", &['b', 'c']);
    assert_eq!(ours, theirs);
    assert_eq!(ours.1, "+c+b+a-a-b-c");
}

#[test]
fn mutually_dependent_libraries_load_once_each_and_unload() {
    if !in_fresh_process("mutually_dependent_libraries_load_once_each_and_unload") {
        return;
    }
    // b is built first without a, then a against b, then b again against a.
    let variant = "cycle";
    let first_b = graph_lib("cycle-seed", 'b', &[], &[]);
    let dir = build(variant, "counter.c", "fxdirprobe", &[]).parent().unwrap().to_path_buf();
    replace_with_copy(&first_b, &dir.join("libfxgb.so"));
    let a = {
        let flags = [
            "-DROLE=a".to_string(),
            "-DROLE_CHAR='a'".into(),
            "-DCALLS=X(b)".into(),
            format!("-L{}", dir.display()),
            "-Wl,-rpath,$ORIGIN".into(),
            "-lfxgb".into(),
        ];
        build(variant, "graph.c", "fxga", &flags.iter().map(String::as_str).collect::<Vec<_>>())
    };
    std::fs::remove_file(dir.join("libfxgb.so")).unwrap();
    let b = graph_lib(variant, 'b', &['a'], &[]);
    assert!(b.exists());
    take_log();
    let ns = fresh_ns("cycle");
    let ours = {
        let lib = ns_open(&ns, &a);
        assert_eq!(ns.loaded_count(), 2);
        vec![call(&lib, "fx_a_next_all", &[]), call(&lib, "fx_b_next_all", &[]), call(&lib, "fx_a_next_all", &[])]
    };
    assert_eq!(ns.loaded_count(), 0, "a cycle is unloaded as a whole");
    let our_log = take_log();
    let theirs = {
        let lib = Dl::open(&a);
        vec![lib.call("fx_a_next_all", &[]), lib.call("fx_b_next_all", &[]), lib.call("fx_a_next_all", &[])]
    };
    assert_eq!(ours, theirs);
    assert_eq!(ours, [1, 1, 2]);
    // Constructors as glibc runs them (the root last); destructors in the reverse of that
    // (glibc's own cycle sort finalizes b first: "+b+a-b-a").
    let their_log = take_log();
    assert_eq!(our_log[..4], their_log[..4], "constructor order");
    assert_eq!(our_log, "+b+a-a-b");
}

#[test]
fn gnu_unique_definitions_pin_a_library_as_glibc_does() {
    // std::to_string's digit table is an STB_GNU_UNIQUE object.
    let path = build("default", "cxxuse.cpp", "fxcxx", &["-lstdc++"]);
    let ns = fresh_ns("unique");
    let lib = ns_open(&ns, &path);
    assert!(lib.is_pinned());
    drop(lib);
    assert_eq!(ns.loaded_count(), 1);
    // glibc keeps its copy (of another file, so that the two cannot be confused) after dlclose.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libfxcxxcopy.so");
    std::fs::copy(&path, &copy).unwrap();
    drop(Dl::open(&copy));
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains(&*copy.to_string_lossy()), "glibc pins it too");
}

/// glibc runs the finalizers of every library still loaded when the process exits (`_dl_fini`
/// from `exit`): pinned ones (`-z nodelete`) and those whose handles were never closed, the last
/// initialized first. mmkit-elf ran none (a `-z nodelete` plug-in built for gcov wrote no
/// `.gcda` file). A child process loads a → b (both `-z nodelete`), then c (its handle
/// leaked), and exits; glibc's `dlopen` in another child is the oracle of what the fixtures log.
#[test]
fn finalizers_of_libraries_still_loaded_run_at_exit_as_with_glibc() {
    let test = "finalizers_of_libraries_still_loaded_run_at_exit_as_with_glibc";
    // b: a's dependency, built before a.
    graph_lib("atexit", 'b', &[], &["-Wl,-z,nodelete"]);
    let a = graph_lib("atexit", 'a', &['b'], &["-Wl,-z,nodelete"]);
    let c = graph_lib("atexit", 'c', &[], &[]);
    if let Ok(how) = std::env::var("MMKIT_ELF_AT_EXIT") {
        // The child: load (c first or last), then exit through `exit` (the test harness
        // returns from `main`).
        let (loader, order) = how.split_once(':').unwrap();
        for lib in order.chars() {
            let (path, f, want) = if lib == 'a' { (&a, "fx_a_next_all", 1) } else { (&c, "fx_c_next", 1) };
            if loader == "mmkit" {
                let l = open(path.as_path());
                assert_eq!(call(&l, f, &[]), want);
                std::mem::forget(l);
            } else {
                let l = Dl::open(path);
                assert_eq!(l.call(f, &[]), want);
                std::mem::forget(l);
            }
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_of = |how: &str| {
        let log = dir.path().join(how.replace(':', "-"));
        let out = self_command()
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("MMKIT_ELF_AT_EXIT", how)
            .env("MMKIT_FX_LOG", &log)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "{how} child ({:?}):\n{text}", out.status);
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    // glibc's `_dl_fini` order: the load order, each library before what it needs (not the
    // reverse of the initialization order, which `dlclose` follows).
    for (order, glibc) in [("ac", "+b+a+c-a-b-c"), ("ca", "+c+b+a-c-a-b")] {
        assert_eq!(log_of(&format!("glibc:{order}")), glibc, "glibc's order");
        assert_eq!(log_of(&format!("mmkit:{order}")), glibc, "mmkit-elf's log against glibc's ({order})");
    }
}

/// Two `RTLD_LOCAL` copies of a C++ library bind its `STB_GNU_UNIQUE` objects (inline and
/// template static data members, an inline function's static) to one definition, the first
/// bound, as glibc's `do_lookup_unique` does; each copy bound its own.
#[test]
fn gnu_unique_definitions_are_one_object_across_local_libraries_as_with_glibc() {
    let path = build("unique", "unique.cpp", "fxunique", &["-std=c++17"]);
    let dir = tempfile::tempdir().unwrap();
    let copies: Vec<PathBuf> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| {
            let copy = dir.path().join(format!("libfxunique{n}.so"));
            std::fs::copy(&path, &copy).unwrap();
            copy
        })
        .collect();
    let ns = fresh_ns("unique-local");
    let (a, b) = (ns_open(&ns, &copies[0]), ns_open(&ns, &copies[1]));
    let ours = [
        call(&a, "fx_unique_bump", &[]),
        call(&b, "fx_unique_bump", &[]),
        call(&a, "fx_unique_sum", &[]),
        i64::from(call(&a, "fx_unique_addr", &[]) == call(&b, "fx_unique_addr", &[])),
    ];
    let (c, d) = (Dl::open(&copies[2]), Dl::open(&copies[3]));
    let theirs = [
        c.call("fx_unique_bump", &[]),
        d.call("fx_unique_bump", &[]),
        c.call("fx_unique_sum", &[]),
        i64::from(c.call("fx_unique_addr", &[]) == d.call("fx_unique_addr", &[])),
    ];
    assert_eq!(theirs, [101, 102, 102 + 7 + 1002, 1], "glibc's copies");
    assert_eq!(ours, theirs);
    // Another namespace keeps its own objects, as a glibc `dlmopen` namespace has its own table.
    let other_ns = fresh_ns("unique-other");
    let e = ns_open(&other_ns, &copies[0]);
    assert_eq!(call(&e, "fx_unique_bump", &[]), 101, "another namespace's copy");
    assert_ne!(call(&e, "fx_unique_addr", &[]), call(&a, "fx_unique_addr", &[]));
}

#[test]
fn nodelete_libraries_stay_loaded() {
    let path = build("nodelete", "counter.c", "fxnodelete", &["-Wl,-z,nodelete"]);
    let ns = fresh_ns("nodelete");
    let lib = ns_open(&ns, &path);
    assert!(lib.is_pinned());
    assert_eq!(call(&lib, "fx_next", &[]), 1);
    drop(lib);
    assert_eq!(ns.loaded_count(), 1, "DF_1_NODELETE keeps it");
    let again = ns_open(&ns, &path);
    assert_eq!(call(&again, "fx_next", &[]), 2, "the same copy, its state kept");
    // RTLD_NODELETE-style: a library pinned by its user.
    let counter = common::lib("counter.c", "fxcounter");
    let plain = ns_open(&ns, &counter);
    assert!(!plain.is_pinned());
    plain.pin();
    assert_eq!(call(&plain, "fx_next", &[]), 1);
    drop(plain);
    assert_eq!(call(&ns_open(&ns, &counter), "fx_next", &[]), 2, "kept");
}

fn proc_status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn counts() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
    (fds, maps)
}

#[test]
fn ten_thousand_rounds_of_a_cxx_library_leave_nothing_behind() {
    if !in_fresh_process("ten_thousand_rounds_of_a_cxx_library_leave_nothing_behind") {
        return;
    }
    let so = build("default", "cxxloop.cpp", "fxcxxloop", &["-lstdc++"]);
    let ns = fresh_ns("rounds");
    let round = || {
        let lib = ns_open(&ns, &so);
        assert!(!lib.is_pinned());
        assert_eq!(call(&lib, "fx_loop_catch", &[12]), -12);
    };
    for _ in 0..200 {
        round(); // warm: libstdc++ loaded by glibc once, allocator pools grown
    }
    let (fds, maps) = counts();
    let rss = proc_status("VmRSS:");
    for _ in 0..10_000 {
        round();
    }
    assert_eq!(ns.loaded_count(), 0);
    let (fds_after, maps_after) = counts();
    let rss_after = proc_status("VmRSS:");
    assert_eq!(fds_after, fds, "file descriptors");
    assert_eq!(maps_after, maps, "mappings");
    assert!(rss_after < rss + 2048, "RSS grew from {rss} to {rss_after} KiB");
}

#[test]
fn a_pending_thread_local_destructor_keeps_its_library_loaded() {
    if !in_fresh_process("a_pending_thread_local_destructor_keeps_its_library_loaded") {
        return;
    }
    let so = build("default", "tlsdtor.cpp", "fxtlsdtor", &["-lstdc++"]);
    let ns = fresh_ns("tls-dtor");
    take_log();
    // Another thread touches the thread_local; the last handle goes while that thread lives.
    let lib = ns_open(&ns, &so);
    // SAFETY: fx_tl_fill is int64_t(int64_t).
    let f = *unsafe { lib.function::<extern "C" fn(i64) -> i64>("fx_tl_fill") }.unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        assert_eq!(f(1000), 1000);
        wait.recv().unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(lib);
    assert_eq!(ns.loaded_count(), 1, "the worker's destructor is pending");
    go.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(take_log(), "~N", "the destructor ran at thread exit");
    assert_eq!(ns.loaded_count(), 0, "then the library was unloaded");
    // The main thread's destructor runs at exit, after every handle is gone: the process must
    // exit cleanly (this child's status is checked), not crash in __call_tls_dtors.
    let lib = ns_open(&ns, &so);
    assert_eq!(call(&lib, "fx_tl_fill", &[7]), 7);
    drop(lib);
    assert_eq!(ns.loaded_count(), 1);
}

/// The pin a thread's pending `thread_local` destructor holds on its library is not a handle:
/// when the thread exits and the destructor has run, the library stays loaded for the handle
/// that is still open. The pin's release took a handle away: the library was unloaded under
/// the live handle, and the next call into it crashed.
#[test]
fn a_thread_local_destructor_that_ran_leaves_the_open_handle_loaded() {
    if !in_fresh_process("a_thread_local_destructor_that_ran_leaves_the_open_handle_loaded") {
        return;
    }
    let so = build("default", "tlsdtor.cpp", "fxtlsdtor", &["-lstdc++"]);
    let ns = fresh_ns("tls-dtor-kept");
    take_log();
    let lib = ns_open(&ns, &so);
    // SAFETY: fx_tl_fill is int64_t(int64_t).
    let f = *unsafe { lib.function::<extern "C" fn(i64) -> i64>("fx_tl_fill") }.unwrap();
    for round in 0..3 {
        std::thread::spawn(move || assert_eq!(f(100), 100)).join().unwrap();
        assert_eq!(take_log(), "~N", "round {round}: the destructor ran at thread exit");
        assert_eq!(ns.loaded_count(), 1, "round {round}: the open handle keeps the library loaded");
        assert_eq!(call(&lib, "fx_tl_fill", &[9]), 9);
    }
    drop(lib);
}

#[test]
fn eight_threads_load_one_copy_and_their_own_at_once() {
    // Every thread opens the shared counter library (one copy for all: the counter counts every
    // call of every thread) and a diamond of its own copies, 40 times.
    let shared = lib("counter.c", "fxcounter");
    graph_lib("threads-diamond", 'c', &[], &[]);
    graph_lib("threads-diamond", 'b', &['c'], &[]);
    let a = graph_lib("threads-diamond", 'a', &['c', 'b'], &[]);
    let ns = fresh_ns("threads");
    let keep = ns_open(&ns, &shared);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..40 {
                    let lib = ns_open(&ns, &shared);
                    assert!(call(&lib, "fx_next", &[]) >= 1);
                    let d = ns_open(&ns, &a);
                    assert!(call(&d, "fx_a_next_all", &[]) > 100);
                    assert!(ns.loaded_count() <= 4, "one copy of each");
                }
            });
        }
    });
    assert_eq!(call(&keep, "fx_next", &[]), 8 * 40 + 1);
    drop(keep);
    assert_eq!(ns.loaded_count(), 0);
}

#[test]
fn a_failed_load_leaves_nothing_loaded() {
    // a needs b (present) and libfxgmissing.so (absent): b is mapped, then everything goes.
    let variant = "failed-load";
    let b = graph_lib(variant, 'b', &[], &[]);
    let dir = b.parent().unwrap().to_path_buf();
    let missing = graph_lib("failed-load-gone", 'm', &[], &[]);
    replace_with_copy(&missing, &dir.join("libfxgm.so"));
    let a = graph_lib(variant, 'a', &['b', 'm'], &[]);
    std::fs::remove_file(dir.join("libfxgm.so")).unwrap();
    let ns = fresh_ns("failed");
    // SAFETY: test fixtures.
    let err = unsafe { ns.open(a.as_path()) }.unwrap_err();
    assert!(err.to_string().contains("libfxgm.so"), "{err}");
    assert_eq!(ns.loaded_count(), 0);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(!maps.contains(&*dir.join("libfxgb.so").to_string_lossy()), "b was unmapped");
}

/// The namespace, the libraries its constructor opens, and what it opened.
type Reenter = (Namespace, Vec<PathBuf>, Vec<Library>);

/// The state of `a_constructor_that_opens_libraries_does_not_deadlock`.
static REENTER: std::sync::Mutex<Option<Reenter>> = std::sync::Mutex::new(None);

/// Called by reenter.c's constructor: opens each library of [`REENTER`] in its namespace.
extern "C" fn reenter_hook() {
    let (ns, paths) = {
        let guard = REENTER.lock().unwrap();
        let (ns, paths, _) = guard.as_ref().expect("set by the test");
        (ns.clone(), paths.clone())
    };
    let opened: Vec<Library> = paths.iter().map(|p| ns_open(&ns, p)).collect();
    REENTER.lock().unwrap().as_mut().unwrap().2.extend(opened);
}

#[test]
fn a_constructor_that_opens_libraries_does_not_deadlock() {
    if !in_fresh_process("a_constructor_that_opens_libraries_does_not_deadlock") {
        return;
    }
    let hook = build("reenter", "inithook.c", "fxinithook", &[]);
    let dir = hook.parent().unwrap().to_path_buf();
    let reenter = build(
        "reenter",
        "reenter.c",
        "fxreenter",
        &[&format!("-L{}", dir.display()), "-Wl,-rpath,$ORIGIN", "-lfxinithook"],
    );
    let counter = lib("counter.c", "fxcounter");
    let ns = fresh_ns("reenter");
    // The constructor opens a new library, the hook library (loaded: shared) and the library
    // whose group is being initialized (handed out as it is, as glibc does).
    *REENTER.lock().unwrap() = Some((ns.clone(), vec![counter.clone(), hook.clone(), reenter.clone()], Vec::new()));
    let hook_lib = ns_open(&ns, &hook);
    call(&hook_lib, "fx_set_hook", &[reenter_hook as extern "C" fn() as usize as i64]);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker_ns = ns.clone();
    std::thread::spawn(move || {
        let lib = ns_open(&worker_ns, &reenter);
        tx.send(call(&lib, "fx_reenter_ran", &[])).unwrap();
        std::mem::forget(lib);
    });
    let ran = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("Namespace::open from a constructor deadlocked (no answer in 120 s)");
    assert_eq!(ran, 1);
    let (_, _, opened) = REENTER.lock().unwrap().take().unwrap();
    assert_eq!(opened.len(), 3);
    assert_eq!(call(&opened[0], "fx_next", &[]), 1, "the counter library opened by the constructor works");
    assert_eq!(opened[1].span(), hook_lib.span(), "the hook library is shared");
    assert_eq!(ns.loaded_count(), 3, "hook, reenter and counter, once each");
    // Another thread waits for a load in progress instead of seeing it half initialized:
    // covered by the 8-thread test; here, dropping everything unloads all but the forgotten.
    drop(opened);
    drop(hook_lib);
    assert_eq!(ns.loaded_count(), 2, "reenter (its handle is forgotten) and the hook it needs");
}

/// Builds libfxwhich.so in directories `which-1` (found through the user's `DT_RPATH` or
/// `DT_RUNPATH`) and `which-2` (in `LD_LIBRARY_PATH`), and the user with `tags`
/// (`--enable-new-dtags`: RUNPATH, `--disable-new-dtags`: RPATH); returns the user and the
/// `LD_LIBRARY_PATH` directory.
fn which_user(variant: &str, tags: &str) -> (PathBuf, String) {
    let one = build("which-1", "which.c", "fxwhich", &["-DWHICH=1"]);
    let two = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let one_dir = one.parent().unwrap().display().to_string();
    let user = build(
        variant,
        "which.c",
        "fxwhichuser",
        &["-DUSER", &format!("-L{one_dir}"), &format!("-Wl,{tags},-rpath,{one_dir}"), "-lfxwhich"],
    );
    (user, two.parent().unwrap().display().to_string())
}

/// In a child with `LD_LIBRARY_PATH` set: which copy mmkit and then glibc (each once per
/// process: glibc would reuse a loaded copy by name) bind the user of `variant` to.
fn which_copy(test: &str, variant: &str, tags: &str) -> Option<(i64, i64)> {
    let (user, ld_path) = which_user(variant, tags);
    if !in_fresh_process_with(test, &[("LD_LIBRARY_PATH", &ld_path)]) {
        return None;
    }
    let ns = fresh_ns(variant);
    let ours = call(&ns_open(&ns, &user), "fx_user_which", &[]);
    let theirs = Dl::open(&user).call("fx_user_which", &[]);
    Some((ours, theirs))
}

#[test]
fn dt_runpath_is_searched_after_ld_library_path_as_glibc_does() {
    let test = "dt_runpath_is_searched_after_ld_library_path_as_glibc_does";
    if let Some((ours, theirs)) = which_copy(test, "which-runpath", "--enable-new-dtags") {
        assert_eq!((ours, theirs), (2, 2), "LD_LIBRARY_PATH wins over DT_RUNPATH");
    }
}

#[test]
fn dt_rpath_is_searched_before_ld_library_path_as_glibc_does() {
    let test = "dt_rpath_is_searched_before_ld_library_path_as_glibc_does";
    if let Some((ours, theirs)) = which_copy(test, "which-rpath", "--disable-new-dtags") {
        assert_eq!((ours, theirs), (1, 1), "DT_RPATH wins over LD_LIBRARY_PATH");
    }
}

/// A library of another ELF class or machine in a searched directory (a 32-bit build in a
/// directory of `LD_LIBRARY_PATH`, an arm64 one on x86_64) is passed over, as glibc's
/// `open_verify` passes it over: the next directory's copy loads, in mmkit as in glibc; when
/// no directory has a usable one, the error says why each was skipped. It was found and failed
/// the load.
#[test]
fn a_library_for_another_machine_in_the_search_path_is_skipped_as_glibc_does() {
    let test = "a_library_for_another_machine_in_the_search_path_is_skipped_as_glibc_does";
    let one = build("which-1", "which.c", "fxwhich", &["-DWHICH=1"]);
    let two = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let one_dir = one.parent().unwrap().display().to_string();
    let user = build("which-plain", "which.c", "fxwhichuser", &["-DUSER", &format!("-L{one_dir}"), "-lfxwhich"]);
    // Copies of which-1 that say they are 32-bit, and built for another machine; written in
    // the parent and again in the child (same bytes, same place: the child needs the paths).
    let other = if cfg!(target_arch = "aarch64") { 62u16 } else { 183u16 }; // EM_X86_64, EM_AARCH64
    let root = one.parent().unwrap().parent().unwrap();
    let bytes = std::fs::read(&one).unwrap();
    let mut dirs = Vec::new();
    for (name, at, patch) in [("which-elf32", 4, vec![1u8]), ("which-othermachine", 18, other.to_le_bytes().to_vec())] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = bytes.clone();
        b[at..at + patch.len()].copy_from_slice(&patch);
        let tmp = dir.join(format!(".libfxwhich.so.{}", std::process::id()));
        std::fs::write(&tmp, b).unwrap();
        std::fs::rename(&tmp, dir.join("libfxwhich.so")).unwrap();
        dirs.push(dir.display().to_string());
    }
    // Nothing usable: the error names each file skipped and why.
    let ns = Namespace::isolated("skip-none").ld_library_path(false).search(&dirs);
    // SAFETY: test fixtures (the load fails before running any code).
    let err = unsafe { ns.open(user.as_path()) }.map(|_| ()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("skipped {}/libfxwhich.so: wrong ELF class: ELFCLASS32", dirs[0])), "{msg}");
    assert!(msg.contains(&format!("skipped {}/libfxwhich.so: built for machine", dirs[1])), "{msg}");
    // A bare soname opened directly is searched for the same way.
    // SAFETY: as above.
    let err = unsafe { ns.open("libfxwhich.so") }.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("wrong ELF class: ELFCLASS32"), "{err}");
    let ld_path = format!("{}:{}:{}", dirs[0], dirs[1], two.parent().unwrap().display());
    if !in_fresh_process_with(test, &[("LD_LIBRARY_PATH", &ld_path)]) {
        return;
    }
    let ours = ns_open(&fresh_ns("skip"), &user);
    assert_eq!(call(&ours, "fx_user_which", &[]), 2, "{:?}", ours.loaded_dependencies()[0].source());
    assert_eq!(Dl::open(&user).call("fx_user_which", &[]), 2, "glibc");
}

/// A name in a searched directory that is not a library file (a FIFO, a directory, a loop of
/// symbolic links) is passed over, and when nothing is found the error says what was there.
/// Regression: the error said only "No such file or directory".
#[test]
fn a_search_that_finds_only_special_files_says_what_it_found() {
    let one = build("which-1", "which.c", "fxwhich", &["-DWHICH=1"]);
    let one_dir = one.parent().unwrap().display().to_string();
    let user = build("which-plain", "which.c", "fxwhichuser", &["-DUSER", &format!("-L{one_dir}"), "-lfxwhich"]);
    let dir = tempfile::tempdir().unwrap();
    let (fifo, sub, lp) = (dir.path().join("f"), dir.path().join("d"), dir.path().join("l"));
    for d in [&fifo, &sub, &lp] {
        std::fs::create_dir_all(d).unwrap();
    }
    rustix::fs::mknodat(rustix::fs::CWD, fifo.join("libfxwhich.so"), rustix::fs::FileType::Fifo, 0o644.into(), 0)
        .unwrap();
    std::fs::create_dir(sub.join("libfxwhich.so")).unwrap();
    std::os::unix::fs::symlink("libfxwhich.so", lp.join("libfxwhich.so")).unwrap();
    let dirs = [&fifo, &sub, &lp].map(|d| d.display().to_string());
    let ns = Namespace::isolated("special-files").ld_library_path(false).search(&dirs);
    // SAFETY: test fixtures (the load fails before running any code; the FIFO is never opened
    // for blocking).
    let err = unsafe { ns.open(user.as_path()) }.map(|_| ()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("skipped {}/libfxwhich.so: not a regular file: a FIFO", dirs[0])), "{msg}");
    assert!(msg.contains(&format!("skipped {}/libfxwhich.so: not a regular file: a directory", dirs[1])), "{msg}");
    assert!(msg.contains(&format!("skipped {}/libfxwhich.so: open failed", dirs[2])) && msg.contains("ELOOP"), "{msg}");
}

/// A library in a searched directory that the user may not read (`EACCES`) is passed over, as
/// glibc's `open_path` passes it over: the next directory's copy loads, in mmkit as in glibc,
/// and when none does, the error says why it was skipped. It failed the load ("open ...
/// Permission denied"). Root reads any file: the unprivileged run checks it.
#[test]
fn an_unreadable_library_in_the_search_path_is_skipped_as_glibc_does() {
    if rustix::process::geteuid().is_root() {
        eprintln!("skipped: root reads a mode-000 file (the unprivileged run checks this)");
        return;
    }
    let test = "an_unreadable_library_in_the_search_path_is_skipped_as_glibc_does";
    let one = build("which-1", "which.c", "fxwhich", &["-DWHICH=1"]);
    let two = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let one_dir = one.parent().unwrap().display().to_string();
    let user = build("which-plain", "which.c", "fxwhichuser", &["-DUSER", &format!("-L{one_dir}"), "-lfxwhich"]);
    let dir = tempfile::tempdir().unwrap();
    let unreadable = dir.path().join("libfxwhich.so");
    std::fs::copy(&one, &unreadable).unwrap();
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let dirs = [dir.path().display().to_string(), two.parent().unwrap().display().to_string()];
    let ns = Namespace::isolated("skip-unreadable").ld_library_path(false).search(&dirs);
    let ours = ns_open(&ns, &user);
    assert_eq!(call(&ours, "fx_user_which", &[]), 2, "{:?}", ours.loaded_dependencies()[0].source());
    // Nothing readable: the error names the file skipped and why.
    let ns = Namespace::isolated("skip-unreadable-only").ld_library_path(false).search(&dirs[..1]);
    // SAFETY: test fixtures (the load fails before running any code).
    let err = unsafe { ns.open(user.as_path()) }.map(|_| ()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("skipped {}: open failed: Permission denied (EACCES)", unreadable.display())),
        "{msg}"
    );
    if !in_fresh_process_with(test, &[("LD_LIBRARY_PATH", &dirs.join(":"))]) {
        return;
    }
    assert_eq!(Dl::open(&user).call("fx_user_which", &[]), 2, "glibc");
}

/// A bare soname that no directory of the namespace has is left to the system linker's own
/// search (here `LD_LIBRARY_PATH` as the process started, which the namespace does not read;
/// `ld.so.cache` and `/usr/local/lib` likewise), which loads it, as it is for a dependency:
/// `dlopen("libfoo.so.1")` and `Namespace::open("libfoo.so.1")` agree. It was "not found".
/// A namespace that refuses system libraries does not ask; when neither search finds the
/// name, the error gives both.
#[test]
fn a_bare_soname_only_the_system_linker_finds_is_loaded_by_it() {
    let test = "a_bare_soname_only_the_system_linker_finds_is_loaded_by_it";
    let two = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let dir = two.parent().unwrap().display().to_string();
    if !in_fresh_process_with(test, &[("LD_LIBRARY_PATH", &dir)]) {
        return;
    }
    let ns = Namespace::new("system-search").ld_library_path(false);
    // SAFETY: test fixtures.
    let ours = unsafe { ns.open("libfxwhich.so") }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_which", &[]), 2);
    assert_eq!(ours.source(), two.display().to_string());
    let err = ours.segments().map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("the system linker mapped this"), "{err}");
    let theirs = Dl::open(Path::new("libfxwhich.so"));
    assert_eq!(ours.address_of("fx_which").unwrap(), theirs.addr("fx_which") as u64, "one copy: glibc's");
    // Refusing system libraries: not asked.
    let refuse = Namespace::new("refuse").ld_library_path(false).system_libraries(mmkit_elf::SystemPolicy::Refuse);
    // SAFETY: as above (fails before loading anything).
    let err = unsafe { refuse.open("libfxwhich.so") }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), mmkit_elf::ErrorKind::DependencyNotFound, "{err}");
    assert!(!err.to_string().contains("system linker"), "{err}");
    // Nowhere: both searches' answers.
    // SAFETY: as above.
    let err = unsafe { ns.open("libfxnowhere.so") }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), mmkit_elf::ErrorKind::DependencyNotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("not found in") && msg.contains("namespace system-search"), "{msg}");
    assert!(msg.contains("nor by the system linker: libfxnowhere.so: cannot open shared object file"), "{msg}");
}

/// A bare soname given to `Namespace::open` is opened in the namespace linked for it when the
/// namespace's own search does not find it, as bionic's `dlopen` goes to a linked namespace
/// and as a dependency's name already went. Links were ignored at the top level: an isolated
/// app namespace could not open a library it links to by soname ("not found").
#[test]
fn a_bare_soname_is_opened_through_the_namespace_linked_for_it() {
    let two = build("which-2", "which.c", "fxwhich", &["-DWHICH=2"]);
    let dir = two.parent().unwrap().display().to_string();
    let libs = std::sync::Arc::new(Namespace::new("libs").ld_library_path(false).search([dir.as_str()]));
    let app = Namespace::isolated("app").link(libs.clone(), ["libfxwhich.so"]);
    assert_eq!(app.locate(Source::path("libfxwhich.so")).unwrap().display(), two.display().to_string());
    // SAFETY: a test fixture.
    let ours = unsafe { app.open("libfxwhich.so") }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_which", &[]), 2);
    assert_eq!(ours.source(), two.display().to_string());
    // Loaded in the linked namespace (as bionic loads it there), one copy: its own open shares it.
    assert_eq!((app.loaded_count(), libs.loaded_count()), (0, 1));
    // SAFETY: as above.
    let again = unsafe { libs.open(two.as_path()) }.unwrap();
    assert_eq!(again.address_of("fx_which").unwrap(), ours.address_of("fx_which").unwrap());
    // A name the link does not list stays unfound, the isolation kept.
    let other = build("which-1", "which.c", "fxwhichone", &["-DWHICH=1"]);
    let libs_all = std::sync::Arc::new(
        Namespace::new("all").ld_library_path(false).search([other.parent().unwrap().to_str().unwrap()]),
    );
    let narrow = Namespace::isolated("narrow").link(libs_all, ["libfxwhich.so"]);
    // SAFETY: as above (fails before loading anything).
    let err = unsafe { narrow.open("libfxwhichone.so") }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), mmkit_elf::ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("namespace narrow"), "{err}");
}

/// A process that forks while another of its threads is inside a load (a zygote starting a
/// worker while a library initializes): the child can load libraries, as it can after glibc's
/// `dlopen` in the same race (glibc resets its load lock in the child), instead of waiting
/// forever for a lock whose holder was not forked with it.
/// Waits up to 20 s for the forked child `pid` and returns its wait status; past that, kills it
/// and panics with `hung`.
fn wait_for_child(pid: libc::pid_t, hung: &str) -> libc::c_int {
    let mut status = 0;
    let waited = std::time::Instant::now();
    loop {
        // SAFETY: our child; `status` outlives the call.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        if waited.elapsed().as_secs() >= 20 {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{hung}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A `fork` while another thread unloads a library waits for the unload to end (as glibc's
/// `dlclose` holds `dl_load_lock` through it): the finalizers and the unmapping ran after the
/// load lock was released, so a child forked then kept the half-unloaded library mapped, and
/// one forked while the span list's mutex was held waited forever in its next load (a CI
/// failure of the test above).
#[test]
fn a_child_forked_during_another_threads_unload_sees_it_finished_and_can_load() {
    if !in_fresh_process("a_child_forked_during_another_threads_unload_sees_it_finished_and_can_load") {
        return;
    }
    let slow = lib("slowctor.c", "fxslowctor");
    let quick = lib("counter.c", "fxforkcounter");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libfxslowfini.so");
    std::fs::copy(&slow, &copy).unwrap();
    let mark = dir.path().join("fini-started");
    std::env::set_var("MMKIT_FX_SLOW_MS", "1500");
    let ns = fresh_ns("forkunload");
    let lib = ns_open(&ns, &copy);
    assert_eq!(call(&lib, "fx_slow_value", &[]), 7);
    std::env::set_var("MMKIT_FX_SLOW_FINI_MARK", &mark);
    let unloader = std::thread::spawn(move || drop(lib));
    let start = std::time::Instant::now();
    while !mark.exists() {
        assert!(start.elapsed().as_secs() < 60, "the slow destructor never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let name = copy.display().to_string();
    // SAFETY: the child reads its maps, loads a library, calls it and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let code = if maps.contains(&name) {
            2
        } else {
            match try_open(quick.as_path()) {
                Ok(lib) if call(&lib, "fx_next", &[]) == 1 => 0,
                _ => 1,
            }
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let status = wait_for_child(pid, "the forked child could not load a library within 20 s");
    std::env::remove_var("MMKIT_FX_SLOW_FINI_MARK");
    unloader.join().unwrap();
    assert!(libc::WIFEXITED(status), "the child died: {status:#x}");
    assert_ne!(libc::WEXITSTATUS(status), 2, "the child was forked with the library half unloaded (still mapped)");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child failed to load");
}

#[test]
fn a_child_forked_during_another_threads_load_can_load() {
    if !in_fresh_process("a_child_forked_during_another_threads_load_can_load") {
        return;
    }
    let slow = lib("slowctor.c", "fxslowctor");
    let quick = lib("counter.c", "fxforkcounter");
    let mark = std::env::temp_dir().join(format!("mmkit-fx-slow-{}", std::process::id()));
    let _ = std::fs::remove_file(&mark);
    std::env::set_var("MMKIT_FX_SLOW_MARK", &mark);
    std::env::set_var("MMKIT_FX_SLOW_MS", "1500");
    let ns = fresh_ns("fork");
    let loader = {
        let ns = ns.clone();
        std::thread::spawn(move || call(&ns_open(&ns, &slow), "fx_slow_value", &[]))
    };
    // The loader thread is in the slow constructor, holding the load lock.
    let start = std::time::Instant::now();
    while !mark.exists() {
        assert!(start.elapsed().as_secs() < 60, "the slow constructor never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: the child only loads a library, calls it and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match try_open(quick.as_path()) {
            Ok(lib) if call(&lib, "fx_next", &[]) == 1 => 0,
            _ => 1,
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let status =
        wait_for_child(pid, "the forked child could not load a library within 20 s (it waits for the load lock)");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child failed to load: {status:#x}");
    assert_eq!(loader.join().unwrap(), 7);
    let _ = std::fs::remove_file(&mark);
}

/// libfxrpa (with `dtags`: its search path a `DT_RPATH` or a `DT_RUNPATH` of `$ORIGIN/b` and
/// `$ORIGIN/c`) → libfxrpb in `b/` → libfxrpc in `c/`, copied under a fresh directory;
/// returns the top library's path (the directory lives as long as the returned guard).
fn rpath_chain(dtags: &str) -> (tempfile::TempDir, PathBuf) {
    let c = build("rpchain", "rpchain.c", "fxrpc", &["-DFX_C"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let b = build("rpchain", "rpchain.c", "fxrpb", &["-DFX_B", &format!("-L{c_dir}"), "-lfxrpc"]);
    let a = build(
        &format!("rpchain-{dtags}"),
        "rpchain.c",
        "fxrpa",
        &[
            &format!("-L{c_dir}"),
            "-lfxrpb",
            &format!("-Wl,-rpath-link,{c_dir}"),
            &format!("-Wl,--{dtags}-new-dtags,-rpath,$ORIGIN/b:$ORIGIN/c"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    for (lib, sub) in [(&b, "b"), (&c, "c")] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::copy(lib, dir.path().join(sub).join(lib.file_name().unwrap())).unwrap();
    }
    let top = dir.path().join("libfxrpa.so");
    std::fs::copy(&a, &top).unwrap();
    (dir, top)
}

/// A path given to `Library::open` has its tokens expanded as glibc's `dlopen` from the program
/// expands them: `/$LIB/libz.so.1` is the system's libz (both loaders), `$ORIGIN` the test
/// program's directory.
#[test]
fn tokens_in_a_path_opened_by_the_program_are_expanded_as_with_glibc() {
    if !x86_64_host("tokens_in_a_path_opened_by_the_program_are_expanded_as_with_glibc") {
        return;
    }
    let oracle = Dl::open(Path::new("/$LIB/libz.so.1"));
    let ours = open(Path::new("/$LIB/libz.so.1"));
    assert_eq!(ours.address_of("zlibVersion").unwrap(), oracle.addr("zlibVersion") as u64, "the system's one copy");
    // $ORIGIN: the directory of this test program, so `$ORIGIN/<its file name>` is this program
    // (a position-independent executable, which both loaders refuse as such; not "not found").
    let exe = std::env::current_exe().unwrap();
    let name = format!("$ORIGIN/{}", exe.file_name().unwrap().to_str().unwrap());
    let e = try_open(Path::new(&name)).expect_err("a PIE is no library");
    assert_eq!(e.kind(), mmkit_elf::ErrorKind::NotSharedObject, "{e}");
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a failed dlopen returns NULL; dlerror's string is copied at once.
    let glibc = unsafe {
        assert!(libc::dlopen(c.as_ptr(), libc::RTLD_NOW).is_null());
        std::ffi::CStr::from_ptr(libc::dlerror()).to_string_lossy().into_owned()
    };
    assert!(glibc.contains("position-independent executable"), "{glibc}");
}

/// The directory search opens what it finds to check it (as glibc's `open_verify`) and the load
/// maps from that descriptor: each library of the chain is opened once (inotify's `IN_OPEN`
/// events, the kernel's count; `IN_CLOSE_NOWRITE` is watched too, as inotify merges identical
/// events in a row). The search opened a found file, closed it, and the load opened it again.
#[test]
fn each_library_found_by_the_search_is_opened_once() {
    use rustix::fs::inotify;
    let (dir, top) = rpath_chain("disable");
    let b = dir.path().join("b/libfxrpb.so");
    let c = dir.path().join("c/libfxrpc.so");
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    let watches: Vec<i32> = [&top, &b, &c]
        .iter()
        .map(|p| {
            inotify::add_watch(&fd, p.as_path(), inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE_NOWRITE)
                .unwrap()
        })
        .collect();
    let opens = || {
        let mut opens = [0usize; 3];
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        while let Ok(event) = reader.next() {
            if let Some(i) = watches.iter().position(|&w| w == event.wd()) {
                opens[i] += usize::from(event.events().contains(inotify::ReadFlags::OPEN));
            }
        }
        opens
    };
    let lib = open(top.as_path());
    assert_eq!(call(&lib, "fx_rpa", &[]), 321);
    assert_eq!(opens(), [1, 1, 1], "opens of a, b, c");
    drop(lib);
    // A bare soname given to the namespace: the file its search found is the one loaded.
    let ns = Namespace::new("opened-once").ld_library_path(false).search([dir.path().to_str().unwrap()]);
    let lib = ns_open(&ns, Path::new("libfxrpa.so"));
    assert_eq!(call(&lib, "fx_rpa", &[]), 321);
    assert_eq!(opens(), [1, 1, 1], "opens of a (by soname), b, c");
}

/// A dependency that only the system's directories hold goes to the system linker, found by
/// the system linker's own search (`ld.so.cache` in `ld.so.conf`'s order, its glibc-hwcaps
/// variants), as glibc's `dlopen` of the library finds it: its file is opened once. (mmkit
/// used to probe the directories itself, open the file to check it, close it, and hand the
/// path to glibc, which opened it again: two opens, and the multiarch directory's copy even
/// where glibc's configuration ranks another first.) Counted by inotify, in a fresh process
/// that has not loaded libz.
#[test]
fn a_system_dependency_is_opened_once_by_the_system_linkers_own_search() {
    const NAME: &str = "a_system_dependency_is_opened_once_by_the_system_linkers_own_search";
    if !x86_64_host(NAME) || !in_fresh_process(NAME) {
        return;
    }
    let zuse = build("default", "zuse.c", "fxzuse", &["-lz"]);
    let mut lib = None;
    let (libz, opens) = opens_of_cached_libz(|| lib = Some(open(zuse.as_path())));
    let lib = lib.unwrap();
    assert_eq!(call(&lib, "fx_zlib_major", &[]), 1);
    assert_eq!(opens, 1, "opens of {}", libz.display());
    let deps = lib.dependencies();
    assert!(deps.contains(&("libz.so.1".to_owned(), false)), "loaded by the system linker: {deps:?}");
}

/// A bare soname opened at top level (`Namespace::open("libz.so.1")`, `mmkit elf call
/// libz.so.1`) that only the system's directories hold is found by the system linker's own
/// search too, as a dependency is: glibc opens the file, and mmkit once more to read its plan
/// (`Library::plan`). mmkit probed the directories in its own order (not `ld.so.conf`'s),
/// opened the file to check it and handed the path to glibc: three opens. A name nobody finds
/// says so, with glibc's message.
#[test]
fn a_bare_system_soname_is_found_by_the_system_linkers_own_search() {
    const NAME: &str = "a_bare_system_soname_is_found_by_the_system_linkers_own_search";
    if !x86_64_host(NAME) || !in_fresh_process(NAME) {
        return;
    }
    let mut lib = None;
    let (libz, opens) = opens_of_cached_libz(|| lib = Some(open(Path::new("libz.so.1"))));
    let lib = lib.unwrap();
    assert_eq!(opens, 2, "opens of {} (glibc's, the plan's)", libz.display());
    assert_eq!(lib.source(), libz.display().to_string());
    let oracle = Dl::open(Path::new("libz.so.1"));
    assert_eq!(lib.address_of("zlibVersion").unwrap(), oracle.addr("zlibVersion") as u64, "glibc's one copy");
    let e = try_open(Path::new("libfxnobodyhasthis.so.7")).expect_err("not found");
    assert_eq!(e.kind(), mmkit_elf::ErrorKind::DependencyNotFound, "{e}");
    assert!(e.to_string().contains("nor by the system linker: libfxnobodyhasthis.so.7: cannot open"), "{e}");
}

/// Runs `f` and counts the opens of the libz that `ld.so.cache` names (where glibc's search
/// finds it; `ldconfig -p` reads the same cache), by inotify, in a process that has not loaded
/// libz; returns that path and the count.
fn opens_of_cached_libz(f: impl FnOnce()) -> (PathBuf, usize) {
    use rustix::fs::inotify;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(!maps.contains("libz.so"), "the test process has libz loaded already:\n{maps}");
    let cache = std::process::Command::new("/sbin/ldconfig").arg("-p").output().unwrap();
    let cache = String::from_utf8_lossy(&cache.stdout);
    let libz = cache
        .lines()
        .filter(|l| l.trim_start().starts_with("libz.so.1 ") && l.contains("x86-64"))
        .filter_map(|l| l.rsplit_once("=> ").map(|(_, p)| PathBuf::from(p.trim())))
        .next()
        .unwrap_or_else(|| panic!("libz.so.1 is not in ld.so.cache:\n{cache}"));
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    // Reads and closes watched too: the kernel merges an event identical to the last one
    // unread (and a mapped file's close is reported only when it is unmapped).
    let watch = inotify::WatchFlags::OPEN | inotify::WatchFlags::ACCESS | inotify::WatchFlags::CLOSE_NOWRITE;
    inotify::add_watch(&fd, libz.as_path(), watch).unwrap();
    f();
    let mut opens = 0;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(&fd, &mut buf);
    while let Ok(event) = reader.next() {
        opens += usize::from(event.events().contains(inotify::ReadFlags::OPEN));
    }
    (libz, opens)
}

/// glibc searches a directory's `glibc-hwcaps/x86-64-vN` subdirectories (the levels this CPU
/// supports, best first) before the directory: a library built for x86-64-v3 beside the
/// baseline one is the one loaded where the CPU has AVX2. mmkit-elf searched the directory
/// only. glibc's `dlopen` of the same files is the oracle.
#[test]
fn glibc_hwcaps_subdirectories_are_searched_as_with_glibc() {
    if !x86_64_host("glibc_hwcaps_subdirectories_are_searched_as_with_glibc") {
        return;
    }
    let levels: Vec<PathBuf> = [0, 2, 3]
        .iter()
        .map(|l| build(&format!("hwcaps-v{l}"), "hwcaps.c", "fxhw", &[&format!("-DFX_LEVEL={l}")]))
        .collect();
    let base_dir = levels[0].parent().unwrap().display().to_string();
    let top = build(
        "hwcaps-top",
        "hwcaps.c",
        "fxhwtop",
        &["-DFX_TOP", &format!("-L{base_dir}"), "-lfxhw", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/dep"],
    );
    let dir = tempfile::tempdir().unwrap();
    let dep = dir.path().join("top/dep");
    for (lib, sub) in levels.iter().zip(["", "glibc-hwcaps/x86-64-v2", "glibc-hwcaps/x86-64-v3"]) {
        std::fs::create_dir_all(dep.join(sub)).unwrap();
        std::fs::copy(lib, dep.join(sub).join("libfxhw.so")).unwrap();
    }
    let top_copy = dir.path().join("top/libfxhwtop.so");
    std::fs::copy(&top, &top_copy).unwrap();
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    let ours = call(&open(top_copy.as_path()), "fx_hw_top", &[]);
    let oracle = Dl::open(&top_copy);
    let glibc = oracle.call("fx_hw_top", &[]);
    assert_eq!(ours, glibc, "the level of the copy loaded (0: the directory's own)");
    // Every x86_64 CPU of the last fifteen years has x86-64-v2 (SSE4.2, POPCNT).
    assert_ne!(glibc, 0, "glibc loaded the baseline copy");
}

/// glibc 2.36 and older also search each directory's legacy capability subdirectories after
/// its `glibc-hwcaps` ones (combinations of `tls`, the platform and `x86_64`, most specific
/// first: `tls/` before `x86_64/` before the directory); glibc 2.37 removed them. mmkit-elf
/// searched the directory only. glibc's `dlopen` of the same files is the oracle, whichever
/// glibc this is: two arrangements (with and without `tls/`), each under names of its own (glibc
/// finds a name it loaded before by that name).
#[test]
fn legacy_hwcaps_subdirectories_are_searched_as_with_this_glibc() {
    if !x86_64_host("legacy_hwcaps_subdirectories_are_searched_as_with_this_glibc") {
        return;
    }
    let platform = glibc_dl_platform().unwrap_or_else(|| "x86_64".to_owned());
    for (round, subdirs) in
        [("a", &["", "x86_64", "tls"][..]), ("b", &["", "x86_64", &format!("{platform}/x86_64")][..])]
    {
        let dep_name = format!("fxlhw{round}");
        let levels: Vec<PathBuf> = (0..subdirs.len())
            .map(|l| build(&format!("legacy-hwcaps-{round}{l}"), "hwcaps.c", &dep_name, &[&format!("-DFX_LEVEL={l}")]))
            .collect();
        let base_dir = levels[0].parent().unwrap().display().to_string();
        let top = build(
            &format!("legacy-hwcaps-{round}top"),
            "hwcaps.c",
            &format!("fxlhwtop{round}"),
            &[
                "-DFX_TOP",
                &format!("-L{base_dir}"),
                &format!("-l{dep_name}"),
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/dep",
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let dep = dir.path().join("top/dep");
        for (lib, sub) in levels.iter().zip(subdirs) {
            std::fs::create_dir_all(dep.join(sub)).unwrap();
            std::fs::copy(lib, dep.join(sub).join(format!("lib{dep_name}.so"))).unwrap();
        }
        let top_copy = dir.path().join(format!("top/libfxlhwtop{round}.so"));
        std::fs::copy(&top, &top_copy).unwrap();
        // mmkit first: a name glibc has loaded would be found by name through the system linker.
        let ours = call(&open(top_copy.as_path()), "fx_hw_top", &[]);
        let glibc = Dl::open(&top_copy).call("fx_hw_top", &[]);
        assert_eq!(ours, glibc, "round {round}: the copy loaded ({subdirs:?}; glibc's platform {platform})");
    }
}

/// glibc expands `$LIB` and `$PLATFORM` (braced or not) in a `DT_RPATH`/`DT_RUNPATH` as it
/// expands `$ORIGIN`. The fixture's chain a → b → c with a's `DT_RPATH`
/// `$ORIGIN/$LIB:$ORIGIN/p/${PLATFORM}`: b lies in the first, c in the second (found through
/// a's inherited `DT_RPATH`). Where they must lie is glibc's answer: its `dlopen` of the same
/// files is the oracle (and fails if the directories were named wrongly).
#[test]
fn lib_and_platform_tokens_are_expanded_as_with_glibc() {
    // Where glibc's `$LIB` points is the host's layout (under qemu-user the cross sysroot's
    // differs from what the emulated program sees).
    if !x86_64_host("lib_and_platform_tokens_are_expanded_as_with_glibc") {
        return;
    }
    let c = build("rpchain", "rpchain.c", "fxrpc", &["-DFX_C"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let b = build("rpchain", "rpchain.c", "fxrpb", &["-DFX_B", &format!("-L{c_dir}"), "-lfxrpc"]);
    let a = build(
        "rpchain-tokens",
        "rpchain.c",
        "fxrpa",
        &[
            &format!("-L{c_dir}"),
            "-lfxrpb",
            &format!("-Wl,-rpath-link,{c_dir}"),
            "-Wl,--disable-new-dtags,-rpath,$ORIGIN/$LIB:$ORIGIN/p/${PLATFORM}",
        ],
    );
    // glibc's $LIB: where its libc lies, under / without usr/ (checked by glibc below).
    let libc_dir = ["/lib/x86_64-linux-gnu", "/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
        .into_iter()
        .find(|d| Path::new(d).join("libc.so.6").exists())
        .unwrap();
    let lib = libc_dir.trim_start_matches("/usr/").trim_start_matches('/');
    // glibc's `$PLATFORM`: the kernel's name for the machine, or the name x86_64 glibc gives an
    // Intel CPU (`haswell` with AVX2), as its ld.so says (glibc 2.33 on).
    let platform = platform_token_value();
    let dir = tempfile::tempdir().unwrap();
    for (file, sub) in [(&b, lib.to_owned()), (&c, format!("p/{platform}"))] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(file, to.join(file.file_name().unwrap())).unwrap();
    }
    let top = dir.path().join("libfxrpa.so");
    std::fs::copy(&a, &top).unwrap();
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    let lib_open = open(top.as_path());
    assert_eq!(call(&lib_open, "fx_rpa", &[]), 321, "b through $LIB, c through ${{PLATFORM}}");
    let oracle = Dl::open(&top);
    assert_eq!(oracle.call("fx_rpa", &[]), 321, "glibc finds them where they were put");
}

/// What glibc's `$PLATFORM` is here: the name its ld.so gives (glibc 2.33 on), or the kernel's
/// name for the machine.
fn platform_token_value() -> String {
    glibc_dl_platform().unwrap_or_else(|| {
        std::str::from_utf8(&std::process::Command::new("uname").arg("-m").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned()
    })
}

/// glibc expands the tokens of every `DT_NEEDED` name (`expand_dst` in `_dl_map_object_deps`),
/// also of one without `/`, and searches for the result: `libfxtokc-${PLATFORM}.so` (a soname
/// copied into the `DT_NEEDED` entry of the library linked against it) is
/// `libfxtokc-<platform>.so`. mmkit-elf searched for the name as written and did not find it.
/// glibc's `dlopen` of the same files is the oracle.
#[test]
fn tokens_in_a_needed_name_without_a_slash_are_expanded_as_with_glibc() {
    if !x86_64_host("tokens_in_a_needed_name_without_a_slash_are_expanded_as_with_glibc") {
        return;
    }
    let c = build("needed-token", "rpchain.c", "fxtokc", &["-DFX_C", "-Wl,-soname,libfxtokc-${PLATFORM}.so"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let b = build(
        "needed-token",
        "rpchain.c",
        "fxtokb",
        &["-DFX_B", &format!("-L{c_dir}"), "-lfxtokc", "-Wl,--enable-new-dtags,-rpath,$ORIGIN"],
    );
    let platform = platform_token_value();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&c, dir.path().join(format!("libfxtokc-{platform}.so"))).unwrap();
    let top = dir.path().join("libfxtokb.so");
    std::fs::copy(&b, &top).unwrap();
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    assert_eq!(call(&open(top.as_path()), "fx_rpb", &[]), 32, "libfxtokc-{platform}.so found");
    let oracle = Dl::open(&top);
    assert_eq!(oracle.call("fx_rpb", &[]), 32, "glibc finds it under the expanded name");
}

/// glibc searches the `DT_RPATH` of the library that loaded a library, and of its loader, up
/// the chain, for the dependencies of a library without `DT_RUNPATH`; a `DT_RUNPATH` is the
/// library's own only. glibc's answers for the same files are the oracle.
#[test]
fn a_dependency_is_found_through_its_loaders_rpath_as_with_glibc() {
    let (_dir, top) = rpath_chain("disable");
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    assert_eq!(call(&open(top.as_path()), "fx_rpa", &[]), 321, "libfxrpc found through libfxrpa's DT_RPATH");
    let oracle = Dl::open(&top);
    assert_eq!(oracle.call("fx_rpa", &[]), 321);
    drop(oracle);
    // A DT_RUNPATH is not inherited: libfxrpb's dependency is not found, by either loader.
    let (_dir, top) = rpath_chain("enable");
    let c = std::ffi::CString::new(top.to_str().unwrap()).unwrap();
    // SAFETY: a trusted fixture; a failed dlopen returns NULL.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(h.is_null(), "glibc does not inherit a DT_RUNPATH");
    let e = try_open(top.as_path()).expect_err("a DT_RUNPATH is not inherited");
    assert!(e.to_string().contains("libfxrpc.so"), "{e}");
}

/// An empty element of a `DT_RUNPATH` or `DT_RPATH` list (`/nonexistent:`, `/a::/b`) is the
/// current directory for glibc (its `fillin_rpath` keeps it as the directory ""); an empty
/// string names none. mmkit-elf dropped the empty element, and the dependency glibc finds in
/// the current directory was not found. glibc's answers for the same files are the oracle.
#[test]
fn an_empty_runpath_element_is_the_current_directory_as_with_glibc() {
    let test = "an_empty_runpath_element_is_the_current_directory_as_with_glibc";
    let c = build("rpchain", "rpchain.c", "fxrpc", &["-DFX_C"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let lib = |variant: &str, rpath: &str| {
        build(variant, "rpchain.c", "fxrpb", &["-DFX_B", &format!("-L{c_dir}"), "-lfxrpc", &format!("-Wl,{rpath}")])
    };
    let runpath_empty_element = lib("rpchain-empty-runpath", "--enable-new-dtags,-rpath,/nonexistent:");
    let rpath_empty_element = lib("rpchain-empty-rpath", "--disable-new-dtags,-rpath,/nonexistent::/nonexistent2");
    let runpath_empty = lib("rpchain-empty-all", "--enable-new-dtags,-rpath,");
    // Changes the current directory: in a child process of its own.
    if !in_fresh_process(test) {
        return;
    }
    std::env::set_current_dir(&c_dir).unwrap();
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    for top in [&runpath_empty_element, &rpath_empty_element] {
        let ns = fresh_ns("empty-runpath-element");
        assert_eq!(
            call(&ns_open(&ns, top), "fx_rpb", &[]),
            32,
            "{}: libfxrpc from the current directory",
            top.display()
        );
    }
    let ns = fresh_ns("empty-runpath");
    // SAFETY: a test fixture (the load fails before running any code).
    let err = unsafe { ns.open(runpath_empty.as_path()) }.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("libfxrpc.so"), "an empty DT_RUNPATH names no directory: {err}");
    for top in [&runpath_empty_element, &rpath_empty_element] {
        assert_eq!(Dl::open(top).call("fx_rpb", &[]), 32, "glibc finds libfxrpc in the current directory");
    }
}

/// glibc reads `LD_LIBRARY_PATH` once, at process start: a `setenv` later (by the program or
/// by a library it loaded) does not change where `dlopen` looks. mmkit-elf read the variable
/// again at every search, and found a library in a directory only the new value named. glibc's
/// `dlopen` of the same name is the oracle.
#[test]
fn ld_library_path_set_after_the_process_started_is_not_searched_as_with_glibc() {
    let test = "ld_library_path_set_after_the_process_started_is_not_searched_as_with_glibc";
    let c = build("rpchain", "rpchain.c", "fxrpc", &["-DFX_C"]);
    // Changes the environment: in a child process of its own, started with an empty value.
    if !in_fresh_process_with(test, &[("LD_LIBRARY_PATH", "")]) {
        return;
    }
    // Before any search: the value the process started with is the one that counts.
    // SAFETY: the test's child process, one thread; nothing reads the environment meanwhile.
    unsafe { std::env::set_var("LD_LIBRARY_PATH", c.parent().unwrap()) };
    let ns = fresh_ns("ld-library-path-later");
    // SAFETY: a test fixture, if found.
    let err = unsafe { ns.open("libfxrpc.so") }.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("libfxrpc.so"), "{err}");
    let name = std::ffi::CString::new("libfxrpc.so").unwrap();
    // SAFETY: a test fixture, if found.
    let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(h.is_null(), "glibc does not search the new LD_LIBRARY_PATH");
}

/// An empty `DT_RUNPATH` is still a `DT_RUNPATH` for glibc (`_dl_map_object` tests the tag, not
/// its directories): the loaders' `DT_RPATH`s are not searched for the library's dependencies.
/// mmkit-elf decided by the directories, and found libfxrpc through libfxrpa's `DT_RPATH` where
/// glibc's `dlopen` fails. glibc's answer for the same files is the oracle.
#[test]
fn an_empty_runpath_still_stops_the_loaders_rpath_as_with_glibc() {
    let c = build("rpchain", "rpchain.c", "fxrpc", &["-DFX_C"]);
    let c_dir = c.parent().unwrap().display().to_string();
    let b = build(
        "rpchain-probe-empty",
        "rpchain.c",
        "fxrpb",
        &["-DFX_B", &format!("-L{c_dir}"), "-lfxrpc", "-Wl,--enable-new-dtags,-rpath,"],
    );
    let a = build(
        "rpchain-probe-top",
        "rpchain.c",
        "fxrpa",
        &[
            &format!("-L{}", b.parent().unwrap().display()),
            "-lfxrpb",
            &format!("-Wl,-rpath-link,{c_dir}"),
            "-Wl,--disable-new-dtags,-rpath,$ORIGIN/b:$ORIGIN/c",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    for (lib, sub) in [(&b, "b"), (&c, "c")] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::copy(lib, dir.path().join(sub).join(lib.file_name().unwrap())).unwrap();
    }
    let top = dir.path().join("libfxrpa.so");
    std::fs::copy(&a, &top).unwrap();
    // mmkit first: a name glibc has loaded would be found by name through the system linker.
    let e = try_open(top.as_path()).map(|_| ()).expect_err("libfxrpb's empty DT_RUNPATH stops libfxrpa's DT_RPATH");
    assert!(e.to_string().contains("libfxrpc.so"), "{e}");
    let cs = std::ffi::CString::new(top.to_str().unwrap()).unwrap();
    // SAFETY: a trusted fixture; a failed dlopen returns NULL.
    let h = unsafe { libc::dlopen(cs.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(h.is_null(), "glibc does not search the loaders' DT_RPATH past an empty DT_RUNPATH");
}

/// `bytes` with `VER_FLG_WEAK` set on every version its `DT_VERNEED` records need, as some
/// linkers mark a version only weak references need (GNU ld 2.40 does not: patched here).
fn with_weak_version_needs(bytes: &[u8]) -> Vec<u8> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let file = ElfFile64::<object::Endianness>::parse(bytes).expect("an ELF image");
    let e = file.endian();
    let (_, vaddr, _) = dynamic_entries(bytes)
        .into_iter()
        .find(|&(t, _, _)| t == u64::from(object::elf::DT_VERNEED))
        .expect("DT_VERNEED");
    let p = file
        .elf_program_headers()
        .iter()
        .find(|p| p.p_type(e) == object::elf::PT_LOAD && (p.p_vaddr(e)..p.p_vaddr(e) + p.p_filesz(e)).contains(&vaddr))
        .expect("DT_VERNEED in a PT_LOAD segment");
    let mut out = bytes.to_vec();
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    // `Elf64_Verneed`: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32;
    // `Elf64_Vernaux`: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32.
    let mut at = (vaddr - p.p_vaddr(e) + p.p_offset(e)) as usize;
    loop {
        let mut aux = at + u32_at(&out, at + 8);
        for _ in 0..u16_at(&out, at + 2) {
            let flags = u16_at(&out, aux + 4) | object::elf::VER_FLG_WEAK;
            out[aux + 4..aux + 6].copy_from_slice(&flags.to_le_bytes());
            aux += u32_at(&out, aux + 12);
        }
        match u32_at(&out, at + 12) {
            0 => return out,
            next => at += next,
        }
    }
}

/// A library built against a newer build of its dependency: it needs version `FXVN_3`
/// (`DT_VERNEED`) of libfxvn.so, and the older build beside it defines `FXVN_1` only. glibc's
/// `dlopen` refuses it at load, `RTLD_NOW` and `RTLD_LAZY` alike (`_dl_check_map_versions`),
/// and so does mmkit-elf, with glibc's `dlerror` text, whether it mapped the dependency or
/// glibc had loaded it; mmkit-elf loaded it lazily, and the call ended the process. A need
/// marked `VER_FLG_WEAK` is no error for either (the weak reference is bound to nothing).
#[test]
fn a_version_the_dependency_does_not_define_fails_the_load_as_with_glibc() {
    let script = |map: &str| format!("-Wl,--version-script={}", fixture_src(map).display());
    let newer = build("vn-new", "vn.c", "fxvn", &[&script("vn3.map")]);
    let older = build("vn-old", "vn.c", "fxvn", &[&script("vn1.map")]);
    let search = format!("-L{}", newer.parent().unwrap().display());
    let mut link = vec![search.as_str(), "-Wl,--no-as-needed", "-lfxvn", "-Wl,--enable-new-dtags,-rpath,$ORIGIN"];
    let built_user = build("vn-new", "vnuse.c", "fxvnuse", &link);
    link.push("-DWEAK");
    let built_weak = build("vn-new", "vnuse.c", "fxvnweak", &link);
    // Against the build it was linked with: loaded, and the call binds.
    assert_eq!(call(&open(built_user.as_path()), "fx_vn_use", &[]), 3);
    let dir = tempfile::tempdir().unwrap();
    let (user, weak, dep) =
        (dir.path().join("libfxvnuse.so"), dir.path().join("libfxvnweak.so"), dir.path().join("libfxvn.so"));
    replace_with_copy(&built_user, &user);
    std::fs::write(&weak, with_weak_version_needs(&std::fs::read(&built_weak).unwrap())).unwrap();
    replace_with_copy(&older, &dep);
    let text = format!("{}: version `FXVN_3' not found (required by {})", dep.display(), user.display());
    let glibc = |path: &Path, flags: i32| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: trusted fixtures; dlerror's message after a failed dlopen, copied at once.
        unsafe {
            let h = libc::dlopen(c.as_ptr(), flags);
            if h.is_null() {
                return Err(std::ffi::CStr::from_ptr(libc::dlerror()).to_string_lossy().into_owned());
            }
            Ok(h)
        }
    };
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let ours_opener = open(opener.as_path());
    let arg = |s: &std::ffi::CString| s.as_ptr() as i64;
    let (c_user, c_sym, c_text) = (
        std::ffi::CString::new(user.to_str().unwrap()).unwrap(),
        std::ffi::CString::new("fx_vn_use").unwrap(),
        std::ffi::CString::new(text.as_str()).unwrap(),
    );
    // mmkit-elf maps libfxvn.so first, then glibc has it loaded (by the weak user it loads).
    let mut glibc_weak = None;
    for by in ["mmkit", "glibc"] {
        for lazy in [false, true] {
            // SAFETY: a trusted fixture.
            let e = unsafe { Library::open_with(user.as_path(), &mmkit_elf::LoadOptions::new().lazy_binding(lazy)) }
                .expect_err("a missing version fails the load");
            assert_eq!(e.kind(), mmkit_elf::ErrorKind::VersionNotFound, "{by}, lazy {lazy}: {e}");
            let msg = e.to_string();
            for part in ["FXVN_3", "libfxvn.so", &*dep.to_string_lossy(), &*user.to_string_lossy()] {
                assert!(msg.contains(part), "{by}, lazy {lazy}: no {part:?} in {msg}");
            }
            let flags = if lazy { libc::RTLD_LAZY } else { libc::RTLD_NOW };
            assert_eq!(glibc(&user, flags).expect_err("glibc refuses it"), text, "lazy {lazy}");
        }
        // The dlerror text of mmkit's `dlopen`, called from a library it mapped, is glibc's.
        assert_eq!(call(&ours_opener, "fx_open_call", &[arg(&c_user), arg(&c_sym), 0]), -1, "{by}");
        assert_eq!(call(&ours_opener, "fx_last_error", &[arg(&c_text)]), text.len() as i64 + 1000, "{by}");
        // The weak need: loaded by both, the reference bound to nothing.
        for lazy in [false, true] {
            // SAFETY: a trusted fixture.
            let ours = unsafe { Library::open_with(weak.as_path(), &mmkit_elf::LoadOptions::new().lazy_binding(lazy)) }
                .unwrap_or_else(|e| panic!("{by}, lazy {lazy}: {e}"));
            assert_eq!(call(&ours, "fx_vn_use", &[]), -1, "{by}, lazy {lazy}");
            let flags = if lazy { libc::RTLD_LAZY } else { libc::RTLD_NOW };
            let h = glibc(&weak, flags).unwrap_or_else(|e| panic!("glibc, lazy {lazy}: {e}"));
            let f = std::ffi::CString::new("fx_vn_use").unwrap();
            // SAFETY: a live handle; the fixture's function takes nothing and returns int64_t.
            assert_eq!(call_addr(unsafe { libc::dlsym(h, f.as_ptr()) } as u64, &[]), -1);
            // Kept open once: glibc keeps libfxvn.so loaded for the second round.
            if glibc_weak.is_none() {
                glibc_weak = Some(h);
            } else {
                // SAFETY: a handle of this test, closed once.
                unsafe { libc::dlclose(h) };
            }
        }
    }
    let oracle = Dl::open(&opener);
    assert_eq!(oracle.call("fx_open_call", &[arg(&c_user), arg(&c_sym), 0]), -1);
    assert_eq!(oracle.call("fx_last_error", &[arg(&c_text)]), text.len() as i64 + 1000);
    // SAFETY: the handle kept above, closed once.
    unsafe { libc::dlclose(glibc_weak.expect("opened")) };
}

/// Regression: a library mapped in an isolated namespace could not `dlopen` a library the
/// process has loaded (libc), although its own `DT_NEEDED` of it bound the process's copy and
/// `Namespace::isolated` says such libraries are refused only when not loaded: the search,
/// which has no system directories, found nothing and the `dlopen` failed. A system library
/// nobody loaded is still refused.
#[test]
fn an_isolated_namespaces_library_can_dlopen_a_library_the_process_has_loaded() {
    let opener = build("opener", "opener.c", "fxopener", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN"]);
    let ns = Namespace::isolated("iso-dl");
    // SAFETY: a trusted fixture.
    let lib = unsafe { ns.open(opener.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    let arg = |s: &std::ffi::CString| s.as_ptr() as i64;
    let (libc_name, labs) = (std::ffi::CString::new("libc.so.6").unwrap(), std::ffi::CString::new("labs").unwrap());
    assert_eq!(call(&lib, "fx_open_call", &[arg(&libc_name), arg(&labs), -5]), 5, "dlopen(libc.so.6) + labs(-5)");
    // No process loads this test library: the isolated namespace still refuses it.
    let unloaded = std::ffi::CString::new("libfx-nobody-loaded.so.9").unwrap();
    assert_eq!(call(&lib, "fx_open_call", &[arg(&unloaded), arg(&labs), -5]), -1);
}
