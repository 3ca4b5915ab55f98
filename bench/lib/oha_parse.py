#!/usr/bin/env python3
"""Turn one oha JSON result (stdin) into a row of open.tsv (used by bench/run.sh).

    oha_parse.py ROUND JOB EXPECTED_STATUS [TARGET_RATE] < oha.json

Prints: round, job, req/s, p50 ms, p99 ms, ok (1/0), note, target rate;
exits 1 if the
output holds no latency percentiles. A run is ok only if every response had
the expected status and there was no connection error.
"""
import json
import sys


def main(argv):
    rnd, job, expect = argv[:3]
    target = argv[3] if len(argv) > 3 else ""
    d = json.loads(sys.stdin.read())
    pct = d.get("latencyPercentiles") or {}
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    # requests still in flight when -z ran out are not the target's errors
    errors = {k: v for k, v in (d.get("errorDistribution") or {}).items()
              if "deadline" not in k}
    rps = (d.get("summary") or {}).get("requestsPerSec") or 0
    p50, p99 = pct.get("p50"), pct.get("p99")
    if p50 is None or p99 is None:
        sys.exit("oha_parse: no latency percentiles in the output")
    bad = {k: v for k, v in codes.items() if k != expect}
    ok = 1 if codes and not bad and not errors else 0
    note = "" if ok else f"statuses {codes}, errors {errors}"
    # oha reports seconds
    print(f"{rnd}\t{job}\t{rps:.1f}\t{p50 * 1000:.3f}\t{p99 * 1000:.3f}\t{ok}\t{note}\t{target}")


if __name__ == "__main__":
    main(sys.argv[1:])
