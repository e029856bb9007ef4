#!/usr/bin/env python3
"""Which crates' code a running process keeps resident: the file-backed part of its RSS.

    python3 bench/code_pages.py PID [BINARY]     # BINARY: default /proc/PID/exe

Reads the executable's code mapping from /proc/PID/maps, which of its pages are present from
/proc/PID/pagemap (root, or CAP_SYS_ADMIN, for nothing else is needed: the present bit is all
it reads), and the code symbols with `nm -C -S`, then sums the bytes of each crate's symbols
that lie in present pages. The kernel maps up to 64 KiB around every code page a process
touches (fault-around), so a crate shows up resident when its code sits next to code that ran.
The crate is the first path segment of the demangled name (`<T as core::…>` counts for `T`'s
crate only when `T` is written first), C functions are grouped by prefix (`sqlite3`, `mi_`):
an approximation, good for where the megabytes are, not for exact bytes.
"""
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = 4096


def crate_of(name):
    n = re.sub(r"^(dyn |impl |mut |const )", "", name.lstrip("<&*( "))
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    if m:
        return m.group(1)
    for prefix, label in (("sqlite3", "sqlite (C)"), ("mi_", "mimalloc (C)"), ("_mi_", "mimalloc (C)")):
        if n.startswith(prefix):
            return label
    return "other"


def main():
    pid = int(sys.argv[1])
    binary = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f"/proc/{pid}/exe")
    code = None
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) >= 6 and f[5] == binary and f[1].startswith("r-x"):
            code = f
            break
    if code is None:
        sys.exit(f"no executable mapping of {binary} in process {pid}")
    lo, hi = (int(x, 16) for x in code[0].split("-"))
    file_off = int(code[2], 16)
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        pm.seek(lo // PAGE * 8)
        raw = pm.read((hi - lo) // PAGE * 8)
    present = [(struct.unpack_from("<Q", raw, i * 8)[0] >> 63) & 1 for i in range(len(raw) // 8)]
    # Load bias: the code segment's file offset and virtual address from the program headers.
    bias = None
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        # The mapping starts at the segment's offset rounded down to a page.
        if f and f[0] == "LOAD" and "E" in f[-2] and int(f[1], 16) & ~(PAGE - 1) == file_off:
            bias = lo - (int(f[2], 16) - int(f[1], 16) + file_off)
    if bias is None:
        sys.exit("no executable LOAD segment found")
    resident = collections.Counter()
    total = collections.Counter()
    nm = subprocess.run(["nm", "-C", "--defined-only", "-S", binary], capture_output=True, text=True).stdout
    for line in nm.splitlines():
        f = line.split(" ", 3)
        if len(f) != 4 or f[2] not in "tTwW":
            continue
        addr, size, name = int(f[0], 16) + bias, int(f[1], 16), f[3]
        crate = crate_of(name)
        total[crate] += size
        if not lo <= addr < hi:
            continue
        first, last = (addr - lo) // PAGE, min((addr + max(size, 1) - 1 - lo) // PAGE, len(present) - 1)
        resident[crate] += size * sum(present[first : last + 1]) / (last - first + 1)
    print(f"code resident: {sum(present) * 4} KiB of {len(present) * 4} KiB mapped ({binary})")
    for crate, kib in resident.most_common(int(os.environ.get("TOP", "20"))):
        print(f"{kib / 1024:8.0f} KiB of {total[crate] / 1024:8.0f} KiB  {crate}")


if __name__ == "__main__":
    main()
