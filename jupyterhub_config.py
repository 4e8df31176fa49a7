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
