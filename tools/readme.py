#!/usr/bin/env python3
"""Render `nbs/index.ipynb` to `README.md` without Quarto.

`nbdev_readme` needs Quarto, which cannot be installed everywhere (it is not on our CI machines), so this
script is the README's generator of record: markdown cells are copied, code cells become ```python blocks
followed by their text outputs, and cells marked `#| hide` (or `#| include: false`) are left out; `#| echo: false`
keeps the outputs only. `--check` exits 1 and prints a diff when README.md is not what the notebook gives.
"""
import argparse
import difflib
import json
import re
import sys
from pathlib import Path

HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py (make readme). Do not edit: edit the notebook. -->\n"
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*)$")


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


def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    blocks = []
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if src.strip(): blocks.append(src.strip("\n"))
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
    text, out = render(Path(args.nb)), Path(args.out)
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
