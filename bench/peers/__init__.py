"""Side-by-side runners: one per system, each run as a script in its own virtual environment."""
