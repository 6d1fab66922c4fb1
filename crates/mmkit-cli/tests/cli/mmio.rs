//! `mmkit mmio` and the tour's mmio section on a machine without the edu device (host).
//! The same commands against the real device run in the VM (vmtest/cli-checks.sh).

use crate::common::*;

fn edu_bound_here() -> bool {
    std::fs::read_dir("/sys/class/uio").map(|d| d.count() > 0).unwrap_or(false)
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(mmkit(&["mmio", "read", "0"]).status.code(), Some(2), "no source");
    assert_eq!(mmkit(&["mmio", "read", "--uio", "0", "--pci", "1234:11e8", "0"]).status.code(), Some(2), "two sources");
    assert_eq!(mmkit(&["mmio", "read", "--uio", "0", "--width", "24", "0"]).status.code(), Some(2));
    assert_eq!(mmkit(&["mmio", "read", "--uio", "zero", "0"]).status.code(), Some(2));
    assert_eq!(mmkit(&["mmio", "read", "--pci", "not-a-device", "0"]).status.code(), Some(2));
    assert_eq!(mmkit(&["mmio", "write", "--uio", "0", "0x4"]).status.code(), Some(2), "no value");
}

#[test]
fn missing_devices_are_errors_with_context() {
    let out = mmkit(&["mmio", "read", "--uio", "99", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("mmkit: cannot open UIO device 99: open of /sys/class/uio/uio99 failed: No such file or directory (ENOENT); no UIO device uio99"),
        "{}",
        stderr(&out)
    );
    let out = mmkit(&["mmio", "read", "--pci", "ffff:fffe", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot find PCI device ffff:fffe"), "{}", stderr(&out));
    let out = mmkit(&["mmio", "irq", "--uio", "99", "--count", "1", "--timeout", "0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("mmkit: cannot open UIO device 99"), "{}", stderr(&out));
}

#[test]
fn values_wider_than_the_access_are_refused_before_any_access() {
    let out = mmkit(&["mmio", "write", "--uio", "99", "--width", "8", "0", "0x100"]);
    // A bad command line (exit 2, as clap's own refusals), found before any device is opened.
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("value 0x100 for VALUE: does not fit in a 8-bit register"), "{}", stderr(&out));
    assert!(stderr(&out).contains("Usage: mmkit mmio write"), "{}", stderr(&out));
}

#[test]
fn a_physical_address_past_2_64_is_a_usage_error() {
    // --phys ADDR + OFFSET that passes 2^64: a bad command line (exit 2 with the usage line),
    // found before /dev/mem is opened; it was exit 1.
    for sub in
        [&["read", "--phys", "0xfffffffffffffffc", "8"][..], &["write", "--phys", "0xffffffffffffffff", "1", "0"]]
    {
        let out = mmkit(&[&["mmio"][..], sub].concat());
        assert_eq!(out.status.code(), Some(2), "{sub:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("passes 2^64"), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("Usage: mmkit mmio {}", sub[0])), "{}", stderr(&out));
    }
}

#[test]
fn list_json_has_uio_and_pci_arrays() {
    let out = mmkit(&["mmio", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["uio"].is_array() && doc["pci"].is_array(), "{doc}");
    for dev in doc["pci"].as_array().unwrap() {
        for bar in dev["bars"].as_array().unwrap() {
            assert!(bar["start"].is_u64() && bar["size"].as_u64().unwrap() > 0, "{bar}");
        }
    }
    let text = mmkit(&["mmio", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("UIO devices:\n"));
}

#[test]
fn tour_section_explains_how_to_run_in_the_vm() {
    let out = mmkit(&["tour", "--only", "mmio", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let section = &doc["sections"][0];
    assert_eq!(section["id"], "mmio");
    if edu_bound_here() && section["facts"]["edu_present"] == true {
        assert_eq!(section["facts"]["ident"], 0x0100_00ed);
    } else {
        assert_eq!(section["facts"]["edu_present"], false);
        assert!(section["notes"][0].as_str().unwrap().contains("vmtest/run"), "{section}");
    }
}

#[test]
fn wc_needs_pci_and_profiles_are_checked_before_mapping() {
    let out = mmkit(&["mmio", "read", "--uio", "0", "--wc", "0"]);
    assert_eq!(out.status.code(), Some(2), "--wc without --pci: {}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.profile");
    let out = mmkit(&["mmio", "read", "--uio", "99", "--profile", missing.to_str().unwrap(), "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("mmkit: cannot read device profile "), "{}", stderr(&out));
    let bad = dir.path().join("bad.profile");
    std::fs::write(&bad, "name dev\n0x0..0x10 24\n").unwrap();
    let out = mmkit(&["mmio", "read", "--uio", "99", "--profile", bad.to_str().unwrap(), "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2: widths are `any` or 8/16/32/64"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
