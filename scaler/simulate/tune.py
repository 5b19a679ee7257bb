"""`scaler tune`: fit a policy to a recording. Choose on the earlier part, check on the later part, and keep
the choice only if it beats HPA there too; otherwise the HPA-equivalent.

The rule. HPA's curve is the HPA baseline at CPU targets 30-95 %, its SLO-violation time read at equal
replica-hours (scaler.simulate.judge); the HPA-equivalent is the HPA manifest a team would write for the
workload, at the policy's own targets (scaler.simulate.baseline). A candidate's margin is HPA's violation time
at the candidate's replica-hours minus its own: the violation time it saves at equal cost. On a part of the
recording a candidate qualifies when
  - its margin is at least 0 (it is at or below HPA's curve),
  - it violates the SLO no longer than the HPA-equivalent does, and
  - it costs no more than the curve's dearest point (beyond it the curve says nothing).
On the choosing part the qualifying candidate with the largest margin is chosen (ties: fewer replica-hours, then
the earlier candidate). It is the result only if it qualifies on the checking part too, read afresh there;
otherwise, or when nothing qualified, the result is the HPA-equivalent, and it says so.

Why this and not simpler rules: the least violation time outright is nearly always the dearest corner of the
grid, a point HPA reaches too by a lower CPU target; a cap at the HPA-equivalent's cost leaves a bursty
workload, whose better settings all cost more (a longer scale-down window), with nothing; and the margin alone
may pick a cheap point where HPA's curve is steep, saving a tenth of the replica-hours for ten times the SLO
violation. The margin says which settings do better than HPA at their cost; the second condition keeps the
result at least as good on the SLO as the HPA a team would otherwise run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from scaler.errors import DataError, Problem
from scaler.policy.model import Policy
from scaler.recordings.model import Recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.grid import Candidate, Grid
from scaler.simulate.judge import SWEEP_TARGETS, Curve, Point, Verdict, judge
from scaler.simulate.replay import Demand, demand_for
from scaler.simulate.sweep import Figures, Runner
from scaler.simulate.world import World

MIN_PART_SECONDS = 3600.0
"""Each part of the recording must span at least an hour of ticks: less says nothing about a policy."""


def split(rec: Recording, at: float) -> tuple[Recording, Recording]:
    """The recording before and from `at` (a fraction of its time span, 0 < at < 1): samples before
    start + at x span, and the rest. 14 days at 0.5: the first 7 days, then the last 7."""
    if not 0 < at < 1:
        raise ValueError(f"the split must lie between 0 and 1 (a fraction of the recording's span), got {at:g}")
    cut = rec.start + at * (rec.end - rec.start)
    early = rec.times < cut
    parts = []
    for keep in (early, ~early):
        parts.append(replace(rec, times=rec.times[keep], metrics={k: v[:, keep] for k, v in rec.metrics.items()},
                             replicas=None if rec.replicas is None else rec.replicas[:, keep]))
    return parts[0], parts[1]


@dataclass(frozen=True)
class Part:
    """One part of the recording: every candidate's point, HPA's curve and the HPA-equivalent's point."""

    name: str  # "choose" or "check"
    start: float
    end: float
    points: tuple[Point, ...]  # per candidate
    curve: Curve  # HPA at each CPU target
    hpa: Point  # the HPA-equivalent (the policy's own targets)

    def verdict(self, k: int) -> Verdict:
        return judge(self.points[k], self.curve)

    def margin(self, k: int) -> float:
        """Hours of SLO violation candidate k saves against HPA's curve at its cost (below 0: it loses)."""
        v = self.verdict(k)
        return v.hpa_at_equal_cost - v.point.violation_hours

    def at_or_below(self, k: int) -> bool:
        """Candidate k violates the SLO no longer than HPA's curve at its cost."""
        return self.margin(k) >= 0

    def qualifies(self, k: int) -> bool:
        """At or below HPA's curve, no longer in violation than the HPA-equivalent, and no dearer than the
        curve's dearest point (the rule in this module's docstring)."""
        p = self.points[k]
        dearest = max(q.replica_hours for q in self.curve.points)
        return p.replica_hours <= dearest and p.violation_hours <= self.hpa.violation_hours and self.at_or_below(k)


@dataclass(frozen=True)
class Tuning:
    """What `tune` found: the candidates, both parts, the choice and the policy to write."""

    policy: Policy  # as written
    grid: Grid
    hpa: Policy  # the HPA-equivalent
    choose: Part
    check: Part
    chosen: int | None  # the candidate the choosing part picked (None: none qualified)
    holds: bool  # the choice qualifies on the checking part too
    result: Policy  # the chosen candidate when it holds, else the HPA-equivalent

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self.grid.candidates

    @property
    def beats_hpa(self) -> bool:
        return self.chosen is not None and self.holds

    def ranked(self) -> list[int]:
        """Qualifying candidates on the choosing part, best first by the rule."""
        return rank(self.choose)

    def summary(self) -> str:
        """What was chosen and whether it held, in one or two plain sentences."""
        if self.chosen is None:
            return "No candidate beat HPA's curve on the choosing part: the result is the HPA-equivalent."
        v = self.check.verdict(self.chosen)
        what = self.grid.changes(self.chosen) or "the policy as written"
        first = f"Chosen on the choosing part: candidate {self.chosen} ({what})."
        h = self.check.hpa
        said = (f"{first} On the checking part it violates the SLO {v.point.violation_hours:.2f} h at "
                f"{v.point.replica_hours:.1f} replica-h; HPA's curve {v.hpa_at_equal_cost:.2f} h at that cost, the "
                f"HPA-equivalent {h.violation_hours:.2f} h at {h.replica_hours:.1f} replica-h")
        if self.holds:
            return f"{said}: it beats HPA there too, so it is the result."
        return f"{said}: it does not beat HPA there, so the result is the HPA-equivalent."


def tune(policy: Policy, rec: Recording, world: World, grid: Grid, runner: Runner, *, at: float = 0.5,
         hpa_targets: Sequence[float] = SWEEP_TARGETS,
         progress: Callable[[str], None] | None = None) -> Tuning:
    """Run every candidate of `grid` and HPA's curve on both parts of `rec` (split at `at`), and choose by the
    rule in this module's docstring. `runner` says where the compiled runs go (scaler.simulate.sweep)."""
    say = progress or (lambda text: None)
    world = world.model_copy(update={"slo": world.slo or policy.slo})  # one SLO judges every run
    early, late = split(rec, at)
    hpa = hpa_baseline(policy)
    curve_policies = [hpa] + [hpa_baseline(policy, cpu_target=float(t)) for t in hpa_targets]
    parts = []
    for name, part in (("choose", early), ("check", late)):
        say(f"{name}: {len(grid.candidates)} candidates and HPA at {len(hpa_targets)} CPU targets "
            f"{runner.describe()}")
        cands = _figures(runner, [c.policy for c in grid.candidates], part, world, name)
        hpas = _figures(runner, curve_policies, part, world, name)
        points = tuple(_point(c.policy.name, cands, k) for k, c in enumerate(grid.candidates))
        curve = Curve(tuple(_point(p.name, hpas, k) for k, p in enumerate(curve_policies[1:], start=1)),
                      tuple(float(t) for t in hpa_targets))
        parts.append(Part(name, float(part.times[0]), part.end, points, curve, _point(hpa.name, hpas, 0)))
    choose, check = parts
    ranked = rank(choose)
    chosen = ranked[0] if ranked else None
    holds = chosen is not None and check.qualifies(chosen)
    result = grid.candidates[chosen].policy if holds else hpa
    return Tuning(policy=policy, grid=grid, hpa=hpa, choose=choose, check=check, chosen=chosen, holds=holds,
                  result=result)


def rank(part: Part) -> list[int]:
    """The candidates that qualify on `part`, best first: the largest margin below HPA's curve, then the fewest
    replica-hours, then the earlier candidate."""
    qualified = [k for k in range(len(part.points)) if part.qualifies(k)]
    return sorted(qualified, key=lambda k: (-part.margin(k), part.points[k].replica_hours, k))


def _figures(runner: Runner, policies: list[Policy], rec: Recording, world: World, part: str) -> Figures:
    """The policies' figures on `rec`: one demand for all (they read the same metrics)."""
    if len(rec.times) == 0:
        raise DataError(rec.source, [Problem("", f"the {part} part has no samples: move --split")])
    demand: Demand = demand_for(policies[0], rec, world)
    seconds = len(demand.times) * policies[0].interval
    if seconds < MIN_PART_SECONDS:
        raise DataError(rec.source, [Problem("", f"the {part} part spans {seconds:g} s of ticks, less than an "
                                             "hour: move --split or give a longer recording")])
    return runner.figures(policies, demand, world)


def _point(name: str, f: Figures, k: int) -> Point:
    # as Point.of a run's result: replica-hours and SLO violation summed over the targets
    return Point(name, float(f.replica_hours[k]), float(f.violation_seconds[k]) / 3600)

