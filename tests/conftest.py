import os

os.environ.setdefault("PYGLET_HEADLESS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _small_torch():
    torch.set_num_threads(1)
    yield
