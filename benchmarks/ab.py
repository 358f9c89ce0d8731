"""Two checkouts side by side (say a clean checkout of the last release and
the working tree), each built in place: `python -m tunpump bench --json` run
from inside each, in interleaved rounds (A B, B A, A B, ...) so a shared
machine's drift touches both alike; medians, their ratio and every run.

    sudo python benchmarks/ab.py DIR_A DIR_B [--rounds 3] [--seconds 3] [--scenario NAME ...]

Default scenarios: relay-vnet udp-vnet tcp-vnet udp-vnet-u64 flows."""
import argparse, json, statistics, subprocess, sys
SCEN = ["relay-vnet", "udp-vnet", "tcp-vnet", "udp-vnet-u64", "flows"]
p = argparse.ArgumentParser()
p.add_argument("a"); p.add_argument("b")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--seconds", type=float, default=3)
p.add_argument("--scenario", action="append")
args = p.parse_args()
scen = args.scenario or SCEN
res = {args.a: {}, args.b: {}}
for r in range(args.rounds):
    for d in (args.a, args.b) if r % 2 == 0 else (args.b, args.a):
        cmd = [sys.executable, "-m", "tunpump", "bench", "--json", "--seconds", str(args.seconds)]
        for s in scen:
            cmd += ["--scenario", s]
        out = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=600)
        if out.returncode:
            print(out.stderr, file=sys.stderr); sys.exit(1)
        doc = json.loads(out.stdout)
        for row in doc["results"]:
            field = {"tcp": "gbps", "flows": "flows_per_second"}.get(row["traffic"], "delivered_kpps")
            res[d].setdefault(row["scenario"], []).append((field, row[field]))
        print(f"round {r} {d} done", file=sys.stderr)
print(f"{'scenario':14} {'metric':17} {'A median':>10} {'B median':>10} {'B/A':>6}   A runs / B runs")
for s in scen:
    a = res[args.a].get(s, []); b = res[args.b].get(s, [])
    if not a or not b:
        continue
    ma = statistics.median(v for _, v in a); mb = statistics.median(v for _, v in b)
    print(f"{s:14} {a[0][0]:17} {ma:10.2f} {mb:10.2f} {mb/ma:6.2f}   {[round(v,2) for _,v in a]} / {[round(v,2) for _,v in b]}")
