"""The API's in-flight caps: one tenant, however many keys it has, leaves room for others."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow_api.settings import Settings


def test_one_tenant_may_hold_fewer_slots_than_the_replica_has_by_default() -> None:
    settings = Settings()

    assert settings.max_in_flight_per_tenant < settings.max_in_flight


@pytest.mark.parametrize("per_tenant", [32, 33])
def test_a_tenant_cap_that_leaves_no_room_for_others_is_refused_at_start(per_tenant: int) -> None:
    with pytest.raises(ValidationError, match=r"max_in_flight_per_tenant .* less than max_in_fl"):
        Settings(max_in_flight=32, max_in_flight_per_tenant=per_tenant)
    Settings(max_in_flight=32, max_in_flight_per_tenant=31)
