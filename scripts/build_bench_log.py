#!/usr/bin/env python3
"""Build a large, time-ordered access log for benchmarking gatewatch.

Reads a gzip-compressed nginx/combined log (e.g. testdata/nginx-combined-attacks.log.gz)
and writes an uncompressed log of exactly --lines lines by concatenating copies
of it. Copy k has every `[$time_local]` shifted forward by k times the source's
duration (its first-to-last second span plus one, rounded up to a whole minute),
so time keeps increasing across copies and the detectors see one long log
instead of the same 25 minutes replayed. Everything else on a line is kept byte
for byte.

Why: the shipped test log is ~60k lines; throughput and memory benchmarks need
millions of realistic lines without keeping a large file in the repo.

Usage: build_bench_log.py SRC.log.gz OUT.log --lines 1000000
"""

import argparse
import gzip
import math
import sys
from datetime import datetime, timedelta

TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
          b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def time_span(line):
    """(start, end) byte offsets of the text between `[` and `]` in a combined line."""
    start = line.index(b"[") + 1
    return start, line.index(b"]", start)


def parse_time(raw):
    return datetime.strptime(raw.decode("ascii"), TIME_FORMAT)


def format_time(t):
    """`$time_local` text for t, in t's own UTC offset, independent of the C locale."""
    offset = t.strftime("%z").encode("ascii")
    return b"%02d/%s/%04d:%02d:%02d:%02d %s" % (t.day, MONTHS[t.month - 1], t.year,
                                                 t.hour, t.minute, t.second, offset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="gzip-compressed combined log to repeat")
    parser.add_argument("out", help="uncompressed log to write")
    parser.add_argument("--lines", type=int, default=1_000_000, help="exact number of lines to write (default 1000000)")
    args = parser.parse_args()
    if args.lines < 0:
        parser.error("--lines must not be negative")

    with gzip.open(args.src, "rb") as f:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in f]
    if not lines:
        sys.exit(f"{args.src}: no lines")

    spans = [time_span(line) for line in lines]
    stamps = {line[s:e] for line, (s, e) in zip(lines, spans)}
    times = [parse_time(raw) for raw in stamps]
    span_s = (max(times) - min(times)).total_seconds() + 1
    shift = timedelta(minutes=math.ceil(span_s / 60))

    written, copy = 0, 0
    with open(args.out, "wb") as out:
        while written < args.lines:
            take = lines[:args.lines - written]
            if copy == 0:
                out.writelines(take)
            else:
                delta = shift * copy
                rewritten = {raw: format_time(parse_time(raw) + delta) for raw in stamps}
                out.write(b"".join(line[:s] + rewritten[line[s:e]] + line[e:]
                                   for line, (s, e) in zip(take, spans)))
            written += len(take)
            copy += 1
    print(f"wrote {written} lines ({copy} copies, shift {shift} per copy) to {args.out}")


if __name__ == "__main__":
    main()
