#!/usr/bin/env python3
"""Litestream restore drill: replicate a live souk under transfer load, kill
both at once, restore, and hold the restored database to what was promised.

Each round: a fresh database with an admin (`souk user create`), `souk serve`
on a free port, users registered and given deposits over the API, then
`litestream replicate` with deploy/litestream.yml (or --config), its
database path and file replica path swapped for the round's own: the shipped
configuration, sync interval included, is what is drilled. Client threads
(keep-alive connections) post transfers, each with its own Idempotency-Key
and memo, and note the moment each 201 arrived. After --seconds of load souk and Litestream get SIGKILL at the same moment (the
machine is lost), `litestream restore -o NEW` rebuilds the database from the
replica, and the round is sound only when:

- `PRAGMA integrity_check` on NEW says ok,
- `souk check --db NEW` passes (every ledger invariant),
- every transfer acknowledged more than two sync intervals before the kill
  is in NEW exactly once (its movement: one `out` and one `in` leg, its
  memo on those two rows only, its Idempotency-Key stored once).

    python3 .ci/litestream_drill.py --souk target/release/souk \
        --litestream /path/to/venv/bin/litestream --rounds 10 --rate 0 --seconds 12

--rate is the target of acknowledged writes per second over all clients
(0: unthrottled, the peak souk reaches). Exit 0 only when every round was
sound. Standard library only.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_fuzz import start_server  # noqa: E402  (same start and address logic)

ADMIN_PASSWORD = "drill admin password"
USER_PASSWORD = "drill user password"
# Every sender starts with this much and sends one minor unit a transfer:
# no round comes near spending it.
DEPOSIT = "1000"
AMOUNT = "0.00000001"
CURRENCY = "btc"
# Time Litestream gets to take its first snapshot before the load starts.
REPLICA_START_TIMEOUT_S = 20
# A restore or check that takes longer than this is a failure of its own.
TOOL_TIMEOUT_S = 120
DEPLOY_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "deploy", "litestream.yml")
# The paths in deploy/litestream.yml that each round replaces with its own.
DEPLOY_DB = "/var/lib/souk/souk.db"
DEPLOY_REPLICA = "/var/backups/souk/litestream"


class Api:
    """One keep-alive HTTP/1.1 connection to souk."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None

    def call(self, method, path, body=None, token=None, headers=None):
        """Returns (status, decoded body or None); reconnects once on a dropped connection."""
        data = None if body is None else json.dumps(body).encode()
        head = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            head["Authorization"] = f"Bearer {token}"
        head.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=data, headers=head)
                response = self.conn.getresponse()
                raw = response.read()
                if response.will_close:
                    self.close()
                return response.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def must(self, method, path, body=None, token=None, expect=(200, 201, 204)):
        status, answer = self.call(method, path, body, token)
        if status not in expect:
            raise SystemExit(f"seeding: {method} {path} answered {status}: {answer!r:.500}")
        return answer

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def seed(api, clients):
    """Senders and receivers with sessions; each sender gets a deposit.
    Returns [(sender token, receiver id)] for the client threads."""
    admin = api.must("POST", "/api/v1/sessions", {"username": "admin", "password": ADMIN_PASSWORD})["token"]
    pairs = []
    for index in range(clients):
        ids = []
        tokens = []
        for role in ("s", "r"):
            name = f"drill{role}{index}"
            api.must("POST", "/api/v1/users", {"username": name, "password": USER_PASSWORD})
            session = api.must("POST", "/api/v1/sessions", {"username": name, "password": USER_PASSWORD})
            ids.append(session["user"]["id"])
            tokens.append(session["token"])
        api.must("POST", "/api/v1/admin/deposits", {
            "user_id": ids[0], "currency": CURRENCY, "amount": DEPOSIT, "reference": f"drill-seed-{index}",
        }, token=admin)
        pairs.append((tokens[0], ids[1]))
    return pairs


class Client(threading.Thread):
    """Posts transfers until told to stop; with a rate, paced on a schedule."""

    def __init__(self, host, port, token, to, tag, rate, stop):
        super().__init__(daemon=True)
        self.api = Api(host, port)
        self.token, self.to, self.tag, self.rate, self.stop = token, to, tag, rate, stop
        # (movement id, idempotency key, memo, monotonic time of the 201)
        self.acked = []
        self.errors = 0
        self.other = {}

    def run(self):
        started = time.monotonic()
        sent = 0
        while not self.stop.is_set():
            if self.rate:
                due = started + sent / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            key = f"{self.tag}-{sent}"
            sent += 1
            body = {"to": self.to, "currency": CURRENCY, "amount": AMOUNT, "memo": key}
            try:
                status, answer = self.api.call("POST", "/api/v1/transfers", body, self.token,
                                               {"Idempotency-Key": key})
            except (http.client.HTTPException, OSError):
                # souk was killed (or refused): nothing acknowledged.
                self.errors += 1
                if self.stop.is_set():
                    break
                time.sleep(0.05)
                continue
            if status == 201:
                self.acked.append((int(answer["transfer"]["id"]), key, key, time.monotonic()))
            else:
                self.other[status] = self.other.get(status, 0) + 1
        self.api.close()


def read_config(path):
    """deploy/litestream.yml's text and its active sync interval in seconds.
    The drill runs that file with only its two paths swapped."""
    with open(path) as source:
        text = source.read()
    for fixed in (DEPLOY_DB, DEPLOY_REPLICA):
        if text.count(fixed) != 1:
            raise SystemExit(f"{path}: expected {fixed} exactly once")
    active = [line.split(":", 1)[1].strip() for line in text.splitlines()
              if line.strip().startswith("sync-interval:")]
    if len(active) != 1:
        raise SystemExit(f"{path}: expected one active sync-interval, found {active}")
    units = {"ms": 0.001, "s": 1, "m": 60}
    for unit in ("ms", "s", "m"):
        if active[0].endswith(unit) and active[0][:-len(unit)].replace(".", "", 1).isdigit():
            return text, float(active[0][:-len(unit)]) * units[unit]
    raise SystemExit(f"{path}: cannot read sync-interval {active[0]!r}")


def litestream_config(path, template, db, replica):
    """The deployed configuration, pointed at this round's database and replica."""
    with open(path, "w") as out:
        out.write(template.replace(DEPLOY_DB, db).replace(DEPLOY_REPLICA, replica))


def wait_for_replica(replica, process):
    """Until Litestream has written its first file (a snapshot) into the replica."""
    deadline = time.monotonic() + REPLICA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"litestream exited at start (status {process.returncode})")
        for _, _, files in os.walk(replica):
            if files:
                return
        time.sleep(0.1)
    raise SystemExit("litestream wrote nothing into the replica in time")


def verify(souk, path, required, acked_ids):
    """Problems with the restored database (an empty list: sound)."""
    problems = []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                lines = [line for row in verdict for line in str(row).splitlines()]
                problems.append(f"integrity_check: {'; '.join(lines[:5])} ({len(lines)} lines)")
            legs = {}
            memos = {}
            keys = {}
            if not problems:
                for movement, direction, memo in conn.execute(
                        "SELECT movement_id, direction, memo FROM entries WHERE kind = 'transfer'"):
                    legs.setdefault(movement, []).append(direction)
                    memos[memo] = memos.get(memo, 0) + 1
                for (key,) in conn.execute("SELECT key FROM idempotency"):
                    keys[key] = keys.get(key, 0) + 1
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        problems.append(f"sqlite: {error}")
        return problems, None
    if problems:
        return problems, None
    missing = dup = 0
    for movement, key, memo, _ in required:
        found = sorted(legs.get(movement, []))
        if not found:
            missing += 1
        elif found != ["in", "out"] or memos.get(memo) != 2 or keys.get(key) != 1:
            dup += 1
    if missing:
        problems.append(f"{missing} acknowledged transfers missing")
    if dup:
        problems.append(f"{dup} acknowledged transfers not present exactly once")
    strangers = sum(1 for movement in legs if movement not in acked_ids)
    check = subprocess.run([souk, "check", "--db", path], capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT_S)
    if check.returncode != 0:
        problems.append(f"souk check exit {check.returncode}: {(check.stdout + check.stderr).strip()[:300]}")
    return problems, {"restored_transfers": len(legs), "unacked_in_restore": strangers}


def kill(process):
    if process.poll() is None:
        process.kill()


def one_round(number, args, souk, litestream, work):
    db = os.path.join(work, "souk.db")
    replica = os.path.join(work, "replica")
    restored = os.path.join(work, "restored.db")
    config = os.path.join(work, "litestream.yml")
    env = {
        **os.environ,
        "RUST_LOG": "info",
        "SOUK_ACCESS_LOG": "false",
        "LOGIN_RATE_LIMIT": "100000",
        "SOUK_REGISTRATION_RATE_LIMIT": "100000",
        # Load is the point here: no CPU alert lines.
        "ALERT_CPU_PERCENT": "100",
    }
    env.pop("SOUK_PASSWORD", None)
    made = subprocess.run([souk, "user", "create", "--username", "admin", "--admin"],
                          env={**env, "SOUK_DB": db, "SOUK_PASSWORD": ADMIN_PASSWORD},
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise SystemExit(f"souk user create: exit {made.returncode}: {made.stderr.strip()}")
    server, base = start_server(souk, db, env)
    replicator = None
    try:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        seeder = Api(host, int(port))
        pairs = seed(seeder, args.clients)
        seeder.close()
        litestream_config(config, args.template, db, replica)
        with open(os.path.join(work, "litestream.log"), "w") as log:
            # (0.3 logs to stdout, 0.5 to stderr.)
            # A process group of its own: a wrapper script's litestream dies with it.
            replicator = subprocess.Popen([litestream, "replicate", "-config", config],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        wait_for_replica(replica, replicator)
        stop = threading.Event()
        per_client = args.rate / args.clients if args.rate else 0
        clients = [Client(host, int(port), token, to, f"r{number}c{index}", per_client, stop)
                   for index, (token, to) in enumerate(pairs)]
        started = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(args.seconds)
        killed_at = time.monotonic()
        # The machine is lost: neither gets to finish anything.
        os.kill(server.pid, signal.SIGKILL)
        os.killpg(replicator.pid, signal.SIGKILL)
        stop.set()
        for client in clients:
            client.join(timeout=40)
        server.wait()
        replicator.wait()
    finally:
        kill(server)
        if replicator is not None:
            try:
                os.killpg(replicator.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            replicator.wait()
    acked = [a for client in clients for a in client.acked if a[3] <= killed_at]
    others = {}
    for client in clients:
        for status, count in client.other.items():
            others[status] = others.get(status, 0) + count
    cutoff = killed_at - 2 * args.sync_interval
    required = [a for a in acked if a[3] < cutoff]
    rate = len(acked) / (killed_at - started)
    restore = subprocess.run([litestream, "restore", "-config", config, "-o", restored, db],
                             capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    if restore.returncode != 0:
        problems, counts = [f"litestream restore exit {restore.returncode}: {restore.stderr.strip()[-300:]}"], None
    else:
        problems, counts = verify(souk, restored, required, {a[0] for a in acked})
    return {
        "round": number,
        "acked": len(acked),
        "rate": rate,
        "required": len(required),
        "not_201": others,
        "counts": counts,
        "problems": problems,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--souk", required=True, help="the souk binary")
    parser.add_argument("--litestream", required=True, help="the litestream binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0,
                        help="target acknowledged transfers per second, all clients together (0: unthrottled)")
    parser.add_argument("--seconds", type=float, default=12, help="seconds of load before the kill")
    parser.add_argument("--clients", type=int, default=32, help="client threads (one keep-alive connection each)")
    parser.add_argument("--config", default=DEPLOY_CONFIG,
                        help="Litestream configuration to run (its database and replica paths are swapped)")
    parser.add_argument("--keep", help="copy the directory of every unsound round under this directory")
    args = parser.parse_args()
    args.template, args.sync_interval = read_config(args.config)
    souk = os.path.abspath(args.souk)
    litestream = shutil.which(args.litestream) or os.path.abspath(args.litestream)
    version = subprocess.run([litestream, "version"], capture_output=True, text=True).stdout.strip()
    target = f"{args.rate:.0f}/s" if args.rate else "unthrottled"
    print(f"== litestream drill: litestream {version}, {args.rounds} rounds of {args.seconds:g} s, "
          f"{args.clients} clients, {target}, sync-interval {args.sync_interval:g} s", flush=True)
    results = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="souk-litestream-") as work:
            result = one_round(number, args, souk, litestream, work)
            if result["problems"] and args.keep:
                shutil.copytree(work, os.path.join(args.keep, f"round-{number}"), dirs_exist_ok=True)
        results.append(result)
        counts = result["counts"] or {}
        verdict = "sound" if not result["problems"] else "UNSOUND: " + "; ".join(result["problems"])
        print(f"round {number}: {result['acked']} transfers acknowledged ({result['rate']:.0f}/s), "
              f"{result['required']} required, {counts.get('restored_transfers', '-')} restored "
              f"({counts.get('unacked_in_restore', '-')} never acknowledged), "
              f"other answers {result['not_201'] or 'none'}: {verdict}", flush=True)
    unsound = sum(1 for r in results if r["problems"])
    rates = [r["rate"] for r in results]
    print(f"litestream drill: {version}, {len(results) - unsound} sound, {unsound} unsound of "
          f"{len(results)} rounds; acknowledged {min(rates):.0f}-{max(rates):.0f} transfers/s "
          f"(mean {sum(rates) / len(rates):.0f})", flush=True)
    return 1 if unsound else 0


if __name__ == "__main__":
    sys.exit(main())
