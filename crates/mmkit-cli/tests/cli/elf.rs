//! `mmkit elf plan|load|call` and the tour's elf section, run as a user would.

use crate::common::*;

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn apk(dir: &Path, so: &Path) -> String {
    let path = dir.join("app.apk");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("AndroidManifest.xml", stored).unwrap();
    zip.write_all(b"<manifest/>").unwrap();
    let page = u16::try_from(rustix::param::page_size()).unwrap();
    zip.start_file("lib/x86_64/libfxbasic.so", stored.with_alignment(page)).unwrap();
    zip.write_all(&std::fs::read(so).unwrap()).unwrap();
    zip.finish().unwrap();
    format!("{}!/lib/x86_64/libfxbasic.so", path.display())
}

#[test]
fn plan_prints_headers_and_page_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let so = so.to_str().unwrap();
    let o = mmkit(&["elf", "plan", so, "--page-size", "4k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("page size 0x1000"), "{text}");
    assert!(text.contains("Program headers (PT_LOAD)"), "{text}");
    assert!(text.contains("r-xp"), "{text}");
    assert!(text.contains("RELRO"), "{text}");
    // A 4 KiB-aligned library cannot be planned for 16 KiB pages: exit 1 and say why.
    let o = mmkit(&["elf", "plan", so, "--page-size", "16k"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("mmkit: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("max-page-size=16384"), "{}", stderr(&o));
    // Not a page size: usage error.
    let o = mmkit(&["elf", "plan", so, "--page-size", "3000"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn plan_json_for_16k_pages() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,-z,max-page-size=16384"]);
    let o = mmkit(&["elf", "plan", so.to_str().unwrap(), "--page-size", "16k", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plan"]["page_size"], 16384);
    let segs = v["plan"]["segments"].as_array().unwrap();
    assert!(segs.len() >= 2);
    for s in segs {
        assert_eq!(s["map_vaddr"].as_u64().unwrap() % 16384, 0);
    }
}

#[test]
fn load_prints_mappings_with_residency_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let o = mmkit(&["elf", "load", so.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("r-xp"), "{text}");
    assert!(text.contains("pages resident"), "{text}");
    assert!(text.contains("libfxbasic.so"), "{text}");
    assert!(text.contains("needs libc.so.6 (loaded by glibc's linker)"), "{text}");
    assert!(text.contains("verified against /proc/self/maps"), "{text}");
    let o = mmkit(&["elf", "load", so.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["unwind_tables_registered"], true, "every library's tables are registered");
    let maps = v["mappings"].as_array().unwrap();
    assert!(maps.iter().any(|m| m["perms"] == "r-xp" && m["kind"] == "segment"));
    assert!(maps.iter().all(|m| m["resident_pages"].as_u64() <= m["pages"].as_u64()));
}

#[test]
fn call_prints_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let so = so.to_str().unwrap();
    let o = mmkit(&["elf", "call", so, "fx_add", "2", "40"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "42");
    let o = mmkit(&["elf", "call", so, "fx_sub", "-5", "0x3"]);
    assert_eq!(stdout(&o).trim(), "-8", "{}", stderr(&o));
    let o = mmkit(&["elf", "call", so, "fx_sum6", "1", "2", "3", "4", "5", "6", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"symbol": "fx_sum6", "args": [1, 2, 3, 4, 5, 6], "result": 91}));
    let o = mmkit(&["elf", "call", so, "fx_format_len", "12345"]);
    assert_eq!(stdout(&o).trim(), "12");
}

/// A copy of the library `so` in `dir` under a file name that is not UTF-8.
fn non_utf8_copy(dir: &Path, so: &Path) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"lib\xff\xfe.so"));
    std::fs::copy(so, &odd).unwrap();
    odd
}

/// An APK holding `so`, in a directory of `dir` whose name is not UTF-8: the directory and the
/// `archive!/entry` argument naming the library in it.
fn non_utf8_apk(dir: &Path, so: &Path) -> (std::path::PathBuf, std::ffi::OsString) {
    use std::os::unix::ffi::OsStrExt;
    let odd_dir = dir.join(std::ffi::OsStr::from_bytes(b"\xff"));
    std::fs::create_dir(&odd_dir).unwrap();
    let spec = apk(&odd_dir, so);
    let (_, entry) = spec.rsplit_once("!/").unwrap();
    let mut arg = odd_dir.join("app.apk").into_os_string();
    arg.push(format!("!/{entry}"));
    (odd_dir, arg)
}

#[test]
fn a_source_whose_path_is_not_utf8_is_loaded() {
    // A file name is any bytes. SOURCE was a String: a name that is not UTF-8 was refused as a
    // usage error (exit 2) before anything was opened, from a file and as an APK's path.
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let odd = non_utf8_copy(dir.path(), &so);
    let o = Command::new(MMKIT).args(["elf", "call"]).arg(&odd).args(["fx_add", "2", "40"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "42");
    for sub in ["plan", "load"] {
        let o = Command::new(MMKIT).args(["elf", sub]).arg(&odd).output().unwrap();
        assert!(o.status.success(), "elf {sub}: {}", stderr(&o));
    }
    let (_, arg) = non_utf8_apk(dir.path(), &so);
    let o = Command::new(MMKIT).args(["elf", "call"]).arg(&arg).args(["fx_mul", "6", "7"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "42");
    // An empty SOURCE is still a usage error.
    assert_eq!(mmkit(&["elf", "plan", ""]).status.code(), Some(2));
}

/// Regression: `elf plan --json` and `elf load --json` wrote a `source` that is not UTF-8
/// lossily (U+FFFD), without the exact bytes the other reports carry (`path_bytes`): beside
/// the lossy string, `source_bytes` holds them (a file, an APK's archive path + `!/` + entry,
/// `--fd-offset`'s file); a UTF-8 source has no such field.
#[test]
fn json_names_a_non_utf8_source_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let odd = non_utf8_copy(dir.path(), &so);
    let bytes = |b: &[u8]| serde_json::Value::from(b.iter().map(|&b| serde_json::Value::from(b)).collect::<Vec<_>>());
    let check = |args: &[&std::ffi::OsStr], exact: &[u8]| {
        let o = Command::new(MMKIT).args(args).arg("--json").output().unwrap();
        let v = json(&o);
        assert_eq!(v["source"], String::from_utf8_lossy(exact).as_ref(), "{args:?}: {v}");
        assert_eq!(v["source_bytes"], bytes(exact), "{args:?}: {v}");
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let odd_bytes = odd.as_os_str().as_bytes();
    check(&[os("elf"), os("plan"), odd.as_os_str()], odd_bytes);
    check(&[os("elf"), os("load"), odd.as_os_str()], odd_bytes);
    // An APK whose path is not UTF-8.
    let (odd_dir, arg) = non_utf8_apk(dir.path(), &so);
    check(&[os("elf"), os("plan"), &arg], arg.as_bytes());
    check(&[os("elf"), os("load"), &arg], arg.as_bytes());
    // A bare name found in a directory of LD_LIBRARY_PATH that is not UTF-8: the file found.
    let found = odd_dir.join("libfxodd.so");
    std::fs::copy(&so, &found).unwrap();
    for sub in ["plan", "load"] {
        let o =
            Command::new(MMKIT).args(["elf", sub, "libfxodd.so", "--json"]).env("LD_LIBRARY_PATH", &odd_dir).output();
        let v = json(&o.unwrap());
        assert_eq!(v["source_bytes"], bytes(found.as_os_str().as_bytes()), "elf {sub}: {v}");
    }
    // --fd-offset: the file's name.
    let mut bundle = vec![0u8; 65536];
    bundle.extend(std::fs::read(&so).unwrap());
    let bundle_path = dir.path().join(std::ffi::OsStr::from_bytes(b"bundle\xff.bin"));
    std::fs::write(&bundle_path, bundle).unwrap();
    check(
        &[os("elf"), os("load"), bundle_path.as_os_str(), os("--fd-offset"), os("65536")],
        bundle_path.as_os_str().as_bytes(),
    );
    // A UTF-8 source: no source_bytes.
    for sub in ["plan", "load"] {
        let v = json(&Command::new(MMKIT).args(["elf", sub]).arg(&so).arg("--json").output().unwrap());
        assert!(v.get("source_bytes").is_none(), "elf {sub}: {v}");
    }
}

#[test]
fn call_from_an_apk_entry() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let spec = apk(dir.path(), &so);
    let o = mmkit(&["elf", "call", &spec, "fx_mul", "6", "7", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], 42);
    let o = mmkit(&["elf", "load", &spec]);
    assert!(stdout(&o).contains("app.apk"), "{}", stdout(&o));
}

#[test]
fn call_errors_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let so = so.to_str().unwrap();
    let o = mmkit(&["elf", "call", so, "no_such_fn"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no_such_fn"), "{}", stderr(&o));
    // A seventh argument is a usage error (the help says: at most six).
    let o = mmkit(&["elf", "call", so, "fx_add", "1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unexpected value '7'"), "{}", stderr(&o));
    let missing = dir.path().join("missing.apk");
    let o = mmkit(&["elf", "load", &format!("{}!/lib/x.so", missing.display())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file or directory (ENOENT)"), "{}", stderr(&o));
}

#[test]
fn call_refuses_symbols_that_are_not_functions() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let mut cases = vec![(so.to_str().unwrap().to_owned(), "fx_counter", "data object")];
    // libz's version-name symbols are absolute (SHN_ABS), value 0: calling one jumped to 0. A
    // copy (the system's file itself goes to the system linker).
    if let Some(z) = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    {
        let copy = dir.path().join("libz.so.1");
        std::fs::copy(z, &copy).unwrap();
        cases.push((copy.to_str().unwrap().to_owned(), "ZLIB_1.2.2", "absolute symbol"));
    }
    for (lib, symbol, what) in &cases {
        let o = mmkit(&["elf", "call", lib, symbol]);
        assert_eq!(o.status.code(), Some(1), "{lib} {symbol}: {o:?}");
        let err = stderr(&o);
        assert!(err.starts_with("mmkit: ") && err.contains(symbol) && err.contains(what), "{err}");
        assert!(err.contains("not a function"), "{err}");
    }
}

#[test]
fn call_finds_a_bare_soname() {
    if !["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"].iter().any(|p| Path::new(p).exists())
    {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "libz.so.1 is missing (install zlib1g)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Run where no file of that name exists: the soname is searched for as dlopen would. A
    // directory of that name here is not looked at (it was opened: "not a regular file").
    std::fs::create_dir(dir.path().join("libz.so.1")).unwrap();
    let o = Command::new(MMKIT)
        .args(["elf", "call", "libz.so.1", "adler32", "1", "0", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "1");
    let o = Command::new(MMKIT).args(["elf", "plan", "libz.so.1"]).current_dir(dir.path()).output().unwrap();
    assert!(o.status.success() && stdout(&o).contains("/libz.so.1: ELF image"), "{}", stderr(&o));
    // Loaded into a reservation, the soname is planned as the file found (it was stat'ed
    // in the current directory), and the mappings name that file.
    let o = Command::new(MMKIT)
        .args(["elf", "load", "libz.so.1", "--system", "map", "--reserve-at", "0x10000"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let segment = text.lines().find(|l| l.contains("r-xp")).unwrap_or_else(|| panic!("{text}"));
    assert!(segment.contains("/libz.so.1 "), "{text}");
    let o = mmkit(&["elf", "call", "libno-such-soname.so.9", "f"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("libno-such-soname.so.9"), "{}", stderr(&o));
}

#[test]
fn call_into_a_library_with_a_thread_local_destructor_exits_cleanly() {
    // The destructor runs at exit, after the library's handle is gone: it must still be mapped.
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mmkit-elf/tests/fixtures/tlsdtor.cpp");
    let so = dir.path().join("libtl.so");
    let status = Command::new("g++")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("this test compiles a C++ fixture: install g++");
    assert!(status.success());
    let o = mmkit(&["elf", "call", so.to_str().unwrap(), "fx_tl_fill", "42", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], 42);
}

/// Whether gdb is installed (required in CI, where scripts/test installs it).
fn have_gdb() -> bool {
    if Command::new("gdb").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "gdb is missing (scripts/test installs it)");
        eprintln!("skipping: no gdb");
        return false;
    }
    true
}

#[test]
fn gdb_lists_breaks_in_and_forgets_an_mmkit_loaded_library() {
    if !have_gdb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-g"]);
    let so = so.to_str().unwrap();
    let o = Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "set breakpoint pending on", "-ex", "break fx_add", "-ex", "run"])
        .args(["-ex", "info sharedlibrary", "-ex", "bt 1", "-ex", "break exit", "-ex", "continue"])
        .args(["-ex", "info sharedlibrary", "--args", MMKIT, "elf", "call", so, "fx_add", "1", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // Stopped in the library by name: gdb found it through the r_debug announcement.
    assert!(text.contains("Breakpoint 1, fx_add (a=1, b=2)"), "{text}\n{}", stderr(&o));
    let tables: Vec<&str> = text.split("Shared Object Library").skip(1).collect();
    assert_eq!(tables.len(), 2, "{text}");
    assert!(tables[0].contains(so), "listed while loaded:\n{text}");
    let at_exit = tables[1].split("Breakpoint").next().unwrap_or("");
    assert!(!at_exit.contains(so), "withdrawn once unloaded:\n{text}");
}

#[test]
fn gdb_reads_the_list_of_a_process_holding_a_static_tls_donor() {
    // A library built for static TLS gets its block through a donor object glibc loads from a
    // memfd and lists by that path. Named `/proc/self/fd/N`, gdb opened its own descriptor N
    // (a pipe) and blocked for ever; `/proc/<pid>/fd/N` is the donor for gdb too.
    if !have_gdb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mmkit-elf/tests/fixtures/tls_static.c");
    let so = gcc(dir.path(), "libfxtlsst.so", &src, &["-shared", "-fPIC", "-g"]);
    let so = so.to_str().unwrap();
    // gdb ignores SIGTERM while blocked: a hang is ended by SIGKILL and reported.
    let o = Command::new("timeout")
        .args(["-s", "KILL", "120", "gdb", "-nx", "-batch", "-ex", "set breakpoint pending on"])
        .args(["-ex", "break fx_static_bump", "-ex", "run", "-ex", "info sharedlibrary"])
        .args(["--args", MMKIT, "elf", "call", so, "fx_static_bump", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_ne!(o.status.code(), None, "gdb was killed after 120 s (blocked?):\n{text}\n{}", stderr(&o));
    assert!(text.contains("Breakpoint 1, fx_static_bump (by=3)"), "{text}\n{}", stderr(&o));
    let table = text.split("Shared Object Library").nth(1).unwrap_or_else(|| panic!("{text}"));
    assert!(table.contains(so), "{text}");
    assert!(!table.contains("/proc/self/"), "{text}");
    assert!(table.contains("/fd/"), "the donor is listed: {text}");
}

#[test]
fn tour_elf_section_loads_from_an_apk() {
    let dir = tempfile::tempdir().unwrap();
    let o = mmkit(&["tour", "--only", "elf", "--json", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["sections"][0];
    assert_eq!(s["id"], "elf");
    let f = &s["facts"];
    assert_eq!(f["calls"]["tour_add(2,40)"], 42);
    assert_eq!(f["verified"], true);
    let page = rustix::param::page_size() as u64;
    assert_eq!(f["entry_offset"].as_u64().unwrap() % page, 0);
    let resident = f["resident_pages"]["present"].as_u64().unwrap();
    let mapped = f["resident_pages"]["mapped"].as_u64().unwrap();
    assert!(mapped >= 256, "the 1 MiB table alone is 256 pages: {mapped}");
    assert!(resident < mapped / 2, "{resident} of {mapped} pages resident");
    // The temporary files are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn load_into_a_reservation_keeps_a_large_segment_alignment() {
    // 2 MiB-aligned segments (as 16 KiB-aligned Android libraries on a 4 KiB kernel): the
    // reservation the CLI makes must be aligned for them. A page-aligned one was refused by the
    // loader ("does not keep the segments aligned to their p_align") almost every time.
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,-z,max-page-size=0x200000"]);
    let so = so.to_str().unwrap();
    for (at, offset) in [("0", 0), ("0x200000", 0x200000)] {
        for _ in 0..3 {
            let o = mmkit(&["elf", "load", so, "--reserve-at", at, "--json"]);
            assert!(o.status.success(), "--reserve-at {at}: {}", stderr(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let start = v["span"]["start"].as_u64().unwrap();
            assert_eq!(start % 0x200000, 0, "{v}");
            assert_eq!(start, v["reservation"]["start"].as_u64().unwrap() + offset);
        }
    }
}

#[test]
fn load_into_a_reservation_sealed_and_from_an_fd_offset() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &[]);
    let so = so.to_str().unwrap();
    // --seal needs mseal(2), Linux 6.10+: before, the load is refused saying so, and the rest
    // runs without it.
    let sealing = kernel_at_least(6, 10);
    if !sealing {
        let o = mmkit(&["elf", "load", so, "--reserve-at", "0x10000", "--seal", "--json"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.starts_with("mmkit: ") && err.contains("mseal") && err.contains("6.10"), "{err}");
        eprintln!("skipped: --seal on a kernel before 6.10 (no mseal): checked that it is refused, not that it seals");
    }
    let seal: &[&str] = if sealing { &["--seal"] } else { &[] };
    // --reserve-at: the span starts at the offset in the reservation the CLI made.
    let o = mmkit(&[&["elf", "load", so, "--reserve-at", "0x10000", "--json"][..], seal].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let start = v["reservation"]["start"].as_u64().unwrap();
    assert_eq!(v["reservation"]["offset"], 0x10000);
    assert_eq!(v["span"]["start"].as_u64().unwrap(), start + 0x10000);
    assert_eq!(v["sealed"], sealing);
    assert_eq!(v["verified"], true);
    let o = mmkit(&[&["elf", "load", so, "--reserve-at", "0x10000"][..], seal].concat());
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("in the caller's reservation") && text.contains("at offset 0x10000"), "{text}");
    assert_eq!(text.contains("code and RELRO sealed (mseal)"), sealing, "{text}");
    // --fd-offset: the library after a page of other bytes in one file.
    let page = 65536; // a multiple of every page size
    let mut bundle = vec![0u8; page];
    bundle.extend(std::fs::read(so).unwrap());
    let bundle_path = dir.path().join("bundle.bin");
    std::fs::write(&bundle_path, bundle).unwrap();
    let b = bundle_path.to_str().unwrap();
    let o = mmkit(&["elf", "load", b, "--fd-offset", "65536", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fd_offset"], 65536);
    assert_eq!(v["verified"], true);
    let offsets: Vec<u64> = v["mappings"].as_array().unwrap().iter().filter_map(|m| m["offset"].as_u64()).collect();
    assert_eq!(offsets.iter().min(), Some(&65536), "{offsets:?}");
    let o = mmkit(&["elf", "load", b, "--fd-offset", "65536"]);
    assert!(stdout(&o).contains("from the file's fd at offset 0x10000"), "{}", stdout(&o));
    // Misaligned: a usage error (exit 2) before anything is opened, as the help's "a page
    // multiple" says (it was exit 1 after the load had started).
    let o = mmkit(&["elf", "load", b, "--fd-offset", "100"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("mmkit: ") && err.contains("not a multiple of the page size"), "{err}");
    // Not the library at that offset: the error says which offset, not only the image's range.
    let o = mmkit(&["elf", "load", so, "--fd-offset", "65536"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the image at offset 0x10000 of the file"), "{}", stderr(&o));
}

#[test]
fn load_writes_and_uses_a_relro_file() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,-z,relro,-z,now"]);
    let so = so.to_str().unwrap();
    let relro = dir.path().join("relro");
    let r = relro.to_str().unwrap();
    let o = mmkit(&["elf", "load", so, "--write-relro", r, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pages = v["relro_sharing"]["shared_pages"].as_u64().unwrap();
    assert!(pages >= 1);
    assert_eq!(v["relro_sharing"]["private_pages"], 0);
    assert_eq!(std::fs::metadata(&relro).unwrap().len(), pages * v["page_size"].as_u64().unwrap());
    // Another process, another address: every page is counted, shared or private.
    let o = mmkit(&["elf", "load", so, "--use-relro", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("pages mapped from the RELRO file") && text.contains("private (they differ)"), "{text}");
    // A RELRO file of another length: one `mmkit:` line, exit 1.
    std::fs::write(&relro, b"short").unwrap();
    let o = mmkit(&["elf", "load", so, "--use-relro", r]);
    assert_eq!(o.status.code(), Some(1));
    // It names the RELRO file, not only the library (it said "the RELRO file of LIB").
    assert!(stderr(&o).starts_with("mmkit: ") && stderr(&o).contains(&format!("the RELRO file {r}")), "{}", stderr(&o));
}

/// `--system`: who loads system libraries. By default the system linker loads a system
/// library named by path, so `load` has no mmkit mappings to show and says how to get them;
/// `--system map` maps a private copy (its mappings are listed and verified); `refuse` fails
/// a library whose dependency is a system library not yet loaded, naming it.
#[test]
fn system_policy_is_chosen_with_system() {
    let libz = [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("zlib is installed (zlib1g)");
    let o = mmkit(&["elf", "load", libz]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("the system linker mapped this system library") && stderr(&o).contains("--system map"),
        "{}",
        stderr(&o)
    );
    let o = mmkit(&["elf", "load", "--system", "map", libz]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("r-xp") && text.contains("libz.so.1") && text.contains("verified against /proc/self/maps"),
        "{text}"
    );
    // adler32(1, NULL, 0) is 1, whoever loaded zlib.
    for system in ["linker", "map"] {
        let o = mmkit(&["elf", "call", "--system", system, "libz.so.1", "adler32", "1", "0", "0"]);
        assert!(o.status.success(), "{system}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "1", "{system}");
    }
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,--no-as-needed", "-lz"]);
    let o = mmkit(&["elf", "call", "--system", "refuse", so.to_str().unwrap(), "fx_add", "1", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("libz.so.1") && stderr(&o).contains("refuses system libraries"), "{}", stderr(&o));
    // The namespace is named after the option (it was "namespace default refuses ...").
    assert!(stderr(&o).contains("namespace default (--system refuse) refuses"), "{}", stderr(&o));
    let o = mmkit(&["elf", "call", so.to_str().unwrap(), "fx_add", "1", "2"]);
    assert_eq!(stdout(&o).trim(), "3", "{}", stderr(&o));
    let o = mmkit(&["elf", "load", "--system", "sometimes", libz]);
    assert_eq!(o.status.code(), Some(2));
}

/// `--write-relro` errors name the operation, the path and the errno (never `os error 2`), and a
/// FIFO is refused as not a regular file before anything is truncated (not `ftruncate ... EINVAL`).
#[test]
fn write_relro_errors_name_the_path_and_errno() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,-z,relro,-z,now"]);
    let so = so.to_str().unwrap();
    let o = mmkit(&["elf", "load", so, "--write-relro", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("mmkit: ") && err.lines().count() == 1, "{err}");
    assert!(err.contains("of /nonexistent/x failed: No such file or directory (ENOENT)"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    let o = mmkit(&["elf", "load", so, "--write-relro", fifo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("not a regular file: a FIFO") && !err.contains("EINVAL"), "{err}");
}

/// A `--write-relro` file the run created is removed when the load fails: an empty file was
/// left behind.
#[test]
fn write_relro_file_is_not_left_when_the_load_fails() {
    let dir = tempfile::tempdir().unwrap();
    let not_elf = dir.path().join("not-elf.so");
    std::fs::write(&not_elf, b"not an ELF file").unwrap();
    let relro = dir.path().join("relro");
    let o = mmkit(&["elf", "load", not_elf.to_str().unwrap(), "--write-relro", relro.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad magic"), "{}", stderr(&o));
    assert!(!relro.exists(), "the failed load left {}", relro.display());
    // A file that was there before is not removed.
    std::fs::write(&relro, b"").unwrap();
    let o = mmkit(&["elf", "load", not_elf.to_str().unwrap(), "--write-relro", relro.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(relro.exists());
}

/// `--write-relro` naming the library itself (or its APK, or through a link) emptied it before
/// the load read it: the library was lost and the error blamed it ("too short for an ELF
/// header"). It is refused, and the file is left as it was.
#[test]
fn write_relro_over_the_library_is_refused_and_leaves_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture_so(dir.path(), &["-Wl,-z,relro,-z,now"]);
    let bytes = std::fs::read(&so).unwrap();
    let apk_source = apk(dir.path(), &so);
    let apk_path = dir.path().join("app.apk");
    let apk_bytes = std::fs::read(&apk_path).unwrap();
    let link = dir.path().join("link.so");
    std::os::unix::fs::symlink(&so, &link).unwrap();
    let (so_s, link_s, apk_s) = (so.to_str().unwrap(), link.to_str().unwrap(), apk_path.to_str().unwrap());
    for args in [
        &["elf", "load", so_s, "--write-relro", so_s][..],
        &["elf", "load", link_s, "--write-relro", so_s],
        &["elf", "load", so_s, "--write-relro", link_s],
        &["elf", "load", so_s, "--fd-offset", "0", "--write-relro", so_s],
        &["elf", "load", &apk_source, "--write-relro", apk_s],
    ] {
        let o = mmkit(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("mmkit: ") && err.lines().count() == 1, "{args:?}: {err}");
        assert!(err.contains("the file the library is loaded from"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&so).unwrap(), bytes, "{args:?} changed the library");
        assert_eq!(std::fs::read(&apk_path).unwrap(), apk_bytes, "{args:?} changed the APK");
    }
    // Another file is still written.
    let relro = dir.path().join("relro");
    let o = mmkit(&["elf", "load", so_s, "--write-relro", relro.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--write-relro` naming one of the library's dependencies emptied it before the load, which
/// then failed on that dependency ("too short"): the user's file was lost. It is now opened as
/// it is and refused by the loader once the dependency is mapped; the file is left whole.
#[test]
fn write_relro_over_a_dependency_is_refused_and_leaves_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let dep_c = dir.path().join("dep.c");
    std::fs::write(&dep_c, "long fx_dep(long x) { return x + 1; }\n").unwrap();
    let dep = gcc(dir.path(), "libfxrelrodep.so", &dep_c, &["-shared", "-fPIC", "-Wl,-soname,libfxrelrodep.so"]);
    let user_c = dir.path().join("user.c");
    std::fs::write(&user_c, "long fx_dep(long);\nlong fx_user(long x) { return fx_dep(x) * 2; }\n").unwrap();
    let user = dir.path().join("libfxrelrouser.so");
    let status = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-z,relro,-z,now", "-Wl,--enable-new-dtags,-rpath,$ORIGIN", "-o"])
        .arg(&user)
        .arg(&user_c)
        .arg(format!("-L{}", dir.path().display()))
        .arg("-lfxrelrodep")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&dep).unwrap();
    let o = mmkit(&["elf", "load", user.to_str().unwrap(), "--write-relro", dep.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("this process maps it") && err.contains("libfxrelrodep.so"), "{err}");
    assert_eq!(std::fs::read(&dep).unwrap(), bytes, "the dependency was changed");
    // The library still loads and calls through its dependency.
    let o = mmkit(&["elf", "call", user.to_str().unwrap(), "fx_user", "20"]);
    assert_eq!(stdout(&o).trim(), "42", "{}", stderr(&o));
}

/// An empty SOURCE is a usage error that says so (exit 2), not a search for a library named ``
/// that fails with `find library  failed`.
#[test]
fn empty_source_is_a_usage_error() {
    for args in [&["elf", "plan", ""][..], &["elf", "load", ""], &["elf", "call", "", "f"]] {
        let o = mmkit(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        // As an empty PATH of the other commands is refused.
        assert!(err.starts_with("mmkit: a value is required for '<SOURCE>'"), "{args:?}: {err}");
        assert!(!err.contains("find library"), "{err}");
    }
}

#[test]
fn lazy_loads_a_plugin_whose_unused_code_calls_a_missing_function_and_the_call_exits_127() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lazy.c");
    std::fs::write(
        &src,
        "extern long mmkit_cli_missing(long);\n\
         long fx_ok(long x) { return x + 1; }\n\
         long fx_call_missing(long x) { return mmkit_cli_missing(x); }\n",
    )
    .unwrap();
    let so = gcc(dir.path(), "libfxlazy.so", &src, &["-shared", "-fPIC"]);
    let so = so.to_str().unwrap();
    // Bound at load by default (RTLD_NOW, Android): the missing function fails the load.
    let o = mmkit(&["elf", "call", so, "fx_ok", "41"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("undefined symbol `mmkit_cli_missing`"), "{}", stderr(&o));
    // --lazy (RTLD_LAZY): it loads, and what is defined works.
    let o = mmkit(&["elf", "call", "--lazy", so, "fx_ok", "41"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "42");
    let o = mmkit(&["elf", "load", "--lazy", so, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["unbound_functions"], serde_json::json!(["mmkit_cli_missing"]), "{v}");
    // The call ends the process as glibc's lazy binding ends it.
    let o = mmkit(&["elf", "call", "--lazy", so, "fx_call_missing", "1"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let want = format!("symbol lookup error: {so}: undefined symbol: mmkit_cli_missing");
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

#[test]
fn deep_bind_calls_the_librarys_own_definition_before_the_global_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("deep.c");
    // The library defines getpid too: glibc's global scope (libc) wins unless RTLD_DEEPBIND.
    std::fs::write(&src, "int getpid(void) { return 4242; }\nlong fx_pid(void) { return getpid(); }\n").unwrap();
    let so = gcc(dir.path(), "libfxdeep.so", &src, &["-shared", "-fPIC"]);
    let so = so.to_str().unwrap();
    let o = mmkit(&["elf", "call", so, "fx_pid"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(stdout(&o).trim(), "4242", "libc's getpid comes first");
    let o = mmkit(&["elf", "call", "--deep-bind", so, "fx_pid"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "4242", "--deep-bind: the library's own getpid");
}

/// A copy of `mmkit` whose own search path is `dir` (`patchelf --set-rpath`, as a `DT_RPATH`
/// with `rpath`, else a `DT_RUNPATH`), or `None` (skipped; a failure under CI=true) without
/// patchelf.
fn mmkit_with_search_path(tmp: &Path, dir: &Path, rpath: bool) -> Option<std::path::PathBuf> {
    let copy = tmp.join(if rpath { "mmkit-rpath" } else { "mmkit-runpath" });
    std::fs::copy(MMKIT, &copy).unwrap();
    let mut patch = Command::new("patchelf");
    if rpath {
        patch.arg("--force-rpath");
    }
    match patch.arg("--set-rpath").arg(dir).arg(&copy).status() {
        Ok(s) if s.success() => Some(copy),
        other => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "patchelf: {other:?} (scripts/test installs it)");
            eprintln!("skipping: patchelf is not here ({other:?})");
            None
        }
    }
}

/// glibc searches the program's `DT_RPATH` for the dependencies of every library without
/// `DT_RUNPATH` (after their loaders'), and the program's own search path for a bare name it
/// `dlopen`s; mmkit-elf does too, mapping what it finds there (a library only the system
/// linker's own search finds is loaded by glibc instead).
#[test]
fn the_programs_own_search_path_is_searched_as_glibc_searches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib_dir, top_dir) = (tmp.path().join("dir"), tmp.path().join("top"));
    std::fs::create_dir_all(&lib_dir).unwrap();
    std::fs::create_dir_all(&top_dir).unwrap();
    let dep_src = tmp.path().join("dep.c");
    std::fs::write(&dep_src, "long fx_dep(void) { return 41; }\n").unwrap();
    let top_src = tmp.path().join("top.c");
    std::fs::write(&top_src, "extern long fx_dep(void);\nlong fx_top(void) { return fx_dep() + 1; }\n").unwrap();
    gcc(&lib_dir, "libfxdep.so", &dep_src, &["-shared", "-fPIC"]);
    gcc(&lib_dir, "libfxbare.so", &dep_src, &["-shared", "-fPIC"]);
    let dir_flag = format!("-L{}", lib_dir.display());
    let top = gcc(&top_dir, "libfxtop.so", &top_src, &["-shared", "-fPIC", &dir_flag, "-Wl,--no-as-needed", "-lfxdep"]);
    let top = top.to_str().unwrap();
    let Some(with_rpath) = mmkit_with_search_path(tmp.path(), &lib_dir, true) else { return };
    let run = |exe: &Path, args: &[&str]| Command::new(exe).args(args).output().unwrap();
    // The program's DT_RPATH: the dependency is found there and mapped by mmkit.
    let v = json(&run(&with_rpath, &["elf", "load", top, "--json"]));
    assert_eq!(v["dependencies"][0], serde_json::json!({"name": "libfxdep.so", "loaded_by": "mmkit"}), "{v}");
    assert_eq!(stdout(&run(&with_rpath, &["elf", "call", top, "fx_top"])).trim(), "42");
    // A bare name: found in the program's DT_RPATH (and mapped), as glibc's dlopen finds it.
    let bare = lib_dir.join("libfxbare.so");
    let v = json(&run(&with_rpath, &["elf", "load", "libfxbare.so", "--json"]));
    assert_eq!(v["source"], bare.to_str().unwrap(), "{v}");
    // ... and in its DT_RUNPATH, which glibc uses for the program's own dlopen only.
    let Some(with_runpath) = mmkit_with_search_path(tmp.path(), &lib_dir, false) else { return };
    let v = json(&run(&with_runpath, &["elf", "load", "libfxbare.so", "--json"]));
    assert_eq!(v["source"], bare.to_str().unwrap(), "{v}");
    // Without either, the bare name is not found.
    let o = mmkit(&["elf", "load", "libfxbare.so"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// The loader opens a path first and refuses a non-regular file after, as glibc's `dlopen`;
/// the CLI refuses it before opening it (mmkit::open's rule for tools). The fact: a writer
/// blocked in `open(2)` of a FIFO is released by any reader's open, and stays blocked when
/// `mmkit elf load|plan|call` is handed the FIFO.
#[test]
fn elf_commands_refuse_a_fifo_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("lib.so");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer_path = fifo.clone();
    // Blocks until something opens the FIFO for reading.
    std::thread::spawn(move || {
        let w = std::fs::OpenOptions::new().write(true).open(&writer_path);
        tx.send(w.is_ok()).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let p = fifo.to_str().unwrap();
    for args in [vec!["elf", "load", p], vec!["elf", "plan", p], vec!["elf", "call", p, "f"]] {
        let o = mmkit(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(&format!("open of {p} failed: not a regular file: a FIFO")), "{err}");
    }
    assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "the CLI opened the FIFO");
    // Release the writer (this open is the first reader).
    let _r = std::os::unix::fs::OpenOptionsExt::custom_flags(std::fs::OpenOptions::new().read(true), libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
}

/// A library that prints (a constructor's `printf`, a called function's `puts`, a destructor's
/// at exit): with `--json` its lines go to stderr and stdout is one JSON document. They were
/// flushed after the document, so `elf call --json` of such a function was not JSON.
#[test]
fn json_stays_json_when_the_library_prints() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("chatty.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n\
         __attribute__((constructor)) static void hello(void) { printf(\"hello from the constructor\\n\"); }\n\
         __attribute__((destructor)) static void bye(void) { printf(\"bye from the destructor\\n\"); }\n\
         long fx_chatty(long x) { puts(\"in fx_chatty\"); return x + 1; }\n",
    )
    .unwrap();
    let so = gcc(dir.path(), "libfxchatty.so", &src, &["-shared", "-fPIC"]);
    let so = so.to_str().unwrap();
    for args in [&["elf", "call", so, "fx_chatty", "41", "--json"][..], &["elf", "load", so, "--json"]] {
        let o = mmkit(args);
        let v = json(&o);
        assert!(v.is_object(), "{args:?}: {v}");
        assert!(stderr(&o).contains("hello from the constructor"), "{args:?}: {}", stderr(&o));
    }
    let o = mmkit(&["elf", "call", so, "fx_chatty", "41", "--json"]);
    assert_eq!(json(&o)["result"], 42);
    assert!(stderr(&o).contains("in fx_chatty"), "{}", stderr(&o));
    // Without --json the library's lines stay on stdout, beside the result.
    let o = mmkit(&["elf", "call", so, "fx_chatty", "41"]);
    assert!(o.status.success() && stdout(&o).contains("42\n") && stdout(&o).contains("in fx_chatty"), "{}", stdout(&o));
}
