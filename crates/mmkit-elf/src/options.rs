//! [`LoadOptions`]: what Android's `android_dlopen_ext` adds to `dlopen`, for
//! [`Library::open_with`](crate::Library::open_with) and
//! [`Namespace::open_with`](crate::Namespace::open_with).
//!
//! | Android flag | option |
//! |---|---|
//! | `ANDROID_DLEXT_RESERVED_ADDRESS` | [`LoadOptions::reserved`] |
//! | `ANDROID_DLEXT_RESERVED_ADDRESS_HINT` | [`LoadOptions::reserved_hint`] |
//! | `ANDROID_DLEXT_USE_LIBRARY_FD(_OFFSET)` | [`Source::fd`](crate::Source::fd) |
//! | `ANDROID_DLEXT_WRITE_RELRO` | [`LoadOptions::write_relro`] |
//! | `ANDROID_DLEXT_USE_RELRO` | [`LoadOptions::use_relro`] |
//! | (glibc 2.41's `glibc.rtld.seal`, Chrome) | [`LoadOptions::seal`] |
//! | (`dlopen`'s `RTLD_LAZY`) | [`LoadOptions::lazy_binding`] |
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::plan::Plan;
use mmkit::Reservation;
use rustix::fd::{AsFd, BorrowedFd};

/// Options for loading one library (the one named; its dependencies load as usual, but for
/// [`lazy_binding`](LoadOptions::lazy_binding) and [`deep_bind`](LoadOptions::deep_bind),
/// which apply to every library the open maps).
///
/// ```
/// # /// Builds a shared library from C in the current directory (`false`: no compiler here).
/// # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
/// #     std::fs::write("src.c", c).unwrap();
/// #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
/// #     match std::process::Command::new("gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
/// #         Ok(s) => { assert!(s.success(), "gcc -o {out}: {s}"); true }
/// #         Err(e) => { println!("skipped: no gcc ({e})"); false }
/// #     }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # std::env::set_current_dir(dir.path())?;
/// # if !cc("libfoo.so", "int foo[4096] = { 1 }; int get(int i) { return foo[i]; }", &[]) {
/// #     return Ok(());
/// # }
/// use mmkit::Reservation;
/// use mmkit_elf::{Library, LoadOptions};
/// let space = Reservation::new(64 << 20)?; // address space the caller keeps
/// // SAFETY: a trusted library; `space` outlives it (it is dropped last).
/// let lib = unsafe { Library::open_with("./libfoo.so", &LoadOptions::new().reserved(&space, 0))? };
/// assert_eq!(lib.span().0, space.as_ptr() as u64);
/// # let span_len = lib.span().1 as usize;
/// # assert!(space.resident_pages(0, span_len)? > 0);
/// drop(lib); // the range is decommitted and stays reserved in `space`
/// # assert_eq!(space.resident_pages(0, span_len)?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'r> {
    pub(crate) place: Option<Place<'r>>,
    pub(crate) seal: bool,
    pub(crate) relro: Option<(RelroMode, BorrowedFd<'r>)>,
    pub(crate) lazy: bool,
    pub(crate) deep: bool,
    /// The `DT_RPATH`s of the library that asked for this one (a mapped library's `dlopen`),
    /// and of its loaders (see `Object::rpath_inherited`).
    pub(crate) inherit_rpath: Vec<crate::SearchDir>,
}

/// How the libraries of one open bind ([`LoadOptions::binding`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Binding {
    /// [`LoadOptions::lazy_binding`], unless `LD_BIND_NOW` says otherwise.
    pub lazy: bool,
    /// [`LoadOptions::deep_bind`].
    pub deep: bool,
}

/// What to do with a RELRO file ([`LoadOptions::write_relro`], [`LoadOptions::use_relro`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelroMode {
    /// Write the relocated RELRO pages to the file, then map them from it.
    Write,
    /// Map the pages identical to the file's from it; the others stay private.
    Use,
}

/// Where to put the library: a range of the caller's reservation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'r> {
    reservation: &'r Reservation,
    offset: usize,
    /// `_HINT`: fall back to a fresh reservation when the library does not fit.
    hint: bool,
}

impl<'r> LoadOptions<'r> {
    /// Default options: a fresh reservation, as [`Library::open`](crate::Library::open).
    pub fn new() -> LoadOptions<'r> {
        LoadOptions::default()
    }

    /// Loads the library at `offset` (a page multiple) in `reservation`
    /// (`ANDROID_DLEXT_RESERVED_ADDRESS`); loading fails, saying how many bytes the library
    /// needs, when it does not fit there. The address must keep the segments' alignment
    /// ([`Plan::max_align`](crate::Plan::max_align), their largest `p_align`), else loading
    /// fails the same way: for a library aligned past the page size (built for 16 KiB pages,
    /// loaded on a 4 KiB kernel), reserve with
    /// [`ReserveOptions::align`](mmkit::ReserveOptions::align) and pick an offset that is a
    /// multiple of it. Unloading returns the range decommitted: reserved `PROT_NONE` in
    /// `reservation`, without memory.
    ///
    /// While the library is loaded its range is lent out of `reservation`
    /// ([`Reservation::lend`]): the reservation refuses to commit, decommit, map or carve
    /// there, and if it is dropped first, the library's range stays mapped until the library
    /// is unloaded (a pinned library, `DF_1_NODELETE` or [`Library::pin`](crate::Library::pin),
    /// or one another load shares as its dependency, keeps it as long as it stays). A library
    /// already loaded in the namespace is returned as it is, where it is (as Android does). A
    /// range that still holds another library mmkit loaded there (another handle keeps it, or
    /// it is pinned) is refused ([`ErrorKind::ReservationInUse`], naming it), never mapped
    /// over.
    #[doc(alias = "ANDROID_DLEXT_RESERVED_ADDRESS")]
    pub fn reserved(mut self, reservation: &'r Reservation, offset: usize) -> LoadOptions<'r> {
        self.place = Some(Place { reservation, offset, hint: false });
        self
    }

    /// As [`reserved`](Self::reserved), but when the library does not fit there it is loaded
    /// in a fresh reservation instead (`ANDROID_DLEXT_RESERVED_ADDRESS_HINT`).
    #[doc(alias = "ANDROID_DLEXT_RESERVED_ADDRESS_HINT")]
    pub fn reserved_hint(mut self, reservation: &'r Reservation, offset: usize) -> LoadOptions<'r> {
        self.place = Some(Place { reservation, offset, hint: true });
        self
    }
}

impl LoadOptions<'_> {
    /// Seals the library's code and RELRO after relocation with `mseal(2)` (Linux 6.10+), as
    /// glibc 2.41 and Chrome do: `mprotect`, `munmap`, `mremap` or `mmap` over those pages then
    /// fail with `EPERM`, so an attacker cannot make them writable again. A sealed library is
    /// pinned (never unloaded: its pages could not be unmapped), and loading fails with
    /// [`ErrorKind::Io`] naming `mseal` (detail: needs Linux 6.10) where the kernel lacks it.
    /// A library the namespace has loaded already (unsealed) is sealed and pinned then, as it
    /// is returned. A system library left to the system linker is glibc's to seal.
    #[doc(alias = "mseal")]
    pub fn seal(mut self, yes: bool) -> Self {
        self.seal = yes;
        self
    }
}

impl LoadOptions<'_> {
    /// Binds as `dlopen(RTLD_LAZY)` does where it shows: a call to a function that nothing
    /// loaded defines is bound when it is made, not at load. The library (and every library
    /// this open maps for it) then loads. At the call, the function is looked up again in the
    /// library's scope as it is then (a library opened `RTLD_GLOBAL`, by glibc or with
    /// [`Library::make_global`](crate::Library::make_global), may define it by then) and the
    /// call goes on to it with its arguments; if nothing defines it, the process ends as glibc
    /// ends it, with `<program>: symbol lookup error: <library>: undefined symbol: <name>` on
    /// standard error and exit status 127. Plug-ins that name a function of an optional
    /// library in code they never reach, or of a library the host loads after them, load this
    /// way.
    ///
    /// Every other reference is still bound at load (a call to a function that is defined
    /// costs nothing more later), and an undefined data reference still fails the load, as
    /// with glibc. As with glibc, a library linked with `-z now` is bound at load, and
    /// `LD_BIND_NOW` set (not empty) in the environment turns lazy binding off. The default,
    /// as Android's linker (which has no lazy binding) and `RTLD_NOW`: an undefined function
    /// fails the load
    /// ([`ErrorKind::UndefinedSymbol`]). A `dlopen(name, RTLD_LAZY)` made by a library mmkit
    /// mapped binds this way.
    ///
    /// ```
    /// # /// Builds a shared library from C in the current directory (`false`: no compiler here).
    /// # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
    /// #     std::fs::write("src.c", c).unwrap();
    /// #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
    /// #     match std::process::Command::new("gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
    /// #         Ok(s) => { assert!(s.success(), "gcc -o {out}: {s}"); true }
    /// #         Err(e) => { println!("skipped: no gcc ({e})"); false }
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::env::set_current_dir(dir.path())?;
    /// # let c = "int missing_function(void); int optional(void) { return missing_function(); } int entry(void) { return 7; }";
    /// # if !cc("plugin.so", c, &[]) {
    /// #     return Ok(());
    /// # }
    /// # // Bound eagerly, the missing function is an error.
    /// # let eager = unsafe { mmkit_elf::Library::open("./plugin.so") }.unwrap_err();
    /// # assert_eq!(eager.kind(), mmkit_elf::ErrorKind::UndefinedSymbol, "{eager}");
    /// use mmkit_elf::{Library, LoadOptions};
    /// // SAFETY: a trusted plug-in; its optional code (which names a missing function) is
    /// // never called.
    /// let plugin = unsafe { Library::open_with("./plugin.so", &LoadOptions::new().lazy_binding(true))? };
    /// # assert_eq!(unsafe { plugin.symbol::<extern "C" fn() -> i32>("entry")? }(), 7);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "RTLD_LAZY")]
    pub fn lazy_binding(mut self, yes: bool) -> Self {
        self.lazy = yes;
        self
    }

    /// Binds as `dlopen(RTLD_DEEPBIND)` does: the references of the library (and of every
    /// library this open maps for it) bind first to the library itself and its dependencies
    /// (its search list, breadth-first), and only then to the global scope, which glibc
    /// searches first otherwise. A plug-in that carries its own copy of a function the
    /// program or a global library also defines (its own allocator, its own zlib) then calls
    /// its own. A `dlopen(name, RTLD_DEEPBIND)` made by a library mmkit mapped binds this way.
    ///
    /// ```
    /// # /// Builds a shared library from C in the current directory (`false`: no compiler here).
    /// # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
    /// #     std::fs::write("src.c", c).unwrap();
    /// #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
    /// #     match std::process::Command::new("gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
    /// #         Ok(s) => { assert!(s.success(), "gcc -o {out}: {s}"); true }
    /// #         Err(e) => { println!("skipped: no gcc ({e})"); false }
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::env::set_current_dir(dir.path())?;
    /// # // A global library defines `deflate` too; the plug-in calls its own from `compress`.
    /// # let plugin_c = "int deflate(void) { return 2; } int compress(void) { return deflate(); }";
    /// # if !cc("libglobal.so", "int deflate(void) { return 1; }", &[]) || !cc("plugin.so", plugin_c, &[]) {
    /// #     return Ok(());
    /// # }
    /// # std::fs::copy("plugin.so", "plugin-plain.so")?;
    /// # let global = unsafe { mmkit_elf::Library::open("./libglobal.so")? };
    /// # global.make_global();
    /// # let plain = unsafe { mmkit_elf::Library::open("./plugin-plain.so")? };
    /// # assert_eq!(unsafe { plain.symbol::<extern "C" fn() -> i32>("compress")? }(), 1, "the global scope first");
    /// use mmkit_elf::{Library, LoadOptions};
    /// // SAFETY: a trusted plug-in, whose calls to its own `deflate` must reach its own.
    /// let plugin = unsafe { Library::open_with("./plugin.so", &LoadOptions::new().deep_bind(true))? };
    /// # assert_eq!(unsafe { plugin.symbol::<extern "C" fn() -> i32>("compress")? }(), 2, "its own first");
    /// # Ok(()) }
    /// ```
    #[doc(alias = "RTLD_DEEPBIND")]
    pub fn deep_bind(mut self, yes: bool) -> Self {
        self.deep = yes;
        self
    }

    /// How the open binds: [`lazy_binding`](Self::lazy_binding) (off when `LD_BIND_NOW` is
    /// set and not empty, read once, as glibc reads it at start-up) and
    /// [`deep_bind`](Self::deep_bind).
    pub(crate) fn binding(&self) -> Binding {
        static BIND_NOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let bind_now = *BIND_NOW.get_or_init(|| std::env::var_os("LD_BIND_NOW").is_some_and(|v| !v.is_empty()));
        Binding { lazy: self.lazy && !bind_now, deep: self.deep }
    }
}

impl<'r> LoadOptions<'r> {
    /// After relocation, writes the library's RELRO pages to `file` (truncated to their
    /// length) and maps them from it, read-only and private (`ANDROID_DLEXT_WRITE_RELRO`):
    /// processes that load the same library at the same address then share those pages
    /// through the page cache with [`use_relro`](Self::use_relro). Chrome's zygote does this
    /// for WebView. Use it with [`reserved`](Self::reserved): the pages hold absolute
    /// addresses.
    ///
    /// The file must not be modified while any library maps it (the contract of the `unsafe`
    /// open): its pages are the library's RELRO. A file this process maps (one of the
    /// libraries loaded, or the RELRO of one still loaded) is refused before it is written.
    ///
    /// As with Android, the RELRO options apply to a new load only: a library the namespace has
    /// loaded already is returned as it is, nothing written or compared
    /// ([`Library::relro_sharing`](crate::Library::relro_sharing) is `None`).
    #[doc(alias = "ANDROID_DLEXT_WRITE_RELRO")]
    pub fn write_relro(mut self, file: &'r impl AsFd) -> Self {
        self.relro = Some((RelroMode::Write, file.as_fd()));
        self
    }

    /// After relocation, compares the library's RELRO pages with those of `file` (written by
    /// [`write_relro`](Self::write_relro) in a process that loaded the library at the same
    /// address) and maps the identical ones from the file (`ANDROID_DLEXT_USE_RELRO`); pages
    /// that differ stay private. [`Library::relro_sharing`](crate::Library::relro_sharing)
    /// counts both. A file of another length is an error.
    #[doc(alias = "ANDROID_DLEXT_USE_RELRO")]
    pub fn use_relro(mut self, file: &'r impl AsFd) -> Self {
        self.relro = Some((RelroMode::Use, file.as_fd()));
        self
    }
}

impl Place<'_> {
    /// Whether a failure to fit falls back to a fresh reservation.
    pub(crate) fn is_hint(&self) -> bool {
        self.hint
    }

    /// The caller's reservation and the offset of the library's span in it.
    pub(crate) fn range(&self) -> (&Reservation, usize) {
        (self.reservation, self.offset)
    }

    /// Checks that `plan`'s span fits at the place, with its segments aligned to their
    /// `p_align`; the error says how many bytes the library needs.
    pub(crate) fn check(&self, plan: &Plan) -> Result<()> {
        let (r, offset, span) = (self.reservation, self.offset, plan.span_len);
        let have = (r.len() as u64).saturating_sub(offset as u64);
        let misfit = |detail: String| {
            Error::new("load into the reserved address space", ErrorKind::ReservationTooSmall, detail)
                .with_range(offset as u64, have)
        };
        if have < span {
            return Err(misfit(format!(
                "the library needs {span:#x} bytes at offset {offset:#x} of the {:#x}-byte reservation at {:#x}; \
                 {have:#x} bytes are left there",
                r.len(),
                r.as_ptr() as usize
            )));
        }
        // In the reservation (checked above): no overflow.
        let base = r.as_ptr() as u64 + offset as u64;
        let align = plan.max_align.max(plan.page_size);
        if base.wrapping_sub(plan.span_vaddr) & (align - 1) != 0 {
            return Err(misfit(format!(
                "address {base:#x} does not keep the segments aligned to their p_align {align:#x} \
                 (it must be {:#x} modulo {align:#x})",
                plan.span_vaddr & (align - 1)
            )));
        }
        Ok(())
    }
}
