//! `android_dlopen_ext`'s features against the kernel: loading into the caller's reservation
//! (`RESERVED_ADDRESS(_HINT)`, addresses in `/proc/self/maps`), loading from an fd at an offset
//! (`USE_LIBRARY_FD_OFFSET`).
//!
//! Each test loads a fixture file of its own: a file already loaded in the namespace is shared,
//! and would keep the placement of whichever test loaded it first.

mod common;

use common::*;
use mmkit::Reservation;
use mmkit_elf::{ErrorKind, Library, LoadOptions, Source};
use std::os::unix::fs::MetadataExt;

/// The areas of `/proc/self/maps` overlapping `[start, start + len)`.
fn areas_in(start: u64, len: u64) -> Vec<mmkit::inspect::MapsEntry> {
    mmkit::inspect::maps(std::process::id())
        .unwrap()
        .into_iter()
        .filter(|e| e.start < start + len && e.end > start)
        .collect()
}

/// The areas of `/proc/self/maps` backed by the file with inode `ino`.
fn areas_of_inode(ino: u64) -> Vec<mmkit::inspect::MapsEntry> {
    mmkit::inspect::maps(std::process::id()).unwrap().into_iter().filter(|e| e.inode == ino).collect()
}

/// A reservation of `len` bytes aligned to the fixture's largest `p_align`: the loader keeps
/// the segments at their alignment, and aarch64's ld aligns them to 64 KiB, more than a 4 or
/// 16 KiB page (a page-aligned reservation fits there only by chance).
fn aligned_reservation(path: &std::path::Path, len: usize) -> Reservation {
    let plan = mmkit_elf::plan(&Source::path(path), mmkit::page_size() as u64).unwrap();
    mmkit::ReserveOptions::new(len).align(plan.max_align as usize).reserve().unwrap()
}

fn open_with(source: impl Into<Source>, options: &LoadOptions<'_>) -> Result<Library, mmkit_elf::Error> {
    // SAFETY: trusted fixtures; every reservation passed outlives the library (dropped after).
    unsafe { Library::open_with(source, options) }
}

#[test]
fn reserved_address_places_the_library_in_the_callers_reservation() {
    let path = build("dlext", "basic.c", "fxreserved", &[]);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let page = mmkit::page_size();
    let space = aligned_reservation(&path, 256 * page);
    let base = space.as_ptr() as u64;
    let at = 16 * page;
    let lib = open_with(path.as_path(), &LoadOptions::new().reserved(&space, at)).unwrap_or_else(|e| panic!("{e}"));
    let (start, len) = lib.span();
    assert_eq!(start, base + at as u64, "the span starts at the offset asked for");
    assert_eq!(call(&lib, "fx_add", &[2, 40]), 42);
    assert_eq!(call(&lib, "fx_bump", &[5]), call(&lib, "fx_bump", &[0]));
    // Every page the kernel maps from the library's file lies in the reserved range.
    let mine = areas_of_inode(ino);
    assert!(!mine.is_empty(), "no area of the library in /proc/self/maps");
    for a in &mine {
        assert!(a.start >= start && a.end <= start + len, "{a:?} is outside the span {start:#x}+{len:#x}");
    }
    lib.verify().unwrap_or_else(|e| panic!("{e}"));
    drop(lib);
    // Unloaded: nothing of the file is mapped, and the whole reservation is still mapped,
    // reserved PROT_NONE (a foreign mapping cannot have moved in: the range stayed ours).
    assert!(areas_of_inode(ino).is_empty(), "the library is still mapped: {:?}", areas_of_inode(ino));
    let areas = areas_in(base, space.len() as u64);
    let covered: u64 = areas.iter().map(|a| a.end.min(base + space.len() as u64) - a.start.max(base)).sum();
    assert_eq!(covered, space.len() as u64, "part of the reservation was unmapped: {areas:?}");
    assert!(areas.iter().all(|a| !a.perms.read && !a.perms.write && !a.perms.exec), "not decommitted: {areas:?}");
    // The caller uses the range again: fresh zero pages.
    space.commit(at, len as usize, mmkit::Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write just above.
    assert!((0..len as usize).step_by(page).all(|o| unsafe { space.as_ptr().add(at + o).read() } == 0));
}

#[test]
fn reserved_address_too_small_says_how_much_is_needed() {
    let path = build("dlext", "basic.c", "fxsmall", &[]);
    let plan = mmkit_elf::plan(&Source::path(&path), mmkit::page_size() as u64).unwrap();
    let page = mmkit::page_size();
    let space = aligned_reservation(&path, plan.span_len as usize);
    // One page short: the library does not fit at offset `page`.
    let err = open_with(path.as_path(), &LoadOptions::new().reserved(&space, page)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReservationTooSmall, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("needs {:#x} bytes", plan.span_len)), "{msg}");
    assert!(msg.contains(&format!("{:#x} bytes are left", plan.span_len as usize - page)), "{msg}");
    // An offset past the end too, without overflow.
    let err = open_with(path.as_path(), &LoadOptions::new().reserved(&space, usize::MAX - 4095)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReservationTooSmall, "{err}");
    // Nothing was loaded, nothing of the reservation was touched.
    let ino = std::fs::metadata(&path).unwrap().ino();
    assert!(areas_of_inode(ino).is_empty());
    // At offset 0 it fits exactly.
    let lib = open_with(path.as_path(), &LoadOptions::new().reserved(&space, 0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lib.span(), (space.as_ptr() as u64, plan.span_len));
    assert_eq!(call(&lib, "fx_add", &[1, 2]), 3);
}

#[test]
fn reserved_address_hint_falls_back_to_a_fresh_reservation() {
    let path = build("dlext", "basic.c", "fxhint", &[]);
    let page = mmkit::page_size();
    let space = Reservation::new(page).unwrap();
    let lib = open_with(path.as_path(), &LoadOptions::new().reserved_hint(&space, 0)).unwrap_or_else(|e| panic!("{e}"));
    let (start, len) = lib.span();
    let base = space.as_ptr() as u64;
    assert!(start + len <= base || start >= base + page as u64, "loaded over the too-small reservation");
    assert_eq!(call(&lib, "fx_add", &[40, 2]), 42);
    // And where it fits, the hint is followed.
    let path2 = build("dlext", "basic.c", "fxhint2", &[]);
    let big = aligned_reservation(&path2, 256 * page);
    let lib2 = open_with(path2.as_path(), &LoadOptions::new().reserved_hint(&big, 0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lib2.span().0, big.as_ptr() as u64);
}

#[test]
fn reserved_address_still_holding_a_library_is_refused_not_mapped_over() {
    // A library stays where it was loaded while anything keeps it: another handle, a pin
    // (`DF_1_NODELETE`, `Library::pin`, `seal`), a pending `thread_local` destructor; its
    // caller cannot always tell. A second library asked into the same range was mapped over
    // it with MAP_FIXED: the first one's code was replaced under it (SIGSEGV at unload).
    let (first, second) = (build("dlext", "basic.c", "fxinuse1", &[]), build("dlext", "basic.c", "fxinuse2", &[]));
    let page = mmkit::page_size();
    let space = aligned_reservation(&first, 256 * page);
    let lib = open_with(first.as_path(), &LoadOptions::new().reserved(&space, 0)).unwrap_or_else(|e| panic!("{e}"));
    let (start, len) = lib.span();
    let add = lib.address_of("fx_add").unwrap();
    lib.pin();
    drop(lib);
    assert_eq!(call_addr(add, &[40, 2]), 42, "a pinned library stays loaded");
    let ino = std::fs::metadata(&first).unwrap().ino();
    let before = areas_of_inode(ino);
    let err = open_with(second.as_path(), &LoadOptions::new().reserved(&space, 0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReservationInUse, "{err}");
    assert!(err.to_string().contains("libfxinuse1.so"), "names the library there: {err}");
    // Overlapping only its end is refused too.
    let err = open_with(second.as_path(), &LoadOptions::new().reserved(&space, len as usize - page)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReservationInUse, "{err}");
    // The kernel's view: the first library's pages are as they were, and it still works.
    assert_eq!(areas_of_inode(ino), before);
    assert_eq!(call_addr(add, &[1, 2]), 3);
    // With the hint, the second goes to a fresh reservation; past the first, it fits.
    let hinted = open_with(second.as_path(), &LoadOptions::new().reserved_hint(&space, 0)).unwrap();
    let (s2, l2) = hinted.span();
    assert!(s2 + l2 <= space.as_ptr() as u64 || s2 >= space.as_ptr() as u64 + space.len() as u64, "{s2:#x}");
    drop(hinted);
    let after = (len as usize).next_multiple_of(128 * page);
    let beside =
        open_with(second.as_path(), &LoadOptions::new().reserved(&space, after)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(beside.span().0, start + after as u64);
    assert_eq!(call(&beside, "fx_add", &[2, 3]), 5);
    assert_eq!(call_addr(add, &[2, 3]), 5);
    drop(beside);
    // The pinned library is never unloaded: its reservation must outlive the process.
    std::mem::forget(space);
}

/// Regression: the reservation's contract ("outlives the library, every handle to it") could
/// be broken by safe code: `Library::pin` after the load, or another load sharing the library
/// as its dependency, kept the library loaded with no handle the caller knew of, and dropping
/// the reservation unmapped its code (SIGSEGV in `addr_info` or the next call). The library's
/// range is lent out of the reservation now: it stays mapped until the library is unloaded.
#[test]
fn a_library_outlives_its_reservation_when_something_else_keeps_it() {
    let page = mmkit::page_size();
    // Pinned, then every handle and the reservation dropped.
    let path = build("dlext", "basic.c", "fxpinres", &[]);
    let space = aligned_reservation(&path, 256 * page);
    let lib = open_with(path.as_path(), &LoadOptions::new().reserved(&space, 0)).unwrap_or_else(|e| panic!("{e}"));
    let add = lib.address_of("fx_add").unwrap();
    lib.pin();
    drop(lib);
    drop(space);
    assert!(mmkit_elf::addr_info(add).is_some_and(|i| i.library.ends_with("libfxpinres.so")));
    assert_eq!(call_addr(add, &[40, 2]), 42);
    // Kept as another library's dependency.
    let provider = build("dlext-dep", "provider.c", "fxresprov", &[]);
    let dir = provider.parent().unwrap().display().to_string();
    let consumer =
        build("dlext-dep", "consumer.c", "fxresuser", &[&format!("-L{dir}"), "-lfxresprov", "-Wl,-rpath,$ORIGIN"]);
    let space = aligned_reservation(&provider, 256 * page);
    let prov = open_with(provider.as_path(), &LoadOptions::new().reserved(&space, 0)).unwrap_or_else(|e| panic!("{e}"));
    let start = prov.span().0;
    let user = open(consumer.as_path());
    assert_eq!(call(&user, "fx_consume", &[4]), 41);
    let user_deps: Vec<_> = user.loaded_dependencies().iter().map(|d| d.span().0).collect();
    assert!(user_deps.contains(&start), "the consumer shares the reserved copy: {user_deps:x?}");
    drop(prov);
    drop(space);
    assert_eq!(call(&user, "fx_consume", &[5]), 51, "the shared copy is still mapped");
    drop(user);
    // Unloaded at last: nothing of its file is mapped (told by inode: other tests may map into
    // the freed range meanwhile).
    let ino = std::fs::metadata(&provider).unwrap().ino();
    assert!(areas_of_inode(ino).is_empty(), "{:?}", areas_of_inode(ino));
}

/// `junk` bytes, padded to a page, then the library: an archive the caller parsed itself.
fn library_at_offset(name: &str, pad_pages: usize) -> (std::fs::File, u64) {
    let lib = std::fs::read(build("dlext", "basic.c", name, &[])).unwrap();
    let offset = (pad_pages * mmkit::page_size()) as u64;
    let mut bytes = vec![0x5a; offset as usize];
    bytes.extend_from_slice(&lib);
    let file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &file, &bytes).unwrap();
    (file, offset)
}

#[test]
fn fd_at_an_offset_loads_like_an_apk_entry() {
    let (file, offset) = library_at_offset("fxfd", 3);
    let source = Source::fd(&file, offset, "bundle.bin").unwrap();
    drop(file); // the source keeps its own duplicate
    let lib = open_with(source, &LoadOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&lib, "fx_add", &[2, 40]), 42);
    assert_eq!(call(&lib, "fx_mul", &[-6, 7]), -42);
    // Mapped from the file at offset + p_offset: the first file-backed area starts at `offset`.
    let (start, len) = lib.span();
    let areas: Vec<_> = areas_in(start, len).into_iter().filter(|a| a.inode != 0).collect();
    assert!(!areas.is_empty());
    assert_eq!(areas.iter().map(|a| a.offset).min(), Some(offset), "{areas:?}");
    lib.verify().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fd_offsets_are_validated() {
    let page = mmkit::page_size() as u64;
    let (file, offset) = library_at_offset("fxfdbad", 1);
    let len = file.metadata().unwrap().len();
    let err = try_open(Source::fd(&file, offset + 16, "bundle.bin").unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryMisaligned, "{err}");
    assert!(err.to_string().contains("bundle.bin"), "{err}");
    let past = len.div_ceil(page) * page;
    let err = try_open(Source::fd(&file, past, "bundle.bin").unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryTruncated, "{err}");
    // Offset 0 is the junk page: not an ELF file.
    assert!(try_open(Source::fd(&file, 0, "bundle.bin").unwrap()).is_err());
    // Not a regular file: refused before anything is read.
    let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
    let err = try_open(Source::fd(&dir, 0, "a directory").unwrap()).unwrap_err();
    assert!(err.to_string().contains("not a regular file: a directory"), "{err}");
}

/// A descriptor that cannot be read (write-only, `O_PATH`) says so; it was `pread ... EBADF`.
#[test]
fn fd_sources_must_be_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfd.so");
    std::fs::copy(lib("basic.c", "fxbasic"), &path).unwrap();
    let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let o_path =
        rustix::fs::open(&path, rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .unwrap();
    for (what, source) in
        [("write-only", Source::fd(&write_only, 0, "w").unwrap()), ("O_PATH", Source::fd(&o_path, 0, "p").unwrap())]
    {
        let err = try_open(source.clone()).unwrap_err();
        assert!(err.to_string().contains("not open for reading"), "{what}: {err}");
        let err = mmkit_elf::plan(&source, mmkit::page_size() as u64).unwrap_err();
        assert!(err.to_string().contains("not open for reading"), "{what}: {err}");
    }
}

/// The `VmFlags` line of the `/proc/self/smaps` area starting at `start`.
fn vm_flags(start: u64) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let head = format!("{start:x}-");
    let mut found = false;
    for line in smaps.lines() {
        if line.starts_with(&head) {
            found = true;
        } else if found && line.starts_with("VmFlags:") {
            return line.to_owned();
        }
    }
    panic!("no smaps area starts at {start:#x}");
}

#[test]
fn sealed_code_and_relro_refuse_mprotect_and_munmap_and_unloading_pins() {
    let path = build("dlext", "basic.c", "fxsealed", &["-Wl,-z,relro", "-Wl,-z,now"]);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let lib = match open_with(path.as_path(), &LoadOptions::new().seal(true)) {
        Ok(lib) => lib,
        Err(e) if e.errno().is_none() && e.to_string().contains("no mseal(2)") => {
            // A kernel before 6.10: the report must say so (never the case on this project's VMs).
            assert!(std::env::var_os("CI").is_none(), "the CI kernel lacks mseal: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let maps = lib.segments().unwrap();
    let code = maps.iter().find(|m| m.prot.executable()).expect("a code segment");
    let relro = maps.iter().find(|m| matches!(m.kind, mmkit_elf::MappingKind::Relro { .. })).expect("RELRO");
    for m in [code, relro] {
        assert!(vm_flags(m.start).split_whitespace().any(|f| f == "sl"), "{m:?} is not sealed: {}", vm_flags(m.start));
        // SAFETY: the calls are refused (that is what is tested); were they not, the library's
        // pages would change under it, and the test fails right after.
        let rc = unsafe { libc::mprotect(m.start as *mut _, m.len as usize, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)), "mprotect {m:?}");
        // SAFETY: as above.
        let rc = unsafe { libc::munmap(m.start as *mut _, m.len as usize) };
        assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)), "munmap {m:?}");
    }
    // The writable data after RELRO is not sealed.
    if let Some(data) = maps.iter().find(|m| m.prot.writable()) {
        assert!(!vm_flags(data.start).split_whitespace().any(|f| f == "sl"), "data sealed: {data:?}");
    }
    // SAFETY: fixture function, `int64_t fx_add(int64_t, int64_t)`.
    let add = unsafe { lib.symbol::<extern "C" fn()>("fx_add") }.unwrap().address();
    let mapped = areas_of_inode(ino).len();
    // Unloading a sealed library pins it: nothing is unmapped (nothing could be), it still runs.
    drop(lib);
    assert_eq!(areas_of_inode(ino).len(), mapped, "a sealed library was partly unmapped");
    assert_eq!(call_addr(add, &[40, 2]), 42);
}

#[test]
fn sealing_a_library_already_loaded_seals_it_then() {
    // `seal(true)` on an open that finds the library loaded (unsealed) returned it unsealed,
    // without a word: the caller who asked for sealed code got writable-again pages.
    let path =
        build("dlext", "basic.c", "fxsealedlate", &["-Wl,-z,relro", "-Wl,-z,now", "-Wl,-soname,libfxsealedlate.so"]);
    let ns = mmkit_elf::Namespace::new("seal-late").search([path.parent().unwrap().to_str().unwrap()]);
    // SAFETY: test fixture.
    let plain = unsafe { ns.open(path.as_path()) }.unwrap();
    let sealed = |lib: &Library| {
        let maps = lib.segments().unwrap();
        let code = maps.iter().find(|m| m.prot.executable()).expect("a code segment").start;
        vm_flags(code).split_whitespace().any(|f| f == "sl")
    };
    assert!(!sealed(&plain), "loaded without seal");
    // By path (the identity match) and by soname (the loaded-soname match).
    for source in [Source::path(path.as_path()), Source::path("libfxsealedlate.so")] {
        // SAFETY: as above.
        match unsafe { ns.open_with(source, &LoadOptions::new().seal(true)) } {
            Ok(again) => {
                assert_eq!(again.span(), plain.span(), "the same copy");
                assert!(sealed(&again), "seal(true) returned an unsealed library");
                assert!(again.is_pinned(), "a sealed library is pinned");
            }
            Err(e) if e.errno().is_none() && e.to_string().contains("no mseal(2)") => {
                assert!(std::env::var_os("CI").is_none(), "the CI kernel lacks mseal: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Regression (review diff3): every open with `seal(true)` of a library loaded already sealed
/// its code and RELRO again: `mseal` calls on each open, and the reservation recorded the sealed
/// ranges once more each time (a list growing with the opens). Once sealed, an open makes no
/// `mseal` call: a thread whose `mseal` fails (a seccomp filter) still opens it.
#[cfg(target_os = "linux")]
#[test]
fn a_library_sealed_once_is_not_sealed_again_on_each_open() {
    let path = build("dlext", "basic.c", "fxsealonce", &["-Wl,-z,relro", "-Wl,-z,now"]);
    let ns = mmkit_elf::Namespace::new("seal-once").search([path.parent().unwrap().to_str().unwrap()]);
    // SAFETY: test fixture.
    let plain = unsafe { ns.open(path.as_path()) }.unwrap();
    // SAFETY: as above.
    match unsafe { ns.open_with(path.as_path(), &LoadOptions::new().seal(true)) } {
        Ok(_) => {}
        Err(e) if e.errno().is_none() && e.to_string().contains("no mseal(2)") => {
            assert!(std::env::var_os("CI").is_none(), "the CI kernel lacks mseal: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread only: mseal (462 on every architecture) fails with EPERM.
            const SYS_MSEAL: u32 = 462;
            let filter = [
                libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: SYS_MSEAL,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            // SAFETY: prctl with integer arguments and a filter that outlives the call; both
            // apply to this thread only (no TSYNC), which ends with the scope.
            unsafe {
                // (Variadic: every argument passed as the `unsigned long` prctl reads.)
                let (one, zero) = (1 as libc::c_ulong, 0 as libc::c_ulong);
                assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero), 0);
                let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
                assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, mode, &prog as *const libc::sock_fprog), 0);
            }
            for source in [Source::path(path.as_path()), Source::path(path.as_path())] {
                // SAFETY: as above.
                let again = unsafe { ns.open_with(source, &LoadOptions::new().seal(true)) }
                    .unwrap_or_else(|e| panic!("sealed again (mseal called) on a later open: {e}"));
                assert_eq!(again.span(), plain.span(), "the same copy");
            }
        });
    });
}

/// Sum of `Pss:` (KiB) of process `pid`'s areas inside `[start, end)`, and the inodes backing them.
fn pss_in(pid: i32, start: u64, end: u64) -> (u64, Vec<u64>) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut pss, mut inodes, mut inside) = (0, Vec::new(), false);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
            inside = a < end && b > start;
            if inside {
                assert!(a >= start && b <= end, "an area straddles the RELRO range: {line}");
                inodes.push(f.nth(3).unwrap().parse().unwrap());
            }
        } else if inside && first == "Pss:" {
            pss += f.next().unwrap().parse::<u64>().unwrap();
        }
    }
    (pss, inodes)
}

impl Loader {
    /// Tells the child to exit and returns its wait status.
    fn finish(mut self) -> i32 {
        self.release_and_wait()
    }

    fn release_and_wait(&mut self) -> i32 {
        if self.pid == 0 {
            return 0;
        }
        // A byte, not EOF: children forked later hold copies of the write end.
        let _ = std::io::Write::write_all(&mut self.release, b"x");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.pid = 0;
        status
    }
}

impl Drop for Loader {
    /// No orphans when the test fails half way.
    fn drop(&mut self) {
        self.release_and_wait();
    }
}

/// A pipe `(read end, write end)`.
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh descriptors, owned by nobody else.
    unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) }
}

/// A forked process that loaded the library: it reports `(shared, private)` RELRO pages and
/// waits until told to exit.
struct Loader {
    pid: i32,
    release: std::fs::File,
}

fn fork_loader(
    path: &std::path::Path,
    space: &Reservation,
    relro: Option<(bool, &std::fs::File)>,
) -> (Loader, (i64, i64)) {
    use std::io::{Read, Write};
    let (mut report_r, mut report_w) = pipe();
    let (mut release_r, release_w) = pipe();
    // SAFETY: the test runs in a fresh single-threaded process (in_fresh_process), so the child
    // may allocate; it ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut options = LoadOptions::new().reserved(space, 0);
        options = match relro {
            Some((true, f)) => options.write_relro(f),
            Some((false, f)) => options.use_relro(f),
            None => options,
        };
        let code = match open_with(path, &options) {
            Ok(lib) => {
                let sum: i64 = (0..2048).map(|i| call(&lib, "cxx_call", &[i, 3])).sum();
                let (s, p) = lib.relro_sharing().map_or((-1, -1), |(s, p)| (s as i64, p as i64));
                let _ = report_w.write_all(format!("{s} {p} {sum}\n").as_bytes());
                drop(report_w);
                let _ = release_r.read(&mut [0u8; 1]);
                std::mem::forget(lib);
                0
            }
            Err(e) => {
                let _ = report_w.write_all(format!("error {e}\n").as_bytes());
                1
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(report_w);
    let mut line = String::new();
    report_r.read_to_string(&mut line).unwrap_or(0);
    let line = line.trim().to_owned();
    assert!(!line.starts_with("error") && !line.is_empty(), "child: {line:?}");
    let v: Vec<i64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (Loader { pid, release: release_w }, (v[0], v[1]))
}

/// `ANDROID_DLEXT_WRITE_RELRO`/`USE_RELRO`: 8 processes load a C++ library with ~200 KiB of
/// RELRO (vtables) at the same address; the Pss of its RELRO range, from `/proc/PID/smaps`,
/// with and without sharing through a RELRO file.
#[test]
fn shared_relro_is_paid_for_about_once_by_8_processes() {
    if !in_fresh_process("shared_relro_is_paid_for_about_once_by_8_processes") {
        return;
    }
    const N: usize = 8;
    let path = build("dlext", "cxxrelro.cpp", "fxcxxrelro", &["-lstdc++", "-Wl,-z,now"]);
    // As in Android's zygote, the system libraries are loaded before forking: they are at the
    // same address in every child, so the relocated RELRO is the same too.
    let cpath = std::ffi::CString::new("libstdc++.so.6").unwrap();
    // SAFETY: glibc's dlopen of the C++ runtime; never closed.
    assert!(!unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW) }.is_null());
    let plan = mmkit_elf::plan(&Source::path(&path), mmkit::page_size() as u64).unwrap();
    let (rs, rl) = plan.relro.expect("the fixture has a RELRO segment");
    assert!(rl >= 128 << 10, "the fixture's RELRO is only {rl:#x} bytes");
    let space = aligned_reservation(&path, plan.span_len as usize);
    let (start, end) =
        (space.as_ptr() as u64 + rs - plan.span_vaddr, space.as_ptr() as u64 + rs - plan.span_vaddr + rl);
    let pages = rl / mmkit::page_size() as u64;
    let dir = tempfile::tempdir().unwrap();
    let relro_path = dir.path().join("relro");
    let relro_ino = |f: &std::fs::File| f.metadata().unwrap().ino();

    let measure =
        |loaders: &[Loader]| -> Vec<(u64, Vec<u64>)> { loaders.iter().map(|l| pss_in(l.pid, start, end)).collect() };
    let finish = |loaders: Vec<Loader>| {
        for l in loaders {
            let pid = l.pid;
            assert_eq!(l.finish(), 0, "child {pid} failed");
        }
    };

    // Without sharing: every process has its own relocated copy.
    let alone: Vec<Loader> = (0..N).map(|_| fork_loader(&path, &space, None).0).collect();
    let pss_alone = measure(&alone);
    finish(alone);

    // With sharing: the first writes the RELRO file, the others use it.
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&relro_path).unwrap();
    let (first, counts) = fork_loader(&path, &space, Some((true, &file)));
    assert_eq!(counts, (pages as i64, 0), "the writer maps every RELRO page from the file");
    let mut shared = vec![first];
    for _ in 1..N {
        let (l, counts) = fork_loader(&path, &space, Some((false, &file)));
        assert_eq!(counts, (pages as i64, 0), "a user of the file found pages that differ");
        shared.push(l);
    }
    let pss_shared = measure(&shared);
    for (pid, (_, inodes)) in shared.iter().map(|l| l.pid).zip(&pss_shared) {
        assert!(
            !inodes.is_empty() && inodes.iter().all(|&i| i == relro_ino(&file)),
            "process {pid}: RELRO backed by {inodes:?}"
        );
    }

    // A RELRO file with one page changed: that page stays private, and is counted.
    let mut bytes = std::fs::read(&relro_path).unwrap();
    bytes[mmkit::page_size() + 8] ^= 0xff;
    let other_path = dir.path().join("relro-changed");
    std::fs::write(&other_path, &bytes).unwrap();
    let other = std::fs::File::open(&other_path).unwrap();
    let (odd, counts) = fork_loader(&path, &space, Some((false, &other)));
    assert_eq!(counts, (pages as i64 - 1, 1), "one page differs");
    let (_, inodes) = pss_in(odd.pid, start, end);
    // The differing page keeps the library's own (copied-on-write) mapping.
    let lib_ino = std::fs::metadata(&path).unwrap().ino();
    assert!(inodes.contains(&lib_ino) && inodes.contains(&relro_ino(&other)), "{inodes:?}");
    finish(vec![odd]);
    finish(shared);

    let sum = |v: &[(u64, Vec<u64>)]| v.iter().map(|p| p.0).sum::<u64>();
    let (a, s) = (sum(&pss_alone), sum(&pss_shared));
    eprintln!(
        "RELRO {} KiB ({pages} pages), {N} processes: Pss without sharing {a} KiB (per process {:?}), \
         with a RELRO file {s} KiB (per process {:?}); ratio {:.3}",
        rl >> 10,
        pss_alone.iter().map(|p| p.0).collect::<Vec<_>>(),
        pss_shared.iter().map(|p| p.0).collect::<Vec<_>>(),
        s as f64 / a as f64
    );
    assert!(a >= (N as u64) * (rl >> 10) * 9 / 10, "without sharing each process pays for its RELRO: {a} KiB");
    assert!(s * 4 <= a, "sharing saved less than 3/4: {s} KiB vs {a} KiB");
}

/// A RELRO file that cannot serve (a FIFO, a read-only file to write, a write-only one to use)
/// is named as such before relocation: the errors were `ftruncate ... EINVAL`, a size mismatch
/// ("another library or build?") and `pread ... EBADF`.
#[test]
fn relro_files_of_the_wrong_kind_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = build("dlext", "basic.c", "fxrelrokind", &[]);
    let fifo = dir.path().join("relro.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let file = dir.path().join("relro");
    let read_only = {
        std::fs::write(&file, b"").unwrap();
        std::fs::File::open(&file).unwrap()
    };
    let write_only = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    let space = aligned_reservation(&path, 64 * mmkit::page_size());
    let cases: [(&str, LoadOptions<'_>, &str); 4] = [
        ("write to a FIFO", LoadOptions::new().reserved(&space, 0).write_relro(&fifo), "not a regular file: a FIFO"),
        ("use a FIFO", LoadOptions::new().reserved(&space, 0).use_relro(&fifo), "not a regular file: a FIFO"),
        ("write read-only", LoadOptions::new().reserved(&space, 0).write_relro(&read_only), "reading and writing"),
        ("use write-only", LoadOptions::new().reserved(&space, 0).use_relro(&write_only), "open for reading"),
    ];
    for (what, options, says) in cases {
        let err = open_with(path.as_path(), &options).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
}

/// Writing a RELRO file that this process maps (the RELRO of a library still loaded, written to
/// it before) emptied the pages that library reads: its next access raised SIGBUS. Refused, and
/// the first library keeps working.
#[test]
fn a_relro_file_the_process_maps_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = build("dlext", "basic.c", "fxrelrotwice", &["-Wl,-z,relro,-z,now"]);
    let relro = dir.path().join("relro");
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&relro).unwrap();
    let space = aligned_reservation(&path, 64 * mmkit::page_size());
    let first = open_with(path.as_path(), &LoadOptions::new().reserved(&space, 0).write_relro(&file)).unwrap();
    let (shared, _) = first.relro_sharing().unwrap();
    assert!(shared > 0, "the first load maps its RELRO from the file");
    let written = std::fs::read(&relro).unwrap();
    let copy = dir.path().join("libfxrelrotwice-copy.so");
    std::fs::copy(&path, &copy).unwrap();
    let space2 = aligned_reservation(&copy, 64 * mmkit::page_size());
    let err =
        open_with(copy.as_path(), &LoadOptions::new().reserved(&space2, 0).write_relro(&file)).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("this process maps it"), "{err}");
    assert_eq!(std::fs::read(&relro).unwrap(), written, "the file was changed");
    // `ops` (function pointers) and `names` are RELRO data, read through the file's pages.
    assert_eq!(call(&first, "fx_apply", &[2, 6, 7]), 42, "the first library's RELRO pages are intact");
    assert_eq!(call(&first, "fx_name_len", &[3]), 5);
}
