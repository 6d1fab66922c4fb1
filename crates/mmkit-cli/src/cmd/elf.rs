//! `mmkit elf`: plan, load and call into ELF shared objects from files, APK entries or memory.
//!
//! `plan` is pure (it reads the headers and does the page arithmetic for any page size);
//! `load` and `call` map the library with `mmkit-elf`'s loader. Calling a function of a
//! user-supplied library cannot be proven safe, so this is the one CLI module with `unsafe`.

// One of the modules with `unsafe`: calls a function of a library the user names.
#![allow(unsafe_code)]

use anyhow::Context;
use mmkit_elf::{Library, MappingKind, Plan, Source};
use serde_json::json;
use std::ffi::OsStr;
use std::path::PathBuf;

/// Subcommands of `mmkit elf`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show how SOURCE would be mapped: its program headers (like `readelf -l`) and the page
    /// arithmetic of the plan. SOURCE is a path or `app.apk!/lib/x86_64/libfoo.so`; a name
    /// without `/` (`libz.so.1`) is searched for as `dlopen` does, never in the current
    /// directory (`./libfoo.so` names a file there).
    Plan {
        /// A path, or `archive.apk!/entry` (a stored, page-aligned zip entry); a name without
        /// `/` is searched for as `dlopen` does (`./libfoo.so` for a file here).
        #[arg(value_parser = clap::builder::PathBufValueParser::new())]
        source: PathBuf,
        /// Plan for this page size (4k, 16k, 64k); default: this kernel's.
        #[arg(long, value_parser = parse_page_size)]
        page_size: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load SOURCE and print its mappings as /proc/self/maps shows them, with resident pages.
    Load {
        /// A path, or `archive.apk!/entry`; a name without `/` is searched for as `dlopen`
        /// does (`./libfoo.so` for a file here).
        #[arg(value_parser = clap::builder::PathBufValueParser::new())]
        source: PathBuf,
        /// Print JSON (what the library writes to stdout goes to stderr then).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ext: LoadExt,
    },
    /// Load SOURCE and call SYMBOL as `int64_t SYMBOL(int64_t, ...)` with up to six integers.
    Call {
        /// A path, or `archive.apk!/entry`; a name without `/` is searched for as `dlopen`
        /// does (`./libfoo.so` for a file here).
        #[arg(value_parser = clap::builder::PathBufValueParser::new())]
        source: PathBuf,
        /// The function to call.
        symbol: String,
        /// Integer arguments (decimal or 0x hex), at most six.
        #[arg(allow_negative_numbers = true, value_parser = parse_int, num_args = 0..=6)]
        args: Vec<i64>,
        /// Print `{"symbol": .., "args": [..], "result": N}` (what the library writes to
        /// stdout goes to stderr then).
        #[arg(long)]
        json: bool,
        /// Who loads a system library, SOURCE or a dependency.
        #[arg(long, value_enum, default_value_t = System::Linker)]
        system: System,
        /// Bind as dlopen(RTLD_LAZY): a function nothing defines yet is bound at its first
        /// call (glibc's "symbol lookup error", exit 127, if still undefined), not at load.
        #[arg(long)]
        lazy: bool,
        /// Bind as dlopen(RTLD_DEEPBIND): the library's own definitions (and its
        /// dependencies') before the global scope's.
        #[arg(long)]
        deep_bind: bool,
    },
}

/// Who loads a system library (one in the system's library directories, or already loaded):
/// mmkit_elf's `SystemPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// The system linker (`dlopen`) loads system libraries, SOURCE too when it is one, as an
    /// Android app's namespace links to the system's (the default).
    Linker,
    /// mmkit maps private copies of system libraries too (libc and libm load; a private libc
    /// or libstdc++ keeps state of its own, apart from the process's: malloc, stdio, locale).
    Map,
    /// A system library is refused, naming it: one SOURCE needs, and SOURCE itself when it is
    /// one (a system library the process has loaded already is used as it is).
    Refuse,
}

impl System {
    /// The namespace that loads with this policy.
    fn namespace(self) -> mmkit_elf::Namespace {
        // Named after the choice: errors say "namespace default (--system refuse) refuses
        // system libraries", not "namespace default", which the user did not ask for.
        let (policy, name) = match self {
            System::Linker => (mmkit_elf::SystemPolicy::SystemLinker, "default"),
            System::Map => (mmkit_elf::SystemPolicy::MapPrivately, "default (--system map)"),
            System::Refuse => (mmkit_elf::SystemPolicy::Refuse, "default (--system refuse)"),
        };
        mmkit_elf::Namespace::new(name).system_libraries(policy)
    }
}

/// `android_dlopen_ext`'s options for `mmkit elf load`.
#[derive(Debug, clap::Args)]
pub struct LoadExt {
    /// Reserve address space first (the library's span plus OFFSET) and load the library at
    /// OFFSET in it (ANDROID_DLEXT_RESERVED_ADDRESS); OFFSET is a page multiple (decimal or 0x).
    /// The reservation is aligned to the library's largest segment alignment (p_align), which
    /// OFFSET must then be a multiple of too.
    #[arg(long, value_name = "OFFSET", value_parser = parse_page_offset)]
    reserve_at: Option<u64>,
    /// SOURCE is a plain file holding the library at this byte offset (a page multiple): it is
    /// opened and loaded from the fd (ANDROID_DLEXT_USE_LIBRARY_FD_OFFSET).
    #[arg(long, value_name = "OFFSET", value_parser = parse_page_offset)]
    fd_offset: Option<u64>,
    /// Seal the library's code and RELRO with mseal(2) after relocation (Linux 6.10+).
    #[arg(long)]
    seal: bool,
    /// Bind as dlopen(RTLD_LAZY): a function nothing defines yet is bound at its first call
    /// (glibc's "symbol lookup error", exit 127, if still undefined), not at load.
    #[arg(long)]
    lazy: bool,
    /// Bind as dlopen(RTLD_DEEPBIND): the library's own definitions (and its dependencies')
    /// before the global scope's.
    #[arg(long)]
    deep_bind: bool,
    /// After relocation, write the RELRO pages to FILE and map them from it
    /// (ANDROID_DLEXT_WRITE_RELRO). A FILE this creates is removed again if the load fails.
    #[arg(long, value_name = "FILE", conflicts_with = "use_relro")]
    write_relro: Option<std::path::PathBuf>,
    /// After relocation, map the RELRO pages identical to FILE's from it; the others stay
    /// private (ANDROID_DLEXT_USE_RELRO). Pages are identical only where the library and its
    /// dependencies are at the same addresses as in the process that wrote FILE.
    #[arg(long, value_name = "FILE")]
    use_relro: Option<std::path::PathBuf>,
    /// Who loads a system library, SOURCE or a dependency (a system library SOURCE loaded by
    /// the system linker has no mmkit mappings to show: use `map`).
    #[arg(long, value_enum, default_value_t = System::Linker)]
    system: System,
}

/// The largest base page of any Linux architecture is 256 KiB; beyond 1 MiB is a typo.
const MAX_PAGE_SIZE: u64 = 1 << 20;

fn parse_page_size(s: &str) -> Result<u64, String> {
    let n = crate::cli::size::parse_size(s)?;
    if !(mmkit_elf::plan::MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&n) || !n.is_power_of_two() {
        return Err(format!("page size {s} must be a power of two from 4k to 1M"));
    }
    Ok(n)
}

/// Parses a decimal or `0x` hex integer with an optional `-`; all of `i64`, nothing else.
fn parse_int(s: &str) -> Result<i64, String> {
    let bad = || format!("not a 64-bit integer: {s:?} (decimal or 0x hex)");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (digits, radix) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    // Through i128 so that -0x8000000000000000 (i64::MIN) parses and nothing wraps; more
    // digits than an i128 holds are out of range too, not malformed.
    let out_of_range = || format!("{s} is out of range: from -2^63 to 2^63-1 (0x7fffffffffffffff)");
    let v = i128::from_str_radix(digits, radix).map_err(|_| out_of_range())?;
    i64::try_from(if neg { -v } else { v }).map_err(|_| out_of_range())
}

/// Parses an offset: [`parse_int`]'s syntax, from 0 to `i64::MAX` (an `off_t`); the range in
/// an error is the offset's, not the signed integer's.
fn parse_offset(s: &str) -> Result<u64, String> {
    let range = "an offset is from 0 to 2^63-1 (0x7fffffffffffffff)";
    match parse_int(s) {
        Ok(v) => u64::try_from(v).map_err(|_| format!("{s} is negative: {range}")),
        Err(e) if e.contains("out of range") => Err(format!("{s} is out of range: {range}")),
        Err(e) => Err(e),
    }
}

/// Parses an offset that must be a page multiple ([`parse_offset`], then this system's page
/// size): a usage error, before anything is opened or reserved.
fn parse_page_offset(s: &str) -> Result<u64, String> {
    let v = parse_offset(s)?;
    let page = mmkit::page_size() as u64;
    if v % page != 0 {
        return Err(format!("{s} is not a multiple of the page size ({page:#x})"));
    }
    Ok(v)
}

/// Runs `mmkit elf`.
pub fn run(command: Command) -> anyhow::Result<()> {
    let (Command::Plan { source, .. } | Command::Load { source, .. } | Command::Call { source, .. }) = &command;
    refuse_special_file(source)?;
    if matches!(command, Command::Load { json: true, .. } | Command::Call { json: true, .. }) {
        divert_stdout();
    }
    match command {
        Command::Plan { source, page_size, json } => plan(source.as_os_str(), page_size, json),
        Command::Load { source, json, ext } => load(source.as_os_str(), json, &ext),
        Command::Call { source, symbol, args, json, system, lazy, deep_bind } => {
            let options = mmkit_elf::LoadOptions::new().lazy_binding(lazy).deep_bind(deep_bind);
            call(source.as_os_str(), &symbol, &args, json, (system, &options))
        }
    }
}

/// mmkit's own stdout while the library's goes to stderr (`--json` of `load` and `call`).
static JSON_STDOUT: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// With `--json`, points descriptor 1 at stderr before the library is loaded, so that what it
/// writes to stdout (a constructor's `printf`, a called function's `puts`, the stdio buffer its
/// finalizers flush at exit) goes there; the JSON document goes to the real stdout through
/// [`print_json`]. The library's lines came after the document on stdout: `elf call --json`
/// of a function that prints was not JSON. Without a stderr to point at, nothing changes.
fn divert_stdout() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let stdout = std::io::stdout().as_raw_fd();
    // SAFETY: F_DUPFD_CLOEXEC of fd 1 and dup2(2, 1) touch descriptors only; the copy of fd 1
    // is a new descriptor this process owns from here on (kept for the life of the process).
    unsafe {
        let saved = libc::fcntl(stdout, libc::F_DUPFD_CLOEXEC, 3);
        if saved < 0 {
            return;
        }
        let saved = OwnedFd::from_raw_fd(saved);
        if libc::dup2(libc::STDERR_FILENO, stdout) < 0 {
            return;
        }
        let _ = JSON_STDOUT.set(saved);
    }
}

/// Prints the JSON document `doc` (`compact`: on one line) on mmkit's stdout: with
/// [`divert_stdout`] in effect, written straight to the saved descriptor (Rust's stdout, fd 1,
/// now leads to stderr; a failed write left in its buffer would reach stderr at exit).
fn print_json(doc: &serde_json::Value, compact: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(saved) = JSON_STDOUT.get() else {
        return if compact { outln!("{doc}") } else { crate::cli::json::print(doc) };
    };
    let mut text = if compact { serde_json::to_vec(doc)? } else { serde_json::to_vec_pretty(doc)? };
    text.push(b'\n');
    (&std::fs::File::from(saved.try_clone().map_err(crate::cli::output::stdout_error)?))
        .write_all(&text)
        .map_err(crate::cli::output::stdout_error)
}

/// The loader opens a path first and refuses what is not a regular file after, as glibc's
/// `dlopen` does; the CLI keeps [`mmkit::open`]'s rule for what it is handed: a path (with a
/// `/`) naming a FIFO, a device, a socket or a directory is refused before it is opened.
fn refuse_special_file(source: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if !source.as_os_str().as_bytes().contains(&b'/') {
        return Ok(());
    }
    match std::fs::metadata(source) {
        Ok(meta) if !meta.is_file() => anyhow::bail!(
            "open of {} failed: not a regular file: {}",
            source.display(),
            mmkit::open::file_type_name(meta.file_type())
        ),
        _ => Ok(()),
    }
}

fn plan(source: &OsStr, page_size: Option<u64>, json: bool) -> anyhow::Result<()> {
    let page = page_size.unwrap_or_else(mmkit_elf::page_size);
    let src = mmkit_elf::Namespace::global_default().locate(Source::parse_os(source))?;
    let opened = src.open(page)?;
    let plan = mmkit_elf::plan_source_any_machine(&opened, page)?;
    if json {
        let mut doc = json!({
            "source": src.display(),
            "image_offset": opened.offset(),
            "image_len": opened.len(),
            "plan": plan,
        });
        with_source_bytes(&mut doc, source_bytes(&src));
        crate::cli::json::print(&doc)?;
        return Ok(());
    }
    out!("{}", render_plan(&src.display(), opened.offset(), opened.len(), &plan))?;
    Ok(())
}

/// The exact bytes of a source whose name [`Source::display`] writes lossily (a file or an
/// archive whose path is not UTF-8, see [`crate::cli::json::path_bytes`]): the file's path, or
/// the archive's + `!/` + the entry; `None` for a UTF-8 name, a descriptor or memory.
fn source_bytes(src: &Source) -> Option<Vec<u8>> {
    match src {
        Source::Path(p) => crate::cli::json::path_bytes(p),
        Source::ZipEntry { archive, entry } => crate::cli::json::path_bytes(archive).map(|mut b| {
            b.extend_from_slice(b"!/");
            b.extend_from_slice(entry.as_bytes());
            b
        }),
        Source::Fd { .. } | Source::Memory { .. } => None,
    }
}

/// The exact bytes of `shown`, the lossy name a loaded library reports ([`Library::source`]):
/// `--fd-offset`'s file (SOURCE), the file or archive SOURCE names, or, for a bare name, the
/// file the namespace's search finds (searched again here, only for a name with U+FFFD in it:
/// the loader keeps no bytes). `None` when `shown` is no lossy form of them.
fn loaded_source_bytes(shown: &str, source: &OsStr, src: &Source, system: System) -> Option<Vec<u8>> {
    if !shown.contains(char::REPLACEMENT_CHARACTER) {
        return None;
    }
    let names = |bytes: &Vec<u8>| String::from_utf8_lossy(bytes) == shown;
    if let Source::Fd { .. } = src {
        return crate::cli::json::path_bytes(std::path::Path::new(source)).filter(names);
    }
    source_bytes(src)
        .filter(names)
        .or_else(|| source_bytes(&system.namespace().locate(src.clone()).ok()?).filter(names))
}

/// Adds `source_bytes` (see [`source_bytes`]) to a report whose `source` is lossy.
fn with_source_bytes(doc: &mut serde_json::Value, bytes: Option<Vec<u8>>) {
    if let Some(bytes) = bytes {
        doc["source_bytes"] = json!(bytes);
    }
}

/// The plan as text: the program headers, then what the loader will do with each page.
pub fn render_plan(label: &str, offset: u64, len: u64, plan: &Plan) -> String {
    let mut out = String::new();
    let page = plan.page_size;
    out.push_str(&format!("{label}: ELF image of {len} bytes at offset {offset:#x}\n"));
    out.push_str(&format!(
        "page size {page:#x} ({} KiB); reserve {:#x} bytes ({} pages) from link address {:#x}, aligned to {:#x}\n\n",
        page / 1024,
        plan.span_len,
        plan.span_len / page,
        plan.span_vaddr,
        plan.max_align
    ));
    out.push_str("Program headers (PT_LOAD):\n");
    out.push_str(&format!(
        "  {:>3}  {:<10} {:<18} {:<10} {:<10} {:<4} {:<8}\n",
        "#", "Offset", "VirtAddr", "FileSiz", "MemSiz", "Flg", "Align"
    ));
    for s in &plan.segments {
        out.push_str(&format!(
            "  {:>3}  {:#010x} {:#018x} {:#010x} {:#010x} {:<4} {:#x}\n",
            s.phdr_index,
            s.file_offset,
            s.vaddr,
            s.file_size,
            s.mem_size,
            flags(s.prot),
            s.align
        ));
    }
    out.push_str("\nMappings (link addresses; add the load bias at run time):\n");
    for s in &plan.segments {
        let prot = s.prot.rwx();
        if s.map_file_len > 0 {
            out.push_str(&format!(
                "  seg {:>2}: {:#010x}-{:#010x} {prot}p  file [{:#x}, +{:#x}) in {} pages  (MAP_FIXED|MAP_PRIVATE{})\n",
                s.phdr_index,
                s.map_vaddr,
                s.map_vaddr + s.map_file_len,
                offset + s.map_offset,
                s.map_file_len,
                s.map_file_len / page,
                if s.prefault { "|MAP_POPULATE: the loader writes every page" } else { "" }
            ));
        }
        if s.zero_len > 0 {
            out.push_str(&format!(
                "          zero {:#x} bytes at {:#x} (tail of the last file page)\n",
                s.zero_len,
                s.vaddr + s.file_size
            ));
        }
        if s.bss_len > 0 {
            out.push_str(&format!(
                "  bss {:>2}: {:#010x}-{:#010x} {prot}p  anonymous, {} pages\n",
                s.phdr_index,
                s.bss_vaddr,
                s.bss_vaddr + s.bss_len,
                s.bss_len / page
            ));
        }
    }
    if let Some((start, len)) = plan.relro {
        out.push_str(&format!(
            "  RELRO:  {:#010x}-{:#010x} r--p  made read-only after relocation\n",
            start,
            start + len
        ));
    }
    if let Some((addr, size)) = plan.dynamic {
        out.push_str(&format!("  DYNAMIC at {addr:#x}, {size:#x} bytes\n"));
    }
    if let Some(tls) = &plan.tls {
        out.push_str(&format!(
            "  TLS template at {:#x}: {:#x} initialized of {:#x} bytes, align {:#x}\n",
            tls.vaddr, tls.file_size, tls.mem_size, tls.align
        ));
    }
    out
}

fn flags(p: mmkit_elf::Protection) -> String {
    format!(
        "{}{}{}",
        if p.readable() { "R" } else { " " },
        if p.writable() { "W" } else { " " },
        if p.executable() { "E" } else { " " }
    )
}

fn open(source: &OsStr, system: System, options: &mmkit_elf::LoadOptions<'_>) -> anyhow::Result<Library> {
    // SAFETY: the user asked to load this library, which runs its initializers (as `dlopen`
    // would); mmkit trusts what it is told to load.
    unsafe { system.namespace().open_with(Source::parse_os(source), options) }
        .with_context(|| format!("loading {}", source.to_string_lossy()))
}

fn kind_name(k: MappingKind) -> &'static str {
    match k {
        MappingKind::Segment { .. } => "segment",
        MappingKind::Relro { .. } => "relro",
        MappingKind::Bss { .. } => "bss",
        MappingKind::Gap => "gap",
    }
}

/// The source `mmkit elf load` was asked for: SOURCE, or the fd of the file SOURCE at
/// `--fd-offset`.
fn load_source(source: &OsStr, ext: &LoadExt) -> anyhow::Result<Source> {
    let Some(offset) = ext.fd_offset else { return Ok(Source::parse_os(source)) };
    // Not `File::open`: a FIFO would block it forever.
    let file = mmkit::open::open_regular(source)?;
    Ok(Source::fd(&file, offset, source.to_string_lossy())?)
}

fn load(source: &OsStr, json: bool, ext: &LoadExt) -> anyhow::Result<()> {
    let src = load_source(source, ext)?;
    let reserve_at = match ext.reserve_at {
        Some(at) => Some(usize::try_from(at).map_err(|_| anyhow::anyhow!("--reserve-at {at:#x} is too large"))?),
        None => None,
    };
    // The caller's reservation, made before loading and dropped after the library.
    let space = match reserve_at {
        Some(at) => {
            // A bare soname is planned as the file the namespace's search finds.
            let plan = mmkit_elf::plan(&ext.system.namespace().locate(src.clone())?, mmkit_elf::page_size())?;
            let len = (plan.span_len as usize)
                .checked_add(at)
                .ok_or_else(|| anyhow::anyhow!("--reserve-at {at:#x} is too large"))?;
            // Aligned to the segments' largest `p_align` (a library built for 16 KiB pages on a
            // 4 KiB kernel, 2 MiB-aligned code): a page-aligned reservation put the library at
            // an address the loader must refuse, most times.
            let align = usize::try_from(plan.max_align).unwrap_or(usize::MAX);
            Some(
                mmkit::ReserveOptions::new(len)
                    .align(align)
                    .reserve()
                    .context("reserving address space for --reserve-at")?,
            )
        }
        None => None,
    };
    if let Some(relro) = &ext.write_relro {
        refuse_relro_over_source(relro, source, &src, ext.system)?;
    }
    // A --write-relro file this run creates is removed again if the load fails: no empty file
    // is left behind.
    let new_relro_file = ext.write_relro.as_ref().filter(|p| std::fs::symlink_metadata(p).is_err());
    let remove_new_relro_file = || {
        if let Some(p) = new_relro_file {
            let _ = std::fs::remove_file(p);
        }
    };
    let relro_file = match (&ext.write_relro, &ext.use_relro) {
        // Created when missing, else opened as it is (a FIFO, device or directory is refused by
        // name): the loader empties it only once the library and its dependencies are mapped,
        // and refuses a file the process maps (one of those dependencies). Created files are
        // closed and reopened to be read and mapped.
        (Some(p), _) if std::fs::metadata(p).is_ok() => {
            Some(mmkit::open::open_regular_read_write(p).context("opening the RELRO file")?)
        }
        (Some(p), _) => Some(
            mmkit::open::create_regular(p)
                .and_then(|created| {
                    drop(created);
                    mmkit::open::open_regular_read_write(p)
                })
                .inspect_err(|_| remove_new_relro_file())
                .context("creating the RELRO file")?,
        ),
        (None, Some(p)) => Some(mmkit::open::open_regular(p).context("opening the RELRO file")?),
        (None, None) => None,
    };
    let mut options = mmkit_elf::LoadOptions::new().seal(ext.seal).lazy_binding(ext.lazy).deep_bind(ext.deep_bind);
    options = match &relro_file {
        Some(f) if ext.write_relro.is_some() => options.write_relro(f),
        Some(f) => options.use_relro(f),
        None => options,
    };
    if let (Some(space), Some(at)) = (&space, reserve_at) {
        options = options.reserved(space, at);
    }
    // SAFETY: the user asked to load this library, which runs its initializers (as `dlopen`
    // would); `space` outlives `lib` (declared before it, dropped after).
    let lib = unsafe { ext.system.namespace().open_with(src.clone(), &options) }.map_err(|e| {
        remove_new_relro_file();
        // With --fd-offset, the error's ranges are the image's, which starts at that offset.
        let at = ext.fd_offset.map(|o| format!(" (the image at offset {o:#x} of the file)")).unwrap_or_default();
        anyhow::Error::new(e).context(format!("loading {}{at}", source.to_string_lossy()))
    })?;
    let reservation = space.as_ref().map(|s| json!({"start": s.as_ptr() as u64, "len": s.len(), "offset": reserve_at}));
    let maps = lib.segments().map_err(|e| {
        let hint = if ext.system == System::Linker && e.kind() == mmkit_elf::ErrorKind::DependencyNotFound {
            " (`--system map` has mmkit map a private copy)"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })?;
    let verified = lib.verify();
    let path = match &src {
        Source::ZipEntry { archive, .. } => archive.display().to_string(),
        // The file loaded: a bare soname's is the one the search found.
        Source::Path(_) => lib.source().to_owned(),
        other => other.display(),
    };
    if json {
        let mappings: Vec<_> = maps
            .iter()
            .map(|m| {
                json!({
                    "start": m.start, "end": m.start + m.len, "perms": format!("{}p", m.prot.rwx()),
                    "offset": m.file_offset, "kind": kind_name(m.kind),
                    "pages": m.pages, "resident_pages": m.resident_pages,
                    "present_pages": m.present_pages,
                })
            })
            .collect();
        let deps: Vec<_> = lib
            .dependencies()
            .into_iter()
            .map(|(name, by_mmkit)| json!({"name": name, "loaded_by": if by_mmkit { "mmkit" } else { "glibc" }}))
            .collect();
        let mut doc = json!({
            "source": lib.source(), "page_size": lib.plan().page_size, "bias": lib.bias(),
            "span": {"start": lib.span().0, "len": lib.span().1},
            "mappings": mappings, "dependencies": deps,
            "unwind_tables_registered": lib.unwind_tables_registered(),
            "reservation": reservation, "fd_offset": ext.fd_offset, "sealed": ext.seal,
            "lazy": ext.lazy, "deep_bind": ext.deep_bind, "unbound_functions": lib.unbound_functions(),
            "relro_sharing": lib.relro_sharing().map(|(s, p)| json!({"shared_pages": s, "private_pages": p})),
            "verified": verified.is_ok(),
            "verify_error": verified.as_ref().err().map(|e| e.to_string()),
        });
        with_source_bytes(&mut doc, loaded_source_bytes(lib.source(), source, &src, ext.system));
        print_json(&doc, false)?;
    } else {
        outln!("{} loaded at {:#x} (page size {:#x})", lib.source(), lib.bias(), lib.plan().page_size)?;
        if let Some(offset) = ext.fd_offset {
            outln!("from the file's fd at offset {offset:#x}")?;
        }
        if let (Some(space), Some(at)) = (&space, reserve_at) {
            outln!(
                "in the caller's reservation {:#x}-{:#x}, at offset {at:#x}",
                space.as_ptr() as usize,
                space.as_ptr() as usize + space.len()
            )?;
        }
        if ext.seal {
            outln!("code and RELRO sealed (mseal)")?;
        }
        let unbound = lib.unbound_functions();
        if !unbound.is_empty() {
            outln!(
                "left to bind at their first call (--lazy; undefined then, the process ends): {}",
                unbound.join("; ")
            )?;
        }
        if let Some((shared, private)) = lib.relro_sharing() {
            outln!("RELRO: {shared} pages mapped from the RELRO file, {private} private (they differ)")?;
        }
        for m in &maps {
            let name = match (m.kind, m.file_offset) {
                (_, Some(_)) => path.clone(),
                (MappingKind::Bss { .. }, None) => format!("[anon:mmkit .bss {}]", lib.name()),
                _ => String::new(),
            };
            outln!(
                "{:x}-{:x} {}p {:08x} {:<40} {:>5}/{:<5} pages resident ({} mapped in)  {}",
                m.start,
                m.start + m.len,
                m.prot.rwx(),
                m.file_offset.unwrap_or(0),
                name,
                m.resident_pages,
                m.pages,
                m.present_pages,
                kind_name(m.kind)
            )?;
        }
        for (name, by_mmkit) in lib.dependencies() {
            outln!("needs {name} ({})", if by_mmkit { "loaded by mmkit" } else { "loaded by glibc's linker" })?;
        }
        if lib.unwind_tables_registered() {
            outln!("unwind tables registered with the unwinder")?;
        }
        match &verified {
            Ok(()) => outln!("verified against /proc/self/maps")?,
            Err(e) => outln!("verification FAILED: {e}")?,
        }
    }
    verified.context("the mappings do not match /proc/self/maps")?;
    Ok(())
}

/// `--write-relro FILE` is created (emptied) before the load: FILE naming the file the library
/// is read from (SOURCE, its archive, the file a bare soname's search finds, through any link)
/// would destroy it, and the load would then blame the library. Refused before anything is
/// truncated, as `pager pack` refuses an output that is its input.
fn refuse_relro_over_source(
    relro: &std::path::Path,
    source: &OsStr,
    src: &Source,
    system: System,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(relro) else { return Ok(()) };
    let mut read_from = vec![PathBuf::from(source)];
    if let Source::ZipEntry { archive, .. } = src {
        read_from.push(archive.clone());
    }
    match system.namespace().locate(src.clone()) {
        Ok(Source::Path(p)) => read_from.push(p),
        Ok(Source::ZipEntry { archive, .. }) => read_from.push(archive),
        _ => {}
    }
    for file in read_from {
        if std::fs::metadata(&file).is_ok_and(|m| (m.dev(), m.ino()) == (out.dev(), out.ino())) {
            anyhow::bail!(
                "creating the RELRO file {} failed: it is {}, the file the library is loaded from \
                 (--write-relro would empty it); name another file",
                relro.display(),
                file.display()
            );
        }
    }
    Ok(())
}

fn call(
    source: &OsStr,
    symbol: &str,
    args: &[i64],
    json: bool,
    (system, options): (System, &mmkit_elf::LoadOptions<'_>),
) -> anyhow::Result<()> {
    if args.len() > 6 {
        anyhow::bail!("at most six integer arguments (got {})", args.len());
    }
    let lib = open(source, system, options)?;
    // SAFETY: the user asserts SYMBOL is `int64_t SYMBOL(int64_t...)`; we only read its
    // address here (data, thread-local and absolute symbols are refused: `function`) and
    // call it below with that signature.
    let f = unsafe { lib.function::<extern "C" fn()>(symbol) }?;
    let addr = f.address() as usize;
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    type F6 = extern "C" fn(i64, i64, i64, i64, i64, i64) -> i64;
    // SAFETY: see above. The System V x86_64 ABI passes the first six integer arguments in
    // registers, so a function taking fewer simply ignores the extra (zero) ones.
    let result = unsafe { std::mem::transmute::<usize, F6>(addr)(a(0), a(1), a(2), a(3), a(4), a(5)) };
    if json {
        print_json(&json!({"symbol": symbol, "args": args, "result": result}), true)?;
    } else {
        outln!("{result}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_arguments_are_checked() {
        assert_eq!(parse_int("-0x8000000000000000"), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int("-12"), Ok(-12));
        assert_eq!(parse_int("0X1f"), Ok(31));
        for bad in ["--5", "-+5", "+5", "9223372036854775808", "0x", "", "1e3", "nan", " 1"] {
            assert!(parse_int(bad).is_err(), "{bad}");
        }
        // Too large is said so, not "not an integer" (it said that for any of them).
        for big in [
            "9223372036854775808",
            "0x8000000000000000",
            "-0x8000000000000001",
            "99999999999999999999999999999999999999999",
        ] {
            let e = parse_int(big).unwrap_err();
            assert!(e.contains("out of range") && !e.contains("not a 64-bit integer"), "{big}: {e}");
        }
        assert!(parse_int("12a").unwrap_err().contains("not a 64-bit integer"));
        assert_eq!(parse_offset("0x1000"), Ok(4096));
        assert!(parse_offset("-4096").unwrap_err().contains("negative"));
        // An offset's range, not a signed integer's (it said "from -2^63 to 2^63-1").
        let e = parse_offset("0xffffffffffffffff").unwrap_err();
        assert!(e.contains("from 0 to 2^63-1") && !e.contains("-2^63"), "{e}");
        assert!(parse_offset("0x").unwrap_err().contains("not a 64-bit integer"));
        assert_eq!(parse_page_size("16k"), Ok(16 << 10));
        for bad in ["0", "4095", "12k", "2M", "1T", "8388608T", "-4k"] {
            assert!(parse_page_size(bad).is_err(), "{bad}");
        }
    }
}
