//! The elf section's shared-RELRO step (`ANDROID_DLEXT_WRITE_RELRO`/`USE_RELRO`): a C++
//! library whose RELRO is mostly vtables is loaded at one reserved address by 4 processes
//! alive at once, first each on its own, then 1 writer and 3 users of a RELRO file; the Pss of
//! the RELRO range in each process comes from `/proc/PID/smaps`.

use crate::cli::io::IoResultExt;
use crate::cli::report::Section;
use crate::cli::size::bytes;
use anyhow::Context;
use mmkit_elf::{Library, LoadOptions};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Classes with a vtable of their own (16 entries each): 512 of them give ~80 KiB of RELRO.
const CLASSES: u64 = 512;

/// The processes that load the library at once.
const PROCESSES: usize = 4;

/// Every class overrides one function, so each has its own vtable of 16 pointers; one object
/// of each and a table of pointers to them. No RTTI, so the library needs no libstdc++ and
/// every RELRO pointer is relative to the library's own base: the same at the same address.
const SOURCE: &str = r#"
#include <cstddef>
#include <utility>
struct Base {
    virtual long f0(long x) const { return x + 1; }
    virtual long f1(long x) const { return x * 3; }
    virtual long f2(long x) const { return x - 5; }
    virtual long f3(long x) const { return x ^ 7; }
    virtual long f4(long x) const { return x | 9; }
    virtual long f5(long x) const { return x & 11; }
    virtual long f6(long x) const { return x << 1; }
    virtual long f7(long x) const { return x >> 1; }
    virtual long f8(long x) const { return x + 13; }
    virtual long f9(long x) const { return x * 15; }
    virtual long fa(long x) const { return x - 17; }
    virtual long fb(long x) const { return x ^ 19; }
    virtual long fc(long x) const { return x | 21; }
    virtual long fd(long x) const { return x & 23; }
    virtual long fe(long x) const { return x << 2; }
    virtual long ff(long x) const { return x >> 2; }
};
template <std::size_t N> struct D final : Base { long f0(long x) const override { return x + N; } };
template <std::size_t N> const D<N> inst{};
template <std::size_t... I>
const Base* const* table(std::index_sequence<I...>) { static const Base* const all[] = {&inst<I>...}; return all; }
static const Base* const* const all = table(std::make_index_sequence<CLASSES>{});
extern "C" long relro_call(long i, long x) {
    const Base* b = all[static_cast<std::size_t>(i) % CLASSES];
    return b->f0(x) + b->fe(x);
}
"#;

/// Builds the library with g++; `Ok(Err(why))` when g++ is not installed. `-fno-gnu-unique`:
/// the table's static is otherwise an `STB_GNU_UNIQUE` symbol, which pins the library, and a
/// child could not unload the copy it inherits to load its own.
fn build(dir: &Path) -> anyhow::Result<Result<PathBuf, String>> {
    let src = dir.join("relro.cpp");
    std::fs::write(&src, SOURCE).on("write", &src)?;
    let out = dir.join("librelro.so");
    let output = match std::process::Command::new("g++")
        .args([
            "-shared",
            "-fPIC",
            "-O1",
            "-fno-rtti",
            "-fno-gnu-unique",
            "-Wl,-z,now",
            "-Wl,-z,relro",
            "-Wl,--as-needed",
        ])
        .arg(format!("-DCLASSES={CLASSES}"))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err("g++ is not installed (apt-get install g++)".to_owned()))
        }
        Err(e) => {
            return Err(crate::cli::io::io_error("exec", Path::new("g++"), e))
                .context("running g++ to build the shared-RELRO library")
        }
    };
    if !output.status.success() {
        super::check_interrupted()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        anyhow::bail!("g++ failed to build the shared-RELRO library ({}): {}", output.status, said.join("; "));
    }
    Ok(Ok(out))
}

/// One run: every process loads `so` at the start of `space`, with or without a RELRO file.
struct Run<'a> {
    so: &'a Path,
    space: &'a mmkit::Reservation,
    relro_file: Option<&'a File>,
    /// The RELRO range at that address.
    range: (u64, u64),
}

/// Words per process on the board: pid, Pss (KiB), pages from the file, private pages.
const WORDS: usize = 4;
/// Where a failing process writes its message on the board.
const MESSAGE_AT: usize = 512;

fn put(board: &mut [u8], process: usize, word: usize, value: u64) {
    let at = (process * WORDS + word) * 8;
    board[at..at + 8].copy_from_slice(&value.to_ne_bytes());
}

fn get(board: &[u8], process: usize, word: usize) -> u64 {
    let at = (process * WORDS + word) * 8;
    u64::from_ne_bytes(board[at..at + 8].try_into().unwrap_or_default())
}

/// Writes `message` on the board for the parent and returns the failure status.
fn fail(board: &mut [u8], message: &str) -> u64 {
    let room = &mut board[MESSAGE_AT..];
    let n = message.len().min(room.len() - 1);
    room[..n].copy_from_slice(&message.as_bytes()[..n]);
    room[n] = 0;
    1
}

/// Process `k` of the run (a forked child): drops the copy it inherited from its parent, loads
/// its own, and forks process `k + 1`; the last one, with all of them alive, reads their Pss.
fn process(run: &Run, k: usize, board: &mut [u8], inherited: &mut Option<Library>) -> u64 {
    // The parent's copy (shared with it copy-on-write): this process loads its own.
    drop(inherited.take());
    let mut options = LoadOptions::new().reserved(run.space, 0);
    if let Some(file) = run.relro_file {
        options = if k == 0 { options.write_relro(file) } else { options.use_relro(file) };
    }
    // SAFETY: the library was just built from SOURCE; the reservation outlives it (it is the
    // tour's, alive until every process of the run has ended) and is not otherwise used.
    let lib = match unsafe { Library::open_with(run.so, &options) } {
        Ok(lib) => lib,
        Err(e) => return fail(board, &format!("process {k} of the shared-RELRO step: {e}")),
    };
    // SAFETY: `long relro_call(long, long)`, as in SOURCE.
    let call = match unsafe { lib.symbol::<extern "C" fn(i64, i64) -> i64>("relro_call") } {
        Ok(f) => f,
        Err(e) => return fail(board, &format!("process {k} of the shared-RELRO step: {e}")),
    };
    // Every vtable is read: (x + i) + (x << 2) for class i.
    let sum: i64 = (0..CLASSES as i64).map(|i| call(i, 1)).sum();
    let want = (0..CLASSES as i64).map(|i| 1 + i + 4).sum::<i64>();
    if sum != want {
        return fail(board, &format!("process {k}: the shared-RELRO library computed {sum}, not {want}"));
    }
    let (from_file, private) = lib.relro_sharing().unwrap_or((0, 0));
    put(board, k, 0, u64::from(std::process::id()));
    put(board, k, 2, from_file);
    put(board, k, 3, private);
    let mut mine = Some(lib);
    if k + 1 < PROCESSES {
        return match mmkit::process::in_forked_child_single_threaded(|| process(run, k + 1, board, &mut mine)) {
            Ok(status) => status,
            Err(e) => fail(board, &format!("process {k} forking the next: {e}")),
        };
    }
    // All processes are alive and hold their copy: each one's Pss of the RELRO range.
    let (start, end) = run.range;
    for i in 0..PROCESSES {
        let pid = get(board, i, 0);
        match mmkit::inspect::smaps(pid as u32) {
            Ok(areas) => {
                let pss = areas.iter().filter(|a| a.area.start < end && a.area.end > start).map(|a| a.stats.pss).sum();
                put(board, i, 1, pss);
            }
            Err(e) => return fail(board, &format!("reading the Pss of process {pid}: {e}")),
        }
    }
    0
}

/// Runs the processes and returns each one's `(Pss KiB, pages from the file, private pages)`.
fn measure(run: &Run, page: usize) -> anyhow::Result<Vec<(u64, u64, u64)>> {
    let mut board = mmkit::MapOptions::new().len(page).map_anon_shared()?;
    let status = mmkit::process::in_forked_child_single_threaded(|| process(run, 0, &mut board[..], &mut None))
        .context("the shared-RELRO step forks processes that load the library")?;
    if status != 0 {
        let message = &board[MESSAGE_AT..];
        let end = message.iter().position(|&b| b == 0).unwrap_or(message.len());
        anyhow::bail!("{}", String::from_utf8_lossy(&message[..end]));
    }
    Ok((0..PROCESSES).map(|i| (get(&board, i, 1), get(&board, i, 2), get(&board, i, 3))).collect())
}

fn kib_list(v: &[(u64, u64, u64)]) -> String {
    v.iter().map(|p| p.0.to_string()).collect::<Vec<_>>().join(", ")
}

/// Adds the shared-RELRO facts to `s`, building in `dir`.
pub fn step(s: &mut Section, dir: &Path, page: u64) -> anyhow::Result<()> {
    let so = match build(dir)? {
        Ok(so) => so,
        Err(why) => {
            s.fact("relro_shared", "shared RELRO (4 processes)", "skipped", format!("skipped: {why}"));
            return Ok(());
        }
    };
    super::check_interrupted()?;
    let plan = mmkit_elf::plan(&mmkit_elf::Source::path(&so), page)?;
    let (relro_start, relro_len) = plan.relro.context("the shared-RELRO library has no PT_GNU_RELRO segment")?;
    let space = mmkit::Reservation::new(usize::try_from(plan.span_len)?)?;
    let start = space.as_ptr() as u64 + relro_start - plan.span_vaddr;
    let range = (start, start + relro_len);
    s.fact(
        "relro_size",
        "RELRO of a C++ library (g++)",
        relro_len,
        format!(
            "{} ({} pages): {CLASSES} vtables relocated at load (-z now), loaded at {start:#x} in {PROCESSES} processes",
            bytes(relro_len),
            relro_len.div_ceil(page)
        ),
    );
    s.detail("relro_vtables", CLASSES);
    s.detail("relro_load_address", start);
    s.detail("relro_processes", PROCESSES as u64);

    let alone = measure(&Run { so: &so, space: &space, relro_file: None, range }, page as usize)?;
    super::check_interrupted()?;
    let relro_path = dir.join("librelro.relro");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&relro_path)
        .on("create", &relro_path)
        .context("creating the RELRO file")?;
    let shared = measure(&Run { so: &so, space: &space, relro_file: Some(&file), range }, page as usize);
    drop(file);
    std::fs::remove_file(&relro_path).on("unlink", &relro_path)?;
    let shared = shared?;

    let total = |v: &[(u64, u64, u64)]| v.iter().map(|p| p.0).sum::<u64>();
    s.fact(
        "relro_pss_alone",
        "  RELRO Pss, each process alone",
        serde_json::json!({"per_process_kib": alone.iter().map(|p| p.0).collect::<Vec<_>>(), "total_kib": total(&alone)}),
        format!("{} KiB (total {} KiB)", kib_list(&alone), total(&alone)),
    );
    s.fact(
        "relro_pss_shared",
        "  RELRO Pss, 1 writer + 3 users",
        serde_json::json!({"per_process_kib": shared.iter().map(|p| p.0).collect::<Vec<_>>(), "total_kib": total(&shared)}),
        format!("{} KiB (total {} KiB)", kib_list(&shared), total(&shared)),
    );
    let pages: Vec<_> = shared.iter().map(|p| serde_json::json!({"from_file": p.1, "private": p.2})).collect();
    s.fact(
        "relro_pages",
        "  RELRO pages from the file / private",
        serde_json::json!(pages),
        shared.iter().map(|p| format!("{}/{}", p.1, p.2)).collect::<Vec<_>>().join(", "),
    );
    s.note(format!(
        "Shared RELRO (android_dlopen_ext's WRITE_RELRO/USE_RELRO): the first process writes its relocated RELRO pages to a file and maps them back read-only; the others, loading at the same reserved address, map every identical page from that file, so the {PROCESSES} processes pay for the RELRO about once (Pss from /proc/PID/smaps). Try: mmkit elf load LIB --reserve-at ADDR --write-relro FILE / --use-relro FILE"
    ));
    Ok(())
}
