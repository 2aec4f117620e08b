"""Reads the load generators' JSON output (oha's, and bench-client's in the same shape) for
scripts/load_bench.sh.

`steady DB FILE SKIP`: adds to oha's JSON FILE the p50/p99 of the requests in oha's database DB
scheduled SKIP seconds or more after the start (`steadyLatency`). `check FILE CODE`: fails unless every response had status CODE and no request failed, then prints
the requests per second. `rate FILE...`: 60 % of the lowest requests per second, scenario 8's fixed
rate. `micro CRITERION_DIR SINCE INSTRUCTIONS OUT`: the criterion estimates written after the file
SINCE and the callgrind counts as a Markdown section. `write DIR RESULTS.md ...`: benches/RESULTS.md.
"""
import argparse
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys

SCENARIOS = {
    "1": "TLS keep-alive, admitted by allow-listed IP (1 entry) → 200",
    "2": "TLS keep-alive, admitted by client certificate → 200",
    "3": "TLS keep-alive, admitted by browser credential (cookie) → 200",
    "4": "new TLS connection per request, full handshake with a client certificate → 200",
    "5": "TLS keep-alive, unauthenticated browser request → 302",
    "6": "TLS keep-alive, admitted by allow-listed IP among 10 000 CIDRs → 200",
    "7": "HTTP/2, 8 connections × 16 streams, admitted by client certificate → 200",
    "8": "fixed rate (60 % of the slower proxy's maximum), allow-listed IP → 200",
}
# Where certgate should stand against nginx (issue 8): ratio of requests per second.
TARGETS = {"1": 1.0, "2": 1.0, "5": 1.0, "7": 1.0, "4": 0.9}


def load(path):
    with open(path) as f:
        return json.load(f)


def check(path, code):
    data = load(path)
    codes = {str(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
    # -z stops the requests in flight at the deadline; those are not answers.
    errors = {k: v for k, v in (data.get("errorDistribution") or {}).items() if k != "aborted due to deadline"}
    ok = codes.get(code, 0)
    if ok == 0 or set(codes) != {code} or errors:
        sys.exit(f"{os.path.basename(path)}: expected only status {code}, got {codes}, errors {errors}")
    rps = data["summary"]["requestsPerSec"]
    print(f"{rps:10.0f} req/s  ({ok} × {code})")


def steady(db, path, skip):
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT end - COALESCE(start_latency_correction, start) FROM oha "
            "WHERE COALESCE(start_latency_correction, start) >= ?", (skip,)).fetchall()
    latencies = sorted(r[0] for r in rows)
    if not latencies:
        sys.exit(f"{db}: no request after the first {skip} s")
    at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    data = load(path)
    data["steadyLatency"] = {"skip": skip, "count": len(latencies), "p50": at(0.5), "p99": at(0.99)}
    with open(path, "w") as f:
        json.dump(data, f)


def rate(paths):
    print(int(0.6 * min(load(path)["summary"]["requestsPerSec"] for path in paths)))


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = "unknown"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    distro = "unknown"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            distro = m.group(1) if m else distro
    return cpu, os.cpu_count(), mem, platform.release(), distro


def runs(out_dir):
    """{(scenario, target): {round: oha json}}"""
    found = {}
    for path in glob.glob(os.path.join(out_dir, "s*-*-r*.json")):
        m = re.match(r"s(\w+)-(\w+)-r(\d+)\.json$", os.path.basename(path))
        if m:
            found.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = load(path)
    return found


def rps(data):
    return data["summary"]["requestsPerSec"]


def p(data, q):
    # Scenario 8's latencies without the connection set-up, where the run has them.
    steady_ = data.get("steadyLatency")
    if steady_ is not None:
        return steady_.get(q)
    return (data.get("latencyPercentiles") or {}).get(q)


def ms(seconds):
    return "–" if seconds is None else f"{seconds * 1000:.2f} ms"


def micro(args):
    since = os.path.getmtime(args.since)
    rows = []
    for path in glob.glob(os.path.join(args.criterion_dir, "**", "new", "estimates.json"), recursive=True):
        if os.path.getmtime(path) < since:
            continue
        name = os.path.relpath(os.path.dirname(os.path.dirname(path)), args.criterion_dir)
        est = load(path)["median"]
        lo, hi = est["confidence_interval"]["lower_bound"], est["confidence_interval"]["upper_bound"]
        rows.append((name, est["point_estimate"], lo, hi))

    def human(ns):
        return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"

    lines = [
        "## Micro-benchmarks",
        "",
        "criterion (`benches/benches/`), median time per call with its 95 % confidence interval; "
        "what each measures is in `benches/README.md`.",
        "",
        "| benchmark | median | interval |",
        "| --- | --- | --- |",
    ]
    for name, point, lo, hi in sorted(rows):
        lines.append(f"| `{name}` | {human(point)} | {human(lo)} – {human(hi)} |")
    lines += [
        "",
        "### Instructions per admission decision",
        "",
        "`valgrind --tool=callgrind` counting `benches/bin/admission_instructions.rs` (the release "
        "build; one organisation with a 10 000-entry allow list): instructions per decision, "
        "averaged over the repetitions, including dropping the outcome. These counts do not depend "
        "on the machine's load.",
        "",
        "| decision | instructions |",
        "| --- | --- |",
    ]
    with open(args.instructions) as f:
        for line in f:
            case, total, n = line.split()
            lines.append(f"| {case} | {int(total) / int(n):,.0f} |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


def quietness(found, steal):
    """A warning when the machine was busy: the upstream alone (the same work in every round)
    should answer at about the same rate each time."""
    swings = []
    for s in SCENARIOS:
        up = [rps(d) for d in found.get((s, "upstream"), {}).values()]
        if len(up) > 1:
            swings.append(max(up) / min(up))
    swing = max(swings, default=1.0)
    if steal < 2 and swing < 1.2:
        return []
    return [
        "",
        f"**This run was not on a quiet machine**: the upstream alone, the same work every round, "
        f"varied by up to {100 * (swing - 1):.0f} % between rounds, and {steal} % of the CPU time "
        "went to other guests. The ratios of one round (certgate and nginx run seconds apart) are "
        "still comparable; the absolute rates and the latency percentiles are not, nor are they "
        "comparable with a quiet run.",
    ]


def write(args):
    found = runs(args.out_dir)
    cpu, cores, mem, kernel, distro = machine()
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`scripts/bench.sh`, `scripts/load_bench.sh`); see `benches/README.md` for the method "
        "and what the numbers mean.",
        "",
        "## Machine and tools",
        "",
        f"- CPU: {cpu}, {cores} cores visible, {mem} memory",
        f"- Kernel: Linux {kernel}; {distro}",
        f"- certgate: {args.certgate}, built with `cargo build --release` ({args.rustc})",
        f"- nginx: {args.nginx.replace('nginx version: ', '')} (Debian package), {args.openssl}",
        f"- load generators: {args.oha}; `bench-client` (benches/bin, rustls) for scenario 4 and the idle connections",
        f"- CPU time taken by the hypervisor for other guests (steal) during the rounds: {args.steal} %",
        *quietness(found, float(args.steal)),
        "",
        "## Load benchmark: how",
        "",
        f"- {args.rounds} rounds; each round runs every scenario against each target in turn "
        "(upstream, certgate, nginx, then the next scenario), so slow drifts of the machine hit all "
        "targets alike. One warm-up run of 1 s per scenario and proxy before the first round.",
        f"- Each run lasts {args.seconds} s. HTTP/1.1 runs: `oha -c {args.connections} --redirect 0`, "
        "keep-alive over TLS 1.3 (each connection does one handshake per run, so these figures are "
        "about requests). Scenario 4: `bench-client handshakes --concurrency 16`, a new connection "
        "and a full TLS 1.3 handshake with the client certificate for every request, session "
        "resumption off in the client (oha would resume). Scenario 7: `oha --http2 -c 8 -p 16`. "
        f"Scenario 8: `oha -q {args.rate} --latency-correction --db-url`, the same rate for all three "
        "targets; its latencies come from oha's record of every request, counted from the request's "
        "scheduled start, leaving out the requests scheduled in the first 0.5 s: while the 32 "
        "connections are set up (full TLS handshakes) the schedule falls tens of milliseconds behind, "
        "and those requests alone made the p99 of both proxies 15–35 ms.",
        f"- Pinning: {args.pinning}. certgate sizes its thread pool from the CPUs it may use (1); "
        "nginx runs `worker_processes 1`; the demo upstream's tokio runtime also gets one core.",
        "- Every run must answer only with the scenario's status (the load generator's status code "
        "distribution, no connection errors), otherwise the benchmark fails; before the rounds, curl "
        "checks each target and that the upstream saw the right `X-Certgate-Auth`.",
        "- Access logs are off in both (`access_log = \"off\"`, `access_log off`).",
        "- upstream: `certgate demo-upstream` directly over plain HTTP, the physical limit (for 4, 5, "
        "6 and 7 it is not comparable and not run).",
        "- nginx: `benches/load/nginx.conf.template` and `nginx-decide.conf`: the same server "
        "certificate, `ssl_verify_client optional` with certgate's root and issuing CA, a `geo` "
        "allow list per host of the same size, the certificate's organisation (O=) must match the "
        "host's, the cookie checked by `auth_request` to an auth service (the demo upstream "
        "answering 200, a lower bound), `return 302` for browsers, `proxy_pass` with upstream "
        "keepalive.",
        "",
        "## Load benchmark: results",
        "",
        "Requests per second: median over the rounds. Ratio: certgate/nginx per round, median "
        "(min–max). Latency: median over the rounds of each run's p50 and p99.",
        "",
        "| scenario | upstream | certgate | nginx | certgate/nginx | target | certgate p50 / p99 | nginx p50 / p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_round = []
    med = lambda runs: statistics.median(rps(d) for d in runs.values())
    medp = lambda runs, q: statistics.median(p(d, q) or 0 for d in runs.values())
    spans = {}
    for s, title in SCENARIOS.items():
        cg, ng, up = (found.get((s, t), {}) for t in ("certgate", "nginx", "upstream"))
        rounds = sorted(set(cg) & set(ng))
        if not rounds:
            continue
        ratios = [rps(cg[r]) / rps(ng[r]) for r in rounds]
        ratio = statistics.median(ratios)
        spans[s] = (cg, ng, up)
        target = TARGETS.get(s)
        verdict = "–" if target is None else (f"≥ {target:.1f} ✓" if ratio >= target else f"≥ {target:.1f} ✗")
        lines.append(
            f"| {s}. {title} | {f'{med(up):,.0f}' if up else '–'} | {med(cg):,.0f} | {med(ng):,.0f} | "
            f"{ratio:.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | {verdict} | "
            f"{ms(medp(cg, 'p50'))} / {ms(medp(cg, 'p99'))} | {ms(medp(ng, 'p50'))} / {ms(medp(ng, 'p99'))} |"
        )
        for r in rounds:
            u = f"{rps(up[r]):,.0f}" if r in up else "–"
            per_round.append(f"| {s} | {r} | {u} | {rps(cg[r]):,.0f} | {rps(ng[r]):,.0f} | {rps(cg[r]) / rps(ng[r]):.2f} |")
    if "1" in spans and "6" in spans:
        lines += ["", "### Scenario 6: 10 000 allow-list entries against one", ""]
        for i, t in enumerate(("certgate", "nginx")):
            one, big = list(spans["1"][i].values()), list(spans["6"][i].values())
            lo, hi = min(map(rps, one)), max(map(rps, one))
            m = statistics.median(map(rps, big))
            inside = "within" if lo <= m <= hi else ("above" if m > hi else "below")
            lines.append(f"- {t}: {m:,.0f} req/s with 10 000 entries; with one entry the rounds ranged "
                         f"{lo:,.0f}–{hi:,.0f}: {inside} that spread.")
    if "8" in spans:
        cg, ng, up = spans["8"]
        lines += ["", f"### Scenario 8: latency added over the upstream at {int(float(args.rate)):,} requests per second", ""]
        if up:
            for t, runs_ in (("certgate", cg), ("nginx", ng)):
                a50 = medp(runs_, "p50") - medp(up, "p50")
                a99 = medp(runs_, "p99") - medp(up, "p99")
                lines.append(f"- {t}: p50 {a50 * 1000:+.2f} ms, p99 {a99 * 1000:+.2f} ms "
                             f"(upstream directly: p50 {ms(medp(up, 'p50'))}, p99 {ms(medp(up, 'p99'))}); "
                             f"target for certgate: p99 added below 1 ms.")
    if args.memory:
        lines += ["", f"### Resident memory with {args.idle} idle keep-alive TLS connections", "",
                  "| target | before | with the connections | per connection |", "| --- | --- | --- | --- |"]
        for entry in args.memory:
            t, before, with_ = entry.split(":")
            before, with_ = int(before), int(with_)
            per = (with_ - before) / int(args.idle)
            lines.append(f"| {t} | {before / 1024:.1f} MiB | {with_ / 1024:.1f} MiB | {per:.1f} KiB |")
        lines.append("")
        lines.append("nginx: master and worker process summed (VmRSS); certgate: its one process.")
    if args.instructions:
        with open(args.instructions) as f:
            lines += ["", f.read().rstrip("\n")]
    lines += [
        "",
        "### Every round",
        "",
        "| scenario | round | upstream | certgate | nginx | certgate/nginx |",
        "| --- | --- | --- | --- | --- | --- |",
        *per_round,
        "",
    ]
    if args.micro:
        with open(args.micro) as f:
            lines.append(f.read())
    else:
        lines += ["## Micro-benchmarks", "", "Not run this time (`CERTGATE_BENCH=load make bench` runs "
                  "only the load benchmark).", ""]
    with open(args.results, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("file")
    c.add_argument("code")
    st = sub.add_parser("steady")
    st.add_argument("db")
    st.add_argument("file")
    st.add_argument("skip")
    r = sub.add_parser("rate")
    r.add_argument("files", nargs="+")
    w = sub.add_parser("write")
    w.add_argument("out_dir")
    w.add_argument("results")
    for name in ("rounds", "seconds", "connections", "pinning", "nginx", "oha", "certgate", "rustc",
                 "openssl", "rate", "idle", "steal"):
        w.add_argument(f"--{name}", required=True)
    w.add_argument("--memory", action="append", default=[], help="TARGET:KIB_BEFORE:KIB_WITH")
    w.add_argument("--micro", help="the Markdown section written by `micro`")
    w.add_argument("--instructions", help="the Markdown section written by callgrind.py")
    m = sub.add_parser("micro")
    for name in ("criterion_dir", "since", "instructions", "out"):
        m.add_argument(name)
    args = parser.parse_args()
    if args.command == "check":
        check(args.file, args.code)
    elif args.command == "steady":
        steady(args.db, args.file, float(args.skip))
    elif args.command == "rate":
        rate(args.files)
    elif args.command == "micro":
        micro(args)
    else:
        write(args)


if __name__ == "__main__":
    main()
