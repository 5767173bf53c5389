"""The API's in-flight caps: one tenant, however many keys it has, leaves room for others."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow_api.settings import Settings


def test_one_tenant_may_hold_fewer_slots_than_the_replica_has_by_default() -> None:
    settings = Settings()

    assert settings.tenant_in_flight_cap == 24
    assert settings.tenant_in_flight_cap < settings.max_in_flight


@pytest.mark.parametrize(("max_in_flight", "cap"), [(16, 12), (8, 6), (2, 1), (1, 1)])
def test_a_lowered_max_in_flight_alone_still_starts_and_keeps_a_tenant_below_it(
    max_in_flight: int, cap: int
) -> None:
    # An upgrade must not stop a deployment that lowered REELFLOW_MAX_IN_FLIGHT alone.
    assert Settings(max_in_flight=max_in_flight).tenant_in_flight_cap == cap


@pytest.mark.parametrize("per_tenant", [32, 33])
def test_a_tenant_cap_that_leaves_no_room_for_others_is_refused_at_start(per_tenant: int) -> None:
    with pytest.raises(ValidationError, match=r"max_in_flight_per_tenant .* less than max_in_fl"):
        Settings(max_in_flight=32, max_in_flight_per_tenant=per_tenant)
    assert Settings(max_in_flight=32, max_in_flight_per_tenant=31).tenant_in_flight_cap == 31
