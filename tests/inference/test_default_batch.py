"""The default batch size (issue 55 item 6): one crop per forward pass on the CPU, where batching saves no time
and its activations cost memory (CHANGELOG), 16 on a GPU; an explicit one is kept."""
import pytest

from posecal.devices import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, default_batch_size
from posecal.errors import PosecalInputError
from posecal.inference.predictor import Predictor
from posecal.predict.job import PredictConfig


def test_the_default_depends_on_where_the_network_runs():
    assert (CPU_BATCH_SIZE, CUDA_BATCH_SIZE) == (1, 16)
    assert default_batch_size("cpu") == 1 and default_batch_size("cuda") == 16
    assert PredictConfig(inputs=[]).batch_size is None   # the Predictor's, by its device


def test_a_predictor_on_the_cpu_takes_one_crop_per_pass_unless_told():
    assert Predictor("fast", detector=None, threads=1).estimator.batch_size == 1
    told = Predictor("fast", detector=None, threads=1, batch_size=8)
    assert told.batch_size == told.estimator.batch_size == 8
    with pytest.raises(PosecalInputError, match="batch_size"):
        Predictor("fast", detector=None, batch_size=0)
