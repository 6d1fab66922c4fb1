//! Expanding paths into the regular files to look at, as `vmtouch` does.

#![deny(unsafe_code)]

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// A regular file found by [`collect_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its path (as given, or joined under a given directory).
    pub path: PathBuf,
    /// Its size in bytes when it was found.
    pub len: u64,
}

/// Expands `paths` into regular files: directories recursively (sorted by name), each inode
/// once (hard links count once, like `vmtouch` without `-h`; so does a file or directory met
/// twice: given twice, through a link, or given and also inside another given directory).
///
/// A symbolic link given as an argument is followed; links met inside directories are not (so
/// trees are walked as `vmtouch` walks them, without loops). Paths that cannot be read, and
/// arguments that are neither regular files nor directories, become errors in the second list
/// while the walk goes on.
///
/// The lists grow with the tree; [`walk_files`] hands each file on as it is found instead.
pub fn collect_files<P: AsRef<Path>>(paths: &[P]) -> (Vec<FileEntry>, Vec<Error>) {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    walk_files(paths, &mut |found| match found {
        Ok(f) => files.push(f),
        Err(e) => errors.push(e),
    });
    (files, errors)
}

/// Walks `paths` as [`collect_files`] does, calling `found` with each regular file (or error) in
/// order as it is met. Memory stays bounded by the depth of the tree and the largest directory
/// (plus the inodes of the arguments and of files with several hard links, to count each once),
/// however many files there are.
pub fn walk_files<P: AsRef<Path>>(paths: &[P], found: &mut dyn FnMut(Result<FileEntry, Error>)) {
    let stats: Vec<std::io::Result<Metadata>> = paths.iter().map(|p| std::fs::metadata(p.as_ref())).collect();
    let mut walk = Walk { found, seen: HashSet::new(), given_files: HashSet::new(), given_dirs: Default::default() };
    // The arguments' inodes: a file given is counted once however else it is met, and a
    // directory given is walked once, whether given again or met inside another.
    for meta in stats.iter().flatten() {
        let key = (meta.dev(), meta.ino());
        if meta.is_dir() {
            walk.given_dirs.insert(key, false);
        } else if meta.is_file() {
            walk.given_files.insert(key);
        }
    }
    for (p, meta) in paths.iter().zip(stats) {
        let p = p.as_ref();
        match meta {
            Ok(meta) if meta.is_dir() => {
                if walk.first_walk_of(&meta) {
                    walk.dir(p)
                }
            }
            Ok(meta) if meta.is_file() => walk.file(p.to_owned(), &meta),
            Ok(meta) => (walk.found)(Err(not_regular(p, meta.file_type()))),
            Err(e) => (walk.found)(Err(Error::from_io("stat", &e).with_path(p))),
        }
    }
}

struct Walk<'a> {
    found: &'a mut dyn FnMut(Result<FileEntry, Error>),
    seen: HashSet<(u64, u64)>,
    /// The regular files among the arguments.
    given_files: HashSet<(u64, u64)>,
    /// The directories among the arguments, and whether each was walked yet.
    given_dirs: std::collections::HashMap<(u64, u64), bool>,
}

impl Walk<'_> {
    fn file(&mut self, path: PathBuf, meta: &Metadata) {
        let key = (meta.dev(), meta.ino());
        if (meta.nlink() > 1 || self.given_files.contains(&key)) && !self.seen.insert(key) {
            return;
        }
        (self.found)(Ok(FileEntry { path, len: meta.len() }));
    }

    /// Whether the directory `meta` describes is to be walked now: any directory not given as
    /// an argument, and a given one the first time it is met.
    fn first_walk_of(&mut self, meta: &Metadata) -> bool {
        match self.given_dirs.get_mut(&(meta.dev(), meta.ino())) {
            Some(walked) => !std::mem::replace(walked, true),
            None => true,
        }
    }

    fn dir(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return (self.found)(Err(Error::from_io("opendir", &e).with_path(dir))),
        };
        // Read whole (and closed) before going down: one descriptor at a time, whatever the depth.
        // Names and types only: a `DirEntry` keeps its directory's descriptor open (it stats
        // through it), so entries kept while walking a subtree held one descriptor per level.
        let mut entries: Vec<(PathBuf, std::fs::FileType)> = entries
            .filter_map(|e| match e {
                Ok(e) => Some((e.path(), e.file_type().ok()?)),
                Err(err) => {
                    (self.found)(Err(Error::from_io("readdir", &err).with_path(dir)));
                    None
                }
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, ft) in entries {
            if ft.is_dir() {
                // A directory also given as an argument is walked once (a stat each only when
                // one was given besides the one being walked).
                let walk = self.given_dirs.len() < 2
                    || std::fs::symlink_metadata(&path).map_or(true, |meta| self.first_walk_of(&meta));
                if walk {
                    self.dir(&path);
                }
            } else if ft.is_file() {
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) => self.file(path, &meta),
                    Err(err) => (self.found)(Err(Error::from_io("stat", &err).with_path(path))),
                }
            }
            // Symbolic links, sockets, pipes and devices inside directories are skipped.
        }
    }
}

/// A path given that is neither a file nor a directory, named for what it is, as
/// [`crate::open`] names it (`not a regular file or directory: a FIFO`).
fn not_regular(p: &Path, ft: std::fs::FileType) -> Error {
    Error::new("residency", ErrorKind::InvalidArgument)
        .with_path(p)
        .with_detail(format!("not a regular file or directory: {}", crate::open::file_type_name(ft)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_dirs_dedups_hard_links_and_skips_inner_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one"), b"1").unwrap();
        std::fs::write(root.join("a/b/two with space"), b"22").unwrap();
        std::fs::hard_link(root.join("a/one"), root.join("a/b/one-link")).unwrap();
        std::os::unix::fs::symlink(root.join("a/one"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();

        let (files, errors) = collect_files(&[root]);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = files.iter().map(|f| f.path.strip_prefix(root).unwrap().to_owned()).collect();
        assert_eq!(names, vec![PathBuf::from("a/b/one-link"), PathBuf::from("a/b/two with space")]);
        assert_eq!(files[1].len, 2);

        // A symlink given explicitly is followed; a missing path is an error, the rest goes on.
        let (files, errors) = collect_files(&[root.join("a/link"), root.join("nope")]);
        assert_eq!(files.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].errno(), Some(libc::ENOENT));
        let (_, errors) = collect_files(&["/dev/null"]);
        assert_eq!(errors[0].kind(), ErrorKind::InvalidArgument);

        // walk_files meets the same files, in the same order, as they are found.
        let mut met = Vec::new();
        walk_files(&[root], &mut |f| met.push(f.unwrap().path));
        assert_eq!(met, collect_files(&[root]).0.into_iter().map(|f| f.path).collect::<Vec<_>>());
    }

    /// Regression (outside review): only files with several hard links were counted once; a
    /// path given twice, a file and a link to it, or a directory and its subdirectory counted
    /// their files twice, although the walk promised each inode once.
    #[test]
    fn an_inode_met_twice_through_the_arguments_counts_once() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("w/x")).unwrap();
        std::fs::write(root.join("top"), b"1").unwrap();
        std::fs::write(root.join("w/a"), b"22").unwrap();
        std::fs::write(root.join("w/x/b"), b"333").unwrap();
        std::os::unix::fs::symlink(root.join("top"), root.join("top-link")).unwrap();
        let count = |paths: &[PathBuf]| {
            let (files, errors) = collect_files(paths);
            assert!(errors.is_empty(), "{errors:?}");
            files.len()
        };
        assert_eq!(count(&[root.join("top"), root.join("top")]), 1);
        assert_eq!(count(&[root.join("top"), root.join("top-link")]), 1);
        assert_eq!(count(&[root.to_owned(), root.to_owned()]), 3);
        assert_eq!(count(&[root.to_owned(), root.join("w")]), 3);
        assert_eq!(count(&[root.join("w/x"), root.to_owned()]), 3);
        assert_eq!(count(&[root.join("w/x/b"), root.join("w")]), 2);
        // The order is the arguments': a subdirectory given first is walked first.
        let (files, _) = collect_files(&[root.join("w/x"), root.join("w")]);
        assert_eq!(files[0].path, root.join("w/x/b"));
        assert_eq!(files[1].path, root.join("w/a"));
    }
}
