"""`tailor profile --card` and `tailor place` as a user runs them, checked from Python PyTorch.

A ResNet-18 is profiled on two devices of this machine (onednn-cpu with 1 and 2 threads) into one manifest, then
planned over the shipped links; the edge and cloud parts that `tailor place -o` writes are loaded by stock PyTorch
and composed, and must reproduce the whole model. Bad requests fail with the reason and write nothing.
"""
import json
import os
import shutil
import subprocess
import sys

import torch


def run(args, ok=True):
    p = subprocess.run(args, capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stdout}\n{p.stderr}")
    if not ok and p.returncode == 0:
        sys.exit(f"expected a failure: {' '.join(args)}\n{p.stdout}")
    return p


def main():
    tailor, fixtures, tmp, source = sys.argv[1:5]
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model = os.path.join(fixtures, "resnet18_traced.pt")
    manifest = os.path.join(tmp, "manifest.json")
    quick = ["--max-seconds", "1", "--min-runs", "5", "--warmup", "2", "--node-runs", "3"]
    for threads in ("1", "2"):
        run([tailor, "profile", model, "--input", "1x3x224x224", "--backends", "onednn-cpu", "--threads", threads,
             "--card", manifest, "--name", "resnet18", "--json"] + quick)
    cards = json.load(open(manifest))["variants"]
    assert len(cards) == 1, cards
    profiles = cards[0]["profiles"]
    assert sorted(p["threads"] for p in profiles.values()) == [1, 2], profiles.keys()

    links = [os.path.join(source, "examples/place/links", f"{n}.yaml") for n in ("3g", "lan-1g")]
    edge, cloud = "backend=onednn-cpu,threads=1", "backend=onednn-cpu,threads=2"
    out = os.path.join(tmp, "plans")
    args = [tailor, "place", manifest, "--edge", edge, "--cloud", cloud, "-o", out, "--json"]
    for link in links:
        args += ["--link", link]
    plans = json.loads(run(args).stdout)
    assert [p["link"]["name"] for p in plans] == ["3g", "lan-1g"]

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    whole = torch.jit.load(model).eval()(x)
    for name in ("3g", "lan-1g"):
        folder = os.path.join(out, name)
        plan = json.load(open(os.path.join(folder, "plan.json")))
        parts = plan["parts"]
        sent = [x]
        outputs = {}
        if parts["edge"]:
            got = torch.jit.load(os.path.join(folder, parts["edge"]))(x)
            got = list(got) if isinstance(got, tuple) else [got]
            for i, n in enumerate(parts["edge_outputs"]):
                outputs[n] = got[i]
            sent = got[len(parts["edge_outputs"]):]
        if parts["cloud"]:
            assert len(sent) == len(parts["cut"]), (len(sent), parts["cut"])
            got = torch.jit.load(os.path.join(folder, parts["cloud"]))(*sent)
            got = list(got) if isinstance(got, tuple) else [got]
            for i, n in enumerate(parts["cloud_outputs"]):
                outputs[n] = got[i]
        y = outputs[parts["outputs"][0]]
        rel = ((y - whole).abs().max() / whole.abs().max()).item()
        assert rel < 1e-5, (name, rel)
        b = plan["chosen"]["placement"]["predicted"]
        parts_sum = b["edge_ms"] + b["up_ms"] + b["rtt_ms"] + b["cloud_ms"] + b["down_ms"]
        assert abs(parts_sum - b["total_ms"]) < 1e-6 * max(1, b["total_ms"]), b
        print(f"{name}: {plan['chosen']['placement']['site']} ({plan['chosen']['placement']['method']}), "
              f"predicted {b['total_ms']:.2f} ms, composed parts within {rel:.2g}")

    # Bad requests: a link without bandwidth, an objective nothing meets, a device this build does not know.
    bad_out = os.path.join(tmp, "bad")
    p = run([tailor, "place", manifest, "--edge", edge, "--cloud", cloud, "--link", "uplink_mbps=0,rtt_ms=5",
             "-o", bad_out], ok=False)
    assert "'uplink_mbps' must be > 0" in p.stderr, p.stderr
    p = run([tailor, "place", manifest, "--edge", edge, "--cloud", cloud, "--link", links[0], "--latency-ms",
             "0.001", "-o", bad_out], ok=False)
    assert "no variant meets the objective" in p.stderr and "closest is 'resnet18'" in p.stderr, p.stderr
    p = run([tailor, "place", manifest, "--edge", "backend=onednn-cpu,threads=3", "--cloud", cloud, "--link",
             links[0], "-o", bad_out], ok=False)
    assert "has no per-node profile" in p.stderr and "tailor profile" in p.stderr, p.stderr
    p = run([tailor, "place", manifest, "--edge", "backend=npu", "--cloud", cloud, "--link", links[0]], ok=False)
    assert "onednn-cpu" in p.stderr, p.stderr
    # A device this machine cannot run: measuring it fails naming the backend and why (on a CUDA machine it runs).
    p = subprocess.run([tailor, "place", manifest, "--edge", edge, "--cloud", "backend=libtorch-cuda", "--link",
                        links[0], "--measure", "-o", bad_out], capture_output=True, text=True)
    if p.returncode != 0:
        assert "libtorch-cuda" in p.stderr and "here" in p.stderr, p.stderr
    else:
        shutil.rmtree(bad_out)
    assert not os.path.exists(bad_out), "a failed plan wrote files"
    # --measure takes the missing profile (3 threads) and adds it beside the others.
    run([tailor, "place", manifest, "--edge", "backend=onednn-cpu,threads=3", "--cloud", cloud, "--link",
         links[1], "--measure", "--json"])
    profiles = json.load(open(manifest))["variants"][0]["profiles"]
    assert sorted(p["threads"] for p in profiles.values()) == [1, 2, 3], profiles.keys()
    print("place: ok")


if __name__ == "__main__":
    main()
