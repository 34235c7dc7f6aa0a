"""params.yaml `train`: the model and how it is fitted."""

from typing import Literal

from pydantic import Field

from fmnist.params import Section, Seed

# Model names understood by fmnist.model.build_model (kept in step by a test).
Architecture = Literal["seed", "conv2_bn", "conv3_bn", "conv3_slim"]
Optimizer = Literal["adam", "adamw", "sgd", "nesterov", "rmsprop"]
Schedule = Literal["constant", "cosine"]
Distribute = Literal["auto", "none", "multi_worker"]
Augment = Literal["none", "flip", "alternate"]


class TrainParams(Section):
    model: Architecture
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=60_000)
    optimizer: Optimizer
    learning_rate: float = Field(gt=0)
    lr_schedule: Schedule
    warmup_fraction: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0, lt=1)
    dropout: float = Field(ge=0, lt=1)
    label_smoothing: float = Field(ge=0, lt=1)
    augment: Augment
    max_shift: int = Field(ge=0, le=14)
    random_erasing: float = Field(ge=0, le=1)
    lookahead_steps: int = Field(ge=0, le=10_000)
    whiten_init: bool
    dirac_init: bool
    batch_norm_images: int = Field(ge=0, le=60_000)
    seed: Seed
    histogram_freq: int = Field(ge=0)
    distribute: Distribute
