"""Exports the benchmark models that tailor's zoo does not build (random weights; nothing downloaded).

    /usr/bin/python3 benchmarks/export_bench_models.py OUT_DIR

Writes OUT_DIR/vit_ti16.pt: torchvision's VisionTransformer at ViT-Ti/16 size (192 wide, 12 layers, 3 heads),
traced in eval mode for 1x3x224x224 inputs.
"""
import os
import sys

import torch
from torchvision.models.vision_transformer import VisionTransformer


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192,
                            mlp_dim=768, num_classes=1000).eval()
    with torch.no_grad():
        traced = torch.jit.trace(vit, torch.randn(1, 3, 224, 224))
    path = os.path.join(out, "vit_ti16.pt")
    traced.save(path + ".tmp")
    os.replace(path + ".tmp", path)
    print(path)


if __name__ == "__main__":
    main()
