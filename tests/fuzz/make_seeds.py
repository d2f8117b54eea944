"""Writes the fuzz seed corpora (tests/fuzz/seeds/TARGET/*) from what tailor itself writes for the test fixtures:
archives, their embedded graph and provenance, a manifest with profiles, a latency table, a plan, IDX files and
OIP requests. The seeds are committed; rerun this after a file format changes.

usage: /usr/bin/python3 tests/fuzz/make_seeds.py BUILD_DIR [OUT_DIR=tests/fuzz/seeds]
"""
import glob
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

build = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "seeds")
tailor = os.path.join(build, "tailor")
src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
work = tempfile.mkdtemp(prefix="tailor-seeds-")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def run(*args):
    return subprocess.run([tailor, *args], check=True, capture_output=True, text=True).stdout


for target in os.listdir(out) if os.path.isdir(out) else []:
    shutil.rmtree(os.path.join(out, target))

# Text forms, as the docs and tests write them.
for i, p in enumerate(["fold-batch-norm,remove-dropout,dce", "prune-channels{ratio=0.25,criterion=l2}",
                       "quantize-weights{bits=8,skip=[fc1,fc2]}", "(fold-batch-norm,dce),quantize-static{observer=entropy}",
                       'prune-channels{ratio=0.5,skip=["a,b"]},distill{epochs=2,temperature=4.5}']):
    put("pipeline", f"{i}.txt", p)
for i, s in enumerate(["1x3x224x224", "1x1x28x28", "8x10", "1"]):
    put("shape", f"{i}.txt", s)
for i, a in enumerate(["resnet@64:16:1x16k3,1x32k3s2", "mobilenet@28:8:1x16e4k3,2x24e6k5s2",
                       "resnet@28:8:2x16k3,1x32k5s2,1x64k3s2"]):
    put("arch-config", f"{i}.txt", a)
for i, a in enumerate(["resnet@128:64:2x64k4", "resnet@224:64:2x64k3,2x128k3s2,2x256k3s2,2x512k3s2"]):
    put("arch-config", f"{i + 3}.txt", a)
put("search-space", "resnet.json", json.dumps({
    "name": "tiny-resnet", "family": "resnet", "resolutions": [28], "stems": [8, 16], "heads": [0], "in_channels": 1,
    "classes": 10, "stages": [{"depths": [1, 2], "widths": [16, 24], "kernels": [3, 5], "expands": [1], "stride": 1},
                              {"depths": [1], "widths": [32], "kernels": [3], "expands": [1], "stride": 2}]}))
put("search-space", "mobilenet.json", json.dumps({
    "name": "tiny-mobilenet", "family": "mobilenet", "resolutions": [28, 32], "stems": [8], "heads": [64, 128],
    "in_channels": 1, "classes": 10,
    "stages": [{"depths": [1, 2], "widths": [16], "kernels": [3, 5, 7], "expands": [3, 6], "stride": 2}]}))
for i, t in enumerate(["onednn-cpu", "onednn-cpu:2", "onednn-cpu:1:avx2", "onednn-cpu:1:int8", "libtorch-cpu:2"]):
    put("target", f"{i}.txt", t)
for i, m in enumerate(["cloud=plan/cloud.pt", "whole=m.pt,backend=libtorch-cpu,threads=2,input=1x3x224x224;1x10"]):
    put("model-spec", f"{i}.txt", m)
for f in sorted(glob.glob(f"{src}/tests/recipes/*.yaml") + glob.glob(f"{src}/examples/recipes/*.yaml")):
    put("recipe", os.path.basename(f), open(f).read())
selector = {"devices": 0, "links": 1, "objectives": 2}
for kind, b in selector.items():
    for f in sorted(glob.glob(f"{src}/examples/place/{kind}/*.yaml")):
        put("place", f"{kind}-{os.path.basename(f)}", bytes([b]) + open(f, "rb").read())
put("place", "inline-device", b"\x03backend=onednn-cpu,threads=1,isa=avx2")
put("place", "inline-link", b"\x04uplink_mbps=5.85,downlink_mbps=5.85,rtt_ms=50")
put("place", "inline-objective", b"\x05percentile=p90,latency_ms=40,codec=int8")
for i, a in enumerate(["closed", "closed:5", "poisson:20"]):
    put("place", f"arrivals-{i}", bytes([6]) + a.encode())

# Archives: a plain TorchScript file (tailor captures it) and tailor's own export (with the embedded graph).
subprocess.run([sys.executable, "-c", """
import sys, torch
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.bn = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(8, 3)
    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 2), 1))
torch.jit.save(torch.jit.trace(Tiny().eval(), torch.zeros(1, 1, 6, 6)), sys.argv[1])
""", f"{work}/plain.pt"], check=True)
run("convert", f"{work}/plain.pt", "--input", "1x1x6x6", "--pipeline", "fold-batch-norm,dce", "-o", f"{work}/tailor.pt", "-q")
run("convert", "fashion-cnn", "-o", f"{work}/cnn.pt", "-q")
put("archive", "plain.pt", open(f"{work}/plain.pt", "rb").read())
put("archive", "tailor.pt", open(f"{work}/tailor.pt", "rb").read())
for name in ["tailor.pt", "cnn.pt"]:
    with zipfile.ZipFile(f"{work}/{name}") as z:
        for n in z.namelist():
            if n.endswith("extra/tailor/graph.json"):
                put("graph-json", name + ".json", z.read(n))
                put("archive-graph", name + ".json", z.read(n))
            if n.endswith("extra/tailor/provenance.json"):
                put("profile", name + ".provenance.json", z.read(n))

# A manifest with profiles (tailor profile --card), and one profile on its own.
for threads in ("1", "2"):
    run("profile", f"{work}/tailor.pt", "--input", "1x1x6x6", "--max-seconds", "0.05", "--min-runs", "3", "--threads",
        threads, "--card", f"{work}/manifest.json", "--name", "tiny")
manifest = open(f"{work}/manifest.json").read()
put("manifest", "tiny.json", manifest)
for backend, p in json.loads(manifest)["variants"][0]["profiles"].items():
    put("profile", f"{backend}.json", json.dumps(p))

# A small latency table (two models), and the same without its fitted regressors.
run("latency", "build", "--models", "fashion-cnn", "--models-input", "1x1x28x28", "--count", "2", "--round", "1",
    "-o", f"{work}/table.json")
table = json.load(open(f"{work}/table.json"))
# One fitted regressor (an XGBoost model, base64) is enough to reach that reader; the others only add bytes.
regressors = table["fit"]["regressors"]
table["fit"]["regressors"] = {k: regressors[k] for k in sorted(regressors, key=lambda k: len(json.dumps(regressors[k])))[:1]}
put("latency-table", "table.json", json.dumps(table))
table["fit"]["regressors"] = {}
put("latency-table", "no-regressors.json", json.dumps(table))

# A plan (tailor place) for the tiny model's card.
for link in ["lte", "lan-1g"]:
    run("place", f"{work}/manifest.json", "--edge", "backend=onednn-cpu,threads=1", "--cloud", "backend=onednn-cpu,threads=2",
        "--link", f"{src}/examples/place/links/{link}.yaml", "-o", f"{work}/plan-{link}")
    put("plan", f"{link}.json", open(f"{work}/plan-{link}/plan.json").read())


# IDX: two 2x3 images and their labels, split by the first two bytes (big-endian length of the image file).
def idx_pair(n, rows, cols, labels):
    images = struct.pack(">IIII", 2051, n, rows, cols) + bytes(i % 256 for i in range(n * rows * cols))
    return struct.pack(">H", len(images)) + images + struct.pack(">II", 2049, n) + bytes(labels)


put("idx", "two.bin", idx_pair(2, 2, 3, [1, 9]))
put("idx", "real-header.bin", idx_pair(1, 28, 28, [4]))
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") as f:
    put("idx", "labels-only.bin", struct.pack(">H", 0) + f.read(8 + 16))

# OIP requests as an OIP client sends them (the Python classes generated from the same .proto).
gen = f"{work}/gen"
os.makedirs(gen)
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{src}/proto", f"--python_out={gen}",
                f"{src}/proto/grpc_predict_v2.proto"], check=True)
sys.path.insert(0, gen)
import grpc_predict_v2_pb2 as pb  # noqa: E402

r = pb.ModelInferRequest(model_name="m", id="1")
r.inputs.add(name="image", datatype="FP32", shape=[1, 3, 4, 4])
r.inputs.add(name="ids", datatype="INT64", shape=[1, 2])
r.raw_input_contents.append(struct.pack("<48f", *range(48)))
r.raw_input_contents.append(struct.pack("<2q", 3, 4))
put("oip-request", "raw.bin", r.SerializeToString())
r = pb.ModelInferRequest(model_name="m")
a = r.inputs.add(name="image", datatype="FP32", shape=[2, 3, 4, 4])
a.contents.fp32_contents.extend([0.5] * 96)
b = r.inputs.add(name="ids", datatype="INT64", shape=[2, 2])
b.contents.int64_contents.extend([1, 2, 3, 4])
put("oip-request", "typed.bin", r.SerializeToString())
r = pb.ModelInferRequest(model_name="m")
a = r.inputs.add(name="image", datatype="UINT8", shape=[1, 3, 4, 4])
a.parameters["tailor_codec"].string_param = "int8"
a.parameters["tailor_scale"].string_param = "0.05"
a.parameters["tailor_zero_point"].int64_param = 128
r.inputs.add(name="ids", datatype="INT64", shape=[1, 2])
r.raw_input_contents.append(bytes(range(48)))
r.raw_input_contents.append(struct.pack("<2q", 0, 1))
put("oip-request", "int8-codec.bin", r.SerializeToString())

shutil.rmtree(work)
print("seeds:", {t: len(os.listdir(os.path.join(out, t))) for t in sorted(os.listdir(out))})
