"""Print the longest functions and the largest files of a source tree (the consolidation's yardstick).

    python .ci/code_shape.py [ROOT ...] [--top N]

A function's length is its source span (decorators to last line, nested functions included in their parent's span
and also listed on their own). tests/test_code_shape.py holds the limits that matter: no function over
MAX_FUNCTION_LINES in the training and distillation code.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import NamedTuple

MAX_FUNCTION_LINES = 120


class Span(NamedTuple):
    lines: int
    where: str  # "path:line name"


def functions(path: Path, root: Path) -> list[Span]:
    """Every function and method in ``path`` with its length in lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(root).as_posix()
    out: list[Span] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out.append(Span(node.end_lineno - first + 1, f"{rel}:{node.lineno} {node.name}"))
    return out


def python_files(roots: list[Path]) -> list[Path]:
    return sorted(p for r in roots for p in (r.rglob("*.py") if r.is_dir() else [r]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="*", default=["bindkit"], help="folders or files (default: bindkit)")
    ap.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = ap.parse_args(argv)
    base = Path.cwd()
    files = python_files([Path(r) for r in args.roots])
    spans = sorted((s for f in files for s in functions(f.resolve(), base.resolve())), reverse=True)
    sizes = sorted(((len(f.read_text(encoding="utf-8").splitlines()), f.as_posix()) for f in files), reverse=True)
    total = sum(n for n, _ in sizes)
    print(f"{len(files)} files, {total} lines, {len(spans)} functions")
    print(f"\nlongest functions (top {args.top})")
    for s in spans[: args.top]:
        print(f"  {s.lines:5d}  {s.where}")
    print(f"\nlargest files (top {args.top})")
    for n, f in sizes[: args.top]:
        print(f"  {n:5d}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
