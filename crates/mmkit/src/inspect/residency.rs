//! Page-cache residency of a file or a mapping, page by page (`mincore(2)`).

#![deny(unsafe_code)]

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::inspect::Window;

/// One bit per page: set when the page was resident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageBitmap {
    words: Vec<u64>,
    pages: u64,
}

impl PageBitmap {
    /// A bitmap of `pages` pages, none resident.
    pub fn new(pages: u64) -> Self {
        let words = usize::try_from(pages.div_ceil(64)).expect("bitmap fits in memory");
        PageBitmap { words: vec![0; words], pages }
    }

    /// Number of pages the bitmap covers.
    pub fn len(&self) -> u64 {
        self.pages
    }

    /// Whether the bitmap covers no page.
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// Whether page `page` was resident (false past the end).
    pub fn get(&self, page: u64) -> bool {
        page < self.pages && self.words[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    /// Marks page `page` resident. Panics past the end.
    pub fn set(&mut self, page: u64) {
        assert!(page < self.pages, "page {page} past the end ({})", self.pages);
        self.words[(page / 64) as usize] |= 1 << (page % 64);
    }

    /// Number of resident pages.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Sets bits from `mincore` output (bit 0 of each byte) starting at page `first`; returns
    /// how many were resident.
    fn fill_from_mincore(&mut self, first: u64, vec: &[u8]) -> u64 {
        let mut resident = 0;
        for (i, byte) in vec.iter().enumerate() {
            if byte & 1 != 0 {
                self.set(first + i as u64);
                resident += 1;
            }
        }
        resident
    }

    /// Runs of resident pages, as page ranges in increasing order.
    pub fn resident_ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut page = 0;
        std::iter::from_fn(move || {
            while page < self.pages && !self.get(page) {
                page += 1;
            }
            if page >= self.pages {
                return None;
            }
            let start = page;
            while page < self.pages && self.get(page) {
                page += 1;
            }
            Some(start..page)
        })
    }
}

/// Which pages of a file (or mapping) were in the page cache when it was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residency {
    page_size: u64,
    len: u64,
    resident: u64,
    bitmap: PageBitmap,
}

impl Residency {
    /// Page size the counts are in.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Length in bytes of what was looked at (the file size, or the mapping's length).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file or mapping was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total pages: `len` rounded up to whole pages.
    pub fn pages(&self) -> u64 {
        self.bitmap.len()
    }

    /// Pages that were in the page cache.
    pub fn resident_pages(&self) -> u64 {
        self.resident
    }

    /// Whether page `page` was resident.
    pub fn is_resident(&self, page: u64) -> bool {
        self.bitmap.get(page)
    }

    /// The per-page bitmap.
    pub fn bitmap(&self) -> &PageBitmap {
        &self.bitmap
    }
}

/// Residency of the file at `path`, page by page.
///
/// Maps the file read-only in windows of at most [`WINDOW`](super::WINDOW) bytes and asks
/// `mincore(2)`. An empty file has 0 pages. Looking does not change residency.
pub fn residency(path: impl AsRef<Path>) -> Result<Residency> {
    let path = path.as_ref();
    let file = open(path)?;
    residency_of_file(&file).map_err(|e| e.with_path(path))
}

/// Residency of an open file (see [`residency`]).
pub fn residency_of_file(file: &File) -> Result<Residency> {
    let len = regular_file_len(file)?;
    let page = crate::page::page_size() as u64;
    let pages = len.div_ceil(page);
    let mut bitmap = PageBitmap::new(pages);
    let window = super::WINDOW - super::WINDOW % page;
    let mut vec = vec![0u8; (window.min(pages * page) / page) as usize];
    let mut resident = 0;
    let mut offset = 0;
    while offset < len {
        let this = (len - offset).min(window);
        let this_pages = this.div_ceil(page) as usize;
        let w = Window::map(file, offset, this as usize).map_err(|e| Error::os("mmap", e).with_range(offset, this))?;
        w.mincore(&mut vec[..this_pages]).map_err(|e| Error::os("mincore", e).with_range(offset, this))?;
        resident += bitmap.fill_from_mincore(offset / page, &vec[..this_pages]);
        offset += this;
    }
    Ok(Residency { page_size: page, len, resident, bitmap })
}

/// Residency of the pages spanned by a mapping of this process, in the same form as a file's.
///
/// ([`Mapping::residency`](crate::Mapping::residency) answers the same question for a byte
/// range, as one `bool` per page.) An empty mapping has 0 pages.
pub fn residency_of_mapping(map: &crate::Mapping) -> Result<Residency> {
    let page = crate::page::page_size();
    if map.is_empty() {
        return Ok(Residency { page_size: page as u64, len: 0, resident: 0, bitmap: PageBitmap::new(0) });
    }
    let addr = map.as_ptr() as usize;
    let start = addr - addr % page;
    let span = (addr + map.len()).div_ceil(page) * page - start;
    let pages = span / page;
    let mut vec = vec![0u8; pages];
    crate::sys::inspect::mincore(start, span, &mut vec)
        .map_err(|e| Error::os("mincore", e).with_addr(start).with_range(0, map.len() as u64))?;
    let mut bitmap = PageBitmap::new(pages as u64);
    let resident = bitmap.fill_from_mincore(0, &vec);
    Ok(Residency { page_size: page as u64, len: map.len() as u64, resident, bitmap })
}

/// Opens `path` read-only, with the path in the error.
pub(crate) fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| io_error("open", e).with_path(path))
}

/// The size of a regular file; an error for directories, devices, pipes...
pub(crate) fn regular_file_len(file: &File) -> Result<u64> {
    let meta = file.metadata().map_err(|e| io_error("fstat", e))?;
    if !meta.is_file() {
        return Err(Error::new("residency", ErrorKind::InvalidArgument).with_detail("not a regular file"));
    }
    Ok(meta.len())
}

/// A `std::io::Error` from operation `op` as an mmkit [`Error`].
pub(crate) fn io_error(op: &'static str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::from_raw_errno(op, errno),
        None => Error::new(op, ErrorKind::InvalidArgument).with_detail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_file_has_no_pages() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let r = residency(f.path()).unwrap();
        assert_eq!((r.pages(), r.resident_pages(), r.len()), (0, 0, 0));
        assert!(r.is_empty());
    }

    #[test]
    fn directory_is_an_error_with_its_path() {
        let d = tempfile::tempdir().unwrap();
        let e = residency(d.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.path(), Some(d.path()));
        let e = residency(d.path().join("missing")).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    proptest! {
        #[test]
        fn bitmap_matches_a_bool_vector(bits in proptest::collection::vec(any::<bool>(), 0..300)) {
            let mut b = PageBitmap::new(bits.len() as u64);
            let vec: Vec<u8> = bits.iter().map(|&x| u8::from(x) | 0x80).collect();
            // High bits of mincore bytes are reserved and must be ignored.
            let vec: Vec<u8> = vec.iter().map(|v| if v & 1 == 1 { *v } else { 0x80 }).collect();
            let n = b.fill_from_mincore(0, &vec);
            prop_assert_eq!(n, bits.iter().filter(|x| **x).count() as u64);
            prop_assert_eq!(b.count(), n);
            for (i, x) in bits.iter().enumerate() {
                prop_assert_eq!(b.get(i as u64), *x);
            }
            prop_assert!(!b.get(bits.len() as u64));
            let from_ranges: u64 = b.resident_ranges().map(|r| r.end - r.start).sum();
            prop_assert_eq!(from_ranges, n);
            for r in b.resident_ranges() {
                prop_assert!(r.start < r.end);
                prop_assert!((r.start..r.end).all(|p| bits[p as usize]));
                prop_assert!(r.start == 0 || !bits[r.start as usize - 1]);
                prop_assert!(r.end as usize == bits.len() || !bits[r.end as usize]);
            }
        }
    }
}
