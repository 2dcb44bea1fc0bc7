import json

import numpy as np
import pytest
import torch

from mixdistill.data import TextData
from mixdistill.data.base import split_indices
from mixdistill.data.tokenizer import train_byte_level_bpe

WORDS = "the cat sat on a mat while dogs ran over green hills and birds sang songs of old".split()


def corpus_lines(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + f" #{i}" for i in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    lines = corpus_lines()
    # Blank lines are skipped as documents.
    (root / "a.txt").write_text("\n".join(lines[:60]) + "\n\n")
    (root / "b.txt").write_text("\n".join(lines[60:]) + "\n")
    return root, lines


def make(root, **kwargs):
    args = {
        "files": [str(root / "a.txt"), str(root / "b.txt")],
        "train_tokenizer_vocab": 300,
        "seq_len": 16,
        "cache_dir": str(root / "cache"),
        "val_fraction": 0.2,
        "batch_size": 4,
        "seed": 1,
    }
    return TextData(**{**args, **kwargs})


def expected_packing(tok, docs, eos, seq_len):
    stream = []
    for d in docs:
        stream += tok.encode(d, add_special_tokens=False).ids + [eos]
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def test_packing_equals_token_stream(corpus):
    root, lines = corpus
    dm = make(root)
    dm.setup("fit")
    assert dm.shape == (16,) and dm.num_classes == 0
    assert dm.vocab_size == dm.tokenizer.get_vocab_size() <= 300
    eos = dm.tokenizer.token_to_id("<|endoftext|>")
    index = split_indices(len(lines), 0.2, 0.0, seed=1, what="docs")
    for split in ("train", "val"):
        docs = [lines[i] for i in index[split].tolist()]
        assert torch.equal(dm.splits[split].x0, expected_packing(dm.tokenizer, docs, eos, 16))
    assert dm.splits["test"] is dm.splits["val"]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x0"} and batch["x0"].shape == (4, 16) and batch["x0"].dtype == torch.long


def test_decode_encode_round_trip(corpus):
    root, _ = corpus
    dm = make(root)
    for text in ["the cat sat on a mat #7", "  unseen wörds, ünïcode ✓ and\ttabs"]:
        ids = dm.tokenizer.encode(text).ids
        assert dm.decode(torch.tensor([ids])) == [text]
    first = dm.splits["train"].x0[:1]
    assert "<|endoftext|>" in "".join(dm.decode(dm.splits["train"].x0[:4]))
    assert dm.decode(first.tolist()) == dm.decode(first)


def test_cache_is_reused(corpus, monkeypatch):
    root, _ = corpus
    first = make(root)
    first.setup()
    folder = first.cache_folder()
    packed, tok = folder / "packed-16.pt", folder / "tokenizer.json"
    mtimes = (packed.stat().st_mtime_ns, tok.stat().st_mtime_ns)

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(TextData, "load_dataset", fail)
    monkeypatch.setattr("mixdistill.data.text.train_byte_level_bpe", fail)
    second = make(root)
    second.setup()
    assert torch.equal(second.splits["train"].x0, first.splits["train"].x0)
    assert second.vocab_size == first.vocab_size
    assert (packed.stat().st_mtime_ns, tok.stat().st_mtime_ns) == mtimes
    # A different seq_len reuses the tokenizer but packs anew (here: without reading the corpus fails).
    with pytest.raises(AssertionError, match="cache should have been used"):
        make(root, seq_len=8).setup()


def test_given_tokenizer_file_and_gpt2_directory(corpus, tmp_path):
    root, lines = corpus
    tok = train_byte_level_bpe(lines, 280, ["<|endoftext|>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    tok.model.save(str(gpt2))  # vocab.json + merges.txt
    a = make(root, tokenizer=str(tmp_path / "tokenizer.json"), cache_dir=str(tmp_path / "c"))
    b = make(root, tokenizer=str(gpt2), cache_dir=str(tmp_path / "c"))
    assert a.vocab_size == b.vocab_size == tok.get_vocab_size()
    assert torch.equal(a.splits["train"].x0, b.splits["train"].x0)
    assert a.decode(a.splits["val"].x0[:2]) == b.decode(b.splits["val"].x0[:2])
    with pytest.raises(ValueError, match="eos_token='</s>' is not in the vocabulary"):
        make(root, tokenizer=str(gpt2), eos_token="</s>", cache_dir=str(tmp_path / "c")).setup()


def test_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = corpus_lines(40, seed=2)
    with open(tmp_path / "d.jsonl", "w") as f:
        for i, line in enumerate(lines):
            f.write(json.dumps({"body": line, "id": i}) + "\n")
    pq.write_table(pa.table({"body": lines}), tmp_path / "d.parquet")
    tok = train_byte_level_bpe(lines, 280, ["<|endoftext|>"])
    tok.save(str(tmp_path / "tok.json"))
    kwargs = {"text_field": "body", "tokenizer": str(tmp_path / "tok.json"), "seq_len": 8}
    a = TextData([str(tmp_path / "d.jsonl")], cache_dir=str(tmp_path / "c"), **kwargs)
    b = TextData([str(tmp_path / "d.parquet")], cache_dir=str(tmp_path / "c"), **kwargs)
    assert torch.equal(a.splits["train"].x0, b.splits["train"].x0)
    with pytest.raises(KeyError, match="no column text_field='text'; its columns are"):
        TextData([str(tmp_path / "d.jsonl")], cache_dir=str(tmp_path / "c2")).setup()


def test_setting_errors(tmp_path):
    with pytest.raises(ValueError, match="files and hub_name are both unset"):
        TextData()
    with pytest.raises(ValueError, match="not both"):
        TextData(files=["a.txt"], hub_name="wikitext")
    with pytest.raises(ValueError, match="seq_len=1"):
        TextData(files=["a.txt"], seq_len=1)
    with pytest.raises(ValueError, match="train_tokenizer_vocab=100"):
        TextData(files=["a.txt"], train_tokenizer_vocab=100)
    with pytest.raises(FileNotFoundError, match="files contains '.*missing.txt', which does not exist"):
        TextData(files=[str(tmp_path / "missing.txt")], cache_dir=str(tmp_path / "c")).setup()
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "b.csv").write_text("x\n")
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="b.csv'; suffixes allowed"):
        TextData(files=[str(tmp_path / "b.csv")]).setup()
    with pytest.raises(ValueError, match="mixes formats"):
        TextData(files=[str(tmp_path / "a.txt"), str(tmp_path / "c.jsonl")]).setup()
    with pytest.raises(FileNotFoundError, match="tokenizer='.*nothing' is neither"):
        TextData(files=[str(tmp_path / "a.txt")], tokenizer=str(tmp_path / "nothing")).setup()


def test_data_errors(tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(ValueError, match="holds no non-blank text in text_field='text'"):
        TextData(files=[str(tmp_path / "blank.txt")], cache_dir=str(tmp_path / "c")).setup()
    (tmp_path / "short.txt").write_text("\n".join(corpus_lines(20)))
    with pytest.raises(ValueError, match="fewer than one sequence of seq_len=4096"):
        files = [str(tmp_path / "short.txt")]
        TextData(files, seq_len=4096, train_tokenizer_vocab=260, cache_dir=str(tmp_path / "c")).setup()
    (tmp_path / "one.txt").write_text("only one document here")
    with pytest.raises(ValueError, match=r"val_fraction=0.05 of 1 documents \(sample_by='line'\)"):
        TextData(files=[str(tmp_path / "one.txt")], cache_dir=str(tmp_path / "c")).setup()
