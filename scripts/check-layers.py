#!/usr/bin/env python3
"""Fails when a file of src/ or include/gateway/ includes a header of a higher layer.

  scripts/check-layers.py [ROOT]     the tree at ROOT (default: this repository)
  scripts/check-layers.py --self-test   shows that an upward include fails and a downward one passes

The layers are listed below, from the bottom (README, "How it is built"). A folder may include
the headers of its own layer's folders and of every layer below it; never of one above. The
files of src/ outside a folder (app.cpp, main.cpp) and include/gateway/app.hpp are the top.
"""
import pathlib
import re
import sys
import tempfile

# From the bottom. A folder may include headers of its own layer's folders and of every layer
# below; never above.
LAYERS = [
    ["util"],
    ["eth"],
    ["jsonrpc"],
    ["config"],
    ["metrics", "log"],
    ["upstream", "store", "custody", "http", "auth"],
    ["chain"],
    ["cache"],
    ["txm", "streams"],
    ["rpc"],
    ["admin"],
    ["app"],
]
LEVEL = {folder: i for i, layer in enumerate(LAYERS) for folder in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"gateway/([a-z_]+)/[^"]+"', re.M)


def folder_of(path: pathlib.Path, root: pathlib.Path) -> str:
    rel = path.relative_to(root).parts
    if rel[0] == "include":
        return rel[2] if len(rel) > 3 else "app"
    # src/<folder>/file, or src/app.cpp, src/main.cpp, src/asio_impl.cpp
    return rel[1] if len(rel) > 2 else "app"


def check(root: pathlib.Path) -> int:
    files = sorted(
        p for base in (root / "src", root / "include" / "gateway")
        for p in base.rglob("*") if p.suffix in (".cpp", ".hpp"))
    bad = []
    for path in files:
        own = folder_of(path, root)
        if own not in LEVEL:
            bad.append(f"{path.relative_to(root)}: folder '{own}' has no layer in {__file__}")
            continue
        for m in INCLUDE.finditer(path.read_text()):
            dep = m.group(1)
            if dep not in LEVEL:
                bad.append(f"{path.relative_to(root)}: includes a folder with no layer: {dep}")
            elif LEVEL[dep] > LEVEL[own]:
                bad.append(f"{path.relative_to(root)} ({own}) includes {m.group(0).split()[-1]}"
                           f" ({dep}, a higher layer)")
    for line in bad:
        print("layers:", line)
    if bad:
        print(f"layers: {len(bad)} include(s) against the layer order")
        return 1
    print(f"layers: {len(files)} files keep the layer order")
    return 0


def self_test() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for folder in ("util", "rpc"):
            (root / "src" / folder).mkdir(parents=True)
            (root / "include" / "gateway" / folder).mkdir(parents=True)
        (root / "include" / "gateway" / "util" / "u.hpp").write_text("#pragma once\n")
        (root / "include" / "gateway" / "rpc" / "r.hpp").write_text(
            '#pragma once\n#include "gateway/util/u.hpp"\n')
        (root / "src" / "util" / "u.cpp").write_text('#include "gateway/util/u.hpp"\n')
        if check(root) != 0:
            print("self-test: a tree that keeps the order failed")
            return 1
        (root / "src" / "util" / "u.cpp").write_text('# include "gateway/rpc/r.hpp"\n')
        if check(root) != 1:
            print("self-test: util including rpc passed")
            return 1
    print("self-test: passed")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    sys.exit(check(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1
                   else pathlib.Path(__file__).resolve().parent.parent))
