#!/usr/bin/env python3
"""Mean and spread over seeds of benchmarks/nas.sh's results (search-SEED.json, netadapt-SEED.json in a folder)."""
import glob
import json
import os
import statistics
import sys


def spread(values, scale=1.0, digits=2):
    v = [x * scale for x in values]
    if not v:
        return ""
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def load(folder, kind):
    runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(folder, f"{kind}-*.json")))]
    return sorted(runs, key=lambda r: r["seed"])


def search_summary(runs):
    print(f"### Search against uniform scaling ({len(runs)} seeds: {', '.join(str(r['seed']) for r in runs)})\n")
    print("| budget | searched test top-1 | best uniform no slower | points | speed-up vs fastest uniform as accurate "
          "| evolution val | plain evolution val | random val | evolution - random | measured / budget |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    met = 0
    for b in range(len(runs[0]["budgets"])):
        rows = [r["budgets"][b] for r in runs]
        points = [100 * (x["test_top1"] - x["best_uniform_no_slower"]) for x in rows if x["best_uniform_no_slower"] >= 0]
        speed = [x["fastest_uniform_as_accurate_ms"] / x["measured_ms"] for x in rows
                 if x["fastest_uniform_as_accurate_ms"] > 0]
        goal = (points and statistics.mean(points) >= 0.5) or (len(speed) == len(rows) and statistics.mean(speed) >= 1.3)
        met += bool(goal)
        print(f"| {spread([x['budget_ms'] for x in rows], digits=3)} ms "
              f"| {spread([x['test_top1'] for x in rows], 100)}% "
              f"| {spread([x['best_uniform_no_slower'] for x in rows if x['best_uniform_no_slower'] >= 0], 100)}% "
              f"| {spread(points) if points else '-'} "
              f"| {spread(speed) + 'x' if speed else 'none as accurate'} ({len(speed)}/{len(rows)} seeds) "
              f"| {spread([x['validation_evolution'] for x in rows], 100)}% "
              f"| {spread([x['validation_plain_evolution'] for x in rows if 'validation_plain_evolution' in x], 100) or '-'}% "
              f"| {spread([x['validation_random'] for x in rows], 100)}% "
              f"| {spread([100 * (x['validation_evolution'] - x['validation_random']) for x in rows])} "
              f"| {max(x['measured_ms'] / x['budget_ms'] for x in rows):.2f} max |")
    print(f"\nbudgets meeting the goal (+0.5 point or 1.3x, means over seeds): {met} of {len(runs[0]['budgets'])}")
    pairs = [x["validation_evolution"] - x["validation_random"] for r in runs for x in r["budgets"]]
    print(f"evolution against random search, per seed and budget: ahead {sum(d > 0 for d in pairs)}, "
          f"tied {sum(d == 0 for d in pairs)}, behind {sum(d < 0 for d in pairs)} of {len(pairs)}")
    plain = [x["validation_plain_evolution"] - x["validation_random"] for r in runs for x in r["budgets"]
             if "validation_plain_evolution" in x]
    if plain:
        print(f"plain evolution (no screening) against random search: ahead {sum(d > 0 for d in plain)}, "
              f"tied {sum(d == 0 for d in plain)}, behind {sum(d < 0 for d in plain)} of {len(plain)}")
    ratios = [x["max_measured_over_predicted"] for r in runs for x in r["budgets"]]
    print(f"largest measured/predicted ratio during the searches: {max(ratios):.2f}")
    print(f"supernet training: {spread([r['supernet_seconds'] for r in runs], digits=0)} s "
          f"({runs[0]['supernet_epochs']} epochs); one search: "
          f"{spread([x['search_seconds'] for r in runs for x in r['budgets']], digits=0)} s "
          f"({runs[0]['evaluations']} evaluations)\n")
    print("| uniform | measured ms | test top-1 |\n|---|---|---|")
    for u in range(len(runs[0]["uniform"])):
        rows = [r["uniform"][u] for r in runs]
        print(f"| {rows[0]['name']} | {spread([x['measured_ms'] for x in rows], digits=3)} "
              f"| {spread([x['test_top1'] for x in rows], 100)}% |")
    print()


def netadapt_summary(runs):
    print(f"### NetAdapt against uniform L1 pruning ({len(runs)} seeds)\n")
    print("| budget | NetAdapt test top-1 | uniform test top-1 | points | NetAdapt ms | uniform ms "
          "| NetAdapt images (proposals) | uniform images |")
    print("|---|---|---|---|---|---|---|---|")
    for b in range(len(runs[0]["budgets"])):
        rows = [r["budgets"][b] for r in runs]
        print(f"| {spread([x['budget_ms'] for x in rows], digits=3)} ms "
              f"| {spread([x['netadapt_test_top1'] for x in rows], 100)}% "
              f"| {spread([x['uniform_test_top1'] for x in rows], 100)}% "
              f"| {spread([100 * (x['netadapt_test_top1'] - x['uniform_test_top1']) for x in rows])} "
              f"| {spread([x['netadapt_ms'] for x in rows], digits=3)} | {spread([x['uniform_ms'] for x in rows], digits=3)} "
              f"| {spread([x['netadapt_images'] for x in rows], digits=0)} "
              f"({spread([x.get('netadapt_proposal_images', 0) for x in rows], digits=0)}) "
              f"| {spread([x['uniform_images'] for x in rows], digits=0)} |")
    wins = [sum(100 * (x["netadapt_test_top1"] - x["uniform_test_top1"]) >= 0.5 for x in [r["budgets"][b] for r in runs])
            for b in range(len(runs[0]["budgets"]))]
    means = [statistics.mean(100 * (r["budgets"][b]["netadapt_test_top1"] - r["budgets"][b]["uniform_test_top1"])
                             for r in runs) for b in range(len(runs[0]["budgets"]))]
    print(f"\nbudgets where NetAdapt is ahead by 0.5 point or more in the mean over seeds: "
          f"{sum(m >= 0.5 for m in means)} of {len(means)}; per budget, seeds ahead by 0.5+: {wins}")
    slower = [(r["seed"], x["budget_ms"]) for r in runs for x in r["budgets"] if x["uniform_ms"] < 0.95 * x["netadapt_ms"]]
    if slower:
        print(f"uniform pruning ran more than 5% faster than NetAdapt (no ratio in between was found) at: {slower}")
    faster = [(r["seed"], x["budget_ms"]) for r in runs for x in r["budgets"] if x["netadapt_ms"] < 0.95 * x["uniform_ms"]]
    if faster:
        print(f"NetAdapt ran more than 5% faster than uniform pruning at: {faster}")
    print()


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "out/nas"
    search, netadapt = load(folder, "search"), load(folder, "netadapt")
    if not search and not netadapt:
        sys.exit(f"no search-*.json or netadapt-*.json in {folder}")
    if search:
        search_summary(search)
    if netadapt:
        netadapt_summary(netadapt)


if __name__ == "__main__":
    main()
