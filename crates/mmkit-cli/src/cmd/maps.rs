//! `mmkit maps`: a process's mappings with their memory cost, a `pmap -X` peer.
//!
//! Reads `/proc/<pid>/smaps`, prints one row per mapping and a summary grouped by kind (file,
//! anonymous, named anonymous, heap, stack, device, special), or the same as JSON.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::cli::table::{render_columns, right_align, table, Cells};
use anyhow::Context;

use mmkit::inspect::{self, Backing, DeviceId, MapKind, MemStats, Perms, SmapsEntry};
use serde::Serialize;

/// Arguments of `mmkit maps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Process ID (default: this `mmkit` process itself).
    #[arg(value_name = "PID")]
    pub pid: Option<u32>,
    /// Show only mappings whose path or name contains this text (e.g. `libc`, `[heap]`,
    /// `anon:`).
    #[arg(long, short = 'f', value_name = "TEXT")]
    pub filter: Option<String>,
    /// Show only mappings of this kind: file, anonymous, named_anonymous, heap, stack, device,
    /// special.
    #[arg(long, short = 'k', value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<MapKind>,
    /// Print only the summary by kind and the totals.
    #[arg(long, short = 's')]
    pub summary: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a mapping kind by its table/JSON name (`named_anonymous`; `named-anonymous` too).
fn parse_kind(s: &str) -> Result<MapKind, String> {
    let want = s.replace('-', "_");
    MapKind::ALL.into_iter().find(|k| k.name() == want).ok_or_else(|| {
        let names: Vec<_> = MapKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kind {s:?} (one of: {})", names.join(", "))
    })
}

/// Counters of a mapping or a group, in KiB (JSON keys end in `_kib`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct Kib {
    size_kib: u64,
    rss_kib: u64,
    pss_kib: u64,
    pss_dirty_kib: u64,
    shared_clean_kib: u64,
    shared_dirty_kib: u64,
    private_clean_kib: u64,
    private_dirty_kib: u64,
    referenced_kib: u64,
    anonymous_kib: u64,
    ksm_kib: u64,
    lazy_free_kib: u64,
    anon_huge_pages_kib: u64,
    shmem_pmd_mapped_kib: u64,
    file_pmd_mapped_kib: u64,
    shared_hugetlb_kib: u64,
    private_hugetlb_kib: u64,
    swap_kib: u64,
    swap_pss_kib: u64,
    locked_kib: u64,
}

impl Kib {
    fn of(s: &MemStats) -> Kib {
        Kib {
            size_kib: s.size,
            rss_kib: s.rss,
            pss_kib: s.pss,
            pss_dirty_kib: s.pss_dirty,
            shared_clean_kib: s.shared_clean,
            shared_dirty_kib: s.shared_dirty,
            private_clean_kib: s.private_clean,
            private_dirty_kib: s.private_dirty,
            referenced_kib: s.referenced,
            anonymous_kib: s.anonymous,
            ksm_kib: s.ksm,
            lazy_free_kib: s.lazy_free,
            anon_huge_pages_kib: s.anon_huge_pages,
            shmem_pmd_mapped_kib: s.shmem_pmd_mapped,
            file_pmd_mapped_kib: s.file_pmd_mapped,
            shared_hugetlb_kib: s.shared_hugetlb,
            private_hugetlb_kib: s.private_hugetlb,
            swap_kib: s.swap,
            swap_pss_kib: s.swap_pss,
            locked_kib: s.locked,
        }
    }
}

/// One mapping in the JSON report, borrowed from the parsed smaps (no copies per mapping).
#[derive(Debug, Serialize)]
struct MappingJson<'a> {
    start: u64,
    end: u64,
    #[serde(serialize_with = "as_display")]
    perms: Perms,
    offset: u64,
    #[serde(serialize_with = "as_display")]
    device: DeviceId,
    inode: u64,
    path: Cow<'a, str>,
    deleted: bool,
    kind: MapKind,
    #[serde(flatten)]
    kib: Kib,
    thp_eligible: Option<bool>,
    vm_flags: &'a [String],
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[derive(Debug, Serialize)]
struct GroupJson {
    mappings: u64,
    #[serde(flatten)]
    kib: Kib,
}

#[derive(Debug, Serialize)]
struct ReportJson<'a> {
    pid: u32,
    mappings: Vec<MappingJson<'a>>,
    by_kind: BTreeMap<MapKind, GroupJson>,
    total: GroupJson,
}

/// The pathname column as the kernel prints it, borrowed where it can be.
fn display_name(b: &Backing) -> Cow<'_, str> {
    match b {
        Backing::Anonymous => Cow::Borrowed(""),
        Backing::File { deleted: true, .. } => Cow::Owned(b.display()),
        Backing::File { path, deleted: false } => path.to_string_lossy(),
        Backing::Pseudo(p) => Cow::Borrowed(p),
    }
}

/// Runs `mmkit maps`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let pid = args.pid.unwrap_or_else(std::process::id);
    let smaps = inspect::smaps(pid).with_context(|| format!("reading the mappings of process {pid}"))?;
    let kind = args.kind;
    let selected: Vec<&SmapsEntry> = smaps
        .iter()
        .filter(|e| kind.is_none_or(|k| e.area.kind() == k))
        .filter(|e| args.filter.as_ref().is_none_or(|f| display_name(&e.area.backing).contains(f.as_str())))
        .collect();
    let (by_kind, total) = summarize(&selected);
    if args.json {
        let report = ReportJson { pid, mappings: selected.iter().map(|e| mapping_json(e)).collect(), by_kind, total };
        crate::cli::json::print(&report)?;
    } else {
        print_tables(pid, &selected, &by_kind, &total, args.summary)?;
    }
    Ok(())
}

/// The counters summed by kind and over all `entries`.
fn summarize(entries: &[&SmapsEntry]) -> (BTreeMap<MapKind, GroupJson>, GroupJson) {
    let mut by_kind: BTreeMap<MapKind, (u64, MemStats)> = BTreeMap::new();
    let mut total = MemStats::default();
    for e in entries {
        let group = by_kind.entry(e.area.kind()).or_default();
        group.0 += 1;
        group.1.add(&e.stats);
        total.add(&e.stats);
    }
    (
        by_kind.into_iter().map(|(k, (n, s))| (k, GroupJson { mappings: n, kib: Kib::of(&s) })).collect(),
        GroupJson { mappings: entries.len() as u64, kib: Kib::of(&total) },
    )
}

fn mapping_json<'a>(e: &'a SmapsEntry) -> MappingJson<'a> {
    let a = &e.area;
    MappingJson {
        start: a.start,
        end: a.end,
        perms: a.perms,
        offset: a.offset,
        device: a.device,
        inode: a.inode,
        path: match &a.backing {
            Backing::File { path, .. } => path.to_string_lossy(),
            other => display_name(other),
        },
        deleted: matches!(a.backing, Backing::File { deleted: true, .. }),
        kind: a.kind(),
        kib: Kib::of(&e.stats),
        thp_eligible: e.thp_eligible,
        vm_flags: &e.vm_flags,
    }
}

fn print_tables(
    pid: u32,
    entries: &[&SmapsEntry],
    by_kind: &BTreeMap<MapKind, GroupJson>,
    total: &GroupJson,
    summary_only: bool,
) -> anyhow::Result<()> {
    outln!("{}:   {}", pid, process_name(pid))?;
    if !summary_only {
        let header = [
            "Address",
            "Perm",
            "Offset",
            "Device",
            "Inode",
            "Size",
            "Rss",
            "Pss",
            "Anonymous",
            "AnonHuge",
            "FilePmd",
            "Swap",
            "Locked",
            "THP",
            "Mapping",
        ];
        let mut rows = Cells::new(header.len(), entries.len() + 2);
        for e in entries {
            let (a, k) = (&e.area, &e.stats);
            rows.hex(a.start, 12);
            rows.display(a.perms);
            rows.hex(a.offset, 8);
            rows.display(a.device);
            rows.dec(a.inode);
            for v in [k.size, k.rss, k.pss, k.anonymous, k.anon_huge_pages, k.file_pmd_mapped, k.swap, k.locked] {
                rows.dec(v);
            }
            rows.text(e.thp_eligible.map_or("-", |b| if b { "1" } else { "0" }));
            rows.text(&display_name(&a.backing));
        }
        let k = &total.kib;
        let sums = [
            k.size_kib,
            k.rss_kib,
            k.pss_kib,
            k.anonymous_kib,
            k.anon_huge_pages_kib,
            k.file_pmd_mapped_kib,
            k.swap_kib,
            k.locked_kib,
        ];
        for cell in (0..5).map(|_| "").chain(sums.iter().map(|_| "=====")).chain(["", ""]) {
            rows.text(cell);
        }
        (0..5).for_each(|_| rows.text(""));
        sums.iter().for_each(|v| rows.dec(*v));
        rows.text("");
        rows.text("KiB");
        out!("{}", render_columns(&header, &rows, &[2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]))?;
        outln!()?;
    }
    let mut s =
        table(&["Kind", "Mappings", "Size KiB", "Rss KiB", "Pss KiB", "Anonymous KiB", "Swap KiB", "Locked KiB"]);
    let groups = by_kind.iter().map(|(k, g)| (k.name(), g)).chain([("total", total)]);
    for (name, g) in groups {
        let k = &g.kib;
        s.add_row(vec![
            name.to_owned(),
            g.mappings.to_string(),
            k.size_kib.to_string(),
            k.rss_kib.to_string(),
            k.pss_kib.to_string(),
            k.anonymous_kib.to_string(),
            k.swap_kib.to_string(),
            k.locked_kib.to_string(),
        ]);
    }
    right_align(&mut s, &[1, 2, 3, 4, 5, 6, 7]);
    outln!("{s}")
}

/// The process's command line (as `pmap` prints it), or its `comm` name.
fn process_name(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    if words.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_their_table_names() {
        assert_eq!(parse_kind("named_anonymous"), Ok(MapKind::NamedAnonymous));
        assert_eq!(parse_kind("named-anonymous"), Ok(MapKind::NamedAnonymous));
        assert_eq!(parse_kind("stack"), Ok(MapKind::Stack));
        assert!(parse_kind("nope").unwrap_err().contains("one of: file, anonymous"));
    }
}
