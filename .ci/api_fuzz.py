#!/usr/bin/env python3
"""Fuzz a live souk with Schemathesis against its own OpenAPI document.

Starts the given souk binary on a fresh database, seeds it through the API
(an admin, two users with sessions, deposits in every currency, a transfer,
escrows, listings in every state, orders in every open state and a fee), then runs Schemathesis with every check,
once signed in as a user and once as an admin, with a fixed seed and a
bounded number of examples. Logging out is fuzzed on its own with tokens that may be burnt.
Afterwards the ledger must still pass `souk check`. Exit 0 only when every
run found nothing.

    python3 .ci/api_fuzz.py --souk target/debug/souk \
        --schemathesis /path/to/venv/bin/schemathesis [--max-examples 20]

Standard library only: this runs before anything else is installed.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "schemathesis.toml")
ADMIN_PASSWORD = "fuzzing admin password"
USER_PASSWORD = "fuzzing user password"
STARTUP_TIMEOUT_S = 30


def call(base, method, path, body=None, token=None, expect=(200, 201, 204)):
    """One JSON request; returns the decoded body (or None for 204)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    if status not in expect:
        raise SystemExit(f"seeding: {method} {path} answered {status}: {raw[:500]!r}")
    return json.loads(raw) if raw else None


def start_server(souk, db, env):
    """Starts `souk serve` on port 0; returns the process and its base URL."""
    process = subprocess.Popen(
        [souk, "serve"],
        env={**env, "SOUK_DB": db, "SOUK_ADDR": "127.0.0.1:0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = queue.Queue()

    def pump():
        for line in process.stderr:
            lines.put(line)
            if "ERROR" in line or "WARN" in line or "panicked" in line:
                sys.stderr.write(f"souk: {line}")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                raise SystemExit("souk exited during start")
            continue
        marker = "listening on http://"
        if marker in line:
            address = line.split(marker, 1)[1].split()[0]
            return process, f"http://{address}"
    process.kill()
    raise SystemExit("souk did not log `listening on` in time")


def seed(base, souk, db, env):
    """Users, sessions and money for the fuzzer to work with; returns tokens."""
    admin = call(base, "POST", "/api/v1/sessions", {"username": "admin", "password": ADMIN_PASSWORD})
    users = {}
    for name in ["alice", "bob", "carol"]:
        call(base, "POST", "/api/v1/users", {"username": name, "password": USER_PASSWORD})
        users[name] = call(base, "POST", "/api/v1/sessions", {"username": name, "password": USER_PASSWORD})
    admin_token = admin["token"]
    wallet = call(base, "GET", "/api/v1/wallet", token=users["alice"]["token"])
    for index, currency in enumerate(sorted(wallet["balances"])):
        for name in ["alice", "bob"]:
            call(base, "POST", "/api/v1/admin/deposits", {
                "user_id": users[name]["user"]["id"],
                "currency": currency,
                "amount": "1000",
                "reference": f"seed-{name}-{index}",
            }, token=admin_token)
    alice, bob = users["alice"], users["bob"]
    call(base, "POST", "/api/v1/transfers", {
        "to": bob["user"]["id"], "currency": "btc", "amount": "0.5", "memo": "seed",
    }, token=alice["token"])
    escrows = []
    # Alice buys from bob and bob from alice: as a buyer she may release and
    # dispute, as a seller refund; the admin may resolve disputed ones.
    for buyer, seller in [(alice, bob)] * 4 + [(bob, alice)] * 4:
        escrow = call(base, "POST", "/api/v1/escrows", {
            "seller": seller["user"]["id"], "currency": "btc", "amount": "1.25", "memo": "seed order",
        }, token=buyer["token"])
        escrows.append(escrow["escrow"]["id"])
    for escrow_id in escrows[::4]:
        call(base, "POST", f"/api/v1/escrows/{escrow_id}/dispute", token=alice["token"])
    listings = []
    # Listings of alice's (the user the fuzzer signs in as) and bob's, in
    # both currencies, one paused and one closed: edits reach the rules, the
    # state checks and the other-seller 403.
    for owner, currency, price in [(alice, "btc", "0.25"), (alice, "xmr", "3"), (bob, "btc", "1"),
                                   (bob, "xmr", "0.5"), (alice, "btc", "2"), (alice, "xmr", "7")]:
        listing = call(base, "POST", "/api/v1/listings", {
            "title": f"Seeded {currency} lamp", "description": "A seeded listing.",
            "currency": currency, "price": price, "quantity": 30, "tags": ["seed", currency],
        }, token=owner["token"])
        listings.append(listing["listing"]["id"])
    call(base, "PATCH", f"/api/v1/listings/{listings[4]}", {"state": "paused"}, token=alice["token"])
    call(base, "PATCH", f"/api/v1/listings/{listings[5]}", {"state": "closed"}, token=alice["token"])
    orders = seed_orders(base, alice, bob, listings)
    return {
        "admin": admin_token,
        "user": alice["token"],
        # Logging out burns a token: that route gets tokens of its own.
        "burner": users["carol"]["token"],
        "user_ids": [users[name]["user"]["id"] for name in ["alice", "bob", "carol"]],
        "escrow_ids": escrows,
        "listing_ids": listings,
        "order_ids": orders,
    }


def seed_orders(base, alice, bob, listings):
    """Orders in every open state, alice as buyer and as seller, and one
    completed (so that the platform holds a fee, SOUK_FEE_BPS being set)."""
    def place(buyer, listing):
        order = call(base, "POST", "/api/v1/orders", {"listing": listing, "quantity": 1}, token=buyer["token"])
        return order["order"]["id"]

    def move(who, order, action, body=None):
        call(base, "POST", f"/api/v1/orders/{order}/{action}", body, token=who["token"])

    orders = []
    # alice buys bob's btc listing, bob buys alice's btc and xmr listings.
    for buyer, seller, listing in [(alice, bob, listings[2]), (bob, alice, listings[0])]:
        paid, shipped, disputed = (place(buyer, listing) for _ in range(3))
        move(seller, shipped, "ship", {"tracking": "seeded parcel"})
        move(buyer, disputed, "dispute", {"reason": "seeded dispute"})
        orders += [paid, shipped, disputed]
    completed = place(alice, listings[2])
    move(bob, completed, "ship")
    move(alice, completed, "confirm")
    orders += [completed, place(bob, listings[1])]
    return orders


def write_config(work, seeded):
    """The static settings plus dictionaries of the seeded ids, so that part
    of the generated requests name things that exist and reach the logic
    behind the 404s."""
    with open(CONFIG) as static:
        text = static.read()
    users = json.dumps(seeded["user_ids"])
    escrows = json.dumps(seeded["escrow_ids"])
    listings = json.dumps(seeded["listing_ids"])
    orders = json.dumps(seeded["order_ids"])
    text += f"""
# ---- written by api_fuzz.py from the seeded database ----
[dictionaries.users]
values = {users}

[dictionaries.escrows]
values = {escrows}

[dictionaries.listings]
values = {listings}

[dictionaries.orders]
values = {orders}

[parameters]
"body.to" = {{ dictionary = "users", probability = 0.5 }}
"body.seller" = {{ dictionary = "users", probability = 0.5 }}
"body.user_id" = {{ dictionary = "users", probability = 0.5 }}
"body.transfers[*].to" = {{ dictionary = "users", probability = 0.5 }}
"body.listing" = {{ dictionary = "listings", probability = 0.5 }}

[[operations]]
include-path-regex = 'escrows/[{{]id[}}]'
parameters = {{ "path.id" = {{ dictionary = "escrows", probability = 0.5 }} }}

[[operations]]
include-path-regex = 'orders/[{{]id[}}]'
parameters = {{ "path.id" = {{ dictionary = "orders", probability = 0.5 }} }}

[[operations]]
include-path-regex = 'listings/[{{]id[}}]'
parameters = {{ "path.id" = {{ dictionary = "listings", probability = 0.5 }} }}

[[operations]]
include-path-regex = 'users/[{{]id[}}]'
parameters = {{ "path.id" = {{ dictionary = "users", probability = 0.5 }} }}
"""
    path = os.path.join(work, "schemathesis.toml")
    with open(path, "w") as out:
        out.write(text)
    return path


def schemathesis(binary, config, base, token, label, args, extra):
    command = [
        binary, "--config-file", config, "run", f"{base}/api/v1/openapi.json",
        "--url", base,
        "--checks", "all",
        "--seed", str(args.seed),
        "--max-examples", str(args.max_examples),
        "--workers", "1",
        "--no-color",
        "-H", f"Authorization: Bearer {token}",
        *extra,
    ]
    print(f"== schemathesis as {label}", flush=True)
    started = time.monotonic()
    hooks = {**os.environ, "PYTHONPATH": HERE, "SCHEMATHESIS_HOOKS": "api_fuzz_hooks"}
    result = subprocess.run(command, cwd=args.report_dir, env=hooks)
    print(f"== schemathesis as {label}: exit {result.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    return result.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--souk", required=True)
    parser.add_argument("--schemathesis", required=True)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--report-dir", default=tempfile.gettempdir(),
                        help="where Schemathesis may write its files (cwd of the runs)")
    args = parser.parse_args()
    souk = os.path.abspath(args.souk)
    env = {
        **os.environ,
        "RUST_LOG": "info",
        # The fuzzer signs in and registers far more often than a person.
        "LOGIN_RATE_LIMIT": "100000",
        "SOUK_REGISTRATION_RATE_LIMIT": "100000",
        # Completed orders pay the platform a fee: the fee routes have money to show.
        "SOUK_FEE_BPS": "250",
    }
    env.pop("SOUK_PASSWORD", None)
    ok = True
    with tempfile.TemporaryDirectory(prefix="souk-schemathesis-") as work:
        db = os.path.join(work, "souk.db")
        subprocess.run(
            [souk, "user", "create", "--username", "admin", "--admin"],
            env={**env, "SOUK_DB": db, "SOUK_PASSWORD": ADMIN_PASSWORD},
            check=True, stdout=subprocess.DEVNULL,
        )
        process, base = start_server(souk, db, env)
        try:
            tokens = seed(base, souk, db, env)
            config = write_config(work, tokens)
            logout = ["--include-path", "/api/v1/sessions/current"]
            rest = ["--exclude-path", "/api/v1/sessions/current"]
            ok &= schemathesis(args.schemathesis, config, base, tokens["user"], "a user", args, rest)
            ok &= schemathesis(args.schemathesis, config, base, tokens["admin"], "an admin", args, rest)
            ok &= schemathesis(args.schemathesis, config, base, tokens["burner"], "a user logging out", args, logout)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        check = subprocess.run([souk, "check"], env={**env, "SOUK_DB": db}, capture_output=True, text=True)
        print(f"== souk check after fuzzing: exit {check.returncode}", flush=True)
        if check.returncode != 0:
            print(check.stdout, check.stderr)
            ok = False
    print("schemathesis: " + ("all runs passed" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
