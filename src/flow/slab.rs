//! A slab of values in fixed-size pages: stable slots, free-slot reuse, and growth one page at a
//! time, so a table of a million connections never holds an old and a new array at once (a
//! doubling `Vec` briefly needs three times its size).

/// Slots per page.
const PAGE: usize = 4096;

/// Values addressed by slot number.
pub struct PagedSlab<T> {
    pages: Vec<Box<[Option<T>]>>,
    /// Free slots (as `u32`: a table never holds 2^32 connections).
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for PagedSlab<T> {
    fn default() -> Self {
        PagedSlab { pages: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> PagedSlab<T> {
    /// Stores `value` in a free slot and returns the slot.
    pub fn insert(&mut self, value: T) -> usize {
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                let slot = self.pages.len() * PAGE;
                assert!(slot + PAGE <= u32::MAX as usize, "a slab holds fewer than 2^32 values");
                self.pages.push((0..PAGE).map(|_| None).collect());
                self.free.extend((slot + 1..slot + PAGE).rev().map(|s| s as u32));
                slot
            }
        };
        self.pages[slot / PAGE][slot % PAGE] = Some(value);
        self.len += 1;
        slot
    }

    /// Takes the value out of `slot`, freeing it.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let value = self.pages.get_mut(slot / PAGE)?[slot % PAGE].take()?;
        self.free.push(slot as u32);
        self.len -= 1;
        Some(value)
    }

    pub fn get(&self, slot: usize) -> Option<&T> {
        self.pages.get(slot / PAGE)?[slot % PAGE].as_ref()
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.pages.get_mut(slot / PAGE)?[slot % PAGE].as_mut()
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored value with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.pages
            .iter()
            .enumerate()
            .flat_map(|(p, page)| page.iter().enumerate().filter_map(move |(i, v)| Some((p * PAGE + i, v.as_ref()?))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_reused() {
        let mut s = PagedSlab::default();
        let slots: Vec<usize> = (0..10_000).map(|i| s.insert(i)).collect();
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.get(slots[5000]), Some(&5000));
        assert_eq!(s.remove(slots[7]), Some(7));
        assert_eq!(s.remove(slots[7]), None);
        assert_eq!(s.get(slots[7]), None);
        let again = s.insert(42);
        assert_eq!(again, slots[7], "a freed slot is reused first");
        *s.get_mut(again).unwrap() += 1;
        assert_eq!(s.get(again), Some(&43));
        assert_eq!(s.iter().count(), 10_000);
        assert_eq!(s.get(usize::MAX), None);
    }
}
