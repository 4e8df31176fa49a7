"""A local stand-in for a Kubernetes cluster, for tests and the demo.

- `apiserver.ApiServer`: a small core/v1 API server (aiohttp) with watch history, selectors,
  strict schema validation, bearer-token RBAC modelled on the Zero-to-JupyterHub hub Role,
  and pod graceful deletion. Its rooms: `resources` (kinds, targets, errors), `storage`
  (objects, resourceVersions, watch), `matching` (selectors), `rbac`, `validation`, `routes`
  (HTTP) and `faults` (errors, drops, late answers, broken watches and restarts on request,
  through an admin-only route, for the fault tests).
- `kubelet`: a kubelet that watches that server over HTTP and runs pods as local processes.
  Its rooms: `kubeclient` (requests, list-and-watch), `pod` and `podstatus` (a pod's lifecycle
  and what is reported about it), `volumes`, `podips` (the pod address pool).
- The container runtime: `runtime` (kubelet side: a container's config), `shim` (run as a
  script: namespaces, init, signals), `rootfs` (the container root) and `subpath` (both sides).
- `cluster.Sandbox`: starts both and writes a kubeconfig.

Nothing here is imported by the spawner itself.
"""
