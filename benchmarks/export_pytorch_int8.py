#!/usr/bin/python3
"""The peers of bench_int8: torchvision ResNet-18, ResNet-50 and MobileNetV2 (random weights, fixed seed) saved as
traced fp32 TorchScript, as ONNX (torch.onnx.export, opset 13, dynamic batch: ONNX Runtime's input), and
quantized by PyTorch 1.13's FX post-training quantization with the default qconfig of the onednn and qnnpack
engines (calibrated on 8 random batches), traced and saved.

    /usr/bin/python3 benchmarks/export_pytorch_int8.py OUTDIR"""
import os
import sys

import torch
import torchvision
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in ("resnet18", "resnet50", "mobilenet_v2"):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
        # Default initialization with random inputs makes MobileNetV2's activations vanish (logits ~1e-9), and
        # float denormals then distort every timing. Batch-norm statistics measured on random batches keep
        # activations at unit scale, as in a trained network.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(10):
                model(torch.randn(8, 3, 224, 224))
        model.eval()
        x = torch.randn(1, 3, 224, 224)
        torch.jit.trace(model, x).save(os.path.join(out, f"{name}_fp32.pt"))
        torch.onnx.export(model, x, os.path.join(out, f"{name}_fp32.onnx"), opset_version=13, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        for engine in ("onednn", "qnnpack"):
            torch.backends.quantized.engine = engine
            prepared = prepare_fx(getattr(torchvision.models, name)().eval(), get_default_qconfig_mapping(engine), (x,))
            prepared.load_state_dict(model.state_dict(), strict=False)
            with torch.no_grad():
                for _ in range(8):
                    prepared(torch.randn(2, 3, 224, 224))
            q = convert_fx(prepared)
            with torch.no_grad():
                torch.jit.freeze(torch.jit.trace(q, x).eval()).save(os.path.join(out, f"{name}_int8_{engine}.pt"))
        print(f"{name}: saved", file=sys.stderr)


if __name__ == "__main__":
    main()
