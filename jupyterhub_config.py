"""An example JupyterHub configuration for nfsuidspawner, for a hub that reaches a cluster.

The hub finds the cluster in-cluster, or through KUBECONFIG. Each login gets a
JupyterLab pod that mounts the user's directory from the NFS share (the PVC
hpc-shared-pvc, see helm-values/manifests/nfs-pv-pvc.yaml) and runs as the
directory's owner. Under Zero-to-JupyterHub, use helm-values/config.yaml instead.

Set an authenticator for your site (c.JupyterHub.authenticator_class); hub
usernames must be the names of the directories under <share>/home/.
"""

import os

c = get_config()

c.JupyterHub.spawner_class = "nfsuid"
c.JupyterHub.allow_named_servers = True
# Labs run in pods and must reach the hub: listen on all interfaces and tell
# them an address they can reach (a Service name in the cluster).
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = os.environ.get("HUB_CONNECT_IP", "hub")

c.NFSUIDSpawner.namespace = os.environ.get("NFSUID_NAMESPACE", "jupyter-system")
# The share: an NFS PV + RWX PVC an admin created once (the recipe in use today).
# Export it `secure` (never `insecure`) with root_squash. The kubelet mounts it from
# the node, so lab pods need no route to the NFS server: deny them egress to it with a
# NetworkPolicy, or a lab could speak NFS itself and claim any uid. The spawner sets
# net.ipv4.ip_unprivileged_port_start=1024 in every lab pod, so a lab cannot bind the
# ports below 1024 that `secure` asks for. See docs/security.md.
c.NFSUIDSpawner.nfs_storage = "existing-pvc"
c.NFSUIDSpawner.nfs_pvc_name = "hpc-shared-pvc"
# /data/hpc/home/<user> in the lab, with /home/<user> a symlink to it.
c.NFSUIDSpawner.share_mount_path = "/data/hpc"
c.NFSUIDSpawner.home_dir_template = "home/{unescaped_username}"
# The identity initContainer reads the directory's owner; the hub needs no mount.
c.NFSUIDSpawner.identity_source = "initcontainer"

# docker-stacks images: start.sh runs as the entrypoint and switches to NB_UID.
c.NFSUIDSpawner.cmd = ["start-singleuser.py"]
c.NFSUIDSpawner.cpu_guarantee = 1
c.NFSUIDSpawner.cpu_limit = 2
c.NFSUIDSpawner.mem_guarantee = "2G"
c.NFSUIDSpawner.mem_limit = "4G"

# Timeouts that hold a burst of 500 logins (a class at 9:00); the numbers are in docs/sizing.md.
# Start to pod ready: autoscaled nodes and a cold pull of the lab image take minutes (default 60).
c.NFSUIDSpawner.start_timeout = 600
# Pod ready to the lab's first HTTP answer: labs start side by side, the hub's loop stalls 6-8 s (default 30).
c.NFSUIDSpawner.http_timeout = 120
# One API call: 500 pod creates arrive within 15 ms; one cut off at 3 s is re-sent as a duplicate.
c.NFSUIDSpawner.k8s_api_request_timeout = 10
# All tries of one call: the default 30 s failed most of a burst against an API server slower than 3 s.
c.NFSUIDSpawner.k8s_api_request_retry_timeout = 120

DOCKER_STACKS_TAG = "2025-12-31"
c.NFSUIDSpawner.profile_list = [
    {
        "display_name": title,
        "slug": name,
        "default": name == "base",
        "kubespawner_override": {"image": f"quay.io/jupyter/{name}-notebook:{DOCKER_STACKS_TAG}"},
    }
    for name, title in [
        ("base", "Base: Python and JupyterLab"),
        ("minimal", "Minimal: base plus command-line tools"),
        ("scipy", "SciPy: the scientific Python stack"),
        ("pytorch", "PyTorch"),
        ("tensorflow", "TensorFlow"),
        ("datascience", "Data science: Python, R and Julia"),
        ("all-spark", "All Spark: PySpark and Spark R"),
    ]
]
