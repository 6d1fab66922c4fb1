//! `mmkit tour` end to end: the facts it reports are the kernel's.

use crate::common::*;

use std::process::Command;

fn mmkit() -> Command {
    Command::new(MMKIT)
}

/// A directory on disk for the tour's files: under the target dir, or the system temp dir when
/// that is not writable (the unprivileged run).
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).or_else(|_| tempfile::tempdir()).unwrap()
}

#[test]
fn file_section_reports_kernel_facts_as_json() {
    let dir = scratch_dir();
    let out =
        mmkit().args(["tour", "--only", "file", "--size", "8M", "--json", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let facts = &doc["sections"][0]["facts"];
    assert_eq!(doc["sections"][0]["id"], "file");
    assert_eq!(facts["file_size"], 8 << 20);
    assert_eq!(facts["page_size"].as_u64().unwrap(), rustix::param::page_size() as u64);
    assert_eq!(facts["fresh_map_resident_pages"], 0, "{facts}");
    assert!(facts["touch_one_page_resident_pages"].as_u64().unwrap() >= 1, "{facts}");
    assert_eq!(facts["shared_write_seen_across_fork"], true);
    assert_eq!(facts["shared_write_in_file_after_flush"], true);
    assert_eq!(facts["private_write_seen_across_fork"], false);
    assert_eq!(facts["private_write_in_file"], false);
    assert!(facts["scan_read_ns"].as_u64().unwrap() > 0);
    // The temporary file is gone afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn human_report_is_aligned_and_names_the_facts() {
    let out = mmkit().args(["tour", "--only", "file", "--size", "4M"]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("fresh read-only map, resident"), "{text}");
    let line = text.lines().find(|l| l.contains("MAP_PRIVATE: child's write seen by parent")).unwrap();
    assert!(line.ends_with("  no"), "{line}");
    // Values start in one column.
    let col = |label: &str| {
        let l = text.lines().find(|l| l.contains(label)).unwrap();
        let after = l.find(label).unwrap() + label.len();
        after + (l[after..].len() - l[after..].trim_start().len())
    };
    assert_eq!(col("page size (from the kernel)"), col("file size"), "{text}");
    // Every comparison says which way it goes with a ratio of at least 1: THP 2.4 times slower
    // than base pages printed "0.41x faster", and mmap against read "(0.99x read)".
    let ratios: Vec<&str> =
        text.lines().filter_map(|l| Some(l.split_once("  (")?.1)).filter(|r| r.contains("x ")).collect();
    assert!(!ratios.is_empty(), "{text}");
    for r in ratios {
        let (n, rest) = r.split_once("x ").unwrap();
        let n: f64 = n.parse().unwrap_or_else(|_| panic!("{r}"));
        assert!(n >= 1.0 && (rest.starts_with("faster") || rest.starts_with("slower")), "{r} in\n{text}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = mmkit().args(["tour", "--size", "12Q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
    let out = mmkit().args(["tour", "--only", "file,nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    // Sizes below 4 pages were silently raised to 4 pages; they are refused, naming the minimum.
    let min = 4 * rustix::param::page_size();
    for small in ["0", "1", "4095", &(min - 1).to_string()] {
        let out = mmkit().args(["tour", "--only", "file", "--size", small]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--size {small}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("too small") && err.contains(&min.to_string()), "{err}");
    }
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    let out = mmkit().args(["tour", "--only", "file", "--dir", "/nonexistent/dir"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dir") && err.contains("(ENOENT)"), "{err}");
    // A file where a directory should be: named, with its errno, on one line, before writing.
    let file = tempfile::NamedTempFile::new().unwrap();
    for only in ["file", "elf"] {
        let out = mmkit().args(["tour", "--only", only, "--dir"]).arg(file.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("mmkit: ") && err.lines().count() == 1 && err.contains("(ENOTDIR)"), "{err}");
    }
}

/// Without `--dir` the directory is the system temp dir (`TMPDIR`): a bad one was reported as
/// `the directory for temporary files (--dir)`, an option the user never gave.
#[test]
fn a_bad_tmpdir_is_named_as_such() {
    for only in ["file", "elf", "pager"] {
        let out =
            mmkit().args(["tour", "--only", only, "--size", "64K"]).env("TMPDIR", "/nonexistent/tmp").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("mmkit: ") && err.lines().count() == 1, "{err}");
        assert!(err.contains("/nonexistent/tmp") && err.contains("(ENOENT)"), "{err}");
        assert!(err.contains("$TMPDIR") && !err.contains("(--dir)"), "{err}");
    }
}

/// The pager section writes three files too, but only the file and elf sections' directory and
/// space were checked: `--only pager` with a bad `--dir` failed with tempfile's bare
/// `Not a directory (os error 20) at path ...`, and without room with a bare ENOSPC.
#[test]
fn pager_section_checks_its_directory_first() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = mmkit().args(["tour", "--only", "pager", "--size", "64K", "--dir"]).arg(file.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mmkit: ") && err.lines().count() == 1 && err.contains("(ENOTDIR)"), "{err}");
    assert!(err.contains("--dir") && err.contains(&*file.path().to_string_lossy()), "{err}");
}

/// The entries left in `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn size_beyond_free_space_fails_before_writing() {
    let dir = scratch_dir();
    let vfs = rustix::fs::statvfs(dir.path()).unwrap();
    let free = vfs.f_bavail * vfs.f_frsize;
    // Twice the free space (it wrote until ENOSPC).
    let size = (2 * free).to_string();
    let out = mmkit().args(["tour", "--only", "file", "--size", &size, "--dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mmkit: ") && err.contains(&size) && err.contains("free"), "{err}");
    // Both numbers: what it needs and what there is (to the nearest 1%, the disk is shared).
    let said: u64 = err.split(" bytes) free").next().unwrap().rsplit('(').next().unwrap().parse().unwrap();
    assert!(said.abs_diff(free) < free / 100 + (64 << 20), "said {said} free, statvfs {free}: {err}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

#[test]
fn sigint_and_sigterm_mid_run_leave_no_temporary_files() {
    use rustix::process::{kill_process, Pid, Signal};
    for signal in [Signal::INT, Signal::TERM] {
        let dir = scratch_dir();
        let mut child = mmkit()
            .args(["tour", "--only", "file,elf", "--size", "512M", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the file section is writing its file.
        let started = std::time::Instant::now();
        loop {
            let writing = leftovers(dir.path()).iter().any(|p| p.metadata().is_ok_and(|m| m.len() > 0));
            if writing {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "the tour ended before it wrote its file");
            assert!(started.elapsed().as_secs() < 120, "the tour wrote nothing in 120 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{signal:?}: {:?} {err}", out.status);
        assert!(err.starts_with("mmkit: ") && err.contains("interrupted by SIG"), "{err}");
        assert!(leftovers(dir.path()).is_empty(), "{signal:?} left {:?}", leftovers(dir.path()));
    }
}

/// The elf section's shared-RELRO step: 4 processes load a C++ library at one reserved address;
/// with a RELRO file (1 writer + 3 users) each pays a fraction of what it pays alone.
#[test]
fn elf_section_shows_shared_relro_saving_pss() {
    let dir = scratch_dir();
    let out = mmkit().args(["tour", "--only", "elf", "--json", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let facts = &doc["sections"][0]["facts"];
    if facts["relro_shared"] == "skipped" {
        assert!(std::env::var_os("CI").is_none(), "g++ is missing under CI: {facts}");
        eprintln!("skipped: g++ is not installed");
        return;
    }
    let page = rustix::param::page_size() as u64;
    // What the text prints inside other facts' rows is in the JSON too.
    assert!(facts["load_segments"].as_u64().unwrap() >= 2, "{facts}");
    assert!(facts["apk_size"].as_u64().unwrap() > facts["library"].as_u64().unwrap(), "{facts}");
    assert_eq!(facts["mapping_0"]["prot"], "r--p", "{facts}");
    assert_eq!(facts["mapping_0"]["kind"], "file", "{facts}");
    assert_eq!((facts["relro_vtables"].as_u64(), facts["relro_processes"].as_u64()), (Some(512), Some(4)), "{facts}");
    assert!(facts["relro_load_address"].as_u64().unwrap() > 0, "{facts}");
    let relro = facts["relro_size"].as_u64().unwrap();
    assert!(relro >= 16 * page, "RELRO of {relro} bytes: {facts}");
    let per_process = |key: &str| -> Vec<u64> {
        facts[key]["per_process_kib"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    };
    let (alone, shared) = (per_process("relro_pss_alone"), per_process("relro_pss_shared"));
    assert_eq!((alone.len(), shared.len()), (4, 4), "{facts}");
    // Alone, each process has its own relocated copy of (nearly) every RELRO page.
    for &kib in &alone {
        assert!(kib * 1024 >= relro * 9 / 10, "a process alone pays {kib} KiB of {relro} bytes: {facts}");
    }
    let (a, s) = (alone.iter().sum::<u64>(), shared.iter().sum::<u64>());
    assert!(s < a, "Pss with sharing {s} KiB, without {a} KiB: {facts}");
    assert!(s * 2 <= a, "sharing saved less than half: {s} KiB vs {a} KiB: {facts}");
    // Every process mapped every RELRO page from the file (the pages are identical).
    let pages = relro.div_ceil(page);
    for p in facts["relro_pages"].as_array().unwrap() {
        assert_eq!((p["from_file"].as_u64(), p["private"].as_u64()), (Some(pages), Some(0)), "{facts}");
    }
    // The RELRO file and the build files are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Regression: `tour --json` left out what the text prints inside a fact's row (the file's
/// write time and pages, the pager's route to userfaultfd, frame counts, the dirty-tracking
/// mechanism): each is a field of `facts` now.
#[test]
fn json_carries_the_facts_the_text_prints_inside_rows() {
    let dir = scratch_dir();
    let out = mmkit()
        .args(["tour", "--only", "file,pager", "--size", "1M", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = &doc["sections"][0]["facts"];
    let page = rustix::param::page_size() as u64;
    assert_eq!(file["file_pages"].as_u64(), Some((1 << 20) / page), "{file}");
    assert!(file["file_write_ns"].as_u64().unwrap() > 0, "{file}");
    let pager = &doc["sections"][1]["facts"];
    if pager["available"] == false {
        eprintln!("pager section skipped: no userfaultfd");
        return;
    }
    assert!(pager["fault_via"].is_string(), "{pager}");
    assert_eq!(pager["uncompressed_file"].as_u64(), Some(1 << 20), "{pager}");
    let frames = pager["compressed_frames"].as_u64().unwrap();
    let decompressed = pager["frames_decompressed"].as_u64().unwrap();
    assert!(frames > 0 && (1..=frames).contains(&decompressed), "{pager}");
    assert!(pager["pages_touched"].as_u64().unwrap() > 0, "{pager}");
    assert_eq!(pager["dirty_pages_found_by"], pager["dirty_mechanism"], "{pager}");
}

/// A failing section (here elf, with no gcc on PATH; on a noexec `--dir` its load fails) is
/// reported in its place, with its error, in the table and in the JSON; the sections after it
/// still run, and the tour exits 1 with one `mmkit:` line naming the section. It stopped at the
/// first failure, and with `--json` printed nothing.
#[test]
fn a_failing_section_is_reported_and_the_others_run() {
    let dir = scratch_dir();
    let no_tools = tempfile::tempdir().unwrap();
    let tour = |json: bool| {
        let mut cmd = mmkit();
        cmd.args(["tour", "--only", "file,elf,mmio", "--size", "64K", "--dir"]).arg(dir.path());
        if json {
            cmd.arg("--json");
        }
        cmd.env("PATH", no_tools.path()).output().unwrap()
    };
    let out = tour(false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mmkit: tour: the elf section failed: ") && err.lines().count() == 1, "{err}");
    assert!(err.contains("gcc") && err.contains("(ENOENT)"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let titles: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(titles.len(), 3, "{text}");
    assert!(titles[0].contains("File-backed") && titles[1].contains("ELF") && titles[2].contains("MMIO"), "{text}");
    let after_elf = text.lines().skip_while(|l| !l.contains("ELF from an APK")).nth(1).unwrap();
    assert!(after_elf.starts_with("  FAILED  ") && after_elf.contains("gcc"), "{text}");

    let out = tour(true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON is printed");
    let sections = doc["sections"].as_array().unwrap();
    let ids: Vec<&str> = sections.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["file", "elf", "mmio"]);
    assert!(sections[0].get("error").is_none() && sections[0]["facts"]["file_size"] == 64 << 10, "{doc}");
    assert!(sections[1]["error"].as_str().unwrap().contains("gcc"), "{doc}");
    assert_eq!(sections[1]["facts"], serde_json::json!({}));
    assert!(sections[2].get("error").is_none(), "{doc}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

/// A tmpfs mounted with `options` on a temporary directory (as root), unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount (util-linux)");
        assert!(status.success(), "mount -t tmpfs -o {options} {}", dir.path().display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A file system without a free inode (tmpfs `nr_inodes=1`: only its root) has free space, so
/// the checks pass and creating each section's temporary file or directory fails: the errors
/// name the errno (they were tempfile's bare `No space left on device (os error 28) at path`),
/// and each section fails on its own. Mounting needs root; the unprivileged run skips it.
#[test]
fn temporary_files_without_an_inode_name_the_errno() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (the root run covers it)");
        return;
    }
    let mounted = Tmpfs::mount("nr_inodes=1,size=64m");
    let out = mmkit()
        .args(["tour", "--only", "file,elf,pager", "--size", "64K", "--json", "--dir"])
        .arg(mounted.0.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mmkit: tour: the file section failed: ") && err.lines().count() == 1, "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON is printed");
    for s in doc["sections"].as_array().unwrap() {
        let e = s["error"].as_str().unwrap_or_else(|| panic!("{s}"));
        assert!(e.contains("No space left on device (ENOSPC)") && !e.contains("os error"), "{e}");
        // Inside `tour: the pager section failed: `, not `tour: ` again.
        assert!(!e.starts_with("tour: "), "{e}");
    }
    assert_eq!(doc["sections"].as_array().unwrap().len(), 3, "{doc}");
}

/// The audit's case: `--dir` on a noexec mount. The elf section fails saying so (it failed at
/// `mmap ... EPERM`) and the mmio and pager sections after it still run and print (it stopped
/// there, and `--json` printed nothing). Mounting needs root; the unprivileged run skips it.
#[test]
fn elf_section_on_a_noexec_dir_says_so_and_the_tour_goes_on() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (the root run covers it)");
        return;
    }
    let mounted = Tmpfs::mount("noexec,size=64m");
    let out = mmkit()
        .args(["tour", "--only", "file,elf,mmio,pager", "--size", "64K", "--json", "--dir"])
        .arg(mounted.0.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mmkit: tour: the elf section failed: ") && err.lines().count() == 1, "{err}");
    assert!(err.contains("noexec") && err.contains(&*mounted.0.path().to_string_lossy()), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON is printed");
    let sections = doc["sections"].as_array().unwrap();
    let ids: Vec<&str> = sections.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["file", "elf", "mmio", "pager"]);
    assert!(sections[1]["error"].as_str().unwrap().contains("noexec"), "{doc}");
    for i in [0, 2, 3] {
        assert!(sections[i].get("error").is_none(), "{}", sections[i]);
    }
    assert!(leftovers(mounted.0.path()).is_empty(), "{:?}", leftovers(mounted.0.path()));
}
