"""Task generators (batched, seeded, on any device). Tasks know nothing of models."""
