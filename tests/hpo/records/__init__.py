"""Tests of hpo.records."""
