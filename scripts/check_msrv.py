#!/usr/bin/env python3
"""Compare hubcast's declared `rust-version` with what its dependencies declare.

Only one toolchain is installed where CI runs, so the MSRV cannot be checked by building
with it; this checks the next best thing, the dependencies' own `rust-version`s in the
graph that the lock file resolves (`cargo metadata --locked`).

    python3 scripts/check_msrv.py [--manifest-path Cargo.toml] [--no-locked]

For each configuration it walks the resolved graph (the `resolve` section, following
`dep_kinds`) from hubcast and reports the highest Rust version any package reached needs:

- the library with default features: normal dependencies, their normal dependencies and
  the build-dependencies of each (build scripts and proc-macros are compiled by the same
  compiler), on every target platform; never dev-dependencies. This one FAILS the check if
  it is above the declared `rust-version`;
- the library with each optional feature in `[features]` (found in the manifest, so new
  features are covered without editing this script), and with all of them;
- the test suite, examples and benchmarks (`cargo test --all-features`): the above plus
  hubcast's dev-dependencies and everything they pull in.

The last two are reported, not enforced, so the docs can state them. A package's need is
the higher of its `rust-version` and the first release that knows its edition (2018:
1.31, 2021: 1.56, 2024: 1.85).

What this cannot see: hubcast's own code using a newer language feature (clippy's
`incompatible_msrv` lint catches newer std APIs, against the declared `rust-version`), a
dependency whose `rust-version` is wrong, and versions other than the locked ones that a
user's own lock file may pick.

Exit status: 0 if the declared `rust-version` covers the default features, 1 if not, 2 if
`cargo metadata` failed or the manifest declares no `rust-version`.
"""

import argparse
import json
import subprocess
import sys

# The first Rust release that accepts each edition.
EDITION_FLOOR = {"2015": (1, 0, 0), "2018": (1, 31, 0), "2021": (1, 56, 0), "2024": (1, 85, 0)}

NORMAL, BUILD, DEV = None, "build", "dev"


def parse_version(text):
    """'1.77' or '1.77.0' -> (1, 77, 0); None -> None."""
    if not text:
        return None
    parts = [int(p) for p in text.split(".")]
    return tuple((parts + [0, 0, 0])[:3])


def show(version):
    """(1, 77, 0) -> '1.77'; a non-zero patch is kept."""
    if version is None:
        return "-"
    major, minor, patch = version
    return f"{major}.{minor}.{patch}" if patch else f"{major}.{minor}"


def metadata(args, extra):
    cmd = ["cargo", "metadata", "--format-version", "1"]
    if args.manifest_path:
        cmd += ["--manifest-path", args.manifest_path]
    if args.locked:
        cmd.append("--locked")
    cmd += extra
    try:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"check_msrv: `{' '.join(cmd)}` failed: {err}", file=sys.stderr)
        sys.exit(2)
    return json.loads(out)


def need(package):
    """What one package needs: its rust-version, raised to its edition's first release."""
    edition = EDITION_FLOOR.get(package["edition"], (1, 0, 0))
    return max(parse_version(package.get("rust_version")) or edition, edition)


def crate_key(name):
    """Dependency names as cargo compares them: `foo-bar` and `foo_bar` are one."""
    return name.replace("-", "_")


def active_optional(package, features):
    """Keys of the optional dependencies that the activated `features` turn on: named as
    `dep:x` or `x/feature`. A weak `x?/feature` turns nothing on; cargo metadata's resolve
    lists such dependencies anyway, and `cargo build` does not build them."""
    keys = set()
    for feature in features:
        for entry in package["features"].get(feature, []):
            if entry.startswith("dep:"):
                keys.add(crate_key(entry[4:]))
            elif "/" in entry and "?/" not in entry:
                keys.add(crate_key(entry.split("/", 1)[0]))
    return keys


def walk(meta, root_kinds):
    """Package ids reachable from the root: through `root_kinds` at the root, and through
    normal and build dependencies below it (cargo resolves no dev-dependencies of
    dependencies; the ones it lists for the root are what `root_kinds` filters), leaving
    out optional dependencies that no activated feature turns on."""
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {node["id"]: node for node in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        pid = stack.pop()
        package, node = packages[pid], nodes[pid]
        kinds = root_kinds if pid == root else {NORMAL, BUILD}
        turned_on = active_optional(package, node["features"])
        # Whether each dependency key is required (not optional) for some followed kind.
        required = {}
        for dep in package["dependencies"]:
            if dep["kind"] in kinds:
                key = crate_key(dep.get("rename") or dep["name"])
                required[key] = required.get(key, False) or not dep["optional"]
        for dep in node["deps"]:
            if dep["pkg"] in seen or not any(k["kind"] in kinds for k in dep["dep_kinds"]):
                continue
            # The resolve names a dependency by its library target; the manifest by its
            # package name or rename. They differ only in `-`/`_` unless the library is
            # renamed in the dependency's own manifest, so check both spellings.
            target = packages[dep["pkg"]]["name"]
            keys = {crate_key(dep["name"]), crate_key(target)}
            # One the manifest does not name (it should not happen) counts, to err high.
            unknown = not keys & required.keys()
            if unknown or any(required.get(k) for k in keys) or keys & turned_on:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    seen.discard(root)
    return seen


def highest(meta, ids):
    """(the highest need among `ids`, sorted names of the packages that need it)."""
    packages = {p["id"]: p for p in meta["packages"]}
    top, names = None, []
    for pid in ids:
        package = packages[pid]
        version = need(package)
        label = f"{package['name']} {package['version']}"
        if top is None or version > top:
            top, names = version, [label]
        elif version == top:
            names.append(label)
    return top, sorted(names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest-path", help="Cargo.toml of the package to check")
    parser.add_argument(
        "--no-locked",
        dest="locked",
        action="store_false",
        help="let cargo update the lock file instead of failing when it is out of date",
    )
    args = parser.parse_args()

    base = metadata(args, [])
    root_id = base["resolve"]["root"]
    if root_id is None:
        print("check_msrv: no root package; use --manifest-path", file=sys.stderr)
        return 2
    root = next(p for p in base["packages"] if p["id"] == root_id)
    declared = parse_version(root.get("rust_version"))
    if declared is None:
        print(f"check_msrv: {root['name']} declares no rust-version", file=sys.stderr)
        return 2
    features = sorted(f for f in root["features"] if f != "default")

    # (what is built, its metadata, dependency kinds followed at the root, enforced?)
    lib = {NORMAL, BUILD}
    rows = [("library, default features", base, lib, True)]
    for feature in features:
        rows.append((f"library + {feature}", metadata(args, ["--features", feature]), lib, False))
    everything = metadata(args, ["--all-features"])
    if len(features) > 1:
        rows.append(("library, all features", everything, lib, False))
    rows.append(("tests, examples, benches", everything, lib | {DEV}, False))

    table, failed = [], False
    for label, meta, kinds, enforced in rows:
        ids = walk(meta, kinds)
        top, names = highest(meta, ids)
        above = top is not None and top > declared
        if enforced:
            failed |= above
            verdict = "FAIL: raise rust-version" if above else "ok"
        else:
            verdict = "above rust-version (reported)" if above else "ok"
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        table.append((label, str(len(ids)), show(top), shown or "-", verdict))

    header = ("builds", "crates", "needs", "set by", "verdict")
    widths = [max(len(row[i]) for row in table + [header]) for i in range(len(header))]
    source = "as locked in Cargo.lock" if args.locked else "as resolved now"
    name = f"{root['name']} {root['version']}"
    print(f"{name}: rust-version = {show(declared)}; dependencies {source}")
    for row in [header, tuple("-" * w for w in widths)] + table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if failed:
        print(f"check_msrv: rust-version {show(declared)} is below what the default features need")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
