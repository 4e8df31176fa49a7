"""A local stand-in for a Kubernetes cluster, for tests and the demo.

- `apiserver.ApiServer`: a small core/v1 API server (aiohttp) with watch history, selectors,
  strict schema validation, bearer-token RBAC modelled on the Zero-to-JupyterHub hub Role,
  and pod graceful deletion.
- `kubelet` and `runtime`: a kubelet that watches that server over HTTP and runs pods as
  local processes.
- `cluster.Sandbox`: starts both and writes a kubeconfig.

Nothing here is imported by the spawner itself.
"""
