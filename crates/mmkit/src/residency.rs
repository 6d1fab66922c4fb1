//! [`Residency`]: which pages of a file, a mapping or a byte range were resident, one bit per
//! page ([`PageBitmap`]).
//!
//! One type answers every residency question mmkit asks `mincore(2)`:
//! [`Mapping::residency`](crate::Mapping::residency) (a byte range of a mapping, and the faces
//! that forward it), [`inspect::residency`](crate::inspect::residency) (a file, mapped in
//! windows) and [`inspect::residency_of_mapping`](crate::inspect::residency_of_mapping). The
//! bitmap is packed, so a terabyte file costs 32 MiB of bits, not a byte per page.

#![deny(unsafe_code)]

use std::ops::Range;

/// Pages per `mincore` call when residency is counted over a range of this process: the
/// byte-per-page buffer the kernel fills is at most this long (64 KiB), whatever the range.
pub(crate) const MINCORE_WINDOW_PAGES: usize = 1 << 16;

/// One bit per page: set when the page was resident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageBitmap {
    words: Vec<u64>,
    pages: u64,
}

impl PageBitmap {
    /// A bitmap of `pages` pages, none resident.
    ///
    /// # Panics
    /// When the bitmap (a bit per page) cannot be allocated: `pages` past what the address
    /// space holds panics, and an allocation the system refuses aborts, as for any `Vec`. Use
    /// [`PageBitmap::try_new`] for a page count that comes from outside (a file's size).
    pub fn new(pages: u64) -> Self {
        let words = usize::try_from(pages.div_ceil(64)).expect("bitmap fits in memory");
        PageBitmap { words: vec![0; words], pages }
    }

    /// A bitmap of `pages` pages, none resident, or `None` when there is no memory for it
    /// (the bitmap of a sparse file of exabytes would be hundreds of terabytes: an allocation
    /// failure would abort the process).
    ///
    /// ```
    /// use mmkit::inspect::PageBitmap;
    ///
    /// let b = PageBitmap::try_new(1 << 20).expect("128 KiB of bits");
    /// assert_eq!((b.len(), b.count()), (1 << 20, 0));
    /// assert!(PageBitmap::try_new(u64::MAX).is_none());
    /// ```
    pub fn try_new(pages: u64) -> Option<Self> {
        let words = usize::try_from(pages.div_ceil(64)).ok()?;
        // Asks whether the memory can be had, then takes it zeroed: `vec![0; n]` allocates
        // with `alloc_zeroed`, which a large bitmap gets as fresh zero pages from the kernel
        // (no page written until a bit is set: the bitmap of a sparse 64 TiB file, 2 GiB, stays
        // out of RAM), where filling a reserved vector would write every byte.
        Vec::<u64>::new().try_reserve_exact(words).ok()?;
        Some(PageBitmap { words: vec![0; words], pages })
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

    /// Every page in order: `true` when it was resident.
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.pages).map(|p| self.get(p))
    }

    /// Sets bits from `mincore` output (bit 0 of each byte; the other bits are reserved)
    /// starting at page `first`; returns how many were resident.
    pub(crate) fn fill_from_mincore(&mut self, first: u64, vec: &[u8]) -> u64 {
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

/// Which pages of a file, a mapping or a byte range were resident when it was looked at.
///
/// Pages are counted from the page holding the first byte looked at: page 0 of a
/// [`Mapping::residency`](crate::Mapping::residency) answer is the page holding the range's
/// first byte.
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// let mut map = mmkit::MapOptions::new().len(4 * mmkit::page_size()).map_anon()?;
/// map[0] = 1;
/// let r = map.residency(..)?;
/// assert_eq!((r.resident_pages(), r.pages()), (1, 4));
/// assert_eq!(r.fraction(), 0.25);
/// assert!(r.is_resident(0) && !r.is_resident(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residency {
    page_size: u64,
    len: u64,
    resident: u64,
    bitmap: PageBitmap,
}

impl Residency {
    /// A residency of `len` bytes whose pages are `bitmap`, in pages of `page_size` bytes.
    pub(crate) fn from_bitmap(page_size: u64, len: u64, bitmap: PageBitmap) -> Self {
        let resident = bitmap.count();
        Residency { page_size, len, resident, bitmap }
    }

    /// A residency from one `mincore` vector covering all the pages of `len` bytes.
    #[cfg(test)]
    pub(crate) fn from_mincore(page_size: u64, len: u64, vec: &[u8]) -> Self {
        let mut bitmap = PageBitmap::new(vec.len() as u64);
        let resident = bitmap.fill_from_mincore(0, vec);
        Residency { page_size, len, resident, bitmap }
    }

    /// Page size the counts are in.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Length in bytes of what was looked at (the file size, the mapping's or the range's
    /// length).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether what was looked at was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total pages: every page holding a byte of what was looked at (`len` rounded up to whole
    /// pages when it starts on a page boundary, as a file does).
    pub fn pages(&self) -> u64 {
        self.bitmap.len()
    }

    /// Pages that were resident.
    pub fn resident_pages(&self) -> u64 {
        self.resident
    }

    /// Resident fraction of the pages, in `[0, 1]` (1 when there are no pages).
    pub fn fraction(&self) -> f64 {
        if self.pages() == 0 {
            1.0
        } else {
            self.resident as f64 / self.pages() as f64
        }
    }

    /// Whether page `page` was resident (false past the end).
    pub fn is_resident(&self, page: u64) -> bool {
        self.bitmap.get(page)
    }

    /// The per-page bitmap.
    pub fn bitmap(&self) -> &PageBitmap {
        &self.bitmap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fraction_counts_pages() {
        let r = Residency::from_mincore(4096, 3 * 4096, &[1, 0, 0x81]);
        assert_eq!((r.pages(), r.resident_pages(), r.len()), (3, 2, 3 * 4096));
        assert!((r.fraction() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.bitmap().iter().collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(Residency::from_mincore(4096, 0, &[]).fraction(), 1.0);
        assert_eq!(Residency::from_bitmap(4096, 0, PageBitmap::new(0)).resident_pages(), 0);
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
            prop_assert_eq!(b.iter().collect::<Vec<_>>(), bits.clone());
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
