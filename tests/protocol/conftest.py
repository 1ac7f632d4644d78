"""Puts this folder on sys.path, so the codec tests import their helpers (`_support`) by
name although pytest runs with --import-mode=importlib."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
