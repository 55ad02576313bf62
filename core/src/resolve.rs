//! Turning what a user typed (an id, a unique id prefix or a name) into one snapshot.

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::record::SnapshotRecord;

/// Shortest id prefix (hex digits after `snap_`) accepted, so that a typo does not silently
/// match some snapshot.
pub const MIN_PREFIX: usize = 4;

/// Finds the one snapshot `reference` names: an exact id, then an exact name, then a unique
/// id prefix (with or without `snap_`, at least [`MIN_PREFIX`] hex digits).
pub fn resolve<'a>(records: &'a [SnapshotRecord], reference: &str) -> Result<&'a SnapshotRecord> {
    if let Ok(id) = reference.parse::<SnapshotId>() {
        if let Some(r) = records.iter().find(|r| r.id == id) {
            return Ok(r);
        }
    }
    if let Some(r) = records
        .iter()
        .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == reference))
    {
        return Ok(r);
    }
    let hex = reference
        .strip_prefix(SnapshotId::PREFIX)
        .unwrap_or(reference);
    let is_hex = hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    if is_hex && hex.len() >= MIN_PREFIX {
        let matches: Vec<&SnapshotRecord> = records
            .iter()
            .filter(|r| r.id.hex().starts_with(hex))
            .collect();
        match matches.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                return Err(Error::Ambiguous {
                    prefix: reference.to_owned(),
                    candidates: many.iter().map(|r| r.label()).collect(),
                })
            }
        }
    }
    Err(Error::SnapshotNotFound {
        reference: reference.to_owned(),
    })
}

/// Refuses a name that another snapshot already has.
pub fn check_name_free(records: &[SnapshotRecord], name: &str) -> Result<()> {
    match records
        .iter()
        .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == name))
    {
        Some(r) => Err(Error::AlreadyExists {
            name: name.to_owned(),
            id: r.id.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::record::{Origin, SnapshotStats, SourceInfo};
    use time::OffsetDateTime;

    fn rec(id: [u8; 6], name: Option<&str>) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            id: SnapshotId::from_random(id),
            name: name.map(|n| n.parse().unwrap()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            root: BlobId::of(b""),
            pinned: false,
            origin: Origin::Manual,
            labels: Default::default(),
            source: SourceInfo::default(),
            stats: SnapshotStats::default(),
        }
    }

    #[test]
    fn resolves_ids_names_and_unique_prefixes() {
        let records = vec![
            rec([0xab, 0xcd, 0x01, 0, 0, 0], Some("clean-state")),
            rec([0xab, 0xcd, 0x02, 0, 0, 0], None),
            rec([0x12, 0x34, 0, 0, 0, 0], Some("before-migration")),
        ];
        assert_eq!(
            resolve(&records, "snap_abcd01000000").unwrap().id,
            records[0].id
        );
        assert_eq!(
            resolve(&records, "before-migration").unwrap().id,
            records[2].id
        );
        assert_eq!(resolve(&records, "1234").unwrap().id, records[2].id);
        assert_eq!(resolve(&records, "snap_abcd02").unwrap().id, records[1].id);
        let amb = resolve(&records, "abcd").unwrap_err();
        assert!(
            matches!(amb, Error::Ambiguous { ref candidates, .. } if candidates.len() == 2),
            "{amb}"
        );
        assert!(resolve(&records, "nope").unwrap_err().is_not_found());
        assert!(
            resolve(&records, "ab").unwrap_err().is_not_found(),
            "too short a prefix"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let records = vec![rec([1; 6], Some("clean-state"))];
        assert!(matches!(
            check_name_free(&records, "clean-state"),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(check_name_free(&records, "other").is_ok());
    }
}
