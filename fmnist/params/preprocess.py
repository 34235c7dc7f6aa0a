"""params.yaml `preprocess`: the train/validation split."""

from pydantic import Field

from fmnist.params import Section, Seed


class PreprocessParams(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: Seed
