"""Instructions per request, from callgrind dumps of a server under load, for
scripts/load_bench.sh.

`section OUT PROFILE...` writes the report's Markdown section to OUT. Each PROFILE is
`TARGET:SCENARIO:N1:DUMP1:N2:DUMP2`: two dumps of the same server process, counted over N1 and
then N2 requests of the scenario on the same number of connections. The difference divided by
N2 - N1 is what one request costs, without the connections' handshakes and whatever else both
runs share.

Instructions are attributed to the source file they ran in after inlining (callgrind's `fi=`/`fe=`
records), and from there to a crate or library, except that the standard library's generic code
inlined into another crate's function counts for that crate; allocations are the calls into the
allocator from outside it.
"""
import os
import re
import sys
from collections import Counter

# Name compression: ob/cob share one table, the file records another, fn/cfn a third.
SPACE = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
         "fn": "fn", "cfn": "fn"}
COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?$")
REGISTRY_CRATE = re.compile(r"/registry/src/[^/]+/([A-Za-z0-9_.-]+?)-\d+\.\d+\.\d+[^/]*/")
RUST_LIBRARY = re.compile(r"/rustc/[0-9a-f]+/library/")
CERTGATE = re.compile(r"(^|/)(cli|gateway|auth-portal|policies|certs|db|store|benches)/src/")
ALLOCATING = re.compile(r"^(mi_(malloc|zalloc|calloc|realloc|rezalloc|new)\w*|malloc|calloc|realloc|"
                        r"posix_memalign|aligned_alloc|memalign)$")
ALLOCATOR_FILE = re.compile(r"libmimalloc-sys|/malloc/")

CERTGATE_GROUPS = [
    ("certgate", "certgate's own code"),
    ("pingora", "Pingora (HTTP/1 sessions, proxy phases, upstream pool)"),
    ("tls", "rustls and ring (TLS records, AES-GCM)"),
    ("tokio", "tokio and mio (tasks, timers, I/O readiness)"),
    ("http", "http, httparse, bytes (header maps, parsing, buffers)"),
    ("alloc", "allocator (mimalloc)"),
    ("std", "Rust standard library (drop glue, hashing, formatting, growing vectors)"),
    ("libc", "libc (memcpy, memmove, system call wrappers)"),
    ("other", "other"),
]
NGINX_GROUPS = [
    ("nginx", "nginx"),
    ("openssl", "OpenSSL (TLS records, AES-GCM)"),
    ("libc", "libc (memcpy, malloc, system call wrappers)"),
    ("other", "other"),
]


def group(obj, path):
    """Which part of the server a line of code belongs to."""
    name = os.path.basename(obj)
    if name.startswith("libc.so"):
        return "libc"
    if name.startswith(("libssl", "libcrypto")):
        return "openssl"
    if name == "nginx":
        return "nginx"
    crate = REGISTRY_CRATE.search(path)
    if crate:
        crate = crate.group(1)
        if crate.startswith("pingora"):
            return "pingora"
        if crate.startswith(("rustls", "ring")) or crate == "webpki":
            return "tls"
        if crate.startswith(("tokio", "mio")):
            return "tokio"
        if crate in ("http", "httparse", "bytes", "http-body", "h2"):
            return "http"
        if crate in ("mimalloc", "libmimalloc-sys"):
            return "alloc"
        return "other"
    if RUST_LIBRARY.search(path):
        return "std"
    if CERTGATE.search(path):
        return "certgate"
    return "other"


def resolve(table, value):
    match = COMPRESSED.match(value)
    if not match:
        return value
    if match.group(2) is not None:
        table[match.group(1)] = match.group(2)
    return table.get(match.group(1), "")


def parse(path):
    """Self cost (instructions) per group and the number of allocations in one dump."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    cost = Counter()
    allocations = 0
    total = None
    obj = file = current = target_fn = ""
    call_cost_next = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if line[0].isdigit() or line[0] in "+-*":
                if call_cost_next:
                    # The inclusive cost of the call just named: the callee's, not this line's.
                    call_cost_next = False
                    continue
                fields = line.split()
                if len(fields) >= 2:
                    part = group(obj, current)
                    if part == "std":
                        # The standard library's generic code inlined into a function of another
                        # crate counts for that crate.
                        part = group(obj, file)
                    cost[part] += int(fields[1])
                continue
            key, equals, value = line.partition("=")
            if equals and key in SPACE:
                name = resolve(names[SPACE[key]], value)
                if key == "ob":
                    obj = name
                elif key == "fl":
                    file = current = name
                elif key in ("fi", "fe"):
                    current = name
                elif key == "fn":
                    current = file
                elif key == "cfn":
                    target_fn = name
                continue
            if key == "calls" and equals:
                call_cost_next = True
                if ALLOCATING.match(target_fn) and not ALLOCATOR_FILE.search(current):
                    allocations += int(value.split()[0])
                continue
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    counted = sum(cost.values())
    if total is not None and counted != total:
        sys.exit(f"{path}: counted {counted} instructions but the dump's total is {total}")
    return cost, allocations


def per_request(n1, dump1, n2, dump2):
    (cost1, alloc1), (cost2, alloc2) = parse(dump1), parse(dump2)
    n = n2 - n1
    groups = {g: (cost2[g] - cost1[g]) / n for g in set(cost1) | set(cost2)}
    return groups, (alloc2 - alloc1) / n


def section(out, profiles):
    measured = {}
    for spec in profiles:
        target, scenario, n1, dump1, n2, dump2 = spec.split(":")
        measured[(target, scenario)] = (int(n1), int(n2), *per_request(int(n1), dump1, int(n2), dump2))
    scenarios = sorted({s for _, s in measured}, key=int)
    n1, n2 = next(iter(measured.values()))[:2]
    lines = [
        "### Instructions per request (callgrind)",
        "",
        f"certgate and nginx, each run once more under `valgrind --tool=callgrind` after the rounds, "
        f"counted over {n1:,} and then {n2:,} keep-alive requests on 2 connections (`oha -n`); the "
        f"difference divided by {n2 - n1:,} is one request without the handshakes. User space only: "
        "the kernel's share of the CPU time is not in these counts. Unlike requests per second, they "
        "do not move with the machine's load. Allocations: calls into the allocator (mimalloc for "
        "certgate, glibc's malloc for nginx and OpenSSL) from outside it.",
        "",
        "| scenario | certgate | nginx | certgate/nginx | allocations: certgate | allocations: nginx |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    from_report = {"1": "1. allow-listed IP → 200", "2": "2. client certificate → 200",
                   "3": "3. browser credential → 200", "5": "5. unauthenticated browser → 302"}
    total = lambda m: sum(m[2].values()) if m else None
    fmt = lambda v: "–" if v is None else f"{v:,.0f}"
    for s in scenarios:
        cg, ng = measured.get(("certgate", s)), measured.get(("nginx", s))
        c, n = total(cg), total(ng)
        ratio = f"{c / n:.2f}" if c and n else "–"
        lines.append(f"| {from_report.get(s, s)} | {fmt(c)} | {fmt(n)} | {ratio} | "
                     f"{fmt(cg[3] if cg else None)} | {fmt(ng[3] if ng else None)} |")
    for target, groups in (("certgate", CERTGATE_GROUPS), ("nginx", NGINX_GROUPS)):
        have = [s for s in scenarios if (target, s) in measured]
        if not have:
            continue
        how = ("by the crate or library of the source they ran in, after inlining; the standard "
               "library's generic code counts for the crate whose function it was inlined into"
               if target == "certgate" else "by the program or library they ran in")
        lines += ["", f"Where {target}'s instructions per request go ({how}):", "",
                  "| part | " + " | ".join(f"scenario {s}" for s in have) + " |",
                  "| --- |" + " --- |" * len(have)]
        for key, title in groups:
            cells = []
            for s in have:
                by_group = measured[(target, s)][2]
                whole = sum(by_group.values())
                v = by_group.get(key, 0)
                cells.append(f"{v:,.0f} ({100 * v / whole:.0f} %)" if whole else "–")
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) < 4 or sys.argv[1] != "section":
        sys.exit("usage: callgrind.py section OUT TARGET:SCENARIO:N1:DUMP1:N2:DUMP2...")
    section(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
