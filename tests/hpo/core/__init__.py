"""Tests of hpo.core."""
