//! The planner at 4 KiB, 16 KiB and 64 KiB pages: fixtures linked for each, every check's own
//! error, and property tests (random and mutated headers: errors, never panics).

mod common;

use common::*;
use mmkit_elf::{ErrorKind, Plan, Source};
use proptest::prelude::*;

const PAGES: [u64; 3] = [4096, 16384, 65536];
const R: u32 = 4;
const W: u32 = 2;
const X: u32 = 1;

fn plan_file(path: &std::path::Path, page: u64) -> Result<Plan, mmkit_elf::Error> {
    mmkit_elf::plan(&Source::path(path), page)
}

/// Invariants every successful plan satisfies, whatever the page size.
fn check_invariants(plan: &Plan, source_len: u64) {
    let page = plan.page_size;
    assert_eq!(plan.span_vaddr % page, 0);
    assert_eq!(plan.span_len % page, 0);
    assert!(plan.span_len > 0);
    let mut prev_end = plan.span_vaddr;
    for s in &plan.segments {
        assert_eq!(s.map_vaddr % page, 0);
        assert_eq!(s.map_offset % page, 0);
        assert_eq!(s.vaddr - s.map_vaddr, s.file_offset - s.map_offset);
        assert!(s.map_vaddr >= prev_end, "segments overlap");
        assert!(s.file_offset + s.file_size <= source_len);
        assert!(s.file_size <= s.mem_size);
        assert!(!(s.prot.writable() && s.prot.executable()));
        assert_eq!(s.map_file_len % page, 0);
        assert_eq!(s.bss_len % page, 0);
        if s.file_size > 0 {
            assert!(s.map_vaddr + s.map_file_len >= s.vaddr + s.file_size);
            assert!(s.map_vaddr + s.map_file_len - (s.vaddr + s.file_size) < page);
            assert_eq!(s.bss_vaddr, s.map_vaddr + s.map_file_len);
        }
        assert!(s.map_end() >= s.vaddr + s.mem_size);
        assert!(s.zero_len < page);
        if s.zero_len > 0 {
            assert!(s.prot.writable());
        }
        prev_end = s.map_end();
    }
    assert_eq!(plan.span_vaddr + plan.span_len, prev_end);
    if let Some((start, len)) = plan.relro {
        assert_eq!(start % page, 0);
        assert_eq!(len % page, 0);
        assert!(start >= plan.span_vaddr && start + len <= prev_end);
    }
}

#[test]
fn fixtures_plan_at_the_page_sizes_they_were_linked_for() {
    // (variant, max-page-size): planning succeeds for pages ≤ the link's alignment, and fails
    // with BadAlignment above it (Android's 16 KiB story). ld's default max-page-size is 4 KiB
    // on x86_64 and 64 KiB on aarch64 (the fixtures are built for the machine the tests run on).
    let default_max = if mmkit_elf::Machine::HOST == Some(mmkit_elf::Machine::Aarch64) { 65536 } else { 4096 };
    let cases: [(&str, &[&str], u64); 3] = [
        ("default", &[], default_max),
        ("page16k", &["-Wl,-z,max-page-size=16384"], 16384),
        ("page64k", &["-Wl,-z,max-page-size=65536", "-Wl,-z,separate-code"], 65536),
    ];
    for (variant, flags, max) in cases {
        for src in ["basic.c", "bss.c", "tls.c"] {
            let path = build(variant, src, &src.replace(".c", "plan"), flags);
            let len = std::fs::metadata(&path).unwrap().len();
            for page in PAGES {
                let result = plan_file(&path, page);
                if page <= max {
                    let plan = result.unwrap_or_else(|e| panic!("{variant} {src} at {page}: {e}"));
                    assert_eq!(plan.page_size, page);
                    assert!(plan.segments.len() >= 2);
                    assert!(plan.segments.iter().all(|s| s.align >= page));
                    assert!(plan.dynamic.is_some());
                    check_invariants(&plan, len);
                } else {
                    let err = result.unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::BadAlignment, "{variant} at {page}: {err}");
                    assert!(err.to_string().contains("max-page-size"), "{err}");
                }
            }
        }
    }
}

#[test]
fn tls_and_relro_are_planned() {
    let path = build("page16k", "tls.c", "tlsplan", &["-Wl,-z,max-page-size=16384"]);
    let plan = plan_file(&path, 16384).unwrap();
    let tls = plan.tls.as_ref().expect("PT_TLS");
    assert_eq!(tls.file_size, 8);
    assert!(tls.mem_size >= 8 + 32);
    let (start, len) = plan.relro.expect("PT_GNU_RELRO");
    assert_eq!(start % 16384, 0);
    assert!(len >= 16384);
}

#[test]
fn page_arithmetic_at_16k() {
    // A RW segment whose data ends mid-page and whose .bss spans further pages.
    let elf = synth_elf(
        &[Ph::load(R | X, 0, 0, 0x1000, 0x1000, 0x4000), Ph::load(R | W, 0x4010, 0x8010, 0x100, 0x9000, 0x4000)],
        0x5000,
    );
    let plan = Plan::new(&elf, elf.len() as u64, 0x4000).unwrap();
    let s = &plan.segments[1];
    assert_eq!((s.map_vaddr, s.map_offset, s.map_file_len), (0x8000, 0x4000, 0x4000));
    assert_eq!(s.zero_len, 0xc000 - 0x8110);
    assert_eq!((s.bss_vaddr, s.bss_len), (0xc000, 0x8000));
    assert_eq!((plan.span_vaddr, plan.span_len), (0, 0x14000));
    // The same file at 4 KiB pages: finer arithmetic.
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    let s = &plan.segments[1];
    assert_eq!((s.map_vaddr, s.map_offset, s.map_file_len), (0x8000, 0x4000, 0x1000));
    assert_eq!(s.zero_len, 0x9000 - 0x8110);
    assert_eq!((s.bss_vaddr, s.bss_len), (0x9000, 0x9000 - 0x1000 + 0x1000));
    // At 64 KiB the 16 KiB alignment is too small.
    let err = Plan::new(&elf, elf.len() as u64, 0x10000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadAlignment);
}

#[test]
fn a_segment_without_file_data_is_all_bss() {
    let elf = synth_elf(
        &[Ph::load(R | X, 0, 0, 0x800, 0x800, 0x1000), Ph::load(R | W, 0, 0x3000, 0, 0x2500, 0x1000)],
        0x1000,
    );
    let plan = Plan::new(&elf, 0x1000, 0x1000).unwrap();
    let s = &plan.segments[1];
    assert_eq!((s.map_file_len, s.zero_len, s.bss_vaddr, s.bss_len), (0, 0, 0x3000, 0x3000));
}

#[test]
fn eh_frame_header_is_planned_and_must_lie_in_a_segment() {
    let eh = |vaddr, memsz| Ph { p_type: 0x6474_e550, flags: R, offset: vaddr, vaddr, filesz: memsz, memsz, align: 4 };
    let text = Ph::load(R | X, 0, 0, 0x1000, 0x1000, 0x1000);
    let elf = synth_elf(&[text, eh(0x800, 0x40)], 0x1000);
    assert_eq!(Plan::new(&elf, 0x1000, 0x1000).unwrap().eh_frame_hdr, Some((0x800, 0x40)));
    let elf = synth_elf(&[text, eh(0x5000, 0x40)], 0x1000);
    let err = Plan::new(&elf, 0x1000, 0x1000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadProgramHeaders, "{err}");
    assert!(err.to_string().contains("PT_GNU_EH_FRAME"), "{err}");
}

/// A writable segment is prefaulted only when the loader writes every one of its file pages:
/// RELRO pages and the page whose tail it zeroes.
#[test]
fn prefault_only_when_the_loader_writes_every_file_page() {
    let relro =
        |vaddr, memsz| Ph { p_type: 0x6474_e552, flags: R, offset: vaddr, vaddr, filesz: memsz, memsz, align: 1 };
    let text = Ph::load(R | X, 0, 0, 0x1000, 0x1000, 0x1000);
    // RELRO page + the zeroed page (data ends mid-page, .bss follows): prefaulted.
    let elf = synth_elf(&[text, Ph::load(R | W, 0x1d90, 0x1d90, 0x1100, 0x1200, 0x1000), relro(0x1d90, 0x270)], 0x3000);
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    assert!(!plan.segments[0].prefault, "read-only segments are never prefaulted");
    let s = &plan.segments[1];
    assert_eq!((s.map_vaddr, s.map_file_len), (0x1000, 0x2000));
    assert!(s.zero_len > 0 && s.prefault, "{s:?}");
    // A plain .data page between RELRO and the zeroed page: demand-paged.
    let elf = synth_elf(&[text, Ph::load(R | W, 0x1d90, 0x1d90, 0x2100, 0x2200, 0x1000), relro(0x1d90, 0x270)], 0x4000);
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    assert!(!plan.segments[1].prefault, "{:?}", plan.segments[1]);
    // No RELRO and no .bss: nothing says the loader writes it.
    let elf = synth_elf(&[text, Ph::load(R | W, 0x1d90, 0x1d90, 0x100, 0x100, 0x1000)], 0x2000);
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    assert!(!plan.segments[1].prefault);
    // Only the zeroed page, no RELRO: prefaulted.
    let elf = synth_elf(&[text, Ph::load(R | W, 0x1d90, 0x1d90, 0x100, 0x300, 0x1000)], 0x2000);
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    assert!(plan.segments[1].prefault);
    // RELRO covering the whole segment (-z now layouts without .data): prefaulted.
    let elf =
        synth_elf(&[text, Ph::load(R | W, 0x1000, 0x1000, 0x2000, 0x2000, 0x1000), relro(0x1000, 0x2000)], 0x3000);
    let plan = Plan::new(&elf, elf.len() as u64, 0x1000).unwrap();
    assert!(plan.segments[1].prefault);
}

/// Each check has its own error kind.
#[test]
fn every_check_has_its_own_error() {
    let good = [Ph::load(R | X, 0, 0, 0x800, 0x800, 0x1000), Ph::load(R | W, 0x800, 0x1800, 0x100, 0x200, 0x1000)];
    let base = synth_elf(&good, 0x1000);
    assert!(Plan::new(&base, 0x1000, 0x1000).is_ok());
    let kind = |bytes: &[u8], len: u64, page: u64| Plan::new(bytes, len, page).unwrap_err().kind();
    let patched = |at: usize, v: &[u8]| {
        let mut b = base.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    assert_eq!(kind(&patched(0, b"\x7fELG"), 0x1000, 0x1000), ErrorKind::BadMagic);
    assert_eq!(kind(&patched(4, &[1]), 0x1000, 0x1000), ErrorKind::BadClass);
    assert_eq!(kind(&patched(5, &[2]), 0x1000, 0x1000), ErrorKind::BadEndianness);
    assert_eq!(kind(&patched(6, &[0]), 0x1000, 0x1000), ErrorKind::BadVersion);
    assert_eq!(kind(&patched(16, &2u16.to_le_bytes()), 0x1000, 0x1000), ErrorKind::NotSharedObject);
    assert_eq!(kind(&patched(18, &40u16.to_le_bytes()), 0x1000, 0x1000), ErrorKind::WrongMachine); // EM_ARM
    assert_eq!(kind(&patched(54, &32u16.to_le_bytes()), 0x1000, 0x1000), ErrorKind::BadProgramHeaders);
    assert_eq!(kind(&patched(56, &0u16.to_le_bytes()), 0x1000, 0x1000), ErrorKind::BadProgramHeaders);
    assert_eq!(kind(&patched(32, &0xff8u64.to_le_bytes()), 0x1000, 0x1000), ErrorKind::BadProgramHeaders);
    assert_eq!(kind(&base[..40], 0x1000, 0x1000), ErrorKind::Truncated);
    assert_eq!(kind(&base, 0x1000, 3000), ErrorKind::BadPageSize);
    let with = |phs: &[Ph]| synth_elf(phs, 0x1000);
    let mut ph = good;
    ph[1].vaddr = 0x1900;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::OffsetNotCongruent);
    let mut ph = good;
    ph[1].filesz = 0x900;
    ph[1].memsz = 0x900;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::SegmentOutsideSource);
    let mut ph = good;
    ph[1].offset = u64::MAX - 0x7ff;
    ph[1].vaddr = 0x1800;
    assert_ne!(Plan::new(&with(&ph), 0x1000, 0x1000).map(|_| ()).unwrap_err().kind(), ErrorKind::Io);
    let mut ph = good;
    ph[1].memsz = 0x80;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::FileSizeExceedsMemSize);
    let mut ph = good;
    ph[1].flags = R | W | X;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::WritableAndExecutable);
    let mut ph = good;
    ph[1].align = 0x3000;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::BadAlignment);
    let mut ph = good;
    ph[1].align = 0x200;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::BadAlignment);
    let mut ph = good;
    ph[1].vaddr = 0x800;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::SegmentsOverlap);
    let mut ph = good;
    ph[1].vaddr = u64::MAX - 0x7ff;
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::SegmentsOverlap);
    let ph = [Ph { p_type: 4, ..good[0] }];
    assert_eq!(kind(&with(&ph), 0x1000, 0x1000), ErrorKind::NoLoadSegments);
    // Source shorter than the program header table.
    assert_eq!(kind(&base, 100, 0x1000), ErrorKind::BadProgramHeaders);
}

#[test]
fn errors_name_the_check_and_the_range() {
    let ph = [Ph::load(R | W | X, 0, 0, 0x800, 0x800, 0x1000)];
    let err = Plan::new(&synth_elf(&ph, 0x1000), 0x1000, 0x1000).unwrap_err();
    assert_eq!(err.operation(), "plan");
    assert_eq!(err.range(), Some((0, 0x800)));
    assert!(err.to_string().contains("writable and executable"), "{err}");
}

fn arb_ph() -> impl Strategy<Value = Ph> {
    (
        prop_oneof![Just(1u32), Just(1u32), Just(2), Just(7), Just(0x6474e552), any::<u32>()],
        0u32..8,
        prop_oneof![0u64..0x10000, any::<u64>()],
        prop_oneof![0u64..0x40000, any::<u64>()],
        prop_oneof![0u64..0x8000, any::<u64>()],
        prop_oneof![0u64..0x20000, any::<u64>()],
        prop_oneof![Just(0x1000u64), Just(0x4000), Just(0x10000), any::<u64>()],
    )
        .prop_map(|(p_type, flags, offset, vaddr, filesz, memsz, align)| Ph {
            p_type,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                len in any::<u64>(), page in prop_oneof![Just(4096u64), Just(16384), Just(65536), any::<u64>()]) {
        let _ = Plan::new(&bytes, len, page);
    }

    #[test]
    fn random_program_headers_plan_or_fail_cleanly(phs in proptest::collection::vec(arb_ph(), 0..8),
                                                    len in 0u64..0x20000,
                                                    page in prop_oneof![Just(4096u64), Just(16384), Just(65536)]) {
        let elf = synth_elf(&phs, 0);
        if let Ok(plan) = Plan::new(&elf, len.max(elf.len() as u64), page) {
            check_invariants(&plan, len.max(elf.len() as u64));
        }
    }
}

/// `bytes` copied to offset `shift` of an 8-byte-aligned buffer: a slice at every alignment.
fn at_offset(bytes: &[u8], shift: usize, f: impl FnOnce(&[u8]) -> String) -> String {
    let mut words = vec![0u64; bytes.len() / 8 + 2];
    // SAFETY: u64 → u8 reinterpretation of an owned, initialized buffer of the right length.
    let buf = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
    buf[shift..shift + bytes.len()].copy_from_slice(bytes);
    let slice = &buf[shift..shift + bytes.len()];
    assert_eq!(slice.as_ptr() as usize % 8, shift);
    f(slice)
}

/// The plan (or the error) as text, for comparing outcomes.
fn outcome(bytes: &[u8], len: u64, page: u64) -> String {
    match Plan::new(bytes, len, page) {
        Ok(plan) => format!("{plan:?}"),
        Err(e) => format!("error {:?}: {e}", e.kind()),
    }
}

#[test]
fn a_real_library_plans_identically_at_every_buffer_alignment() {
    let bytes = std::fs::read(lib("basic.c", "fxbasic")).unwrap();
    let len = bytes.len() as u64;
    let head = &bytes[..bytes.len().min(4096)];
    let aligned = Plan::new(head, len, 4096).expect("plans from an aligned buffer");
    for shift in 0..8 {
        let got = at_offset(head, shift, |b| outcome(b, len, 4096));
        assert_eq!(got, format!("{aligned:?}"), "buffer at offset {shift} mod 8");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_same_bytes_plan_identically_at_every_offset(phs in proptest::collection::vec(arb_ph(), 1..6),
                                                       len in 0u64..0x20000,
                                                       page in prop_oneof![Just(4096u64), Just(16384), Just(65536)]) {
        let elf = synth_elf(&phs, 0);
        let len = len.max(elf.len() as u64);
        let first = at_offset(&elf, 0, |b| outcome(b, len, page));
        for shift in 1..8 {
            prop_assert_eq!(&at_offset(&elf, shift, |b| outcome(b, len, page)), &first, "offset {}", shift);
        }
        // headers_len reads the same header.
        let want = mmkit_elf::plan::headers_len(&elf);
        for shift in 1..8 {
            prop_assert_eq!(at_offset(&elf, shift, |b| format!("{:?}", mmkit_elf::plan::headers_len(b))), format!("{want:?}"));
        }
    }
}

#[test]
fn mutated_fixture_headers_never_panic() {
    let path = lib("basic.c", "fxbasic");
    let orig = std::fs::read(&path).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
    runner
        .run(&(proptest::collection::vec((0usize..0x300, any::<u8>()), 1..8), any::<bool>()), |(edits, truncate)| {
            let mut b = orig.clone();
            for (at, v) in edits {
                b[at] = v;
            }
            let len = if truncate { 0x200 } else { b.len() as u64 };
            for page in PAGES {
                if let Ok(plan) = Plan::new(&b, len, page) {
                    check_invariants(&plan, len);
                }
            }
            Ok(())
        })
        .unwrap();
}
