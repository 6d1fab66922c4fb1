//! `mmkit residency`: page-cache residency of files, a `vmtouch`/`fincore` peer.
//!
//! Counts with `cachestat(2)` (falling back to `mincore(2)`), and optionally first evicts
//! (`--evict`), reads in (`--touch`) or locks (`--lock`, held until Ctrl-C / SIGTERM).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::ProgressBar;

use crate::cli::memory;
use crate::cli::progress::{self, Unit};
use crate::cli::size;
use crate::cli::table::{render_columns, Cells};
use mmkit::inspect::{self, CacheStat, CacheStatSource, FileEntry, LockedFile, TouchOptions};
use serde::Serialize;

/// Arguments of `mmkit residency`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (walked recursively; symbolic links inside are not followed, each
    /// inode is counted once).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Read the files into the page cache first (MADV_POPULATE_READ, in parallel). A file on
    /// tmpfs or ramfs whose holes would take more memory than is available is refused. A file
    /// stops at its first chunk that fails, named in a warning with its byte range and errno
    /// (EFAULT is a truncation only if the file shrank below the chunk; otherwise the chunk is
    /// read with pread, whose errno is reported); the other files go on, and the run exits 1.
    #[arg(long, short = 't', conflicts_with_all = ["evict", "lock"])]
    pub touch: bool,
    /// Drop the files' clean pages from the page cache first (POSIX_FADV_DONTNEED).
    #[arg(long, short = 'e', conflicts_with = "lock")]
    pub evict: bool,
    /// Lock the files in memory (mlock) and hold them until SIGINT or SIGTERM. Locked pages
    /// cannot be reclaimed: a file whose pages (on tmpfs or ramfs: whose holes) need more memory
    /// than is available (MemAvailable, less the files locked before it) is refused.
    #[arg(long, short = 'l')]
    pub lock: bool,
    /// Print only the totals, not a row per file (with --json: `total`, no `files`).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Worker threads. Counting spreads the files over one per CPU by default (10,000 small
    /// files: 40 ms with 2 threads, 45 ms with one), and with fewer files than threads splits
    /// each file of 128 MiB or more over the spare ones (1 GiB cached in 4 KiB pages on a
    /// 2-vCPU AMD guest: 26 ms with one `cachestat(2)`, 13 ms with two). Touching uses 1 by default:
    /// an evicted file touched with 2, 4 or 8 threads was no faster than with one
    /// (BENCHMARKS.md); more help only on devices that serve parallel reads faster than one
    /// stream. Threads the system refuses to start (ulimit -u, ulimit -v), or cannot give a file descriptor
    /// each (ulimit -n), mean fewer threads. 0 means one per CPU.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct FileJson {
    /// The path, lossy when it is not UTF-8 (then `path_bytes` has it exactly).
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<Vec<u8>>,
    size: u64,
    pages: u64,
    resident_pages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_pages: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
struct TotalJson {
    files: u64,
    size: u64,
    pages: u64,
    resident_pages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_pages: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ReportJson {
    /// The size of the pages counted, in bytes (what the table's byte columns multiply by).
    page_size: u64,
    /// The per-file rows; none with `--quiet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileJson>>,
    total: TotalJson,
    /// The time the run took until the report (the table's `Elapsed:`), in nanoseconds.
    elapsed_ns: u64,
}

/// Files handled together: each batch is evicted, touched, locked and counted before the walk
/// goes on, so memory does not grow with the tree (except the rows a table or JSON prints).
const BATCH: usize = 4_000;

/// What the batches add up to.
struct Outcome {
    /// Per-file rows, kept only when they are printed.
    rows: Option<Vec<FileJson>>,
    total: TotalJson,
    failures: usize,
    locked: Vec<LockedFile>,
    /// What to do about `mlock` failing at RLIMIT_MEMLOCK, printed once after the warnings.
    memlock_hint: Option<String>,
    /// Files handed to [`process`] so far.
    walked: usize,
    /// Files counted by `mincore` that the kernel does not show the page cache of (every page
    /// reported resident): their counts are not measurements, and the run says so.
    hidden: u64,
}

impl Outcome {
    /// A warning on stderr as soon as it is known (as vmtouch does); the run ends with exit 1.
    fn warn(&mut self, e: mmkit::Error) {
        warn_line!("{e}");
        self.failures += 1;
    }

    fn count(&mut self, path: PathBuf, s: &CacheStat) {
        if s.source == CacheStatSource::Mincore && s.pages > 0 && !cache_is_visible(&path) {
            self.hidden += 1;
        }
        let t = &mut self.total;
        t.files += 1;
        // Saturating: sparse files can add up to more than 2^64 bytes (five of 4 EiB on tmpfs).
        t.size = t.size.saturating_add(s.len);
        t.pages = t.pages.saturating_add(s.pages);
        t.resident_pages = t.resident_pages.saturating_add(s.cached);
        t.dirty_pages = match (t.dirty_pages, s.dirty) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
        if let Some(rows) = &mut self.rows {
            rows.push(FileJson {
                path_bytes: crate::cli::json::path_bytes(&path),
                path: path.into_os_string().into_string().unwrap_or_else(|p| p.to_string_lossy().into_owned()),
                size: s.len,
                pages: s.pages,
                resident_pages: s.cached,
                dirty_pages: s.dirty,
            });
        }
    }
}

/// Runs `mmkit residency`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.lock {
        // Before any thread starts and before we announce the lock, so that a SIGINT/SIGTERM
        // sent at any point waits for us instead of killing the process.
        inspect::block_termination_signals()?;
    }
    let mut out = Outcome {
        // `--quiet` prints only the totals: no per-file rows kept.
        rows: (!args.quiet).then(Vec::new),
        total: TotalJson { dirty_pages: Some(0), ..TotalJson::default() },
        failures: 0,
        locked: Vec::new(),
        memlock_hint: None,
        walked: 0,
        hidden: 0,
    };
    let mut batch = Vec::new();
    inspect::walk_files(&args.paths, &mut |found| match found {
        Ok(file) => {
            batch.push(file);
            if batch.len() == BATCH {
                process(&args, std::mem::take(&mut batch), &mut out);
            }
        }
        Err(e) => out.warn(e),
    });
    process(&args, batch, &mut out);

    let report = ReportJson {
        page_size: mmkit::page_size() as u64,
        files: out.rows.take(),
        total: std::mem::take(&mut out.total),
        elapsed_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    let printed = if args.json { crate::cli::json::print(&report) } else { print_table(&report) };
    // A reader that closed the pipe early (`| head -1`) ends the printing, not the run: the
    // files stay locked until a signal and paths that failed still fail the run (exit 1); only
    // then is the closed pipe the quiet exit it is for every report.
    let closed_pipe = match printed {
        Ok(()) => None,
        Err(e) if crate::cli::output::is_broken_pipe(&e) => Some(e),
        Err(e) => return Err(e),
    };
    if out.hidden > 0 {
        note_line!(
            "note: the Resident counts of {} file(s) are not measurements: the kernel hides the page cache of a file \
             the caller neither owns nor may write, and its mincore(2) then reports every page resident \
             (cachestat(2) refuses); run as the files' owner or root to count them",
            out.hidden
        );
    }
    // Before the wait: the files that could be locked are held until a signal.
    if let Some(hint) = &out.memlock_hint {
        note_line!("{hint}");
    }
    if args.lock && !out.locked.is_empty() {
        let pages = out.locked.iter().fold(0u64, |sum, l| sum.saturating_add(l.pages()));
        note_line!("locked {pages} pages of {} file(s); press Ctrl-C (or send SIGTERM) to release", out.locked.len());
        let sig = inspect::wait_for_termination_signal().context("waiting for a signal")?;
        out.locked.clear();
        note_line!("released after signal {sig}");
    }
    if out.failures > 0 {
        bail!("{} of the paths could not be processed", out.failures);
    }
    closed_pipe.map_or(Ok(()), Err)
}

/// Evicts, touches, locks (as asked) and counts one batch of files.
fn process(args: &Args, batch: Vec<FileEntry>, out: &mut Outcome) {
    if batch.is_empty() {
        return;
    }
    let lens: Vec<u64> = batch.iter().map(|f| f.len).collect();
    let paths: Vec<PathBuf> = batch.into_iter().map(|f| f.path).collect();
    let first = out.walked + 1;
    out.walked += paths.len();
    // Progress bars are per batch: say which files when there are several.
    let label = |what: &str| {
        if first == 1 && paths.len() < BATCH {
            what.to_owned()
        } else {
            format!("{what} files {first}-{}", out.walked)
        }
    };
    // Failures of the steps before counting, by the index of their path.
    let mut failed = Vec::new();
    // Files in memory whose holes would take more memory than there is are neither touched nor
    // locked (they are still counted).
    let mut refused = vec![false; paths.len()];
    if args.touch || args.lock {
        let op = if args.touch { "touch" } else { "lock" };
        let mut room = Room {
            available: std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| memory::mem_available(&m)),
            taken: Vec::new(),
        };
        for (i, p) in paths.iter().enumerate() {
            if let Err(e) = check_room_for_holes(p, op, &mut room) {
                failed.push((i, e));
                refused[i] = true;
            }
        }
    }
    let todo: Vec<usize> = (0..paths.len()).filter(|&i| !refused[i]).collect();
    if args.evict {
        let bar = progress(paths.len() as u64, &label("evicting"), false, args.json);
        for (i, p) in paths.iter().enumerate() {
            if let Err(e) = inspect::evict(p) {
                failed.push((i, e));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    if args.touch {
        let total_bytes = todo.iter().fold(0u64, |sum, &i| sum.saturating_add(lens[i]));
        let bar = progress(total_bytes, &label("touching"), true, args.json);
        let threads = within_descriptors(args.threads.unwrap_or(TOUCH_THREADS));
        let opts = TouchOptions { threads, ..TouchOptions::default() };
        let touched: Vec<&PathBuf> = todo.iter().map(|&i| &paths[i]).collect();
        let results = inspect::touch_files(&touched, &opts, &|n| bar.inc(n));
        bar.finish_and_clear();
        failed.extend(todo.iter().zip(results).filter_map(|(&i, r)| Some((i, r.err()?))));
    }
    if args.lock {
        let bar = progress(todo.len() as u64, &label("locking"), false, args.json);
        for &i in &todo {
            match inspect::lock(&paths[i]) {
                Ok(l) => out.locked.push(l),
                Err(e) => {
                    if out.memlock_hint.is_none() {
                        out.memlock_hint = memlock_hint(&e);
                    }
                    failed.push((i, e))
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let bar = progress(paths.len() as u64, &label("counting"), false, args.json);
    // 0: one thread per CPU.
    let stats = inspect::cachestat_files(&paths, within_descriptors(args.threads.unwrap_or(0)), &|| bar.inc(1));
    bar.finish_and_clear();
    // A path is one failure however many steps failed, and the count's error is not repeated
    // when the step before failed the same way (`--touch` of a file it cannot open).
    let mut earlier: Vec<Option<String>> = vec![None; paths.len()];
    for (i, e) in failed {
        let message = e.to_string();
        out.warn(e);
        earlier[i] = Some(message);
    }
    for ((p, s), earlier) in paths.into_iter().zip(stats).zip(earlier) {
        match (s, earlier) {
            (Ok(s), _) => out.count(p, &s),
            (Err(e), None) => out.warn(e),
            (Err(e), Some(message)) => {
                if e.to_string() != message {
                    warn_line!("{e}");
                }
            }
        }
    }
}

/// The memory and tmpfs space the holes of the files accepted so far in a batch will take.
struct Room {
    /// `MemAvailable` less the holes accepted (None: the kernel does not say).
    available: Option<u64>,
    /// Holes accepted per memory-backed file system (its `st_dev`), in bytes.
    taken: Vec<(u64, u64)>,
}

/// Refuses to touch or lock (`op`) a file on tmpfs or ramfs whose holes need more memory than
/// `room` has left of `MemAvailable`, or than its tmpfs has free less the holes of the files
/// accepted before it: faulting a hole of such a file in allocates a page no one can reclaim
/// without swap. A sparse 4 EiB file on /dev/shm filled the machine's memory until the OOM
/// killer ended other processes; past a full tmpfs every page faults `SIGBUS`. A file whose
/// file system or size cannot be read is left to the step itself, which reports why.
#[allow(clippy::unnecessary_cast)] // `statfs` and `stat` field types differ between targets
fn check_room_for_holes(path: &Path, op: &'static str, room: &mut Room) -> Result<(), mmkit::Error> {
    let Ok(fs) = rustix::fs::statfs(path) else { return Ok(()) };
    let f_type = fs.f_type as u64;
    if !memory::lives_in_memory(f_type) {
        return if op == "lock" { check_room_to_lock(path, room) } else { Ok(()) };
    }
    let Ok(st) = rustix::fs::stat(path) else { return Ok(()) };
    // `st_blocks` counts 512-byte units whatever the block size.
    let holes = (st.st_size as u64).saturating_sub((st.st_blocks as u64).saturating_mul(512));
    let refuse = |left: u64, what: &str, why: &str| {
        mmkit::Error::new(op, mmkit::ErrorKind::InvalidArgument).with_path(path).with_detail(format!(
            "the file lives in memory ({}) and its holes would take {} ({holes} bytes) more; {what} has {} ({left} bytes) \
             left: not done ({why})",
            if f_type as u32 == memory::TMPFS_MAGIC { "tmpfs" } else { "ramfs" },
            size::bytes(holes),
            size::bytes(left),
        ))
    };
    if let Some(left) = room.available.filter(|&left| holes > left) {
        return Err(refuse(left, "the machine (MemAvailable)", "the OOM killer would end processes first"));
    }
    // A tmpfs mounted without a size limit reports no blocks at all. The file system is the
    // file's device (`st_dev`), from the `stat` above.
    let dev = st.st_dev as u64;
    let limited = fs.f_blocks > 0;
    if limited {
        let taken = room.taken.iter().find(|t| t.0 == dev).map_or(0, |t| t.1);
        let left = (fs.f_bavail as u64).saturating_mul(fs.f_frsize as u64).saturating_sub(taken);
        if holes > left {
            return Err(refuse(left, "its file system", "each page past that would fault SIGBUS"));
        }
    }
    // Accepted: what its holes take is no longer there for the next file.
    room.available = room.available.map(|a| a.saturating_sub(holes));
    if limited {
        match room.taken.iter_mut().find(|t| t.0 == dev) {
            Some(t) => t.1 = t.1.saturating_add(holes),
            None => room.taken.push((dev, holes)),
        }
    }
    Ok(())
}

/// Refuses to lock a file on a disk-backed file system whose pages need more memory than
/// `room` has left of `MemAvailable`: a locked page-cache page cannot be reclaimed, so locking
/// more than is available (a file larger than the machine's memory, or a sparse one whose
/// holes read in as zero pages) ends in the OOM killer, as [`check_room_for_holes`] says of
/// tmpfs. Every page counts, cached or not: a cached page is available memory until it is
/// locked. A file whose size cannot be read is left to `lock`, which reports why.
#[allow(clippy::unnecessary_cast)] // `stat` field types differ between targets
fn check_room_to_lock(path: &Path, room: &mut Room) -> Result<(), mmkit::Error> {
    let Ok(st) = rustix::fs::stat(path) else { return Ok(()) };
    let page = mmkit::page_size() as u64;
    let need = (st.st_size as u64).div_ceil(page).saturating_mul(page);
    if let Some(left) = room.available.filter(|&left| need > left) {
        return Err(mmkit::Error::new("lock", mmkit::ErrorKind::InvalidArgument).with_path(path).with_detail(format!(
            "locking it would pin {} ({need} bytes) of page cache that cannot be reclaimed; the machine \
             (MemAvailable) has {} ({left} bytes) left: not done (the OOM killer would end processes first)",
            size::bytes(need),
            size::bytes(left),
        )));
    }
    room.available = room.available.map(|a| a.saturating_sub(need));
    Ok(())
}

/// Whether the kernel shows this process the page cache of `path` through `mincore(2)`: only
/// for a file it owns or may write, or with `CAP_FOWNER` (mm/mincore.c, `can_do_mincore`, since
/// Linux 5.0); for any other file every page reads as resident.
fn cache_is_visible(path: &Path) -> bool {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return true;
    }
    let owned = rustix::fs::stat(path).is_ok_and(|st| st.st_uid == euid.as_raw());
    owned
        || rustix::fs::accessat(rustix::fs::CWD, path, rustix::fs::Access::WRITE_OK, rustix::fs::AtFlags::EACCESS)
            .is_ok()
}

/// `threads` (0: one per CPU), fewer when the descriptors left under `RLIMIT_NOFILE`
/// (`ulimit -n`) cannot give each a file: every worker keeps one open, and past the limit each
/// open failed (`--threads 4` under `ulimit -n 6`: 2,254 EMFILE warnings, where 2 threads
/// counted every file). One descriptor is kept spare. 0 stays 0 when nothing is short.
fn within_descriptors(threads: usize) -> usize {
    let want = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current else { return threads };
    // The descriptors open now (the walk's directories among them); the listing's own is not.
    let Ok(open) = std::fs::read_dir("/proc/self/fd").map(|d| d.count().saturating_sub(1) as u64) else {
        return threads;
    };
    let free = usize::try_from(limit.saturating_sub(open).saturating_sub(1)).unwrap_or(usize::MAX);
    if free >= want {
        threads
    } else {
        free.max(1)
    }
}

/// What to do when `mlock` failed with `e` because of `RLIMIT_MEMLOCK` (`ENOMEM` past the
/// limit, `EPERM` under a limit of 0 without `CAP_IPC_LOCK`); `None` for any other failure:
/// the `mmap` before it (its `ENOMEM` is address space, `RLIMIT_AS`), or any failure of a
/// process with `CAP_IPC_LOCK` in effect, whom the limit does not bind. That is a capability,
/// not the uid: root in a container without `CAP_IPC_LOCK` (Docker's default set) is bound.
fn memlock_hint(e: &mmkit::Error) -> Option<String> {
    use rustix::thread::{capabilities, CapabilitySet};
    let exempt = capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::IPC_LOCK));
    if e.operation() != "mlock" || exempt {
        return None;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current?;
    match e.errno() {
        Some(libc::ENOMEM) => {}
        Some(libc::EPERM) if limit == 0 => {}
        _ => return None,
    }
    Some(format!(
        "hint: locked memory is capped by RLIMIT_MEMLOCK, {} for this process (`ulimit -l`: {} KiB); \
         raise it (`ulimit -l unlimited` as root, `LimitMEMLOCK=` in a systemd unit, memlock in \
         /etc/security/limits.conf) or lock fewer files",
        crate::cli::size::bytes(limit),
        limit / 1024
    ))
}

/// Default threads of `--touch`: 1, 2, 4 and 8 threads touched an evicted 1 GiB file in the
/// same time within noise (BENCHMARKS.md, "`residency --touch`: how many threads"), and an
/// earlier report had 2 threads 1.5x slower than 1; one thread is the cheapest.
const TOUCH_THREADS: usize = 1;

fn print_table(report: &ReportJson) -> anyhow::Result<()> {
    let page = report.page_size;
    if let Some(files) = report.files.as_ref().filter(|f| !f.is_empty()) {
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                vec![
                    format!("{}/{}", f.resident_pages, f.pages),
                    human(f.resident_pages.saturating_mul(page)),
                    human(f.size),
                    percent(f.resident_pages, f.pages),
                    f.dirty_pages.map_or_else(|| "-".to_owned(), |d| d.to_string()),
                    // Names found in a walk are other users' choice: no raw control characters.
                    crate::cli::table::printable(&f.path).into_owned(),
                ]
            })
            .collect();
        let header = ["Resident Pages", "Resident", "Size", "%", "Dirty", "File"];
        out!("{}", render_columns(&header, &Cells::from(&rows[..]), &[0, 1, 2, 3, 4]))?;
        outln!()?;
    }
    let t = &report.total;
    outln!("          Files: {}", t.files)?;
    outln!(
        " Resident Pages: {}/{}  {}/{}  {}",
        t.resident_pages,
        t.pages,
        human(t.resident_pages.saturating_mul(page)),
        human(t.pages.saturating_mul(page)),
        percent(t.resident_pages, t.pages)
    )?;
    if let Some(d) = t.dirty_pages {
        outln!("    Dirty Pages: {d}  {}", human(d.saturating_mul(page)))?;
    }
    outln!("        Elapsed: {:.3} s", report.elapsed_ns as f64 / 1e9)
}

/// A progress bar on stderr when the work is long (256 MiB, or 2,000 files) and the output is
/// not JSON (as every command's bars: see [`progress`]).
fn progress(len: u64, what: &str, bytes: bool, json: bool) -> ProgressBar {
    let (unit, long) = if bytes { (Unit::Bytes, len >= 256 << 20) } else { (Unit::Files, len >= 2000) };
    progress::bar(len, what, unit, long && !json)
}

/// Sizes as `vmtouch` prints them (truncated to a whole unit): 0, 4K, 150M, 1G.
fn human(bytes: u64) -> String {
    let mut v = bytes;
    for unit in ["", "K", "M"] {
        if v < 1024 {
            return format!("{v}{unit}");
        }
        v /= 1024;
    }
    format!("{v}G")
}

/// A percentage with three significant digits, as `vmtouch`'s `%.3g%%`.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 || part == 0 {
        return "0%".to_owned();
    }
    let p = part as f64 * 100.0 / whole as f64;
    let decimals = if p >= 100.0 {
        0
    } else if p >= 10.0 {
        1
    } else if p >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{p:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    // Some pages resident are never 0%: 1 page of an 8 GiB file is 0.00005%.
    if s == "0" {
        return "<0.001%".to_owned();
    }
    // Nor are some pages missing 100%: 4999 of 5000 pages is 99.98%.
    if s == "100" && part < whole {
        return ">99.9%".to_owned();
    }
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_read_like_vmtouch() {
        assert_eq!(human(0), "0");
        assert_eq!(human(8 << 10), "8K");
        assert_eq!(human(1 << 30), "1G");
        assert_eq!(human(1536 << 10), "1M");
        assert_eq!(human(1023), "1023");
        assert_eq!(human(150 << 20), "150M");
        assert_eq!(human(5 << 40), "5120G");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(188295, 1076753), "17.5%");
        assert_eq!(percent(1, 1000), "0.1%");
        assert_eq!(percent(1, 7), "14.3%");
        assert_eq!(percent(0, 0), "0%");
        assert_eq!(percent(5, 5), "100%");
        assert_eq!(percent(1, 2_097_152), "<0.001%");
        assert_eq!(percent(1, 100_000), "0.001%");
        assert_eq!(percent(4999, 5000), ">99.9%");
        assert_eq!(percent(999, 1000), "99.9%");
    }
}
