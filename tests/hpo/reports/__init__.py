"""Tests of hpo.reports."""
