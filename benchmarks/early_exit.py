"""Early exits on Fashion-MNIST (docs/placement.md): one trained model, an exit head added after its second stage at
two accuracy targets; for each, the exit rate and top-1 on the 10,000 test images (the thresholds were calibrated on
a held-out part of the training split), and the planner's expected latency per link against the model without exits.

    /usr/bin/python3 benchmarks/early_exit.py TAILOR BASE.pt OUTDIR [EXIT_NODE]

BASE.pt is a Fashion-MNIST model trained by tailor (e.g. the main job's out/fashion-mnist/variants/baseline.pt).
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch

MEAN, STD = 0.2860, 0.3530


def fashion_test():
    root = os.environ.get("TAILOR_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    with gzip.open(f"{root}/t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f"{root}/t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return (torch.from_numpy(x.astype(np.float32) / 255) - MEAN) / STD, torch.from_numpy(y.astype(np.int64))


def run(args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{p.stderr}")
    return p.stdout


def main():
    tailor, base, out = sys.argv[1:4]
    node = sys.argv[4] if len(sys.argv) > 4 else "relu_4"
    os.makedirs(out, exist_ok=True)
    x, y = fashion_test()
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        os.remove(manifest)
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    models = {"no-exit": base}
    rows = []
    for drop in (0.5, 2.0):
        name = f"exit-drop{drop:g}"
        path = os.path.join(out, name + ".pt")
        run([tailor, "convert", base, "--input", "1x1x28x28", "--data", "fashion-mnist", "-o", path,
             "--pipeline", f"early-exit{{at=[{node}],epochs=2,max_drop={drop}}}", "--json"])
        models[name] = path
        extra = {"tailor/provenance.json": ""}
        m = torch.jit.load(path, _extra_files=extra).eval()
        record = [r for r in json.loads(extra["tailor/provenance.json"]) if r["pass"].startswith("early-exit")][-1]
        stats = {s["key"]: s["value"]["v"] for s in record["stats"]}
        threshold = stats["thresholds"][0]
        with torch.no_grad():
            final, exit_logits = m(x)
        confidence, exit_pred = torch.softmax(exit_logits, 1).max(1)
        exits = confidence >= threshold
        pred = torch.where(exits, exit_pred, final.argmax(1))
        rows.append({"variant": name, "max_drop_points": drop, "threshold": threshold,
                     "validation_exit_rate": stats["exit_rates"][0], "test_exit_rate": exits.float().mean().item(),
                     "test_top1_with_exit": (pred == y).float().mean().item(),
                     "test_top1_own_head": (final.argmax(1) == y).float().mean().item(),
                     "test_top1_of_exited": (exit_pred[exits] == y[exits]).float().mean().item() if exits.any() else None})
    for name, path in models.items():
        for threads in ("1", "2"):
            run([tailor, "profile", path, "--input", "1x1x28x28", "--backends", "onednn-cpu", "--threads", threads,
                 "--card", manifest, "--name", name, "--max-seconds", "3", "--node-runs", "20", "--json"])
    links = [os.path.join(source, "examples/place/links", f"{n}.yaml") for n in ("3g", "lte", "wifi", "lan-1g")]
    cmd = [tailor, "place", manifest, "--edge", "name=edge,backend=onednn-cpu,threads=1,slowdown=4", "--cloud",
           "name=cloud,backend=onednn-cpu,threads=2", "--json"]
    for link in links:
        cmd += ["--link", link]
    plans = json.loads(run(cmd))
    expected = {}
    for plan in plans:
        for v in [plan["chosen"]] + plan["runners_up"]:
            b = v["placement"]["predicted"]
            expected.setdefault(v["variant"], {})[plan["link"]["name"]] = {
                "site": v["placement"]["site"], "expected_ms": b["total_ms"],
                "no_exit_ms": b.get("no_exit_ms", b["total_ms"]), "exit_rate": b.get("exit_rate", 0.0)}
    print(f"{'variant':<16} {'threshold':>9} {'exit rate':>9} {'top-1':>7} {'own head':>8} {'exited':>7}  "
          + "  ".join(f"{n:>22}" for n in ("3g", "lte", "wifi", "lan-1g")))
    for name in models:
        r = next((r for r in rows if r["variant"] == name), None)
        cells = "  ".join(f"{expected[name][n]['site']:>5} {expected[name][n]['expected_ms']:7.3f} ms"
                          f" ({expected[name][n]['no_exit_ms']:6.3f})" for n in ("3g", "lte", "wifi", "lan-1g"))
        if r:
            print(f"{name:<16} {r['threshold']:9.4f} {100 * r['test_exit_rate']:8.1f}% {100 * r['test_top1_with_exit']:6.2f}%"
                  f" {100 * r['test_top1_own_head']:7.2f}% {100 * (r['test_top1_of_exited'] or 0):6.2f}%  {cells}")
        else:
            print(f"{name:<16} {'-':>9} {'-':>9} {'-':>7} {'-':>8} {'-':>7}  {cells}")
    json.dump({"rows": rows, "plans": expected}, open(os.path.join(out, "early_exit.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
