"""A tiny GPT-2 byte-level BPE tokenizer written to a directory, and tiny random transformers checkpoints, shared by
the model tests."""

TEXT = "In the beginning God created the heaven and the earth. And the earth was without form, and void."


def write_tokenizer(d):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([TEXT] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>").save_pretrained(d)
    return tk.get_vocab_size()


def tiny_checkpoint(d, model_type: str, tokenizer: bool):
    """A tiny random transformers checkpoint of `model_type` in `d` (vocabulary 300), with or without tokenizer files
    (write_tokenizer's)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    vocab = write_tokenizer(d) if tokenizer else 300
    kw = dict(n_embd=32, n_layer=1, n_head=4, n_positions=32) if model_type == "gpt2" else dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=vocab, **kw)).save_pretrained(d)
    return d
