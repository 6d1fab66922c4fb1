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

fn open_with(source: impl Into<Source>, options: &LoadOptions<'_>) -> Result<Library, mmkit_elf::Error> {
    // SAFETY: trusted fixtures; every reservation passed outlives the library (dropped after).
    unsafe { Library::open_with(source, options) }
}

#[test]
fn reserved_address_places_the_library_in_the_callers_reservation() {
    let path = build("dlext", "basic.c", "fxreserved", &[]);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let page = mmkit::page_size();
    let space = Reservation::new(256 * page).unwrap();
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
    let space = Reservation::new(plan.span_len as usize).unwrap();
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
    let big = Reservation::new(256 * page).unwrap();
    let path2 = build("dlext", "basic.c", "fxhint2", &[]);
    let lib2 = open_with(path2.as_path(), &LoadOptions::new().reserved_hint(&big, 0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lib2.span().0, big.as_ptr() as u64);
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
    let code = maps.iter().find(|m| m.prot.exec).expect("a code segment");
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
    if let Some(data) = maps.iter().find(|m| m.prot.write) {
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
