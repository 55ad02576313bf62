#!/usr/bin/env python3
"""phony on S3 beside phony on a directory, and phony's SQL export beside pg_dump.

Run with:
    cargo build --release -p phony
    python3 benches/s3.py [--scale 1.0] [--repeat 3] [--moto PATH] [--port 5065]

Starts its own S3-compatible server (moto's, on loopback) unless --endpoint names one,
creates a bucket, and measures on one generated shop database, in one run:
  - a full snapshot into S3 against the same into a directory, and restores from each;
  - `phony snapshot list` of 1,000 snapshots on S3;
  - `phony snapshot export` to SQL against `pg_dump -Fp`, and its compressed sizes
    (.zst, .gz) against `pg_dump -Fc`.
What it measures and how to read it: benches/README.md ("S3 and export"). Reuses bench.py's
helpers; standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness next to this file)
from bench import BENCH_DIR, REPO_DIR, Bench, Row, print_table, run, url_for  # noqa: E402

# Dummy credentials: moto's server checks none. They are set for phony's children only.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "phony-bench",
    "AWS_SECRET_ACCESS_KEY": "phony-bench-secret",
    "AWS_REGION": "us-east-1",
}
LIST_SNAPSHOTS = 1000


class Moto:
    """moto's S3 server on loopback, started and stopped by this run (or one already there)."""

    def __init__(self, endpoint: str, proc: subprocess.Popen | None, log: Path | None):
        self.endpoint = endpoint
        self.proc = proc
        self.log = log

    @classmethod
    def start(cls, binary: str, port: int, workdir: Path) -> "Moto":
        endpoint = f"http://127.0.0.1:{port}"
        if reachable(endpoint):
            raise RuntimeError(f"something already answers on {endpoint}: pick another --port, "
                               f"or pass --endpoint {endpoint} to use it")
        log = workdir / "moto.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if reachable(endpoint):
                return cls(endpoint, proc, log)
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        cls(endpoint, proc, log).stop()
        raise RuntimeError(f"moto's server did not start on {endpoint} (see {log})")

    def rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def usage(self) -> tuple[float, int, dict[str, int]] | None:
        """CPU seconds the server has used so far, requests it has logged (one line of
        werkzeug's access log each), and those by method (HEAD, GET, PUT, …)."""
        if self.proc is None or self.log is None:
            return None
        methods: dict[str, int] = {}
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(self.log, "rb") as f:
                for line in f:
                    if b' HTTP/1.' not in line or b'"' not in line:
                        continue
                    request = re.sub(rb"\x1b\[[0-9;]*m", b"", line.split(b'"', 1)[1])  # colours
                    method = request.split(b" ", 1)[0].decode("ascii", "replace")
                    methods[method] = methods.get(method, 0) + 1
        except (OSError, ValueError, IndexError):
            return None
        return cpu, sum(methods.values()), methods

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def by_method(before: dict[str, int], after: dict[str, int]) -> str:
    """The requests between two usages, by method: `HEAD 4217, PUT 4230`."""
    diff = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    return ", ".join(f"{m} {n}" for m, n in sorted(diff.items()) if n)


def reachable(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/", timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


def http(method: str, url: str) -> bytes:
    """One unsigned request without a body (moto's server accepts them)."""
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()


class S3Bench(Bench):
    """bench.Bench's plumbing (timing, databases, fingerprints) with the S3 and export steps."""

    moto: Moto
    bucket: str

    def s3_store(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def phony_at(self, db: str, store: str, *args: str) -> list[str]:
        return [self.args.phony, "--database", url_for(self.base_url, db), "--store", store, *args]

    def note_moto(self, when: str) -> None:
        rss = self.moto.rss_mb()
        if rss is not None:
            self.meta.setdefault("moto_rss_mb", {})[when] = round(rss)
            self.log(f"  (moto's server: {rss:.0f} MB resident)")

    def paired(self, key: str, step: str, dir_cmd, s3_cmd, *, baseline: str | None,
               dir_check=None, s3_check=None, between=None) -> None:
        """The directory and the S3 variant of one step, alternating, --repeat times each
        (a fresh store, database or prefix every run: the commands are functions of the
        run's number). Rows `<key>_dir` and `<key>_s3` hold the medians; the S3 row is
        compared with the directory row."""
        runs = {"dir": [], "s3": []}
        rss = {"dir": [], "s3": []}
        checks = {"dir": [], "s3": []}
        server: list[tuple[float, int, str]] = []  # moto's CPU seconds, requests per S3 run
        errors: dict[str, str] = {}
        for i in range(self.args.repeat):
            for kind, make, check in (("dir", dir_cmd, dir_check), ("s3", s3_cmd, s3_check)):
                if kind in errors:
                    continue
                self.log(f"- {step} ({kind}), run {i + 1} of {self.args.repeat}")
                self.checkpoint()
                before = self.moto.usage() if kind == "s3" else None
                proc = run(make(i), self.args.timeout)
                after = self.moto.usage() if kind == "s3" else None
                if not proc.ok:
                    errors[kind] = f"run {i + 1}: {proc.why()}"
                    self.log(f"  failed: {errors[kind]}")
                    continue
                self.log(f"  {proc.seconds:.2f} s (peak RSS {proc.rss_mb or 0:.0f} MB)")
                if before and after:
                    server.append((after[0] - before[0], after[1] - before[1],
                                   by_method(before[2], after[2])))
                    self.log(f"  (moto's server: {server[-1][1]} requests ({server[-1][2]}), "
                             f"{server[-1][0]:.1f} s of CPU)")
                runs[kind].append(proc.seconds)
                if proc.rss_mb is not None:
                    rss[kind].append(proc.rss_mb)
                if check:
                    checks[kind].append(check(i))
                if between:
                    between(kind, i)
            self.note_moto(f"after {key} run {i + 1}")
        for kind, label, base in (("dir", "directory", baseline), ("s3", "S3", f"{key}_dir")):
            row = Row(f"{key}_{kind}", f"{step} ({label})", "time", baseline=base)
            if kind in errors:
                row.status, row.error = "n/a", errors[kind]
            else:
                row.runs, row.seconds = runs[kind], statistics.median(runs[kind])
                row.rss_mb = max(rss[kind]) if rss[kind] else None
                failed = [c for c in checks[kind] if c and c != "same as base"]
                row.check = failed[0] if failed else (checks[kind][0] if checks[kind] else "")
            if kind == "s3" and server:
                cpu = statistics.median(c for c, _, _ in server)
                requests = statistics.median(r for _, r, _ in server)
                self.meta.setdefault("moto_per_run", {})[key] = server
                row.check = ", ".join(x for x in (row.check, f"moto: {requests:.0f} requests, "
                                                  f"{cpu:.1f} s CPU") if x)
            self.add(row)

    def run_all(self) -> None:  # noqa: C901 (one step after another, as in bench.py)
        a = self.args
        pid = os.getpid()
        src = f"phony_bench_s3_{pid}"
        src_url = url_for(self.base_url, src)
        dir_store = lambda i: self.workdir / f"store-{i}"  # noqa: E731

        # 1. the source database
        self.log(f"- create {src} and load gen_shop.sql (scale {a.scale})")
        self.create_db(src)
        proc = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={a.scale}",
                    "-d", src_url, "-f", BENCH_DIR / "gen_shop.sql"], a.timeout)
        if not proc.ok:
            raise RuntimeError(f"loading gen_shop.sql failed: {proc.why()}\n{proc.stderr}")
        self.add(Row("generate", f"generate data (psql, scale {a.scale:g})", "time",
                     seconds=proc.seconds, rss_mb=proc.rss_mb))
        self.add(Row("db_size", "database size (pg_database_size)", "size", bytes=self.db_size(src)))
        if not a.no_verify:
            self.log("- fingerprint of the base state")
            self.fingerprints["base"] = self.fingerprint(src)

        # 2. baselines: pg_dump in both formats
        dump_fc, dump_fp = self.workdir / "dump.pgc", self.workdir / "dump.sql"
        row, _ = self.timed("pg_dump", "pg_dump -Fc", ["pg_dump", "-Fc", "-f", dump_fc, "-d", src_url])
        if row.status == "ok":
            self.add(Row("dump_size", "pg_dump -Fc file size", "size", bytes=dump_fc.stat().st_size))
        row, _ = self.timed("pg_dump_fp", "pg_dump -Fp", ["pg_dump", "-Fp", "-f", dump_fp, "-d", src_url])
        if row.status == "ok":
            self.add(Row("dump_fp_size", "pg_dump -Fp file size", "size", bytes=dump_fp.stat().st_size))
            dump_fp.unlink()

        # 3. full snapshot: directory and S3, alternating, a new store each run
        def drop_extra_stores(kind: str, i: int) -> None:
            # Keep the first run's stores for the restores; drop the others' directories.
            if kind == "dir" and i > 0:
                shutil.rmtree(dir_store(i), ignore_errors=True)

        self.paired("phony_snapshot", "phony snapshot create base (full)",
                    lambda i: self.phony_at(src, str(dir_store(i)), "snapshot", "create", "--name", "base"),
                    lambda i: self.phony_at(src, self.s3_store(f"full-{i}"), "snapshot", "create",
                                            "--name", "base"),
                    baseline="pg_dump", between=drop_extra_stores)
        self.add(Row("phony_store_full", "phony store after base (directory)", "size",
                     bytes=bench.dir_bytes(dir_store(0)), baseline="dump_size"))

        # 4. restore into a new database: from the directory and from S3
        targets: list[str] = []

        def target(kind: str, i: int) -> str:
            name = f"{src}_{kind}_{i}"
            self.created_dbs.append(name)
            targets.append(name)
            return name

        def check_and_drop(i: int) -> str:
            name = targets[-1]
            result = self.check_against_base(name)
            self.done_with(name)
            return result

        self.paired("phony_restore", "phony restore base --target (new db)",
                    lambda i: self.phony_at(src, str(dir_store(0)), "snapshot", "restore", "base",
                                            "--target", url_for(self.base_url, target("dir", i))),
                    lambda i: self.phony_at(src, self.s3_store("full-0"), "snapshot", "restore", "base",
                                            "--target", url_for(self.base_url, target("s3", i))),
                    baseline=None, dir_check=check_and_drop, s3_check=check_and_drop)

        # 5. export to SQL: plain, .zst, .gz, from the directory store
        for key, name, base, size_base in (
                ("export_sql", "export.sql", "pg_dump_fp", "dump_fp_size"),
                ("export_zst", "export.sql.zst", "pg_dump_fp", "dump_size"),
                ("export_gz", "export.sql.gz", "pg_dump_fp", "dump_size")):
            out = self.workdir / name
            row, _ = self.timed(key, f"phony snapshot export base -o {name}",
                                self.phony_at(src, str(dir_store(0)), "snapshot", "export", "base",
                                              "-o", str(out)),
                                phony=True, baseline=base)
            size = out.stat().st_size if out.exists() else 0
            self.add(Row(f"{key}_size", f"{name} size", "size", bytes=size, baseline=size_base,
                         **bench.na_unless(row)))
            if key == "export_sql" and row.status == "ok" and not a.no_verify and a.load_export:
                loaded = f"{src}_from_export"
                self.create_db(loaded)
                proc = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                            url_for(self.base_url, loaded), "-f", out], a.timeout)
                row.check = (self.check_against_base(loaded) if proc.ok
                             else f"psql -f failed: {proc.why()}")
                self.done_with(loaded)
            out.unlink(missing_ok=True)
        shutil.rmtree(dir_store(0), ignore_errors=True)

        # 6. snapshot list of 1,000 snapshots on S3
        self.list_thousand(src)
        self.meta["source_database"] = src

    def list_thousand(self, src: str) -> None:
        """One real snapshot of a tiny database in a directory store, its record copied
        there under 999 more ids (each record's id matches its file name, names unique,
        times spread), the store copied to S3 with `phony store copy`, then timed
        `phony snapshot list` on S3 (and on the directory, for scale)."""
        tiny = f"{src}_tiny"
        self.create_db(tiny)
        proc = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url_for(self.base_url, tiny),
                    "-c", "CREATE TABLE t (id int PRIMARY KEY, v text); "
                          "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g"],
                   self.args.timeout)
        if not proc.ok:
            raise RuntimeError(f"creating the tiny database failed: {proc.why()}")
        local = self.workdir / "store-list"
        s3 = self.s3_store("list")
        self.log(f"- {LIST_SNAPSHOTS} snapshots (one taken, the rest copies of its record), copied to S3")
        made = run(self.phony_at(tiny, str(local), "snapshot", "create", "--name", "list-0000"),
                   self.args.timeout)
        records = sorted((local / "snapshots").glob("snap_*.json"))
        if made.ok and len(records) == 1:
            record = json.loads(records[0].read_text())
            created = dt.datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
            for n in range(1, LIST_SNAPSHOTS):
                sid = "snap_" + secrets.token_hex(6)
                when = (created - dt.timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
                record.update(id=sid, name=f"list-{n:04d}", created_at=when)
                (local / "snapshots" / f"{sid}.json").write_text(json.dumps(record, indent=2) + "\n")
            made = run([self.args.phony, "store", "copy", str(local), s3], self.args.timeout)
            self.log(f"  store copy to S3: {made.seconds:.1f} s" if made.ok else f"  {made.why()}")
        elif made.ok:
            made.code, made.stderr = 1, f"expected one record under {local}/snapshots"
        for key, store, where in (("list_1000_dir", str(local), "directory"), ("list_1000", s3, "S3")):
            step = f"phony snapshot list ({LIST_SNAPSHOTS} in a {where} store)"
            if not made.ok:
                self.add(Row(key, step, "time", status="n/a", error=made.why()))
                continue
            cmd = self.phony_at(tiny, store, "snapshot", "list")
            listed = run(cmd, self.args.timeout)
            count = sum(1 for line in listed.stdout.splitlines() if "list-" in line)
            before = self.moto.usage() if where == "S3" else None
            self.timed_repeated(key, step, cmd, again=lambda: None, phony=True)
            after = self.moto.usage() if where == "S3" else None
            self.rows[key].check = f"{count} listed" if listed.ok else listed.why()
            if listed.ok:
                # The first list after the copy (untimed above): it writes the record index.
                self.rows[key].check += f", first list {listed.seconds:.2f} s"
            if before and after:
                runs = self.args.repeat
                self.rows[key].check += (f", moto: {(after[1] - before[1]) / runs:.0f} requests, "
                                         f"{(after[0] - before[0]) / runs:.1f} s CPU")
                self.log(f"  (moto's server, {runs} lists: {by_method(before[2], after[2])})")
        self.note_moto("after list")
        self.done_with(tiny)

    def compute_ratios(self) -> None:
        super().compute_ratios()
        for key in ("pg_dump_fp", "dump_fp_size"):
            if key in self.rows and self.rows[key].status == "ok":
                self.rows[key].ratio_text = "baseline"
        names = {"pg_dump_fp": "pg_dump -Fp", "dump_fp_size": "pg_dump -Fp file",
                 "phony_snapshot_dir": "directory", "phony_restore_dir": "directory"}
        for row in self.rows.values():
            if row.baseline in names and row.ratio is not None:
                row.ratio_text = f"{row.ratio:.2f}x {names[row.baseline]}"
        if "dump_size" in self.rows:
            for key in ("export_zst_size", "export_gz_size"):
                if key in self.rows and self.rows[key].ratio is not None:
                    self.rows[key].ratio_text = f"{self.rows[key].ratio:.2f}x pg_dump -Fc file"
        for key in ("list_1000", "list_1000_dir"):
            listed = self.rows.get(key)
            if listed is not None and listed.status == "ok":
                listed.ratio_text = "goal <= 1 s" if key == "list_1000" else "for scale"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="gen_shop.sql scale (1.0 ~ 600 MB)")
    ap.add_argument("--phony", default="target/release/phony", help="the phony binary")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each snapshot, restore and list (median shown)")
    ap.add_argument("--moto", default="target/s3-venv/bin/moto_server",
                    help="moto's server binary (what .ci/run installs)")
    ap.add_argument("--port", type=int, default=5065, help="loopback port for moto's server")
    ap.add_argument("--endpoint", default=None,
                    help="use this S3 server (accepting unsigned requests) instead of starting one")
    ap.add_argument("--keep", action="store_true", help="keep the databases and the work directory")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per subprocess")
    ap.add_argument("--workdir", default=None, help="parent of the temporary work directory")
    ap.add_argument("--no-verify", action="store_true", help="skip the fingerprint checks")
    ap.add_argument("--no-load-export", dest="load_export", action="store_false",
                    help="do not load the exported SQL into a new database to check it")
    ap.add_argument("--json", default=str(BENCH_DIR / "results" / "s3-latest.json"),
                    help="where to write the results as JSON")
    args = ap.parse_args()
    if args.scale <= 0 or args.repeat < 1:
        ap.error("--scale must be positive and --repeat 1 or more")
    for attr in ("phony", "moto"):
        path = Path(getattr(args, attr))
        if not path.is_absolute() and not path.exists() and (REPO_DIR / path).exists():
            path = REPO_DIR / path
        setattr(args, attr, str(path.resolve()) if path.exists() else str(path))
    if not Path(args.phony).exists():
        print(f"error: {args.phony} not found (cargo build --release -p phony)", file=sys.stderr)
        return 2
    if args.endpoint is None and not Path(args.moto).exists():
        print(f"error: {args.moto} not found: python3 -m venv target/s3-venv && "
              f"target/s3-venv/bin/pip install 'moto[server]==5.2.5' (or pass --endpoint)",
              file=sys.stderr)
        return 2
    for tool in ("psql", "pg_dump", "createdb", "dropdb"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found on PATH", file=sys.stderr)
            return 2

    base_url = os.environ.get("PHONY_BENCH_URL", bench.DEFAULT_URL)
    workdir = Path(tempfile.mkdtemp(prefix="phony-bench-s3-", dir=args.workdir))
    b = S3Bench(args=args, base_url=base_url, maint_url=bench.maintenance_url(base_url), workdir=workdir)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    failure: str | None = None
    moto: Moto | None = None
    try:
        moto = (Moto(args.endpoint.rstrip("/"), None, None) if args.endpoint
                else Moto.start(args.moto, args.port, workdir))
        b.moto = moto
        b.bucket = f"phony-bench-{os.getpid()}"
        http("PUT", f"{moto.endpoint}/{b.bucket}")
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=moto.endpoint)
        b.meta.update({
            "started_at": started.isoformat(timespec="seconds"),
            "scale": args.scale,
            "repeat": args.repeat,
            "url": bench.redact(base_url),
            "s3_endpoint": moto.endpoint,
            "phony": args.phony,
            "phony_version": bench.tool_version([args.phony, "--version"]),
            "server_version": b.psql_query(b.maint_url, "SHOW server_version").strip(),
            "pg_dump_version": bench.tool_version(["pg_dump", "--version"]),
            "git_commit": bench.tool_version(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
            "load_average_at_start": list(os.getloadavg()),
            "cpus": os.cpu_count(),
            "rss_method": bench.RSS_METHOD,
        })
        b.run_all()
    except KeyboardInterrupt:
        failure = "interrupted"
    except (RuntimeError, OSError) as e:
        failure = str(e)
    finally:
        b.meta["load_average_at_end"] = list(os.getloadavg())
        if args.keep:
            b.log(f"kept: databases {', '.join(b.created_dbs)}; work directory {workdir}")
        else:
            for name in list(b.created_dbs):
                b.drop_db(name)
        if moto is not None:
            moto.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    b.compute_ratios()
    b.meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    if failure:
        b.meta["failure"] = failure
        print(f"error: {failure}", file=sys.stderr)
    rows = list(b.rows.values())
    if rows:
        print()
        print(f"phony on S3 and export, scale {args.scale:g}")
        print_table(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": b.meta, "rows": [vars(r) for r in rows]}, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
