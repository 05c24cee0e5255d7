"""CPU cost of one LN-removal fine-tuning step on GPT-2 small, converted to the zoo (`interp.surgery.from_gpt2`).

    .venv/bin/python benchmarks/gpt2_step_time.py          # writes benchmarks/results/gpt2_step_time.json

One thread, random GPT-2 small weights (speed does not depend on them), `interp.train.fine_tune` with batch
1 × 128 tokens, with every LayerNorm and after the ln2 stage (FakeLN). Per-step time = (4 steps − 1 step) / 3,
so optimizer set-up is excluded; wall and process CPU time both recorded (wall depends on other load).
"""
from __future__ import annotations

import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from interp.surgery import from_gpt2
from interp.surgery.remove_ln import remove_stage
from interp.train import fine_tune
from record import write_result


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = from_gpt2(GPT2LMHeadModel(GPT2Config()))  # GPT-2 small sizes (124M)
    tokens = torch.randint(0, 50257, (20000,))
    kw = dict(batch_size=1, seq_len=128, progress=False, log_layers=False, eval_every=10 ** 9, bos_id=50256)
    fine_tune(model, tokens, 1, 1e-4, **kw)  # first-call overheads
    rows = []
    for label in ("LayerNorm", "FakeLN ln2"):
        if label != "LayerNorm":
            remove_stage(model, "ln2", [tokens[:128].view(1, -1)])
        wall, cpu = [], []
        for n in (1, 4):
            t0, c0 = time.perf_counter(), time.process_time()
            fine_tune(model, tokens, n, 1e-4, **kw)
            wall.append(time.perf_counter() - t0), cpu.append(time.process_time() - c0)
        rows.append(dict(norms=label, batch=1, seq=128, wall_s_per_step=(wall[1] - wall[0]) / 3,
                         cpu_s_per_step=(cpu[1] - cpu[0]) / 3))
        print(f"{label}: {rows[-1]['wall_s_per_step']:.2f} s wall, {rows[-1]['cpu_s_per_step']:.2f} s CPU per step")
    write_result("gpt2_step_time", rows, threads=1, description=__doc__.split("\n\n")[0].replace("\n", " "))


if __name__ == "__main__":
    main()
