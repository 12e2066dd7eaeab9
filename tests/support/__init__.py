"""Helpers shared by the e2e tests: polling, kubectl/helm runners, a test admission webhook."""
