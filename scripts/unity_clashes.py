#!/usr/bin/env python3
"""Lists the file-scope names that two or more of the given .cc files define.

    scripts/unity_clashes.py solver/bqp.cc solver/exact_solver.cc ...

For choosing unity groups (impq_unity_group in cmake/ImpqHelpers.cmake): files compiled as one
translation unit must not define the same name in an anonymous namespace or as `static`. A
same-signature clash is a compile error, but an overload with another signature silently joins
the other file's overload set. Also lists macros a file defines and never #undefs, since they
leak into the files after it. A text scan, not a parser: it reads declarations ending in `;`
or `{` at namespace scope, which is how this code base writes them. Prints nothing when clean.
"""
import collections
import re
import sys


def file_scope_names(path):
    raw = open(path, encoding="utf-8").read()
    src = re.sub(r"//[^\n]*", "", raw)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'"(\\.|[^"\\\n])*"', '""', src)
    src = re.sub(r"'(\\.|[^'\\\n])*'", "''", src)
    src = re.sub(r"^\s*#[^\n]*", "", src, flags=re.M)
    names = set()
    scopes = []  # one of 'anon', 'named', 'extern', 'block' per open brace
    pos = 0
    for brace in re.finditer(r"[{}]", src):
        text = src[pos:brace.start()]
        pos = brace.end()
        at_namespace_scope = all(s != "block" for s in scopes)
        in_anon = "anon" in scopes
        if at_namespace_scope:
            for stmt in text.split(";"):
                s = " ".join(stmt.split())
                if not s:
                    continue
                static = re.match(r"(template\s*<[^>]*>\s*)?(inline\s+)?static\b", s)
                if not (in_anon or static):
                    continue
                names.update(re.findall(r"\b(?:struct|class|enum(?: class)?|union)\s+(\w+)", s))
                m = re.search(r"\busing\s+(\w+)\s*=", s)
                if m:
                    names.add(m.group(1))
                m = re.search(r"(\w+)\s*\([^()]*(\([^()]*\)[^()]*)*\)\s*(const)?\s*(noexcept)?\s*(->.*)?$", s)
                if m and "=" not in s[:m.start()] and not s.startswith("using") and m.group(1) not in (
                        "if", "for", "while", "switch", "return", "sizeof", "decltype", "alignof"):
                    names.add(m.group(1))
                m = re.search(r"\b(k[A-Z]\w*)\s*(=|\[|\{)", s)
                if m:
                    names.add(m.group(1))
        if brace.group(0) == "{":
            head = text.split(";")[-1].split("}")[-1].strip()
            if re.search(r"\bnamespace$", head):
                scopes.append("anon")
            elif re.search(r"\bnamespace\s+[\w:]+$", head):
                scopes.append("named")
            elif re.search(r'\bextern\s+""$', head):
                scopes.append("extern")
            else:
                scopes.append("block")
        elif scopes:
            scopes.pop()
    defined = set(re.findall(r"^\s*#\s*define\s+(\w+)", raw, flags=re.M))
    undefined = set(re.findall(r"^\s*#\s*undef\s+(\w+)", raw, flags=re.M))
    return names, defined - undefined


def main(paths):
    where = collections.defaultdict(list)
    leaks = []
    for p in paths:
        names, macros = file_scope_names(p)
        for n in names:
            where[n].append(p)
        leaks += [f"#define {m} (never #undef'd) in {p}" for m in sorted(macros)]
    for name, files in sorted(where.items()):
        if len(files) > 1:
            print(f"{name}: {' '.join(files)}")
    for line in leaks:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
