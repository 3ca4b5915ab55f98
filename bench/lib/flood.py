#!/usr/bin/env python3
"""Helpers of the flood scenario of bench/run.sh.

    flood.py snap ADMIN_PORT REDIS_PORT GW_PID REDIS_PID > snap.json
        one snapshot: the gateway's /metrics counters (key cache lookups by
        result, store lookups, responses by status and reason, cache entries),
        Redis `INFO commandstats` (calls and µs per command), CPU ticks of the
        gateway and of redis-server (from /proc), the wall clock
    flood.py metric ADMIN_PORT NAME
        print one counter of /metrics, summed over its label sets
        (e.g. osir_gateway_store_lookups_total)
    flood.py statuses ADMIN_PORT
        print the gateway's answers so far by status, "STATUS:COUNT,…"
        (osir_gateway_requests_total summed over route, method and reason);
        run.sh takes two of these around a run whose statuses wrk does not
        count itself
    flood.py warm PORT PATH KEYFILE N
        one GET per key (the first N of KEYFILE, Authorization: Bearer) over
        one keep-alive connection; prints "STATUS:COUNT,…" and exits 1 unless
        every answer was 200
    flood.py analyze RUN_DIR
        reads RUN_DIR/flood/variants.tsv and each variant's snapshots and wrk
        outputs, writes RUN_DIR/flood.json (the report's Flood section) and
        prints one "PROBLEM <text>" line per failed check

Snapshots of one variant (RUN_DIR/flood/<variant>/): s0, s1 around the valid
keys alone; f0, f1 around the whole flood; w0, w1 around the valid keys'
run inside the flood (both loads running throughout). Rates are counts
between two snapshots over the wall time between them.

Redis' own INFO calls (these snapshots) are left out of the command counts.
"""
import http.client
import json
import os
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstat  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROUTE = "/v1/domains"


# --------------------------------------------------------------- snapshots --

def parse_labels(text):
    out = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def scrape(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        if "{" in name_labels:
            name, labels = name_labels.split("{", 1)
            labels = parse_labels(labels.rstrip("}"))
        else:
            name, labels = name_labels, {}
        try:
            series.append((name, labels, float(value)))
        except ValueError:
            continue
    return series


def gateway_counters(admin_port):
    lookups, responses, entries, store = {}, {}, {}, 0.0
    for name, labels, value in scrape(admin_port):
        if name == "osir_gateway_key_cache_lookups_total":
            lookups[labels.get("result", "?")] = value
        elif name == "osir_gateway_store_lookups_total":
            store = value
        elif name == "osir_gateway_requests_total" and labels.get("route") == ROUTE:
            k = f"{labels.get('status', '?')} {labels.get('reason', '')}".strip()
            responses[k] = responses.get(k, 0.0) + value
        elif name == "osir_gateway_key_cache_entries":
            entries[labels.get("cache", "?")] = value
    return {"lookups": lookups, "store_lookups": store, "responses": responses, "entries": entries}


def redis_info(sock, section):
    """the text of INFO <section> (one bulk reply)"""
    sock.sendall(f"INFO {section}\r\n".encode())
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("redis closed the connection")
        buf += chunk
    head, rest = buf.split(b"\r\n", 1)
    if not head.startswith(b"$"):
        raise RuntimeError(f"unexpected redis reply {head!r}")
    need = int(head[1:]) + 2
    while len(rest) < need:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return rest[:need - 2].decode()


def redis_stats(port):
    """({command: [calls, usec]} from INFO commandstats without INFO itself,
    {keyspace_hits, keyspace_misses} from INFO stats)"""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        cmdstats = redis_info(s, "commandstats")
        stats = redis_info(s, "stats")
    cmds = {}
    for line in cmdstats.splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line[len("cmdstat_"):].partition(":")
        kv = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
        if name == "info":
            continue
        cmds[name] = [int(kv.get("calls", 0)), int(kv.get("usec", 0))]
    keyspace = {}
    for line in stats.splitlines():
        k, _, v = line.partition(":")
        if k in ("keyspace_hits", "keyspace_misses"):
            keyspace[k] = int(v)
    return cmds, keyspace


def snap(admin_port, redis_port, gw_pid, redis_pid):
    t = time.time()
    gateway = gateway_counters(admin_port)
    cmds, keyspace = redis_stats(redis_port)
    out = {
        "time": t,
        "gateway": gateway,
        "redis": cmds,
        "keyspace": keyspace,
        "gw_ticks": sum(procstat.cpu_ticks(p) for p in procstat.tree([int(gw_pid)])),
        "redis_ticks": procstat.cpu_ticks(int(redis_pid)),
        "gw_hwm_kib": procstat.hwm_kib(int(gw_pid)),
    }
    print(json.dumps(out))


def metric(admin_port, name):
    print(int(sum(v for n, _, v in scrape(admin_port) if n == name)))


def statuses(admin_port):
    by = {}
    for n, labels, v in scrape(admin_port):
        if n == "osir_gateway_requests_total":
            code = labels.get("status", "?")
            by[code] = by.get(code, 0) + int(v)
    print(",".join(f"{k}:{by[k]}" for k in sorted(by)))


# ------------------------------------------------------------------- warm --

def warm(port, path, keyfile, n):
    with open(keyfile) as f:
        keys = [line.strip() for line in f if line.strip()][:int(n)]
    codes = {}
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    for k in keys:
        for attempt in (1, 2):
            try:
                conn.request("GET", path, headers={"Authorization": f"Bearer {k}"})
                r = conn.getresponse()
                r.read()
                codes[r.status] = codes.get(r.status, 0) + 1
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt == 2:
                    codes[0] = codes.get(0, 0) + 1
    conn.close()
    print(",".join(f"{c}:{n}" for c, n in sorted(codes.items())))
    return 0 if set(codes) == {200} and codes[200] == len(keys) else 1


# ---------------------------------------------------------------- analyze --

def read_json(path):
    with open(path) as f:
        return json.load(f)


def wrk_result(path):
    """BENCH_* lines of one wrk output (flood.lua), as a dict; {} if none."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "BENCH_RESULT":
                out["result"] = {k: int(v) for k, v in (p.split("=", 1) for p in parts[1:])}
            elif parts[0] == "BENCH_STATUS":
                out["status"] = {int(k): int(v) for k, v in
                                 (p.split(":") for p in (parts[1].split(",") if len(parts) > 1 else []))}
            elif parts[0] == "BENCH_FLOOD":
                out["flood"] = {k: int(v) for k, v in (p.split("=", 1) for p in parts[1:])}
            elif parts[0] == "BENCH_LOADGEN":
                out["loadgen_us"] = int(parts[1].split("=", 1)[1])
    return out


def delta(a, b):
    """b - a for the figures of two snapshots"""
    ga, gb = a["gateway"], b["gateway"]
    d = {
        "lookups": {k: gb["lookups"].get(k, 0) - ga["lookups"].get(k, 0)
                    for k in set(ga["lookups"]) | set(gb["lookups"])},
        "store_lookups": gb["store_lookups"] - ga["store_lookups"],
        "responses": {k: gb["responses"].get(k, 0) - ga["responses"].get(k, 0)
                      for k in set(ga["responses"]) | set(gb["responses"])},
        "commands": {}, "redis_usec": 0,
        "gw_cpu_s": (b["gw_ticks"] - a["gw_ticks"]) / CLK_TCK,
        "redis_cpu_s": (b["redis_ticks"] - a["redis_ticks"]) / CLK_TCK,
        "wall_s": b["time"] - a["time"],
    }
    for cmd in set(a["redis"]) | set(b["redis"]):
        ca, ua = a["redis"].get(cmd, [0, 0])
        cb, ub = b["redis"].get(cmd, [0, 0])
        if cb - ca:
            d["commands"][cmd] = cb - ca
        d["redis_usec"] += ub - ua
    d["commands_total"] = sum(d["commands"].values())
    # Redis reads that found a key: the lookups of known (valid) keys, plus the
    # HGET of each key's usage hash in the gateway's usage flush (a Lua script
    # whose other commands are writes, which Redis does not count as hits or
    # misses), plus the change feed's XREAD (a blocking read of the changes
    # stream, 250 ms each): two hits per call, one when the read starts and
    # one when its block ends (measured on Redis 7.0: 32 hits for 16 calls
    # in a window with no other read). Unknown keys' lookups are keyspace
    # misses. Redis counts the call when the block ends, so the read in
    # flight at each snapshot may have one hit on either side: ±1.
    ka, kb = a.get("keyspace", {}), b.get("keyspace", {})
    d["keyspace_hits"] = kb.get("keyspace_hits", 0) - ka.get("keyspace_hits", 0)
    d["keyspace_misses"] = kb.get("keyspace_misses", 0) - ka.get("keyspace_misses", 0)
    d["valid_store_reads"] = (d["keyspace_hits"] - d["commands"].get("hget", 0)
                              - 2 * d["commands"].get("xread", 0))
    d["ok200"] = sum(v for k, v in d["responses"].items() if k.startswith("200"))
    return d


def check_wrk(name, w, allowed, problems):
    """status and socket checks of one wrk run"""
    r = w.get("result")
    if not r:
        problems.append(f"{name}: wrk printed no result")
        return
    if r["requests"] == 0:
        problems.append(f"{name}: no request completed")
    errs = r["connect"] + r["read"] + r["write"] + r["timeout"]
    if errs:
        problems.append(f"{name}: socket errors: connect {r['connect']}, read {r['read']}, "
                        f"write {r['write']}, timeout {r['timeout']}")
    bad = {c: n for c, n in w.get("status", {}).items() if c not in allowed}
    if bad or not w.get("status"):
        problems.append(f"{name}: statuses other than {'/'.join(map(str, sorted(allowed)))}: "
                        + (", ".join(f"{c}: {n}" for c, n in sorted(bad.items())) or "none counted"))


def per_s(x, seconds):
    return x / seconds if seconds > 0 else 0.0


LOOKUP_COMMANDS = ("hgetall",)   # what one key lookup costs in Redis (src/store/redis.rs)
# Commands whose keyspace hits the valid-key store reads account for: the
# lookup (HGETALL), the usage flush (EVALSHA running HINCRBY, HGET, HSET), the
# change feed (XREAD) and commands that read no key. Any other command in a
# window makes that figure unknown rather than wrong.
ACCOUNTED_COMMANDS = {"hgetall", "evalsha", "hincrby", "hget", "hset", "xread", "ping", "publish",
                      "subscribe", "psubscribe", "script|load", "hello", "select",
                      "client|setname", "client|setinfo", "command", "command|docs"}


def window(d, w_valid):
    """figures of one window (both snapshots around one valid run)"""
    secs = d["wall_s"]
    hits = d["lookups"].get("hit", 0)
    lookups = sum(n for c, n in d["commands"].items() if c in LOOKUP_COMMANDS)
    r = w_valid["result"]
    unaccounted = set(d["commands"]) - ACCOUNTED_COMMANDS
    reads = d["valid_store_reads"]
    if unaccounted or reads < -1:
        reads = None
    elif reads < 0:
        reads = 0   # the feed's XREAD in flight at a snapshot (see above)
    return {
        "seconds": secs,
        "valid_rps": per_s(r["requests"], r["duration_us"] / 1e6),
        "valid_requests": r["requests"],
        "valid_status": w_valid.get("status", {}),
        "valid_wrk_cpu_pct": (100 * per_s(w_valid["loadgen_us"] / 1e6, r["duration_us"] / 1e6)
                              if w_valid.get("loadgen_us", -1) >= 0 else -1.0),
        "ok200": d["ok200"],
        "hits": hits,
        "hit_ratio": hits / d["ok200"] if d["ok200"] else None,
        "valid_store_reads": reads,
        "store_hit_ratio": 1 - reads / d["ok200"] if reads is not None and d["ok200"] else None,
        "unaccounted_commands": sorted(unaccounted),
        "keyspace_hits": d["keyspace_hits"],
        "keyspace_misses": d["keyspace_misses"],
        "lookups": d["lookups"],
        "store_lookups": d["store_lookups"],
        "store_lookups_per_s": per_s(d["store_lookups"], secs),
        "commands": d["commands"],
        "commands_total": d["commands_total"],
        "commands_per_s": per_s(d["commands_total"], secs),
        "lookup_commands_per_s": per_s(lookups, secs),
        "other_commands_per_s": per_s(d["commands_total"] - lookups, secs),
        "redis_usec": d["redis_usec"],
        "redis_cpu_pct": 100 * per_s(d["redis_cpu_s"], secs),
        "gw_cpu_pct": 100 * per_s(d["gw_cpu_s"], secs),
        "responses": d["responses"],
        "flood_rps": per_s(sum(v for k, v in d["responses"].items() if k.split()[0] in ("401", "429")), secs),
        "flood_401_per_s": per_s(sum(v for k, v in d["responses"].items() if k.split()[0] == "401"), secs),
        "flood_429_per_s": per_s(sum(v for k, v in d["responses"].items() if k.split()[0] == "429"), secs),
    }


def analyze(run_dir):
    base = os.path.join(run_dir, "flood")
    variants, problems = [], []
    for line in open(os.path.join(base, "variants.tsv")):
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 2:
            continue
        vid, label = fields[0], fields[1]
        info = dict(f.split("=", 1) for f in fields[2:] if "=" in f)
        vdir = os.path.join(base, vid)
        v = {"id": vid, "label": label, "settings": info}
        variants.append(v)
        if not os.path.exists(os.path.join(vdir, "f1.json")):
            v["skipped"] = info.get("error", "not measured")
            problems.append(f"flood/{vid}: not measured ({v['skipped']})")
            continue
        snaps = {n: read_json(os.path.join(vdir, f"{n}.json")) for n in ("s0", "s1", "f0", "w0", "w1", "f1")}
        vb = wrk_result(os.path.join(vdir, "valid-alone.log"))
        vf = wrk_result(os.path.join(vdir, "valid-flood.log"))
        fl = wrk_result(os.path.join(vdir, "flood.log"))
        check_wrk(f"flood/{vid} valid keys alone", vb, {200}, problems)
        check_wrk(f"flood/{vid} valid keys during the flood", vf, {200}, problems)
        check_wrk(f"flood/{vid} random-key flood", fl, {401, 429}, problems)
        if not (vb.get("result") and vf.get("result") and fl.get("result")):
            v["skipped"] = "a wrk run printed no result"
            continue
        v["alone"] = window(delta(snaps["s0"], snaps["s1"]), vb)
        v["flood"] = window(delta(snaps["w0"], snaps["w1"]), vf)
        whole = delta(snaps["f0"], snaps["f1"])
        fs = fl.get("status", {})
        fr = fl["result"]
        v["whole"] = {
            "seconds": fr["duration_us"] / 1e6,
            "requests": fr["requests"],
            "rps": per_s(fr["requests"], fr["duration_us"] / 1e6),
            "s401": fs.get(401, 0),
            "s429": fs.get(429, 0),
            "other": sum(n for c, n in fs.items() if c not in (401, 429)),
            "sent": fl.get("flood", {}).get("sent", 0),
            "wraps": fl.get("flood", {}).get("wraps", 0),
            "per_thread_keys": fl.get("flood", {}).get("per_thread_keys", 0),
            "wrk_cpu_pct": (100 * per_s(fl["loadgen_us"] / 1e6, fr["duration_us"] / 1e6)
                            if fl.get("loadgen_us", -1) >= 0 else -1.0),
            "store_lookups": whole["store_lookups"],
            "lookup_commands": sum(n for c, n in whole["commands"].items() if c in LOOKUP_COMMANDS),
            "commands": whole["commands"],
            "lookups": whole["lookups"],
            "positive_before": snaps["f0"]["gateway"]["entries"].get("positive"),
            "positive_after": snaps["f1"]["gateway"]["entries"].get("positive"),
            "negative_during": snaps["w1"]["gateway"]["entries"].get("negative"),
            "gw_hwm_mib": snaps["f1"]["gw_hwm_kib"] / 1024,
        }
    with open(os.path.join(run_dir, "flood.json"), "w") as f:
        json.dump({"variants": variants}, f, indent=1, sort_keys=True)
    for p in problems:
        print(f"PROBLEM {p}")


def main(argv):
    if len(argv) == 5 and argv[0] == "snap":
        snap(*argv[1:])
    elif len(argv) == 3 and argv[0] == "metric":
        metric(*argv[1:])
    elif len(argv) == 2 and argv[0] == "statuses":
        statuses(argv[1])
    elif len(argv) == 5 and argv[0] == "warm":
        sys.exit(warm(*argv[1:]))
    elif len(argv) == 2 and argv[0] == "analyze":
        analyze(argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
