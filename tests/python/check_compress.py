#!/usr/bin/python3
"""`tailor compress` as a user runs it: a small recipe gives a manifest with every variant (accuracy and
latency on two backends), a self-contained report with one plot per backend and its Pareto front, a
placement plan per link (the recipe's `placement:`) with its parts written, and a second run reuses every
finished step and gives the same manifest.
    check_compress.py TAILOR RECIPE OUTDIR"""
import json
import os
import shutil
import subprocess
import sys

tailor, recipe, out = sys.argv[1:4]
shutil.rmtree(out, ignore_errors=True)
first = json.loads(subprocess.run([tailor, "compress", recipe, "-o", out, "--json"], check=True,
                                  capture_output=True, text=True).stdout)
names = [v["name"] for v in first["variants"]]
assert names == ["baseline", "dense-int8", "c50-fp32", "c50-int8", "w4"], names
for v in first["variants"]:
    # The recipe's backends at 1 thread, plus the placement's cloud device (onednn-cpu, 2 threads) beside them.
    assert {"onednn-cpu", "libtorch-cpu"} <= set(v["profiles"]), v["name"]
    assert sorted(p["threads"] for p in v["profiles"].values() if p["backend"] == "onednn-cpu") == [1, 2], v["name"]
    assert 0 <= v["accuracy"] <= 1 and v["macs"] > 0 and v["file_bytes"] > 0, v
c50 = next(v for v in first["variants"] if v["name"] == "c50-fp32")
base = first["variants"][0]
assert c50["macs"] < base["macs"] and [p["pass"].split("{")[0] for p in c50["provenance"]] == ["prune-channels", "distill"]
assert first["kept"], first["kept"]
html = open(first["report"]).read()
# Two accuracy-latency plots, one latency-vs-bandwidth plot per variant in the placement section, and one
# latency-vs-devices plot per link from the fleet simulation.
assert html.count("<svg") == 2 + len(names) + 2 and "Fleet simulation: lte" in html and "Pareto front" in html and "Placement" in html and "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
for name in names:
    assert name in html, name
for link in ("lte", "1000up-0.5ms"):
    plan = json.load(open(f"{out}/placement/{link}/plan.json"))
    assert plan["chosen"]["variant"] in names and plan["edge"]["modelled"], plan["chosen"]["variant"]
    for part in ("edge", "cloud"):
        if plan["parts"][part]:
            assert os.path.getsize(f"{out}/placement/{link}/{plan['parts'][part]}") > 0
    assert plan["parts"]["composition_max_rel_diff"] < 1e-5
again = json.loads(subprocess.run([tailor, "compress", recipe, "-o", out, "--json"], check=True,
                                  capture_output=True, text=True).stdout)
assert again["reused_steps"] == len(names), again["reused_steps"]
assert [v["accuracy"] for v in again["variants"]] == [v["accuracy"] for v in first["variants"]]
print("compress: %d variants, kept %s, report %s" % (len(names), again["kept"], first["report"]))
