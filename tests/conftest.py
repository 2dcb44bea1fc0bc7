"""Fixtures shared by the test files."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a file's small tensors on one CPU thread and restore the count after it: on a shared,
    oversubscribed CPU, OpenMP's spinning threads made each tiny op take ~17 ms (a 2-layer forward
    0.4 s instead of 1 ms). A file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
