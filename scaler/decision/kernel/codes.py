"""The small integers the compiled code uses for what the policy model names (it has no enums or strings)."""

from __future__ import annotations

from scaler.decision.reasons import Reason

# Metric kinds, window kinds, selectPolicy, rate-limit policy types.
UTILIZATION, LATENCY, ERROR_RATE, GAUGE = 0, 1, 2, 3
LAST, EWMA, MEAN, MAX, PERCENTILE, TREND, SEASONAL = 0, 1, 2, 3, 4, 5, 6
SELECT_MAX, SELECT_MIN, SELECT_DISABLED = 0, 1, 2
PODS, PERCENT = 0, 1

# A seasonal window's rows after its buckets (scaler.decision.kernel.seasonal): the bucket being filled (its
# number, the sum and count of its samples), what was worked out when the last bucket closed (correlation at the
# period, level ratio, recent level, headroom), and the previous sample; then the tick-to-tick changes.
S_BUCKET, S_SUM, S_COUNT, S_CORR, S_RATIO, S_LEVEL, S_HEADROOM, S_LAST = 0, 1, 2, 3, 4, 5, 6, 7
SEASONAL_ROWS = 8

MAX_SIGNAL_RATIO = 2.0  # a latency or error-rate metric asks for at most twice the replicas it is read on
LEGACY_WINDOW = 300.0  # HPA without behavior: --horizontal-pod-autoscaler-downscale-stabilization, seconds
SCALE_UP_FACTOR, SCALE_UP_MINIMUM = 2.0, 4.0  # HPA without behavior: at most max(2 x current, 4) per step

# Reason bits as plain ints.
NO_DATA, FALLBACK, IN_BAND = int(Reason.NO_DATA), int(Reason.FALLBACK), int(Reason.IN_BAND)
UP, DOWN, PARTIAL = int(Reason.METRIC_UP), int(Reason.METRIC_DOWN), int(Reason.PARTIAL_DATA_UP)
UP_STAB, DOWN_STAB = int(Reason.SCALE_UP_STABILIZED), int(Reason.SCALE_DOWN_STABILIZED)
UP_LIMIT, DOWN_LIMIT = int(Reason.SCALE_UP_LIMIT), int(Reason.SCALE_DOWN_LIMIT)
TOO_MANY, TOO_FEW = int(Reason.TOO_MANY_REPLICAS), int(Reason.TOO_FEW_REPLICAS)
UP_COOL, DOWN_COOL, PANIC = int(Reason.SCALE_UP_COOLDOWN), int(Reason.SCALE_DOWN_COOLDOWN), int(Reason.PANIC)
DISABLED, OUT_OF_RANGE = int(Reason.DISABLED), int(Reason.OUT_OF_RANGE)
