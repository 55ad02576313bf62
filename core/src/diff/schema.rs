//! Schema differences, object by object, from the two pg_dump texts of each snapshot.
//!
//! pg_dump introduces every object with a comment header
//! (`-- Name: orders; Type: TABLE; Schema: public; Owner: app`). The text is split at those
//! headers into objects named by (type, schema, name); objects only one side has are added
//! or dropped, objects whose DDL differs are altered, shown as a unified diff of their DDL.
//! Blank lines and the `--` separator lines are not part of an object; the owner in the
//! header is not part of its name (an owner change shows as an altered `ALTER … OWNER TO`).

use std::collections::HashMap;

use serde::Serialize;

/// What happened to a schema object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectChange {
    Added,
    Dropped,
    Altered,
}

/// One schema object that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaChange {
    /// pg_dump's object type: `TABLE`, `INDEX`, `FK CONSTRAINT`, `FUNCTION`, `TYPE` …
    pub kind: String,
    /// The object's schema, if it lives in one.
    pub schema: Option<String>,
    /// The object's name as pg_dump writes it (`orders`, `orders orders_pkey`, `f(integer)`).
    pub name: String,
    pub change: ObjectChange,
    /// A unified diff of the object's DDL (`-` lines: `from`, `+` lines: `to`).
    pub diff: String,
}

impl SchemaChange {
    /// `TABLE public.orders`.
    pub fn title(&self) -> String {
        match &self.schema {
            Some(s) => format!("{} {}.{}", self.kind, s, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// One object of a dump: its identity and its DDL lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpObject {
    pub kind: String,
    pub schema: Option<String>,
    pub name: String,
    pub lines: Vec<String>,
}

/// The comment line pg_dump ends every script with.
const DUMP_COMPLETE: &str = "-- PostgreSQL database dump complete";

/// Splits a pg_dump script into its objects (the preamble before the first header, `SET`
/// statements and the like, is left out).
pub fn objects(script: &str) -> Vec<DumpObject> {
    let mut out: Vec<DumpObject> = Vec::new();
    for line in script.lines() {
        if let Some((kind, schema, name)) = parse_header(line) {
            out.push(DumpObject {
                kind,
                schema,
                name,
                lines: Vec::new(),
            });
            continue;
        }
        // pg_dump's closing comment follows whichever object is last, not part of it: an
        // object added after it would make that one look altered.
        if line.trim().is_empty() || line == "--" || line == DUMP_COMPLETE {
            continue;
        }
        if let Some(current) = out.last_mut() {
            current.lines.push(line.to_owned());
        }
    }
    out
}

/// `-- Name: X; Type: T; Schema: S; Owner: O` → (T, S, X). Name may contain `; ` only in
/// pathological cases; the fields are read from the right to stay robust to that.
fn parse_header(line: &str) -> Option<(String, Option<String>, String)> {
    let rest = line.strip_prefix("-- Name: ")?;
    let rest = match rest.rfind("; Owner: ") {
        Some(i) => &rest[..i],
        None => rest,
    };
    let (rest, schema) = match rest.rfind("; Schema: ") {
        Some(i) => (&rest[..i], Some(&rest[i + "; Schema: ".len()..])),
        None => (rest, None),
    };
    let i = rest.rfind("; Type: ")?;
    let name = &rest[..i];
    let kind = &rest[i + "; Type: ".len()..];
    let schema = schema.filter(|s| *s != "-").map(str::to_owned);
    Some((kind.to_owned(), schema, name.to_owned()))
}

/// The differing objects of two dumps: dropped ones first (in `from` order), then altered
/// and added ones in `to` order.
pub fn diff(from: &str, to: &str) -> Vec<SchemaChange> {
    let from = objects(from);
    let to = objects(to);
    let key = |o: &DumpObject, seen: &mut HashMap<(String, Option<String>, String), usize>| {
        let k = (o.kind.clone(), o.schema.clone(), o.name.clone());
        let n = seen.entry(k.clone()).or_default();
        *n += 1;
        (k, *n)
    };
    let mut seen = HashMap::new();
    let mut from_by_key: HashMap<_, &DumpObject> = HashMap::new();
    let mut from_keys = Vec::new();
    for o in &from {
        let k = key(o, &mut seen);
        from_keys.push(k.clone());
        from_by_key.insert(k, o);
    }
    let mut seen = HashMap::new();
    let mut to_keys = Vec::new();
    for o in &to {
        to_keys.push(key(o, &mut seen));
    }
    let to_set: std::collections::HashSet<_> = to_keys.iter().cloned().collect();

    let mut out = Vec::new();
    for (o, k) in from.iter().zip(&from_keys) {
        if !to_set.contains(k) {
            out.push(change(o, ObjectChange::Dropped, unified(&shown(o), &[])));
        }
    }
    for (o, k) in to.iter().zip(&to_keys) {
        match from_by_key.get(k) {
            None => out.push(change(o, ObjectChange::Added, unified(&[], &shown(o)))),
            Some(old) if old.lines != o.lines => {
                let mut text = unified(&shown(old), &shown(o));
                if text.is_empty() {
                    text = "  (a password option changed; passwords are not shown)\n".into();
                }
                out.push(change(o, ObjectChange::Altered, text))
            }

            Some(_) => {}
        }
    }
    out
}

/// An object's DDL as it may be shown: the values of `password` options (of user mappings,
/// servers and foreign data wrappers, as postgres_fdw and dblink take them) replaced by
/// `********`. Whether an object changed is decided on its DDL as it is.
fn shown(o: &DumpObject) -> Vec<String> {
    if !matches!(
        o.kind.as_str(),
        "USER MAPPING" | "SERVER" | "FOREIGN DATA WRAPPER"
    ) {
        return o.lines.clone();
    }
    redact_passwords(&o.lines.join("\n"))
        .split('\n')
        .map(str::to_owned)
        .collect()
}

/// `text` with the string literal after each `password` option name (`password '…'`,
/// `"password" '…'`) replaced by `'********'`.
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let found = ["password '", "\"password\" '"]
            .iter()
            .filter_map(|p| lower.find(p).map(|i| (i, p.len())))
            .filter(|(i, _)| {
                rest[..*i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c == '(' || c == ',' || c.is_whitespace())
            })
            .min();
        let Some((i, len)) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i + len]);
        out.push_str("********'");
        // Past the literal's closing quote ('' is a quote inside it).
        let mut tail = &rest[i + len..];
        loop {
            match tail.find('\'') {
                Some(q) if tail[q + 1..].starts_with('\'') => tail = &tail[q + 2..],
                Some(q) => {
                    tail = &tail[q + 1..];
                    break;
                }
                None => {
                    tail = "";
                    break;
                }
            }
        }
        rest = tail;
    }
}

fn change(o: &DumpObject, change: ObjectChange, diff: String) -> SchemaChange {
    SchemaChange {
        kind: o.kind.clone(),
        schema: o.schema.clone(),
        name: o.name.clone(),
        change,
        diff,
    }
}

/// Lines of context around each change.
const CONTEXT: usize = 2;

/// Above this many cells the line diff gives up on a minimal diff and shows the whole old
/// text removed and the new one added.
const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Ins,
}

/// A unified diff (`@@ -a,b +c,d @@` hunks) of two line lists.
pub fn unified(old: &[String], new: &[String]) -> String {
    let script = edit_script(old, new);
    // Positions (old index, new index) before each op.
    let mut pos = Vec::with_capacity(script.len());
    let (mut i, mut j) = (0, 0);
    for op in &script {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Ins => j += 1,
        }
    }
    let changed: Vec<usize> = (0..script.len())
        .filter(|&k| script[k] != Op::Same)
        .collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(script.len());
        let (oi, nj) = pos[start];
        let old_len = script[start..end].iter().filter(|o| **o != Op::Ins).count();
        let new_len = script[start..end].iter().filter(|o| **o != Op::Del).count();
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            if old_len == 0 { oi } else { oi + 1 },
            old_len,
            if new_len == 0 { nj } else { nj + 1 },
            new_len
        ));
        for idx in start..end {
            let (oi, nj) = pos[idx];
            match script[idx] {
                Op::Same => out.push_str(&format!(" {}\n", old[oi])),
                Op::Del => out.push_str(&format!("-{}\n", old[oi])),
                Op::Ins => out.push_str(&format!("+{}\n", new[nj])),
            }
        }
    }
    out
}

/// A shortest edit script by longest common subsequence (deletions before insertions).
fn edit_script(old: &[String], new: &[String]) -> Vec<Op> {
    // Common prefix and suffix first: most altered objects differ in a line or two.
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    let mut ops = vec![Op::Same; prefix];
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        ops.extend(std::iter::repeat_n(Op::Del, a.len()));
        ops.extend(std::iter::repeat_n(Op::Ins, b.len()));
    } else {
        let (n, m) = (a.len(), b.len());
        // lcs[i][j]: LCS length of a[i..] and b[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if a[i] == b[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                ops.push(Op::Same);
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
                ops.push(Op::Del);
                i += 1;
            } else {
                ops.push(Op::Ins);
                j += 1;
            }
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "SET statement_timeout = 0;

--
-- Name: order_status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.order_status AS ENUM (
    'pending',
    'paid'
);


--
-- Name: orders; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.orders (
    id bigint NOT NULL,
    note text
);


ALTER TABLE public.orders OWNER TO postgres;

--
-- Name: old_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX old_idx ON public.orders USING btree (note);
";

    #[test]
    fn splits_a_dump_at_its_headers() {
        let objs = objects(FROM);
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[1].kind, "TABLE");
        assert_eq!(objs[1].schema.as_deref(), Some("public"));
        assert_eq!(objs[1].name, "orders");
        assert_eq!(objs[1].lines.len(), 5);
        assert_eq!(
            parse_header("-- Name: EXTENSION citext; Type: COMMENT; Schema: -; Owner: "),
            Some(("COMMENT".into(), None, "EXTENSION citext".into()))
        );
    }

    /// The closing comment belongs to no object: appending an object leaves the one
    /// before it as it was.
    #[test]
    fn an_object_added_at_the_end_leaves_the_last_one_alone() {
        let end = "\n--\n-- PostgreSQL database dump complete\n--\n\n";
        let from = format!("{FROM}{end}");
        let to = format!(
            "{FROM}\n--\n-- Name: new_idx; Type: INDEX; Schema: public; Owner: postgres\n--\n\n\
             CREATE INDEX new_idx ON public.orders USING btree (id);\n{end}"
        );
        let changes = diff(&from, &to);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].change, ObjectChange::Added);
        assert_eq!(changes[0].name, "new_idx");
    }

    #[test]
    fn reports_added_dropped_and_altered_objects_golden() {
        let to = FROM
            .replace("    'paid'\n", "    'paid',\n    'refunded'\n")
            .replace("    note text\n", "    note character varying(500)\n")
            .replace(
                "-- Name: old_idx; Type: INDEX; Schema: public; Owner: postgres\n--\n\nCREATE INDEX old_idx",
                "-- Name: new_idx; Type: INDEX; Schema: public; Owner: postgres\n--\n\nCREATE INDEX new_idx",
            );
        let changes = diff(FROM, &to);
        let shown: Vec<String> = changes
            .iter()
            .map(|c| format!("{:?} {}\n{}", c.change, c.title(), c.diff))
            .collect();
        assert_eq!(
            shown.join(""),
            "Dropped INDEX public.old_idx
@@ -1,1 +0,0 @@
-CREATE INDEX old_idx ON public.orders USING btree (note);
Altered TYPE public.order_status
@@ -1,4 +1,5 @@
 CREATE TYPE public.order_status AS ENUM (
     'pending',
-    'paid'
+    'paid',
+    'refunded'
 );
Altered TABLE public.orders
@@ -1,5 +1,5 @@
 CREATE TABLE public.orders (
     id bigint NOT NULL,
-    note text
+    note character varying(500)
 );
 ALTER TABLE public.orders OWNER TO postgres;
Added INDEX public.new_idx
@@ -0,0 +1,1 @@
+CREATE INDEX new_idx ON public.orders USING btree (note);
"
        );
        assert!(diff(FROM, FROM).is_empty());
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let mut new = old.clone();
        new[1] = "x".into();
        new[15] = "y".into();
        let d = unified(&old, &new);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }
    #[test]
    fn passwords_of_user_mappings_are_never_shown() {
        let ddl = "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    password 'it''s (secret), password ''x''',\n    \"user\" 'bob'\n);";
        assert_eq!(
            redact_passwords(ddl),
            "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    password '********',\n    \"user\" 'bob'\n);"
        );
        let from = "--\n-- Name: USER MAPPING app SERVER remote; Type: USER MAPPING; Schema: -; Owner: x\n--\n\nCREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    password 'old'\n);\n";
        let to = from.replace("'old'", "'new'");
        let changes = diff(from, &to);
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].diff.contains("old") && !changes[0].diff.contains("new"));
        let added = diff("", &to);
        assert!(
            added[0].diff.contains("password '********'"),
            "{}",
            added[0].diff
        );
        assert!(!added[0].diff.contains("new"));
    }
}
