//! Turning what a user typed (an id, a unique id prefix or a name) into one snapshot.

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::record::SnapshotRecord;

/// Shortest id prefix (hex digits after `snap_`) accepted, so that a typo does not silently
/// match some snapshot.
pub const MIN_PREFIX: usize = 4;

/// Finds the one snapshot `reference` names. Ids come first: a full id or a unique id
/// prefix (at least [`MIN_PREFIX`] hex digits, with or without `snap_`, in either case).
/// Only when no id matches is `reference` taken as an exact name: new names cannot look
/// like ids (see [`crate::SnapshotName`]), but older stores may hold such names, and they
/// still resolve this way. A prefix that matches several ids is ambiguous unless a
/// snapshot has exactly that name.
pub fn resolve<'a>(records: &'a [SnapshotRecord], reference: &str) -> Result<&'a SnapshotRecord> {
    let lower = reference.to_ascii_lowercase();
    let hex = lower.strip_prefix(SnapshotId::PREFIX).unwrap_or(&lower);
    let is_hex = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    let mut ambiguous = None;
    if is_hex && hex.len() >= MIN_PREFIX {
        let matches: Vec<&SnapshotRecord> = records
            .iter()
            .filter(|r| r.id.hex().starts_with(hex))
            .collect();
        match matches.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                ambiguous = Some(Error::Ambiguous {
                    prefix: reference.to_owned(),
                    candidates: many.iter().map(|r| r.label()).collect(),
                })
            }
        }
    }
    if let Some(r) = records
        .iter()
        .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == reference))
    {
        return Ok(r);
    }
    if let Some(e) = ambiguous {
        return Err(e);
    }
    if is_hex && hex.len() < MIN_PREFIX {
        return Err(Error::PrefixTooShort {
            reference: reference.to_owned(),
            min: MIN_PREFIX,
        });
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
    use crate::record::{Origin, SnapshotName, SnapshotStats, SourceInfo};
    use time::OffsetDateTime;

    fn rec(id: [u8; 6], name: Option<&str>) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
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
    fn ids_and_prefixes_match_in_either_case_and_short_prefixes_say_why() {
        let records = vec![rec([0xea, 0xc1, 0x05, 0, 0, 0], None)];
        for upper in ["EAC1", "eAc105", "SNAP_EAC105000000", "Snap_eac1"] {
            assert_eq!(
                resolve(&records, upper).unwrap().id,
                records[0].id,
                "{upper}"
            );
        }
        for short in ["eac", "EA", "snap_eac"] {
            let e = resolve(&records, short).unwrap_err();
            assert!(matches!(e, Error::PrefixTooShort { .. }), "{short}: {e}");
            assert!(e.is_not_found());
            assert!(e.to_string().contains("at least 4 hex digits"), "{e}");
        }
    }

    #[test]
    fn an_id_prefix_wins_over_a_name_shaped_like_it() {
        // Names like this cannot be made any more, but an older store may hold one.
        let mut legacy = rec([0x49, 0x17, 0, 0, 0, 1], None);
        legacy.name = Some(SnapshotName::stored("4917").unwrap());
        let mut records = vec![rec([0x49, 0x17, 0xe0, 0x11, 0xae, 0xe7], None), legacy];
        // "4917" is a prefix of both ids; the exact name settles it.
        assert_eq!(resolve(&records, "4917").unwrap().id, records[1].id);
        // "4917e" is a prefix of one id only: the id wins.
        assert_eq!(resolve(&records, "4917e").unwrap().id, records[0].id);
        // With no id starting so, the old name still resolves.
        records[0] = rec([0x12, 0x34, 0, 0, 0, 0], None);
        records[1].id = SnapshotId::from_random([0xff; 6]);
        assert_eq!(resolve(&records, "4917").unwrap().id, records[1].id);
        // And a unique prefix beats any name.
        records[0].name = Some(SnapshotName::stored("ffff").unwrap());
        assert_eq!(resolve(&records, "ffff").unwrap().id, records[1].id);
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
