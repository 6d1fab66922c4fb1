//! `mmkit pager pack|info` and the tour's pager section, run as a user would.

use crate::common::*;

use std::os::unix::fs::FileExt;
use std::process::Command;

#[test]
fn pack_then_info_reports_frames_and_zstd_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, packed) = (dir.path().join("data"), dir.path().join("data.zst"));
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 97) as u8 ^ (i / 4096) as u8).collect();
    std::fs::write(&raw, &content).unwrap();
    let p = json(&mmkit(&[
        "pager",
        "pack",
        raw.to_str().unwrap(),
        packed.to_str().unwrap(),
        "--frame-size",
        "128K",
        "--json",
    ]));
    assert_eq!(p["input_bytes"], 1_000_000);
    assert_eq!(p["frames"], 8);
    assert_eq!(p["output_bytes"], std::fs::metadata(&packed).unwrap().len());
    let i = json(&mmkit(&["pager", "info", packed.to_str().unwrap(), "--json"]));
    assert_eq!(i["kind"], "zstd-seekable");
    assert_eq!(i["frames"], 8);
    assert_eq!(i["decompressed_bytes"], 1_000_000);
    assert_eq!(i["max_frame_bytes"], 128 * 1024);
    // The frames alone, and the whole file as pack counted its output (the seek table too).
    assert_eq!(i["file_bytes"], p["output_bytes"]);
    assert!(i["compressed_bytes"].as_u64() < i["file_bytes"].as_u64(), "{i}");
    let text = mmkit(&["pager", "info", packed.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("zstd seekable file"));
    if Command::new("zstd").arg("--version").output().is_ok() {
        let back = dir.path().join("back");
        let st = Command::new("zstd").arg("-dqf").arg(&packed).arg("-o").arg(&back).status().unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(&back).unwrap(), content);
    }
}

/// The text summary said "1 frames of 64.0 KiB" for one frame of 15 KiB (the size asked for is
/// a maximum) and "(0.00x)" for an empty input.
#[test]
fn the_pack_summary_counts_frames_and_gives_no_ratio_for_an_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    for (content, want, not) in [
        (vec![7u8; 15_000], "1 frame of at most 64.0 KiB", "frames"),
        (Vec::new(), "0 B -> ", "x)"),
        (vec![1u8; 200_000], "4 frames of at most 64.0 KiB", "1 frame "),
    ] {
        let (raw, packed) = (dir.path().join("in"), dir.path().join("in.zst"));
        std::fs::write(&raw, &content).unwrap();
        let o = mmkit(&["pager", "pack", raw.to_str().unwrap(), packed.to_str().unwrap()]);
        let out = stdout(&o);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(out.contains(want) && !out.contains(not), "{out}");
    }
}

#[test]
fn info_reports_a_snapshots_data_and_holes() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("mem.snap");
    let page = rustix::param::page_size() as u64;
    let f = std::fs::File::create(&snap).unwrap();
    f.set_len(100 * page).unwrap();
    f.write_all_at(&[1; 10], 3 * page).unwrap();
    f.write_all_at(&[2; 10], 50 * page + 1).unwrap();
    drop(f);
    let i = json(&mmkit(&["pager", "info", snap.to_str().unwrap(), "--json"]));
    assert_eq!(i["kind"], "snapshot");
    assert_eq!(i["pages"], 100);
    assert_eq!(i["data_pages"], 2);
    assert_eq!(i["hole_pages"], 98);
    assert_eq!(i["data_extents"][0], serde_json::json!([3 * page, 4 * page]));
}

#[test]
fn bad_input_is_one_mmkit_line_and_exit_1_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let o = mmkit(&["pager", "info", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("mmkit: ") && err.contains("missing") && err.lines().count() == 1, "{err}");
    let o = mmkit(&["pager", "pack", missing.to_str().unwrap(), dir.path().join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = mmkit(&["pager", "pack", "a", "b", "--level", "99"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mmkit(&["pager", "pack", "a", "b", "--frame-size", "0"]);
    assert_eq!(o.status.code(), Some(2));
    // Below 4 KiB a frame's header and seek-table entry outweigh it (1-byte frames made a
    // 4 MiB input 88 MiB): a usage error naming the value and the range.
    for bad in ["1", "4095", "1K"] {
        let o = mmkit(&["pager", "pack", "a", "b", "--frame-size", bad]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(2) && err.contains(&format!("frame size {bad} ")), "{err}");
        assert!(err.contains("between 4K (4096) and 1G (1073741824)"), "{err}");
    }
    // A /proc file: its size (0) is not its content, as input to info or as pack's output.
    // A /sys attribute (one page by its size) as well: `info` reported a one-page snapshot.
    for p in ["/proc/self/status", "/sys/devices/system/cpu/online", "/sys/kernel/mm/transparent_hugepage/enabled"] {
        if std::fs::metadata(p).is_err() {
            continue;
        }
        let o = mmkit(&["pager", "info", p]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) && err.contains(p), "{err}");
        assert!(err.contains("a /proc or /sys file: its size is not its content"), "{err}");
    }
    let raw = dir.path().join("raw");
    std::fs::write(&raw, vec![7u8; 10_000]).unwrap();
    let o = mmkit(&["pager", "pack", raw.to_str().unwrap(), "/proc/self/status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("/proc/self/status"), "{err}");
    // (An unprivileged user cannot open it for writing at all.)
    assert!(!is_root() || err.contains("the output is a /proc or /sys file"), "{err}");
}

#[test]
fn tour_pager_section_reports_lazy_work() {
    let dir = tempfile::tempdir().unwrap();
    let o = mmkit(&["tour", "--only", "pager", "--size", "8M", "--json", "--dir", dir.path().to_str().unwrap()]);
    let doc = json(&o);
    let f = &doc["sections"][0]["facts"];
    let page = rustix::param::page_size() as u64;
    assert_eq!(f["bytes_touched"], 16 * page);
    let decompressed = f["bytes_decompressed"].as_u64().unwrap();
    assert!(decompressed > 0 && decompressed <= 16 * 64 * 1024, "{f}");
    assert!(f["lazy_pages_read"].as_u64().unwrap() <= 2, "{f}");
    assert_eq!(f["pages_written"], 10);
    assert_eq!(f["dirty_pages_found"], 10);
}

#[test]
fn json_of_non_utf8_paths_is_json_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join(std::ffi::OsStr::from_bytes(b"data\xff"));
    let packed = dir.path().join(std::ffi::OsStr::from_bytes(b"data\xfe.zst"));
    std::fs::write(&raw, vec![7u8; 10_000]).unwrap();
    let run = |args: &[&std::ffi::OsStr]| Command::new(MMKIT).args(args).output().unwrap();
    let pack = ["pager".as_ref(), "pack".as_ref(), raw.as_os_str(), packed.as_os_str(), "--json".as_ref()];
    let p = json(&run(&pack));
    assert_eq!(p["input_bytes"], 10_000);
    assert!(p["input"].as_str().unwrap().ends_with("data\u{fffd}"), "{p}");
    let i = json(&run(&["pager".as_ref(), "info".as_ref(), packed.as_os_str(), "--json".as_ref()]));
    assert_eq!(i["kind"], "zstd-seekable");
    let s = json(&run(&["pager".as_ref(), "info".as_ref(), raw.as_os_str(), "--json".as_ref()]));
    assert_eq!(s["kind"], "snapshot");
}

#[test]
fn info_of_a_file_too_short_for_a_seek_table_says_so() {
    // A file starting with zstd's magic but shorter than a seek table was reported with std's
    // bare `io error: Invalid argument (os error 22)` (the table's read seeked before the start).
    let dir = tempfile::tempdir().unwrap();
    for len in [4usize, 16] {
        let short = dir.path().join(format!("short{len}.zst"));
        let mut bytes = vec![0x28, 0xb5, 0x2f, 0xfd];
        bytes.resize(len, 0);
        std::fs::write(&short, bytes).unwrap();
        let o = mmkit(&["pager", "info", short.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains(&format!("{len} bytes is too short for a seek table")), "{err}");
        assert!(!err.contains("os error") && err.lines().count() == 1, "{err}");
    }
    // The smallest seekable file (an empty input) is not refused.
    let (empty, packed) = (dir.path().join("empty"), dir.path().join("empty.zst"));
    std::fs::write(&empty, b"").unwrap();
    assert!(mmkit(&["pager", "pack", empty.to_str().unwrap(), packed.to_str().unwrap()]).status.success());
    let i = json(&mmkit(&["pager", "info", packed.to_str().unwrap(), "--json"]));
    assert_eq!((i["kind"].as_str(), i["decompressed_bytes"].as_u64()), (Some("zstd-seekable"), Some(0)), "{i}");
}

/// Regression: SIGINT (Ctrl-C) or SIGTERM during a pack killed mmkit with its output
/// half-written, no seekable file (no seek table). The pack stops at its next MiB, removes the
/// output as a failed pack does, and says so (exit 1).
#[test]
fn an_interrupted_pack_removes_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("sparse"), dir.path().join("out.zst"));
    // 1 TiB of holes: minutes of packing.
    std::fs::File::create(&input).unwrap().set_len(1 << 40).unwrap();
    use rustix::process::Signal;
    for (sig, name) in [(Signal::INT, "SIGINT"), (Signal::TERM, "SIGTERM")] {
        let child = Command::new(MMKIT)
            .args(["pager", "pack"])
            .args([&input, &output])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Under way: the output has bytes.
        let start = std::time::Instant::now();
        while !std::fs::metadata(&output).is_ok_and(|m| m.len() > 0) {
            assert!(start.elapsed().as_secs() < 30, "the pack wrote nothing in 30 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {:?} {err}", out.status);
        assert!(err.starts_with("mmkit: pack of ") && err.contains(&format!("interrupted by {name}")), "{err}");
        assert!(err.contains(&format!("{} removed", output.display())) && err.lines().count() == 1, "{err}");
        assert!(!output.exists(), "{name}: the half-written output was left");
    }
}
