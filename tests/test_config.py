"""Config fields that were removed: old files still load, a set value is refused clearly."""

import pytest

from saekit.config import TrainConfig
from saekit.errors import ConfigError


def test_wandb_field_is_gone_and_old_files_still_load():
    assert "wandb" not in TrainConfig().to_dict()  # it never logged anything: no silent no-op flag
    old = {**TrainConfig().to_dict(), "wandb": False}  # what earlier runs stored in saekit.json
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ConfigError, match="wandb is no longer supported"):
        TrainConfig.from_dict({"wandb": True})
