//! The corpus: one object of nearly every kind PostgreSQL 15 has, with hostile names
//! (`tests/fixtures/every_object.sql`), snapshotted, dirtied (rows and DDL) and restored in
//! place and into a new database, untracked and tracked: every fingerprint is the
//! snapshot's.

use phony_postgres::ConnectionTarget;
use phony_tests::{fixture, server_url, TestDb};

use crate::objects::round_trip;

/// A role of the test's own, dropped when this is dropped (after the databases that refer
/// to it, which are declared after it).
struct TestRole {
    name: String,
}

impl TestRole {
    async fn new() -> Self {
        let name = format!("phony_corpus_{:08x}", rand::random::<u32>());
        let admin = ConnectionTarget::parse(Some(&server_url()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE ROLE \"{name}\""))
            .await
            .unwrap();
        TestRole { name }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let target = ConnectionTarget::parse(Some(&server_url())).ok()?;
                let admin = target.connect().await.ok()?;
                admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

async fn corpus(role: &TestRole, label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    let sql = std::fs::read_to_string(fixture("every_object.sql"))
        .unwrap()
        .replace("__ROLE__", &format!("\"{}\"", role.name));
    db.exec(&sql).await;
    db
}

/// Row changes and DDL over the corpus (run once per restore, each time from the
/// snapshot's state).
const DIRTY: &str = r#"
UPDATE "select"."order" SET "desc" = 'changed' WHERE "group" = 1;
DELETE FROM "select"."refers; Type: FK CONSTRAINT";
INSERT INTO "Schema; Type: SCHEMA"."every type; Type: TABLE" ("select", t) VALUES (7, 'new');
DELETE FROM public.no_key WHERE a IS NULL;
UPDATE public.measures SET v = v + 1;
INSERT INTO public.measures VALUES (9, 'eu', '2030-01-01', 9);
UPDATE "ünï ☃"."tàblé" SET "ключ" = 'ärger' WHERE "ключ" = 'Ärger';
SELECT nextval('public.cycled'), nextval('"select"."seq; Type: SEQUENCE"');
ALTER TABLE public.no_key ADD COLUMN z int;
CREATE INDEX later ON public.parent (note);
DROP VIEW public."v; Type: VIEW";
ALTER PUBLICATION pub_schema ADD TABLE public.parent;
COMMENT ON TABLE public.child IS 'changed';
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_object_comes_back_untracked() {
    let role = TestRole::new().await;
    let db = corpus(&role, "corpus").await;
    round_trip(&db, DIRTY, "untracked").await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_object_comes_back_tracked() {
    let role = TestRole::new().await;
    let db = corpus(&role, "corpus_trk").await;
    db.track_on().await;
    round_trip(&db, DIRTY, "tracked").await;
    drop(db);
}
