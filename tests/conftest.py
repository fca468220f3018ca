import os

import pytest
import torch

os.environ.setdefault("FLOWLEARN_NO_PROGRESS", "1")

#: the real data of ../shared/data (next to the checkout); FLOWLEARN_SHARED_DATA points elsewhere
SHARED_DATA = os.environ.get("FLOWLEARN_SHARED_DATA",
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Tests run in float64 with a fixed seed unless they say otherwise."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def one_thread():
    """One torch thread (reproducible timings and reductions); ``pytestmark = usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def facades_path():
    path = os.path.abspath(os.path.join(SHARED_DATA, "facades.npz"))
    if not os.path.exists(path):
        pytest.skip(f"{path} not available (set FLOWLEARN_SHARED_DATA to the folder holding facades.npz)")
    return path
