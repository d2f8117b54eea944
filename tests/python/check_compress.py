#!/usr/bin/python3
"""`tailor compress` as a user runs it: a small recipe gives a manifest with every variant (accuracy and
latency on two backends), a self-contained report with one plot per backend and its Pareto front, and a
second run reuses every finished step and gives the same manifest.
    check_compress.py TAILOR RECIPE OUTDIR"""
import json
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
    assert set(v["profiles"]) == {"onednn-cpu", "libtorch-cpu"}, v["name"]
    assert 0 <= v["accuracy"] <= 1 and v["macs"] > 0 and v["file_bytes"] > 0, v
c50 = next(v for v in first["variants"] if v["name"] == "c50-fp32")
base = first["variants"][0]
assert c50["macs"] < base["macs"] and [p["pass"].split("{")[0] for p in c50["provenance"]] == ["prune-channels", "distill"]
assert first["kept"], first["kept"]
html = open(first["report"]).read()
assert html.count("<svg") == 2 and "Pareto front" in html and "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
for name in names:
    assert name in html, name
again = json.loads(subprocess.run([tailor, "compress", recipe, "-o", out, "--json"], check=True,
                                  capture_output=True, text=True).stdout)
assert again["reused_steps"] == len(names), again["reused_steps"]
assert [v["accuracy"] for v in again["variants"]] == [v["accuracy"] for v in first["variants"]]
print("compress: %d variants, kept %s, report %s" % (len(names), again["kept"], first["report"]))
