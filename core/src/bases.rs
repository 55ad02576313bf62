//! Delta bases, as the markers under `bases/` name them: which blob each delta needs.
//!
//! A delta blob (codec tag 2) cannot be decoded without its base, which may be a blob no
//! snapshot references any more. Garbage collection, verification and store statistics
//! must therefore follow the base of every blob they keep or count, and a store can be far
//! too large to read every blob to find out. So each delta has a marker whose *key* alone
//! says `bases/<id[..2]>/<id>.<base>` (see [`crate::store::marker_key`]), written before the
//! blob: listing `bases/` (256 listings, one per first byte, as for `blobs/`) yields every
//! relation. A crash between the two writes leaves a marker without its blob, which
//! garbage collection removes; never a delta without its marker.
//!
//! The [`DeltaMap`] holds every relation as a pair of ids (64 bytes each), sorted.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::BlobId;
use crate::store::{marker_of_key, Backend, Store};

/// Every `(delta, base)` relation of a store, from its markers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaMap {
    /// Sorted and without duplicates.
    pairs: Vec<(BlobId, BlobId)>,
}

impl DeltaMap {
    /// Lists the markers of `store`. Keys under `bases/` that are not marker keys are
    /// ignored.
    pub async fn load<B: Backend>(store: &Store<B>) -> Result<Self> {
        let mut pairs = Vec::new();
        for first in 0..=255u8 {
            pairs.extend(
                store
                    .list_markers(first)
                    .await?
                    .iter()
                    .filter_map(|e| marker_of_key(&e.key)),
            );
        }
        Ok(Self::from_pairs(pairs))
    }

    /// A map of the given `(delta, base)` relations.
    pub fn from_pairs(mut pairs: Vec<(BlobId, BlobId)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup();
        DeltaMap { pairs }
    }

    /// Relations (markers) held.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no blob is a delta.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn of(&self, id: &BlobId) -> &[(BlobId, BlobId)] {
        let start = self.pairs.partition_point(|(d, _)| d < id);
        let end = start + self.pairs[start..].partition_point(|(d, _)| d == id);
        &self.pairs[start..end]
    }

    /// The bases markers name for `id`: none for a standalone blob, one for a delta (more
    /// only if writers raced to store the same blob against different bases).
    pub fn bases(&self, id: &BlobId) -> impl Iterator<Item = &BlobId> + '_ {
        self.of(id).iter().map(|(_, b)| b)
    }

    /// Whether a marker says that `id` is a delta against `base`.
    pub fn contains(&self, id: &BlobId, base: &BlobId) -> bool {
        self.pairs.binary_search(&(*id, *base)).is_ok()
    }

    /// Whether a marker names `id` as a delta.
    pub fn is_delta(&self, id: &BlobId) -> bool {
        !self.of(id).is_empty()
    }

    /// Every `(delta, base)` relation of the deltas whose id starts with the byte `first`.
    pub fn with_first_byte(&self, first: u8) -> &[(BlobId, BlobId)] {
        let start = self.pairs.partition_point(|(d, _)| d.as_bytes()[0] < first);
        let end = start + self.pairs[start..].partition_point(|(d, _)| d.as_bytes()[0] == first);
        &self.pairs[start..end]
    }

    /// Every blob a marker names as a delta, once each.
    pub fn deltas(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(i, (d, _))| *i == 0 || self.pairs[i - 1].0 != *d)
            .map(|(_, (d, _))| *d)
    }

    /// Visits every blob decoding `id` needs: its base, the base's base, and so on, each
    /// once (markers are followed however deep they go: what they say is kept, never cut).
    pub fn for_each_base(&self, id: &BlobId, mut visit: impl FnMut(&BlobId)) {
        if !self.is_delta(id) {
            return;
        }
        let mut seen = HashSet::from([*id]);
        let mut stack = vec![*id];
        while let Some(next) = stack.pop() {
            for base in self.bases(&next) {
                if seen.insert(*base) {
                    visit(base);
                    stack.push(*base);
                }
            }
        }
    }

    /// `ids` ordered so that every delta comes before its bases (the longest chain of
    /// markers below a blob first), the order in which deltas can be deleted without ever
    /// leaving one whose base is gone.
    pub fn dependents_first(&self, mut ids: Vec<BlobId>) -> Vec<BlobId> {
        let mut memo = HashMap::new();
        let mut keyed: Vec<(u32, BlobId)> = ids
            .drain(..)
            .map(|id| (self.height(&id, &mut memo), id))
            .collect();
        keyed.sort_unstable_by(|a, b| b.cmp(a));
        keyed.into_iter().map(|(_, id)| id).collect()
    }

    /// The length of the longest chain of markers below `id`. A cycle (which only forged
    /// markers can make: ids are hashes) counts as ending where it closes.
    fn height(&self, id: &BlobId, memo: &mut HashMap<BlobId, u32>) -> u32 {
        if let Some(h) = memo.get(id) {
            return *h;
        }
        memo.insert(*id, 0);
        let mut height = 0;
        for base in self.of(id).iter().map(|(_, b)| *b) {
            height = height.max(1 + self.height(&base, memo));
        }
        memo.insert(*id, height);
        height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId::of(&[n])
    }

    #[test]
    fn bases_are_followed_transitively_once_each() {
        // 4 → 3 → 2 → 1, and 5 → 3 (two deltas of one base); 9 raced: two bases.
        let map = DeltaMap::from_pairs(vec![
            (id(4), id(3)),
            (id(3), id(2)),
            (id(2), id(1)),
            (id(5), id(3)),
            (id(9), id(1)),
            (id(9), id(2)),
            (id(4), id(3)),
        ]);
        assert_eq!(map.len(), 6);
        assert_eq!(map.bases(&id(4)).collect::<Vec<_>>(), [&id(3)]);
        assert!(map.contains(&id(3), &id(2)) && !map.contains(&id(2), &id(3)));
        assert!(map.is_delta(&id(2)) && !map.is_delta(&id(1)));
        let mut seen = Vec::new();
        map.for_each_base(&id(4), |b| seen.push(*b));
        assert_eq!(seen, [id(3), id(2), id(1)]);
        let mut seen = HashSet::new();
        map.for_each_base(&id(9), |b| assert!(seen.insert(*b)));
        assert_eq!(seen, HashSet::from([id(1), id(2)]));
        map.for_each_base(&id(1), |_| panic!("a standalone blob needs nothing"));
        assert_eq!(map.deltas().count(), 5);

        let order = map.dependents_first(vec![id(1), id(2), id(3), id(4), id(5)]);
        let pos = |n: u8| order.iter().position(|x| *x == id(n)).unwrap();
        assert!(pos(4) < pos(3) && pos(5) < pos(3) && pos(3) < pos(2) && pos(2) < pos(1));
    }

    #[test]
    fn forged_cycles_end() {
        let map = DeltaMap::from_pairs(vec![(id(1), id(2)), (id(2), id(1)), (id(2), id(3))]);
        let mut seen = Vec::new();
        map.for_each_base(&id(1), |b| seen.push(*b));
        seen.sort();
        let mut expected = vec![id(2), id(3)];
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!(map.dependents_first(vec![id(1), id(2)]).len(), 2);
    }

    #[test]
    fn relations_are_grouped_by_first_byte() {
        let ids: Vec<BlobId> = (0..50).map(id).collect();
        let map = DeltaMap::from_pairs(ids.windows(2).map(|w| (w[0], w[1])).collect());
        let total: usize = (0..=255u8).map(|b| map.with_first_byte(b).len()).sum();
        assert_eq!(total, 49);
        for b in 0..=255u8 {
            assert!(map
                .with_first_byte(b)
                .iter()
                .all(|(d, _)| d.as_bytes()[0] == b));
        }
    }
}
