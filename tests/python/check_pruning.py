#!/usr/bin/python3
"""Pruning as PyTorch sees it. For every fixture model:
- `tailor prune --granularity channel --ratio 0.5`: PyTorch loads the result, runs it on the reference input and
  gets an output of the original shape, with fewer parameters;
- `tailor prune --granularity channel --ratio 0`: the same outputs as the original;
- `tailor prune --granularity unstructured --ratio 0.5` (layer-wise and --global): the zeros are exactly where
  torch.nn.utils.prune.l1_unstructured / global_unstructured put them on the same weights.
Exits non-zero on any mismatch."""
import json
import os
import subprocess
import sys

import torch
import torch.nn.utils.prune as tprune


def conv_linear_weights(module):
    """(name, tensor) of the 2-d+ weights of every convolution and linear layer, by parameter name."""
    out = {}
    for mname, mod in module.named_modules():
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            out[(mname + "." if mname else "") + "weight"] = mod
    return out


def run(cli, args):
    proc = subprocess.run([cli] + args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return proc.stdout


def main():
    cli, fixtures, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    manifest = json.load(open(os.path.join(fixtures, "manifest.json")))
    failures = []
    for name, entry in manifest["models"].items():
        if "traced" not in entry["files"]:
            continue
        src = os.path.join(fixtures, entry["files"]["traced"])
        ref = torch.jit.load(os.path.join(fixtures, f"{name}_ref.pt"))
        x, y = ref.input, ref.output
        shape = "x".join(str(d) for d in entry["input_shape"])
        original = torch.jit.load(src)
        n_before = sum(p.numel() for p in original.parameters())
        try:
            out = os.path.join(work, f"{name}_c50.pt")
            report = json.loads(run(cli, ["prune", src, "--input", shape, "--ratio", "0.5", "-o", out, "--json"]))
            m = torch.jit.load(out)
            with torch.no_grad():
                got = m(x)
            got = got[0] if isinstance(got, tuple) else got
            n_after = sum(p.numel() for p in m.parameters())
            ok = got.shape == y.shape and torch.isfinite(got).all().item()
            macs = report["macs"]
            print(f"{name:22s} channel 0.5: params {n_before} -> {n_after}  MACs {macs[0]} -> {macs[1]} "
                  f"({100.0 * macs[1] / macs[0]:.0f}%)  output {tuple(got.shape)} {'ok' if ok else 'BAD'}")
            if not ok:
                failures.append(f"{name}: pruned output shape {tuple(got.shape)} vs {tuple(y.shape)}")
            if n_after > n_before:
                failures.append(f"{name}: pruning added parameters")

            out0 = os.path.join(work, f"{name}_c0.pt")
            run(cli, ["prune", src, "--input", shape, "--ratio", "0", "-o", out0, "--json"])
            with torch.no_grad():
                got0 = torch.jit.load(out0)(x)
            got0 = got0[0] if isinstance(got0, tuple) else got0
            err0 = ((got0 - y).abs().max() / y.abs().max().clamp_min(1e-12)).item()
            if err0 > 1e-5:
                failures.append(f"{name}: ratio 0 changed the outputs (max relative error {err0:.2e})")
            for p in (out, out0):
                os.remove(p)
        except RuntimeError as e:
            failures.append(f"{name}: tailor prune failed: {e}")

    # Unstructured masks against torch.nn.utils.prune on the same weights (a model built in Python, exported).
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3),
                              torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10)).eval()
    src = os.path.join(work, "seq.pt")
    torch.jit.trace(net, torch.randn(1, 3, 8, 8)).save(src)
    for global_ in (False, True):
        out = os.path.join(work, "seq_u50.pt")
        run(cli, ["prune", src, "--input", "1x3x8x8", "--granularity", "unstructured", "--ratio", "0.5", "-o", out]
            + (["--global"] if global_ else []))
        pruned = torch.jit.load(out)
        theirs = torch.nn.Sequential(*[m for m in net]).eval()
        import copy
        theirs = copy.deepcopy(net)
        layers = [(theirs[i], "weight") for i in (0, 2, 4)]
        if global_:
            tprune.global_unstructured(layers, pruning_method=tprune.L1Unstructured, amount=0.5)
        else:
            for mod, p in layers:
                tprune.l1_unstructured(mod, p, amount=0.5)
        ours = dict(pruned.named_parameters())
        for i in (0, 2, 4):
            mask_theirs = getattr(theirs[i], "weight_mask")
            w_ours = ours[f"{i}.weight"]
            same = torch.equal((w_ours != 0).float(), mask_theirs)
            print(f"unstructured {'global' if global_ else 'layer-wise'} layer {i}: masks "
                  f"{'equal' if same else 'DIFFER'} ({int((mask_theirs == 0).sum())} zeros)")
            if not same:
                failures.append(f"unstructured ({'global' if global_ else 'layer-wise'}) layer {i}: masks differ "
                                "from torch.nn.utils.prune")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
