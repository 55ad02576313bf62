//! Which chunks two versions of a table do not share, grouped into aligned runs.
//!
//! A chunk is named by the hash of its rows, so a chunk present on both sides is the same
//! run of rows on both sides: it cancels out. The rows that differ therefore all lie in
//! the chunks one side holds and the other does not. Counting chunk ids as a multiset
//! (a keyless table may hold the same chunk twice) finds those without reading a row.
//!
//! Both sides list their chunks in the table's order (primary key, or whole row text), so
//! the shared chunks appear in the same relative order on both sides and cut the unshared
//! ones into aligned [`Run`]s: a row of a keyed table that lies between the k-th and the
//! (k+1)-th shared chunk on one side can only be matched by a row between the same two
//! chunks on the other. Rows are then matched run by run, so memory is bounded by the
//! largest run, not by the table.

use std::collections::HashMap;

use crate::id::BlobId;
use crate::manifest::BlobRef;

/// Chunks held by one side only, between the same two shared chunks on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// Chunks only the `from` side holds, in table order.
    pub from: Vec<BlobRef>,
    /// Chunks only the `to` side holds, in table order.
    pub to: Vec<BlobRef>,
}

impl Run {
    /// Plain bytes of the run's chunks.
    pub fn bytes(&self) -> u64 {
        self.from.iter().chain(&self.to).map(|c| c.bytes).sum()
    }

    /// Number of chunks in the run.
    pub fn chunks(&self) -> usize {
        self.from.len() + self.to.len()
    }
}

/// The unshared chunks of two chunk lists, as aligned runs (empty runs left out).
///
/// If the shared chunks do not appear in the same order on both sides (which the table
/// order rules out, but a manifest is external data), all unshared chunks form one run:
/// still exact, only less bounded.
pub fn runs(from: &[BlobRef], to: &[BlobRef]) -> Vec<Run> {
    let shared = shared_counts(from, to);
    let (from_shared, from_marks) = mark(from, &shared);
    let (to_shared, to_marks) = mark(to, &shared);
    if from_shared != to_shared {
        let run = Run {
            from: unshared(from, &from_marks),
            to: unshared(to, &to_marks),
        };
        return if run.chunks() == 0 { vec![] } else { vec![run] };
    }
    let mut out = Vec::new();
    let mut current = Run::default();
    let (mut i, mut j) = (0, 0);
    loop {
        while i < from.len() && !from_marks[i] {
            current.from.push(from[i].clone());
            i += 1;
        }
        while j < to.len() && !to_marks[j] {
            current.to.push(to[j].clone());
            j += 1;
        }
        if current.chunks() > 0 {
            out.push(std::mem::take(&mut current));
        }
        if i >= from.len() && j >= to.len() {
            break;
        }
        // Both sides stand on the same shared chunk: step over it.
        i += 1;
        j += 1;
    }
    out
}

/// How many times each chunk id is shared (the smaller of its two counts).
fn shared_counts(from: &[BlobRef], to: &[BlobRef]) -> HashMap<BlobId, usize> {
    let mut to_counts: HashMap<BlobId, usize> = HashMap::new();
    for c in to {
        *to_counts.entry(c.id).or_default() += 1;
    }
    let mut shared: HashMap<BlobId, usize> = HashMap::new();
    for c in from {
        if let Some(n) = to_counts.get_mut(&c.id) {
            if *n > 0 {
                *n -= 1;
                *shared.entry(c.id).or_default() += 1;
            }
        }
    }
    shared
}

/// Marks the first `shared[id]` occurrences of each id as shared; returns the shared ids in
/// order and the marks.
fn mark(chunks: &[BlobRef], shared: &HashMap<BlobId, usize>) -> (Vec<BlobId>, Vec<bool>) {
    let mut left = shared.clone();
    let mut ids = Vec::new();
    let marks = chunks
        .iter()
        .map(|c| match left.get_mut(&c.id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                ids.push(c.id);
                true
            }
            _ => false,
        })
        .collect();
    (ids, marks)
}

fn unshared(chunks: &[BlobRef], marks: &[bool]) -> Vec<BlobRef> {
    chunks
        .iter()
        .zip(marks)
        .filter(|(_, &m)| !m)
        .map(|(c, _)| c.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> BlobRef {
        BlobRef::plain(BlobId::of(name.as_bytes()), 1, name.len() as u64)
    }

    fn names(refs: &[BlobRef], all: &[&str]) -> Vec<String> {
        refs.iter()
            .map(|r| {
                all.iter()
                    .find(|n| BlobId::of(n.as_bytes()) == r.id)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn equal_lists_have_no_runs() {
        let list: Vec<_> = ["a", "b", "c"].into_iter().map(c).collect();
        assert!(runs(&list, &list).is_empty());
        assert!(runs(&[], &[]).is_empty());
    }

    #[test]
    fn unshared_chunks_are_cut_at_shared_ones() {
        let all = ["a", "b", "b2", "c", "d", "d2", "d3", "e", "x"];
        let from: Vec<_> = ["a", "b", "c", "d", "e"].into_iter().map(c).collect();
        let to: Vec<_> = ["a", "b2", "c", "d2", "d3", "e", "x"]
            .into_iter()
            .map(c)
            .collect();
        let r = runs(&from, &to);
        let shown: Vec<_> = r
            .iter()
            .map(|r| (names(&r.from, &all), names(&r.to, &all)))
            .collect();
        assert_eq!(
            shown,
            vec![
                (vec!["b".to_string()], vec!["b2".to_string()]),
                (vec!["d".into()], vec!["d2".into(), "d3".into()]),
                (vec![], vec!["x".into()]),
            ]
        );
    }

    #[test]
    fn repeated_chunks_count_as_a_multiset() {
        let from: Vec<_> = ["a", "a", "a"].into_iter().map(c).collect();
        let to: Vec<_> = ["a"].into_iter().map(c).collect();
        let r = runs(&from, &to);
        assert_eq!(r.iter().map(|r| r.from.len()).sum::<usize>(), 2);
        assert_eq!(r.iter().map(|r| r.to.len()).sum::<usize>(), 0);
    }

    #[test]
    fn crossed_shared_chunks_make_one_run() {
        let from: Vec<_> = ["a", "x", "b"].into_iter().map(c).collect();
        let to: Vec<_> = ["b", "y", "a"].into_iter().map(c).collect();
        let r = runs(&from, &to);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].from.len(), r[0].to.len()), (1, 1));
    }
}
