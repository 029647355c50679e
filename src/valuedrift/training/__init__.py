"""Post-training at checkpoint granularity with trl trainers (see segment.py)."""
