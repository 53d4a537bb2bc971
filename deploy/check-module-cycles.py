#!/usr/bin/env python3
"""Fails if the modules of any crate in the workspace import each other in a
cycle.

For every crate root (src/lib.rs, src/main.rs, src/bin/*.rs and
src/bin/*/main.rs of every directory with a Cargo.toml),
the module tree is read from `mod` declarations (files and inline blocks) and
every path that names a module of the same crate (`crate::a::b`, `super::x`,
`self::x`, in `use` trees and in expressions) is an edge. An edge from module
`p::a::...` to `p::b::...` is recorded between the siblings `a` and `b` under
their common parent `p`, so the check covers the crate's top-level modules and
every submodule tree. Any strongly connected component of two or more
siblings is reported, with one of the import lines that closes it.

No dependencies beyond python3; run from anywhere:
    deploy/check-module-cycles.py [--allow CRATE]... [WORKSPACE_DIR]

`--allow CRATE` reports that crate's cycles without failing (for a crate
whose restructuring is under way on another branch).
"""
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Source without comments, string and char literals (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::d}` -> [[a, b], [a, c, d]] (globs and renames dropped)."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, text):
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:k])
                start = k + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                head = [s for s in part[:brace].split("::") if s]
                walk(prefix + head, part[brace + 1:part.rfind("}")])
            else:
                part = re.sub(r"as" + IDENT + "$", "", part) if "as" in part else part
                segments = [s for s in part.split("::") if s and s != "*"]
                results.append(prefix + segments)

    walk([], tree)
    return results


class Crate:
    def __init__(self, root, src_root):
        self.root = root
        self.modules = set()  # tuples of names
        self.refs = []  # (from_module, path_segments, file, line)
        self.parse_file(src_root, ())

    def parse_file(self, path, module):
        self.modules.add(module)
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        # The directory holding this module's file children.
        base = os.path.dirname(path)
        name = os.path.basename(path)
        if module and name not in ("mod.rs", "lib.rs", "main.rs"):
            base = os.path.join(base, name[:-3])
        self.scan(text, module, base, path)

    def scan(self, text, module, base, path):
        token = re.compile(r"\bmod\s+(" + IDENT + r")\s*([;{])|\buse\s+([^;]*);|\b((?:crate|super|self)(?:\s*::\s*" + IDENT + r")+)|([{}])")
        stack = []  # (module at the time, base at the time, depth marker)
        current, current_base = module, base
        depth = 0
        i = 0
        while True:
            m = token.search(text, i)
            if not m:
                break
            line = text.count("\n", 0, m.start()) + 1
            if m.group(1):
                child = current + (m.group(1),)
                if m.group(2) == ";":
                    candidates = [os.path.join(current_base, m.group(1) + ".rs"),
                                  os.path.join(current_base, m.group(1), "mod.rs")]
                    found = [c for c in candidates if os.path.exists(c)]
                    if found:
                        self.parse_file(found[0], child)
                    i = m.end()
                else:
                    self.modules.add(child)
                    depth += 1
                    stack.append((current, current_base, depth))
                    current, current_base = child, os.path.join(current_base, m.group(1))
                    i = m.end()
            elif m.group(3) is not None:
                for segments in expand_use_tree(m.group(3)):
                    self.add_ref(current, segments, path, line)
                i = m.end()
            elif m.group(4):
                self.add_ref(current, re.sub(r"\s+", "", m.group(4)).split("::"), path, line)
                i = m.end()
            else:
                if m.group(5) == "{":
                    depth += 1
                else:
                    if stack and stack[-1][2] == depth:
                        current, current_base, _ = stack.pop()
                    depth -= 1
                i = m.end()

    def add_ref(self, module, segments, path, line):
        if not segments or segments[0] not in ("crate", "super", "self"):
            return
        self.refs.append((module, segments, path, line))

    def resolve(self, module, segments):
        if segments[0] == "crate":
            target, rest = (), segments[1:]
        else:
            target, rest = module, segments
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    target = target[:-1]
                rest = rest[1:]
        # The longest prefix that is a module of this crate.
        for segment in rest:
            if target + (segment,) in self.modules:
                target = target + (segment,)
            else:
                break
        return target

    def edges(self):
        edges = {}
        for module, segments, path, line in self.refs:
            target = self.resolve(module, segments)
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            if common < len(module) and common < len(target):
                parent = module[:common]
                key = (parent, module[common], target[common])
                edges.setdefault(key, (path, line))
        return edges


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def main():
    args, allowed = sys.argv[1:], set()
    while len(args) >= 2 and args[0] == "--allow":
        allowed.add(args[1])
        args = args[2:]
    workspace = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), ".."))
    failures = 0
    tolerated = 0
    crates = 0
    for entry in sorted(os.listdir(workspace)):
        crate_dir = os.path.join(workspace, entry)
        if not os.path.exists(os.path.join(crate_dir, "Cargo.toml")):
            continue
        roots = ["lib.rs", "main.rs"]
        bin_dir = os.path.join(crate_dir, "src", "bin")
        if os.path.isdir(bin_dir):
            for name in sorted(os.listdir(bin_dir)):
                if name.endswith(".rs"):
                    roots.append(os.path.join("bin", name))
                elif os.path.exists(os.path.join(bin_dir, name, "main.rs")):
                    roots.append(os.path.join("bin", name, "main.rs"))
        for root_file in roots:
            src_root = os.path.join(crate_dir, "src", root_file)
            if not os.path.exists(src_root):
                continue
            crates += 1
            crate = Crate(crate_dir, src_root)
            edges = crate.edges()
            by_parent = {}
            for (parent, a, b), where in edges.items():
                by_parent.setdefault(parent, {}).setdefault(a, set()).add(b)
            for parent, graph in sorted(by_parent.items()):
                for component in cycles(graph):
                    if entry in allowed:
                        tolerated += 1
                    else:
                        failures += 1
                    scope = "::".join(("crate",) + parent)
                    label = " (allowed)" if entry in allowed else ""
                    print(f"{entry} ({root_file}){label}: modules under {scope} import each other in a cycle: {', '.join(component)}")
                    for a in component:
                        for b in sorted(graph[a]):
                            if b in component:
                                path, line = edges[(parent, a, b)]
                                print(f"    {a} -> {b}  ({os.path.relpath(path, workspace)}:{line})")
    if failures:
        print(f"{failures} module cycle(s) found")
        return 1
    note = f" ({tolerated} allowed cycle(s) reported above)" if tolerated else ""
    print(f"no module cycles in {crates} crate root(s){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
