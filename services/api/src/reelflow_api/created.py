"""The headers of a create's answer besides its body: ``Location`` (the project) and
``Idempotency-Replayed`` (the project of an earlier request), and how the OpenAPI document
describes them."""

from __future__ import annotations

#: on a create's answer that is an earlier request's project (the same Idempotency-Key and
#: body), not a new one: the client's retry reached a request that had been accepted
IDEMPOTENCY_REPLAYED = "Idempotency-Replayed"

#: the headers of a create's answer (the OpenAPI document's)
CREATED_HEADERS = {
    "Location": {"description": "the project", "schema": {"type": "string"}},
    IDEMPOTENCY_REPLAYED: {
        "description": "`true` when the answer is the project of an earlier request with the"
        " same Idempotency-Key and body (a replay); absent for a project created now",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
