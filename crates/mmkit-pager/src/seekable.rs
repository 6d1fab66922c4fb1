//! Compressed files mapped lazily: the [zstd seekable format] (independent zstd frames plus a
//! seek table in a skippable frame, readable by any `zstd -d`), through the `zeekstd` crate.
//!
//! [`pack`] compresses a file into the format; [`SeekableSource`] is a [`PageSource`] that
//! decompresses only the frames holding the pages touched, so a [`PagedRegion`](crate::PagedRegion) over it maps a
//! compressed image lazily.
//!
//! [zstd seekable format]: https://github.com/facebook/zstd/blob/dev/contrib/seekable_format/zstd_seekable_compression_format.md
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (raw, packed) = (dir.path().join("image.bin"), dir.path().join("image.zst"));
//! std::fs::write(&raw, vec![7u8; 1 << 20])?;
//! mmkit_pager::seekable::pack(&raw, &packed, &Default::default())?;
//! let source = std::sync::Arc::new(mmkit_pager::SeekableSource::open(&packed)?);
//! // A `u64` length: on a 32-bit target an image past 4 GiB does not fit (`as` would truncate).
//! let len = usize::try_from(source.len()).map_err(|_| "image.zst is larger than the address space")?;
//! let region = mmkit_pager::PagedRegion::new(len, source.clone())?;
//! assert_eq!(region.as_slice()[123_456], 7);
//! assert_eq!(source.frames_decompressed(), 1); // one frame of the file's 16
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mmkit::{Error, ErrorKind, Result};
use zeekstd::{EncodeOptions, FrameSizePolicy, SeekTable};

use crate::source::{Filled, PageSource};

/// The largest frame the format allows (1 GiB of uncompressed bytes).
pub const MAX_FRAME_SIZE: u32 = zeekstd::SEEKABLE_MAX_FRAME_SIZE as u32;

/// The smallest frame [`pack`] writes: 4 KiB of uncompressed bytes.
///
/// Every frame costs a zstd frame header and checksum plus a seek-table entry (about 20 bytes),
/// so tiny frames make the output larger than the input (1-byte frames turned 4 MiB into
/// 88 MiB). The bound is a constant, not the page size of the machine packing: a seekable file
/// is read on others (4, 16 or 64 KiB pages), and whether `pack` accepts a size must not depend
/// on where it runs. Frames need not align with pages (a fault decompresses every frame its
/// page overlaps), and [`SeekableSource`] reads files with smaller frames written by other tools.
///
/// ```
/// use mmkit_pager::seekable::{pack, PackOptions, MIN_FRAME_SIZE};
/// # let dir = tempfile::tempdir().unwrap();
/// # let (raw, out) = (dir.path().join("raw"), dir.path().join("raw.zst"));
/// # std::fs::write(&raw, [1u8; 100]).unwrap();
/// let e = pack(&raw, &out, &PackOptions { frame_size: MIN_FRAME_SIZE - 1, ..Default::default() }).unwrap_err();
/// assert!(e.to_string().contains("frame size 4095 is not between 4096 and 1073741824"), "{e}");
/// assert!(pack(&raw, &out, &PackOptions { frame_size: MIN_FRAME_SIZE, ..Default::default() }).is_ok());
/// ```
pub const MIN_FRAME_SIZE: u32 = 4 * 1024;

/// How [`pack`] compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// Uncompressed bytes per frame: the unit a fault decompresses (default 64 KiB), from
    /// [`MIN_FRAME_SIZE`] (4 KiB) to [`MAX_FRAME_SIZE`] (1 GiB). Smaller frames waste less work
    /// per random access, larger ones compress better.
    pub frame_size: u32,
    /// zstd compression level (default 3). Any value is taken: zstd clamps one outside its
    /// range (above 22 packs as 22), 0 is its default (3), negative levels are its fast modes.
    /// `mmkit pager pack --level` accepts 1 to 22.
    pub level: i32,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions { frame_size: 64 * 1024, level: 3 }
    }
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// Bytes read from the input.
    pub input_bytes: u64,
    /// Bytes of the seekable output (frames and seek table).
    pub output_bytes: u64,
    /// Frames written.
    pub frames: u32,
}

fn zerr(op: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    let msg = e.to_string();
    if is_zstd_out_of_memory(&msg) {
        return no_memory_for_zstd(op, path, &msg);
    }
    Error::new(op, ErrorKind::InvalidArgument).with_path(path).with_detail(msg)
}

/// Whether a zstd error's message (zeekstd keeps only `ZSTD_getErrorName`'s text, not the code)
/// is zstd's failed allocation (`ZSTD_error_memory_allocation`).
fn is_zstd_out_of_memory(msg: &str) -> bool {
    use zstd::zstd_safe::{get_error_name, zstd_sys::ZSTD_ErrorCode};
    let code = 0usize.wrapping_sub(ZSTD_ErrorCode::ZSTD_error_memory_allocation as usize);
    msg == get_error_name(code)
}

/// zstd could not allocate its compression state or buffers (a low `RLIMIT_DATA` or
/// `RLIMIT_AS`, a high level): `ENOMEM`, not an I/O error of the input.
fn no_memory_for_zstd(op: &'static str, path: &Path, msg: &str) -> Error {
    Error::from_raw_errno(op, libc::ENOMEM).with_path(path).with_detail(format!(
        "zstd: {msg} (its state grows with the compression level and the frame size; `ulimit -d`/`-v` bound it)"
    ))
}

/// An error of `io::copy` into the encoder that is no failed write of the output: the input's
/// read (with its errno), or the compressor's own (no errno: zeekstd's `io::Error::other`).
fn copy_err(op: &'static str, input: &Path, e: io::Error) -> Error {
    if e.raw_os_error().is_none() && is_zstd_out_of_memory(&e.to_string()) {
        return no_memory_for_zstd(op, input, &e.to_string());
    }
    ioerr(op, input, e)
}

/// A failed write of the output: its errno, and the offset and length it was writing.
type WriteFailure = std::rc::Rc<std::cell::Cell<Option<(i32, u64, u64)>>>;

/// The output file, remembering the errno and range of a failed write (the encoder's own
/// error type keeps only the message).
struct Recorded {
    inner: File,
    /// Bytes written so far: the offset of the next write.
    written: u64,
    failed: WriteFailure,
}

impl io::Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed.set(Some((e.raw_os_error().unwrap_or(libc::EIO), self.written, buf.len() as u64)));
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|e| self.failed.set(Some((e.raw_os_error().unwrap_or(libc::EIO), self.written, 0))))
    }
}

fn ioerr(op: &'static str, path: &Path, e: io::Error) -> Error {
    Error::from_raw_errno(op, e.raw_os_error().unwrap_or(libc::EIO)).with_path(path).with_detail(e.to_string())
}

/// A reader that reports how much was read (see [`pack_with_progress`]).
struct Counted<'p, R> {
    inner: R,
    read: u64,
    /// `read` when `progress` was last called; `u64::MAX` once the end was told.
    told: u64,
    total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        // Every MiB, and once at the end of the input (`told` past any count: told).
        if (n > 0 && self.read - self.told >= 1 << 20) || (n == 0 && self.told != u64::MAX) {
            self.told = if n == 0 { u64::MAX } else { self.read };
            (self.progress)(self.read, self.total);
        }
        Ok(n)
    }
}

/// Compresses `input` into the zstd seekable format at `output`.
///
/// Both must be regular files (`output` is created or emptied): a FIFO, socket, directory or
/// device is refused without blocking ([`mmkit::open`]), as are `/proc` and `/sys` files (their
/// size is not their content), an input whose size changes while it is read, and `output`
/// naming the input itself. When packing fails once `output` is created (a full disk, the
/// input changing), `output` is removed: no half-written file is left behind.
pub fn pack(input: impl AsRef<Path>, output: impl AsRef<Path>, opts: &PackOptions) -> Result<PackInfo> {
    pack_with_progress(input, output, opts, &mut |_, _| {})
}

/// [`pack`], telling `progress(read, total)` how far it is: the input bytes read (and handed
/// to the compressor) so far and the input's size. Called after every MiB read and once at the
/// end (`read == total`), on the calling thread; a progress bar's update is what it is for.
///
/// ```
/// use mmkit_pager::seekable::{pack_with_progress, PackOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// # std::env::set_current_dir(dir.path()).unwrap();
/// # std::fs::write("disk.img", vec![1u8; (5 << 20) / 2]).unwrap(); // 2.5 MiB
/// # let mut calls = Vec::new();
///
/// let info = pack_with_progress("disk.img", "disk.img.zst", &PackOptions::default(), &mut |read, total| {
///     eprint!("\r{} / {} MiB", read >> 20, total >> 20);
/// #   calls.push((read, total));
/// })?;
/// eprintln!("\n{} frames", info.frames);
/// # assert_eq!(info.frames, 40); // 2.5 MiB in 64 KiB frames
/// # let total = (5 << 20) / 2;
/// # assert_eq!(calls, [(1 << 20, total), (2 << 20, total), (total, total)]);
/// # Ok::<(), mmkit::Error>(())
/// ```
pub fn pack_with_progress(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    opts: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackInfo> {
    let (input, output) = (input.as_ref(), output.as_ref());
    if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&opts.frame_size) {
        return Err(Error::new("pack", ErrorKind::InvalidArgument).with_path(input).with_detail(format!(
            "frame size {} is not between {MIN_FRAME_SIZE} and {MAX_FRAME_SIZE} bytes (4 KiB to 1 GiB)",
            opts.frame_size
        )));
    }
    let (src, meta) = mmkit::open::open_regular_with_metadata(input)?;
    if std::fs::metadata(output).is_ok_and(|out| (out.dev(), out.ino()) == (meta.dev(), meta.ino())) {
        return Err(Error::new("pack", ErrorKind::InvalidArgument)
            .with_path(output)
            .with_detail("the output is the input file"));
    }
    // A /proc or /sys file's size is not its content (/proc/kcore claims terabytes).
    crate::source::refuse_proc_and_sys(&src, input, "pack")?;
    let dst = mmkit::open::create_regular(output)?;
    let packed = pack_into(&src, &meta, input, dst, output, opts, progress);
    if packed.is_err() {
        // A half-written output is no seekable file: removed, as `zstd` removes its own.
        let _ = std::fs::remove_file(output);
    }
    packed
}

/// The part of [`pack_with_progress`] after `dst`, the created `output`, is open.
fn pack_into(
    src: &File,
    meta: &std::fs::Metadata,
    input: &Path,
    dst: File,
    output: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackInfo> {
    if crate::source::on_proc_or_sys(&dst, output)? {
        return Err(Error::new("pack", ErrorKind::InvalidArgument)
            .with_path(output)
            .with_detail("the output is a /proc or /sys file"));
    }
    let failed: WriteFailure = std::rc::Rc::new(std::cell::Cell::new(None));
    let mut enc = EncodeOptions::new()
        .frame_size_policy(FrameSizePolicy::Uncompressed(opts.frame_size))
        .compression_level(opts.level)
        // A content checksum per frame: a corrupt frame is an error, never garbage as data.
        .checksum_flag(true)
        .into_encoder(io::BufWriter::new(Recorded { inner: dst, written: 0, failed: failed.clone() }))
        .map_err(|e| zerr("zstd seekable encoder", output, e))?;
    // An error writing the output is the output's (with its errno), not the input's or zstd's.
    let out_err = |op: &'static str, e: &dyn std::fmt::Display| match failed.get() {
        Some((errno, at, len)) => Error::from_raw_errno("write", errno).with_path(output).with_range(at, len),
        None => zerr(op, output, e),
    };
    // Exactly the bytes the file's size promises: a file whose size is not its content (a /proc
    // or /sys file) or that changes meanwhile is refused, never packed in part or endlessly.
    let mut counted = Counted { inner: src.take(meta.len()), read: 0, told: 0, total: meta.len(), progress };
    let input_bytes = io::copy(&mut counted, &mut enc).map_err(|e| match failed.get() {
        Some(_) => out_err("compression", &e),
        None => copy_err("compression", input, e),
    })?;
    let mut probe = [0u8; 1];
    let more = (&*src).read(&mut probe).map_err(|e| ioerr("read", input, e))?;
    if input_bytes != meta.len() || more != 0 {
        return Err(Error::new("pack", ErrorKind::InvalidArgument).with_path(input).with_detail(format!(
            "the input's size is {} bytes but {} could be read: it changed while it was packed, or its size \
             is not its content (a /proc or /sys file)",
            meta.len(),
            if more != 0 { format!("more than {input_bytes}") } else { input_bytes.to_string() },
        )));
    }
    let frames = enc.seek_table().num_frames();
    let output_bytes = enc.finish().map_err(|e| out_err("zstd seekable finish", &e))?;
    // `finish` counts the last frame and the seek table; the frame count is final then.
    let frames = SeekableSource::open(output).map(|s| s.frames()).unwrap_or(frames);
    Ok(PackInfo { input_bytes, output_bytes, frames })
}

/// A zstd seekable file as a [`PageSource`]: a page's fill decompresses the frame(s) holding it
/// (a small cache keeps the last frames, so neighbouring pages cost no second decompression:
/// at most 8 frames and 64 MiB, or the last frame alone when it is larger).
///
/// A frame is checked before its bytes are used: its size against the seek table, zstd's
/// content checksum when the frame has one ([`pack`] writes them), and the seek table's own
/// checksum of the frame when the table has them (the reference library's files). A frame that
/// fails a check is the page's error ([`io::ErrorKind::InvalidData`]).
#[derive(Debug)]
pub struct SeekableSource {
    file: File,
    path: PathBuf,
    table: SeekTable,
    /// The file's length when it was opened: no frame's compressed bytes lie past it.
    file_len: u64,
    /// The seek table's checksum of each frame (the low 32 bits of the XXH64 of its decompressed
    /// bytes), when the table carries them (descriptor bit 7). zeekstd reads past them.
    checksums: Option<Vec<u32>>,
    cache: Mutex<VecDeque<(u32, Arc<Vec<u8>>)>>,
    /// Frames a thread is decompressing now, and their waiters' wake-up.
    in_flight: Mutex<Vec<u32>>,
    done: std::sync::Condvar,
    frames_decompressed: AtomicU64,
    bytes_decompressed: AtomicU64,
}

const CACHED_FRAMES: usize = 8;
/// The bytes the cache holds at most, beyond its newest frame: a valid file may have frames of
/// 1 GiB, which a few kilobytes of RLE blocks describe (eight of them held 8 GiB).
const CACHED_BYTES: usize = 64 << 20;

impl SeekableSource {
    /// Opens a seekable file and reads its seek table.
    pub fn open(path: impl AsRef<Path>) -> Result<SeekableSource> {
        let path = path.as_ref();
        let mut file = mmkit::open::open_regular(path)?;
        crate::source::refuse_proc_and_sys(&file, path, "open of a zstd seekable file")?;
        let file_len = file.metadata().map_err(|e| ioerr("fstat", path, e))?.len();
        // A skippable frame's header and the seek table's footer, with no entry: shorter, the
        // table's read would seek before the start (`Invalid argument (os error 22)`).
        let least = 8 + zeekstd::SEEK_TABLE_INTEGRITY_SIZE as u64;
        if file_len < least {
            return Err(zerr(
                "read of the zstd seek table",
                path,
                format!("not a zstd seekable file: {file_len} bytes is too short for a seek table (at least {least})"),
            ));
        }
        // The footer's frame count, checked against the file's size before the table is
        // parsed: zeekstd reserves room for every entry the footer claims (16 bytes each, up to
        // 2^27 of them) before it reads one, so a 17-byte file asked for 2 GiB (an abort where
        // the address space is limited, not an error).
        let mut footer = [0u8; zeekstd::SEEK_TABLE_INTEGRITY_SIZE];
        let at = file_len - footer.len() as u64;
        file.read_exact_at(&mut footer, at)
            .map_err(|e| ioerr("pread", path, e).with_range(at, zeekstd::SEEK_TABLE_INTEGRITY_SIZE as u64))?;
        let claimed = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
        let magic = u32::from_le_bytes([footer[5], footer[6], footer[7], footer[8]]);
        let per_frame: u64 = if footer[4] & 0x80 != 0 { 12 } else { 8 };
        let claimed_len = u64::from(claimed) * per_frame + least;
        if magic == zeekstd::SEEKABLE_MAGIC_NUMBER && claimed_len > file_len {
            return Err(zerr(
                "read of the zstd seek table",
                path,
                format!(
                    "corrupt seek table: its footer claims {claimed} frames, a {claimed_len}-byte table, but the file \
                     holds {file_len} bytes"
                ),
            ));
        }
        let table = SeekTable::from_seekable(&mut file).map_err(|e| {
            zerr(
                "read of the zstd seek table",
                path,
                format!("not a zstd seekable file (no valid seek table at its end): {e}"),
            )
        })?;
        // The frames come before the table: a table whose frames claim more compressed bytes
        // than the file holds before it (the least table: a header, 8 bytes an entry, the
        // footer) is corrupt, and its sizes are no facts to report.
        let table_len = u64::from(table.num_frames()).saturating_mul(8).saturating_add(least);
        if table.size_comp().saturating_add(table_len) > file_len {
            return Err(zerr(
                "read of the zstd seek table",
                path,
                format!(
                    "corrupt seek table: its {} frames claim {} compressed bytes, but the file holds {file_len} \
                     bytes with the table ({table_len} bytes or more)",
                    table.num_frames(),
                    table.size_comp()
                ),
            ));
        }
        let checksums =
            if footer[4] & 0x80 != 0 { Some(read_checksums(&file, path, file_len, claimed)?) } else { None };
        Ok(SeekableSource {
            file,
            path: path.to_owned(),
            table,
            file_len,
            checksums,
            cache: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(Vec::new()),
            done: std::sync::Condvar::new(),
            frames_decompressed: AtomicU64::new(0),
            bytes_decompressed: AtomicU64::new(0),
        })
    }

    /// The decompressed length. A region's length is a `usize`: convert with `usize::try_from`,
    /// which refuses an image past 4 GiB on a 32-bit target (`as usize` would truncate it).
    pub fn len(&self) -> u64 {
        self.table.size_decomp()
    }

    /// Whether the decompressed content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The compressed length of the frames.
    pub fn compressed_len(&self) -> u64 {
        self.table.size_comp()
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.table.num_frames()
    }

    /// The seek table.
    pub fn seek_table(&self) -> &SeekTable {
        &self.table
    }

    /// Frames decompressed so far (a frame decompressed again after leaving the cache counts
    /// again).
    pub fn frames_decompressed(&self) -> u64 {
        self.frames_decompressed.load(Ordering::Relaxed)
    }

    /// Bytes decompressed so far.
    pub fn bytes_decompressed(&self) -> u64 {
        self.bytes_decompressed.load(Ordering::Relaxed)
    }

    fn cached(&self, index: u32) -> Option<Arc<Vec<u8>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.iter().find(|(i, _)| *i == index).map(|(_, f)| f.clone())
    }

    /// Frame `index`, from the cache, or decompressed by this thread, or by another thread
    /// that is at it already (waited for: handler threads faulting on pages of one frame at
    /// once each decompressed it, eight 32 MiB copies for eight threads, up to a gigabyte each
    /// with the largest frames).
    fn frame(&self, index: u32) -> io::Result<Arc<Vec<u8>>> {
        loop {
            if let Some(f) = self.cached(index) {
                return Ok(f);
            }
            let mut busy = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            // Again under the lock: the thread that decompressed it caches it before it says so.
            if let Some(f) = self.cached(index) {
                return Ok(f);
            }
            if !busy.contains(&index) {
                busy.push(index);
                break;
            }
            // Woken when a frame is done (or failed: then this thread tries it itself).
            drop(self.done.wait(busy).unwrap_or_else(|p| p.into_inner()));
        }
        /// Takes the frame out of the in-flight list and wakes the waiters, however it ends.
        struct Done<'a>(&'a SeekableSource, u32);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner()).retain(|&i| i != self.1);
                self.0.done.notify_all();
            }
        }
        let _done = Done(self, index);
        self.decompress(index)
    }

    fn decompress(&self, index: u32) -> io::Result<Arc<Vec<u8>>> {
        let bad = |e: zeekstd::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let (cs, ce) =
            (self.table.frame_start_comp(index).map_err(bad)?, self.table.frame_end_comp(index).map_err(bad)?);
        let dsize = self.table.frame_size_decomp(index).map_err(bad)?;
        // The seek table's sizes are untrusted: a few kilobytes of RLE blocks can claim 4 GiB.
        if dsize > u64::from(MAX_FRAME_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "zstd frame {index} of {}: the seek table says {dsize} bytes, more than the format allows \
                     ({MAX_FRAME_SIZE})",
                    self.path.display()
                ),
            ));
        }
        let dsize = dsize as usize;
        // So are its compressed sizes: a frame claiming up to 4 GiB would be allocated before
        // the read found the file shorter. Its bytes must lie inside the file.
        let csize = ce.checked_sub(cs).filter(|_| ce <= self.file_len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "zstd frame {index} of {}: the seek table puts it at [{cs:#x}, {ce:#x}), past the end of the \
                     file ({:#x} bytes)",
                    self.path.display(),
                    self.file_len
                ),
            )
        })?;
        // Both buffers may be large (a valid frame holds up to 1 GiB, which a few kilobytes of
        // RLE blocks describe): a failed allocation is the page's error, not an abort.
        let no_memory = |what: &str, n: u64| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("zstd frame {index} of {}: no memory for its {n} {what} bytes", self.path.display()),
            )
        };
        let mut comp = zeroed(csize).ok_or_else(|| no_memory("compressed", csize))?;
        self.file
            .read_exact_at(&mut comp, cs)
            .map_err(|e| io::Error::new(e.kind(), format!("pread of {} at {cs:#x}: {e}", self.path.display())))?;
        // Decompressed into the reserved capacity (zstd writes it and sets the length).
        let mut out = Vec::new();
        out.try_reserve_exact(dsize).map_err(|_| no_memory("decompressed", dsize as u64))?;
        let decompressed = zstd::bulk::Decompressor::new().and_then(|mut d| d.decompress_to_buffer(&comp, &mut out));
        let n = decompressed.map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("zstd frame {index} of {}: {e}", self.path.display()))
        })?;
        if n != dsize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("zstd frame {index} of {}: {n} bytes, the seek table says {dsize}", self.path.display()),
            ));
        }
        // The table's checksum, where it has one: the reference library writes frames without
        // zstd's own content checksum and only this one, so a corrupt frame that still decodes
        // (a flipped byte of a raw block or of literals) is caught here or not at all.
        if let Some(&want) = self.checksums.as_ref().and_then(|c| c.get(index as usize)) {
            let got = xxh64(&out) as u32;
            if got != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd frame {index} of {}: corrupt: its bytes' checksum is {got:#010x}, the seek table says \
                         {want:#010x}",
                        self.path.display()
                    ),
                ));
            }
        }
        self.frames_decompressed.fetch_add(1, Ordering::Relaxed);
        self.bytes_decompressed.fetch_add(n as u64, Ordering::Relaxed);
        // Not `Arc<[u8]>`: converting the Vec copied the whole frame into a second allocation.
        let frame = Arc::new(out);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.push_back((index, frame.clone()));
        let mut bytes: usize = cache.iter().map(|(_, f)| f.len()).sum();
        while cache.len() > 1 && (cache.len() > CACHED_FRAMES || bytes > CACHED_BYTES) {
            if let Some((_, old)) = cache.pop_front() {
                bytes -= old.len();
            }
        }
        Ok(frame)
    }
}

/// The per-frame checksums of a seek table with 12-byte entries (compressed size, decompressed
/// size, checksum), read from the end of `file` (`frames` entries before the 9-byte footer; the
/// caller checked that the file holds them). Read a chunk at a time, kept in a vector reserved
/// fallibly.
fn read_checksums(file: &File, path: &Path, file_len: u64, frames: u32) -> Result<Vec<u32>> {
    const ENTRY: usize = 12;
    let footer = zeekstd::SEEK_TABLE_INTEGRITY_SIZE as u64;
    let start = file_len - footer - u64::from(frames) * ENTRY as u64;
    let mut sums = Vec::new();
    sums.try_reserve_exact(frames as usize).map_err(|_| {
        Error::from_raw_errno("read of the zstd seek table", libc::ENOMEM)
            .with_path(path)
            .with_detail(format!("no memory for the checksums of {frames} frames"))
    })?;
    // Entries per `pread`: 48 KiB reads, whatever the number of frames.
    const ENTRIES_PER_READ: usize = 4 << 10;
    let mut chunk = vec![0u8; ENTRY * ENTRIES_PER_READ];
    let mut left = frames as usize;
    while left > 0 {
        let n = left.min(ENTRIES_PER_READ);
        let at = start + (sums.len() * ENTRY) as u64;
        let buf = &mut chunk[..n * ENTRY];
        file.read_exact_at(buf, at).map_err(|e| ioerr("pread", path, e).with_range(at, buf.len() as u64))?;
        sums.extend(buf.chunks_exact(ENTRY).map(|e| u32::from_le_bytes([e[8], e[9], e[10], e[11]])));
        left -= n;
    }
    Ok(sums)
}

/// XXH64 with seed 0: the hash whose low 32 bits are a seekable frame's checksum (and zstd's
/// content checksum). Pure arithmetic, from the xxHash specification.
fn xxh64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let round = |acc: u64, v: u64| acc.wrapping_add(v.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    let merge = |acc: u64, v: u64| (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4);
    let u64_at = |b: &[u8], i: usize| {
        u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]])
    };
    let mut stripes = data.chunks_exact(32);
    let mut h = if data.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        for s in stripes.by_ref() {
            for (i, v) in v.iter_mut().enumerate() {
                *v = round(*v, u64_at(s, i * 8));
            }
        }
        let h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        v.iter().fold(h, |h, &v| merge(h, v))
    } else {
        stripes.by_ref().for_each(drop);
        P5
    };
    h = h.wrapping_add(data.len() as u64);
    let mut rest = stripes.remainder();
    while rest.len() >= 8 {
        h = (h ^ round(0, u64_at(rest, 0))).rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let w = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        h = (h ^ w.wrapping_mul(P1)).rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h = (h ^ u64::from(b).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// `n` zero bytes, or `None` when the memory is not there (or `n` does not fit in `usize`).
fn zeroed(n: u64) -> Option<Vec<u8>> {
    let n = usize::try_from(n).ok()?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, 0);
    Some(v)
}

impl PageSource for SeekableSource {
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        let len = self.len();
        if offset >= len {
            return Ok(Filled::Zero);
        }
        let end = (offset + buf.len() as u64).min(len);
        let mut pos = offset;
        while pos < end {
            let index = self.table.frame_index_decomp(pos);
            let start = self
                .table
                .frame_start_decomp(index)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let frame = self.frame(index)?;
            let from = (pos - start) as usize;
            let n = ((end - pos) as usize).min(frame.len() - from);
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "empty zstd frame in the seek table"));
            }
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&frame[from..from + n]);
            pos += n as u64;
        }
        buf[(end - offset) as usize..].fill(0);
        Ok(Filled::Data)
    }
}

#[cfg(test)]
mod tests {
    /// The oracle: zstd's content checksum of a frame is the low 32 bits of the XXH64 of its
    /// bytes (the same as a seek table's frame checksum).
    #[test]
    fn xxh64_agrees_with_zstds_content_checksums() {
        assert_eq!(super::xxh64(b""), 0xEF46_DB37_51D8_E999);
        let mut x: u64 = 1;
        for len in [0usize, 1, 3, 4, 5, 7, 8, 9, 12, 31, 32, 33, 40, 63, 64, 65, 100, 4096, 65_536 + 13] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (x >> 56) as u8
                })
                .collect();
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).unwrap();
            let frame = c.compress(&data).unwrap();
            let sum = u32::from_le_bytes(frame[frame.len() - 4..].try_into().unwrap());
            assert_eq!(super::xxh64(&data) as u32, sum, "{len} bytes");
        }
    }
}
