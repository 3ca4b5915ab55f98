#!/usr/bin/env python3
"""CPU time and peak memory of a process tree, read from /proc (used by bench/run.sh).

    procstat.py tree  PID...   print PID and all its descendants, one a line
    procstat.py cpu   PID...   utime+stime in clock ticks, summed over each tree
                               (all threads; for nginx the master plus its worker)
    procstat.py reset PID...   reset the peak-RSS mark (VmHWM) of each tree
                               (writes 5 to /proc/<pid>/clear_refs)
    procstat.py hwm   PID...   VmHWM in KiB, summed over each tree
    procstat.py rss   PID...   VmRSS in KiB now, summed over each tree
    procstat.py threads PID    one line: NAME=TICKS per thread name of that one
                               process (utime+stime of its live threads summed
                               by /proc/<pid>/task/<tid>/comm, spaces as "_")

Several PIDs add up: "cpu 12 34" prints one number for both trees together.
A PID that has gone away counts as zero rather than failing the run; run.sh
checks separately that every server is still alive.
"""
import os
import sys


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # comm (field 2) may hold spaces and parentheses: split after the last ')'
        rest = data[data.rindex(")") + 2:].split()
        ppid = int(rest[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pids):
    kids = children_map()
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(rest[11]) + int(rest[12])


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def hwm_kib(pid):
    return status_kib(pid, "VmHWM")


def reset(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def thread_ticks(pid):
    by_name = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return by_name
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip().replace(" ", "_") or "?"
        except OSError:
            continue
        by_name[name] = by_name.get(name, 0) + cpu_ticks(f"{pid}/task/{tid}")
    return by_name


def main(argv):
    if len(argv) < 2 or argv[0] not in ("tree", "cpu", "reset", "hwm", "rss", "threads"):
        sys.exit(__doc__)
    if argv[0] == "threads":
        print(" ".join(f"{k}={v}" for k, v in sorted(thread_ticks(int(argv[1])).items())))
        return
    pids = tree([int(p) for p in argv[1:]])
    cmd = argv[0]
    if cmd == "tree":
        print("\n".join(str(p) for p in pids))
    elif cmd == "cpu":
        print(sum(cpu_ticks(p) for p in pids))
    elif cmd == "hwm":
        print(sum(hwm_kib(p) for p in pids))
    elif cmd == "rss":
        print(sum(status_kib(p, "VmRSS") for p in pids))
    else:
        for p in pids:
            reset(p)


if __name__ == "__main__":
    main(sys.argv[1:])
