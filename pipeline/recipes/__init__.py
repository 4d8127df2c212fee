"""The training recipes behind main.py, one task per module (see pipeline/__init__)."""
