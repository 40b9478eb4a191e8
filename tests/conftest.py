"""Shared test setup: offline Hugging Face, quiet progress bars, one compute thread.

One thread per process (inherited by the subprocesses tests start) keeps the many small ops
of the tests free of thread-synchronisation stalls on a busy 2-core machine, and makes
results independent of the machine's core count.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("SAEKIT_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402

# The session fixtures below train models; a file that uses one runs in the same pytest-xdist
# worker as every other file that uses it (so it is trained once), and every other file runs whole
# in one worker (so its module fixtures are built once). `make test` runs two workers.
SHARED_TRAINED_FIXTURES = ("verdict_models", "control_models")


def pytest_collection_modifyitems(config, items):
    by_file: dict = {}
    for item in items:
        by_file.setdefault(item.path, []).append(item)
    for path, file_items in by_file.items():
        used = {name for item in file_items for name in getattr(item, "fixturenames", ())}
        group = next((name for name in SHARED_TRAINED_FIXTURES if name in used), path.stem)
        for item in file_items:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def verdict_models(tmp_path_factory):
    """Tiny model seeds (4 baseline, 2 random) shared by the verdict tests: trained once per session."""
    from verdict_models import train_verdict_models

    return train_verdict_models(tmp_path_factory.mktemp("verdict_models"))


@pytest.fixture(scope="session")
def control_models(tmp_path_factory):
    """Three baseline and three random model seeds whose baselines generalise (the random-control test), of the
    token-level family: rotary positions, residual-output projections initialised ×0.1 (verdict_models.py)."""
    from verdict_models import TOKEN_LEVEL, train_control_models

    return train_control_models(tmp_path_factory.mktemp("control_models"), **TOKEN_LEVEL)
