"""Development helpers: a real local Kubernetes control plane and fake GPU nodes.

Shipped in the package (like ``kopf.testing``) so that the e2e tests and the demo share
one implementation, but imported only by them; the operator itself never imports it.
Import from the submodules (``controlplane``, ``gpunodes``, ``pki``): this package
imports nothing itself, so ``python -m vramgate.testing.controlplane`` runs cleanly.
"""
