#!/usr/bin/env python3
"""Write the markdown report of one bench/run.sh run and print a short summary.

    report.py RUN_DIR OUT.md

Reads from RUN_DIR (all written by run.sh):
  jobs.tsv      job id, target label, scenario, expected status, description
  runs.tsv      one row per closed-loop run (see run_wrk in run.sh)
  open.tsv      one row per open-loop run (see oha_parse.py)
  settings.txt, machine.txt   "key|value" lines
  notes.txt, failures.txt     one line each
"""
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

REFERENCE = "nginx-proxy/plain"
DIRECT = "direct/plain"


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_kv(path):
    return [tuple(line.split("|", 1)) for line in read_lines(path) if "|" in line]


def read_tsv(path):
    return [line.split("\t") for line in read_lines(path)]


def fmt_rps(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def main(run_dir, out_path):
    jobs = OrderedDict()
    for row in read_tsv(os.path.join(run_dir, "jobs.tsv")):
        jid, label, scenario, expect, desc = (row + [""] * 5)[:5]
        jobs[jid] = {"label": label, "scenario": scenario, "expect": expect, "desc": desc}

    # round -> job -> run ; job -> [runs]
    runs = defaultdict(list)
    by_round = defaultdict(dict)
    for r in read_tsv(os.path.join(run_dir, "runs.tsv")):
        run = {
            "round": int(r[0]), "job": r[1], "rps": float(r[2]), "requests": int(r[3]),
            "cpu": float(r[5]), "store_cpu": float(r[6]), "hwm_kib": int(r[7]),
            "p50_us": int(r[8]), "p99_us": int(r[9]), "ok": r[10] == "1",
            "note": r[11] if len(r) > 11 else "",
        }
        runs[run["job"]].append(run)
        by_round[run["round"]][run["job"]] = run

    settings = read_kv(os.path.join(run_dir, "settings.txt"))
    machine = read_kv(os.path.join(run_dir, "machine.txt"))
    notes = read_lines(os.path.join(run_dir, "notes.txt"))
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

    # ---------------------------------------------------------- closed loop
    w("## Closed loop: maximum throughput (wrk)")
    w("")
    w("| target | scenario | req/s median (min–max) | × nginx proxy | CPU µs/req | peak RSS MiB |")
    w("| --- | --- | --- | --- | --- | --- |")
    summary = []
    for jid, job in jobs.items():
        if jid not in runs:
            continue
        good = [r for r in runs[jid] if r["ok"]]
        failed = len(runs[jid]) - len(good)
        if not good:
            w(f"| {job['label']} | {job['scenario']} | FAILED ({failed} run(s)) | – | – | – |")
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
        w(f"| {job['label']} | {job['scenario']} | {rng} | {ratio_s} | {cpu_s} | {rss:.1f} |")
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
      "over the server's processes, reset before each run, the largest of the runs.")
    w("")

    # ------------------------------------------------------------ open loop
    open_rows = read_tsv(os.path.join(run_dir, "open.tsv"))
    w("## Open loop: latency below saturation (oha, latency-corrected)")
    w("")
    if not open_rows:
        w("Not run in this mode (or skipped, see Notes).")
        w("")
    else:
        per = defaultdict(list)
        for r in open_rows:
            per[r[1]].append({"rps": float(r[2]), "p50": float(r[3]), "p99": float(r[4]), "ok": r[5] == "1"})
        med = {}
        for jid, rs in per.items():
            good = [r for r in rs if r["ok"]]
            if good:
                med[jid] = (statistics.median(r["p50"] for r in good),
                            statistics.median(r["p99"] for r in good),
                            statistics.median(r["rps"] for r in good), len(good), len(rs))
        w("| target | p50 ms | p99 ms | p50 added over direct | p99 added over direct | achieved req/s |")
        w("| --- | --- | --- | --- | --- | --- |")
        base = med.get(DIRECT)
        for jid, job in jobs.items():
            if jid not in per:
                continue
            name = f"{job['label']}" + ("" if job["scenario"] in ("plain",) else f", {job['scenario']}")
            if jid not in med:
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
        w("Medians over the rounds. Added over direct = this target's percentile minus "
          "the direct upstream's, from the same run.")
        w("")

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
    w("| round | job | req/s | requests | CPU µs/req | Redis CPU µs/req | peak RSS MiB | wrk p50 ms | wrk p99 ms | ok |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rnd in sorted(by_round):
        for jid, r in by_round[rnd].items():
            sc = f"{r['store_cpu']:.2f}" if r["store_cpu"] >= 0 else "–"
            ok = "yes" if r["ok"] else f"NO: {r['note']}"
            w(f"| {rnd} | {jid} | {r['rps']:.0f} | {r['requests']} | {r['cpu']:.2f} | {sc} | "
              f"{r['hwm_kib'] / 1024:.1f} | {r['p50_us'] / 1000:.3f} | {r['p99_us'] / 1000:.3f} | {ok} |")
    w("")
    w("wrk's latency percentiles are closed-loop (queueing inside the load generator "
      "at saturation), kept for reference only; latency is the open-loop table's job.")
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
        base = None
        print("  open loop (p50 / p99 ms):")
        for jid, job in jobs.items():
            rs = [r for r in open_rows if r[1] == jid and r[5] == "1"]
            if rs:
                p50 = statistics.median(float(r[3]) for r in rs)
                p99 = statistics.median(float(r[4]) for r in rs)
                print(f"    {job['label'] + ' / ' + job['scenario']:<48} {p50:.3f} / {p99:.3f}")
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
