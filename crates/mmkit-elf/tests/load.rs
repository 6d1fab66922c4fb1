//! Loading fixtures with mmkit and with glibc's dlopen (the oracle): same results.

mod common;

use common::*;
use mmkit_elf::{ErrorKind, Library, MappingKind, Source};

/// The calls every variant of basic.c must answer like glibc's copy.
const BASIC_CALLS: &[(&str, &[i64])] = &[
    ("fx_add", &[2, 40]),
    ("fx_sub", &[2, 40]),
    ("fx_mul", &[-6, 7]),
    ("fx_apply", &[0, 5, 6]),
    ("fx_apply", &[1, 5, 6]),
    ("fx_apply", &[2, 5, 6]),
    ("fx_name_len", &[0]),
    ("fx_name_len", &[3]),
    ("fx_bump", &[5]),
    ("fx_bump", &[5]),
    ("fx_format_len", &[123456]),
    ("fx_format_len", &[-7]),
    ("fx_sum6", &[1, 2, 3, 4, 5, 6]),
    ("fx_weak_is_null", &[]),
];

#[test]
fn basic_fixture_matches_dlopen_in_every_link_variant() {
    let dir = tempfile::tempdir().unwrap();
    for (variant, flags) in VARIANTS {
        // A file of its own (see `own_basic_copy`): `fx_bump` is compared with glibc's copy.
        let variant_dir = dir.path().join(variant);
        std::fs::create_dir(&variant_dir).unwrap();
        let path = copy_into(&build(variant, "basic.c", "fxbasic", flags), &variant_dir);
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        for (name, args) in BASIC_CALLS {
            let want = oracle.call(name, args);
            let got = call(&ours, name, args);
            assert_eq!(got, want, "{variant}: {name}{args:?}");
        }
        // glibc's IFUNC-selected strlen, bound with the version the library asked for.
        assert_eq!(call(&ours, "fx_strlen_addr", &[]), oracle.call("fx_strlen_addr", &[]), "{variant}");
        ours.verify().unwrap_or_else(|e| panic!("{variant}: {e}"));
    }
}

/// A symbol that says it is defined but has no value (`st_value` 0, not absolute, not TLS) is
/// no definition to glibc's lookup. Regression: mmkit-elf bound the basic fixture's weak
/// `__gmon_start__`, given a reserved section index (0xff00) in place of `SHN_UNDEF`, to the
/// library's base, and `_init` called the ELF header (SIGSEGV) where glibc's copy loads.
#[test]
fn a_symbol_without_a_value_is_no_definition() {
    use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
    let bytes = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
    let file = ElfFile64::<object::Endianness>::parse(&bytes[..]).unwrap();
    let e = file.endian();
    let sections = file.elf_header().sections(e, &bytes[..]).unwrap();
    let (_, dynsym) = sections.iter().enumerate().find(|(_, s)| s.sh_type(e) == object::elf::SHT_DYNSYM).unwrap();
    let strtab = sections.strings(e, &bytes[..], object::SectionIndex(dynsym.sh_link(e) as usize)).unwrap();
    let (at, n) = (dynsym.sh_offset(e) as usize, dynsym.sh_size(e) as usize / 24);
    let entry = (0..n)
        .map(|i| at + 24 * i)
        .find(|&sym| {
            let name = u32::from_le_bytes(bytes[sym..sym + 4].try_into().unwrap());
            strtab.get(name).ok() == Some(&b"__gmon_start__"[..])
        })
        .expect("the fixture refers to __gmon_start__ (crti's weak reference)");
    let mut patched = bytes.clone();
    patched[entry + 6..entry + 8].copy_from_slice(&0xff00u16.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfxnovalue.so");
    std::fs::write(&path, &patched).unwrap();
    let oracle = Dl::open(&path);
    let ours = open(path.as_path());
    for (name, args) in BASIC_CALLS {
        assert_eq!(call(&ours, name, args), oracle.call(name, args), "{name}{args:?}");
    }
}

/// The basic fixture linked by gold and by LLVM's lld (the NDK's linker: its read-only data
/// before the code, its own PLT and GOT layout), not GNU ld, answers as glibc's copy, with the
/// usual link options.
#[test]
fn basic_fixture_matches_dlopen_when_linked_by_gold_or_lld() {
    let Some(lld) = lld_flags(&[]) else { return };
    let lld: Vec<&str> = lld.iter().map(String::as_str).collect();
    let linkers: [(&str, Vec<&str>); 4] = [
        ("gold", vec!["-fuse-ld=gold"]),
        ("gold-now", vec!["-fuse-ld=gold", "-Wl,-z,now"]),
        ("lld", lld.clone()),
        ("lld-now-16k", [&lld[..], &["-Wl,-z,now", "-Wl,-z,max-page-size=16384"]].concat()),
    ];
    for (variant, flags) in linkers {
        let path = build(variant, "basic.c", "fxbasic", &flags);
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        for (name, args) in BASIC_CALLS {
            assert_eq!(call(&ours, name, args), oracle.call(name, args), "{variant}: {name}{args:?}");
        }
        assert_eq!(call(&ours, "fx_strlen_addr", &[]), oracle.call("fx_strlen_addr", &[]), "{variant}");
        ours.verify().unwrap_or_else(|e| panic!("{variant}: {e}"));
    }
}

/// A library that exports nothing (a plugin registering itself from its constructor) linked
/// by GNU ld: its `DT_GNU_HASH` hashes nothing and says `symoffset` 1, and its imports lie past
/// that, so the hash table does not count the symbols its relocations name. glibc reads
/// symbols by index; mmkit-elf refused the library ("symbol index 1 out of range"), as it did
/// Debian's `libgrpc++_error_details.so.1.51`.
#[test]
fn a_library_that_exports_nothing_loads_as_with_glibc() {
    if !in_fresh_process("a_library_that_exports_nothing_loads_as_with_glibc") {
        return;
    }
    let path = build("noexport", "noexport.c", "fxnoexport", &["-fvisibility=hidden"]);
    // The fixture is what the test is about: no DT_HASH, a GNU hash table hashing nothing
    // from index 1, and relocations naming imports past it.
    let bytes = std::fs::read(&path).unwrap();
    let entries = dynamic_entries(&bytes);
    assert!(!entries.iter().any(|&(t, _, _)| t == u64::from(object::elf::DT_HASH)), "the fixture has DT_HASH");
    let &(_, gnu_hash, _) = entries
        .iter()
        .find(|&&(t, _, _)| t == u64::from(object::elf::DT_GNU_HASH))
        .expect("the fixture has DT_GNU_HASH");
    // The first segment maps the file from offset 0 at address 0: the address is the offset.
    let word = |at: u64| u32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().unwrap());
    let (nbuckets, symoffset) = (word(gnu_hash), word(gnu_hash + 4));
    let bucket0 = word(gnu_hash + 16 + 8 * u64::from(word(gnu_hash + 8)));
    assert_eq!((nbuckets, symoffset, bucket0), (1, 1, 0), "the linker no longer writes the empty table this is about");
    // (Read with `object`, not readelf: the arm64 VM has no binutils.)
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(&*bytes).unwrap();
    let imports: Vec<String> =
        file.dynamic_symbols().filter(|s| s.is_undefined()).filter_map(|s| s.name().ok().map(str::to_owned)).collect();
    assert!(imports.iter().any(|n| n == "getpid") && imports.iter().any(|n| n == "snprintf"), "{imports:?}");
    let named = file.dynamic_relocations().into_iter().flatten().filter_map(|(_, r)| match r.target() {
        object::RelocationTarget::Symbol(i) => Some(i.0),
        _ => None,
    });
    assert!(named.max().unwrap_or(0) > symoffset as usize, "no relocation names a symbol past symoffset");

    take_log();
    let ours = try_open(path.as_path()).unwrap_or_else(|e| panic!("{e}"));
    let logged = take_log();
    assert_eq!(logged, "+noexport:10:1;", "mmkit's copy's constructor");
    ours.verify().unwrap();
    let _oracle = Dl::open(&path);
    assert_eq!(take_log(), logged, "glibc's copy's constructor");
}

#[test]
fn relr_variant_really_has_packed_relocations() {
    // Guards the test above: the RELR build must contain DT_RELR, the default one must not.
    let has_relr = |p: &std::path::Path| {
        let out = std::process::Command::new("readelf")
            .arg("-d")
            .arg(p)
            .output()
            .expect("readelf (binutils, installed with gcc)");
        String::from_utf8_lossy(&out.stdout).contains("(RELR)")
    };
    let relr = build("relr", "basic.c", "fxbasic", &["-Wl,-z,pack-relative-relocs"]);
    let plain = lib("basic.c", "fxbasic");
    assert!(has_relr(&relr), "the RELR build has no DT_RELR");
    assert!(!has_relr(&plain), "the default build has DT_RELR");
}

#[test]
fn segments_are_mapped_from_the_file_with_planned_rights() {
    let path = lib("basic.c", "fxbasic");
    let ours = open(path.as_path());
    assert_eq!(call(&ours, "fx_add", &[1, 2]), 3);
    let page = mmkit_elf::page_size();
    assert_eq!(ours.plan().page_size, page);
    let maps = ours.segments().unwrap();
    assert!(maps.iter().any(|m| m.prot.executable() && !m.prot.writable() && m.file_offset.is_some()));
    assert!(maps.iter().all(|m| !(m.prot.writable() && m.prot.executable())));
    // RELRO became read-only.
    assert!(maps.iter().any(|m| matches!(m.kind, MappingKind::Relro { .. }) && !m.prot.writable()));
    for m in &maps {
        assert_eq!(m.start % page, 0);
        assert_eq!(m.len % page, 0);
        assert!(m.resident_pages <= m.pages);
        assert!(m.present_pages <= m.pages);
    }
    // The code just called is present in our page tables; the gap never is.
    let text = maps.iter().find(|m| m.prot.executable()).unwrap();
    assert!(text.present_pages >= 1);
    assert!(maps.iter().filter(|m| m.kind == MappingKind::Gap).all(|m| m.present_pages == 0));
    let (start, len) = ours.span();
    assert_eq!(maps.first().unwrap().start, start);
    assert_eq!(maps.iter().map(|m| m.len).sum::<u64>(), len);
    ours.verify().unwrap();
}

#[test]
fn a_hole_between_segments_stays_inaccessible() {
    let path = build("hole", "hole.c", "fxhole", &["-Wl,-Tdata=0x40000"]);
    let ours = open(path.as_path());
    let oracle = Dl::open(&path);
    assert_eq!(call(&ours, "fx_hole", &[3]), 82);
    assert_eq!(call(&ours, "fx_hole", &[3]), 123);
    assert_eq!(oracle.call("fx_hole", &[3]), 82);
    if !host_cc() {
        return; // `segments()` reads /proc/self/maps, which qemu-user does not show as is.
    }
    let maps = ours.segments().unwrap();
    let gaps: Vec<_> = maps.iter().filter(|m| m.kind == MappingKind::Gap).collect();
    assert!(gaps.iter().map(|g| g.len).sum::<u64>() >= 0x30000, "{maps:?}");
    // Every area of /proc/self/maps inside a gap is inaccessible and holds no file.
    let areas = std::fs::read_to_string("/proc/self/maps").unwrap();
    for g in gaps {
        let inside: Vec<&str> = areas
            .lines()
            .filter(|l| {
                let (s, e) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
                let (s, e) = (u64::from_str_radix(s, 16).unwrap(), u64::from_str_radix(e, 16).unwrap());
                s < g.start + g.len && e > g.start
            })
            .collect();
        assert!(!inside.is_empty(), "{g:?}");
        for l in inside {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f[1].starts_with("---") && f[4] == "0", "the hole {:#x}+{:#x} is mapped: {l}", g.start, g.len);
        }
    }
    ours.verify().unwrap();
}

#[test]
fn verify_notices_a_changed_mapping() {
    let path = lib("basic.c", "fxbasic");
    let ours = open(path.as_path());
    ours.verify().unwrap();
    // Make the text pages writable behind the loader's back: verify must object.
    let text = ours.segments().unwrap().into_iter().find(|m| m.prot.executable()).unwrap();
    // SAFETY: the pages stay mapped; only their protection changes; nothing runs meanwhile.
    unsafe {
        rustix::mm::mprotect(
            text.start as *mut _,
            text.len as usize,
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
        )
        .unwrap();
    }
    let err = ours.verify().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VerifyFailed);
    assert!(err.to_string().contains("rw-p"), "{err}");
    // SAFETY: restore.
    unsafe {
        rustix::mm::mprotect(
            text.start as *mut _,
            text.len as usize,
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::EXEC,
        )
        .unwrap();
    }
    ours.verify().unwrap();
}

#[test]
fn unloading_unmaps_the_span() {
    // A copy of its own (its own inode): other test threads load the shared fixture, and the
    // kernel may hand them the address range this test just released.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfxunload.so");
    std::fs::copy(lib("basic.c", "fxbasic"), &path).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()).to_string();
    let ours = open(path.as_path());
    let (start, len) = ours.span();
    let areas = || -> Vec<String> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(inode.as_str()))
            .map(str::to_owned)
            .collect()
    };
    let mapped = areas();
    assert!(mapped.iter().any(|l| l.starts_with(&format!("{start:x}-"))), "{mapped:?}");
    drop(ours);
    assert_eq!(areas(), Vec::<String>::new(), "the file is still mapped after drop (span {start:#x}+{len:#x})");
}

#[test]
fn multi_page_bss_is_zero_and_writable() {
    // Every variant is built first: a store of prebuilt fixtures (MMKIT_ELF_FIXTURES_SAVE) is
    // recorded under qemu-user, where `segments()` fails at the first variant.
    let paths: Vec<_> =
        VARIANTS.iter().map(|(variant, flags)| (variant, build(variant, "bss.c", "fxbss", flags))).collect();
    for (variant, path) in paths {
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        assert_eq!(call(&ours, "fx_bss_size", &[]), 5 * 65536 + 123);
        assert_eq!(call(&ours, "fx_bss_sum", &[]), oracle.call("fx_bss_sum", &[]), "{variant}");
        assert_eq!(call(&ours, "fx_bss_sum", &[]), 6);
        assert_eq!(call(&ours, "fx_bss_set", &[300_000, 9]), 15);
        let maps = ours.segments().unwrap();
        let bss: u64 = maps.iter().filter(|m| matches!(m.kind, MappingKind::Bss { .. })).map(|m| m.len).sum();
        assert!(bss >= 4 * 65536, "{variant}: anonymous .bss is only {bss} bytes");
        ours.verify().unwrap_or_else(|e| panic!("{variant}: {e}"));
    }
}

/// Whether the page at `addr` is mapped in this process's page tables (`/proc/self/pagemap`).
fn page_present(addr: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let page = mmkit_elf::page_size();
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut entry = [0u8; 8];
    f.read_exact_at(&mut entry, addr / page * 8).unwrap();
    u64::from_le_bytes(entry) >> 63 == 1
}

#[test]
fn writable_pages_the_loader_writes_are_prefaulted_and_others_demand_paged() {
    let page = mmkit_elf::page_size();
    // Built first, for the store of prebuilt fixtures recorded under qemu-user, where the
    // fault counts below differ (qemu's, not the guest's).
    let data = lib("data.c", "fxdata");
    // basic.c: the writable segment is RELRO + the page whose tail is zeroed: every page of it
    // is in the page tables as soon as the library is open (mapped with MAP_POPULATE).
    let ours = open(lib("basic.c", "fxbasic").as_path());
    let rw = ours.plan().segments.iter().find(|s| s.prot.writable()).expect("a writable segment");
    assert!(rw.prefault, "{rw:?}");
    let start = ours.bias().wrapping_add(rw.map_vaddr);
    for p in 0..rw.map_file_len / page {
        assert!(page_present(start + p * page), "page {p} of the writable segment is not present");
    }
    drop(ours);
    // So opening takes fewer page faults than glibc's dlopen of the same file, which reads
    // .dynamic (a read fault), relocates (a copy-on-write fault) and zeroes the .bss tail
    // (a third fault) in that segment. Fewest of five tries, counted for this thread.
    let path = lib("basic.c", "fxbasic");
    let minflt = || {
        // SAFETY: getrusage only writes the struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    };
    let fewest = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let before = minflt();
                f();
                minflt() - before
            })
            .min()
            .unwrap()
    };
    // Without the unwind-table registration of a plain C library (one more fault: libgcc
    // reads .eh_frame), which the default does so that backtraces cross the library.
    let spare = mmkit_elf::Namespace::new("spare-unwind").unwind_tables_for_every_library(false);
    // SAFETY: a test fixture.
    let ours_faults = fewest(&|| drop(unsafe { spare.open(path.as_path()) }.unwrap()));
    let glibc_faults = fewest(&|| drop(Dl::open(&path)));
    assert!(ours_faults < glibc_faults, "page faults to open: mmkit {ours_faults}, glibc {glibc_faults}");
    // data.c: 32 pages of plain initialized data. The loader does not write them, so they are
    // not prefaulted: some page of the table is absent until the library reads it.
    let ours = open(data.as_path());
    let rw = ours.plan().segments.iter().find(|s| s.prot.writable()).expect("a writable segment");
    assert!(!rw.prefault, "{rw:?}");
    let table = ours.address_of("fx_table").unwrap();
    let len = call(&ours, "fx_table_len", &[]) as u64;
    let per_page = page / 8;
    let absent = (1..len / per_page)
        .map(|p| table.next_multiple_of(page) + p * page)
        .find(|&a| a + page <= table + len * 8 && !page_present(a))
        .expect("every page of the 32-page table was prefaulted");
    let index = ((absent - table) / 8) as i64;
    assert_eq!(call(&ours, "fx_table_at", &[index]), 0);
    assert!(page_present(absent), "reading the page did not fault it in");
    assert_eq!(call(&ours, "fx_table_at", &[0]), 1);
    assert_eq!(call(&ours, "fx_table_at", &[len as i64 - 1]), 7);
}

#[test]
fn bss_is_named_in_proc_maps_where_supported() {
    let path = lib("bss.c", "fxbss");
    let ours = open(path.as_path());
    let bss = ours.segments().unwrap().into_iter().find(|m| matches!(m.kind, MappingKind::Bss { .. })).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.starts_with(&format!("{:x}-", bss.start))).unwrap().to_owned();
    // Does this kernel name anonymous mappings (CONFIG_ANON_VMA_NAME)? Probe a scratch page.
    let page = rustix::param::page_size();
    // SAFETY: a fresh private anonymous page, unmapped below.
    let scratch = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            page,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::PRIVATE,
        )
    }
    .unwrap();
    // SAFETY: the page just mapped; the kernel only uses its bounds.
    let region = unsafe { std::slice::from_raw_parts(scratch as *const u8, page) };
    let supported = rustix::process::set_virtual_memory_region_name(region, Some(c"probe")).is_ok();
    // SAFETY: our scratch page.
    unsafe { rustix::mm::munmap(scratch, page) }.unwrap();
    if supported {
        assert!(line.contains("[anon:mmkit .bss libfxbss.so]"), "{line}");
    } else {
        eprintln!("this kernel cannot name anonymous mappings (PR_SET_VMA_ANON_NAME); name not checked");
        assert!(!line.contains("[anon:"), "{line}");
    }
}

#[test]
fn constructors_run_in_order_and_destructors_on_drop() {
    for (variant, flags) in VARIANTS {
        let path = build(variant, "ctors.c", "fxctors", flags);
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        assert_eq!(call(&ours, "fx_ctor_order", &[]), 123, "{variant}");
        assert_eq!(call(&ours, "fx_ctor_order", &[]), oracle.call("fx_ctor_order", &[]));
        let flag = Box::new(0i64);
        let p = &*flag as *const i64 as i64;
        call(&ours, "fx_set_flag", &[p]);
        assert_eq!(*flag, 0);
        drop(ours);
        // fini_a (priority 300) runs before fini_b (200): 0*10+7 = 7, then 7*10+8 = 78.
        // SAFETY: the destructor wrote through the pointer; read it back.
        let got = unsafe { std::ptr::read_volatile(&*flag) };
        assert_eq!(got, 78, "{variant}");
    }
}

#[test]
fn ifuncs_resolve_like_glibc() {
    for (variant, flags) in VARIANTS {
        let path = build(variant, "ifunc.c", "fxifunc", flags);
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        for (name, args) in
            [("fx_scale", &[7i64][..]), ("fx_call_scale", &[7]), ("fx_call_local", &[7]), ("fx_via_ptr", &[7])]
        {
            assert_eq!(call(&ours, name, args), oracle.call(name, args), "{variant}: {name}");
        }
        assert_eq!(call(&ours, "fx_scale", &[7]), 21);
        assert_eq!(call(&ours, "fx_call_local", &[7]), 107);
    }
}

/// aarch64: IFUNC resolvers get glibc's arguments: `AT_HWCAP | _IFUNC_ARG_HWCAP` and an
/// `__ifunc_arg_t` (size 24, `AT_HWCAP`, `AT_HWCAP2`); glibc's own copy is the oracle.
#[cfg(target_arch = "aarch64")]
#[test]
fn ifunc_resolvers_get_hwcap_arguments_like_glibc() {
    let path = build("default", "ifunc_hwcap.c", "fxifunchwcap", &[]);
    let ours = open(path.as_path());
    let oracle = Dl::open(&path);
    assert_eq!(call(&ours, "fx_call_answer", &[41]), 42);
    let seen = |i: i64| call(&ours, "fx_seen", &[i]) as u64;
    assert_ne!(seen(0) & (1 << 62), 0, "_IFUNC_ARG_HWCAP is set: {:#x}", seen(0));
    assert_eq!(seen(1), 24, "sizeof(__ifunc_arg_t)");
    for i in 0..4 {
        assert_eq!(seen(i), oracle.call("fx_seen", &[i]) as u64, "argument word {i}");
    }
}

/// Values live in registers across TLS accesses survive them (on aarch64, the TLS descriptor
/// resolver must preserve every register but x0): the same answers as glibc's copy, on a
/// thread's first access (which allocates its block) and after.
#[test]
fn tls_accesses_preserve_the_callers_registers() {
    let path = build("default", "tls_regs.c", "fxtlsregs", &[]);
    let ours = open(path.as_path());
    let oracle = Dl::open(&path);
    let args = [3i64, -7, 11, 5, 13, -2];
    let glibcs = oracle.addr("fx_tls_mix") as u64;
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
}

#[test]
fn thread_locals_are_per_thread() {
    for (variant, flags) in VARIANTS {
        let path = build(variant, "tls.c", "fxtls", flags);
        let ours = open(path.as_path());
        let oracle = Dl::open(&path);
        assert_eq!(call(&ours, "fx_tls_bump", &[1]), oracle.call("fx_tls_bump", &[1]), "{variant}");
        assert_eq!(call(&ours, "fx_tls_bump", &[10]), 16);
        assert_eq!(call(&ours, "fx_tls_local_count", &[]), 2);
        let here = call(&ours, "fx_tls_addr", &[]);
        std::thread::scope(|s| {
            let ours = &ours;
            let h = s.spawn(move || {
                // A new thread starts from the template: 5.
                let first = call(ours, "fx_tls_bump", &[100]);
                (first, call(ours, "fx_tls_addr", &[]), call(ours, "fx_tls_local_count", &[]))
            });
            let (first, addr, count) = h.join().unwrap();
            assert_eq!(first, 105, "{variant}");
            assert_ne!(addr, here, "{variant}: threads share a TLS block");
            assert_eq!(count, 1);
        });
        assert_eq!(call(&ours, "fx_tls_bump", &[0]), 16, "{variant}: another thread changed ours");
    }
}

/// gold, at `-O0`, gives a local-dynamic access's `DTPMOD64` the section symbol of `.tbss`
/// (a local symbol with no name) rather than no symbol: glibc binds a local symbol to the
/// library itself (`RESOLVE_MAP`), so the module is the library's own.
#[test]
fn a_dtpmod_against_a_local_section_symbol_names_the_librarys_own_module_as_with_glibc() {
    let path = build("gold-O0", "tls.c", "fxtlsgold", &["-fuse-ld=gold", "-O0"]);
    let oracle = Dl::open(&path);
    let ours = open(path.as_path());
    for round in 0..2 {
        assert_eq!(call(&ours, "fx_tls_bump", &[1]), oracle.call("fx_tls_bump", &[1]), "round {round}");
        assert_eq!(call(&ours, "fx_tls_local_count", &[]), oracle.call("fx_tls_local_count", &[]), "round {round}");
    }
    std::thread::scope(|s| {
        let ours = &ours;
        let count = s.spawn(move || (call(ours, "fx_tls_bump", &[0]), call(ours, "fx_tls_local_count", &[])));
        assert_eq!(count.join().unwrap(), (5, 1), "a new thread starts from the template");
    });
}

#[test]
fn global_scope_interposes_like_glibc() {
    // Binds its own definition while nothing else defines the name.
    let lib = build("interpose", "interpose.c", "fxip", &[]);
    assert_eq!(call(&open(lib.as_path()), "fx_ip_call", &[]), 1);
    // An RTLD_LOCAL library is not in the global scope: still its own definition.
    let local = build("interpose-local", "interposer.c", "fxipr", &[]);
    let local = Dl::open(&local);
    assert_eq!(call(&open(lib.as_path()), "fx_ip_call", &[]), 1);
    assert_eq!(Dl::open(&lib).call("fx_ip_call", &[]), 1);
    drop(local);
    // An RTLD_GLOBAL one comes first in the scope, for glibc's copy and for mmkit's.
    let global = build("interpose-global", "interposer.c", "fxipr", &[]);
    let global = Dl::open_global(&global);
    let oracle = Dl::open(&lib).call("fx_ip_call", &[]);
    assert_eq!(oracle, 2);
    assert_eq!(call(&open(lib.as_path()), "fx_ip_call", &[]), oracle);
    drop(global);
}

#[test]
fn a_library_promoted_to_the_global_scope_interposes_at_once() {
    // `dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` puts an RTLD_LOCAL library into the global scope
    // without changing glibc's load counters, so an answer mmkit-elf cached for the same
    // counters ("no definition in the global scope") no longer holds.
    // Names of their own: the other interposition test runs beside this one.
    let names: &[&str] = &["-Dfx_ip_value=fx_pr_value", "-Dfx_ip_call=fx_pr_call"];
    let lib = build("interpose-promote", "interpose.c", "fxipp", names);
    let other = build("interpose-promoted", "interposer.c", "fxiprp", names);
    let local = Dl::open(&other);
    assert_eq!(call(&open(lib.as_path()), "fx_pr_call", &[]), 1, "an RTLD_LOCAL library does not interpose");
    let promoted = Dl::promote(&other);
    assert_eq!(call(&open(lib.as_path()), "fx_pr_call", &[]), 2, "the promoted library interposes");
    // glibc's answer (its own copy of the library; loaded last, as it changes the counters).
    assert_eq!(Dl::open(&lib).call("fx_pr_call", &[]), 2);
    drop((promoted, local));
}

/// `DT_SYMBOLIC` (`DF_SYMBOLIC` in `DT_FLAGS`, `-Bsymbolic`'s tag): the library's references
/// look in the library itself first, then in glibc's usual order, so a library in the global
/// scope that defines the same name does not interpose (glibc and bionic both). mmkit-elf did
/// not read the tag and bound the interposer's. The fixture is linked without `-Bsymbolic` (GNU
/// ld would bind the call at link time, leaving no relocation to decide) and the flag set in a
/// copy, so the call goes through the PLT; glibc's copy of each file is the oracle.
#[test]
fn dt_symbolic_binds_the_library_itself_first_as_glibc_does() {
    let names: &[&str] = &["-Dfx_ip_value=fx_sy_value", "-Dfx_ip_call=fx_sy_call", "-Wl,-z,now"];
    let lib = build("symbolic", "interpose.c", "fxsy", names);
    let interposer = build("symbolic-interposer", "interposer.c", "fxsyr", names);
    let dir = tempfile::tempdir().unwrap();
    let symbolic = dir.path().join("libfxsysym.so");
    let bytes = std::fs::read(&lib).unwrap();
    let dt_flags = u64::from(object::elf::DT_FLAGS);
    let flags = dynamic_entries(&bytes).into_iter().find(|&(t, _, _)| t == dt_flags).expect("-z now writes DT_FLAGS").1;
    let bytes = with_dynamic_value(&bytes, dt_flags, flags | u64::from(object::elf::DF_SYMBOLIC));
    std::fs::write(&symbolic, &bytes).unwrap();
    let _global = Dl::open_global(&interposer);
    for (path, own) in [(&lib, false), (&symbolic, true)] {
        let theirs = Dl::open(path).call("fx_sy_call", &[]);
        assert_eq!(theirs, if own { 1 } else { 2 }, "glibc's copy of {}", path.display());
        assert_eq!(call(&open(path.as_path()), "fx_sy_call", &[]), theirs, "{}", path.display());
    }
}

#[test]
fn dependencies_are_loaded_from_the_same_directory_only_when_asked() {
    for (variant, flags) in VARIANTS {
        let base = build(variant, "base.c", "fxbase", flags);
        let dir = base.parent().unwrap();
        let mut dep_flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        dep_flags.push(format!("-L{}", dir.display()));
        dep_flags.push("-lfxbase".into());
        let dep_flags: Vec<&str> = dep_flags.iter().map(String::as_str).collect();
        let dep = build(variant, "dep.c", "fxdep", &dep_flags);
        assert_eq!(dep.parent(), base.parent());
        // As glibc (without LD_LIBRARY_PATH or RUNPATH): the dependency beside the library is
        // not found. Regression: mmkit used to look there first, where glibc never does.
        let c = std::ffi::CString::new(dep.to_str().unwrap()).unwrap();
        // SAFETY: a fixture path; glibc fails before running any of its code.
        assert!(unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) }.is_null(), "{variant}");
        let err = try_open(dep.as_path()).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{variant}: {err}");
        assert!(err.to_string().contains("libfxbase.so"), "{err}");
        // Asked to, the namespace looks beside the library.
        let ns = mmkit_elf::Namespace::new("own-dir").search_own_directory(true);
        // SAFETY: test fixtures are trusted.
        let ours = unsafe { ns.open(dep.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours.needed().iter().filter(|&&n| n == "libfxbase.so").count(), 1);
        assert_eq!(call(&ours, "fx_dep_twice", &[5]), 2010, "{variant}");
        assert_eq!(call(&ours, "fx_dep_counter", &[]), 1000);
        // The base library's symbols are reachable from the dependent's handle, as with dlsym.
        assert_eq!(call(&ours, "fx_base_value", &[1]), 1001);
    }
}

#[test]
fn missing_dependency_is_an_error_naming_it() {
    let base = build("lonely-base", "base.c", "fxbase", &[]);
    let dir = base.parent().unwrap().to_path_buf();
    let dep = build("lonely", "dep.c", "fxdep", &[&format!("-L{}", dir.display()), "-lfxbase"]);
    assert_ne!(dep.parent(), base.parent());
    let err = try_open(dep.as_path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("libfxbase.so"), "{err}");
}

#[test]
fn loads_from_memory() {
    let path = lib("basic.c", "fxbasic");
    let bytes = std::fs::read(&path).unwrap();
    let ours = open(Source::memory("fxbasic-mem", bytes));
    assert_eq!(call(&ours, "fx_add", &[20, 22]), 42);
    assert!(ours.source().starts_with("memfd:"));
    ours.verify().unwrap();
}

/// A copy of the basic fixture in `dir`, a file of its own: a test that checks the fixture's
/// counter gets a copy no other test (on another thread of the harness) has loaded and bumped,
/// as they share a library loaded from one file.
fn own_basic_copy(dir: &tempfile::TempDir) -> std::path::PathBuf {
    copy_into(&lib("basic.c", "fxbasic"), dir.path())
}

#[test]
fn symbols_are_typed_and_missing_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = own_basic_copy(&dir);
    let ours = open(path.as_path());
    // SAFETY: fx_add is int64_t(int64_t, int64_t).
    let add = unsafe { ours.symbol::<extern "C" fn(i64, i64) -> i64>("fx_add") }.unwrap();
    assert_eq!(add(1, 2), 3);
    // SAFETY: fx_counter is an int64_t.
    let counter = unsafe { ours.symbol::<*const i64>("fx_counter") }.unwrap();
    // SAFETY: points into the loaded .data.
    assert_eq!(unsafe { **counter }, 10);
    // SAFETY: never called.
    let err = unsafe { ours.symbol::<extern "C" fn()>("no_such_symbol") }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SymbolNotFound);
    assert!(err.to_string().contains("no_such_symbol"), "{err}");
    // Wrong-size type.
    // SAFETY: rejected before use.
    let err = unsafe { ours.symbol::<u8>("fx_add") }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SymbolNotFound);
    // Static (local) functions are not exported.
    assert!(ours.address_of("first").is_err());
}

#[test]
fn initial_exec_tls_is_a_clear_error() {
    let path = build("ie", "tls_ie.c", "fxtlsie", &[]);
    let err = try_open(path.as_path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedRelocation, "{err}");
    let msg = err.to_string();
    let tprel = if cfg!(target_arch = "aarch64") { "R_AARCH64_TLS_TPREL64" } else { "R_X86_64_TPOFF64" };
    assert!(msg.contains(tprel) && msg.contains("`fx_external_tls`"), "{msg}");
}

/// Lines of `/proc/self/maps` naming `what`.
fn maps_lines_with(what: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains(what)).count()
}

#[test]
fn a_library_built_for_initial_exec_tls_gets_a_block_in_static_tls() {
    // Mesa's GL dispatch, libgomp and libubsan are built this way (DF_STATIC_TLS): initial-exec
    // references to their own variables, which glibc's dlopen serves from its static TLS area.
    let mut cases: Vec<(&str, &[&str])> = vec![("default", &[])];
    if cfg!(target_arch = "x86_64") {
        // TLS descriptors (R_X86_64_TLSDESC) for the general-dynamic alias.
        cases.push(("gnu2", &["-mtls-dialect=gnu2"]));
    }
    for (variant, flags) in cases {
        let path = build(variant, "tls_static.c", "fxtlsstatic", flags);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let loaded: std::sync::OnceLock<Library> = std::sync::OnceLock::new();
        std::thread::scope(|s| {
            let go = go; // dropped if an assertion below fails: the thread then ends
                         // A thread that exists before the load: glibc puts the block into it too.
            let loaded = &loaded;
            let early = s.spawn(move || {
                wait.recv().ok()?;
                let l = loaded.get().unwrap();
                Some((
                    call(l, "fx_static_bump", &[0]),
                    call(l, "fx_static_addr", &[]),
                    call(l, "fx_static_addr_dynamic", &[]),
                ))
            });
            let ours = open(path.as_path());
            let oracle = Dl::open(&path);
            assert_eq!(maps_lines_with("mmkit-static-tls:libfxtlsstatic.so"), 1, "{variant}: the donor is mapped");
            for (by, want) in [(1, 6), (10, 16)] {
                assert_eq!(call(&ours, "fx_static_bump", &[by]), want, "{variant}");
                assert_eq!(oracle.call("fx_static_bump", &[by]), want, "{variant}: glibc's copy");
            }
            assert_eq!(call(&ours, "fx_static_count", &[]), 2, "{variant}: .tbss starts zeroed");
            let here = call(&ours, "fx_static_addr", &[]);
            assert_eq!(
                call(&ours, "fx_static_addr_dynamic", &[]),
                here,
                "{variant}: initial-exec and dynamic access differ"
            );
            // SAFETY: `__thread int64_t`, this thread's copy (as `dlsym` answers).
            let by_symbol = unsafe { *ours.symbol::<*const i64>("fx_static_value").unwrap() };
            assert_eq!(by_symbol as i64, here, "{variant}: Library::symbol of the static block");
            // `.tdata` holds a pointer to a global: relocated before the block was made.
            assert_eq!(
                call(&ours, "fx_static_ptr_target", &[]),
                call(&ours, "fx_static_global_addr", &[]),
                "{variant}"
            );
            loaded.set(ours).ok().unwrap();
            go.send(()).unwrap();
            let (first, addr, dynamic) = early.join().unwrap().unwrap();
            assert_eq!(first, 5, "{variant}: a thread older than the load starts from the image");
            assert_eq!(addr, dynamic, "{variant}: in the older thread");
            assert_ne!(addr, here, "{variant}: threads share a block");
            let ours = loaded.get().unwrap();
            let late = s.spawn(move || {
                let l = ours;
                (
                    call(l, "fx_static_bump", &[100]),
                    call(l, "fx_static_addr", &[]),
                    call(l, "fx_static_addr_dynamic", &[]),
                )
            });
            let (first, addr, dynamic) = late.join().unwrap();
            assert_eq!(first, 105, "{variant}: a new thread starts from the image");
            assert_eq!(addr, dynamic, "{variant}: in the new thread");
            assert_eq!(call(ours, "fx_static_bump", &[0]), 16, "{variant}: another thread changed ours");
        });
        drop(loaded);
        assert_eq!(
            maps_lines_with("mmkit-static-tls:libfxtlsstatic.so"),
            0,
            "{variant}: the donor outlived the library"
        );
    }
}

#[test]
fn static_tls_is_given_back_when_the_library_unloads() {
    // glibc's surplus holds about 1.6 KiB: without the block given back (glibc reclaims the end
    // of the used area when the donor is closed), a few dozen loads would exhaust it. A file of
    // its own: the test above, running in another thread, would share this one's copy.
    let path = build("default", "tls_static.c", "fxtlsstaticloop", &[]);
    for round in 0..300 {
        let l = open(path.as_path());
        assert_eq!(call(&l, "fx_static_bump", &[round]), 5 + round);
    }
}

#[test]
fn two_static_tls_libraries_loaded_at_once_get_a_block_each() {
    // Each library's donor is a memfd that glibc lists by path. With the memfd closed after
    // the dlopen, the second donor got the first one's descriptor number, hence its path, and
    // glibc's dlopen answered with the object it already had by that name: one block shared.
    let a = open(build("default", "tls_static.c", "fxtlsstatica", &[]).as_path());
    let b = open(build("default", "tls_static.c", "fxtlsstaticb", &[]).as_path());
    assert_ne!(call(&a, "fx_static_addr", &[]), call(&b, "fx_static_addr", &[]), "one block for two libraries");
    assert_eq!(call(&a, "fx_static_bump", &[10]), 15);
    assert_eq!(call(&b, "fx_static_bump", &[1]), 6, "b starts from its own image");
    assert_eq!(call(&a, "fx_static_bump", &[0]), 15);
    drop(a);
    // b's block outlives a's donor.
    assert_eq!(call(&b, "fx_static_bump", &[1]), 7);
    assert_eq!(call(&b, "fx_static_addr", &[]), call(&b, "fx_static_addr_dynamic", &[]));
}

#[test]
fn static_tls_too_large_for_glibc_is_refused_as_glibc_refuses_it() {
    let path = build("default", "tls_static_big.c", "fxtlsbig", &[]);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: the fixture has no initializers; a failed dlopen returns null.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(h.is_null(), "glibc loaded 1 MiB of initial-exec TLS");
    let err = try_open(path.as_path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaticTls, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("static TLS") && msg.contains("libfxtlsbig.so"), "{msg}");
    assert!(msg.contains("a block of 1048576 bytes") && err.range().is_none(), "{msg}");
    assert_eq!(maps_lines_with("libfxtlsbig.so"), 0, "nothing of the library stays mapped");
    assert_eq!(maps_lines_with("mmkit-static-tls:libfxtlsbig"), 0, "nor the donor");
}

#[test]
fn large_page_builds_load_on_this_kernel() {
    let path = build("page64k", "basic.c", "fxbasic", &["-Wl,-z,max-page-size=65536", "-Wl,-z,separate-code"]);
    let ours = open(path.as_path());
    // The reservation honors p_align: the bias is a multiple of 64 KiB.
    assert_eq!(ours.bias() % 65536, 0);
    assert_eq!(call(&ours, "fx_add", &[1, 1]), 2);
}

#[test]
fn many_libraries_load_and_unload() {
    let dir = tempfile::tempdir().unwrap();
    let path = own_basic_copy(&dir);
    for i in 0..50 {
        let l = open(path.as_path());
        assert_eq!(call(&l, "fx_bump", &[i]), 10 + i);
    }
    let _: Option<Library> = None;
}

#[test]
fn threads_load_look_up_and_call_at_once() {
    // Loads in parallel (the process-wide lookup cache, the scope walk and glibc's generation
    // counters are shared) and one library shared by every thread.
    let path = lib("basic.c", "fxbasic");
    let shared = open(path.as_path());
    let expect_add = call(&shared, "fx_add", &[20, 22]);
    // One file per thread: a file is loaded once per namespace, so each thread's copy is its
    // own, loaded and unloaded every round while the shared one stays.
    let dir = tempfile::tempdir().unwrap();
    let copies: Vec<_> = (0..4)
        .map(|t| {
            let p = dir.path().join(format!("libfxbasic{t}.so"));
            std::fs::copy(&path, &p).unwrap();
            p
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let (path, shared) = (&copies[t as usize], &shared);
            s.spawn(move || {
                for i in 0..25 {
                    let own = open(path.as_path());
                    assert_eq!(call(&own, "fx_bump", &[i]), 10 + i, "thread {t}");
                    assert_eq!(call(shared, "fx_add", &[20, 22]), expect_add);
                    assert_eq!(call(shared, "fx_mul", &[t, 3]), t * 3);
                    let counter = own.address_of("fx_counter").unwrap();
                    assert!(counter >= own.span().0 && counter < own.span().0 + own.span().1);
                }
            });
        }
    });
    shared.verify().unwrap();
}

#[test]
fn the_unwinder_walks_through_the_library_like_through_dlopens_copy() {
    // _Unwind_Backtrace from inside the library counts frames: without the library's unwind
    // tables it stops at the library's first frame; glibc's copy is found by dl_iterate_phdr,
    // mmkit's through the tables the loader registered.
    let path = build("unwind", "unwind.c", "fxunwind", &["-fno-optimize-sibling-calls"]);
    let oracle = Dl::open(&path);
    let theirs = oracle.call("fx_unwind_frames", &[]);
    let ours = open(path.as_path());
    assert!(ours.unwind_tables_registered(), "it links libgcc_s: {:?}", ours.needed());
    let frames = call(&ours, "fx_unwind_frames", &[]);
    assert!(theirs > 3, "glibc's copy: {theirs} frames");
    // Past the library's three frames and into the Rust test's own: within a frame or two of
    // what glibc's copy sees (the two are called through different helpers).
    assert!(frames > 3 && frames.abs_diff(theirs) <= 2, "mmkit's copy: {frames} frames, glibc's: {theirs}");
    // Unloading deregisters the tables (libgcc aborts on an unknown one), and loading again
    // registers them afresh.
    drop(ours);
    let again = open(path.as_path());
    assert_eq!(call(&again, "fx_unwind_frames", &[]), frames);
    // A plain C library's tables are registered too (backtraces from its callbacks), unless
    // the namespace spares it.
    assert!(open(lib("basic.c", "fxbasic").as_path()).unwind_tables_registered());
    let spare = mmkit_elf::Namespace::new("spare").unwind_tables_for_every_library(false);
    // SAFETY: a test fixture.
    assert!(!unsafe { spare.open(lib("basic.c", "fxbasic").as_path()) }.unwrap().unwind_tables_registered());
}

/// The loader keeps the `.eh_frame` address of the last files it read by their identity, length
/// and `st_ctime`: a library rewritten in place (same inode and length, other layout) is read
/// again, and the
/// unwinder walks the new copy as glibc's does. A stale address would hand libgcc the wrong
/// bytes (no frames past the library, or a crash).
#[test]
fn unwind_tables_of_a_library_rewritten_in_place_are_read_again() {
    let first = build("unwind", "unwind.c", "fxunwind", &["-fno-optimize-sibling-calls"]);
    // With read-only data before them, the unwind tables move.
    let second = build("unwind-pad", "unwind.c", "fxunwind", &["-fno-optimize-sibling-calls", "-DFX_PAD"]);
    let hdr = |p: &std::path::Path| {
        mmkit_elf::plan(&mmkit_elf::Source::path(p), mmkit_elf::page_size()).unwrap().eh_frame_hdr
    };
    assert_ne!(hdr(&first), hdr(&second), "the two builds must place their unwind tables apart");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfxunwind.so");
    // Both the same length (zeros after the first's section headers), so that only the change
    // time tells the two apart.
    let (mut a, b) = (std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    assert!(a.len() <= b.len());
    a.resize(b.len(), 0);
    std::fs::write(&path, &a).unwrap();
    // The loader keeps answers for files changed more than a second before (file times are
    // coarse): let this one settle so that its answer is kept.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let frames = call(&open(path.as_path()), "fx_unwind_frames", &[]);
    assert!(frames > 3, "{frames} frames");
    // Same inode, new contents (and so a new change time).
    std::fs::write(&path, &b).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()), ino);
    assert_eq!(hdr(&path), hdr(&second));
    let again = call(&open(path.as_path()), "fx_unwind_frames", &[]);
    let theirs = Dl::open(&path).call("fx_unwind_frames", &[]);
    assert!(again > 3 && again.abs_diff(theirs) <= 2, "mmkit's copy: {again} frames, glibc's: {theirs}");
}

#[test]
fn symbol_versions_bind_like_glibc() {
    for (variant, flags) in VARIANTS {
        let map = format!("-Wl,--version-script={}", fixture_src("ver.map").display());
        let mut f: Vec<&str> = flags.to_vec();
        f.push(&map);
        let ver = build(variant, "ver.c", "fxver", &f);
        let dir = format!("-L{}", ver.parent().unwrap().display());
        let mut f: Vec<&str> = flags.to_vec();
        f.extend([dir.as_str(), "-lfxver", "-Wl,-rpath,$ORIGIN"]);
        let old = build(variant, "verdep.c", "fxverold", &f);
        f.push("-DNEW");
        let new = build(variant, "verdep.c", "fxvernew", &f);
        // dlsym-style lookup picks the default version, VER_2.
        let ours = open(ver.as_path());
        assert_eq!(call(&ours, "fx_ver", &[]), 2, "{variant}");
        // References to fx_ver@VER_1 and fx_ver@VER_2 bind to their own implementations.
        // mmkit first, while glibc has not loaded libfxver.so (so mmkit's own version
        // matching does the work), then the oracle.
        for (lib, want) in [(&old, 1), (&new, 2)] {
            let ours = open(lib.as_path());
            assert_eq!(ours.dependencies(), vec![("libfxver.so".to_owned(), true)]);
            assert_eq!(call(&ours, "fx_which_ver", &[]), want, "{variant}");
        }
        for (lib, want) in [(&ver, 2), (&old, 1), (&new, 2)] {
            let oracle = Dl::open(lib);
            let name = if lib == &ver { "fx_ver" } else { "fx_which_ver" };
            assert_eq!(oracle.call(name, &[]), want, "{variant}");
        }
    }
}

#[test]
fn system_library_dependency_is_found_in_system_dirs() {
    if !common::host_cc() {
        eprintln!("skipped: links the host's libz ({} builds the fixtures)", common::cc());
        return;
    }
    let zuse = build("default", "zuse.c", "fxzuse", &["-lz"]);
    let ours = open(zuse.as_path());
    let oracle = Dl::open(&zuse);
    for n in [0, 1, 77] {
        assert_eq!(call(&ours, "fx_crc", &[n]), oracle.call("fx_crc", &[n]));
    }
    assert_eq!(call(&ours, "fx_zlib_major", &[]), oracle.call("fx_zlib_major", &[]));
    let deps = ours.dependencies();
    assert!(deps.iter().any(|(n, _)| n.starts_with("libz.so")), "{deps:?}");
}

#[test]
fn system_libz_loads_directly() {
    let Some(path) = system_libz() else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_into(path, dir.path());
    let oracle = Dl::open(path);
    // The system's file goes to the system linker (the default namespace's policy); a copy
    // elsewhere is mapped by mmkit.
    for (source, by_mmkit) in [(path, false), (copy.as_path(), true)] {
        let ours = open(source);
        // SAFETY: zlibVersion is `const char *zlibVersion(void)`.
        let v = unsafe { ours.symbol::<extern "C" fn() -> *const std::ffi::c_char>("zlibVersion") }.unwrap();
        // SAFETY: both return static NUL-terminated strings.
        let (a, b) = unsafe {
            let theirs: extern "C" fn() -> *const std::ffi::c_char = std::mem::transmute(oracle.addr("zlibVersion"));
            (std::ffi::CStr::from_ptr(v()).to_owned(), std::ffi::CStr::from_ptr(theirs()).to_owned())
        };
        assert_eq!(a, b);
        assert!(a.to_str().unwrap().starts_with('1'));
        assert_eq!(v.address() == oracle.addr("zlibVersion") as u64, !by_mmkit, "{source:?}");
        assert_eq!(ours.verify().is_ok(), by_mmkit, "{source:?}");
    }
}

#[test]
fn function_lookup_refuses_symbols_that_are_not_code() {
    use mmkit_elf::SymbolKind;
    let path = lib("symkinds.c", "fxkinds");
    let ours = open(path.as_path());
    // SAFETY: fx_kind_fn is int64_t(int64_t).
    let f = unsafe { ours.function::<extern "C" fn(i64) -> i64>("fx_kind_fn") }.unwrap();
    assert_eq!(f(41), 41);
    assert_eq!(ours.symbol_kind("fx_kind_fn").unwrap(), SymbolKind::Function);
    for (name, kind) in [
        ("fx_kind_data", SymbolKind::Object),
        ("fx_kind_tls", SymbolKind::ThreadLocal),
        ("fx_kind_abs", SymbolKind::Absolute),
        ("fx_kind_notype", SymbolKind::Untyped),
    ] {
        assert_eq!(ours.symbol_kind(name).unwrap(), kind, "{name}");
        // SAFETY: refused before use.
        let err = unsafe { ours.function::<extern "C" fn()>(name) }.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAFunction, "{name}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("fxkinds") && msg.contains("not a function"), "{msg}");
    }
    // Definitions in libraries glibc loaded (libc, a dependency): data is refused, code (also
    // an IFUNC's chosen implementation, strlen) is accepted.
    assert_eq!(ours.symbol_kind("environ").unwrap(), SymbolKind::Object);
    // SAFETY: refused before use.
    assert_eq!(unsafe { ours.function::<extern "C" fn()>("environ") }.unwrap_err().kind(), ErrorKind::NotAFunction);
    // SAFETY: getpid is pid_t(void); strlen is size_t(const char *).
    let getpid = unsafe { ours.function::<extern "C" fn() -> i32>("getpid") }.unwrap();
    assert_eq!(getpid(), std::process::id() as i32);
    // SAFETY: as above.
    let strlen = unsafe { ours.function::<extern "C" fn(*const std::ffi::c_char) -> usize>("strlen") }.unwrap();
    assert_eq!(strlen(c"four".as_ptr()), 4);
    // A missing symbol is still "not found".
    // SAFETY: never called.
    let err = unsafe { ours.function::<extern "C" fn()>("no_such_symbol") }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SymbolNotFound);
}

#[test]
fn a_thread_local_symbol_is_the_calling_threads_copy() {
    let path = lib("symkinds.c", "fxkinds");
    let ours = open(path.as_path());
    // SAFETY: fx_kind_tls is `__thread int64_t`; the pointer is used on this thread only.
    let mine = unsafe { ours.symbol::<*mut i64>("fx_kind_tls") }.unwrap();
    let mine = *mine;
    // SAFETY: this thread's copy, alive while the library is loaded and the thread runs.
    unsafe {
        assert_eq!(*mine, 3, "the initial value of .tdata");
        *mine = 9;
    }
    // SAFETY: as above.
    let again = unsafe { *ours.symbol::<*mut i64>("fx_kind_tls").unwrap() };
    assert_eq!(again, mine, "one copy per thread");
    // SAFETY: as above.
    assert_eq!(unsafe { *again }, 9);
    let (theirs, value) = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the spawned thread's own copy, read while it runs.
            let p = unsafe { *ours.symbol::<*mut i64>("fx_kind_tls").unwrap() };
            // SAFETY: as above.
            (p as usize, unsafe { *p })
        })
        .join()
        .unwrap()
    });
    assert_ne!(theirs, mine as usize, "another thread has its own copy");
    assert_eq!(value, 3, "another thread's copy starts from .tdata");
    // SAFETY: as above.
    assert_eq!(unsafe { *mine }, 9);
    // `address_of`, which has no thread to answer for, still refuses it.
    let err = ours.address_of("fx_kind_tls").unwrap_err();
    assert!(err.to_string().contains("thread-local"), "{err}");
}

#[test]
fn version_name_symbols_of_libz_are_not_functions() {
    let Some(path) = system_libz() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ours = open(copy_into(path, dir.path()).as_path());
    assert_eq!(ours.symbol_kind("ZLIB_1.2.2").unwrap(), mmkit_elf::SymbolKind::Absolute);
    // SAFETY: refused before use.
    let err = unsafe { ours.function::<extern "C" fn()>("ZLIB_1.2.2") }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFunction, "{err}");
    assert!(err.to_string().contains("absolute"), "{err}");
    // SAFETY: zlibVersion is `const char *zlibVersion(void)`.
    assert!(unsafe { ours.function::<extern "C" fn() -> *const std::ffi::c_char>("zlibVersion") }.is_ok());
}

/// A copy of `path` in `dir` (outside the system directories: mmkit maps it).
fn copy_into(path: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    let copy = dir.join(path.file_name().unwrap());
    std::fs::copy(path, &copy).unwrap();
    copy
}

/// The system's libz.so.1 (skipping the test without it, failing under CI=true).
fn system_libz() -> Option<&'static std::path::Path> {
    if !common::host_cc() {
        eprintln!("skipped: libz.so.1 is the host's system library ({} builds the fixtures)", common::cc());
        return None;
    }
    let path = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.exists());
    if path.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "libz.so.1 is missing (install zlib1g)");
        eprintln!("skipping: no libz.so.1");
    }
    path
}

/// An mmkit-loaded library reads and writes a `__thread` variable exported by a library glibc
/// loaded (its `DT_NEEDED`, found loaded): each thread sees its own copy, the same one glibc's
/// library's own code sees in that thread (general-dynamic: `DTPMOD64`/`DTPOFF64` pairs on
/// x86_64, `TLSDESC` on aarch64, with glibc's module id). Before the fix the load failed: "no TLS
/// module of an mmkit-loaded library defines it".
#[test]
fn tls_of_a_glibc_loaded_library_is_per_thread_and_shared_with_its_code() {
    let def = build("tlsglibc", "tlsdef.c", "fxtlsdef", &["-Wl,-soname,libfxtlsdef.so"]);
    let dir = def.parent().unwrap().display().to_string();
    let user = build("tlsglibc", "tlsuse.c", "fxtlsuse", &[&format!("-L{dir}"), "-lfxtlsdef"]);
    let theirs = Dl::open(&def);
    let ours = open(user.as_path());
    assert!(
        ours.dependencies().iter().any(|(n, by_mmkit)| n == "libfxtlsdef.so" && !by_mmkit),
        "{:?}",
        ours.dependencies()
    );
    // This thread: mmkit's code and glibc's library's code see one variable.
    assert_eq!(call(&ours, "fx_use_get", &[]), 7);
    assert_eq!(call(&ours, "fx_use_addr", &[]), theirs.call("fx_def_addr", &[]));
    assert_eq!(call(&ours, "fx_use_set", &[11]), 11);
    assert_eq!(theirs.call("fx_def_get", &[]), 11);
    theirs.call("fx_def_set", &[12]);
    assert_eq!(call(&ours, "fx_use_get", &[]), 12);
    let main_addr = call(&ours, "fx_use_addr", &[]);
    let (def_get, def_addr) = (theirs.addr("fx_def_get") as u64, theirs.addr("fx_def_addr") as u64);
    // Two more threads: each starts from the initial value and has its own address.
    let seen: Vec<(i64, i64, i64, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = [100, 200]
            .into_iter()
            .map(|v| {
                let ours = &ours;
                s.spawn(move || {
                    let initial = call(ours, "fx_use_get", &[]);
                    call(ours, "fx_use_set", &[v]);
                    let addr = call(ours, "fx_use_addr", &[]);
                    assert_eq!(addr, call_addr(def_addr, &[]), "thread {v}: the same variable");
                    (initial, call_addr(def_get, &[]), addr, call(ours, "fx_use_get", &[]))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!((seen[0].0, seen[0].1, seen[0].3), (7, 100, 100));
    assert_eq!((seen[1].0, seen[1].1, seen[1].3), (7, 200, 200));
    assert!(seen[0].2 != main_addr && seen[1].2 != main_addr, "per-thread addresses");
    assert_eq!(call(&ours, "fx_use_get", &[]), 12, "other threads left this one's copy alone");
    ours.verify().unwrap();
}

/// A `__thread` pointer initialized with an address (mimalloc's `_mi_heap_default =
/// &_mi_heap_empty`): its initialization image holds a word relocation writes. Each thread's
/// block started from the image as read before relocation, so the pointer held the link-time
/// address; pyarrow's bundled mimalloc followed it at process exit (SIGSEGV, in an embedded
/// CPython). Blocks start from the relocated image now, as glibc's do: in the loading thread,
/// in another, and after one thread moved its own copy.
#[test]
fn thread_local_pointers_start_out_relocated_in_every_thread() {
    let path = build("default", "tls_ptr.c", "fxtlsptr", &[]);
    let ours = open(path.as_path());
    let oracle = Dl::open(&path);
    assert_eq!(oracle.call("fx_tls_ptr_read", &[]), 42, "glibc's copy");
    assert_eq!(call(&ours, "fx_tls_ptr_read", &[]), 42, "this thread's block");
    assert_eq!(call(&ours, "fx_tls_ptr_move", &[]), 7);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(call(&ours, "fx_tls_ptr_read", &[]), 42, "a new thread's block");
        });
    });
    assert_eq!(call(&ours, "fx_tls_ptr_read", &[]), -1, "this thread's copy stays moved");
}

/// Initial-exec TLS against libc's `errno` (`R_X86_64_TPOFF64` or `R_AARCH64_TLS_TPREL64`
/// `errno@GLIBC_PRIVATE`, as in glibc's own libnsl and libresolv): libc's TLS is in static TLS,
/// so the GOT holds the variable's offset from the thread pointer, the same in every thread.
/// Each thread's accesses reach its own `errno`, the one `__errno_location` answers. Before the
/// fix the load failed: "initial-exec TLS needs static TLS space" (on aarch64 until later:
/// Debian's arm64 libresolv, libnsl and libc_malloc_debug were refused so).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn initial_exec_tls_against_libcs_errno_reaches_each_threads_errno() {
    let path = build("ie", "tls_errno.c", "fxtlserrno", &[]);
    let ours = open(path.as_path());
    let check = |v: i64| {
        // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
        let here = unsafe { libc::__errno_location() };
        assert_eq!(call(&ours, "fx_errno_addr", &[]), here as i64, "this thread's errno");
        assert_eq!(call(&ours, "fx_errno_set", &[v]), v);
        // SAFETY: as above.
        assert_eq!(unsafe { *here }, v as i32);
        // SAFETY: as above.
        unsafe { *here = v as i32 + 1 };
        let seen = call(&ours, "fx_errno_get", &[]);
        assert_eq!(seen, v + 1);
        here as i64
    };
    let main = check(1234);
    let others: Vec<i64> =
        std::thread::scope(|s| [55, 66].map(|v| s.spawn(move || check(v))).map(|h| h.join().unwrap()).to_vec());
    assert!(others.iter().all(|&a| a != main) && others[0] != others[1], "per-thread errno");
    // SAFETY: as above.
    assert_eq!(unsafe { *libc::__errno_location() }, 1235, "other threads left this one's errno alone");
}

/// The same references to libc's `errno` (initial-exec and general-dynamic) after a library
/// mmkit mapped was made global (`RTLD_GLOBAL`: its search list, libc in it, joins the global
/// scope): that lookup asked glibc's `dlvsym` in libc and took its answer, this thread's
/// `errno`'s address, for a plain address. The load failed ("initial-exec TLS needs static TLS
/// space"; an embedded CPython made global could not import `nis`, whose libresolv refers to
/// `errno` so), and a general-dynamic one failed ("no TLS module ... defines it").
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn tls_references_to_libc_bind_as_tls_after_a_library_is_made_global() {
    if !in_fresh_process("tls_references_to_libc_bind_as_tls_after_a_library_is_made_global") {
        return;
    }
    let global = open(lib("basic.c", "fxbasic").as_path());
    assert!(global.dependencies().contains(&("libc.so.6".to_owned(), false)));
    global.make_global();
    for (variant, flags) in [("ie", &[][..]), ("gd", &["-DTLS_MODEL=\"global-dynamic\""][..])] {
        let path = build(variant, "tls_errno.c", "fxtlserrno", flags);
        let ours = try_open(path.as_path()).unwrap_or_else(|e| panic!("{variant}: {e}"));
        let answers = |v: i64| {
            // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
            let here = unsafe { libc::__errno_location() };
            assert_eq!(call(&ours, "fx_errno_addr", &[]), here as i64, "{variant}: this thread's errno");
            assert_eq!(call(&ours, "fx_errno_set", &[v]), v);
            // SAFETY: as above.
            assert_eq!(unsafe { *here }, v as i32, "{variant}");
        };
        answers(77);
        std::thread::scope(|s| s.spawn(|| answers(88)).join().unwrap());
    }
}

/// A library on a `noexec` mount: the kernel refuses its executable segment with `EPERM`, and
/// the error says what that likely means. Mounts a small tmpfs, so root only.
#[test]
fn a_library_on_a_noexec_mount_says_so() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let lib = lib("basic.c", "fxbasic");
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,noexec", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mount -t tmpfs failed");
        return;
    }
    let copy = dir.path().join("libfxbasic.so");
    std::fs::copy(&lib, &copy).unwrap();
    let result = try_open(copy.as_path());
    // Lazily: a child another test forked meanwhile holds a copy of the open descriptor, and
    // a plain umount then fails (EBUSY), leaving the mount behind.
    let _ = std::process::Command::new("umount").arg("-l").arg(dir.path()).status();
    let Err(err) = result else { panic!("a library on a noexec mount loaded") };
    assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
    assert!(err.to_string().contains("noexec mount"), "{err}");
}

/// A bare soname (no `/`) is searched for, as glibc's `dlopen` does, even when the current
/// directory holds something of that name: a directory there was an error ("not a regular
/// file"), a file there was loaded instead of the library the search finds. `./name` names
/// what is in the current directory.
#[test]
fn a_bare_soname_is_searched_for_whatever_the_current_directory_holds() {
    // Changes the current directory: in a child process of its own.
    if !in_fresh_process("a_bare_soname_is_searched_for_whatever_the_current_directory_holds") {
        return;
    }
    let base = build("ns-base", "base.c", "fxbase", &[]);
    let dir = tempfile::tempdir().unwrap();
    let libs = dir.path().join("libs");
    std::fs::create_dir(&libs).unwrap();
    std::fs::copy(&base, libs.join("libfxbase.so")).unwrap();
    let (with_dir, with_file) = (dir.path().join("cwd-dir"), dir.path().join("cwd-file"));
    std::fs::create_dir_all(with_dir.join("libfxbase.so")).unwrap();
    std::fs::create_dir(&with_file).unwrap();
    std::fs::copy(lib("basic.c", "fxbasic"), with_file.join("libfxbase.so")).unwrap();
    let ns = mmkit_elf::Namespace::isolated("bare").search([libs.display().to_string()]);
    let found = libs.join("libfxbase.so").display().to_string();
    for cwd in [&with_dir, &with_file] {
        std::env::set_current_dir(cwd).unwrap();
        assert_eq!(ns.locate(Source::path("libfxbase.so")).unwrap(), Source::path(&found), "{}", cwd.display());
        // SAFETY: test fixtures.
        let ours = unsafe { ns.open("libfxbase.so") }.unwrap_or_else(|e| panic!("{}: {e}", cwd.display()));
        assert_eq!(ours.source(), found);
        assert_eq!(call(&ours, "fx_base_value", &[1]), 1001);
    }
    // `./libfxbase.so` is the file here (basic.c's library).
    // SAFETY: test fixtures.
    let here = unsafe { ns.open("./libfxbase.so") }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&here, "fx_add", &[40, 2]), 42);
    // Not found by the search: the error says so, and how to name the file here.
    let empty = mmkit_elf::Namespace::isolated("empty");
    // SAFETY: the load fails before running any code.
    let err = unsafe { empty.open("libfxbase.so") }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("./libfxbase.so names the file there"), "{err}");
}

/// Whether the main thread's stack (`[stack]` in `/proc/self/maps`) is executable.
fn main_stack_is_executable() -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.ends_with("[stack]")).expect("a [stack] line");
    line.split_whitespace().nth(1).unwrap().contains('x')
}

#[test]
fn a_library_that_needs_an_executable_stack_runs_as_glibc_runs_it() {
    // A GNU C nested function called through its trampoline on the stack: the library is
    // marked PT_GNU_STACK RWE. glibc's dlopen (before 2.41) makes the stacks of every thread
    // executable (and of threads started later); glibc 2.41 refuses the library instead. mmkit
    // mapped it and ignored the flag: the call faulted (SIGSEGV).
    let fixture = build("execstack", "execstack.c", "fxexecstack", &["-Wl,-z,execstack"]);
    stack_outcome_matches_glibc("a_library_that_needs_an_executable_stack_runs_as_glibc_runs_it", &fixture);
}

#[test]
fn a_library_without_pt_gnu_stack_gets_the_stack_glibc_gives_it() {
    // No PT_GNU_STACK at all (old toolchains, some other linkers): glibc then uses its
    // machine's default stack permissions, executable on x86_64 (not on aarch64). mmkit read
    // a missing header as "not executable" everywhere: on x86_64 the trampoline faulted where
    // glibc's dlopen runs it (before 2.41) or refuses the library (2.41 and later).
    let built = build("nostackhdr", "execstack.c", "fxnostackhdr", &["-Wl,-z,noexecstack"]);
    let fixture = without_pt_gnu_stack(&built);
    stack_outcome_matches_glibc("a_library_without_pt_gnu_stack_gets_the_stack_glibc_gives_it", &fixture);
}

/// A copy of the library at `path` beside it whose `PT_GNU_STACK` header is `PT_NULL`
/// (ignored by every loader): a library without one.
fn without_pt_gnu_stack(path: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(&bytes, 0x36), u16_at(&bytes, 0x38));
    let mut patched = 0;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == object::elf::PT_GNU_STACK {
            bytes[at..at + 4].copy_from_slice(&object::elf::PT_NULL.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 1, "{} has one PT_GNU_STACK", path.display());
    let out = path.with_file_name("libfxnostackhdr-patched.so");
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        let tmp = path.with_file_name(format!(".libfxnostackhdr-patched.{}", std::process::id()));
        std::fs::write(&tmp, &bytes).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// In two fresh processes, loads `fixture` (whose `fx_through_trampoline` calls a GNU C
/// nested function through its stack trampoline) by glibc's `dlopen` and by mmkit, calls it on
/// the main thread and on a new one, and asserts the same outcome: the results and whether the
/// main stack became executable, or the same refusal.
fn stack_outcome_matches_glibc(name: &str, fixture: &std::path::Path) {
    let run = |by: &str| -> String {
        // One file per test and peer: the tests sharing this helper run at once.
        let out = std::env::temp_dir().join(format!("mmkit-execstack-{name}-{by}-{}", std::process::id()));
        if in_fresh_process_with(name, &[("MMKIT_EXECSTACK_BY", by), ("MMKIT_EXECSTACK_OUT", out.to_str().unwrap())]) {
            return String::new();
        }
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        text
    };
    let Ok(by) = std::env::var("MMKIT_EXECSTACK_BY") else {
        let (glibc, mmkit) = (run("glibc"), run("mmkit"));
        assert_eq!(mmkit, glibc, "mmkit's load of {} (left) against glibc's (right)", fixture.display());
        return;
    };
    // In a fresh process: load it one way, call it on this thread and on a new one.
    assert!(!main_stack_is_executable(), "the test program itself asks for no executable stack");
    let call: extern "C" fn(i64, i64) -> i64;
    let mut _keep = None;
    if by == "glibc" {
        let c = std::ffi::CString::new(fixture.to_str().unwrap()).unwrap();
        // SAFETY: a trusted test fixture.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            std::fs::write(std::env::var("MMKIT_EXECSTACK_OUT").unwrap(), "refused").unwrap();
            return;
        }
        // SAFETY: `h` is a live handle, the name a C string.
        let f = unsafe { libc::dlsym(h, c"fx_through_trampoline".as_ptr()) };
        assert!(!f.is_null());
        // SAFETY: the fixture's `int64_t fx_through_trampoline(int64_t, int64_t)`.
        call = unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn(i64, i64) -> i64>(f) };
    } else {
        // SAFETY: a trusted test fixture.
        let lib = match unsafe { Library::open(fixture) } {
            Ok(lib) => lib,
            Err(e) => {
                assert!(e.to_string().contains("executable stack"), "{e}");
                std::fs::write(std::env::var("MMKIT_EXECSTACK_OUT").unwrap(), "refused").unwrap();
                return;
            }
        };
        // SAFETY: the fixture's `int64_t fx_through_trampoline(int64_t, int64_t)`.
        call = *unsafe { lib.function::<extern "C" fn(i64, i64) -> i64>("fx_through_trampoline") }.unwrap();
        _keep = Some(lib);
    }
    if !main_stack_is_executable() {
        // The trampoline would fault: say so instead (the outcome to compare).
        std::fs::write(std::env::var("MMKIT_EXECSTACK_OUT").unwrap(), "loaded, stack not executable").unwrap();
        return;
    }
    let here = call(10, 5);
    let there = std::thread::spawn(move || call(20, 5)).join().unwrap();
    let outcome = format!("loaded: {here} {there}, main stack executable: {}", main_stack_is_executable());
    std::fs::write(std::env::var("MMKIT_EXECSTACK_OUT").unwrap(), outcome).unwrap();
}

#[test]
fn a_bare_name_that_is_not_utf8_is_searched_for_not_opened_in_the_current_directory() {
    // glibc's dlopen never opens a name without `/` in the current directory, whatever its
    // bytes. mmkit checked for `/` only in names that are UTF-8: `lib\xff.so` was opened in
    // the current directory.
    use std::os::unix::ffi::OsStrExt;
    if !in_fresh_process("a_bare_name_that_is_not_utf8_is_searched_for_not_opened_in_the_current_directory") {
        return;
    }
    let name = std::ffi::OsStr::from_bytes(b"libfx\xffbasic.so");
    let dir = tempfile::tempdir().unwrap();
    let (cwd, libs) = (dir.path().join("cwd"), dir.path().join("libs"));
    std::fs::create_dir(&cwd).unwrap();
    std::fs::create_dir(&libs).unwrap();
    std::fs::copy(lib("basic.c", "fxbasic"), cwd.join(name)).unwrap();
    std::env::set_current_dir(&cwd).unwrap();
    // The oracle: glibc does not find it.
    let c = std::ffi::CString::new(name.as_bytes()).unwrap();
    // SAFETY: a test fixture (not found anyway).
    assert!(unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) }.is_null());
    // SAFETY: as above.
    assert!(unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) }.is_null(), "glibc opened it in the cwd");
    // SAFETY: test fixtures.
    let err = unsafe { Library::open(std::path::Path::new(name)) }.map(|l| l.source().to_owned()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    let ns = mmkit_elf::Namespace::isolated("bare").search([libs.display().to_string()]);
    // SAFETY: as above.
    let err = unsafe { ns.open(std::path::Path::new(name)) }.map(|l| l.source().to_owned()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    // Searched for: found in a directory of the namespace.
    std::fs::rename(cwd.join(name), libs.join(name)).unwrap();
    // SAFETY: as above.
    let found = unsafe { ns.open(std::path::Path::new(name)) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.source(), libs.join(name).to_string_lossy());
    assert_eq!(call(&found, "fx_add", &[40, 2]), 42);
}

/// Android's packed relocations, as the NDK's clang links libraries by default: from API level
/// 23 `--pack-dyn-relocs=android` ("APS2" in `DT_ANDROID_RELA`), for 28-29 `android+relr`
/// with `--use-android-relr-tags` (`DT_ANDROID_RELR`). bionic applies them; mmkit-elf ignored
/// them, so the library's pointers stayed unrelocated (a crash at the first call, or an
/// initializer "outside the library"). The same source linked without packing, loaded by
/// glibc's `dlopen` (which does not know Android's tags), is the oracle, from a file and from
/// an APK entry.
#[test]
fn android_packed_relocations_are_applied_as_bionic_applies_them() {
    const DT_ANDROID_RELA: u64 = 0x6000_0011;
    const DT_ANDROID_RELR: u64 = 0x6fff_e000;
    let Some(plain_flags) = lld_flags(&[]) else { return };
    let plain = build("lld", "packed.c", "fxpacked", &plain_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let oracle = Dl::open(&plain);
    let want: Vec<i64> = [0, 7].iter().map(|&k| oracle.call("fx_packed_sum", &[k])).collect();
    assert_eq!(call(&open(plain.as_path()), "fx_packed_sum", &[7]), want[1], "unpacked, by mmkit");
    let dir = tempfile::tempdir().unwrap();
    let kinds: [(&str, &[&str], u64); 3] = [
        ("lld-aps2", &["-Wl,--pack-dyn-relocs=android"], DT_ANDROID_RELA),
        ("lld-aps2-relr", &["-Wl,--pack-dyn-relocs=android+relr", "-Wl,--use-android-relr-tags"], DT_ANDROID_RELR),
        ("lld-aps2-only-relative", &["-Wl,--pack-dyn-relocs=android", "-Wl,-z,now"], DT_ANDROID_RELA),
    ];
    for (variant, how, tag) in kinds {
        let flags = lld_flags(how).unwrap();
        let packed = build(variant, "packed.c", "fxpacked", &flags.iter().map(String::as_str).collect::<Vec<_>>());
        let tags = dynamic_entries(&std::fs::read(&packed).unwrap());
        assert!(tags.iter().any(|&(t, _, _)| t == tag), "{variant}: ld.lld wrote no {tag:#x}");
        for source in [Source::path(&packed), apk_with(dir.path(), "libfxpacked.so", &packed)] {
            let ours = open(source);
            let got: Vec<i64> = [0, 7].iter().map(|&k| call(&ours, "fx_packed_sum", &[k])).collect();
            assert_eq!(got, want, "{variant}: {}", ours.source());
        }
    }
}
