//! Load ELF shared objects the way Android's linker does: from files, from stored,
//! page-aligned APK/zip entries (mapped in place, never extracted) and from memory.
//!
//! The loader reads only the headers, then maps each `PT_LOAD` segment `MAP_PRIVATE` from the
//! source file, so pages load on demand: a library mapped from an APK costs the pages the
//! program touches, not the file. The page size is the kernel's, never a hard-coded 4096, and
//! the [planner](mod@plan) can plan for any page size (4 KiB, 16 KiB, 64 KiB) without a syscall.
//!
//! # Contents
//! - [`Source`]: a path, `app.apk!/lib/x86_64/libfoo.so`, or bytes (a sealed memfd).
//! - [`Plan`]: the pure planner — ELF header and program headers + a page size → reservation
//!   span, per-segment file ranges, addresses, protections, `.bss`, RELRO; one [`ErrorKind`]
//!   per check (magic, class, endianness, `ET_DYN`, machine, table bounds, `p_vaddr ≡
//!   p_offset`, bounds in the source, `p_filesz ≤ p_memsz`, W+X, `p_align`).
//! - [`Library`]: the executor's result. [`Library::open`] reserves the span `PROT_NONE`, maps
//!   the segments `MAP_FIXED | MAP_PRIVATE`, zeroes and maps `.bss`, loads missing
//!   `DT_NEEDED` libraries, relocates (x86_64 and aarch64: `RELATIVE`, `RELR`, the absolute
//!   64-bit type, `GLOB_DAT`, `JUMP_SLOT`, `IRELATIVE`, `DTPMOD64`/`DTPREL64` with mmkit's
//!   own `__tls_get_addr`; `TLSDESC` (aarch64's default, x86_64's `-mtls-dialect=gnu2`) with
//!   mmkit's own resolver; on aarch64 IFUNC resolvers get glibc's `hwcap` arguments). A `__thread` variable may be defined by a
//!   library mmkit maps or by one glibc loaded (libstdc++'s, reached by `std::call_once`):
//!   for the latter the GOT holds glibc's module id and mmkit's `__tls_get_addr` forwards it to
//!   glibc's; initial-exec `TPOFF64` on x86_64 binds a variable in glibc's static TLS (libc's
//!   `errno`). A library built for initial-exec access to its own variables (`DF_STATIC_TLS`:
//!   Mesa's GL dispatch, libgomp, libubsan) gets its block in glibc's static TLS area, as
//!   glibc's `dlopen` gives it, and its initial-exec references (`TPOFF64`/`TPREL64`, and
//!   x86_64 `TLSDESC`) bind there. The loader then protects RELRO and runs
//!   `DT_INIT`/`DT_INIT_ARRAY`. [`Library::symbol`] returns typed
//!   symbols borrowed from the library; [`Library::segments`] and [`Library::verify`] show
//!   and check the mappings against the kernel's view. Drop runs the finalizers and unmaps.
//! - [`Machine`]: the architectures the loader relocates for (x86_64, aarch64; the host's is
//!   [`Machine::host`]); [`Plan::for_machine`] plans another machine's image on any host.
//!   On other architectures (32-bit x86 and ARM) the crate builds and plans, and loading
//!   fails with [`ErrorKind::WrongMachine`].
//! - [`Namespace`]: where dependencies come from (Android's linker namespaces): a search path
//!   (directories and `app.apk!/lib/x86_64`), links to other namespaces for sonames, and a
//!   [`SystemPolicy`]. The default maps the caller's own libraries and has the system linker
//!   (`dlopen`, never unloaded) load system libraries (glibc, libm, libstdc++, anything in
//!   [`SYSTEM_DIRS`]) that are not loaded yet. Bare sonames (`libz.so.1`) are searched for,
//!   unless a library loaded in the namespace has that `DT_SONAME` (as glibc and bionic match
//!   a `DT_NEEDED` or `dlopen` name): then it is that library, wherever it was loaded from.
//!   A file is loaded once per namespace (by device, inode and offset) and shared by
//!   reference: opening it again, or needing it from several libraries (diamonds, cycles),
//!   reaches the same copy (a mapped library's `dlopen` of a path a loaded library was opened
//!   from answers that library before any file is opened, as glibc matches names first: a
//!   plug-in whose temporary file was removed, or replaced, is the copy loaded; a top-level
//!   [`Library::open`] of a path whose file was replaced since is a new copy, where glibc's
//!   `dlopen` answers its old one); the last handle unloads what nothing else needs, finalizers in the
//!   reverse of the initialization order; `DF_1_NODELETE` and `STB_GNU_UNIQUE` pin a library
//!   (every reference to a unique name binds to its first definition found, as glibc's: C++
//!   inline and template statics are one object across `RTLD_LOCAL` plug-ins),
//!   and a pending `thread_local` destructor keeps it until the destructor has run
//!   (`__cxa_thread_atexit` is interposed in the libraries mmkit maps, as bionic does).
//! - Debuggers see the libraries mmkit maps: each is announced through glibc's `r_debug`
//!   protocol (a link-map namespace of mmkit's own, glibc 2.35+), so `gdb` lists them, sets
//!   breakpoints in them by name and backtraces through them. A library loaded from an APK
//!   entry is announced as `app.apk!/lib/x86_64/libfoo.so`, which `gdb` cannot open: it lists
//!   it without symbols ("Could not load shared library symbols").
//! - [`addr_info`]: `dladdr`'s answer (library, base, nearest symbol), also for libraries
//!   mmkit mapped.
//! - [`Library::function`] refuses symbols that are not code ([`SymbolKind`]).
//! - [`Error`]: one opaque error naming the operation, path, range and errno.
//!
//! # Example
//! ```
//! use mmkit_elf::{Library, Source};
//!
//! # /// Builds a shared library from C in the current directory (`false`: no compiler here).
//! # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
//! #     std::fs::write("src.c", c).unwrap();
//! #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
//! #     match std::process::Command::new("gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
//! #         Ok(s) => { assert!(s.success(), "gcc -o {out}: {s}"); true }
//! #         Err(e) => { println!("skipped: no gcc ({e})"); false }
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::env::set_current_dir(dir.path())?;
//! # // app.apk: libfoo.so (built for pages up to 16 KiB) stored and 16 KiB-aligned.
//! # if !cc("libfoo.so", "long add(long a, long b) { return a + b; }", &["-Wl,-z,max-page-size=16384"]) {
//! #     return Ok(());
//! # }
//! # use std::io::Write;
//! # let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
//! # let mut apk = zip::ZipWriter::new(std::fs::File::create("app.apk")?);
//! # apk.start_file("AndroidManifest.xml", stored)?;
//! # apk.write_all(b"<manifest/>")?;
//! # apk.start_file("lib/x86_64/libfoo.so", stored.with_alignment(16384))?;
//! # apk.write_all(&std::fs::read("libfoo.so")?)?;
//! # apk.finish()?;
//! // Plan first (pure): what would be mapped where, for 16 KiB pages.
//! let plan = mmkit_elf::plan(&Source::parse("app.apk!/lib/x86_64/libfoo.so"), 16384)?;
//! println!("reserve {:#x} bytes for {} segments", plan.span_len, plan.segments.len());
//!
//! // SAFETY: loading runs the library's initializers; we trust libfoo.so.
//! let lib = unsafe { Library::open("app.apk!/lib/x86_64/libfoo.so")? };
//! // SAFETY: `add` is `int64_t add(int64_t, int64_t)`.
//! let add = unsafe { lib.symbol::<extern "C" fn(i64, i64) -> i64>("add")? };
//! assert_eq!(add(2, 3), 5);
//! for m in lib.segments()? {
//!     println!("{:#x} {} {}/{} pages resident", m.start, m.prot.rwx(), m.resident_pages, m.pages);
//! }
//! lib.verify()?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the process's tools see
//! glibc's own `dladdr`, `dl_iterate_phdr`, `_dl_find_object` and `dlinfo` do not see the
//! libraries mmkit maps (they walk glibc's link maps only). What does: [`addr_info`]
//! (`dladdr`'s answer for mmkit's libraries and glibc's), debuggers (`gdb` through the
//! `r_debug` namespace above), and libgcc's unwinder: the unwind tables of every library
//! mmkit maps are registered with it (`__register_frame_info_table_bases`), which it consults
//! before `dl_iterate_phdr`, so C++ exceptions thrown in them are caught (also in another
//! mmkit-mapped library) and backtraces taken there or in a callback they make unwind through
//! their frames (a `pread` of `.eh_frame_hdr` per library at load; libgcc reads `.eh_frame`
//! when it first unwinds; [`Namespace::unwind_tables_for_every_library`] can limit it to
//! libraries that link the unwinder or a C++ runtime).
//!
//! Inside the libraries mmkit maps, these calls are bound to mmkit's own, which answer as
//! glibc would for a library it loaded:
//! - `dladdr` answers for them as [`addr_info`] does (a library finding the files beside it),
//!   and `dladdr1` too, with the symbol's `.dynsym` entry (`RTLD_DL_SYMENT`) or the library's
//!   `link_map` (`RTLD_DL_LINKMAP`, the record debuggers see);
//! - `backtrace_symbols` and `backtrace_symbols_fd` (glibc hosts) name frames in them as glibc's
//!   name frames in its own libraries (glibc's would print bare addresses for them);
//! - `dl_iterate_phdr` (glibc hosts) lists glibc's objects, then mmkit's (program headers,
//!   name, TLS module and this thread's block), and `_dl_find_object` finds them and their `.eh_frame_hdr`: an
//!   unwinder linked into the library (`-static-libgcc`, a statically linked libstdc++) catches
//!   its exceptions, and a Rust `cdylib`'s backtraces name its frames;
//! - `dlsym` and `dlvsym` get the return address (glibc finds its caller by it and does not
//!   know them): `RTLD_NEXT` from one of them answers the first definition after it in the
//!   lookup scope of the library whose load brought it in (its own dependencies, breadth-first,
//!   for the library opened), as glibc answers for the libraries it loads (a wrapper of
//!   `getpid` or `open` finds libc's); `RTLD_DEFAULT` answers from glibc's global scope, then
//!   the libraries mmkit made global, then the caller's own lookup scope (the library whose
//!   load brought it in and that library's dependencies), as glibc searches a caller's
//!   `l_scope`; the main program's handle (`dlopen(NULL)`) from the global scopes alone;
//!   other handles go to glibc's `dlsym` unchanged. A name not found answers NULL, with
//!   glibc's `dlerror` message for it, and a `dlopen` that fails leaves glibc's words for an
//!   undefined symbol or a file it cannot open.
//! - `dlopen` searches as for a dependency of the calling library (its `DT_RUNPATH`,
//!   `$ORIGIN` its directory, inside an APK too; `$LIB` and `$PLATFORM` as glibc expands
//!   them), in the namespace that loaded it, as bionic's
//!   `dlopen` uses the caller's namespace: a plug-in opens the library beside it. A library
//!   mmkit maps gets a handle of mmkit's, one per library as glibc's `link_map` (`dlsym`,
//!   `dlvsym`, `dlclose`, `dlinfo` and `dlerror` know it; `RTLD_NODELETE` pins it;
//!   `RTLD_LAZY` and `RTLD_DEEPBIND` bind as [`LoadOptions::lazy_binding`] and
//!   [`LoadOptions::deep_bind`];
//!   `RTLD_GLOBAL` makes it global for the libraries mmkit loads afterwards and for
//!   `dlsym(RTLD_DEFAULT)` from them, after glibc's global scope: see
//!   [`Library::make_global`]; glibc's own lookups do not see it); one the namespace leaves to
//!   the system linker is glibc's `dlopen`, with the caller's flags.
//!
//! Code outside them that walks `dl_iterate_phdr` (the host program's own backtraces, some
//! profilers, sanitizers) still sees glibc's objects only.
//!
//! A system library opened directly (`Library::open("libm.so.6")`) is loaded by the system
//! linker under the default [`SystemPolicy`], as a dependency would be; a position-independent
//! executable is refused, as glibc refuses it.
//!
//! A library whose `PT_GNU_STACK` asks for an executable stack (GNU C nested-function
//! trampolines, assembly without `.note.GNU-stack`), or that has no `PT_GNU_STACK` on x86_64
//! (where glibc's default stack is executable), gets one as glibc's `dlopen` gives it: the
//! system linker is asked to make every thread's stack executable (glibc before 2.41), or the
//! library is refused with its message (2.41 and later, unless the stack is executable already).
//!
//! A library still loaded when the process exits (pinned: `DF_1_NODELETE`, [`Library::pin`],
//! `STB_GNU_UNIQUE`; or a handle never dropped) runs its finalizers (`DT_FINI_ARRAY`, `DT_FINI`)
//! from `exit`, in glibc's `_dl_fini` order (each library before what it needs, else the load
//! order), before the system linker's own libraries run theirs; `_exit` runs none.
//!
//! Loads and unloads are serialized by one process-wide lock, re-entrant like glibc's: an
//! initializer that opens a library on the same thread goes ahead.
//!
//! A library opened with [`LoadOptions::lazy_binding`] (or by a mapped library's
//! `dlopen(RTLD_LAZY)`) loads although a function it calls is defined nowhere yet, as glibc's
//! `RTLD_LAZY` loads it: the call binds to the definition the library's scope has then (a
//! library opened `RTLD_GLOBAL` since), or ends the process with glibc's `symbol lookup
//! error` and status 127 ([`Library::unbound_functions`] lists those functions).
//!
//! # Not (yet) supported
//! Lazy binding of functions defined at load (every reference that resolves then is bound at
//! load; a definition that appears later, after a function was bound, is not switched to, as
//! glibc's first call would have chosen it); initial-exec TLS of a variable
//! in a dynamic TLS block (a library mmkit maps without `DF_STATIC_TLS`, or a glibc-loaded one;
//! on aarch64 any other module's); copy relocations; text relocations (`DT_TEXTREL`, which
//! glibc applies on x86_64; Android refuses them too); `PT_LOAD` segments that share a page
//! (glibc maps the later one over the shared page) or are writable and executable at once.
//! ELF filters (`DT_FILTER`, `DT_AUXILIARY`): their tags are ignored, so a lookup that reaches a
//! filter binds its own definition where glibc binds the filtee's.
//! Search: a top-level open is searched for as glibc's `dlopen` called from the program, whatever
//! library the call is made in.
#![deny(missing_docs)]
// `unsafe` only in the modules that say `#![allow(unsafe_code)]` (DESIGN.md, "Where `unsafe` lives").
#![deny(unsafe_code)]

mod addr;
pub mod error;
mod executor;
mod image;
pub mod plan;
pub mod source;

mod dynamic;
mod group;
mod library;
mod machine;
mod namespace;
mod options;
mod packed;
mod process_scope;
mod relocate;
mod symbols;
mod system;

pub use addr::{addr_info, AddrInfo};
pub use error::{Error, ErrorKind, Result};
pub use executor::Symbol;
pub use library::{
    page_size, plan, plan_source, plan_source_any_machine, Library, LibraryMapping, MappingKind, SYSTEM_DIRS,
};
pub use machine::{Machine, TlsVariant};
pub use namespace::{Namespace, SearchDir, SystemPolicy};
pub use options::LoadOptions;
pub use plan::{Plan, Protection, SegmentPlan, TlsPlan};
pub use source::{OpenSource, Source, SourceFd};
pub use symbols::SymbolKind;

// A loaded library can be shared by threads (its lookups take `&self`; the process-wide
// lookup cache is behind a mutex): checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Library>();
};
