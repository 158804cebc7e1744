//! TCP sequence numbers: a `u32` newtype whose comparisons wrap around 2^32 (RFC 793 / smoltcp's
//! `SeqNumber`). `a < b` means "b is ahead of a by less than 2^31".

use std::cmp::Ordering;

/// A TCP sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// `self` moved forward by `n` bytes (wrapping).
    pub fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }

    /// Signed distance from `other` to `self`: positive when `self` is ahead.
    pub fn distance_from(self, other: SeqNumber) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.distance_from(*other).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_the_wrap() {
        let before = SeqNumber(u32::MAX - 10);
        let after = before.wrapping_add(20);
        assert_eq!(after.0, 9);
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after.distance_from(before), 20);
        assert_eq!(before.distance_from(after), -20);
    }

    #[test]
    fn equal_numbers_are_equal() {
        assert_eq!(SeqNumber(7).partial_cmp(&SeqNumber(7)), Some(Ordering::Equal));
    }
}
