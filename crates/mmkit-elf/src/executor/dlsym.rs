//! `dlopen`, `dlsym`, `dlvsym`, `dlclose` and `dlerror` for the libraries mmkit maps.
//!
//! The system linker answers these calls by the calling object, found from the return
//! address, and it does not know the libraries mmkit maps. So the loader binds them, in the
//! libraries it maps, to the entry points here; a small assembly entry passes the return
//! address on (as glibc's `dlopen` and `dlsym` read `__builtin_return_address(0)`).
//!
//! - `dlsym(RTLD_NEXT, name)` answers the next definition of `name` after the calling object:
//!   how a wrapper (a `malloc`, `open` or `getpid` shim, a tracing library) finds the function
//!   it wraps. glibc answered NULL ("RTLD_NEXT used in code not dynamically loaded"); from a
//!   library mmkit mapped the answer is what glibc answers for a library it loaded: the first
//!   definition after the caller in the lookup scope (breadth-first) of the library whose load
//!   brought the caller in, its own dependencies for the library opened.
//! - `dlopen(name)` searches as for a dependency of the caller (glibc searches the caller's
//!   `DT_RUNPATH` and expands `$ORIGIN` to the caller's directory; it used the main program's,
//!   so a plug-in that opens a library beside it did not find it), in the namespace that
//!   loaded the caller (as bionic's `dlopen` uses the caller's namespace): a library mmkit maps
//!   gets a handle of mmkit's, one per library (`dlsym`, `dlvsym` and `dlclose` know it;
//!   `RTLD_NODELETE` pins it, `RTLD_GLOBAL` adds it to mmkit's global scope, consulted after
//!   glibc's), one the namespace leaves to the system linker goes to glibc's `dlopen` with the
//!   caller's flags. Its errors are what `dlerror` answers next on that thread.
//! - `dlsym(RTLD_DEFAULT)` and `dlvsym(RTLD_DEFAULT)`: glibc's global scope, then the
//!   libraries mmkit made global (the one found then stays loaded while the caller is, as
//!   glibc adds the dependency), then the caller's own lookup scope (the search list of the
//!   library whose load brought it in), as glibc searches the caller's `l_scope`. The main
//!   program's handle (`dlopen(NULL)`): the two global scopes, as glibc's searches the global
//!   scope.
//! - `dlsym` of one of these names (or `dladdr`, `dl_iterate_phdr`, ...) through `RTLD_DEFAULT`,
//!   `RTLD_NEXT`, the main program's handle or one of mmkit's answers mmkit's function, the one
//!   the caller's own references are bound to (glibc's would not know mmkit's handles).
//! - Every other call (another handle, a caller no library mmkit mapped holds) goes to the
//!   system linker's function unchanged.
//!
//! A name `dlsym` does not find answers NULL with glibc's `dlerror` message for it. Only x86_64 and
//! aarch64, the hosts the loader relocates for, have the entries; elsewhere nothing is bound.

/// The entry bound to `name` in libraries mmkit maps, if `name` is one of those above.
pub(crate) fn bound_to(name: &[u8]) -> Option<u64> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let entry = match name {
            b"dlsym" => entries::dlsym_entry as *const (),
            #[cfg(target_env = "gnu")]
            b"dlvsym" => entries::dlvsym_entry as *const (),
            b"dlopen" => entries::dlopen_entry as *const (),
            b"dlclose" => entries::dlclose as *const (),
            b"dlerror" => entries::dlerror as *const (),
            #[cfg(target_env = "gnu")]
            b"dlinfo" => entries::dlinfo as *const (),
            _ => return None,
        };
        return Some(entry as usize as u64);
    }
    #[allow(unreachable_code)]
    {
        let _ = name;
        None
    }
}

/// The entries and what they answer (on the hosts the loader relocates for).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod entries {
    use std::cell::RefCell;
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::group::Opened;
    use crate::relocate::Target;
    use crate::symbols::Want;
    use crate::Library;

    /// `dlsym(handle, name)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "x86_64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // The return address is on top of the stack at entry; a tail jump keeps it there.
        core::arch::naked_asm!("mov rdx, [rsp]", "jmp {f}", f = sym dlsym_from)
    }

    /// `dlsym(handle, name)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "aarch64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // The return address is in the link register at entry; a branch keeps it there.
        // `hint #34` is `bti c`: the landing pad of an indirect call where branch protection is on.
        core::arch::naked_asm!("hint #34", "mov x2, x30", "b {f}", f = sym dlsym_from)
    }

    /// `dlvsym(handle, name, version)`, called with the caller's return address in the fourth
    /// argument.
    ///
    /// # Safety
    /// As [`dlvsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlvsym_entry(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
    ) -> *mut c_void {
        core::arch::naked_asm!("mov rcx, [rsp]", "jmp {f}", f = sym dlvsym_from)
    }

    /// `dlvsym(handle, name, version)`, called with the caller's return address in the fourth
    /// argument.
    ///
    /// # Safety
    /// As [`dlvsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlvsym_entry(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
    ) -> *mut c_void {
        core::arch::naked_asm!("hint #34", "mov x3, x30", "b {f}", f = sym dlvsym_from)
    }

    /// `dlopen(name, flags)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlopen_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "x86_64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlopen_entry(name: *const c_char, flags: c_int) -> *mut c_void {
        core::arch::naked_asm!("mov rdx, [rsp]", "jmp {f}", f = sym dlopen_from)
    }

    /// `dlopen(name, flags)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlopen_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "aarch64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlopen_entry(name: *const c_char, flags: c_int) -> *mut c_void {
        core::arch::naked_asm!("hint #34", "mov x2, x30", "b {f}", f = sym dlopen_from)
    }

    /// A handle mmkit's `dlopen` gives out: a `Box<Handle>` pointer, one per library as glibc
    /// gives one `link_map` per library (a second `dlopen` of it answers the same handle and
    /// counts it; the last `dlclose` releases it).
    ///
    /// Told from glibc's handles (`struct link_map` pointers) by its first word, which is odd:
    /// a `link_map` starts with `l_addr`, a load bias, always a multiple of the page size. No
    /// lock and no list for that: the check is a read of the handle's first word, so it stays
    /// safe across `fork` and from any thread. Only opening and closing consult [`HANDLES`].
    #[repr(C)]
    struct Handle {
        magic: AtomicUsize,
        /// `dlopen`s not yet closed (changed only under the load lock).
        opens: AtomicUsize,
        lib: Library,
    }

    /// The live handles: (the library's object, as an address; the handle). Read and changed
    /// only under the load lock, which is held across `fork`: the child's copy is whole.
    static HANDLES: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

    /// The handle for `lib`: the live one of its library, counted once more (`lib`, a second
    /// reference, is dropped), or a new one.
    fn handle_for(lib: Library) -> *mut c_void {
        let Some(key) = lib.mapped_object().map(|o| std::ptr::from_ref(o) as usize) else {
            return new_handle(lib);
        };
        let (handle, extra) = crate::group::with_load_lock(|| {
            let mut live = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(_, h)) = live.iter().find(|(k, _)| *k == key) {
                // SAFETY: a handle in the table is live (removed before it is freed).
                unsafe { &*(h as *const Handle) }.opens.fetch_add(1, Ordering::Relaxed);
                return (h as *mut c_void, Some(lib));
            }
            let h = new_handle(lib);
            live.push((key, h as usize));
            (h, None)
        });
        // The second reference goes after the lock: dropping a `Library` may unload.
        drop(extra);
        handle
    }

    fn new_handle(lib: Library) -> *mut c_void {
        let handle = Handle { magic: AtomicUsize::new(HANDLE_MAGIC), opens: AtomicUsize::new(1), lib };
        Box::into_raw(Box::new(handle)).cast()
    }

    /// [`Handle::magic`] of a live handle (odd; "mmkitdl" and a 1).
    const HANDLE_MAGIC: usize = 0x6d6d_6b69_7464_6c01_u64 as usize;

    /// `handle` as mmkit's, if it is one.
    fn ours<'a>(handle: *mut c_void) -> Option<&'a Handle> {
        if handle.is_null() || handle == libc::RTLD_NEXT || handle == libc::RTLD_DEFAULT {
            return None;
        }
        // SAFETY: `handle` came from `dlopen` (glibc's: a `struct link_map`, whose first word
        // is `l_addr`; or mmkit's: a `Handle`), as `dlsym`, `dlinfo` and `dlclose` require, so
        // its first word is readable and aligned.
        let first = unsafe { &*handle.cast::<AtomicUsize>() };
        if first.load(Ordering::Acquire) != HANDLE_MAGIC {
            return None;
        }
        // SAFETY: a `Handle` with the magic is live: `dlclose` clears it before freeing.
        Some(unsafe { &*handle.cast::<Handle>() })
    }

    /// `dlsym`'s answer for `handle`, if it is a handle of mmkit's (`None` for another handle).
    fn by_handle(handle: *mut c_void, name: &CStr, version: Option<&CStr>) -> Option<*mut c_void> {
        let lib = &ours(handle)?.lib;
        let found = match (name.to_str(), version.map(CStr::to_str).transpose()) {
            (Ok(n), Ok(v)) => lib.find_wanted(n, v.map_or(Want::Default, Want::Exact)),
            _ => None,
        };
        Some(answer(found, lib.source(), name, version))
    }

    /// The address for `found`, or NULL with glibc's `dlerror` message naming `who` (the
    /// handle's library, or the caller of `RTLD_NEXT`), the symbol and its version.
    fn answer(found: Option<Target>, who: &str, name: &CStr, version: Option<&CStr>) -> *mut c_void {
        address_of(found).unwrap_or_else(|| {
            let name = name.to_string_lossy();
            set_error(match version {
                Some(v) => format!("{who}: undefined symbol: {name}, version {}", v.to_string_lossy()),
                None => format!("{who}: undefined symbol: {name}"),
            });
            std::ptr::null_mut()
        })
    }

    thread_local! {
        /// The message of this thread's last failed mmkit `dlopen` not yet read by `dlerror`,
        /// and the one `dlerror` last answered (kept until the next call, as glibc keeps it).
        static ERRORS: RefCell<(Option<CString>, Option<CString>)> = const { RefCell::new((None, None)) };
    }

    /// Whether `dlopen`'s `flags` ask for glibc's `RTLD_DEEPBIND` (bionic has none).
    fn deep_bind(flags: c_int) -> bool {
        #[cfg(target_env = "gnu")]
        return flags & libc::RTLD_DEEPBIND != 0;
        #[cfg(not(target_env = "gnu"))]
        {
            let _ = flags;
            false
        }
    }

    /// `dlopen` as called from `caller`.
    ///
    /// # Safety
    /// As the system linker's `dlopen`: `name` is NULL or a NUL-terminated string; the library
    /// it opens is trusted as [`crate::Library::open`] requires.
    unsafe extern "C" fn dlopen_from(name: *const c_char, flags: c_int, caller: usize) -> *mut c_void {
        start_call();
        let from = if name.is_null() { None } else { crate::group::containing(caller as u64) };
        let Some(((ns, origin), obj)) = from.and_then(|(o, _)| Some((o.loaded_in()?.clone(), o))) else {
            // SAFETY: the caller's arguments, as the system linker's `dlopen` takes them.
            return unsafe { libc::dlopen(name, flags) };
        };
        // SAFETY: the caller's contract: a NUL-terminated string.
        let c_name = unsafe { CStr::from_ptr(name) };
        let opened = match c_name.to_str() {
            Ok(text) => crate::group::open_for(
                &obj,
                &ns,
                &origin,
                text,
                flags & libc::RTLD_NOLOAD != 0,
                crate::options::Binding { lazy: flags & 3 == libc::RTLD_LAZY, deep: deep_bind(flags) },
            ),
            // SAFETY: as above; a name that is no UTF-8 is left to the system linker.
            Err(_) => return unsafe { libc::dlopen(name, flags) },
        };
        drop(obj);
        match opened {
            Ok(Opened::Mapped(lib)) => {
                if flags & libc::RTLD_NODELETE != 0 {
                    lib.pin();
                }
                if flags & libc::RTLD_GLOBAL != 0 {
                    lib.make_global();
                }
                handle_for(lib)
            }
            Ok(Opened::NotLoaded) => std::ptr::null_mut(),
            Ok(Opened::System(path)) => match CString::new(path) {
                // SAFETY: a NUL-terminated path or name, and the caller's flags.
                Ok(path) => unsafe { libc::dlopen(path.as_ptr(), flags) },
                Err(_) => std::ptr::null_mut(),
            },
            Err(e) => {
                set_error(e.dlerror_message());
                std::ptr::null_mut()
            }
        }
    }

    /// Starts a `dl*` call as glibc's `_dlerror_run` starts one: the error an earlier call left
    /// and `dlerror` has not read (mmkit's, and the system linker's) is dropped, so a call that
    /// succeeds leaves none (code that checks `dlerror()` after a `dlsym` that succeeded, without
    /// clearing it first, saw an earlier call's failure).
    fn start_call() {
        let _ = ERRORS.try_with(|errors| errors.borrow_mut().0 = None);
        // SAFETY: no arguments; clears this thread's pending system-linker error.
        unsafe { libc::dlerror() };
    }

    /// Makes `message` what this thread's next `dlerror` answers.
    fn set_error(message: String) {
        let message = CString::new(message.replace('\0', " ")).ok();
        let _ = ERRORS.try_with(|errors| errors.borrow_mut().0 = message);
    }

    /// `dlinfo(handle, request, info)`: for mmkit's handles, the requests that make sense for
    /// a library mmkit mapped (`RTLD_DI_LMID`: the base namespace, `RTLD_DI_LINKMAP`: the
    /// record announced to debuggers, `RTLD_DI_ORIGIN`, `RTLD_DI_TLS_MODID`,
    /// `RTLD_DI_TLS_DATA`); others fail with a `dlerror` message. The rest go to the system
    /// linker (which would read mmkit's handle as its own `link_map`).
    ///
    /// # Safety
    /// As the system linker's: `info` points to what `request` writes (`RTLD_DI_ORIGIN`: a
    /// buffer of `PATH_MAX` bytes).
    #[cfg(target_env = "gnu")]
    pub(super) unsafe extern "C" fn dlinfo(handle: *mut c_void, request: c_int, info: *mut c_void) -> c_int {
        start_call();
        let Some(Handle { lib, .. }) = ours(handle) else {
            // SAFETY: the caller's arguments, as the system linker's `dlinfo` takes them.
            return unsafe { libc::dlinfo(handle, request, info) };
        };
        let Some(obj) = lib.mapped_object() else {
            set_error(format!("dlinfo: {} is not a library mmkit mapped", lib.source()));
            return -1;
        };
        let fail = |what: &str| {
            set_error(format!("dlinfo of {}: {what}", lib.source()));
            -1
        };
        let word = match request {
            libc::RTLD_DI_LMID => libc::LM_ID_BASE as usize,
            libc::RTLD_DI_LINKMAP => match crate::executor::debugger::link_map_of(obj.bias()) {
                Some(record) => record,
                None => return fail("no link_map record (the system linker has no debugger list to join)"),
            },
            libc::RTLD_DI_ORIGIN => {
                // glibc answers `l_origin`: the directory made absolute when the library loaded
                // (an APK entry's: `app.apk!/lib/x86_64`).
                let source = obj.origin().map_or_else(|| lib.source().to_owned(), ToString::to_string);
                let dir = source.rsplit_once('/').map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
                let Ok(dir) = CString::new(dir) else { return fail("its directory holds a NUL byte") };
                let bytes = dir.as_bytes_with_nul();
                if bytes.len() > libc::PATH_MAX as usize {
                    return fail("its directory is longer than PATH_MAX");
                }
                // SAFETY: `info` is a buffer of PATH_MAX bytes (function contract), and the
                // name with its NUL fits.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), info.cast::<u8>(), bytes.len()) };
                return 0;
            }
            libc::RTLD_DI_TLS_MODID => obj.tls_for_walk().0 as usize,
            libc::RTLD_DI_TLS_DATA => obj.tls_for_walk().1 as usize,
            other => return fail(&format!("request {other} is not answered for libraries mmkit maps")),
        };
        // SAFETY: `info` points to what the request writes (function contract): an `Lmid_t`
        // (a `long`), a `struct link_map *`, a `size_t` or a `void *`, each one word here.
        unsafe { info.cast::<usize>().write(word) };
        0
    }

    /// `dlclose(handle)`: mmkit's handles are released here, the rest by the system linker.
    ///
    /// # Safety
    /// As the system linker's: `handle` came from `dlopen` and is closed once per `dlopen`
    /// that answered it.
    pub(super) unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
        start_call();
        let Some(mine) = ours(handle) else {
            // SAFETY: the caller's handle, as the system linker's `dlclose` takes it.
            return unsafe { libc::dlclose(handle) };
        };
        let last = crate::group::with_load_lock(|| {
            if mine.opens.fetch_sub(1, Ordering::Relaxed) > 1 {
                return false;
            }
            HANDLES.lock().unwrap_or_else(|e| e.into_inner()).retain(|&(_, h)| h != handle as usize);
            // Only one of two racing last `dlclose` calls on the same handle frees it.
            mine.magic.swap(0, Ordering::AcqRel) == HANDLE_MAGIC
        });
        if last {
            // SAFETY: the pointer was made by `Box::into_raw` in `new_handle`; this call took
            // its last open and cleared its magic, so this is its one release. Outside the
            // table's lock: unloading runs finalizers, which may `dlclose` too.
            drop(unsafe { Box::from_raw(handle.cast::<Handle>()) });
        }
        0
    }

    /// `dlerror()`: the message of this thread's last failed mmkit `dlopen`, else the system
    /// linker's.
    ///
    /// # Safety
    /// As the system linker's: the string lives until the thread's next `dlerror` call.
    pub(super) unsafe extern "C" fn dlerror() -> *mut c_char {
        let mine = ERRORS
            .try_with(|errors| {
                let mut errors = errors.borrow_mut();
                let pending = errors.0.take()?;
                errors.1 = Some(pending);
                errors.1.as_ref().map(|m| m.as_ptr().cast_mut())
            })
            .ok()
            .flatten();
        // SAFETY: no arguments; the system linker's thread state.
        mine.unwrap_or_else(|| unsafe { libc::dlerror() })
    }

    /// `dlsym` as called from `caller`.
    ///
    /// # Safety
    /// As the system linker's `dlsym`: `name` is a NUL-terminated string, `handle` a handle it
    /// gave, `RTLD_DEFAULT` or `RTLD_NEXT`.
    unsafe extern "C" fn dlsym_from(handle: *mut c_void, name: *const c_char, caller: usize) -> *mut c_void {
        start_call();
        // SAFETY: the caller's contract: a NUL-terminated string (when not NULL).
        if let Some(entry) = (!name.is_null()).then(|| own_entry(handle, unsafe { CStr::from_ptr(name) })).flatten() {
            return entry;
        }
        if !name.is_null() {
            // SAFETY: the caller's contract: a NUL-terminated string.
            if let Some(answer) = by_handle(handle, unsafe { CStr::from_ptr(name) }, None) {
                return answer;
            }
        }
        if (handle == libc::RTLD_DEFAULT || is_main_program(handle)) && !name.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlsym` takes them.
            let found = unsafe { libc::dlsym(handle, name) };
            // SAFETY: the name is a NUL-terminated string (the caller's contract).
            let c_name = unsafe { CStr::from_ptr(name) };
            return default_scope(found, c_name, None, caller, handle == libc::RTLD_DEFAULT);
        }
        if handle != libc::RTLD_NEXT || name.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlsym` takes them.
            return unsafe { libc::dlsym(handle, name) };
        }
        // SAFETY: the caller's contract: a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(name) };
        next(name, None, caller).unwrap_or_else(|| {
            // SAFETY: as above; the system linker answers for callers it loaded.
            unsafe { libc::dlsym(handle, name.as_ptr()) }
        })
    }

    /// `dlvsym` as called from `caller`.
    ///
    /// # Safety
    /// As the system linker's `dlvsym`: `name` and `version` are NUL-terminated strings, `handle`
    /// a handle it gave, `RTLD_DEFAULT` or `RTLD_NEXT`.
    #[cfg(target_env = "gnu")]
    unsafe extern "C" fn dlvsym_from(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
        caller: usize,
    ) -> *mut c_void {
        start_call();
        // SAFETY: the caller's contract: a NUL-terminated string (when not NULL).
        if let Some(entry) = (!name.is_null()).then(|| own_entry(handle, unsafe { CStr::from_ptr(name) })).flatten() {
            return entry;
        }
        if !name.is_null() && !version.is_null() {
            // SAFETY: the caller's contract: NUL-terminated strings.
            let (n, v) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(version)) };
            if let Some(answer) = by_handle(handle, n, Some(v)) {
                return answer;
            }
        }
        if (handle == libc::RTLD_DEFAULT || is_main_program(handle)) && !name.is_null() && !version.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlvsym` takes them; both
            // are NUL-terminated strings (the caller's contract).
            let (n, v) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(version)) };
            // SAFETY: as above.
            return default_scope(
                unsafe { libc::dlvsym(handle, name, version) },
                n,
                Some(v),
                caller,
                handle == libc::RTLD_DEFAULT,
            );
        }
        if handle != libc::RTLD_NEXT || name.is_null() || version.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlvsym` takes them.
            return unsafe { libc::dlvsym(handle, name, version) };
        }
        // SAFETY: the caller's contract: NUL-terminated strings.
        let (name, version) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(version)) };
        next(name, Some(version), caller).unwrap_or_else(|| {
            // SAFETY: as above; the system linker answers for callers it loaded.
            unsafe { libc::dlvsym(handle, name.as_ptr(), version.as_ptr()) }
        })
    }

    /// mmkit's own function for a name it binds in the libraries it maps (`dlopen`, `dlsym`,
    /// `dlclose`, `dladdr`, ...) asked of `RTLD_DEFAULT`, `RTLD_NEXT`, the main program's handle
    /// or one of mmkit's: the function the caller's own references to the name are bound to, as
    /// glibc's answer is the one its references reach. glibc's did not know mmkit's handles
    /// or callers: a `dlopen` through its pointer searched as the program's, a `dlsym` through
    /// it read mmkit's handle as a `link_map` (hooking and lazy-binding code takes them so).
    fn own_entry(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
        let entry = crate::executor::interposed(name.to_bytes())?;
        let asked = handle == libc::RTLD_DEFAULT
            || handle == libc::RTLD_NEXT
            || is_main_program(handle)
            || ours(handle).is_some();
        asked.then_some(entry as usize as *mut c_void)
    }

    /// Whether `handle` is the main program's, the one `dlopen(NULL)` answers. glibc's `dlsym`
    /// on it searches the main program's search list, which is the global scope (the program,
    /// its dependencies, then every library opened `RTLD_GLOBAL`): so it answers as
    /// `RTLD_DEFAULT` does, the libraries mmkit made global included (ctypes' `pythonapi`,
    /// `dlsym(dlopen(NULL), "Py_GetVersion")` in an interpreter made global).
    fn is_main_program(handle: *mut c_void) -> bool {
        static MAIN: AtomicUsize = AtomicUsize::new(0);
        if handle.is_null() || handle == libc::RTLD_NEXT {
            return false;
        }
        let mut main = MAIN.load(Ordering::Relaxed);
        if main == 0 {
            // SAFETY: `dlopen(NULL)` opens nothing: it answers the main program's handle
            // (the same one every time, never unloaded).
            main = unsafe { libc::dlopen(std::ptr::null(), libc::RTLD_LAZY) } as usize;
            MAIN.store(main, Ordering::Relaxed);
        }
        handle as usize == main
    }

    /// `RTLD_DEFAULT`'s answer for a caller at `caller` (a caller relocated with
    /// `RTLD_DEEPBIND` searches its own scope first, as glibc puts it first in its `l_scope`):
    /// the system linker's (`found`, its global scope), else a definition in the libraries mmkit made global (`RTLD_GLOBAL`),
    /// which come after it; the library holding it then stays loaded while the caller's is, as
    /// glibc adds the dependency. With `local` (`RTLD_DEFAULT`, not the main program's handle),
    /// then the caller's own lookup scope, as glibc searches the caller's `l_scope`: the
    /// global scope, then the search list of the library whose `dlopen` brought the caller in
    /// (that library, then its dependencies breadth-first), so a library opened
    /// `RTLD_LOCAL` finds its own definitions and its dependencies'. When those answer, the
    /// system linker's pending "undefined symbol" message is read, so that `dlerror` does not
    /// report a failure for a lookup that succeeded.
    fn default_scope(
        found: *mut c_void,
        name: &CStr,
        version: Option<&CStr>,
        caller: usize,
        local: bool,
    ) -> *mut c_void {
        let names = (name.to_str(), version.map(CStr::to_str).transpose());
        if local {
            // `RTLD_DEEPBIND`: the caller's own scope comes first.
            if let (Some((obj, _registry)), (Ok(n), Ok(v))) = (crate::group::containing(caller as u64), names) {
                if obj.deep_bound() {
                    if let Some(address) = address_of(obj.find_in_own_scope(n, v.map_or(Want::Default, Want::Exact))) {
                        // SAFETY: no arguments; clears this thread's pending system-linker error.
                        unsafe { libc::dlerror() };
                        return address;
                    }
                }
            }
        }
        if !found.is_null() {
            return found;
        }
        let ours = match names {
            (Ok(n), Ok(v)) => {
                let want = v.map_or(Want::Default, Want::Exact);
                match crate::group::containing(caller as u64) {
                    Some((obj, _registry)) => {
                        let global =
                            if crate::library::has_global_scope() { obj.bind_in_global_scope(n, want) } else { None };
                        global.or_else(|| if local { obj.find_in_own_scope(n, want) } else { None })
                    }
                    None if crate::library::has_global_scope() => crate::library::find_in_global_scope(n, want),
                    None => None,
                }
            }
            _ => None,
        };
        match address_of(ours) {
            Some(address) => {
                // SAFETY: no arguments; clears this thread's pending system-linker error.
                unsafe { libc::dlerror() };
                address
            }
            // glibc's message for `RTLD_DEFAULT` names the caller (the `undef_map` of its
            // lookup), not whatever object called the system linker's `dlsym` for mmkit
            // (`libc.so.6: undefined symbol: x`).
            None if local && found.is_null() => match crate::group::containing(caller as u64) {
                Some((obj, _registry)) => {
                    // SAFETY: no arguments; clears this thread's pending system-linker error.
                    unsafe { libc::dlerror() };
                    answer(None, obj.label(), name, version)
                }
                None => found,
            },
            None => found,
        }
    }

    /// `RTLD_NEXT`'s answer for a caller at `caller`: `None` when no library mmkit mapped holds
    /// it (the system linker answers), else the next definition, or NULL.
    fn next(name: &CStr, version: Option<&CStr>, caller: usize) -> Option<*mut c_void> {
        let (obj, _registry) = crate::group::containing(caller as u64)?;
        let found = match (name.to_str(), version.map(CStr::to_str).transpose()) {
            (Ok(n), Ok(v)) => obj.next_definition(n, v.map_or(Want::Default, Want::Exact)),
            _ => None,
        };
        Some(answer(found, obj.label(), name, version))
    }

    /// The address `dlsym` answers for `target` (an IFUNC's resolver called, a TLS variable's
    /// address in this thread).
    fn address_of(target: Option<Target>) -> Option<*mut c_void> {
        let address = match target? {
            Target::Addr(a) => a,
            // SAFETY: the resolver of an IFUNC defined by a loaded, relocated library (held by
            // the handle or the caller that asked), called as `dlsym` calls it.
            Target::Ifunc(resolver) => unsafe { crate::relocate::call_ifunc_resolver(resolver) },
            Target::Tls { module, offset } => crate::relocate::tls::address(module, offset, "dlsym") as usize as u64,
        };
        Some(address as usize as *mut c_void)
    }
}
