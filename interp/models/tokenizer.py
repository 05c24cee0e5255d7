"""A transformers tokenizer as an `interp.tokenize.TextTokenizer`, with BOS and padding as each model is used.

  SmolLM2: no BOS (its GGUF tokenizer adds none), pads right.   Gemma-3: <bos> first, pads left.
  GPT-2:   <|endoftext|> first (TransformerLens's convention), pads right.
  BERT:    [CLS] first, [SEP] last (encode appends it), pads right (every encoder: its CLS / SEP tokens).
  Others:  BOS exactly when the family's tokenizer adds one itself (Qwen2.5: none), its own padding side.
"""
from __future__ import annotations

from collections.abc import Sequence


class TransformersTokenizer:
    """`encode` gives ids without BOS (plus `suffix`, e.g. BERT's [SEP]); `interp.tokenize.batch_encode` batches."""

    def __init__(self, tok, add_bos: bool, padding_side: str, bos_id: int | None = None,
                 pad_id: int | None = None, suffix: Sequence[int] = ()):
        self.tok, self.add_bos, self.padding_side, self.suffix = tok, add_bos, padding_side, list(suffix)
        self.bos_id = tok.bos_token_id if bos_id is None else bos_id
        if pad_id is None:
            pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, self.bos_id, 0) if i is not None)
        self.pad_id = pad_id
        self.vocab_size = len(tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) + self.suffix

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return (f"TransformersTokenizer({type(self.tok).__name__}, add_bos={self.add_bos}, bos_id={self.bos_id}, "
                f"pad_id={self.pad_id}, padding_side={self.padding_side!r})")


def load_transformers_tokenizer(path, family: str, encoder: bool = False, **kw) -> TransformersTokenizer:
    """The tokenizer saved in directory `path`, configured for `family`: encoders [CLS] ... [SEP] (or <s> ... </s>);
    GPT-2 <|endoftext|> first (TransformerLens's convention); Gemma <bos> and left padding; any other family
    (SmolLM2, Qwen: no BOS): BOS exactly when its tokenizer adds one itself, the tokenizer's padding side."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(path), **kw)
    if encoder:
        return TransformersTokenizer(tok, add_bos=True, padding_side="right", bos_id=tok.cls_token_id,
                                     pad_id=tok.pad_token_id, suffix=[tok.sep_token_id])
    if family.startswith("gemma"):
        return TransformersTokenizer(tok, add_bos=True, padding_side="left")
    if family == "gpt2":
        return TransformersTokenizer(tok, add_bos=True, padding_side="right", bos_id=tok.eos_token_id)
    ids = tok("a", add_special_tokens=True)["input_ids"]
    adds_bos = tok.bos_token_id is not None and len(ids) > 0 and ids[0] == tok.bos_token_id
    return TransformersTokenizer(tok, add_bos=adds_bos, padding_side=tok.padding_side or "right")
