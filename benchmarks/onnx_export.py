#!/usr/bin/python3
"""ONNX export measured (issue 21): every torchvision fixture and zoo model (float and 50%-channel-pruned) exported
by `tailor convert --format onnx` and run in ONNX Runtime against PyTorch's / tailor's outputs; trained Fashion-MNIST
models quantized to int8 and exported as QDQ, with ONNX Runtime's top-1 next to tailor's own int8 run; and the
latency of the same variants in ONNX Runtime next to tailor's backends (fp32 and int8, 1 and 2 threads), rounds
interleaved. Prints markdown tables.

    python3 benchmarks/onnx_export.py [OUT] ; env: TAILOR (build/tailor), EPOCHS (3), ROUNDS (3), SECONDS (1.5)
Needs onnxruntime-node (bash scripts/ort.sh). For measurement only: nothing here is used by tailor at run time.
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAILOR = os.environ.get("TAILOR", os.path.join(ROOT, "build", "tailor"))
FIXTURES = os.environ.get("FIXTURES", os.path.join(ROOT, "build", "tests", "fixtures"))
EPOCHS = os.environ.get("EPOCHS", "3")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = os.environ.get("SECONDS", "1.5")
NODE_PATH = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ort.sh")], capture_output=True, text=True).stdout.strip()


def sh(*args, quiet=True):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc.stdout


def ort_run(jobs, work):
    spec = []
    for j, (model, inputs) in enumerate(jobs):
        files = []
        for k, x in enumerate(inputs):
            f = os.path.join(work, f"ort{j}_{k}.bin")
            x.numpy().astype(np.float32).tofile(f)
            files.append({"file": f, "shape": list(x.shape)})
        spec.append({"model": model, "inputs": files, "out": os.path.join(work, f"ort{j}_out"), "threads": 2})
    with open(os.path.join(work, "jobs.json"), "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    subprocess.run(["node", os.path.join(ROOT, "tests", "onnx", "ort_run.js"), os.path.join(work, "jobs.json")],
                   check=True, env=env)
    outs = []
    for j in range(len(jobs)):
        meta = json.load(open(os.path.join(work, f"ort{j}_out.json")))
        shape = meta["outputs"][0]["shape"]
        outs.append(torch.from_numpy(np.fromfile(os.path.join(work, f"ort{j}_out_0.bin"), dtype=np.float32).reshape(shape)))
    return outs


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def fashion_test():
    root = "/usr/share/datasets/fashion-mnist"
    with gzip.open(f"{root}/t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f"{root}/t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.2860) / 0.3530
    return x, torch.from_numpy(labels.astype(np.int64))


def export_table(work):
    print("\n## Float exports: ONNX Runtime against PyTorch's reference output (fixtures) or tailor's (zoo)\n")
    print("| model | mode | nodes | max rel. diff | 50% pruned: params | pruned max rel. diff |")
    print("|---|---|---|---|---|---|")
    manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    rows, jobs = [], []
    for name, entry in manifest["models"].items():
        ref = torch.jit.load(os.path.join(FIXTURES, f"{name}_ref.pt"))
        shape = "x".join(map(str, entry["input_shape"]))
        for mode, file in entry["files"].items():
            if (name, mode) == ("vit", "scripted"):
                continue
            out = os.path.join(work, f"{name}_{mode}.onnx")
            rep = json.loads(sh(TAILOR, "convert", os.path.join(FIXTURES, file), "--input", shape, "--format", "onnx",
                                "-o", out, "--json"))
            rows.append([name, mode, rep["onnx"]["nodes"], ref.output, None, None])
            jobs.append((out, [ref.input]))
            if mode == "traced":
                pruned = os.path.join(work, f"{name}_pruned.pt")
                try:
                    prep = json.loads(sh(TAILOR, "prune", os.path.join(FIXTURES, file), "--input", shape,
                                         "--granularity", "channel", "--ratio", "0.5", "--format", "torchscript,onnx",
                                         "-o", pruned, "--json"))
                except SystemExit as e:
                    rows[-1][4] = ("prune failed: " + str(e).strip().splitlines()[-1],)
                    continue
                rows[-1][4] = prep["params"]
                x = ref.input
                y = torch.jit.load(pruned)(x)
                y = y[0] if isinstance(y, tuple) else y
                rows[-1][5] = y
                jobs.append((pruned[:-3] + ".onnx", [x]))
    outs = ort_run(jobs, work)
    k = 0
    for r in rows:
        err = rel(outs[k], r[3]); k += 1
        pruned = ""
        if r[5] is not None:
            pruned = f"{rel(outs[k], r[5]):.1e}"; k += 1
        params = "" if not r[4] else r[4][0] if len(r[4]) == 1 else f"{r[4][0]:,} -> {r[4][1]:,}"
        print(f"| {r[0]} | {r[1]} | {r[2]} | {err:.1e} | {params} | {pruned} |")
        for f in (os.path.join(work, f"{r[0]}_{r[1]}.onnx"),):
            os.remove(f)


def int8_table(work):
    x, labels = fashion_test()
    print(f"\n## int8 QDQ on Fashion-MNIST (10,000 test images; models trained {EPOCHS} epochs by tailor)\n")
    print("| model | activations | tailor fp32 top-1 | tailor int8 top-1: graph / onednn-cpu | ONNX Runtime int8 top-1 | "
          "ORT - onednn-cpu | top-1 agreement with the graph | largest output diff (rel.) | Q / DQ nodes |")
    print("|---|---|---|---|---|---|---|---|---|")
    variants = {}
    for model in ("fashion-cnn", "fashion-resnet"):
        base = os.path.join(work, f"{model}.pt")
        if not os.path.exists(base):
            sh(TAILOR, "train", model, "--data", "fashion-mnist", "--epochs", EPOCHS, "-o", base, "-q")
        fp32 = json.loads(sh(TAILOR, "eval", base, "--json"))["top1"]
        sh(TAILOR, "convert", base, "--input", "1x1x28x28", "--pipeline", "fold-batch-norm", "--format",
           "torchscript,onnx", "--dynamic-batch", "-o", os.path.join(work, f"{model}-fp32.pt"), "-q")
        variants[f"{model}-fp32"] = os.path.join(work, f"{model}-fp32")
        for act, flag in (("7-bit (default)", []), ("8-bit", ["--reduce-range", "false"])):
            stem = os.path.join(work, f"{model}-int8{'-u8' if flag else ''}")
            try:
                rep = json.loads(sh(TAILOR, "quantize", base, "--input", "1x1x28x28", "--scheme", "int8", "--data",
                                    "fashion-mnist", *flag, "--format", "torchscript,onnx", "--dynamic-batch", "-o",
                                    stem + ".pt", "--json"))
            except SystemExit as e:
                if flag:
                    print(f"| {model} | {act} | skipped: {str(e).splitlines()[-1]} |")
                    continue
                raise
            if not flag:
                variants[f"{model}-int8"] = stem
            own = json.loads(sh(TAILOR, "eval", stem + ".pt", "--backend", "onednn-cpu", "--json"))["top1"]
            with torch.no_grad():
                ref = torch.jit.load(stem + ".pt")(x)
            ort = ort_run([(stem + ".onnx", [x])], work)[0]
            ort_top1 = (ort.argmax(1) == labels).float().mean().item()
            graph_top1 = (ref.argmax(1) == labels).float().mean().item()
            agree = (ort.argmax(1) == ref.argmax(1)).float().mean().item()
            q, dq = rep["onnx"]["quantize_nodes"], rep["onnx"]["dequantize_nodes"]
            print(f"| {model} | {act} | {100 * fp32:.2f}% | {100 * graph_top1:.2f}% / {100 * own:.2f}% | {100 * ort_top1:.2f}% | "
                  f"{100 * (ort_top1 - own):+.2f} | {100 * agree:.2f}% | {rel(ort, ref):.3f} | {q} / {dq} |")
    # ImageNet-shaped models (random weights, random calibration): no accuracy to keep, so agreement with tailor's
    # own int8 graph on 64 random images and the largest output difference.
    print("\n| model (random weights) | top-1 agreement, ORT int8 vs tailor int8 (64 random images) | "
          "largest output diff (rel.) | Q / DQ nodes |")
    print("|---|---|---|---|")
    torch.manual_seed(0)
    x = torch.randn(64, 3, 224, 224)
    for name in ("resnet18", "mobilenet_v2"):
        stem = os.path.join(work, name)
        sh(TAILOR, "convert", name, "--pipeline", "fold-batch-norm", "--format", "torchscript,onnx", "-o",
           stem + "-fp32.pt", "-q")
        rep = json.loads(sh(TAILOR, "quantize", name, "--scheme", "int8", "--data", "random", "--format",
                            "torchscript,onnx", "--dynamic-batch", "-o", stem + "-int8.pt", "--json"))
        variants[f"{name}-fp32"] = stem + "-fp32"
        variants[f"{name}-int8"] = stem + "-int8"
        with torch.no_grad():
            ref = torch.jit.load(stem + "-int8.pt")(x)
        ort = ort_run([(stem + "-int8.onnx", [x])], work)[0]
        agree = (ort.argmax(1) == ref.argmax(1)).float().mean().item()
        print(f"| {name} | {100 * agree:.1f}% | {rel(ort, ref):.3f} | "
              f"{rep['onnx']['quantize_nodes']} / {rep['onnx']['dequantize_nodes']} |")
    return variants


def latency_table(work, variants):
    shapes = {k: ("1x1x28x28" if k.startswith("fashion") else "1x3x224x224") for k in variants}
    print("\n## Latency, batch 1: ONNX Runtime 1.30 against tailor's backends on the same files "
          f"(p50 ms, best of {ROUNDS} interleaved rounds)\n")
    print("| variant | threads | onednn-cpu | onednn-cpu capped at avx2 | libtorch-cpu | ONNX Runtime | "
          "ORT / onednn-cpu |")
    print("|---|---|---|---|---|---|---|")
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    for threads in (1, 2):
        best = {}
        for _ in range(ROUNDS):
            for k, stem in variants.items():
                prof = json.loads(sh(TAILOR, "profile", stem + ".pt", "--input", shapes[k], "--backends",
                                     "onednn-cpu,libtorch-cpu", "--threads", threads, "--max-seconds", SECONDS,
                                     "--node-runs", "0", "--json"))
                for p in prof["profiles"]:
                    key = (k, p["backend"])
                    best[key] = min(best.get(key, 1e9), p["latency_ms"]["p50"])
                capped = json.loads(sh(TAILOR, "profile", stem + ".pt", "--input", shapes[k], "--backends", "onednn-cpu",
                                       "--isa", "avx2", "--threads", threads, "--max-seconds", SECONDS, "--node-runs",
                                       "0", "--json"))["profiles"][0]["latency_ms"]["p50"]
                best[(k, "avx2")] = min(best.get((k, "avx2"), 1e9), capped)
                out = subprocess.run(["node", os.path.join(ROOT, "benchmarks", "ort_time.js"), stem + ".onnx",
                                      str(threads), shapes[k], SECONDS], capture_output=True, text=True, env=env,
                                     check=True).stdout
                best[(k, "ort")] = min(best.get((k, "ort"), 1e9), json.loads(out)["p50_ms"])
        for k in variants:
            o, a, l, r = best[(k, "onednn-cpu")], best[(k, "avx2")], best[(k, "libtorch-cpu")], best[(k, "ort")]
            print(f"| {k} | {threads} | {o:.3f} | {a:.3f} | {l:.3f} | {r:.3f} | {r / o:.2f} |")


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "out", "onnx")
    os.makedirs(work, exist_ok=True)
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    prof = json.loads(sh(TAILOR, "profile", "fashion-cnn", "--backends", "onednn-cpu", "--max-seconds", "0.05",
                         "--min-runs", "2", "--node-runs", "0", "--json"))
    print(f"CPU: {cpu}; oneDNN ISA: {prof['profiles'][0]['isa']}; torch {torch.__version__}")
    what = set(os.environ.get("ONLY", "export,int8,latency").split(","))
    if "export" in what:
        export_table(work)
    variants = int8_table(work) if "int8" in what or "latency" in what else {}
    if "latency" in what:
        latency_table(work, variants)


if __name__ == "__main__":
    main()
