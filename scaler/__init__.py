"""scaler: metrics-driven autoscaling and disaster-recovery controller."""

__version__ = "0.1.0"
