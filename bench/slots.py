"""Benchmark the availability engine against the cost of merely enumerating candidate starts.

1,000 mentors x 28 days, 2 windows a day, 6 busy intervals a day, 60-minute service, 15-minute step.
Run: .venv/bin/python bench/slots.py [--mentors N] [--days N] [--repeat N]

Two lower bounds are timed in the same run, both building the same candidate grid (every start
of every mentor's windows whose session fits, no busy check, no union):
* "grid (datetime)": the straightforward way, windows converted with zoneinfo and starts as
  datetimes;
* "grid (int)": the cheapest way we know, windows as integer microseconds and `range`.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from syncd import availability
from syncd.availability import (
    Interval,
    MentorAvailability,
    ServiceRules,
    WeeklyRule,
    compute_slots,
)

ZONES = ("Europe/Madrid", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
NOW = datetime(2024, 5, 6, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def build_mentor(index: int, days: int, rng: random.Random) -> MentorAvailability:
    """Two windows every day, shifted per mentor, and six busy intervals a day of 15-120 min."""
    shift = rng.randrange(-4, 5) * 15
    morning = (_wall(9 * 60 + shift), _wall(12 * 60 + shift))
    afternoon = (_wall(13 * 60 + shift), _wall(18 * 60 + shift))
    weekly = tuple(
        WeeklyRule(weekday, opens, closes)
        for weekday in range(7)
        for opens, closes in (morning, afternoon)
    )
    busy = []
    for day in range(days + 1):
        midnight = NOW + timedelta(days=day)
        for _ in range(6):
            start = midnight + timedelta(minutes=rng.randrange(0, 24 * 60, 5))
            busy.append(Interval(start, start + timedelta(minutes=rng.randrange(15, 121, 15))))
    return MentorAvailability(
        f"mentor-{index:04d}", ZONES[index % len(ZONES)], weekly, busy=tuple(busy)
    )


def _wall(minute_of_day: int) -> time:
    return time(minute_of_day // 60, minute_of_day % 60)


def local_days(zone: ZoneInfo, start: datetime, end: datetime) -> list[date]:
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def grid_datetimes(
    mentors: list[MentorAvailability], rules: ServiceRules, start: datetime, end: datetime
) -> int:
    """Every candidate start as a datetime, straight from the rules; returns how many.

    The bench's windows never cross midnight, so closing times are read on the same day.
    """
    candidates: list[datetime] = []
    for mentor in mentors:
        zone = ZoneInfo(mentor.timezone)
        for day in local_days(zone, start, end):
            for rule in mentor.weekly:
                if rule.weekday != day.weekday():
                    continue
                opens = datetime.combine(day, rule.start, zone).astimezone(UTC)
                closes = datetime.combine(day, rule.end, zone).astimezone(UTC)
                first, stop = _clipped(opens, closes - rules.duration, rules.step, start, end)
                candidates.extend(opens + rules.step * k for k in range(first, stop))
    return len(candidates)


def _clipped(
    opens: datetime, last: datetime, step: timedelta, start: datetime, end: datetime
) -> tuple[int, int]:
    """Step numbers k with opens + k * step in [start, end) and not after ``last``."""
    first = max(0, -((opens - start) // step))
    stop = min((last - opens) // step + 1, -((opens - end) // step))
    return first, max(first, stop)


def grid_ints(
    mentors: list[MentorAvailability], rules: ServiceRules, start: datetime, end: datetime
) -> int:
    """Every candidate start as integer microseconds via `range`; returns how many."""
    step, duration = rules.step // MICROSECOND, rules.duration // MICROSECOND
    low, high = (start - EPOCH) // MICROSECOND, (end - EPOCH) // MICROSECOND
    candidates: list[int] = []
    for mentor in mentors:
        zone = ZoneInfo(mentor.timezone)
        for day in local_days(zone, start, end):
            for rule in mentor.weekly:
                if rule.weekday != day.weekday():
                    continue
                opens = (datetime.combine(day, rule.start, zone) - EPOCH) // MICROSECOND
                closes = (datetime.combine(day, rule.end, zone) - EPOCH) // MICROSECOND
                first = opens if opens >= low else opens - (opens - low) // step * step
                candidates.extend(range(first, min(closes - duration + 1, high), step))
    return len(candidates)


def engine(
    mentors: list[MentorAvailability], rules: ServiceRules, start: datetime, end: datetime
) -> int:
    """Mentor-slots offered (a slot free for three mentors counts three)."""
    # Measure a cold engine: its wall-time conversion cache would otherwise be warm from the
    # previous repeat.
    availability._wall_to_micros.cache_clear()
    slots = compute_slots(rules, mentors, NOW, start, end)
    return sum(len(slot.mentors) for slot in slots)


def best_times(runs: dict[str, Callable[[], int]], repeat: int) -> dict[str, tuple[float, int]]:
    """Best wall time and result of each run; repeats interleave so load swings hit all alike."""
    best: dict[str, tuple[float, int]] = {name: (float("inf"), 0) for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            began = clock.perf_counter()
            count = run()
            elapsed = clock.perf_counter() - began
            best[name] = (min(best[name][0], elapsed), count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mentors", type=int, default=1000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(20240506)
    mentors = [build_mentor(i, args.days, rng) for i in range(args.mentors)]
    rules = ServiceRules(
        duration=timedelta(minutes=60),
        step=timedelta(minutes=15),
        horizon=timedelta(days=args.days),
    )
    start, end = NOW, NOW + timedelta(days=args.days)

    results = best_times(
        {
            "engine": lambda: engine(mentors, rules, start, end),
            "grid (datetime)": lambda: grid_datetimes(mentors, rules, start, end),
            "grid (int)": lambda: grid_ints(mentors, rules, start, end),
        },
        args.repeat,
    )
    engine_s = results["engine"][0]
    print(f"python {platform.python_version()} on {platform.machine()}, best of {args.repeat}")
    print(f"{args.mentors} mentors x {args.days} days")
    for name, (seconds, count) in results.items():
        unit = "slots" if name == "engine" else "candidate starts"
        print(f"{name:16} {seconds:7.3f} s {count:>9} {unit:16} {count / seconds:>12,.0f} /s")
    for name, (seconds, _) in results.items():
        if name != "engine":
            print(f"engine / {name} = {engine_s / seconds:.2f}x")


if __name__ == "__main__":
    main()
