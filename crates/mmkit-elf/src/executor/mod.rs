//! The executor: opening a library (`Library::open`, `Namespace::open`, with
//! `android_dlopen_ext`'s [`LoadOptions`]), its typed [`Symbol`]s, and the calls into the
//! loaded code: relocation (through [`crate::relocate`]), initializers and finalizers, system
//! libraries through the system linker. The image itself, mapped through mmkit's core, is
//! [`crate::image::Image`], one layer below. The `dl*` functions the loader binds in the
//! libraries it maps (`dladdr`, `dlopen`/`dlsym`/`dlvsym`/`dlclose`/`dlerror`/`dlinfo`,
//! `dl_iterate_phdr`/`_dl_find_object`) are here too: they answer from the loaded libraries
//! and namespaces, the layer above relocation.
//!
//! One of the modules of the crate that contain `unsafe` (with `image` and `relocate`).

// One of the modules with `unsafe`: calls into loaded code, answers `dl*` calls (DESIGN.md: the executor).
#![allow(unsafe_code)]

pub(crate) mod debugger;
pub(crate) mod dladdr;
pub(crate) mod dlsym;
pub(crate) mod execstack;
#[cfg(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) mod phdrs;

/// The function of mmkit's that `name` is bound to in the libraries it maps, instead of the
/// system linker's, if it is one of the `dl*` functions above (which answer for the libraries
/// mmkit maps as glibc answers for its own), or glibc's `backtrace_symbols`/`_fd` (which name
/// frames through glibc's own `dladdr`).
pub(crate) fn interposed(name: &[u8]) -> Option<u64> {
    #[cfg(target_env = "gnu")]
    if name.starts_with(b"backtrace_symbols") {
        return dladdr::backtrace_bound_to(name);
    }
    // Every other name here starts with `dl` or `_dl`: one comparison for all the others.
    if !name.starts_with(b"dl") && !name.starts_with(b"_dl") {
        return None;
    }
    if name == dladdr::INTERPOSED {
        return Some(dladdr::dladdr as *const () as usize as u64);
    }
    #[cfg(target_env = "gnu")]
    if name == b"dladdr1" {
        return Some(dladdr::dladdr1 as *const () as usize as u64);
    }
    #[cfg(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if let Some(entry) = phdrs::bound_to(name) {
        return Some(entry);
    }
    dlsym::bound_to(name)
}

use crate::dynamic::Dynamic;
use crate::error::{Error, ErrorKind, Result};
use crate::options::LoadOptions;
use crate::relocate::Target;
use crate::source::Source;
use crate::Library;
use std::marker::PhantomData;

/// A typed symbol of a [`Library`], valid while the library is loaded.
///
/// It derefs to `T` (usually an `extern "C" fn` pointer type) and borrows the library, so the
/// `Symbol` itself cannot outlive the library handle it came from. The `T` it holds is a plain
/// copyable pointer, though: a copy taken out of it (`let f = *sym;`) is not tied to the
/// library, and using it after the library is unloaded (its last handle dropped, when nothing
/// else keeps it) is undefined behavior. Keep the `Symbol`, not a copy of its pointer, or keep
/// the library alive (or [`pin`](Library::pin) it) for as long as the pointer is used, as with
/// `libloading`.
#[derive(Debug, Clone, Copy)]
pub struct Symbol<'lib, T> {
    value: T,
    address: u64,
    _lib: PhantomData<&'lib Library>,
}

impl Library {
    /// The library's RELRO pages `(mapped from the RELRO file, left private because they
    /// differ)`, when it was loaded with [`LoadOptions::write_relro`] or
    /// [`LoadOptions::use_relro`]; `None` otherwise.
    pub fn relro_sharing(&self) -> Option<(u64, u64)> {
        self.mapped_object()?.image().relro_sharing()
    }
}

impl<T> Symbol<'_, T> {
    /// The symbol's run-time address.
    pub fn address(&self) -> u64 {
        self.address
    }
}

impl<T> std::ops::Deref for Symbol<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl Library {
    /// Loads a shared object from a file, a stored APK entry or memory, like `dlopen(RTLD_NOW |
    /// RTLD_LOCAL)`: reads the headers, plans, reserves the span, maps the segments, loads
    /// missing `DT_NEEDED` libraries, relocates eagerly, protects RELRO and runs the
    /// initializers. It loads in the process's default [`crate::Namespace`]: system
    /// libraries go to the system linker, and a file already loaded there is not loaded again
    /// (the result is another handle to the same copy, as with `dlopen`). A bare soname
    /// (`libz.so.1`, no `/`) is searched for, never opened in the current directory (as with
    /// `dlopen`: `./libz.so.1` names that file).
    ///
    /// # Safety
    /// Loading runs the library's initializers and IFUNC resolvers, and later calls run its
    /// code: the library must be trustworthy, as with `dlopen`. Its file must not be truncated
    /// or modified while loaded (the pages are mapped from it; memory sources are sealed).
    /// Its unwind tables (`.eh_frame`) are registered with the process's unwinder as they are
    /// (validating them would read their pages on every load): a corrupt one crashes the next
    /// unwind anywhere in the process, where glibc's copy would crash only an unwind through
    /// the library.
    #[doc(alias = "dlopen")]
    pub unsafe fn open(source: impl Into<Source>) -> Result<Library> {
        // SAFETY: the caller's contract is this function's.
        unsafe { crate::Namespace::global_default().open(source) }
    }

    /// [`Library::open`] with `android_dlopen_ext`'s options (see [`LoadOptions`]): loads
    /// into a range of the caller's reservation, and more.
    ///
    /// # Safety
    /// As for [`Library::open`], and the contract of each option (a
    /// [reserved](LoadOptions::reserved) range needs none beyond it: the library's range stays
    /// lent out of the reservation until the library is unloaded).
    #[doc(alias = "android_dlopen_ext")]
    pub unsafe fn open_with(source: impl Into<Source>, options: &LoadOptions<'_>) -> Result<Library> {
        // SAFETY: the caller's contract is this function's.
        unsafe { crate::Namespace::global_default().open_with(source, options) }
    }

    /// Looks up `name` (its default version) in the library, then its dependencies, and
    /// returns it typed as `T`: an `extern "C" fn` pointer, or a raw pointer to data. A
    /// thread-local variable (`STT_TLS`) is, as `dlsym` answers, the address of the calling
    /// thread's copy.
    ///
    /// # Safety
    /// `T` must be the symbol's true type (as with `dlsym` + a cast): calling a function
    /// through a wrong signature, or reading data as the wrong type, is undefined behavior.
    /// A copy of the pointer taken out of the [`Symbol`] must not be used after the library is
    /// unloaded (see [`Symbol`]), nor, for a thread-local variable, after the calling thread
    /// has exited. (`T` must be pointer-sized: another size is refused with
    /// [`ErrorKind::SymbolNotFound`](crate::ErrorKind::SymbolNotFound), naming the size.)
    #[doc(alias = "dlsym")]
    pub unsafe fn symbol<T: Copy>(&self, name: &str) -> Result<Symbol<'_, T>> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.typed_symbol(name, false) }
    }

    /// Looks up the function `name` like [`Library::symbol`], and refuses a symbol that is
    /// not code (`STT_FUNC` or `STT_GNU_IFUNC`; see [`Library::symbol_kind`]): data objects,
    /// thread-locals, absolute symbols such as version names (libz's `ZLIB_1.2.2`), untyped
    /// symbols. Calling one of those would jump into data or to a small number.
    ///
    /// # Safety
    /// `T` must be the function's true signature, an `extern "C" fn` pointer type, and a copy
    /// of it taken out of the [`Symbol`] must not be called after the library is unloaded.
    pub unsafe fn function<T: Copy>(&self, name: &str) -> Result<Symbol<'_, T>> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.typed_symbol(name, true) }
    }

    /// [`Library::symbol`], or [`Library::function`] when `function` is set.
    ///
    /// # Safety
    /// As for [`Library::symbol`].
    unsafe fn typed_symbol<T: Copy>(&self, name: &str, function: bool) -> Result<Symbol<'_, T>> {
        if function {
            let kind = self.symbol_kind(name)?;
            if !kind.is_function() {
                return Err(Error::new(
                    format!("function lookup of `{name}`"),
                    ErrorKind::NotAFunction,
                    format!("it is {}, not a function (STT_FUNC or STT_GNU_IFUNC)", kind.describe()),
                )
                .with_path(self.source()));
            }
        }
        if std::mem::size_of::<T>() != std::mem::size_of::<usize>() {
            return Err(Error::new(
                format!("symbol {name}"),
                ErrorKind::SymbolNotFound,
                format!("the requested type is {} bytes; symbols are pointer-sized", std::mem::size_of::<T>()),
            )
            .with_path(self.source()));
        }
        let address = match self.find(name) {
            Some(Target::Addr(a)) => {
                if function {
                    // A function whose address is not code (a hostile st_value) would jump into
                    // data or unmapped pages when called.
                    self.check_code(a, "function lookup")
                        .map_err(|e| e.with_op(format!("function lookup of `{name}`")))?;
                }
                a
            }
            Some(Target::Ifunc(resolver)) => {
                self.check_code(resolver, "IFUNC resolver")
                    .map_err(|e| e.with_op(format!("IFUNC resolver of `{name}`")))?;
                // SAFETY: an STT_GNU_IFUNC definition of this loaded, relocated library, in
                // executable pages (checked above).
                unsafe { crate::relocate::call_ifunc_resolver(resolver) }
            }
            // As glibc's `dlsym`: the calling thread's copy (allocated on first use).
            Some(Target::Tls { module: 0, .. }) => {
                return Err(self.not_found(name, "it is a thread-local variable of a library without a PT_TLS block"))
            }
            Some(Target::Tls { module, offset }) => crate::relocate::tls::address(module, offset, "symbol") as u64,
            None => return Err(self.not_found(name, "no such exported symbol")),
        };
        let raw = address as usize;
        // SAFETY: T is pointer-sized (checked above); the caller vouches T is the symbol's type.
        let value = unsafe { std::mem::transmute_copy::<usize, T>(&raw) };
        Ok(Symbol { value, address, _lib: PhantomData })
    }
}

impl crate::Namespace {
    /// Loads `source` in this namespace: its dependencies are found and loaded by this
    /// namespace's rules. A bare soname (`libz.so.1`, no `/`) is the library loaded in this
    /// namespace with that `DT_SONAME` if there is one (as with `dlopen`); else it is searched
    /// for as a dependency would be (never in the current directory), and mapped by mmkit-elf;
    /// one that no directory of the namespace has before the system's is, under
    /// [`SystemPolicy::SystemLinker`] (the default), left to the system linker's own search
    /// (`ld.so.cache` in `ld.so.conf`'s order, its glibc-hwcaps variants, `LD_LIBRARY_PATH` as
    /// the process started), which loads it, as for a dependency.
    ///
    /// [`SystemPolicy::SystemLinker`]: crate::SystemPolicy::SystemLinker
    ///
    /// # Safety
    /// As for [`Library::open`](crate::Library::open): the library must be trustworthy.
    pub unsafe fn open(&self, source: impl Into<Source>) -> Result<crate::Library> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.open_with(source, &LoadOptions::new()) }
    }

    /// [`Namespace::open`](crate::Namespace::open) with `android_dlopen_ext`'s options (see
    /// [`LoadOptions`]), which apply to `source` itself, not to its dependencies.
    ///
    /// # Safety
    /// As for [`Library::open_with`](crate::Library::open_with).
    #[doc(alias = "android_dlopen_ext")]
    pub unsafe fn open_with(&self, source: impl Into<Source>, options: &LoadOptions<'_>) -> Result<crate::Library> {
        let source = source.into();
        if let Some(loaded) = crate::group::open_loaded_soname(self, &source) {
            if options.seal {
                loaded.seal_loaded()?;
            }
            return Ok(loaded);
        }
        crate::source::with_archive_cache(|| match self.start(source, true)? {
            crate::namespace::Start::Source(source, opened) => crate::group::open(self, &source, opened, options),
            crate::namespace::Start::SystemLinker { name, not_found } => {
                crate::group::open_system(self, &name, not_found)
            }
            crate::namespace::Start::System(name, sys) => crate::group::open_system_loaded(self, &name, sys),
            // SAFETY: the caller's contract covers the library whatever namespace opens it.
            crate::namespace::Start::Linked(target, source) => unsafe { target.open_with(source, options) },
        })
    }
}

/// Relocates the image of a library being loaded (see [`crate::relocate::relocate`]).
pub(crate) fn relocate_image(
    dynamic: &Dynamic,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls: Option<crate::relocate::tls::OwnTls>,
    allocate_static: &mut dyn FnMut() -> Result<crate::relocate::tls::OwnTls>,
    lazy: bool,
) -> Result<Vec<crate::relocate::lazy::LazySlot>> {
    // SAFETY: called by `Library::load` after every segment is mapped and every dependency is
    // loaded, relocated and initialized; `Library::open`'s caller vouched for the library.
    unsafe { crate::relocate::relocate(dynamic, resolve, tls, allocate_static, lazy) }
}

/// Runs `DT_INIT`, then `DT_INIT_ARRAY` in order.
pub(crate) fn run_initializers(lib: &crate::library::Object) -> Result<()> {
    let (image, dy) = (lib.image(), lib.dynamic());
    if let Some(init) = dy.init {
        // SAFETY: DT_INIT of a relocated library whose dependencies are initialized; the caller
        // of `Library::open` vouched for the library.
        unsafe { image.call_initializer(init, false)? };
    }
    for i in 0..dy.init_array.len() {
        let Some(f) = image.get(&dy.init_array, i) else { break };
        // SAFETY: as above; entries are relocated run-time addresses.
        unsafe { image.call_initializer(f, true)? };
    }
    Ok(())
}

/// Runs `DT_FINI_ARRAY` in reverse order, then `DT_FINI`, once (at unload or at process exit:
/// see [`finalize_at_exit`]). Errors are ignored (nothing left to report them to during drop).
pub(crate) fn run_finalizers(lib: &crate::library::Object) {
    if !lib.take_finalizers() {
        return;
    }
    let (image, dy) = (lib.image(), lib.dynamic());
    for i in (0..dy.fini_array.len()).rev() {
        if let Some(f) = image.get(&dy.fini_array, i) {
            // SAFETY: a finalizer of an initialized library, run once from Drop.
            let _ = unsafe { image.call_initializer(f, true) };
        }
    }
    if let Some(fini) = dy.fini {
        // SAFETY: as above.
        let _ = unsafe { image.call_initializer(fini, false) };
    }
}

/// Has the finalizers of the libraries mmkit mapped that are still loaded when the process
/// exits run then (pinned ones, and those whose handles were never dropped), the last
/// initialized first, as glibc's `_dl_fini` runs from `exit`. Registered with `atexit` once,
/// when the first library is initialized: it runs after the exit handlers registered later (a
/// library's own `atexit` calls; `thread_local` destructors run before any), before those
/// registered earlier. `_exit` and a fatal signal run none, as with glibc.
pub(crate) fn finalize_at_exit() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `finalize_loaded_libraries` is a function of this program, never unloaded,
        // callable with no argument from the thread that exits.
        unsafe { libc::atexit(finalize_loaded_libraries) };
    });
}

/// The `atexit` handler of [`finalize_at_exit`].
extern "C" fn finalize_loaded_libraries() {
    crate::group::finalize_still_loaded();
}

/// Has the system linker load the system library at `path` (a dependency the namespace
/// routes to it; see [`crate::Namespace`]).
pub(crate) fn load_system_library(path: &str) -> std::result::Result<crate::process_scope::SystemLibrary, String> {
    // SAFETY: called by `Library::load` for a dependency of a library whose loading the caller
    // of `Library::open`/`Namespace::open` vouched for (dlopen would load it as well).
    unsafe { crate::process_scope::SystemLibrary::load(path) }
}
