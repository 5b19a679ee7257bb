"""`scaler tune`: the grid of candidates, the split in time, the choosing rule, and the policy file it writes."""

from dataclasses import replace

import numpy as np
import pytest
import yaml

from scaler.decision.params import params_of
from scaler.policy.load import load_policy
from scaler.recordings.load import load_recording
from scaler.simulate.baseline import hpa_baseline
from scaler.simulate.grid import MAX_CANDIDATES, apply, grid, parse_grid
from scaler.simulate.judge import Curve, Point
from scaler.simulate.sweep import Runner
from scaler.simulate.tune import Part, rank, split, tune
from scaler.simulate.tunereport import rows, tuned_document, write_all
from scaler.simulate.world import World
from tests.conftest import ROOT, make_policy

WEB = ROOT / "policies" / "web.yaml"
TRACE = ROOT / "scaler" / "data" / "ec2_cpu_utilization_5f5533.csv"


def same_params(a, b) -> bool:
    pa, pb = params_of(a), params_of(b)
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(pa, pb, strict=True))


def days(n: float):
    rec = load_recording(TRACE, metric="cpu")
    keep = rec.times < rec.times[0] + n * 86400
    return replace(rec, times=rec.times[keep], metrics={k: v[:, keep] for k, v in rec.metrics.items()})


# ---------------------------------------------------------------------------------------------- the grid


def test_the_default_grid_varies_what_matters_and_starts_with_the_policy_as_written():
    web = load_policy(WEB)
    g = grid(web)
    axes = dict(g.axes)
    assert axes["target"] == (0.85, 0.92, 1.0, 1.08)
    assert axes["down_stabilization"] == (0.0, 60.0, 300.0, 900.0)  # web's own 1m is among the defaults
    assert axes["down_cooldown"] == (0.0, 120.0) and axes["up_cooldown"] == (0.0,)
    assert len(g.candidates) == 4 * 3 * 2 * 4 * 1 * 2 * 1 == 192
    assert g.candidates[0].policy is web and g.changes(0) == ""
    assert "192 candidates" in g.describe() and "down_stabilization 0s, 1m, 5m, 15m" in g.describe()
    for c in g.candidates[1:]:
        assert not same_params(c.policy, web)


def test_a_candidate_moves_the_cpu_band_with_its_target_and_keeps_the_rest():
    web = load_policy(WEB)
    # 70 % target, band 68-80: x0.9 -> 63, 61.2-72; up x1.06 on top -> 76.32
    c = apply(web, {"target": 0.9, "up": 1.06, "down_stabilization": 900.0, "down_cooldown": 120.0})
    # the CPU and its daily forecast (the same query, so the same CPU) move together
    for cpu in c.metrics[:2]:
        assert (cpu.target, cpu.scale_up_above, cpu.scale_down_below) == (63.0, 76.32, 61.2)
    assert c.metrics[1].window == web.metrics[1].window
    # memory is a utilization too, but not the CPU the recording replays; latency and error rate are no
    # utilization at all: all three as written
    assert [m.name for m in c.metrics[2:]] == ["memory", "p95_latency", "error_rate"]
    assert c.metrics[2:] == web.metrics[2:]
    assert (c.behavior.scale_down.stabilization, c.behavior.scale_down.cooldown) == (900.0, 120.0)
    assert c.behavior.scale_up == web.behavior.scale_up and c.panic == web.panic


def test_a_policy_without_behavior_gets_the_defaults_written_out_with_the_new_window():
    p = make_policy(behavior=None)
    c = apply(p, {"down_stabilization": 60.0})
    assert c.behavior.scale_down.stabilization == 60.0
    assert c.behavior.scale_down.policies == p.effective_behavior.scale_down.policies


def test_combinations_the_model_refuses_are_left_out_and_counted():
    # band 65-78: up x0.8 -> 62.4 is below down 65 (and below down x1.1 -> 71.5): an upside-down band
    g = grid(load_policy(WEB), parse_grid(["up=0.8,1", "down=1,1.1", "target=1", "down_stabilization=1m",
                                           "down_cooldown=0s"]))
    assert [g.changes(k) for k in range(len(g.candidates))] == ["", "down x1.1"]
    assert [d[0].split(", ")[1:3] for d in g.dropped] == [["up x0.8", "down x1"], ["up x0.8", "down x1.1"]]
    assert "must not exceed" in g.dropped[0][1] and "2 combinations outside" in g.describe()


@pytest.mark.parametrize("spec, said", [
    (["speed=1,2"], "AXIS one of target, up, down"),
    (["target"], "expected AXIS=V1,V2"),
    (["target=0.9,x"], "could not convert"),
    (["target=0"], "a factor must be above 0"),
    (["down_stabilization=5 minutes"], "cannot read"),
    (["target=1", "target=2"], "given twice"),
    (["up="], "no values"),
], ids=["unknown-axis", "no-values-sign", "not-a-number", "zero-factor", "bad-duration", "twice", "empty"])
def test_a_bad_grid_option_is_one_message_naming_it(spec, said):
    with pytest.raises(ValueError, match=said):
        parse_grid(spec)


def test_an_axis_the_algorithm_does_not_read_is_refused():
    hpa = hpa_baseline(load_policy(WEB))  # legacy HPA: no band, no cooldowns, fixed windows
    assert [name for name, _ in grid(hpa).axes] == ["target"]
    with pytest.raises(ValueError, match="up does not apply to hpa-baseline"):
        grid(hpa, parse_grid(["up=1.1"]))
    with pytest.raises(ValueError, match="has no utilization metric"):
        grid(load_policy(ROOT / "policies" / "worker.yaml"))
    with pytest.raises(ValueError, match=f"more than {MAX_CANDIDATES:,}"):
        grid(load_policy(WEB), parse_grid([f"target={','.join(str(1 + i / 100) for i in range(60))}",
                                           "down_stabilization=0s,1m,2m,3m,4m,5m,6m,7m,8m,9m"]))


# ---------------------------------------------------------------------------------------------- split and rule


def test_the_recording_splits_in_time():
    rec = days(14)
    early, late = split(rec, 0.5)
    assert len(early.times) + len(late.times) == len(rec.times)
    assert early.times[-1] < rec.start + 7 * 86400 <= late.times[0]
    with pytest.raises(ValueError, match="between 0 and 1"):
        split(rec, 1.0)


def part(*points: tuple[float, float]) -> Part:
    # HPA's curve: 100 replica-h -> 10 h violated, 120 -> 5 h, 140 -> 2 h
    curve = Curve(tuple(Point(f"hpa-{t}", c, v) for t, (c, v) in zip((90, 70, 50), ((100, 10), (120, 5), (140, 2)),
                                                                        strict=True)), (90.0, 70.0, 50.0))
    return Part("choose", 0.0, 1.0, tuple(Point(f"c{k}", c, v) for k, (c, v) in enumerate(points)), curve,
                Point("hpa", 120, 5))


def test_the_rule_picks_the_most_violation_time_saved_against_hpa_at_equal_cost():
    # the HPA-equivalent: 120 replica-h, 5 h violated
    p = part((110, 4.0),   # HPA at 110 replica-h: 7.5 h -> saves 3.5 h
             (130, 0.0),   # HPA 3.5 h -> saves 3.5 h too, but dearer than candidate 0
             (150, 0.0),   # dearer than HPA's dearest point: the curve says nothing there
             (90, 12.0),   # cheaper than HPA's cheapest point, but violates more than it: -2 h
             (125, 1.0),   # HPA 4.25 h -> saves 3.25 h
             (105, 6.0),   # HPA 8.75 h -> saves 2.75 h, but violates longer than the HPA-equivalent
             (115, 7.0))   # HPA 6.25 h: 0.75 h above the curve
    assert [round(p.margin(k), 2) for k in range(7)] == [3.5, 3.5, 2.0, -2.0, 3.25, 2.75, -0.75]
    assert [p.qualifies(k) for k in range(7)] == [True, True, False, False, True, False, False]
    assert rank(p) == [0, 1, 4]


def test_tune_chooses_on_the_earlier_part_and_keeps_it_only_if_it_holds_on_the_later(tmp_path):
    web = load_policy(WEB)
    g = grid(web, parse_grid(["target=0.92,1,1.08", "up=0.94,1", "down=1", "down_stabilization=0s,1m,5m",
                              "down_cooldown=0s"]))
    rec = days(4)
    world = World(recorded_replicas=13.1)
    t = tune(web, rec, world, g, Runner())
    assert t.chosen == (rank(t.choose)[0] if rank(t.choose) else None)
    assert t.holds == (t.chosen is not None and t.check.qualifies(t.chosen))
    assert t.result is (g.candidates[t.chosen].policy if t.holds else t.hpa)
    # the figures are those of `scaler simulate` on each part
    from scaler.simulate.replay import simulate

    early, late = split(rec, 0.5)
    w = world.model_copy(update={"slo": web.slo})
    for part_rec, p in ((early, t.choose), (late, t.check)):
        r = simulate(web, part_rec, w, record=False)
        assert (p.points[0].replica_hours, p.points[0].violation_hours) == (
            float(np.sum(r.replica_hours)), float(np.sum(r.slo_violation_seconds)) / 3600)
    table = rows(t)
    assert table[0][1] == "the policy as written" and table[-1][0] == "hpa"
    assert (t.chosen is None) or any(r[0] == f"{t.chosen}*" for r in table)

    # what it writes reads back as the policy it chose, or as the HPA-equivalent when nothing held
    for tuning in (t, replace(t, holds=False, result=t.hpa)):
        out = tmp_path / ("beats" if tuning.beats_hpa else "hpa")
        written = write_all(tuning, out, source=WEB, recording=str(TRACE))
        assert [p.name for p in written] == ["tuned.yaml", "candidates.csv", "tune.png"]
        back = load_policy(out / "tuned.yaml")
        assert same_params(back, tuning.result)
        assert back.algorithm == ("scaler" if tuning.beats_hpa else "hpa")
        lines = (out / "candidates.csv").read_text().splitlines()
        assert len(lines) == 1 + len(g.candidates) + 1 + len(t.choose.curve.points)


def test_the_tuned_file_is_the_original_content_with_the_chosen_values():
    web = load_policy(WEB)
    chosen = apply(web, {"target": 0.92, "down_stabilization": 900.0, "down_cooldown": 120.0})
    raw = yaml.safe_load(WEB.read_text())
    doc = tuned_document(raw, web, chosen)
    for k in (0, 1):  # the CPU and its daily forecast
        assert doc["metrics"][k]["target"] == 64.4 and doc["metrics"][k]["scale_up_above"] == 73.6
        assert doc["metrics"][k]["query"] == raw["metrics"][k]["query"]
    assert doc["metrics"][1]["window"] == raw["metrics"][1]["window"] == {
        "type": "seasonal", "period": "1d", "lead": "90s", "min_correlation": 0.7}
    assert doc["metrics"][2:] == raw["metrics"][2:]
    assert doc["behavior"]["scale_down"] == {**raw["behavior"]["scale_down"], "stabilization": "15m",
                                             "cooldown": "2m"}
    assert doc["interval"] == "15s" and doc["panic"] == raw["panic"] and doc["slo"] == raw["slo"]
    assert raw["metrics"][0]["target"] == 70  # the original mapping is left as it was
    assert same_params(load_policy_from(doc), chosen)


def load_policy_from(doc: dict):
    from scaler.policy.model import Policy

    return Policy.model_validate(doc)
