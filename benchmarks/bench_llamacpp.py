"""The llama.cpp route on a CPU against the kit's engine, side by side in one run.

    make test-server                       # builds llama-cpp-python's wheel once, installs it
    python benchmarks/bench_llamacpp.py [--rows 1,8,16] [--tokens 256]

Issue 23 listed llama.cpp among the routes worth measuring for `small`: the embedded GGUF
(SmolLM2-135M-Instruct, Q4_1) is already on disk, and llama.cpp reads its 4-bit weights as
they are, where the kit de-quantizes them to bf16 or fp32 for transformers. Both sides here
get the same prompt token ids (the kit's chat template), of ~150 to ~1,200 words, and decode
greedily, every reply forced to ``--tokens`` new tokens; times include the prefill. llama.cpp
runs in this process through llama-cpp-python's bindings of its C API, all rows in one batch
(one sequence each, as its server's parallel slots would), with the kit's thread count. The
kit runs its continuous engine as notebooks do (bf16 where the CPU has AVX-512 BF16 or AMX,
else fp32; prepacked linear layers). Printed: seconds and tokens/s per side and row count,
llama.cpp's decoding rate alone, and the ratio. The two sides' texts differ (4-bit products
against de-quantized ones): this compares speed only.

The kit builds the wheel without native CPU flags (the Makefile: they crashed on AMX
machines), so llama.cpp runs its AVX2 kernels even where the CPU has AVX-512; the system
line it prints says which.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lw
from lw.llm.attention import register
from lw.llm.base import as_conversation
from lw.llm.embedded import smollm2_gguf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepacked import engine_run, prompts  # noqa: E402  its prompts and engine run


class LlamaCpp:
    """Greedy batched decoding of the embedded GGUF through llama.cpp's C API."""

    def __init__(self, threads: int):
        import llama_cpp

        self.L = llama_cpp
        # llama.cpp logs every context it makes to stderr: keep the table readable
        self._quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(self._quiet, None)
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            str(smollm2_gguf()).encode(), llama_cpp.llama_model_default_params())
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.threads = threads

    def run(self, ids: list[list[int]], tokens: int) -> tuple[float, float]:
        """(seconds in all, seconds of the decoding steps) to prefill ``ids`` and write
        ``tokens`` new tokens for each, in a fresh context."""
        L, rows = self.L, len(ids)
        params = L.llama_context_default_params()
        params.n_seq_max = rows
        params.n_ctx = rows * (max(map(len, ids)) + tokens + 64)
        params.n_batch, params.n_ubatch = 2048, 512
        params.n_threads = params.n_threads_batch = self.threads
        ctx = L.llama_init_from_model(self.model, params)
        batch = L.llama_batch_init(2048, 0, rows)
        try:
            start = time.perf_counter()
            last = []
            for seq, prompt in enumerate(ids):  # prefill, a sequence at a time in chunks
                for at in range(0, len(prompt), 2048):
                    chunk = prompt[at:at + 2048]
                    self._fill(batch, [(t, at + j, seq, at + j == len(prompt) - 1)
                                       for j, t in enumerate(chunk)])
                    self._decode(ctx, batch)
                last.append(self._argmax(ctx, len(chunk) - 1))
            steps_from = time.perf_counter()
            positions = [len(p) for p in ids]
            for _ in range(tokens - 1):
                self._fill(batch, [(last[s], positions[s], s, True) for s in range(rows)])
                self._decode(ctx, batch)
                last = [self._argmax(ctx, s) for s in range(rows)]
                positions = [p + 1 for p in positions]
            end = time.perf_counter()
        finally:
            L.llama_batch_free(batch)
            L.llama_free(ctx)
        return end - start, end - steps_from

    def close(self) -> None:
        self.L.llama_model_free(self.model)  # before interpreter exit, which breaks its __del__

    @staticmethod
    def _fill(batch, items) -> None:
        batch.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits

    def _decode(self, ctx, batch) -> None:
        code = self.L.llama_decode(ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def _argmax(self, ctx, i: int) -> int:
        logits = self.L.llama_get_logits_ith(ctx, i)
        return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,8,16", help="batch sizes, one run each per side")
    ap.add_argument("--tokens", type=int, default=256, help="new tokens forced per reply")
    args = ap.parse_args(argv)
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed in this environment: `make test-server` "
              "builds its wheel once (~8 min on 2 cores) and installs it.")
        return 1
    rows = [int(r) for r in args.rows.split(",")]
    dtype = torch.float32 if lw.llm.cpu_bf16() else torch.bfloat16
    chat = lw.llm.load("smollm2-135m", batch_size=max(rows), dtype=dtype)
    cpp = LlamaCpp(torch.get_num_threads())
    print(f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
          f"kit engine in {str(dtype)[6:]}; llama-cpp-python {llama_cpp.__version__}: "
          f"{llama_cpp.llama_print_system_info().decode().strip()}")
    attention = register()  # what HFChatModel sets on a CPU
    engine_run(chat, attention, 1, 8)  # warm both up
    cpp.run([chat.prompt_ids(as_conversation(prompts(1)[0]))], 8)
    print(f"\n{'rows':>4} {'prompt tokens':>13} {'kit s':>7} {'kit tok/s':>9} {'llama.cpp s':>11} "
          f"{'llama.cpp tok/s':>15} {'its decoding tok/s':>18} {'llama.cpp/kit':>13}")
    for k, n in enumerate(rows):
        batch = prompts(n)
        ids = [chat.prompt_ids(as_conversation(t)) for t in batch]
        order = ("kit", "cpp") if k % 2 == 0 else ("cpp", "kit")  # neither always warm first
        for side in order:
            if side == "kit":
                kit_s, made, _ = engine_run(chat, attention, n, args.tokens)
                assert made == n * args.tokens, made  # every reply forced to full length
            else:
                cpp_s, cpp_steps = cpp.run(ids, args.tokens)
        new = n * args.tokens
        print(f"{n:>4} {sum(map(len, ids)):>13,} {kit_s:>7.1f} {new / kit_s:>9.1f} {cpp_s:>11.1f} "
              f"{new / cpp_s:>15.1f} {n * (args.tokens - 1) / cpp_steps:>18.1f} "
              f"{kit_s / cpp_s:>12.2f}x", flush=True)
    cpp.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
