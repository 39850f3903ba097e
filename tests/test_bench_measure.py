"""The benchmarks' shared arithmetic: alternating rounds, median ratios, percentiles."""

from tests.benchmarks.measure import Goal, Series, alternate, percentile, ratio_line


def test_alternate_runs_each_measure_once_per_round_in_order():
    calls = []
    taken = alternate(
        {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0},
        rounds=3,
        report=None,
    )
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert taken["a"].values == [1.0, 1.0, 1.0]


def test_ratio_is_the_median_of_per_round_ratios():
    measured, floor = Series([2.0, 3.0, 10.0]), Series([2.0, 2.0, 4.0])
    line = ratio_line("r", measured, floor, goal=Goal.at_most(1.1))
    # per round: 1.0, 1.5, 2.5; the median is 1.5, over the goal.
    assert line.startswith("r: 1.50 (median of 3 alternating runs: 1.00, 1.50, 2.50")
    assert "MISSED" in line
    assert "too noisy to trust" in line


def test_a_tight_series_at_its_goal_is_trusted():
    line = ratio_line(
        "r", Series([1.0, 1.05, 1.1]), Series([1.0, 1.0, 1.0]), goal=Goal.at_least(0.5)
    )
    assert line.endswith("goal >= 0.5) ok")
    assert "noisy" not in line


def test_a_median_just_short_of_its_goal_is_shown_with_one_more_digit():
    line = ratio_line(
        "r", Series([0.699, 0.698, 0.701]), Series([1.0, 1.0, 1.0]), goal=Goal.at_least(0.7)
    )
    assert line.startswith("r: 0.699 (median of 3 alternating runs: 0.699, 0.698, 0.701")
    assert line.endswith("MISSED")
    met = ratio_line("r", Series([0.701] * 3), Series([1.0] * 3), goal=Goal.at_least(0.7))
    assert met.startswith("r: 0.70 (") and met.endswith("ok")


def test_fewer_than_three_runs_is_flagged():
    assert "fewer than 3 runs" in ratio_line("r", Series([1.0]), Series([1.0]))


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0
