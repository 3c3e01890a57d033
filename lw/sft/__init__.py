"""Fine-tuning: long-output SFT (with packing and loss weighting), LoRA, and DPO.

    recipe = lw.sft.load_recipe("recipes/smollm2-135m/sft/config_full_cpu.yaml")
    result = lw.sft.train(recipe, data="runs/small/data/longwriter-kit.jsonl")
    lw.llm.load(result.spec)                               # "hf:<output_dir>/final"

Precision and packing (``lw.sft.precision``, ``lw.sft.attention``): ``bf16: true`` trains fp32
weights with bf16 autocast; packed rows are isolated by the kernel picked for the device
(``packed_attention``). ``lw.sft.bf16_update_probe`` measures how many weights a run changes.

Command line (and many GPUs through accelerate):
    python -m lw.sft recipes/smollm2-135m/sft/config_full_cpu.yaml --set num_train_epochs=2
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m lw.sft <recipe>
"""

from lw.conversations import load as load_conversations
from lw.conversations import mix
from lw.sft.config import (
    DataSettings,
    LoraSettings,
    Recipe,
    SFTConfig,
    check_trainable,
    load_recipe,
)
from lw.sft.probe import bf16_update_probe
from lw.sft.tokens import Collator, block_causal_mask, pack, tokenize, tokenize_one
from lw.sft.train import TrainResult, train, weighted_loss

__all__ = ["Collator", "check_trainable", "DataSettings", "LoraSettings", "Recipe", "SFTConfig", "TrainResult",
           "bf16_update_probe", "block_causal_mask", "load_conversations", "load_recipe", "mix", "pack", "tokenize",
           "tokenize_one", "train", "weighted_loss"]
