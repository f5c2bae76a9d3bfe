"""Tests of hpo.bench."""
