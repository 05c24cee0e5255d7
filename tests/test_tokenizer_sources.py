"""Where interp.load_model reads a transformers checkpoint's tokenizer from: a lone SentencePiece tokenizer.model
(Llama / Mistral / Gemma style, trained here with sentencepiece), or the folder `tokenizer=` (CLI: --tokenizer)
names. References are the sentencepiece and tokenizers libraries themselves and the transformers model's own
forward on the same ids."""
import io
import json
import shutil
import sys

import pytest
import torch

import interp
from interp.models import MissingWeights
from interp.tokenize import batch_encode

from gpt2_fixtures import tiny_checkpoint, write_tokenizer

CORPUS = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
          "darkness was upon the face of the deep. It is a truth universally acknowledged, that a single man in "
          "possession of a good fortune, must be in want of a wife.")
# no text starts with a space: transformers' LlamaTokenizer drops the extra "▁" sentencepiece gives a leading space
TEXTS = ["And God said, Let there be light: and there was light.", "Numbers 1234 and café £5 — 日本",
         "two  spaces\nand a new line"]
# special pieces as each family's real tokenizer.model has them (Gemma: no dummy prefix, <mask> at id 4)
SPM_STYLE = {"llama": dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1),
             "gemma": dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                           bos_piece="<bos>", unk_piece="<unk>", add_dummy_prefix=False, control_symbols=["<mask>"])}
# tokenizer_config.json as Llama-2 checkpoints ship it next to tokenizer.model
LLAMA2_CONFIG = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
                 "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None}


def write_spm(d, style: str, vocab: int = 300):
    """Train a tiny byte-fallback BPE SentencePiece model the way Llama's / Gemma's were set up; write tokenizer.model."""
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([CORPUS] * 20), model_writer=buf, vocab_size=vocab,
                                   model_type="bpe", byte_fallback=True, split_digits=True, minloglevel=2,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity",
                                   **SPM_STYLE[style])
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokenizer.model").write_bytes(buf.getvalue())
    return d


def spm_checkpoint(d, model_type: str, with_config: bool = False):
    """A tiny random checkpoint (vocabulary 300) whose only tokenizer file is a SentencePiece tokenizer.model."""
    tiny_checkpoint(d, model_type, tokenizer=False)
    write_spm(d, "gemma" if model_type.startswith("gemma") else "llama")
    if with_config:
        (d / "tokenizer_config.json").write_text(json.dumps(LLAMA2_CONFIG))
    return d


def hf_forward(d, tokens):
    from transformers import AutoModelForCausalLM
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(d).eval()(input_ids=tokens).logits


@pytest.mark.parametrize("model_type,with_config", [("llama", True), ("llama", False), ("mistral", False),
                                                    ("gemma", False)])
def test_sentencepiece_only_checkpoint_encodes_as_sentencepiece(tmp_path, model_type, with_config):
    """ids = the sentencepiece library's own encode, after the model's BOS (every one of these families was trained
    with it); logits = the transformers model's forward on those ids."""
    import sentencepiece as spm
    d = spm_checkpoint(tmp_path / model_type, model_type, with_config)
    model = interp.load_model(d)
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    for text in TEXTS:
        want = [sp.bos_id()] + sp.encode(text)
        tokens, mask = batch_encode(model.tokenizer, [text])
        assert tokens[0].tolist() == want and mask.all()
        assert model.tokenizer.decode(sp.encode(text)) == sp.decode(sp.encode(text))
    tokens = torch.tensor([[sp.bos_id()] + sp.encode(TEXTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf_forward(d, tokens), rtol=0, atol=1e-5)


def test_sentencepiece_missing_is_one_line(tmp_path, monkeypatch):
    d = spm_checkpoint(tmp_path / "llama", "llama")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # `import sentencepiece` now fails
    with pytest.raises(ImportError, match=r"holds only a SentencePiece tokenizer.model, and reading it needs the "
                                          r"sentencepiece and protobuf packages \(sentencepiece is not importable\): "
                                          r"pip install sentencepiece protobuf$") as e:
        interp.load_model(d)
    assert "\n" not in str(e.value)


def test_no_tokenizer_error_names_every_kind_of_tokenizer_file(tmp_path):
    with pytest.raises(MissingWeights, match=r"has no tokenizer files \(missing: tokenizer.json \(or vocab.json \+ "
                                             r"merges.txt, vocab.txt, or a SentencePiece tokenizer.model\)\).*"
                                             r"or pass tokenizer=<that folder>"):
        interp.load_model(tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=False))


def reference_ids(tok_dir, text: str) -> list[int]:
    """What the tokenizers library reads from tok_dir/tokenizer.json (its own special tokens included)."""
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(tok_dir / "tokenizer.json")).encode(text).ids


@pytest.fixture
def tok(tmp_path):
    d = tmp_path / "tok"
    write_tokenizer(d)
    return d


def test_tokenizer_argument_reads_that_folder(tmp_path, tok, monkeypatch):
    """A checkpoint without tokenizer files, or with its own, or a GPT-2 that would borrow a cached gpt2 tokenizer,
    or a registry name: tokenizer= is what encodes."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    bare = tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=False)
    own = spm_checkpoint(tmp_path / "spm", "llama")
    gpt2 = tiny_checkpoint(tmp_path / "gpt2", "gpt2", tokenizer=False)
    for d in (bare, own, gpt2):
        model = interp.load_model(d, tokenizer=tok)
        assert model.tokenizer.tok.name_or_path == str(tok)
        for text in TEXTS:
            ids = batch_encode(model.tokenizer, [text])[0][0].tolist()
            bos = [model.tokenizer.bos_id] if d is gpt2 else []  # GPT-2: <|endoftext|> first (TransformerLens)
            assert ids == bos + reference_ids(tok, text)
    repo = tmp_path / "hub" / "models--schaeff--gpt2-small_LNFree300"  # a registry name, from the HF cache
    shutil.copytree(gpt2, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    with pytest.raises(MissingWeights, match="no cached gpt2 tokenizer.*or pass tokenizer=<folder>"):
        interp.load_model("gpt2-small_LNFree300")
    assert interp.load_model("gpt2-small_LNFree300", tokenizer=tok).tokenizer.tok.name_or_path == str(tok)


def test_tokenizer_argument_as_a_cached_repo_id(tmp_path, tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = tmp_path / "hub" / "models--org--tok" / "snapshots" / "0123abc"
    shutil.copytree(tok, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abc")
    model = interp.load_model(tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=False), tokenizer="org/tok")
    assert model.tokenizer.tok.name_or_path == str(snap)
    assert model.tokenizer.encode(TEXTS[0]) == reference_ids(tok, TEXTS[0])


def test_bad_tokenizer_argument_is_one_line(tmp_path, tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ckpt = tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=False)
    (tmp_path / "empty").mkdir()
    cached = tmp_path / "hub" / "models--org--weights-only" / "snapshots" / "0123abc"
    shutil.copytree(ckpt, cached)
    cases = {tmp_path / "empty": r"the folder has no tokenizer files \(wanted: tokenizer.json .*\); pass the folder",
             tmp_path / "nowhere": r"no such folder, and not in the HF cache \(.*hub\); pass a folder holding",
             tok / "tokenizer.json": r"tokenizer.json is a file: pass the folder that holds it",
             "org/weights-only": r"no such folder, and its cached snapshot has no tokenizer files",
             write_spm(tmp_path / "big", "llama", vocab=320): r"has 320 tokens but .*llama embeds only 300: it is "
                                                               r"another model's vocabulary"}
    for bad, message in cases.items():
        with pytest.raises((FileNotFoundError, NotADirectoryError, ValueError), match=message) as e:
            interp.load_model(ckpt, tokenizer=bad)
        assert "\n" not in str(e.value)
    zoo = tmp_path / "zoo"
    interp.zoo.build("pre-ln", n_layers=1, d_model=32, n_heads=4, d_mlp=64, d_vocab=64, n_ctx=16).save(zoo)
    with pytest.raises(ValueError, match="is a zoo checkpoint, whose tokenizer is part of it .*load it without "
                                         "tokenizer=$"):
        interp.load_model(zoo, tokenizer=tok)


def test_cli_tokenizer_option(tmp_path, tok, capsys):
    from interp.cli import build_parser, main
    from interp.commands.collect import worker_argv
    ckpt = tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=False)
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    collect = ["collect", str(ckpt), "--data", str(data), "--collectors", "residual", "--device", "cpu", "--quiet"]
    assert main(collect + ["-o", str(tmp_path / "no-tok")]) == 1
    assert "has no tokenizer files" in capsys.readouterr().err
    assert main(collect + ["-o", str(tmp_path / "res"), "--tokenizer", str(tok)]) == 0
    n = sum(len(reference_ids(tok, line)) for line in data.read_text().splitlines())  # one text per line
    assert interp.Results.load(tmp_path / "res").meta["n_tokens"] == n
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    for argv in (collect + ["-o", str(tmp_path / "bad")],
                 ["attribute", str(ckpt), "--text", "And God", "--target-id", "5", "--out", str(tmp_path / "a")]):
        assert main(argv + ["--tokenizer", str(tmp_path / "empty")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"interp: error: tokenizer {tmp_path / 'empty'}: the folder has no tokenizer files")
        assert err.count("\n") == 1
    a = build_parser().parse_args(collect + ["-o", "x", "--tokenizer", str(tok), "--nproc", "2"])
    argv = worker_argv(a)  # what each rank under --nproc is started with
    assert argv[argv.index("--tokenizer") + 1] == str(tok)
    assert main(["collect", "-h"]) == 0 and "--tokenizer DIR" in capsys.readouterr().out
