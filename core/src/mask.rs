//! Masking rows on their way from a production database into staging: a rules file names
//! `schema.table.column` and a rule, and each rule rewrites that column's values in the
//! text COPY stream, so no unmasked value is ever stored.
//!
//! ```text
//! # schema.table.column   rule      [argument]
//! public.users.email      email
//! public.users.full_name  name
//! public.users.phone      phone
//! public.users.ssn        null
//! public.users.notes      fixed     'redacted'
//! public.users.id         hash
//! "Sales"."Orders"."customer id"  hash
//! ```
//!
//! Every rule is a function of the value and a secret key alone, never of the table or
//! the column, so a foreign key and the key it references stay equal when both columns
//! use the same rule. NULL stays NULL under every rule.
//!
//! | rule | result |
//! |---|---|
//! | `null` | NULL (refused for a `NOT NULL` column) |
//! | `fixed 'v'` | the value `v` (input text of the column's type) |
//! | `hash` | a keyed hash that keeps equal values equal and distinct values distinct: a keyed permutation of the integer range for `smallint`, `integer`, `bigint`; a keyed uuid for `uuid`; 32 hex digits (capped at the column's length) for text types |
//! | `email` | an address of the same shape: letters and digits replaced, punctuation, `@` and the top-level domain kept |
//! | `name` | letters replaced by letters of the same case, everything else kept |
//! | `phone` | digits replaced by digits, everything else kept |

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::manifest::{identifiers, QualifiedName};
use crate::row::{fields, unescape, FIELD_SEP};

/// One rule of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskRule {
    Null,
    Fixed(String),
    Hash,
    Email,
    Name,
    Phone,
}

impl fmt::Display for MaskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskRule::Null => f.write_str("null"),
            MaskRule::Fixed(v) => write!(f, "fixed {v:?}"),
            MaskRule::Hash => f.write_str("hash"),
            MaskRule::Email => f.write_str("email"),
            MaskRule::Name => f.write_str("name"),
            MaskRule::Phone => f.write_str("phone"),
        }
    }
}

/// A column a rule names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaskedColumn {
    pub table: QualifiedName,
    pub column: String,
}

impl fmt::Display for MaskedColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.table.schema, self.table.name, self.column
        )
    }
}

/// A parsed rules file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskRules {
    rules: BTreeMap<MaskedColumn, MaskRule>,
}

impl MaskRules {
    /// Parses a rules file: one `schema.table.column rule [argument]` a line, `#` comments,
    /// identifiers in double quotes where they hold dots, spaces or quotes (`""` for `"`).
    pub fn parse(text: &str) -> Result<Self> {
        let mut rules = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let bad = |why: String| Error::Invalid(format!("masking rules, line {line_no}: {why}"));
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (names, rest) = identifiers(trimmed).map_err(bad)?;
            let [schema, table, column]: [String; 3] = names.try_into().map_err(|n: Vec<_>| {
                bad(format!(
                    "expected schema.table.column, found {} part(s)",
                    n.len()
                ))
            })?;
            let rest = rest.trim();
            let (word, arg) = match rest.split_once(char::is_whitespace) {
                Some((w, a)) => (w, a.trim()),
                None => (rest, ""),
            };
            let rule = match (word, arg) {
                ("null", "") => MaskRule::Null,
                ("hash", "") => MaskRule::Hash,
                ("email", "") => MaskRule::Email,
                ("name", "") => MaskRule::Name,
                ("phone", "") => MaskRule::Phone,
                ("fixed", a) => MaskRule::Fixed(quoted(a).map_err(bad)?),
                ("", _) => {
                    return Err(bad(
                        "a rule is missing (null, fixed, hash, email, name or phone)".into(),
                    ))
                }
                (w @ ("null" | "hash" | "email" | "name" | "phone"), a) => {
                    return Err(bad(format!("rule {w} takes no argument, found {a:?}")))
                }
                (w, _) => {
                    return Err(bad(format!(
                        "unknown rule {w:?} (use null, fixed, hash, email, name or phone)"
                    )))
                }
            };
            let key = MaskedColumn {
                table: QualifiedName::new(schema, table),
                column,
            };
            if rules.insert(key.clone(), rule).is_some() {
                return Err(bad(format!("{key} has a rule already")));
            }
        }
        Ok(MaskRules { rules })
    }

    /// Every rule, by column.
    pub fn iter(&self) -> impl Iterator<Item = (&MaskedColumn, &MaskRule)> {
        self.rules.iter()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The tables rules name.
    pub fn tables(&self) -> impl Iterator<Item = &QualifiedName> {
        let mut seen: Vec<&QualifiedName> = self.rules.keys().map(|c| &c.table).collect();
        seen.dedup();
        seen.into_iter()
    }

    /// The masking of one table, whose COPY columns are `columns` in order; refuses a rule
    /// that names a column the table lacks or that cannot apply to its type.
    pub fn for_table(
        &self,
        table: &QualifiedName,
        columns: &[ColumnShape],
        key: &MaskKey,
    ) -> Result<Option<TableMask>> {
        let mut masks = Vec::new();
        for (col, rule) in self.rules.iter().filter(|(c, _)| &c.table == table) {
            let Some(pos) = columns.iter().position(|c| c.name == col.column) else {
                return Err(Error::Invalid(format!(
                    "masking rule for {col}: the table has no such column"
                )));
            };
            let shape = &columns[pos];
            let kind = check_rule(col, rule, shape)?;
            masks.push((pos, kind));
        }
        if masks.is_empty() {
            return Ok(None);
        }
        masks.sort_by_key(|(p, _)| *p);
        Ok(Some(TableMask {
            masks,
            key: key.clone(),
        }))
    }
}

/// What masking needs to know of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    pub name: String,
    /// The type as `format_type` prints it (`integer`, `character varying(20)`, …).
    pub type_name: String,
    pub not_null: bool,
}

/// The secret every rule is keyed with: equal keys give equal masked values.
#[derive(Clone)]
pub struct MaskKey([u8; 32]);

impl MaskKey {
    /// A key from its bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        MaskKey(bytes)
    }

    /// A key derived from a passphrase.
    pub fn from_passphrase(passphrase: &str) -> Self {
        MaskKey(blake3::derive_key(
            "phony mask key v1",
            passphrase.as_bytes(),
        ))
    }
}

impl fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKey(****)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Null,
    Fixed(Vec<u8>),
    /// A keyed permutation of `bits`-bit integers.
    HashInt(u32),
    HashUuid,
    /// Hex digits, at most this many.
    HashText(usize),
    Email,
    Name,
    Phone,
}

fn check_rule(col: &MaskedColumn, rule: &MaskRule, shape: &ColumnShape) -> Result<Kind> {
    let ty = shape.type_name.as_str();
    let text_len = text_length(ty);
    let refuse = |why: &str| {
        Err(Error::Invalid(format!(
            "masking rule {rule} for {col} ({ty}): {why}"
        )))
    };
    Ok(match rule {
        MaskRule::Null if shape.not_null => return refuse("the column is NOT NULL"),
        MaskRule::Null => Kind::Null,
        MaskRule::Fixed(v) => Kind::Fixed(escape(v.as_bytes())),
        MaskRule::Hash => match ty {
            "smallint" => Kind::HashInt(16),
            "integer" => Kind::HashInt(32),
            "bigint" => Kind::HashInt(64),
            "uuid" => Kind::HashUuid,
            _ => match text_len {
                Some(n) => Kind::HashText(n.min(32)),
                None => return refuse("hash applies to integers, uuids and text types"),
            },
        },
        MaskRule::Email | MaskRule::Name | MaskRule::Phone if text_len.is_none() => {
            return refuse("this rule applies to text types")
        }
        MaskRule::Email => Kind::Email,
        MaskRule::Name => Kind::Name,
        MaskRule::Phone => Kind::Phone,
    })
}

/// The length limit of a text type (`usize::MAX` when unlimited), `None` for other types.
fn text_length(ty: &str) -> Option<usize> {
    let (base, len) = match ty.split_once('(') {
        Some((b, rest)) => (b, rest.trim_end_matches(')').parse::<usize>().ok()),
        None => (ty, None),
    };
    match base {
        "text" | "citext" | "name" => Some(usize::MAX),
        "character varying" | "character" => Some(len.unwrap_or(usize::MAX)),
        _ => None,
    }
}

/// The masking of one table's rows.
#[derive(Debug, Clone)]
pub struct TableMask {
    masks: Vec<(usize, Kind)>,
    key: MaskKey,
}

impl TableMask {
    /// Appends `row` (one COPY text line, without its `\n`) to `out`, masked.
    pub fn apply(&self, row: &[u8], out: &mut Vec<u8>) {
        let mut next = self.masks.iter().peekable();
        for (i, field) in fields(row).enumerate() {
            if i > 0 {
                out.push(FIELD_SEP);
            }
            match next.next_if(|(p, _)| *p == i) {
                Some((_, kind)) => self.mask_field(kind, field, out),
                None => out.extend_from_slice(field),
            }
        }
    }

    fn mask_field(&self, kind: &Kind, field: &[u8], out: &mut Vec<u8>) {
        let Some(value) = unescape(field) else {
            out.extend_from_slice(b"\\N");
            return;
        };
        match kind {
            Kind::Null => out.extend_from_slice(b"\\N"),
            Kind::Fixed(v) => out.extend_from_slice(v),
            Kind::HashInt(bits) => match std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
            {
                Some(n) => {
                    let masked = permute(&self.key, n, *bits);
                    out.extend_from_slice(masked.to_string().as_bytes());
                }
                None => out.extend_from_slice(field),
            },
            Kind::HashUuid => {
                let h = digest(&self.key, b"uuid", &value);
                let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
                let uuid = format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                );
                out.extend_from_slice(uuid.as_bytes());
            }
            Kind::HashText(n) => {
                let h = digest(&self.key, b"text", &value);
                let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                out.extend_from_slice(&hex.as_bytes()[..(*n).min(hex.len())]);
            }
            Kind::Email => {
                let text = String::from_utf8_lossy(&value);
                let masked = match text.rsplit_once('@') {
                    Some((local, domain)) => {
                        let (host, tld) = match domain.rsplit_once('.') {
                            Some((h, t)) => (h, Some(t)),
                            None => (domain, None),
                        };
                        let mut s = reshape(&self.key, b"email-local", local, true);
                        s.push('@');
                        s.push_str(&reshape(&self.key, b"email-host", host, true));
                        if let Some(t) = tld {
                            s.push('.');
                            s.push_str(t);
                        }
                        s
                    }
                    None => reshape(&self.key, b"email-local", &text, true),
                };
                out.extend_from_slice(&escape(masked.as_bytes()));
            }
            Kind::Name => {
                let text = String::from_utf8_lossy(&value);
                out.extend_from_slice(&escape(
                    reshape(&self.key, b"name", &text, false).as_bytes(),
                ));
            }
            Kind::Phone => {
                let text = String::from_utf8_lossy(&value);
                let mut stream = Stream::new(&self.key, b"phone", text.as_bytes());
                let masked: String = text
                    .chars()
                    .map(|c| match c.to_digit(10) {
                        Some(_) => char::from(b'0' + stream.below(10)),
                        None => c,
                    })
                    .collect();
                out.extend_from_slice(&escape(masked.as_bytes()));
            }
        }
    }
}

/// Letters (ASCII or not) become ASCII letters of the same case; with `digits`, digits
/// become digits; everything else stays, so the shape is kept.
fn reshape(key: &MaskKey, domain: &[u8], text: &str, digits: bool) -> String {
    let mut stream = Stream::new(key, domain, text.as_bytes());
    text.chars()
        .map(|c| {
            if c.is_uppercase() {
                char::from(b'A' + stream.below(26))
            } else if c.is_alphabetic() {
                char::from(b'a' + stream.below(26))
            } else if digits && c.is_ascii_digit() {
                char::from(b'0' + stream.below(10))
            } else {
                c
            }
        })
        .collect()
}

/// Keyed pseudo-random bytes determined by the value alone.
struct Stream {
    reader: blake3::OutputReader,
}

impl Stream {
    fn new(key: &MaskKey, domain: &[u8], value: &[u8]) -> Self {
        let mut h = blake3::Hasher::new_keyed(&key.0);
        h.update(domain);
        h.update(&[0]);
        h.update(value);
        Stream {
            reader: h.finalize_xof(),
        }
    }

    /// A uniform number below `n` (≤ 256).
    fn below(&mut self, n: u8) -> u8 {
        let limit = 256 - (256 % u16::from(n));
        loop {
            let mut b = [0u8; 1];
            self.reader.fill(&mut b);
            if u16::from(b[0]) < limit {
                return b[0] % n;
            }
        }
    }
}

fn digest(key: &MaskKey, domain: &[u8], value: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(domain);
    h.update(&[0]);
    h.update(value);
    *h.finalize().as_bytes()
}

/// A keyed permutation of the `bits`-bit two's-complement integers (a balanced Feistel
/// network of 8 rounds): distinct inputs give distinct outputs of the same width.
fn permute(key: &MaskKey, n: i64, bits: u32) -> i64 {
    let half = bits / 2;
    let mask = if half == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << half) - 1
    };
    let unsigned = (n as u64)
        & if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
    let (mut left, mut right) = (unsigned >> half, unsigned & mask);
    for round in 0u8..8 {
        let mut input = [0u8; 9];
        input[0] = round;
        input[1..].copy_from_slice(&right.to_le_bytes());
        let d = digest(key, b"int", &input);
        let mut f = [0u8; 8];
        f.copy_from_slice(&d[..8]);
        let next = left ^ (u64::from_le_bytes(f) & mask);
        left = right;
        right = next;
    }
    let out = (left << half) | right;
    // Back to a signed value of the column's width.
    let shift = 64 - bits;
    ((out << shift) as i64) >> shift
}

/// A value in COPY text form.
fn escape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out
}

/// A single-quoted value (`''` for `'`), or a bare word.
fn quoted(arg: &str) -> std::result::Result<String, String> {
    let Some(inner) = arg.strip_prefix('\'') else {
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            return Err("fixed takes one value; quote it ('like this') if it has spaces".into());
        }
        return Ok(arg.to_owned());
    };
    let mut value = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.next_if_eq(&'\'').is_some() {
                value.push('\'');
                continue;
            }
            let trailing: String = chars.collect();
            if !trailing.trim().is_empty() {
                return Err(format!("unexpected {trailing:?} after the quoted value"));
            }
            return Ok(value);
        }
        value.push(c);
    }
    Err("the quoted value's closing ' is missing".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(name: &str, ty: &str) -> ColumnShape {
        ColumnShape {
            name: name.into(),
            type_name: ty.into(),
            not_null: false,
        }
    }

    fn key() -> MaskKey {
        MaskKey::from_passphrase("test")
    }

    fn mask(rules: &str, columns: &[ColumnShape], row: &str) -> String {
        let rules = MaskRules::parse(rules).unwrap();
        let t = rules
            .for_table(&QualifiedName::new("public", "t"), columns, &key())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        t.apply(row.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rules_parse_with_quoted_names_and_values() {
        let r = MaskRules::parse(
            "# comment\n\npublic.users.email email\n\"Sales\".\"Or.ders\".\"a \"\"b\"\"\"  fixed 'it''s'\n",
        )
        .unwrap();
        let all: Vec<_> = r.iter().map(|(c, r)| (c.to_string(), r.clone())).collect();
        assert_eq!(
            all,
            vec![
                (
                    "Sales.Or.ders.a \"b\"".to_owned(),
                    MaskRule::Fixed("it's".into())
                ),
                ("public.users.email".to_owned(), MaskRule::Email),
            ]
        );
    }

    #[test]
    fn bad_rules_name_their_line() {
        for (text, needle) in [
            ("a.b email", "line 1: expected schema.table.column"),
            ("\n a.b.c frob", "line 2: unknown rule \"frob\""),
            ("a.b.c", "a rule is missing"),
            ("a.b.c email x", "takes no argument"),
            ("a.b.c fixed 'x", "closing ' is missing"),
            ("a.b.c null\na.b.c hash", "line 2: a.b.c has a rule already"),
        ] {
            let err = MaskRules::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn rules_are_checked_against_the_table() {
        let rules = MaskRules::parse("public.t.nope null\n").unwrap();
        let t = QualifiedName::new("public", "t");
        let err = rules
            .for_table(&t, &[shape("a", "integer")], &key())
            .unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
        let rules = MaskRules::parse("public.t.a null\npublic.t.b email\n").unwrap();
        let mut a = shape("a", "integer");
        a.not_null = true;
        let err = rules.for_table(&t, &[a, shape("b", "text")], &key());
        assert!(err.unwrap_err().to_string().contains("NOT NULL"));
        let rules = MaskRules::parse("public.t.b email\n").unwrap();
        let err = rules.for_table(&t, &[shape("b", "date")], &key());
        assert!(err.unwrap_err().to_string().contains("text types"));
    }

    #[test]
    fn each_rule_keeps_the_shape() {
        let cols = [
            shape("id", "integer"),
            shape("email", "character varying(100)"),
            shape("name", "text"),
            shape("phone", "text"),
            shape("secret", "text"),
            shape("note", "text"),
            shape("u", "uuid"),
        ];
        let rules = "public.t.id hash\npublic.t.email email\npublic.t.name name\npublic.t.phone phone\npublic.t.secret null\npublic.t.note fixed 'x\\ty'\npublic.t.u hash\n";
        let out = mask(
            rules,
            &cols,
            "7\tJohn.Smith@corp.example.com\tJosé O'Neil\t+1 (555) 123-4567\ts3cret\tkeep\t\\N",
        );
        let f: Vec<&str> = out.split('\t').collect();
        assert_eq!(f.len(), 7, "{out}");
        assert!(f[0].parse::<i32>().is_ok() && f[0] != "7", "{out}");
        let (local, domain) = f[1].split_once('@').unwrap();
        assert_eq!(local.len(), "John.Smith".len());
        assert_eq!(&local[4..5], ".");
        assert!(domain.ends_with(".com") && domain.len() == "corp.example.com".len());
        assert_eq!(f[2].chars().count(), "José O'Neil".chars().count());
        assert!(f[2].contains(" ") && f[2].contains("'"));
        assert!(f[2].chars().next().unwrap().is_ascii_uppercase());
        assert_eq!(f[3].len(), "+1 (555) 123-4567".len());
        assert!(f[3].starts_with('+') && f[3].contains(") ") && f[3] != "+1 (555) 123-4567");
        assert_eq!(f[4], "\\N");
        assert_eq!(f[5], "x\\\\ty", "fixed values are escaped for COPY");
        assert_eq!(f[6], "\\N", "NULL stays NULL");
    }

    #[test]
    fn equal_values_mask_equally_in_any_table_and_column() {
        let a = mask("public.t.x hash\n", &[shape("x", "bigint")], "42");
        let b = mask("public.t.y hash\n", &[shape("y", "bigint")], "42");
        assert_eq!(a, b);
        let e1 = mask("public.t.e email\n", &[shape("e", "text")], "a@b.org");
        let e2 = mask("public.t.e email\n", &[shape("e", "text")], "a@b.org");
        assert_eq!(e1, e2);
        let other = MaskKey::from_passphrase("other");
        assert_ne!(permute(&key(), 42, 64), permute(&other, 42, 64));
    }

    #[test]
    fn text_hashes_fit_the_column() {
        let out = mask(
            "public.t.c hash\n",
            &[shape("c", "character varying(10)")],
            "hello",
        );
        assert_eq!(out.len(), 10);
        let u = mask(
            "public.t.c hash\n",
            &[shape("c", "uuid")],
            "0e7c1b0e-5a52-4f5e-9d6e-3f0f7c2b1a00",
        );
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn the_key_is_never_shown() {
        assert_eq!(format!("{:?}", key()), "MaskKey(****)");
    }

    proptest! {
        /// Distinct integers stay distinct and in range: the hash is a permutation.
        #[test]
        fn integer_hashes_are_permutations(a in any::<i64>(), b in any::<i64>(), bits in prop::sample::select(vec![16u32, 32, 64])) {
            let clamp = |v: i64| -> i64 { let s = 64 - bits; (v << s) >> s };
            let (a, b) = (clamp(a), clamp(b));
            let (ma, mb) = (permute(&key(), a, bits), permute(&key(), b, bits));
            prop_assert_eq!(clamp(ma), ma, "stays within {} bits", bits);
            prop_assert_eq!(a == b, ma == mb);
        }

        /// Any row masks into a row with as many fields, never a broken line.
        #[test]
        fn rows_keep_their_fields(values in prop::collection::vec("[ -~\\t\\n\\\\é]{0,12}", 3)) {
            let row: Vec<String> = values.iter().map(|v| String::from_utf8(escape(v.as_bytes())).unwrap()).collect();
            let row = row.join("\t");
            let out = mask("public.t.a email\npublic.t.b name\npublic.t.c phone\n",
                &[shape("a", "text"), shape("b", "text"), shape("c", "text")], &row);
            prop_assert_eq!(out.split('\t').count(), 3);
            prop_assert!(!out.contains('\n'));
        }
    }
}
