//! `mmkit maps`: a process's mappings with their memory cost, a `pmap -X` peer.
//!
//! Reads `/proc/<pid>/smaps`, prints one row per mapping and a summary grouped by kind (file,
//! anonymous, named anonymous, heap, stack, device, special), or the same as JSON.
//!
//! A process may hold 60,000 mappings (43 MB of smaps text), and the kernel's generation of
//! that text is most of what any reader of it pays. So the mappings are never collected:
//! [`mmkit::inspect::smaps_for_each`] hands them over one at a time as smaps is read; the table
//! keeps a compact row per mapping (the widths of its columns are known only at the end) and
//! writes it through one byte buffer; the JSON is written as the mappings arrive, into a
//! buffer flushed to stdout every [`JSON_FLUSH`] bytes.
//!
//! A list is only known to be whole once the read ends (the process may exit meanwhile, see
//! `smaps_for_each`). The table is printed after that. The JSON of a long list has been partly
//! printed by then: when the read then fails, the document is closed after the mappings read
//! so far with `"error"` (the message) and `"complete": false` instead of the groups and the
//! totals, so it still parses; `mmkit: <error>` on stderr says so too; exit 1.

use mmkit::inspect::{self, Backing, MapKind, MemStats, Perms, SmapsEntry};

use crate::cli::json;
use crate::cli::output::write_bytes;
use crate::cli::table::{self, right_align, Columns};

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
    /// Print only the summary by kind and the totals (with --json: `by_kind` and `total`, no
    /// `mappings`).
    #[arg(long, short = 's')]
    pub summary: bool,
    /// Print JSON instead of a table. The mappings are printed as they are read: if the process
    /// exits during the read of a long list, the document is closed after the mappings read so
    /// far with `"error"` and `"complete": false` (no `by_kind`, no `total`), and mmkit exits 1
    /// with an error.
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

/// The JSON is written to stdout whenever this much of it is buffered.
const JSON_FLUSH: usize = 256 << 10;
/// Room past [`JSON_FLUSH`] for the mapping being written when the buffer reaches it.
const JSON_SLACK: usize = 4 << 10;

/// The parent of process `pid` if it is a zombie (state `Z` in `/proc/PID/stat`), else `None`.
fn zombie_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; the name may hold spaces and parentheses: after the last `)`.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    (rest.next()? == "Z").then_some(())?;
    rest.next()?.parse().ok()
}

/// Runs `mmkit maps`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let pid = args.pid.unwrap_or_else(std::process::id);
    let mut sink = if args.json {
        Sink::Json(JsonOut::start(pid, &command_line(pid), args.summary))
    } else {
        Sink::Table(TableOut::new(args.summary))
    };
    let mut groups = Groups::default();
    let mut failed: Option<anyhow::Error> = None;
    let mut read_any = false;
    let read = inspect::smaps_for_each(pid, |e| {
        read_any = true;
        let kind = e.area.kind();
        if args.kind.is_some_and(|k| k != kind) {
            return std::ops::ControlFlow::Continue(());
        }
        let name = display_name(&e.area.backing);
        if args.filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            return std::ops::ControlFlow::Continue(());
        }
        groups.add(kind, &e.stats);
        let written = match &mut sink {
            Sink::Table(t) => {
                t.add(e, &table::printable(&name));
                Ok(())
            }
            Sink::Json(j) => j.mapping(e, kind),
        };
        match written {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(err) => {
                failed = Some(err);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    if let Some(err) = failed {
        return Err(err);
    }
    if let Err(e) = read {
        let cut = matches!(&sink, Sink::Json(j) if j.flushed);
        // A zombie whose first read failed (ESRCH) had exited before: the library's "exited
        // while its smaps was read" would mislead (with part of the list read, it says true).
        let zombie = if e.errno() == Some(libc::ESRCH) && !read_any { zombie_parent(pid) } else { None };
        let what = match e.errno() {
            // /proc/PID is gone: the process does not exist (or has exited meanwhile).
            Some(libc::ENOENT | libc::ESRCH) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                format!("reading the mappings of process {pid}: no such process")
            }
            _ if zombie.is_some() => format!(
                "reading the mappings of process {pid}: it has exited and has no mappings left (a zombie: its \
                 parent, process {}, has not reaped it)",
                zombie.unwrap_or_default()
            ),
            Some(libc::EACCES | libc::EPERM) => format!(
                "reading the mappings of process {pid}: not allowed (reading another process's mappings needs the right to ptrace it: the same user \
                 and /proc/sys/kernel/yama/ptrace_scope allowing it, or CAP_SYS_PTRACE)"
            ),
            _ => format!("reading the mappings of process {pid}"),
        };
        let err = if zombie.is_some() { anyhow::anyhow!("{what}") } else { anyhow::Error::new(e).context(what) };
        if let (true, Sink::Json(j)) = (cut, sink) {
            // Part of the document is out: it is closed with the error, so that it parses
            // (`"complete": false`); the error goes to stderr as well, and the exit is 1.
            j.abort(&format!("{err:#}"))?;
            return Err(err.context("the JSON on stdout is cut there (\"complete\": false)"));
        }
        return Err(err);
    }
    groups.sum();
    match sink {
        Sink::Json(j) => j.finish(&groups),
        Sink::Table(t) => t.print(pid, &groups),
    }
}

/// Where the mappings go as they are read.
enum Sink {
    Table(TableOut),
    Json(JsonOut),
}

/// The pathname column as the kernel prints it, borrowed where it can be.
fn display_name(b: &Backing) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match b {
        Backing::Anonymous => Cow::Borrowed(""),
        Backing::File { deleted: true, .. } => Cow::Owned(b.display()),
        Backing::File { path, deleted: false } => path.to_string_lossy(),
        Backing::Pseudo(p) => Cow::Borrowed(p),
    }
}

/// The counters summed by kind (in [`MapKind::ALL`]'s order) and over all mappings shown (the
/// total is summed from the kinds at the end: one addition per mapping, not two).
#[derive(Default)]
struct Groups {
    by_kind: [(u64, MemStats); MapKind::ALL.len()],
    total: (u64, MemStats),
}

impl Groups {
    fn add(&mut self, kind: MapKind, stats: &MemStats) {
        let i = MapKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let g = &mut self.by_kind[i];
        g.0 += 1;
        g.1.add(stats);
    }

    /// Sums the kinds into the total (once, after the last [`add`](Self::add)).
    fn sum(&mut self) {
        let mut total = (0, MemStats::default());
        for (n, s) in &self.by_kind {
            total.0 += n;
            total.1.add(s);
        }
        self.total = total;
    }

    /// The kinds that have mappings, in display order, with their counts and sums.
    fn kinds(&self) -> impl Iterator<Item = (MapKind, &(u64, MemStats))> {
        MapKind::ALL.into_iter().zip(&self.by_kind).filter(|(_, g)| g.0 > 0)
    }
}

// ---- the table ----------------------------------------------------------------------------------

const HEADER: [&str; 15] = [
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
/// Right-aligned columns: offset, inode, the counters and THP.
const RIGHT: [usize; 11] = [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
/// The first counter column (`Size`); eight follow in [`counters`]'s order.
const FIRST_COUNTER: usize = 5;
const THP: usize = 13;
const MAPPING: usize = 14;

/// The counters the table shows, in its columns' order.
fn counters(s: &MemStats) -> [u64; 8] {
    [s.size, s.rss, s.pss, s.anonymous, s.anon_huge_pages, s.file_pmd_mapped, s.swap, s.locked]
}

/// One row of the per-mapping table, kept compact until the widths are known.
struct Row {
    start: u64,
    offset: u64,
    inode: u64,
    device: (u32, u32),
    perms: Perms,
    thp: Option<bool>,
    counters: [u64; 8],
    /// The mapping's name: `names[name.0..name.1]`.
    name: (usize, usize),
}

struct TableOut {
    summary_only: bool,
    rows: Vec<Row>,
    names: String,
    columns: Columns,
    /// The largest start address, offset, inode and counters (in [`counters`]' order) of the
    /// rows: their columns are as wide as the largest number's digits, fitted once at the end.
    largest: [u64; 3 + 8],
}

impl TableOut {
    fn new(summary_only: bool) -> TableOut {
        TableOut {
            summary_only,
            rows: Vec::new(),
            names: String::new(),
            columns: Columns::new(&HEADER, &RIGHT),
            largest: [0; 3 + 8],
        }
    }

    fn add(&mut self, e: &SmapsEntry, name: &str) {
        if self.summary_only {
            return;
        }
        let a = &e.area;
        let counters = counters(&e.stats);
        let l = &mut self.largest;
        for (m, v) in l.iter_mut().zip([a.start, a.offset, a.inode].iter().chain(&counters)) {
            *m = (*m).max(*v);
        }
        let c = &mut self.columns;
        c.fit(3, table::hex_len(a.device.major.into(), 2) + 1 + table::hex_len(a.device.minor.into(), 2));
        c.fit_text(MAPPING, name);
        let from = self.names.len();
        self.names.push_str(name);
        self.rows.push(Row {
            start: a.start,
            offset: a.offset,
            inode: a.inode,
            device: (a.device.major, a.device.minor),
            perms: a.perms,
            thp: e.thp_eligible,
            counters,
            name: (from, self.names.len()),
        });
    }

    fn print(mut self, pid: u32, groups: &Groups) -> anyhow::Result<()> {
        outln!("{}:   {}", pid, process_name(pid))?;
        if !self.summary_only {
            self.print_rows(&counters(&groups.total.1))?;
            outln!()?;
        }
        let mut s = table::table(&[
            "Kind",
            "Mappings",
            "Size KiB",
            "Rss KiB",
            "Pss KiB",
            "Anonymous KiB",
            "Swap KiB",
            "Locked KiB",
        ]);
        let rows = groups.kinds().map(|(k, g)| (k.name(), g)).chain([("total", &groups.total)]);
        for (name, (n, k)) in rows {
            s.add_row(vec![
                name.to_owned(),
                n.to_string(),
                k.size.to_string(),
                k.rss.to_string(),
                k.pss.to_string(),
                k.anonymous.to_string(),
                k.swap.to_string(),
                k.locked.to_string(),
            ]);
        }
        right_align(&mut s, &[1, 2, 3, 4, 5, 6, 7]);
        outln!("{s}")
    }

    /// The per-mapping rows and the totals under them, written through one buffer.
    fn print_rows(&mut self, sums: &[u64; 8]) -> anyhow::Result<()> {
        let [start, offset, inode, largest @ ..] = self.largest;
        let c = &mut self.columns;
        if !self.rows.is_empty() {
            c.fit(0, table::hex_len(start, 12));
            c.fit(2, table::hex_len(offset, 8));
            c.fit(4, table::dec_len(inode));
            for (i, v) in largest.iter().enumerate() {
                c.fit(FIRST_COUNTER + i, table::dec_len(*v));
            }
        }
        for (i, v) in sums.iter().enumerate() {
            c.fit(FIRST_COUNTER + i, table::dec_len(*v).max(5));
        }
        let c = &self.columns;
        let mut out = Vec::with_capacity(JSON_FLUSH + JSON_SLACK);
        c.header(&mut out, &HEADER);
        // Every column but the mapping's name has its final width: those cells are laid out
        // at their places in one line of spaces, copied whole, and the name follows.
        let mut row = c.fixed_row(MAPPING);
        for r in &self.rows {
            row.clear();
            row.hex(0, r.start, 12);
            row.text(1, &perms(r.perms));
            row.hex(2, r.offset, 8);
            let mut device = [0u8; 33];
            row.text(3, device_id(&mut device, r.device));
            row.dec(4, r.inode);
            for (i, v) in r.counters.iter().enumerate() {
                row.dec(FIRST_COUNTER + i, *v);
            }
            row.text(
                THP,
                match r.thp {
                    None => b"-",
                    Some(true) => b"1",
                    Some(false) => b"0",
                },
            );
            out.extend_from_slice(row.line());
            out.extend_from_slice(&self.names.as_bytes()[r.name.0..r.name.1]);
            c.end_row(&mut out);
            if out.len() >= JSON_FLUSH {
                write_bytes(&out)?;
                out.clear();
            }
        }
        for col in 0..HEADER.len() {
            let counter = (FIRST_COUNTER..FIRST_COUNTER + 8).contains(&col);
            c.text(&mut out, col, if counter { "=====" } else { "" });
        }
        c.end_row(&mut out);
        for col in 0..FIRST_COUNTER {
            c.text(&mut out, col, "");
        }
        for (i, v) in sums.iter().enumerate() {
            c.dec(&mut out, FIRST_COUNTER + i, *v);
        }
        c.text(&mut out, THP, "");
        c.text(&mut out, MAPPING, "KiB");
        c.end_row(&mut out);
        write_bytes(&out)
    }
}

/// The `rwxp` column, as [`Perms`]' `Display` writes it.
fn perms(p: Perms) -> [u8; 4] {
    let bit = |on: bool, c: u8| if on { c } else { b'-' };
    [bit(p.read, b'r'), bit(p.write, b'w'), bit(p.exec, b'x'), if p.shared { b's' } else { b'p' }]
}

/// `major:minor` in hex, at least two digits each, as [`mmkit::inspect::DeviceId`]'s `Display`
/// writes it, in `buf`.
fn device_id(buf: &mut [u8; 33], (major, minor): (u32, u32)) -> &[u8] {
    if major < 0x100 && minor < 0x100 {
        // Two digits each, as nearly every device is.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digit = |v: u32, shift: u32| HEX[((v >> shift) & 0xf) as usize];
        buf[..5].copy_from_slice(&[digit(major, 4), digit(major, 0), b':', digit(minor, 4), digit(minor, 0)]);
        return &buf[..5];
    }
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    let (a, b) = (table::hex(&mut a, major.into(), 2), table::hex(&mut b, minor.into(), 2));
    buf[..a.len()].copy_from_slice(a);
    buf[a.len()] = b':';
    buf[a.len() + 1..a.len() + 1 + b.len()].copy_from_slice(b);
    &buf[..a.len() + 1 + b.len()]
}

/// The process's command line (as `pmap` prints it), or its `comm` name, [`table::printable`]: the
/// process chose both.
fn process_name(pid: u32) -> String {
    table::printable(&command_line(pid)).into_owned()
}

/// The process's command line, its words joined by spaces (lossy where not UTF-8), or its
/// `comm` name when it has none (a kernel thread, a zombie); empty when neither can be read.
fn command_line(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    if words.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
    } else {
        words.join(" ")
    }
}

// ---- JSON ---------------------------------------------------------------------------------------

/// The JSON document, written by hand in serde_json's pretty layout as the mappings arrive: a
/// serializer per mapping costs more than reading the mapping does.
///
/// ```text
/// { "pid": N, "command": "...", "mappings": [ {start, end, perms, offset, device, inode, path, deleted, kind,
///   <counters>_kib, thp_eligible, vm_flags}, ... ], "by_kind": { kind: {mappings,
///   <counters>_kib} }, "total": {mappings, <counters>_kib} }
/// ```
///
/// With `--summary` the `mappings` array is left out.
struct JsonOut {
    out: Vec<u8>,
    /// Mappings written so far.
    count: u64,
    /// `--summary`: no `mappings` array, only the groups and the totals.
    summary_only: bool,
    /// Part of the document has gone to stdout.
    flushed: bool,
    /// The last mapping's counters ([`kib_values`]) and their fields as written.
    last_kib: Option<[u64; 20]>,
    kib_json: Vec<u8>,
}

impl JsonOut {
    /// Starts the document of process `pid`, whose command line is `command` (as the table's
    /// first line names it).
    fn start(pid: u32, command: &str, summary_only: bool) -> JsonOut {
        let mut out = Vec::with_capacity(JSON_FLUSH + JSON_SLACK);
        out.extend_from_slice(b"{\n  \"pid\": ");
        push_dec(&mut out, pid.into());
        key(&mut out, 2, "command", true);
        json::push_str(&mut out, command);
        if !summary_only {
            out.extend_from_slice(b",\n  \"mappings\": [");
        }
        JsonOut { out, count: 0, summary_only, flushed: false, last_kib: None, kib_json: Vec::new() }
    }

    /// Writes one mapping. Every copy has a size known when compiled (a copy of a few
    /// moves, no call) or is cut from one (see [`push_prefix`]): a call per field would cost
    /// more than the field.
    fn mapping(&mut self, e: &SmapsEntry, kind: MapKind) -> anyhow::Result<()> {
        if self.summary_only {
            return Ok(());
        }
        let o = &mut self.out;
        if self.count == 0 {
            o.extend_from_slice(b"\n    {");
        } else {
            o.extend_from_slice(b",\n    {");
        }
        self.count += 1;
        let a = &e.area;
        o.extend_from_slice(b"\n      \"start\": ");
        push_dec(o, a.start);
        o.extend_from_slice(b",\n      \"end\": ");
        push_dec(o, a.end);
        o.extend_from_slice(b",\n      \"perms\": \"");
        o.extend_from_slice(&perms(a.perms));
        o.extend_from_slice(b"\",\n      \"offset\": ");
        push_dec(o, a.offset);
        o.extend_from_slice(b",\n      \"device\": \"");
        let mut device = [0u8; 33];
        let n = device_id(&mut device, (a.device.major, a.device.minor)).len();
        push_prefix(o, &device, n);
        o.extend_from_slice(b"\",\n      \"inode\": ");
        push_dec(o, a.inode);
        o.extend_from_slice(b",\n      \"path\": ");
        match &a.backing {
            Backing::Anonymous => o.extend_from_slice(b"\"\""),
            Backing::File { path, .. } => {
                json::push_str(o, &path.to_string_lossy());
                json::push_path_bytes(o, "      ", "path_bytes", path);
            }
            other => json::push_str(o, &display_name(other)),
        }
        if matches!(a.backing, Backing::File { deleted: true, .. }) {
            o.extend_from_slice(b",\n      \"deleted\": true,\n      \"kind\": ");
        } else {
            o.extend_from_slice(b",\n      \"deleted\": false,\n      \"kind\": ");
        }
        // A kind's name has nothing to escape.
        let (name, len) = &KIND_JSON[kind as usize];
        push_prefix(o, name, *len);
        // Areas in a row often have the same counters: their fields are copied as written
        // for the last area.
        let kib = kib_values(&e.stats);
        if self.last_kib.as_ref() == Some(&kib) {
            o.extend_from_slice(&self.kib_json);
        } else {
            let at = o.len();
            kib_fields(o, 6, &e.stats);
            self.kib_json.clear();
            self.kib_json.extend_from_slice(&o[at..]);
            self.last_kib = Some(kib);
        }
        match e.thp_eligible {
            None => o.extend_from_slice(b",\n      \"thp_eligible\": null,\n      \"vm_flags\": "),
            Some(true) => o.extend_from_slice(b",\n      \"thp_eligible\": true,\n      \"vm_flags\": "),
            Some(false) => o.extend_from_slice(b",\n      \"thp_eligible\": false,\n      \"vm_flags\": "),
        }
        if e.vm_flags.is_empty() {
            o.extend_from_slice(b"[]\n    }");
        } else {
            o.push(b'[');
            for f in &e.vm_flags {
                // Flags are two letters: nothing to escape.
                match f.as_bytes() {
                    &[x, y] if x.is_ascii_alphanumeric() && y.is_ascii_alphanumeric() => o.extend_from_slice(&[
                        b'\n', b' ', b' ', b' ', b' ', b' ', b' ', b' ', b' ', b'"', x, y, b'"', b',',
                    ]),
                    _ => {
                        o.extend_from_slice(b"\n        ");
                        json::push_str(o, f);
                        o.push(b',');
                    }
                }
            }
            o.pop();
            o.extend_from_slice(b"\n      ]\n    }");
        }
        if o.len() >= JSON_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.flushed = true;
        write_bytes(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn finish(mut self, groups: &Groups) -> anyhow::Result<()> {
        self.close(groups);
        self.flush()
    }

    /// Ends a document the read could not finish (part of it was written already): the
    /// mappings so far, then `"error"` and `"complete": false` instead of the groups.
    fn abort(mut self, message: &str) -> anyhow::Result<()> {
        self.close_cut(message);
        self.flush()
    }

    fn close_cut(&mut self, message: &str) {
        let o = &mut self.out;
        if !self.summary_only {
            o.extend_from_slice(if self.count == 0 { b"]" } else { b"\n  ]" });
        }
        key(o, 2, "error", true);
        json::push_str(o, message);
        key(o, 2, "complete", true);
        o.extend_from_slice(b"false\n}\n");
    }

    /// Ends the document: the mappings' array, the groups and the totals.
    fn close(&mut self, groups: &Groups) {
        let o = &mut self.out;
        if !self.summary_only {
            o.extend_from_slice(if self.count == 0 { b"]" } else { b"\n  ]" });
        }
        key(o, 2, "by_kind", true);
        let mut kinds = groups.kinds().peekable();
        if kinds.peek().is_none() {
            o.extend_from_slice(b"{}");
        } else {
            o.push(b'{');
            for (i, (kind, g)) in kinds.enumerate() {
                key(o, 4, kind.name(), i > 0);
                group(o, 4, g);
            }
            o.extend_from_slice(b"\n  }");
        }
        key(o, 2, "total", true);
        group(o, 2, &groups.total);
        o.extend_from_slice(b"\n}\n");
    }
}

/// Writes `"name": ` on a new line indented by `indent` (at most 8), after a comma when
/// `comma`. Names are this file's field names and [`MapKind::name`]s: nothing to escape.
fn key(o: &mut Vec<u8>, indent: usize, name: &str, comma: bool) {
    const BREAK: &[u8; 10] = b",\n        ";
    let from = if comma { 0 } else { 1 };
    o.extend_from_slice(&BREAK[from..2 + indent.min(8)]);
    o.push(b'"');
    o.extend_from_slice(name.as_bytes());
    o.extend_from_slice(b"\": ");
}

fn field_u64(o: &mut Vec<u8>, indent: usize, name: &str, v: u64, comma: bool) {
    key(o, indent, name, comma);
    push_dec(o, v);
}

#[inline]
fn push_dec(o: &mut Vec<u8>, v: u64) {
    // Most counters are single digits (0, 4): one byte, no copy.
    if v < 10 {
        o.push(b'0' + v as u8);
        return;
    }
    push_dec_long(o, v);
}

fn push_dec_long(o: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let n = table::dec_left(&mut digits, v);
    push_prefix(o, &digits, n);
}

/// Each kind's name as a JSON string (in [`MapKind::ALL`]'s order, which is the enum's), in
/// arrays of one size for [`push_prefix`].
const KIND_JSON: [([u8; 24], usize); MapKind::ALL.len()] = {
    let mut t = [([0u8; 24], 0); MapKind::ALL.len()];
    let mut i = 0;
    while i < t.len() {
        let name = MapKind::ALL[i].name().as_bytes();
        t[i].0[0] = b'"';
        let mut j = 0;
        while j < name.len() {
            t[i].0[j + 1] = name[j];
            j += 1;
        }
        t[i].0[name.len() + 1] = b'"';
        t[i].1 = name.len() + 2;
        i += 1;
    }
    t
};

/// Appends the first `n` bytes of `bytes`: one copy of a fixed size (no call) and a cut.
#[inline]
fn push_prefix<const N: usize>(o: &mut Vec<u8>, bytes: &[u8; N], n: usize) {
    let at = o.len();
    o.extend_from_slice(bytes);
    o.truncate(at + n.min(N));
}

/// A group's `mappings` and counters as an object whose closing brace is indented by `indent`.
fn group(o: &mut Vec<u8>, indent: usize, (n, s): &(u64, MemStats)) {
    o.push(b'{');
    field_u64(o, indent + 2, "mappings", *n, false);
    kib_fields(o, indent + 2, s);
    o.push(b'\n');
    o.resize(o.len() + indent, b' ');
    o.push(b'}');
}

/// The counters' names in JSON, in order (see [`kib_values`]), once: [`KIB_NAMES`] holds the
/// names and [`MAPPING_KIB_KEYS`] the same keys as a mapping's fields are written, each after a
/// comma on a line indented by 6, made once so that a field costs one copy and a number.
macro_rules! kib_fields {
    ($($name:literal),*) => {
        const KIB_NAMES: [&str; 20] = [$($name),*];
        const MAPPING_KIB_KEYS: [&[u8]; 20] = [$(concat!(",\n      \"", $name, "\": ").as_bytes()),*];
        /// [`MAPPING_KIB_KEYS`] in arrays of one size, for [`push_prefix`].
        const MAPPING_KIB_KEYS_FIXED: [([u8; 32], usize); 20] = {
            let mut t = [([0u8; 32], 0); 20];
            let mut i = 0;
            while i < 20 {
                let key = MAPPING_KIB_KEYS[i];
                let mut j = 0;
                while j < key.len() {
                    t[i].0[j] = key[j];
                    j += 1;
                }
                t[i].1 = key.len();
                i += 1;
            }
            t
        };
    };
}
kib_fields!(
    "size_kib",
    "rss_kib",
    "pss_kib",
    "pss_dirty_kib",
    "shared_clean_kib",
    "shared_dirty_kib",
    "private_clean_kib",
    "private_dirty_kib",
    "referenced_kib",
    "anonymous_kib",
    "ksm_kib",
    "lazy_free_kib",
    "anon_huge_pages_kib",
    "shmem_pmd_mapped_kib",
    "file_pmd_mapped_kib",
    "shared_hugetlb_kib",
    "private_hugetlb_kib",
    "swap_kib",
    "swap_pss_kib",
    "locked_kib"
);

/// The counters in [`KIB_NAMES`]' order.
fn kib_values(s: &MemStats) -> [u64; 20] {
    [
        s.size,
        s.rss,
        s.pss,
        s.pss_dirty,
        s.shared_clean,
        s.shared_dirty,
        s.private_clean,
        s.private_dirty,
        s.referenced,
        s.anonymous,
        s.ksm,
        s.lazy_free,
        s.anon_huge_pages,
        s.shmem_pmd_mapped,
        s.file_pmd_mapped,
        s.shared_hugetlb,
        s.private_hugetlb,
        s.swap,
        s.swap_pss,
        s.locked,
    ]
}

/// The counters as `"<name>_kib": N` fields (each after a comma).
fn kib_fields(o: &mut Vec<u8>, indent: usize, s: &MemStats) {
    for (i, v) in kib_values(s).into_iter().enumerate() {
        if indent == 6 {
            let (key, len) = &MAPPING_KIB_KEYS_FIXED[i];
            push_prefix(o, key, *len);
            push_dec(o, v);
        } else {
            field_u64(o, indent, KIB_NAMES[i], v, true);
        }
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

    #[test]
    fn a_document_cut_by_a_failed_read_still_parses() {
        let text = b"7f00-8f00 rw-p 00001000 fe:01 42                         /a\nSize:                  4 kB\n";
        for (summary_only, with_mapping) in [(false, false), (false, true), (true, false)] {
            let mut j = JsonOut::start(7, "x", summary_only);
            if with_mapping {
                let flow = mmkit::inspect::maps::parse_smaps_each(text, |e| {
                    j.mapping(e, e.area.kind()).unwrap();
                    std::ops::ControlFlow::Continue(())
                })
                .unwrap();
                assert!(flow.is_continue());
            }
            j.close_cut("reading the mappings of process 7: \"gone\"");
            let doc = String::from_utf8(std::mem::take(&mut j.out)).unwrap();
            let v: serde_json::Value = serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
            assert_eq!(v["complete"], false);
            assert_eq!(v["error"], "reading the mappings of process 7: \"gone\"");
            assert_eq!(v["mappings"].as_array().map(Vec::len), (!summary_only).then_some(usize::from(with_mapping)));
        }
    }

    #[test]
    fn json_is_serde_jsons_pretty_layout() {
        let text = b"7f00-8f00 rw-p 00001000 fe:01 42                         /a \"b\" (deleted)\n\
Size:                  4 kB\nRss:                   4 kB\nTHPeligible:    0\nVmFlags: rd wr \n\
9f00-af00 r--p 00000000 00:00 0 \nSize:                  8 kB\n\
af00-bf00 r--p 00000000 00:00 0 \nVmFlags: rd wr \nbf00-cf00 r--p 00000000 00:00 0 \nVmFlags: rd \n\
cf00-df00 r--p 00000000 00:00 0 \nVmFlags: rd \ndf00-ef00 r--p 00000000 00:00 0 \nSize:                  8 kB\n";
        let mut j = JsonOut::start(7, "mmkit maps \"7\"", false);
        for summary_only in [false, true] {
            let mut e = JsonOut::start(7, "x", summary_only);
            e.close(&Groups::default());
            let empty = String::from_utf8(e.out).unwrap();
            let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
            assert_eq!(empty, serde_json::to_string_pretty(&v).unwrap() + "\n");
            assert_eq!(v.get("mappings").is_none(), summary_only);
        }
        let mut groups = Groups::default();
        let flow = mmkit::inspect::maps::parse_smaps_each(text, |e| {
            groups.add(e.area.kind(), &e.stats);
            j.mapping(e, e.area.kind()).unwrap();
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert!(flow.is_continue());
        groups.sum();
        j.close(&groups);
        let doc = String::from_utf8(std::mem::take(&mut j.out)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(doc, serde_json::to_string_pretty(&v).unwrap() + "\n", "the layout of serde_json's pretty printer");
        assert_eq!(v["total"]["mappings"], 6);
        let flags: Vec<_> = (0..6).map(|i| v["mappings"][i]["vm_flags"].clone()).collect();
        let want = [["rd", "wr"].as_slice(), &[], &["rd", "wr"], &["rd"], &["rd"], &[]].map(|f| serde_json::json!(f));
        assert_eq!(flags, want);
        // Counters repeated from the mapping before, and not.
        let sizes: Vec<_> = (0..6).map(|i| v["mappings"][i]["size_kib"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [4, 8, 0, 0, 0, 8]);
        assert_eq!((v["mappings"][0]["rss_kib"].as_u64(), v["mappings"][1]["rss_kib"].as_u64()), (Some(4), Some(0)));
        assert_eq!(v["by_kind"]["file"]["size_kib"], 4);
        for ((key, name), (fixed, len)) in MAPPING_KIB_KEYS.iter().zip(KIB_NAMES).zip(MAPPING_KIB_KEYS_FIXED) {
            assert_eq!(*key, format!(",\n      \"{name}\": ").as_bytes());
            assert_eq!(&fixed[..len], *key);
        }
        for (i, kind) in MapKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
            let (name, len) = &KIND_JSON[i];
            assert_eq!(&name[..*len], format!("\"{kind}\"").as_bytes());
        }
        for (id, p) in [((0xfe, 1), "fe:01"), ((0x103, 0), "103:00"), ((0, 0), "00:00"), ((0xff, 0x100), "ff:100")] {
            assert_eq!(device_id(&mut [0; 33], id), p.as_bytes());
        }
        let p = Perms { read: true, write: false, exec: true, shared: true };
        assert_eq!(perms(p), *p.to_string().as_bytes());
        let m = &v["mappings"][0];
        assert_eq!(
            (m["start"].as_u64(), m["offset"].as_u64(), m["inode"].as_u64()),
            (Some(0x7f00), Some(0x1000), Some(42))
        );
        assert_eq!((m["path"].as_str(), m["deleted"].as_bool()), (Some("/a \"b\""), Some(true)));
        assert_eq!(
            (m["device"].as_str(), m["perms"].as_str(), m["kind"].as_str()),
            (Some("fe:01"), Some("rw-p"), Some("file"))
        );
        assert_eq!((m["rss_kib"].as_u64(), m["thp_eligible"].as_bool()), (Some(4), Some(false)));
        assert_eq!(m["vm_flags"], serde_json::json!(["rd", "wr"]));
        let m = &v["mappings"][1];
        assert_eq!(
            (m["path"].as_str(), m["kind"].as_str(), m["size_kib"].as_u64()),
            (Some(""), Some("anonymous"), Some(8))
        );
        assert!(m["thp_eligible"].is_null() && m["vm_flags"] == serde_json::json!([]));
    }
}
