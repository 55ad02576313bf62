//! The targeted schema path's plan, decided purely from the two schemas' pg_dump texts
//! (split into objects at pg_dump's headers): which objects go, which come back from the
//! snapshot's DDL, which tables are altered in place or re-created, and when none of it can
//! be trusted (then the full path runs, and the reason names the object).

use std::collections::{HashMap, HashSet};

use phony_core::diff::schema::{objects, DumpObject};

/// An object's identity in a dump: pg_dump's type, schema and name.
pub(crate) type Key = (String, Option<String>, String);

/// Which script an object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Pre,
    Post,
}

/// One object of a dump, where it stands in it.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) object: DumpObject,
    pub(crate) part: Part,
}

impl Item {
    pub(crate) fn key(&self) -> Key {
        (
            self.object.kind.clone(),
            self.object.schema.clone(),
            self.object.name.clone(),
        )
    }

    pub(crate) fn title(&self) -> String {
        title(&self.key())
    }

    pub(crate) fn ddl(&self) -> String {
        self.object.lines.join("\n")
    }
}

pub(crate) fn title(key: &Key) -> String {
    match &key.1 {
        Some(s) => format!("{} {}.{}", key.0, s, key.2),
        None => format!("{} {}", key.0, key.2),
    }
}

/// A dump's objects in order, pre-data first.
pub(crate) fn items(pre: &str, post: &str) -> Vec<Item> {
    let pre = objects(pre).into_iter().map(|object| Item {
        object,
        part: Part::Pre,
    });
    let post = objects(post).into_iter().map(|object| Item {
        object,
        part: Part::Post,
    });
    pre.chain(post).collect()
}

/// What phase A does to a live object, at its place in reverse live order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Drop it; the statement is found in the catalog by its key when `None`.
    Drop { key: Key, sql: Option<String> },
    /// Statements that loosen a table kept in place (columns and checks the migration
    /// added, defaults and `NOT NULL`s it set).
    Alter(Vec<String>),
    /// Drop the table with everything that depends on it (re-created from the snapshot).
    Recreate { key: Key, table: String },
    /// Give an enum the snapshot's labels (its columns converted).
    Enum { key: Key, labels: Vec<String> },
}

/// Why a table is re-created rather than altered in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// A column's type changed (views on it are not re-pointed: full path).
    TypeChanged(String),
    /// Anything else: a dropped or reordered column, another definition.
    Other(String),
}

/// The draft plan, before the catalog says what a re-created table takes with it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Draft {
    /// Phase A, in order.
    pub(crate) undo: Vec<Undo>,
    /// Snapshot objects to run, by index into the snapshot's items.
    pub(crate) create: HashSet<usize>,
    /// Statements after the rows are back (`SET NOT NULL`, checks, defaults), before the
    /// snapshot's post-data objects.
    pub(crate) tighten: Vec<String>,
    /// Tables created from the snapshot (loaded from the store): `(schema, name)`.
    pub(crate) loaded: Vec<(String, String)>,
    /// Tables re-created, with why: `(schema, name)`.
    pub(crate) recreated: Vec<((String, String), Why)>,
    /// Objects the live schema lacks or has otherwise (their comments and ACLs come back).
    pub(crate) replaced: Vec<Key>,
}

/// Kinds phase A knows how to drop.
const DROPPABLE: &[&str] = &[
    "TABLE",
    "VIEW",
    "MATERIALIZED VIEW",
    "SEQUENCE",
    "INDEX",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "RULE",
    "TYPE",
    "DOMAIN",
    "FUNCTION",
    "PROCEDURE",
    "DEFAULT",
    "SEQUENCE OWNED BY",
];

/// Kinds whose snapshot DDL can run on its own.
const CREATABLE: &[&str] = &[
    "TABLE",
    "VIEW",
    "MATERIALIZED VIEW",
    "SEQUENCE",
    "INDEX",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "RULE",
    "TYPE",
    "DOMAIN",
    "FUNCTION",
    "PROCEDURE",
    "DEFAULT",
    "SEQUENCE OWNED BY",
    "COMMENT",
    "ACL",
];

/// Kinds that an altered definition replaces by drop and create.
const REPLACEABLE: &[&str] = &[
    "VIEW",
    "MATERIALIZED VIEW",
    "INDEX",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "RULE",
];

/// Kinds whose altered definition is set again by running the snapshot's DDL.
const RERUN: &[&str] = &["COMMENT", "DEFAULT", "SEQUENCE OWNED BY"];

/// The draft plan from live objects to the snapshot's, or why the full path must run.
pub(crate) fn draft(live: &[Item], snap: &[Item]) -> Result<Draft, String> {
    let index = |items: &[Item]| -> Result<HashMap<Key, usize>, String> {
        let mut map = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if map.insert(item.key(), i).is_some() {
                return Err(format!("{} appears twice in the schema", item.title()));
            }
        }
        Ok(map)
    };
    let live_at = index(live)?;
    let snap_at = index(snap)?;
    let mut d = Draft::default();
    // Phase A's work by live position, run from the last object back.
    let mut undo: Vec<(usize, Undo)> = Vec::new();
    let mut dropped: Vec<Key> = Vec::new();
    let mut pending_attached: Vec<&Item> = Vec::new();

    for (i, item) in live.iter().enumerate() {
        let key = item.key();
        let kind = key.0.as_str();
        match snap_at.get(&key) {
            None => {
                if kind == "COMMENT" || kind == "ACL" {
                    pending_attached.push(item);
                    continue;
                }
                if !DROPPABLE.contains(&kind) {
                    return Err(format!(
                        "{} was added, and the targeted path cannot drop it",
                        item.title()
                    ));
                }
                if kind == "TABLE" {
                    if let Some(other) = renamed(item, snap, &live_at) {
                        return Err(format!(
                            "{} looks like {} renamed: its rows are not put back by name",
                            item.title(),
                            other.title()
                        ));
                    }
                    if partitioned(item) {
                        return Err(format!("{} is partitioned or inherits", item.title()));
                    }
                }
                // An identity's sequence: the catalog names its column (see
                // `live::drop_statement`).
                let identity = kind == "SEQUENCE"
                    && item
                        .object
                        .lines
                        .iter()
                        .any(|l| l.contains(" ADD GENERATED "));
                let sql = simple_drop(&key).filter(|_| !identity);
                undo.push((
                    i,
                    Undo::Drop {
                        key: key.clone(),
                        sql,
                    },
                ));
                dropped.push(key);
            }
            Some(&s) if snap[s].object.lines == item.object.lines => {}
            Some(&s) => {
                let other = &snap[s];
                match kind {
                    "TABLE" => {
                        let schema = key.1.clone().unwrap_or_default();
                        let name = (schema, key.2.clone());
                        if partitioned(item) || partitioned(other) {
                            return Err(format!("{} is partitioned or inherits", item.title()));
                        }
                        match table_changes(item, other) {
                            Ok((loosen, tighten)) => {
                                // Comments and ACLs of the columns it drops go with them.
                                let prefix = format!(
                                    "ALTER TABLE ONLY {} DROP COLUMN ",
                                    create_target(other).unwrap_or_default()
                                );
                                for column in loosen.iter().filter_map(|l| l.strip_prefix(&prefix))
                                {
                                    dropped.push((
                                        "COLUMN".into(),
                                        key.1.clone(),
                                        format!("{}.{column}", fmt_id(&key.2)),
                                    ));
                                }
                                undo.push((i, Undo::Alter(loosen)));
                                d.tighten.extend(tighten);
                            }
                            Err(why) => {
                                let table = create_target(other).ok_or_else(|| {
                                    format!("{} is not a plain table", other.title())
                                })?;
                                undo.push((
                                    i,
                                    Undo::Recreate {
                                        key: key.clone(),
                                        table,
                                    },
                                ));
                                d.create.insert(s);
                                d.loaded.push(name.clone());
                                d.recreated.push((name, why));
                                d.replaced.push(key);
                            }
                        }
                    }
                    "TYPE" => {
                        let labels = enum_added(item, other).ok_or_else(|| {
                            format!("{} changed other than by added enum labels", item.title())
                        })?;
                        undo.push((
                            i,
                            Undo::Enum {
                                key: key.clone(),
                                labels,
                            },
                        ));
                        d.replaced.push(key);
                    }
                    "FUNCTION" | "PROCEDURE" => {
                        d.create.insert(s);
                    }
                    k if RERUN.contains(&k) => {
                        d.create.insert(s);
                    }
                    k if REPLACEABLE.contains(&k) => {
                        undo.push((
                            i,
                            Undo::Drop {
                                key: key.clone(),
                                sql: simple_drop(&key),
                            },
                        ));
                        d.create.insert(s);
                        d.replaced.push(key);
                    }
                    _ => {
                        return Err(format!(
                            "{} changed, and the targeted path cannot alter it",
                            item.title()
                        ))
                    }
                }
            }
        }
    }
    // Comments and ACLs the live schema has alone: gone with their object, or not undone.
    for item in pending_attached {
        let gone = dropped
            .iter()
            .chain(&d.replaced)
            .any(|k| attached_to(&item.object.name, item.object.schema.as_ref(), k));
        if !gone {
            return Err(format!(
                "{} was added to an object that stays, and the targeted path cannot remove it",
                item.title()
            ));
        }
    }
    for (s, item) in snap.iter().enumerate() {
        if live_at.contains_key(&item.key()) {
            continue;
        }
        let kind = item.object.kind.as_str();
        if !CREATABLE.contains(&kind) {
            return Err(format!(
                "{} was dropped, and the targeted path cannot create it",
                item.title()
            ));
        }
        if kind == "TABLE" {
            if partitioned(item) {
                return Err(format!("{} is partitioned or inherits", item.title()));
            }
            d.loaded.push((
                item.object.schema.clone().unwrap_or_default(),
                item.object.name.clone(),
            ));
        }
        d.create.insert(s);
    }
    undo.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    d.undo = undo.into_iter().map(|(_, u)| u).collect();
    Ok(d)
}

/// Adds to the draft the snapshot's definitions of `keys` (what a re-created table takes
/// with it, found in the catalog) and the comments and ACLs of every replaced object.
pub(crate) fn complete(d: &mut Draft, snap: &[Item], keys: &[Key]) {
    let at: HashMap<Key, usize> = snap
        .iter()
        .enumerate()
        .map(|(i, it)| (it.key(), i))
        .collect();
    for k in keys {
        if let Some(&i) = at.get(k) {
            d.create.insert(i);
        }
        if !d.replaced.contains(k) {
            d.replaced.push(k.clone());
        }
    }
    for (i, item) in snap.iter().enumerate() {
        let kind = item.object.kind.as_str();
        if (kind == "COMMENT" || kind == "ACL" || kind == "SECURITY LABEL")
            && d.replaced
                .iter()
                .any(|k| attached_to(&item.object.name, item.object.schema.as_ref(), k))
        {
            d.create.insert(i);
        }
    }
}

/// Whether a comment's or ACL's name (`TABLE t`, `COLUMN t.c`, `CONSTRAINT c ON t` …)
/// names the object `key` or a part of it.
pub(crate) fn attached_to(name: &str, schema: Option<&String>, key: &Key) -> bool {
    if schema != key.1.as_ref() {
        return false;
    }
    // Comments and ACLs name their object with pg_dump's quoting, the object's own header
    // without: try both.
    if named_in(name, key, |s| s.to_owned()) {
        return true;
    }
    named_in(name, key, fmt_id)
}

/// A name as pg_dump's `fmtId` writes it: bare when lower case letters, digits and
/// underscores (not first a digit), else quoted.
fn fmt_id(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match bare {
        true => name.to_owned(),
        false => crate::sql::ident(name),
    }
}

fn named_in(name: &str, key: &Key, q: impl Fn(&str) -> String) -> bool {
    let (kind, raw) = (key.0.as_str(), key.2.as_str());
    let object = q(raw);
    let object = object.as_str();
    if name == format!("{kind} {object}") {
        return true;
    }
    match kind {
        "TABLE" | "VIEW" | "MATERIALIZED VIEW" => {
            name.starts_with(&format!("COLUMN {object}."))
                || ["CONSTRAINT", "TRIGGER", "POLICY", "RULE"].iter().any(|w| {
                    name.starts_with(&format!("{w} ")) && name.ends_with(&format!(" ON {object}"))
                })
        }
        "CONSTRAINT" | "FK CONSTRAINT" | "TRIGGER" | "POLICY" | "RULE" => {
            let word = match kind {
                "FK CONSTRAINT" => "CONSTRAINT",
                k => k,
            };
            // `table name`, split at any space: names may hold spaces.
            raw.match_indices(' ')
                .any(|(i, _)| name == format!("{word} {} ON {}", q(&raw[i + 1..]), q(&raw[..i])))
        }
        _ => false,
    }
}

/// The drop statement of an object named by its schema and name alone.
fn simple_drop(key: &Key) -> Option<String> {
    let what = match key.0.as_str() {
        k @ ("TABLE" | "VIEW" | "MATERIALIZED VIEW" | "SEQUENCE" | "INDEX" | "TYPE" | "DOMAIN") => {
            k
        }
        _ => return None,
    };
    let schema = key.1.as_deref()?;
    Some(format!(
        "DROP {what} IF EXISTS {}.{}",
        crate::sql::ident(schema),
        crate::sql::ident(&key.2)
    ))
}

/// A snapshot table the live one seems to have been renamed from: another name, the same
/// columns and constraints.
fn renamed<'a>(live: &Item, snap: &'a [Item], live_at: &HashMap<Key, usize>) -> Option<&'a Item> {
    let body = parse_table(&live.object.lines)?;
    snap.iter().find(|s| {
        s.object.kind == "TABLE"
            && !live_at.contains_key(&s.key())
            && parse_table(&s.object.lines).is_some_and(|b| b.items == body.items)
    })
}

fn partitioned(item: &Item) -> bool {
    item.object.lines.iter().any(|l| {
        l.starts_with("PARTITION BY ")
            || l.starts_with("INHERITS (")
            || l.contains(" PARTITION OF ")
    })
}

/// `public.orders` of `CREATE TABLE public.orders (`.
fn create_target(item: &Item) -> Option<String> {
    let first = item.object.lines.first()?;
    let rest = first.strip_prefix("CREATE TABLE ")?;
    Some(rest.strip_suffix(" (")?.to_owned())
}

/// A `CREATE TABLE` split: its first line, its columns and constraints (without the
/// separating commas), and what follows the list (`);`, options, `ALTER … OWNER TO`).
#[derive(Debug, PartialEq, Eq)]
struct TableBody<'a> {
    create: &'a str,
    items: Vec<&'a str>,
    tail: &'a [String],
}

fn parse_table(lines: &[String]) -> Option<TableBody<'_>> {
    let create = lines.first()?;
    if !create.starts_with("CREATE TABLE ") || !create.ends_with(" (") {
        return None;
    }
    let end = lines.iter().position(|l| l.starts_with(')'))?;
    let items = lines[1..end]
        .iter()
        .map(|l| l.trim_start().trim_end_matches(','))
        .collect();
    Some(TableBody {
        create,
        items,
        tail: &lines[end..],
    })
}

/// The first token of a column or constraint line: a name, quoted as pg_dump quotes it.
fn first_token(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix('"') {
        let mut i = 0;
        let bytes = rest.as_bytes();
        while i < bytes.len() {
            if bytes[i] == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                let end = i + 2;
                return (&s[..end], s[end..].trim_start());
            }
            i += 1;
        }
        return (s, "");
    }
    match s.split_once(' ') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    }
}

/// A column line's parts: type (with collation), default, `NOT NULL`.
#[derive(Debug, PartialEq, Eq)]
struct Column<'a> {
    kind: &'a str,
    default: Option<&'a str>,
    not_null: bool,
}

fn parse_column(rest: &str) -> Column<'_> {
    let (rest, not_null) = match rest.strip_suffix(" NOT NULL") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    if rest.contains(" GENERATED ") {
        return Column {
            kind: rest,
            default: None,
            not_null,
        };
    }
    match rest.split_once(" DEFAULT ") {
        Some((kind, default)) => Column {
            kind,
            default: Some(default),
            not_null,
        },
        None => Column {
            kind: rest,
            default: None,
            not_null,
        },
    }
}

/// How a live table becomes the snapshot's in place: statements before the rows come back
/// (loosening) and after (tightening); `Err` when it must be re-created.
fn table_changes(live: &Item, snap: &Item) -> Result<(Vec<String>, Vec<String>), Why> {
    let other = |s: &str| Why::Other(s.to_owned());
    let (l, s) = match (
        parse_table(&live.object.lines),
        parse_table(&snap.object.lines),
    ) {
        (Some(l), Some(s)) => (l, s),
        _ => return Err(other("its definition is not a plain CREATE TABLE")),
    };
    if l.create != s.create || l.tail != s.tail {
        return Err(other("its options or owner changed"));
    }
    let table = create_target(snap).ok_or_else(|| other("no table name"))?;
    type Named = Vec<(String, String)>;
    let split = |items: &[&str]| -> (Named, Named) {
        let mut columns = Vec::new();
        let mut constraints = Vec::new();
        for item in items {
            if let Some(rest) = item.strip_prefix("CONSTRAINT ") {
                let (name, _) = first_token(rest);
                constraints.push((name.to_owned(), item.to_string()));
            } else {
                let (name, rest) = first_token(item);
                columns.push((name.to_owned(), rest.to_owned()));
            }
        }
        (columns, constraints)
    };
    let (l_cols, l_cons) = split(&l.items);
    let (s_cols, s_cons) = split(&s.items);
    let mut loosen = Vec::new();
    let mut tighten = Vec::new();
    // The snapshot's columns, in order, among the live ones; the others were added.
    let mut li = 0;
    for (name, def) in &s_cols {
        let Some(found) = l_cols[li..].iter().position(|(n, _)| n == name) else {
            return Err(match l_cols.iter().any(|(n, _)| n == name) {
                true => other(&format!("its columns were reordered ({name})")),
                false => other(&format!("column {name} was dropped")),
            });
        };
        for (added, _) in &l_cols[li..li + found] {
            loosen.push(format!("ALTER TABLE ONLY {table} DROP COLUMN {added}"));
        }
        let live_def = &l_cols[li + found].1;
        li += found + 1;
        if live_def == def {
            continue;
        }
        let (a, b) = (parse_column(live_def), parse_column(def));
        if a.kind != b.kind {
            return Err(Why::TypeChanged(name.clone()));
        }
        let col = format!("ALTER TABLE ONLY {table} ALTER COLUMN {name}");
        if a.default != b.default {
            match b.default {
                Some(expr) => tighten.push(format!("{col} SET DEFAULT {expr}")),
                None => loosen.push(format!("{col} DROP DEFAULT")),
            }
        }
        match (a.not_null, b.not_null) {
            (true, false) => loosen.push(format!("{col} DROP NOT NULL")),
            (false, true) => tighten.push(format!("{col} SET NOT NULL")),
            _ => {}
        }
    }
    for (added, _) in &l_cols[li..] {
        loosen.push(format!("ALTER TABLE ONLY {table} DROP COLUMN {added}"));
    }
    for (name, def) in &l_cons {
        if !s_cons.iter().any(|(n, d)| n == name && d == def) {
            loosen.push(format!("ALTER TABLE ONLY {table} DROP CONSTRAINT {name}"));
        }
    }
    for (name, def) in &s_cons {
        if !l_cons.iter().any(|(n, d)| n == name && d == def) {
            tighten.push(format!("ALTER TABLE ONLY {table} ADD {def}"));
        }
    }
    Ok((loosen, tighten))
}

/// The snapshot's labels (as quoted in its DDL) when the live enum only has labels added.
fn enum_added(live: &Item, snap: &Item) -> Option<Vec<String>> {
    let labels = |item: &Item| -> Option<(String, Vec<String>)> {
        let first = item.object.lines.first()?;
        if !first.starts_with("CREATE TYPE ") || !first.ends_with(" AS ENUM (") {
            return None;
        }
        let end = item.object.lines.iter().position(|l| l == ");")?;
        let labels = item.object.lines[1..end]
            .iter()
            .map(|l| l.trim().trim_end_matches(',').to_owned())
            .collect();
        let rest = item.object.lines[end + 1..].join("\n");
        Some((format!("{first}\n{rest}"), labels))
    };
    let (l_head, l) = labels(live)?;
    let (s_head, s) = labels(snap)?;
    if l_head != s_head || l.len() <= s.len() {
        return None;
    }
    // The snapshot's labels, in order, among the live ones.
    let mut it = l.iter();
    s.iter().all(|x| it.any(|y| y == x)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(body: &str) -> String {
        body.to_owned()
    }

    const SNAP: &str = "--
-- Name: status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.status AS ENUM (
    'new',
    'done'
);

--
-- Name: t; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.t (
    id integer NOT NULL,
    \"Note x\" text DEFAULT 'a'::text,
    s public.status,
    CONSTRAINT pos CHECK ((id > 0))
);

ALTER TABLE public.t OWNER TO postgres;
";

    #[test]
    fn added_columns_checks_and_defaults_are_undone_in_place() {
        let live = SNAP
            .replace(
                "    s public.status,\n",
                "    s public.status,\n    extra integer DEFAULT 0 NOT NULL,\n    CONSTRAINT big CHECK ((id < 10)),\n",
            )
            .replace("DEFAULT 'a'::text", "DEFAULT 'b'::text NOT NULL");
        let d = draft(&items(&dump(&live), ""), &items(SNAP, "")).unwrap();
        assert_eq!(
            d.undo,
            [Undo::Alter(vec![
                "ALTER TABLE ONLY public.t ALTER COLUMN \"Note x\" DROP NOT NULL".into(),
                "ALTER TABLE ONLY public.t DROP COLUMN extra".into(),
                "ALTER TABLE ONLY public.t DROP CONSTRAINT big".into(),
            ])]
        );
        assert_eq!(
            d.tighten,
            ["ALTER TABLE ONLY public.t ALTER COLUMN \"Note x\" SET DEFAULT 'a'::text"]
        );
        assert!(d.create.is_empty() && d.loaded.is_empty());
    }

    #[test]
    fn dropped_and_retyped_columns_recreate_the_table() {
        let live = SNAP.replace("    \"Note x\" text DEFAULT 'a'::text,\n", "");
        let d = draft(&items(&live, ""), &items(SNAP, "")).unwrap();
        assert_eq!(d.loaded, [("public".to_owned(), "t".to_owned())]);
        assert!(matches!(d.recreated[0].1, Why::Other(_)));
        let live = SNAP.replace("id integer NOT NULL", "id bigint NOT NULL");
        let d = draft(&items(&live, ""), &items(SNAP, "")).unwrap();
        assert_eq!(d.recreated[0].1, Why::TypeChanged("id".into()));
    }

    #[test]
    fn enums_with_added_labels_are_swapped_and_others_fall_back() {
        let live = SNAP.replace("    'new',\n", "    'new',\n    'mid',\n");
        let d = draft(&items(&live, ""), &items(SNAP, "")).unwrap();
        assert_eq!(
            d.undo,
            [Undo::Enum {
                key: ("TYPE".into(), Some("public".into()), "status".into()),
                labels: vec!["'new'".into(), "'done'".into()],
            }]
        );
        let live = SNAP.replace("    'new',\n", "");
        let e = draft(&items(&live, ""), &items(SNAP, "")).unwrap_err();
        assert!(e.contains("TYPE public.status"), "{e}");
    }

    #[test]
    fn renamed_tables_fall_back() {
        let live = SNAP
            .replace("Name: t; Type: TABLE", "Name: u; Type: TABLE")
            .replace("CREATE TABLE public.t (", "CREATE TABLE public.u (")
            .replace("ALTER TABLE public.t OWNER", "ALTER TABLE public.u OWNER");
        let e = draft(&items(&live, ""), &items(SNAP, "")).unwrap_err();
        assert!(e.contains("renamed"), "{e}");
    }

    #[test]
    fn comments_and_acls_follow_their_objects() {
        let key = (
            "CONSTRAINT".to_owned(),
            Some("public".to_owned()),
            "my t c 1".to_owned(),
        );
        assert!(attached_to(
            "CONSTRAINT c 1 ON my t",
            Some(&"public".into()),
            &key
        ));
        assert!(!attached_to("CONSTRAINT c 1 ON my t", None, &key));
        let table = (
            "TABLE".to_owned(),
            Some("public".to_owned()),
            "t".to_owned(),
        );
        assert!(attached_to("COLUMN t.a", Some(&"public".into()), &table));
        assert!(attached_to(
            "TRIGGER x ON t",
            Some(&"public".into()),
            &table
        ));
        assert!(!attached_to("TABLE tt", Some(&"public".into()), &table));
        let upper = (
            "TABLE".to_owned(),
            Some("public".to_owned()),
            "My T".to_owned(),
        );
        assert!(attached_to(
            "COLUMN \"My T\".a",
            Some(&"public".into()),
            &upper
        ));
        assert!(attached_to(
            "TABLE \"My T\"",
            Some(&"public".into()),
            &upper
        ));
    }
}
