//! memmap2's test scenarios and API (issue 19), ported to mmkit and checked against the kernel:
//! `/proc/self/maps` permissions, `/proc/self/smaps` flags, the file's bytes through `std::fs`,
//! and code run from a page made executable. Scenarios mmkit already covers elsewhere are
//! named in the README's "Coming from memmap2" section (tests/file.rs: empty files, zero
//! lengths, offsets past the end, unaligned offsets; tests/soundness_remap.rs and
//! tests/soundness_shm.rs: remap and map_if_safe edges).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

use mmkit::{Advice, ErrorKind, MapOptions, Mmap, MmapMut, MmapRaw, RemapOptions, UncheckedAdvice};

fn page() -> usize {
    mmkit::page_size()
}

/// A read-write temporary file on the build disk (the system temp dir may be `noexec` tmpfs),
/// or in the system temp dir when an unprivileged run cannot write the build disk.
fn temp_file(len: u64) -> File {
    let f = tempfile::tempfile_in(env!("CARGO_TARGET_TMPDIR")).or_else(|_| tempfile::tempfile()).unwrap();
    f.set_len(len).unwrap();
    f
}

fn file_bytes(file: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut out).unwrap();
    out
}

/// The permissions `/proc/self/maps` shows for the area holding `addr` (`r-xp`).
fn perms_at(addr: *const u8) -> String {
    let a = addr as u64;
    let maps = mmkit::inspect::maps(std::process::id()).unwrap();
    maps.iter().find(|e| e.start <= a && a < e.end).expect("mapped").perms.to_string()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

#[test]
fn file_write_and_flush_range_reach_the_file() {
    // memmap2: file_write, flush_range (a window at offset 2).
    let mut file = temp_file(128);
    // SAFETY: the temporary file is ours alone.
    let mut map = unsafe { MapOptions::new().offset(2).len(6).map_mut(&file) }.unwrap();
    map.copy_from_slice(b"abc123");
    map.flush_async(0..6).unwrap();
    map.flush(0..6).unwrap();
    assert_eq!(map.flush(0..7).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(&file_bytes(&mut file)[..10], b"\0\0abc123\0\0");
}

#[test]
fn anonymous_maps_start_zeroed_and_need_a_length() {
    // memmap2: map_anon, map_anon_zero_len (there a missing length gives an empty map; mmkit
    // asks for the length instead, and `len(0)` gives the empty map).
    let mut map = MmapMut::map_anon(128).unwrap();
    assert_eq!(&map[..], &[0u8; 128][..]);
    let incr: Vec<u8> = (0..128u8).collect();
    map.copy_from_slice(&incr);
    assert_eq!(&map[..], &incr[..]);
    let err = MapOptions::new().map_anon().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("MapOptions::len"), "{err}");
    assert!(MapOptions::new().len(0).map_anon().unwrap().is_empty());
}

#[test]
fn huge_lengths_are_errors_not_maps() {
    // memmap2: map_anon_len_overflow, remap_len_overflow (there on 32-bit targets).
    for len in [usize::MAX, usize::MAX - page(), isize::MAX as usize + 1] {
        assert!(MapOptions::new().len(len).map_anon().is_err(), "anonymous {len:#x}");
    }
    let file = temp_file(128);
    // SAFETY: the temporary file is ours alone; nothing is mapped.
    let err = unsafe { MapOptions::new().len(usize::MAX).map(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    // SAFETY: as above.
    let mut map = unsafe { MapOptions::new().map(&file) }.unwrap();
    // SAFETY: as above; the calls are refused.
    let err = unsafe { map.remap(isize::MAX as usize + 1, RemapOptions::new().may_move(true)) }.unwrap_err();
    assert!(err.to_string().contains("isize::MAX"), "{err}");
    assert_eq!(map.len(), 128);
}

#[test]
fn map_copy_read_only_is_private_and_turns_copy_on_write() {
    // memmap2: map_copy_read_only, mprotect_copy.
    let mut file = temp_file(0);
    file.write_all(&[5u8; 256]).unwrap();
    // SAFETY: the temporary file is ours alone.
    let map = unsafe { MapOptions::new().map_copy_read_only(&file) }.unwrap();
    assert_eq!(perms_at(map.as_ptr()), "r--p");
    assert_eq!(&map[..], &[5u8; 256][..]);
    let mut cow = map.make_mut().unwrap();
    assert_eq!(perms_at(cow.as_ptr()), "rw-p");
    cow[..6].copy_from_slice(b"abc123");
    cow.flush(..).unwrap();
    assert_eq!(file_bytes(&mut file), vec![5u8; 256], "private writes never reach the file");
    // SAFETY: as above.
    let other = unsafe { Mmap::map(&file) }.unwrap();
    assert_eq!(other[0], 5);
    let code = cow.make_exec().unwrap();
    assert_eq!(perms_at(code.as_ptr()), "r-xp");
    assert_eq!(&code[..6], b"abc123");
}

#[test]
fn make_exec_flips_anonymous_code_from_writable_to_executable() {
    // memmap2: mprotect_anon, and what JITs do with it: write, flip W^X, run.
    let mut map = MmapMut::map_anon(page()).unwrap();
    // x86_64: mov eax, 42; ret
    map[..6].copy_from_slice(&[0xb8, 42, 0, 0, 0, 0xc3]);
    assert_eq!(perms_at(map.as_ptr()), "rw-p");
    let code = map.make_exec().unwrap();
    assert_eq!(perms_at(code.as_ptr()), "r-xp", "never writable and executable at once");
    assert!(code.mapping().protection().executable() && !code.mapping().protection().writable());
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the page holds a complete x86_64 function returning 42 (System V ABI), is
        // executable, and lives until after the call.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code.as_ptr()) };
        assert_eq!(f(), 42);
    }
    // Back to writable drops execute (W^X both ways), as memmap2's make_mut.
    let again = code.make_mut().unwrap();
    assert_eq!(perms_at(again.as_ptr()), "rw-p");
    // An executable Mmap can be flipped again (e.g. a read-only map made executable).
    let ro = MmapMut::map_anon(page()).unwrap().make_read_only().unwrap().make_exec().unwrap();
    assert_eq!(perms_at(ro.as_ptr()), "r-xp");
}

#[test]
fn shared_file_maps_become_executable_and_keep_their_bytes() {
    // memmap2: mprotect_file, map_exec.
    let mut file = temp_file(0);
    file.write_all(&[0xc3; 256]).unwrap();
    // SAFETY: the temporary file is ours alone.
    let mut map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    map[..3].copy_from_slice(b"abc");
    let code = map.make_exec().unwrap();
    assert_eq!(perms_at(code.as_ptr()), "r-xs");
    assert_eq!(&file_bytes(&mut file)[..3], b"abc");
    // SAFETY: as above.
    let exec = unsafe { MapOptions::new().map_exec(&file) }.unwrap();
    assert_eq!(perms_at(exec.as_ptr()), "r-xs");
    assert_eq!(&exec[..3], b"abc");
}

/// Every advice mmkit names, for the support probe.
const ADVICE: [Advice; 14] = [
    Advice::Normal,
    Advice::Sequential,
    Advice::Random,
    Advice::WillNeed,
    Advice::HugePage,
    Advice::NoHugePage,
    Advice::DoFork,
    Advice::DontDump,
    Advice::DoDump,
    Advice::Cold,
    Advice::PageOut,
    Advice::PopulateRead,
    Advice::PopulateWrite,
    Advice::Collapse,
];

#[test]
fn advice_support_agrees_with_the_kernel() {
    // memmap2: Advice::is_supported. The oracle: advice the kernel applies to a real page is
    // supported, and advice reported unsupported is refused with EINVAL on a real page.
    for advice in ADVICE {
        let map = MmapMut::map_anon(page()).unwrap();
        let real = map.advise(.., advice);
        let supported = advice.is_supported();
        assert_eq!(advice.is_supported(), supported, "cached answer is stable");
        if real.is_ok() {
            assert!(supported, "{advice:?} worked on a page but is reported unsupported");
        }
        if !supported {
            assert_eq!(real.unwrap_err().errno(), Some(libc::EINVAL), "{advice:?}");
        }
    }
    for advice in [Advice::Normal, Advice::Random, Advice::Sequential, Advice::WillNeed, Advice::DoFork] {
        assert!(advice.is_supported(), "{advice:?} exists on every kernel mmkit supports");
    }
    assert!(UncheckedAdvice::DontNeed.is_supported());
    assert!(UncheckedAdvice::Free.is_supported(), "MADV_FREE is Linux 4.5");
    if kernel_at_least(5, 4) {
        assert!(Advice::Cold.is_supported() && Advice::PageOut.is_supported());
    }
}

#[test]
fn advice_ranges_and_unchecked_advice_on_part_of_a_map() {
    // memmap2: advise, advise_writes_unsafely, advise_writes_unsafely_to_part_of_map.
    let p = page();
    let file = temp_file(128);
    // SAFETY: the temporary file is ours alone.
    let map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    map.advise(.., Advice::Random).unwrap();
    map.advise(0..map.len(), Advice::Sequential).unwrap();
    assert_eq!(map.advise(0..129, Advice::Random).unwrap_err().kind(), ErrorKind::OutOfBounds);
    let mut mem = MmapMut::map_anon(2 * p).unwrap();
    mem.fill(255);
    let mem = mem.make_read_only().unwrap();
    // SAFETY: no reference into the map is alive across the call; zeros are valid bytes.
    unsafe { mem.mapping().advise_unchecked(p..2 * p, UncheckedAdvice::DontNeed) }.unwrap();
    assert_eq!((mem[0], mem[p - 1], mem[p], mem[2 * p - 1]), (255, 255, 0, 0));
}

#[test]
fn remap_grows_shrinks_and_keeps_an_offset() {
    // memmap2: remap_grow, remap_shrink, remap_with_offset.
    let (offset, initial, fin) = (77u64, 128usize, 2000usize);
    let file = temp_file(fin as u64 + offset);
    // SAFETY: the file is ours and keeps its length.
    let mut map = unsafe { MapOptions::new().offset(offset).len(initial).map_mut(&file) }.unwrap();
    // SAFETY: as above.
    unsafe { map.remap(fin, RemapOptions::new().may_move(true)) }.unwrap();
    assert_eq!(map.len(), fin);
    assert!(map.iter().all(|&b| b == 0));
    let incr: Vec<u8> = (0..fin).map(|v| v as u8).collect();
    map.copy_from_slice(&incr);
    // SAFETY: as above.
    unsafe { map.remap(400, RemapOptions::new()) }.unwrap();
    assert_eq!(map.len(), 400);
    map.copy_from_slice(&incr[..400]);
    // Remapping to the length it has is a no-op.
    // SAFETY: as above.
    unsafe { map.remap(400, RemapOptions::new()) }.unwrap();
    assert_eq!(&map[..], &incr[..400]);
}

#[test]
fn stack_maps_carry_map_stack() {
    // memmap2: MmapOptions::stack. Since Linux 6.7 MAP_STACK marks the area no-huge-page.
    let len = 16 * page();
    let mut stack = MapOptions::new().len(len).stack().map_anon().unwrap();
    stack[len - 1] = 1;
    let plain = MapOptions::new().len(len).map_anon().unwrap();
    let flags_of = |addr: *const u8| {
        let smaps = mmkit::inspect::smaps(std::process::id()).unwrap();
        let a = addr as u64;
        smaps.into_iter().find(|e| e.area.start <= a && a < e.area.end).expect("mapped").vm_flags
    };
    let (s, p) = (flags_of(stack.as_ptr()), flags_of(plain.as_ptr()));
    if kernel_at_least(6, 7) {
        assert!(s.iter().any(|f| f == "nh"), "MAP_STACK area flags {s:?}");
        assert!(!p.iter().any(|f| f == "nh"), "plain area flags {p:?}");
    }
    // Ignored for files, as in memmap2.
    let file = temp_file(page() as u64);
    // SAFETY: the temporary file is ours alone.
    let fm = unsafe { MapOptions::new().stack().map(&file) }.unwrap();
    assert_eq!(fm.len(), page());
}

#[test]
fn typed_maps_hand_over_to_raw_pointer_code() {
    // memmap2: From<Mmap> / From<MmapMut> for MmapRaw, raw, raw_read_only.
    let file = temp_file(page() as u64);
    // SAFETY: the temporary file is ours alone.
    let mut map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    map[1] = 9;
    let raw = MmapRaw::from(map);
    // SAFETY: raw read of a byte of our own map.
    assert_eq!(unsafe { raw.as_ptr().add(1).read() }, 9);
    raw.flush(..).unwrap();
    let ro = MapOptions::new().map_raw_read_only(&file).unwrap();
    assert_eq!(perms_at(ro.as_ptr()), "r--s");
}

#[cfg(feature = "stable_deref_trait")]
#[test]
fn maps_are_stable_deref() {
    // memmap2: owning_ref (with the `stable_deref_trait` feature).
    fn address_of<T: stable_deref_trait::StableDeref<Target = [u8]>>(t: &T) -> *const u8 {
        t.as_ptr()
    }
    let mut map = MmapMut::map_anon(page()).unwrap();
    map[0] = 42;
    let addr = address_of(&map);
    let moved = Box::new(map); // moving the owner keeps the bytes where they are
    assert_eq!(address_of(&*moved), addr);
    let ro: Mmap = moved.make_read_only().unwrap();
    assert_eq!(address_of(&ro), addr);
    assert_eq!(ro[0], 42);
}

/// `FS_IOC_ENABLE_VERITY` on `file` (SHA-256, 4 KiB blocks): whether the file system took it.
fn enable_verity(file: &File) -> bool {
    #[repr(C)]
    struct EnableArg {
        version: u32,
        hash_algorithm: u32,
        block_size: u32,
        salt_size: u32,
        salt_ptr: u64,
        sig_size: u32,
        reserved1: u32,
        sig_ptr: u64,
        reserved2: [u64; 11],
    }
    const FS_IOC_ENABLE_VERITY: libc::c_ulong = 0x4080_6685;
    let arg = EnableArg {
        version: 1,
        hash_algorithm: 1,
        block_size: 4096,
        salt_size: 0,
        salt_ptr: 0,
        sig_size: 0,
        reserved1: 0,
        sig_ptr: 0,
        reserved2: [0; 11],
    };
    // SAFETY: `arg` is a valid `fsverity_enable_arg` with no salt or signature pointers.
    unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_ENABLE_VERITY as _, &arg) == 0 }
}

/// A loop-mounted ext4 image with the verity feature, unmounted on drop.
struct VerityMount {
    dir: tempfile::TempDir,
}

impl VerityMount {
    fn new() -> Result<VerityMount, String> {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| e.to_string())?;
        let image = dir.path().join("verity.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        File::create(&image).and_then(|f| f.set_len(32 << 20)).map_err(|e| e.to_string())?;
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out = std::process::Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd}: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        run("mkfs.ext4", &["-q".as_ref(), "-O".as_ref(), "verity".as_ref(), image.as_os_str()])?;
        run("mount", &["-o".as_ref(), "loop".as_ref(), image.as_os_str(), mnt.as_os_str()])?;
        Ok(VerityMount { dir })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for VerityMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[test]
fn a_file_with_fs_verity_maps_safely() {
    // memmap2: map_if_safe_verity. Needs a file system with verity: the build disk if it has
    // the feature, else (as root) a loop-mounted ext4 image made for the test.
    let try_dir = |dir: &std::path::Path| -> Option<File> {
        let path = dir.join("verity-test");
        std::fs::write(&path, b"Hello, verity!").ok()?;
        let file = File::open(&path).ok()?;
        enable_verity(&file).then_some(file)
    };
    let build = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).or_else(|_| tempfile::tempdir()).unwrap();
    let mut _mount = None;
    let file = match try_dir(build.path()) {
        Some(f) => f,
        None if !std::path::Path::new("/sys/fs/ext4/features/verity").exists() => {
            // A kernel fact no package can change: skipped even in CI.
            eprintln!("skipping the fs-verity test: the kernel has no fs-verity (CONFIG_FS_VERITY)");
            return;
        }
        None => {
            // SAFETY: getuid has no preconditions.
            let root = unsafe { libc::getuid() } == 0;
            let mount = if root { VerityMount::new() } else { Err("not root".into()) };
            match mount {
                Ok(m) => {
                    let f = try_dir(&m.path());
                    _mount = Some(m);
                    match f {
                        Some(f) => f,
                        None => return skip("the kernel has no fs-verity (CONFIG_FS_VERITY)"),
                    }
                }
                Err(e) => return skip(&format!("no file system with fs-verity here ({e})")),
            }
        }
    };
    let map = MapOptions::new().map_if_safe(&file).unwrap();
    assert_eq!(&map[..], b"Hello, verity!");
    let part = MapOptions::new().offset(7).len(6).map_if_safe(&file).unwrap();
    assert_eq!(&part[..], b"verity");
    drop((map, part, file));
}

/// Skips the fs-verity test, except under `CI=true` as root, where every prerequisite must be
/// there (unprivileged runs cannot mount an image and skip even in CI).
fn skip(why: &str) {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    assert!(std::env::var("CI").as_deref() != Ok("true") || !root, "fs-verity test cannot run: {why}");
    eprintln!("skipping the fs-verity test: {why}");
}
