"""One code path: a CLI verb, the same pipeline text through `tailor convert`, and a recipe variant with that
text produce the same model (bit-identical tensors) and the same provenance, for prune, quantize and distill.

usage: check_one_code_path.py TAILOR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import torch

tailor, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def run(*args):
    r = subprocess.run([tailor, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return r.stdout


def provenance(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("extra/tailor/provenance.json"))
        return json.loads(z.read(name))


def comparable(records):
    # Wall time (seconds, images per second) differs between runs; the teacher's file name differs between the
    # recipe's copy and ours.
    out = []
    for r in records:
        stats = [s for s in r["stats"] if s["key"] != "teacher" and "second" not in s["key"]]
        out.append((r["pass"], r["changed"], r["params"], r["macs"], r["weight_bytes"], json.dumps(stats)))
    return out


def state(path):
    return {k: v for k, v in torch.jit.load(path).state_dict().items()}


def same_tensors(a, b, what):
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys(), (what, sorted(set(sa) ^ set(sb)))
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{what}: tensor {k} differs (max {(sa[k].float() - sb[k].float()).abs().max()})"


base = os.path.join(work, "base.pt")
run("convert", "fashion-cnn", "-o", base, "-q")

calib = ["--data", "fashion-mnist", "--calib-batches", "2", "--batch-size", "64"]
verbs = {
    "prune": ["prune", base, "--input", "1x1x28x28", "--ratio", "0.5", "--criterion", "taylor", *calib],
    "quantize": ["quantize", base, "--input", "1x1x28x28", "--observer", "mse", *calib],
    "distill": ["distill", "--teacher", base, "--student", base, "--input", "1x1x28x28", "--epochs", "1",
                "--limit", "512", "--batch-size", "64", "--no-eval"],
}
texts = {}
for name, args in verbs.items():
    text = run(*args, "--print-pipeline").strip()
    texts[name] = text
    out_verb = os.path.join(work, f"{name}_verb.pt")
    report = json.loads(run(*args, "-o", out_verb, "--json"))
    assert report["passes"][0]["pass"].split("{")[0] == text.split("{")[0], (report["passes"], text)
    out_convert = os.path.join(work, f"{name}_convert.pt")
    extra = ["--teacher", base] if name == "distill" else []
    run("convert", base, "--input", "1x1x28x28", "--pipeline", text, *calib, *extra, "-o", out_convert, "-q")
    same_tensors(out_verb, out_convert, f"{name}: verb vs convert")
    assert comparable(provenance(out_verb)) == comparable(provenance(out_convert)), name
    print(f"{name}: '{text}' gives the same model and provenance from the verb and from convert")

# The same texts as recipe variants (the recipe's calibration batches are the first 2 x 64 training images, as
# the CLI's; its distill teacher is the baseline, here the same file).
def yaml_pass(text):
    name, _, opts = text.partition("{")
    if not opts:
        return name
    return "{" + name + ": {" + opts.rstrip("}").replace("=", ": ") + "}}"

recipe = os.path.join(work, "parity.yaml")
with open(recipe, "w") as f:
    f.write(f"""name: parity
model: {{file: {base}}}
input: [1, 1, 28, 28]
data: {{name: fashion-mnist, eval_limit: 200, calibration_batches: 2, calibration_batch_size: 64}}
variants:
""")
    for name, text in texts.items():
        f.write(f"  - {{name: {name}, pipeline: [{yaml_pass(text)}]}}\n")
    f.write("profile: {backends: [libtorch-cpu], max_seconds: 0.05, rounds: 1, threads: 1}\n")
out = os.path.join(work, "recipe_out")
manifest = json.loads(run("compress", recipe, "-o", out, "--json"))
for name in texts:
    card = next(v for v in manifest["variants"] if v["name"] == name)
    file = os.path.join(out, card["file"])
    same_tensors(file, os.path.join(work, f"{name}_verb.pt"), f"{name}: recipe vs verb")
    assert comparable(provenance(file)) == comparable(provenance(os.path.join(work, f"{name}_verb.pt"))), name
    assert [p["pass"] for p in card["provenance"]] == [r["pass"] for r in provenance(file)], name
    print(f"{name}: the recipe variant equals the verb's output, provenance included")
