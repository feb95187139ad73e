"""The course's models. Models compose ``mem_tutorial.memory`` mechanisms; no model imports another model."""
