"""How often one member may act: the sliding window the open floor and the votes use."""

from __future__ import annotations

from bot.engine.limits import SWEEP_EVERY, RateLimit


def test_a_member_gets_limit_actions_per_period_and_others_are_not_counted():
    limit = RateLimit(3, period=60)
    assert [limit.allow("vera", t) for t in (0, 1, 2, 3, 59)] == [True, True, True, False, False]
    assert limit.allow("ivo", 3)  # another member has their own window
    assert limit.allow("vera", 60) and not limit.allow("vera", 60.5)  # the first action left the window at 60
    assert limit.allow("vera", 61) and limit.allow("vera", 62)  # the refused ones did not count


def test_zero_means_no_limit():
    limit = RateLimit(0)
    assert all(limit.allow("vera", 0) for _ in range(1000))


def test_members_who_went_quiet_are_forgotten():
    limit = RateLimit(1, period=10)
    for n in range(SWEEP_EVERY - 1):
        limit.allow(f"poster {n}", 0)
    limit.allow("late", 100)  # the sweep runs: everyone else has been quiet for a whole period
    assert list(limit._times) == ["late"]


def test_take_says_how_long_until_the_window_has_room():
    rate = RateLimit(2, period=10.0)
    assert rate.take("hook", 0.0) == 0.0 and rate.take("hook", 3.0) == 0.0
    assert rate.take("hook", 4.0) == 6.0  # the first one leaves the window at 10
    assert rate.take("hook", 10.0) == 0.0  # counted now
    assert rate.take(42, 0.0) == 0.0  # keys need only be hashable (webhook ids are ints)
