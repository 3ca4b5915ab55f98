#!/usr/bin/env python3
"""h2load's text output to the lines bench/run.sh reads from wrk (bench.lua).

    h2load ... | h2load_parse.py

Prints, from h2load's summary (nghttp2 1.4x-1.6x):

    BENCH_RESULT requests=… duration_us=… connect=0 read=0 write=0 status=… timeout=… p50_us=0 p99_us=0 failed=… errored=… started=…
    BENCH_STATUS 2xx:N[,3xx:N,4xx:N,5xx:N]      (the classes with a count, h2load counts no finer)
    BENCH_H2 protocol=TLSv1.3 cipher=… alpn=h2  ("?" for what h2load did not print)

requests = "done" (responses completed within the measured duration, as wrk
counts them); duration_us = done / h2load's req/s (h2load divides by the
main duration of -D); status = 4xx + 5xx (wrk's "status" error count);
p50/p99: h2load prints no percentiles (0 = none). Exits 1 if the summary
is missing (h2load failed before measuring).
"""
import re
import sys


def main():
    text = sys.stdin.read()
    fin = re.search(r"^finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (fin and req and codes):
        sys.exit("h2load_parse.py: no h2load summary in the input")
    secs = float(fin.group(1)) / (1000.0 if fin.group(2) == "ms" else 1.0)
    rps = float(fin.group(3))
    _total, started, done, _ok, failed, errored, timeout = (int(x) for x in req.groups())
    c2, c3, c4, c5 = (int(x) for x in codes.groups())
    duration_us = int(done / rps * 1e6) if rps > 0 else int(secs * 1e6)
    print(f"BENCH_RESULT requests={done} duration_us={max(duration_us, 1)} connect=0 read=0 "
          f"write=0 status={c4 + c5} timeout={timeout} p50_us=0 p99_us=0 failed={failed} "
          f"errored={errored} started={started}")
    classes = [f"{k}:{v}" for k, v in (("2xx", c2), ("3xx", c3), ("4xx", c4), ("5xx", c5)) if v]
    print("BENCH_STATUS " + ",".join(classes))

    def field(pattern):
        m = re.search(pattern, text, re.M)
        return m.group(1).strip().replace(" ", "_") if m else "?"

    print(f"BENCH_H2 protocol={field(r'^TLS Protocol: (.+)$')} "
          f"cipher={field(r'^Cipher: (.+)$')} alpn={field(r'^Application protocol: (.+)$')}")


if __name__ == "__main__":
    main()
