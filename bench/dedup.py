"""The dedup gate's benchmark: MinHash stage vs rensa / datasketch, embedder vs sentence-transformers.

Runs bench/dedup_minhash.py (streaming keep-first, planted near-duplicates, oracle) and
bench/embed.py (texts/s and fidelity of each embedder, semantic stage with usearch) in
subprocesses, prints their tables and writes the figures together with --json.

    python bench/dedup.py --n 100000 --json bench/results/dedup.json
    python bench/dedup.py --n 1000000 --methods ours,rensa --skip-embed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], out: Path) -> dict:
    subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="MinHash corpus size")
    ap.add_argument("--methods", default="ours,rensa,rensa-compact,datasketch")
    ap.add_argument("--embed-n", type=int, default=2000, help="texts for the embedder comparison")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-minhash", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not a.skip_minhash:
            figures["minhash"] = run("dedup_minhash.py", ["--n", str(a.n), "--methods", a.methods],
                                     Path(tmp) / "minhash.json")
        if not a.skip_embed:
            figures["embed"] = run("embed.py", ["--n", str(a.embed_n)], Path(tmp) / "embed.json")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(figures, indent=1))
        print(f"figures written to {a.json}")


if __name__ == "__main__":
    main()
