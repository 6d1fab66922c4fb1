//! `mmkit tour` end to end: the facts it reports are the kernel's.

use std::process::Command;

fn mmkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmkit"))
}

#[test]
fn file_section_reports_kernel_facts_as_json() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
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
    assert!(err.contains("/nonexistent/dir"), "{err}");
}
