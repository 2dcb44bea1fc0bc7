"""Fixtures shared by the test files."""

import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (make test runs one worker per core) each worker gets its share of the
    cores: two workers of two threads each on two cores would oversubscribe them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (minutes each) run first, so the workers share them and the quick
    tests fill in around them, instead of one worker starting a slow test when the rest are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="module")
def one_thread():
    """Run a file's small tensors on one CPU thread and restore the count after it: on a shared,
    oversubscribed CPU, OpenMP's spinning threads made each tiny op take ~17 ms (a 2-layer forward
    0.4 s instead of 1 ms). A file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
