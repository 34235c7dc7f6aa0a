"""params.yaml `review`: the pull-request gate (tools.review)."""

from pydantic import Field

from fmnist.params import Section

# The gate's limit when the base commit has no valid `review` section, so that a pull request never sets its own:
# 3 x sqrt(2) x the seed-to-seed sd over six seeds (docs/reproducibility.md). Not a field default: params.yaml must
# name every value, as dvc.lock records it.
DEFAULT_MAX_ACCURACY_DROP = 0.01


class ReviewParams(Section):
    max_accuracy_drop: float = Field(ge=0, le=1)
