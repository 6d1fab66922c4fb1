//! `mmkit pager`: pack a file into the zstd seekable format, report a snapshot's or a
//! seekable file's pages.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use mmkit_pager::seekable::{self, PackOptions};
use mmkit_pager::{snapshot, SeekableSource};
use serde_json::json;

use crate::cli::progress::{self, Unit};
use crate::cli::size::bytes;

/// Subcommands of `mmkit pager`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compress INPUT into the zstd seekable format (independent frames + a seek table; any
    /// `zstd -d` reads it), so that a PagedRegion maps it lazily.
    Pack {
        /// The file to compress.
        input: PathBuf,
        /// The seekable file to write.
        output: PathBuf,
        /// Uncompressed bytes per frame: what one fault decompresses (4K to 1G, e.g. 64K, 1M).
        #[arg(long, default_value = "64K", value_parser = parse_frame_size)]
        frame_size: u32,
        /// zstd compression level (1-22).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
        level: i32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Report a file's pages: a zstd seekable file's frames, or a snapshot's data and holes.
    Info {
        /// A zstd seekable file or a snapshot (raw memory bytes, holes for zero pages).
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses `--frame-size`: a size from [`seekable::MIN_FRAME_SIZE`] (4 KiB) to
/// [`seekable::MAX_FRAME_SIZE`] (1 GiB).
fn parse_frame_size(s: &str) -> Result<u32, String> {
    let n = crate::cli::size::parse_size(s)?;
    let (min, max) = (seekable::MIN_FRAME_SIZE, seekable::MAX_FRAME_SIZE);
    u32::try_from(n)
        .ok()
        .filter(|f| (min..=max).contains(f))
        .ok_or_else(|| format!("frame size {s} ({n} bytes) must be between 4K ({min}) and 1G ({max})"))
}

/// Runs `mmkit pager`.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pack { input, output, frame_size, level, json } => {
            // Ctrl-C or SIGTERM ends the pack at its next MiB with the output removed, as a
            // failed pack removes it: the default action left a half-written file, no seekable
            // file at all.
            crate::cmd::tour::catch_termination_signals()?;
            // A bar on a terminal for inputs worth one (not with --json).
            let mut bar: Option<indicatif::ProgressBar> = None;
            let info = seekable::pack_with_progress(
                &input,
                &output,
                &PackOptions { frame_size, level },
                &mut |read, total| {
                    if let Some(sig) = crate::cmd::tour::termination_signal() {
                        if let Some(bar) = &bar {
                            bar.finish_and_clear();
                        }
                        let removed = std::fs::remove_file(&output).map_or_else(
                            |e| format!("{} could not be removed: {e}", output.display()),
                            |()| format!("{} removed", output.display()),
                        );
                        crate::cli::output::finish(Err(anyhow::anyhow!(
                            "pack of {} interrupted by {sig} after {read} of {total} bytes; {removed}",
                            input.display()
                        )));
                    }
                    bar.get_or_insert_with(|| {
                        let what = format!("packing {}", input.display());
                        progress::bar(total, &what, Unit::Bytes, !json && total >= 64 << 20)
                    })
                    .set_position(read);
                },
            );
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let info = info?;
            if json {
                let mut doc = json!({
                    "input": input.to_string_lossy(), "output": output.to_string_lossy(), "input_bytes": info.input_bytes,
                    "output_bytes": info.output_bytes, "frames": info.frames, "frame_size": frame_size,
                    "level": level,
                });
                with_path_bytes(&mut doc, "input_path_bytes", &input);
                with_path_bytes(&mut doc, "output_path_bytes", &output);
                crate::cli::json::print(&doc)?;
            } else {
                // No ratio for an empty input; frames are of at most the size asked for.
                let ratio = match info.input_bytes {
                    0 => String::new(),
                    n => format!(" ({:.2}x)", n as f64 / info.output_bytes.max(1) as f64),
                };
                let frames = match info.frames {
                    1 => "1 frame".to_owned(),
                    n => format!("{n} frames"),
                };
                outln!(
                    "{} -> {}: {} -> {}{ratio}, {frames} of at most {}",
                    input.display(),
                    output.display(),
                    bytes(info.input_bytes),
                    bytes(info.output_bytes),
                    bytes(frame_size as u64)
                )?;
            }
        }
        Command::Info { path, json } => match kind_of(&path)? {
            Kind::Seekable => {
                let src = SeekableSource::open(&path)?;
                let frames = src.frames();
                let table = src.seek_table();
                let max_frame = (0..frames).filter_map(|i| table.frame_size_decomp(i).ok()).max().unwrap_or(0);
                // The frames, and the whole file (the frames, the seek table and its frame), as
                // `pack` reports its output.
                let file_bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
                if json {
                    let mut doc = json!({
                        "path": path.to_string_lossy(), "kind": "zstd-seekable", "frames": frames,
                        "decompressed_bytes": src.len(), "compressed_bytes": src.compressed_len(),
                        "file_bytes": file_bytes,
                        "max_frame_bytes": max_frame, "page_size": mmkit::page_size(),
                        "pages": src.len().div_ceil(mmkit::page_size() as u64),
                    });
                    with_path_bytes(&mut doc, "path_bytes", &path);
                    crate::cli::json::print(&doc)?;
                } else {
                    outln!("{}: zstd seekable file", path.display())?;
                    outln!("  decompressed   {}", bytes(src.len()))?;
                    outln!("  compressed     {} in frames", bytes(src.compressed_len()))?;
                    if let Some(n) = file_bytes {
                        outln!("  file           {} (frames, seek table)", bytes(n))?;
                    }
                    outln!("  frames         {frames} (largest {})", bytes(max_frame))?;
                    outln!("  pages          {}", src.len().div_ceil(mmkit::page_size() as u64))?;
                }
            }
            Kind::Snapshot => {
                let info = snapshot::info(&path)?;
                if json {
                    let mut doc = json!({
                        "path": path.to_string_lossy(), "kind": "snapshot", "len": info.len, "page_size": info.page_size,
                        "pages": info.pages, "data_pages": info.data_pages, "hole_pages": info.hole_pages,
                        "disk_bytes": info.disk_bytes,
                        "data_extents": info.data_extents.iter().map(|(s, e)| json!([s, e])).collect::<Vec<_>>(),
                    });
                    with_path_bytes(&mut doc, "path_bytes", &path);
                    crate::cli::json::print(&doc)?;
                } else {
                    outln!("{}: snapshot (raw memory, holes for zero pages)", path.display())?;
                    outln!("  length         {}", bytes(info.len))?;
                    outln!("  pages          {} of {}", info.pages, bytes(info.page_size))?;
                    outln!("  data pages     {}", info.data_pages)?;
                    outln!("  hole pages     {}", info.hole_pages)?;
                    outln!("  on disk        {}", bytes(info.disk_bytes))?;
                    outln!("  data extents   {}", info.data_extents.len())?;
                }
            }
        },
    }
    Ok(())
}

/// What `pager info` was given.
enum Kind {
    Seekable,
    Snapshot,
}

/// The first four bytes of a zstd frame (`0xFD2FB528`) and of a skippable frame
/// (`0x184D2A50..=0x184D2A5F`), little-endian.
fn starts_like_zstd(head: &[u8]) -> bool {
    match head.get(..4) {
        Some(m) => {
            let magic = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            magic == 0xFD2F_B528 || magic & 0xFFFF_FFF0 == 0x184D_2A50
        }
        None => false,
    }
}

/// A file that starts like zstd is a seekable file (and an error when its seek table is bad:
/// truncated or corrupt, never reported as a snapshot); any other non-empty regular file is a
/// snapshot (raw memory bytes). An empty file is neither: a snapshot of no memory restores to
/// nothing. FIFOs, sockets, directories and devices are refused without blocking, `/proc` and
/// `/sys` files as `pack` refuses them.
fn kind_of(path: &Path) -> anyhow::Result<Kind> {
    let (file, meta) = mmkit::open::open_regular_with_metadata(path)?;
    // As `pack` refuses them: a /sys attribute is no one-page snapshot, /proc/self/status no
    // empty file.
    mmkit_pager::source::refuse_proc_and_sys(&file, path, "info")?;
    if meta.len() == 0 {
        anyhow::bail!(
            "info of {} failed: the file is empty (neither a zstd seekable file nor a snapshot)",
            path.display()
        );
    }
    let mut head = [0u8; 4];
    let n = file.read_at(&mut head, 0).map_err(|e| crate::cli::io::io_error("pread", path, e))?;
    Ok(if starts_like_zstd(&head[..n]) { Kind::Seekable } else { Kind::Snapshot })
}

/// Adds `key` with `path`'s bytes to a JSON object when the path is not UTF-8 (see
/// [`crate::cli::json::path_bytes`]).
fn with_path_bytes(doc: &mut serde_json::Value, key: &str, path: &std::path::Path) {
    if let Some(bytes) = crate::cli::json::path_bytes(path) {
        doc[key] = json!(bytes);
    }
}
