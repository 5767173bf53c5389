"""What each create of an insert shared with others gets when the server answers with errors."""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError, WriteConcernError, WriteError

from reelflow_common.store.inserts import insert_outcomes

DUPLICATE = {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key error"}
REFUSED = {"index": 2, "code": 121, "errmsg": "Document failed validation"}
CONCERN = {"code": 64, "errmsg": "waiting for replication timed out"}


def test_each_refused_document_gets_its_own_error_and_the_others_none() -> None:
    outcomes = insert_outcomes({"writeErrors": [DUPLICATE, REFUSED]}, 4)

    assert [outcomes[0], outcomes[3]] == [None, None]
    assert isinstance(outcomes[1], DuplicateKeyError)
    assert type(outcomes[2]) is WriteError
    assert (outcomes[1].code, outcomes[2].code) == (11000, 121)


def test_a_write_concern_error_is_every_inserted_documents_but_a_refusal_stays_its_own() -> None:
    # insert_one raises a document's write error before the command's write concern error.
    outcomes = insert_outcomes(
        {"writeErrors": [DUPLICATE], "writeConcernErrors": [{"code": 1}, CONCERN]}, 3
    )

    assert isinstance(outcomes[1], DuplicateKeyError)
    for outcome in (outcomes[0], outcomes[2]):
        assert isinstance(outcome, WriteConcernError)
        assert outcome.code == 64  # the last one, as the driver reports it
