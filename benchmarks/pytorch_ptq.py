#!/usr/bin/python3
"""PyTorch 1.13's own post-training quantization on the same trained models and calibration images as
bench_quant, for the side-by-side table in docs/quantization.md.

    /usr/bin/python3 benchmarks/pytorch_ptq.py DIR [--calib 512]

DIR holds bench_quant's float models (<model>_s<seed>.pt, TorchScript with the tailor IR embedded). Each is
rebuilt as an nn.Module with the same parameter names (FX needs Python modules), quantized by FX PTQ with
the default qconfig mapping of each engine (onednn, qnnpack), calibrated on the first N training images in
order (batches of 64, as bench_quant), and evaluated on the 10k test images. Prints a markdown table."""
import collections
import glob
import gzip
import os
import re
import statistics
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

ROOT = os.environ.get("TAILOR_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def images(split, limit=None):
    x = idx(os.path.join(ROOT, f"{split}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(ROOT, f"{split}-labels-idx1-ubyte.gz"))
    if limit:
        x, y = x[:limit], y[:limit]
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - MEAN) / STD
    return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class FashionCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.dropout = nn.Dropout(0.25)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout(x))


class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class FashionResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.layer3 = Block(32, 64, 2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def rebuild(path):
    name = os.path.basename(path)
    model = FashionCnn() if name.startswith("fashion-cnn") else FashionResNet()
    scripted = torch.jit.load(path)
    state = {k: v for k, v in scripted.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"{path}: missing {missing}, unexpected {unexpected}")
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), scripted(x), rtol=1e-4, atol=1e-4), "rebuilt model differs from the file"
    return model


def top1(model, x, y):
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item()
    return correct / len(x)


def main():
    folder = sys.argv[1]
    calib_n = int(sys.argv[sys.argv.index("--calib") + 1]) if "--calib" in sys.argv else 512
    torch.set_num_threads(2)
    cx, _ = images("train", calib_n)
    tx, ty = images("t10k")
    results = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in sorted(glob.glob(os.path.join(folder, "*_s*.pt"))):
        model_name = re.sub(r"_s\d+\.pt$", "", os.path.basename(path))
        fp = rebuild(path)
        results[model_name]["fp32 (PyTorch)"].append(top1(fp, tx, ty))
        for engine in ("onednn", "qnnpack"):
            torch.backends.quantized.engine = engine
            prepared = prepare_fx(rebuild(path), get_default_qconfig_mapping(engine), example_inputs=(cx[:1],))
            with torch.no_grad():
                for i in range(0, len(cx), 64):
                    prepared(cx[i:i + 64])
            q = convert_fx(prepared)
            results[model_name][f"PyTorch FX PTQ int8, {engine} engine"].append(top1(q, tx, ty))
        print(f"{path} done", file=sys.stderr)
    for model_name, rows in results.items():
        base = statistics.mean(rows["fp32 (PyTorch)"])
        print(f"\n{model_name}: PyTorch {torch.__version__}\n\n| variant | top-1 % (mean +- std) | vs fp32 (points) |\n|---|---|---|")
        for key, vals in rows.items():
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            print(f"| {key} | {100 * statistics.mean(vals):.2f} +- {100 * sd:.2f} | {100 * (statistics.mean(vals) - base):+.2f} |")


if __name__ == "__main__":
    main()
