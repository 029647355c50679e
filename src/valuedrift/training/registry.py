"""The algorithm registry: one entry per trl trainer.

Adding another trl preference algorithm (KTO, ORPO, RLOO, ...) is one ``Algorithm``
entry (its settings dataclass with the defaults, the kind of dataset it trains on) and
its builder in ``trainers.BUILDERS``: the function building the trl config + trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .settings import DPOSettings, PPOSettings, RewardSettings, SFTSettings, SimPOSettings, TrainerSettings


@dataclass(frozen=True)
class Algorithm:
    name: str
    settings: type[TrainerSettings]
    dataset_kind: str  # "sft" or "preference"
    needs_reward_model: bool = False

    @property
    def builder(self) -> Callable[..., object]:
        """builder(settings, common_trl_kwargs, model_dir, tokenizer, rows, extras) -> a trl Trainer.
        Looked up on use: importing trl is for the training jobs only."""
        from .trainers import BUILDERS

        return BUILDERS[self.name]


ALGORITHMS: dict[str, Algorithm] = {
    "dpo": Algorithm("dpo", DPOSettings, "preference"),
    "simpo": Algorithm("simpo", SimPOSettings, "preference"),
    "ppo": Algorithm("ppo", PPOSettings, "preference", needs_reward_model=True),
}
SFT = Algorithm("sft", SFTSettings, "sft")
REWARD = Algorithm("reward", RewardSettings, "preference")


def get(name: str) -> Algorithm:
    if name == "sft":
        return SFT
    if name == "reward":
        return REWARD
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: sft, reward, {', '.join(ALGORITHMS)}") from None


def settings_for(name: str, config_training: dict | None) -> TrainerSettings:
    """Paper defaults overlaid with ``training.<name>`` from the config."""
    algo = get(name)
    return algo.settings().with_overrides(dict((config_training or {}).get(name, {})))

