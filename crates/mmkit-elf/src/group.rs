//! Loading a library with its dependencies as one group, and unloading what nothing needs:
//! one copy per (device, inode, offset) per namespace, shared by reference, the way glibc's
//! `dlopen`/`dlclose` do it.
//!
//! Loading maps the new libraries breadth-first (each `DT_NEEDED` name once; cycles are
//! allowed), then relocates and initializes them dependencies first (a depth-first post-order;
//! a cycle is broken where it closes, as glibc does). Unloading is a mark and sweep: a library
//! stays while a handle holds it, it is pinned, or a library that stays needs it; the rest are
//! finalized and unmapped in the reverse of their initialization order.
//!
//! Loads and unloads take one process-wide lock, re-entrant like glibc's `dl_load_lock`: a
//! library initializer (or finalizer) that opens or drops a library on the same thread goes
//! ahead (a library of the group being initialized is handed out as it is, as `dlopen` does),
//! while other threads wait until the group is initialized. The registry's own mutex is only
//! held for short updates, never while library code runs.
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::library::{Dependency, Key, Library, Object};
use crate::namespace::{Asker, Namespace, Resolved};
use crate::process_scope::{FxHasher, SystemLibrary};
use crate::source::{OpenSource, Source};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

/// The process-wide initialization counter: unload order is the reverse of it.
static INIT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The libraries a namespace has mapped, by identity, with their handle counts.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    loaded: Mutex<Loaded>,
}

/// The libraries of a registry, by identity.
type Loaded = HashMap<Key, Entry, BuildHasherDefault<FxHasher>>;

#[derive(Debug)]
struct Entry {
    obj: Arc<Object>,
    /// Live [`Library`] handles.
    handles: usize,
    /// Mapped by a load still in progress (relocating or initializing): kept.
    loading: bool,
}

/// The process-wide load lock, re-entrant: held by one thread at a time, as often as that
/// thread nests loads.
struct LoadLock {
    /// The holder ([`this_thread`]), how deep it has nested, and how many threads wait for it.
    state: Mutex<(Option<usize>, usize, usize)>,
    free: Condvar,
}

static LOAD_LOCK: LoadLock = LoadLock { state: Mutex::new((None, 0, 0)), free: Condvar::new() };

/// Holds [`LOAD_LOCK`] once (one level) until dropped.
struct LoadGuard;

/// This thread, as a number unique among live threads: the address of a thread-local with a
/// constant initializer and no destructor, which stays readable while the thread's other
/// thread-locals are destroyed (a `thread_local` destructor may drop the last pin of a library
/// at thread exit) and costs no syscall (unlike `gettid`).
fn this_thread() -> usize {
    thread_local! {
        static ME: u8 = const { 0 };
    }
    ME.with(|me| std::ptr::from_ref(me) as usize)
}

/// Runs `f` holding the load lock (another level of it if this thread holds it): what `f`
/// changes is never seen half done by a load, an unload or a `fork`.
pub(crate) fn with_load_lock<T>(f: impl FnOnce() -> T) -> T {
    let _held = load_lock();
    f()
}

/// Takes the load lock, or another level of it if this thread holds it.
fn load_lock() -> LoadGuard {
    static FORK_HANDLERS: std::sync::Once = std::sync::Once::new();
    FORK_HANDLERS.call_once(|| {
        crate::process_scope::at_fork(fork_prepare, fork_parent, fork_child);
    });
    let me = this_thread();
    let mut state = LOAD_LOCK.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match state.0 {
            None => {
                (state.0, state.1) = (Some(me), 1);
                return LoadGuard;
            }
            Some(holder) if holder == me => {
                state.1 += 1;
                return LoadGuard;
            }
            Some(_) => {
                state.2 += 1;
                state = LOAD_LOCK.free.wait(state).unwrap_or_else(|e| e.into_inner());
                state.2 -= 1;
            }
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let mut state = LOAD_LOCK.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = state.1.saturating_sub(1);
        if state.1 == 0 {
            state.0 = None;
            // `notify_all` is a futex syscall even without waiters: one per load and unload.
            if state.2 > 0 {
                LOAD_LOCK.free.notify_all();
            }
        }
    }
}

/// The load lock as the forking thread took it in [`fork_prepare`]: a level of it, and its
/// state's mutex, held across `fork` so that no other thread is inside a load (or inside the
/// mutex) when the process is copied.
type Forking = (LoadGuard, MutexGuard<'static, (Option<usize>, usize, usize)>);

thread_local! {
    static FORKING: std::cell::RefCell<Option<Forking>> = const { std::cell::RefCell::new(None) };
}

/// `pthread_atfork` prepare handler: waits for a load or unload in progress on another thread to finish
/// and holds the load lock across the fork, so that the child's registry is whole and its lock
/// free. (glibc instead resets its `dl_load_lock` in the child, whatever a dying load left
/// half done.) A thread forking from inside a load (an initializer) already holds it.
extern "C" fn fork_prepare() {
    let guard = load_lock();
    let state = LOAD_LOCK.state.lock().unwrap_or_else(|e| e.into_inner());
    // On a thread whose thread-locals are gone, the lock is not held across the fork.
    let _ = FORKING.try_with(|f| f.borrow_mut().replace((guard, state)));
}

/// `pthread_atfork` parent handler: releases what [`fork_prepare`] took.
extern "C" fn fork_parent() {
    if let Ok(Some((guard, state))) = FORKING.try_with(|f| f.borrow_mut().take()) {
        drop(state);
        drop(guard);
    }
}

/// `pthread_atfork` child handler: releases what [`fork_prepare`] took; the threads that were
/// waiting for the lock were not copied into the child.
extern "C" fn fork_child() {
    if let Ok(Some((guard, mut state))) = FORKING.try_with(|f| f.borrow_mut().take()) {
        state.2 = 0;
        drop(state);
        drop(guard);
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new handle to `obj` if it is still loaded here.
    pub(crate) fn handle(&self, obj: Arc<Object>, me: &Arc<Registry>) -> Option<Library> {
        let mut map = self.lock();
        let e = map.get_mut(&obj.key).filter(|e| Arc::ptr_eq(&e.obj, &obj))?;
        e.handles += 1;
        Some(Library::new(obj, me.clone()))
    }

    /// Drops a handle of `key`; unloads what is no longer needed.
    pub(crate) fn release(&self, key: Key) {
        self.release_and_sweep(Some(key));
    }

    /// Unloads what is no longer needed now that a pin went (a pin is not a handle: no
    /// handle is dropped).
    fn unpinned(&self) {
        self.release_and_sweep(None);
    }

    fn release_and_sweep(&self, handle: Option<Key>) {
        let load = load_lock();
        let doomed = {
            let mut map = self.lock();
            if let Some(e) = handle.and_then(|key| map.get_mut(&key)) {
                e.handles = e.handles.saturating_sub(1);
            }
            sweep(&mut map)
        };
        // Finalizers and the unmapping run under the load lock (re-entrant: a finalizer may
        // open or close libraries itself), as glibc's `dlclose` runs them under its
        // `dl_load_lock`: a `fork` on another thread waits for them (see `fork_prepare`). Run
        // after the lock, a fork in between copied the span or debugger list's mutex, or
        // libgcc's, locked into the child, whose next load then waited forever.
        drop_in_reverse_init_order(doomed);
        drop(load);
    }

    /// How many libraries this namespace has mapped now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The registries of namespaces that were dropped while they held pinned libraries: those
/// libraries (and what they need) stay loaded for the life of the process, as glibc never
/// unloads a `DF_1_NODELETE` library, so a pthread key destructor, an `atexit` handler or a
/// thread they started still finds their code.
static KEPT: Mutex<Vec<Arc<Registry>>> = Mutex::new(Vec::new());

impl Drop for Registry {
    /// The last handle to the namespace's libraries and the namespace itself are gone: what is
    /// not pinned is unloaded (nothing should be left), the pinned libraries move to a
    /// registry of their own that is never dropped. Dropping the map instead ran their
    /// finalizers and unmapped them, and a destructor glib's copy had registered with
    /// `pthread_key_create` crashed the next thread to exit.
    fn drop(&mut self) {
        let map = self.loaded.get_mut().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        let load = load_lock();
        drop_in_reverse_init_order(sweep(map));
        if !map.is_empty() {
            let objs: Vec<*const Object> = map.values().map(|e| Arc::as_ptr(&e.obj)).collect();
            let kept = Arc::new(Registry { loaded: Mutex::new(std::mem::take(map)) });
            for s in spans().iter_mut().filter(|s| objs.contains(&s.obj.as_ptr())) {
                s.registry = Arc::downgrade(&kept);
            }
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(kept);
        }
        drop(load);
    }
}

/// Removes and returns the libraries no handle, pin or remaining library needs.
fn sweep(map: &mut Loaded) -> Vec<Arc<Object>> {
    sweep_failed(map, &[])
}

/// [`sweep`], where the libraries of a failed load (`failed`) do not stay for being pinned.
fn sweep_failed(map: &mut Loaded, failed: &[Key]) -> Vec<Arc<Object>> {
    let mut live: Vec<Key> = map
        .iter()
        .filter(|(k, e)| {
            e.handles > 0
                || e.loading
                || (e.obj.is_pinned() && !failed.contains(k))
                || e.obj.pins.load(Ordering::Acquire) > 0
        })
        .map(|(k, _)| *k)
        .collect();
    let mut i = 0;
    while i < live.len() {
        if let Some(e) = map.get(&live[i]) {
            for d in e.obj.deps.get().into_iter().flatten() {
                if let Dependency::Mmkit(w) = d {
                    if let Some(o) = w.upgrade() {
                        if !live.contains(&o.key) {
                            live.push(o.key);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    let dead: Vec<Key> = map.keys().filter(|k| !live.contains(k)).copied().collect();
    dead.into_iter().filter_map(|k| map.remove(&k)).map(|e| e.obj).collect()
}

/// Runs the finalizers of every library still loaded (at process exit: see
/// [`crate::executor::finalize_at_exit`]) in glibc's `_dl_fini` order; they stay mapped, as
/// glibc leaves them.
pub(crate) fn finalize_still_loaded() {
    with_load_lock(|| {
        for o in &fini_order(mapped_objects()) {
            crate::executor::run_finalizers(o);
        }
    });
}

/// `objs` (in load order) as glibc's `_dl_fini` orders them (`_dl_sort_maps_dfs` for
/// finalizers): a depth-first walk of the dependencies from each library, the last loaded
/// first, gives a post-order whose reverse puts every library before what it needs and
/// otherwise keeps the load order.
fn fini_order(objs: Vec<Arc<Object>>) -> Vec<Arc<Object>> {
    let mut visited: std::collections::HashSet<*const Object> = std::collections::HashSet::new();
    let mut post = Vec::with_capacity(objs.len());
    for top in objs.iter().rev() {
        if !visited.insert(Arc::as_ptr(top)) {
            continue;
        }
        // Iterative: a chain of thousands of libraries must not overflow the exiting stack.
        let mut stack: Vec<(Arc<Object>, usize)> = vec![(top.clone(), 0)];
        while let Some((obj, next)) = stack.last_mut() {
            let deps = obj.deps.get().map_or(&[][..], Vec::as_slice);
            let Some(dep) = deps.get(*next) else {
                post.push(stack.pop().unwrap().0);
                continue;
            };
            *next += 1;
            if let Dependency::Mmkit(w) = dep {
                if let Some(d) = w.upgrade().filter(|d| visited.insert(Arc::as_ptr(d))) {
                    stack.push((d, 0));
                }
            }
        }
    }
    post.reverse();
    post
}

/// Finalizes and unmaps `objs`, the last initialized first.
fn drop_in_reverse_init_order(mut objs: Vec<Arc<Object>>) {
    objs.sort_by_key(|o| std::cmp::Reverse(o.init_seq.load(Ordering::Acquire)));
    for o in objs {
        forget_span(&o);
        drop(o);
    }
}

/// A library mmkit mapped, in any namespace: its span, for questions by address (which
/// library holds this address, for `thread_local` destructors and `addr_info`).
struct Span {
    start: u64,
    end: u64,
    obj: Weak<Object>,
    registry: Weak<Registry>,
}

static SPANS: Mutex<Vec<Span>> = Mutex::new(Vec::new());

fn spans() -> MutexGuard<'static, Vec<Span>> {
    SPANS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Libraries mapped and unmapped in the process so far (`dl_iterate_phdr`'s `dlpi_adds` and
/// `dlpi_subs` for them).
static LOADS: AtomicU64 = AtomicU64::new(0);
static UNLOADS: AtomicU64 = AtomicU64::new(0);

/// How many libraries were mapped and unmapped in the process so far.
#[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
pub(crate) fn load_counts() -> (u64, u64) {
    (LOADS.load(Ordering::Relaxed), UNLOADS.load(Ordering::Relaxed))
}

/// The libraries mapped now, in load order (held: they stay mapped while the caller keeps them).
#[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
pub(crate) fn mapped_objects() -> Vec<Arc<Object>> {
    spans().iter().filter_map(|s| s.obj.upgrade()).collect()
}

/// Records a newly mapped library for questions by address, and announces it to debuggers.
fn remember_span(obj: &Arc<Object>, registry: &Arc<Registry>) {
    let (start, len) = obj.span();
    LOADS.fetch_add(1, Ordering::Relaxed);
    spans().push(Span { start, end: start + len, obj: Arc::downgrade(obj), registry: Arc::downgrade(registry) });
    let l_ld = obj.plan().dynamic.map_or(0, |(vaddr, _)| obj.bias().wrapping_add(vaddr));
    crate::executor::debugger::announce(obj.bias(), obj.source(), l_ld);
}

fn forget_span(obj: &Arc<Object>) {
    UNLOADS.fetch_add(1, Ordering::Relaxed);
    crate::executor::debugger::retract(obj.bias());
    let start = obj.span().0;
    spans().retain(|s| s.start != start);
}

/// The loaded library whose span holds `addr`, and its namespace's registry.
pub(crate) fn containing(addr: u64) -> Option<(Arc<Object>, Arc<Registry>)> {
    let spans = spans();
    let s = spans.iter().find(|s| addr >= s.start && addr < s.end)?;
    Some((s.obj.upgrade()?, s.registry.upgrade()?))
}

/// Keeps a library loaded while it lives, without the registry's lock (it may be taken while
/// the registry is locked: a constructor that registers a `thread_local` destructor).
struct ObjectPin {
    obj: Option<Arc<Object>>,
    registry: Weak<Registry>,
}

impl Drop for ObjectPin {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            obj.pins.fetch_sub(1, Ordering::AcqRel);
            drop(obj);
            if let Some(r) = self.registry.upgrade() {
                // Not `release`: the pin held no handle (taking one away unloaded a library
                // under a handle still open).
                r.unpinned();
            }
        }
    }
}

/// A pin on the library holding `addr` (the `thread_local` destructor hook; a binding to a
/// library of the `RTLD_GLOBAL` scope).
pub(crate) fn pin_containing(addr: u64) -> Option<crate::relocate::atexit::Pin> {
    let (obj, registry) = containing(addr)?;
    obj.pins.fetch_add(1, Ordering::AcqRel);
    Some(Box::new(ObjectPin { obj: Some(obj), registry: Arc::downgrade(&registry) }))
}

/// Has the system linker find and load the bare soname `name` that namespace `ns`'s search
/// did not find (`not_found`, extended with the system linker's error if it fails too).
pub(crate) fn open_system(ns: &Namespace, name: &str, not_found: Error) -> Result<Library> {
    let _load = load_lock();
    Ok(Library::new_system(crate::system::SystemOpened::find(name, not_found)?, ns.registry().clone()))
}

/// A handle in `ns` to the system library the system linker's search found and loaded for the
/// bare soname `name`.
pub(crate) fn open_system_loaded(
    ns: &Namespace,
    name: &str,
    lib: crate::process_scope::SystemLibrary,
) -> Result<Library> {
    let _load = load_lock();
    Ok(Library::new_system(crate::system::SystemOpened::loaded(lib, name)?, ns.registry().clone()))
}

/// Another handle to the library loaded in `ns` whose `DT_SONAME` is the bare name `source`
/// (`libfoo.so`, no `/`), if there is one: `dlopen` of a soname finds it among the loaded
/// libraries before searching, as glibc and bionic do (also one loaded from memory or a
/// descriptor, which no search finds).
pub(crate) fn open_loaded_soname(ns: &Namespace, source: &Source) -> Option<Library> {
    let Source::Path(p) = source else { return None };
    let name = p.to_str().filter(|n| !n.contains('/'))?;
    open_first_loaded(ns, |o| o.soname() == Some(name))
}

/// Another handle to the library loaded in `ns` from the path (or `archive!/entry`) `name`,
/// written as it was opened or as the search found it, if there is one: glibc's
/// `_dl_map_object` matches a name with `/` against the loaded objects' names
/// (`_dl_name_match_p`) before it opens a file, so a path opened again after its file was
/// removed (a plug-in extracted to a temporary file and unlinked, the `/proc/self/fd/N` of a
/// memfd since closed) or replaced is the library loaded from it.
fn open_loaded_name(ns: &Namespace, name: &str) -> Option<Library> {
    open_first_loaded(ns, |o| o.label() == name)
}

/// Another handle to [`first_loaded`] of `ns` that `is` accepts.
fn open_first_loaded(ns: &Namespace, is: impl Fn(&Object) -> bool) -> Option<Library> {
    let registry = ns.registry();
    let _load = load_lock();
    let mut map = registry.lock();
    let key = first_loaded(&map, is)?.key;
    let e = map.get_mut(&key)?;
    e.handles += 1;
    Some(Library::new(e.obj.clone(), registry.clone()))
}

/// The library of `map` whose `DT_SONAME` is `name` (the first initialized when several are),
/// as glibc's `_dl_map_object` and bionic's `find_loaded_library_by_soname` match a
/// `DT_NEEDED` or `dlopen` name against the libraries loaded before searching for a file.
fn loaded_by_soname(map: &Loaded, name: &str) -> Option<Arc<Object>> {
    first_loaded(map, |o| o.soname() == Some(name))
}

/// The library of `map` that `is` accepts, the first initialized when several are (one still
/// being loaded, not initialized yet, last).
fn first_loaded(map: &Loaded, is: impl Fn(&Object) -> bool) -> Option<Arc<Object>> {
    map.values()
        .filter(|e| is(&e.obj))
        .min_by_key(|e| {
            let seq = e.obj.init_seq.load(Ordering::Acquire);
            (seq == 0, seq)
        })
        .map(|e| e.obj.clone())
}

/// Loads `source` and what it needs in namespace `ns`, or hands out another reference to the
/// copy already loaded there; `opened`: the file when the search for it already opened it.
pub(crate) fn open(
    ns: &Namespace,
    source: &Source,
    opened: Option<OpenSource>,
    options: &crate::LoadOptions<'_>,
) -> Result<Library> {
    crate::relocate::atexit::set_pin_hook(pin_containing);
    let registry = ns.registry();
    let src = match opened {
        Some(src) => src,
        None => source.open(crate::library::page_size())?,
    };
    let load = load_lock();
    // Identity first: an already loaded copy is shared (also one whose group this thread is
    // still initializing: a constructor that opens its own library, as glibc allows).
    if let Some(e) = registry.lock().get_mut(&key_of(&src)) {
        // `seal` asks for sealed code and RELRO: a copy loaded without is sealed now (it was
        // returned unsealed, without a word). Placement and RELRO files apply to a new load
        // only, as Android's do.
        if options.seal {
            e.obj.seal()?;
        }
        e.handles += 1;
        return Ok(Library::new(e.obj.clone(), registry.clone()));
    }
    // A system library opened directly goes to the system linker, as a dependency does.
    if let Some(path) = ns.system_linker_file(source)? {
        return Ok(Library::new_system(crate::system::SystemOpened::open(path)?, registry.clone()));
    }
    let mut group = Group { new: Vec::new(), rules: Vec::new() };
    let result = load_group(ns, registry, (source, src, options), &mut group);
    let mut map = registry.lock();
    match result {
        Ok(root) => {
            for o in &group.new {
                if let Some(e) = map.get_mut(&o.key) {
                    e.loading = false;
                }
            }
            if let Some(e) = map.get_mut(&root.key) {
                e.handles += 1;
            }
            Ok(Library::new(root, registry.clone()))
        }
        Err(e) => {
            // Take the group back out, pinned members too (they never worked), unless a library
            // opened by one of its initializers (and still held) needs them.
            let failed: Vec<Key> = group.new.iter().map(|o| o.key).collect();
            for k in &failed {
                if let Some(e) = map.get_mut(k) {
                    e.loading = false;
                }
            }
            let doomed = sweep_failed(&mut map, &failed);
            drop(map);
            drop(group);
            drop_in_reverse_init_order(doomed);
            drop(load);
            Err(e)
        }
    }
}

/// A library's identity: the device and inode of its file and the image's offset in it.
fn key_of(src: &OpenSource) -> Key {
    let (dev, ino) = src.dev_ino();
    (dev, ino, src.offset())
}

/// The libraries mapped by one `open`, breadth-first, and the namespace whose rules find each
/// one's dependencies.
struct Group<'ns> {
    new: Vec<Arc<Object>>,
    rules: Vec<&'ns Namespace>,
}

fn load_group<'ns>(
    ns: &'ns Namespace,
    registry: &Arc<Registry>,
    (source, src, options): (&Source, OpenSource, &crate::LoadOptions<'_>),
    group: &mut Group<'ns>,
) -> Result<Arc<Object>> {
    let root = Arc::new(Object::map(source, src, options, ns.registers_all_unwind_tables())?);
    root.set_rpath_inherited(options.inherit_rpath.clone());
    registry.lock().insert(root.key, Entry { obj: root.clone(), handles: 0, loading: true });
    remember_span(&root, registry);
    group.new.push(root.clone());
    group.rules.push(ns);
    let mut sources: Vec<Source> = vec![source.clone()];
    // Map breadth-first; every name once per library, every file once per namespace.
    let mut i = 0;
    while i < group.new.len() {
        let obj = group.new[i].clone();
        let rules = group.rules[i];
        let mut deps = Vec::new();
        for name in obj.needed_names() {
            let name = name?;
            let expanded = crate::namespace::expand_tokens_in_needed(name, &sources[i]).transpose();
            let expanded = expanded.map_err(|e| e.with_path(obj.label()))?;
            let name = expanded.as_deref().unwrap_or(name);
            // A library the process has loaded with that name is it (glibc's rule), except
            // in an isolated namespace, whose own copy and own search come first (see
            // `Namespace::own_copies_first`; `resolve` asks then, when its search finds nothing).
            if !rules.own_copies_first(name) {
                if let Some(sys) = SystemLibrary::if_loaded_shared(name) {
                    deps.push(Dependency::System(sys));
                    continue;
                }
            }
            // A library loaded here with that soname is it, wherever it came from.
            let loaded = loaded_by_soname(&registry.lock(), name);
            if let Some(dep) = loaded {
                deps.push(Dependency::Mmkit(Arc::downgrade(&dep)));
                continue;
            }
            let runpath = (obj.path_list(), &mut obj.runpath() as &mut dyn Iterator<Item = &str>);
            let resolved =
                rules.resolve(name, &sources[i], runpath, obj.rpath_inherited(), (obj.label(), Asker::Dependency))?;
            let (dep_source, dep_ns, opened) = match resolved {
                Resolved::System(sys) => {
                    deps.push(Dependency::System(sys));
                    continue;
                }
                Resolved::SystemLinker(path, unfound) => match crate::executor::load_system_library(&path) {
                    Ok(sys) => {
                        deps.push(Dependency::System(Arc::new(sys)));
                        continue;
                    }
                    // An underlinked system library (libtheoraenc uses libtheoradec's symbols
                    // without needing it): the system linker, loading it alone, cannot bind
                    // what glibc's `dlopen` of the whole group binds in the group's scope. It is
                    // mapped here then, in the group, as under `SystemPolicy::MapPrivately`.
                    Err(msg) if path.contains('/') && is_undefined_symbol(&msg) => {
                        (Source::path(path.as_str()), rules, None)
                    }
                    // The system linker's words, then where mmkit's search looked (the
                    // directories of the APK, `$ORIGIN`, the namespace's path): its message
                    // names none of them. `dlerror` keeps glibc's words alone.
                    Err(msg) => {
                        return Err(Error::new(
                            format!("load dependency {name}"),
                            ErrorKind::DependencyNotFound,
                            format!("{msg}{}", unfound.detail()),
                        )
                        .with_path(obj.label())
                        .with_dlerror(msg))
                    }
                },
                Resolved::Map { source, ns, opened } => (source, ns, opened),
            };
            let wrap = |e: Error| {
                Error::new(format!("load dependency {name}"), ErrorKind::DependencyNotFound, e.to_string())
                    .with_path(obj.label())
                    .with_dlerror_of(&e)
            };
            let src = match opened {
                Some(src) => src,
                None => dep_source.open(crate::library::page_size()).map_err(wrap)?,
            };
            let known = registry.lock().get(&key_of(&src)).map(|e| e.obj.clone());
            let dep = match known {
                Some(obj) => obj,
                None => {
                    let dep = Arc::new(
                        Object::map(&dep_source, src, &crate::LoadOptions::new(), dep_ns.registers_all_unwind_tables())
                            .map_err(wrap)?,
                    );
                    dep.set_rpath_inherited(obj.rpath_for_children(&sources[i]));
                    registry.lock().insert(dep.key, Entry { obj: dep.clone(), handles: 0, loading: true });
                    remember_span(&dep, registry);
                    group.new.push(dep.clone());
                    group.rules.push(dep_ns);
                    sources.push(dep_source);
                    dep
                }
            };
            deps.push(Dependency::Mmkit(Arc::downgrade(&dep)));
        }
        let _ = obj.deps.set(deps);
        i += 1;
    }
    // The versions each new library needs, checked in the order glibc's `dlopen` checks them
    // (breadth-first), before anything is relocated.
    for obj in &group.new {
        obj.check_needed_versions()?;
    }
    // Relocate, then initialize, dependencies first.
    let order = init_order(&root, &group.new);
    let scope = crate::library::load_scope(&root);
    let binding = options.binding();
    for (obj, rules) in group.new.iter().zip(&group.rules) {
        obj.set_unique_scope(rules);
    }
    for obj in &order {
        obj.relocate(&scope, binding)?;
    }
    // Before any initializer runs: it may call `dlopen` or `dlsym(RTLD_NEXT)`.
    for ((obj, rules), source) in group.new.iter().zip(&group.rules).zip(&sources) {
        obj.remember_namespace(rules, source);
        obj.set_root(&root);
    }
    for obj in &order {
        obj.initialize(INIT_SEQ.fetch_add(1, Ordering::AcqRel))?;
    }
    Ok(root)
}

/// Whether the system linker's error `msg` says a symbol the library (or one of its
/// dependencies) references is defined nowhere it looked (glibc's and bionic's wording).
fn is_undefined_symbol(msg: &str) -> bool {
    msg.contains(": undefined symbol: ") || msg.contains("cannot locate symbol \"")
}

/// What `dlopen(name)` called from a library mmkit mapped opens (see [`open_for`]).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) enum Opened {
    /// A library mmkit maps (a new handle to it).
    Mapped(Library),
    /// A library the namespace leaves to the system linker: its `dlopen` of this path or name.
    System(String),
    /// `RTLD_NOLOAD` and not loaded.
    NotLoaded,
}

/// `dlopen(name)` called from the library `obj`, loaded in `ns` from `origin`, as the system
/// linker answers it for a library it loaded: `$ORIGIN` in `name` is `obj`'s directory (an APK
/// entry's directory inside its archive); a bare name is a library loaded with that soname, or
/// what the search for a dependency of `obj` finds (its `DT_RUNPATH`/`DT_RPATH`, then the
/// namespace's path and links); a system library goes to the system linker by the namespace's
/// policy. With `no_load`, only a library already loaded is opened.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) fn open_for(
    obj: &Object,
    ns: &Namespace,
    origin: &Source,
    name: &str,
    no_load: bool,
    binding: crate::options::Binding,
) -> Result<Opened> {
    // As glibc's `_dl_map_object`: tokens are expanded in a name with `/` (a bare name is
    // searched for as it is).
    let (source, rules, opened) = if name.contains('/') && crate::namespace::has_tokens(name) {
        let source =
            crate::namespace::expand_tokens_in_name(name, origin, "dlopen").map_err(|e| e.with_path(obj.label()))?;
        (source, ns, None)
    } else if name.contains('/') {
        (Source::parse(name), ns, None)
    } else {
        if let Some(lib) = open_loaded_soname(ns, &Source::path(name)) {
            return Ok(Opened::Mapped(lib));
        }
        let runpath = (obj.path_list(), &mut obj.runpath() as &mut dyn Iterator<Item = &str>);
        match ns.resolve(name, origin, runpath, obj.rpath_inherited(), (obj.label(), Asker::Dlopen))? {
            Resolved::Map { source, ns, opened } => (source, ns, opened),
            Resolved::SystemLinker(path, _) => return Ok(Opened::System(path)),
            // Not asked for by `dlopen` (which opens with its own flags); by name, as found.
            Resolved::System(sys) => return Ok(Opened::System(sys.name().to_owned())),
        }
    };
    if let Some(path) = rules.system_linker_file(&source)? {
        return Ok(Opened::System(path.to_string_lossy().into_owned()));
    }
    if name.contains('/') {
        if let Some(lib) = open_loaded_name(rules, &source.display()) {
            return Ok(Opened::Mapped(lib));
        }
    }
    if no_load {
        let registry = rules.registry();
        let src = match opened {
            Some(src) => src,
            None => source.open(crate::library::page_size())?,
        };
        let _load = load_lock();
        let mut map = registry.lock();
        let Some(e) = map.get_mut(&key_of(&src)) else { return Ok(Opened::NotLoaded) };
        e.handles += 1;
        return Ok(Opened::Mapped(Library::new(e.obj.clone(), registry.clone())));
    }
    crate::source::with_archive_cache(|| {
        open(rules, &source, opened, &{
            let mut options = crate::LoadOptions::new().lazy_binding(binding.lazy).deep_bind(binding.deep);
            // glibc: the library `dlopen` loads has the caller as its loader (`l_loader`).
            options.inherit_rpath = obj.rpath_for_children(origin);
            options
        })
    })
    .map(Opened::Mapped)
}

/// The new libraries in a depth-first post-order from `root`: every library after the
/// libraries it needs (a cycle is cut where it closes).
fn init_order(root: &Arc<Object>, new: &[Arc<Object>]) -> Vec<Arc<Object>> {
    fn visit(o: &Arc<Object>, new: &[Arc<Object>], seen: &mut Vec<*const Object>, out: &mut Vec<Arc<Object>>) {
        if seen.contains(&Arc::as_ptr(o)) {
            return;
        }
        seen.push(Arc::as_ptr(o));
        for d in o.deps.get().into_iter().flatten() {
            if let Dependency::Mmkit(w) = d {
                if let Some(dep) = w.upgrade() {
                    visit(&dep, new, seen, out);
                }
            }
        }
        if new.iter().any(|n| Arc::ptr_eq(n, o)) {
            out.push(o.clone());
        }
    }
    let mut out = Vec::new();
    visit(root, new, &mut Vec::new(), &mut out);
    out
}
