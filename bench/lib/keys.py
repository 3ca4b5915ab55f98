#!/usr/bin/env python3
"""Make API keys in the contract's format (CONTRACT.md section 1), for the peers.

    keys.py gen N [live|test]    print N fresh keys, one a line

osir_<env>_ + 25 random characters of [a-z0-9] + 7-character checksum: the
CRC-32 (zlib) of "osir_<env>_<25 random>" in lowercase base 36, left-padded
with 0. The peers (nginx key map, Kong-like Lua) only check the shape; these
keys also carry a valid checksum so one file can serve every target.
"""
import secrets
import sys
import zlib

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n):
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = ALPHABET[r] + out
    return out or "0"


def make_key(env):
    body = "".join(secrets.choice(ALPHABET) for _ in range(25))
    head = f"osir_{env}_{body}"
    return head + base36(zlib.crc32(head.encode()) & 0xFFFFFFFF).rjust(7, "0")


def main(argv):
    if len(argv) < 2 or argv[0] != "gen":
        sys.exit(__doc__)
    env = argv[2] if len(argv) > 2 else "live"
    for _ in range(int(argv[1])):
        print(make_key(env))


if __name__ == "__main__":
    main(sys.argv[1:])
