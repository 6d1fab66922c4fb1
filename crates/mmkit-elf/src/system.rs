//! A system library opened directly ([`Library::open`](crate::Library::open) of libm,
//! libstdc++, libc) in a namespace whose [`SystemPolicy`](crate::SystemPolicy) is the system
//! linker: glibc loads it (`RTLD_NODELETE`, never unloaded), as it does for a dependency; the
//! handle answers from glibc's copy and the file's headers.
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::plan::Plan;
use crate::process_scope::SystemLibrary;
use crate::source::Source;
use object::read::elf::{Dyn as _, FileHeader as _};
use object::{elf, LittleEndian as LE};
use std::path::Path;

/// A system library the system linker loaded for a [`crate::Library`] handle.
#[derive(Debug)]
pub(crate) struct SystemOpened {
    pub(crate) lib: SystemLibrary,
    pub(crate) path: String,
    pub(crate) plan: Plan,
    pub(crate) bias: u64,
    pub(crate) soname: Option<String>,
    pub(crate) needed: Vec<String>,
}

impl SystemOpened {
    /// Has the system linker load the library at `path`.
    pub(crate) fn open(path: &Path) -> Result<SystemOpened> {
        let label = path.display().to_string();
        let plan = crate::library::plan(&Source::Path(path.to_path_buf()), crate::library::page_size())?;
        let lib = crate::executor::load_system_library(&label).map_err(|msg| {
            Error::new("load system library through the system linker", ErrorKind::DependencyNotFound, msg)
                .with_path(&label)
        })?;
        let bias = lib.bias().unwrap_or(0);
        let (soname, needed) = names(bias, path);
        Ok(SystemOpened { lib, path: label, plan, bias, soname, needed })
    }

    /// Has the system linker find and load the bare soname `name` that no directory of the
    /// namespace has (its own search: `LD_LIBRARY_PATH` as the process started, `ld.so.cache`,
    /// its default directories). `not_found` is the namespace's own search's error, which a
    /// failure extends with the system linker's.
    pub(crate) fn find(name: &str, not_found: Error) -> Result<SystemOpened> {
        let lib = crate::executor::load_system_library(name)
            .map_err(|msg| not_found.and_detail(&format!("nor by the system linker: {msg}")))?;
        Self::loaded(lib, name)
    }

    /// The library the system linker loaded for the bare soname `name` (found by its own
    /// search).
    pub(crate) fn loaded(lib: SystemLibrary, name: &str) -> Result<SystemOpened> {
        let path = lib.path().unwrap_or_else(|| name.to_owned());
        let plan = crate::library::plan(&Source::Path(path.clone().into()), crate::library::page_size())?;
        let bias = lib.bias().unwrap_or(0);
        let (soname, needed) = names(bias, Path::new(&path));
        Ok(SystemOpened { lib, path, plan, bias, soname, needed })
    }

    /// The file name.
    pub(crate) fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Run-time `(start, len)` of the mapped span, from the plan.
    pub(crate) fn span(&self) -> (u64, u64) {
        let start = self.plan.segments.first().map_or(0, |s| s.map_vaddr);
        let end = self.plan.segments.iter().map(|s| s.map_end()).max().unwrap_or(start);
        (self.bias.wrapping_add(start), end - start)
    }

    /// The error of a question only mmkit's own mappings answer.
    pub(crate) fn not_mapped_by_mmkit(&self, what: &str) -> Error {
        Error::new(
            what.to_owned(),
            ErrorKind::DependencyNotFound,
            "the system linker mapped this system library (the namespace's system policy), not mmkit",
        )
        .with_path(&self.path)
    }
}

/// `DT_SONAME` and the `DT_NEEDED` names of the library glibc loaded at `bias` from `path`:
/// from glibc's copy, else from the file.
fn names(bias: u64, path: &Path) -> (Option<String>, Vec<String>) {
    crate::process_scope::loaded_dynamic_names(bias).unwrap_or_else(|| dynamic_names(path))
}

/// `DT_SONAME` and the `DT_NEEDED` names, from the file's dynamic section (empty if it cannot
/// be read: glibc loaded it, so these are informational).
fn dynamic_names(path: &Path) -> (Option<String>, Vec<String>) {
    let mut needed = Vec::new();
    let mut soname = None;
    let Ok(data) = std::fs::read(path) else { return (soname, needed) };
    let data = &data[..];
    let Ok(header) = elf::FileHeader64::<LE>::parse(data) else { return (soname, needed) };
    let Ok(endian) = header.endian() else { return (soname, needed) };
    let Ok(sections) = header.sections(endian, data) else { return (soname, needed) };
    let Ok(Some((dyns, link))) = sections.dynamic(endian, data) else { return (soname, needed) };
    let Ok(strings) = sections.strings(endian, data, link) else { return (soname, needed) };
    for d in dyns {
        let text = || d.string(endian, strings).ok().map(|s| String::from_utf8_lossy(s).into_owned());
        match d.tag32(endian) {
            Some(elf::DT_NULL) => break,
            Some(elf::DT_NEEDED) => needed.extend(text()),
            Some(elf::DT_SONAME) => soname = text(),
            _ => {}
        }
    }
    (soname, needed)
}
