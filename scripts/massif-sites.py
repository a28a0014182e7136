#!/usr/bin/env python3
"""Where the heap went at the peak of a valgrind massif run, by allocation site.

usage: massif-sites.py MASSIF_OUT [--per N] [--depth D] [--top K]

Each leaf of the peak snapshot's heap tree is charged to its first D frames
outside the Rust standard library, hashbrown's internals and inlined-frame
placeholders (the frames that say *what* allocated, not *how*). With
--per N the sizes are also divided by N (for example the number of idle
subscribers), in KiB. Used for BENCHMARKS.md's idle memory breakdown;
run massif with a deep stack, e.g.
  valgrind --tool=massif --depth=40 --threshold=0.2 plenary serve ...
"""
import argparse
import collections
import re
import sys

NODE = re.compile(r'^( *)n(\d+): (\d+) (.*)$')
# Frames that describe how memory is allocated rather than who wants it.
PLUMBING_FILES = ('library/', 'raw.rs', 'map.rs', 'src/raw/')
PLUMBING_NAMES = ('UnknownInlinedFun', 'aws_lc_0_47_0_OPENSSL_malloc')


def frame(desc):
    """(name with location, is_plumbing) of one tree node's description."""
    text = re.sub(r'^0x[0-9A-Fa-f]+: ', '', desc)
    loc = re.search(r' \(([^()]*)\)$', text)
    loc = loc.group(1) if loc else ''
    name = re.sub(r' \([^()]*\)$', '', text)
    plumbing = loc.startswith(PLUMBING_FILES) or name.startswith(PLUMBING_NAMES)
    return f'{name[:90]} ({loc})', plumbing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('massif_out')
    ap.add_argument('--per', type=int, default=1)
    ap.add_argument('--depth', type=int, default=3)
    ap.add_argument('--top', type=int, default=40)
    args = ap.parse_args()
    lines = open(args.massif_out).read().split('\n')
    try:
        start = lines.index('heap_tree=peak') + 1
    except ValueError:
        sys.exit('no peak snapshot in ' + args.massif_out)
    sites = collections.Counter()
    sys.setrecursionlimit(20000)

    def walk(i, stack):
        m = NODE.match(lines[i])
        kids, size, desc = int(m.group(2)), int(m.group(3)), m.group(4)
        stack = stack + [desc]
        i += 1
        if kids == 0:
            named = [f for f, plumbing in map(frame, stack[1:]) if not plumbing and 'below massif' not in f]
            prefix = '(sites below the threshold) ' if 'below massif' in desc else ''
            sites[prefix + ' < '.join(named[:args.depth])] += size
        for _ in range(kids):
            i = walk(i, stack)
        return i

    walk(start, [])
    total = sum(sites.values())
    print(f'peak heap {total / 1024:.0f} KiB' + (f', {total / 1024 / args.per:.1f} KiB per 1/{args.per}' if args.per > 1 else ''))
    for site, size in sites.most_common(args.top):
        per = f'{size / 1024 / args.per:7.2f} ' if args.per > 1 else ''
        print(f'{size / 1024:9.1f} KiB {per} {site}')


if __name__ == '__main__':
    main()
