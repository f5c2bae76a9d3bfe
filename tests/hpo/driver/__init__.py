"""Tests of hpo.driver."""
