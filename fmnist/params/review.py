"""params.yaml `review`: the pull-request gate (tools.review)."""

from pydantic import Field

from fmnist.params import Section


class ReviewParams(Section):
    max_accuracy_drop: float = Field(ge=0, le=1)
