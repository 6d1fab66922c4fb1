//! `dl_iterate_phdr` and `_dl_find_object` for the libraries mmkit maps.
//!
//! Both walk the system linker's list of objects, which does not hold the libraries mmkit
//! maps, and code inside those libraries relies on them to find itself: an unwinder linked
//! into the library (`g++ -static-libgcc -static-libstdc++`, the usual way to ship a portable
//! C++ plugin) asks `_dl_find_object` for the unwind tables of the code it unwinds, so every
//! exception thrown there ended in `std::terminate`; a Rust `cdylib`'s backtraces (a panic's
//! message, `std::backtrace`) name the frames of the objects `dl_iterate_phdr` lists, so its
//! own frames read `<unknown>`. So the loader binds both names, in the libraries it maps, to
//! the functions here: they answer for the system linker's objects as it does, and for
//! mmkit's libraries too.
//!
//! `dl_iterate_phdr` reports the system linker's objects first (its own order), then mmkit's
//! in load order, with `dlpi_adds`/`dlpi_subs` counting both (caches keyed on them see every
//! load and unload); an mmkit library's `dlpi_tls_modid` is mmkit's module id (what its own
//! `__tls_get_addr` takes) and `dlpi_tls_data` this thread's block if it has one.
//! `_dl_find_object` answers an mmkit library's span, its `PT_GNU_EH_FRAME` and the `link_map`
//! record announced to debuggers (the public fields of glibc's). glibc only (both are glibc's API), on
//! the hosts the loader relocates for.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The names bound here, when the host has them.
pub(crate) fn bound_to(name: &[u8]) -> Option<u64> {
    match name {
        b"dl_iterate_phdr" => Some(dl_iterate_phdr as *const () as usize as u64),
        b"_dl_find_object" => Some(dl_find_object as *const () as usize as u64),
        _ => None,
    }
}

/// A `dl_iterate_phdr` callback.
type Callback = unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int;

/// The caller's callback and data, with the counts to add to the system linker's.
struct Walk {
    callback: Callback,
    data: *mut c_void,
    adds: u64,
    subs: u64,
    /// The system linker's counts, from its last object.
    system: (u64, u64),
}

/// What glibc's walk calls: the caller's callback with mmkit's counts added.
///
/// # Safety
/// `info` is glibc's answer for one object; `data` the `Walk` of [`dl_iterate_phdr`].
unsafe extern "C" fn system_object(info: *mut libc::dl_phdr_info, size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Walk` `dl_iterate_phdr` passed, alive during the walk, reached
    // only from this thread; `info` is glibc's live answer (function contract).
    unsafe {
        let walk = &mut *data.cast::<Walk>();
        let mut copy = info.read();
        walk.system = (copy.dlpi_adds, copy.dlpi_subs);
        copy.dlpi_adds = copy.dlpi_adds.wrapping_add(walk.adds);
        copy.dlpi_subs = copy.dlpi_subs.wrapping_add(walk.subs);
        (walk.callback)(&mut copy, size.min(std::mem::size_of::<libc::dl_phdr_info>()), walk.data)
    }
}

/// mmkit's `dl_iterate_phdr(callback, data)` for the libraries it maps.
///
/// # Safety
/// As glibc's: `callback` may be called with `data` for every object (and must not unload the
/// object it is told about).
pub(crate) unsafe extern "C" fn dl_iterate_phdr(callback: Option<Callback>, data: *mut c_void) -> c_int {
    let Some(callback) = callback else { return 0 };
    let (adds, subs) = crate::group::load_counts();
    let mut walk = Walk { callback, data, adds, subs, system: (0, 0) };
    // SAFETY: `system_object` is called with the `Walk` only during this call.
    let r = unsafe { libc::dl_iterate_phdr(Some(system_object), (&mut walk as *mut Walk).cast()) };
    if r != 0 {
        return r;
    }
    for obj in crate::group::mapped_objects() {
        let Some(name) = obj.c_source() else { continue };
        let (phdr, phnum) = obj.program_headers();
        let (tls_modid, tls_data) = obj.tls_for_walk();
        let mut info = libc::dl_phdr_info {
            dlpi_addr: obj.bias(),
            dlpi_name: name.as_ptr(),
            dlpi_phdr: phdr as *const libc::Elf64_Phdr,
            dlpi_phnum: phnum,
            dlpi_adds: walk.system.0.wrapping_add(walk.adds),
            dlpi_subs: walk.system.1.wrapping_add(walk.subs),
            dlpi_tls_modid: tls_modid as usize,
            dlpi_tls_data: tls_data as *mut c_void,
        };
        // SAFETY: the caller's callback and data (function contract); `info` points at the
        // object's program headers and name, which live while `obj` (held here) does.
        let r = unsafe { callback(&mut info, std::mem::size_of::<libc::dl_phdr_info>(), data) };
        if r != 0 {
            return r;
        }
    }
    0
}

/// glibc's `struct dl_find_object` on x86_64 and aarch64 (no `dlfo_eh_dbase`, no
/// `dlfo_eh_count` there).
#[repr(C)]
pub(crate) struct DlFindObject {
    flags: u64,
    map_start: *mut c_void,
    map_end: *mut c_void,
    link_map: *mut c_void,
    eh_frame: *mut c_void,
    reserved: [u64; 7],
}

/// glibc's `_dl_find_object`, found on first use (0: not yet; 1: glibc has none).
static SYSTEM_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

/// mmkit's `_dl_find_object(address, result)` for the libraries it maps.
///
/// # Safety
/// As glibc's: `result` points to a writable `struct dl_find_object`.
pub(crate) unsafe extern "C" fn dl_find_object(address: *mut c_void, result: *mut DlFindObject) -> c_int {
    if let Some(obj) = crate::group::containing(address as u64).map(|(o, _)| o) {
        let (start, len) = obj.span();
        let eh_frame = obj.plan().eh_frame_hdr.map_or(0, |(vaddr, _)| obj.bias().wrapping_add(vaddr));
        // SAFETY: a writable `dl_find_object` (function contract).
        unsafe {
            result.write(DlFindObject {
                flags: 0,
                map_start: start as *mut c_void,
                map_end: start.wrapping_add(len) as *mut c_void,
                link_map: crate::executor::debugger::link_map_of(obj.bias()).unwrap_or(0) as *mut c_void,
                eh_frame: eh_frame as *mut c_void,
                reserved: [0; 7],
            })
        };
        return 0;
    }
    let mut f = SYSTEM_FIND_OBJECT.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: RTLD_DEFAULT and a NUL-terminated name; this function is not exported under
        // that name, so the answer is glibc's (2.35 and later) or NULL.
        f = (unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) } as usize).max(1);
        SYSTEM_FIND_OBJECT.store(f, Ordering::Release);
    }
    if f == 1 {
        return -1;
    }
    type FindObject = unsafe extern "C" fn(*mut c_void, *mut DlFindObject) -> c_int;
    // SAFETY: `f` is glibc's `_dl_find_object`, whose `struct dl_find_object` is `DlFindObject`
    // on this host; the caller's arguments are passed on as they came.
    unsafe { std::mem::transmute::<usize, FindObject>(f)(address, result) }
}
