#!/usr/bin/env python3
"""Make API keys in the gateway's format (docs/reference.md, "API keys").

    keys.py gen N [live|test]    print N fresh keys, one a line
    keys.py check FILE           exit 1 (naming the line) unless every line of
                                 FILE is a well-formed key with a valid checksum;
                                 prints the number of keys and of distinct keys

osir_<env>_ + 25 random characters of [a-z0-9] + 7-character checksum: the
CRC-32 (zlib) of "osir_<env>_<25 random>" in lowercase base 36, left-padded
with 0. The peers (nginx key map, Kong-like Lua) only check the shape; these
keys also carry a valid checksum so one file can serve every target, and so
that the flood scenario's invented keys pass the gateway's checksum check and
reach its key lookup (the store, or the negative cache).

The random characters come from os.urandom, uniform over the 36 symbols
(bytes >= 252 are dropped: 252 = 7 * 36, so no modulo bias). `gen` draws them
in bulk: 200,000 keys take about a second.
"""
import os
import re
import sys
import zlib

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
KEY_RE = re.compile(r"^osir_(live|test)_([a-z0-9]{25})([a-z0-9]{7})$")
# byte -> symbol for the 252 unbiased byte values
_TABLE = bytes(ord(ALPHABET[b % 36]) for b in range(252)) + b"????"
_DROP = bytes(range(252, 256))


def base36(n):
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = ALPHABET[r] + out
    return out or "0"


def checksum(head):
    """The 7-character checksum of 'osir_<env>_<25 random>'."""
    return base36(zlib.crc32(head.encode()) & 0xFFFFFFFF).rjust(7, "0")


def random_bodies(n):
    """n strings of 25 uniform symbols from [a-z0-9]."""
    need = 25 * n
    out = bytearray()
    while len(out) < need:
        chunk = os.urandom(max(4096, (need - len(out)) * 256 // 252 + 64))
        out += chunk.translate(None, _DROP).translate(_TABLE)
    text = out[:need].decode()
    return [text[i:i + 25] for i in range(0, need, 25)]


def make_keys(n, env):
    keys = []
    for body in random_bodies(n):
        head = f"osir_{env}_{body}"
        keys.append(head + checksum(head))
    return keys


def make_key(env):
    return make_keys(1, env)[0]


def check(path):
    n, seen = 0, set()
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            key = line.rstrip("\n")
            m = KEY_RE.match(key)
            if not m:
                sys.exit(f"{path}:{lineno}: not a key in the contract's shape: {key!r}")
            head = f"osir_{m.group(1)}_{m.group(2)}"
            if checksum(head) != m.group(3):
                sys.exit(f"{path}:{lineno}: checksum does not match: {key!r}")
            n += 1
            seen.add(key)
    print(f"{n} {len(seen)}")


def main(argv):
    if len(argv) >= 2 and argv[0] == "gen":
        env = argv[2] if len(argv) > 2 else "live"
        if env not in ("live", "test"):
            sys.exit(__doc__)
        n = int(argv[1])
        out = sys.stdout
        for start in range(0, n, 50000):
            out.write("\n".join(make_keys(min(50000, n - start), env)) + "\n")
        return
    if len(argv) == 2 and argv[0] == "check":
        check(argv[1])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
