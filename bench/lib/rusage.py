#!/usr/bin/env python3
"""Run a command and report the CPU time it used (used by bench/run.sh for wrk).

    rusage.py CMD [ARG...]

The command's stdout and stderr pass through; after it exits one more line is
printed on stdout:

    BENCH_LOADGEN cpu_us=<user+system µs of the command and its children>

and the command's exit status is returned. The wrapper's own start-up is not
counted (RUSAGE_CHILDREN only covers the command).
"""
import resource
import subprocess
import sys


def main(argv):
    if not argv:
        sys.exit(__doc__)
    rc = subprocess.call(argv)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stdout.flush()
    print(f"BENCH_LOADGEN cpu_us={int((ru.ru_utime + ru.ru_stime) * 1e6)}", flush=True)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
