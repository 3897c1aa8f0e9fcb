"""A run's life after intake: schedule, hand-out, tasks, mirror, pipeline, report back."""
