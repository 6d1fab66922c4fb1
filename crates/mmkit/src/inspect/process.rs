//! Reading a process's `/proc/<pid>/maps`, `smaps` and `smaps_rollup` into typed records.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use super::maps::{parse_maps, parse_smaps, parse_smaps_rollup, MapsEntry, ParseError, SmapsEntry, SmapsRollup};
use super::residency::io_error;
use crate::error::{Error, ErrorKind, Result};

/// The mappings of process `pid` (`/proc/<pid>/maps`), in address order.
pub fn maps(pid: u32) -> Result<Vec<MapsEntry>> {
    read_and_parse(pid, "maps", parse_maps)
}

/// The mappings of process `pid` with their memory counters (`/proc/<pid>/smaps`).
///
/// Reading another process's smaps needs `PTRACE_MODE_READ` access to it (same user, or root).
pub fn smaps(pid: u32) -> Result<Vec<SmapsEntry>> {
    read_and_parse(pid, "smaps", parse_smaps)
}

/// The kernel's sum of all of process `pid`'s counters (`/proc/<pid>/smaps_rollup`, Linux 4.14+).
pub fn smaps_rollup(pid: u32) -> Result<SmapsRollup> {
    read_and_parse(pid, "smaps_rollup", parse_smaps_rollup)
}

fn read_and_parse<T>(pid: u32, file: &str, parse: impl FnOnce(&[u8]) -> Result<T, ParseError>) -> Result<T> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let text = std::fs::read(&path).map_err(|e| io_error("read", e).with_path(&path))?;
    parse(&text).map_err(|e| parse_error(&path, &e))
}

fn parse_error(path: &Path, e: &ParseError) -> Error {
    Error::new("parse", ErrorKind::InvalidArgument).with_path(path).with_detail(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::MapKind;

    #[test]
    fn own_process_is_readable_and_consistent() {
        let pid = std::process::id();
        let m = maps(pid).unwrap();
        let s = smaps(pid).unwrap();
        assert!(m.iter().any(|e| e.kind() == MapKind::Stack));
        assert!(!s.is_empty());
        let rollup = smaps_rollup(pid).unwrap();
        assert!(rollup.stats.rss > 0);
        assert!(rollup.start <= s[0].area.start);
    }

    #[test]
    fn missing_process_names_the_path() {
        // PIDs are at most 2^22; this one cannot exist.
        let e = maps(u32::MAX).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert_eq!(e.path(), Some(Path::new("/proc/4294967295/maps")));
    }
}
