#!/usr/bin/env python3
"""Checks the library's and kvstorectl's locking with clang's thread-safety analysis.

Runs `clang++ -fsyntax-only -Wthread-safety -Werror=thread-safety` over every translation unit of
src/ and tools/kvstorectl listed in a clang build directory's compile_commands.json (the unity
files of the targets built that way, the generated protobuf sources left out). Only parses and
analyses: no code is generated, so it is quick. Other warnings are off: this checks that every
guarded field is used under its lock, nothing else. Exits 1 when any translation unit fails.

Usage: thread-safety.py BUILD_DIR [JOBS]   (make thread-safety configures BUILD_DIR)
"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time

build_dir = os.path.abspath(sys.argv[1])
jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
with open(os.path.join(build_dir, "compile_commands.json")) as f:
    entries = json.load(f)

ours = [os.path.join(root, "src") + "/", os.path.join(root, "tools", "kvstorectl") + "/",
        os.path.join(build_dir, "src") + "/", os.path.join(build_dir, "tools", "kvstorectl") + "/"]


def selected(path):
    return any(path.startswith(p) for p in ours) and not path.endswith(".pb.cc")


def command(entry):
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    # The compiler, and a launcher (ccache) before it, if any.
    while args and not args[0].startswith("-"):
        args = args[1:]
    out = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if arg in ("-c", "-MD", "-MMD") or arg.startswith("-W") or arg == "-w":
            continue
        out.append(arg)
    return ["clang++", "-fsyntax-only", "-Wno-everything", "-Wthread-safety",
            "-Werror=thread-safety", "-ferror-limit=0"] + out


def check(entry):
    result = subprocess.run(command(entry), cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], result.returncode, result.stdout + result.stderr


units = [e for e in entries if selected(os.path.abspath(os.path.join(e["directory"], e["file"])))]
# THREAD_SAFETY_ONLY=substring checks only the translation units whose path contains it.
only = os.environ.get("THREAD_SAFETY_ONLY")
if only:
    units = [e for e in units if only in e["file"]]
if not units:
    sys.exit("thread-safety: no translation unit of src/ or tools/kvstorectl in " + build_dir)
start = time.monotonic()
failed = []
with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    for path, rc, output in pool.map(check, units):
        if output:
            sys.stdout.write(output)
        if rc != 0:
            failed.append(os.path.relpath(path, root))
print(f"thread-safety: {len(units)} translation units in {time.monotonic() - start:.0f} s, "
      f"{len(failed)} failed")
for path in failed:
    print("  " + path)
sys.exit(1 if failed else 0)
