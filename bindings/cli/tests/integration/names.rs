//! Two processes creating a snapshot of one name at once: exactly one wins, the other is
//! told the name is taken and leaves nothing behind.

use phony_tests::{TestDb, TestStore};
use serde_json::Value;

use crate::{ok, phony, phony_cmd, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_name_have_one_winner() {
    let db = TestDb::new("cli_name_race").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        .await;
    let store = TestStore::new().await;
    // The store exists first, so both processes race on the name alone.
    ok(&phony(&db.url(), store.path(), &["snapshot", "create"]));
    let rounds = 8;
    for round in 0..rounds {
        let name = format!("race-{round}");
        let args = ["--json", "snapshot", "create", "--name", name.as_str()];
        let a = phony_cmd(&db.url(), store.path(), &args).spawn().unwrap();
        let b = phony_cmd(&db.url(), store.path(), &args).spawn().unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let (won, lost) = match (a.status.success(), b.status.success()) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            _ => panic!(
                "round {round}: exactly one create wins: {:?} {:?} / {:?} {:?}",
                a.status,
                stderr(&a),
                b.status,
                stderr(&b)
            ),
        };
        let winner: Value = serde_json::from_slice(&won.stdout).unwrap();
        assert_eq!(lost.status.code(), Some(1));
        let err: Value = serde_json::from_str(stderr(&lost).trim()).unwrap();
        assert_eq!(err["error"]["code"], "name_taken", "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(winner["id"].as_str().unwrap()),
            "{message}"
        );
        let list: Value = serde_json::from_str(&ok(&phony(
            &db.url(),
            store.path(),
            &["--json", "snapshot", "list"],
        )))
        .unwrap();
        let named: Vec<&Value> = list["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == name.as_str())
            .collect();
        assert_eq!(named.len(), 1, "round {round}: {list}");
        assert_eq!(named[0]["id"], winner["id"]);
    }
    // One claim per name, none left by the losers; deleting frees the name.
    let claims = std::fs::read_dir(store.path().join("names"))
        .unwrap()
        .count();
    assert_eq!(claims, rounds);
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "delete", "race-0"],
    ));
    let claims = std::fs::read_dir(store.path().join("names"))
        .unwrap()
        .count();
    assert_eq!(claims, rounds - 1);
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "race-0"],
    ));
}
