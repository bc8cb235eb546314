"""Drawing names: what a label, a credits roll and the first use of the fonts cost.

    .venv/bin/python -m bench.titles              # --labels 400 --credits 1000

Prints a table: the first label in a fresh process (finding the fonts, reading the
character maps it needs from the stored index, opening them; once with no index, as on a
fresh machine), then labels per second for Latin-only names and for
the demo's world names (every script, emoji), each name drawn once (as a render does: one
PNG per distinct name and box), then a credits image of N names. Each row runs in a fresh
subprocess so caches start cold where the row says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
from portal.demo import WORLD_NAMES
from workers.media import typeset
from workers.media.spec import parse_spec
from workers.media.titles import credits_image, label_image
kind, count = sys.argv[1], int(sys.argv[2])
world = [name for _, name, _ in WORLD_NAMES]
latin = ["Emily Johnson", "José Martínez Peña", "Jürgen Groß", "Zoé Lefèvre", "Siti Nurhaliza"]
names = (world if kind.startswith("world") else latin)
out = tempfile.mkdtemp()
imported = time.perf_counter() - t0
result = {}
FIRST = {"latin-first": names[0], "world-first": "李小龙 محمد प्रिया 🎻",
         "tibetan-first": "བཀྲ་ཤིས་ ᜋᜇᜒᜌ ᤕᤠᤰᤌᤢᤱ",  # Noto Serif Tibetan, Tagalog, Limbu: chain's tail
         "nofont-first": "Kawi \U00011f04\U00011f05"}  # in no installed font: every cmap read
if kind.endswith("first"):
    t = time.perf_counter()
    label_image(FIRST[kind], 600, 30, os.path.join(out, "a.png"))
    result["seconds"] = time.perf_counter() - t
elif kind.endswith("labels"):
    label_image("warm up", 600, 30, os.path.join(out, "w.png"))
    for name in names:  # fonts and character maps in, as after the first label of a render
        label_image(name, 300, 30, os.path.join(out, "w.png"))
    t = time.perf_counter()
    for k in range(count):
        label_image(f"{names[k % len(names)]} {k}", 300, 30, os.path.join(out, f"{k}.png"))
    result["seconds"] = time.perf_counter() - t
else:
    clips = [{"id": f"c{k}", "path": "x.mp4", "name": f"{names[k % len(names)]} {k}",
              "location": WORLD_NAMES[k % len(WORLD_NAMES)][2], "part": f"p{k % 8}"}
             for k in range(count)]
    spec = parse_spec({"version": 1, "canvas": {"width": 1280, "height": 720},
                       "credits": True, "clips": clips})
    label_image("warm up", 600, 30, os.path.join(out, "w.png"))
    t = time.perf_counter()
    credits_image(spec, os.path.join(out, "credits.png"))
    result["seconds"] = time.perf_counter() - t
result["fonts_opened"] = typeset.pil_font.cache_info().currsize
result["shaping"] = typeset.shaping_available()
print(json.dumps(result))
"""


def _run(kind: str, count: int, cold_index: bool = False) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as empty:
        if cold_index:  # no stored character maps: as on a fresh machine or container
            env["XDG_CACHE_HOME"] = empty
        done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(count)],
                              capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--credits", type=int, default=1000)
    args = parser.parse_args(argv)
    rows = [("first label, Latin (cold process)", "latin-first", 1),
            ("first label, CJK+Arabic+Devanagari+emoji (cold)", "world-first", 1),
            ("first label, Tibetan+Tagalog+Limbu (cold)", "tibetan-first", 1),
            ("first label, no font holds it (cold)", "nofont-first", 1),
            ("first label, no font holds it (cold, no font index)", "nofont-first-x", 1),
            (f"{args.labels} labels, Latin names", "latin-labels", args.labels),
            (f"{args.labels} labels, world names", "world-labels", args.labels),
            (f"credits of {args.credits} Latin names", "latin-credits", args.credits),
            (f"credits of {args.credits} world names", "world-credits", args.credits)]
    print(f"{'case':52} {'seconds':>9} {'per item ms':>12} {'fonts open':>11}")
    for title, kind, count in rows:
        result = _run(kind.removesuffix("-x"), count, cold_index=kind.endswith("-x"))
        print(f"{title:52} {result['seconds']:9.3f} {1000 * result['seconds'] / count:12.2f} "
              f"{result['fonts_opened']:11d}")
    print(f"shaping (raqm): {result['shaping']}")


if __name__ == "__main__":
    main()
