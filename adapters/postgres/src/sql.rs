//! Quoting for SQL text built by phony.

use phony_core::QualifiedName;

/// `name` as a quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name`, both quoted.
pub fn qualified(q: &QualifiedName) -> String {
    format!("{}.{}", ident(&q.schema), ident(&q.name))
}

/// A list of quoted identifiers.
pub fn ident_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `alias.column` for each of `names`, quoted.
pub fn columns_of(alias: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("{alias}.{}", ident(n)))
        .collect()
}

/// [`columns_of`], as one comma-separated list.
pub fn column_list(alias: &str, names: &[String]) -> String {
    columns_of(alias, names).join(", ")
}

/// `value` as a string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_hostile_names() {
        assert_eq!(ident(r#"Order "Lines""#), r#""Order ""Lines""""#);
        assert_eq!(
            qualified(&QualifiedName::new("Inventory", "Größe")),
            r#""Inventory"."Größe""#
        );
        assert_eq!(literal("it's"), "'it''s'");
        let names = ["id".to_owned(), "Größe \"x\"".to_owned()];
        assert_eq!(column_list("t", &names), r#"t."id", t."Größe ""x""""#);
        assert_eq!(column_list("t", &[]), "");
    }
}
