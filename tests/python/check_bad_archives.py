"""Damaged tailor archives fail with one clear line naming the file and the node, exit status 1, never a crash,
and nothing is written: `tailor inspect`, `convert` and `profile` on mutated copies of a real export.

usage: check_bad_archives.py TAILOR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

tailor, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
good = os.path.join(work, "good.pt")
subprocess.run([tailor, "convert", "fashion-cnn", "-o", good, "-q"], check=True)

with zipfile.ZipFile(good) as z:
    graph_name = next(n for n in z.namelist() if n.endswith("extra/tailor/graph.json"))
    graph = json.loads(z.read(graph_name))


def mutated(name, text):
    path = os.path.join(work, name + ".pt")
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = text.encode() if item.filename == graph_name else src.read(item.filename)
            dst.writestr(item, data)
    return path


def first(kind):
    return next(n for n in graph["nodes"] if n["kind"] == kind)


def case(name, edit, expect):
    g = json.loads(json.dumps(graph))
    text = edit(g)
    return name, mutated(name, text if isinstance(text, str) else json.dumps(g)), expect


def out_of_range(g):
    n = next(n for n in g["nodes"] if n["kind"] == "conv")
    n["inputs"][0] = 99999


def wrong_arity(g):
    n = next(n for n in g["nodes"] if n["kind"] == "conv")
    n["inputs"] = n["inputs"][:2]


def cycle(g):
    convs = [n for n in g["nodes"] if n["kind"] == "conv"]
    convs[0]["inputs"][0] = convs[-1]["outputs"][0]


def bad_attr(g):
    n = next(n for n in g["nodes"] if n["kind"] == "param")
    n["attrs"]["name"] = {"t": "int", "v": 3}


def bad_attr_tag(g):
    n = next(n for n in g["nodes"] if n["kind"] == "conv")
    n["attrs"]["stride"] = {"t": "complex", "v": 1}


def wrong_attr_type(g):
    n = next(n for n in g["nodes"] if n["kind"] == "conv")
    n["attrs"]["groups"] = {"t": "str", "v": "one"}


conv_name = first("conv")["name"]
cases = [
    case("out_of_range", out_of_range, ["value id 99999 is out of range", conv_name]),
    case("not_an_object", lambda g: "[1, 2, 3]", ["not a JSON object"]),
    case("not_json", lambda g: "{nope", ["not valid JSON"]),
    case("wrong_arity", wrong_arity, ["has 2 inputs; a conv node has 3", conv_name]),
    case("cycle", cycle, ["before it is defined", conv_name]),
    case("bad_attr", bad_attr, ["param node needs a text attribute 'name'"]),
    case("bad_attr_tag", bad_attr_tag, ["unknown attribute type 'complex'", conv_name]),
    case("wrong_attr_type", wrong_attr_type, ["groups", conv_name]),
]
failures = []
for name, path, expect in cases:
    for verb in (["inspect", path, "--input", "1x1x28x28"],
                 ["convert", path, "--input", "1x1x28x28", "-o", path + ".out.pt"],
                 ["profile", path, "--input", "1x1x28x28", "--max-seconds", "0.1"]):
        r = subprocess.run([tailor, *verb], capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        ok = (r.returncode == 1 and len(lines) == 1 and lines[0].startswith("tailor: error:") and path in lines[0]
              and all(e in lines[0] for e in expect) and not os.path.exists(path + ".out.pt"))
        print(f"{name:16s} {verb[0]:8s} exit {r.returncode}: {lines[-1] if lines else ''}")
        if not ok:
            failures.append(f"{name} {verb[0]}: exit {r.returncode}, stderr {r.stderr!r}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
