//! aarch64 images checked on any host: the fixtures are built with the cross gcc
//! (`aarch64-linux-gnu-gcc`), planned with `Plan::for_machine` for 4, 16 and 64 KiB pages, and
//! their relocation tables read (with `object`) and checked against what the loader applies
//! and where it writes. Loading them for real happens when these tests run for aarch64 under
//! qemu-user (`scripts/test`'s platforms block).
//!
//! Without the cross gcc the tests print why and pass, except under `CI=true`, where they fail
//! (`scripts/test` installs it).

mod common;

use mmkit_elf::{ErrorKind, Machine, Plan};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, RelocationFlags};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const CROSS_CC: &str = "aarch64-linux-gnu-gcc";

/// Is the cross gcc here? Prints the reason to skip when it is not; panics under `CI=true`.
fn cross_cc() -> bool {
    if common::prebuilt_fixtures() {
        return true; // the store holds what the cross gcc built (the arm64 VM)
    }
    let ok = Command::new(CROSS_CC).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CROSS_CC} is missing under CI=true (scripts/test installs gcc-aarch64-linux-gnu)"
        );
        eprintln!("skipped: {CROSS_CC} is not installed (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)");
    }
    ok
}

fn build(src: &str, variant: &str, flags: &[&str]) -> PathBuf {
    common::build_with(CROSS_CC, variant, src, &format!("a64{}", src.trim_end_matches(".c")), flags)
}

/// Relocation type name → count, from the image's dynamic relocation tables.
fn relocation_counts(bytes: &[u8]) -> BTreeMap<String, usize> {
    let file = ElfFile64::<Endianness>::parse(bytes).expect("parse the cross-built fixture");
    let mut out = BTreeMap::new();
    for (_, r) in file.dynamic_relocations().expect("dynamic relocations") {
        let RelocationFlags::Elf { r_type } = r.flags() else { panic!("not an ELF relocation") };
        *out.entry(Machine::Aarch64.relocation_name(r_type)).or_insert(0) += 1;
    }
    out
}

/// Every relocation writes into a writable, non-executable segment of the plan (RELRO
/// included): the loader never writes code, which is why it needs no instruction-cache flush.
fn assert_writes_only_data(bytes: &[u8], plan: &Plan) {
    let file = ElfFile64::<Endianness>::parse(bytes).unwrap();
    for (offset, r) in file.dynamic_relocations().unwrap() {
        let RelocationFlags::Elf { r_type } = r.flags() else { unreachable!() };
        let name = Machine::Aarch64.relocation_name(r_type);
        if r_type == object::elf::R_AARCH64_NONE {
            continue; // writes nothing
        }
        let len = if name == "R_AARCH64_TLSDESC" { 16 } else { 8 };
        let seg = plan.segments.iter().find(|s| offset >= s.vaddr && offset + len <= s.vaddr + s.mem_size);
        let seg = seg.unwrap_or_else(|| panic!("{name} at {offset:#x} is outside every PT_LOAD segment"));
        assert!(
            seg.prot.writable() && !seg.prot.executable(),
            "{name} at {offset:#x} writes a {} segment",
            seg.prot.rwx()
        );
    }
}

#[test]
fn aarch64_fixtures_plan_for_4k_16k_and_64k_pages() {
    if !cross_cc() {
        return;
    }
    for (max_page, variant) in [(4096u64, "a64-4k"), (16384, "a64-16k"), (65536, "a64-64k")] {
        let flag = format!("-Wl,-z,max-page-size={max_page}");
        let path = build("basic.c", variant, &[&flag, "-Wl,-z,separate-code"]);
        let bytes = std::fs::read(&path).unwrap();
        let len = bytes.len() as u64;
        // The file's own view, from object: the alignment the linker chose.
        let file = ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        let endian = file.endian();
        assert_eq!(file.elf_header().e_machine(endian), object::elf::EM_AARCH64);
        let aligns: Vec<u64> = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == object::elf::PT_LOAD)
            .map(|ph| ph.p_align(endian))
            .collect();
        assert!(aligns.iter().all(|&a| a == max_page), "{variant}: p_align {aligns:?}");
        for page in [4096u64, 16384, 65536] {
            let result = Plan::for_machine(&bytes, len, page, Machine::Aarch64);
            if page > max_page {
                // A library linked for smaller pages cannot be mapped with larger ones.
                let err = result.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::BadAlignment, "{variant} at {page}: {err}");
                continue;
            }
            let plan = result.unwrap_or_else(|e| panic!("{variant} at {page}: {e}"));
            assert_eq!(plan.machine, Machine::Aarch64);
            assert_eq!(plan.page_size, page);
            assert_eq!(plan.max_align, max_page);
            assert!(plan.segments.len() >= 3, "{variant}: {} segments", plan.segments.len());
            for s in &plan.segments {
                assert_eq!(s.map_vaddr % page, 0);
                assert_eq!(s.map_offset % page, 0);
                assert_eq!(s.map_vaddr - s.map_offset, s.vaddr - s.file_offset);
                assert!(s.map_offset + s.map_file_len <= len.next_multiple_of(page));
            }
            let (relro, relro_len) = plan.relro.expect("gcc's default -z relro");
            assert_eq!(relro % page, 0);
            assert_eq!(relro_len % page, 0);
            assert!(plan.dynamic.is_some());
            assert_writes_only_data(&bytes, &plan);
        }
    }
}

#[test]
fn aarch64_relocation_tables_hold_the_kinds_the_loader_applies() {
    if !cross_cc() {
        return;
    }
    // (fixture, flags, relocation types it must have, types the loader must refuse)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        ("basic.c", &[], &["R_AARCH64_ABS64", "R_AARCH64_GLOB_DAT", "R_AARCH64_JUMP_SLOT", "R_AARCH64_RELATIVE"], &[]),
        // General- and local-dynamic TLS: TLS descriptors, the default dialect on aarch64.
        ("tls.c", &[], &["R_AARCH64_TLSDESC"], &[]),
        // The traditional dialect: __tls_get_addr with a DTPMOD64/DTPREL64 pair.
        ("tls.c", &["-mtls-dialect=trad"], &["R_AARCH64_TLS_DTPMOD64", "R_AARCH64_TLS_DTPREL64"], &[]),
        // Initial-exec TLS: applied to a variable in static TLS (the library's own, built for
        // it; an undefined one, as here, is an error at load, see tests/load.rs).
        ("tls_ie.c", &[], &["R_AARCH64_TLS_TPREL64"], &[]),
        ("tls_static.c", &[], &["R_AARCH64_TLS_TPREL64", "R_AARCH64_TLSDESC"], &[]),
        ("ifunc.c", &[], &["R_AARCH64_IRELATIVE", "R_AARCH64_GLOB_DAT", "R_AARCH64_JUMP_SLOT"], &[]),
    ];
    for &(src, flags, must_have, refused) in cases {
        let variant = if flags.is_empty() { "a64-default".to_owned() } else { format!("a64-{}", flags.join("_")) };
        let path = build(src, &variant.replace(['=', ','], "-"), flags);
        let bytes = std::fs::read(&path).unwrap();
        let counts = relocation_counts(&bytes);
        for name in must_have.iter().chain(refused) {
            assert!(counts.contains_key(*name), "{src} {flags:?}: no {name} in {counts:?}");
        }
        let file = ElfFile64::<Endianness>::parse(&*bytes).unwrap();
        for (_, r) in file.dynamic_relocations().unwrap() {
            let RelocationFlags::Elf { r_type } = r.flags() else { unreachable!() };
            let name = Machine::Aarch64.relocation_name(r_type);
            assert!(name.starts_with("R_AARCH64_"), "{src}: unnamed {name}");
            let applied = Machine::Aarch64.applies_relocation(r_type);
            assert_eq!(applied, !refused.contains(&name.as_str()), "{src} {flags:?}: {name}");
        }
        let plan = Plan::for_machine(&bytes, bytes.len() as u64, 4096, Machine::Aarch64).unwrap();
        assert_writes_only_data(&bytes, &plan);
        if src == "tls.c" {
            let tls = plan.tls.as_ref().expect("PT_TLS");
            assert_eq!(tls.file_size, 8, "fx_tls_value in .tdata");
            assert!(tls.mem_size >= 8 + 32, "and local_tls[4] in .tbss");
        }
    }
}

#[test]
fn a_foreign_machine_is_named_in_the_error() {
    if !cross_cc() {
        return;
    }
    let path = build("basic.c", "a64-default", &[]);
    let bytes = std::fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    let err = Plan::for_machine(&bytes, len, 4096, Machine::X86_64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongMachine);
    let msg = err.to_string();
    assert!(msg.contains("e_machine is 183 (EM_AARCH64),") && msg.ends_with("EM_X86_64 (62)"), "{msg}");
    if Machine::HOST == Some(Machine::X86_64) {
        let err = Plan::new(&bytes, len, 4096).unwrap_err();
        assert!(err.to_string().contains("e_machine is 183 (EM_AARCH64), this loader runs EM_X86_64 (62)"), "{err}");
    } else if Machine::HOST == Some(Machine::Aarch64) {
        assert_eq!(Plan::new(&bytes, len, 4096).unwrap().machine, Machine::Aarch64);
    }
}

/// `mmkit_elf::plan` (what `mmkit elf plan` prints) plans an image for the machine it was built
/// for, so an aarch64 library (or APK entry) is checked on an x86_64 host; loading it still
/// needs that machine.
#[test]
fn plan_of_a_source_follows_the_image_machine() {
    if !cross_cc() {
        return;
    }
    let path = build("basic.c", "a64-16k", &["-Wl,-z,max-page-size=16384", "-Wl,-z,separate-code"]);
    let plan = mmkit_elf::plan(&mmkit_elf::Source::path(&path), 16384).unwrap();
    assert_eq!(plan.machine, Machine::Aarch64);
    assert_eq!(plan.page_size, 16384);
    if cfg!(not(target_arch = "aarch64")) {
        // The loader's own path plans for the host and names both machines.
        let src = mmkit_elf::Source::path(&path).open(16384).unwrap();
        let err = mmkit_elf::plan_source(&src, 16384).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongMachine, "{err}");
        assert!(err.to_string().contains("EM_AARCH64"), "{err}");
    }
}
