#!/usr/bin/env python3
"""Seeds a running Stockade (built with the `bench` feature) for bench/run.

Through the public API and CLI only, as a customer would:
  - N tenants by sign-up (each with its owner, whose password is argon2id);
  - the other users with `stockade users import` (bcrypt hashes, as a migration
    from another system would bring them; they are not used for sign-in here);
  - R records per tenant in collection `bench`, by CSV import;
  - K API keys per tenant (scope records:read).

Writes a JSON file that the load scripts (bench/lua/*.lua) read. Standard
library only. Every request carries its own X-Forwarded-For address (the
server trusts 127.0.0.1 as a proxy in bench/run), so the per-address sign-in
limit of a single client never throttles the seeding itself.
"""
import argparse
import concurrent.futures
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

PASSWORD = "bench-password-Quartz-7-Lantern"
# bcrypt (cost 10) of PASSWORD, made once with the `bcrypt` package; imported
# users carry it like users migrated from another system.
PASSWORD_BCRYPT = "$2b$10$VqtEqpzODcNQqDE5hcZszev43t97VlBcMfoBoM3n3PAjTTlq0DH6O"
COLLECTION = "bench"


class ApiError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__(f"seed: {method} {path} -> {status}: {body[:400]!r}")
        self.status = status


class Api:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None, token=None, ip="10.0.0.1",
             content_type="application/json", raw=None):
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-Forwarded-For", ip)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=120) as res:
                text = res.read()
                return res.status, (json.loads(text) if text else None), res.headers
        except urllib.error.HTTPError as e:
            raise ApiError(method, path, e.code, e.read()) from None


def seed_ip(n):
    # 10.200.0.0/16: one address per seeding request.
    return f"10.200.{(n // 250) % 250}.{n % 250 + 1}"


def seed_tenant(api, t, args):
    slug = f"bench-{t:03d}"
    owner = f"owner{t:03d}@bench.example"
    api.call("POST", "/v1/auth/signup", {
        "tenant_name": f"Bench {t}", "tenant_slug": slug, "email": owner,
        "password": PASSWORD, "name": f"Owner {t}"}, ip=seed_ip(t))
    # The sign-up waits for its verification link (read from the outbox by
    # a bench-only route: there is no mail server here).
    _, link, _ = api.call(
        "GET", "/bench/verification-token?email=" + urllib.parse.quote(owner),
        ip=seed_ip(t))
    _, body, _ = api.call("POST", "/v1/auth/verify-email", {
        "token": link["token"], "password": PASSWORD}, ip=seed_ip(t))
    token = body["access_token"]
    _, me, _ = api.call("GET", "/v1/me", token=token, ip=seed_ip(t))
    tenant_id = me["tenant"]["id"]
    user_id = me["user"]["id"]

    # Records, by CSV import (all or nothing).
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["key", "name", "amount", "status", "notes"])
    for r in range(args.records):
        w.writerow([f"k{r:06d}", f"Customer {t}-{r}", str(r * 7 % 10000),
                    ("open", "paid", "late")[r % 3],
                    "lorem ipsum dolor sit amet " * 4])
    api.call("POST", f"/v1/collections/{COLLECTION}/import", token=token,
             ip=seed_ip(t), content_type="text/csv", raw=out.getvalue().encode())
    record_ids = []
    cursor = None
    while len(record_ids) < args.ids_per_tenant:
        q = f"?limit=200" + (f"&cursor={cursor}" if cursor else "")
        _, page, _ = api.call("GET", f"/v1/collections/{COLLECTION}/records{q}",
                              token=token, ip=seed_ip(t))
        record_ids += [r["id"] for r in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    record_ids = record_ids[: args.ids_per_tenant]

    keys = []
    for k in range(args.api_keys):
        _, created, _ = api.call("POST", "/v1/api-keys", {
            "name": f"bench key {k}", "scopes": ["records:read"]},
            token=token, ip=seed_ip(t))
        keys.append(created["key"])
    return {"slug": slug, "tenant_id": tenant_id, "owner": owner,
            "owner_id": user_id, "record_ids": record_ids, "api_keys": keys}


def import_users(args, tenants):
    """The other users, per tenant, with the CLI (the server keeps running)."""
    per_tenant = max(0, args.users - len(tenants)) // max(1, len(tenants))
    if per_tenant == 0:
        return 0
    with tempfile.TemporaryDirectory() as d:
        for t in tenants:
            path = os.path.join(d, f"{t['slug']}.csv")
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["email", "name", "password_hash", "role"])
                for u in range(per_tenant):
                    w.writerow([f"user{u:02d}.{t['slug']}@bench.example",
                                f"User {u}", PASSWORD_BCRYPT, "viewer"])
            res = subprocess.run([args.stockade, "users", "import", path,
                                  "--tenant", t["slug"]],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"seed: users import failed: {res.stderr.strip()}")
    return per_tenant * len(tenants)


def login(api, email, ip):
    """Signs in; returns (access token, refresh token)."""
    _, body, headers = api.call("POST", "/v1/auth/login",
                                {"email": email, "password": PASSWORD}, ip=ip)
    refresh = None
    for value in headers.get_all("Set-Cookie") or []:
        if value.startswith("__Host-stockade_refresh="):
            refresh = value.split(";", 1)[0].split("=", 1)[1]
    if not refresh:
        raise SystemExit("seed: login gave no refresh cookie")
    return body["access_token"], refresh


def write_files(api, seed, d, refresh_tokens):
    """The data files of the load scripts (bench/lua)."""
    os.makedirs(d, exist_ok=True)
    tenants = seed["tenants"]
    c = seed["collection"]
    n = [0]

    def next_ip():
        n[0] += 1
        return f"10.201.{(n[0] // 250) % 250}.{n[0] % 250 + 1}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        tokens = list(pool.map(lambda t: login(api, t["owner"], next_ip())[0], tenants))
        refresh = list(pool.map(
            lambda k: login(api, tenants[k % len(tenants)]["owner"], next_ip())[1],
            range(refresh_tokens)))

    def write(name, lines):
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    write("healthz.txt", ["/healthz"])
    write("baseline.txt", [f"/bench/baseline/{t['tenant_id']}/{c}/{r}"
                           for t in tenants for r in t["record_ids"]])
    write("bearer.txt", [f"/v1/collections/{c}/records/{r}\t{tok}"
                         for t, tok in zip(tenants, tokens) for r in t["record_ids"]])
    write("apikey.txt", [f"/v1/collections/{c}/records/{r}\t{t['api_keys'][i % len(t['api_keys'])]}"
                         for t in tenants for i, r in enumerate(t["record_ids"])])
    half = max(1, len(tenants) // 2)
    write("login_legit.txt", [f"{t['owner']}\t{PASSWORD}" for t in tenants[:half]])
    # The attack: wrong passwords for unknown addresses and for the other
    # half of the owners (which lock), never the legitimate users' accounts.
    attack = [f"{t['owner']}\twrong-{i}" for i, t in enumerate(tenants[half:])]
    attack += [f"nobody{i:04d}@bench.example\twrong-{i}" for i in range(200)]
    write("login_attack.txt", attack)
    write("refresh.txt", refresh)


def totp_code(secret_b32, now=None):
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret now."""
    import base64, hashlib, hmac, struct, time
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((now or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def mfa_sign_ins(api, seed, d, count, ip_base=150):
    """Members with a confirmed TOTP and an open sign-in step each
    (POST /bench/mfa-sign-ins); writes mfa.txt: token, address, the current
    code. The codes stay valid for at least 30 s (one step of skew), so the
    load must start at once."""
    tenant = seed["tenants"][0]["tenant_id"]
    _, rows, _ = api.call("POST", "/bench/mfa-sign-ins",
                          {"tenant": tenant, "count": count, "ip_base": ip_base})
    lines = [f"{r['token']}\t{r['ip']}\t{totp_code(r['secret'])}" for r in rows]
    with open(os.path.join(d, "mfa.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def spend_quota(api, base, pool, attempts):
    """Spends the sign-in quota of the attacker's addresses 10.<base>.0.1..pool
    (the same ones bench/lua/login.lua uses), then checks each is refused."""
    def one(k):
        ip = f"10.{base}.0.{k + 1}"
        for a in range(attempts):
            try:
                api.call("POST", "/v1/auth/login",
                         {"email": f"nobody{k:04d}@bench.example", "password": f"wrong-{a}"}, ip=ip)
            except ApiError as e:
                if e.status == 429:
                    return
                if e.status != 401:
                    raise
        raise SystemExit(f"seed: {ip} was never refused after {attempts} failed sign-ins")

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool_:
        list(pool_.map(one, range(pool)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--stockade", required=True, help="the stockade binary (for users import)")
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--users", type=int, default=1000, help="in all, owners included")
    p.add_argument("--records", type=int, default=1000, help="per tenant")
    p.add_argument("--api-keys", type=int, default=10, help="per tenant")
    p.add_argument("--ids-per-tenant", type=int, default=20,
                   help="record ids per tenant written for the read loads")
    p.add_argument("--out", required=True, help="the seed, as JSON")
    p.add_argument("--files", help="write the load scripts' data files here (needs --out of an earlier seed or seeds first)")
    p.add_argument("--refresh-tokens", type=int, default=64)
    p.add_argument("--files-only", action="store_true", help="read --out, do not seed")
    p.add_argument("--mfa-sign-ins", type=int, metavar="N",
                   help="only write mfa.txt: N members with a TOTP and an open sign-in step (reads --out)")
    p.add_argument("--spend-quota", metavar="BASE:POOL",
                   help="only spend the sign-in quota of the attacker's addresses")
    args = p.parse_args()

    api = Api(args.url)
    if args.spend_quota:
        base, pool = (int(x) for x in args.spend_quota.split(":"))
        spend_quota(api, base, pool, 20)
        return
    if args.mfa_sign_ins:
        with open(args.out) as f:
            mfa_sign_ins(api, json.load(f), args.files, args.mfa_sign_ins)
        return
    if args.files_only:
        with open(args.out) as f:
            write_files(api, json.load(f), args.files, args.refresh_tokens)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        tenants = list(pool.map(lambda t: seed_tenant(api, t, args), range(args.tenants)))
    users = len(tenants) + import_users(args, tenants)
    seed = {"password": PASSWORD, "collection": COLLECTION, "tenants": tenants,
            "counts": {"tenants": len(tenants), "users": users,
                       "records": args.records * len(tenants),
                       "api_keys": args.api_keys * len(tenants)}}
    with open(args.out, "w") as f:
        json.dump(seed, f)
    print(f"seeded {seed['counts']}", file=sys.stderr)
    if args.files:
        write_files(api, seed, args.files, args.refresh_tokens)


if __name__ == "__main__":
    try:
        main()
    except ApiError as e:
        raise SystemExit(str(e))
