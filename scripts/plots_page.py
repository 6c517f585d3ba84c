"""Build .dvc/plots/page.html, the page of `dvc plots show` (.dvc/config: plots.html_template), with Vega,
Vega-Lite and Vega-Embed inlined: DVC's own page loads them from a CDN, so it is blank on a machine offline.

    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2   # the versions DVC's page names (dvc_render)
    python scripts/plots_page.py vega-5.20.2.tgz vega-lite-5.2.0.tgz vega-embed-6.18.2.tgz

The versions are read from the installed dvc_render (VegaRenderer.SCRIPTS), so a DVC upgrade that moves them
fails here instead of rendering its specs with older libraries. Each library keeps its BSD-3-Clause notice.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

from dvc_render.vega import VegaRenderer

PAGE = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "page.html"
WANTED = dict(re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))  # {"vega": "5.20.2", ...}

HEAD = """<!DOCTYPE html>
<html>
<head>
    <!-- Built by scripts/plots_page.py. DVC's own page has no charset (a browser opening it from disk shows Vega's
         minus signs as mojibake) and loads Vega from a CDN (blank offline): here the libraries are inlined. -->
    <meta charset="utf-8">
    {refresh_tag}
    <title>weakalign: dvc plots</title>
"""
TAIL = """    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def library(tgz: Path) -> tuple[str, str, str]:
    """(name, version, inline script) of an `npm pack` tarball: its minified build and its license."""
    with tarfile.open(tgz) as tar:
        read = lambda name: tar.extractfile(f"package/{name}").read().decode()  # noqa: E731
        meta = json.loads(read("package.json"))
        name, version = meta["name"], meta["version"]
        code = read(f"build/{name}.min.js")
        notice = read("LICENSE").strip().replace("*/", "* /")
    if WANTED.get(name) != version:
        raise SystemExit(f"{tgz}: {name}@{version}, but DVC's page uses {name}@{WANTED.get(name)}")
    for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if bad in code:  # would end the inline script early, or be filled in by DVC's template
            raise SystemExit(f"{tgz}: its build holds {bad!r} and cannot be inlined")
    return name, version, f"    <script>/*! {name}@{version}\n{notice}\n*/\n{code}\n    </script>\n"


def main(argv: list[str]) -> int:
    libs = sorted((library(Path(a)) for a in argv), key=lambda lib: list(WANTED).index(lib[0]))
    if [n for n, _, _ in libs] != list(WANTED):
        raise SystemExit(f"need the tarballs of {', '.join(f'{n}@{v}' for n, v in WANTED.items())}")
    PAGE.write_text(HEAD + "".join(s for _, _, s in libs) + TAIL)
    print(f"{PAGE}: {PAGE.stat().st_size:,} bytes, {', '.join(f'{n}@{v}' for n, v, _ in libs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
