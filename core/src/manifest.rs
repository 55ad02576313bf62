//! Manifests: what a snapshot is made of.
//!
//! A [`RootManifest`] names the schema blobs, one [`TableEntry`] per table and every
//! sequence's state. A table's chunks are listed by a tree of [`ManifestNode`]s: leaves
//! list chunks, branches list nodes, each at most [`FANOUT`] entries, so no single object
//! grows with the table. Nodes are stored like chunks, named by the hash of their encoding,
//! so two tables (or two snapshots) with the same rows share the same tree and the same root
//! id: comparing root ids compares contents.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// The format version written into root manifests and snapshot records.
pub const MANIFEST_FORMAT: u32 = 1;

/// Entries per manifest node.
pub const FANOUT: usize = 2048;

/// A reference to a stored blob with the totals below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob (a chunk or a manifest node).
    pub id: BlobId,
    /// Rows in the chunk, or in all chunks below the node.
    pub rows: u64,
    /// Plain bytes of the chunk, or of all chunks below the node.
    pub bytes: u64,
    /// Key of the first row below (see [`crate::row::key_text`]), for keyed tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Key of the last row below, for keyed tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

impl BlobRef {
    /// A reference without key bounds (schema text, root manifests).
    pub fn plain(id: BlobId, rows: u64, bytes: u64) -> Self {
        BlobRef {
            id,
            rows,
            bytes,
            first: None,
            last: None,
        }
    }
}

/// One node of a table's chunk tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ManifestNode {
    /// Chunks, in table order.
    Leaf { chunks: Vec<BlobRef> },
    /// Child nodes, in table order.
    Branch { children: Vec<BlobRef> },
}

/// A node ready to be stored: its id and its plain encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedNode {
    pub id: BlobId,
    pub plain: Vec<u8>,
}

impl ManifestNode {
    /// The canonical plain encoding (the bytes that are hashed and stored).
    pub fn encode(&self) -> EncodedNode {
        let plain = to_json(self);
        EncodedNode {
            id: BlobId::of(&plain),
            plain,
        }
    }

    /// Decodes a node from its plain bytes.
    pub fn decode(id: &BlobId, plain: &[u8]) -> Result<Self> {
        let node: ManifestNode = serde_json::from_slice(plain).map_err(|e| Error::Corrupt {
            id: *id,
            reason: format!("not a manifest node: {e}"),
        })?;
        let len = match &node {
            ManifestNode::Leaf { chunks } => chunks.len(),
            ManifestNode::Branch { children } => children.len(),
        };
        if len > FANOUT {
            return Err(Error::Corrupt {
                id: *id,
                reason: format!("manifest node has {len} entries, more than {FANOUT}"),
            });
        }
        Ok(node)
    }
}

/// Builds the chunk tree of a table from its chunks, in order.
///
/// Returns the root reference and every node to store (children before parents). An empty
/// table has a root leaf with no chunks.
pub fn build_tree(chunks: &[BlobRef]) -> (BlobRef, Vec<EncodedNode>) {
    let mut nodes = Vec::new();
    let mut level: Vec<BlobRef> = Vec::new();
    let leaves: Vec<&[BlobRef]> = if chunks.is_empty() {
        vec![&[]]
    } else {
        chunks.chunks(FANOUT).collect()
    };
    for part in leaves {
        let node = ManifestNode::Leaf {
            chunks: part.to_vec(),
        };
        level.push(push_node(&node, part, &mut nodes));
    }
    while level.len() > 1 {
        let mut next = Vec::new();
        for part in level.chunks(FANOUT) {
            let node = ManifestNode::Branch {
                children: part.to_vec(),
            };
            next.push(push_node(&node, part, &mut nodes));
        }
        level = next;
    }
    let root = level.swap_remove(0);
    (root, nodes)
}

fn push_node(node: &ManifestNode, part: &[BlobRef], nodes: &mut Vec<EncodedNode>) -> BlobRef {
    let encoded = node.encode();
    let r = BlobRef {
        id: encoded.id,
        rows: part.iter().map(|c| c.rows).sum(),
        bytes: part.iter().map(|c| c.bytes).sum(),
        first: part.first().and_then(|c| c.first.clone()),
        last: part.last().and_then(|c| c.last.clone()),
    };
    nodes.push(encoded);
    r
}

/// A schema-qualified name, as stored (not quoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

/// Dot-separated identifiers, plain or double-quoted (`""` for a quote, as `quote_ident`
/// prints them), at the start of `s`; the rest. A plain one ends at a dot or white space.
pub fn identifiers(s: &str) -> std::result::Result<(Vec<String>, &str), String> {
    let mut names = Vec::new();
    let mut rest = s;
    loop {
        let name;
        if let Some(after) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if after[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                    None => return Err("an identifier's closing '\"' is missing".into()),
                }
            };
            name = value;
            rest = &after[end..];
        } else {
            let end = rest
                .find(|c: char| c == '.' || c.is_whitespace())
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(format!("expected an identifier at {rest:?}"));
            }
            name = rest[..end].to_owned();
            rest = &rest[end..];
        }
        names.push(name);
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => return Ok((names, rest)),
        }
    }
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One table's rows in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table.
    #[serde(flatten)]
    pub table: QualifiedName,
    /// The stored columns, in stream order (generated columns are not stored).
    pub columns: Vec<String>,
    /// The primary-key columns the rows are ordered by; empty when the table has none (rows
    /// are then ordered by their whole text).
    pub key: Vec<String>,
    /// Root of the chunk tree; its `rows` and `bytes` are the table's totals.
    pub content: BlobRef,
}

/// A sequence's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    #[serde(flatten)]
    pub sequence: QualifiedName,
    pub last_value: i64,
    pub is_called: bool,
}

/// What a database was created with and the settings it gives its sessions, so that a
/// restore into a new database makes it alike (a `LATIN1` database stays `LATIN1`, its
/// `ALTER DATABASE … SET` settings come back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    /// The encoding's name (`UTF8`, `LATIN1`, `SQL_ASCII` …).
    pub encoding: String,
    /// `LC_COLLATE` and `LC_CTYPE`.
    pub collate: String,
    pub ctype: String,
    /// The locale provider (`c` libc, `i` ICU, `b` builtin), where the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale_provider: Option<String>,
    /// The provider's locale, for an ICU (or builtin) provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The database's own settings (`ALTER DATABASE … SET`, for every role), as the
    /// server keeps them: `name=value`, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

/// Everything a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootManifest {
    pub format: u32,
    /// The server's `server_version_num` at capture.
    pub server_version_num: u32,
    /// DDL to run before loading rows (schemas, types, tables, functions, views …).
    pub pre_data: BlobRef,
    /// DDL to run after loading rows (keys, indexes, foreign keys, triggers …).
    pub post_data: BlobRef,
    /// Tables with rows, in a stable order (schema, name).
    pub tables: Vec<TableEntry>,
    /// Sequences, by name.
    pub sequences: Vec<SequenceState>,
    /// Materialized views that held data, by name.
    #[serde(default)]
    pub materialized_views: Vec<QualifiedName>,
    /// The database's encoding, locale and settings; absent in snapshots taken before
    /// they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseProperties>,
}

impl RootManifest {
    /// The canonical plain encoding.
    pub fn encode(&self) -> EncodedNode {
        let plain = to_json(self);
        EncodedNode {
            id: BlobId::of(&plain),
            plain,
        }
    }

    /// Decodes a root manifest, refusing formats newer than this build.
    pub fn decode(id: &BlobId, plain: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_slice(plain).map_err(|e| Error::Corrupt {
            id: *id,
            reason: format!("not a root manifest: {e}"),
        })?;
        if probe.format > MANIFEST_FORMAT {
            return Err(Error::UnsupportedFormat {
                found: probe.format,
                supported: MANIFEST_FORMAT,
            });
        }
        serde_json::from_slice(plain).map_err(|e| Error::Corrupt {
            id: *id,
            reason: format!("not a root manifest: {e}"),
        })
    }

    /// Total rows over all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.content.rows).sum()
    }

    /// Total plain bytes over all tables.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.content.bytes).sum()
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u64) -> BlobRef {
        BlobRef {
            id: BlobId::of(&i.to_le_bytes()),
            rows: i,
            bytes: 10 * i,
            first: Some(format!("{}", i * 100)),
            last: Some(format!("{}", i * 100 + 99)),
        }
    }

    #[test]
    fn small_tables_have_a_single_leaf() {
        let chunks: Vec<_> = (1..=3).map(chunk).collect();
        let (root, nodes) = build_tree(&chunks);
        assert_eq!(nodes.len(), 1);
        assert_eq!(root.rows, 6);
        assert_eq!(root.bytes, 60);
        assert_eq!(root.id, nodes[0].id);
    }

    #[test]
    fn large_tables_make_a_tree_with_the_same_totals() {
        let chunks: Vec<_> = (0..(FANOUT as u64 * 2 + 5)).map(chunk).collect();
        let (root, nodes) = build_tree(&chunks);
        assert_eq!(nodes.len(), 4); // three leaves and a branch
        assert_eq!(root.rows, chunks.iter().map(|c| c.rows).sum::<u64>());
        let top = ManifestNode::decode(&root.id, &nodes[3].plain).unwrap();
        assert!(matches!(top, ManifestNode::Branch { ref children } if children.len() == 3));
    }

    #[test]
    fn equal_contents_give_equal_roots() {
        let chunks: Vec<_> = (0..10).map(chunk).collect();
        assert_eq!(build_tree(&chunks).0, build_tree(&chunks.clone()).0);
        assert_ne!(build_tree(&chunks).0, build_tree(&chunks[1..]).0);
        assert_eq!(build_tree(&[]).0.rows, 0);
    }

    #[test]
    fn golden_encoding_of_a_leaf() {
        let node = ManifestNode::Leaf {
            chunks: vec![BlobRef {
                id: BlobId::of(b"7\trow\n"),
                rows: 1,
                bytes: 6,
                first: Some("7".into()),
                last: Some("7".into()),
            }],
        };
        let plain = String::from_utf8(node.encode().plain).unwrap();
        assert_eq!(
            plain,
            format!(
                r#"{{"kind":"leaf","chunks":[{{"id":"{}","rows":1,"bytes":6,"first":"7","last":"7"}}]}}"#,
                BlobId::of(b"7\trow\n")
            )
        );
    }

    #[test]
    fn newer_root_formats_are_refused() {
        let id = BlobId::of(b"x");
        let err = RootManifest::decode(&id, br#"{"format": 99}"#).unwrap_err();
        assert!(matches!(err, Error::UnsupportedFormat { found: 99, .. }));
        assert!(matches!(
            RootManifest::decode(&id, b"\xff"),
            Err(Error::Corrupt { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..800)) {
            let id = BlobId::of(&bytes);
            let _ = ManifestNode::decode(&id, &bytes);
            let _ = RootManifest::decode(&id, &bytes);
        }

        #[test]
        fn damaged_manifests_never_panic(pos in 0usize..4000, byte in proptest::prelude::any::<u8>()) {
            let chunks: Vec<_> = (0..5).map(chunk).collect();
            let (root, nodes) = build_tree(&chunks);
            let manifest = RootManifest {
                format: MANIFEST_FORMAT,
                server_version_num: 150004,
                pre_data: root.clone(),
                post_data: root.clone(),
                tables: vec![TableEntry {
                    table: QualifiedName::new("public", "t"),
                    columns: vec!["id".into()],
                    key: vec!["id".into()],
                    content: root,
                }],
                sequences: vec![SequenceState {
                    sequence: QualifiedName::new("public", "s"),
                    last_value: 3,
                    is_called: true,
                }],
                materialized_views: vec![],
                database: None,
            };
            for mut bytes in [nodes[0].plain.clone(), manifest.encode().plain] {
                let at = pos % bytes.len();
                bytes[at] = byte;
                let id = BlobId::of(&bytes);
                let _ = ManifestNode::decode(&id, &bytes);
                let _ = RootManifest::decode(&id, &bytes);
            }
        }
    }

    #[test]
    fn oversized_nodes_are_refused_not_trusted() {
        let chunks: Vec<_> = (0..(FANOUT as u64 + 1)).map(chunk).collect();
        let node = ManifestNode::Leaf { chunks };
        let plain = serde_json::to_vec(&node).unwrap();
        assert!(matches!(
            ManifestNode::decode(&BlobId::of(&plain), &plain),
            Err(Error::Corrupt { .. })
        ));
    }
}
