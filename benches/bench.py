#!/usr/bin/env python3
"""phony side by side with pg_dump, pg_restore and template copies, on one shop database.

Run with:
    cargo build --release -p phony
    python3 benches/bench.py [--scale 1.0] [--phony target/release/phony] [--keep]

What it measures and how to read it: benches/README.md. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432"
USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'phony') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)


# --- running children ------------------------------------------------------------------

def full_path_note(proc: "Proc") -> str:
    """For a rollback after a migration: a note when it took the full path (a whole reload)
    instead of the targeted schema path, as phony's summary line says."""
    return "; FULL PATH" if "(full path" in proc.stdout else ""


@dataclass
class Proc:
    """One finished child: exit code, wall-clock seconds, peak RSS (MB) and its output."""

    cmd: list[str]
    code: int | None = None
    seconds: float = 0.0
    rss_mb: float | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # could not start, or timed out

    @property
    def ok(self) -> bool:
        return self.error is None and self.code == 0

    def why(self) -> str:
        """'exit N: first line of stderr', or the reason it did not run to the end."""
        if self.error:
            return self.error
        lines = [l.strip() for l in self.stderr.splitlines() if l.strip()]
        first = lines[0] if lines else "no stderr"
        if len(first) > 120:
            first = first[:117] + "..."
        return f"exit {self.code}: {first}"


def find_gnu_time() -> str | None:
    """GNU time, if installed: see run() for why it is used."""
    path = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return path if "GNU" in (out.stdout + out.stderr) else None


GNU_TIME = find_gnu_time()
RSS_METHOD = ("GNU time %M (wait4 ru_maxrss of the tool, measured one process away from Python)"
              if GNU_TIME else
              "wait4 ru_maxrss of the child; values at the harness's own peak RSS are upper bounds")


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> Proc:
    """Run cmd to completion; time it (wall clock); take the peak RSS of it and of the
    children it waited for. Output goes to temporary files, so no pipe can fill up.

    The peak RSS comes from wait4's rusage (ru_maxrss, KiB). Linux folds the high-water RSS
    of the parent's address space into a child's ru_maxrss when the child execs, so a tool
    started straight from this Python process never reads below Python's own peak (~15-20
    MB). When GNU time is installed the tool is started through it: time's wait4 of the tool
    then carries only time's tiny footprint, and its %M is the tool's own figure."""
    p = Proc(cmd=[str(c) for c in cmd])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="phony-bench-rss-") as rss_file:
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *p.cmd] if GNU_TIME else p.cmd
        if GNU_TIME and shutil.which(p.cmd[0]) is None:
            # GNU time would report "cannot run" as exit 127; say it plainly instead.
            p.error = f"cannot run {p.cmd[0]}: not found or not executable"
            return p
        t0 = time.perf_counter()
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=env, start_new_session=True)
        except OSError as e:
            p.error = f"cannot run {p.cmd[0]}: {e.strerror or e}"
            return p
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:  # Ctrl-C: take the child (and its process group) down too
            kill()
            child.wait()
            raise
        finally:
            timer.cancel()
        p.seconds = time.perf_counter() - t0
        p.code = os.waitstatus_to_exitcode(status)
        child.returncode = p.code  # reaped here, not by Popen
        p.rss_mb = usage.ru_maxrss / 1024.0  # KiB on Linux
        if GNU_TIME:
            lines = Path(rss_file.name).read_text().split()
            p.rss_mb = int(lines[-1]) / 1024.0 if lines and lines[-1].isdigit() else None
        if timed_out.is_set():
            p.error = f"timed out after {timeout:.0f} s"
        out.seek(0)
        err.seek(0)
        p.stdout = out.read().decode("utf-8", "replace")
        p.stderr = err.read().decode("utf-8", "replace")
    return p


# --- connection strings ------------------------------------------------------------------

def url_for(base: str, dbname: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query, ""))


def maintenance_url(base: str) -> str:
    """The database named in the base URL, or `postgres`: where createdb/dropdb connect."""
    return base if urlsplit(base).path.strip("/") else url_for(base, "postgres")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- results -----------------------------------------------------------------------------

@dataclass
class Row:
    key: str
    step: str
    kind: str  # "time", "size" or "tps"
    status: str = "ok"  # ok | n/a | failed | skipped
    seconds: float | None = None
    bytes: int | None = None
    rss_mb: float | None = None
    baseline: str | None = None  # key of the row this one is compared with
    ratio: float | None = None
    ratio_text: str = ""
    check: str = ""  # fingerprint comparison with the base state, where one was made
    error: str | None = None
    runs: list[float] = field(default_factory=list)  # each run's seconds, when repeated
    detail: str = ""  # where the time went, for the full snapshot (printed under the table)

    def value_text(self) -> str:
        if self.status != "ok":
            return f"{self.status} ({self.error})" if self.error else self.status
        if self.kind == "time" and len(self.runs) > 1:
            return f"{self.seconds:.2f} s ({min(self.runs):.2f}-{max(self.runs):.2f})"
        if self.kind == "time":
            return f"{self.seconds:.2f} s"
        if self.kind == "tps":
            return f"{self.seconds:.0f} tps"
        return f"{self.bytes / 1e6:.1f} MB"


@dataclass
class Bench:
    args: argparse.Namespace
    base_url: str
    maint_url: str
    workdir: Path
    rows: dict[str, Row] = field(default_factory=dict)
    created_dbs: list[str] = field(default_factory=list)
    fingerprints: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    suffix: str = ""  # after the database names, when several scales run in one go

    # -- plumbing --

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def add(self, row: Row) -> Row:
        self.rows[row.key] = row
        if row.status == "ok" and row.kind == "time":
            extra = f"  (peak RSS {row.rss_mb:.0f} MB)" if row.rss_mb is not None else ""
            self.log(f"  {row.step}: {row.value_text()}{extra}")
        else:
            self.log(f"  {row.step}: {row.value_text()}")
        return row

    def timed(self, key: str, step: str, cmd: list, *, phony: bool = False,
              baseline: str | None = None, env: dict[str, str] | None = None) -> tuple[Row, Proc]:
        """Run one measured step. A failed baseline is 'failed'; a failed phony step is
        'n/a' (the binary may not support it yet). Either way the run carries on."""
        self.log(f"- {step}")
        self.checkpoint()
        proc = run(cmd, self.args.timeout, env)
        row = Row(key=key, step=step, kind="time", baseline=baseline)
        if proc.ok:
            row.seconds, row.rss_mb = proc.seconds, proc.rss_mb
        else:
            row.status = "n/a" if phony else "failed"
            row.error = proc.why()
            if not phony and proc.stderr.strip():
                self.log(proc.stderr.rstrip())
        return self.add(row), proc

    def timed_repeated(self, key: str, step: str, cmd: list, *, again, check=None,
                       phony: bool = False, baseline: str | None = None) -> Row:
        """timed(), --repeat times: again() (not timed) sets the stage before each run after
        the first. The row holds the median, every run's time and the highest peak RSS;
        check() (a fingerprint comparison) runs after every run, and the row shows the first
        that failed, if any."""
        row, _ = self.timed(key, step, cmd, phony=phony, baseline=baseline)
        if row.status != "ok":
            return row
        runs, checks = [row.seconds], [check()] if check else []
        for i in range(1, self.args.repeat):
            again()
            self.log(f"- {step}, run {i + 1} of {self.args.repeat}")
            self.checkpoint()
            proc = run(cmd, self.args.timeout)
            if not proc.ok:
                row.status = "n/a" if phony else "failed"
                row.error = f"run {i + 1}: {proc.why()}"
                return row
            runs.append(proc.seconds)
            peaks = [r for r in (row.rss_mb, proc.rss_mb) if r is not None]
            row.rss_mb = max(peaks) if peaks else None
            if check:
                checks.append(check())
        row.runs, row.seconds = runs, statistics.median(runs)
        if len(runs) > 1:
            self.log(f"  {step}: median {row.value_text()} over {len(runs)} runs")
        failed = [c for c in checks if c and c != "same as base"]
        row.check = failed[0] if failed else (checks[0] if checks else "")
        return row

    def psql_query(self, db_url: str, sql: str) -> str:
        proc = run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-c", sql],
                   self.args.timeout)
        if not proc.ok:
            raise RuntimeError(f"psql failed ({proc.why()}) on: {sql[:200]}")
        return proc.stdout

    def checkpoint(self) -> None:
        """Flush what the previous step dirtied, so the next timed step does not pay for it."""
        try:
            self.psql_query(self.maint_url, "CHECKPOINT")
        except RuntimeError as e:  # not a superuser: measure without
            self.log(f"  (checkpoint skipped: {e})")

    def wait_idle(self, dbname: str, limit: float = 15.0) -> None:
        """Wait until no backend is connected to dbname (a psql that just exited may still
        have its backend shutting down), so a template copy does not wait inside the timing."""
        deadline = time.monotonic() + limit
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
        while time.monotonic() < deadline:
            if self.psql_query(self.maint_url, sql).strip() == "0":
                return
            time.sleep(0.1)

    def create_db(self, name: str) -> None:
        proc = run(["createdb", "--maintenance-db", self.maint_url, name], self.args.timeout)
        if not proc.ok:
            raise RuntimeError(f"createdb {name}: {proc.why()}")
        self.created_dbs.append(name)

    def drop_db(self, name: str) -> None:
        proc = run(["dropdb", "--maintenance-db", self.maint_url, "--if-exists", "--force", name],
                   self.args.timeout)
        if proc.ok:
            if name in self.created_dbs:
                self.created_dbs.remove(name)
        else:
            self.log(f"warning: dropdb {name}: {proc.why()}")

    def done_with(self, name: str) -> None:
        if not self.args.keep:
            self.drop_db(name)

    def db_size(self, name: str) -> int:
        return int(self.psql_query(self.maint_url, f"SELECT pg_database_size('{name}')").strip())

    def phony(self, db: str, *args: str) -> list[str]:
        return self.phony_store(db, self.workdir / "store", *args)

    def phony_store(self, db: str, store: Path, *args: str) -> list[str]:
        return [self.args.phony, "--database", url_for(self.base_url, db), "--store", str(store), *args]

    # -- fingerprints: the state of a database, independent of physical row order --

    def fingerprint(self, db: str) -> dict:
        url = url_for(self.base_url, db)
        schema = self.psql_query(url, f"""
            SELECT line FROM (
              SELECT format('col %s.%s #%s %s %s notnull=%s default=%s identity=%s generated=%s',
                            n.nspname, c.relname,
                            row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                            a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                            pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated) AS line
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
                AND {USER_SCHEMAS}
              UNION ALL
              SELECT format('con %s.%s %s %s', n.nspname, coalesce(c.relname, '-'), k.conname,
                            pg_get_constraintdef(k.oid))
              FROM pg_constraint k
              JOIN pg_namespace n ON n.oid = k.connamespace
              LEFT JOIN pg_class c ON c.oid = k.conrelid
              WHERE {USER_SCHEMAS}
              UNION ALL
              SELECT format('idx %s', pg_get_indexdef(i.indexrelid))
              FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE {USER_SCHEMAS}
              UNION ALL
              SELECT format('enum %s.%s %s', n.nspname, t.typname,
                            string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
              FROM pg_enum e
              JOIN pg_type t ON t.oid = e.enumtypid
              JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE {USER_SCHEMAS}
              GROUP BY n.nspname, t.typname
              UNION ALL
              SELECT format('rel %s.%s %s', n.nspname, c.relname, c.relkind)
              FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMAS}
            ) AS s ORDER BY line""")
        tables = [t for t in self.psql_query(url, f"""
            SELECT format('%I.%I', n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} ORDER BY 1""").split("\n") if t]
        data: dict[str, str] = {}
        if tables:
            # count and an order-independent sum of 60-bit row hashes (duplicates count twice)
            union = "\nUNION ALL\n".join(
                f"SELECT {quote_literal(t)}, count(*), "
                f"coalesce(sum(('x' || substr(md5(r::text), 1, 15))::bit(60)::bigint), 0) "
                f"FROM ONLY {t} AS r" for t in tables)
            for line in self.psql_query(url, union).splitlines():
                if line:
                    name, count, total = line.split("|")
                    data[name] = f"{count}:{total}"
        seqs = self.psql_query(url, """
            SELECT format('%s.%s=%s', schemaname, sequencename, coalesce(last_value::text, 'unset'))
            FROM pg_sequences WHERE schemaname <> 'phony' ORDER BY 1""")
        return {
            "schema": hashlib.sha256(schema.encode()).hexdigest(),
            "tables": data,
            "sequences": [s for s in seqs.splitlines() if s],
        }

    def check_against_base(self, db: str) -> str:
        if self.args.no_verify or "base" not in self.fingerprints:
            return ""
        want, got = self.fingerprints["base"], self.fingerprint(db)
        diffs = []
        if want["schema"] != got["schema"]:
            diffs.append("schema")
        names = sorted(set(want["tables"]) | set(got["tables"]))
        diffs += [f"rows of {n}" for n in names if want["tables"].get(n) != got["tables"].get(n)]
        if want["sequences"] != got["sequences"]:
            diffs.append("sequences")
        return "same as base" if not diffs else "DIFFERS: " + ", ".join(diffs)

    # -- the steps --

    def run_all(self) -> None:
        a = self.args
        pid = os.getpid()
        src = f"phony_bench_{pid}{self.suffix}"
        src_url = url_for(self.base_url, src)
        dump = self.workdir / "dump.pgc"
        store = self.workdir / "store"
        store2 = self.workdir / "store-tracked"

        # 1. the source database
        self.log(f"- create {src} and load gen_shop.sql (scale {a.scale})")
        self.create_db(src)
        proc = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={a.scale}",
                    "-d", src_url, "-f", BENCH_DIR / "gen_shop.sql"], a.timeout)
        if not proc.ok:
            raise RuntimeError(f"loading gen_shop.sql failed: {proc.why()}\n{proc.stderr}")
        size = self.db_size(src)
        self.add(Row("generate", f"generate data (psql, scale {a.scale:g})", "time",
                     seconds=proc.seconds, rss_mb=proc.rss_mb))
        self.add(Row("db_size", "database size (pg_database_size)", "size", bytes=size))
        if not a.no_verify:
            self.log("- fingerprint of the base state")
            self.fingerprints["base"] = self.fingerprint(src)

        # 2. baselines
        row, _ = self.timed("pg_dump", "pg_dump -Fc", ["pg_dump", "-Fc", "-f", dump, "-d", src_url])
        if row.status == "ok":
            self.add(Row("dump_size", "pg_dump -Fc file size", "size", bytes=dump.stat().st_size))

        self.read_floor(src)

        target = f"{src}_pg_restore"
        self.create_db(target)
        if self.rows["pg_dump"].status == "ok":
            self.timed("pg_restore", "pg_restore -j2 into an empty db",
                       ["pg_restore", "-j2", "-d", url_for(self.base_url, target), dump])
        else:
            self.add(Row("pg_restore", "pg_restore -j2 into an empty db", "time",
                         status="skipped", error="no dump"))
        self.done_with(target)

        copy = f"{src}_template_copy"
        self.created_dbs.append(copy)  # dropped at the end if a run leaves it behind

        def copy_again() -> None:
            self.drop_db(copy)
            self.created_dbs.append(copy)
            self.wait_idle(src)

        self.wait_idle(src)
        self.timed_repeated("template_copy", "createdb -T (template copy)",
                            ["createdb", "--maintenance-db", self.maint_url, "-T", src, copy],
                            again=copy_again)
        self.done_with(copy)

        # 3. phony: full snapshot, restore into a new database
        # With the capture's log on, it says where its time went (one line at the end).
        env = {**os.environ, "PHONY_LOG": "phony_postgres::read::capture=debug"}
        row, proc = self.timed("phony_snapshot_full", "phony snapshot create base (full)",
                               self.phony(src, "snapshot", "create", "--name", "base"),
                               phony=True, baseline="pg_dump", env=env)
        row.detail = stages_of(proc.stderr)
        full_store = dir_bytes(store)
        self.add(Row("phony_store_full", "phony store after base", "size", bytes=full_store,
                     baseline="dump_size", **na_unless(row)))

        target = f"{src}_phony_target"
        # phony creates the database itself (built in parallel, renamed when complete).
        self.created_dbs.append(target)
        env = {**os.environ, "PHONY_LOG": "phony_postgres::write::fresh=debug"}
        row, proc = self.timed("phony_restore_target", "phony restore base --target (new db)",
                               self.phony(src, "snapshot", "restore", "base",
                                          "--target", url_for(self.base_url, target)),
                               phony=True, baseline="pg_restore", env=env)
        row.detail = stages_of(proc.stderr)
        if row.status == "ok":
            row.check = self.check_against_base(target)
        self.done_with(target)

        # 4. a test run's changes: incremental snapshot, rollback in place
        mix = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", src_url, "-f", BENCH_DIR / "mix.sql"]

        def mix_again() -> None:
            """The mix once more (it does the same on the same state), for another rollback."""
            proc = run(mix, self.args.timeout)
            if not proc.ok:
                raise RuntimeError(f"applying mix.sql again failed: {proc.why()}")

        self.timed("mix_apply", "apply mix.sql (psql; not a phony figure)", mix)
        before = dir_bytes(store)
        row, _ = self.timed("phony_snapshot_incremental", "phony snapshot create after-mix (incremental)",
                            self.phony(src, "snapshot", "create", "--name", "after-mix"),
                            phony=True, baseline="phony_snapshot_full")
        self.add(Row("phony_store_growth", "phony store growth after-mix", "size",
                     bytes=dir_bytes(store) - before, baseline="phony_store_full", **na_unless(row)))
        self.timed("phony_diff_mix", "phony snapshot diff base after-mix",
                   self.phony(src, "snapshot", "diff", "base", "after-mix"),
                   phony=True, baseline="phony_snapshot_full")
        self.timed_repeated("phony_rollback_mix", "phony restore base (rollback after mix)",
                            self.phony(src, "snapshot", "restore", "base", "--no-safety-snapshot"),
                            again=mix_again, check=lambda: self.check_against_base(src),
                            phony=True, baseline="template_copy")

        # 4b. one row changed in each of ~1% of the chunks of every table (the rows a
        # rollback without tracking must find are spread over the whole database)
        mix_chunks = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", src_url,
                      "-f", BENCH_DIR / "mix_chunks.sql"]

        def mix_chunks_again() -> None:
            proc = run(mix_chunks, self.args.timeout)
            if not proc.ok:
                raise RuntimeError(f"applying mix_chunks.sql again failed: {proc.why()}")

        self.timed("mix_chunks_apply", "apply mix_chunks.sql (psql; not a phony figure)", mix_chunks)
        self.timed_repeated("phony_rollback_mix_chunks",
                            "phony restore base (rollback after mix_chunks, 1% of chunks)",
                            self.phony(src, "snapshot", "restore", "base", "--no-safety-snapshot"),
                            again=mix_chunks_again, check=lambda: self.check_against_base(src),
                            phony=True, baseline="template_copy")

        # 5. the same with change tracking on: only the logged rows are read
        self.timed("phony_track_on", "phony track on", self.phony(src, "track", "on"), phony=True)
        # A store of its own, so that the growth below is not flattered by chunks the
        # untracked phase already stored.
        row, _ = self.timed("phony_snapshot_tracked", "phony snapshot create base-tracked (tracking on, new store)",
                            self.phony_store(src, store2, "snapshot", "create", "--name", "base-tracked"),
                            phony=True, baseline="pg_dump")
        tracked_full = dir_bytes(store2)
        self.timed("mix_apply_tracked", "apply mix.sql again (psql; not a phony figure)", mix)
        self.add(Row("phony_store_tracked", "phony store after base-tracked", "size",
                     bytes=tracked_full, baseline="dump_size", **na_unless(row)))
        before = dir_bytes(store2)
        row, _ = self.timed("phony_snapshot_incremental_tracked",
                            "phony snapshot create after-mix-tracked (tracking on)",
                            self.phony_store(src, store2, "snapshot", "create", "--name", "after-mix-tracked"),
                            phony=True, baseline="phony_snapshot_tracked")
        self.add(Row("phony_store_growth_tracked", "phony store growth after-mix-tracked", "size",
                     bytes=dir_bytes(store2) - before, baseline="phony_store_tracked", **na_unless(row)))
        self.timed_repeated("phony_rollback_mix_tracked",
                            "phony restore base-tracked (rollback after mix, tracking on)",
                            self.phony_store(src, store2, "snapshot", "restore", "base-tracked",
                                             "--no-safety-snapshot"),
                            again=mix_again, check=lambda: self.check_against_base(src),
                            phony=True, baseline="template_copy")
        # The default restore first keeps the current state as a safety snapshot.
        self.timed("mix_apply_tracked_2", "apply mix.sql again (psql; not a phony figure)", mix)
        row, _ = self.timed("phony_rollback_mix_tracked_safety",
                            "phony restore base-tracked (tracking on, with its safety snapshot)",
                            self.phony_store(src, store2, "snapshot", "restore", "base-tracked"),
                            phony=True, baseline="template_copy")
        if row.status == "ok":
            row.check = self.check_against_base(src)

        # 6a. a small migration: one index and one column on one small table (first: the
        # migration below re-creates customers, and rows' ages are then no longer trusted)
        self.timed("migration_small_apply", "apply migration_small.sql (psql; not a phony figure)",
                   ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", src_url,
                    "-f", BENCH_DIR / "migration_small.sql"])
        row, proc = self.timed("phony_rollback_migration_small",
                               "phony restore base (rollback after migration_small)",
                               self.phony(src, "snapshot", "restore", "base", "--no-safety-snapshot"),
                               phony=True, baseline="template_copy")
        if row.status == "ok":
            row.check = self.check_against_base(src) + full_path_note(proc)

        # 6. a migration: the schema changes, so the rollback takes the targeted schema path
        # (only what the migration touched), compared with pg_restore -j2 (the full path's
        # kind of work) and with a template copy.
        self.timed("migration_apply", "apply migration.sql (psql; not a phony figure)",
                   ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", src_url,
                    "-f", BENCH_DIR / "migration.sql"])
        row, proc = self.timed("phony_rollback_migration", "phony restore base (rollback after migration)",
                               self.phony(src, "snapshot", "restore", "base", "--no-safety-snapshot"),
                               phony=True, baseline="pg_restore")
        if row.status == "ok":
            row.check = self.check_against_base(src) + full_path_note(proc)
            self.add(Row("phony_rollback_migration_vs_copy",
                         "  the same, against a template copy", "time",
                         seconds=row.seconds, baseline="template_copy"))

        self.meta["source_database"] = src

        # 7. what tracking costs writers: pgbench TPS without and with it
        if not a.no_pgbench:
            self.pgbench_overhead(src)

    def read_floor(self, src: str) -> None:
        """The floor under a full snapshot: every table read in the order phony reads it
        (primary key, or the whole row's text), by as many connections as phony's readers
        (two on two cores), the rows thrown away."""
        url = url_for(self.base_url, src)
        tables = self.psql_query(url, f"""
            SELECT format('%I.%I', n.nspname, c.relname),
                   coalesce((SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.ord)
                               FROM pg_index i
                               CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                              WHERE i.indrelid = c.oid AND i.indisprimary), ''),
                   pg_relation_size(c.oid)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}
             ORDER BY 3 DESC""")
        queries = []
        for line in tables.splitlines():
            name, key, _ = line.split("|")
            order = key or '(t.*)::text COLLATE "C"'
            queries.append(f"COPY (SELECT * FROM ONLY {name} AS t ORDER BY {order}) TO STDOUT")
        readers = max(2, min(4, os.cpu_count() or 2))
        step = f"read floor: COPY of every table in key order, {readers} connections"
        self.log(f"- {step}")
        self.checkpoint()
        pending, lock, failures = list(queries), threading.Lock(), []

        def reader() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    sql = pending.pop(0)
                proc = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-o", os.devnull,
                            "-c", sql], self.args.timeout)
                if not proc.ok:
                    failures.append(proc.why())

        t0 = time.perf_counter()
        threads = [threading.Thread(target=reader) for _ in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        row = Row("read_floor", step, "time", baseline="pg_dump")
        if failures:
            row.status, row.error = "failed", failures[0]
        else:
            row.seconds = time.perf_counter() - t0
        self.add(row)

    def pgbench_overhead(self, src: str) -> None:
        db = f"{src}_pgbench"
        self.create_db(db)
        db_url = url_for(self.base_url, db)
        self.log("- pgbench -i -s 10")
        proc = run(["pgbench", "-i", "-q", "-s", "10", db_url], self.args.timeout)
        if not proc.ok:
            self.add(Row("pgbench_off", "pgbench TPS, tracking off", "tps", status="failed",
                         error=proc.why()))
            self.done_with(db)
            return
        for key, label, baseline in (("pgbench_off", "tracking off", None),
                                     ("pgbench_on", "tracking on", "pgbench_off")):
            if key == "pgbench_on":
                on = run(self.phony(db, "track", "on"), self.args.timeout)
                if not on.ok:
                    self.add(Row(key, f"pgbench TPS, {label}", "tps", status="n/a", error=on.why()))
                    continue
            self.log(f"- pgbench TPS, {label}")
            self.checkpoint()
            proc = run(["pgbench", "-n", "-c", "2", "-j", "2", "-T", str(self.args.pgbench_seconds),
                        db_url], self.args.timeout)
            tps = None
            for line in proc.stdout.splitlines():
                if line.startswith("tps = "):
                    tps = float(line.split()[2])
            row = Row(key, f"pgbench TPS, {label} (-c 2 -T {self.args.pgbench_seconds})", "tps",
                      baseline=baseline)
            if proc.ok and tps is not None:
                row.seconds = tps
            else:
                row.status = "failed"
                row.error = proc.why()
            self.add(row)
        self.done_with(db)

    def compute_ratios(self) -> None:
        for row in self.rows.values():
            base = self.rows.get(row.baseline) if row.baseline else None
            if row.status != "ok" or base is None or base.status != "ok":
                if row.baseline and row.status == "ok":
                    row.ratio_text = "(no baseline)"
                continue
            if row.key.startswith("phony_store_growth"):
                if base.bytes:
                    row.ratio = row.bytes / base.bytes
                    row.ratio_text = f"{row.ratio * 100:.2f}% of full store"
                continue
            if row.kind == "tps":
                if base.seconds:
                    row.ratio = row.seconds / base.seconds
                    row.ratio_text = f"{row.ratio:.2f}x TPS without tracking"
                continue
            num = row.seconds if row.kind == "time" else row.bytes
            den = base.seconds if base.kind == "time" else base.bytes
            if den:
                row.ratio = num / den
                row.ratio_text = f"{row.ratio:.2f}x {short_name(base.key)}"
        for key in ("pg_dump", "dump_size", "pg_restore", "template_copy", "pgbench_off"):
            if key in self.rows and self.rows[key].status == "ok":
                self.rows[key].ratio_text = "baseline"


def na_unless(row: Row) -> dict:
    """Size rows that belong to a failed phony step are n/a too."""
    if row.status == "ok":
        return {}
    return {"status": row.status, "error": "snapshot did not complete"}


def stages_of(stderr: str) -> str:
    """The capture's own account of where its time went (its last debug line), if any."""
    marker = "where the time went"
    for line in reversed(stderr.splitlines()):
        if marker in line:
            return line.split(marker, 1)[1].lstrip(": ").strip()
    return ""


def short_name(key: str) -> str:
    return {
        "pg_dump": "pg_dump -Fc",
        "dump_size": "dump file",
        "pg_restore": "pg_restore -j2",
        "template_copy": "template copy",
        "phony_snapshot_full": "full snapshot",
    }.get(key, key)


def quote_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def dir_bytes(path: Path) -> int:
    """Apparent size of the regular files under path, each inode counted once (du -sb)."""
    if not path.exists():
        return 0
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if os.path.isfile(os.path.join(root, name)) and not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def print_table(rows: list[Row]) -> None:
    headers = ["step", "result", "vs baseline", "peak RSS MB", "check"]
    body = [[r.step, r.value_text(), r.ratio_text,
             f"{r.rss_mb:.0f}" if r.rss_mb is not None and r.status == "ok" else "",
             r.check] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i != 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for b in body:
        print(line(b))


def tool_version(cmd: list[str]) -> str | None:
    proc = run(cmd, 30)
    return proc.stdout.strip().splitlines()[0] if proc.ok and proc.stdout.strip() else None


def parse_scales(text: str) -> list[float]:
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a list of numbers: {text!r}")
    if not scales or any(x <= 0 for x in scales):
        raise argparse.ArgumentTypeError("every scale must be positive")
    return scales


# The operations whose growth with the database's size the scale table shows, with what
# each is expected to grow like (see benches/README.md, "Growth with size").
GROWTH = [
    ("db_size", "database size", None),
    ("pg_dump", "pg_dump -Fc", None),
    ("pg_restore", "pg_restore -j2", None),
    ("template_copy", "template copy", None),
    ("read_floor", "read floor (key-ordered COPY)", None),
    ("phony_snapshot_full", "phony full snapshot", "pg_dump"),
    ("phony_restore_target", "phony restore into a new db", "pg_restore"),
    ("phony_snapshot_incremental", "phony snapshot after mix, tracking off", None),
    ("phony_rollback_mix", "phony rollback after mix, tracking off", "template_copy"),
    ("phony_rollback_mix_chunks", "phony rollback after mix_chunks, tracking off", "template_copy"),
    ("phony_snapshot_incremental_tracked", "phony snapshot after mix, tracking on", "flat"),
    ("phony_rollback_mix_tracked", "phony rollback after mix, tracking on", "flat"),
    ("phony_rollback_migration_small", "phony rollback after migration_small", None),
    ("phony_rollback_migration", "phony rollback after migration", None),
]


def growth_rows(benches: list[Bench]) -> list[dict]:
    """Per operation: its figure at each scale, how much it grew from the first scale to the
    last, and that growth against what it should grow no faster than."""
    first, last = benches[0], benches[-1]
    out = []
    for key, label, expect in GROWTH:
        rows = [b.rows.get(key) for b in benches]
        if any(r is None or r.status != "ok" for r in rows):
            out.append({"key": key, "operation": label, "values": [None] * len(rows)})
            continue
        values = [r.bytes if r.kind == "size" else r.seconds for r in rows]
        growth = values[-1] / values[0] if values[0] else None
        item = {"key": key, "operation": label, "values": values, "growth": growth,
                "rss_mb": [r.rss_mb for r in rows], "kind": rows[0].kind}
        if expect == "flat":
            item["against"] = "goal <= 1.3"
        elif expect:
            a, b = first.rows.get(expect), last.rows.get(expect)
            if a and b and a.status == b.status == "ok" and a.seconds and growth is not None:
                item["against"] = f"{short_name(expect)} grew {b.seconds / a.seconds:.2f}x"
                item["relative"] = growth / (b.seconds / a.seconds)
        out.append(item)
    return out


def print_growth(scales: list[float], items: list[dict]) -> None:
    headers = ["operation", *[f"scale {x:g}" for x in scales], "growth", "against", "peak RSS MB"]
    body = []
    for it in items:
        vals = it["values"]
        if any(v is None for v in vals):
            body.append([it["operation"], *["n/a"] * len(vals), "", "", ""])
            continue
        text = [f"{v / 1e6:.0f} MB" if it["kind"] == "size" else f"{v:.2f} s" for v in vals]
        rss = [f"{r:.0f}" for r in it["rss_mb"] if r is not None]
        body.append([it["operation"], *text,
                     f"{it['growth']:.2f}x" if it.get("growth") else "",
                     it.get("against", ""), " / ".join(rss) if it["kind"] == "time" else ""])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=parse_scales, default=[1.0],
                    help="gen_shop.sql scale (1.0 ~ 600 MB); several, comma-separated (1,5), "
                         "run one after the other and compared in a table of growth")
    ap.add_argument("--phony", default="target/release/phony", help="the phony binary")
    ap.add_argument("--keep", action="store_true",
                    help="keep the databases and the work directory (dump, store)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per subprocess")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the template copy and of the rollbacks after the mix (median shown)")
    ap.add_argument("--workdir", default=None, help="parent of the temporary work directory")
    ap.add_argument("--no-pgbench", action="store_true",
                    help="skip the pgbench measurement of change tracking's write overhead")
    ap.add_argument("--pgbench-seconds", type=int, default=20,
                    help="length of each pgbench run (default 20)")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip the fingerprint checks of restored states")
    ap.add_argument("--json", default=str(BENCH_DIR / "results" / "latest.json"),
                    help="where to write the results as JSON")
    args = ap.parse_args()
    scales = args.scale

    phony = Path(args.phony)
    if not phony.is_absolute() and not phony.exists() and (REPO_DIR / phony).exists():
        phony = REPO_DIR / phony
    args.phony = str(phony.resolve()) if phony.exists() else str(phony)
    if not phony.exists():
        print(f"warning: {args.phony} not found: the phony rows will read n/a "
              f"(build it with: cargo build --release -p phony)", file=sys.stderr)
    if args.repeat < 1:
        print("error: --repeat must be 1 or more", file=sys.stderr)
        return 2
    for tool in ("psql", "pg_dump", "pg_restore", "createdb", "dropdb"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found on PATH", file=sys.stderr)
            return 2

    base_url = os.environ.get("PHONY_BENCH_URL", DEFAULT_URL)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    failure: str | None = None
    benches: list[Bench] = []
    common = {
        "started_at": started.isoformat(timespec="seconds"),
        "scales": scales,
        "repeat": args.repeat,
        "url": redact(base_url),
        "phony": args.phony,
        "phony_version": tool_version([args.phony, "--version"]),
        "pg_dump_version": tool_version(["pg_dump", "--version"]),
        "git_commit": tool_version(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        "cpus": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "rss_method": RSS_METHOD,
    }
    for i, scale in enumerate(scales):
        run_args = argparse.Namespace(**{**vars(args), "scale": scale})
        workdir = Path(tempfile.mkdtemp(prefix="phony-bench-", dir=args.workdir))
        bench = Bench(args=run_args, base_url=base_url, maint_url=maintenance_url(base_url),
                      workdir=workdir, suffix=f"_s{i + 1}" if len(scales) > 1 else "")
        benches.append(bench)
        bench_t0 = time.perf_counter()
        try:
            bench.meta.update({**common, "scale": scale})
            bench.meta["server_version"] = bench.psql_query(bench.maint_url, "SHOW server_version").strip()
            bench.run_all()
        except KeyboardInterrupt:
            failure = "interrupted"
        except RuntimeError as e:
            failure = str(e)
        finally:
            if args.keep:
                bench.log(f"kept: databases {', '.join(bench.created_dbs)}; work directory {workdir}")
            else:
                for name in list(bench.created_dbs):
                    bench.drop_db(name)
                shutil.rmtree(workdir, ignore_errors=True)
        bench.compute_ratios()
        bench.meta["total_seconds"] = round(time.perf_counter() - bench_t0, 1)
        if failure:
            bench.meta["failure"] = failure
            print(f"error: {failure}", file=sys.stderr)
            break

    for bench in benches:
        rows = list(bench.rows.values())
        if not rows:
            continue
        scale = bench.args.scale
        print()
        print(f"phony benchmark, scale {scale:g} "
              f"({bench.rows['db_size'].bytes / 1e6:.0f} MB database)" if "db_size" in bench.rows
              else f"phony benchmark, scale {scale:g}")
        print_table(rows)
        for row in rows:
            if row.detail:
                print(f"\n{row.step}, where the time went: {row.detail}")
    growth = None
    if len(benches) > 1 and len(benches) == len(scales) and not failure:
        growth = growth_rows(benches)
        print(f"\ngrowth from scale {scales[0]:g} to scale {scales[-1]:g}")
        print_growth(scales, growth)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    ignore = out.parent / ".gitignore"
    if out.parent == BENCH_DIR / "results" and not ignore.exists():
        ignore.write_text("*.json\n")
    runs = [{"meta": b.meta, "rows": [dict(vars(r)) for r in b.rows.values()]} for b in benches]
    if len(scales) == 1 and runs:
        result = runs[0]
    else:
        result = {"meta": {**common, "total_seconds": round(time.perf_counter() - t0, 1)},
                  "runs": runs, "growth": growth}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
