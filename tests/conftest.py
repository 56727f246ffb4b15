import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "profiles" / "demo" / "study.yaml"


@pytest.fixture
def demo_config() -> dict:
    """The demo study as a plain dict, before validation (each test gets its own copy)."""
    return copy.deepcopy(yaml.safe_load(DEMO_CONFIG.read_text()))
