"""params.yaml `runtime`: how train and evaluate run TensorFlow (fmnist.exact_mode)."""

from typing import Literal

from pydantic import Field

from fmnist.params import Section

RuntimeMode = Literal["exact", "native"]


class RuntimeParams(Section):
    mode: RuntimeMode
    threads: int = Field(ge=1, le=1024)
