"""Kubernetes-emulator fixtures (filled in with the operator tests)."""
