#!/usr/bin/env python3
"""Functions of one binary that a callgrind dump saw run, hottest first, one symbol per line.

    python3 bench/code_order.py CALLGRIND_DUMP BINARY > order.txt

The dump must be written with `--demangle=no`, so its names are the binary's symbol names: the
list is a linker symbol ordering file (lld's `--symbol-ordering-file`). Each function's own cost
(instructions executed in it, not in what it calls) orders the list, so the code a request runs
most sits together at the front; a function that ran once at start-up still comes before every
function that never ran, which is what keeps an idle server's resident code small.
"""

import os
import re
import subprocess
import sys
from collections import defaultdict

# `fn=(12) name` names and numbers a function; later `fn=(12)` refers to it by number alone.
# The same compression applies to `ob=` (objects) and `cfn=`/`cob=` (callees).
NAMED = re.compile(r"^(c?)(fn|ob|fl|fi|fe)=(?:\((\d+)\))?\s*(.*)$")
# Code the binary picks at run time by the CPU's features, where valgrind's virtual CPU lacks the
# feature and so runs another variant: on a CPU with SHA extensions every request hashes its
# token in `sha2::sha256::x86_sha`, which callgrind never sees. Matched on demangled names and
# listed right after the functions callgrind saw.
ALTERNATES = ("sha2::sha256::x86_sha::",)
# A recursive call's frames are named `name'2`, `name'3`: one function.
RECURSION = re.compile(r"'\d+$")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    dump, binary = sys.argv[1], os.path.realpath(sys.argv[2])
    names = {"fn": {}, "ob": {}}
    cost = defaultdict(int)
    ob = fn = None
    skip_next_cost = False  # the cost line after `calls=` is the callee's inclusive cost
    with open(dump, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = NAMED.match(line)
            if m:
                callee, kind, num, name = m.groups()
                if kind in names:
                    if num is not None and name:
                        names[kind][num] = name
                    resolved = names[kind].get(num, name) if num is not None else name
                    if not callee:
                        if kind == "ob":
                            ob = resolved
                        else:
                            fn = resolved
                continue
            if line.startswith("calls="):
                skip_next_cost = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip_next_cost:
                    skip_next_cost = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and fn and ob and os.path.realpath(ob) == binary:
                    try:
                        cost[RECURSION.sub("", fn)] += int(parts[1])
                    except ValueError:
                        pass
    if not cost:
        print(f"no function of {binary} in {dump}", file=sys.stderr)
        return 1
    code, alternates = code_symbols(binary)
    seen = set()
    # Only names the binary has as code symbols: callgrind also names what it has no symbol for
    # (an address, `(below main)`), which the linker could not place.
    ranked = sorted(cost.items(), key=lambda kv: (-kv[1], kv[0]))
    for name in [n for n, _ in ranked] + alternates:
        if name in code and name not in seen:
            print(name)
            seen.add(name)
    return 0


def code_symbols(binary: str) -> tuple[set[str], list[str]]:
    """The binary's code symbols, and those whose demangled name starts with one of ALTERNATES."""
    nm = ["nm", "--defined-only", "--no-sort", binary]
    raw = subprocess.run(nm, capture_output=True, text=True, check=True).stdout.splitlines()
    nice = subprocess.run([*nm, "-C"], capture_output=True, text=True, check=True).stdout.splitlines()
    code, alternates = set(), []
    for mangled, demangled in zip(raw, nice):
        m, d = mangled.split(" ", 2), demangled.split(" ", 2)
        if len(m) == 3 and len(d) == 3 and m[1] in "tTwW":
            code.add(m[2])
            if d[2].startswith(ALTERNATES):
                alternates.append(m[2])
    return code, alternates


if __name__ == "__main__":
    sys.exit(main())
