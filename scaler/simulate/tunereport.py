"""What `scaler tune` shows and writes: the table, the tuned policy file, every candidate's figures (CSV) and the
plot of the checking part's cost/violation points against HPA's curve."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from scaler import yamlio
from scaler.policy.model import MetricKind, Policy
from scaler.simulate.grid import BY_NAME
from scaler.simulate.tune import Part, Tuning, rank
from scaler.units import format_duration, parse_duration

TOP = 5
"""Qualifying candidates shown in the table besides the policy as written and the chosen one."""


def day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def span(part: Part) -> str:
    """'2021-08-08 00:00 - 2021-08-15 00:00 (7.0 days)'."""
    return f"{day(part.start)} - {day(part.end)} ({(part.end - part.start) / 86400:.1f} days)"


COLUMNS = ("#", "settings", "choose: replica-h", "SLO violated", "HPA at equal cost", "check: replica-h",
           "SLO violated ", "HPA at equal cost ", "beats HPA")


def rows(t: Tuning, *, top: int = TOP) -> list[tuple[str, ...]]:
    """The table: the policy as written, the chosen candidate (marked *), the next best by the rule, then the
    HPA-equivalent; each with both parts' replica-hours, SLO violation, HPA's at equal cost, and whether it
    beats HPA on the checking part (scaler.simulate.tune: what "beats" means)."""
    shown = [0] + ([t.chosen] if t.chosen is not None else []) + rank(t.choose)[:top + 1]
    out = []
    for k in dict.fromkeys(shown):
        a, b = t.choose.verdict(k), t.check.verdict(k)
        mark = "*" if k == t.chosen else ""
        out.append((f"{k}{mark}", t.grid.changes(k) or "the policy as written",
                    f"{a.point.replica_hours:.1f}", f"{a.point.violation_hours:.2f} h", f"{a.hpa_at_equal_cost:.2f} h",
                    f"{b.point.replica_hours:.1f}", f"{b.point.violation_hours:.2f} h", f"{b.hpa_at_equal_cost:.2f} h",
                    "yes" if t.check.qualifies(k) else "no"))
    h1, h2 = t.choose.hpa, t.check.hpa
    out.append(("hpa", f"HPA-equivalent ({t.hpa.name})", f"{h1.replica_hours:.1f}", f"{h1.violation_hours:.2f} h",
                "", f"{h2.replica_hours:.1f}", f"{h2.violation_hours:.2f} h", "", ""))
    return out


def curve_text(part: Part) -> str:
    """'30 %: 1569 replica-h, 0.87 h; 40 %: ...'."""
    return "; ".join(f"{t:g} %: {p.replica_hours:.0f} replica-h, {p.violation_hours:.2f} h"
                     for t, p in zip(part.curve.targets, part.curve.points, strict=True))


def write_all(t: Tuning, out: Path, *, source: Path, recording: str) -> list[Path]:
    """tuned.yaml, candidates.csv and tune.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    return [write_policy(t, out / "tuned.yaml", source=source, recording=recording),
            write_candidates(t, out / "candidates.csv"), write_plot(t, out / "tune.png", recording=recording)]


# ---------------------------------------------------------------------------------------------- the policy file


def write_policy(t: Tuning, path: Path, *, source: Path, recording: str) -> Path:
    """The tuned policy as a policy file: the original file's content (its comments aside) with the chosen
    values in place, or the HPA-equivalent written out when nothing beat HPA. The header says which."""
    if t.beats_hpa:
        doc = tuned_document(yamlio.read_yaml(source), t.policy, t.result)
        what = (f"{t.policy.name} tuned by `scaler tune` on {Path(recording).name}: candidate {t.chosen} "
                f"({t.grid.changes(t.chosen) or 'as written'}), chosen on {span(t.choose)}, checked on {span(t.check)}")
    else:
        doc = policy_document(t.result)
        what = (f"the HPA-equivalent of {t.policy.name}: `scaler tune` on {Path(recording).name} found no "
                f"setting that beats HPA's cost/violation curve (checked on {span(t.check)})")
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 16)  # long queries on one line
    text = "".join(f"# {line}\n" for line in _wrap(what)) + body
    path.write_text(text)
    return path


def tuned_document(raw: object, original: Policy, chosen: Policy) -> dict:
    """The original policy file's mapping with every setting that differs in `chosen` written in: the CPU's
    target and band, stabilization windows, cooldowns. An HPA manifest is not a policy file: then the chosen
    policy is written out whole."""
    if not isinstance(raw, dict) or raw.get("kind") == "HorizontalPodAutoscaler":
        return policy_document(chosen)
    doc = dict(raw)
    doc["metrics"] = [dict(m) for m in raw["metrics"]]
    for i, (was, now) in enumerate(zip(original.metrics, chosen.metrics, strict=True)):
        if was.kind != MetricKind.utilization:
            continue
        m = doc["metrics"][i]
        if now.target != was.target:
            m["target"] = now.target
        if original.algorithm == "scaler":
            if now.up_threshold != was.up_threshold:
                m["scale_up_above"] = now.up_threshold
            if now.down_threshold != was.down_threshold:
                m["scale_down_below"] = now.down_threshold
    before, after = original.effective_behavior, chosen.effective_behavior
    for direction in ("scale_up", "scale_down"):
        a, b = getattr(before, direction), getattr(after, direction)
        changed = {f: getattr(b, f) for f in ("stabilization", "cooldown") if getattr(a, f) != getattr(b, f)}
        if not changed:
            continue
        behavior = doc["behavior"] = dict(doc.get("behavior") or {})
        if direction not in behavior:  # the model's default direction, written out
            behavior[direction] = b.model_dump(mode="json")
        else:
            behavior[direction] = dict(behavior[direction])
            behavior[direction].update({f: _duration(v) for f, v in changed.items()})
    return doc


def policy_document(policy: Policy) -> dict:
    """A policy as the mapping a policy file holds (no unset fields)."""
    return policy.model_dump(mode="json", exclude_none=True)


def _duration(seconds: float) -> str | float:
    """'15m' where that reads back exactly, else the seconds."""
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else seconds


def _wrap(text: str, width: int = 116) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


# ---------------------------------------------------------------------------------------------- figures


def write_candidates(t: Tuning, path: Path) -> Path:
    """One row per candidate, then the HPA-equivalent and HPA's curve: settings and both parts' figures."""
    axes = [name for name, _ in t.grid.axes]
    header = ["candidate", "kind", *axes]
    for part in ("choose", "check"):
        header += [f"{part}_replica_hours", f"{part}_violation_hours", f"{part}_hpa_at_equal_cost"]
    header += ["choose_beats_hpa", "check_beats_hpa", "chosen"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for k, c in enumerate(t.candidates):
            settings = dict(c.settings)
            row = [k, "as written" if k == 0 else "candidate", *(_plain(n, settings[n]) for n in axes)]
            for part in (t.choose, t.check):
                v = part.verdict(k)
                row += [f"{v.point.replica_hours:.3f}", f"{v.point.violation_hours:.4f}", f"{v.hpa_at_equal_cost:.4f}"]
            row += [int(t.choose.qualifies(k)), int(t.check.qualifies(k)), int(k == t.chosen)]
            w.writerow(row)
        # (policy names start with a letter or _, so a spreadsheet never reads one as a formula)
        hpa_rows = [(t.hpa.name, "hpa-equivalent", t.choose.hpa, t.check.hpa)]
        hpa_rows += [(f"hpa-{target:g}", "hpa-curve", a, b) for target, a, b in
                     zip(t.choose.curve.targets, t.choose.curve.points, t.check.curve.points, strict=True)]
        for name, kind, a, b in hpa_rows:
            w.writerow([name, kind, *([""] * len(axes)), f"{a.replica_hours:.3f}", f"{a.violation_hours:.4f}", "",
                        f"{b.replica_hours:.3f}", f"{b.violation_hours:.4f}", "", "", "", ""])
    return path


def _plain(axis: str, value: float) -> str:
    return f"{value:g}" if BY_NAME[axis].factor else format_duration(value)


def write_plot(t: Tuning, path: Path, *, recording: str) -> Path:
    """Two panels, the choosing part and the checking part: every candidate's replica-hours and SLO violation,
    the chosen one and the policy as written marked, and HPA's curve as a line through its CPU targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), squeeze=False)
    for ax, part in zip(axes[0], (t.choose, t.check), strict=True):
        pts = sorted(zip(part.curve.targets, part.curve.points, strict=True), key=lambda x: x[1].replica_hours)
        ax.plot([p.replica_hours for _, p in pts], [p.violation_hours for _, p in pts], "-o", color="0.2", ms=3,
                lw=1.2, label="HPA at CPU targets 30-95 % (its curve)", zorder=2)
        for target, p in pts:
            ax.annotate(f"{target:g}", (p.replica_hours, p.violation_hours), fontsize=6, color="0.35",
                        xytext=(3, 3), textcoords="offset points")
        below = [k for k in range(len(part.points)) if part.at_or_below(k)]
        above = [k for k in range(len(part.points)) if not part.at_or_below(k)]
        for ks, color, label in ((above, "tab:orange", "candidates above HPA's curve"),
                                 (below, "tab:blue", "candidates at or below it")):
            ax.scatter([part.points[k].replica_hours for k in ks], [part.points[k].violation_hours for k in ks],
                       s=9, color=color, alpha=0.55, lw=0, label=f"{label} ({len(ks)})", zorder=3)
        w = part.points[0]
        ax.scatter([w.replica_hours], [w.violation_hours], marker="s", s=40, facecolor="none", edgecolor="tab:green",
                   lw=1.5, label="the policy as written", zorder=4)
        ax.scatter([part.hpa.replica_hours], [part.hpa.violation_hours], marker="^", s=45, color="black",
                   label="the HPA-equivalent", zorder=4)
        if t.chosen is not None:
            c = part.points[t.chosen]
            ax.scatter([c.replica_hours], [c.violation_hours], marker="*", s=170, color="tab:red", zorder=5,
                       label=f"chosen: candidate {t.chosen}")
        name = "choosing part" if part is t.choose else "checking part"
        ax.set_title(f"{name}: {span(part)}", fontsize=10)
        ax.set_xlabel("replica-hours")
        ax.set_ylabel("SLO violated (hours)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        # HPA's cheapest point (95 %) can violate ten times as long as the rest: keep the view on the marks
        marks = [part.points[0], part.hpa] + ([part.points[t.chosen]] if t.chosen is not None else [])
        typical = float(np.percentile([p.violation_hours for p in part.points], 90))
        ax.set_ylim(0, max([typical] + [p.violation_hours for p in marks]) * 1.25 + 1e-9)
    verdict = "beats HPA's curve on the checking part" if t.beats_hpa else "nothing beats HPA: the HPA-equivalent"
    fig.suptitle(f"scaler tune {t.policy.name} on {Path(recording).name}: {len(t.candidates)} candidates; {verdict}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
