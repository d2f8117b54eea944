"""Builds tailor_fuzz, the libFuzzer binary, next to a normal (gcc) build of tailor.

libFuzzer needs clang. Rebuilding all of tailor with clang would take half an hour on 2 cores, so this compiles
again, with clang and -fsanitize=fuzzer-no-link,address,undefined, only the translation units that read outside
input (the READERS below) plus the fuzz targets, with exactly the flags the normal build used for them (read from
ninja), and links them ahead of the normal libtailor.a: the linker then takes those units from the instrumented
objects and everything else from the library. Coverage guidance and the sanitizers therefore watch tailor's
readers; the code they call into (LibTorch, the IR beyond the readers) runs uninstrumented.

usage: python3 tests/fuzz/build_fuzzer.py BUILD_DIR OUT_DIR
"""
import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import sys

READERS = [
    "src/core/text.cpp",
    "src/pass/pass.cpp",
    "src/ir/graph.cpp",
    "src/ir/graph_module.cpp",
    "src/ir/provenance.cpp",
    "src/capture/capture.cpp",
    "src/capture/archive_check.cpp",
    "src/recipe/parse.cpp",
    "src/variant/card.cpp",
    "src/profile/profiler.cpp",
    "src/latency/model.cpp",
    "src/latency/regressor.cpp",
    "src/models/space.cpp",
    "src/nas/search.cpp",
    "src/place/describe.cpp",
    "src/place/simulate.cpp",
    "src/data/fashion_mnist.cpp",
    "src/serve/wire.cpp",
    "src/serve/server.cpp",
]
HARNESS = ["tests/fuzz/targets.cpp", "tests/fuzz/libfuzzer_main.cpp"]
SANITIZE = ["-std=c++17", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g1"]

build = os.path.abspath(sys.argv[1])
out = os.path.abspath(sys.argv[2])
src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.makedirs(os.path.join(out, "obj"), exist_ok=True)
clang = shutil.which("clang++") or sys.exit("build_fuzzer: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)")
ccache = [shutil.which("ccache")] if shutil.which("ccache") else []

commands = subprocess.run(["ninja", "-C", build, "-t", "commands", "tailor_tests"], check=True, capture_output=True,
                          text=True).stdout.splitlines()


def compile_command_of(source):
    for line in commands:
        if f" -c {source}" in line or line.endswith(f" -c {source}"):
            return line
    return None


def clang_flags(line):
    """The flags of a gcc compile line, without the compiler, the PCH, the dependency file, output and input."""
    args = shlex.split(line)
    start = next(i for i, a in enumerate(args) if a.endswith("c++") or a.endswith("g++"))
    args = args[start + 1:]
    flags, skip = [], 0
    for i, a in enumerate(args):
        if skip:
            skip -= 1
            continue
        if a in ("-include", "-MT", "-MF", "-o", "-c"):
            skip = 1
            continue
        if a in ("-MD", "-Winvalid-pch", "-fpch-preprocess"):
            continue
        flags.append(a)
    return flags


test_flags = clang_flags(compile_command_of(f"{src}/tests/test_fuzz.cpp") or sys.exit("build_fuzzer: no tests/test_fuzz.cpp in " + build))
jobs = []
for rel in READERS:
    line = compile_command_of(f"{src}/{rel}")
    if line is None:
        print(f"build_fuzzer: {rel} is not in this build (serving off?); skipped")
        continue
    jobs.append((rel, clang_flags(line) + ["-fsanitize=fuzzer-no-link"] + SANITIZE))
for rel in HARNESS:
    jobs.append((rel, test_flags + ["-fsanitize=fuzzer-no-link"] + SANITIZE + [f"-I{src}/tests"]))


def compile_one(job):
    rel, flags = job
    obj = os.path.join(out, "obj", re.sub(r"[/.]", "_", rel) + ".o")
    cmd = ccache + [clang, *flags, "-Wno-unused-command-line-argument", "-c", f"{src}/{rel}", "-o", obj]
    r = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"build_fuzzer: compiling {rel} failed:\n{' '.join(cmd)}\n{r.stderr[-4000:]}")
    print(f"  compiled {rel}", flush=True)
    return obj


with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    objects = list(pool.map(compile_one, jobs))

link = next(l for l in commands if " -o tests/tailor_tests " in l)
args = shlex.split(link.split("&&")[1])  # ": && c++ ... -o tests/tailor_tests LIBS && (post-build steps)"
libs = args[args.index("tests/tailor_tests") + 1:]
cmd = [clang, "-fsanitize=fuzzer,address,undefined", *objects, "-o", os.path.join(out, "tailor_fuzz"), *libs]
r = subprocess.run(cmd, cwd=build, capture_output=True, text=True)
if r.returncode:
    sys.exit(f"build_fuzzer: linking failed:\n{r.stderr[-6000:]}")
print(f"built {os.path.join(out, 'tailor_fuzz')}")
