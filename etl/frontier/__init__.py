"""The frontier: what is left to do in a run, and in which order. See base.py for the interface."""

from etl.frontier.base import Frontier, Remaining
from etl.frontier.local import LocalFrontier

__all__ = ["Frontier", "LocalFrontier", "Remaining"]
