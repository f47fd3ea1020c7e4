"""Builders shared by the unit and workflow tests (imported as ``tests.helpers.<module>``)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout under test
