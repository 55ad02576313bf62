//! Run with: `cargo test -p phony-examples --example testkit-rollback`
//!
//! A tiny bank with a handful of tests. Each test commits its writes, on connections of its
//! own as a real application would, and each one still starts from the same three accounts:
//! phony-testkit takes a baseline of the migrated database once, and resets the database
//! to it after every test (rows and sequences), also after a test that panics.
//!
//! (`cargo run -p phony-examples --example testkit-rollback` runs the app once on a
//! database of its own.)

use tokio_postgres::Client;

/// Opens an account; returns its id.
pub async fn open_account(db: &Client, email: &str) -> Result<i64, tokio_postgres::Error> {
    let row = db
        .query_one(
            "INSERT INTO accounts (email) VALUES ($1) RETURNING id",
            &[&email],
        )
        .await?;
    Ok(row.get(0))
}

/// Moves money between two accounts, atomically; fails (changing nothing) if the payer
/// cannot cover it.
pub async fn transfer(
    db: &mut Client,
    from: &str,
    to: &str,
    cents: i64,
) -> Result<(), tokio_postgres::Error> {
    let tx = db.transaction().await?;
    let from_id: i64 = tx
        .query_one(
            "UPDATE accounts SET balance_cents = balance_cents - $2 WHERE email = $1 RETURNING id",
            &[&from, &cents],
        )
        .await?
        .get(0);
    let to_id: i64 = tx
        .query_one(
            "UPDATE accounts SET balance_cents = balance_cents + $2 WHERE email = $1 RETURNING id",
            &[&to, &cents],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO transfers (from_id, to_id, cents) VALUES ($1, $2, $3)",
        &[&from_id, &to_id, &cents],
    )
    .await?;
    tx.commit().await
}

/// Balance of an account, in cents.
pub async fn balance(db: &Client, email: &str) -> Result<i64, tokio_postgres::Error> {
    Ok(db
        .query_one(
            "SELECT balance_cents FROM accounts WHERE email = $1",
            &[&email],
        )
        .await?
        .get(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kit = phony_testkit::Testkit::from_setup(phony_testkit::Setup::migrations(migrations()));
    let db = kit.checkout().await?;
    let mut client = db.connect().await?;
    transfer(&mut client, "alice@example.com", "bob@example.com", 2500).await?;
    println!(
        "alice has {} cents, bob {} (in {}); run the tests with \
         `cargo test -p phony-examples --example testkit-rollback`",
        balance(&client, "alice@example.com").await?,
        balance(&client, "bob@example.com").await?,
        db.name()
    );
    Ok(())
}

fn migrations() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testkit-rollback/migrations")
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_testkit::{Setup, Testkit};

    /// One kit for the whole test binary: the migrations run and the baseline is taken
    /// once, by whichever test asks first.
    static DB: Testkit = Testkit::new(|| Setup::migrations(migrations()));

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn transfers_move_money_and_are_recorded() -> TestResult {
        let db = DB.checkout().await?;
        let mut app = db.connect().await?;
        transfer(&mut app, "alice@example.com", "bob@example.com", 2500).await?;
        // Another connection sees it: it is committed, not a transaction to roll back.
        let other = db.connect().await?;
        assert_eq!(balance(&other, "alice@example.com").await?, 7500);
        assert_eq!(balance(&other, "bob@example.com").await?, 7500);
        let n: i64 = other
            .query_one("SELECT count(*) FROM transfers", &[])
            .await?
            .get(0);
        assert_eq!(n, 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_overdraft_is_refused() -> TestResult {
        let db = DB.checkout().await?;
        let mut app = db.connect().await?;
        assert!(
            transfer(&mut app, "carol@example.com", "alice@example.com", 1)
                .await
                .is_err()
        );
        assert_eq!(balance(&app, "alice@example.com").await?, 10000);
        Ok(())
    }

    #[tokio::test]
    async fn new_accounts_get_the_next_id() -> TestResult {
        let db = DB.checkout().await?;
        let app = db.connect().await?;
        // Every test sees the sequence where the baseline left it, whatever ran before.
        assert_eq!(open_account(&app, "dave@example.com").await?, 4);
        assert_eq!(open_account(&app, "erin@example.com").await?, 5);
        Ok(())
    }

    #[tokio::test]
    async fn closing_everything_does_not_leak_into_other_tests() -> TestResult {
        let db = DB.checkout().await?;
        let app = db.connect().await?;
        app.batch_execute("DELETE FROM transfers; DELETE FROM accounts;")
            .await?;
        let n: i64 = app
            .query_one("SELECT count(*) FROM accounts", &[])
            .await?
            .get(0);
        assert_eq!(n, 0);
        Ok(())
    }

    #[tokio::test]
    async fn every_test_starts_from_the_three_seeded_accounts() -> TestResult {
        let db = DB.checkout().await?;
        let app = db.connect().await?;
        let row = app
            .query_one(
                "SELECT count(*), sum(balance_cents)::bigint FROM accounts",
                &[],
            )
            .await?;
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (3, 15000));
        let transfers: i64 = app
            .query_one("SELECT count(*) FROM transfers", &[])
            .await?
            .get(0);
        assert_eq!(transfers, 0);
        Ok(())
    }
}
