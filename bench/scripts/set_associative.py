#!/usr/bin/env python3
"""How full a flow table of our own can get before it loses live flows.

The kernel's LRU hash evicts only when every preallocated entry is taken. A table built on a
BPF array instead (fixed slots, no per-entry header: 128 bytes a flow) has to find a flow's
slot by hashing into a small set of ways and, when that set is full, evict a live flow there,
however empty the rest of the table is. This inserts `load` x capacity distinct flows at
random into sets of `ways` slots, each flow taking the emptier of `choices` candidate sets
(no entry ever moves), and prints the share of flows that had to evict a live one.

    python3 bench/scripts/set_associative.py [seed]

README (Performance, bytes per flow entry) quotes its output for seed 1.
"""
import random
import sys

CAPACITY = 1 << 16


def evicted_share(ways: int, choices: int, load: float) -> float:
    sets = CAPACITY // ways
    fill = [0] * sets
    flows = int(CAPACITY * load)
    evicted = 0
    for _ in range(flows):
        candidates = [random.randrange(sets) for _ in range(choices)]
        s = min(candidates, key=lambda i: fill[i])
        if fill[s] == ways:
            evicted += 1
        else:
            fill[s] += 1
    return evicted / flows


def main() -> None:
    random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    loads = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    print("| ways | sets tried | " + " | ".join(f"{l:.0%} full" for l in loads) + " |")
    print("|---|---|" + "---|" * len(loads))
    for ways in (4, 8):
        for choices in (1, 2):
            shares = [evicted_share(ways, choices, l) for l in loads]
            print(f"| {ways} | {choices} | " + " | ".join(f"{s:.2%}" for s in shares) + " |")


if __name__ == "__main__":
    main()
