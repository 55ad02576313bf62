//! Rows in PostgreSQL's text COPY format: one row per line, fields separated by tabs,
//! `\N` for NULL, backslash escapes inside values.

use crate::chunker::ROW_END;

/// The field separator.
pub const FIELD_SEP: u8 = b'\t';

/// The lines of a run of rows, without their `\n`.
pub fn lines(rows: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = rows.strip_suffix(&[ROW_END]).unwrap_or(rows);
    body.split(|&b| b == ROW_END)
        .take(if rows.is_empty() { 0 } else { usize::MAX })
}

/// The raw (still escaped) fields of one line.
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == FIELD_SEP)
}

/// The key of a row: its raw key fields joined by tabs. Two rows have the same key exactly
/// when their key texts are equal (the text form is how PostgreSQL printed the values).
pub fn key_text(line: &[u8], key_positions: &[usize]) -> String {
    let fields: Vec<&[u8]> = fields(line).collect();
    let mut out = Vec::new();
    for (i, &p) in key_positions.iter().enumerate() {
        if i > 0 {
            out.push(FIELD_SEP);
        }
        out.extend_from_slice(fields.get(p).copied().unwrap_or(b"\\N"));
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first and last line of a run of rows (equal for a single row), or `None` if empty.
pub fn first_and_last(rows: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = rows.strip_suffix(&[ROW_END]).unwrap_or(rows);
    if rows.is_empty() {
        return None;
    }
    let first = match memchr::memchr(ROW_END, body) {
        Some(i) => &body[..i],
        None => body,
    };
    let last = match memchr::memrchr(ROW_END, body) {
        Some(i) => &body[i + 1..],
        None => body,
    };
    Some((first, last))
}

/// A field's value: `None` for NULL (`\N`), else the unescaped bytes.
pub fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (next - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    v = v * 8 + (field[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    v = v * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_first_and_last_rows() {
        let rows = b"1\ta\tx\n2\tb\ty\n3\tc\tz\n";
        let (first, last) = first_and_last(rows).unwrap();
        assert_eq!(first, b"1\ta\tx");
        assert_eq!(last, b"3\tc\tz");
        assert_eq!(key_text(first, &[0]), "1");
        assert_eq!(key_text(last, &[1, 0]), "c\t3");
        assert_eq!(
            first_and_last(b"9\tq\n").unwrap(),
            (&b"9\tq"[..], &b"9\tq"[..])
        );
        assert!(first_and_last(b"").is_none());
        assert_eq!(lines(rows).count(), 3);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(
            lines(b"\n").collect::<Vec<_>>(),
            vec![&b""[..]],
            "one row of zero columns"
        );
    }

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(unescape(b"\\N"), None);
        assert_eq!(unescape(b"a\\tb\\nc\\\\d").unwrap(), b"a\tb\nc\\d");
        assert_eq!(unescape(b"\\101\\x41").unwrap(), b"AA");
        assert_eq!(unescape(b"plain").unwrap(), b"plain");
    }
}
