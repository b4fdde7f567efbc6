#!/usr/bin/env python3
"""Render `nbs/index.ipynb` to `README.md` without Quarto.

`nbdev_readme` needs Quarto, which cannot be installed everywhere (it is not on our CI machines), so this
script is the README's generator of record: markdown cells are copied, code cells become ```python blocks
followed by their text outputs, and cells marked `#| hide` (or `#| include: false`) are left out; `#| echo: false`
keeps the outputs only; relative image links are rewritten so they resolve from the README's folder. `--check` exits 1 and prints a diff when README.md is not what the notebook gives.
"""
import argparse
import difflib
import json
import os
import re
import sys
from pathlib import Path

HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py (make readme). Do not edit: edit the notebook. -->\n"
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*)$")
IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)")


def _relink(md: str, nb_dir: Path, out_dir: Path) -> str:
    "Markdown image links relative to the notebook, made relative to the README (URLs and absolute paths kept)."
    def fix(m):
        link = m.group(2)
        if re.match(r"^([a-z][a-z0-9+.-]*:|/|#)", link): return m.group(0)
        return m.group(1) + Path(os.path.relpath(nb_dir / link, out_dir)).as_posix()
    return IMAGE.sub(fix, md)


def _directives(src):
    "The `#| ...` lines at the top of a cell, and the code without them."
    lines, flags = src.splitlines(), []
    while lines and DIRECTIVE.match(lines[0]):
        flags.append(DIRECTIVE.match(lines[0]).group(1).strip())
        lines.pop(0)
    return flags, "\n".join(lines).strip("\n")


def _outputs(cell):
    "Text of a code cell's outputs (streams, results, errors); images are left to the rendered docs."
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/markdown" in data: parts.append(("md", "".join(data["text/markdown"])))
            elif "text/plain" in data and not any(k.startswith("image/") for k in data):
                parts.append("".join(data["text/plain"]))
    return parts


def render(nb_path: Path, out_dir: Path | None = None) -> str:
    "The README text; `out_dir` is where it will live (default: the notebook folder's parent, the repository root)."
    nb_path = Path(nb_path).resolve()
    out_dir = Path(out_dir).resolve() if out_dir is not None else nb_path.parent.parent
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    blocks = []
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if src.strip(): blocks.append(_relink(src.strip("\n"), nb_path.parent, out_dir))
            continue
        if cell["cell_type"] != "code": continue
        flags, code = _directives(src)
        if any(f in ("hide", "include: false") or f.startswith("default_exp") for f in flags): continue
        if code and "echo: false" not in flags: blocks.append(f"```python\n{code}\n```")
        for part in _outputs(cell):
            if isinstance(part, tuple): blocks.append(part[1].strip("\n"))
            elif part.strip(): blocks.append("```\n" + part.rstrip("\n") + "\n```")
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nb", default="nbs/index.ipynb")
    ap.add_argument("--out", default="README.md")
    ap.add_argument("--check", action="store_true", help="fail if README.md differs from the notebook")
    args = ap.parse_args(argv)
    out = Path(args.out)
    text = render(Path(args.nb), out.resolve().parent)
    if args.check:
        have = out.read_text(encoding="utf-8") if out.exists() else ""
        if have != text:
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), text.splitlines(True), str(out), args.nb + " (rendered)"))
            print(f"\n{out} is out of date with {args.nb}: run `make readme` and commit.", file=sys.stderr)
            return 1
        print(f"{out} matches {args.nb}")
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
