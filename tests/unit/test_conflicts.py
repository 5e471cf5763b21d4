"""Two JobQueues that want one thing: the older keeps it (pure).

Case matrix: one claimant per target -> no loser; two on one Deployment -> the younger loses,
naming the older; creation times equal -> namespace and name decide; two claims of one JobQueue are
no conflict; three on one target -> both younger ones lose; Redis URLs that name the same keys
(credentials, default port and database, case) compare equal, other databases do not.
"""

from __future__ import annotations

import pytest
from jobqueue_operator import conflicts


def claim(name: str, created: str, target: str = "shared", namespace: str = "team") -> conflicts.Claim:
    return conflicts.deployment_claim((namespace, name), (created, namespace, name), namespace, target)


def test_one_claimant_per_target_is_no_conflict() -> None:
    assert (
        conflicts.losers([claim("a", "2024-01-01T00:00:00Z", "x"), claim("b", "2024-01-02T00:00:00Z", "y")])
        == {}
    )


def test_the_younger_loses_and_is_told_who_keeps_it() -> None:
    lost = conflicts.losers([claim("new", "2024-02-01T00:00:00Z"), claim("old", "2024-01-01T00:00:00Z")])
    assert list(lost) == [("team", "new")]
    assert "Deployment team/shared" in lost[("team", "new")] and "team/old" in lost[("team", "new")]


def test_same_creation_time_then_names_decide_and_three_claimants() -> None:
    same = "2024-01-01T00:00:00Z"
    lost = conflicts.losers([claim("c", same), claim("a", same), claim("b", same)])
    assert set(lost) == {("team", "b"), ("team", "c")}


def test_two_claims_of_one_jobqueue_are_no_conflict() -> None:
    assert conflicts.losers([claim("a", "t"), claim("a", "t")]) == {}


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("redis://redis:6379/0", "redis://user:secret@REDIS/0", True),
        ("redis://redis", "redis://redis:6379/0", True),
        ("rediss://redis:6380/2?ssl_cert_reqs=none", "rediss://:pw@redis:6380/2", True),
        ("redis://redis/0", "redis://redis/1", False),
        ("redis://redis-a/0", "redis://redis-b/0", False),
        (
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            "redis+sentinel://pw@s1:26379,s2:26379/mymaster",
            True,
        ),
    ],
)
def test_redis_urls_compare_by_where_the_keys_live(a: str, b: str, same: bool) -> None:
    assert (conflicts.redis_server(a) == conflicts.redis_server(b)) is same
