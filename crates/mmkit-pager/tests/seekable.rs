//! zstd seekable files mapped lazily: only the frames touched are decompressed; the file is the
//! standard format (the `zstd` tool decompresses it, when installed).

mod support;

use std::sync::Arc;

use mmkit_pager::seekable::{self, PackOptions};
use mmkit_pager::{PagedRegion, SeekableSource};
use support::with_timeout;

/// Text-like data that compresses, not one repeated byte.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 64 < 40 {
                b"the quick brown fox jumps over the lazy dog "[i % 44]
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

#[test]
fn a_compressed_file_maps_lazily_decompressing_only_touched_frames() {
    with_timeout(120, || {
        let dir = tempfile::tempdir().unwrap();
        let (raw, packed) = (dir.path().join("img"), dir.path().join("img.zst"));
        let content = data(4 << 20);
        std::fs::write(&raw, &content).unwrap();
        let opts = PackOptions { frame_size: 256 * 1024, level: 3 };
        let info = seekable::pack(&raw, &packed, &opts).unwrap();
        assert_eq!(info.input_bytes, content.len() as u64);
        assert_eq!(info.frames, 16);
        assert!(info.output_bytes < info.input_bytes, "{info:?}");
        let source = Arc::new(SeekableSource::open(&packed).unwrap());
        assert_eq!(source.len(), content.len() as u64);
        let region = PagedRegion::builder(content.len()).handler_threads(2).build(source.clone()).unwrap();
        // Touch two pages in frame 3 and one in frame 10.
        let s = region.as_slice();
        for at in [3 * 256 * 1024 + 17, 3 * 256 * 1024 + 100_000, 10 * 256 * 1024 + 5] {
            assert_eq!(s[at], content[at], "byte {at:#x}");
        }
        assert_eq!(source.frames_decompressed(), 2);
        assert_eq!(source.bytes_decompressed(), 2 * 256 * 1024);
        assert_eq!(region.stats().data_pages, 3);
        // The whole region equals the original.
        assert!(region.as_slice() == &content[..]);
    });
}

#[test]
fn frames_that_do_not_align_with_pages_are_stitched() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let (raw, packed) = (dir.path().join("img"), dir.path().join("img.zst"));
        let content = data(300_001); // not a page multiple; 5000-byte frames straddle pages
        std::fs::write(&raw, &content).unwrap();
        seekable::pack(&raw, &packed, &PackOptions { frame_size: 5000, level: 1 }).unwrap();
        let source = SeekableSource::open(&packed).unwrap();
        let len = source.len() as usize;
        let region = PagedRegion::new(len, source).unwrap();
        assert!(region.as_slice() == &content[..]);
    });
}

/// A frame below 4 KiB costs more in headers and seek-table entries than it holds (1-byte
/// frames made a 4 MiB input 88 MiB): refused before the output is created, naming the value
/// and the range.
#[test]
fn frames_smaller_than_4_kib_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, packed) = (dir.path().join("img"), dir.path().join("img.zst"));
    std::fs::write(&raw, data(64 * 1024)).unwrap();
    for bad in [0, 1, 1000, seekable::MIN_FRAME_SIZE - 1, seekable::MAX_FRAME_SIZE + 1] {
        let e = seekable::pack(&raw, &packed, &PackOptions { frame_size: bad, level: 1 }).unwrap_err();
        let want = format!("frame size {bad} is not between 4096 and 1073741824 bytes");
        assert!(e.to_string().contains(&want), "{e}");
        assert!(!packed.exists());
    }
    let info = seekable::pack(&raw, &packed, &PackOptions { frame_size: seekable::MIN_FRAME_SIZE, level: 1 }).unwrap();
    assert_eq!(info.frames, 16);
}

#[test]
fn the_zstd_tool_reads_our_output() {
    if std::process::Command::new("zstd").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "scripts/test installs zstd under CI");
        eprintln!("zstd not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (raw, packed, back) = (dir.path().join("img"), dir.path().join("img.zst"), dir.path().join("back"));
    let content = data(1 << 20);
    std::fs::write(&raw, &content).unwrap();
    seekable::pack(&raw, &packed, &PackOptions::default()).unwrap();
    let st = std::process::Command::new("zstd").arg("-dqf").arg(&packed).arg("-o").arg(&back).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&back).unwrap(), content);
}

#[test]
fn a_corrupt_or_foreign_file_is_an_error() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, data(10_000)).unwrap();
        let err = SeekableSource::open(&plain).unwrap_err();
        assert!(err.to_string().contains("seek table"), "{err}");
        // A corrupt frame: the page fails, the checked read says so, nothing else breaks.
        let (raw, packed) = (dir.path().join("img"), dir.path().join("img.zst"));
        let content = data(1 << 20);
        std::fs::write(&raw, &content).unwrap();
        seekable::pack(&raw, &packed, &PackOptions::default()).unwrap();
        let mut bytes = std::fs::read(&packed).unwrap();
        let source = SeekableSource::open(&packed).unwrap();
        let f2 = source.seek_table().frame_start_comp(2).unwrap() as usize;
        for b in &mut bytes[f2 + 20..f2 + 60] {
            *b ^= 0xFF;
        }
        std::fs::write(&packed, &bytes).unwrap();
        let source = SeekableSource::open(&packed).unwrap();
        let region = PagedRegion::new(source.len() as usize, source).unwrap();
        let mut b = [0u8; 8];
        region.read(0, &mut b).unwrap();
        assert_eq!(&b, &content[..8]);
        let err = region.read(2 * 64 * 1024 + 10, &mut b).unwrap_err();
        assert!(err.to_string().contains("zstd frame 2"), "{err}");
    });
}

/// Issue 10 item 8: every path the pager opens must be a regular file. Before `mmkit::open`, a
/// FIFO's `open(2)` blocked forever (as the input or the output of `pack`, a seekable file or
/// a snapshot) and a directory or `/dev/zero` read as a snapshot.
#[test]
fn fifos_sockets_directories_and_devices_are_refused_without_blocking() {
    with_timeout(60, || {
        use mmkit_pager::{snapshot, FileSource};
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, data(10_000)).unwrap();
        let page = mmkit::page_size();
        let mem = vec![1u8; page];
        let opts = PackOptions::default();
        for (p, what) in [
            (fifo, "a FIFO"),
            (sock, "a socket"),
            (dir.path().to_owned(), "a directory"),
            ("/dev/zero".into(), "a character device"),
        ] {
            let errors = [
                SeekableSource::open(&p).map(drop),
                snapshot::info(&p).map(drop),
                snapshot::SnapshotSource::open(&p).map(drop),
                snapshot::restore_eager(&p).map(drop),
                seekable::pack(&p, dir.path().join("out"), &opts).map(drop),
                FileSource::open(&p).map(drop).map_err(|e| mmkit::Error::new(e.to_string(), mmkit::ErrorKind::Os)),
            ];
            let mut errors: Vec<String> = errors.into_iter().map(|e| e.unwrap_err().to_string()).collect();
            if what != "a character device" {
                // Writes too (never into /dev/zero, even to test).
                errors.push(seekable::pack(&raw, &p, &opts).unwrap_err().to_string());
                errors.push(snapshot::write(&mem, &p).unwrap_err().to_string());
            }
            for e in errors {
                assert!(
                    e.contains(&format!("{}", p.display())) && e.contains(&format!("not a regular file: {what}")),
                    "{e}"
                );
            }
        }
    });
}

#[test]
fn packing_a_file_onto_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::write(&raw, data(10_000)).unwrap();
    let err = seekable::pack(&raw, &raw, &PackOptions::default()).unwrap_err();
    assert!(err.to_string().contains("the output is the input file"), "{err}");
    assert_eq!(std::fs::read(&raw).unwrap(), data(10_000));
}

/// A /proc or /sys file's size is not its content (size 0, or /proc/kcore's terabytes): refused,
/// not packed empty or endlessly.
#[test]
fn proc_and_sys_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for p in ["/proc/self/status", "/proc/self/maps", "/sys/kernel/mm/transparent_hugepage/enabled"] {
        if std::fs::metadata(p).is_err() {
            continue;
        }
        let err = seekable::pack(p, dir.path().join("out"), &PackOptions::default()).unwrap_err();
        assert!(err.to_string().contains("its size is not its content"), "{err}");
    }
}

/// Regression: a seek table's footer claiming 2^27 frames in a 17-byte file made zeekstd
/// reserve 2 GiB for the entries before reading one: with the address space limited (here 1 GiB,
/// in a child process) `open` aborted the process ("memory allocation of 2147483664 bytes
/// failed"). The count is checked against the file's size first: an error naming both.
#[test]
fn a_seek_table_claiming_more_frames_than_the_file_holds_is_refused_before_it_is_read() {
    const NAME: &str = "a_seek_table_claiming_more_frames_than_the_file_holds_is_refused_before_it_is_read";
    if support::child_role().as_deref() == Some("bounded") {
        let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
        let dir = tempfile::tempdir().unwrap();
        for (frames, descriptor) in [(1u32 << 27, 0x80u8), (1 << 27, 0), (1000, 0)] {
            let path = dir.path().join("claims.zst");
            let mut file = 0x184D_2A5Eu32.to_le_bytes().to_vec(); // a skippable frame
            file.extend(9u32.to_le_bytes()); // holding only the footer
            file.extend(frames.to_le_bytes());
            file.push(descriptor);
            file.extend(0x8F92_EAB1u32.to_le_bytes());
            std::fs::write(&path, &file).unwrap();
            let err = SeekableSource::open(&path).map(drop).unwrap_err();
            let want = format!("its footer claims {frames} frames");
            assert!(err.to_string().contains(&want) && err.to_string().contains("holds 17 bytes"), "{err}");
        }
        println!("BOUNDED OK");
        return;
    }
    if support::child_role().is_some() {
        return;
    }
    let (status, out) = support::run_child(&[], NAME, "bounded", 60);
    assert!(status.success() && out.contains("BOUNDED OK"), "{status:?}\n{out}");
}

/// A seek table may claim frames of up to 4 GiB, past the format's 1 GiB limit, and zstd's RLE
/// blocks make such a frame a few kilobytes: a decompression bomb (eight cached frames would
/// hold 32 GiB). A frame larger than the format allows is refused before it is decompressed.
#[test]
fn a_frame_larger_than_the_format_allows_is_refused_not_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.zst");
    let dsize: u32 = seekable::MAX_FRAME_SIZE + 4096;
    // One zstd frame: single segment, 4-byte content size, then RLE blocks of zeros.
    let mut file = vec![0x28, 0xB5, 0x2F, 0xFD, 0xA0];
    file.extend_from_slice(&dsize.to_le_bytes());
    let mut left = dsize;
    while left > 0 {
        let n = left.min(128 * 1024);
        left -= n;
        let header = u32::from(left == 0) | 1 << 1 | n << 3;
        file.extend_from_slice(&header.to_le_bytes()[..3]);
        file.push(0);
    }
    // The seek table (a skippable frame): one entry, no checksums, then the footer.
    let mut table = Vec::new();
    table.extend_from_slice(&(file.len() as u32).to_le_bytes());
    table.extend_from_slice(&dsize.to_le_bytes());
    table.extend_from_slice(&1u32.to_le_bytes());
    table.push(0);
    table.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    file.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    file.extend_from_slice(&(table.len() as u32).to_le_bytes());
    file.extend_from_slice(&table);
    std::fs::write(&path, &file).unwrap();

    let source = SeekableSource::open(&path).unwrap();
    assert_eq!(source.len(), u64::from(dsize));
    let mut page = vec![0u8; mmkit::page_size()];
    let e = mmkit_pager::PageSource::fill(&source, 0, &mut page).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    assert_eq!(source.bytes_decompressed(), 0);
}

/// A seekable file of `frames` zstd frames of `dsize` zeros each, made of RLE blocks (a few
/// bytes per 128 KiB), with its seek table (no checksums).
fn rle_frame_file(path: &std::path::Path, dsize: u32, frames: u32) {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0xA0];
    frame.extend_from_slice(&dsize.to_le_bytes());
    let mut left = dsize;
    while left > 0 {
        let n = left.min(128 * 1024);
        left -= n;
        let header = u32::from(left == 0) | 1 << 1 | n << 3;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    let mut file = frame.repeat(frames as usize);
    let mut table = Vec::new();
    for _ in 0..frames {
        table.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        table.extend_from_slice(&dsize.to_le_bytes());
    }
    table.extend_from_slice(&frames.to_le_bytes());
    table.push(0);
    table.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    file.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    file.extend_from_slice(&(table.len() as u32).to_le_bytes());
    file.extend_from_slice(&table);
    std::fs::write(path, &file).unwrap();
}

/// Regression: a valid frame holds up to 1 GiB, which a 32 KiB file describes with RLE blocks,
/// and its buffer was allocated with `vec!`: where the memory is not there (here the address
/// space is limited in a child process) the checked `read` aborted the process ("memory
/// allocation of 1073741824 bytes failed") instead of returning the page's error. The frame's
/// buffers are reserved fallibly now (and the frame is no longer copied into a second one for
/// the cache).
#[test]
fn a_frame_without_memory_for_it_is_the_pages_error_not_an_abort() {
    const NAME: &str = "a_frame_without_memory_for_it_is_the_pages_error_not_an_abort";
    if support::child_role().as_deref() == Some("no-memory") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big-frame.zst");
        rle_frame_file(&path, seekable::MAX_FRAME_SIZE, 1);
        let source = SeekableSource::open(&path).unwrap();
        assert_eq!(source.len(), u64::from(seekable::MAX_FRAME_SIZE));
        let region = PagedRegion::new(16 * mmkit::page_size(), source).unwrap();
        // Room for the test's own needs, not for the frame.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        let limit = vm_kib * 1024 + (256 << 20);
        let limit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
        let err = region.read(0, &mut [0u8; 8]).unwrap_err();
        let want = format!("no memory for its {} decompressed bytes", seekable::MAX_FRAME_SIZE);
        assert!(err.to_string().contains(&want) && err.to_string().contains("big-frame.zst"), "{err}");
        println!("NO MEMORY OK: {err}");
        return;
    }
    if support::child_role().is_some() {
        return;
    }
    let (status, out) = support::run_child(&[], NAME, "no-memory", 60);
    assert!(status.success() && out.contains("NO MEMORY OK"), "{status:?}\n{out}");
}

/// Regression: the frame cache was bounded by count only (8 frames), and a valid file may have
/// frames of 1 GiB that a few kilobytes of RLE blocks describe: touching a page in each of 8 of
/// them kept 8 GiB of decompressed frames for as long as the source lived. The cache holds at
/// most 64 MiB now (or its newest frame alone): here eight 16 MiB frames, so the first has left
/// the cache when it is touched again.
#[test]
fn the_frame_cache_is_bounded_by_bytes_not_only_frames() {
    with_timeout(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.zst");
        let frame = 16u32 << 20;
        rle_frame_file(&path, frame, 8);
        let source = Arc::new(SeekableSource::open(&path).unwrap());
        let region = PagedRegion::new(source.len() as usize, source.clone()).unwrap();
        let mut b = [1u8; 4];
        for i in 0..8 {
            region.read(i * frame as usize, &mut b).unwrap();
            assert_eq!(b, [0; 4]);
        }
        assert_eq!(source.frames_decompressed(), 8);
        // The newest frames are cached (64 MiB of them), the first is not any more.
        region.read(7 * frame as usize + mmkit::page_size(), &mut b).unwrap();
        assert_eq!(source.frames_decompressed(), 8);
        region.read(mmkit::page_size(), &mut b).unwrap();
        assert_eq!(source.frames_decompressed(), 9, "the first 16 MiB frame was still cached");
    });
}

/// The seek table's compressed sizes are untrusted too: a frame of a few bytes whose entry
/// claims almost 4 GiB was allocated at that size before the read found the file shorter
/// (`UnexpectedEof`). A frame that ends past the end of the file is refused before any of it
/// is read: since the table is checked against the file's length, at open (it opened, and
/// `mmkit pager info` reported "4.0 GiB compressed" for a 98 KiB file).
#[test]
fn a_frame_claiming_more_compressed_bytes_than_the_file_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.zst");
    let dsize: u32 = 4096;
    // One zstd frame: single segment, 4-byte content size, one last RLE block of zeros.
    let mut file = vec![0x28, 0xB5, 0x2F, 0xFD, 0xA0];
    file.extend_from_slice(&dsize.to_le_bytes());
    file.extend_from_slice(&(1 | 1 << 1 | dsize << 3).to_le_bytes()[..3]);
    file.push(0);
    // The seek table: one entry whose compressed size is a lie, no checksums, the footer.
    let mut table = Vec::new();
    table.extend_from_slice(&0xFFFF_0000u32.to_le_bytes());
    table.extend_from_slice(&dsize.to_le_bytes());
    table.extend_from_slice(&1u32.to_le_bytes());
    table.push(0);
    table.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    file.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    file.extend_from_slice(&(table.len() as u32).to_le_bytes());
    file.extend_from_slice(&table);
    std::fs::write(&path, &file).unwrap();

    let err = SeekableSource::open(&path).unwrap_err();
    assert!(err.to_string().contains("corrupt seek table"), "{err}");
    assert!(err.to_string().contains(&format!("claim {} compressed bytes", 0xFFFF_0000u32)), "{err}");
    assert!(err.to_string().contains(&format!("the file holds {} bytes", file.len())), "{err}");
}

/// A full filesystem under the output: the error is the output's, with its errno (ENOSPC), not
/// the input's ("compression of INPUT") or a bare message of the encoder, with the range of the
/// write refused. Mounts a small tmpfs, so root only, in a child process in a mount namespace
/// of its own (`unshare -m`): the mount never shows outside the test.
#[test]
fn a_full_output_is_named_with_its_errno() {
    const NAME: &str = "a_full_output_is_named_with_its_errno";
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    match support::child_role().as_deref() {
        Some("private-mounts") => {}
        Some(_) => return,
        None => {
            if std::process::Command::new("unshare").arg("--version").output().is_err() {
                eprintln!("skipped: no unshare(1) to mount the tmpfs in a namespace of its own");
                return;
            }
            let (status, out) =
                support::run_child(&["unshare", "-m", "--propagation", "private"], NAME, "private-mounts", 60);
            assert!(status.success() && out.contains("FULL OUTPUT OK"), "{status:?}\n{out}");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let mut x: u64 = 1;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&input, noise).unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mount -t tmpfs failed");
        return;
    }
    let output = small.join("out.zst");
    let err = seekable::pack(&input, &output, &PackOptions::default()).unwrap_err();
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert_eq!(err.errno(), Some(libc::ENOSPC), "{err}");
    assert_eq!(err.path(), Some(output.as_path()), "{err}");
    // And where: the offset and length of the write refused (none was said).
    assert!(err.range().is_some_and(|(at, len)| at <= 256 << 10 && len > 0), "{err}");
    println!("FULL OUTPUT OK");
}

/// `pack_with_progress` reports every MiB and the end, with the input's size, increasing; an
/// empty input reports its end once.
#[test]
fn pack_reports_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out.zst"));
    let len = (5 << 20) + 12345;
    std::fs::write(&input, data(len)).unwrap();
    let mut calls = Vec::new();
    let info = seekable::pack_with_progress(&input, &output, &PackOptions::default(), &mut |read, total| {
        calls.push((read, total))
    })
    .unwrap();
    assert_eq!(info.input_bytes, len as u64);
    assert!(calls.len() >= 5 && calls.len() <= 7, "{calls:?}");
    assert!(calls.iter().all(|&(_, total)| total == len as u64), "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");
    assert_eq!(calls.last(), Some(&(len as u64, len as u64)));

    std::fs::write(&input, b"").unwrap();
    let mut calls = Vec::new();
    seekable::pack_with_progress(&input, &output, &PackOptions::default(), &mut |read, total| {
        calls.push((read, total))
    })
    .unwrap();
    assert_eq!(calls, [(0, 0)]);
}

/// Regression: zstd failing to allocate its compression state (a high level under a low
/// `RLIMIT_DATA`, in a child process) was reported as the input's I/O error: `compression of
/// INPUT failed: Input/output error (EIO): Allocation error : not enough memory`. It is
/// `ENOMEM`, said to be zstd's, and the half-written output is removed.
#[test]
fn zstd_without_memory_for_its_state_is_enomem_not_an_io_error() {
    const NAME: &str = "zstd_without_memory_for_its_state_is_enomem_not_an_io_error";
    if support::child_role().as_deref() == Some("bounded") {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("input"), dir.path().join("out.zst"));
        std::fs::write(&input, data(4 << 20)).unwrap();
        // What the process holds now, and 16 MiB more: zstd's level-19 state for 1 MiB frames
        // needs several times that.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: libc::rlim_t = status
            .lines()
            .find_map(|l| l.strip_prefix("VmData:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the valid struct given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut old) }, 0);
        let limit = libc::rlimit { rlim_cur: (kib << 10) + (16 << 20), rlim_max: old.rlim_max };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) }, 0);
        let opts = PackOptions { frame_size: 1 << 20, level: 19 };
        let packed = seekable::pack(&input, &output, &opts);
        // The limit back before any assertion: a failing one's backtrace needs memory.
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_DATA, &old) }, 0);
        let err = packed.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.errno(), Some(libc::ENOMEM), "{text}");
        assert!(text.contains("zstd: Allocation error") && !text.contains("EIO"), "{text}");
        assert!(!output.exists(), "the failed pack left {}", output.display());
        println!("BOUNDED OK");
        return;
    }
    if support::child_role().is_some() {
        return;
    }
    let (status, out) = support::run_child(&[], NAME, "bounded", 60);
    assert!(status.success() && out.contains("BOUNDED OK"), "{status:?}\n{out}");
}

/// A seekable file as the reference library (`ZSTD_seekable_initCStream` with `checksumFlag`)
/// writes it: frames **without** zstd's content checksum, and a seek table whose entries carry
/// each frame's checksum (the low 32 bits of the XXH64 of its bytes: taken here from a frame
/// compressed with zstd's content checksum). Returns the file and where each frame starts.
fn reference_checksummed_file(content: &[u8], frame: usize) -> (Vec<u8>, Vec<usize>) {
    let (mut file, mut table, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in content.chunks(frame) {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).unwrap();
        let with_sum = c.compress(chunk).unwrap();
        let sum = &with_sum[with_sum.len() - 4..];
        let f = zstd::bulk::compress(chunk, 3).unwrap();
        starts.push(file.len());
        file.extend_from_slice(&f);
        table.extend_from_slice(&(f.len() as u32).to_le_bytes());
        table.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        table.extend_from_slice(sum);
    }
    table.extend_from_slice(&(starts.len() as u32).to_le_bytes());
    table.push(0x80); // descriptor: checksums
    table.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    file.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    file.extend_from_slice(&(table.len() as u32).to_le_bytes());
    file.extend_from_slice(&table);
    (file, starts)
}

/// Regression: the seek table's per-frame checksums were never checked (zeekstd reads past
/// them), and the reference library's files carry no other: a frame with a flipped byte that
/// still decoded (a raw block) was mapped as data. Now a frame whose bytes do not match its
/// checksum is the page's error.
#[test]
fn a_frame_that_does_not_match_the_seek_tables_checksum_is_an_error_not_data() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reference.zst");
        // Random bytes: zstd stores them as raw blocks, where a flipped byte decodes fine.
        let mut x: u64 = 7;
        let content: Vec<u8> = (0..256 * 1024)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect();
        let (mut bytes, starts) = reference_checksummed_file(&content, 64 * 1024);
        std::fs::write(&path, &bytes).unwrap();
        let read_all = |path: &std::path::Path| {
            let source = SeekableSource::open(path).unwrap();
            let region = PagedRegion::new(content.len(), source).unwrap();
            let mut all = vec![0u8; content.len()];
            // `Ok(whether it equals the content)`: a failure message shows no 256 KiB vector.
            let whole = region.read(0, &mut all).map(|()| all == content);
            let mut first = vec![0u8; 64 * 1024];
            region.read(0, &mut first).unwrap();
            assert!(first == content[..64 * 1024], "frame 0 is intact");
            whole
        };
        // Intact: every checksum matches.
        assert!(read_all(&path).unwrap());
        // A flipped byte in frame 1.
        bytes[starts[1] + 1000] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_all(&path).unwrap_err();
        assert!(e.to_string().contains("zstd frame 1") && e.to_string().contains("checksum"), "{e}");
        // A checksum of the table that lies about an intact frame (frame 2's entry).
        bytes[starts[1] + 1000] ^= 0x40;
        let entry2 = bytes.len() - 9 - 2 * 12;
        bytes[entry2 + 8] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_all(&path).unwrap_err();
        assert!(e.to_string().contains("zstd frame 2") && e.to_string().contains("checksum"), "{e}");
    });
}

/// Regression: handler threads faulting on pages of one frame at once each decompressed it
/// (eight 32 MiB decompressions and copies for eight threads: with 1 GiB frames, a gigabyte per
/// handler thread). A thread finding the frame being decompressed waits for it.
#[test]
fn threads_faulting_on_one_frame_at_once_decompress_it_once() {
    with_timeout(120, || {
        let dir = tempfile::tempdir().unwrap();
        let (raw, packed) = (dir.path().join("img"), dir.path().join("img.zst"));
        // One large frame (its decompression long enough for all eight to fault on it), but
        // 4 MiB where memory is short (the test VM has 256 MiB: eight 32 MiB copies, the file,
        // the packed file and the region's pages would not fit, and one copy barely does).
        let avail_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let frame = if avail_kib > 2 << 20 { 32 << 20 } else { 4 << 20 };
        let content = data(frame);
        std::fs::write(&raw, &content).unwrap();
        seekable::pack(&raw, &packed, &PackOptions { frame_size: frame as u32, level: 1 }).unwrap();
        let source = Arc::new(SeekableSource::open(&packed).unwrap());
        let region = PagedRegion::builder(content.len()).handler_threads(8).build(source.clone()).unwrap();
        let page = mmkit::page_size();
        let start = Arc::new(std::sync::Barrier::new(8));
        std::thread::scope(|s| {
            for t in 0..8 {
                let (region, start, content) = (&region, start.clone(), &content);
                s.spawn(move || {
                    start.wait();
                    // A page of each eighth of the frame, whatever the page size.
                    let at = t * (content.len() / 8 / page) * page + t;
                    assert_eq!(region.as_slice()[at], content[at]);
                });
            }
        });
        assert_eq!(source.frames_decompressed(), 1);
    });
}
