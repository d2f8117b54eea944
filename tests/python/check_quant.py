#!/usr/bin/python3
"""Quantized models as PyTorch sees them. Runs the hidden test case that writes tailor's int8 and w4 exports
of resnet18, mobilenet_v2 and fashion-resnet with an input and tailor's output for each, then:
- PyTorch loads each export (fake-quant TorchScript) and reproduces tailor's output within 1e-5 relative;
- the files really contain fake-quantize ops;
- tailor's min/max and moving-average observers and per-channel weight ranges give the same scales and zero
  points as torch.ao.quantization's MinMaxObserver, MovingAverageMinMaxObserver (reduce_range) and
  PerChannelMinMaxObserver on the same data.
Exits non-zero on any mismatch."""
import os
import subprocess
import sys

import torch
from torch.ao.quantization.observer import MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver


def main():
    tests_binary, work = sys.argv[1:3]
    proc = subprocess.run([tests_binary, "[quant-export]"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr)
        return 1
    failures = []
    for name in ("resnet18", "mobilenet_v2", "fashion-resnet"):
        for kind in ("int8", "w4"):
            model = torch.jit.load(os.path.join(work, f"{name}_{kind}.pt"))
            x, expected = torch.load(os.path.join(work, f"{name}_{kind}_io.pt"))
            with torch.no_grad():
                got = model(x)
            rel = ((got - expected).abs().max() / expected.abs().max()).item()
            ops = str(model.inlined_graph)
            has_fq = "fake_quantize_per" in ops
            print(f"{name} {kind}: max rel diff {rel:.2e}, fake-quant ops: {has_fq}")
            if rel > 1e-5 or not has_fq:
                failures.append(f"{name} {kind}")
    a, b, mm_s, mm_z, mov_s, mov_z, pc_s, pc_z = torch.load(os.path.join(work, "observers.pt"))
    mm = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    mm(a), mm(b)
    s, z = mm.calculate_qparams()
    if not (torch.allclose(s, mm_s, rtol=1e-6) and torch.equal(z.int(), mm_z.int())):
        failures.append(f"minmax observer: torch {s.item()}/{z.item()} tailor {mm_s.item()}/{mm_z.item()}")
    mov = MovingAverageMinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=True)
    mov(a), mov(b)
    s, z = mov.calculate_qparams()
    if not (torch.allclose(s, mov_s, rtol=1e-5) and torch.equal(z.int(), mov_z.int())):
        failures.append(f"moving-average observer: torch {s.item()}/{z.item()} tailor {mov_s.item()}/{mov_z.item()}")
    pc = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    pc(a.reshape(4, -1))
    s, z = pc.calculate_qparams()
    if not (torch.allclose(s, pc_s, rtol=1e-6) and torch.equal(z.int(), pc_z.int())):
        failures.append(f"per-channel observer: torch {s.tolist()} tailor {pc_s.tolist()}")
    print("observers compared with torch.ao.quantization")
    if failures:
        print("FAILED:", failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
