"""The whole of params.yaml, every section validated: for tools and tests. Stages load only their own sections."""

from fmnist.params import Section
from fmnist.params.download import DownloadParams
from fmnist.params.evaluate import EvaluateParams
from fmnist.params.preprocess import PreprocessParams
from fmnist.params.review import ReviewParams
from fmnist.params.runtime import RuntimeParams
from fmnist.params.train import TrainParams


class AllParams(Section):
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    runtime: RuntimeParams
    evaluate: EvaluateParams
    review: ReviewParams
