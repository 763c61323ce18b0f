"""The sync settings: a share outside 0..1 is refused with the setting's name."""

from __future__ import annotations

from datetime import time

import pytest
from pydantic import ValidationError

from bot.settings import Settings
from workflows.sync import DEFAULT_MAX_CHANGE_SHARE


def test_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.sync_time == time(2, 0)
    assert settings.sync_max_change_share == DEFAULT_MAX_CHANGE_SHARE
    assert settings.sync_channel is None


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValidationError, match="sync_max_change_share"):
        Settings(_env_file=None, sync_max_change_share=share)
