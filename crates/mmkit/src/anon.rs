//! Anonymous memory: zero-filled maps, private or shared across `fork`.

#![deny(unsafe_code)]

use crate::error::Result;
use crate::file::MmapMut;
use crate::mapping::{Backing, Mapping};
use crate::options::{MapOptions, Protection};

impl MapOptions {
    /// Maps zero-filled anonymous memory of [`len`](MapOptions::len) bytes: private by default
    /// ([`Sharing::Private`](crate::Sharing::Private) is implied unless `Shared` was set
    /// explicitly, in which case a forked child shares it).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut mem = mmkit::MapOptions::new().len(1 << 20).name("demo").map_anon()?;
    /// assert!(mem.iter().all(|&b| b == 0));
    /// mem[4096] = 1;
    /// # Ok(()) }
    /// ```
    pub fn map_anon(&self) -> Result<MmapMut> {
        let mut opts = self.clone();
        if !self.sharing_set {
            opts.sharing = crate::Sharing::Private;
        }
        let map = Mapping::new_anon(&opts, Protection::READ_WRITE)?;
        Ok(MmapMut::from_mapping(map))
    }
}

impl Mapping {
    pub(crate) fn new_anon(opts: &MapOptions, default_prot: Protection) -> Result<Mapping> {
        #[allow(unsafe_code)]
        // SAFETY: anonymous memory has no file to be truncated or modified by others.
        unsafe {
            Mapping::new(opts, Backing::Anonymous, default_prot)
        }
    }
}
