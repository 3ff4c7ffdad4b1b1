"""The soak benchmark's pure arithmetic: buckets, tenths, percentiles, the verdicts."""

from __future__ import annotations

from bench.soak_bench import (
    Sample,
    bucket_stats,
    compare_tenths,
    interval_rows,
    pending_bounded,
    percentile,
    tenth_edges,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_tenths_cover_first_to_last_and_count_every_point_once() -> None:
    times = [float(t) for t in range(101)]  # 0..100 s, one order a second
    edges = tenth_edges(times)
    assert edges[0] == 0 and edges[-1] == 100 and len(edges) == 11
    tenths = bucket_stats(times, [1.0] * len(times), edges)
    assert sum(t["orders"] for t in tenths) == len(times)  # the last bucket is closed
    assert [t["orders"] for t in tenths] == [10] * 9 + [11]
    assert tenths[0]["orders_per_s"] == 1.0


def test_compare_tenths_flat_within_15_percent() -> None:
    def tenth(rate: float, p99: float) -> dict:
        return {"orders_per_s": rate, "p99_ms": p99}

    flat = compare_tenths([tenth(1000, 50)] + [tenth(900, 60)] * 8 + [tenth(860, 70)])
    assert flat["last_over_first"] == 0.86 and flat["verdict"] == "flat"
    assert flat["p99_first_tenth_ms"] == 50 and flat["p99_last_tenth_ms"] == 70
    slower = compare_tenths([tenth(1000, 50)] + [tenth(900, 60)] * 8 + [tenth(840, 70)])
    assert slower["verdict"] == "NOT FLAT"


def test_pending_bounded() -> None:
    assert pending_bounded([500] * 20, drained=True)
    assert pending_bounded([3000] * 10 + [5900] * 10, drained=True)  # within twice the start
    assert not pending_bounded([3000] * 10 + [7000] * 10, drained=True)
    assert pending_bounded([100] * 10 + [1900] * 10, drained=True)  # under the floor
    assert not pending_bounded([500] * 20, drained=False)


def test_interval_rows_take_deltas_between_samples() -> None:
    def sample(at: float, decided: int, pg: float) -> Sample:
        return Sample(at, decided, pg, 0.0, 0.0, 0, 10, 10, 5, 2**20, 0, 3, 2**19)

    samples = [sample(0, 0, 1.0), sample(10, 1000, 2.0), sample(20, 3000, 2.5)]
    times = [i * 0.01 for i in range(1000)] + [10 + i * 0.005 for i in range(2000)]
    rows = interval_rows(samples, times, [float(i % 100) for i in range(len(times))])
    assert [r["orders_per_s"] for r in rows] == [100.0, 200.0]
    assert [r["pg_ms_per_order"] for r in rows] == [1.0, 0.25]
    assert rows[0]["p99_ms"] == 98 and rows[1]["outbox_mb"] == 1.0
