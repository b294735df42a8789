#!/usr/bin/env python3
"""Turns bench/run's raw results (target/bench/<backend>/results.jsonl) into
the load section of bench/RESULTS.md: machine, date, commit, commands, one
table per backend and the ratios of issue #8, each from one run.

--smoke checks that every load ran and that the loads that must succeed had
no errors, then prints the report; it fails (exit 1) otherwise.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

BEGIN = "<!-- load:begin (written by bench/run; edit bench/report.py instead) -->"
END = "<!-- load:end -->"

LOADS = [
    ("healthz", "`GET /healthz` (HTTP floor)"),
    ("baseline", "baseline: the same record read, no auth/tenant/permission layer (`bench` feature)"),
    ("record_bearer", "`GET /v1/collections/bench/records/{id}`, bearer access token"),
    ("record_api_key", "`GET /v1/collections/bench/records/{id}`, API key"),
    ("record_bearer_2", "bearer again (second pair)"),
    ("baseline_2", "baseline again (second pair)"),
    ("login", "`POST /v1/auth/login`, successful, 8 connections"),
    ("refresh", "`POST /v1/auth/refresh`, each with a fresh token (rotation)"),
    ("mfa_complete", "`POST /v1/auth/mfa` (TOTP), each a fresh sign-in step and code; a thread stops when its steps are used (its last requests: 405)"),
    ("legit_alone", "legitimate logins alone, 1 connection"),
    ("attack", "credential stuffing alone: wrong passwords from a pool of 20 addresses (4 in --smoke)"),
    ("attack_with_legit", "the same attack again, while the legitimate stream below runs"),
    ("legit_under_attack", "legitimate logins during that attack, 1 connection"),
]
# Loads whose every answer must be a success.
MUST_SUCCEED = ["healthz", "baseline", "record_bearer", "record_api_key",
                "record_bearer_2", "baseline_2", "login", "refresh",
                "legit_alone", "legit_under_attack"]


def read(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[row["name"]] = row
    return out


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores, {cpu}, {mem}, kernel {platform.release()}; "
            f"load average at report time {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


def errors(row):
    e = row["errors"]
    return e["connect"] + e["read"] + e["write"] + e["timeout"] + e["status"]


def ratio_line(name, value, target, fmt="{:.2f}", higher=True):
    ok = value >= target if higher else value <= target
    verdict = "met" if ok else "**missed**"
    cmp = "≥" if higher else "≤"
    return f"| {name} | {fmt.format(value)} | {cmp} {fmt.format(target)} | {verdict} |"


def backend_section(backend, r):
    lines = [f"### {backend}", ""]
    seed = r.get("seed", {})
    if seed:
        lines += [f"Seed: {seed.get('tenants')} tenants, {seed.get('users')} users, "
                  f"{seed.get('records')} records, {seed.get('api_keys')} API keys.", ""]
    lines += ["| load | requests/s | p50 ms | p99 ms | requests | errors (non-2xx, socket) | statuses |",
              "|---|---|---|---|---|---|---|"]
    for name, label in LOADS:
        row = r.get(name)
        if not row:
            continue
        st = ", ".join(f"{k}: {v}" for k, v in sorted(row.get("statuses", {}).items())) or "—"
        lines.append(f"| {label} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{row['requests']} | {errors(row)} | {st} |")
    lines.append("")

    def rps(n):
        return r[n]["rps"] if n in r else float("nan")

    base = (rps("baseline") + rps("baseline_2")) / 2
    bearer = (rps("record_bearer") + rps("record_bearer_2")) / 2
    cores = r.get("cores", {}).get("n", os.cpu_count())
    hash_s = r.get("argon2_hash", {}).get("mean_seconds", float("nan"))
    ideal = cores / hash_s
    attack = r.get("attack", {})
    rejected = attack.get("statuses", {}).get("429", 0) / attack["seconds"] if attack else float("nan")
    p99_ratio = r["legit_under_attack"]["p99_ms"] / r["legit_alone"]["p99_ms"]
    mfa = r.get("mfa_complete", {})
    mfa_ok = mfa.get("statuses", {}).get("200", 0) / mfa["seconds"] if mfa else float("nan")
    mib = lambda n: r[n]["kib"] / 1024
    lines += [
        "| ratio (one run) | value | target | |",
        "|---|---|---|---|",
        ratio_line("security overhead, bearer = record GET ÷ baseline (mean of two pairs)",
                   bearer / base, 0.85),
        ratio_line("security overhead, API key = record GET ÷ baseline",
                   rps("record_api_key") / base, 0.85),
        ratio_line(f"login efficiency = logins/s ÷ (cores {cores} ÷ argon2id hash "
                   f"{hash_s * 1000:.1f} ms = {ideal:.1f}/s)", rps("login") / ideal, 0.90),
        f"| MFA sign-in completions/s (200 answers of `POST /v1/auth/mfa` ÷ the load's seconds; "
        f"no hash; a lower bound when every prepared step was used before the end) "
        f"beside password sign-ins/s {rps('login'):.0f} | {mfa_ok:.0f} | — | |",
        ratio_line("refresh rotations/s" + ("" if backend == "sqlite" else " (the target is SQLite's)"),
                   rps("refresh"), 2000, "{:.0f}"),
        ratio_line("rate-limited login rejections/s (429 answers ÷ seconds, attack alone)",
                   rejected, 20000, "{:.0f}"),
        ratio_line("legitimate-login p99 under attack ÷ alone", p99_ratio, 1.2, higher=False),
        ratio_line("idle RSS, MiB", mib("rss_idle"), 30, "{:.1f}", higher=False),
        f"| RSS after the full run, MiB | {mib('rss_after_run'):.1f} | — | |",
        f"| RSS after {r['rss_after_sessions'].get('sessions')} more live sessions "
        f"(created and checked), MiB | {mib('rss_after_sessions'):.1f} | — | |",
        "",
    ]
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", required=True)
    p.add_argument("--backends", required=True)
    p.add_argument("--duration", required=True)
    p.add_argument("--connections", required=True)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--into", help="replace the load section of this markdown file")
    a = p.parse_args()

    results = {b: read(os.path.join(a.out_dir, b, "results.jsonl")) for b in a.backends.split()}
    failures = []
    for b, r in results.items():
        for name, _ in LOADS:
            if name not in r or r[name]["requests"] == 0:
                failures.append(f"{b}: load {name} made no requests")
            elif name in MUST_SUCCEED and errors(r[name]) > 0:
                failures.append(f"{b}: load {name} had {errors(r[name])} errors: {r[name]}")
        # Every sign-in step completes: only 200s, and the 405s of the
        # requests in flight when a thread ran out of steps.
        mfa = r.get("mfa_complete", {}).get("statuses", {})
        if not mfa.get("200") or set(mfa) - {"200", "405"}:
            failures.append(f"{b}: MFA completions failed: {mfa}")
        for n in ("rss_idle", "rss_after_run", "rss_after_sessions", "argon2_hash"):
            if n not in r:
                failures.append(f"{b}: {n} missing")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)

    commit = sh("git", "rev-parse", "--short", "HEAD")
    dirty = sh("git", "status", "--porcelain")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [BEGIN, "", "## Load run (`bench/run`)", "",
           "| | |", "|---|---|",
           f"| date | {now} |",
           f"| commit | `{commit}`{' (with uncommitted changes)' if dirty and dirty != '?' else ''} |",
           f"| machine | {machine()} |",
           f"| command | `bench/run{' --smoke' if a.smoke else ''}` — release build with `--features bench`, "
           f"`wrk -t2 -c{a.connections} -d{a.duration}s --latency` per load (scripts in `bench/lua/`), "
           "server and wrk on the same machine |",
           f"| tools | {sh('wrk', '--version').splitlines()[0] if sh('wrk', '--version') != '?' else 'wrk'}; "
           f"{sh('rustc', '--version')} |",
           ""]
    for b, r in results.items():
        out += backend_section(b, r)
    out.append(END)
    text = "\n".join(out) + "\n"
    if a.into:
        try:
            with open(a.into) as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            new = head + text.rstrip("\n") + tail
        else:
            new = text + "\n" + old
        with open(a.into, "w") as f:
            f.write(new)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
