//! `mmkit residency` and `mmkit maps` against the reference tools on the same inputs:
//! `vmtouch` and `fincore` count the same resident pages, `smaps_rollup` holds the same totals.
//!
//! The tests install nothing. `vmtouch` is a Debian package (`scripts/test` installs it); when it
//! is missing, the comparison fails under `CI=true` and is skipped with a notice elsewhere.

use crate::common::*;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn page() -> u64 {
    rustix::param::page_size() as u64
}

fn mmkit_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = mmkit(&all);
    assert!(out.status.success(), "mmkit {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("mmkit prints JSON")
}

/// Whether a reference tool can run; missing is a failure under `CI=true`, a skip elsewhere.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "vmtouch" { "-h" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`{tool}` is required under CI=true (scripts/test installs it)");
        }
        eprintln!("SKIP: `{tool}` is not installed; the comparison with it is skipped");
    }
    ok
}

/// A directory on a disk-backed file system (eviction means nothing on tmpfs).
fn disk_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fs = rustix::fs::statfs(d.path()).unwrap();
    assert_ne!(fs.f_type as i64, 0x0102_1994, "{} is on tmpfs", d.path().display());
    d
}

fn write_file(path: &Path, len: u64) {
    let mut f = File::create(path).unwrap();
    let chunk: Vec<u8> = (0..1u32 << 16).map(|i| (i % 253) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

/// A tree with files of many sizes (empty, sub-page, spaces in names, nested), some evicted,
/// some partly read, so that the resident counts are neither 0 nor everything.
fn mixed_tree() -> (tempfile::TempDir, Vec<PathBuf>) {
    let d = disk_dir();
    let root = d.path();
    std::fs::create_dir_all(root.join("sub dir/deeper")).unwrap();
    let specs: [(&str, u64); 8] = [
        ("empty", 0),
        ("tiny", 10),
        ("one page", page()),
        ("sub dir/a.bin", 37 * page() + 5),
        ("sub dir/b (deleted).bin", 200 * page()),
        ("sub dir/deeper/c", 513 * page()),
        ("sub dir/deeper/d", 3 * page() - 1),
        ("big", 2048 * page()),
    ];
    let mut paths = Vec::new();
    for (i, (name, len)) in specs.iter().enumerate() {
        let p = root.join(name);
        write_file(&p, *len);
        let f = File::open(&p).unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        // Read every third file's pages at a stride (readahead off), so residency is partial.
        if i % 3 == 1 && *len > 0 {
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).unwrap();
            let mut off = 0;
            while off < *len {
                f.read_at(&mut [0u8; 1], off).unwrap();
                off += 7 * page();
            }
        }
        paths.push(p);
    }
    // The big file: its first quarter.
    let f = File::open(root.join("big")).unwrap();
    let mut buf = vec![0u8; (512 * page()) as usize];
    f.read_exact_at(&mut buf, 0).unwrap();
    (d, paths)
}

/// `vmtouch`'s `Resident Pages: a/b` line.
fn vmtouch_counts(args: &[&Path]) -> (u64, u64) {
    let out = Command::new("vmtouch").args(args).output().expect("run vmtouch");
    assert!(out.status.success(), "vmtouch: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Resident Pages:")).expect("vmtouch summary");
    let counts = line.split_whitespace().nth(2).unwrap();
    let (a, b) = counts.split_once('/').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// `fincore`'s resident pages per file, in argument order.
fn fincore_pages(paths: &[PathBuf]) -> Vec<u64> {
    let out = Command::new("fincore")
        .args(["--raw", "--noheadings", "--bytes", "--output", "PAGES"])
        .args(paths)
        .output()
        .expect("run fincore");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect()
}

fn total(v: &Value, key: &str) -> u64 {
    v["total"][key].as_u64().unwrap_or_else(|| panic!("total.{key} in {v}"))
}

fn per_file(v: &Value) -> Vec<(String, u64, u64)> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["pages"].as_u64().unwrap(),
                f["resident_pages"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn residency_equals_vmtouch_and_fincore_on_the_same_files() {
    let (d, paths) = mixed_tree();
    let root = d.path().to_str().unwrap();
    let ours = mmkit_json(&["residency", root]);
    let files = per_file(&ours);
    assert_eq!(files.len(), paths.len());
    let resident = total(&ours, "resident_pages");
    assert!(resident > 0 && resident < total(&ours, "pages"), "the tree is partly resident: {ours}");

    // fincore, file by file (it prints one line per file, in argument order).
    let ours_paths: Vec<PathBuf> = files.iter().map(|f| PathBuf::from(&f.0)).collect();
    let theirs = fincore_pages(&ours_paths);
    let ours_res: Vec<u64> = files.iter().map(|f| f.2).collect();
    assert_eq!(ours_res, theirs, "per-file resident pages vs fincore");

    if have("vmtouch") {
        assert_eq!(vmtouch_counts(&[d.path()]), (resident, total(&ours, "pages")));
        for p in &paths {
            let one = mmkit_json(&["residency", p.to_str().unwrap()]);
            assert_eq!(vmtouch_counts(&[p]), (total(&one, "resident_pages"), total(&one, "pages")), "{}", p.display());
        }
    }
    // The table's summary line carries the same numbers.
    let out = mmkit(&["residency", "-q", root]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Resident Pages: {}/{}", resident, total(&ours, "pages"))), "{text}");
}

#[test]
fn evict_empties_and_touch_fills_as_vmtouch_sees_it() {
    let (d, _) = mixed_tree();
    let root = d.path().to_str().unwrap();
    let evicted = mmkit_json(&["residency", "--evict", root]);
    assert_eq!(total(&evicted, "resident_pages"), 0, "{evicted}");
    assert!(per_file(&evicted).iter().all(|f| f.2 == 0));
    if have("vmtouch") {
        assert_eq!(vmtouch_counts(&[d.path()]).0, 0);
    }

    let touched = mmkit_json(&["residency", "--touch", root]);
    let pages = total(&touched, "pages");
    assert_eq!(total(&touched, "resident_pages"), pages, "{touched}");
    assert!(per_file(&touched).iter().all(|f| f.1 == f.2));
    if have("vmtouch") {
        assert_eq!(vmtouch_counts(&[d.path()]), (pages, pages));
    }
    let again = mmkit_json(&["residency", "--evict", root]);
    assert_eq!(total(&again, "resident_pages"), 0);
}

#[test]
fn lock_holds_pages_until_sigterm() {
    let d = disk_dir();
    let path = d.path().join("locked file");
    write_file(&path, 100 * page() + 1);
    let p = path.to_str().unwrap();
    mmkit_json(&["residency", "--evict", p]);

    let mut child = Command::new(MMKIT)
        .args(["residency", "--lock", p])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("locked 101 pages"), "{line}");

    // Eviction cannot drop locked pages.
    let v = mmkit_json(&["residency", "--evict", p]);
    assert_eq!(total(&v, "resident_pages"), 101);

    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{status:?} {rest}");
    assert!(rest.contains("released after signal 15"), "{rest}");
    let v = mmkit_json(&["residency", "--evict", p]);
    assert_eq!(total(&v, "resident_pages"), 0, "unlocked on exit");
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    // 300 MiB of holes: long enough for a bar, quick to touch.
    let d = disk_dir();
    let path = d.path().join("sparse");
    File::create(&path).unwrap().set_len(300 << 20).unwrap();
    let out = mmkit(&["residency", "--touch", "--threads", "2", path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "stderr: {:?}", String::from_utf8_lossy(&out.stderr));
    // The count itself is the touch tests' business: the kernel may reclaim a few just-touched
    // pages (a DAMON pageout scheme runs on some machines) before they are counted.
    assert!(String::from_utf8_lossy(&out.stdout).contains("/76800"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn progress_bars_on_a_terminal_only_without_json() {
    // `residency --json` drew its bars on a terminal's stderr while `pager pack --json` and the
    // tour draw none: the progress module's rule is "a person is watching and the output is not
    // JSON". `script` (util-linux) gives the run a terminal.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIP: script (util-linux) is missing: no terminal to draw on");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let many = dir.path().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..2100 {
        File::create(many.join(format!("f{i}"))).unwrap();
    }
    let drawn = |json: &str| {
        let log = dir.path().join(format!("typescript{json}"));
        let cmd = format!("{MMKIT} residency -q {json} {} >/dev/null", many.display());
        let status = Command::new("script").args(["-qec", &cmd]).arg(&log).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "{cmd}");
        std::fs::read_to_string(&log).unwrap().contains("counting [")
    };
    // The control: without --json a bar is drawn (unless the count ended before its first draw).
    if !drawn("") {
        eprintln!("SKIP: no bar was drawn even without --json (the count was too quick)");
        return;
    }
    assert!(!drawn("--json"), "a bar with --json");
}

#[test]
fn residency_quiet_json_is_the_totals_only() {
    // `--quiet --json` printed a row per file, as `--json` alone does (20,000 files: 20,000 rows).
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_file(&dir.path().join(format!("f{i}")), 3 * page());
    }
    let d = dir.path().to_str().unwrap();
    let full = mmkit_json(&["residency", d]);
    let quiet = mmkit_json(&["residency", "--quiet", d]);
    assert_eq!(full["files"].as_array().unwrap().len(), 3, "{full}");
    assert!(quiet.get("files").is_none(), "{quiet}");
    assert_eq!(quiet["total"]["files"], 3, "{quiet}");
    assert_eq!(quiet["total"]["pages"], 9, "{quiet}");
    // The page size the counts are in: the table's byte columns multiply by it, and it is not
    // 4 KiB everywhere (arm64's 16 KiB kernels).
    for v in [&full, &quiet] {
        assert_eq!(v["page_size"], page(), "{v}");
        // The table's `Elapsed:` line, in the JSON too.
        assert!(v["elapsed_ns"].as_u64().is_some_and(|ns| ns > 0), "{v}");
    }
}

#[test]
fn residency_names_what_a_special_path_is() {
    // "not a regular file or directory" left the user to find out what it was; the other
    // commands say "a FIFO", "a character device".
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = mmkit(&["residency", fifo.to_str().unwrap(), "/dev/null"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("residency of {} failed: not a regular file or directory: a FIFO", fifo.display())),
        "{err}"
    );
    assert!(
        err.contains("residency of /dev/null failed: not a regular file or directory: a character device"),
        "{err}"
    );
}

#[test]
fn residency_failures_exit_1_with_context() {
    let d = disk_dir();
    write_file(&d.path().join("ok"), 10);
    let missing = d.path().join("missing");
    let out = mmkit(&["residency", "--json", d.path().join("ok").to_str().unwrap(), missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing") && err.contains("ENOENT"), "{err}");
    assert!(err.starts_with("mmkit: "), "{err}");
    // The readable file is still reported.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(total(&v, "files"), 1);
    // Usage errors are clap's: exit 2.
    assert_eq!(mmkit(&["residency", "--touch", "--evict", "x"]).status.code(), Some(2));
}

#[test]
fn touch_and_lock_refuse_tmpfs_holes_larger_than_memory() {
    // `--touch` of a sparse 4 EiB file on /dev/shm allocated a page for every hole until the
    // OOM killer ended other processes. Run in a private mount namespace on a 16 MiB tmpfs, so
    // that a regression fills 16 MiB, not the machine (root only: it mounts).
    if !is_root() || Command::new("unshare").args(["-m", "true"]).status().map_or(true, |s| !s.success()) {
        eprintln!("SKIP: needs root and unshare -m (a private tmpfs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        "mount -t tmpfs -o size=16M tmpfs {d} || exit 99
         truncate -s 1E {d}/huge && truncate -s 20M {d}/big && printf x > {d}/small
         timeout 30 {MMKIT} residency --json --touch {d}/huge {d}/big {d}/small; echo \"touch=$?\" >&2
         timeout 30 {MMKIT} residency -q --lock {d}/huge >/dev/null; echo \"lock=$?\" >&2
         truncate -s 10M {d}/half1 {d}/half2
         timeout 30 {MMKIT} residency -q --touch {d}/half1 {d}/half2 >/dev/null; echo \"halves=$?\" >&2
         stat -c '%n %b' {d}/huge {d}/big {d}/half1 {d}/half2 >&2"
    );
    let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    let err = stderr(&out);
    assert!(err.contains("touch=1\n") && err.contains("lock=1\n"), "{err}");
    // Nothing was allocated for the holes: the refusal came before any fault.
    assert!(err.contains("/huge 0\n") && err.contains("/big 0\n"), "{err}");
    // Two files of 10 MiB of holes fit the 16 MiB alone, not together: the first is touched
    // (20480 blocks of 512 bytes), the second refused.
    assert!(err.contains("halves=1\n") && err.contains("/half1 20480\n") && err.contains("/half2 0\n"), "{err}");
    for (op, file, room) in [
        ("touch", "huge", "MemAvailable"),
        ("touch", "big", "its file system"),
        ("lock", "huge", "MemAvailable"),
        ("touch", "half2", "its file system has 6.0 MiB"),
    ] {
        assert!(
            err.lines().any(|l| l
                .starts_with(&format!("mmkit: warning: {op} of {d}/{file} failed: the file lives in memory (tmpfs)"))
                && l.contains(room)),
            "{op} {file}: {err}"
        );
    }
    // The others are touched, and every file is still counted.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(total(&v, "files"), 3, "{v}");
    assert_eq!(per_file(&v).iter().find(|f| f.0.ends_with("/small")).unwrap().2, 1, "{v}");
}

#[test]
fn lock_refuses_a_disk_file_larger_than_memory() {
    // Locked page-cache pages cannot be reclaimed: `--lock` of a file on disk larger than
    // MemAvailable (here a sparse file twice its size, whose holes read in as zero pages) locked
    // window after window, for root without limit, until the OOM killer. `ulimit -v` bounds a
    // regression to ~1 GiB of address space (mmap then fails with ENOMEM instead).
    let d = disk_dir();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let available: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("MemAvailable in /proc/meminfo")
        * 1024;
    let huge = d.path().join("huge");
    let small = d.path().join("small");
    File::create(&huge).unwrap().set_len(2 * available).unwrap();
    write_file(&small, 3 * page());
    let (h, s) = (huge.display(), small.display());
    // The run holds its locks until a signal: it is ended once it says what it locked (polled:
    // a fixed sleep ended it too early on a loaded machine), and its stderr then copied out.
    let log = d.path().join("stderr");
    let l = log.display();
    let script = format!(
        "ulimit -v 1048576 || exit 99; {MMKIT} residency --json --lock {h} {s} 2>{l} & pid=$!
         i=0; while [ $i -lt 1200 ] && ! grep -q 'to release' {l}; do sleep 0.05; i=$((i+1)); done
         kill -TERM $pid; wait $pid; rc=$?; cat {l} >&2; exit $rc"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with(&format!("mmkit: warning: lock of {h} failed: locking it would pin"))
            && l.contains("MemAvailable")),
        "{err}"
    );
    // The file that fits is still locked, and both are counted.
    assert!(err.contains("locked 3 pages of 1 file(s)"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(total(&v, "files"), 2, "{v}");
}

#[test]
fn counts_the_kernel_hides_are_said_to_be_no_measurement() {
    // For a file the caller neither owns nor may write, cachestat(2) refuses and mincore(2)
    // reports every page resident: 100% was printed, even right after --evict, with no word.
    let own = tempfile::tempdir().unwrap();
    write_file(&own.path().join("mine"), 3 * page());
    let mine = own.path().join("mine");
    // /etc/passwd: root's, readable by everyone, writable by root only.
    let run = |args: &[&str]| {
        let mut c = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", MMKIT]);
            c
        } else {
            Command::new(MMKIT)
        };
        c.args(args).output().unwrap()
    };
    if is_root() && Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("SKIP: setpriv is missing (it runs the check as uid 65534)");
        return;
    }
    let out = run(&["residency", "--json", "/etc/passwd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("mmkit: note: the Resident counts of 1 file(s) are not measurements"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A file of one's own (as root: every file) is measured, and nothing is said.
    let out =
        if is_root() { mmkit(&["residency", "/etc/passwd"]) } else { mmkit(&["residency", mine.to_str().unwrap()]) };
    assert!(out.status.success() && out.stderr.is_empty(), "{}", stderr(&out));
}

/// `/proc/<pid>/smaps_rollup` read by hand: `Name: N kB` → N.
fn rollup(pid: u32) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().trim_end_matches("kB").trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn maps_totals_equal_smaps_rollup_of_the_same_process() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id();
    // Pss and the shared/private split of file pages move when other processes (other tests)
    // map or unmap the same libraries, even between two rollup reads that agree (a short-lived
    // process maps libc and exits). So a window counts when the rollup is unchanged and every
    // counter agrees: the kernel sums Pss in fixed point and rounds once, per mapping it rounds
    // down, so ours may be up to one KiB per mapping below; the others must be equal. A wrong
    // counter never agrees. Without such a window in 100 tries (a machine that busy), the
    // counters are checked to within 10 % and Pss to within 20 %.
    const COUNTERS: [(&str, &str); 11] = [
        ("rss_kib", "Rss"),
        ("anonymous_kib", "Anonymous"),
        ("shared_clean_kib", "Shared_Clean"),
        ("shared_dirty_kib", "Shared_Dirty"),
        ("private_clean_kib", "Private_Clean"),
        ("private_dirty_kib", "Private_Dirty"),
        ("referenced_kib", "Referenced"),
        ("anon_huge_pages_kib", "AnonHugePages"),
        ("file_pmd_mapped_kib", "FilePmdMapped"),
        ("swap_kib", "Swap"),
        ("locked_kib", "Locked"),
    ];
    let agrees = |ours: &serde_json::Value, kernel: &std::collections::HashMap<String, u64>| {
        let n = ours["mappings"].as_array().unwrap().len() as u64;
        let (pss, kpss) = (total(ours, "pss_kib"), kernel["Pss"]);
        pss <= kpss && kpss - pss <= n && COUNTERS.iter().all(|(o, k)| total(ours, o) == kernel[*k])
    };
    let mut attempts = 0;
    let (ours, kernel, stable) = loop {
        let before = rollup(pid);
        let ours = mmkit_json(&["maps", &pid.to_string()]);
        let after = rollup(pid);
        attempts += 1;
        let stable = before == after && agrees(&ours, &after);
        if stable || attempts == 100 {
            break (ours, after, stable);
        }
    };
    let table = mmkit(&["maps", &pid.to_string()]);
    child.kill().unwrap();
    child.wait().unwrap();
    if !stable {
        for (o, k) in COUNTERS {
            let (ours_v, kernel_v) = (total(&ours, o), kernel[k]);
            assert!(ours_v.abs_diff(kernel_v) * 10 <= kernel_v.max(10), "{o} {ours_v} vs {k} {kernel_v}");
        }
        let (pss, kpss) = (total(&ours, "pss_kib"), kernel["Pss"]);
        assert!(pss.abs_diff(kpss) * 5 <= kpss, "pss {pss} vs rollup {kpss} (no stable window in {attempts} tries)");
    }
    assert!(total(&ours, "rss_kib") > 0);

    // Records carry what the issue promises, and the groups add up to the total.
    let maps = ours["mappings"].as_array().unwrap();
    assert!(maps.iter().any(|m| m["path"] == "[stack]" && m["kind"] == "stack"));
    assert!(maps.iter().any(|m| m["path"].as_str().unwrap().ends_with("/sleep") && m["kind"] == "file"));
    assert!(maps.iter().all(|m| m["start"].as_u64().unwrap() < m["end"].as_u64().unwrap()));
    let by_kind_rss: u64 = ours["by_kind"].as_object().unwrap().values().map(|g| g["rss_kib"].as_u64().unwrap()).sum();
    assert_eq!(by_kind_rss, total(&ours, "rss_kib"));

    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("[stack]") && text.contains(" total "), "{text}");
}

#[test]
fn maps_filters_by_name_and_kind() {
    let me = mmkit_json(&["maps", "--filter", "libc"]);
    let maps = me["mappings"].as_array().unwrap();
    assert!(!maps.is_empty());
    assert!(maps.iter().all(|m| m["path"].as_str().unwrap().contains("libc")));
    let heap = mmkit_json(&["maps", "--kind", "stack"]);
    let maps = heap["mappings"].as_array().unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0]["path"], "[stack]");
    assert_eq!(heap["total"]["mappings"], 1);

    let out = mmkit(&["maps", "4294967295"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process 4294967295: no such process") && err.contains("ENOENT"), "{err}");
}

#[test]
fn maps_summary_json_is_the_summary_only() {
    // `--summary --json` printed every mapping, as `--json` alone does.
    let full = mmkit_json(&["maps"]);
    let summary = mmkit_json(&["maps", "--summary"]);
    assert!(summary.get("mappings").is_none(), "{summary}");
    assert!(summary["pid"].as_u64().is_some(), "{summary}");
    // The command line the table's first line names (`PID:   COMMAND`) is in the JSON too.
    // A second command keeps the shell from exec'ing `sleep`; `$0` is a word with a tab.
    let mut sleep = Command::new("sh").args(["-c", "sleep 60; :", "a\tb"]).spawn().unwrap();
    let pid = sleep.id().to_string();
    let started = std::time::Instant::now();
    let text = loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"sh\0-c\0") {
            break stdout(&mmkit(&["maps", "--summary", &pid]));
        }
        assert!(started.elapsed().as_secs() < 30, "sh never ran: {cmdline:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let doc = mmkit_json(&["maps", "--summary", &pid]);
    let _ = sleep.kill();
    let _ = sleep.wait();
    assert!(text.starts_with(&format!("{pid}:   sh -c sleep 60; : a\\x09b\n")), "{text}");
    assert_eq!(doc["command"], "sh -c sleep 60; : a\tb", "{doc}");
    assert_eq!(mmkit_json(&["maps"])["command"].as_str().map(|c| c.contains("maps")), Some(true));
    let kinds = |v: &Value| v["by_kind"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(kinds(&summary), kinds(&full));
    assert!(summary["total"]["mappings"].as_u64().unwrap() > 0, "{summary}");
    let stack = mmkit_json(&["maps", "--summary", "--kind", "stack"]);
    assert_eq!(stack["total"]["mappings"], 1, "{stack}");
    assert!(stack.get("mappings").is_none(), "{stack}");
}

/// Another user's process: the error says what reading its mappings needs (run by
/// `scripts/test` as an unprivileged user too; as root there may be no process it cannot read).
#[test]
fn maps_of_a_process_not_ours_says_what_it_needs() {
    if is_root() {
        return;
    }
    let out = mmkit(&["maps", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process 1: not allowed") && err.contains("CAP_SYS_PTRACE"), "{err}");
}

#[test]
fn maps_rows_agree_with_pmap() {
    if !have("pmap") {
        return;
    }
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    let ours = mmkit_json(&["maps", &pid]);
    let out = Command::new("pmap").args(["-X", &pid]).output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // pmap -X rows: Address Perm Offset Device Inode Size Rss ...; compare address, size, rss.
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(u64, u64, u64)> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Mapping rows have a 4-letter permission column; the totals line does not.
            let perms = f.get(1)?;
            if perms.len() != 4 || !perms.chars().all(|c| "rwxsp-".contains(c)) {
                return None;
            }
            let addr = u64::from_str_radix(f.first()?, 16).ok()?;
            Some((addr, f.get(5)?.parse().ok()?, f.get(6)?.parse().ok()?))
        })
        .collect();
    let ours: Vec<(u64, u64, u64)> = ours["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["start"].as_u64().unwrap(), m["size_kib"].as_u64().unwrap(), m["rss_kib"].as_u64().unwrap()))
        .collect();
    assert_eq!(ours, rows);
}

/// One page resident of an 8 GiB sparse file is 0.00005%: the table said `0%` beside
/// `1/2097152` pages; a share too small to show is `<0.001%`, never 0.
#[test]
fn residency_of_all_pages_but_one_is_not_100_percent() {
    // 4999 of 5000 pages resident printed 100%, as if the whole file were cached.
    let d = disk_dir();
    let path = d.path().join("almost");
    let pages = 5000;
    write_file(&path, pages * page());
    let f = File::open(&path).unwrap();
    // Drop the file from the cache, then read every page but one back, page by page without
    // read-ahead (large folios would not let one page go).
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).unwrap();
    let mut buf = vec![0u8; page() as usize];
    for p in (0..pages).filter(|&p| p != 2500) {
        f.read_exact_at(&mut buf, p * page()).unwrap();
    }
    let out = mmkit(&["residency", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = text.lines().find(|l| l.ends_with("almost")).unwrap_or_default();
    // The kernel may keep or drop pages of its own accord: check the case the row shows.
    if row.trim_start().starts_with(&format!("{}/{pages}", pages - 1)) {
        assert!(row.contains(">99.9%") && !row.contains(" 100% "), "{text}");
    } else {
        eprintln!("SKIP: the kernel did not leave exactly one page out: {row}");
    }
}

#[test]
fn residency_of_a_few_pages_of_a_huge_file_is_not_zero_percent() {
    let d = disk_dir();
    let path = d.path().join("sparse");
    let f = File::create(&path).unwrap();
    f.set_len(8 << 30).unwrap();
    f.write_all_at(b"x", 100).unwrap();
    drop(f);
    let out = mmkit(&["residency", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.ends_with("sparse")).unwrap_or_default();
    if !row.trim_start().starts_with("0/") {
        assert!(row.contains("<0.001%") && !row.contains(" 0% "), "{text}");
    }
}
