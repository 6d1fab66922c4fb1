//! The tour's anonymous-memory section: zero-filled memory and RSS, a 64 GiB reservation,
//! shared vs private across `fork`, THP vs base-page first touch, and a named region.

// One of the modules with `unsafe`: the tour shows mmkit's `unsafe` calls as a user writes them.
#![allow(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use mmkit::reserve::ReserveOptions;
use mmkit::{inspect, page_size, HugePages, MapOptions, Protection};

use super::{check_interrupted, Args};
use crate::cli::io::IoResultExt;
use crate::cli::report::{duration, speed_against, Section};
use crate::cli::size::bytes;

const MIB: usize = 1 << 20;

/// `Rss` in bytes of the areas of `/proc/self/smaps` overlapping `[start, start + len)`, and
/// their `AnonHugePages`.
fn smaps_of(start: usize, len: usize) -> anyhow::Result<(u64, u64)> {
    let (s, e) = (start as u64, (start + len) as u64);
    let areas = mmkit::inspect::smaps(std::process::id())?;
    let hit = areas.iter().filter(|a| a.area.start < e && a.area.end > s);
    Ok(hit.fold((0, 0), |(rss, huge), a| (rss + a.stats.rss * 1024, huge + a.stats.anon_huge_pages * 1024)))
}

/// Maps `len` bytes (THP or base pages), touches one byte per base page, returns the time of
/// the touches, the minor faults they took and the `AnonHugePages` observed.
fn first_touch(len: usize, huge: bool) -> anyhow::Result<(Duration, u64, u64, Option<String>)> {
    let mut opts = MapOptions::new();
    opts.len(len);
    if huge {
        opts.huge_pages(HugePages::Transparent);
    } else {
        opts.advice(mmkit::Advice::NoHugePage);
    }
    let mut mem = opts.map_anon()?;
    let fallback = mem.page_outcome().fallback.clone();
    let page = page_size();
    let (f0, _) = mmkit::page_faults();
    let t = Instant::now();
    for i in (0..len).step_by(page) {
        mem[i] = 1;
    }
    let d = t.elapsed();
    let (f1, _) = mmkit::page_faults();
    let huge_bytes = inspect::huge_page_bytes(mem.mapping())?;
    Ok((d, f1 - f0, huge_bytes, fallback))
}

/// The section's title (also shown when it fails).
pub const TITLE: &str = "Anonymous memory: zeroed pages, reservations, fork, huge pages, names";

/// Builds the `anon` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("anon", TITLE);
    let page = page_size();

    // 1. 1 MiB of zero-filled memory: RSS before and after touching it.
    let mut mem = MapOptions::new().len(MIB).map_anon()?;
    // Residency from mincore: exact for this range (smaps areas may merge with neighbours).
    let resident = |m: &mmkit::MmapMut| m.residency(..).map(|r| r.resident_pages() * page as u64);
    let rss_before = resident(&mem)?;
    let zero = mem.iter().all(|&b| b == 0);
    for i in (0..MIB).step_by(page) {
        mem[i] = 1;
    }
    let rss_after = resident(&mem)?;
    mem.purge(..)?;
    let rss_purged = resident(&mem)?;
    s.fact("zero_filled", "1 MiB anonymous map reads as zeros", zero, if zero { "yes" } else { "no" });
    s.fact("rss_before_touch", "  RSS before touching it", rss_before, bytes(rss_before));
    s.fact("rss_after_touch", "  RSS after writing one byte per page", rss_after, bytes(rss_after));
    s.fact("rss_after_purge", "  RSS after purge (MADV_DONTNEED)", rss_purged, bytes(rss_purged));
    drop(mem);

    // 2. A 64 GiB reservation with 8 MiB committed.
    let heap = ReserveOptions::new(64 << 30)
        .align(2 * MIB)
        .reserve()
        .context("the anon section reserves 64 GiB of address space (is `ulimit -v` lower?)")?;
    heap.commit(0, 8 * MIB, Protection::READ_WRITE)?;
    for i in (0..8 * MIB).step_by(page) {
        // SAFETY: the first 8 MiB were committed read-write just above; raw access only.
        unsafe { heap.as_mut_ptr().add(i).write_volatile(1) };
    }
    let (heap_rss, _) = smaps_of(heap.as_ptr() as usize, heap.len())?;
    let total_ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    s.fact(
        "reservation_virtual",
        "64 GiB reservation: virtual size",
        heap.len() as u64,
        format!("{} (machine RAM {})", bytes(heap.len() as u64), bytes(total_ram)),
    );
    s.detail("machine_ram", total_ram);
    s.fact("reservation_rss", "  RSS with 8 MiB committed and touched", heap_rss, bytes(heap_rss));
    heap.decommit(0, 8 * MIB)?;
    let (heap_rss_after, _) = smaps_of(heap.as_ptr() as usize, heap.len())?;
    s.fact("reservation_rss_decommitted", "  RSS after decommit", heap_rss_after, bytes(heap_rss_after));
    drop(heap);

    // 3. Shared vs private across fork.
    let mut shared = MapOptions::new().len(page).map_anon_shared()?;
    let mut private = MapOptions::new().len(page).map_anon()?;
    let (sp, pp) = (shared.as_mut_ptr(), private.as_mut_ptr());
    // SAFETY: the child only stores two bytes into inherited maps (async-signal-safe work).
    unsafe {
        mmkit::process::in_forked_child(|| {
            sp.write_volatile(7);
            pp.write_volatile(7);
            0
        })
    }
    .context("the anon section forks a child to write to shared and private memory")?;
    let (shared_seen, private_seen) = (shared[0] == 7, private[0] == 7);
    let yes = |b: bool| if b { "yes" } else { "no" };
    s.fact(
        "shared_anon_seen_across_fork",
        "MAP_SHARED|MAP_ANONYMOUS: child's write seen",
        shared_seen,
        yes(shared_seen),
    );
    s.fact(
        "private_anon_seen_across_fork",
        "MAP_PRIVATE|MAP_ANONYMOUS: child's write seen",
        private_seen,
        yes(private_seen),
    );
    anyhow::ensure!(
        shared_seen && !private_seen,
        "the kernel did not behave as shared/private anonymous memory promise"
    );
    private[0] = 0;
    drop((shared, private));

    // 4. THP vs base pages: first touch of 256 MiB (median of 3, interleaved).
    let len = 256 * MIB;
    let mut base_t = Vec::new();
    let mut thp_t = Vec::new();
    let (mut base_faults, mut thp_faults, mut thp_huge, mut fallback) = (0, 0, 0, None);
    for _ in 0..3 {
        check_interrupted()?;
        let (d, f, _, _) = first_touch(len, false)?;
        base_t.push(d);
        base_faults = f;
        let (d, f, h, fb) = first_touch(len, true)?;
        thp_t.push(d);
        thp_faults = f;
        thp_huge = h;
        fallback = fb;
    }
    base_t.sort();
    thp_t.sort();
    let (b, t) = (base_t[1], thp_t[1]);
    s.fact(
        "first_touch_base_ns",
        &format!("first touch of 256 MiB, {} pages", bytes(page as u64)),
        b.as_nanos() as u64,
        format!("{:>10}  {base_faults} minor faults", duration(b)),
    );
    s.fact(
        "first_touch_thp_ns",
        "  with transparent huge pages",
        t.as_nanos() as u64,
        format!("{:>10}  {thp_faults} minor faults  ({})", duration(t), speed_against(b, t)),
    );
    s.detail("first_touch_base_minor_faults", base_faults);
    s.detail("first_touch_thp_minor_faults", thp_faults);
    s.fact("thp_anon_huge_pages", "  AnonHugePages after the touch (smaps)", thp_huge, bytes(thp_huge));
    match fallback {
        Some(why) => s.note(format!("THP fell back: {why}")),
        None => {
            // The PMD size follows the page size (2 MiB with 4 KiB pages, 32 MiB with 16 KiB).
            let thp = |f: &str| std::fs::read_to_string(format!("/sys/kernel/mm/transparent_hugepage/{f}")).ok();
            let pmd = thp("hpage_pmd_size")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or_else(|| "PMD".to_owned(), bytes);
            let mode = thp("enabled")
                .and_then(|v| Some(v.split_once('[')?.1.split_once(']')?.0.to_owned()))
                .unwrap_or_else(|| "unknown".to_owned());
            s.note(format!(
                "the THP region is {pmd}-aligned and advised MADV_HUGEPAGE (THP mode here: {mode}); each fault maps {pmd}"
            ))
        }
    }

    // 5. A named region in /proc/self/maps.
    let named = MapOptions::new().len(2 * page).name("mmkit-tour").map_anon()?;
    let addr = format!("{:x}-", named.as_ptr() as usize);
    let maps = std::fs::read_to_string("/proc/self/maps").on("read", Path::new("/proc/self/maps"))?;
    let line =
        maps.lines().find(|l| l.starts_with(&addr)).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    s.fact(
        "named_region_applied",
        "named anonymous region (PR_SET_VMA_ANON_NAME)",
        named.mapping().name_applied(),
        if named.mapping().name_applied() { "applied" } else { "no-op: kernel lacks CONFIG_ANON_VMA_NAME" },
    );
    s.fact("named_region_maps_line", "  its /proc/self/maps line", line.clone(), line);
    let shm = mmkit::SharedMemory::create("mmkit-tour", page as u64)?;
    let raw = shm.map_raw()?;
    let addr = format!("{:x}-", raw.as_ptr() as usize);
    let line = maps_line(&addr)?;
    s.fact("memfd_maps_line", "  a memfd's line (names work everywhere)", line.clone(), line);
    s.note("the 1 MiB map's residency comes from mincore (reading zeros maps the shared zero page, which is not resident memory of ours); the reservation's RSS and AnonHugePages from /proc/self/smaps; fault counts from getrusage");
    Ok(s)
}

fn maps_line(prefix: &str) -> anyhow::Result<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").on("read", Path::new("/proc/self/maps"))?;
    Ok(maps.lines().find(|l| l.starts_with(prefix)).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
}
