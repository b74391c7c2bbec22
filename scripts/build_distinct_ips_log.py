#!/usr/bin/env python3
"""Build a combined access log in which every line comes from a different client IP.

Line i (0-based) is a 200 GET of a simple path with a fixed user agent, logged at
2026-11-20T09:00:00Z + i // 1000 seconds (~1000 lines per second of log time).
Its client is IPv6 (2001:db8::/32, from the counter) for every 8th line and
otherwise IPv4 11.0.0.1 + i * 251, which walks all four octets and stays unique
for up to ~16 million lines.

Why: worst case for per-entity state; benchmarks and memory-bound tests of
gatewatch's per-IP tables and eviction need N distinct keys in N lines.

Usage: build_distinct_ips_log.py OUT.log --ips 1000000
"""

import argparse
import ipaddress
from datetime import datetime, timedelta, timezone

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone.utc)
LINES_PER_SECOND = 1000
V4_BASE = int(ipaddress.IPv4Address("11.0.0.1"))
V4_STRIDE = 251
V6_PREFIX = int(ipaddress.IPv6Address("2001:db8::"))
PATHS = ("/", "/products/{n}", "/category/shoes", "/static/css/app.css", "/api/v1/cart")
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def client(i):
    if i % 8 == 7:
        return str(ipaddress.IPv6Address(V6_PREFIX | (i // 8) << 16 | 1))
    return str(ipaddress.IPv4Address(V4_BASE + i * V4_STRIDE))


def time_local(second):
    t = START + timedelta(seconds=second)
    return f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="uncompressed log to write")
    parser.add_argument("--ips", type=int, default=1_000_000,
                        help="number of lines, each from a distinct client IP (default 1000000)")
    args = parser.parse_args()
    if not 0 <= args.ips <= (2**32 - 1 - V4_BASE) // V4_STRIDE:
        parser.error("--ips out of range")

    with open(args.out, "w") as out:
        for first in range(0, args.ips, LINES_PER_SECOND):
            ts = time_local(first // LINES_PER_SECOND)
            out.write("".join(
                f'{client(i)} - - [{ts}] "GET {PATHS[i % len(PATHS)].format(n=i % 5000)} HTTP/1.1" '
                f'200 {1000 + i % 9000} "-" "{USER_AGENT}"\n'
                for i in range(first, min(first + LINES_PER_SECOND, args.ips))))
    print(f"wrote {args.ips} lines to {args.out}")


if __name__ == "__main__":
    main()
