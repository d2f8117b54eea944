#!/usr/bin/python3
"""Resource faults: each gives one clear line on stderr naming what failed, exit status 1, and leaves every output
as it was (an earlier file at the output's name keeps its bytes; no partial file appears under a final name).

  - a full disk: a file-size limit (ulimit -f) while writing an archive, a manifest, a recipe's outputs and a
    latency table; and a real ENOSPC on a small tmpfs where this machine lets us mount one
  - an unreadable input (permission denied; as root, without the capabilities that bypass permissions), an input
    that is a folder
  - an output folder that is a file, an output file that is a folder
  - an absurd input shape (more memory than the machine has, and dimensions whose product overflows 64 bits)

usage: check_faults.py TAILOR SOURCE_DIR WORKDIR
"""
import hashlib
import os
import resource
import shutil
import subprocess
import sys

tailor, source, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
os.chmod(work, 0o755)
results = []


def digest(folder):
    """Names and contents of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def whole(folder, name):
    """Every file under a final name in `folder` is complete (temporaries .NAME.tmpN / NAME.tmp aside)."""
    import json
    import zipfile
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            if ".tmp" in f:
                continue
            if f.endswith((".pt", ".ckpt")):
                with zipfile.ZipFile(p) as z:
                    assert z.testzip() is None, f"{name}: {p} is corrupt"
            elif f.endswith(".json"):
                json.load(open(p))
            elif f.endswith(".html"):
                assert open(p).read().rstrip().endswith("</html>"), f"{name}: {p} is partial"


def fault(name, args, expect, folder=None, limit_bytes=None, user=None, before=None, unchanged=True):
    """Runs tailor with `args`; checks status 1, one error line containing every string of `expect`, and that
    `folder` holds exactly what it held before (after `before()` prepared it), or with `unchanged` False (a run
    that may finish some outputs before the fault) that every file it holds is whole."""
    folder = folder or work
    if before:
        before()
    snapshot = digest(folder)

    def limits():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    cmd = [tailor, *args]
    if user:
        # Root reads any file: take away the two capabilities that let it, so the permission bits apply.
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limits, timeout=600)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("tailor: error:")]
    assert r.returncode == 1, f"{name}: exit status {r.returncode}, expected 1\n{r.stderr[-2000:]}"
    assert len(errors) == 1, f"{name}: expected one error line, got:\n{r.stderr[-2000:]}"
    for e in expect:
        assert e in errors[0], f"{name}: '{e}' not in: {errors[0]}"
    after = digest(folder)
    if not unchanged:
        whole(folder, name)
        after = snapshot
    assert after == snapshot, f"{name}: outputs changed: {sorted(set(after.items()) ^ set(snapshot.items()))}"
    results.append(f"{name}: {errors[0]}")


def sentinel(path):
    def make():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"an earlier result that must survive\n")
    return make


# --- a full disk, as a file-size limit (the write fails with EFBIG)
full = os.path.join(work, "full")
fault("archive past the file-size limit", ["convert", "fashion-cnn", "-o", f"{full}/cnn.pt"],
      ["cnn.pt", "File too large"], full, limit_bytes=64 << 10, before=sentinel(f"{full}/cnn.pt"))
profile = ["profile", "fashion-cnn", "--max-seconds", "0.05", "--min-runs", "2", "--node-runs", "0", "--card",
           f"{full}/manifest.json"]
fault("manifest past the file-size limit", profile + ["--name", "second"], ["manifest.json", "File too large"], full,
      limit_bytes=4 << 10, before=lambda: subprocess.run([tailor, *profile, "--name", "first"], check=True,
                                                           capture_output=True))
table = ["latency", "build", "--models", "fashion-cnn", "--models-input", "1x1x28x28", "--round", "1", "-o",
         f"{full}/table.json"]
fault("latency table past the file-size limit", table + ["--count", "3"], ["table.json", "File too large"], full,
      limit_bytes=16 << 10, before=lambda: subprocess.run([tailor, *table, "--count", "1"], check=True,
                                                            capture_output=True))
rec = os.path.join(work, "recipe")
fault("recipe outputs past the file-size limit",
      ["compress", f"{source}/tests/recipes/kill.yaml", "-o", rec], ["File too large"], rec, limit_bytes=4 << 10,
      unchanged=False)

# --- a real full disk: a 256 KiB tmpfs, where mounting is allowed
tiny = os.path.join(work, "tmpfs")
os.makedirs(tiny)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", tiny], capture_output=True).returncode == 0:
    try:
        fault("archive on a full tmpfs", ["convert", "fashion-resnet", "-o", f"{tiny}/resnet.pt"],
              ["resnet.pt", "No space left on device"], tiny, before=sentinel(f"{tiny}/resnet.pt"))
    finally:
        subprocess.run(["umount", tiny])
else:
    results.append("full tmpfs: SKIPPED (this machine does not allow mounting one)")

# --- unreadable inputs
secret = os.path.join(work, "secret.pt")
subprocess.run([tailor, "convert", "fashion-cnn", "-o", secret, "-q"], check=True)
os.chmod(secret, 0o000)
drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search", "true"]
if os.geteuid() == 0 and subprocess.run(drop, capture_output=True).returncode != 0:
    results.append("unreadable model: SKIPPED (root, and this machine does not let setpriv drop capabilities)")
elif os.geteuid() == 0:
    fault("unreadable model", ["inspect", secret], ["secret.pt", "Permission denied"], user="root")
else:
    fault("unreadable model", ["inspect", secret], ["secret.pt", "Permission denied"])
os.chmod(secret, 0o644)
fault("a folder as the model", ["inspect", work], [work, "is a folder"])

# --- outputs where a file or folder is in the way
blocker = os.path.join(work, "blocker")
with open(blocker, "w") as f:
    f.write("a file, not a folder\n")
fault("output folder is a file", ["convert", "fashion-cnn", "-o", f"{blocker}/cnn.pt"], [blocker])
fault("recipe output folder is a file", ["compress", f"{source}/tests/recipes/tiny.yaml", "-o", blocker], [blocker])
os.makedirs(os.path.join(work, "a-folder.pt"))
fault("output file is a folder", ["convert", "fashion-cnn", "-o", os.path.join(work, "a-folder.pt")], ["a-folder.pt", "is a folder"])

# --- absurd input shapes
fault("input larger than memory", ["profile", "fashion-cnn", "--input", "100000000x1x28x28"],
      ["100000000x1x28x28", "more than this machine's memory"])
fault("input dimensions overflowing 64 bits", ["inspect", "fashion-cnn", "--input", "99999999999x99999999999x9x9"],
      ["99999999999x99999999999x9x9", "more than this machine's memory"])

print("\n".join(results))
