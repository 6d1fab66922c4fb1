//! Reading a process's `/proc/<pid>/maps`, `smaps` and `smaps_rollup` into typed records.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use std::io::Read;
use std::ops::ControlFlow;

use super::maps::{parse_maps, parse_smaps_rollup, Emit, MapsEntry, ParseError, SmapsEntry, SmapsParser, SmapsRollup};
use crate::error::{Error, ErrorKind, Result};

/// The mappings of process `pid` (`/proc/<pid>/maps`), in address order.
pub fn maps(pid: u32) -> Result<Vec<MapsEntry>> {
    read_and_parse(pid, "maps", parse_maps)
}

/// The mappings of process `pid` with their memory counters (`/proc/<pid>/smaps`).
///
/// Reading another process's smaps needs `PTRACE_MODE_READ` access to it (same user, or root).
pub fn smaps(pid: u32) -> Result<Vec<SmapsEntry>> {
    let mut out = Vec::new();
    smaps_each(pid, &mut |e: &mut SmapsEntry| {
        out.push(std::mem::replace(e, SmapsEntry::empty()));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Calls `f` with each mapping of process `pid` (`/proc/<pid>/smaps`) as it is read, without
/// collecting them: for a process with many mappings this costs a fixed amount of memory (the
/// entry `f` sees is reused). `f` returns [`ControlFlow::Break`] to stop reading.
///
/// The answer is only known to be complete when this returns `Ok`: when the process exits (or
/// runs another program) during the read, `f` has seen a cut list and the error is `ESRCH`;
/// a line that does not parse is an error too, after `f` saw the mappings before it. Callers
/// that print as they go must therefore be able to take back, or mark as incomplete, what
/// they printed.
///
/// ```
/// # fn main() -> mmkit::Result<()> {
/// let mut rss = 0;
/// mmkit::inspect::smaps_for_each(std::process::id(), |e| {
///     rss += e.stats.rss;
///     std::ops::ControlFlow::Continue(())
/// })?;
/// println!("{rss} KiB resident");
/// # // The sum of the mappings' Rss is smaps_rollup's Rss (the same walk of the same maps,
/// # // give or take what this process touched in between).
/// # let rollup = mmkit::inspect::smaps_rollup(std::process::id())?.stats.rss;
/// # assert!(rss > 0 && rss.abs_diff(rollup) * 10 < rollup, "{rss} vs {rollup} KiB");
/// # Ok(()) }
/// ```
pub fn smaps_for_each(pid: u32, mut f: impl FnMut(&SmapsEntry) -> ControlFlow<()>) -> Result<()> {
    smaps_each(pid, &mut |e: &mut SmapsEntry| f(e))
}

fn smaps_each(pid: u32, emit: &mut Emit<'_>) -> Result<()> {
    // smaps runs to ~700 bytes per area (40 MB for 60,000 areas): parsed through a 256 KiB
    // buffer as it is read, instead of faulting in and copying a buffer of the whole text.
    let mut parser = SmapsParser::default();
    let mut failed = None;
    let mut stopped = false;
    read_checked(pid, "smaps", |lines| {
        if failed.is_none() && !stopped {
            match parser.feed(lines, emit) {
                Ok(flow) => stopped = flow.is_break(),
                Err(e) => failed = Some(e),
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(parse_error(&PathBuf::from(format!("/proc/{pid}/smaps")), &e));
    }
    if !stopped {
        let _ = parser.finish(emit);
    }
    Ok(())
}

/// The kernel's sum of all of process `pid`'s counters (`/proc/<pid>/smaps_rollup`, Linux 4.14+).
pub fn smaps_rollup(pid: u32) -> Result<SmapsRollup> {
    read_and_parse(pid, "smaps_rollup", parse_smaps_rollup)
}

/// Reads `/proc/<pid>/<file>` and parses it, or fails when the process exited meanwhile.
///
/// The kernel ends the text early, without an error, once the memory it reads is torn down
/// (exit, `execve`, or a zombie from the start), so a read alone cannot tell a complete list from
/// a cut one. The process's identity (`/proc/<pid>/stat`: state, exit flag, start time and the
/// code and stack addresses of its memory) is checked before and after the read: gone, exiting,
/// a zombie, another program, or another process under the same PID means the text may be
/// incomplete, reported as `ESRCH` rather than returned.
fn read_and_parse<T>(pid: u32, file: &str, parse: impl FnOnce(&[u8]) -> Result<T, ParseError>) -> Result<T> {
    let mut text = Vec::new();
    read_checked(pid, file, |lines| text.extend_from_slice(lines))?;
    parse(&text).map_err(|e| parse_error(&PathBuf::from(format!("/proc/{pid}/{file}")), &e))
}

/// Reads `/proc/<pid>/<file>`, handing `lines` its text in pieces that end at a line's end, and
/// fails when the process exited meanwhile (see [`read_and_parse`]).
fn read_checked(pid: u32, file: &str, mut lines: impl FnMut(&[u8])) -> Result<()> {
    const CHUNK: usize = 256 << 10;
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let before = Identity::of(pid)?;
    let mut f = std::fs::File::open(&path).map_err(|e| Error::from_io("read", &e).with_path(&path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut held = 0;
    loop {
        if held == buf.len() {
            // A line longer than the buffer (a path of thousands of bytes): grow.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match f.read(&mut buf[held..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_io("read", &e).with_path(&path)),
        };
        if n == 0 {
            break;
        }
        held += n;
        if let Some(last) = buf[..held].iter().rposition(|&b| b == b'\n') {
            lines(&buf[..=last]);
            buf.copy_within(last + 1..held, 0);
            held -= last + 1;
        }
    }
    if held > 0 {
        lines(&buf[..held]);
    }
    // Closed first: with one descriptor left (`ulimit -n`), reading `stat` needs this one.
    drop(f);
    let after = Identity::of(pid)?;
    match (before, after) {
        (Some(b), Some(a)) if b == a && a.alive => Ok(()),
        _ => Err(Error::from_raw_errno("read", libc::ESRCH).with_path(&path).with_detail(format!(
            "process {pid} exited (or ran another program) while its {file} was read (the answer \
             would be incomplete)"
        ))),
    }
}

/// Who a PID is at one moment: the start time tells a reused PID apart, the state and flags an
/// exit, the addresses of code and stack a new program (`execve` replaces the memory).
#[derive(PartialEq, Eq)]
struct Identity {
    start_time: u64,
    alive: bool,
    memory: [u64; 3],
}

impl Identity {
    /// From `/proc/<pid>/stat`; `None` when the process is gone or the text does not parse.
    /// A read that fails for another reason (`EMFILE` under `ulimit -n`, `ENOMEM`) is that
    /// error, not a process that exited.
    fn of(pid: u32) -> Result<Option<Identity>> {
        let path = format!("/proc/{pid}/stat");
        match std::fs::read(&path) {
            Ok(stat) => Ok(Identity::parse(&stat)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(None),
            Err(e) => Err(Error::from_io("read", &e).with_path(Path::new(&path))),
        }
    }

    /// From the text of `/proc/<pid>/stat`.
    fn parse(stat: &[u8]) -> Option<Identity> {
        // `pid (comm) state ...`: the command may hold spaces and parentheses; the last `)` ends it.
        let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
        let fields: Vec<&[u8]> = rest.split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty()).collect();
        // Field 3 is the state, 9 the flags, 22 the start time, 26 to 28 the start and end of
        // the code and the start of the stack (proc(5)); `rest` starts at field 3.
        let field = |n: usize| fields.get(n - 3).copied();
        let number = |n: usize| std::str::from_utf8(field(n)?).ok()?.parse::<u64>().ok();
        let state = *field(3)?.first()?;
        // PF_EXITING is set as exit begins, before the memory goes: a read that ended early
        // because of the exit sees it afterwards, even while the state is not yet a zombie.
        const PF_EXITING: u64 = 0x4;
        let exiting = number(9)? & PF_EXITING != 0;
        Some(Identity {
            start_time: number(22)?,
            alive: !exiting && !matches!(state, b'Z' | b'X' | b'x'),
            memory: [number(26)?, number(27)?, number(28)?],
        })
    }
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
    fn a_process_that_exited_is_an_error_not_an_empty_list() {
        // A zombie's smaps and maps read as empty, without an error from the kernel.
        let mut child = std::process::Command::new("sleep").arg("60").spawn().expect("run sleep");
        let pid = child.id();
        // Until the child's execve is done and it sleeps, a read may see the memory replaced or
        // its code and stack addresses not yet set (and fail so).
        let asleep = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat.contains("(sleep)") && stat.rsplit_once(')').is_some_and(|(_, rest)| rest.starts_with(" S "))
        };
        while !asleep() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!smaps(pid).unwrap().is_empty(), "sleep has mappings while it runs");
        child.kill().unwrap();
        // Killed, not yet reaped: wait until the kernel has made it a zombie.
        while Identity::of(pid).unwrap().is_some_and(|i| i.alive) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for e in [smaps(pid).map(|_| ()).unwrap_err(), maps(pid).map(|_| ()).unwrap_err()] {
            assert_eq!(e.errno(), Some(libc::ESRCH), "{e}");
            assert!(e.to_string().contains(&format!("process {pid} exited (or ran another program) while its")), "{e}");
        }
        assert_eq!(smaps_rollup(pid).unwrap_err().errno(), Some(libc::ESRCH));
        child.wait().unwrap();
        assert!(smaps(pid).is_err(), "reaped");
    }

    #[test]
    fn missing_process_names_the_path() {
        // PIDs are at most 2^22; this one cannot exist.
        let e = maps(u32::MAX).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert_eq!(e.path(), Some(Path::new("/proc/4294967295/maps")));
    }
}
