//! The database itself: its encoding, locale and `ALTER DATABASE … SET` settings, read at
//! capture, given to a database a restore creates, and set back by a restore in place.

use phony_core::DatabaseProperties;
use tokio_postgres::GenericClient;

use crate::connect::ConnectionTarget;
use crate::error::{pg, Result};
use crate::session::Session;
use crate::sql::{ident, literal};

/// The current database's properties. The locale provider's columns differ between
/// versions (none before 15, `daticulocale` until 16, `datlocale` since 17): read by name
/// from the row's JSON, so that one query serves every version.
pub async fn properties(client: &impl GenericClient) -> Result<DatabaseProperties> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_encoding_to_char(d.encoding)::text, d.datcollate::text,
                    d.datctype::text,
                    pg_catalog.to_jsonb(d) ->> 'datlocprovider',
                    coalesce(pg_catalog.to_jsonb(d) ->> 'datlocale',
                             pg_catalog.to_jsonb(d) ->> 'daticulocale'),
                    coalesce((SELECT s.setconfig::text[] FROM pg_catalog.pg_db_role_setting s
                              WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(pg("reading the database's encoding, locale and settings"))?;
    let provider: Option<String> = row.get(3);
    let locale: Option<String> = row.get(4);
    Ok(DatabaseProperties {
        encoding: row.get(0),
        collate: row.get(1),
        ctype: row.get(2),
        // A libc provider's locale is `collate` and `ctype`.
        locale: locale.filter(|_| provider.as_deref().is_some_and(|p| p != "c")),
        locale_provider: provider,
        settings: row.get(5),
    })
}

/// `CREATE DATABASE` of `name` with the encoding and locale of `props`, from `template0`
/// (the only template another encoding or locale may be copied from).
pub fn create_sql(name: &str, props: &DatabaseProperties) -> String {
    let mut sql = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        ident(name),
        literal(&props.encoding),
        literal(&props.collate),
        literal(&props.ctype)
    );
    match (props.locale_provider.as_deref(), &props.locale) {
        (Some("i"), Some(locale)) => {
            sql += &format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(locale))
        }
        (Some("b"), Some(locale)) => {
            sql += &format!(
                " LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
                literal(locale)
            )
        }
        _ => {}
    }
    sql
}

/// Settings whose value is a list of names, each quoted on its own when set (PostgreSQL's
/// `GUC_LIST_QUOTE`): `search_path = '"$user", public'` set as one string would name one
/// schema.
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "local_preload_libraries",
    "session_preload_libraries",
    "shared_preload_libraries",
    "unix_socket_directories",
];

/// The statements that give database `name` exactly `settings` (`name=value` entries as
/// the server keeps them), replacing whatever it has.
pub fn set_settings_sql(name: &str, settings: &[String]) -> String {
    let db = ident(name);
    let mut sql = format!("ALTER DATABASE {db} RESET ALL;");
    for entry in settings {
        let Some((setting, value)) = entry.split_once('=') else {
            continue;
        };
        let value = if LIST_SETTINGS.contains(&setting.to_ascii_lowercase().as_str()) {
            split_list(value)
                .iter()
                .map(|v| literal(v))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            literal(value)
        };
        let value = if value.is_empty() {
            "''".to_owned()
        } else {
            value
        };
        // Setting names are case-insensitive, and may hold dots (`app.user`).
        let setting = match setting
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            true => setting.to_owned(),
            false => ident(setting),
        };
        sql += &format!(" ALTER DATABASE {db} SET {setting} = {value};");
    }
    sql
}

/// The elements of a list setting's value as the server prints it: comma-separated,
/// each one double-quoted where it needs to be (`"$user", public`).
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        }
        for c in chars.by_ref() {
            if c == ',' {
                break;
            }
            item.push(c);
        }
        let item = if quoted {
            item.trim_end().to_owned()
        } else {
            item.trim().to_owned()
        };
        if !(item.is_empty() && !quoted && out.is_empty() && chars.peek().is_none()) {
            out.push(item);
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

/// The current database's own settings (`ALTER DATABASE … SET`, for every role), on a
/// statement the session prepares once.
pub(crate) async fn settings(session: &Session) -> Result<Vec<String>> {
    let context = "reading the database's settings";
    let statement = session
        .prepared(
            "SELECT coalesce((SELECT s.setconfig::text[] FROM pg_catalog.pg_db_role_setting s
                              JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                              WHERE d.datname = pg_catalog.current_database()
                                AND s.setrole = 0), '{}')",
        )
        .await
        .map_err(pg(context))?;
    let row = session
        .client()
        .query_one(&statement, &[])
        .await
        .map_err(pg(context))?;
    Ok(row.get(0))
}

/// Gives the current database (named `name`), which has the settings `live`, the settings
/// `props` records, inside the caller's transaction (`ALTER DATABASE … SET` is
/// transactional). Needs the database's owner (or a superuser) only when they differ.
pub(crate) async fn restore_settings(
    client: &impl GenericClient,
    name: &str,
    live: &[String],
    props: &DatabaseProperties,
) -> Result<()> {
    if live == props.settings.as_slice() {
        return Ok(());
    }
    client
        .batch_execute(&set_settings_sql(name, &props.settings))
        .await
        .map_err(pg(format!(
            "setting the database's settings as the snapshot has them (ALTER DATABASE {} SET …, which needs its owner)",
            ident(name)
        )))
}

/// Whether database `target` exists.
pub async fn database_exists(target: &ConnectionTarget) -> Result<bool> {
    let client = maintenance(target).await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&target.dbname()],
        )
        .await
        .map_err(pg("looking up the target database"))?;
    Ok(row.is_some())
}

/// A connection to the server's maintenance database (`postgres`, else `template1`).
pub(crate) async fn maintenance(target: &ConnectionTarget) -> Result<tokio_postgres::Client> {
    match target
        .with_dbname("postgres")
        .with_application_name("phony restore")
        .connect()
        .await
    {
        Ok(c) => Ok(c),
        Err(_) => {
            target
                .with_dbname("template1")
                .with_application_name("phony restore")
                .connect()
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_are_split_into_their_names() {
        assert_eq!(split_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_list("a,\"b \"\"c\"\"\" , d"), ["a", "b \"c\"", "d"]);
        assert_eq!(split_list("\"\""), [""]);
        assert!(split_list("").is_empty());
    }

    #[test]
    fn settings_are_set_with_quoted_values() {
        let sql = set_settings_sql(
            "my db",
            &[
                "DateStyle=SQL, DMY".to_owned(),
                "search_path=\"$user\", public".to_owned(),
                "extra_float_digits=-3".to_owned(),
            ],
        );
        assert_eq!(
            sql,
            "ALTER DATABASE \"my db\" RESET ALL; \
             ALTER DATABASE \"my db\" SET DateStyle = 'SQL, DMY'; \
             ALTER DATABASE \"my db\" SET search_path = '$user', 'public'; \
             ALTER DATABASE \"my db\" SET extra_float_digits = '-3';"
        );
    }

    #[test]
    fn new_databases_get_the_encoding_and_locale() {
        let props = DatabaseProperties {
            encoding: "LATIN1".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: Some("i".into()),
            locale: Some("und".into()),
            settings: vec![],
        };
        assert_eq!(
            create_sql("x", &props),
            "CREATE DATABASE \"x\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' \
             LC_CTYPE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'und'"
        );
    }
}
