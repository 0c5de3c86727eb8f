"""The built-in synthetic problem (``landform.synthetic``) as a task: ``landform demo synthetic`` fits Θ and
compares it with the baseline in seconds. Registered like any other task, with no special case."""

from landform.tasks import Task, register

register(Task("synthetic", "the built-in synthetic problem: fit Θ, then compare (seconds)",
              demo="landform.tasks.synthetic.task:demo"))
