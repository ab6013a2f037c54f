"""Tests of ncsym.hamiltonian (a package so that module names never clash with tests/)."""
