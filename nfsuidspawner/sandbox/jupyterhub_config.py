"""JupyterHub's configuration on the sandbox cluster, for the demo and the end-to-end tests.

It reads its settings from the JSON file named by NFSUID_SANDBOX_HUB (see
nfsuidspawner.sandbox.hub.HubSettings). The hub finds the sandbox through
KUBECONFIG, like any hub outside a cluster.
"""

import json
import os
from pathlib import Path

c = get_config()
settings = json.loads(Path(os.environ["NFSUID_SANDBOX_HUB"]).read_text())
state = settings["state_dir"]

c.JupyterHub.ip = settings["ip"]
c.JupyterHub.port = settings["port"]
c.JupyterHub.hub_ip = settings["ip"]
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://{settings['ip']}:{settings['proxy_api_port']}"
c.ConfigurableHTTPProxy.pid_file = f"{state}/proxy.pid"
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"
# Labs outlive a hub restart, as pods do in a cluster.
c.JupyterHub.cleanup_servers = False
c.JupyterHub.allow_named_servers = True

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = settings["password"]
c.Authenticator.allowed_users = set(settings["users"])
c.Authenticator.admin_users = set(settings["admin_users"])
if settings.get("api_token"):
    c.JupyterHub.services = [{"name": "sandbox-admin", "api_token": settings["api_token"]}]
    c.JupyterHub.load_roles = [
        {
            "name": "sandbox-admin",
            "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
            "services": ["sandbox-admin"],
        }
    ]

c.JupyterHub.spawner_class = "nfsuid"
# On c.KubeSpawner, as the Zero-to-JupyterHub chart sets them, so that a chart-derived
# extra_config overrides them; settings["spawner"] is the test's own and wins.
c.KubeSpawner.namespace = settings["namespace"]
c.KubeSpawner.image = settings["image"]
c.KubeSpawner.cmd = ["start-singleuser.py"]
c.KubeSpawner.start_timeout = 90
c.KubeSpawner.http_timeout = 60
for name, value in settings["spawner"].items():
    setattr(c.NFSUIDSpawner, name, value)

for path in settings.get("extra_config", []):
    load_subconfig(path)
