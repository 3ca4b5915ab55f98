#!/usr/bin/env python3
"""Write the markdown report of one bench/run.sh run and print a short summary.

    report.py RUN_DIR OUT.md

Reads from RUN_DIR (all written by run.sh):
  jobs.tsv      job id, target label, scenario, expected status, description,
                access log ("off"/"file"), scenario group, plain baseline job
  runs.tsv      one row per closed-loop run (see run_wrk in run.sh)
  open.tsv      one row per open-loop run (see oha_parse.py)
  idle.tsv      server name, VmRSS KiB at rest (after one request, before load)
  threads.tsv   osir-gateway CPU per request by thread name (round, job, name, µs/req)
  h2.txt        "job|protocol=… cipher=… alpn=…" as h2load negotiated it (h2-tls)
  flood.json    the flood scenario's figures (lib/flood.py analyze), when it ran
  settings.txt, machine.txt, tls.txt   "key|value" lines
  notes.txt, failures.txt     one line each
"""
import json
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

REFERENCE = "nginx-proxy/plain"
DIRECT = "direct/plain"

# The "Issue figures": (job, its plain baseline) pairs measured in the same rounds.
ACCESS_PAIR = ("osir-w1/cache-hit+accesslog", "osir-w1/cache-hit")
# Two processes with the same request path and no access log: the spread
# between instances that the access-log difference must be read against.
ACCESS_CONTROL = ("osir-w1/cache-hit@tls-instance", "osir-w1/cache-hit")
# osir TLS is paired with plain http to the same process (its plain listener);
# the nginx TLS peer is its own nginx.
TLS_PAIRS = [
    ("nginx proxy", "nginx-proxy/tls", "nginx-proxy/plain"),
    ("osir-gateway public", "osir-w1/public+tls", "osir-w1/public@tls-instance"),
    ("osir-gateway cache-hit", "osir-w1/cache-hit+tls", "osir-w1/cache-hit@tls-instance"),
]
# the same TLS runs against the osir-w1 instance (another process)
TLS_CROSS = [
    ("osir-gateway public", "osir-w1/public+tls", "osir-w1/public"),
    ("osir-gateway cache-hit", "osir-w1/cache-hit+tls", "osir-w1/cache-hit"),
]
# HTTP/2 over TLS (h2load -c4 -m10): osir-gateway cache-hit against the nginx http2 peer
H2_PAIR = ("osir-w1/h2-tls", "nginx-proxy/h2-tls")

# The goals of issue 11, each from ratios measured in this run.
CACHE_HIT = "osir-w1/cache-hit"
KONG_CACHED = "kong-cached/bearer"
KONG_REDIS = "kong-redis/bearer"
STORE_PATH = "osir-small/store-path"
REJECT_401 = "osir-w1/reject-401"
REJECT_403 = "osir-w1/reject-403"
IDLE_SERVER = "osir-w1"           # idle.tsv name of the instance the RSS goal reads
GOAL_OPEN_RATE = "5000"           # open.tsv target rate of the latency goal
GOAL_RSS_BYTES = 20_000_000       # "≤ 20 MB", read as 10^6 bytes (the stricter reading)
ACCESS_LABEL = {"off": "off", "file": "**on (file)**"}
LOADGEN_BUSY = 90.0   # % of its CPU past which wrk may be the bottleneck
SERVER_FULL = 90.0    # % of one CPU below which a server was not given the whole CPU


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_kv(path):
    return [tuple(line.split("|", 1)) for line in read_lines(path) if "|" in line]


def read_tsv(path):
    return [line.split("\t") for line in read_lines(path)]


def open_by_rate(open_rows):
    """open.tsv rows grouped by target rate (column 8; "?" in rows from before
    it existed), rates in the order they ran."""
    groups = OrderedDict()
    for r in open_rows:
        rate = r[7].strip() if len(r) > 7 and r[7].strip() else "?"
        groups.setdefault(rate, []).append(r)
    return groups


def open_medians(rows):
    """job -> (p50, p99, req/s medians over its ok rounds, ok rounds, rounds)."""
    per = defaultdict(list)
    for r in rows:
        per[r[1]].append({"rps": float(r[2]), "p50": float(r[3]), "p99": float(r[4]), "ok": r[5] == "1"})
    med = {}
    for jid, rs in per.items():
        good = [r for r in rs if r["ok"]]
        med[jid] = (statistics.median(r["p50"] for r in good) if good else None,
                    statistics.median(r["p99"] for r in good) if good else None,
                    statistics.median(r["rps"] for r in good) if good else None,
                    len(good), len(rs))
    return med


def open_table(w, jobs, rows, rate):
    """One open-loop latency table: the rows of open.tsv at one target rate."""
    med = open_medians(rows)
    w(f"### At {rate} req/s")
    w("")
    w("| target | p50 ms | p99 ms | p50 added over direct | p99 added over direct | achieved req/s |")
    w("| --- | --- | --- | --- | --- | --- |")
    base = med.get(DIRECT)
    if base and base[0] is None:
        base = None
    for jid, job in jobs.items():
        if jid not in med:
            continue
        name = f"{job['label']}" + ("" if job["scenario"] in ("plain",) else f", {job['scenario']}")
        if med[jid][0] is None:
            w(f"| {name} | FAILED | | | | |")
            continue
        p50, p99, rps, ngood, nall = med[jid]
        if base and jid != DIRECT:
            a50, a99 = f"{p50 - base[0]:+.3f} ms", f"{p99 - base[1]:+.3f} ms"
        else:
            a50 = a99 = "–"
        extra = f" ({nall - ngood} failed)" if nall != ngood else ""
        w(f"| {name} | {p50:.3f} | {p99:.3f} | {a50} | {a99} | {rps:.0f}{extra} |")
    w("")


def fmt_rps(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def med_range(xs, fmt="{:.2f}"):
    """median (min–max), or the one value"""
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def paired(by_round, job, base):
    """Per-round comparisons of job against base, over rounds where both ran fine."""
    out = []
    for rnd in sorted(by_round):
        a, b = by_round[rnd].get(job), by_round[rnd].get(base)
        if a and b and a["ok"] and b["ok"] and b["rps"] > 0 and b["cpu"] > 0:
            out.append({"round": rnd, "ratio": a["rps"] / b["rps"], "cpu_job": a["cpu"],
                        "cpu_base": b["cpu"], "cpu_delta": a["cpu"] - b["cpu"],
                        "cpu_ratio": a["cpu"] / b["cpu"], "rps_job": a["rps"], "rps_base": b["rps"],
                        "lines": a["log_lines"], "requests": a["requests"],
                        "wrk_job": a["wrk_pct"], "wrk_base": b["wrk_pct"],
                        "srv_job": a["server_pct"], "srv_base": b["server_pct"],
                        # req/s per CPU-second of the server, job over base
                        "norm": b["cpu"] / a["cpu"] if a["cpu"] > 0 else 0.0})
    return out


def contention_note(w, pairs):
    """Say so when the servers did not have their CPU to themselves."""
    srv = [x for ps in pairs for p in ps for x in (p["srv_job"], p["srv_base"])]
    if not srv or statistics.median(srv) >= SERVER_FULL:
        return
    w(f"- The servers used {min(srv):.0f}–{max(srv):.0f}% of their CPU (median "
      f"{statistics.median(srv):.0f}%; raw runs, server CPU %): the rest of that CPU went "
      "to the upstream pinned beside them (and to any other work on the machine), so "
      "req/s follow the share the scheduler gave each server as "
      "much as its cost. **The CPU-normalised ratio (req/s per CPU-second = 1e6 / "
      "CPU µs/req, the inverse ratio of CPU per request) is the steadier cost figure "
      "here.**")


def thread_medians(threads, job):
    """thread name -> median µs/req over the rounds, for one job"""
    per = defaultdict(list)
    for rnd, jid, name, us in threads:
        if jid == job:
            per[name].append(us)
    return {k: statistics.median(v) for k, v in per.items()}


def fmt_threads(med):
    shown = [(k, v) for k, v in sorted(med.items(), key=lambda kv: -kv[1]) if v >= 0.05]
    return ", ".join(f"{k} {v:.1f}" for k, v in shown) or "–"


def issue_figures(w, jobs, by_round, tls_info, threads):
    """The section answering the access-log and TLS questions; returns summary lines."""
    summary = []
    job_a, base_a = ACCESS_PAIR
    acc = paired(by_round, job_a, base_a)
    tls = [(name, paired(by_round, j, b)) for name, j, b in TLS_PAIRS]
    if not acc and not any(p for _, p in tls):
        return summary
    w("## Issue figures")
    w("")
    w("Each figure pairs a job with its plain baseline in the same round (same "
      "server CPU, same minute of machine noise), then takes the median over rounds "
      "(min–max in brackets).")
    w("")
    if acc:
        ratio = statistics.median(p["ratio"] for p in acc)
        delta = statistics.median(p["cpu_delta"] for p in acc)
        cratio = statistics.median(p["cpu_ratio"] for p in acc)
        w("### Access log: `[log] access = \"<file>\"` vs `\"off\"`")
        w("")
        norm = statistics.median(p["norm"] for p in acc)
        w("| job | access log | req/s | CPU µs/req | server CPU % |")
        w("| --- | --- | --- | --- | --- |")
        w(f"| {base_a} | off | {med_range([p['rps_base'] for p in acc], '{:.0f}')} | "
          f"{med_range([p['cpu_base'] for p in acc], '{:.1f}')} | "
          f"{med_range([p['srv_base'] for p in acc], '{:.0f}')} |")
        w(f"| {job_a} | on (file) | {med_range([p['rps_job'] for p in acc], '{:.0f}')} | "
          f"{med_range([p['cpu_job'] for p in acc], '{:.1f}')} | "
          f"{med_range([p['srv_job'] for p in acc], '{:.0f}')} |")
        w("")
        w(f"- **(cache-hit with access log) / (cache-hit without), req/s: "
          f"{med_range([p['ratio'] for p in acc])}** over {len(acc)} round(s).")
        w(f"- **The same, CPU-normalised (req/s per CPU-second): "
          f"{med_range([p['norm'] for p in acc])}.**")
        w(f"- CPU per request with the access log: {med_range([p['cpu_delta'] for p in acc], '{:+.1f}')} µs "
          f"(× {med_range([p['cpu_ratio'] for p in acc])}).")
        ta, tb = thread_medians(threads, job_a), thread_medians(threads, base_a)
        if ta and tb:
            w(f"- CPU µs/req by thread (medians; thread names as the kernel truncates them): "
              f"without the log: {fmt_threads(tb)}; with it: {fmt_threads(ta)}.")
        w("- The access-log instance has one more thread (the log writer), pinned to "
          "the same CPU: when that CPU is shared with other work, the scheduler's "
          "per-thread fairness can give the logging instance a larger share of it, "
          "which shows as more req/s; compare the server CPU % columns. Sharing the "
          "one CPU with the writer can also make the runtime thread handle more "
          "requests per wake-up and so spend less CPU per request itself (compare the "
          "by-thread figures): the net CPU µs/req difference is what a gateway pinned "
          "to one CPU pays; the writer thread's own figure is the gross cost of "
          "writing the lines.")
        ctl = paired(by_round, *ACCESS_CONTROL)
        if ctl:
            w(f"- Control, two instances with the access log off ({ACCESS_CONTROL[0]} − "
              f"{ACCESS_CONTROL[1]}, same request path, the first one also holding an idle "
              f"TLS listener): {med_range([p['cpu_delta'] for p in ctl], '{:+.1f}')} µs/req, "
              f"CPU-normalised {med_range([p['norm'] for p in ctl])}. Differences between "
              "processes of about this size are noise, not cost.")
        contention_note(w, [acc])
        lines = sum(p["lines"] for p in acc if p["lines"] >= 0)
        reqs = sum(p["requests"] for p in acc if p["lines"] >= 0)
        if reqs:
            share = 100.0 * lines / reqs
            w(f"- Lines in the access log / requests wrk completed, over these rounds: "
              f"{lines} / {reqs} ({share:.2f}%). The server answers a few requests wrk "
              "stops waiting for at the end of a run, so slightly above 100% is normal.")
            if share < 99.0:
                w(f"  **Below 100%: the gateway's lossy non-blocking writer dropped "
                  f"about {reqs - lines} lines, so the cost above is a lower bound of what "
                  "logging every request costs.**")
        summary.append(f"access log: cache-hit+accesslog / cache-hit = {ratio:.2f}× req/s, "
                       f"{norm:.2f}× CPU-normalised, {delta:+.1f} µs CPU/req (×{cratio:.2f})")
        w("")
    if any(p for _, p in tls):
        w("### TLS: https vs plain http (wrk keep-alive connections: handshakes amortised)")
        w("")
        w("osir-gateway: https and plain http to the same process (the TLS instance "
          "serves both); nginx: the TLS peer against the plain nginx proxy.")
        w("")
        w("| pair | plain req/s | TLS req/s | **TLS / plain req/s** | **TLS / plain, "
          "CPU-normalised** | plain CPU µs/req | TLS CPU µs/req | TLS adds CPU µs/req | "
          "wrk CPU % (TLS run) |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        ratios, norms = {}, {}
        for name, ps in tls:
            if not ps:
                w(f"| {name} | – | – | not measured | – | – | – | – | – |")
                continue
            ratios[name] = statistics.median(p["ratio"] for p in ps)
            norms[name] = statistics.median(p["norm"] for p in ps)
            wrk = [p["wrk_job"] for p in ps if p["wrk_job"] >= 0]
            w(f"| {name} | {fmt_rps(statistics.median(p['rps_base'] for p in ps))} | "
              f"{fmt_rps(statistics.median(p['rps_job'] for p in ps))} | "
              f"**{med_range([p['ratio'] for p in ps])}** | "
              f"**{med_range([p['norm'] for p in ps])}** | "
              f"{statistics.median(p['cpu_base'] for p in ps):.1f} | "
              f"{statistics.median(p['cpu_job'] for p in ps):.1f} | "
              f"{med_range([p['cpu_delta'] for p in ps], '{:+.1f}')} | "
              f"{(f'{statistics.median(wrk):.0f}' if wrk else '–')} |")
        w("")
        ng = ratios.get("nginx proxy")
        for name in ("osir-gateway public", "osir-gateway cache-hit"):
            if name in ratios and ng:
                ngn = norms["nginx proxy"]
                line = (f"{name}: osir TLS/plain {ratios[name]:.2f} next to nginx TLS/plain "
                        f"{ng:.2f} (quotient {ratios[name] / ng:.2f}); CPU-normalised "
                        f"{norms[name]:.2f} next to {ngn:.2f} (quotient {norms[name] / ngn:.2f})")
                w(f"- **{line}**.")
                summary.append("TLS: " + line)
        busy = [(name, p["round"], p["wrk_job"]) for name, ps in tls for p in ps
                if p["wrk_job"] >= LOADGEN_BUSY]
        if busy:
            w(f"- wrk used ≥ {LOADGEN_BUSY:.0f}% of its CPU in "
              + ", ".join(f"{n} round {r} ({x:.0f}%)" for n, r, x in busy)
              + ": there the load generator, not the server, may set the TLS req/s; "
              "the CPU µs/req figures stay valid.")
        cross = [(name, paired(by_round, j, b)) for name, j, b in TLS_CROSS]
        if any(ps for _, ps in cross):
            w("- The same osir TLS runs against the `osir-w1` instance (another process): "
              + "; ".join(f"{name} TLS/plain {med_range([p['ratio'] for p in ps])}, "
                          f"CPU-normalised {med_range([p['norm'] for p in ps])}, "
                          f"{med_range([p['cpu_delta'] for p in ps], '{:+.1f}')} µs/req"
                          for name, ps in cross if ps) + ".")
        contention_note(w, [ps for _, ps in tls])
        if tls_info:
            w("- Handshake seen by `openssl s_client` (OpenSSL, as in wrk): "
              + "; ".join(f"{k}: {v}" for k, v in tls_info) + ".")
        w("")
    return summary


def fmt_int(x):
    return f"{x:,.0f}" if x is not None else "–"


def fmt_ratio(x):
    return f"{x:.4f}" if x is not None else "–"


def fmt_cmds(cmds):
    shown = sorted(cmds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:,}" for k, v in shown[:4]) or "none"


def flood_section(w, run_dir):
    """The Flood section (valid keys under a flood of random keys); returns summary lines."""
    path = os.path.join(run_dir, "flood.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        variants = json.load(f).get("variants", [])
    if not variants:
        return []
    summary = []
    first = variants[0]["settings"]
    secs = int(first.get("seconds", 0))
    w("## Flood: random well-formed keys next to valid-key traffic")
    w("")
    w("The question: do random keys with valid checksums, at full rate, keep the "
      "store's load bounded, and do they evict hot keys? Each variant is a fresh "
      "osir-gateway (workers = 1, access log off, Redis store) with "
      f"`[cache] capacity = {first.get('capacity')}`, `ttl = \"{first.get('ttl')}\"`, "
      f"`negative_ttl = \"{first.get('negative_ttl')}\"`, "
      f"`negative_capacity = {first.get('negative_capacity')}`, "
      f"`[auth] failed_lookup_window = \"{first.get('window')}\"`. "
      f"{first.get('valid_keys')} valid keys (made with `keys create`) are warmed (one "
      "request each), then requested uniformly at random by one wrk (-t2 -c50, "
      f"`wrk/flood.lua`) for {secs} s alone, and again for {secs} s inside a flood of "
      f"{secs + 3} s from a second wrk (-t2 -c50) sending random keys with valid "
      "checksums (`lib/keys.py`), from 1 s after the flood is running to about 2 s "
      "before it ends. Both wrk run on the load-generator CPU, the gateway and Redis "
      "on the server CPU; both wrk connect from 127.0.0.1, so they share one per-IP "
      "budget (spent only by unknown keys). Method: bench/README.md, \"Flood\".")
    w("")
    w("Variants:")
    w("")
    for v in variants:
        w(f"- `{v['id']}`: {v['label']}.")
    w("")
    w("### Valid keys, alone and inside the flood")
    w("")
    w("| variant | valid req/s alone | valid req/s in the flood | in flood / alone | "
      "valid requests (200) in the window, alone / in the flood | **store reads of valid keys, "
      "alone / in the flood** | **hit ratio in the flood** (alone) | hit ratio from the gateway's "
      "counters, in the flood (alone) | positive cache entries before → after the flood |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in variants:
        if "flood" not in v:
            w(f"| {v['id']} | not measured: {v.get('skipped', '?')} | | | | | | | |")
            continue
        a, fl, wh = v["alone"], v["flood"], v["whole"]
        ratio = fl["valid_rps"] / a["valid_rps"] if a["valid_rps"] else None
        w(f"| {v['id']} | {fmt_int(a['valid_rps'])} | {fmt_int(fl['valid_rps'])} | "
          f"{(f'{ratio:.2f}' if ratio is not None else '–')} | "
          f"{fmt_int(a['ok200'])} / {fmt_int(fl['ok200'])} | "
          f"**{fmt_int(a.get('valid_store_reads'))} / {fmt_int(fl.get('valid_store_reads'))}** | "
          f"**{fmt_ratio(fl.get('store_hit_ratio'))}** ({fmt_ratio(a.get('store_hit_ratio'))}) | "
          f"{fmt_ratio(fl['hit_ratio'])} ({fmt_ratio(a['hit_ratio'])}) | "
          f"{fmt_int(wh['positive_before'])} → {fmt_int(wh['positive_after'])} |")
    w("")
    w("### Store load while both loads run")
    w("")
    w("| variant | flood req/s (401/s, 429/s) | **store commands/s** | key lookups (HGETALL)/s | "
      "other commands/s | store commands/s, valid keys alone | store lookups/s (gateway) | "
      "Redis CPU % | gateway CPU % | wrk CPU % (valid / flood) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in variants:
        if "flood" not in v:
            continue
        a, fl, wh = v["alone"], v["flood"], v["whole"]
        wv, wf = fl["valid_wrk_cpu_pct"], wh["wrk_cpu_pct"]
        wrk = f"{wv:.0f} / {wf:.0f}" if wv >= 0 and wf >= 0 else "–"
        w(f"| {v['id']} | {fmt_int(fl['flood_rps'])} ({fmt_int(fl['flood_401_per_s'])}, "
          f"{fmt_int(fl['flood_429_per_s'])}) | **{fl['commands_per_s']:,.1f}** | "
          f"{fl['lookup_commands_per_s']:,.1f} | {fl['other_commands_per_s']:,.1f} | "
          f"{a['commands_per_s']:,.1f} | {fl['store_lookups_per_s']:,.1f} | "
          f"{fl['redis_cpu_pct']:.0f} | {fl['gw_cpu_pct']:.0f} | {wrk} |")
    w("")
    w("### The whole flood (from before its first request to after its last)")
    w("")
    w("| variant | flood requests | 401 | 429 | distinct keys sent | store lookups | "
      "cache misses | negative hits | negative cache entries (end of the valid run) | "
      "commands by name | gateway peak RSS MiB |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in variants:
        if "flood" not in v:
            continue
        wh = v["whole"]
        distinct = min(wh["sent"], int(v["settings"].get("random_keys", 0)))
        rep = " (repeating)" if wh["wraps"] else ""
        w(f"| {v['id']} | {fmt_int(wh['requests'])} | {fmt_int(wh['s401'])} | {fmt_int(wh['s429'])} | "
          f"{fmt_int(distinct)}{rep} | {fmt_int(wh['store_lookups'])} | "
          f"{fmt_int(wh['lookups'].get('miss', 0))} | {fmt_int(wh['lookups'].get('negative_hit', 0))} | "
          f"{fmt_int(wh['negative_during'])} | {fmt_cmds(wh['commands'])} | {wh['gw_hwm_mib']:.1f} |")
    w("")
    w("Definitions:")
    w("")
    w("- **Store reads of valid keys** (from the store's side, ±1): the increase of "
      "Redis' `keyspace_hits` (reads that found a key: lookups of known keys, plus one "
      "HGET per key in the gateway's usage flush and two per change-feed XREAD, all "
      "subtracted using `commandstats`; the flush's other commands are writes, which "
      "Redis does not count, and unknown keys' lookups are `keyspace_misses`; a "
      "blocking XREAD scores one hit when it starts and one when its block ends, and "
      "its call is counted at the end, hence the ±1) between two snapshots taken "
      "inside the valid run "
      "(0.75 s after its start and before its end). \"–\" if a command this accounting "
      "does not know showed up. **Hit ratio** = 1 − those reads / the valid requests "
      "answered 200 in the same window (gateway `requests_total`): the share of valid "
      "requests answered without the store. A valid key evicted by the flood would need "
      "a store read and lower it.")
    w("- **Hit ratio from the gateway's counters** = the increase of "
      "`key_cache_lookups_total{result=\"hit\"}` / the increase of "
      "`requests_total{route=\"/v1/domains\",status=\"200\"}` in the same window. "
      "Random keys never score a positive hit and never get a 200, so the flood's misses "
      "do not pollute it; but the two counters move at different moments of a request "
      "(the hit at the key check, the 200 with the response), so up to one request per "
      "connection can sit between them: ±50 requests, which is ±0.005 when the valid "
      "keys only get ~10,000 requests into the window.")
    w("- **Store commands/s** = the increase of the summed `calls` of Redis `INFO "
      "commandstats` (every command of every client of that redis-server, the "
      "snapshots' own INFO left out) over the wall time between the same two snapshots. "
      "HGETALL is the key lookup; the other commands are the gateway's liveness "
      "probes (PING, about 1/s, and SUBSCRIBE where a pub/sub connection is used), "
      "the change feed's blocking XREAD (up to 4/s; with the PINGs, the whole of "
      "\"valid keys alone\" when no usage flush lands in it) and its usage flush (an "
      "EVALSHA every `usage.flush_interval`, 10 s, with HINCRBY/HGET/HSET per key used: "
      "the valid keys' bookkeeping, whether or not a flood runs, landing in a window or "
      "not by timing). Store lookups/s is the gateway's "
      "`store_lookups_total` over the same time.")
    w("- Flood req/s (401/s, 429/s) come from the gateway's `requests_total` in that "
      "window; the last table's counts from wrk (the whole flood) and the gateway "
      "(store lookups, `key_cache_lookups_total`). CPU %: utime+stime from /proc "
      "over the window (100 = one CPU).")
    w("- Valid req/s in the flood fall mostly because the gateway's one CPU is "
      "shared: the two wrk keep 50 connections each busy, so the flood gets its "
      "share of the gateway whatever it costs the store.")
    w("")
    for v in variants:
        if "flood" not in v:
            continue
        a, fl, wh = v["alone"], v["flood"], v["whole"]
        st = v["settings"]
        ratio = fl["valid_rps"] / a["valid_rps"] if a["valid_rps"] else 0
        text = (f"`{v['id']}`: flood at {fmt_int(fl['flood_rps'])} req/s; the store saw "
                f"{fl['commands_per_s']:,.1f} commands/s ({fl['lookup_commands_per_s']:,.1f} "
                f"key lookups/s) against {a['commands_per_s']:,.1f} with the valid keys alone; "
                f"the valid keys kept a hit ratio of {fmt_ratio(fl.get('store_hit_ratio'))} "
                f"({fmt_int(fl.get('valid_store_reads'))} store reads of known keys; "
                f"{fmt_ratio(fl['hit_ratio'])} from the gateway's counters) at "
                f"{ratio:.2f}× their req/s alone.")
        budget = int(st.get("budget", 0))
        if budget < 1_000_000 and wh["s429"]:
            admitted = wh["s401"] + 1   # + the one-request check before the flood
            text += (f" Unknown keys that reached the store from 127.0.0.1 in this window of "
                     f"{st.get('window')}: {admitted} ({wh['s401']} in the flood + 1 in the "
                     f"one-request check) for a budget of {budget}; then only 429.")
            if admitted > budget:
                text += (" The budget is checked before a lookup and charged when it fails, "
                         "so lookups already in flight when it runs out (up to one per "
                         "connection) still reach the store.")
        if wh["wraps"] and budget >= 1_000_000 and int(st.get("random_keys", 0)) > 10000:
            text += (f" **The flood went through its {int(st.get('random_keys', 0)):,} keys and "
                     "started over: later requests repeated keys, some answered from the "
                     "negative cache (raise BENCH_FLOOD_RANDOM).**")
        w(f"- {text}")
        if (fl.get("valid_store_reads") or 0) > 0:
            w(f"  **Valid keys needed the store during the flood: {fl['valid_store_reads']:,} "
              f"store reads of known keys, hit ratio {fmt_ratio(fl.get('store_hit_ratio'))}.**")
        if fl.get("unaccounted_commands"):
            w(f"  Store reads of valid keys not computed: commands outside the accounting "
              f"showed up ({', '.join(fl['unaccounted_commands'])}).")
        if wh["positive_before"] is not None and wh["positive_after"] is not None \
                and wh["positive_after"] < wh["positive_before"]:
            w(f"  **The positive cache shrank during the flood "
              f"({wh['positive_before']:.0f} → {wh['positive_after']:.0f} entries).**")
        summary.append(f"flood/{v['id']}: valid {fmt_rps(a['valid_rps'])} req/s alone → "
                       f"{fmt_rps(fl['valid_rps'])} in the flood ({ratio:.2f}×), hit ratio "
                       f"{fmt_ratio(fl.get('store_hit_ratio'))} ({fmt_int(fl.get('valid_store_reads'))} "
                       f"valid-key store reads; counters {fmt_ratio(fl['hit_ratio'])}); flood {fmt_rps(fl['flood_rps'])} req/s "
                       f"(whole flood 401: {wh['s401']}, 429: {wh['s429']}); store "
                       f"{fl['commands_per_s']:,.0f} cmd/s, {fl['lookup_commands_per_s']:,.0f} lookups/s; "
                       f"negative hits {wh['lookups'].get('negative_hit', 0):,.0f}")
    rep_v = next((v for v in variants if v["id"] == "no-budget-repeat" and "flood" in v), None)
    if rep_v:
        n = int(rep_v["settings"].get("random_keys", 0))
        nttl = rep_v["settings"].get("negative_ttl", "5s")
        wh = rep_v["whole"]
        try:
            bound = f" (≈ {n / float(nttl.rstrip('s')):,.0f} lookups/s in the long run)"
        except ValueError:
            bound = ""
        w(f"- With the budget off and a flood cycling over {n:,} keys, the negative cache "
          f"remembers each for {nttl}, so the store is asked about once per key per "
          f"{nttl}{bound}, whatever the flood's rate: {fmt_int(wh['store_lookups'])} store "
          f"lookups for {fmt_int(wh['requests'])} flood requests over {wh['seconds']:.1f} s. "
          f"The lookups come in bursts (each key once at the flood's start, again when its "
          f"entry expires), so a window of a few seconds can see more or less than the "
          f"long-run rate.")
    if any(v["id"] == "no-budget" and "flood" in v for v in variants):
        w("- With the budget off and every flood key new, the negative cache cannot help "
          "(a key is only remembered after its first lookup): each random key costs one "
          "store lookup, so the store's load follows the flood's rate. The per-IP budget "
          "is what bounds that case.")
    w("")
    return summary


def paired_ratio(by_round, runs, job, base, key="ratio"):
    """(median, per-round values) of job/base in the same rounds; None if either
    never ran, "failed" if they ran but no round has both fine."""
    if job not in runs or base not in runs:
        return None
    ps = paired(by_round, job, base)
    if not ps:
        return "failed"
    vals = [p[key] for p in ps]
    return statistics.median(vals), vals, ps


def verdict(parts):
    """parts: [(name, measured?, met?)] -> met / not met / not run, with the parts' state"""
    run = [(n, ok) for n, m, ok in parts if m]
    missing = [n for n, m, _ in parts if not m]
    if not run:
        return "not run"
    failed = [n for n, ok in run if not ok]
    gap = f" ({', '.join(missing)}: not run)" if missing else ""
    if failed:
        which = f": {', '.join(failed)}" if len(parts) > 1 else ""
        return f"**not met**{which}{gap}"
    return f"met{gap}" if not missing else f"met as far as run{gap}"


def goals_section(runs, by_round, open_rows, idle):
    """The "Goals" section (issue 11): rows of (figure, goal, measured, verdict);
    returns (markdown lines, summary lines)."""
    rows = []

    def ratio_part(name, job, base, goal, key="ratio", higher=True, fmt="{:.2f}×", prefix=""):
        """(part for verdict(), text): the median of job/base against the goal"""
        r = paired_ratio(by_round, runs, job, base, key)
        if r is None:
            missing = ", ".join(f"`{j}`" for j in (job, base) if j not in runs)
            return (prefix or name, False, False), f"{prefix}not run ({missing})"
        if r == "failed":
            return ((prefix or name, False, False),
                    f"{prefix}failed: no round where `{job}` and `{base}` both ran fine (see Failures)")
        med, vals, _ = r
        ok = med >= goal if higher else med <= goal
        rng = f" ({fmt.format(min(vals))}–{fmt.format(max(vals))})" if len(vals) > 1 else ""
        return (prefix or name, True, ok), f"{prefix}{fmt.format(med)}{rng} {name}"

    # cache-hit throughput
    a, ta = ratio_part("nginx proxy_pass", CACHE_HIT, REFERENCE, 1.10)
    b, tb = ratio_part("Kong-like cached", CACHE_HIT, KONG_CACHED, 1.35)
    rows.append(("cache-hit throughput", "≥ 1.10× nginx `proxy_pass`, ≥ 1.35× the Kong-like cached peer",
                 f"{ta}; {tb}", verdict([a, b])))

    # CPU per request
    c, tc = ratio_part("nginx proxy_pass", CACHE_HIT, REFERENCE, 0.90, key="cpu_ratio", higher=False)
    r = paired_ratio(by_round, runs, CACHE_HIT, REFERENCE, "cpu_ratio")
    if isinstance(r, tuple):
        ps = r[2]
        tc += (f" ({statistics.median(p['cpu_job'] for p in ps):.1f} / "
               f"{statistics.median(p['cpu_base'] for p in ps):.1f} µs/req)")
    rows.append(("CPU per request, cache hit", "≤ 0.90× nginx `proxy_pass`", tc, verdict([c])))

    # added latency over direct at 5k req/s (open loop)
    groups = open_by_rate(open_rows)
    lat_goal = "p50 ≤ +0.08 ms, p99 ≤ +0.20 ms"
    if GOAL_OPEN_RATE not in groups:
        ran = ", ".join(k for k in groups) if groups else ""
        rows.append(("added latency over direct at 5k req/s", lat_goal,
                     f"not run at {int(GOAL_OPEN_RATE):,} req/s" + (f" (open loop ran at {ran})" if ran else ""),
                     "not run"))
    else:
        med = open_medians(groups[GOAL_OPEN_RATE])
        d, g = med.get(DIRECT), med.get(CACHE_HIT)
        if not d or not g:
            rows.append(("added latency over direct at 5k req/s", lat_goal,
                         f"not run ({'direct' if not d else 'osir-gateway cache-hit'} missing from the open loop)",
                         "not run"))
        elif d[0] is None or g[0] is None:
            rows.append(("added latency over direct at 5k req/s", lat_goal,
                         "failed (see Failures)", "not run"))
        else:
            a50, a99 = g[0] - d[0], g[1] - d[1]
            parts = [("p50", True, a50 <= 0.08), ("p99", True, a99 <= 0.20)]
            rows.append(("added latency over direct at 5k req/s", lat_goal,
                         f"p50 {a50:+.3f} ms, p99 {a99:+.3f} ms (osir-gateway cache-hit "
                         f"{g[0]:.3f} / {g[1]:.3f} ms, direct {d[0]:.3f} / {d[1]:.3f} ms; "
                         f"medians of {g[3]} round(s))", verdict(parts)))

    # store path
    s_, ts = ratio_part("Kong-like Redis every request", STORE_PATH, KONG_REDIS, 1.5)
    rows.append(("store path", "≥ 1.5× the Kong-like Redis-every-request peer", ts, verdict([s_])))

    # 401 / 403 at full rate
    r1, t1 = ratio_part("cache-hit", REJECT_401, CACHE_HIT, 3.0, prefix="401: ")
    r3, t3 = ratio_part("cache-hit", REJECT_403, CACHE_HIT, 3.0, prefix="403: ")
    rows.append(("401/403 at full rate", "≥ 3× cache-hit", f"{t1}; {t3}",
                 verdict([("401",) + r1[1:], ("403",) + r3[1:]])))

    # HTTP/2 over TLS
    h, th = ratio_part("nginx http2", *H2_PAIR, 1.0)
    rows.append(("HTTP/2 over TLS (h2load, 10 streams × 4 connections)",
                 "≥ 1.0× nginx with `http2 on` proxying to the same upstream", th, verdict([h])))

    # idle RSS
    idle_d = dict(idle)
    if IDLE_SERVER in idle_d:
        kib = idle_d[IDLE_SERVER]
        others = [f"{n} {k / 1024:.1f} MiB" for n, k in idle if n.startswith("osir") and n != IDLE_SERVER]
        text = (f"{kib / 1024:.1f} MiB = {kib * 1024 / 1e6:.1f} MB ({IDLE_SERVER}"
                + (f"; other instances: {', '.join(others)}" if others else "") + ")")
        rows.append(("idle RSS", "≤ 20 MB", text, verdict([("idle", True, kib * 1024 <= GOAL_RSS_BYTES)])))
    else:
        rows.append(("idle RSS", "≤ 20 MB", f"not run ({IDLE_SERVER} did not run)", "not run"))

    out = ["## Goals", "",
           "Issue 11's goals, each from this run alone: a ratio is the median over rounds "
           "of the ratio of the two jobs in the same round (min–max in brackets), as "
           "in \"× nginx proxy\" below.", "",
           "| figure | goal | measured | met? |", "| --- | --- | --- | --- |"]
    out += [f"| {f} | {g} | {m} | {v} |" for f, g, m, v in rows]
    out += ["",
            "Sources: cache-hit = `osir-w1/cache-hit` (workers=1) against `nginx-proxy/plain` "
            "and `kong-cached/bearer`; CPU per request = the same runs' CPU µs/req, "
            "gateway / nginx; added latency = the open loop (oha, latency-corrected) at "
            f"{int(GOAL_OPEN_RATE):,} req/s, medians of `osir-w1/cache-hit` minus `direct/plain`; "
            "store path = `osir-small/store-path` (cache 1,000, keys drawn from Redis) against "
            "`kong-redis/bearer`; 401/403 = `osir-w1/reject-401` and `osir-w1/reject-403` req/s "
            "over `osir-w1/cache-hit`; HTTP/2 = `osir-w1/h2-tls` against `nginx-proxy/h2-tls` "
            f"(see \"HTTP/2 over TLS\"); idle RSS = VmRSS of `{IDLE_SERVER}` at rest "
            "(\"Memory at rest\"), 20 MB read as 20 × 10⁶ bytes. \"not run\": the scenario was "
            "not selected in this run (or its peer could not start, see Notes).", ""]
    summary = [f"goal {f}: " + (m if v == "not run" else f"{v.replace('**', '')} ({m})")
               for f, _, m, v in rows]
    return out, summary


def h2_section(w, by_round, runs, h2_info):
    """HTTP/2 over TLS: osir-gateway against the nginx http2 peer; returns summary lines."""
    job, base = H2_PAIR
    if job not in runs and base not in runs:
        return []
    w("## HTTP/2 over TLS (h2load)")
    w("")
    w("h2load, 4 connections × 10 concurrent streams (`-c4 -m10`), one thread pinned to the "
      "load-generator CPU, ALPN h2, TLS with the run's self-signed certificate; "
      "osir-gateway's TLS instance on a cache-hit request (`Authorization: Bearer`, "
      "`/v1/domains`) against nginx `listen … ssl` with HTTP/2 and the keepalive pool "
      "to the same upstream (`peers/proxy-h2.conf.tmpl`). Both speak HTTP/1.1 to the upstream.")
    w("")
    w("| job | req/s median (min–max) | CPU µs/req | server CPU % | h2load CPU % | negotiated |")
    w("| --- | --- | --- | --- | --- | --- |")
    info = dict(h2_info)
    for jid in (base, job):
        good = [r for r in runs.get(jid, []) if r["ok"]]
        if not good:
            state = "FAILED" if jid in runs else "not run"
            w(f"| {jid} | {state} | – | – | – | {info.get(jid, '–')} |")
            continue
        lg = [r["wrk_pct"] for r in good if r["wrk_pct"] >= 0]
        w(f"| {jid} | {med_range([r['rps'] for r in good], '{:.0f}')} | "
          f"{med_range([r['cpu'] for r in good], '{:.1f}')} | "
          f"{statistics.median(r['server_pct'] for r in good):.0f} | "
          f"{(f'{statistics.median(lg):.0f}' if lg else '–')} | {info.get(jid, '–')} |")
    w("")
    ps = paired(by_round, job, base)
    summary = []
    if ps:
        ratio = statistics.median(p["ratio"] for p in ps)
        norm = statistics.median(p["norm"] for p in ps)
        w(f"- **osir-gateway / nginx over HTTP/2, req/s: {med_range([p['ratio'] for p in ps])}**; "
          f"CPU-normalised (req/s per CPU-second): {med_range([p['norm'] for p in ps])}; "
          f"CPU per request {med_range([p['cpu_delta'] for p in ps], '{:+.1f}')} µs "
          f"(× {med_range([p['cpu_ratio'] for p in ps])}), over {len(ps)} round(s).")
        busy = [p for p in ps if max(p["wrk_job"], p["wrk_base"]) >= LOADGEN_BUSY]
        if busy:
            w(f"- h2load used ≥ {LOADGEN_BUSY:.0f}% of its CPU in {len(busy)} round(s): there the "
              "load generator may have set the pace; the CPU µs/req figures stay valid.")
        contention_note(w, [ps])
        summary.append(f"HTTP/2: osir-w1/h2-tls / nginx-proxy/h2-tls = {ratio:.2f}× req/s, "
                       f"{norm:.2f}× CPU-normalised")
    w("- h2load counts statuses by class only (2xx … 5xx) and prints no latency "
      "percentiles; a run fails on any non-2xx, failed, errored or timed-out request, "
      "or if ALPN did not select h2.")
    w("")
    return summary


def main(run_dir, out_path):
    jobs = OrderedDict()
    for row in read_tsv(os.path.join(run_dir, "jobs.tsv")):
        jid, label, scenario, expect, desc, access, group, base = (row + [""] * 8)[:8]
        jobs[jid] = {"label": label, "scenario": scenario, "expect": expect, "desc": desc,
                     "access": access or "off", "group": group, "with": base}

    # round -> job -> run ; job -> [runs]
    runs = defaultdict(list)
    by_round = defaultdict(dict)
    for r in read_tsv(os.path.join(run_dir, "runs.tsv")):
        run = {
            "round": int(r[0]), "job": r[1], "rps": float(r[2]), "requests": int(r[3]),
            "cpu": float(r[5]), "store_cpu": float(r[6]), "hwm_kib": int(r[7]),
            "p50_us": int(r[8]), "p99_us": int(r[9]), "ok": r[10] == "1",
            "log_lines": int(r[11]), "loadgen_us": int(r[12]),
            "note": r[13] if len(r) > 13 else "",
        }
        dur = int(r[4])
        # share of one CPU the server (CPU µs/req × req/s) and wrk (rusage / wall) used
        run["server_pct"] = run["cpu"] * run["rps"] / 1e4
        run["wrk_pct"] = 100.0 * run["loadgen_us"] / dur if run["loadgen_us"] >= 0 and dur > 0 else -1.0
        runs[run["job"]].append(run)
        by_round[run["round"]][run["job"]] = run

    settings = read_kv(os.path.join(run_dir, "settings.txt"))
    machine = read_kv(os.path.join(run_dir, "machine.txt"))
    notes = read_lines(os.path.join(run_dir, "notes.txt"))
    tls_info = read_kv(os.path.join(run_dir, "tls.txt"))
    failures = read_lines(os.path.join(run_dir, "failures.txt"))
    mode = dict(settings).get("mode", "?")
    date = dict(machine).get("date (UTC)", "")

    out = []
    w = out.append
    w(f"# osir-gateway load benchmark: {mode} run, {date} UTC")
    w("")
    w("Produced by `bash bench/run.sh`; the method is in `bench/README.md`. "
      "Absolute figures drift between runs on a shared machine: compare the ratios "
      "and CPU per request measured in the same run.")
    w("")
    if failures:
        w(f"**This run FAILED: {len(failures)} problem(s), listed under Failures. "
          "Figures from failed runs are left out of the medians.**")
        w("")
    for k, v in settings:
        w(f"- {k}: {v}")
    w("")
    goals_at = len(out)   # the Goals section goes here, once every figure is read

    # ---------------------------------------------------------- closed loop
    w("## Closed loop: maximum throughput (wrk)")
    w("")
    w("| target | scenario | access log | req/s median (min–max) | × nginx proxy | CPU µs/req | peak RSS MiB |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for jid, job in jobs.items():
        if jid not in runs:
            continue
        good = [r for r in runs[jid] if r["ok"]]
        failed = len(runs[jid]) - len(good)
        if not good:
            w(f"| {job['label']} | {job['scenario']} | {ACCESS_LABEL.get(job['access'], job['access'])} "
              f"| FAILED ({failed} run(s)) | – | – | – |")
            summary.append((job, None, None, None))
            continue
        rps = [r["rps"] for r in good]
        med = statistics.median(rps)
        rng = f"{fmt_rps(med)} ({fmt_rps(min(rps))}–{fmt_rps(max(rps))})" if len(rps) > 1 else fmt_rps(med)
        if failed:
            rng += f", {failed} failed"
        # ratio to the nginx proxy in the same round, then the median of those
        ratios = []
        for r in good:
            ref = by_round[r["round"]].get(REFERENCE)
            if ref and ref["ok"] and ref["rps"] > 0:
                ratios.append(r["rps"] / ref["rps"])
        ratio = statistics.median(ratios) if ratios else None
        cpu = statistics.median(r["cpu"] for r in good)
        cpu_s = f"{cpu:.1f}"
        stores = [r["store_cpu"] for r in good if r["store_cpu"] >= 0]
        if stores:
            sc = statistics.median(stores)
            if sc >= 0.05:
                cpu_s += f" (+{sc:.1f} in Redis)"
        rss = max(r["hwm_kib"] for r in good) / 1024
        ratio_s = f"{ratio:.2f}" if ratio is not None else "–"
        w(f"| {job['label']} | {job['scenario']} | {ACCESS_LABEL.get(job['access'], job['access'])} "
          f"| {rng} | {ratio_s} | {cpu_s} | {rss:.1f} |")
        summary.append((job, med, ratio, cpu))
    w("")
    w("Scenarios:")
    w("")
    for jid, job in jobs.items():
        if jid in runs:
            expect = "" if job["expect"].startswith("2") else f" (expects {job['expect']})"
            w(f"- {job['label']} / {job['scenario']}: {job['desc']}{expect}")
    w("")
    w("× nginx proxy is the median, over rounds, of the ratio to the nginx proxy in "
      "the same round. CPU µs/req is the server's utime+stime (all its threads and, for "
      "nginx, master plus worker) over the run divided by the requests completed; "
      "\"in Redis\" is the same for the store's redis-server. Peak RSS is VmHWM summed "
      "over the server's processes, reset before each run, the largest of the runs. "
      "Access log: whether that server wrote an access line per request (every "
      "server runs with its access log off except the rows marked on).")
    w("")
    idle = [(r[0], int(r[1])) for r in read_tsv(os.path.join(run_dir, "idle.tsv"))
            if len(r) >= 2 and r[1].strip().isdigit()]
    if idle:
        w("### Memory at rest")
        w("")
        w("| server (run.sh name) | RSS MiB |")
        w("| --- | --- |")
        for name, kib in idle:
            w(f"| {name} | {kib / 1024:.1f} |")
        w("")
        w("VmRSS summed over the server's processes once it is up and has answered its "
          "one-request check, before any load (osir-gateway instances whose cache was "
          "seeded hold no keys yet: the CLI wrote them to Redis).")
        w("")
    threads = [(int(r[0]), r[1], r[2], float(r[3]))
               for r in read_tsv(os.path.join(run_dir, "threads.tsv")) if len(r) >= 4]
    issue_summary = issue_figures(w, jobs, by_round, tls_info, threads)
    issue_summary += h2_section(w, by_round, runs, read_kv(os.path.join(run_dir, "h2.txt")))
    issue_summary += flood_section(w, run_dir)
    osir_idle = [f"{n} {k / 1024:.1f} MiB" for n, k in idle if n.startswith("osir")]
    if osir_idle:
        issue_summary.append("idle RSS: " + ", ".join(osir_idle))

    # ------------------------------------------------------------ open loop
    open_rows = read_tsv(os.path.join(run_dir, "open.tsv"))
    w("## Open loop: latency below saturation (oha, latency-corrected)")
    w("")
    if not open_rows:
        w("Not run in this mode (or skipped, see Notes).")
        w("")
    else:
        for rate, rows in open_by_rate(open_rows).items():
            open_table(w, jobs, rows, rate)
        w("Medians over the rounds. Added over direct = this target's percentile minus "
          "the direct upstream's, from the same run at the same rate. The second rate "
          "is a share of the nginx proxy's median closed-loop maximum in this run "
          "(`BENCH_OPEN_SHARE`, default 40%).")
        w("")

    goal_lines, goal_summary = goals_section(runs, by_round, open_rows, idle)
    out[goals_at:goals_at] = goal_lines
    issue_summary = goal_summary + issue_summary

    # ------------------------------------------------------ failures, notes
    if failures:
        w("## Failures")
        w("")
        for f in failures:
            w(f"- {f}")
        w("")
    w("## Notes")
    w("")
    if notes:
        for n in notes:
            w(f"- {n}")
    else:
        w("- none: every target and scenario of this mode ran.")
    w("")

    # -------------------------------------------------------------- machine
    w("## Machine")
    w("")
    w("| | |")
    w("| --- | --- |")
    for k, v in machine:
        w(f"| {k} | {v} |")
    w("")

    # ------------------------------------------------------------- raw runs
    w("## Raw runs")
    w("")
    w("| round | job | req/s | requests | CPU µs/req | Redis CPU µs/req | server CPU % | wrk CPU % | "
      "access-log lines | peak RSS MiB | wrk p50 ms | wrk p99 ms | ok |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rnd in sorted(by_round):
        for jid, r in by_round[rnd].items():
            sc = f"{r['store_cpu']:.2f}" if r["store_cpu"] >= 0 else "–"
            ok = "yes" if r["ok"] else f"NO: {r['note']}"
            wp = f"{r['wrk_pct']:.0f}" if r["wrk_pct"] >= 0 else "–"
            ll = str(r["log_lines"]) if r["log_lines"] >= 0 else "–"
            # h2load prints no percentiles (0)
            p50 = f"{r['p50_us'] / 1000:.3f}" if r["p50_us"] > 0 else "–"
            p99 = f"{r['p99_us'] / 1000:.3f}" if r["p99_us"] > 0 else "–"
            w(f"| {rnd} | {jid} | {r['rps']:.0f} | {r['requests']} | {r['cpu']:.2f} | {sc} | "
              f"{r['server_pct']:.0f} | {wp} | {ll} | "
              f"{r['hwm_kib'] / 1024:.1f} | {p50} | {p99} | {ok} |")
    w("")
    w("wrk's latency percentiles are closed-loop (queueing inside the load generator "
      "at saturation), kept for reference only; latency is the open-loop table's job. "
      "Server CPU % = CPU µs/req × req/s, the share of one CPU the server used (all "
      "its threads; near 100 it was the bottleneck). wrk CPU % = wrk's user+system "
      "time over the run's wall time, on its own CPU (both threads: up to 100 on one "
      "pinned CPU; for the h2-tls rows the same for h2load); near 100 the load generator may have been the limit. "
      "Access-log lines: lines in the access-log file after the run (emptied before it).")
    w("")

    with open(out_path, "w") as f:
        f.write("\n".join(out))

    # -------------------------------------------------------------- summary
    print()
    print(f"== osir-gateway bench ({mode}) ==")
    for job, med_rps, ratio, cpu in summary:
        name = f"{job['label']} / {job['scenario']}"
        if med_rps is None:
            print(f"  {name:<50} FAILED")
        else:
            r = f"{ratio:.2f}×" if ratio is not None else "  –  "
            print(f"  {name:<50} {fmt_rps(med_rps):>8} req/s  {r:>6} nginx proxy  {cpu:6.1f} µs CPU/req")
    if open_rows:
        print("  open loop (p50 / p99 ms):")
        for rate, rows in open_by_rate(open_rows).items():
            print(f"   at {rate} req/s:")
            med = open_medians(rows)
            for jid, job in jobs.items():
                if jid in med and med[jid][0] is not None:
                    p50, p99 = med[jid][:2]
                    print(f"    {job['label'] + ' / ' + job['scenario']:<48} {p50:.3f} / {p99:.3f}")
    for line in issue_summary:
        print(f"  {line}")
    if notes:
        print("  notes:")
        for n in notes:
            print(f"    - {n}")
    if failures:
        print(f"  FAILED: {len(failures)} problem(s), see the report")
    print(f"  report: {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
