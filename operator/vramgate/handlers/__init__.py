"""kopf handlers, thin on purpose: they call `decision`, `manifests` and `spec`, and talk to the API.

`admission` answers the validating webhook, `reconcile` keeps each LLMDeployment's Deployment and
Service as planned, `status` computes the status block (pure), `kube` wraps the API calls, `webhook`
builds the webhook server for the configured mode.
"""
