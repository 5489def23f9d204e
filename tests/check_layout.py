#!/usr/bin/env python3
"""check_layout.py BUILD_DIR SOURCE_DIR — the house rules, checked on the build.

1. No two object files call each other: no object references a symbol of
   another that references one of its own (read from `nm` of every object of
   the project's libraries and programs; tests and the double-precision copy
   of model/ are left out).
2. No global function or variable is defined in two objects.
3. No type name (typedef or struct tag) is defined twice in the sources.
4. No function outside tests/ is longer than 120 lines, and no library file
   is longer than 1,000 lines unless its top comment says why ("Why one file").

Prints every violation and exits 1 when there is one.
"""
import os
import re
import subprocess
import sys

MAX_FN, MAX_FILE = 120, 1000
LIB_DIRS = ("common", "model", "stream", "cache", "daemon")
SRC_DIRS = LIB_DIRS + ("tools", "bench")


LIBS = ("common/libvgcommon.a", "model/libvgmodel.a", "stream/libvgstream.a", "cache/libvgcache.a",
        "daemon/libvgdaemon.a")
PROGRAM_DIRS = ("daemon", "tools", "bench")  # with their subdirectories


def nm(path):
    """{object name: (defined, undefined)} of an object file or archive."""
    out = subprocess.run(["nm", "-P", "-A", path], check=True, capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        head, _, rest = line.partition(": ")
        parts = rest.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        defined, undefined = table.setdefault(head, (set(), set()))
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBR":
            defined.add(name)
    return table


def objects(build):
    """Every object of the libraries (from their archives: no stale files) and
    of the programs in daemon/, tools/ and bench/."""
    table = {}
    for lib in LIBS:
        table.update(nm(os.path.join(build, lib)))
    for d in PROGRAM_DIRS:
        cm = os.path.join(build, d, "CMakeFiles")
        for root, _, files in os.walk(cm):
            if "CompilerId" in root or os.path.basename(root).startswith("vg"):
                continue
            for f in files:
                if f.endswith(".o"):
                    table.update(nm(os.path.join(root, f)))
    return table


def short(build, obj):
    return os.path.relpath(obj, build).replace("CMakeFiles" + os.sep, "") if obj.startswith(build) else obj


def check_objects(build):
    errs = []
    table = objects(build)
    if not table:
        return ["no object files found under %s (build first)" % build]
    owner = {}
    for o, (d, _) in table.items():
        for s in d:
            if s in owner and s != "main":
                errs.append("%s is defined in %s and %s" % (s, short(build, owner[s]), short(build, o)))
            owner.setdefault(s, o)
    uses = {o: {owner[s] for s in u if s in owner and owner[s] != o} for o, (_, u) in table.items()}
    for a in sorted(uses):
        for b in sorted(uses[a]):
            if a < b and a in uses.get(b, ()):
                errs.append("%s and %s call each other" % (short(build, a), short(build, b)))
    return errs


def sources(src, dirs, exts=(".c", ".h")):
    for d in dirs:
        for root, _, files in os.walk(os.path.join(src, d)):
            for f in sorted(files):
                if f.endswith(exts):
                    yield os.path.join(root, f)


TYPE_RE = re.compile(r"^(?:typedef\s+struct\s+\w+\s*\{[^}]*\}\s*(\w+)\s*;|struct\s+(\w+)\s*\{)", re.M | re.S)
TYPEDEF_RE = re.compile(r"\}\s*(\w+)\s*;\s*$", re.M)


def check_types(src):
    errs, seen = [], {}
    for path in sources(src, SRC_DIRS):
        text = open(path, encoding="utf-8").read()
        names = set(re.findall(r"^struct\s+(\w+)\s*\{", text, re.M))
        names |= {"typedef " + n for n in re.findall(r"^\}\s*(\w+)\s*;", text, re.M)}
        for n in names:
            rel = os.path.relpath(path, src)
            if n in seen and seen[n] != rel:
                errs.append("type %s is defined in %s and %s" % (n.replace("typedef ", ""), seen[n], rel))
            seen.setdefault(n, rel)
    return errs


def functions(text):
    """(name line, first line number, length) of each function: a body that
    opens with '{' and closes with '}' in column 0."""
    lines = text.split("\n")
    start = None
    for i, line in enumerate(lines):
        if start is None and line.startswith("{") and i > 0:
            j = i - 1
            while j > 0 and "(" not in lines[j]:
                j -= 1
            start = (i, lines[j].strip())
        elif start is not None and line.startswith("}"):
            yield start[1], start[0] + 1, i - start[0] + 1
            start = None


def check_lengths(src):
    errs = []
    for path in sources(src, SRC_DIRS, (".c",)):
        rel = os.path.relpath(path, src)
        text = open(path, encoding="utf-8").read()
        for head, line, n in functions(text):
            if n > MAX_FN:
                errs.append("%s:%d: function of %d lines (at most %d): %s" % (rel, line, n, MAX_FN, head[:60]))
        top = text[: text.find("*/") + 2] if text.startswith("/*") else ""
        if rel.split(os.sep)[0] in LIB_DIRS and text.count("\n") > MAX_FILE and "Why one file" not in top:
            errs.append("%s: %d lines, and its top comment does not say why (\"Why one file\")"
                        % (rel, text.count("\n")))
    return errs


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build, src = sys.argv[1], sys.argv[2]
    errs = check_objects(build) + check_types(src) + check_lengths(src)
    for e in errs:
        print("layout:", e)
    print("layout: %d problems" % len(errs))
    sys.exit(1 if errs else 0)


if __name__ == "__main__":
    main()
