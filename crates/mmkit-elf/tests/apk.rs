//! Loading from APK/zip entries: stored + page-aligned loads in place; every other case is its
//! own error. The zip source is fuzzed with mutated archives.

mod common;

use common::*;
use mmkit_elf::{ErrorKind, MappingKind, Namespace, Source};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const ENTRY: &str = "lib/x86_64/libfxbasic.so";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn basic_bytes() -> Vec<u8> {
    std::fs::read(lib("basic.c", "fxbasic")).unwrap()
}

/// An APK with a small file first (so offsets are not accidentally aligned), the library, and
/// a file after it.
fn apk(dir: &Path, so: &[u8], align: u16) -> PathBuf {
    let path = dir.join("app.apk");
    write_zip(
        &path,
        &[("AndroidManifest.xml", b"<manifest/>", 0), (ENTRY, so, align), ("assets/after.bin", &[7u8; 5000], 0)],
    );
    path
}

fn entry_offset(apk: &Path, entry: &str) -> u64 {
    let f = std::fs::File::open(apk).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let i = z.index_for_name(entry).unwrap();
    let e = z.by_index_raw(i).unwrap();
    e.data_start()
}

#[test]
fn stored_aligned_entry_loads_in_place() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), page_u16());
    let off = entry_offset(&path, ENTRY);
    assert_eq!(off % mmkit_elf::page_size(), 0);
    assert!(off > 0);
    let spec = format!("{}!/{ENTRY}", path.display());
    let ours = open(spec.as_str());
    assert_eq!(ours.source(), spec);
    assert_eq!(call(&ours, "fx_add", &[40, 2]), 42);
    assert_eq!(call(&ours, "fx_format_len", &[5]), 8);
    // Segments are mapped from the archive at entry offset + segment offset.
    let maps = ours.segments().unwrap();
    let first = maps.iter().find(|m| m.file_offset.is_some()).unwrap();
    assert_eq!(first.file_offset, Some(off));
    assert!(maps.iter().all(|m| m.file_offset.is_none_or(|o| o >= off)));
    // /proc/self/maps agrees: the APK's inode at those offsets.
    ours.verify().unwrap();
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{:x}-", first.start))).unwrap();
    assert!(line.ends_with("app.apk"), "{line}");
    // Only what was touched is resident: far fewer pages than the library has.
    let resident: u64 = maps.iter().map(|m| m.resident_pages).sum();
    let pages: u64 = maps.iter().filter(|m| !matches!(m.kind, MappingKind::Gap)).map(|m| m.pages).sum();
    assert!(resident <= pages);
}

#[test]
fn dependencies_load_from_the_same_apk_directory() {
    let base = build("default", "base.c", "fxbase", &[]);
    let dep = build("default", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let dir = tmp();
    let path = dir.path().join("deps.apk");
    let (b, d) = (std::fs::read(&base).unwrap(), std::fs::read(&dep).unwrap());
    write_zip(&path, &[("lib/x86_64/libfxdep.so", &d, page_u16()), ("lib/x86_64/libfxbase.so", &b, page_u16())]);
    let ours = open(format!("{}!/lib/x86_64/libfxdep.so", path.display()).as_str());
    assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002);
    let deps: Vec<_> = ours.loaded_dependencies().iter().map(|l| l.source().to_owned()).collect();
    assert_eq!(deps, vec![format!("{}!/lib/x86_64/libfxbase.so", path.display())]);
}

#[test]
fn an_entry_path_with_dot_components_is_normalized_as_bionic_normalizes_it() {
    // bionic's `open_library_in_zipfile` normalizes the whole path before splitting at `!/`:
    // `lib/x86_64/../x86_64/libfxdep.so` is `lib/x86_64/libfxdep.so` (a `dlopen` name built
    // from a directory and `..`). mmkit looked up the literal name and found no entry.
    let base = build("default", "base.c", "fxbase", &[]);
    let dep = build("default", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let dir = tmp();
    let path = dir.path().join("dots.apk");
    let (b, d) = (std::fs::read(&base).unwrap(), std::fs::read(&dep).unwrap());
    write_zip(&path, &[("lib/x86_64/libfxdep.so", &d, page_u16()), ("lib/x86_64/libfxbase.so", &b, page_u16())]);
    for entry in ["lib/x86_64/../x86_64/libfxdep.so", "./lib/x86_64/libfxdep.so", "lib//x86_64/libfxdep.so"] {
        let spec = format!("{}!/{entry}", path.display());
        // SAFETY: test fixtures.
        let ours = unsafe { Namespace::new(entry).open(spec.as_str()) }.unwrap_or_else(|e| panic!("{spec}: {e}"));
        // Its dependency is found in the same directory of the archive.
        assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002, "{spec}");
    }
    // A `..` that climbs out of the archive names no entry.
    let err = open_err(&format!("{}!/../lib/x86_64/libfxdep.so", path.display()));
    assert_eq!(err.kind(), ErrorKind::EntryMissing, "{err}");
}

#[test]
fn a_missing_dependency_names_where_the_search_looked_under_the_default_policy() {
    // Under `SystemPolicy::SystemLinker` a dependency no directory has goes to the system linker
    // last; its failure was the whole message ("libfxbase.so: cannot open shared object file"),
    // naming neither the APK directory searched nor the namespace (the other policies name both).
    let base = build("default", "base.c", "fxbase", &[]);
    let dep = build("default", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let dir = tmp();
    let path = dir.path().join("lonely.apk");
    write_zip(&path, &[("lib/x86_64/libfxdep.so", &std::fs::read(&dep).unwrap(), page_u16())]);
    let spec = format!("{}!/lib/x86_64/libfxdep.so", path.display());
    // SAFETY: test fixture (fails before anything runs).
    let err = unsafe { Namespace::new("lonely").open(spec.as_str()) }.map(|_| ()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{msg}");
    assert!(msg.contains("libfxbase.so: cannot open shared object file"), "the system linker's words: {msg}");
    assert!(msg.contains(&format!("not found in {}!/lib/x86_64:", path.display())), "the APK directory: {msg}");
    assert!(msg.contains("(namespace lonely)"), "the namespace: {msg}");
}

fn open_err(spec: &str) -> mmkit_elf::Error {
    try_open(spec).map(|_| ()).unwrap_err()
}

/// Sets the compression method of every entry named `entry` (local and central headers).
fn set_method(bytes: &mut [u8], method: u16) {
    let mut i = 0;
    while i + 12 < bytes.len() {
        if bytes[i..i + 4] == [0x50, 0x4b, 0x03, 0x04] && i + 30 < bytes.len() {
            let name_len = u16::from_le_bytes([bytes[i + 26], bytes[i + 27]]) as usize;
            if bytes.get(i + 30..i + 30 + name_len) == Some(ENTRY.as_bytes()) {
                bytes[i + 8..i + 10].copy_from_slice(&method.to_le_bytes());
            }
        }
        if bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] && i + 46 < bytes.len() {
            let name_len = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
            if bytes.get(i + 46..i + 46 + name_len) == Some(ENTRY.as_bytes()) {
                bytes[i + 10..i + 12].copy_from_slice(&method.to_le_bytes());
            }
        }
        i += 1;
    }
}

#[test]
fn deflated_entry_is_an_error() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), page_u16());
    let mut bytes = std::fs::read(&path).unwrap();
    set_method(&mut bytes, 8);
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::EntryCompressed, "{err}");
    // Regression: the method was printed as the zip crate's `Unsupported(8)`.
    assert!(err.to_string().contains("compressed (deflated, method 8)"), "{err}");
}

#[test]
fn misaligned_entry_is_an_error() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), 0);
    let off = entry_offset(&path, ENTRY);
    assert_ne!(off % mmkit_elf::page_size(), 0, "fixture must be misaligned");
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::EntryMisaligned, "{err}");
    assert_eq!(err.range().map(|r| r.0), Some(off));
}

#[test]
fn truncated_archive_is_an_error() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), page_u16());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::BadArchive, "{err}");
}

/// An archive of nothing but end-of-central-directory records (each naming one file at offset
/// 0, where there is no central directory): the zip parser tries each from the end and scans
/// forward from each for the directory, quadratic in the archive's size (minutes for these
/// 2.2 MB). It is refused quickly.
#[test]
fn archive_of_fake_end_records_is_refused_quickly() {
    let dir = tmp();
    let path = dir.path().join("eocds.apk");
    let mut record = b"PK\x05\x06".to_vec();
    for field in [0u16, 0, 1, 1] {
        record.extend(field.to_le_bytes());
    }
    record.extend([0u8; 10]); // directory size and offset 0, no comment
    std::fs::write(&path, record.repeat(100_000)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let source = Source::zip_entry(&path, ENTRY);
    std::thread::spawn(move || tx.send(source.open(mmkit_elf::page_size()).map(|_| ())));
    let res = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("opening the entry hangs");
    let err = res.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadArchive, "{err}");
    // The message says why (the parser's own read error alone is a bare `i/o error`).
    assert!(err.to_string().contains("read the archive many times over"), "{err}");
}

/// Two entries of one name (the "master key" trick: a verifier reads one, the loader the
/// other): the zip parser silently keeps the last; the archive is refused, as Android does.
#[test]
fn duplicate_entry_names_are_an_error() {
    let dir = tmp();
    let path = dir.path().join("dup.apk");
    let twin = ENTRY.replace("basic", "basiX");
    write_zip(&path, &[(ENTRY, &basic_bytes(), page_u16()), (&twin, b"not an ELF image", 0)]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(twin.len()).position(|w| w == twin.as_bytes()) {
        bytes[at + i..at + i + twin.len()].copy_from_slice(ENTRY.as_bytes());
        at += i + twin.len();
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::BadArchive, "{err}");
    assert!(err.to_string().contains("two entries named"), "{err}");
}

/// The central directory bends the entry's local-header offset to another entry's local
/// header (page-aligned data too): the zip parser located that entry's data under this name,
/// which then loaded; the archive is refused, as Android refuses a local header whose name
/// differs.
#[test]
fn entry_pointing_at_another_entrys_local_header_is_an_error() {
    let dir = tmp();
    let path = dir.path().join("bent.apk");
    let other = "lib/x86_64/libother.so";
    let mut impostor = basic_bytes();
    impostor.resize(impostor.len() + 4096, 0);
    write_zip(&path, &[(ENTRY, &basic_bytes(), page_u16()), (other, &impostor, page_u16())]);
    let mut bytes = std::fs::read(&path).unwrap();
    let find = |bytes: &[u8], sig: &[u8], name_at: usize, name: &str| {
        (0..bytes.len() - name_at - name.len())
            .find(|&i| bytes[i..].starts_with(sig) && bytes[i + name_at..].starts_with(name.as_bytes()))
            .unwrap()
    };
    let other_local = find(&bytes, b"PK\x03\x04", 30, other) as u32;
    let central = find(&bytes, b"PK\x01\x02", 46, ENTRY);
    bytes[central + 42..central + 46].copy_from_slice(&other_local.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::BadArchive, "{err}");
    assert!(err.to_string().contains("local header of another name"), "{err}");
}

#[test]
fn entry_past_the_end_of_the_archive_is_an_error() {
    // Claim a larger entry in the central directory than the archive holds.
    let dir = tmp();
    let so = basic_bytes();
    let path = dir.path().join("big.apk");
    write_zip(&path, &[(ENTRY, &so, page_u16())]);
    let mut bytes = std::fs::read(&path).unwrap();
    let size = (so.len() as u32).to_le_bytes();
    let big = (so.len() as u32 + 1_000_000).to_le_bytes();
    // Central directory header: compressed size at +20, size at +24.
    let cd = (0..bytes.len() - 4).rev().find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02]).unwrap();
    assert_eq!(bytes[cd + 20..cd + 24], size);
    bytes[cd + 20..cd + 24].copy_from_slice(&big);
    bytes[cd + 24..cd + 28].copy_from_slice(&big);
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::EntryTruncated, "{err}");
}

#[test]
fn missing_entry_is_an_error() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), page_u16());
    let err = open_err(&format!("{}!/lib/arm64-v8a/libfxbasic.so", path.display()));
    assert_eq!(err.kind(), ErrorKind::EntryMissing, "{err}");
    assert!(err.to_string().contains("lib/arm64-v8a/libfxbasic.so"), "{err}");
    let err = open_err(&format!("{}!/{ENTRY}", dir.path().join("nope.apk").display()));
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(err.errno(), Some(libc::ENOENT));
}

#[test]
fn entry_that_is_not_elf_is_an_error() {
    let dir = tmp();
    let path = apk(dir.path(), &[0x50u8; 9000], page_u16());
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::BadMagic, "{err}");
    assert!(err.to_string().contains(ENTRY), "{err}");
}

/// Offset of the first program header with `p_flags` == `flags`.
fn phdr_with_flags(so: &[u8], flags: u32) -> usize {
    let phoff = u64::from_le_bytes(so[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([so[56], so[57]]) as usize;
    (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&p| {
            u32::from_le_bytes(so[p..p + 4].try_into().unwrap()) == 1
                && u32::from_le_bytes(so[p + 4..p + 8].try_into().unwrap()) == flags
        })
        .unwrap()
}

#[test]
fn writable_executable_segment_is_an_error() {
    let mut so = basic_bytes();
    let p = phdr_with_flags(&so, 5); // R+X
    so[p + 4..p + 8].copy_from_slice(&7u32.to_le_bytes());
    let dir = tmp();
    let path = apk(dir.path(), &so, page_u16());
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::WritableAndExecutable, "{err}");
}

#[test]
fn segments_are_bounds_checked_against_the_entry_not_the_archive() {
    // Cut the library short inside the archive; the bytes after it (another entry) must not
    // count as library bytes.
    let so = basic_bytes();
    let cut = &so[..so.len() / 2];
    let dir = tmp();
    let path = apk(dir.path(), cut, page_u16());
    let err = open_err(&format!("{}!/{ENTRY}", path.display()));
    assert_eq!(err.kind(), ErrorKind::SegmentOutsideSource, "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Mutated archives: opening the entry and planning it answer Ok or Err, never panic.
    #[test]
    fn mutated_archives_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
                                    cut in proptest::option::of(any::<prop::sample::Index>())) {
        thread_local! {
            static BASE: (tempfile::TempDir, Vec<u8>) = {
                let dir = tempfile::tempdir().unwrap();
                let so = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
                let p = apk(dir.path(), &so, page_u16());
                let bytes = std::fs::read(p).unwrap();
                (dir, bytes)
            };
        }
        BASE.with(|(dir, orig)| {
            let mut bytes = orig.clone();
            // Bias half the edits toward the headers at both ends, where the parsers look.
            for (i, (at, v)) in edits.iter().enumerate() {
                let n = bytes.len();
                let pos = match i % 3 {
                    0 => at.index(n),
                    1 => at.index(200.min(n)),
                    _ => n - 1 - at.index(300.min(n)),
                };
                bytes[pos] = *v;
            }
            if let Some(c) = cut {
                let n = bytes.len();
                bytes.truncate(c.index(n));
            }
            let path = dir.path().join(format!("fuzz-{:?}.apk", std::thread::current().id()));
            std::fs::write(&path, &bytes).unwrap();
            let source = Source::zip_entry(&path, ENTRY);
            if let Ok(src) = source.open(mmkit_elf::page_size()) {
                prop_assert!(src.offset() + src.len() <= bytes.len() as u64);
                let _ = mmkit_elf::plan_source(&src, mmkit_elf::page_size());
            }
            Ok(())
        })?;
    }

    /// Random bytes as an archive.
    #[test]
    fn random_archives_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.apk");
        std::fs::write(&path, &bytes).unwrap();
        let err = Source::zip_entry(&path, ENTRY).open(4096).map(|_| ()).unwrap_err();
        prop_assert!(matches!(err.kind(), ErrorKind::BadArchive | ErrorKind::EntryMissing | ErrorKind::EntryCompressed | ErrorKind::EntryMisaligned | ErrorKind::EntryTruncated | ErrorKind::EntryEncrypted));
    }
}

/// A file in a directory whose name ends in `!` (`d!/libfoo.so`) parses as an entry of the
/// archive `d`; as bionic's `open_library_at_path`, what is no usable zip entry is then opened
/// as the file of that name. When neither works, the zip entry's error stands and says why the
/// file did not do either.
#[test]
fn a_file_under_a_bang_directory_loads_as_bionic_opens_it() {
    let dir = tmp();
    let sub = dir.path().join("d!");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("libfoo.so"), basic_bytes()).unwrap();
    let spec = format!("{}/d!/libfoo.so", dir.path().display());
    let ours = open(spec.as_str());
    assert_eq!(call(&ours, "fx_add", &[40, 2]), 42);
    assert_eq!(ours.source(), spec);
    ours.verify().unwrap();
    // Also when an archive of the name before `!` exists but has no such entry (bionic tries
    // the zip first, then the path).
    let weird = apk(dir.path(), &basic_bytes(), page_u16());
    let bang = dir.path().join("app.apk!");
    std::fs::create_dir(&bang).unwrap();
    std::fs::write(bang.join("libx.so"), basic_bytes()).unwrap();
    let spec = format!("{}!/libx.so", weird.display());
    assert_eq!(call(&open(spec.as_str()), "fx_mul", &[6, 7]), 42);
    // The zip entry wins when it is usable.
    std::fs::create_dir_all(bang.join("lib/x86_64")).unwrap();
    std::fs::write(bang.join(ENTRY), b"not an ELF file").unwrap();
    let spec = format!("{}!/{ENTRY}", weird.display());
    let ours = open(spec.as_str());
    // (`segments()` asks mincore, which qemu-user refuses for guest ranges.)
    if host_cc() {
        assert!(ours.segments().unwrap().iter().any(|m| m.file_offset.is_some_and(|o| o > 0)));
    }
    // A search directory that reads as an APK directory: the file under it is found.
    let base = build("ns-base", "base.c", "fxbase", &[]);
    let dep = build("ns-dep", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let libs = dir.path().join("w.apk!/lib");
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::copy(&base, libs.join("libfxbase.so")).unwrap();
    let ns = Namespace::isolated("bang").search([format!("{}/w.apk!/lib", dir.path().display())]);
    // SAFETY: test fixtures.
    let ours = unsafe { ns.open(dep.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002);
    let deps: Vec<_> = ours.loaded_dependencies().iter().map(|l| l.source().to_owned()).collect();
    assert_eq!(deps, vec![format!("{}/libfxbase.so", libs.display())]);
    // Neither: the zip entry's error (no archive `e`), and why the directory at `e!/libfoo.so`
    // is no library file either.
    std::fs::create_dir_all(dir.path().join("e!/libfoo.so")).unwrap();
    let err = open_err(&format!("{}/e!/libfoo.so", dir.path().display()));
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert_eq!(err.path(), Some(dir.path().join("e").as_path()), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("e!/libfoo.so was read as entry libfoo.so of the zip archive"), "{msg}");
    assert!(msg.contains("(then as a file: open of"), "{msg}");
    assert!(msg.contains("not a regular file"), "{msg}");
    // Nothing at either: the zip entry's error alone.
    let err = open_err(&format!("{}/none!/libfoo.so", dir.path().display()));
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert!(!err.to_string().contains("as a file"), "{err}");
}

/// An archive on a namespace's search path that cannot be used (not a zip, truncated,
/// missing, a directory, unreadable) is skipped, as glibc skips a search directory it cannot
/// use and bionic a zip it cannot open: the next directory supplies the library. When nothing
/// does, the error lists what was tried and why the archive was skipped. An entry that is found
/// but cannot be mapped still fails the load.
#[test]
fn a_broken_archive_on_the_search_path_is_skipped() {
    let base = build("ns-base", "base.c", "fxbase", &[]);
    let dep = build("ns-dep", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let base_bytes = std::fs::read(&base).unwrap();
    let dir = tmp();
    let d = dir.path();
    let good = d.join("good.apk");
    write_zip(&good, &[("lib/x86_64/libfxbase.so", &base_bytes, page_u16())]);
    std::fs::write(d.join("notzip.apk"), b"this is not a zip archive").unwrap();
    let whole = std::fs::read(&good).unwrap();
    std::fs::write(d.join("truncated.apk"), &whole[..whole.len() / 2]).unwrap();
    std::fs::create_dir(d.join("dir.apk")).unwrap();
    // Readable by root, which then finds it has no such entry; refused to anyone else.
    write_zip(&d.join("unreadable.apk"), &[("lib/x86_64/other.so", b"x", 0)]);
    std::fs::set_permissions(d.join("unreadable.apk"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let good_dir = format!("{}!/lib/x86_64", good.display());
    for broken in ["notzip.apk", "truncated.apk", "missing.apk", "dir.apk", "unreadable.apk"] {
        let broken_dir = format!("{}!/lib/x86_64", d.join(broken).display());
        let ns = Namespace::isolated(broken).search([&broken_dir, &good_dir]);
        // SAFETY: test fixtures.
        let ours = unsafe { ns.open(dep.as_path()) }.unwrap_or_else(|e| panic!("{broken}: {e}"));
        assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002, "{broken}");
        let deps: Vec<_> = ours.loaded_dependencies().iter().map(|l| l.source().to_owned()).collect();
        assert_eq!(deps, vec![format!("{good_dir}/libfxbase.so")], "{broken}");
        // A bare soname opened directly is searched for the same way.
        // SAFETY: test fixtures.
        let lib = unsafe { ns.open("libfxbase.so") }.unwrap_or_else(|e| panic!("{broken}: {e}"));
        assert_eq!(lib.source(), format!("{good_dir}/libfxbase.so"), "{broken}");
    }
    // Nothing found: the error names the directories tried and why the archive was skipped.
    let notzip_dir = format!("{}!/lib/x86_64", d.join("notzip.apk").display());
    let ns = Namespace::isolated("none").search([&notzip_dir]);
    // SAFETY: test fixtures (the load fails before running any code).
    let err = unsafe { ns.open(dep.as_path()) }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("libfxbase.so") && msg.contains(&notzip_dir), "{msg}");
    assert!(msg.contains(&format!("skipped {notzip_dir}: open zip entry of")), "{msg}");
    assert!(msg.contains("not a readable zip archive"), "{msg}");
    // SAFETY: as above.
    let err = unsafe { ns.open("libfxbase.so") }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("not a readable zip archive"), "{err}");
    // With the system linker's own search last, its error says why the archive was skipped too.
    let ns = Namespace::new("linker").search([&notzip_dir]);
    // SAFETY: as above.
    let err = unsafe { ns.open(dep.as_path()) }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains(&format!("skipped {notzip_dir}: open zip entry of")), "{err}");
    // An entry that is there but cannot be mapped (misaligned) is an error, not skipped.
    let misaligned = d.join("misaligned.apk");
    write_zip(&misaligned, &[("AndroidManifest.xml", b"<manifest/>", 0), ("lib/x86_64/libfxbase.so", &base_bytes, 0)]);
    let ns = Namespace::isolated("misaligned").search([format!("{}!/lib/x86_64", misaligned.display()), good_dir]);
    // SAFETY: as above.
    let err = unsafe { ns.open(dep.as_path()) }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EntryMisaligned, "{err}");
}

/// A page size the planner refuses is an error when opening an entry or an fd at an offset
/// too (0 divided by zero: a panic).
#[test]
fn absurd_page_sizes_are_errors_when_opening() {
    let dir = tmp();
    let path = apk(dir.path(), &basic_bytes(), page_u16());
    let file = std::fs::File::open(&path).unwrap();
    let at = Source::fd(&file, entry_offset(&path, ENTRY), "fd").unwrap();
    for page in [0u64, 1, 4095, 4097, 1 << 13 | 1] {
        for source in [Source::zip_entry(&path, ENTRY), at.clone()] {
            let err = source.open(page).map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadPageSize, "{source} page {page:#x}: {err}");
            let err = mmkit_elf::plan(&source, page).map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadPageSize, "{source} page {page:#x}: {err}");
        }
    }
}

#[test]
fn source_parse_splits_on_bang_slash() {
    assert_eq!(Source::parse("a/b.apk!/lib/x/libc.so"), Source::zip_entry("a/b.apk", "lib/x/libc.so"));
    assert_eq!(Source::parse("/usr/lib/libz.so.1"), Source::path("/usr/lib/libz.so.1"));
    // `!/` first names no archive (it was an empty archive path: "stat of  failed").
    assert_eq!(Source::parse("!/x"), Source::path("!/x"));
}

/// A `DT_NEEDED` name holding `!/` (`/data/app/x.apk!/lib/x86_64/libfxbase.so`, as an Android
/// build can record) names that zip entry, as bionic's `open_library_at_path` reads it, and the
/// file of that name when it is no usable entry; it was opened as a plain path only.
#[test]
fn a_dependency_named_by_an_apk_path_loads_from_the_archive() {
    const HOLDER: &str = "libfxbase-soname-placeholder-that-the-test-overwrites-with-a-path-0123456789-0123456789-0123456789-0123456789-0123456789.so";
    let base = build("bang-needed-base", "base.c", "fxbase", &[&format!("-Wl,-soname,{HOLDER}")]);
    let dep =
        build("bang-needed-dep", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let dir = tmp();
    // The dependent library with its DT_NEEDED string overwritten in place (NUL-padded).
    let with_needed = |needed: &str, name: &str| -> PathBuf {
        assert!(needed.len() < HOLDER.len(), "{needed}");
        let mut bytes = std::fs::read(&dep).unwrap();
        let at = bytes.windows(HOLDER.len()).position(|w| w == HOLDER.as_bytes()).expect("DT_NEEDED string");
        let mut patch = needed.as_bytes().to_vec();
        patch.resize(HOLDER.len(), 0);
        bytes[at..at + HOLDER.len()].copy_from_slice(&patch);
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let archive = dir.path().join("n.apk");
    let base_bytes = std::fs::read(&base).unwrap();
    write_zip(
        &archive,
        &[("AndroidManifest.xml", b"<manifest/>", 0), ("lib/x86_64/libfxbase.so", &base_bytes, page_u16())],
    );
    let entry = format!("{}!/lib/x86_64/libfxbase.so", archive.display());
    let user = with_needed(&entry, "libuser.so");
    let ns = Namespace::isolated("bang-needed");
    // SAFETY: test fixtures.
    let ours = unsafe { ns.open(user.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002);
    let deps: Vec<_> = ours.loaded_dependencies().iter().map(|l| l.source().to_owned()).collect();
    assert_eq!(deps, vec![entry.clone()]);
    // Mapped from the archive, past the entry's start (`segments()` asks mincore, which
    // qemu-user refuses for guest ranges).
    if host_cc() {
        let offsets: Vec<_> =
            ours.loaded_dependencies()[0].segments().unwrap().iter().filter_map(|m| m.file_offset).collect();
        assert!(offsets.iter().all(|&o| o >= entry_offset(&archive, "lib/x86_64/libfxbase.so")), "{offsets:?}");
    }
    // No such entry, but a file of that name (a directory `m.apk!`): that file, as bionic.
    let files = dir.path().join("m.apk!/lib");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("libfxbase.so"), &base_bytes).unwrap();
    let named = format!("{}/m.apk!/lib/libfxbase.so", dir.path().display());
    let user = with_needed(&named, "libuser2.so");
    // SAFETY: test fixtures.
    let ours = unsafe { ns.open(user.as_path()) }.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call(&ours, "fx_dep_twice", &[2]), 2004);
    assert_eq!(ours.loaded_dependencies()[0].source(), named);
    // Neither: the entry's error, naming the dependency.
    let user = with_needed(&format!("{}!/lib/x86_64/libnone.so", archive.display()), "libuser3.so");
    // SAFETY: test fixtures (the load fails before running any code).
    let err = unsafe { ns.open(user.as_path()) }.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyNotFound, "{err}");
    assert!(err.to_string().contains("libnone.so"), "{err}");
}

/// An isolated namespace's own copy of a library (the app's `libz.so.1`, bundled in its APK
/// beside the library that needs it) is the one its libraries bind, also once something else in
/// the process has loaded the system's zlib, as bionic keeps an isolated app namespace's copy
/// of a library no link exposes. A library the process had loaded answered every `DT_NEEDED`
/// before the namespace's own search (glibc's rule, still the default namespace's): the app got
/// whatever zlib the host had loaded first. What the namespace's search does not find (libc)
/// is still the process's; a soname a link lists is taken from what is loaded, as bionic takes
/// it from the linked namespace. In a fresh process: it loads the system's zlib.
#[test]
fn an_isolated_namespace_keeps_its_own_copy_of_a_library_the_process_loaded_from_the_system() {
    const NAME: &str = "an_isolated_namespace_keeps_its_own_copy_of_a_library_the_process_loaded_from_the_system";
    if !x86_64_host(NAME) || system_lib("libz.so.1").is_none() || !in_fresh_process(NAME) {
        return;
    }
    let Some(libc) = system_lib("libc.so.6") else { return };
    let zuse = build("default", "zuse.c", "fxzuse", &["-lz"]);
    // The app's zlib (zlibVersion "9.9.9-app"), needing libc (which its namespace does not have).
    let appz = build("appz", "appz.c", "fxappz", &["-Wl,-soname,libz.so.1", "-Wl,--no-as-needed", "-lc"]);
    let dir = tmp();
    let archive = dir.path().join("zapp.apk");
    let (u, z) = (std::fs::read(&zuse).unwrap(), std::fs::read(&appz).unwrap());
    write_zip(
        &archive,
        &[
            ("AndroidManifest.xml", b"<manifest/>", 0),
            ("lib/x86_64/libfxzuse.so", &u, page_u16()),
            ("lib/x86_64/libz.so.1", &z, page_u16()),
        ],
    );
    let search = format!("{}!/lib/x86_64", archive.display());
    let app_libz = format!("{search}/libz.so.1");
    let zlib_major = |ns: &Namespace| {
        // SAFETY: test fixtures (and the system's zlib).
        let lib = unsafe { ns.open("libfxzuse.so") }.unwrap_or_else(|e| panic!("{}: {e}", ns.name()));
        call(&lib, "fx_zlib_major", &[])
    };
    let own = |ns: &Namespace| {
        // SAFETY: as above.
        let lib = unsafe { ns.open("libfxzuse.so") }.unwrap_or_else(|e| panic!("{}: {e}", ns.name()));
        assert_eq!(call(&lib, "fx_zlib_major", &[]), 9, "{}: the app's own zlib", ns.name());
        let deps = lib.loaded_dependencies();
        assert_eq!(
            deps.iter().map(|l| l.source().to_owned()).collect::<Vec<_>>(),
            std::slice::from_ref(&app_libz),
            "{}",
            ns.name()
        );
        // The app's zlib's libc is the process's (found nowhere in the namespace, or found in
        // a system directory on its path: already loaded, not refused).
        assert!(deps[0].dependencies().contains(&("libc.so.6".to_owned(), false)), "{:?}", deps[0].dependencies());
        assert_eq!(ns.loaded_count(), 2, "{}", ns.name());
    };
    // Before anything loaded the system's zlib: the app's.
    own(&Namespace::isolated("zapp-before").search([search.as_str()]));
    // Something in the process loads the system's zlib (the system linker, for the default namespace).
    // SAFETY: the system's zlib.
    let system = unsafe { Namespace::default().open("libz.so.1") }.unwrap();
    system.address_of("zlibVersion").unwrap();
    // Still the app's; it was the system's.
    own(&Namespace::isolated("zapp").search([search.as_str()]));
    // A system directory on the isolated namespace's path: its libc is the loaded one (the
    // namespace refuses system libraries it would have to load), and zlib still the app's.
    let libc_dir = libc.parent().unwrap().display().to_string();
    own(&Namespace::isolated("zapp-sysdir").search([search.as_str(), libc_dir.as_str()]));
    // The default namespace keeps glibc's rule: a loaded soname answers a `DT_NEEDED`.
    assert_eq!(zlib_major(&Namespace::new("zplain").search([search.as_str()])), 1);
    // A soname a link lists is the loaded one (bionic: the linked namespace's loaded copy first).
    let linked = Namespace::isolated("zlinked")
        .search([search.as_str()])
        .link(std::sync::Arc::new(Namespace::new("zsys")), ["libz.so.1"]);
    assert_eq!(zlib_major(&linked), 1);
}

/// The read system calls this process has made (`syscr` of `/proc/self/io`), if the kernel
/// counts them.
fn read_syscalls() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines().find_map(|l| l.strip_prefix("syscr:")).and_then(|v| v.trim().parse().ok())
}

/// An APK of 5,000 entries is read a few blocks at a time and parsed once per load, as
/// bionic's `ZipArchiveCache` has it, however many of its libraries the load looks for in it:
/// the zip parser read a central directory entry in four `read`s (20,000 a parse), and the
/// load parsed the archive three times for a library and one dependency (30 ms where a small
/// APK took 2).
#[test]
fn a_large_apk_is_read_in_blocks_and_parsed_once_per_load() {
    if !in_fresh_process("a_large_apk_is_read_in_blocks_and_parsed_once_per_load") {
        return;
    }
    let Some(_) = read_syscalls() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "/proc/self/io is missing");
        return;
    };
    let base = build("default", "base.c", "fxbase", &[]);
    let dep = build("default", "dep.c", "fxdep", &[&format!("-L{}", base.parent().unwrap().display()), "-lfxbase"]);
    let (b, d) = (std::fs::read(&base).unwrap(), std::fs::read(&dep).unwrap());
    let dir = tmp();
    // The read system calls of a load of the library and its dependency from an APK of
    // `icons` other entries.
    let load = |icons: usize| {
        let names: Vec<String> = (0..icons).map(|i| format!("res/drawable/icon_{i:05}.png")).collect();
        let mut entries: Vec<(&str, &[u8], u16)> = names.iter().map(|n| (n.as_str(), &b"icon"[..], 0)).collect();
        entries.push(("lib/x86_64/libfxdep.so", &d, page_u16()));
        entries.push(("lib/x86_64/libfxbase.so", &b, page_u16()));
        let path = dir.path().join(format!("{icons}.apk"));
        write_zip(&path, &entries);
        let spec = format!("{}!/lib/x86_64/libfxdep.so", path.display());
        // Once to warm what is read once per process.
        drop(open(spec.as_str()));
        let before = read_syscalls().unwrap();
        let ours = open(spec.as_str());
        let reads = read_syscalls().unwrap() - before;
        assert_eq!(call(&ours, "fx_dep_twice", &[1]), 2002);
        reads
    };
    let (small, big) = (load(3), load(5000));
    eprintln!("read system calls: {small} for 5 entries, {big} for 5,002");
    assert!(big < 1000, "{big} read system calls to load two libraries from an APK of 5,002 entries");
    // The central directory (about 370 KiB) is read in about a dozen blocks; three parses took
    // three dozen.
    assert!(big - small <= 20, "{big} read system calls against {small} for an APK of 5 entries");
}
