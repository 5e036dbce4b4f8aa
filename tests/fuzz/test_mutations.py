"""A short, deterministic slice of the fuzzer for CI.

Hypothesis picks a file of the in-repository corpus (or a built-in invitation) and
drives the structured mutations of ``fuzz.mutate`` with its own ``Random``;
every mutated input must keep the engine's promises (``fuzz.target.check``).
Derandomized with a fixed number of examples, so every run tries the same inputs.
The long runs are ``fuzz/fuzz_engine.py``.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.mutate import load_seeds, mutate
from fuzz.target import check
from tests.support.calendars import fuzz_event as _event
from tests.support.calendars import fuzz_mail as _mail
from tests.support.fixtures import CLIENTS_DIR

BUILT_IN = [
    _mail(_event("RRULE:FREQ=WEEKLY;COUNT=10", "ATTENDEE;CN=Ann:mailto:ann@example.net")),
    _event("DESCRIPTION:Agenda\\, first line\\nsecond").encode(),
]
SEEDS = BUILT_IN + load_seeds(CLIENTS_DIR)


@settings(derandomize=True, max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(index=st.integers(0, len(SEEDS) - 1), rng=st.randoms(use_true_random=False))
def test_mutated_inputs_keep_the_engine_promises(index: int, rng: random.Random) -> None:
    check(mutate(SEEDS[index], rng))
