"""A candidate that turns bad once it serves alone, driven along statemachines/rollout.asl.json on the in-memory
fakes (tests/faults/driver.py): the watch rolls it back against the old champion's rate and gives the champion
its variant and scaling target back. The local cloud's rollout tests show one rollback per path
(test_workflow_rollout_safety.py); this is the watch's, deterministic."""

from __future__ import annotations

from tests.faults.driver import Harness, assert_one_clear_notification
from tests.faults.test_rollout_faults import STAGES, at_entry_of, on_champion


def test_a_candidate_that_fails_once_it_serves_alone_is_rolled_back_by_the_watch() -> None:
    def turn_bad(harness: Harness) -> None:
        harness.candidate.error_share = 0.5

    # Given a candidate as good as its champion until the watch, then failing half of its requests
    harness = Harness(hooks=at_entry_of(STAGES.index("watch"), turn_bad))
    # When it rolls out, Then the watch rolls it back and the champion serves alone again, autoscaled
    assert harness.run() == "RolledBack"
    on_champion(harness)
    assert ("churn", "v1") in harness.endpoints.scaling
    assert ("churn", "v2") not in harness.endpoints.scaling
    verdicts = [
        (r["stage"], r["verdict"])
        for r in harness.world.store.records("churn")
        if r["event"] == "verdict" and r["verdict"] != "CONTINUE"
    ]
    assert verdicts[-2:] == [("full", "PROMOTE"), ("watch", "ROLLBACK")]
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert "old champion" in told["reason"]
    # and only the candidate's own answers in the watch failed; the system failed no request
    assert harness.clients.failed == 0
    assert harness.clients.bad > 0
