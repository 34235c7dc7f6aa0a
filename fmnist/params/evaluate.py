"""params.yaml `evaluate`: which views of each test image the evaluated answer averages over."""

from fmnist.params import Section


class EvaluateParams(Section):
    mirror_average: bool
    shift_average: bool
