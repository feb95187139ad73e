"""Task generators (batched, seeded, on any device). Tasks know nothing of models."""

from mem_tutorial.tasks.algorithmic import (  # noqa: E402
    TASKS,
    TaskBatch,
    associative_recall_task,
    bits_error,
    copy_task,
    cross_entropy_bits,
    priority_sort_task,
    repeat_copy_task,
)

__all__ = [
    "TASKS",
    "TaskBatch",
    "associative_recall_task",
    "bits_error",
    "copy_task",
    "cross_entropy_bits",
    "priority_sort_task",
    "repeat_copy_task",
]
