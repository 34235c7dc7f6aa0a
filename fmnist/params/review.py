"""params.yaml `review`: the pull-request gate (tools.review)."""

from pydantic import Field

from fmnist.params import Section

# 3 x sqrt(2) x the seed-to-seed sd over six seeds (docs/reproducibility.md): the gate's limit when the base commit
# has no valid `review` section, so that a pull request never sets its own.
DEFAULT_MAX_ACCURACY_DROP = 0.01


class ReviewParams(Section):
    max_accuracy_drop: float = Field(DEFAULT_MAX_ACCURACY_DROP, ge=0, le=1)
