"""Helpers shared by the e2e tests and the demo: the local control plane, its PKI, fake GPU nodes,
polling, kubectl/helm runners, a test admission webhook. Never part of the wheel or the image."""
