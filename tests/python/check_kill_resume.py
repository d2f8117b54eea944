#!/usr/bin/python3
"""Kill-and-resume: `tailor train`, `tailor compress` and `tailor search` are killed with SIGKILL at seeded random
points (at least POINTS per command), rerun with the same command line until one run finishes, and then:
  - no file under a final name is ever partial or corrupt (checked after every kill: archives load in PyTorch,
    JSON parses, checkpoints are complete zip files, reports end with </html>);
  - the finished results equal an uninterrupted run's: the same tensors bit for bit (the runs are deterministic
    on a fixed thread count), the same variants, accuracies and provenance.
Then a data-parallel run (two Gloo ranks through `tailor launch`) has one rank killed after its first checkpoint:
the launcher reports the rank and the signal, and the rerun resumes from the checkpoint and finishes.

usage: check_kill_resume.py TAILOR SOURCE_DIR WORKDIR [POINTS=10] [SEED=2026]
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import torch

tailor, source, work = sys.argv[1:4]
points = int(sys.argv[4]) if len(sys.argv) > 4 else 10
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 2026)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
env = dict(os.environ, OMP_NUM_THREADS="2")
TEMPORARY = re.compile(r"\.tmp\d*$")


def check_files(folder, label):
    """Every file under a final name is whole; temporaries (NAME.tmp, .NAME.tmpN) may be left by a kill."""
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            if TEMPORARY.search(f):
                continue
            where = f"{label}: {path}"
            if f.endswith(".pt"):
                with zipfile.ZipFile(path) as z:
                    assert z.testzip() is None, where
                names = zipfile.ZipFile(path).namelist()
                if any(n.endswith("constants.pkl") for n in names):
                    torch.jit.load(path)  # a TorchScript archive; supernets and checkpoints are plain archives
            elif f.endswith(".ckpt"):
                with zipfile.ZipFile(path) as z:
                    assert z.testzip() is None, where
            elif f.endswith(".json"):
                with open(path) as j:
                    json.load(j)
            elif f.endswith(".html"):
                assert open(path).read().rstrip().endswith("</html>"), where


def tensors(path):
    m = torch.jit.load(path)
    return {k: v for k, v in list(m.state_dict().items())}


def same_tensors(a, b, label):
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys(), (label, sorted(set(ta) ^ set(tb)))
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), f"{label}: tensor '{k}' differs"


def run_to_completion(cmd, label, reference_seconds, kills_wanted):
    """Runs `cmd` again and again, killing it at random points, until it finishes; returns (kills, reruns, log)."""
    kills, runs, spent = 0, 0, 0.0
    while True:
        runs += 1
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if kills < kills_wanted:
            # A point within what is probably left of the work (a rerun skips what earlier runs finished), so that
            # most points land in a running command: start-up, training, writes, every phase.
            left = max(0.5, reference_seconds - 0.8 * spent)
            delay = rng.uniform(0.05, 0.9 * left)
            spent += delay
            try:
                out, err = p.communicate(timeout=delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.communicate()
                kills += 1
                check_files(cmd_output_folder(cmd), f"{label} after kill {kills} at {delay:.2f} s")
                continue
        else:
            out, err = p.communicate(timeout=1800)
        assert p.returncode == 0, f"{label}: the rerun failed ({p.returncode}):\n{err[-3000:]}"
        return kills, runs, out


def cmd_output_folder(cmd):
    return os.path.dirname(cmd[cmd.index("-o") + 1]) if os.path.splitext(cmd[cmd.index("-o") + 1])[1] else cmd[cmd.index("-o") + 1]


def timed(cmd):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return time.time() - t, r.stdout


summary = []


def exercise(name, make_cmd, compare):
    """The uninterrupted reference, then chains of killed runs until `points` kills have happened."""
    ref_dir = os.path.join(work, name, "reference")
    os.makedirs(ref_dir)
    seconds, ref_out = timed(make_cmd(ref_dir))
    kills, runs, chains = 0, 0, 0
    while kills < points:
        chains += 1
        d = os.path.join(work, name, f"killed-{chains}")
        os.makedirs(d)
        k, r, out = run_to_completion(make_cmd(d), f"{name} chain {chains}", seconds, points - kills)
        kills, runs = kills + k, runs + r
        check_files(d, f"{name} chain {chains} finished")
        compare(ref_dir, ref_out, d, out)
    summary.append(f"{name}: {kills} kills over {chains} chains ({runs} runs), uninterrupted run {seconds:.1f} s; "
                   f"every result equal to the uninterrupted run's")


# --- tailor train: a checkpoint after every epoch, resumed identically.
def train_cmd(d):
    return [tailor, "train", "fashion-cnn", "--epochs", "3", "--limit", "1024", "--eval-limit", "500", "--batch-size",
            "64", "--checkpoint", f"{d}/cnn.ckpt", "-o", f"{d}/cnn.pt", "--json", "-q"]


def train_compare(ref, ref_out, d, out):
    same_tensors(f"{ref}/cnn.pt", f"{d}/cnn.pt", "train")
    a, b = json.loads(ref_out), json.loads(out)
    assert a["top1"] == b["top1"], (a["top1"], b["top1"])


exercise("train", train_cmd, train_compare)


# --- tailor compress: each finished step is recorded and reused; a killed step is redone.
def compress_cmd(d):
    return [tailor, "compress", f"{source}/tests/recipes/kill.yaml", "-o", d, "--json"]


def provenance(variant, folder):
    """A variant's provenance without times and with the output folder's name taken out."""
    out = []
    for p in variant["provenance"]:
        stats = [(x["key"], json.dumps(x["value"]).replace(folder, "OUT")) for x in p.get("stats", [])
                 if "second" not in x["key"] and "resumed" not in x["key"]]
        out.append((p["pass"].replace(folder, "OUT"), stats))
    return out


def compress_compare(ref, ref_out, d, out):
    a, b = json.loads(ref_out), json.loads(out)
    assert [v["name"] for v in a["variants"]] == [v["name"] for v in b["variants"]]
    for va, vb in zip(a["variants"], b["variants"]):
        assert va["accuracy"] == vb["accuracy"], (va["name"], va["accuracy"], vb["accuracy"])
        assert provenance(va, ref) == provenance(vb, d), (va["name"], provenance(va, ref), provenance(vb, d))
        same_tensors(os.path.join(ref, "variants", va["name"] + ".pt"), os.path.join(d, "variants", vb["name"] + ".pt"),
                     "compress " + va["name"])


exercise("compress", compress_cmd, compress_compare)


# --- tailor search: the supernet trains with checkpoints, the search keeps its state file.
def search_cmd(d):
    return [tailor, "search", "--space", "fashion-mobilenet", "--supernet", f"{d}/sn.pt", "--epochs", "2", "--limit",
            "600", "--validation", "200", "--macs", "6000000", "--evaluations", "4", "--population", "2",
            "-o", f"{d}/best.pt", "--json", "-q"]


def search_compare(ref, ref_out, d, out):
    # The search resumes to the same evaluations, architecture and validation accuracy. The extracted weights are
    # not compared: after a kill they are not bit-identical to the uninterrupted run's (a known gap, see
    # docs/reliability.md), so the model is only checked to load and answer.
    with open(f"{ref}/best.pt.search.json") as a, open(f"{d}/best.pt.search.json") as b:
        assert json.load(a)["evaluated"] == json.load(b)["evaluated"], "search: different evaluations"
    assert tuple(torch.jit.load(f"{d}/best.pt")(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    pa, pb = json.loads(ref_out)["passes"], json.loads(out)["passes"]
    for key in ("config", "validation_top1"):
        assert pa[-1]["stats"][key] == pb[-1]["stats"][key], (key, pa[-1]["stats"], pb[-1]["stats"])


exercise("search", search_cmd, search_compare)

# --- data-parallel: rank 1 killed after the first checkpoint; the launcher names it, the rerun resumes.
if os.environ.get("TAILOR_TEST_GLOO", "1") in ("0", "FALSE", "OFF"):
    print("\n".join(summary + ["data-parallel: SKIPPED (built without Gloo)"]))
    sys.exit(0)
ddp = os.path.join(work, "ddp")
os.makedirs(ddp)
ddp_cmd = [tailor, "launch", "-n", "2", "--master-port", "29531", "--", tailor, "train", "fashion-resnet", "--width",
           "0.5", "--epochs", "3", "--limit", "2048", "--eval-limit", "500", "--batch-size", "64", "--checkpoint",
           f"{ddp}/ddp.ckpt", "-o", f"{ddp}/ddp.pt", "--json"]
p = subprocess.Popen(ddp_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
deadline = time.time() + 300
while not os.path.exists(f"{ddp}/ddp.ckpt") and time.time() < deadline and p.poll() is None:
    time.sleep(0.05)
assert os.path.exists(f"{ddp}/ddp.ckpt"), "no checkpoint after the first epoch"
rank1 = None
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"RANK=1" in environ and b"train" in cmdline and int(pid) != p.pid:
            rank1 = int(pid)
assert rank1, "rank 1 not found"
os.kill(rank1, signal.SIGKILL)
out, err = p.communicate(timeout=120)
assert p.returncode != 0 and "rank 1 was killed by signal 9" in err, (p.returncode, err[-2000:])
check_files(ddp, "ddp after the kill")
r = subprocess.run(ddp_cmd, capture_output=True, text=True, env=env, timeout=600)
assert r.returncode == 0, r.stderr[-3000:]
resumed = json.loads(r.stdout)["resumed_after_epoch"]
assert resumed >= 1, r.stdout[-2000:]
check_files(ddp, "ddp finished")
summary.append(f"data-parallel: rank 1 killed after an epoch's checkpoint; the launcher reported it; the rerun "
               f"resumed after epoch {resumed} and finished")
print("\n".join(summary))
