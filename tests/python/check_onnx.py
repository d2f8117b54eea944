#!/usr/bin/python3
"""ONNX files written by the tailor CLI, read by ONNX's own Python package (Debian python3-onnx): the full
checker with shape inference passes, parameter names are initializer names, the provenance is in the metadata,
a dynamic batch is symbolic, and quantized variants are QDQ graphs (uint8 activation zero points, int8 weights
per output channel, int32 biases). Exits non-zero on the first broken expectation, printing all of them."""
import json
import os
import subprocess
import sys

import onnx
from onnx import TensorProto, numpy_helper


def run(cli, *args):
    proc = subprocess.run([cli, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tailor {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def main():
    cli, fixtures, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    failures = []

    def expect(cond, what):
        print(("ok       " if cond else "FAILED   ") + what)
        if not cond:
            failures.append(what)

    # A float torchvision model, with both formats from one command.
    pt = os.path.join(work, "resnet18.pt")
    report = json.loads(run(cli, "convert", os.path.join(fixtures, "resnet18_traced.pt"), "--input", "1x3x224x224",
                            "--pipeline", "fold-batch-norm", "--format", "torchscript,onnx", "--dynamic-batch",
                            "-o", pt, "--json"))
    path = os.path.join(work, "resnet18.onnx")
    expect(os.path.exists(pt) and os.path.exists(path), "torchscript,onnx writes resnet18.pt and resnet18.onnx")
    expect(report["onnx"]["file"] == path, "the JSON report names the ONNX file")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    expect(m.opset_import[0].version == 17, "opset 17")
    names = {i.name for i in m.graph.initializer}
    expect({"conv1.weight", "layer1.0.conv1.weight", "fc.weight", "fc.bias"} <= names,
           "parameter names are initializer names")
    meta = {p.key: p.value for p in m.metadata_props}
    expect("tailor.provenance" in meta and "fold-batch-norm" in meta["tailor.provenance"],
           "the provenance (fold-batch-norm) is in metadata_props")
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    expect(dim0.dim_param == "batch", "--dynamic-batch makes input dimension 0 symbolic")
    expect(m.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch", "and output dimension 0")

    # An int8 variant as QDQ.
    q = os.path.join(work, "fashion-resnet-int8.onnx")
    run(cli, "quantize", "fashion-resnet", "--scheme", "int8", "--data", "random", "--format", "onnx", "-o", q, "-q")
    m = onnx.load(q)
    onnx.checker.check_model(m, full_check=True)
    inits = {i.name: i for i in m.graph.initializer}
    ops = [n.op_type for n in m.graph.node]
    expect(ops.count("QuantizeLinear") > 0, "int8: QuantizeLinear nodes on activations")
    qz = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    expect(all(z.data_type == TensorProto.UINT8 for z in qz), "int8: activation zero points are uint8")
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in m.graph.node for o in n.output}
    weight_dq = [producers.get(c.input[1]) for c in convs]
    expect(all(d is not None and d.op_type == "DequantizeLinear" for d in weight_dq), "int8: every conv weight is dequantized")
    expect(all(inits[d.input[0]].data_type == TensorProto.INT8 for d in weight_dq if d is not None),
           "int8: conv weights are int8 initializers")
    per_channel = [d for d in weight_dq if d is not None and len(inits[d.input[1]].dims) == 1]
    expect(len(per_channel) == len(convs) and all(
        next(a.i for a in d.attribute if a.name == "axis") == 0 for d in per_channel), "int8: per-channel scales on axis 0")
    biases = [producers.get(c.input[2]) for c in convs if len(c.input) > 2]
    expect(all(b is not None and b.op_type == "DequantizeLinear" and inits[b.input[0]].data_type == TensorProto.INT32
               for b in biases), "int8: conv biases are int32 behind DequantizeLinear")
    expect(not any(i.data_type == TensorProto.FLOAT and len(i.dims) == 4 for i in m.graph.initializer),
           "int8: no float conv weights left in the file")

    # int4 weight-only: int8-stored groups, explicit dequantization.
    w4 = os.path.join(work, "fashion-cnn-w4.onnx")
    run(cli, "quantize", "fashion-cnn", "--scheme", "w4", "--data", "random", "--format", "onnx", "-o", w4, "-q")
    m = onnx.load(w4)
    onnx.checker.check_model(m, full_check=True)
    ints8 = [i for i in m.graph.initializer if i.data_type == TensorProto.INT8]
    expect(bool(ints8) and all(numpy_helper.to_array(i).min() >= -8 and numpy_helper.to_array(i).max() <= 15
                               for i in ints8), "w4: weights stored as int8 holding 4-bit values")
    expect(not any(n.op_type == "QuantizeLinear" for n in m.graph.node), "w4: activations stay float")

    if failures:
        print(f"{len(failures)} expectation(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
