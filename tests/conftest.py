import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# A fixed, quick profile for CI; `pytest --hypothesis-profile=long` runs many more examples.
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden():
    return json.loads((DATA / "execution_model.json").read_text())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
