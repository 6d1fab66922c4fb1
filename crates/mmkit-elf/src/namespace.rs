//! [`Namespace`]: where a library's dependencies come from, the way Android's linker has it.
//!
//! A namespace owns a search path and a policy for system libraries, and may be linked to other
//! namespaces for a list of sonames. The default namespace ([`Namespace::default`], used by
//! [`Library::open`](crate::Library::open)) maps the caller's own libraries (files, APK
//! entries, memory) with mmkit-elf and hands the libraries of the system (glibc, libm,
//! libstdc++, libgcc_s, anything in the default library directories or already loaded) to the
//! system linker (`dlopen`), exactly as an Android app namespace links to the system namespace
//! for its public libraries: those need static TLS, `STB_GNU_UNIQUE` and libc's internal state,
//! which only the system linker has.
#![deny(unsafe_code)]

use crate::dynamic::PathList;
use crate::error::{Error, ErrorKind, Result};
use crate::library::{page_size, SYSTEM_DIRS};
use crate::source::{OpenSource, Source, ZipFailure};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What a namespace does with a system library (found in one of [`SYSTEM_DIRS`], or known
/// only to the system linker's own search) that is not already loaded, as a dependency or
/// opened directly by path. A library the process has already loaded (glibc's libc, or the
/// system's zlib something else loaded) is used as it is, whatever the policy: in the default
/// namespace (and any made by [`Namespace::new`]) it answers a `DT_NEEDED` of its soname before
/// any search, as with glibc; in an [isolated](Namespace::isolated) namespace only when the
/// namespace's own search does not find the name (or finds that very file), or when a link lists
/// the name (see [`Namespace::isolated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemPolicy {
    /// `dlopen` it (`RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE`): the system linker loads it once
    /// for the process and never unloads it. The default.
    ///
    /// Calls the system library makes are the system linker's: a library mmkit maps that loads
    /// its plug-ins through a system library's `dlopen` (GStreamer and others through GModule's
    /// `g_module_open`, libltdl users) gets plug-ins whose `DT_NEEDED` on it is resolved by
    /// glibc, which does not know mmkit's copy: to a second copy of it from the system
    /// directories (GStreamer's plug-ins then register their types with that copy and it hangs
    /// on a type name taken), or to nothing. Use [`MapPrivately`](Self::MapPrivately) for such
    /// a library, so that the helper is mapped too and its `dlopen` is mmkit's.
    #[default]
    SystemLinker,
    /// Map a private copy with mmkit-elf, as for the caller's own libraries. A library with
    /// initial-exec TLS of its own (libc) gets its block from glibc through a donor, and libm's
    /// initial-exec reference is libc's `errno`; but a private copy of libc or libstdc++ keeps
    /// internal state of its own (malloc arenas, stdio, locale), apart from the process's.
    MapPrivately,
    /// Refuse: loading fails with [`ErrorKind::DependencyNotFound`] naming the library.
    Refuse,
}

/// One entry of a namespace's search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchDir {
    /// A directory on disk.
    Dir(PathBuf),
    /// A directory inside a zip/APK: `app.apk!/lib/x86_64` (skipped when the archive cannot
    /// be used; a file at `app.apk!/lib/x86_64/<name>` is found when the archive does not
    /// give the entry, as bionic finds it).
    Archive {
        /// The archive.
        archive: PathBuf,
        /// The directory inside it (no leading or trailing `/`).
        dir: String,
    },
}

impl SearchDir {
    /// Parses `dir` or `archive.apk!/dir/in/zip`.
    pub fn parse(s: &str) -> SearchDir {
        match Source::parse(s) {
            Source::ZipEntry { archive, entry } => {
                SearchDir::Archive { archive, dir: entry.trim_matches('/').to_owned() }
            }
            _ => SearchDir::Dir(s.into()),
        }
    }

    fn display(&self) -> String {
        match self {
            SearchDir::Dir(d) => d.display().to_string(),
            SearchDir::Archive { archive, dir } => format!("{}!/{dir}", archive.display()),
        }
    }
}

/// A link to another namespace: these sonames are resolved there.
#[derive(Debug, Clone)]
struct Link {
    target: Arc<Namespace>,
    sonames: Vec<String>,
}

/// A set of rules for finding and loading libraries: a search path, a policy for system
/// libraries, and links to other namespaces for named sonames.
///
/// Search order for a `DT_NEEDED` name: a name with a `/` is a path (one holding `!/` a zip
/// entry, as below); else (never the current directory, as with glibc) inside an APK the
/// entry's directory in the archive (so an APK's libraries find each other: glibc has no
/// APKs), and, only when [`Namespace::search_own_directory`] asks, the requesting library's
/// own directory on disk (glibc does not search it); then as glibc: its `DT_RPATH` and then those of the libraries that
/// loaded it, up the chain (a mapped library's `dlopen` is the loader of what it opens), and
/// the program's, if it has no `DT_RUNPATH`; `LD_LIBRARY_PATH` (unless turned off), its
/// `DT_RUNPATH` (`$ORIGIN` expanded in all, each object's own); then
/// the namespace's search path, [`SYSTEM_DIRS`]; then the links; then, with
/// [`SystemPolicy::SystemLinker`], the system linker's own search (`ld.so.cache`), and the
/// system linker loads what it finds; with [`SystemPolicy::MapPrivately`] or
/// [`SystemPolicy::Refuse`] (in a namespace that searches [`SYSTEM_DIRS`]), the file
/// `ld.so.cache` names (in a directory `ld.so.conf` adds), a system library mapped or refused
/// as one found in a system directory is. Under that policy, with glibc, the system linker's own
/// search stands for [`SYSTEM_DIRS`] (whatever is found there is its to load): `ld.so.cache` in
/// `ld.so.conf`'s order, glibc-hwcaps variants, its default directories, as glibc searches
/// for a dependency; unless the program has a `DT_RPATH`/`DT_RUNPATH`, the namespace ignores a
/// set `LD_LIBRARY_PATH` or a link names the soname (those searches would differ), and with
/// [`SYSTEM_DIRS`] still tried when it finds nothing. A bare soname given to [`Namespace::open`] is searched
/// for as glibc's `dlopen` from the program searches (the program's `DT_RPATH`,
/// `LD_LIBRARY_PATH`, the program's `DT_RUNPATH`, the search path, [`SYSTEM_DIRS`]), then, if a link
/// names it, opened in the linked namespace by its rules, else (with
/// [`SystemPolicy::SystemLinker`]) given to the system linker. A file found in a system
/// directory is a system library (see [`SystemPolicy`]).
///
/// In each directory on disk, as glibc (2.33 on) searches, the `glibc-hwcaps/x86-64-vN`
/// subdirectories of the levels this CPU supports come first, best first (x86_64 only).
///
/// A directory that cannot be used is passed over, as glibc and bionic do: a missing or
/// unreadable directory, and an APK directory whose archive is missing, unreadable, not a zip
/// or truncated; as glibc's `open_path`, a file the process may not read (`EACCES`); and, as
/// glibc's `open_verify`, a file built for another ELF class or machine (a 32-bit library in a
/// directory of `LD_LIBRARY_PATH`). The "not found" error then
/// says why each was skipped. A library that
/// is found but cannot be loaded (an APK entry that is compressed or misaligned, a file that is
/// not a valid ELF image) fails the load. As bionic's `open_library_at_path`, a path holding
/// `!/` (`app.apk!/lib/x86_64/libfoo.so`, given or made from an APK directory) that is no
/// usable zip entry is opened as the file of that name when there is one.
///
/// The namespace also keeps the libraries loaded in it (one copy per file); its clones share
/// them.
#[derive(Debug, Clone)]
pub struct Namespace {
    name: String,
    search_path: Vec<SearchDir>,
    system: SystemPolicy,
    ld_library_path: bool,
    system_dirs: bool,
    links: Vec<Link>,
    unwind_all: bool,
    own_dir: bool,
    /// The libraries loaded in this namespace (shared by its clones).
    registry: Arc<crate::group::Registry>,
}

impl Default for Namespace {
    /// The default namespace: no extra search path, `LD_LIBRARY_PATH` and [`SYSTEM_DIRS`]
    /// searched, system libraries through the system linker.
    fn default() -> Namespace {
        Namespace::new("default")
    }
}

/// Where a dependency comes from.
#[derive(Debug)]
pub(crate) enum Resolved<'ns> {
    /// Mapped by mmkit-elf, its own dependencies resolved in `ns`; `opened` when the search
    /// opened the file to check it (the load uses that descriptor).
    Map { source: Source, ns: &'ns Namespace, opened: Option<OpenSource> },
    /// Loaded by the system linker from this path (or bare name: its own search), and where
    /// this namespace's search looked first (for the error, should the system linker not
    /// find it either).
    SystemLinker(String, Unfound<'ns>),
    /// Already loaded by the system linker, found by its own search of the system's directories
    /// (a dependency's search that reached them under [`SystemPolicy::SystemLinker`]), or (in
    /// an isolated namespace) the library of that name the process has loaded, which its own
    /// search did not find (see [`Namespace::own_copies_first`]).
    System(Arc<crate::process_scope::SystemLibrary>),
}

/// Where a search that found nothing looked, and why directories were skipped, kept as they
/// are: words are made of them only for an error ([`Unfound::detail`]).
#[derive(Debug)]
pub(crate) struct Unfound<'ns> {
    dirs: Vec<SearchDir>,
    skipped: Vec<String>,
    ns: &'ns str,
}

impl Unfound<'_> {
    /// `; not found in <dirs> (namespace <ns>); skipped ...`, or nothing when no search was made.
    #[cold]
    pub(crate) fn detail(&self) -> String {
        if self.dirs.is_empty() && self.skipped.is_empty() {
            return String::new();
        }
        format!("; {}", not_found_detail("not found in", &self.dirs, &self.skipped, self.ns))
    }
}

/// Who asks [`Namespace::resolve`]: the load of a `DT_NEEDED` dependency, which may have the
/// system linker load what its search of the system's directories finds, or a mapped
/// library's `dlopen`, which opens what is found with its own flags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Asker {
    Dependency,
    Dlopen,
}

impl Namespace {
    /// A namespace named `name` (for messages) with the default rules (see
    /// [`Namespace::default`]).
    pub fn new(name: impl Into<String>) -> Namespace {
        Namespace {
            name: name.into(),
            search_path: Vec::new(),
            system: SystemPolicy::default(),
            ld_library_path: true,
            system_dirs: true,
            links: Vec::new(),
            unwind_all: true,
            own_dir: false,
            registry: Arc::default(),
        }
    }

    /// An isolated namespace: only its search path (and the requesting library's
    /// `RUNPATH`, and inside an APK the entry's directory) is searched, not `LD_LIBRARY_PATH` nor the system
    /// directories, and system libraries are refused unless already loaded or reached
    /// through a link (Android's isolated app namespace).
    ///
    /// Its own copies come first: a `DT_NEEDED` name is the library loaded in this namespace
    /// with that soname, else what its search finds (an app's own `libz.so.1` in
    /// `app.apk!/lib/x86_64`), and only when the search finds nothing a library of that name the
    /// process has already loaded (libc), then the links. So an app's bundled copy of a library
    /// is bound whatever the rest of the process loaded, as bionic keeps it, where the default
    /// namespace, as glibc, binds a soname the process has loaded before searching. A name a
    /// link lists is the exception: a library of that name the process has loaded is used
    /// before the search, as bionic uses a library already loaded in the linked namespace
    /// (a link to a namespace of system libraries exposes the process's copies).
    pub fn isolated(name: impl Into<String>) -> Namespace {
        Namespace { ld_library_path: false, system_dirs: false, system: SystemPolicy::Refuse, ..Namespace::new(name) }
    }

    /// The process-wide default namespace that [`Library::open`](crate::Library::open) uses.
    pub fn global_default() -> &'static Namespace {
        static DEFAULT: OnceLock<Namespace> = OnceLock::new();
        DEFAULT.get_or_init(Namespace::default)
    }

    /// Appends directories to the search path: `dir` or `app.apk!/lib/x86_64`, searched in
    /// order (see [`Namespace`] for the whole search). One that cannot be used (missing,
    /// unreadable, an archive that is not a zip or is truncated) is skipped, as glibc and
    /// bionic skip it; `app.apk!/lib/x86_64` names the zip entries `lib/x86_64/<name>` of
    /// `app.apk`, else (bionic's fallback) the files of the directory
    /// `app.apk!/lib/x86_64`.
    pub fn search<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, dirs: I) -> Namespace {
        self.search_path.extend(dirs.into_iter().map(|d| SearchDir::parse(d.as_ref())));
        self
    }

    /// Sets the policy for system libraries.
    pub fn system_libraries(mut self, policy: SystemPolicy) -> Namespace {
        self.system = policy;
        self
    }

    /// Whether `LD_LIBRARY_PATH` is searched (default: yes; not for an isolated namespace).
    pub fn ld_library_path(mut self, on: bool) -> Namespace {
        self.ld_library_path = on;
        self
    }

    /// Links this namespace to `target` for `sonames`: those names, when this namespace's own
    /// search does not find them, are resolved by `target`'s rules (Android's
    /// `android_link_namespaces`). A library mmkit maps for a `DT_NEEDED` through a link is
    /// loaded into, and shared within, the namespace that asked for it; one opened by its
    /// soname ([`Namespace::open`], or a mapped library's `dlopen`) is loaded in `target`, as
    /// bionic loads it there. The two are separate copies (two sets of globals): open such a
    /// library one way only.
    pub fn link<I: IntoIterator<Item = S>, S: Into<String>>(mut self, target: Arc<Namespace>, sonames: I) -> Namespace {
        self.links.push(Link { target, sonames: sonames.into_iter().map(Into::into).collect() });
        self
    }

    /// Whether the unwind tables of every library are registered with the unwinder (the
    /// default), or only those of libraries that link the unwinder or a C++ runtime
    /// (libgcc_s, libstdc++, libc++, libunwind). Registering costs a `pread` per library;
    /// without it a backtrace taken in a callback from a plain C library stops inside it.
    pub fn unwind_tables_for_every_library(mut self, on: bool) -> Namespace {
        self.unwind_all = on;
        self
    }

    /// Whether a dependency is looked for first in the directory of the library that needs
    /// it (default: no, as glibc and bionic: a library that wants that says
    /// `DT_RUNPATH=$ORIGIN`). An APK entry's directory in its archive is searched either way.
    ///
    /// ```
    /// use mmkit_elf::Namespace;
    /// let ns = Namespace::new("plugins").search_own_directory(true);
    /// # let _ = ns;
    /// ```
    pub fn search_own_directory(mut self, on: bool) -> Namespace {
        self.own_dir = on;
        self
    }

    pub(crate) fn registers_all_unwind_tables(&self) -> bool {
        self.unwind_all
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The search path.
    pub fn search_path(&self) -> &[SearchDir] {
        &self.search_path
    }

    /// The policy for system libraries.
    pub fn system_policy(&self) -> SystemPolicy {
        self.system
    }

    /// How many libraries mmkit has mapped in this namespace now (each once, however often it
    /// was opened or needed).
    pub fn loaded_count(&self) -> usize {
        self.registry.len()
    }

    pub(crate) fn registry(&self) -> &Arc<crate::group::Registry> {
        &self.registry
    }

    /// Where `source` is loaded from: itself, or for a bare soname (`libz.so.1`: no `/`), the
    /// file this namespace's search finds, or else the search of the namespace linked for it
    /// (what [`Namespace::open`] and `mmkit elf plan|load|call` use). As with glibc's
    /// `dlopen`, a bare soname is never opened in the current directory, whatever is there;
    /// `./libz.so.1` names that file.
    pub fn locate(&self, source: Source) -> Result<Source> {
        match self.start(source, false)? {
            Start::Source(found, _) => Ok(found),
            Start::Linked(target, name) => target.locate(name),
            Start::SystemLinker { not_found, .. } => Err(not_found),
            Start::System(name, sys) => Ok(Source::path(sys.path().unwrap_or(name))),
        }
    }

    /// The file `source` is when this namespace has the system linker load it: a system
    /// library opened directly, under [`SystemPolicy::SystemLinker`], or under
    /// [`SystemPolicy::Refuse`] one the process has already loaded (used as it is, as for a
    /// dependency). Under `Refuse`, any other system library is an error naming it and the
    /// namespace, as when a dependency is one.
    pub(crate) fn system_linker_file<'a>(&self, source: &'a Source) -> Result<Option<&'a Path>> {
        let Source::Path(p) = source else { return Ok(None) };
        if self.system == SystemPolicy::MapPrivately || !is_system_library(p) {
            return Ok(None);
        }
        if self.system == SystemPolicy::Refuse
            && crate::process_scope::SystemLibrary::if_loaded(&p.to_string_lossy()).is_none()
        {
            return Err(Error::new(
                "load library",
                ErrorKind::DependencyNotFound,
                format!("{} is a system library and namespace {} refuses system libraries", p.display(), self.name),
            )
            .with_path(p.display().to_string()));
        }
        Ok(Some(p.as_path()))
    }

    /// Where a load of `source` starts: [`Namespace::top_level`]'s answer; for a bare soname
    /// no directory has, the namespace linked for it (its rules find and load it, as bionic's
    /// `dlopen` goes to a linked namespace), or else, under [`SystemPolicy::SystemLinker`], the
    /// system linker's own search (`ld.so.cache`), as for a dependency. With `load`, a bare
    /// soname the search would look for in the system's directories is loaded by the system
    /// linker's own search there, as a dependency's is (see [`Namespace::resolve`]).
    pub(crate) fn start(&self, source: Source, load: bool) -> Result<Start<'_>> {
        let bare = match &source {
            Source::Path(p) => p.to_str().filter(|n| !n.contains('/')).map(str::to_owned),
            _ => None,
        };
        let system_linker = load && bare.as_deref().is_some_and(|n| self.system_linker_searches_alike(n));
        let mut asked = None;
        match (self.top_level(source, system_linker.then_some(&mut asked)), bare) {
            (Err(e), _) if asked.is_some() => {
                Err(e.and_detail(&format!("nor by the system linker: {}", asked.unwrap_or_default())))
            }
            (Err(e), Some(name)) if e.kind() == ErrorKind::DependencyNotFound => {
                if let Some(link) = self.links.iter().find(|l| l.sonames.contains(&name)) {
                    return Ok(Start::Linked(&link.target, Source::path(name)));
                }
                if self.system == SystemPolicy::SystemLinker {
                    return Ok(Start::SystemLinker { name, not_found: e });
                }
                // A name glibc's `dlopen` finds through `ld.so.cache` (see `resolve`).
                if let Some(path) = self.configured_path(&name) {
                    return match self.route_configured(&name, path, &name)? {
                        Resolved::Map { source, .. } => Ok(Start::Source(source, None)),
                        _ => Err(e),
                    };
                }
                Err(e)
            }
            (found, _) => found,
        }
    }

    /// A bare soname becomes the file the search finds. As with glibc's `dlopen`, a name
    /// without `/` is never opened relative to the current directory, even when something
    /// there has that name (`./libfoo.so` names that). The file the search opened comes
    /// with it, for the load to use (a found library is not opened twice). With
    /// `system_linker`, the search reaching the system's directories asks the system linker's
    /// own search first, and what it finds is loaded ([`Start::System`]); if it finds nothing,
    /// its message is left in `system_linker` and the directories are tried.
    fn top_level(&self, source: Source, mut system_linker: Option<&mut Option<String>>) -> Result<Start<'_>> {
        use std::os::unix::ffi::OsStrExt;
        let Source::Path(p) = &source else { return Ok(Start::Source(source, None)) };
        // By its bytes: a name that is not UTF-8 is a bare name too.
        if p.as_os_str().as_bytes().contains(&b'/') {
            // As glibc's `dlopen` from the program: tokens in a path are expanded (`$ORIGIN`
            // is the program's directory); one without a value here leaves the path as it is
            // (not found, as with glibc).
            if let Some(expanded) = p
                .to_str()
                .filter(|s| has_tokens(s))
                .and_then(|s| expand_tokens(s, program_dir().and_then(Path::to_str)))
            {
                return Ok(Start::Source(Source::parse(&expanded), None));
            }
            return Ok(Start::Source(source, None));
        }
        let name = p.as_os_str();
        let mut skipped = Vec::new();
        // As glibc's `dlopen` from the program: its `DT_RPATH` (without `DT_RUNPATH`) first,
        // its `DT_RUNPATH` after `LD_LIBRARY_PATH`.
        let (program_rpath, program_dirs) = program_search_dirs();
        let has_runpath = !*program_rpath && !program_dirs.is_empty();
        let dirs = self.dirs_expanded(None, *program_rpath, has_runpath, program_dirs.clone(), &[], false);
        let system_from = if self.system_dirs { dirs.len() - SYSTEM_DIRS.len() } else { usize::MAX };
        for (i, dir) in dirs.iter().enumerate() {
            if let (true, Some(asked), Some(name)) = (i == system_from, system_linker.as_deref_mut(), name.to_str()) {
                match crate::executor::load_system_library(name) {
                    Ok(sys) => return Ok(Start::System(name.to_owned(), sys)),
                    Err(msg) => *asked = Some(msg),
                }
            }
            if let Some((found, opened)) = candidate(dir, name, &mut skipped)? {
                return Ok(Start::Source(found, opened));
            }
        }
        let mut detail = not_found_detail("not found in", &dirs, &skipped, &self.name);
        if p.is_file() {
            detail.push_str(&format!(
                "; a name without `/` is searched for, not opened in the current directory \
                 (./{} names the file there)",
                p.display()
            ));
        }
        Err(Error::new(format!("find library {}", p.display()), ErrorKind::DependencyNotFound, detail)
            .with_dlerror(format!("{}: cannot open shared object file: No such file or directory", p.display())))
    }

    /// The directories searched for a dependency of a library loaded from `origin` with
    /// `runpath` (unexpanded entries of its `list`), whose loaders' `DT_RPATH`s are
    /// `inherited` (see [`rpath_dirs`]).
    fn dirs(
        &self,
        origin: Option<&Source>,
        list: PathList,
        runpath: &mut dyn Iterator<Item = &str>,
        inherited: &[SearchDir],
    ) -> Vec<SearchDir> {
        let origin_dir = origin.and_then(Source::dir).map(Path::to_path_buf);
        let runpath: Vec<SearchDir> =
            runpath.filter_map(|rp| expand_origin(rp, origin, origin_dir.as_deref())).collect();
        self.dirs_expanded(origin, list == PathList::Rpath, list == PathList::Runpath, runpath, inherited, true)
    }

    /// [`Namespace::dirs`] with the search path expanded; `has_runpath`: the library has a
    /// `DT_RUNPATH` tag, whatever its directories (glibc's `_dl_map_object` tests the tag: an
    /// empty one, or one whose `$ORIGIN` entries were all dropped, still stops the loaders'
    /// `DT_RPATH`s); `program`: the program's `DT_RPATH` ends the chain of loaders' (glibc's
    /// `_dl_map_object` searches the main map's last, unless it was in the chain: not for the
    /// program's own `dlopen`).
    fn dirs_expanded(
        &self,
        origin: Option<&Source>,
        rpath: bool,
        has_runpath: bool,
        runpath: Vec<SearchDir>,
        inherited: &[SearchDir],
        program: bool,
    ) -> Vec<SearchDir> {
        let mut dirs = Vec::new();
        if let Some(Source::ZipEntry { archive, entry }) = origin {
            let dir = entry.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            dirs.push(SearchDir::Archive { archive: archive.clone(), dir: dir.to_owned() });
        }
        if self.own_dir {
            dirs.extend(origin.and_then(Source::dir).map(|d| SearchDir::Dir(d.to_path_buf())));
        }
        // glibc: DT_RPATH (only without DT_RUNPATH), then the DT_RPATHs of the libraries that
        // loaded it, up the chain (also only without DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH.
        let (before, after) = if rpath { (runpath, Vec::new()) } else { (Vec::new(), runpath) };
        dirs.extend(before);
        if !has_runpath {
            dirs.extend(inherited.iter().cloned());
            match program_search_dirs() {
                (true, program_rpath) if program => dirs.extend(program_rpath.iter().cloned()),
                _ => {}
            }
        }
        if self.ld_library_path {
            if let Some(lp) = ld_library_path() {
                dirs.extend(ld_library_path_dirs(lp).filter_map(expand_in_ld_library_path));
            }
        }
        dirs.extend(after);
        dirs.extend(self.search_path.iter().cloned());
        if self.system_dirs {
            dirs.extend(SYSTEM_DIRS.iter().map(|d| SearchDir::Dir(d.into())));
        }
        dirs
    }

    /// Finds `DT_NEEDED` `name` of the library `label` loaded from `origin` with `runpath`
    /// (its `DT_RPATH` when `rpath`) and its loaders' `DT_RPATH`s `inherited`, and says who
    /// loads it.
    pub(crate) fn resolve(
        &self,
        name: &str,
        origin: &Source,
        (list, runpath): (PathList, &mut dyn Iterator<Item = &str>),
        inherited: &[SearchDir],
        (label, asker): (&str, Asker),
    ) -> Result<Resolved<'_>> {
        let mut skipped = Vec::new();
        let dirs = if name.contains('/') { Vec::new() } else { self.dirs(Some(origin), list, runpath, inherited) };
        let found = if name.contains('/') && has_tokens(name) {
            // `$ORIGIN/libx.so` in a `DT_NEEDED` entry: glibc expands its tokens (`expand_dst` in
            // `_dl_map_object_deps`) as in a `DT_RUNPATH` entry; it was opened as it is.
            Some((expand_tokens_in_name(name, origin, "find library")?, None))
        } else if name.contains('/') {
            // A name with `/` is that file, as with glibc; `x.apk!/lib/y.so` that zip entry (or
            // the file of that name), as bionic's open_library_at_path has it.
            Some((Source::parse(name), None))
        } else {
            let mut found = None;
            // Where the system's directories start (the end of the list, when searched).
            let system_from = if self.system_dirs { dirs.len() - SYSTEM_DIRS.len() } else { usize::MAX };
            for (i, dir) in dirs.iter().enumerate() {
                if i == system_from && asker == Asker::Dependency && self.system_linker_searches_alike(name) {
                    // What is found there goes to the system linker anyway: let its own search
                    // (`ld.so.cache` in `ld.so.conf`'s order, glibc-hwcaps variants, its
                    // default directories) find it, as glibc's would for this dependency; the
                    // file is then opened once. Not found there, the directories are tried here.
                    if let Ok(sys) = crate::executor::load_system_library(name) {
                        return Ok(Resolved::System(Arc::new(sys)));
                    }
                }
                // A directory named twice (the library's own and a `$ORIGIN` entry) is tried once.
                if dirs[..i].contains(dir) {
                    continue;
                }
                if let Some(s) = candidate(dir, name.as_ref(), &mut skipped)? {
                    found = Some(s);
                    break;
                }
            }
            found
        };
        if let Some((source, opened)) = found {
            return self.route(name, source, opened, (label, asker));
        }
        // An isolated namespace's own search found nothing: a library of that name the process
        // has loaded is used (libc, for one), as for every namespace, but only now (see
        // `own_copies_first`: a name a link lists was answered so before the search). Also for
        // a mapped library's `dlopen` of it (the system linker then opens it with its flags).
        if self.own_copies_first(name) {
            if let Some(sys) = crate::process_scope::SystemLibrary::if_loaded_shared(name) {
                return Ok(Resolved::System(sys));
            }
        }
        if let Some(link) = self.links.iter().find(|l| l.sonames.iter().any(|s| s == name)) {
            return link.target.resolve(name, origin, (PathList::None, &mut std::iter::empty()), &[], (label, asker));
        }
        // glibc would find it through `ld.so.cache` (a directory `ld.so.conf` adds): a system
        // library, mapped privately or refused as one found in a system directory is.
        if let Some(path) = self.configured_path(name) {
            return self.route_configured(name, path, label);
        }
        match self.system {
            // glibc's own search (ld.so.cache, its configured directories) may know it.
            SystemPolicy::SystemLinker => {
                Ok(Resolved::SystemLinker(name.to_owned(), Unfound { dirs, skipped, ns: &self.name }))
            }
            _ => Err(Error::new(
                format!("find dependency {name}"),
                ErrorKind::DependencyNotFound,
                not_found_detail("not loaded and not found in", &dirs, &skipped, &self.name),
            )
            .with_path(label)
            .with_dlerror(format!("{name}: cannot open shared object file: No such file or directory"))),
        }
    }

    /// Whether the system linker, given a bare name by mmkit (its caller is then the program),
    /// searches nothing this namespace's search has not already tried before the system's
    /// directories: under [`SystemPolicy::SystemLinker`], with glibc, when the program has no
    /// `DT_RPATH`/`DT_RUNPATH` and `LD_LIBRARY_PATH` is unset or searched here too; and no
    /// link names `name` (a linked namespace comes before the system linker's configured
    /// directories).
    fn system_linker_searches_alike(&self, name: &str) -> bool {
        cfg!(target_env = "gnu")
            && self.system == SystemPolicy::SystemLinker
            && !self.links.iter().any(|l| l.sonames.iter().any(|s| s == name))
            && program_search_dirs().1.is_empty()
            && (self.ld_library_path || ld_library_path().is_none_or(|v| v.is_empty()))
    }

    /// Whether a `DT_NEEDED` `name` of a library whose dependencies this namespace finds is
    /// looked for by the namespace's own search before the libraries the process has loaded:
    /// in an isolated namespace (no system directories searched), for a name no link lists.
    /// Then its own loaded copy, then its search (the APK directory, `DT_RUNPATH`, its path)
    /// win, and a library of that name the process has loaded (the system's zlib another part
    /// of the process loaded) is used only when the search finds nothing, as bionic keeps an
    /// isolated app namespace's own copy of a library no link exposes. Otherwise (the default
    /// namespace, and a name a link lists, which bionic takes from the linked namespace when
    /// it is loaded there) a loaded library of that name is used first, as glibc does. Only
    /// a namespace without the system directories pays for the question (a look at its links).
    pub(crate) fn own_copies_first(&self, name: &str) -> bool {
        !self.system_dirs && !self.links.iter().any(|l| l.sonames.iter().any(|s| s == name))
    }

    /// Who loads the file `source` found for `name`: a system library goes by the policy.
    fn route(
        &self,
        name: &str,
        source: Source,
        opened: Option<OpenSource>,
        (label, asker): (&str, Asker),
    ) -> Result<Resolved<'_>> {
        let Source::Path(path) = &source else { return Ok(Resolved::Map { source, ns: self, opened }) };
        if !is_system_library(path) {
            return Ok(Resolved::Map { source, ns: self, opened });
        }
        // An isolated namespace whose own search found a system file (a system directory on
        // its search path or in a `DT_RUNPATH`) the process has loaded uses that copy, whatever
        // its policy, as it did when a loaded library was looked for before the search.
        if asker == Asker::Dependency && self.system != SystemPolicy::SystemLinker && !self.system_dirs {
            if let Some(sys) = crate::process_scope::SystemLibrary::if_loaded_file(&path.to_string_lossy()) {
                return Ok(Resolved::System(sys));
            }
        }
        match self.system {
            SystemPolicy::SystemLinker => {
                let unfound = Unfound { dirs: Vec::new(), skipped: Vec::new(), ns: &self.name };
                Ok(Resolved::SystemLinker(path.to_string_lossy().into_owned(), unfound))
            }
            SystemPolicy::MapPrivately => Ok(Resolved::Map { source, ns: self, opened }),
            SystemPolicy::Refuse => Err(Error::new(
                format!("load dependency {name}"),
                ErrorKind::DependencyNotFound,
                format!("{} is a system library and namespace {} refuses system libraries", path.display(), self.name),
            )
            .with_path(label)),
        }
    }
}

impl Namespace {
    /// The file `ld.so.cache` names for `name`, where this namespace maps or refuses system
    /// libraries itself (not under [`SystemPolicy::SystemLinker`], whose own search asks the
    /// cache) and searches [`SYSTEM_DIRS`].
    fn configured_path(&self, name: &str) -> Option<PathBuf> {
        (self.system != SystemPolicy::SystemLinker && self.system_dirs).then(|| ld_so_cache_entry(name)).flatten()
    }

    /// A system library only `ld.so.cache` knows (found after this namespace's search failed),
    /// under [`SystemPolicy::MapPrivately`] or [`SystemPolicy::Refuse`].
    fn route_configured(&self, name: &str, path: PathBuf, label: &str) -> Result<Resolved<'_>> {
        match self.system {
            SystemPolicy::Refuse => Err(Error::new(
                format!("load dependency {name}"),
                ErrorKind::DependencyNotFound,
                format!(
                    "{} (from ld.so.cache) is a system library and namespace {} refuses system libraries",
                    path.display(),
                    self.name
                ),
            )
            .with_path(label)),
            _ => Ok(Resolved::Map { source: Source::Path(path), ns: self, opened: None }),
        }
    }
}

/// The file glibc's `ld.so.cache` (`/etc/ld.so.cache`, built by `ldconfig` from `ld.so.conf`)
/// names for the soname `name` on this machine, as glibc's search for a dependency finds it
/// after `LD_LIBRARY_PATH` and `DT_RUNPATH`: the directories `ld.so.conf` adds (Debian's
/// `/usr/local/lib/x86_64-linux-gnu`, CUDA's, libfakeroot's) are not in [`SYSTEM_DIRS`]. Read
/// only when a search has found nothing (the error path). The glibc 2.32+ format, alone or after
/// the old one; `None` for anything else, a missing file or a damaged one.
fn ld_so_cache_entry(name: &str) -> Option<PathBuf> {
    if !cfg!(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))) {
        return None;
    }
    let data = std::fs::read("/etc/ld.so.cache").ok()?;
    ld_so_cache_lookup(&data, name)
}

/// [`ld_so_cache_entry`]'s reading of a cache's bytes.
fn ld_so_cache_lookup(data: &[u8], name: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // glibc's `_DL_CACHE_DEFAULT_ID`: FLAG_ELF_LIBC6 with the 64-bit library kind.
    const FLAGS: i32 = if cfg!(target_arch = "aarch64") { 0x0a03 } else { 0x0303 };
    let u32_at = |d: &[u8], at: usize| Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?));
    let mut start = 0;
    if data.starts_with(b"ld.so-1.7.0") {
        // The old format first (12-byte entries after a 16-byte header), then the new one at
        // the next 8-byte boundary.
        let n = u32_at(data, 12)? as usize;
        start = n.checked_mul(12)?.checked_add(16 + 7)? & !7;
    }
    let cache = data.get(start..)?;
    if !cache.starts_with(b"glibc-ld.so.cache1.1") {
        return None;
    }
    let string = |at: u32| {
        let rest = cache.get(at as usize..)?;
        Some(&rest[..rest.iter().position(|&b| b == 0)?])
    };
    let count = u32_at(cache, 20)? as usize;
    for i in 0..count {
        let entry = cache.get(i.checked_mul(24)?.checked_add(48)?..)?.get(..24)?;
        let flags = u32_at(entry, 0)? as i32;
        let hwcap = u64::from_le_bytes(entry[16..24].try_into().ok()?);
        // Entries with a hwcap are glibc-hwcaps variants; the plain one is listed too.
        if flags == FLAGS && hwcap == 0 && string(u32_at(entry, 4)?)? == name.as_bytes() {
            let path = Path::new(std::ffi::OsStr::from_bytes(string(u32_at(entry, 8)?)?));
            return path.is_absolute().then(|| path.to_path_buf());
        }
    }
    None
}

/// `LD_LIBRARY_PATH` as glibc reads it, once, as the process started (kept by mmkit-elf's
/// initializer; where that did not run, at the first search here), so a `setenv` later changes
/// neither loader's search. It was read again for every search: a library's
/// `setenv("LD_LIBRARY_PATH", ...)` then `dlopen` found what glibc does not.
fn ld_library_path() -> Option<&'static std::ffi::OsStr> {
    static VALUE: OnceLock<Option<&'static std::ffi::OsStr>> = OnceLock::new();
    *VALUE.get_or_init(|| match crate::image::ld_library_path_at_start() {
        Some(at_start) => at_start,
        None => std::env::var_os("LD_LIBRARY_PATH").map(|v| &*Box::leak(v.into_boxed_os_str())),
    })
}

/// The directories of an `LD_LIBRARY_PATH` value as glibc reads them: any bytes (not only
/// UTF-8), split at `:` and at `;`, an empty element naming the current directory.
fn ld_library_path_dirs(value: &std::ffi::OsStr) -> impl Iterator<Item = PathBuf> + '_ {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    // An unset or empty variable names no directory; `:` alone names the current one twice.
    let elements = if bytes.is_empty() { None } else { Some(bytes.split(|&b| b == b':' || b == b';')) };
    elements
        .into_iter()
        .flatten()
        .map(|d| Path::new(std::ffi::OsStr::from_bytes(if d.is_empty() { b"." } else { d })).to_path_buf())
}

/// A directory of `LD_LIBRARY_PATH` with its tokens expanded as glibc expands them there
/// (`$ORIGIN` is the program's directory); dropped when a token has no value.
fn expand_in_ld_library_path(dir: PathBuf) -> Option<SearchDir> {
    match dir.to_str() {
        Some(d) if has_tokens(d) => {
            expand_tokens(d, program_dir().and_then(Path::to_str)).map(|d| SearchDir::Dir(d.into()))
        }
        _ => Some(SearchDir::Dir(dir)),
    }
}

/// Where a load starts (see [`Namespace::start`]).
pub(crate) enum Start<'ns> {
    /// This file, entry, descriptor or memory, and the file when the search already opened it.
    Source(Source, Option<OpenSource>),
    /// A bare soname for the system linker to find, and why the namespace's search did not.
    SystemLinker { name: String, not_found: Error },
    /// A bare soname this namespace links to another for: opened there, by its rules.
    Linked(&'ns Namespace, Source),
    /// A bare soname the system linker's own search found and loaded (the namespace's search
    /// had reached the system's directories).
    System(String, crate::process_scope::SystemLibrary),
}

/// `dir` with glibc's dynamic string tokens replaced (see [`expand_tokens`]): `$ORIGIN` is
/// the requesting library's directory (inside an APK: the entry's directory in the archive, so
/// an APK's libraries find each other). A library without a directory (loaded from memory or a
/// descriptor) has no `$ORIGIN`: an entry naming it is dropped, as glibc drops it (it became
/// `""`, the current directory, or a directory under `/`); so is an entry naming a token this
/// process has no value for.
fn expand_origin(rp: &str, origin: Option<&Source>, origin_dir: Option<&Path>) -> Option<SearchDir> {
    if let Some(Source::ZipEntry { archive, entry }) = origin {
        if let Some(rest) = rp.strip_prefix("${ORIGIN}").or_else(|| rp.strip_prefix("$ORIGIN")) {
            let dir = entry.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let joined = format!("{dir}{}", expand_tokens(rest, None)?);
            return Some(SearchDir::Archive { archive: archive.clone(), dir: normalize(&joined) });
        }
    }
    if !rp.contains('$') {
        return Some(SearchDir::Dir(rp.into()));
    }
    let origin = origin_dir.and_then(Path::to_str);
    Some(SearchDir::Dir(expand_tokens(rp, origin)?.into()))
}

/// Whether `s` holds one of glibc's dynamic string tokens (see [`expand_tokens`]).
pub(crate) fn has_tokens(s: &str) -> bool {
    s.match_indices('$').any(|(i, _)| token_at(&s[i + 1..]).is_some())
}

/// `s` with glibc's dynamic string tokens replaced, as its `_dl_dst_substitute` does:
/// `$ORIGIN` by `origin`, `$LIB` by the C library's directory under `/` (see [`lib_token`]),
/// `$PLATFORM` by glibc's platform name (see [`platform_token`]); each may be braced
/// (`${LIB}`), and unbraced ends at `/` or the end (`$LIBX` is no token and stays). `None`
/// when a token has no value here.
pub(crate) fn expand_tokens(s: &str, origin: Option<&str>) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 32);
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some((token, len)) = token_at(after) else {
            out.push('$');
            rest = after;
            continue;
        };
        out.push_str(match token {
            Token::Origin => origin?,
            Token::Lib => lib_token()?,
            Token::Platform => platform_token()?,
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// A dynamic string token.
#[derive(Clone, Copy)]
enum Token {
    Origin,
    Lib,
    Platform,
}

/// The token `after` a `$` starts with, and its length (braces included).
fn token_at(after: &str) -> Option<(Token, usize)> {
    [("ORIGIN", Token::Origin), ("LIB", Token::Lib), ("PLATFORM", Token::Platform)].into_iter().find_map(
        |(name, token)| {
            let braced = after.strip_prefix('{').and_then(|r| r.strip_prefix(name)).is_some_and(|r| r.starts_with('}'));
            if braced {
                return Some((token, name.len() + 2));
            }
            let bare = after.strip_prefix(name).is_some_and(|r| r.is_empty() || r.starts_with('/'));
            bare.then_some((token, name.len()))
        },
    )
}

/// glibc's `$LIB`: the directory the system linker loaded the C library from, under `/` and
/// without a leading `usr/` (Debian's `lib/x86_64-linux-gnu`, Fedora's `lib64`, Arch's `lib`),
/// which is where glibc's build puts it (`slibdir`). `None` when no C library is loaded by
/// that name (not glibc).
fn lib_token() -> Option<&'static str> {
    static LIB: OnceLock<Option<String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let libc = crate::process_scope::SystemLibrary::if_loaded("libc.so.6")?.path()?;
        let dir = Path::new(&libc).parent()?.to_str()?;
        let under_root = dir.strip_prefix("/usr/").or_else(|| dir.strip_prefix('/'))?;
        (!under_root.is_empty()).then(|| under_root.to_owned())
    })
    .as_deref()
}

/// glibc's `$PLATFORM`: the kernel's `AT_PLATFORM` string, or the name x86_64 glibc gives
/// an Intel CPU instead (`haswell`; see [`crate::process_scope::glibc_platform`]).
fn platform_token() -> Option<&'static str> {
    static PLATFORM: OnceLock<Option<String>> = OnceLock::new();
    PLATFORM.get_or_init(crate::process_scope::glibc_platform).as_deref()
}

/// The program's directory, the `$ORIGIN` of the program and of what it opens, read once (as
/// glibc's `_dl_get_origin` reads `/proc/self/exe` once, at start-up).
fn program_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf))).as_deref()
}

/// The program's search path (see [`crate::process_scope::program_search_path`]), its
/// `$ORIGIN` the executable's directory.
fn program_search_dirs() -> &'static (bool, Vec<SearchDir>) {
    static DIRS: OnceLock<(bool, Vec<SearchDir>)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let (rpath, entries) = crate::process_scope::program_search_path();
        (*rpath, entries.iter().filter_map(|rp| expand_origin(rp, None, program_dir())).collect())
    })
}

/// The `DT_RPATH` directories (`rpath`, unexpanded) of a library loaded from `origin`, which
/// glibc also searches for the dependencies of the libraries it loaded, and theirs, when those
/// have no `DT_RUNPATH` (`l_loader`'s chain in `_dl_map_object`); each `$ORIGIN` is the
/// library's own.
pub(crate) fn rpath_dirs(origin: &Source, rpath: &mut dyn Iterator<Item = &str>) -> Vec<SearchDir> {
    let origin_dir = origin.dir().map(Path::to_path_buf);
    rpath.filter_map(|rp| expand_origin(rp, Some(origin), origin_dir.as_deref())).collect()
}

/// A `dlopen` name holding a dynamic string token (`$ORIGIN`, `$LIB`, `$PLATFORM`) from the
/// library loaded from `origin`, expanded as a `DT_RUNPATH` entry is (see [`expand_origin`]):
/// a file, or an entry of the same APK. `None` when a token has no value (`$ORIGIN` of a
/// library loaded from memory or a descriptor).
pub(crate) fn expand_origin_in_name(name: &str, origin: &Source) -> Option<Source> {
    Some(match expand_origin(name, Some(origin), origin.dir())? {
        // A path may name an APK entry (`$ORIGIN/../app.apk!/lib/x.so`), as a name with `/` does.
        SearchDir::Dir(path) => path.to_str().map_or_else(|| Source::Path(path.clone()), Source::parse),
        SearchDir::Archive { archive, dir } => Source::zip_entry(archive, dir),
    })
}

/// [`expand_origin_in_name`], or the error of `op` (`find library`, `dlopen`) when a token has
/// no value here, with the `dlerror` words glibc's `dlopen` has for a file it cannot open. One
/// place for a `DT_NEEDED` entry's name and a mapped library's `dlopen` name.
pub(crate) fn expand_tokens_in_name(name: &str, origin: &Source, op: &str) -> Result<Source> {
    expand_origin_in_name(name, origin).ok_or_else(|| no_token_value(name, op))
}

/// A `DT_NEEDED` name without `/` holding a token (`lib${PLATFORM}x.so`), expanded as glibc's
/// `_dl_map_object_deps` expands every `DT_NEEDED` name (`expand_dst`), for the dependency of
/// the library loaded from `origin`; the result is then matched and searched for (or opened,
/// when it has a `/` now) as the name. `None` for a name without a token.
pub(crate) fn expand_tokens_in_needed(name: &str, origin: &Source) -> Option<Result<String>> {
    if name.contains('/') || !has_tokens(name) {
        return None;
    }
    let origin_dir = origin.dir().and_then(Path::to_str);
    Some(expand_tokens(name, origin_dir).ok_or_else(|| no_token_value(name, "find library")))
}

/// The error of `op` for `name`, a token of which has no value here, with the `dlerror` words
/// glibc's `dlopen` has for a file it cannot open.
fn no_token_value(name: &str, op: &str) -> Error {
    Error::new(
        format!("{op} {name}"),
        ErrorKind::DependencyNotFound,
        "a token of the name has no value here ($ORIGIN of a library loaded from memory or a \
         descriptor, or $LIB or $PLATFORM outside glibc)",
    )
    .with_dlerror(format!("{name}: cannot open shared object file: No such file or directory"))
}

/// `a/b/../c/./d` → `a/c/d` (zip entry names have no `..`).
fn normalize(dir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in dir.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The file `p`, if it is a library to load (see [`candidate`]). As glibc's `open_path`: the
/// `open` is the test (one system call where the name is not), and what it opened is kept.
fn file_candidate(p: PathBuf, skipped: &mut Vec<String>) -> Option<(Source, Option<OpenSource>)> {
    let opened = match crate::source::open_found(&p) {
        Ok(opened) => opened,
        Err(e) if e.errno() == Some(libc::EACCES) => {
            skipped.push(format!("skipped {}: {}", p.display(), Error::from_raw_errno("open", libc::EACCES)));
            return None;
        }
        // Missing or unreachable: not here.
        Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG)) => return None,
        // There, but not a library to load (a directory, a FIFO, a device, a loop of symbolic
        // links): not here either, and the error of a search that finds nothing says so.
        Err(e) if matches!(e.errno(), None | Some(libc::ENXIO | libc::ELOOP)) => {
            let why = match e.errno() {
                Some(errno) => Error::from_raw_errno("open", errno).to_string(),
                None => e.detail().unwrap_or("not a regular file").to_owned(),
            };
            skipped.push(format!("skipped {}: {why}", p.display()));
            return None;
        }
        // Found, but not openable now (`EMFILE`, ...): the load reports it.
        Err(_) => return Some((Source::Path(p), None)),
    };
    if let Some(why) = passed_over(&opened) {
        skipped.push(format!("skipped {}: {why}", p.display()));
        return None;
    }
    Some((Source::Path(p), Some(opened)))
}

/// How many directories' answers [`hwcaps_dirs`] keeps.
const HWCAPS_DIRS_KEPT: usize = 1024;

/// The `glibc-hwcaps/<level>` subdirectories of `dir` that exist, for the levels glibc
/// searches on this CPU ([`crate::process_scope::glibc_hwcaps_subdirs`]), best first, then
/// with glibc 2.36 or older its legacy capability subdirectories that exist
/// ([`crate::process_scope::glibc_legacy_hwcaps`]: `tls`, `x86_64`, ...). Asked of the file
/// system once per directory and process (a `stat` of `dir/glibc-hwcaps`, and with an old
/// glibc one per legacy first name; most often missing), as glibc remembers a directory it
/// found missing; past [`HWCAPS_DIRS_KEPT`] directories, asked each time. The CPU is asked for
/// the levels only when there is a `glibc-hwcaps` directory, and for the legacy names once per
/// process with an old glibc (`CPUID` is a trip to the hypervisor in a VM, a microsecond each).
fn hwcaps_dirs(dir: &Path) -> Arc<[PathBuf]> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, Arc<[PathBuf]>>>> = OnceLock::new();
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        return Arc::from([]);
    }
    let known = KNOWN.get_or_init(Default::default);
    if let Some(found) = known.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
        return found.clone();
    }
    let base = dir.join("glibc-hwcaps");
    let mut found: Vec<PathBuf> = if base.is_dir() {
        let levels = crate::process_scope::glibc_hwcaps_subdirs();
        levels.iter().map(|level| base.join(level)).filter(|d| d.is_dir()).collect()
    } else {
        Vec::new()
    };
    // glibc 2.36 and older: the legacy subdirectories after them. A path can be there only if
    // its first name is (one `stat` per first name: `tls`, the platform, `x86_64`).
    let legacy = crate::process_scope::glibc_legacy_hwcaps();
    if !legacy.is_empty() {
        let mut firsts: Vec<(&str, bool)> = Vec::new();
        for path in legacy {
            let first = path.split('/').next().unwrap_or(path);
            let there = match firsts.iter().find(|(f, _)| *f == first) {
                Some(&(_, there)) => there,
                None => {
                    let there = dir.join(first).is_dir();
                    firsts.push((first, there));
                    there
                }
            };
            if there && (!path.contains('/') || dir.join(path).is_dir()) {
                found.push(dir.join(path));
            }
        }
    }
    let found: Arc<[PathBuf]> = found.into();
    let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
    if known.len() < HWCAPS_DIRS_KEPT {
        known.insert(dir.to_path_buf(), found.clone());
    }
    found
}

/// `name` in `search`, if it is there, with the file opened to check it when it is one (see
/// [`Resolved::Map`]). An archive directory whose archive cannot be used (missing, unreadable,
/// not a zip, truncated) is skipped, as glibc skips a directory it cannot use and bionic a zip
/// it cannot open, with why in `skipped`; but an entry that is there and cannot be mapped
/// (compressed, misaligned, ...) is an error, as a corrupt file found is.
/// As bionic's `open_library_at_path`, `archive!/dir/name` that is no usable entry is tried as
/// a file of that name. A `name` that is not UTF-8 is no zip entry's.
fn candidate(
    search: &SearchDir,
    name: &std::ffi::OsStr,
    skipped: &mut Vec<String>,
) -> Result<Option<(Source, Option<OpenSource>)>> {
    match search {
        SearchDir::Dir(d) => {
            // As glibc: the directory's `glibc-hwcaps` subdirectories this CPU supports, best
            // first, then the directory itself.
            for sub in hwcaps_dirs(d).iter() {
                if let Some(found) = file_candidate(sub.join(name), skipped) {
                    return Ok(Some(found));
                }
            }
            Ok(file_candidate(d.join(name), skipped))
        }
        SearchDir::Archive { archive, dir } => {
            let Some(name) = name.to_str() else { return Ok(None) };
            let entry = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
            let failure = match crate::source::open_zip_entry(archive, &entry, page_size()) {
                Ok(opened) => return Ok(Some((Source::zip_entry(archive.clone(), entry), Some(opened)))),
                Err(failure) => failure,
            };
            let file = crate::source::bang_path(archive, &entry);
            if file.is_file() {
                return Ok(Some((Source::Path(file), None)));
            }
            match failure {
                ZipFailure::NoEntry(_) => Ok(None),
                ZipFailure::Archive(e) => {
                    skipped.push(format!("skipped {}: {e}", search.display()));
                    Ok(None)
                }
                ZipFailure::Entry(e) => Err(e),
            }
        }
    }
}

/// Why the search passes over the file it opened, as glibc's `open_verify` does: it is an ELF
/// file of another class (a 32-bit library in a directory of `LD_LIBRARY_PATH`) or machine
/// than the loader's host (an unreadable file, `EACCES`, was passed over at its `open`).
/// Anything else, not an ELF file included, is found (and fails to load naming its fault, as
/// with glibc).
fn passed_over(opened: &OpenSource) -> Option<String> {
    let host = crate::Machine::HOST?;
    let mut head = [0u8; 20];
    opened.read_exact_at(0, &mut head).ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    match head[4] {
        object::elf::ELFCLASS64 => {}
        object::elf::ELFCLASS32 => return Some("wrong ELF class: ELFCLASS32".to_owned()),
        _ => return None,
    }
    let e_machine = match head[5] {
        object::elf::ELFDATA2LSB => u16::from_le_bytes([head[18], head[19]]),
        object::elf::ELFDATA2MSB => u16::from_be_bytes([head[18], head[19]]),
        _ => return None,
    };
    (e_machine != host.e_machine()).then(|| {
        let what =
            crate::Machine::from_e_machine(e_machine).map_or_else(|| e_machine.to_string(), |m| m.em_name().to_owned());
        format!("built for machine {what}, this loader runs {host}")
    })
}

/// The detail of a "not found" error: the directories `tried`, the namespace, and why any were
/// skipped.
fn not_found_detail(what: &str, tried: &[SearchDir], skipped: &[String], ns: &str) -> String {
    let tried: Vec<String> = tried.iter().map(SearchDir::display).collect();
    let tried = if tried.is_empty() { "no directory".to_owned() } else { tried.join(":") };
    format!("{what} {tried} (namespace {ns}){}", skipped_note(skipped))
}

/// `; skipped ...` for each directory skipped, or nothing.
fn skipped_note(skipped: &[String]) -> String {
    skipped.iter().map(|s| format!("; {s}")).collect()
}

/// Whether `path` is in one of [`SYSTEM_DIRS`]. An absolute path without `.` or `..`
/// components is compared by name (no syscall: this runs on every first load; both
/// `/lib/x86_64-linux-gnu` and `/usr/lib/x86_64-linux-gnu` are listed, so merged-`/usr`
/// systems are covered); other paths (relative, with `..`) by the directories' device and
/// inode. A directory that is a symlink to a system directory under another name is not one.
pub(crate) fn is_system_library(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else { return false };
    // Compared as bytes: `Path`'s component-wise comparison cost ~4k instructions a load.
    let bytes = parent.as_os_str().as_bytes();
    if SYSTEM_DIRS.iter().any(|d| d.as_bytes() == bytes) {
        return true;
    }
    // An absolute path written plainly (no `.`, `..` or empty components) names another
    // directory: that settles it without a syscall.
    let plain_parts = |b: &[u8]| b.split(|&b| b == b'/').all(|c| !matches!(c, b"" | b"." | b".."));
    if bytes.first() == Some(&b'/') && plain_parts(&bytes[1..]) {
        return false;
    }
    // A plain relative path is the working directory's (a `getcwd`, where the identity test
    // below is a `stat` of every system directory on first use).
    if !bytes.is_empty() && bytes[0] != b'/' && plain_parts(bytes) {
        if let Ok(cwd) = std::env::current_dir() {
            let joined = cwd.join(parent);
            let joined = joined.as_os_str().as_bytes();
            if joined.first() == Some(&b'/') && plain_parts(&joined[1..]) {
                return SYSTEM_DIRS.iter().any(|d| d.as_bytes() == joined);
            }
        }
    }
    static DIRS: OnceLock<Vec<(u64, u64)>> = OnceLock::new();
    let dirs = DIRS.get_or_init(|| {
        SYSTEM_DIRS.iter().filter_map(|d| std::fs::metadata(d).ok()).map(|m| (m.dev(), m.ino())).collect()
    });
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    std::fs::metadata(parent).is_ok_and(|m| dirs.contains(&(m.dev(), m.ino())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ld_so_cache_is_read_as_glibc_reads_it_and_damage_is_none() {
        let Ok(data) = std::fs::read("/etc/ld.so.cache") else { return };
        if cfg!(all(target_env = "gnu", target_arch = "x86_64")) && std::env::var_os("MMKIT_TEST_RUNNER").is_none() {
            // glibc's own answer for its C library (ldconfig -p lists it the same way).
            let libc = ld_so_cache_lookup(&data, "libc.so.6").expect("libc.so.6 in ld.so.cache");
            assert!(libc.is_absolute() && libc.ends_with("libc.so.6") && libc.exists(), "{}", libc.display());
        }
        assert_eq!(ld_so_cache_lookup(&data, "libno-such-library.so.9"), None);
        // Cut anywhere or with a byte changed: an answer or None, never a panic.
        let step = (data.len() / 509).max(1);
        for cut in (0..data.len()).step_by(step) {
            let _ = ld_so_cache_lookup(&data[..cut], "libc.so.6");
            let mut bad = data.clone();
            bad[cut] ^= 0xff;
            let _ = ld_so_cache_lookup(&bad, "libc.so.6");
        }
        assert_eq!(ld_so_cache_lookup(b"", "libc.so.6"), None);
        assert_eq!(ld_so_cache_lookup(b"glibc-ld.so.cache1.1\xff\xff\xff\xff", "libc.so.6"), None);
    }

    #[test]
    fn dynamic_string_tokens_are_read_as_glibc_reads_them() {
        let lib = lib_token().expect("glibc's $LIB");
        // What it names holds the C library this process runs with (not checked under a
        // user-mode emulator, whose sysroot prefix the program's paths do not show).
        if std::env::var_os("MMKIT_TEST_RUNNER").is_none_or(|r| r.is_empty()) {
            assert!(Path::new("/").join(lib).join("libc.so.6").exists(), "$LIB = {lib}");
        }
        let platform = platform_token().expect("$PLATFORM");
        // The kernel's name for the process's machine: `x86_64`, `aarch64` (a 32-bit process
        // has its own: `i686`, `v7l`).
        let kernel = crate::process_scope::at_platform().expect("AT_PLATFORM");
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(kernel, std::env::consts::ARCH, "AT_PLATFORM");
        }
        // glibc's own value where its ld.so says it (`--list-diagnostics`, glibc 2.33 on; not
        // under a user-mode emulator): on an Intel x86_64 CPU with AVX2 it is `haswell`.
        let glibc = crate::process_scope::tests::ld_so_diagnostic("dl_platform");
        match glibc {
            Some(glibc) => assert_eq!(platform, glibc, "glibc's dl_platform"),
            None => assert!(platform == kernel || cfg!(target_arch = "x86_64"), "{platform} / {kernel}"),
        }
        assert!(!platform.is_empty() && !platform.contains('/'), "$PLATFORM {platform:?}");
        let x = |s: &str| expand_tokens(s, Some("/o"));
        assert_eq!(x("$ORIGIN/../$LIB").unwrap(), format!("/o/../{lib}"));
        assert_eq!(x("/a/${LIB}x/${PLATFORM}").unwrap(), format!("/a/{lib}x/{platform}"));
        assert_eq!(x("/p/$PLATFORM").unwrap(), format!("/p/{platform}"));
        // Unbraced, a token ends at `/` or the end; anything else stays as written.
        assert_eq!(x("/a/$LIBX/$ORIGINAL/$HOME/$").unwrap(), "/a/$LIBX/$ORIGINAL/$HOME/$");
        assert!(!has_tokens("/a/$LIBX/$HOME"));
        assert!(has_tokens("/a/${LIB}x") && has_tokens("$ORIGIN") && has_tokens("x/$PLATFORM/y"));
        // No `$ORIGIN` without a directory: the entry is dropped.
        assert_eq!(expand_tokens("$ORIGIN/lib", None), None);
        assert!(
            matches!(expand_origin("/a/$LIB", None, None), Some(SearchDir::Dir(d)) if d == Path::new("/a").join(lib))
        );
    }

    #[test]
    fn origin_inside_an_apk_is_the_entry_directory() {
        let origin = Source::zip_entry("/a/app.apk", "lib/x86_64/libx.so");
        let d = expand_origin("$ORIGIN/../common", Some(&origin), Some(Path::new("/a")));
        assert_eq!(d, Some(SearchDir::Archive { archive: "/a/app.apk".into(), dir: "lib/common".into() }));
        let d = expand_origin("${ORIGIN}", Some(&origin), Some(Path::new("/a")));
        assert_eq!(d, Some(SearchDir::Archive { archive: "/a/app.apk".into(), dir: "lib/x86_64".into() }));
        let file = Source::path("/opt/x/libx.so");
        assert_eq!(
            expand_origin("$ORIGIN/sub", Some(&file), Some(Path::new("/opt/x"))),
            Some(SearchDir::Dir("/opt/x/sub".into()))
        );
    }

    #[test]
    fn ld_library_path_is_read_as_glibc_reads_it() {
        use std::os::unix::ffi::OsStrExt;
        let dirs = |v: &[u8]| ld_library_path_dirs(std::ffi::OsStr::from_bytes(v)).collect::<Vec<_>>();
        let p = |s: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(s));
        // `;` separates as `:` does (it was part of the name), an empty element is the current
        // directory (it was dropped), and bytes that are not UTF-8 are kept (the whole variable
        // was ignored).
        assert_eq!(dirs(b"/a:/b;/c"), [p(b"/a"), p(b"/b"), p(b"/c")]);
        assert_eq!(dirs(b"/a::/b"), [p(b"/a"), p(b"."), p(b"/b")]);
        assert_eq!(dirs(b":"), [p(b"."), p(b".")]);
        assert_eq!(dirs(b"/opt/\xff/lib:/x"), [p(b"/opt/\xff/lib"), p(b"/x")]);
        assert!(dirs(b"").is_empty());
    }

    #[test]
    fn a_library_without_a_directory_has_no_origin() {
        // From memory: `$ORIGIN` entries are dropped (they were the current directory, or `/..`),
        // others stay.
        let memory = Source::memory("libx.so", Vec::new());
        assert_eq!(expand_origin("$ORIGIN", Some(&memory), None), None);
        assert_eq!(expand_origin("${ORIGIN}/../lib", Some(&memory), None), None);
        assert_eq!(expand_origin("/opt/lib", Some(&memory), None), Some(SearchDir::Dir("/opt/lib".into())));
    }

    #[test]
    fn system_libraries_are_told_by_their_directory() {
        let triple = if cfg!(target_arch = "aarch64") { "aarch64-linux-gnu" } else { "x86_64-linux-gnu" };
        assert!(is_system_library(Path::new(&format!("/usr/lib/{triple}/libm.so.6"))));
        assert!(is_system_library(Path::new(&format!("/lib/{triple}/libm.so.6"))));
        // By device and inode: the directory must exist (under qemu-user with a cross sysroot
        // (-L) it does not).
        if Path::new(&format!("/usr/lib/{triple}")).is_dir() {
            assert!(is_system_library(Path::new(&format!("/usr/lib/{triple}/../{triple}/libm.so.6"))));
            assert!(is_system_library(Path::new(&format!("/usr//lib/./{triple}/libm.so.6"))));
        }
        assert!(!is_system_library(Path::new("/tmp/libm.so.6")));
        assert!(!is_system_library(Path::new(&format!("/usr/lib/{triple}/sub/libx.so"))));
        assert!(!is_system_library(Path::new(&format!("/usr/lib/{triple}x/libm.so.6"))));
        assert!(!is_system_library(Path::new("libm.so.6")));
        // Relative: the working directory's (the tests run in the crate's directory).
        assert!(!is_system_library(Path::new(&format!("usr/lib/{triple}/libm.so.6"))));
        let up = std::env::current_dir().unwrap().components().count();
        if Path::new(&format!("/usr/lib/{triple}")).is_dir() {
            let rel = format!("{}usr/lib/{triple}/libm.so.6", "../".repeat(up));
            assert!(is_system_library(Path::new(&rel)), "{rel}");
        }
    }

    #[test]
    fn search_dirs_parse_apk_directories() {
        assert_eq!(
            SearchDir::parse("app.apk!/lib/x86_64/"),
            SearchDir::Archive { archive: "app.apk".into(), dir: "lib/x86_64".into() }
        );
        assert_eq!(SearchDir::parse("/usr/local/lib"), SearchDir::Dir("/usr/local/lib".into()));
    }
}
