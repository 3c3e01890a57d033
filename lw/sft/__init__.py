"""Fine-tuning: long-output SFT (with packing and loss weighting), LoRA, and DPO.

    recipe = lw.sft.load_recipe("recipes/smollm2-135m/sft/config_full_cpu.yaml")
    result = lw.sft.train(recipe, data="runs/small/data/longwriter-kit.jsonl")
    lw.llm.load(result.spec)                               # "hf:<output_dir>/final"

Command line (and many GPUs through accelerate):
    python -m lw.sft recipes/smollm2-135m/sft/config_full_cpu.yaml --set num_train_epochs=2
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m lw.sft <recipe>
"""

from lw.sft.config import DataSettings, LoraSettings, Recipe, SFTConfig, load_recipe
from lw.sft.data import load as load_conversations
from lw.sft.data import mix
from lw.sft.tokens import Collator, block_causal_mask, pack, tokenize, tokenize_one
from lw.sft.train import TrainResult, train, weighted_loss

__all__ = ["Collator", "DataSettings", "LoraSettings", "Recipe", "SFTConfig", "TrainResult",
           "block_causal_mask", "load_conversations", "load_recipe", "mix", "pack", "tokenize",
           "tokenize_one", "train", "weighted_loss"]
