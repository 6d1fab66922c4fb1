//! Allocate 1 MiB of anonymous private memory with mmkit and show what the kernel shows:
//! no memory is used until pages are touched.
//!
//! ```text
//! cargo run -p mmkit --example anon_1mib
//! ```

use mmkit::MapOptions;

/// The `/proc/self/smaps` block of the mapping starting at `addr`: its maps line and `Rss`.
fn maps_line_and_rss(addr: usize) -> (String, String) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut lines = smaps.lines();
    while let Some(l) = lines.next() {
        if l.split('-').next().and_then(|a| usize::from_str_radix(a, 16).ok()) == Some(addr) {
            let rss = lines.find(|f| f.starts_with("Rss:")).unwrap_or("Rss: ?");
            return (l.to_owned(), rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
        }
    }
    ("(not found)".to_owned(), "?".to_owned())
}

/// The process's resident set size (`VmRSS` from `/proc/self/status`).
fn process_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

fn main() -> Result<(), mmkit::Error> {
    // The C original: mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    let mut mem = MapOptions::new().len(1 << 20).name("anon_1mib").map_anon()?;
    let addr = mem.as_ptr() as usize;
    let report = |what: &str, mem: &mmkit::MmapMut| -> Result<(), mmkit::Error> {
        let r = mem.residency(..)?;
        let (_, rss) = maps_line_and_rss(addr);
        println!(
            "{what:<22} {:>3} of {} pages resident, mapping Rss {rss}, process VmRSS {}, minor faults {}",
            r.resident_pages(),
            r.pages(),
            process_rss(),
            mmkit::page_faults().0
        );
        Ok(())
    };
    println!("1 MiB anonymous private map at {:p} (page size {})", mem.as_ptr(), mmkit::page_size());
    println!("/proc/self/maps: {}", maps_line_and_rss(addr).0);
    if !mem.mapping().name_applied() {
        println!("  (this kernel cannot name anonymous maps, so the kernel may merge it with neighbours: the line can be wider)");
    }
    report("before touching:", &mem)?;
    assert!(mem.iter().all(|&b| b == 0), "anonymous memory starts zeroed");
    // Reads map the kernel's shared zero page: mincore counts the pages, but Rss does not grow.
    report("after reading it all:", &mem)?;
    mem[0] = 1;
    report("after writing 1 byte:", &mem)?;
    for b in mem.iter_mut().step_by(mmkit::page_size()) {
        *b = 1;
    }
    report("after writing every page:", &mem)?;
    Ok(())
}
