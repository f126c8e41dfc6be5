"""Kopf's log lines at the level they deserve: the false alarm of an emptied annotation map is not a
warning; any other difference between a patch and its result still is."""

from __future__ import annotations

import logging

import pytest

from lb_operator.handlers.events import EmptiedAnnotationsAreConsistent

SEEN_IN_BENCH_E2E_REAL = (
    "Merge-patching finished with inconsistencies: (('remove', ('metadata', 'annotations'), "
    "{'lboperator.dev/reconcile': None, 'lboperator.dev/touch-dummy': None}, None),)"
)


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    "message",
    [
        SEEN_IN_BENCH_E2E_REAL,
        "Merge-patching finished with inconsistencies: (('remove', ('metadata', 'annotations'), "
        "{'lboperator.dev/reconcile': None}, None),)",
    ],
)
def test_removing_the_last_annotations_is_not_a_warning(message: str) -> None:
    record = _record(message)
    kept = EmptiedAnnotationsAreConsistent().filter(record)
    assert record.levelno == logging.DEBUG
    assert kept == logging.getLogger("kopf.objects").isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize(
    "message",
    [
        # a status the server did not take: a real problem
        "Merge-patching finished with inconsistencies: (('change', ('status', 'uuid'), 'a', 'b'),)",
        # an annotation set to a value, not removed
        "Merge-patching finished with inconsistencies: (('remove', ('metadata', 'annotations'), "
        "{'lboperator.dev/reconcile': '{}'}, None),)",
        # the annotation removal beside another difference
        SEEN_IN_BENCH_E2E_REAL[:-1] + " ('change', ('status', 'uuid'), 'a', 'b'))",
    ],
)
def test_any_other_inconsistency_still_warns(message: str) -> None:
    record = _record(message)
    assert EmptiedAnnotationsAreConsistent().filter(record)
    assert record.levelno == logging.WARNING
