//! `mmkit maps`: a process's mappings with their memory cost, a `pmap -X` peer.
//!
//! Reads `/proc/<pid>/smaps`, prints one row per mapping and a summary grouped by kind (file,
//! anonymous, named anonymous, heap, stack, device, special), or the same as JSON.

use std::collections::BTreeMap;

use anyhow::Context;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use mmkit::inspect::{self, MapKind, MemStats, SmapsEntry};
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

#[derive(Debug, Serialize)]
struct MappingJson {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    device: String,
    inode: u64,
    path: String,
    deleted: bool,
    kind: MapKind,
    #[serde(flatten)]
    kib: Kib,
    thp_eligible: Option<bool>,
    vm_flags: Vec<String>,
}

#[derive(Debug, Serialize)]
struct GroupJson {
    mappings: u64,
    #[serde(flatten)]
    kib: Kib,
}

#[derive(Debug, Serialize)]
struct ReportJson {
    pid: u32,
    mappings: Vec<MappingJson>,
    by_kind: BTreeMap<MapKind, GroupJson>,
    total: GroupJson,
}

/// Runs `mmkit maps`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let pid = args.pid.unwrap_or_else(std::process::id);
    let smaps = inspect::smaps(pid).with_context(|| format!("reading the mappings of process {pid}"))?;
    let kind = args.kind;
    let selected: Vec<&SmapsEntry> = smaps
        .iter()
        .filter(|e| kind.is_none_or(|k| e.area.kind() == k))
        .filter(|e| args.filter.as_ref().is_none_or(|f| e.area.backing.display().contains(f.as_str())))
        .collect();
    let report = build_report(pid, &selected);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_tables(&report, args.summary)?;
    }
    Ok(())
}

fn build_report(pid: u32, entries: &[&SmapsEntry]) -> ReportJson {
    let mut by_kind: BTreeMap<MapKind, (u64, MemStats)> = BTreeMap::new();
    let mut total = MemStats::default();
    let mappings = entries
        .iter()
        .map(|e| {
            let a = &e.area;
            let group = by_kind.entry(a.kind()).or_default();
            group.0 += 1;
            group.1.add(&e.stats);
            total.add(&e.stats);
            MappingJson {
                start: a.start,
                end: a.end,
                perms: a.perms.to_string(),
                offset: a.offset,
                device: a.device.to_string(),
                inode: a.inode,
                path: match &a.backing {
                    inspect::Backing::File { path, .. } => path.to_string_lossy().into_owned(),
                    other => other.display(),
                },
                deleted: matches!(a.backing, inspect::Backing::File { deleted: true, .. }),
                kind: a.kind(),
                kib: Kib::of(&e.stats),
                thp_eligible: e.thp_eligible,
                vm_flags: e.vm_flags.clone(),
            }
        })
        .collect();
    ReportJson {
        pid,
        mappings,
        by_kind: by_kind.into_iter().map(|(k, (n, s))| (k, GroupJson { mappings: n, kib: Kib::of(&s) })).collect(),
        total: GroupJson { mappings: entries.len() as u64, kib: Kib::of(&total) },
    }
}

fn print_tables(report: &ReportJson, summary_only: bool) -> anyhow::Result<()> {
    outln!("{}:   {}", report.pid, process_name(report.pid))?;
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
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(report.mappings.len() + 2);
        for m in &report.mappings {
            let k = &m.kib;
            let mut name = m.path.clone();
            if m.deleted {
                name.push_str(" (deleted)");
            }
            rows.push(vec![
                format!("{:012x}", m.start),
                m.perms.clone(),
                format!("{:08x}", m.offset),
                m.device.clone(),
                m.inode.to_string(),
                k.size_kib.to_string(),
                k.rss_kib.to_string(),
                k.pss_kib.to_string(),
                k.anonymous_kib.to_string(),
                k.anon_huge_pages_kib.to_string(),
                k.file_pmd_mapped_kib.to_string(),
                k.swap_kib.to_string(),
                k.locked_kib.to_string(),
                m.thp_eligible.map_or("-", |b| if b { "1" } else { "0" }).to_owned(),
                name,
            ]);
        }
        let k = &report.total.kib;
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
        let mut rule = vec![String::new(); 5];
        rule.extend(sums.iter().map(|_| "=====".to_owned()));
        rule.extend([String::new(), String::new()]);
        rows.push(rule);
        let mut total = vec![String::new(); 5];
        total.extend(sums.iter().map(u64::to_string));
        total.extend([String::new(), "KiB".to_owned()]);
        rows.push(total);
        out!("{}", render_columns(&header, &rows, &[2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]))?;
        outln!()?;
    }
    let mut s =
        table(&["Kind", "Mappings", "Size KiB", "Rss KiB", "Pss KiB", "Anonymous KiB", "Swap KiB", "Locked KiB"]);
    let groups = report.by_kind.iter().map(|(k, g)| (k.name(), g)).chain([("total", &report.total)]);
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

/// Renders rows as space-separated columns padded to their widest cell (right-aligned where
/// `right` says), the last column unpadded. Used for the long per-mapping and per-file tables,
/// where a general table layout would cost more than reading `/proc` does.
pub(crate) fn render_columns(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::with_capacity((rows.len() + 1) * (widths.iter().sum::<usize>() + 2 * widths.len() + 1));
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if !first {
                out.push_str("  ");
            }
            first = false;
            let pad = w.saturating_sub(cell.chars().count());
            let last = i + 1 == widths.len();
            if right.contains(&i) {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    t
}

fn right_align(t: &mut Table, columns: &[usize]) {
    for &c in columns {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
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
    fn columns_pad_to_the_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "1".to_owned(), "x y".to_owned()],
            vec!["bbb".to_owned(), "22".to_owned(), String::new()],
        ];
        let text = render_columns(&["K", "N", "Path"], &rows, &[1]);
        assert_eq!(text, "K     N  Path\na     1  x y\nbbb  22\n");
    }

    #[test]
    fn kinds_parse_by_their_table_names() {
        assert_eq!(parse_kind("named_anonymous"), Ok(MapKind::NamedAnonymous));
        assert_eq!(parse_kind("named-anonymous"), Ok(MapKind::NamedAnonymous));
        assert_eq!(parse_kind("stack"), Ok(MapKind::Stack));
        assert!(parse_kind("nope").unwrap_err().contains("one of: file, anonymous"));
    }
}
