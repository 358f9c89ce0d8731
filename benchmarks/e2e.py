"""End-to-end benchmark: tunpump's relay and tunnels against the bare veth
pair and a pure-Python forwarder, side by side in one run.

    sudo python benchmarks/e2e.py [--seconds 5] [--scenario relay-vnet ...]

It is `python -m tunpump bench` with longer runs and a repeat count: every
scenario runs --repeat times, in interleaved rounds, and the median is
reported, which is what the figures in README.md come from."""
import argparse
import statistics
import sys

from tunpump import bench


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scenario", action="append", choices=sorted(bench.BY_NAME))
    a = p.parse_args()
    bench._check_environment()
    chosen = [bench.BY_NAME[n] for n in a.scenario] if a.scenario else bench.SCENARIOS
    # Rounds, not blocks: each round runs every scenario once, so slow drifts
    # of a shared machine touch all scenarios alike.
    all_runs = {sc.name: [] for sc in chosen}
    for _ in range(a.repeat):
        for sc in chosen:
            all_runs[sc.name].append(bench.run_scenario(sc, a.seconds, lambda *x: None))
    results = []
    for sc in chosen:
        runs = all_runs[sc.name]
        field = {"tcp": "gbps", "flows": "flows_per_second"}.get(sc.traffic, "delivered_kpps")
        med = sorted(runs, key=lambda r: r[field])[len(runs) // 2]
        med[field] = statistics.median(r[field] for r in runs)
        values = [round(r[field], 2) for r in runs]
        results.append(med)
        print(f"{sc.name:15} {field} {med[field]:10.2f}  runs {values}", file=sys.stderr)
    bench._ratios(results)
    print(bench.format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
