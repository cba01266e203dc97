//! The construction's large arrays (the codes and the level-0 lists, read at random all through
//! the build) in anonymous mappings advised to use transparent huge pages: once they outgrow
//! what the TLB covers with 4 KiB pages (a few MiB), every step of the insertion beam would
//! also wait on a page walk.

use crate::error::{Error, Result};
use memmap2::{MmapMut, MmapOptions};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A fixed-length array of `T` in its own anonymous mapping (page-aligned, zeroed).
pub(crate) struct Pages<T> {
    map: MmapMut,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: bytemuck::Pod> Pages<T> {
    /// `len` copies of `value`; an error when the memory cannot be mapped.
    pub fn filled(len: usize, value: T) -> Result<Self> {
        let unavailable = |why: String| {
            Error::Unavailable(format!(
                "no memory for {len} x {} bytes of the graph under construction: {why}",
                size_of::<T>()
            ))
        };
        let bytes = len.checked_mul(size_of::<T>());
        let bytes = bytes.ok_or_else(|| unavailable("too large".into()))?;
        let map = MmapOptions::new()
            .len(bytes.max(1))
            .map_anon()
            .map_err(|e| unavailable(e.to_string()))?;
        // Before the first touch, so that the faults themselves take huge pages. A hint: where
        // the kernel has none, the pages stay small and nothing else changes.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let mut pages = Pages {
            map,
            len,
            _t: PhantomData,
        };
        pages.fill(value);
        Ok(pages)
    }
}

impl<T: bytemuck::Pod> Deref for Pages<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        bytemuck::cast_slice(&self.map[..self.len * size_of::<T>()])
    }
}

impl<T: bytemuck::Pod> DerefMut for Pages<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut self.map[..self.len * size_of::<T>()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_what_is_written_and_may_be_empty() {
        let mut p = Pages::filled(3 << 20, u32::MAX).unwrap();
        assert_eq!(p.len(), 3 << 20);
        assert!(p.iter().all(|&x| x == u32::MAX));
        p[12345] = 7;
        assert_eq!(p.iter().filter(|&&x| x == 7).count(), 1);
        assert!(Pages::filled(0, 1u8).unwrap().is_empty());
        assert!(Pages::<u64>::filled(usize::MAX, 0).is_err());
    }
}
