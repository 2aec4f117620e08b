"""Reads oha's JSON output for scripts/load_bench.sh.

`check FILE CODE`: fails unless every response had status CODE and no request failed, then prints
the requests per second. `write DIR RESULTS.md ...`: the table of benches/RESULTS.md.
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
    "1": "TLS keep-alive, admitted by allow-listed IP (host ip.bench.test, 127.0.0.1 allow-listed) → 200",
    "2": "TLS keep-alive, admitted by client certificate (host cert.bench.test, 127.0.0.1 not allow-listed) → 200",
    "5": "TLS keep-alive, unauthenticated browser request (`Accept: text/html`, no certificate) → 302",
}


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
    return (data.get("latencyPercentiles") or {}).get(q)


def ms(seconds):
    return "–" if seconds is None else f"{seconds * 1000:.2f} ms"


def write(args):
    found = runs(args.out_dir)
    cpu, cores, mem, kernel, distro = machine()
    lines = [
        "# Load benchmark results",
        "",
        "Written by `make bench` (`scripts/load_bench.sh`); see `benches/README.md` for the method.",
        "",
        "## Machine and tools",
        "",
        f"- CPU: {cpu}, {cores} cores visible, {mem} memory",
        f"- Kernel: Linux {kernel}; {distro}",
        f"- certgate: {args.certgate}, built with `cargo build --release --bins` ({args.rustc})",
        f"- nginx: {args.nginx.replace('nginx version: ', '')} (Debian package), {args.openssl}",
        f"- oha: {args.oha}",
        "",
        "## How",
        "",
        f"- {args.rounds} rounds; each round runs every scenario against each target in turn "
        "(upstream, certgate, nginx, then the next scenario), so slow drifts of the machine hit all "
        "targets alike. One warm-up run of 1 s per scenario and proxy before the first round.",
        f"- Each run: `oha -z {args.seconds}s -c {args.connections} --redirect 0`, HTTP/1.1 keep-alive "
        "over TLS 1.3 on loopback. oha resumes TLS sessions (its rustls client keeps a session cache; not checked here); with keep-alive each connection "
        "does one handshake per run anyway, so these figures are about requests, not handshakes.",
        f"- Pinning: {args.pinning}. certgate sizes its thread pool from the CPUs it may use (1); "
        "nginx runs `worker_processes 1`; the demo upstream's tokio runtime also gets one core.",
        "- Every run must answer only with the scenario's status (oha's status code distribution, "
        "no connection errors), otherwise the benchmark fails; before the rounds, curl checks each "
        "target and that the upstream saw the right `X-Certgate-Auth` (`ip`, `certificate`).",
        "- Access logs are off in both (`access_log = \"off\"`, `access_log off`).",
        "- upstream: `certgate demo-upstream` directly over plain HTTP, the physical limit for "
        "scenarios 1 and 2 (for 5 neither proxy calls it).",
        "- nginx: `benches/load/nginx.conf.template` and `nginx-decide.conf`: the same server "
        "certificate, `ssl_verify_client optional` with certgate's root and issuing CA, a `geo` "
        "allow list per host, the certificate's organisation (O=) must match the host's, "
        "`return 302` to the sign-in page for browsers, `proxy_pass` with upstream keepalive.",
        "",
        "## Results",
        "",
        "Requests per second: median over the rounds. Ratio: certgate/nginx per round, median (min–max).",
        "",
        "| scenario | upstream | certgate | nginx | certgate/nginx | certgate p50 / p99 | nginx p50 / p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_round = []
    for s, title in SCENARIOS.items():
        cg, ng, up = (found.get((s, t), {}) for t in ("certgate", "nginx", "upstream"))
        rounds = sorted(set(cg) & set(ng))
        if not rounds:
            continue
        ratios = [rps(cg[r]) / rps(ng[r]) for r in rounds]
        med = lambda runs: statistics.median(rps(d) for d in runs.values())
        medp = lambda runs, q: statistics.median(p(d, q) or 0 for d in runs.values())
        lines.append(
            f"| {s}. {title} | {f'{med(up):,.0f}' if up else '–'} | {med(cg):,.0f} | {med(ng):,.0f} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{ms(medp(cg, 'p50'))} / {ms(medp(cg, 'p99'))} | {ms(medp(ng, 'p50'))} / {ms(medp(ng, 'p99'))} |"
        )
        for r in rounds:
            u = f"{rps(up[r]):,.0f}" if r in up else "–"
            per_round.append(f"| {s} | {r} | {u} | {rps(cg[r]):,.0f} | {rps(ng[r]):,.0f} | {rps(cg[r]) / rps(ng[r]):.2f} |")
    lines += [
        "",
        "### Every round",
        "",
        "| scenario | round | upstream | certgate | nginx | certgate/nginx |",
        "| --- | --- | --- | --- | --- | --- |",
        *per_round,
        "",
    ]
    with open(args.results, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("file")
    c.add_argument("code")
    w = sub.add_parser("write")
    w.add_argument("out_dir")
    w.add_argument("results")
    for name in ("rounds", "seconds", "connections", "pinning", "nginx", "oha", "certgate", "rustc", "openssl"):
        w.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    if args.command == "check":
        check(args.file, args.code)
    else:
        write(args)


if __name__ == "__main__":
    main()
