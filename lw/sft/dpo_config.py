"""The DPO stage's config: TRL's ``DPOConfig`` plus the kit's precision fields.

A module of its own so that importing ``lw.sft`` does not import TRL (slow), while the class
lives at module level, where pickle finds it (the Trainer saves its arguments with torch.save).
"""

from dataclasses import dataclass, field

from trl import DPOConfig

from lw.sft.precision import SAVE_HELP, WEIGHTS_HELP, check_precision


@dataclass
class LwDPOConfig(DPOConfig):
    """TRL's DPOConfig plus ``weights_dtype`` and ``save_dtype`` (see ``lw.sft.SFTConfig``)."""

    weights_dtype: str = field(default="float32", metadata={"help": WEIGHTS_HELP})
    save_dtype: str = field(default="auto", metadata={"help": SAVE_HELP})

    def __post_init__(self):
        super().__post_init__()
        check_precision(self)
