#!/usr/bin/env python3
"""Checks the two rules of ARCHITECTURE.md that code can break without a test noticing.

1. The pure cores (src/call, flow, media, sip, outage, queue, schedule, template, flowtest) read no clock, use no tokio, files or
   sockets outside `#[cfg(test)]` code: `Instant::now()`, `SystemTime::now()`, `tokio`,
   `std::fs`, `File::open`, `UdpSocket`, `TcpStream`, `TcpListener` are reported.
2. No import circles between ivrd's modules:

Every `.rs` file under src/ is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`).
A file depends on the modules it names through `crate::`, `super::` or `self::` paths
(in `use` lines or inline). A module counts as the files under it, and a dependency of a
file inside a module on a sibling module is an edge between those siblings. A circle is a
strongly connected component of more than one sibling. Prints each circle with one line
that closes it and exits 1 if there are any.
Usage: scripts/check-architecture.py [src]
"""
import os
import re
import sys
from collections import defaultdict

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    # Code after `#[cfg(test)]` at the top level of a file is test code (our convention:
    # the tests module comes last); comments name modules without depending on them.
    m = re.search(r"^#\[cfg\(test\)\]", text, re.M)
    text = text[: m.start()] if m else text
    return re.sub(r"//.*", "", text)


PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)


def targets(mod, text, is_dir_mod):
    here = list(mod) if is_dir_mod else list(mod[:-1])  # the module `super`/`self` start from
    found = []
    def resolve(kind, parts):
        if kind == "crate":
            return tuple(parts)
        base = list(mod) if (is_dir_mod or kind == "self") and kind == "self" else here
        if kind == "super":
            base = here[:-1] if is_dir_mod else here
            # `super::` from `a/b.rs` (module a::b) is `a`; from `a/b/mod.rs` it is `a`.
            base = list(mod[:-1])
        else:
            base = list(mod)
        return tuple(base + parts)
    for m in PATH.finditer(text):
        parts = [p for p in m.group(2).split("::") if p]
        found.append(resolve(m.group(1), parts))
    for m in USE_GROUP.finditer(text):
        for item in re.split(r",", m.group(2)):
            item = item.strip().split("::")[0].strip("{ ").split(" as ")[0]
            if item and item != "self":
                found.append(resolve(m.group(1), [item]))
    return found


PURE = ("call", "flow", "media", "sip", "outage", "queue", "schedule", "template", "flowtest", "probe")
IMPURE = re.compile(r"Instant::now\(\)|SystemTime::now\(\)|\btokio\b|std::fs\b|File::open|UdpSocket|TcpStream|TcpListener")


def is_test_file(name):
    """`tests.rs` and `*_tests.rs` are `#[cfg(test)]` modules."""
    return name == "tests.rs" or name.endswith("_tests.rs")


def impure_lines():
    found = []
    for d, _, names in os.walk(ROOT):
        for n in sorted(names):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, ROOT)
            if not n.endswith(".rs") or is_test_file(n) or rel.split(os.sep)[0] not in PURE:
                continue
            for i, line in enumerate(strip_tests(open(p, encoding="utf-8").read()).split("\n")):
                if IMPURE.search(line):
                    found.append(f"{rel}:{i + 1}: {line.strip()}")
    return found


def main():
    impure = impure_lines()
    for line in impure:
        print("impure core:", line)
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs") and not is_test_file(n):  # a `#[cfg(test)] mod`
                p = os.path.join(d, n)
                files[module_of(p)] = (p, n == "mod.rs")
    modules = set(files)
    def longest_module(path):
        for k in range(len(path), 0, -1):
            if path[:k] in modules:
                return path[:k]
        return None
    edges = defaultdict(set)  # (parent, a, b) sibling edges
    witness = {}
    for mod, (p, is_dir) in files.items():
        text = strip_tests(open(p, encoding="utf-8").read())
        for t in targets(mod, text, is_dir):
            t = longest_module(t)
            if t is None or t == mod:
                continue
            # the closest common ancestor; the edge is between its children on each side
            k = 0
            while k < min(len(mod), len(t)) and mod[k] == t[k]:
                k += 1
            if k >= len(mod) or k >= len(t):
                continue  # a module using its own ancestor or descendant
            a, b = mod[: k + 1], t[: k + 1]
            edges[a].add(b)
            witness.setdefault((a, b), f"{os.path.relpath(p, ROOT)} -> {'::'.join(t)}")
    # Tarjan over all nodes
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)
    for v in list(edges):
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted("::".join(c) for c in comp)
        print("circle: " + " <-> ".join(names))
        for a in comp:
            for b in edges.get(a, ()):
                if b in comp:
                    print("   ", witness[(a, b)])
    if sccs or impure:
        sys.exit(1)
    print(f"pure cores pure; no import circles among {len(files)} modules")


main()
