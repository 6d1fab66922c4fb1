//! Thread-local storage for mmkit-loaded libraries: module ids and mmkit's own
//! `__tls_get_addr`.
//!
//! A library compiled with `-fPIC` reaches its `__thread` variables through the
//! general-dynamic model: a GOT pair filled by `R_X86_64_DTPMOD64`/`R_X86_64_DTPOFF64` and a
//! call to `__tls_get_addr(&pair)` (on aarch64, a TLS descriptor whose resolver,
//! `relocate/tlsdesc.rs`, ends up here too). glibc's `__tls_get_addr` only knows modules glibc loaded,
//! so the loader binds that symbol to [`tls_get_addr`] instead, which hands each thread its own
//! block per module, allocated on first use from the module's `PT_TLS` template.
//!
//! Module ids are never reused. A block lives until its thread exits, through the thread's
//! `thread_local` and `pthread_key` destructors, which may still reach it (the current
//! thread's block is freed when the library unloads); other threads keep stale blocks until
//! they exit. As with glibc's, a block's first use allocates, so a signal handler must not be
//! the first to touch a library's TLS on its thread.
//!
//! A reference to a `__thread` variable *defined by an object glibc loaded* (libstdc++'s
//! `std::call_once` state, libc's `errno`) stores glibc's module id of that object and the
//! variable's offset in its block: mmkit's ids carry [`MMKIT_MODULE`] (a high bit glibc's
//! small counters never reach), so [`address`] tells the two apart and hands glibc's ids to
//! glibc's own `__tls_get_addr`.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The `tls_index` a general-dynamic access passes to `__tls_get_addr`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TlsIndex {
    module: u64,
    offset: u64,
}

#[derive(Debug)]
struct Template {
    init: Vec<u8>,
    layout: Layout,
}

/// The tag bit of mmkit's own module ids; an id without it is glibc's (`dlpi_tls_modid`).
pub(crate) const MMKIT_MODULE: u64 = 1 << 63;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static TEMPLATES: Mutex<Option<HashMap<u64, Arc<Template>>>> = Mutex::new(None);

struct Block {
    ptr: *mut u8,
    layout: Layout,
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with this layout in `block_for` and is freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// One thread's blocks, by module id, and how many times the thread-exit destructor ran.
struct ThreadBlocks {
    blocks: HashMap<u64, Block>,
    exit_rounds: u32,
}

/// How many rounds of `pthread_key` destructors a thread exit runs at most (glibc's and
/// bionic's `PTHREAD_DESTRUCTOR_ITERATIONS`).
const DESTRUCTOR_ROUNDS: u32 = 4;

/// The `pthread_key` holding each thread's [`ThreadBlocks`] (`None`: none could be created).
///
/// Not a `thread_local!` with a destructor: glibc runs those (`__call_tls_dtors`) *before* the
/// `pthread_key` destructors, and code of a loaded library still reaches its TLS from its own
/// key destructors (a Rust `cdylib`'s std runs its `thread_local` destructors from one), so
/// its blocks must outlive both, as glibc's own dynamic TLS blocks (freed with the thread's
/// descriptor) do. [`release_blocks`] re-arms itself until the last round, then frees.
static BLOCKS_KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();

fn blocks_key() -> Option<libc::pthread_key_t> {
    *BLOCKS_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; `release_blocks` is the destructor for values
        // this module stores (a `Box<ThreadBlocks>` each).
        (unsafe { libc::pthread_key_create(&mut key, Some(release_blocks)) } == 0).then_some(key)
    })
}

/// The key's destructor at thread exit: puts the blocks back (the next round runs it again)
/// until the last round, so that other keys' destructors and the `thread_local` destructors
/// before them still find the library's TLS; then frees them.
///
/// # Safety
/// `value` is the `Box<ThreadBlocks>` pointer [`thread_blocks`] stored under [`BLOCKS_KEY`]
/// (the system calls this only with such a value, on the exiting thread).
unsafe extern "C" fn release_blocks(value: *mut std::ffi::c_void) {
    let tb = value.cast::<ThreadBlocks>();
    // SAFETY: `value` is this thread's live `ThreadBlocks` (function contract); no other
    // reference to it exists while a destructor runs on this thread.
    let rounds = unsafe {
        (*tb).exit_rounds += 1;
        (*tb).exit_rounds
    };
    if rounds < DESTRUCTOR_ROUNDS {
        if let Some(key) = blocks_key() {
            // SAFETY: the key is live; storing the same pointer back keeps it this thread's.
            if unsafe { libc::pthread_setspecific(key, value) } == 0 {
                return;
            }
        }
    }
    // SAFETY: the pointer came from `Box::into_raw` in `thread_blocks` and the key no longer
    // holds it (the system cleared it before calling), so this is its only owner.
    drop(unsafe { Box::from_raw(tb) });
}

/// This thread's blocks, created (and stored under the key) when `create`.
fn thread_blocks(create: bool) -> Option<*mut ThreadBlocks> {
    let key = blocks_key()?;
    // SAFETY: the key is live.
    let p = unsafe { libc::pthread_getspecific(key) }.cast::<ThreadBlocks>();
    if !p.is_null() || !create {
        return (!p.is_null()).then_some(p);
    }
    let p = Box::into_raw(Box::new(ThreadBlocks { blocks: HashMap::new(), exit_rounds: 0 }));
    // SAFETY: the key is live; the value is a `Box<ThreadBlocks>`, as `release_blocks` expects.
    if unsafe { libc::pthread_setspecific(key, p.cast()) } != 0 {
        // SAFETY: `p` was just made by `Box::into_raw` and stored nowhere.
        drop(unsafe { Box::from_raw(p) });
        return None;
    }
    Some(p)
}

/// A library's own TLS: a block per thread from mmkit's `__tls_get_addr` (the default), or a
/// block in glibc's static TLS area for a library built for initial-exec access
/// (`DF_STATIC_TLS`, see `static_tls.rs`).
#[derive(Debug)]
pub(crate) enum ModuleTls {
    Dynamic(TlsModule),
    /// The block once allocated (during relocation), with the initialization image glibc
    /// copied into every thread; until then references name the `placeholder` id.
    Static {
        placeholder: u64,
        block: std::sync::OnceLock<(super::static_tls::StaticTls, Vec<u8>)>,
    },
}

impl ModuleTls {
    /// The module id references store (mmkit's, tagged, or glibc's for a static block).
    pub(crate) fn id(&self) -> u64 {
        match self {
            ModuleTls::Dynamic(m) => m.id(),
            ModuleTls::Static { placeholder, block } => block.get().map_or(*placeholder, |(b, _)| b.module()),
        }
    }

    /// What the relocation pass needs to know of it.
    pub(crate) fn own(&self) -> OwnTls {
        match self {
            ModuleTls::Dynamic(m) => OwnTls { module: m.id(), tp_offset: None, pending: false },
            ModuleTls::Static { placeholder, block } => match block.get() {
                Some((b, _)) => OwnTls { module: b.module(), tp_offset: Some(b.tp_offset()), pending: false },
                None => OwnTls { module: *placeholder, tp_offset: None, pending: true },
            },
        }
    }
}

/// The TLS module of the library being relocated: its id, and for a static block its offset
/// from the thread pointer, or `pending` while the block is not allocated (`module` is then
/// the placeholder).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnTls {
    pub(crate) module: u64,
    pub(crate) tp_offset: Option<u64>,
    pub(crate) pending: bool,
}

/// A fresh id of mmkit's (tagged), never a registered module's: what references to a static
/// block name until it is allocated.
pub(crate) fn placeholder_id() -> u64 {
    MMKIT_MODULE | NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A registered TLS module; unregisters on drop.
#[derive(Debug)]
pub(crate) struct TlsModule {
    id: u64,
}

impl TlsModule {
    /// Registers a `PT_TLS` template of `mem_size` bytes (the whole block), without its
    /// initialization image until [`TlsModule::set_image`] gives it.
    pub(crate) fn register(mem_size: u64, align: u64) -> Option<TlsModule> {
        let size = usize::try_from(mem_size.max(1)).ok()?;
        let layout = Layout::from_size_align(size, usize::try_from(align.max(16)).ok()?).ok()?;
        let id = MMKIT_MODULE | NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut map = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        map.get_or_insert_with(HashMap::new).insert(id, Arc::new(Template { init: Vec::new(), layout }));
        Some(TlsModule { id })
    }

    /// Sets the initialization image each thread's block starts from: the relocated `.tdata`
    /// (glibc's `l_tls_initimage` points into the relocated segment, so a `__thread` pointer
    /// initialized with an address, as mimalloc's `_mi_heap_default = &_mi_heap_empty`, starts
    /// out relocated). Set when the library is relocated, before any of its code runs, so
    /// before any thread has a block of it.
    pub(crate) fn set_image(&self, init: Vec<u8>) {
        let mut map = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.as_mut().and_then(|m| m.get_mut(&self.id)) {
            *t = Arc::new(Template { init, layout: t.layout });
        }
    }

    /// The module id stored by `R_X86_64_DTPMOD64` (tagged with [`MMKIT_MODULE`]).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for TlsModule {
    fn drop(&mut self) {
        let mut map = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = map.as_mut() {
            map.remove(&self.id);
        }
        if let Some(tb) = thread_blocks(false) {
            // SAFETY: this thread's `ThreadBlocks`, reached only from this thread and never
            // while another reference to it is live (the loader and TLS accesses do not nest).
            unsafe { (*tb).blocks.remove(&self.id) };
        }
    }
}

/// This thread's block of mmkit's TLS `module`, allocated on first use; `Err` says why there
/// is none.
fn block_for(module: u64) -> Result<*mut u8, String> {
    let n = module & !MMKIT_MODULE;
    let tb = thread_blocks(true).ok_or("no table of this thread's TLS blocks (pthread_setspecific failed)")?;
    // SAFETY: this thread's `ThreadBlocks`: only this thread reaches it, and not re-entrantly
    // (nothing below runs a library's code); the `&mut` ends before this returns.
    let blocks = unsafe { &mut (*tb).blocks };
    if let Some(b) = blocks.get(&module) {
        return Ok(b.ptr);
    }
    let template = {
        let map = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        map.as_ref().and_then(|m| m.get(&module)).cloned()
    };
    let template = template.ok_or_else(|| format!("unknown TLS module {n} of mmkit (library unloaded?)"))?;
    // SAFETY: the layout has a non-zero size (register uses at least 1 byte).
    let ptr = unsafe { std::alloc::alloc_zeroed(template.layout) };
    if ptr.is_null() {
        let (size, align) = (template.layout.size(), template.layout.align());
        return Err(format!(
            "cannot allocate memory for thread-local data: {size:#x} bytes aligned to {align:#x} \
             (the PT_TLS block of TLS module {n} of mmkit)"
        ));
    }
    let n = template.init.len().min(template.layout.size());
    // SAFETY: ptr has layout.size() ≥ n bytes; the template is a separate allocation.
    unsafe { std::ptr::copy_nonoverlapping(template.init.as_ptr(), ptr, n) };
    blocks.insert(module, Block { ptr, layout: template.layout });
    Ok(ptr)
}

/// This thread's block of mmkit's TLS `module`, if it has one (nothing is allocated).
pub(crate) fn existing_block(module: u64) -> Option<*mut u8> {
    let tb = thread_blocks(false)?;
    // SAFETY: this thread's `ThreadBlocks`, read only from this thread (see `block_for`).
    unsafe { (*tb).blocks.get(&module).map(|b| b.ptr) }
}

/// This thread's address of `offset` in the block of TLS `module` (allocated on first use);
/// aborts, as glibc's does, with a message naming `who` and why there is no block (the module
/// is unknown: its library was unloaded; the block cannot be allocated).
pub(crate) fn address_in_block(module: u64, offset: u64, who: &str) -> *mut u8 {
    match block_for(module) {
        Ok(ptr) => ptr.wrapping_add(offset as usize),
        Err(why) => {
            eprintln!("mmkit-elf: {who}: {why}");
            std::process::abort()
        }
    }
}

/// glibc's (or bionic's) own `__tls_get_addr`, found once by [`system_tls_ready`] (0: not yet).
static SYSTEM_TLS_GET_ADDR: AtomicUsize = AtomicUsize::new(0);

/// Makes sure the system linker's `__tls_get_addr` is known, so that a module id of glibc's
/// can be stored (called when a relocation binds one, never from a TLS access: the lookup
/// takes glibc's lock). `Err` names why not.
pub(crate) fn system_tls_ready() -> Result<(), String> {
    if SYSTEM_TLS_GET_ADDR.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    // SAFETY: RTLD_DEFAULT and a NUL-terminated name; mmkit's own `tls_get_addr` is not
    // exported under that name, so this is the system linker's.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__tls_get_addr".as_ptr()) };
    if f.is_null() {
        return Err("the system linker exports no __tls_get_addr".to_owned());
    }
    SYSTEM_TLS_GET_ADDR.store(f as usize, Ordering::Release);
    Ok(())
}

/// This thread's address of `offset` in the block of TLS `module`: mmkit's own block for an
/// id tagged [`MMKIT_MODULE`], else what the system linker's `__tls_get_addr` answers for its
/// module `module`. Aborts with a message naming `who` when the module is unknown.
pub(crate) fn address(module: u64, offset: u64, who: &str) -> *mut u8 {
    if module & MMKIT_MODULE != 0 {
        return address_in_block(module, offset, who);
    }
    let f = SYSTEM_TLS_GET_ADDR.load(Ordering::Acquire);
    if f == 0 {
        eprintln!("mmkit-elf: {who}: TLS module {module} of the system linker, whose __tls_get_addr is unknown");
        std::process::abort()
    }
    type TlsGetAddr = unsafe extern "C" fn(*const TlsIndex) -> *mut u8;
    let index = TlsIndex { module, offset };
    // SAFETY: `f` is the system linker's `__tls_get_addr` (`system_tls_ready` found it, and
    // ids without the tag are stored only after that); `module` is the `dlpi_tls_modid` of an
    // object it loaded and `offset` lies in that object's `PT_TLS` block.
    unsafe { std::mem::transmute::<usize, TlsGetAddr>(f)(&index) }
}

/// mmkit's `__tls_get_addr`: the address of `offset` in this thread's block of `module`
/// (mmkit's, or the system linker's: see [`address`]).
///
/// # Safety
/// `index` must point to a `tls_index` filled by the loader's DTPMOD64/DTPOFF64 relocations
/// (this is only ever called by code of mmkit-loaded libraries).
pub(crate) unsafe extern "C" fn tls_get_addr(index: *const TlsIndex) -> *mut u8 {
    // SAFETY: the caller passes a pointer to a live GOT pair (function contract).
    let (module, offset) = unsafe { ((*index).module, (*index).offset) };
    address(module, offset, "__tls_get_addr")
}

/// The offset from the thread pointer of `offset` in the block of the system linker's TLS
/// `module`, when that block is in static TLS (objects glibc loaded at start-up, as libc whose
/// `errno` glibc's own libraries reach through initial-exec `R_X86_64_TPOFF64` and
/// `R_AARCH64_TLS_TPREL64`): the same in every thread. `None` when mmkit cannot tell for sure
/// (an mmkit module, a block outside the static TLS area, no `_dl_get_tls_static_info`, a host
/// other than x86_64 and aarch64).
///
/// The static area is the `dl_tls_static_size` bytes glibc allocates with each thread's
/// descriptor; a dynamic block (`malloc`ed on first use) is never there. x86_64 uses TLS
/// variant II: the static blocks lie just below the thread pointer. aarch64 uses variant I:
/// the thread pointer points at the 16-byte thread control block, the static blocks follow it
/// (glibc's offsets, which `R_AARCH64_TLS_TPREL64` adds to `tpidr_el0`, count from the
/// thread pointer, the control block included).
pub(crate) fn static_tls_offset(module: u64, offset: u64) -> Option<u64> {
    if module & MMKIT_MODULE != 0 || module == 0 || !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return None;
    }
    system_tls_ready().ok()?;
    let size = static_tls_size()?;
    let addr = address(module, offset, "initial-exec TLS") as u64;
    let tp = thread_pointer()?;
    if cfg!(target_arch = "x86_64") {
        // `size` counts the thread control block (above the thread pointer) too, so the lowest
        // bytes of `[tp - size, tp)` may precede the static blocks' own allocation; they are
        // then the thread's stack (threads of `pthread_create`) or ld.so's start-up
        // allocations (the main thread), never a `malloc`ed dynamic block, so a match still
        // means static TLS.
        (addr < tp && tp - addr <= size).then(|| addr.wrapping_sub(tp))
    } else {
        (addr >= tp && addr - tp < size).then(|| addr - tp)
    }
}

/// glibc's `_dl_get_tls_static_info`: the size of the static TLS area (with the surplus and
/// the thread control block).
#[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_env = "gnu"))]
fn static_tls_size() -> Option<u64> {
    // SAFETY: NUL-terminated strings; a GLIBC_PRIVATE symbol of ld.so that sanitizers use too.
    let f = unsafe { libc::dlvsym(libc::RTLD_DEFAULT, c"_dl_get_tls_static_info".as_ptr(), c"GLIBC_PRIVATE".as_ptr()) };
    if f.is_null() {
        return None;
    }
    type Info = unsafe extern "C" fn(*mut usize, *mut usize);
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: `void _dl_get_tls_static_info (size_t *sizep, size_t *alignp)`; both outlive the call.
    unsafe { std::mem::transmute::<*mut libc::c_void, Info>(f)(&mut size, &mut align) };
    (size != 0).then_some(size as u64)
}

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_env = "gnu")))]
fn static_tls_size() -> Option<u64> {
    None
}

/// The calling thread's thread pointer (`%fs:0`, the TCB's pointer to itself, on x86_64).
#[cfg(target_arch = "x86_64")]
fn thread_pointer() -> Option<u64> {
    let tp: u64;
    // SAFETY: on x86_64 Linux `%fs:0` holds the thread control block's own address (the ABI's
    // `tcbhead_t.tcb`), readable in every thread.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    Some(tp)
}

/// The calling thread's thread pointer (`tpidr_el0`, the thread control block's address, on
/// aarch64).
#[cfg(target_arch = "aarch64")]
fn thread_pointer() -> Option<u64> {
    let tp: u64;
    // SAFETY: reading `tpidr_el0` (EL0-readable on Linux) has no side effects.
    unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    Some(tp)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn thread_pointer() -> Option<u64> {
    None
}
