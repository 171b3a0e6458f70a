"""Seeded generators of demo regions with known ground truth."""
